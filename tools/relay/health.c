/* SPDX-License-Identifier: MIT */
/*
 * health.c - active health checks (--health-interval): a TCP connect to every upstream.
 *
 * A check is a non-blocking connect bounded by the connect timeout, to each address of the
 * server's name in turn until one accepts (as a client connection would): accepted is healthy,
 * refused, unreachable or timed out is not (the same test a client connection would face,
 * and what haproxy's plain "check" does). A check where any address could not be tried for
 * the relay's own shortage (EMFILE, no local port: relay_err_is_local) and none answered was
 * not run: logged, not counted against the server. Results go to the balancer, which keeps the
 * state (balance.c: a few failures in a row take a server out, one success brings it back).
 *
 * One thread per balancer, off the workers' event loops: checks are a few connects per
 * interval, and a blocking poll per check keeps the code short. The thread sleeps on a
 * condition variable, so stop() wakes it at once; servers are checked one after another, so
 * a round takes at most n * timeout (the interval is measured from the end of a round, so
 * rounds never pile up). On reload the relay stops the old checker and starts one for the
 * new balancer.
 */
#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"

struct relay_health {
	struct relay_balancer *b;
	unsigned interval_ms, timeout_ms;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

int relay_health_probe(const struct sockaddr *sa, socklen_t len, unsigned timeout_ms)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc = 0;
	struct pollfd pfd;
	socklen_t sl = sizeof(rc);

	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len) == 0)
		goto out;
	if (errno != EINPROGRESS) {
		rc = -errno;
		goto out;
	}
	pfd.fd = fd;
	pfd.events = POLLOUT;
	for (;;) {
		int n = poll(&pfd, 1, (int)timeout_ms);

		if (n < 0 && errno == EINTR)
			continue; /* may stretch the bound by a signal's worth: fine for a check */
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0) {
			rc = -ETIMEDOUT;
			goto out;
		}
		break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &rc, &sl))
		rc = errno;
	rc = -rc;
out:
	close(fd);
	return rc;
}

void relay_health_check_all(struct relay_balancer *b, unsigned timeout_ms)
{
	for (unsigned i = 0; i < relay_balancer_count(b); i++) {
		struct sockaddr_storage addrs[RELAY_ADDRS_MAX];
		socklen_t lens[RELAY_ADDRS_MAX];
		unsigned n = relay_balancer_addrs(b, i, addrs, lens, RELAY_ADDRS_MAX);
		int rc = -ENOENT, local = 0;

		for (unsigned k = 0; k < n && rc; k++) { /* healthy if any address answers */
			rc = relay_health_probe((struct sockaddr *)&addrs[k], lens[k], timeout_ms);
			if (relay_err_is_local(rc))
				local = rc;
		}
		/* Our own shortage says nothing of the server: not when the last address tried
		 * met it, nor when an earlier one did (the address that answers may be the one
		 * never tried) and the later ones refused. */
		if (rc && local) {
			relay_log_limited(RELAY_LOG_ERROR, "local resource",
					  "health check of %s not run: %s (a resource of this "
					  "process or host, not the server)",
					  relay_balancer_name(b, i), strerror(-local));
			continue;
		}
		relay_balancer_health_result(b, i, rc, relay_now_ms());
	}
}

static void *run(void *arg)
{
	struct relay_health *h = arg;
	struct timespec until;

	pthread_mutex_lock(&h->lock);
	while (!h->stop) {
		pthread_mutex_unlock(&h->lock);
		relay_health_check_all(h->b, h->timeout_ms);
		pthread_mutex_lock(&h->lock);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += h->interval_ms / 1000;
		until.tv_nsec += (long)(h->interval_ms % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!h->stop && pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

int relay_health_start(struct relay_balancer *b, unsigned interval_ms, unsigned timeout_ms,
		       struct relay_health **out)
{
	struct relay_health *h;
	pthread_condattr_t ca;
	int rc;

	if (!b || !interval_ms || !timeout_ms || !out)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->b = b;
	h->interval_ms = interval_ms;
	h->timeout_ms = timeout_ms;
	pthread_mutex_init(&h->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->cond, &ca);
	pthread_condattr_destroy(&ca);
	relay_balancer_get(b);
	rc = pthread_create(&h->thread, NULL, run, h);
	if (rc) {
		relay_balancer_put(b);
		pthread_cond_destroy(&h->cond);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return -rc;
	}
	*out = h;
	return 0;
}

void relay_health_stop(struct relay_health *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_signal(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->thread, NULL);
	relay_balancer_put(h->b);
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	free(h);
}
