/* SPDX-License-Identifier: MIT */
/*
 * connect.c - outbound connections (tide_conn_connect): an address list tried in turn, each
 * attempt bounded by a timeout. Engine side.
 *
 * The address list is the caller's (not copied: a relay connects every client to the same
 * list, and a copy per connect left holes in the heap between long-lived connections).
 * The connection exists from the call on (the application may queue data on it and gets its
 * handle at once); it is not read or sent on until connected. Each attempt is a fresh socket
 * (a socket whose connect failed is not reused) and an io_uring connect linked to a timeout
 * (IOSQE_IO_LINK + link timeout), so a black-holed address costs at most timeout_ms before
 * the next is tried, as curl does with a name's addresses. A refusal, unreachability or the
 * timeout moves on; when the list is exhausted the connection ends TIDE_END_CONNECT with the
 * last error (-ETIMEDOUT for a timeout). Resolving the name again is the application's
 * choice (tide_addrs_resolve() blocks, so it does not belong on a worker).
 *
 * Invariant: while F_CONNECTING, c->to is the list and c->cn_next the next address (the
 * state lives in the connection: a connect allocates nothing), and the connect (and its
 * timeout, when one was asked for) each hold a reference to c.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net_internal.h"

void connecting_free(struct tide_conn *c)
{
	c->to = NULL;
	c->flags &= ~F_CONNECTING;
	c->window = 0; /* the connect's state is gone: no receive limit yet */
}

/* Queue the link timeout of the connect just prepared: units of 10 ms. */
static void timeout_link(struct tide_conn *c, struct io_uring_sqe *connect)
{
	struct worker *w = conn_w(c);
	struct io_uring_sqe *sqe;

	connect->flags |= IOSQE_IO_LINK;
	sqe = sqe_get(w);
	io_uring_prep_link_timeout(sqe, &w->connect_ts, 0);
	io_uring_sqe_set_data64(sqe, UD(c, OP_LTIMEOUT));
	c->refs++;
}

/* Start the next attempt: 0, or the last error when no address is left. */
static int connect_next(struct tide_conn *c)
{
	struct worker *w = conn_w(c);

	while (c->cn_next < c->to->n) {
		unsigned i = c->cn_next++;
		const struct sockaddr_storage *ss = &c->to->addr[i];
		struct io_uring_sqe *sqe;
		int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			c->cn_err = (uint8_t)errno;
			continue;
		}
		set_nodelay(fd);
		c->fd = fd;
		/* The connect and its timeout must reach the kernel in one submission, and the
		 * worker's timespec changes only once what used the old value was submitted. */
		if (io_uring_sq_space_left(&w->ring) < 2 ||
		    (c->cn_timeout && w->connect_ts_units != c->cn_timeout))
			io_uring_submit(&w->ring);
		if (c->cn_timeout && w->connect_ts_units != c->cn_timeout) {
			w->connect_ts_units = c->cn_timeout;
			w->connect_ts.tv_sec = c->cn_timeout / 100;
			w->connect_ts.tv_nsec = (long long)(c->cn_timeout % 100) * 10000000;
		}
		sqe = sqe_get(w);
		io_uring_prep_connect(sqe, fd, (const struct sockaddr *)ss, c->to->len[i]);
		io_uring_sqe_set_data64(sqe, UD(c, OP_CONNECT));
		c->refs++;
		if (c->cn_timeout)
			timeout_link(c, sqe);
		return 0;
	}
	return c->cn_err ? -(int)c->cn_err : -ECONNREFUSED;
}

/**
 * tide_conn_connect() - open a connection from the worker's thread, trying each address in
 * turn.
 * @tw:         the worker (call on its thread: from a callback, a timer or posted work).
 * @to:         the addresses (tide_addrs_resolve()); not copied: it must stay as it is
 *              until ops->open or ops->end ran.
 * @timeout_ms: the most one attempt may take (0: the kernel's own SYN retries); kept in
 *              10 ms units (rounded up), at most 655 s.
 * @ops:        the connection's callbacks: ops->open once connected, or ops->end with
 *              TIDE_END_CONNECT (err: the last attempt's error, -ETIMEDOUT for a timeout).
 * @data:       its application data.
 * @cp:         gets the connection at once; data may be queued on it before it connects.
 *
 * Return: 0; -EINVAL a NULL argument or an empty list; -ESHUTDOWN the worker drains;
 * -ENOMEM; or socket()'s error (-EMFILE ...) when no socket could be made for any address
 * (then there is no connection and no callback).
 */
int tide_conn_connect(struct tide_worker *tw, const struct tide_addrs *to, unsigned timeout_ms,
		      const struct tide_conn_ops *ops, void *data, struct tide_conn **cp)
{
	struct worker *w = W(tw);
	struct tide_conn *c;
	int rc;

	if (!w || !to || !cp || !to->n || to->n > TIDE_ADDRS_MAX)
		return -EINVAL;
	if (w->draining)
		return -ESHUTDOWN;
	c = conn_new(w, -1, ops, data);
	if (!c)
		return -ENOMEM;
	c->flags |= F_CONNECTING;
	c->to = to;
	/* In 10 ms units, rounded up; at most 655 s. */
	c->cn_timeout = (uint16_t)(timeout_ms / 10 + (timeout_ms % 10 != 0));
	if (timeout_ms > 655350)
		c->cn_timeout = UINT16_MAX;
	rc = connect_next(c);
	if (rc) {
		/* Nothing started: take the connection back without a callback. */
		connecting_free(c);
		c->ops = NULL;
		conn_end(c, TIDE_END_CONNECT, rc);
		return rc;
	}
	*cp = c;
	return 0;
}

void on_connect(struct tide_conn *c, int res)
{
	int err;

	c->refs--;
	if (c->flags & F_ENDED)
		return;
	if (res == 0) {
		connecting_free(c);
		conn_open(c);
		return;
	}
	err = res == -ECANCELED ? -ETIMEDOUT : res;
	c->cn_err = (uint8_t)-err;
	close(c->fd);
	c->fd = -1;
	if (c->cn_next < c->to->n)
		STAT_ADD(conn_w(c), retries, 1);
	if (connect_next(c))
		conn_end(c, TIDE_END_CONNECT, err);
}

void on_connect_timeout(struct tide_conn *c)
{
	c->refs--;
}
