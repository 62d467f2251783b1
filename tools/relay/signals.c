/* SPDX-License-Identifier: MIT */
/*
 * signals.c - the main thread's signal loop: SIGHUP reloads, SIGINT/SIGTERM stop.
 *
 * The signals are blocked in every thread (the mask is set before the workers start and
 * inherited), and the main thread takes them with sigtimedwait, so nothing runs in a
 * signal handler: a reload is ordinary code that may allocate, lock and log. The wait has
 * a 200 ms bound, the tick of the rate limiter's "suppressed K" lines and of the relay's own
 * periodic work (a callback).
 * A SIGHUP that arrives during a reload stays pending and runs the next reload after it;
 * several pending SIGHUPs collapse into one (POSIX signals do not queue), which is what an
 * operator who pressed reload twice wants.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ops.h"

int relay_signals_block(sigset_t *set)
{
	int rc;

	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	rc = pthread_sigmask(SIG_BLOCK, set, NULL);
	if (rc)
		return -rc;
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

int relay_signals_wait(struct relay_runtime *rt, const sigset_t *set, int argc, char *const argv[],
		       void (*tick)(void *arg), void *arg)
{
	const struct timespec period = {.tv_nsec = 200 * 1000000L};

	for (;;) {
		int sig = sigtimedwait(set, NULL, &period);

		relay_log_flush_suppressed();
		if (tick)
			tick(arg);
		if (sig == SIGHUP) {
			relay_log(RELAY_LOG_INFO, "SIGHUP: reloading");
			relay_runtime_reload(rt, argc, argv);
			if (relay_log_reopen())
				relay_log(RELAY_LOG_ERROR, "reopening the access log failed; "
							   "still writing the old file");
		} else if (sig == SIGINT || sig == SIGTERM) {
			relay_notify_stopping();
			relay_log(RELAY_LOG_INFO, "%s: draining for up to %u ms", strsignal(sig),
				  rt->cfg.drain_timeout_ms);
			return sig;
		}
	}
}
