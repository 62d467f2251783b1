/* SPDX-License-Identifier: MIT */
/*
 * conn.c - connections and forwarding: pairs, their flows, receives, sends, backpressure,
 * fair memory, half-close, resets, idle timeout and draining.
 *
 * A connection is a "pair": the client socket and, when relaying, the upstream socket, with
 * one "flow" per direction (echo: one flow from the client back to itself). A flow is a queue
 * of received buffers (segs) waiting to be sent to its destination, in order. Its source has
 * a receive armed that picks a buffer from the worker's ring (ring.c). The upstream connect
 * is upstream.c's. At most one send per flow
 * is in flight, built from the head of the queue (adjacent buffers coalesce into one iovec,
 * and pool buffers are often adjacent because the pool hands out the lowest addresses
 * first); a short send just leaves the rest at the head. A fully sent buffer goes back to
 * ring.c with buf_put().
 *
 * Memory (the bound and the sizing rule are in the README): one receive at a time per flow,
 * for at most flow_room() bytes, so a direction never queues more than flow_limit. Where the
 * kernel has it (recent ones), the receive is a multishot (with recv bundles) that ends by itself
 * once that many bytes came (sqe->optlen), which also stops a bundle's retry from appending
 * past it; elsewhere it is a single receive of one buffer, since a bundle there may take
 * more than asked. The worker's queues together hold at most
 * `budget` bytes of blocks (its share of the pool's max_size less its ring); the last
 * quarter of it, the reserve, only serves flows that hold less than `small` (two blocks), so
 * connections that cannot send (slow readers) never take what a new connection needs to make
 * progress. Past flow_limit or the budget a flow stops reading; its own sends re-arm it, or,
 * holding nothing, it waits on the waiters list.
 *
 * Endings: every accepted byte is delivered, or its peer learns it was not.
 *  - FIN is passed on (shutdown SHUT_WR) only after everything before it was sent.
 *  - A socket fails (a send error, a receive error, or a reset noticed after its FIN by the
 *    tick's watch, see pairs_watch()): the direction toward it ends (its queue is dropped and
 *    its source no longer read); the direction from it still delivers what was received
 *    (a reset socket's receive queue stays readable), then the pair is reset, not closed.
 *  - A pair whose directions all ended by FIN closes normally; if any ended by a failure,
 *    the idle timeout, the drain deadline or a second stop cut it, both sides get a reset.
 *
 * Invariants:
 *  - A pair is freed only when it is closing and no operation on it is in flight (refs == 0);
 *    a flow on the waiters list (F_WAIT) and a pair on the watch list hold a reference too.
 *  - Segs are dropped only when no send is in flight on their flow (the kernel reads them).
 *  - An idle connection holds no buffer: a receive with buffer select takes one only when
 *    data is there.
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
#include <stdatomic.h>
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
	p->active_ms = (uint32_t)w->now;
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

static void flow_wait(struct worker *w, struct flow *f)
{
	f->flags |= F_WAIT;
	f->wait_next = w->waiters;
	w->waiters = f;
	pair_of(f)->refs++;
}

/* Cancel the flow's armed receive; its completion says when it is gone. */
static void recv_cancel(struct worker *w, struct pair *p, struct flow *f)
{
	cancel_ud(w, UD(p, OP_RECV + f->idx));
	f->flags |= F_CANCEL;
}

void pair_close(struct worker *w, struct pair *p, bool abort)
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

/*
 * While draining, a pair one of whose directions ended cleanly (FIN passed on) and whose
 * other direction has nothing queued is done: the side that sent FIN ended the exchange, and
 * nothing accepted is left undelivered. Close it normally rather than wait for the deadline.
 */
static void pair_drain_check(struct worker *w, struct pair *p)
{
	bool shut = false;

	if (!w->draining || p->closing || p->failed)
		return;
	for (unsigned i = 0; i < p->nflows; i++) {
		const struct flow *f = &p->flow[i];

		if (f->head || f->send || (f->flags & (F_ERR | F_DEAD)))
			return;
		shut = shut || (f->flags & F_SHUT);
	}
	if (shut)
		pair_close(w, p, false);
}

/* Every direction has ended: close, with a reset if any of them ended by a failure. */
static void pair_check_end(struct worker *w, struct pair *p)
{
	bool cut = p->failed;

	if (p->closing)
		return;
	for (unsigned i = 0; i < p->nflows; i++) {
		if (!(p->flow[i].flags & (F_SHUT | F_DEAD))) {
			pair_drain_check(w, p);
			return;
		}
		if (p->flow[i].flags & F_DEAD)
			cut = true;
	}
	pair_close(w, p, cut);
}

/*
 * Bytes flow f may receive now: what its flow_limit leaves, and its share of the worker's
 * budget, in three tiers:
 *  - holding nothing (new, idle, or keeping up): `small` at most, whatever the budget says;
 *    the reserve is there for this, and only the pool's own limit stops it. It is not counted
 *    as promised, so idle connections with a receive armed hold nothing back.
 *  - holding less than `small`: up to `small` in all, while the worker holds less than its
 *    budget outside the reserve.
 *  - holding more (its destination is slower than its source): half of what is free outside
 *    the reserve, counted as promised (w->armed) while its receive is armed, so that such
 *    flows together stay out of the reserve.
 * 0 when the flow must wait: for its own sends, or, holding nothing, on the waiters list.
 */
static uint32_t flow_room(const struct worker *w, const struct flow *f)
{
	size_t held = (size_t)(w->owned - w->in_ring) * w->bs + w->armed;
	size_t own, share, open = w->budget - w->reserve;

	if (f->queued >= w->limit)
		return 0;
	own = w->limit - f->queued;
	if (!f->queued)
		return (uint32_t)(own < w->small ? own : w->small);
	if (held >= open)
		return 0;
	if (f->queued < w->small)
		return (uint32_t)(w->small - f->queued);
	share = (open - held) / 2;
	if (share < w->bs)
		return 0;
	return (uint32_t)(own < share ? own : share);
}

static void flow_arm(struct worker *w, struct pair *p, struct flow *f)
{
	struct io_uring_sqe *sqe;
	uint32_t room;

	if (p->closing || !p->connected || (f->flags & (F_ARMED | F_EOF | F_WAIT | F_DEAD)))
		return;
	room = flow_room(w, f);
	if (!room) {
		STAT_ADD(w, pauses, 1);
		if (!f->queued)
			flow_wait(w, f); /* no send of its own will wake it */
		return;
	}
	sqe = sqe_get(w);
	if (w->mshot_lim) {
		/* Multishot, ending by itself after room bytes (sqe->optlen). */
		io_uring_prep_recv_multishot(sqe, p->fd[f->src], NULL, 0, 0);
		sqe->file_index = room;
		if (w->bundles)
			sqe->ioprio |= IORING_RECVSEND_BUNDLE;
	} else {
		io_uring_prep_recv(sqe, p->fd[f->src], NULL, room, 0);
	}
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(p, OP_RECV + f->idx));
	f->flags |= F_ARMED;
	/* Promised: what it may bring, and the partly used block it may start in. */
	f->want = f->queued >= w->small ? room + (uint32_t)w->bs : 0;
	w->armed += f->want;
	p->refs++;
}

static void flow_send(struct worker *w, struct pair *p, struct flow *f)
{
	struct io_uring_sqe *sqe;
	struct sendop *op;
	struct seg *s;
	unsigned n = 0;
	size_t total = 0;

	if (f->send || !f->head || p->closing || (f->flags & F_DEAD))
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

/*
 * The source ended and everything before it went out: pass a FIN on, or, when the source
 * failed, reset the pair (its peer must not take a cut stream for a complete one).
 */
static void flow_maybe_shut(struct worker *w, struct pair *p, struct flow *f)
{
	if (!(f->flags & F_EOF) || (f->flags & (F_SHUT | F_DEAD)) || f->head || f->send ||
	    p->closing)
		return;
	if (f->flags & F_ERR) {
		pair_close(w, p, true);
		return;
	}
	shutdown(p->fd[f->dst], SHUT_WR);
	f->flags |= F_SHUT;
	pair_check_end(w, p);
}

/* The flow's destination failed: drop its queue (once no send reads it), stop its source. */
static void flow_kill(struct worker *w, struct pair *p, struct flow *f)
{
	f->flags |= F_DEAD;
	if (f->flags & F_WAIT)
		waiters_remove(w, f);
	if ((f->flags & F_ARMED) && !(f->flags & F_CANCEL))
		recv_cancel(w, p, f);
	if (f->send)
		cancel_ud(w, UD(p, OP_SEND + f->idx)); /* on_send drops the queue */
	else
		flow_drop_all(w, f);
}

/*
 * Socket `side` of p failed: end the direction toward it; the one from it goes on reading
 * what the socket still holds (until its receive returns 0 or an error) and, once that is
 * sent, resets the pair instead of passing a FIN on.
 */
static void sock_fail(struct worker *w, struct pair *p, unsigned side)
{
	if (!p->failed)
		STAT_ADD(w, reset, 1);
	p->failed |= (uint8_t)(1u << side);
	for (unsigned i = 0; i < p->nflows; i++) {
		struct flow *f = &p->flow[i];

		if (f->dst == side && !(f->flags & F_DEAD))
			flow_kill(w, p, f);
		else if (f->src == side)
			f->flags |= F_ERR;
	}
	for (unsigned i = 0; i < p->nflows; i++)
		flow_maybe_shut(w, p, &p->flow[i]);
	pair_check_end(w, p);
}

/*
 * Did socket `side`, whose read side ended, end by a reset? A pending error says so; so does
 * a closed TCP state while we have not sent our FIN on it (a clean end leaves CLOSE_WAIT).
 */
static bool sock_was_reset(const struct pair *p, unsigned side)
{
	struct tcp_info ti;
	socklen_t len = sizeof(int);
	int err = 0;

	if (!getsockopt(p->fd[side], SOL_SOCKET, SO_ERROR, &err, &len) && err)
		return true;
	for (unsigned i = 0; i < p->nflows; i++)
		if (p->flow[i].dst == side && (p->flow[i].flags & F_SHUT))
			return false;
	len = sizeof(ti);
	return !getsockopt(p->fd[side], IPPROTO_TCP, TCP_INFO, &ti, &len) &&
	       ti.tcpi_state == TCP_CLOSE;
}

/* Queue what a receive of res bytes put into ring entries, from the first buffer id on. */
static void recv_take(struct worker *w, struct pair *p, struct flow *f, size_t left,
		      unsigned cflags)
{
	unsigned pos = cflags >> IORING_CQE_BUFFER_SHIFT;
	bool keep = !p->closing && !(f->flags & F_DEAD);

	/*
	 * Each entry is filled from where the kernel left it (0 unless the ring is
	 * incremental) to its end, the last one possibly only in part. A buffer the kernel is
	 * done with leaves the ring (its share of the references goes); one it will fill more
	 * stays.
	 */
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
			done = left || off + take == w->bs || !(cflags & IORING_CQE_F_BUF_MORE);
		}
		if (keep && (s = seg_get(w))) {
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
}

void on_recv(struct worker *w, struct pair *p, struct flow *f, int res, unsigned cflags)
{
	bool more = cflags & IORING_CQE_F_MORE;

	if (res > 0 && (cflags & IORING_CQE_F_BUFFER)) {
		uint32_t kept = (uint32_t)res < f->want ? (uint32_t)res : f->want;

		recv_take(w, p, f, (size_t)res, cflags);
		STAT_ADD(w, bytes_in, (uint64_t)res);
		w->last_consume = w->now;
		f->want -= kept; /* what arrived is held now, no longer promised */
		w->armed -= kept;
	}
	if (!more) {
		f->flags &= ~(F_ARMED | F_CANCEL);
		w->armed -= f->want;
		f->want = 0;
		p->refs--;
	}
	if (p->closing) {
		if (!more)
			pair_maybe_free(w, p);
		return;
	}
	if (res > 0) {
		touch(w, p);
		flow_send(w, p, f);
		flow_arm(w, p, f);
	} else if (more) {
		return;
	} else if (res == -EINVAL && w->mshot_lim) {
		w->mshot_lim = w->bundles = false; /* no byte limit on multishot here */
		flow_arm(w, p, f);
	} else if (res == 0 && !(f->flags & F_DEAD)) {
		if (!(f->flags & F_ERR) && sock_was_reset(p, f->src))
			sock_fail(w, p, f->src);
		f->flags |= F_EOF;
		flow_maybe_shut(w, p, f);
		pair_check_end(w, p);
		if (!p->closing && !p->watched && p->nflows == 2) {
			p->watched = 1; /* its later reset must not go unnoticed */
			p->refs++;
			f->wait_next = w->watch; /* an ended flow never waits for buffers */
			w->watch = f;
		}
	} else if (res == -ENOBUFS) {
		ring_starved(w);
		flow_wait(w, f);
	} else if (res == -ECANCELED || res == -EINTR) {
		flow_arm(w, p, f);
	} else if (res < 0) {
		sock_fail(w, p, f->src); /* nothing was left to read: an error comes last */
		f->flags |= F_EOF;
		flow_maybe_shut(w, p, f);
		pair_check_end(w, p);
	}
}

void on_send(struct worker *w, struct pair *p, struct flow *f, int res)
{
	struct sendop *op = f->send;
	size_t left;

	f->send = NULL;
	p->refs--;
	sendop_put(w, op);
	if (res < 0 || (f->flags & F_DEAD)) {
		if (p->closing) {
			pair_maybe_free(w, p);
		} else if (res < 0 && res != -ECANCELED) {
			sock_fail(w, p, f->dst);
		} else {
			flow_drop_all(w, f);
			pair_check_end(w, p);
		}
		return;
	}
	if ((size_t)res < op->len)
		STAT_ADD(w, short_sends, 1);
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
	if (!p->closing && f->queued <= w->limit / 2)
		flow_arm(w, p, f);
	pair_drain_check(w, p);
}

void pair_start(struct worker *w, struct pair *p)
{
	p->connected = 1;
	for (unsigned i = 0; i < p->nflows; i++)
		flow_arm(w, p, &p->flow[i]);
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
		STAT_ADD(w, rejected, 1); /* counted before the client can see the close */
		close(fd);
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
	p->active_ms = (uint32_t)w->now;
	lru_add_tail(w, p);
	set_nodelay(fd);
	if (a->echo)
		pair_start(w, p);
	else
		upstream_connect(w, p);
}

void waiters_wake(struct worker *w)
{
	struct flow *list = w->waiters;

	if (!list || !w->in_ring)
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
	}
}

/*
 * Draining starts: the pairs not yet connected are reset (nothing of theirs was relayed),
 * those already half-ended with nothing queued close (pair_drain_check()); the others go on
 * in both directions until they end or the deadline resets them.
 */
void pairs_drain(struct worker *w)
{
	struct pair *p, *next;

	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		if (!p->connected)
			pair_close(w, p, true);
		else
			pair_drain_check(w, p);
	}
}

/* The drain timed out, or a second stop came: reset whatever is still open. */
void pairs_abort_all(struct worker *w)
{
	struct pair *p, *next;

	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		pair_close(w, p, true);
	}
}

/*
 * Close the pairs idle for timeout_ms or longer (the LRU list's head is the oldest), with a
 * reset: the timeout cuts whatever was still to come, or still queued.
 */
void pairs_close_idle(struct worker *w, unsigned timeout_ms)
{
	struct pair *p, *next;

	for (p = w->lru.next; p != &w->lru; p = next) {
		next = p->next;
		if ((uint32_t)((uint32_t)w->now - p->active_ms) < timeout_ms)
			break;
		STAT_ADD(w, idle_closed, 1);
		pair_close(w, p, true);
	}
}

/*
 * A socket that sent FIN has no receive armed, so its reset (the peer crashed, or closed with
 * data unread) would go unnoticed while the other direction is quiet. On each tick, look at
 * the half-closed sockets of the pairs on the watch list; a closed pair leaves it.
 */
void pairs_watch(struct worker *w)
{
	struct flow **pp = &w->watch;

	while (*pp) {
		struct flow *f = *pp;
		struct pair *p = pair_of(f);

		if (p->closing) {
			*pp = f->wait_next;
			p->watched = 0;
			p->refs--;
			pair_maybe_free(w, p);
			continue;
		}
		pp = &f->wait_next;
		for (unsigned i = 0; i < p->nflows && !p->closing; i++) {
			struct flow *g = &p->flow[i];

			if ((g->flags & (F_EOF | F_ERR)) == F_EOF && sock_was_reset(p, g->src))
				sock_fail(w, p, g->src);
		}
	}
}

/* Free the spare segs and sendops (at worker teardown). */
void spares_free(struct worker *w)
{
	spare_free_all(&w->spare_segs);
	spare_free_all(&w->spare_sendops);
}
