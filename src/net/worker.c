/* SPDX-License-Identifier: MIT */
/*
 * worker.c - a worker thread: its io_uring, the multishot accept on its listener, the event
 * loop that dispatches completions, and the 100 ms tick.
 *
 * Each worker is one thread with one io_uring, one SO_REUSEPORT listener and one
 * provided-buffer ring (ring.c) fed from the pool through the worker's own tide user. Nothing
 * is shared between workers but the pool and the agent's connection counter, so the hot path
 * takes no lock of ours; everything a worker owns is touched only on its thread.
 *
 * One turn of the loop: submit and wait (at most a tick) for completions, dispatch each by
 * the operation in the low 3 bits of its user_data, then refill the ring when it fell below
 * half its target (or a flow waits for buffers), publish it, wake the waiting flows and hand
 * batched buffers back to the pool. Doing the refill once per batch rather than per
 * completion keeps the pool off the hot path.
 *
 * The io_uring is set up with SINGLE_ISSUER | DEFER_TASKRUN where the kernel has it (then
 * completions run only when the loop waits, which ring_reset() relies on), else COOP_TASKRUN,
 * else plain. The tick runs the idle timeout, the ring's decay, a retry of a failed accept
 * the watch of half-closed sockets (conn.c) and, on worker 0, tide_pool_maintain(). At stop
 * the worker drains: the accept is cancelled and the listener closed, connections go on in
 * both directions until they end or drain_timeout_ms passes, then what is left is reset (at
 * once on a second stop); the loop ends when no pair and no accept is left.
 *
 * Invariant: a pair's handler runs with an extra reference held by handle_cqe(), so a close
 * inside a handler never frees the pair under it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/*
 * Draining starts: stop accepting (the listener closes, so new connections are refused rather
 * than left in its queue), reset the pairs not yet connected; the others go on until they end
 * or the deadline.
 */
static void drain_begin(struct worker *w)
{
	w->draining = true;
	w->drain_deadline = w->now + w->agent->cfg.drain_timeout_ms;
	if (w->accept_armed)
		cancel_ud(w, UD(w, OP_ACCEPT));
	if (w->listen_fd >= 0) {
		close(w->listen_fd);
		w->listen_fd = -1;
	}
	pairs_drain(w);
}

static void tick(struct worker *w)
{
	struct tide_agent *a = w->agent;

	if (w->index == 0)
		tide_pool_maintain(a->pool);
	pairs_watch(w);
	if (a->cfg.idle_timeout_ms)
		pairs_close_idle(w, a->cfg.idle_timeout_ms);
	if (w->draining) {
		if (w->now >= w->drain_deadline)
			pairs_abort_all(w);
		return;
	}
	if (!w->accept_armed)
		accept_arm(w);
	ring_decay(w);
}

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
	/*
	 * Receives are multishot with a byte limit (IORING_RECV_MSHOT_LIM, recent kernels; no
	 * feature bit: the first receive's -EINVAL turns it off) and then bundles. Without the
	 * limit no bundles: a bundle receive that filled what it was given retries once and
	 * appends what the socket still holds, past the length asked for (io_recv_finish()),
	 * so single receives of one buffer keep a direction within its limit instead.
	 */
	w->mshot_lim = !(a->cfg.flags & TIDE_AGENT_NO_RECV_LIMIT);
	w->bundles = w->mshot_lim && (params.features & IORING_FEAT_RECVSEND_BUNDLE) &&
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

		int stop = atomic_load_explicit(&a->stop, memory_order_relaxed);

		if (!w->draining && stop)
			drain_begin(w);
		if (!w->aborted && stop > 1) {
			w->aborted = true; /* a second stop: no more waiting */
			pairs_abort_all(w);
		}
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

void *worker_main(void *arg)
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
