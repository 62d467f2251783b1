/* SPDX-License-Identifier: MIT */
/*
 * splice.c - forwarding one connection's bytes to another through a kernel pipe
 * (tide_conn_splice()): splice(2) from the source socket into the pipe and from the pipe into
 * the destination socket, so the bytes are never copied to or from user memory. Engine side.
 *
 * Why not IORING_OP_SPLICE: io_uring runs every splice in an io-wq thread (it cannot be
 * issued without blocking), a thread switch per chunk; measured on loopback it cost more CPU
 * per byte than the receive/send path. So the worker waits for readiness with one-shot poll
 * requests on its ring (POLLIN on the source, POLLOUT on the destination when its socket
 * buffer was full) and calls splice(SPLICE_F_NONBLOCK) itself, which on Linux 6.5+ takes
 * page references both ways (skb pages into the pipe; MSG_SPLICE_PAGES into the socket).
 *
 * One struct splice serves a pair of connections (c[0], c[1]); each holds it in its txq
 * (conn_sp(): a connection is 64 bytes with no room for it, and a spliced one is busy), and
 * it has one direction per way the application asked for (dir[i]: from c[i] to c[1 - i]).
 * A direction is a pipe and how many bytes it holds. Its pump:
 *  - out first: the pipe goes into the destination only while the destination's own send
 *    queue is empty and no send is in flight, so bytes the application queued there (what
 *    the source's receive callback still handed over while its multishot receive was being
 *    cancelled) go out before the pipe's, and the pipe's before anything queued later;
 *  - in: the source is read into the pipe while it is not paused, has not ended, and the
 *    destination may still send, also while the destination waits for room (the pipe is
 *    the direction's buffer); the multishot receive of the source is cancelled first
 *    and the pipe is filled only once it is gone (recv_arm() hands over to splice_arm()).
 * Endings, as the engine's contract says: the source's FIN (splice reads 0) is handed to the
 * application (ops->eof) only once the pipe is empty, so a FIN passed on goes after every
 * byte; a FIN or reset asked for on the destination waits for the pipe (send_idle());
 * a read error ends the source like a receive error, a write error is the destination's send
 * error (ops->send_error; the pipe's bytes are dropped); either connection's end stops the
 * directions it is part of (pipe closed, polls cancelled), and the source is read by its
 * multishot receive again if it lives on.
 * Lifetime: each poll in flight holds a reference to the connection it polls and counts in
 * sp->inflight; c's txq (with sp) stays until c is freed (so tide_conn_spliced() answers inside
 * ops->end), and the struct is freed once both connections are and nothing is in flight.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>

#include "net_internal.h"

#define PIPE_DEFAULT (1u << 20)

static struct splice_dir *dir_from(struct tide_conn *src)
{
	struct splice *sp = conn_sp(src);
	struct splice_dir *d;

	if (!sp)
		return NULL;
	d = &sp->dir[src == sp->c[0] ? 0 : 1];
	return d->on ? d : NULL;
}

static struct splice_dir *dir_into(struct tide_conn *dst)
{
	struct splice *sp = conn_sp(dst);
	struct splice_dir *d;

	if (!sp)
		return NULL;
	d = &sp->dir[dst == sp->c[0] ? 1 : 0];
	return d->on ? d : NULL;
}

static struct tide_conn *src_of(struct splice_dir *d)
{
	return d->sp->c[d - d->sp->dir];
}

static struct tide_conn *dst_of(struct splice_dir *d)
{
	return d->sp->c[1 - (d - d->sp->dir)];
}

static void sp_maybe_free(struct splice *sp)
{
	if (!sp->c[0] && !sp->c[1] && !sp->inflight)
		free(sp);
}

/* One poll on fd for mask, tagged with the direction's in or out word. */
static void poll_arm(struct splice_dir *d, struct tide_conn *c, bool out)
{
	struct io_uring_sqe *sqe = sqe_get(conn_w(c));

	io_uring_prep_poll_add(sqe, c->fd, out ? POLLOUT : POLLIN | POLLRDHUP);
	io_uring_sqe_set_data64(sqe, UD(out ? &d->tag_out : &d->tag_in, OP_SPLICE));
	if (out)
		d->poll_out = true;
	else
		d->poll_in = true;
	d->sp->inflight++;
	c->refs++;
}

/* Stop direction d: its pipe and what it holds go; polls in flight are cancelled. */
static void dir_stop(struct splice_dir *d)
{
	struct worker *w = d->sp->w;

	if (!d->on)
		return;
	d->on = false;
	if (d->poll_in)
		cancel_ud(w, UD(&d->tag_in, OP_SPLICE));
	if (d->poll_out)
		cancel_ud(w, UD(&d->tag_out, OP_SPLICE));
	close(d->pipe[0]);
	close(d->pipe[1]);
	d->in_pipe = 0;
}

static bool dst_may_write(struct tide_conn *dst)
{
	return !(dst->flags & (F_ENDED | F_CONNECTING | F_TXERR | F_SENDING | F_SHUT)) &&
	       !(dst->tx && dst->tx->head);
}

static bool src_may_read(struct splice_dir *d, struct tide_conn *src, struct tide_conn *dst)
{
	return !d->eof && !(src->flags & (F_ENDED | F_EOF | F_PAUSED | F_ARMED | F_WAIT)) &&
	       !(dst->flags & (F_ENDED | F_TXERR | F_WANT_SHUT));
}

static bool sock_empty(int fd)
{
	int n = 0;

	return ioctl(fd, SIOCINQ, &n) == 0 && n == 0;
}

/* The pipe into dst failed: dst's send error, as on_send() reports one. */
static void out_failed(struct splice_dir *d, struct tide_conn *dst, int err)
{
	dir_stop(d);
	conn_send_failed(dst, err);
}

/* Move what can move now, one way; arms the polls it has to wait for. */
static void pump(struct splice_dir *d)
{
	struct tide_conn *src = src_of(d), *dst = dst_of(d);
	struct worker *w = conn_w(src);
	ssize_t n;

	while (d->on) {
		if (d->in_pipe && !d->poll_out && dst_may_write(dst)) {
			n = splice(d->pipe[0], NULL, dst->fd, NULL, d->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n > 0) {
				d->in_pipe -= (size_t)n;
				STAT_ADD(w, bytes_out, (uint64_t)n);
				conn_touch(dst);
				conn_notify_check(dst); /* may run ops->drained */
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno != EAGAIN) {
				out_failed(d, dst, -errno);
				return;
			}
			if (!d->poll_out)
				poll_arm(d, dst, true);
		}
		if (!d->in_pipe && d->eof) { /* every byte before the FIN went out */
			dir_stop(d);
			conn_eof(src);
			return;
		}
		if (!d->in_pipe && (dst->flags & F_WANT_SHUT)) {
			dir_stop(d); /* the application ends sending: src is its receive's again */
			if (dst_may_write(dst))
				conn_send_idle(dst);
			if (!(src->flags & F_ENDED))
				recv_rearm(src);
			return;
		}
		if (!src_may_read(d, src, dst))
			return;
		n = splice(src->fd, NULL, d->pipe[1], NULL, d->size,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			d->in_pipe += (size_t)n;
			d->moved += (uint64_t)n;
			STAT_ADD(w, bytes_in, (uint64_t)n);
			w->last_consume = w->now;
			conn_touch(src);
			continue;
		}
		if (n == 0) {
			d->eof = true;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			int err = -errno;

			dir_stop(d);
			conn_end(src, TIDE_END_RESET, err);
			return;
		}
		/* EAGAIN: the socket is empty (wait for it), or the pipe's slots are full (then
		 * it holds bytes, and their going out pumps again). */
		if (!d->poll_in && (!d->in_pipe || sock_empty(src->fd)))
			poll_arm(d, src, false);
		return;
	}
}

/* Pump d holding both connections, as callbacks inside may end them. */
static void pump_held(struct splice_dir *d)
{
	struct splice *sp = d->sp;
	struct tide_conn *src = src_of(d), *dst = dst_of(d);

	src->refs++;
	dst->refs++;
	sp->inflight++; /* sp outlives the frees below */
	pump(d);
	src->refs--;
	dst->refs--;
	conn_maybe_free(src);
	conn_maybe_free(dst);
	sp->inflight--;
	sp_maybe_free(sp);
}

void on_splice_poll(void *tag, int res)
{
	struct splice_dir *d = *(struct splice_dir **)tag;
	struct splice *sp = d->sp;
	bool out = tag == (void *)&d->tag_out;
	struct tide_conn *c = out ? dst_of(d) : src_of(d);

	(void)res; /* readiness or an error: the splice calls find out which */
	if (out)
		d->poll_out = false;
	else
		d->poll_in = false;
	if (d->on)
		pump_held(d);
	c->refs--; /* taken by poll_arm(): c is not freed while a poll of it is in flight */
	conn_maybe_free(c);
	sp->inflight--;
	sp_maybe_free(sp);
}

bool splice_reads(struct tide_conn *src)
{
	return dir_from(src) != NULL;
}

void splice_arm(struct tide_conn *src)
{
	struct splice_dir *d = dir_from(src);

	if (d && !d->poll_in)
		pump_held(d);
}

void splice_kick(struct tide_conn *dst)
{
	struct splice_dir *d = dir_into(dst);

	if (d && !d->poll_out)
		pump_held(d);
}

size_t splice_queued(const struct tide_conn *dst)
{
	struct splice_dir *d = dir_into((struct tide_conn *)dst);

	return d ? d->in_pipe : 0;
}

bool splice_holds(const struct tide_conn *dst)
{
	struct splice_dir *d = dir_into((struct tide_conn *)dst);

	return d && (d->in_pipe || d->eof);
}

void splice_stop(struct tide_conn *c)
{
	struct splice *sp = conn_sp(c);
	struct tide_conn *other;
	bool was_read;

	if (!sp)
		return;
	other = sp->c[c == sp->c[0] ? 1 : 0];
	was_read = other && dir_from(other);
	dir_stop(&sp->dir[0]);
	dir_stop(&sp->dir[1]);
	if (was_read && !(other->flags & F_ENDED))
		recv_rearm(other); /* its multishot receive reads it again */
}

void splice_release(struct tide_conn *c)
{
	struct splice *sp = conn_sp(c);

	if (!sp)
		return;
	sp->c[c == sp->c[0] ? 0 : 1] = NULL;
	c->tx->sp = NULL;
	sp_maybe_free(sp);
}

static void nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* The pipe of a direction: non-blocking, @size bytes when the kernel allows it. */
static int pipe_open(struct splice_dir *d, size_t size)
{
	int got;

	if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC))
		return -errno;
	got = fcntl(d->pipe[0], F_SETPIPE_SZ, (int)size);
	if (got < 0) /* over pipe-max-size or the user's pipe pages: what it has */
		got = fcntl(d->pipe[0], F_GETPIPE_SZ);
	d->size = got > 0 ? (size_t)got : 65536;
	return 0;
}

/**
 * tide_conn_splice() - forward every byte @src receives from now on to @dst through a kernel
 * pipe, without handing it to the application or copying it.
 * @src:       the connection whose bytes go (on its worker's thread).
 * @dst:       where they go, a connection of the same worker.
 * @pipe_size: the pipe's size in bytes (0: 1 MiB); the kernel rounds it and may give less
 *             (/proc/sys/fs/pipe-max-size, the user's pipe pages).
 *
 * Return: 0; -EINVAL a NULL argument, @src is @dst, or they are on different workers;
 * -ENOTCONN one of them ended; -EBUSY one is still connecting, or takes part in a splice
 * with another connection; -EALREADY @src is spliced to @dst already; -EMFILE, -ENFILE from
 * pipe2(2).
 */
int tide_conn_splice(struct tide_conn *src, struct tide_conn *dst, size_t pipe_size)
{
	struct splice *sp;
	struct splice_dir *d;
	struct txq *qs, *qd;
	int rc;

	if (!src || !dst || src == dst || conn_w(src) != conn_w(dst))
		return -EINVAL;
	if ((src->flags | dst->flags) & F_ENDED)
		return -ENOTCONN;
	if ((src->flags | dst->flags) & F_CONNECTING)
		return -EBUSY;
	sp = conn_sp(src) ? conn_sp(src) : conn_sp(dst);
	if (sp && conn_sp(src) != conn_sp(dst))
		return -EBUSY; /* one of them is spliced with a third */
	qs = conn_txq(src);    /* each holds the splice in its txq while it lasts */
	qd = conn_txq(dst);
	if (!qs || !qd)
		return -ENOMEM;
	if (!sp) {
		sp = calloc(1, sizeof(*sp));
		if (!sp)
			return -ENOMEM;
		sp->w = conn_w(src);
		sp->c[0] = src;
		sp->c[1] = dst;
		for (int i = 0; i < 2; i++) {
			sp->dir[i].sp = sp;
			sp->dir[i].tag_in = sp->dir[i].tag_out = &sp->dir[i];
		}
	}
	d = &sp->dir[src == sp->c[0] ? 0 : 1];
	if (d->on || d->used) /* once per direction: a stopped one stays stopped */
		return -EALREADY;
	rc = pipe_open(d, pipe_size ? pipe_size : PIPE_DEFAULT);
	if (rc) {
		if (!qs->sp)
			free(sp);
		return rc;
	}
	/* splice(2) waits on a socket unless its file is O_NONBLOCK (SPLICE_F_NONBLOCK is
	 * for the pipe); the ring's own receives and sends arm a poll on EAGAIN as before,
	 * and one that ends with -EAGAIN (retried in io-wq) is submitted again (conn.c). */
	nonblock(src->fd);
	nonblock(dst->fd);
	qs->sp = qd->sp = sp;
	d->on = d->used = true;
	d->eof = false;
	d->in_pipe = 0;
	conn_window_clear(src); /* the pipe bounds what it holds now */
	batch_stop(src);	/* the pipe is filled by the pump, not by receives */
	if ((src->flags & F_ARMED) && !(src->flags & F_CANCEL))
		conn_recv_cancel(src); /* the pipe is filled once the receive is gone */
	splice_arm(src);
	return 0;
}

/**
 * tide_conn_spliced() - bytes @src's splices took from it so far (tide_conn_splice()), for
 * accounting: they never reach the receive callback. Also inside ops->end.
 * @c: the connection.
 *
 * Return: the byte count (0 when it was never spliced).
 */
uint64_t tide_conn_spliced(const struct tide_conn *c)
{
	struct splice *sp = conn_sp(c);

	return sp ? sp->dir[c == sp->c[0] ? 0 : 1].moved : 0;
}
