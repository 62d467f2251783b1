/* SPDX-License-Identifier: MIT */
/*
 * conn.c - connections and forwarding: pairs, their flows, receives, sends, backpressure,
 * half-close, resets, idle timeout and draining.
 *
 * A connection is a "pair": the client socket and, when relaying, the upstream socket, with
 * one "flow" per direction (echo: one flow from the client back to itself). A flow is a queue
 * of received buffers (segs) waiting to be sent to its destination, in order. Its source has
 * a multishot receive armed that picks buffers from the worker's ring (ring.c); with recv
 * bundles one completion carries several consecutive ring entries. At most one send per flow
 * is in flight, built from the head of the queue (adjacent buffers coalesce into one iovec,
 * and pool buffers are often adjacent because the pool hands out the lowest addresses
 * first); a short send just leaves the rest at the head. A fully sent buffer goes back to
 * ring.c with buf_put().
 *
 * Invariants:
 *  - A flow's queued bytes stay under flow_limit plus one receive: past it the receive is
 *    cancelled (backpressure), and re-armed when sends bring the queue under half of it. A
 *    bundle receive is capped at flow_limit bytes where the kernel takes a length (else one
 *    receive may take what the socket holds, up to its receive buffer).
 *  - A pair is freed only when it is closing and no operation on it is in flight (refs == 0);
 *    a flow on the waiters list (F_WAIT) holds a reference too.
 *  - An idle connection holds no buffer: a multishot receive without data takes none.
 *  - FIN is passed on (shutdown SHUT_WR) only after everything before it was sent; a pair
 *    whose every direction is shut closes normally, an error on either side resets both.
 *  - The worker's LRU list is in order of last activity, so the idle timeout looks only at
 *    its head.
 *
 * Left out on purpose: fixed-buffer sends through the pool's conversion hook. A profile of
 * the relay under iperf3 puts the kernel's per-send cost of taking a user buffer (io_sendmsg,
 * its prep, copy_iovec_from_user) under 0.5 % of the relay's CPU; copies and TCP are the
 * rest, and the hardened-usercopy check that fixed buffers would skip sits on the receive
 * side. Registering would pin every page of the unreserved portion (purge could no longer
 * give pages back) and, with SINGLE_ISSUER rings, would need the hook, which runs on the
 * thread that converts, to hand work to each worker.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"

static struct pair *pair_of(struct flow *f)
{
	return (struct pair *)((char *)(f - f->idx) - offsetof(struct pair, flow));
}

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

void pair_maybe_free(struct worker *w, struct pair *p)
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

/* Cancel the flow's armed multishot receive; its last completion says when it is gone. */
static void recv_cancel(struct worker *w, struct pair *p, struct flow *f)
{
	cancel_ud(w, UD(p, OP_RECV + f->idx));
	f->flags |= F_CANCEL;
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
	/*
	 * Cancel each operation by its user_data, which the kernel finds by hash: a cancel by
	 * file descriptor scans every pending request, so closing n pairs at once cost n^2.
	 */
	for (unsigned i = 0; i < p->nflows && p->refs; i++) {
		struct flow *f = &p->flow[i];

		if ((f->flags & F_ARMED) && !(f->flags & F_CANCEL))
			recv_cancel(w, p, f);
		if (f->send)
			cancel_ud(w, UD(p, OP_SEND + f->idx));
	}
	if (!p->connected && p->fd[1] >= 0 && p->refs)
		cancel_ud(w, UD(p, OP_CONNECT));
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

void on_recv(struct worker *w, struct pair *p, struct flow *f, int res, unsigned cflags)
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

void on_send(struct worker *w, struct pair *p, struct flow *f, int res)
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

void on_connect(struct worker *w, struct pair *p, int res)
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

void on_accept(struct worker *w, int fd)
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

void waiters_wake(struct worker *w)
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

/*
 * Draining starts: stop every pair's receives (a pair not yet connected is closed), close
 * those with nothing left to send, and let the flows waiting for buffers see the drain.
 */
void pairs_drain(struct worker *w)
{
	struct pair *p, *next;

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

/* The drain timed out: reset whatever is still open. */
void pairs_abort_all(struct worker *w)
{
	struct pair *p, *next;

	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		pair_close(w, p, true);
	}
}

/* Close the pairs idle for timeout_ms or longer (the LRU list's head is the oldest). */
void pairs_close_idle(struct worker *w, unsigned timeout_ms)
{
	struct pair *p, *next;

	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		if (w->now - p->active_ms < timeout_ms)
			break;
		STAT_ADD(w, idle_closed, 1);
		pair_close(w, p, false);
	}
}

/* Free the spare segs and sendops (at worker teardown). */
void spares_free(struct worker *w)
{
	spare_free_all(&w->spare_segs);
	spare_free_all(&w->spare_sendops);
}
