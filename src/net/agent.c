/* SPDX-License-Identifier: MIT */
/*
 * agent.c - the send/receive agent: workers, their io_uring, provided-buffer rings and
 * connections.
 *
 * Each worker is one thread with one io_uring, one SO_REUSEPORT listener (multishot accept)
 * and one provided-buffer ring (group 0) fed from the pool through the worker's own tide
 * user. Nothing is shared between workers but the pool and a connection counter, so the hot
 * path takes no lock of ours.
 *
 * A connection is a "pair": the client socket and, when relaying, the upstream socket, with
 * one "flow" per direction (echo: one flow from the client back to itself). A flow is a queue
 * of received buffers (segs) waiting to be sent to its destination, in order. Its source has
 * a multishot receive armed that picks buffers from the ring; with recv bundles one completion
 * carries several consecutive ring entries. At most one send per flow is in flight, built
 * from the head of the queue (adjacent buffers coalesce into one iovec, and pool buffers are
 * often adjacent because the pool hands out the lowest addresses first); a short send just
 * leaves the rest at the head. A fully sent buffer goes back into the ring if the ring is
 * below its target, else back to the pool.
 *
 * Invariants:
 *  - A buffer is in exactly one place: the ring (kernel's), a flow queue, or the pool.
 *    in_ring counts the first; ring slot i holds buffer id i, so a completion's buffer id is
 *    the ring position of its first buffer and a bundle's buffers are the next positions.
 *    The ring never holds more than half its slots, so a slot is never refilled before its
 *    completion is seen, even if completions came out of order.
 *  - A flow's queued bytes stay under flow_limit plus one receive: past it the receive is
 *    cancelled (backpressure), and re-armed when sends bring the queue under half of it. A
 *    bundle receive is capped at flow_limit bytes where the kernel takes a length (else one
 *    receive may take what the socket holds, up to its receive buffer).
 *  - A pair is freed only when it is closing and no operation on it is in flight (refs == 0);
 *    user_data is the pair's address with the operation in the low 3 bits.
 *  - An idle connection holds no buffer: a multishot receive without data takes none.
 *
 * Refill hysteresis: sent buffers refill the ring up to its target; the pool tops it up only
 * when it falls below half the target (or a receive waits), so in steady traffic a buffer
 * cycles ring -> flow -> ring without touching the pool.
 *
 * Elasticity: a receive that finds the ring empty (-ENOBUFS) doubles the ring's target and
 * waits; the refill after the completion batch allocates from the pool (which grows). A
 * second without -ENOBUFS decays the target back toward ring_min, returned buffers then go
 * to the pool, and a ring that stayed idle for a second hands its surplus back, so the pool
 * can shrink. Worker 0 runs tide_pool_maintain() on its 100 ms tick.
 *
 * Left out on purpose: fixed-buffer sends through the pool's conversion hook. A profile of
 * the relay under iperf3 puts the kernel's per-send cost of taking a user buffer (io_sendmsg,
 * its prep, copy_iovec_from_user) under 0.5 % of the relay's CPU; copies and TCP are the
 * rest, and the hardened-usercopy check that fixed buffers would skip sits on the receive
 * side. Registering would pin every page of the unreserved portion (purge could no longer
 * give pages back) and, with SINGLE_ISSUER rings, would need the hook, which runs on the
 * thread that converts, to hand work to each worker.
 *
 * Incremental buffer rings (Linux 6.12+, probed at registration): a receive takes only the
 * bytes it needs from the head buffer, so a small message does not hold a whole block. A
 * buffer is then shared by several segs (of any connections); refs[] counts them plus the
 * kernel's share, and the buffer is released when the last one goes.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "net_internal.h"

#define TICK_MS	   100
#define SQ_ENTRIES 1024
#define CQ_ENTRIES 16384

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void accept_arm(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->accept_armed || w->draining)
		return;
	sqe = sqe_get(w);
	io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(w, OP_ACCEPT));
	w->accept_armed = true;
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned op = (unsigned)(ud & 7);
	void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)7);
	struct pair *p = ptr;

	switch (op) {
	case 0:
		return; /* a cancel */
	case OP_ACCEPT:
		if (!(cqe->flags & IORING_CQE_F_MORE))
			w->accept_armed = false;
		if (cqe->res >= 0)
			on_accept(w, cqe->res);
		if (!w->accept_armed && cqe->res >= 0)
			accept_arm(w); /* an error waits for the tick */
		return;
	}
	/* Hold the pair while its handler runs: a close inside may not free it under us. */
	p->refs++;
	switch (op) {
	case OP_RECV:
	case OP_RECV + 1:
		on_recv(w, p, &p->flow[op - OP_RECV], cqe->res, cqe->flags);
		break;
	case OP_SEND:
	case OP_SEND + 1:
		on_send(w, p, &p->flow[op - OP_SEND], cqe->res);
		break;
	case OP_CONNECT:
		on_connect(w, p, cqe->res);
		break;
	}
	p->refs--;
	pair_maybe_free(w, p);
}

static void drain_begin(struct worker *w)
{
	w->draining = true;
	w->drain_deadline = w->now + (w->agent->cfg.drain_timeout_ms ?: 2000);
	if (w->accept_armed)
		cancel_ud(w, UD(w, OP_ACCEPT));
	pairs_drain(w);
}

static void tick(struct worker *w)
{
	struct tide_agent *a = w->agent;

	if (w->index == 0)
		tide_pool_maintain(a->pool);
	if (w->draining) {
		if (w->now >= w->drain_deadline)
			pairs_abort_all(w);
		return;
	}
	if (!w->accept_armed)
		accept_arm(w);
	if (a->cfg.idle_timeout_ms)
		pairs_close_idle(w, a->cfg.idle_timeout_ms);
	ring_decay(w);
}

/* ---------------------------------------------------------------- worker -- */

static int worker_setup(struct worker *w)
{
	struct tide_agent *a = w->agent;
	struct io_uring_params params;
	struct tide_user_config uc;
	char name[32];
	static const unsigned tries[] = {
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;

	for (unsigned i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		memset(&params, 0, sizeof(params));
		params.flags = tries[i] | IORING_SETUP_CQSIZE;
		params.cq_entries = CQ_ENTRIES;
		rc = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &params);
		if (rc != -EINVAL)
			break;
	}
	if (rc)
		return rc;
	w->ring_ok = true;
	w->defer = params.flags & IORING_SETUP_DEFER_TASKRUN;
	w->bundles = (params.features & IORING_FEAT_RECVSEND_BUNDLE) &&
		     !(a->cfg.flags & TIDE_AGENT_NO_BUNDLE);
	w->inc = !(a->cfg.flags & TIDE_AGENT_NO_INCREMENTAL);

	snprintf(name, sizeof(name), "worker%u", w->index);
	memset(&uc, 0, sizeof(uc));
	uc.name = name;
	uc.flags = TIDE_USER_MAY_GROW;
	rc = tide_user_create(a->pool, &uc, &w->user);
	if (rc)
		return rc;

	rc = ring_setup(w);
	if (rc)
		return rc;
	w->now = now_ms();
	w->next_tick = w->now + TICK_MS;
	w->last_consume = w->now;
	ring_refill(w);
	accept_arm(w);
	io_uring_submit(&w->ring);
	return 0;
}

static void worker_teardown(struct worker *w)
{
	ring_drop(w);
	tide_pool_flush_cache(w->agent->pool);
	if (w->ring_ok) {
		io_uring_queue_exit(&w->ring);
		w->ring_ok = false;
	}
	spares_free(w);
	ring_free(w);
}

static void worker_loop(struct worker *w)
{
	struct tide_agent *a = w->agent;
	struct __kernel_timespec ts = {0, TICK_MS * 1000000L};

	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		if (!w->draining && atomic_load_explicit(&a->stop, memory_order_relaxed))
			drain_begin(w);
		if (w->draining && !w->npairs && !w->accept_armed)
			break;
		ring_publish(w);
		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		w->now = now_ms();
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			seen++;
		}
		io_uring_cq_advance(&w->ring, seen);
		if (w->in_ring < w->target / 2 || (w->waiters && !w->in_ring))
			ring_refill(w);
		ring_publish(w);
		waiters_wake(w);
		frees_flush(w);
		if (w->now >= w->next_tick) {
			w->next_tick = w->now + TICK_MS;
			tick(w);
		}
	}
	/* Whatever the last cancels posted is of no interest now. */
	io_uring_submit(&w->ring);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct tide_agent *a = w->agent;
	char name[16];
	int rc;

	snprintf(name, sizeof(name), "tide-w%u", w->index);
	pthread_setname_np(pthread_self(), name);
	rc = worker_setup(w);
	pthread_mutex_lock(&a->lock);
	if (rc && !a->setup_rc)
		a->setup_rc = rc;
	a->ready++;
	pthread_cond_broadcast(&a->cond);
	while (a->ready < a->nworkers)
		pthread_cond_wait(&a->cond, &a->lock);
	rc = a->setup_rc;
	pthread_mutex_unlock(&a->lock);
	if (!rc)
		worker_loop(w);
	worker_teardown(w);
	return NULL;
}

/* ------------------------------------------------------------- lifecycle -- */

int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
		      struct tide_agent **agentp)
{
	struct sockaddr_storage ls;
	socklen_t llen;
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
	    (cfg->flags & ~(unsigned)(TIDE_AGENT_NO_BUNDLE | TIDE_AGENT_NO_INCREMENTAL)))
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
	a->cfg.listen = NULL;
	a->cfg.upstream = NULL;
	a->echo = !cfg->upstream;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	rc = addr_parse(cfg->listen, true, &ls, &llen);
	if (!rc && !a->echo)
		rc = addr_parse(cfg->upstream, false, &a->up, &a->uplen);
	if (rc)
		goto fail;
	a->nworkers = a->cfg.threads;
	a->w = calloc(a->nworkers, sizeof(*a->w));
	if (!a->w) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < a->nworkers; i++) {
		struct worker *w = &a->w[i];

		w->agent = a;
		w->index = i;
		w->bs = a->bs;
		w->limit = a->cfg.flow_limit;
		w->recv_len = (uint32_t)a->cfg.flow_limit;
		w->lru.prev = w->lru.next = &w->lru;
		w->listen_fd = -1;
	}
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

int tide_agent_start(struct tide_agent *a)
{
	int rc = 0;

	if (!a)
		return -EINVAL;
	if (a->started)
		return -EALREADY;
	a->started = true;
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

void tide_agent_stop(struct tide_agent *a)
{
	if (a)
		atomic_store_explicit(&a->stop, 1, memory_order_relaxed);
}

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
	free(a->w);
	free(a->refs);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	free(a);
}

/* ----------------------------------------------------------------- state -- */

unsigned tide_agent_port(const struct tide_agent *a)
{
	return a ? a->port : 0;
}

unsigned tide_agent_workers(const struct tide_agent *a)
{
	return a ? a->nworkers : 0;
}

struct tide_user *tide_agent_user(const struct tide_agent *a, unsigned i)
{
	return a && i < a->nworkers ? a->w[i].user : NULL;
}

#define LOAD(w, f) atomic_load_explicit(&(w)->st.f, memory_order_relaxed)

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
