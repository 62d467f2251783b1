/* SPDX-License-Identifier: MIT */
/*
 * agent_helpers.h - what the tests of the io_uring agent (test_api.c, test_listeners.c) share:
 * checks made on the agent's worker threads and a bounded wait for a counter they raise.
 *
 * helpers.h counts its checks on one thread; a callback on a worker uses WCHECK instead, which
 * prints file:line and the expression and counts the failure in worker_fails, an atomic the
 * main thread reads once the agent stopped. Include after helpers.h.
 */
#ifndef TIDE_TEST_AGENT_HELPERS_H
#define TIDE_TEST_AGENT_HELPERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static _Atomic int worker_fails; /* checks failed on the workers */

#define WCHECK(cond)                                                                               \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: worker check failed: %s\n", __FILE__, __LINE__,    \
				#cond);                                                            \
			atomic_fetch_add(&worker_fails, 1);                                        \
		}                                                                                  \
	} while (0)

static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait up to ms for *v to reach want. */
static inline bool wait_for(_Atomic int *v, int want, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (atomic_load(v) < want && now_ms() < end) {
		struct timespec ts = {0, 10 * 1000000L};

		nanosleep(&ts, NULL);
	}
	return atomic_load(v) >= want;
}

#endif
