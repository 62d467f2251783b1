/* SPDX-License-Identifier: MIT */
/*
 * agent.c - the agent's lifecycle and state (include/tide/net.h): create, start, stop, wait,
 * destroy, post, the worker getters and the stats. Engine side.
 *
 * An agent is a set of workers over one pool. Each worker (worker.c) is one thread with one
 * io_uring, one SO_REUSEPORT socket per listener and one provided-buffer ring (ring.c); the
 * connections it accepts or opens (conn.c, connect.c) stay on it for life. This file runs on
 * the application's threads: tide_agent_create() checks the configuration and fills in the
 * defaults; tide_agent_listen() (listen.c) resolves and binds, so that a bad address fails
 * there and not in a thread; tide_agent_start() starts the workers and waits until each has
 * its ring armed.
 *
 * Invariants:
 *  - Workers start together or not at all: each waits until all have set up (ready ==
 *    nworkers), and the first setup error (setup_rc) makes every one of them tear down again.
 *  - After tide_agent_wait() every buffer the engine held is back in the pool: each worker
 *    hands its ring and queues back before its thread ends. Buffers the application still
 *    holds stay charged to the workers' users until it drops them (tide_buf_put()).
 *  - refs[] and owner[] have one entry per block of the pool's whole range (max_size), since
 *    the pool may grow while the agent runs and its base never moves.
 *  - Stats are read while the workers run: each counter has one writer (its worker), and the
 *    sum is taken without stopping them.
 *
 * The file map: agent.c (this), worker.c (thread, loop, accept, timers' turn, posts, tick,
 * drain), conn.c (connections, receives, send queues, endings), connect.c (outbound
 * connects), buf.c (buffer references), timer.c (timers), ring.c (provided buffers and their
 * refill), listen.c (listeners opened and closed, accepts), addr.c (addresses, listening
 * sockets, the io_uring probe); net_internal.h holds the types
 * they share.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_internal.h"

/* ------------------------------------------------------------- lifecycle -- */

/* Check cfg and fill in the defaults: 0 or -EINVAL. */
static int config_init(struct tide_agent *a, const struct tide_agent_config *cfg)
{
	struct tide_agent_config *c = &a->cfg;

	if (cfg->ring_entries && (cfg->ring_entries & (cfg->ring_entries - 1) ||
				  cfg->ring_entries < 16 || cfg->ring_entries > 32768))
		return -EINVAL;
	if (cfg->threads > 1024 ||
	    (cfg->flags & ~(unsigned)(TIDE_AGENT_NO_BUNDLE | TIDE_AGENT_NO_INCREMENTAL |
				      TIDE_AGENT_NO_RECV_LIMIT)))
		return -EINVAL;
	*c = *cfg;
	c->threads = c->threads ? c->threads : 1;
	c->ring_entries = c->ring_entries ? c->ring_entries : 512;
	c->ring_min = c->ring_min ? c->ring_min : 16;
	if (c->ring_min > c->ring_entries / 2)
		c->ring_min = c->ring_entries / 2;
	c->drain_timeout_ms = c->drain_timeout_ms ? c->drain_timeout_ms : 5000;
	atomic_store_explicit(&a->idle_ms, c->idle_timeout_ms, memory_order_relaxed);
	if (!c->recv_max)
		c->recv_max = 16 * a->bs > 1024 * 1024 ? 16 * a->bs : 1024 * 1024;
	if (c->recv_max > UINT32_MAX / 2)
		c->recv_max = UINT32_MAX / 2;
	if (c->recv_batch > INT_MAX || c->conn_fds > TIDE_CONN_FDS_MAX)
		return -EINVAL;
	return 0;
}

static void worker_init(struct tide_agent *a, unsigned i)
{
	struct worker *w = &a->w[i];

	w->agent = a;
	w->index = i;
	w->bs = a->bs;
	w->recv_len = (uint32_t)a->cfg.recv_max;
	w->lru.prev = w->lru.next = &w->lru;
	w->wake_fd = -1;
	for (unsigned k = 0; k < MAX_LISTENERS; k++)
		w->ls[k].fd = -1;
	pthread_mutex_init(&w->post_lock, NULL);
}

/**
 * tide_agent_create() - set up an agent over a pool: check and default the configuration
 * and make the workers (not started).
 * @pool:   the pool receive buffers come from; its block size is the buffer size.
 * @cfg:    the configuration (zero fields mean the defaults).
 * @agentp: where the new agent goes.
 *
 * Return: 0; -EINVAL a NULL argument, ring_entries not a power of two in 16..32768, threads
 * over 1024, recv_batch over INT_MAX, conn_fds over TIDE_CONN_FDS_MAX or an unknown flag;
 * -ENOMEM; or an error of tide_agent_probe().
 */
int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
		      struct tide_agent **agentp)
{
	struct tide_stats st;
	struct tide_agent *a;
	int rc;

	if (!pool || !cfg || !agentp)
		return -EINVAL;
	*agentp = NULL;
	rc = tide_agent_probe(NULL, 0);
	if (rc)
		return rc;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->pool = pool;
	tide_pool_stats(pool, &st);
	a->bs = st.block_size;
	a->base = tide_pool_base(pool);
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->listen_lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	rc = config_init(a, cfg);
	if (rc)
		goto fail;
	a->nblocks = st.max_size / a->bs;
	a->refs = calloc(a->nblocks ? a->nblocks : 1, sizeof(*a->refs));
	a->owner = calloc(a->nblocks ? a->nblocks : 1, sizeof(*a->owner));
	a->nworkers = a->cfg.threads;
	a->w = calloc(a->nworkers, sizeof(*a->w));
	if (!a->refs || !a->owner || !a->w) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < a->nworkers; i++)
		worker_init(a, i);
	*agentp = a;
	return 0;
fail:
	tide_agent_destroy(a);
	return rc;
}

/**
 * tide_agent_start() - start the workers and wait until each has its ring armed.
 * @a: the agent.
 *
 * Return: 0; -EINVAL a NULL agent; -EALREADY when started before; or the first worker's
 * setup error (-EPERM, -ENOMEM, -EOPNOTSUPP, -EAGAIN from pthread_create ...), in which
 * case every worker is stopped and joined again.
 */
int tide_agent_start(struct tide_agent *a)
{
	int rc = 0;

	if (!a)
		return -EINVAL;
	if (a->started)
		return -EALREADY;
	a->started = true;
	atomic_store(&a->running, a->nworkers);
	for (unsigned i = 0; i < a->nworkers; i++) {
		rc = -pthread_create(&a->w[i].thread, NULL, worker_main, &a->w[i]);
		if (rc) {
			/* Those started wait for the count; fail them all through setup_rc. */
			pthread_mutex_lock(&a->lock);
			if (!a->setup_rc)
				a->setup_rc = rc;
			a->ready += a->nworkers - i;
			atomic_fetch_sub(&a->running, a->nworkers - i);
			pthread_cond_broadcast(&a->cond);
			pthread_mutex_unlock(&a->lock);
			break;
		}
		a->w[i].thread_started = true;
	}
	pthread_mutex_lock(&a->lock);
	while (a->ready < a->nworkers)
		pthread_cond_wait(&a->cond, &a->lock);
	rc = a->setup_rc;
	pthread_mutex_unlock(&a->lock);
	if (rc)
		tide_agent_wait(a);
	return rc;
}

/**
 * tide_agent_stop() - ask the workers to drain and end; returns at once. A second call ends
 * the connections left at once (TIDE_END_DRAIN).
 * @a: the agent, or NULL (nothing happens).
 *
 * Sets a flag the workers read on their next turn (at most a tick later), so it is
 * async-signal-safe.
 */
void tide_agent_stop(struct tide_agent *a)
{
	if (a)
		atomic_fetch_add_explicit(&a->stop, 1, memory_order_relaxed);
}

/**
 * tide_agent_set_idle_timeout() - change idle_timeout_ms while the agent runs.
 * @a:  the agent, or NULL (nothing happens).
 * @ms: end connections idle this long (TIDE_END_TIMEOUT); 0: never.
 *
 * The workers read it on their next tick; it applies to every connection, those open now
 * included, since one clock (the least recently active first) serves them all. Any thread.
 */
void tide_agent_set_idle_timeout(struct tide_agent *a, unsigned ms)
{
	if (a)
		atomic_store_explicit(&a->idle_ms, ms, memory_order_relaxed);
}

/**
 * tide_agent_running() - whether a worker still runs.
 * @a: the agent, or NULL (false).
 *
 * Return: true from tide_agent_start() until the last worker ended its loop (after a
 * stop, when its connections are gone), so a caller can wait for more signals meanwhile.
 */
bool tide_agent_running(const struct tide_agent *a)
{
	return a && atomic_load_explicit(&a->running, memory_order_acquire) > 0;
}

/**
 * tide_agent_wait() - join the workers (after tide_agent_stop(), or a failed start).
 * @a: the agent.
 *
 * Return: 0 (also when joined before); -EINVAL a NULL or never started agent.
 */
int tide_agent_wait(struct tide_agent *a)
{
	if (!a || !a->started)
		return -EINVAL;
	if (a->joined)
		return 0;
	for (unsigned i = 0; i < a->nworkers; i++)
		if (a->w[i].thread_started)
			pthread_join(a->w[i].thread, NULL);
	a->joined = true;
	return 0;
}

/**
 * tide_agent_destroy() - stop and join the agent if it runs, close the listeners, destroy
 * the workers' pool users and free the agent.
 * @a: the agent, or NULL (nothing happens).
 */
void tide_agent_destroy(struct tide_agent *a)
{
	if (!a)
		return;
	if (a->started && !a->joined) {
		tide_agent_stop(a);
		tide_agent_wait(a);
	}
	for (unsigned i = 0; a->w && i < a->nworkers; i++) {
		struct worker *w = &a->w[i];

		for (unsigned j = 0; j < w->nls; j++)
			if (w->ls[j].fd >= 0)
				close(w->ls[j].fd);
		if (w->wake_fd >= 0)
			close(w->wake_fd);
		pthread_mutex_destroy(&w->post_lock);
		if (w->user) {
			int rc = tide_user_destroy(w->user);

			if (rc)
				fprintf(stderr,
					"tide agent: worker %u: the application still holds "
					"buffers (%s)\n",
					i, strerror(-rc));
		}
	}
	free(a->w);
	free(a->refs);
	free(a->owner);
	pthread_mutex_destroy(&a->lock);
	pthread_mutex_destroy(&a->listen_lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}

/* ----------------------------------------------------------------- state -- */

/**
 * tide_agent_post() - run fn(w, arg) on a worker's thread, on its loop's next turn.
 * @a:     the agent (started or not: posts made before start run once it runs).
 * @index: the worker.
 * @fn:    the function.
 * @arg:   its argument.
 *
 * Any thread may call it (not a signal handler). Work is run in the order it was posted to
 * that worker; work posted before the worker ends runs at the latest while it ends.
 *
 * Return: 0; -EINVAL a NULL agent or function, or a bad index; -ESHUTDOWN the worker has
 * ended; -ENOMEM.
 */
int tide_agent_post(struct tide_agent *a, unsigned index,
		    void (*fn)(struct tide_worker *w, void *arg), void *arg)
{
	struct worker *w;
	struct post *p;
	uint64_t one = 1;
	int rc = 0;

	if (!a || !fn || index >= a->nworkers)
		return -EINVAL;
	w = &a->w[index];
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&w->post_lock);
	if (w->ended) {
		rc = -ESHUTDOWN;
		free(p);
	} else {
		p->next = w->posts;
		w->posts = p;
	}
	pthread_mutex_unlock(&w->post_lock);
	if (!rc && w->wake_fd >= 0 && write(w->wake_fd, &one, sizeof(one)) < 0)
		rc = 0; /* the counter is full: a wake is pending anyway */
	return rc;
}

/* Worker @index of @a, or NULL. */
struct tide_worker *tide_agent_worker(struct tide_agent *a, unsigned index)
{
	return a && index < a->nworkers ? (struct tide_worker *)&a->w[index] : NULL;
}

struct tide_agent *tide_worker_agent(const struct tide_worker *w)
{
	return ((const struct worker *)w)->agent;
}

unsigned tide_worker_index(const struct tide_worker *w)
{
	return ((const struct worker *)w)->index;
}

uint64_t tide_worker_now(const struct tide_worker *w)
{
	return ((const struct worker *)w)->now;
}

/**
 * tide_agent_workers() - the worker count.
 * @a: the agent, or NULL.
 *
 * Return: the number of workers, or 0 for NULL.
 */
unsigned tide_agent_workers(const struct tide_agent *a)
{
	return a ? a->nworkers : 0;
}

/**
 * tide_agent_user() - a worker's pool user, for tide_user_stats().
 * @a: the agent, or NULL.
 * @i: the worker's index.
 *
 * Return: the user (NULL before the worker has set up), or NULL for a NULL agent or an
 * index out of range.
 */
struct tide_user *tide_agent_user(const struct tide_agent *a, unsigned i)
{
	return a && i < a->nworkers ? a->w[i].user : NULL;
}

#define LOAD(w, f) atomic_load_explicit(&(w)->st.f, memory_order_relaxed)

/**
 * tide_agent_stats() - the counters summed over the workers, read while they run.
 * @a:  the agent, or NULL (all zero).
 * @st: where the stats go.
 *
 * The feature flags (bundles, incremental, defer_taskrun) are worker 0's.
 */
void tide_agent_stats(const struct tide_agent *a, struct tide_agent_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!a)
		return;
	st->conns_current =
		atomic_load_explicit(&((struct tide_agent *)a)->conns, memory_order_relaxed);
	for (unsigned i = 0; i < a->nworkers; i++) {
		struct worker *w = &a->w[i];

		st->conns_accepted += LOAD(w, accepted);
		st->conns_rejected += LOAD(w, rejected);
		st->conns_idle_closed += LOAD(w, idle_closed);
		st->conns_reset += LOAD(w, reset);
		st->upstream_failures += LOAD(w, upstream_failures);
		st->connect_retries += LOAD(w, retries);
		st->bytes_in += LOAD(w, bytes_in);
		st->bytes_out += LOAD(w, bytes_out);
		st->short_sends += LOAD(w, short_sends);
		st->pauses += LOAD(w, pauses);
		st->ring_refills += LOAD(w, refills);
		st->refill_buffers += LOAD(w, refill_buffers);
		st->enobufs += LOAD(w, enobufs);
		st->ring_resets += LOAD(w, ring_resets);
		st->recv_arms += LOAD(w, recv_arms);
		st->forced_grows += LOAD(w, forced_grows);
		st->ring_buffers += LOAD(w, in_ring);
		st->ring_target += LOAD(w, target);
		st->accept_errors += LOAD(w, accept_errors);
		st->batch_marks += LOAD(w, batch_marks);
		st->batch_quiet += LOAD(w, batch_quiet);
	}
	st->accept_error =
		atomic_load_explicit(&((struct tide_agent *)a)->accept_error, memory_order_relaxed);
	if (a->nworkers) {
		st->bundles = a->w[0].bundles;
		st->incremental = a->w[0].inc;
		st->defer_taskrun = a->w[0].defer;
	}
}
