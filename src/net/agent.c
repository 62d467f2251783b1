/* SPDX-License-Identifier: MIT */
/*
 * agent.c - the send/receive agent's public API (include/tide/net.h): create, start, stop,
 * wait, destroy, and the state getters and stats.
 *
 * An agent is a set of workers over one pool. Each worker (worker.c) is one thread with one
 * io_uring, one SO_REUSEPORT listener and one provided-buffer ring (ring.c); the connections
 * it accepts (conn.c) stay on it for life. This file runs on the caller's threads only:
 * tide_agent_create() checks the configuration, fills in the defaults, resolves the
 * addresses and binds every listener (addr.c), so that a bad address fails there and not in
 * a thread; tide_agent_start() starts the workers and waits until each has its ring armed.
 *
 * Invariants:
 *  - Workers start together or not at all: each waits until all have set up (ready ==
 *    nworkers), and the first setup error (setup_rc) makes every one of them tear down again.
 *  - After tide_agent_wait() every buffer the workers took is back in the pool: each worker
 *    hands its ring and queues back before its thread ends.
 *  - refs[] has one count per block of the pool's whole range (max_size), since the pool may
 *    grow while the agent runs and its base never moves.
 *  - Stats are read while the workers run: each counter has one writer (its worker), and the
 *    sum is taken without stopping them.
 *
 * The file map: agent.c (this), worker.c (thread, loop, accept, tick, drain), conn.c (pairs,
 * flows, forwarding, endings, fair memory), upstream.c (connects, every address in turn, the
 * resolver thread), ring.c (provided buffers and their refill), addr.c (addresses,
 * listeners, the io_uring probe); net_internal.h holds the types they share.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_internal.h"

/* ------------------------------------------------------------- lifecycle -- */

/*
 * A worker's fixed state, and its share of the pool (share bytes): its ring takes at most a
 * quarter of it (and never more than half its slots), its queues the rest (the budget), of
 * which a quarter is the reserve that only flows holding under two blocks may use.
 */
static void worker_init(struct tide_agent *a, struct worker *w, unsigned i, size_t share)
{
	size_t ring = share / 4 / a->bs;

	w->agent = a;
	w->index = i;
	w->bs = a->bs;
	w->limit = a->cfg.flow_limit;
	w->ring_max = (unsigned)(ring < a->cfg.ring_entries / 2 ? ring : a->cfg.ring_entries / 2);
	if (w->ring_max < 2)
		w->ring_max = 2;
	w->budget = share > (size_t)w->ring_max * a->bs ? share - (size_t)w->ring_max * a->bs : 0;
	w->reserve = w->budget / 4;
	w->small = 2 * a->bs < w->limit ? 2 * a->bs : w->limit;
	w->connect_ts.tv_sec = a->cfg.connect_timeout_ms / 1000;
	w->connect_ts.tv_nsec = (long long)(a->cfg.connect_timeout_ms % 1000) * 1000000;
	w->lru.prev = w->lru.next = &w->lru;
	w->listen_fd = -1;
}

/**
 * tide_agent_create() - set up an agent over a pool: check and default the configuration,
 * resolve the addresses, bind one listener per worker.
 * @pool:   the pool receive buffers come from; its block size is the buffer size.
 * @cfg:    the configuration (zero fields mean the defaults); the strings are not kept.
 * @agentp: where the new agent goes.
 *
 * Return: 0; -EINVAL a NULL argument, a bad address or a name that does not resolve,
 * ring_entries not a power of two in 16..32768, threads over 1024 or an unknown flag; -ERANGE
 * a port over 65535; -EADDRINUSE and the like from bind();
 * -ENOMEM; or an error of tide_agent_probe().
 */
int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
		      struct tide_agent **agentp)
{
	struct sockaddr_storage ls;
	socklen_t llen;
	size_t share;
	struct tide_stats st;
	struct tide_agent *a;
	int rc;

	if (!pool || !cfg || !agentp || !cfg->listen)
		return -EINVAL;
	*agentp = NULL;
	if (cfg->ring_entries && (cfg->ring_entries & (cfg->ring_entries - 1) ||
				  cfg->ring_entries < 16 || cfg->ring_entries > 32768))
		return -EINVAL;
	if (cfg->threads > 1024 ||
	    (cfg->flags & ~(unsigned)(TIDE_AGENT_NO_BUNDLE | TIDE_AGENT_NO_INCREMENTAL |
				      TIDE_AGENT_NO_RECV_LIMIT)))
		return -EINVAL;
	rc = tide_agent_probe(NULL, 0);
	if (rc)
		return rc;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->pool = pool;
	a->cfg = *cfg;
	tide_pool_stats(pool, &st);
	a->bs = st.block_size;
	a->base = tide_pool_base(pool);
	a->nblocks = st.max_size / a->bs;
	a->refs = calloc(a->nblocks ? a->nblocks : 1, sizeof(*a->refs));
	if (!a->refs) {
		free(a);
		return -ENOMEM;
	}
	if (!a->cfg.threads)
		a->cfg.threads = 1;
	if (!a->cfg.ring_entries)
		a->cfg.ring_entries = 512;
	if (!a->cfg.ring_min)
		a->cfg.ring_min = 16;
	if (a->cfg.ring_min > a->cfg.ring_entries / 2)
		a->cfg.ring_min = a->cfg.ring_entries / 2;
	if (!a->cfg.flow_limit)
		a->cfg.flow_limit = 16 * a->bs > 1024 * 1024 ? 16 * a->bs : 1024 * 1024;
	if (a->cfg.flow_limit > UINT32_MAX / 2)
		a->cfg.flow_limit = UINT32_MAX / 2;
	if (!a->cfg.drain_timeout_ms)
		a->cfg.drain_timeout_ms = 5000;
	if (!a->cfg.connect_timeout_ms)
		a->cfg.connect_timeout_ms = 5000;
	a->cfg.listen = NULL;
	a->cfg.upstream = NULL;
	a->echo = !cfg->upstream;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	pthread_mutex_init(&a->rlock, NULL);
	pthread_cond_init(&a->rcond, NULL);
	rc = addr_resolve(cfg->listen, true, &ls, &llen, 1);
	if (rc > 0 && !a->echo)
		rc = upstream_init(a, cfg->upstream);
	if (rc < 0)
		goto fail;
	a->nworkers = a->cfg.threads;
	a->w = calloc(a->nworkers, sizeof(*a->w));
	if (!a->w) {
		rc = -ENOMEM;
		goto fail;
	}
	share = st.max_size / a->nworkers;
	for (unsigned i = 0; i < a->nworkers; i++)
		worker_init(a, &a->w[i], i, share);
	for (unsigned i = 0; i < a->nworkers; i++) {
		rc = listener_open(&ls, llen, &a->port);
		if (rc < 0)
			goto fail;
		a->w[i].listen_fd = rc;
	}
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
	if (!a->echo) {
		rc = upstream_resolver_start(a);
		if (rc)
			return rc;
	}
	for (unsigned i = 0; i < a->nworkers; i++) {
		rc = -pthread_create(&a->w[i].thread, NULL, worker_main, &a->w[i]);
		if (rc) {
			/* Those started wait for the count; fail them all through setup_rc. */
			pthread_mutex_lock(&a->lock);
			if (!a->setup_rc)
				a->setup_rc = rc;
			a->ready += a->nworkers - i;
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
 * tide_agent_stop() - ask the workers to drain and end; a second call ends the drain at once.
 * @a: the agent, or NULL (nothing happens).
 *
 * The first call stops accepting and lets every connection go on until it ends or
 * drain_timeout_ms passes, then resets what is left; a second call resets everything now.
 * Only sets a flag the workers read on their next turn, so it is async-signal-safe.
 */
void tide_agent_stop(struct tide_agent *a)
{
	if (a && atomic_load_explicit(&a->stop, memory_order_relaxed) < 2)
		atomic_fetch_add_explicit(&a->stop, 1, memory_order_relaxed);
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

		if (w->listen_fd >= 0)
			close(w->listen_fd);
		if (w->user) {
			int rc = tide_user_destroy(w->user);

			if (rc)
				fprintf(stderr, "tide agent: worker %u still holds buffers (%s)\n",
					i, strerror(-rc));
		}
	}
	upstream_fini(a);
	free(a->w);
	free(a->refs);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->rlock);
	pthread_cond_destroy(&a->rcond);
	free(a);
}

/* ----------------------------------------------------------------- state -- */

/**
 * tide_agent_port() - the port the listeners are bound to.
 * @a: the agent, or NULL.
 *
 * Return: the port (the one picked when the configuration asked for 0), or 0 for NULL.
 */
unsigned tide_agent_port(const struct tide_agent *a)
{
	return a ? a->port : 0;
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
		st->bytes_in += LOAD(w, bytes_in);
		st->bytes_out += LOAD(w, bytes_out);
		st->short_sends += LOAD(w, short_sends);
		st->pauses += LOAD(w, pauses);
		st->ring_refills += LOAD(w, refills);
		st->refill_buffers += LOAD(w, refill_buffers);
		st->enobufs += LOAD(w, enobufs);
		st->ring_resets += LOAD(w, ring_resets);
		st->forced_grows += LOAD(w, forced_grows);
		st->ring_buffers += LOAD(w, in_ring);
		st->ring_target += LOAD(w, target);
	}
	if (a->nworkers) {
		st->bundles = a->w[0].bundles;
		st->incremental = a->w[0].inc;
		st->defer_taskrun = a->w[0].defer;
	}
}
