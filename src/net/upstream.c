/* SPDX-License-Identifier: MIT */
/*
 * upstream.c - reaching the upstream: every address of its name in turn, each connect bounded
 * by connect_timeout_ms, and the name resolved again when they all failed.
 *
 * The name is resolved once at creation (addr.c) into a list of up to UP_MAX addresses, in
 * the resolver's order (as curl takes them). A connection starts with the address that
 * answered last (the agent's `prefer`) and, on any failure of its connect (refused,
 * unreachable, the linked timeout firing), closes that socket and tries the next address with
 * a new one, until each was tried once; then the client is reset and the resolver thread is
 * asked to resolve the name again. Resolving blocks (getaddrinfo), so it never runs on a
 * worker: the resolver thread publishes a new list by swapping the agent's pointer, and keeps
 * the old one (workers may still read it) until the agent is destroyed.
 *
 * A connect is an IORING_OP_CONNECT linked to an IORING_OP_LINK_TIMEOUT whose completion
 * carries user_data 0 (ignored); when the timeout fires the connect ends with -ECANCELED.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net_internal.h"

#define RESOLVE_GAP_MS 200 /* at least this long between two resolutions */

static struct upstream *ups_current(struct tide_agent *a)
{
	return atomic_load_explicit(&a->ups, memory_order_acquire);
}

static void connect_try(struct worker *w, struct pair *p);

/* The address p->ai failed (err): try the next one, or give up on the pair. */
static void connect_next(struct worker *w, struct pair *p)
{
	struct tide_agent *a = w->agent;
	const struct upstream *u = ups_current(a);

	if (++p->tries < u->n) {
		p->ai = (uint8_t)((p->ai + 1) % u->n);
		connect_try(w, p);
		return;
	}
	STAT_ADD(w, upstream_failures, 1);
	pthread_mutex_lock(&a->rlock);
	if (!a->resolve_wanted) {
		a->resolve_wanted = true;
		pthread_cond_signal(&a->rcond);
	}
	pthread_mutex_unlock(&a->rlock);
	pair_close(w, p, true);
}

static void connect_try(struct worker *w, struct pair *p)
{
	const struct upstream *u = ups_current(w->agent);
	unsigned i = p->ai < u->n ? p->ai : 0;
	struct io_uring_sqe *sqe;
	int one = 1;

	if (p->fd[1] >= 0)
		close(p->fd[1]);
	p->ai = (uint8_t)i;
	p->fd[1] = socket(u->addr[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd[1] < 0) {
		connect_next(w, p);
		return;
	}
	setsockopt(p->fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (io_uring_sq_space_left(&w->ring) < 2)
		io_uring_submit(&w->ring); /* the link must not be split across submissions */
	sqe = sqe_get(w);
	io_uring_prep_connect(sqe, p->fd[1], (const struct sockaddr *)&u->addr[i], u->len[i]);
	io_uring_sqe_set_data64(sqe, UD(p, OP_CONNECT));
	sqe->flags |= IOSQE_IO_LINK;
	sqe = sqe_get(w);
	io_uring_prep_link_timeout(sqe, &w->connect_ts, 0);
	io_uring_sqe_set_data64(sqe, 0);
	p->refs++;
}

void upstream_connect(struct worker *w, struct pair *p)
{
	p->ai = (uint8_t)atomic_load_explicit(&w->agent->prefer, memory_order_relaxed);
	p->tries = 0;
	connect_try(w, p);
}

void on_connect(struct worker *w, struct pair *p, int res)
{
	struct tide_agent *a = w->agent;

	p->refs--;
	if (p->closing) {
		pair_maybe_free(w, p);
		return;
	}
	if (res < 0) {
		connect_next(w, p);
		return;
	}
	if (atomic_load_explicit(&a->prefer, memory_order_relaxed) != p->ai)
		atomic_store_explicit(&a->prefer, p->ai, memory_order_relaxed);
	pair_start(w, p);
}

static int resolve(const char *text, struct upstream **out)
{
	struct upstream *u = calloc(1, sizeof(*u));
	int n;

	if (!u)
		return -ENOMEM;
	n = addr_resolve(text, false, u->addr, u->len, UP_MAX);
	if (n < 0) {
		free(u);
		return n;
	}
	u->n = (unsigned)n;
	*out = u;
	return 0;
}

/* The resolver thread: on request, resolve the name again and publish the new list. */
static void *resolver_main(void *arg)
{
	struct tide_agent *a = arg;
	struct timespec ts;

	pthread_mutex_lock(&a->rlock);
	for (;;) {
		struct upstream *u = NULL;

		while (!a->resolve_wanted && !a->resolver_stop)
			pthread_cond_wait(&a->rcond, &a->rlock);
		if (a->resolver_stop)
			break;
		a->resolve_wanted = false;
		pthread_mutex_unlock(&a->rlock);
		if (!resolve(a->up_text, &u)) {
			u->older = ups_current(a);
			atomic_store_explicit(&a->prefer, 0, memory_order_relaxed);
			atomic_store_explicit(&a->ups, u, memory_order_release);
		}
		pthread_mutex_lock(&a->rlock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += RESOLVE_GAP_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		while (!a->resolver_stop && pthread_cond_timedwait(&a->rcond, &a->rlock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&a->rlock);
	return NULL;
}

int upstream_init(struct tide_agent *a, const char *text)
{
	struct upstream *u;
	int rc;

	a->up_text = strdup(text);
	if (!a->up_text)
		return -ENOMEM;
	rc = resolve(text, &u);
	if (rc)
		return rc;
	atomic_store_explicit(&a->ups, u, memory_order_release);
	return 0;
}

int upstream_resolver_start(struct tide_agent *a)
{
	int rc = -pthread_create(&a->resolver, NULL, resolver_main, a);

	a->resolver_started = !rc;
	return rc;
}

void upstream_fini(struct tide_agent *a)
{
	struct upstream *u, *older;

	if (a->resolver_started) {
		pthread_mutex_lock(&a->rlock);
		a->resolver_stop = true;
		pthread_cond_signal(&a->rcond);
		pthread_mutex_unlock(&a->rlock);
		pthread_join(a->resolver, NULL);
		a->resolver_started = false;
	}
	for (u = atomic_load_explicit(&a->ups, memory_order_acquire); u; u = older) {
		older = u->older;
		free(u);
	}
	atomic_store_explicit(&a->ups, NULL, memory_order_relaxed);
	free(a->up_text);
	a->up_text = NULL;
}
