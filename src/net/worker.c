/* SPDX-License-Identifier: MIT */
/*
 * worker.c - a worker thread: its io_uring, the event loop that dispatches completions (the
 * accepts on its listeners are listen.c's), timers, work posted from other threads, and the
 * 100 ms tick. Engine side.
 *
 * Each worker is one thread with one io_uring, one SO_REUSEPORT socket per listener and one
 * provided-buffer ring (ring.c) fed from the pool through the worker's own tide user. Nothing
 * is shared between workers but the pool, the blocks' reference counts and the agent's
 * connection counter, so the hot path takes no lock of ours; everything a worker owns is
 * touched only on its thread. Other threads reach it through tide_agent_post(): a list under
 * a mutex and an eventfd the loop keeps a read armed on.
 *
 * One turn of the loop: submit and wait (until the tick or the next timer) for completions,
 * dispatch each by the operation in the low 3 bits of its user_data, run the due timers,
 * then refill the ring when it fell below half its target (or a receive waits for buffers),
 * publish it, wake the waiting receives and hand batched buffers back to the pool. Doing the
 * refill once per batch rather than per completion keeps the pool off the hot path.
 *
 * The io_uring is set up with SINGLE_ISSUER | DEFER_TASKRUN where the kernel has it (then
 * completions run only when the loop waits, which ring_reset() relies on), else COOP_TASKRUN,
 * else plain; its descriptor is registered with the worker's thread (one lookup less per
 * io_uring_enter). The tick runs the idle timeout, the ring's decay, a retry of a failed accept
 * (an error such as EMFILE waits for the tick, so nothing spins) and, on worker 0,
 * tide_pool_maintain(), and resets the lingering sockets (linger.c). At stop the worker drains: the
 * accepts are cancelled, each connection is told (ops->drain) and may run until drain_timeout_ms,
 * then what is left ends TIDE_END_DRAIN; the loop ends when no connection, lingering socket or
 * accept is left.
 *
 * Invariant: a connection's handler runs with an extra reference held by handle_cqe(), so an
 * end inside a handler never frees the connection under it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "net_internal.h"

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 16384

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake_arm(struct worker *w)
{
	struct io_uring_sqe *sqe;

	if (w->wake_armed || w->wake_fd < 0)
		return;
	sqe = sqe_get(w);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof(w->wake_val), 0);
	io_uring_sqe_set_data64(sqe, UD(w, OP_WAKE));
	w->wake_armed = true;
}

/* Run the work posted to w, in the order it was posted. */
void posts_run(struct worker *w)
{
	struct post *list, *prev = NULL;

	pthread_mutex_lock(&w->post_lock);
	list = w->posts;
	w->posts = NULL;
	pthread_mutex_unlock(&w->post_lock);
	while (list) { /* the list is newest first: reverse it */
		struct post *next = list->next;

		list->next = prev;
		prev = list;
		list = next;
	}
	while (prev) {
		struct post *p = prev;

		prev = p->next;
		p->fn((struct tide_worker *)w, p->arg);
		free(p);
	}
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned op = (unsigned)(ud & 7);
	void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)7);
	struct tide_conn *c = ptr;

	switch (op) {
	case 0:
		return; /* a cancel */
	case OP_ACCEPT:
		on_accept_cqe(ptr, cqe);
		return;
	case OP_WAKE:
		w->wake_armed = false;
		posts_run(w);
		if (cqe->res >= 0 || cqe->res == -EINTR || cqe->res == -EAGAIN)
			wake_arm(w);
		return;
	case OP_SPLICE:
		on_splice_poll(ptr, cqe->res);
		return;
	}
	/* Hold the connection while its handler runs: an end inside may not free it under us. */
	c->refs++;
	switch (op) {
	case OP_RECV:
		on_recv(c, cqe->res, cqe->flags);
		break;
	case OP_SEND:
		on_send(c, cqe->res);
		break;
	case OP_CONNECT:
		on_connect(c, cqe->res);
		break;
	case OP_LTIMEOUT:
		on_connect_timeout(c);
		break;
	}
	c->refs--;
	conn_maybe_free(c);
}

static void drain_begin(struct worker *w)
{
	w->draining = true;
	w->drain_deadline = w->now + w->agent->cfg.drain_timeout_ms;
	listeners_drain(w);
	conns_drain(w);
}

static void tick(struct worker *w)
{
	struct tide_agent *a = w->agent;
	unsigned idle_ms;

	if (w->index == 0)
		tide_pool_maintain(a->pool);
	idle_ms = atomic_load_explicit(&a->idle_ms, memory_order_relaxed);
	if (idle_ms)
		conns_end_idle(w, idle_ms);
	conns_watch(w);
	lingers_tick(w);
	if (w->draining) {
		if (w->now >= w->drain_deadline) {
			conns_end_all(w, TIDE_END_DRAIN);
			lingers_end_all(w);
		}
		return;
	}
	listeners_arm(w);
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
	/* Each io_uring_enter() then skips looking the ring's descriptor up (Linux 5.18+;
	 * without it, the plain descriptor). */
	io_uring_register_ring_fd(&w->ring);
	w->defer = params.flags & IORING_SETUP_DEFER_TASKRUN;
	w->bundles = (params.features & IORING_FEAT_RECVSEND_BUNDLE) &&
		     !(a->cfg.flags & TIDE_AGENT_NO_BUNDLE);
	w->inc = !(a->cfg.flags & TIDE_AGENT_NO_INCREMENTAL);
	w->mshot_lim = !(a->cfg.flags & TIDE_AGENT_NO_RECV_LIMIT);
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -errno;

	snprintf(name, sizeof(name), "worker%u", w->index);
	memset(&uc, 0, sizeof(uc));
	uc.name = name;
	uc.quota = a->cfg.worker_quota;
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
	listeners_arm(w);
	wake_arm(w);
	io_uring_submit(&w->ring);
	return 0;
}

static void worker_teardown(struct worker *w)
{
	pthread_mutex_lock(&w->post_lock);
	w->ended = true;
	pthread_mutex_unlock(&w->post_lock);
	posts_run(w); /* posted before the end: run, so what they carry is not lost */
	ring_drop(w);
	tide_pool_flush_cache(w->agent->pool);
	if (w->ring_ok) {
		io_uring_queue_exit(&w->ring);
		w->ring_ok = false;
	}
	spares_free(w);
	slabs_free(w);
	lingers_end_all(w);
	ring_free(w);
	timers_free(w);
}

/* How long the loop may wait: until the tick or the next timer. */
static void wait_time(struct worker *w, uint64_t timer_ms, struct __kernel_timespec *ts)
{
	uint64_t ms = w->next_tick > w->now ? w->next_tick - w->now : 0;

	if (timer_ms < ms)
		ms = timer_ms;
	ts->tv_sec = (long long)(ms / 1000);
	ts->tv_nsec = (long long)(ms % 1000) * 1000000;
}

/* Stop asked: drain once; a second stop (or the deadline, on the tick) ends what is left. */
static void stop_check(struct worker *w)
{
	int stop = atomic_load_explicit(&w->agent->stop, memory_order_relaxed);

	if (stop && !w->draining)
		drain_begin(w);
	if (stop > 1 && w->nconns)
		conns_end_all(w, TIDE_END_DRAIN);
	if (stop > 1)
		lingers_end_all(w);
}

static void worker_loop(struct worker *w)
{
	struct tide_agent *a = w->agent;
	struct __kernel_timespec ts;
	uint64_t timer_ms = UINT64_MAX;

	if (a->cfg.worker_start)
		a->cfg.worker_start((struct tide_worker *)w, a->cfg.worker_arg);
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		stop_check(w);
		if (w->draining && !w->nconns && !w->nlinger && !accepts_armed(w))
			break;
		ring_publish(w);
		wait_time(w, timer_ms, &ts);
		batch_wait(w, &ts);
		io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		w->now = now_ms();
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			seen++;
		}
		io_uring_cq_advance(&w->ring, seen);
		if (w->batch)
			batch_check(w);
		timer_ms = timers_run(w);
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
	if (a->cfg.worker_stop)
		a->cfg.worker_stop((struct tide_worker *)w, a->cfg.worker_arg);
	frees_flush(w);
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
	tls_worker = w;
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
	tls_worker = NULL;
	atomic_fetch_sub_explicit(&a->running, 1, memory_order_release);
	return NULL;
}
