/* SPDX-License-Identifier: MIT */
/*
 * connect.c - outbound connections (tide_conn_connect): an address list tried in turn, each
 * attempt bounded by a timeout. Engine side.
 *
 * The connection exists from the call on (the application may queue data on it and gets its
 * handle at once); it is not read or sent on until connected. Each attempt is a fresh socket
 * (a socket whose connect failed is not reused) and an io_uring connect linked to a timeout
 * (IOSQE_IO_LINK + link timeout), so a black-holed address costs at most timeout_ms before
 * the next is tried, as curl does with a name's addresses. A refusal, unreachability or the
 * timeout moves on; when the list is exhausted the connection ends TIDE_END_CONNECT with the
 * last error (-ETIMEDOUT for a timeout). Resolving the name again is the application's
 * choice (tide_addrs_resolve() blocks, so it does not belong on a worker).
 *
 * Invariant: while F_CONNECTING, c->cn holds the list, and the connect (and its timeout,
 * when one was asked for) each hold a reference to c.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "net_internal.h"

void connecting_free(struct tide_conn *c)
{
	free(c->cn);
	c->cn = NULL;
	c->flags &= ~F_CONNECTING;
}

/* Start the next attempt: 0, or the last error when no address is left. */
static int connect_next(struct tide_conn *c)
{
	struct worker *w = c->w;
	struct connecting *cn = c->cn;

	while (cn->next < cn->n) {
		unsigned i = cn->next++;
		struct io_uring_sqe *sqe;
		int fd = socket(cn->a[i].ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0) {
			cn->last_err = -errno;
			continue;
		}
		set_nodelay(fd);
		c->fd = fd;
		/* The connect and its timeout must reach the kernel in one submission. */
		if (io_uring_sq_space_left(&w->ring) < 2)
			io_uring_submit(&w->ring);
		sqe = sqe_get(w);
		io_uring_prep_connect(sqe, fd, (struct sockaddr *)&cn->a[i].ss, cn->a[i].len);
		io_uring_sqe_set_data64(sqe, UD(c, OP_CONNECT));
		c->refs++;
		if (cn->timeout_ms) {
			sqe->flags |= IOSQE_IO_LINK;
			sqe = sqe_get(w);
			io_uring_prep_link_timeout(sqe, &cn->ts, 0);
			io_uring_sqe_set_data64(sqe, UD(c, OP_LTIMEOUT));
			c->refs++;
		}
		return 0;
	}
	return cn->last_err ? cn->last_err : -ECONNREFUSED;
}

/**
 * tide_conn_connect() - open a connection from the worker's thread, trying each address in
 * turn.
 * @tw:         the worker (call on its thread: from a callback, a timer or posted work).
 * @to:         the addresses (tide_addrs_resolve()); copied.
 * @timeout_ms: the most one attempt may take (0: the kernel's own SYN retries).
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
	struct connecting *cn;
	struct tide_conn *c;
	int rc;

	if (!w || !to || !cp || !to->n || to->n > TIDE_ADDRS_MAX)
		return -EINVAL;
	if (w->draining)
		return -ESHUTDOWN;
	cn = malloc(sizeof(*cn) + to->n * sizeof(cn->a[0]));
	if (!cn)
		return -ENOMEM;
	cn->next = 0;
	cn->n = to->n;
	cn->timeout_ms = timeout_ms;
	cn->last_err = 0;
	cn->ts.tv_sec = timeout_ms / 1000;
	cn->ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
	for (unsigned i = 0; i < to->n; i++) {
		cn->a[i].len = to->len[i];
		memcpy(&cn->a[i].ss, &to->addr[i], sizeof(cn->a[i].ss));
	}
	c = conn_new(w, -1, ops, data);
	if (!c) {
		free(cn);
		return -ENOMEM;
	}
	c->flags |= F_CONNECTING;
	c->cn = cn;
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
	c->cn->last_err = res == -ECANCELED ? -ETIMEDOUT : res;
	close(c->fd);
	c->fd = -1;
	err = c->cn->last_err;
	if (c->cn->next < c->cn->n)
		STAT_ADD(c->w, retries, 1);
	if (connect_next(c))
		conn_end(c, TIDE_END_CONNECT, err);
}

void on_connect_timeout(struct tide_conn *c)
{
	c->refs--;
}
