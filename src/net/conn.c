/* SPDX-License-Identifier: MIT */
/*
 * conn.c - connections: receives handed to the application, send queues, backpressure,
 * half-close, resets, the idle timeout and draining. Engine side; the public tide_conn_*
 * calls live here.
 *
 * A connection is one socket on one worker. Its receive is a multishot receive that picks
 * buffers from the worker's ring (ring.c); with recv bundles one completion carries several
 * consecutive ring entries. Each completion becomes an array of struct tide_buf, one
 * reference each (buf.c), given to ops->recv: the application owns them from then on. Its
 * send queue (struct txq, allocated only while it holds something) is a list of segs, each
 * with one reference to a pool block; at most one send is in flight, built from the head of
 * the queue (adjacent pieces coalesce into one iovec, and pool buffers are often adjacent
 * because the pool hands out the lowest addresses first); a short send leaves the rest at
 * the head; a piece fully sent drops its reference. A bundle receive asks for less than the
 * ring holds (ring_recv_cap()): one whose pick reaches the ring's tail ends the multishot.
 *
 * Endings (the contract of tide/net.h):
 *  - FIN is sent (shutdown SHUT_WR) only when the application asked for it and everything
 *    queued before went out; with a reset asked for instead, the connection ends RESET then.
 *  - A connection that sent FIN and got one, with nothing queued, ends CLEAN; every other
 *    ending resets the socket (SO_LINGER 0), so a peer never takes a cut for a clean end;
 *    the reset waits for the bytes still in the kernel's send queue (linger.c).
 *  - A failed send ends the sending side only (ops->send_error): the queue is dropped and
 *    the receive goes on, since a reset socket's receive queue stays readable; the
 *    connection ends RESET once the peer's data ends too.
 *  - A receive error (a reset from the peer) ends the connection RESET at once.
 *
 * Invariants:
 *  - A connection is freed only when it ended and nothing on it is in flight (refs == 0);
 *    a receive on the waiters list (F_WAIT) holds a reference, and so does a handler while
 *    it runs, so a callback that ends a connection never frees it under the caller.
 *  - An idle connection holds no buffer: a multishot receive without data takes none, and
 *    the txq is given back when the queue empties.
 *  - The worker's LRU list is in order of last activity, so the idle timeout looks only at
 *    its head. Every live connection is on it.
 */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_internal.h"

/* ---------------------------------------------------------------- lists -- */

static void lru_del(struct tide_conn *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->prev = c->next = c;
}

static void lru_add_tail(struct worker *w, struct tide_conn *c)
{
	c->prev = w->lru.prev;
	c->next = &w->lru;
	w->lru.prev->next = c;
	w->lru.prev = c;
}

void conn_touch(struct tide_conn *c)
{
	struct worker *w = conn_w(c);

	c->active = (uint32_t)w->now;
	if (w->lru.prev != c && !(c->flags & F_ENDED)) {
		lru_del(c);
		lru_add_tail(w, c);
	}
}

static void waiters_remove(struct worker *w, struct tide_conn *c)
{
	struct tide_conn **pp;

	for (pp = &w->waiters; *pp; pp = &(*pp)->wait_next)
		if (*pp == c) {
			*pp = c->wait_next;
			c->flags &= ~F_WAIT;
			c->refs--;
			return;
		}
}

/* ----------------------------------------------------------- send queue -- */

static struct txq *txq_get(struct tide_conn *c)
{
	struct txq *q = c->tx;

	if (q)
		return q;
	q = spare_get(&conn_w(c)->spare_txqs, sizeof(*q));
	if (!q)
		return NULL;
	q->head = q->tail = NULL;
	q->queued = q->sending = 0;
	q->notify = SIZE_MAX;
	q->tm = NULL;
	q->sp = NULL;
	q->batch_next = NULL;
	q->batch_hits = 0;
	q->batch_on = false;
	c->tx = q;
	return q;
}

struct txq *conn_txq(struct tide_conn *c)
{
	return txq_get(c);
}

static void txq_drop_all(struct tide_conn *c)
{
	struct txq *q = c->tx;
	struct seg *s, *next;

	if (!q)
		return;
	for (s = q->head; s; s = next) {
		next = s->next;
		buf_unref(conn_w(c)->agent, buf_block(conn_w(c)->agent, s->data));
		spare_put(&conn_w(c)->spare_segs, s);
	}
	q->head = q->tail = NULL;
	conn_w(c)->queued -= q->queued;
	q->queued = 0;
}

/* Give the txq back when it holds nothing, no send is in flight and no splice or receive
 * batching keeps its state there. */
static void txq_maybe_put(struct tide_conn *c)
{
	struct txq *q = c->tx;

	if (q && !q->head && !(c->flags & F_SENDING) && q->notify == SIZE_MAX && !q->sp &&
	    !q->batch_on) {
		spare_put(&conn_w(c)->spare_txqs, q);
		c->tx = NULL;
	}
}

void conn_txq_put(struct tide_conn *c)
{
	txq_maybe_put(c);
}

/* ----------------------------------------------------------------- ending -- */

void conn_maybe_free(struct tide_conn *c)
{
	struct worker *w = conn_w(c);

	if (!(c->flags & F_ENDED) || c->refs)
		return;
	txq_drop_all(c);
	splice_release(c); /* before its txq goes, which holds it */
	if (c->tx) {
		spare_put(&w->spare_txqs, c->tx);
		c->tx = NULL;
	}
	if (c->fd >= 0 && (c->flags & F_RESET))
		linger_reset(w, c->fd); /* after what the kernel still holds for the peer */
	else if (c->fd >= 0)
		close(c->fd);
	slab_free(c);
	w->nconns--;
	if (w->accept_held) /* a listener waits for descriptors (cfg.conn_fds): maybe now */
		listeners_arm(w);
}

static void recv_cancel(struct tide_conn *c)
{
	cancel_ud(conn_w(c), UD(c, OP_RECV));
	c->flags |= F_CANCEL;
}

void conn_recv_cancel(struct tide_conn *c)
{
	recv_cancel(c);
}

void conn_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct worker *w = conn_w(c);

	if (c->flags & F_ENDED)
		return;
	c->flags |= F_ENDED;
	if (!(c->flags & F_CONNECTING) && c->window) {
		w->promised -= c->window - 1; /* what it may still receive is no longer held */
		c->window = 0;
	}
	if (why != TIDE_END_CLEAN)
		c->flags |= F_RESET;
	lru_del(c);
	if (c->flags & F_ACCEPTED)
		atomic_fetch_sub_explicit(&w->agent->conns, 1, memory_order_relaxed);
	if (c->flags & F_WAIT)
		waiters_remove(w, c);
	if (why == TIDE_END_RESET)
		STAT_ADD(w, reset, 1);
	else if (why == TIDE_END_TIMEOUT)
		STAT_ADD(w, idle_closed, 1);
	else if (why == TIDE_END_CONNECT)
		STAT_ADD(w, upstream_failures, 1);
	/*
	 * Cancel each operation by its user_data, which the kernel finds by hash: a cancel by
	 * file descriptor scans every pending request, so ending n connections at once cost n^2.
	 */
	if ((c->flags & F_ARMED) && !(c->flags & F_CANCEL))
		recv_cancel(c);
	if (c->flags & F_SENDING)
		cancel_ud(w, UD(c, OP_SEND));
	if (c->flags & F_CONNECTING) {
		cancel_ud(w, UD(c, OP_CONNECT));
		connecting_free(c);
	}
	batch_stop(c);
	splice_stop(c);
	/* The queue goes when nothing is in flight (conn_maybe_free): a send may still read it. */
	c->refs++;
	if (c->ops && c->ops->end)
		c->ops->end(c, why, err);
	c->refs--;
	conn_maybe_free(c);
}

/* Sending is over and the peer's FIN came: CLEAN. After a failed send: RESET. */
static void conn_maybe_done(struct tide_conn *c)
{
	if (c->flags & F_ENDED)
		return;
	if ((c->flags & F_SHUT) && (c->flags & F_EOF) && !(c->flags & F_SENDING))
		conn_end(c, TIDE_END_CLEAN, 0);
	else if ((c->flags & F_TXERR) && (c->flags & F_EOF))
		conn_end(c, TIDE_END_RESET, -EPIPE);
}

/* ---------------------------------------------------------------- receive -- */

/*
 * After the peer's FIN nothing is received any more, so a reset that follows it would go
 * unnoticed while there is nothing to send. Such connections go on the worker's watch list
 * (linked through wait_next: a connection after FIN never waits for buffers), and the tick
 * asks the kernel for their TCP state: one that is closed was reset. (A poll cannot do it:
 * after FIN the socket polls readable at once, so a poll would fire in a loop.)
 */
static void watch_add(struct tide_conn *c)
{
	struct worker *w = conn_w(c);

	if (c->flags & (F_ENDED | F_WATCH | F_SHUT | F_WAIT))
		return;
	c->flags |= F_WATCH;
	c->refs++;
	c->wait_next = w->watch;
	w->watch = c;
}

void conns_watch(struct worker *w)
{
	struct tide_conn **pp = &w->watch;

	while (*pp) {
		struct tide_conn *c = *pp;
		struct tcp_info ti;
		socklen_t len = sizeof(ti);
		int err = 0;

		if (!(c->flags & (F_ENDED | F_SHUT))) {
			if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
			    ti.tcpi_state != TCP_CLOSE) {
				pp = &c->wait_next;
				continue;
			}
			len = sizeof(err);
			getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
			c->refs++;
			conn_end(c, TIDE_END_RESET, err ? -err : -ECONNRESET);
			c->refs--;
		}
		*pp = c->wait_next;
		c->flags &= ~F_WATCH;
		c->refs--;
		conn_maybe_free(c);
	}
}

static void recv_arm(struct tide_conn *c)
{
	struct worker *w = conn_w(c);
	struct io_uring_sqe *sqe;

	if (conn_sp(c) && splice_reads(c)) {
		splice_arm(c); /* its bytes go through a pipe (splice.c) */
		return;
	}
	if (c->flags & (F_ENDED | F_ARMED | F_EOF | F_WAIT | F_PAUSED | F_CONNECTING) ||
	    c->window == 1)
		return;
	sqe = sqe_get(w);
	if (c->window && !w->mshot_lim) {
		/* A limit, and no byte-limited multishot here: one receive of at most one
		 * buffer (a bundle could take more than asked). */
		uint32_t len = c->window - 1 < w->bs ? c->window - 1 : (uint32_t)w->bs;

		io_uring_prep_recv(sqe, c->fd, NULL, len, 0);
	} else {
		io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
		if (w->bundles) {
			sqe->ioprio |= IORING_RECVSEND_BUNDLE;
			sqe->len = ring_recv_cap(w);
		}
		/* Multishot that ends by itself after this many bytes (Linux 6.16+). */
		if (c->window)
			sqe->file_index = c->window - 1;
	}
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, UD(c, OP_RECV));
	c->flags |= F_ARMED;
	c->refs++;
	STAT_ADD(w, recv_arms, 1);
}

/* Hand n buffers to the application (or drop them when it takes none, or c ended). */
static void deliver(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	if (!n)
		return;
	if (c->ops && c->ops->recv && !(c->flags & F_ENDED)) {
		c->ops->recv(c, bufs, n);
		return;
	}
	for (unsigned i = 0; i < n; i++)
		buf_unref(conn_w(c)->agent, buf_block(conn_w(c)->agent, bufs[i].data));
}

/*
 * The data fills ring entries from the first buffer id on, in order: each from where the
 * kernel left it (0 unless the ring is incremental) to its end, the last one possibly only
 * in part. A buffer the kernel is done with leaves the ring (its share of the references
 * goes); one it will fill more stays.
 */
static void recv_take(struct tide_conn *c, size_t left, unsigned cflags)
{
	struct worker *w = conn_w(c);
	struct tide_buf bufs[RECV_BATCH];
	unsigned pos = cflags >> IORING_CQE_BUFFER_SHIFT, n = 0;

	while (left) {
		unsigned slot = pos & w->mask;
		char *buf = w->bid_addr[slot];
		size_t off = w->boff[slot];
		size_t take = left < w->bs - off ? left : w->bs - off;
		bool done = true;

		left -= take;
		if (w->inc) {
			w->boff[slot] = (uint32_t)(off + take);
			done = left || off + take == w->bs || !(cflags & IORING_CQE_F_BUF_MORE);
		}
		buf_ref(w->agent, buf);
		bufs[n].data = buf + off;
		bufs[n].len = (uint32_t)take;
		if (++n == RECV_BATCH) {
			deliver(c, bufs, n);
			n = 0;
		}
		if (!done)
			break;
		w->in_ring--;
		buf_unref(w->agent, buf);
		pos++;
	}
	deliver(c, bufs, n);
}

void on_recv(struct tide_conn *c, int res, unsigned cflags)
{
	struct worker *w = conn_w(c);

	if (res > 0 && (cflags & IORING_CQE_F_BUFFER)) {
		STAT_ADD(w, bytes_in, (uint64_t)res);
		w->last_consume = w->now;
		conn_touch(c);
		if (c->window) {
			uint32_t used =
				(uint32_t)res < c->window - 1 ? (uint32_t)res : c->window - 1;

			c->window -= used;
			w->promised -= used;
			if (c->window == 1)
				STAT_ADD(w, pauses, 1); /* reading waits for a new limit */
		}
		recv_take(c, (size_t)res, cflags);
		batch_recv(c, res);
		/* The application paused in its callback: stop the multishot receive. */
		if ((c->flags & (F_PAUSED | F_ENDED)) && (cflags & IORING_CQE_F_MORE) &&
		    !(c->flags & F_CANCEL))
			recv_cancel(c);
	}
	if (cflags & IORING_CQE_F_MORE)
		return;
	c->flags &= ~(F_ARMED | F_CANCEL);
	c->refs--;
	if (c->flags & F_ENDED)
		return;
	if (res == 0) {
		conn_eof(c);
	} else if (res == -ENOBUFS) {
		ring_starved(w);
		c->flags |= F_WAIT;
		c->wait_next = w->waiters;
		w->waiters = c;
		c->refs++;
	} else if (res == -EINVAL && c->window && w->mshot_lim) {
		w->mshot_lim = false; /* no byte limit on a multishot receive here */
		recv_arm(c);
	} else if (res == -EINVAL && w->recv_len) {
		w->recv_len = 0; /* this kernel takes no length on a multishot receive */
		recv_arm(c);
	} else if (res < 0 && res != -ECANCELED && res != -EAGAIN) {
		conn_end(c, TIDE_END_RESET, res); /* -EAGAIN (O_NONBLOCK, a splice): re-armed */
	} else {
		recv_arm(c);
	}
}

void conn_eof(struct tide_conn *c)
{
	c->flags |= F_EOF;
	if (c->ops && c->ops->eof)
		c->ops->eof(c);
	conn_maybe_done(c);
	watch_add(c);
}

void recv_rearm(struct tide_conn *c)
{
	recv_arm(c);
}

/* ------------------------------------------------------------------- send -- */

static void send_submit(struct tide_conn *c)
{
	struct worker *w = conn_w(c);
	struct txq *q = c->tx;
	struct io_uring_sqe *sqe;
	struct iovec iov[SEND_IOV];
	unsigned n = 0;
	size_t total = 0;

	if (!q || !q->head || (c->flags & (F_SENDING | F_ENDED | F_CONNECTING | F_TXERR)))
		return;
	for (struct seg *s = q->head; s; s = s->next) {
		char *b = s->data;

		if (n && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == b) {
			iov[n - 1].iov_len += s->len;
		} else {
			if (n == SEND_IOV)
				break;
			iov[n].iov_base = b;
			iov[n].iov_len = s->len;
			n++;
		}
		total += s->len;
	}
	/* Several pieces need a sendmsg whose iovecs live until it completes; without memory
	 * for them, the first piece goes alone. */
	if (n > 1 && !(q->tm = spare_get(&w->spare_txmsgs, sizeof(*q->tm)))) {
		n = 1;
		total = iov[0].iov_len;
	}
	q->sending = total;
	sqe = sqe_get(w);
	if (n == 1) {
		io_uring_prep_send(sqe, c->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
	} else {
		memcpy(q->tm->iov, iov, n * sizeof(iov[0]));
		memset(&q->tm->msg, 0, sizeof(q->tm->msg));
		q->tm->msg.msg_iov = q->tm->iov;
		q->tm->msg.msg_iovlen = n;
		io_uring_prep_sendmsg(sqe, c->fd, &q->tm->msg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, UD(c, OP_SEND));
	c->flags |= F_SENDING;
	c->refs++;
}

/* The queue is empty: a FIN or reset asked for goes now, unless a pipe into c still holds
 * bytes before it (splice.c calls again once it is empty). */
static void send_idle(struct tide_conn *c)
{
	if (!(c->flags & F_WANT_SHUT) || (conn_sp(c) && splice_holds(c)))
		return;
	if (c->flags & F_WANT_RST) { /* also after a FIN: the peer must learn of the cut */
		conn_end(c, TIDE_END_RESET, 0);
		return;
	}
	if (!(c->flags & F_SHUT)) {
		shutdown(c->fd, SHUT_WR);
		c->flags |= F_SHUT;
	}
	if (c->flags & F_WANT_CLOSE)
		conn_end(c, TIDE_END_CLEAN, 0);
	else
		conn_maybe_done(c);
}

static void notify_check(struct tide_conn *c)
{
	struct txq *q = c->tx;

	if (!q || q->notify == SIZE_MAX || tide_conn_queued(c) > q->notify || (c->flags & F_ENDED))
		return;
	q->notify = SIZE_MAX;
	if (c->ops && c->ops->drained)
		c->ops->drained(c);
}

/* Drop the sent bytes from the head of the queue. */
static void txq_consume(struct tide_conn *c, size_t left)
{
	struct txq *q = c->tx;

	while (left && q->head) {
		struct seg *s = q->head;
		size_t take = left < s->len ? left : s->len;

		s->data += take;
		s->len -= (uint32_t)take;
		q->queued -= take;
		conn_w(c)->queued -= take;
		left -= take;
		if (!s->len) {
			q->head = s->next;
			if (!q->head)
				q->tail = NULL;
			buf_unref(conn_w(c)->agent, buf_block(conn_w(c)->agent, s->data - 1));
			spare_put(&conn_w(c)->spare_segs, s);
		}
	}
}

void conn_send_failed(struct tide_conn *c, int err)
{
	c->flags |= F_TXERR;
	txq_drop_all(c);
	if (c->tx)
		c->tx->notify = SIZE_MAX;
	txq_maybe_put(c);
	if (c->ops && c->ops->send_error)
		c->ops->send_error(c, err);
	conn_maybe_done(c);
}

void conn_send_idle(struct tide_conn *c)
{
	send_idle(c);
}

void on_send(struct tide_conn *c, int res)
{
	struct worker *w = conn_w(c);

	c->flags &= ~F_SENDING;
	c->refs--;
	if (c->tx && c->tx->tm) { /* the kernel is done with its iovecs */
		spare_put(&w->spare_txmsgs, c->tx->tm);
		c->tx->tm = NULL;
	}
	if (c->flags & F_ENDED)
		return;
	if (res == -EAGAIN) {
		/* An O_NONBLOCK socket (a splice made it so): a send the ring retried in its
		 * io-wq after a poll found no room either and sent nothing. Not an error: a
		 * new send tries again and waits for room. */
		send_submit(c);
		return;
	}
	if (res < 0) {
		conn_send_failed(c, res);
		return;
	}
	if ((size_t)res < c->tx->sending)
		STAT_ADD(w, short_sends, 1);
	STAT_ADD(w, bytes_out, (uint64_t)res);
	txq_consume(c, (size_t)res);
	conn_touch(c);
	if (c->tx && c->tx->head) {
		send_submit(c);
	} else {
		if (conn_sp(c))
			splice_kick(c); /* a pipe into c goes on */
		if (!(c->flags & F_ENDED))
			send_idle(c); /* a FIN asked for goes before drained sees the state */
	}
	if (c->flags & F_ENDED)
		return;
	notify_check(c);
	if (!(c->flags & F_ENDED))
		txq_maybe_put(c);
}

/* ------------------------------------------------------------ public API -- */

/**
 * tide_conn_send() - queue buffers for sending, in order, taking their references.
 * @c:    the connection (on its worker's thread).
 * @bufs: the pieces: each holds one reference, which the connection now owns (also when
 *        the call fails: then they are dropped).
 * @n:    how many.
 *
 * Return: 0; -EPIPE sending was shut down (tide_conn_shutdown()) or failed before;
 * -ENOTCONN the connection ended; -ENOMEM (the pieces are dropped, the connection resets).
 */
int tide_conn_send(struct tide_conn *c, const struct tide_buf *bufs, unsigned n)
{
	struct tide_agent *a = conn_w(c)->agent;
	struct txq *q;
	int rc = 0;
	unsigned i = 0;

	if (c->flags & F_ENDED)
		rc = -ENOTCONN;
	else if (c->flags & (F_WANT_SHUT | F_TXERR))
		rc = -EPIPE;
	else if (!(q = txq_get(c)))
		rc = -ENOMEM;
	for (; !rc && i < n; i++) {
		struct seg *s;

		if (!bufs[i].len) {
			buf_unref(a, buf_block(a, bufs[i].data));
			continue;
		}
		s = spare_get(&conn_w(c)->spare_segs, sizeof(*s));
		if (!s) {
			rc = -ENOMEM;
			break;
		}
		s->data = bufs[i].data;
		s->len = bufs[i].len;
		s->next = NULL;
		if (q->tail)
			q->tail->next = s;
		else
			q->head = s;
		q->tail = s;
		q->queued += s->len;
		conn_w(c)->queued += s->len;
	}
	for (; i < n; i++)
		buf_unref(a, buf_block(a, bufs[i].data));
	if (rc == -ENOMEM)
		conn_end(c, TIDE_END_RESET, rc);
	if (!rc)
		send_submit(c);
	return rc;
}

/**
 * tide_conn_send_copy() - copy bytes into pool buffers (charged to the worker's user) and
 * queue them, for small replies. Every buffer is taken before any is queued, so a copy that
 * does not fit queues nothing.
 * @c:    the connection (on its worker's thread).
 * @data: the bytes.
 * @len:  how many.
 *
 * Return: 0; -EPIPE, -ENOTCONN as tide_conn_send(); -ENOSPC the worker's quota or the pool
 * is full (nothing was queued).
 */
int tide_conn_send_copy(struct tide_conn *c, const void *data, size_t len)
{
	struct worker *w = conn_w(c);
	size_t nbufs = (len + w->bs - 1) / w->bs;
	struct tide_buf local[16], *bufs = local;
	const char *p = data;
	size_t n = 0;
	int rc = 0;

	if (c->flags & F_ENDED)
		return -ENOTCONN;
	if (c->flags & (F_WANT_SHUT | F_TXERR))
		return -EPIPE;
	if (!len)
		return 0;
	/* All buffers first, then one send: a copy that does not fit queues nothing. */
	if (nbufs > 16 && (nbufs > UINT_MAX || !(bufs = malloc(nbufs * sizeof(*bufs)))))
		return -ENOMEM;
	for (; n < nbufs; n++) {
		size_t take = len < w->bs ? len : w->bs;

		rc = tide_buf_alloc((struct tide_worker *)w, take, &bufs[n]);
		if (rc)
			break;
		memcpy(bufs[n].data, p, take);
		p += take;
		len -= take;
	}
	if (rc) {
		for (size_t i = 0; i < n; i++)
			buf_unref(w->agent, bufs[i].data);
		frees_flush(w); /* back under the quota now, for a smaller reply */
	} else {
		rc = tide_conn_send(c, bufs, (unsigned)nbufs);
	}
	if (bufs != local)
		free(bufs);
	return rc;
}

/* Bytes queued on all of w's connections and not yet sent, plus what their receive limits
 * still allow them to receive (w's thread). */
size_t tide_worker_held(const struct tide_worker *w)
{
	const struct worker *wk = (const struct worker *)w;

	return wk->queued + wk->promised;
}

/* Bytes queued on c and not yet sent, with what a splice's pipe holds for it. */
size_t tide_conn_queued(const struct tide_conn *c)
{
	return (c->tx ? c->tx->queued : 0) + (conn_sp(c) ? splice_queued(c) : 0);
}

void conn_notify_check(struct tide_conn *c)
{
	notify_check(c);
	if (!(c->flags & F_ENDED))
		txq_maybe_put(c);
}

/**
 * tide_conn_notify_below() - ask for one ops->drained call once the send queue holds at
 * most @bytes (at once, from this call, when it does already).
 * @c:     the connection.
 * @bytes: the mark.
 */
void tide_conn_notify_below(struct tide_conn *c, size_t bytes)
{
	struct txq *q;

	if (c->flags & F_ENDED)
		return;
	if (tide_conn_queued(c) <= bytes) {
		if (c->ops && c->ops->drained)
			c->ops->drained(c);
		return;
	}
	q = txq_get(c); /* none when only a splice's pipe holds bytes for c */
	if (!q) {
		if (c->ops && c->ops->drained) /* no memory to wait with: tell now */
			c->ops->drained(c);
		return;
	}
	q->notify = bytes;
}

/**
 * tide_conn_pause() - stop reading: no receive is armed until tide_conn_resume(). Bytes
 * already received by the kernel for a receive in flight may still be handed over.
 * @c: the connection.
 */
void tide_conn_pause(struct tide_conn *c)
{
	if (c->flags & (F_PAUSED | F_ENDED))
		return;
	c->flags |= F_PAUSED;
	STAT_ADD(conn_w(c), pauses, 1);
	if ((c->flags & F_ARMED) && !(c->flags & F_CANCEL))
		recv_cancel(c);
}

/* Set c's window (bytes left + 1; 0: none), keeping the worker's sum of what is left. */
static void window_set(struct tide_conn *c, uint32_t window)
{
	if (c->window)
		conn_w(c)->promised -= c->window - 1;
	c->window = window;
	if (window)
		conn_w(c)->promised += window - 1;
}

/**
 * tide_conn_recv_limit() - let @c receive at most @bytes more: each receive asks the kernel
 * for no more than what is left, and reading waits once it is used up, until the limit is
 * set again. So a queue the application fills from @c stays within a bound exactly (with
 * tide_conn_pause() a receive already completed may still come).
 * @c:     the connection (connected: not while tide_conn_connect() runs).
 * @bytes: the bytes left to receive; SIZE_MAX: no limit (the default).
 *
 * Where the kernel has no byte-limited multishot receive (before 6.16) or with
 * TIDE_AGENT_NO_RECV_LIMIT, a limited connection takes single receives of one buffer.
 *
 * Return: 0; -EBUSY @c is still connecting; -ENOTCONN @c has ended.
 */
int tide_conn_recv_limit(struct tide_conn *c, size_t bytes)
{
	if (c->flags & F_ENDED)
		return -ENOTCONN;
	if (c->flags & F_CONNECTING)
		return -EBUSY;
	if (conn_sp(c) && splice_reads(c)) {
		window_set(c, 0); /* the pipe bounds it */
		return 0;
	}
	window_set(c, bytes >= UINT32_MAX - 1 ? 0 : (uint32_t)bytes + 1);
	recv_arm(c);
	return 0;
}

void conn_window_clear(struct tide_conn *c)
{
	window_set(c, 0);
}

/* Read again after tide_conn_pause(). */
void tide_conn_resume(struct tide_conn *c)
{
	if (!(c->flags & F_PAUSED))
		return;
	c->flags &= ~F_PAUSED;
	recv_arm(c);
}

/**
 * tide_conn_shutdown() - end sending once everything queued went out.
 * @c:     the connection.
 * @reset: false: send FIN (the connection ends CLEAN once the peer's FIN came too); true:
 *         reset it then (it ends TIDE_END_RESET), so that the peer learns that not all it
 *         sent was taken.
 *
 * Later sends fail with -EPIPE; receiving goes on.
 */
void tide_conn_shutdown(struct tide_conn *c, bool reset)
{
	if (c->flags & F_ENDED)
		return;
	c->flags |= F_WANT_SHUT | (reset ? F_WANT_RST : 0);
	/* After a failed send it ends RESET once the peer's data ends (conn_maybe_done). */
	if (!(c->flags & (F_SENDING | F_CONNECTING | F_TXERR)) && !tide_conn_queued(c))
		send_idle(c);
}

/**
 * tide_conn_close() - send FIN once everything queued went out, and end the connection then
 * (TIDE_END_CLEAN) without waiting for the peer's FIN; what the peer sends later is refused
 * by the kernel.
 * @c: the connection.
 */
void tide_conn_close(struct tide_conn *c)
{
	if (c->flags & F_ENDED)
		return;
	c->flags |= F_WANT_CLOSE;
	if (c->flags & F_SHUT) {
		conn_end(c, TIDE_END_CLEAN, 0);
		return;
	}
	tide_conn_shutdown(c, false);
}

/**
 * tide_conn_state() - what a connection has done so far.
 * @c: the connection.
 *
 * Return: TIDE_CONN_* flags: EOF (the peer sent FIN), SHUT (FIN sent), PAUSED, CONNECTING,
 * SEND_FAILED.
 */
unsigned tide_conn_state(const struct tide_conn *c)
{
	unsigned st = 0;

	st |= c->flags & F_EOF ? TIDE_CONN_EOF : 0;
	st |= c->flags & F_SHUT ? TIDE_CONN_SHUT : 0;
	st |= c->flags & F_PAUSED ? TIDE_CONN_PAUSED : 0;
	st |= c->flags & F_CONNECTING ? TIDE_CONN_CONNECTING : 0;
	st |= c->flags & F_TXERR ? TIDE_CONN_SEND_FAILED : 0;
	return st;
}

/* Reset c now, dropping what is queued: ops->end(c, TIDE_END_RESET, 0) follows at once. */
void tide_conn_abort(struct tide_conn *c)
{
	conn_end(c, TIDE_END_RESET, 0);
}

void tide_conn_set_data(struct tide_conn *c, void *data)
{
	c->data = data;
}

void *tide_conn_data(const struct tide_conn *c)
{
	return c->data;
}

struct tide_worker *tide_conn_worker(const struct tide_conn *c)
{
	return (struct tide_worker *)conn_w(c);
}

int tide_conn_fd(const struct tide_conn *c)
{
	return c->fd;
}

static int set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v)) ? -errno : 0;
}

/**
 * tide_conn_keepalive() - TCP keepalive on @c (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL,
 * TCP_KEEPCNT): after @idle_s seconds without traffic the kernel sends a probe every
 * @intvl_s seconds, and @cnt unanswered probes end the connection (a reset: TIDE_END_RESET
 * with -ETIMEDOUT), so a peer that vanished (power lost, a NAT that forgot the flow) is
 * found in idle_s + intvl_s * cnt seconds instead of never.
 * @c:       the connection (accepted, or connected: from ops->open on).
 * @idle_s:  seconds idle before the first probe, 1..32767; 0 turns keepalive off.
 * @intvl_s: seconds between probes, 1..32767; 0: the kernel's default (tcp_keepalive_intvl).
 * @cnt:     unanswered probes that end it, 1..127; 0: the kernel's default
 *           (tcp_keepalive_probes).
 *
 * The agent owns the socket (tide_conn_fd() is for reading its state only); this is the
 * way to set it. @c's worker's thread.
 *
 * Return: 0; -EINVAL a NULL @c or a value out of range; -EBUSY @c is still connecting (no
 * socket yet for every attempt: call it from ops->open); -ENOTCONN @c has ended; or the
 * error of setsockopt().
 */
int tide_conn_keepalive(struct tide_conn *c, unsigned idle_s, unsigned intvl_s, unsigned cnt)
{
	int rc;

	if (!c || idle_s > 32767 || intvl_s > 32767 || cnt > 127)
		return -EINVAL;
	if (c->flags & F_ENDED)
		return -ENOTCONN;
	if (c->flags & F_CONNECTING)
		return -EBUSY;
	if (!idle_s)
		return set_int(c->fd, SOL_SOCKET, SO_KEEPALIVE, 0);
	rc = set_int(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, (int)idle_s);
	if (!rc && intvl_s)
		rc = set_int(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, (int)intvl_s);
	if (!rc && cnt)
		rc = set_int(c->fd, IPPROTO_TCP, TCP_KEEPCNT, (int)cnt);
	if (!rc)
		rc = set_int(c->fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	return rc;
}

/* ------------------------------------------------------ the worker's side -- */

void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct tide_conn *conn_new(struct worker *w, int fd, const struct tide_conn_ops *ops, void *data)
{
	struct tide_conn *c = slab_alloc(w); /* zeroed */

	if (!c)
		return NULL;
	c->fd = fd;
	c->ops = ops;
	c->data = data;
	c->active = (uint32_t)w->now;
	lru_add_tail(w, c);
	w->nconns++;
	return c;
}

void conn_open(struct tide_conn *c)
{
	c->refs++;
	if (c->ops && c->ops->open)
		c->ops->open(c);
	recv_arm(c);
	send_submit(c);
	if (!(c->flags & F_ENDED) && (c->flags & F_WANT_SHUT) && !tide_conn_queued(c))
		send_idle(c);
	c->refs--;
	conn_maybe_free(c);
}

void on_accept(struct lsock *ls, int fd)
{
	struct worker *w = ls->w;
	struct tide_agent *a = w->agent;
	struct tide_conn *c = NULL;
	uint64_t n;

	n = atomic_fetch_add_explicit(&a->conns, 1, memory_order_relaxed) + 1;
	if (w->draining || (a->cfg.max_conns && n > a->cfg.max_conns) ||
	    !(c = conn_new(w, fd, ls->ops, ls->data))) {
		struct linger lg = {1, 0}; /* a reset: bytes it sent are not relayed */

		atomic_fetch_sub_explicit(&a->conns, 1, memory_order_relaxed);
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		STAT_ADD(w, rejected, 1);
		return;
	}
	STAT_ADD(w, accepted, 1);
	c->flags |= F_ACCEPTED;
	set_nodelay(fd);
	conn_open(c);
}

void waiters_wake(struct worker *w)
{
	struct tide_conn *list = w->waiters;

	if (!list || !w->in_ring)
		return;
	w->waiters = NULL;
	while (list) {
		struct tide_conn *c = list;

		list = c->wait_next;
		c->flags &= ~F_WAIT;
		c->refs--;
		if (c->flags & F_ENDED) {
			conn_maybe_free(c);
			continue;
		}
		recv_arm(c);
	}
}

/*
 * Call fn on every live connection of w. A callback may end others (a relay ends a pair),
 * so the list is copied first and each held by a reference while the walk runs.
 */
static void conns_each(struct worker *w, void (*fn)(struct tide_conn *, int), int arg)
{
	struct tide_conn **all;
	unsigned n = 0;

	all = malloc((w->nconns + 1) * sizeof(*all));
	if (!all) { /* no memory: walk by the head, which every fn below takes off the list */
		while (w->lru.next != &w->lru)
			conn_end(w->lru.next, TIDE_END_RESET, -ENOMEM);
		return;
	}
	for (struct tide_conn *c = w->lru.next; c != &w->lru; c = c->next) {
		c->refs++;
		all[n++] = c;
	}
	for (unsigned i = 0; i < n; i++) {
		if (!(all[i]->flags & F_ENDED))
			fn(all[i], arg);
		all[i]->refs--;
		conn_maybe_free(all[i]);
	}
	free(all);
}

static void drain_one(struct tide_conn *c, int unused)
{
	(void)unused;
	if (c->ops && c->ops->drain)
		c->ops->drain(c);
}

static void end_one(struct tide_conn *c, int why)
{
	conn_end(c, (enum tide_end)why, 0);
}

void conns_drain(struct worker *w)
{
	conns_each(w, drain_one, 0);
	waiters_wake(w);
}

void conns_end_all(struct worker *w, enum tide_end why)
{
	conns_each(w, end_one, (int)why);
}

/* End the connections idle for timeout_ms or longer (the LRU list's head is the oldest). */
void conns_end_idle(struct worker *w, unsigned timeout_ms)
{
	unsigned n = w->nconns;

	while (w->lru.next != &w->lru && n--) {
		struct tide_conn *c = w->lru.next;

		if ((uint32_t)w->now - c->active < timeout_ms)
			break;
		conn_end(c, TIDE_END_TIMEOUT, -ETIMEDOUT);
	}
}

/* Free the spare segs, txqs and txmsgs (at worker teardown). */
void spares_free(struct worker *w)
{
	struct spare **lists[] = {&w->spare_segs, &w->spare_txqs, &w->spare_txmsgs};

	for (unsigned i = 0; i < 3; i++)
		while (*lists[i]) {
			struct spare *s = *lists[i];

			*lists[i] = s->next;
			free(s);
		}
}
