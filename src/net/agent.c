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

static struct pair *pair_of(struct flow *f)
{
	return (struct pair *)((char *)(f - f->idx) - offsetof(struct pair, flow));
}

/* ---------------------------------------------------------------- pairs -- */

static void lru_del(struct pair *p)
{
	p->prev->next = p->next;
	p->next->prev = p->prev;
	p->prev = p->next = p;
}

static void lru_add_tail(struct worker *w, struct pair *p)
{
	p->prev = w->lru.prev;
	p->next = &w->lru;
	w->lru.prev->next = p;
	w->lru.prev = p;
}

static void touch(struct worker *w, struct pair *p)
{
	p->active_ms = w->now;
	if (w->lru.prev != p) {
		lru_del(p);
		lru_add_tail(w, p);
	}
}

static void *spare_get(struct spare **list, size_t size)
{
	struct spare *s = *list;

	if (s) {
		*list = s->next;
		return s;
	}
	return malloc(size);
}

static void spare_put(struct spare **list, void *obj)
{
	struct spare *s = obj;

	s->next = *list;
	*list = s;
}

static void spare_free_all(struct spare **list)
{
	while (*list) {
		struct spare *s = *list;

		*list = s->next;
		free(s);
	}
}

static struct seg *seg_get(struct worker *w)
{
	return spare_get(&w->spare_segs, sizeof(struct seg));
}

static void seg_put(struct worker *w, struct seg *s)
{
	spare_put(&w->spare_segs, s);
}

static struct sendop *sendop_get(struct worker *w)
{
	return spare_get(&w->spare_sendops, sizeof(struct sendop));
}

static void sendop_put(struct worker *w, struct sendop *op)
{
	spare_put(&w->spare_sendops, op);
}

static void flow_drop_all(struct worker *w, struct flow *f)
{
	struct seg *s, *next;

	for (s = f->head; s; s = next) {
		next = s->next;
		buf_put(w, s->buf);
		seg_put(w, s);
	}
	f->head = f->tail = NULL;
	f->queued = 0;
}

static void pair_maybe_free(struct worker *w, struct pair *p)
{
	if (!p->closing || p->refs)
		return;
	for (unsigned i = 0; i < p->nflows; i++)
		flow_drop_all(w, &p->flow[i]);
	for (unsigned i = 0; i < 2; i++) {
		if (p->fd[i] < 0)
			continue;
		if (p->abort) {
			struct linger lg = {1, 0};

			setsockopt(p->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		close(p->fd[i]);
	}
	free(p);
	w->npairs--;
}

static void waiters_remove(struct worker *w, struct flow *f)
{
	struct flow **pp;

	for (pp = &w->waiters; *pp; pp = &(*pp)->wait_next)
		if (*pp == f) {
			*pp = f->wait_next;
			f->flags &= ~F_WAIT;
			pair_of(f)->refs--;
			return;
		}
}

/* Close a pair: cancel what is in flight; it is freed when the last completion is seen. */
static void pair_close(struct worker *w, struct pair *p, bool abort)
{
	if (p->closing)
		return;
	p->closing = 1;
	p->abort = abort;
	lru_del(p);
	atomic_fetch_sub_explicit(&w->agent->conns, 1, memory_order_relaxed);
	for (unsigned i = 0; i < p->nflows; i++)
		if (p->flow[i].flags & F_WAIT)
			waiters_remove(w, &p->flow[i]);
	for (unsigned i = 0; i < 2; i++) {
		if (p->fd[i] < 0 || !p->refs)
			continue;
		struct io_uring_sqe *sqe = sqe_get(w);

		io_uring_prep_cancel_fd(sqe, p->fd[i], IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, 0);
	}
	pair_maybe_free(w, p);
}

/* Every direction ended by FIN and flushed: the pair is done. */
static void pair_maybe_done(struct worker *w, struct pair *p)
{
	for (unsigned i = 0; i < p->nflows; i++)
		if (!(p->flow[i].flags & F_SHUT))
			return;
	pair_close(w, p, false);
}

/* While draining: close the pair once nothing is queued or being sent. */
static void pair_drain_check(struct worker *w, struct pair *p)
{
	if (!p->draining || p->closing)
		return;
	for (unsigned i = 0; i < p->nflows; i++)
		if (p->flow[i].head || p->flow[i].send)
			return;
	pair_close(w, p, false);
}

static void flow_arm(struct worker *w, struct pair *p, struct flow *f)
{
	struct io_uring_sqe *sqe;

	if (p->closing || p->draining || !p->connected || (f->flags & (F_ARMED | F_EOF | F_WAIT)) ||
	    f->queued >= w->limit)
		return;
	sqe = sqe_get(w);
	io_uring_prep_recv_multishot(sqe, p->fd[f->src], NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	if (w->bundles) {
		sqe->ioprio |= IORING_RECVSEND_BUNDLE;
		sqe->len = w->recv_len;
	}
	io_uring_sqe_set_data64(sqe, UD(p, OP_RECV + f->idx));
	f->flags |= F_ARMED;
	p->refs++;
}

/* Cancel the flow's armed multishot receive; its last completion says when it is gone. */
static void recv_cancel(struct worker *w, struct pair *p, struct flow *f)
{
	cancel_ud(w, UD(p, OP_RECV + f->idx));
	f->flags |= F_CANCEL;
}

static void flow_send(struct worker *w, struct pair *p, struct flow *f)
{
	struct io_uring_sqe *sqe;
	struct sendop *op;
	struct seg *s;
	unsigned n = 0;
	size_t total = 0;

	if (f->send || !f->head || p->closing)
		return;
	op = sendop_get(w);
	if (!op) {
		pair_close(w, p, true);
		return;
	}
	for (s = f->head; s; s = s->next) {
		char *b = s->buf + s->off;

		if (n && (char *)op->iov[n - 1].iov_base + op->iov[n - 1].iov_len == b) {
			op->iov[n - 1].iov_len += s->len;
		} else {
			if (n == SEND_IOV)
				break;
			op->iov[n].iov_base = b;
			op->iov[n].iov_len = s->len;
			n++;
		}
		total += s->len;
	}
	op->len = total;
	sqe = sqe_get(w);
	if (n == 1) {
		io_uring_prep_send(sqe, p->fd[f->dst], op->iov[0].iov_base, op->iov[0].iov_len,
				   MSG_NOSIGNAL);
	} else {
		memset(&op->msg, 0, sizeof(op->msg));
		op->msg.msg_iov = op->iov;
		op->msg.msg_iovlen = n;
		io_uring_prep_sendmsg(sqe, p->fd[f->dst], &op->msg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, UD(p, OP_SEND + f->idx));
	f->send = op;
	p->refs++;
}

/* The source sent FIN and everything before it went out: pass the FIN on. */
static void flow_maybe_shut(struct worker *w, struct pair *p, struct flow *f)
{
	if (!(f->flags & F_EOF) || (f->flags & F_SHUT) || f->head || f->send || p->closing)
		return;
	shutdown(p->fd[f->dst], SHUT_WR);
	f->flags |= F_SHUT;
	pair_maybe_done(w, p);
}

static void on_recv(struct worker *w, struct pair *p, struct flow *f, int res, unsigned cflags)
{
	if (res > 0 && (cflags & IORING_CQE_F_BUFFER)) {
		/*
		 * The data fills ring entries from the first buffer id on, in order: each from
		 * where the kernel left it (0 unless the ring is incremental) to its end, the
		 * last one possibly only in part. A buffer the kernel is done with leaves the
		 * ring (its share of the references goes); one it will fill more stays.
		 */
		unsigned pos = cflags >> IORING_CQE_BUFFER_SHIFT;
		size_t left = (size_t)res;

		while (left) {
			unsigned slot = pos & w->mask;
			char *buf = w->bid_addr[slot];
			size_t off = w->boff[slot];
			size_t take = left < w->bs - off ? left : w->bs - off;
			bool done = true;
			struct seg *s;

			left -= take;
			if (w->inc) {
				w->boff[slot] = (uint32_t)(off + take);
				done = left || off + take == w->bs ||
				       !(cflags & IORING_CQE_F_BUF_MORE);
			}
			if (!p->closing && (s = seg_get(w))) {
				(*buf_refs(w, buf))++;
				s->buf = buf;
				s->off = (uint32_t)off;
				s->len = (uint32_t)take;
				s->next = NULL;
				if (f->tail)
					f->tail->next = s;
				else
					f->head = s;
				f->tail = s;
				f->queued += (uint32_t)take;
			}
			if (!done)
				break;
			w->in_ring--;
			buf_put(w, buf);
			pos++;
		}
		STAT_ADD(w, bytes_in, (uint64_t)res);
		w->last_consume = w->now;
		if (!p->closing) {
			touch(w, p);
			flow_send(w, p, f);
			if (f->queued >= w->limit && (cflags & IORING_CQE_F_MORE) &&
			    !(f->flags & F_CANCEL)) {
				recv_cancel(w, p, f);
				STAT_ADD(w, pauses, 1);
			}
		}
	}
	if (cflags & IORING_CQE_F_MORE)
		return;
	f->flags &= ~(F_ARMED | F_CANCEL);
	p->refs--;
	if (p->closing) {
		pair_maybe_free(w, p);
		return;
	}
	if (res == 0) {
		f->flags |= F_EOF;
		flow_maybe_shut(w, p, f);
	} else if (res == -ENOBUFS) {
		ring_starved(w);
		f->flags |= F_WAIT;
		f->wait_next = w->waiters;
		w->waiters = f;
		p->refs++;
	} else if (res == -EINVAL && w->recv_len) {
		w->recv_len = 0; /* this kernel takes no length on a multishot receive */
		flow_arm(w, p, f);
	} else if (res < 0 && res != -ECANCELED) {
		STAT_ADD(w, reset, 1);
		pair_close(w, p, true);
	} else {
		flow_arm(w, p, f);
		pair_drain_check(w, p);
	}
}

static void on_send(struct worker *w, struct pair *p, struct flow *f, int res)
{
	struct sendop *op = f->send;
	size_t left;

	f->send = NULL;
	p->refs--;
	if (res < 0) {
		sendop_put(w, op);
		if (!p->closing)
			STAT_ADD(w, reset, 1);
		pair_close(w, p, true);
		return;
	}
	if ((size_t)res < op->len)
		STAT_ADD(w, short_sends, 1);
	sendop_put(w, op);
	STAT_ADD(w, bytes_out, (uint64_t)res);
	left = (size_t)res;
	while (left && f->head) {
		struct seg *s = f->head;
		size_t take = left < s->len ? left : s->len;

		s->off += (uint32_t)take;
		s->len -= (uint32_t)take;
		f->queued -= (uint32_t)take;
		left -= take;
		if (!s->len) {
			f->head = s->next;
			if (!f->head)
				f->tail = NULL;
			buf_put(w, s->buf);
			seg_put(w, s);
		}
	}
	if (p->closing) {
		pair_maybe_free(w, p);
		return;
	}
	touch(w, p);
	if (f->head)
		flow_send(w, p, f);
	else
		flow_maybe_shut(w, p, f);
	if (p->closing)
		return;
	if (!(f->flags & F_ARMED) && f->queued <= w->limit / 2)
		flow_arm(w, p, f);
	pair_drain_check(w, p);
}

static void on_connect(struct worker *w, struct pair *p, int res)
{
	p->refs--;
	if (p->closing) {
		pair_maybe_free(w, p);
		return;
	}
	if (res < 0) {
		STAT_ADD(w, upstream_failures, 1);
		pair_close(w, p, true);
		return;
	}
	p->connected = 1;
	flow_arm(w, p, &p->flow[0]);
	flow_arm(w, p, &p->flow[1]);
}

static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void on_accept(struct worker *w, int fd)
{
	struct tide_agent *a = w->agent;
	struct pair *p;
	uint64_t n;

	n = atomic_fetch_add_explicit(&a->conns, 1, memory_order_relaxed) + 1;
	if (w->draining || (a->cfg.max_conns && n > a->cfg.max_conns) ||
	    !(p = calloc(1, sizeof(*p)))) {
		atomic_fetch_sub_explicit(&a->conns, 1, memory_order_relaxed);
		close(fd);
		STAT_ADD(w, rejected, 1);
		return;
	}
	STAT_ADD(w, accepted, 1);
	w->npairs++;
	p->fd[0] = fd;
	p->fd[1] = -1;
	p->nflows = a->echo ? 1 : 2;
	p->flow[0].src = 0;
	p->flow[0].dst = a->echo ? 0 : 1;
	p->flow[0].idx = 0;
	p->flow[1].src = 1;
	p->flow[1].dst = 0;
	p->flow[1].idx = 1;
	p->active_ms = w->now;
	lru_add_tail(w, p);
	set_nodelay(fd);
	if (a->echo) {
		p->connected = 1;
		flow_arm(w, p, &p->flow[0]);
		return;
	}
	p->fd[1] = socket(a->up.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (p->fd[1] < 0) {
		STAT_ADD(w, upstream_failures, 1);
		pair_close(w, p, true);
		return;
	}
	set_nodelay(p->fd[1]);
	struct io_uring_sqe *sqe = sqe_get(w);

	io_uring_prep_connect(sqe, p->fd[1], (struct sockaddr *)&a->up, a->uplen);
	io_uring_sqe_set_data64(sqe, UD(p, OP_CONNECT));
	p->refs++;
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

static void waiters_wake(struct worker *w)
{
	struct flow *list = w->waiters;

	if (!list || (!w->in_ring && !w->draining))
		return;
	w->waiters = NULL;
	while (list) {
		struct flow *f = list;
		struct pair *p = pair_of(f);

		list = f->wait_next;
		f->flags &= ~F_WAIT;
		p->refs--;
		if (p->closing) {
			pair_maybe_free(w, p);
			continue;
		}
		flow_arm(w, p, f);
		pair_drain_check(w, p);
	}
}

static void drain_begin(struct worker *w)
{
	struct pair *p, *next;

	w->draining = true;
	w->drain_deadline = w->now + (w->agent->cfg.drain_timeout_ms ?: 2000);
	if (w->accept_armed)
		cancel_ud(w, UD(w, OP_ACCEPT));
	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		p->draining = 1;
		if (!p->connected) {
			pair_close(w, p, true);
			continue;
		}
		for (unsigned i = 0; i < p->nflows; i++) {
			struct flow *f = &p->flow[i];

			if ((f->flags & F_ARMED) && !(f->flags & F_CANCEL))
				recv_cancel(w, p, f);
		}
		pair_drain_check(w, p);
	}
	waiters_wake(w);
}

static void tick(struct worker *w)
{
	struct tide_agent *a = w->agent;
	struct pair *p, *next;

	if (w->index == 0)
		tide_pool_maintain(a->pool);
	if (w->draining) {
		if (w->now >= w->drain_deadline)
			for (p = w->lru.next; p != &w->lru; p = next) {
				next = p->next;
				pair_close(w, p, true);
			}
		return;
	}
	if (!w->accept_armed)
		accept_arm(w);
	if (a->cfg.idle_timeout_ms)
		for (p = w->lru.next; p != &w->lru; p = next) {
			next = p->next;
			if (w->now - p->active_ms < a->cfg.idle_timeout_ms)
				break;
			STAT_ADD(w, idle_closed, 1);
			pair_close(w, p, false);
		}
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
	spare_free_all(&w->spare_segs);
	spare_free_all(&w->spare_sendops);
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
