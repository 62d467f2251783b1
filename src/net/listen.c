/* SPDX-License-Identifier: MIT */
/*
 * listen.c - listeners: opened and closed before start or while the workers run
 * (tide_agent_listen(), tide_agent_listen_close()), and the multishot accepts on them.
 * Engine side.
 *
 * A listener is one slot k of the agent's table (a->lc[k]: address, callbacks) and, on each
 * worker, socket k of that worker (w->ls[k]): one SO_REUSEPORT socket per worker, so the
 * kernel spreads new connections over the workers. The table belongs to the application's
 * threads (under a->listen_lock); socket k of a worker belongs to that worker's thread once
 * it runs.
 *
 * Opening: the calling thread resolves and binds every worker's socket (so a bad address or
 * a taken port fails in the call and nothing is half open), then hands each worker its
 * socket. Before start it is stored directly; while the workers run it goes by
 * tide_agent_post() and the call waits until every worker has armed its accept (a worker
 * that drains closes it instead: -ESHUTDOWN, and the others' are closed again). The sockets
 * listen from bind() on, so a connection that arrives before a worker's accept is armed
 * waits in that socket's queue: none is refused.
 *
 * Closing: each worker cancels its accept and closes its socket only once no accept is in
 * flight on it (a completion may still name the slot, and a socket with an armed accept
 * stays open in the kernel until the accept ends); a connection the kernel accepted before
 * the cancel is served as usual. The call returns when every worker's socket is closed, so
 * a connect after it is refused; connections accepted there earlier go on untouched (they
 * belong to the worker, not to the listener), and those still in the accept queues are
 * reset by the kernel. Only then is the slot free for another listener.
 *
 * The waits take a->lock and a->cond (as tide_agent_start() does); a worker reports with
 * ctl_done(). A caller on one of the agent's own workers would wait for itself: -EDEADLK.
 *
 * Descriptors for what a connection opens next (cfg.conn_fds, haproxy's way in kind: it
 * accepts only while its descriptor limit has room for a connection's whole need): an accept
 * that took the last free descriptor would leave a proxy's upstream connect to fail with
 * EMFILE and the client to be reset. So with conn_fds set, each listener socket holds that
 * many descriptors in reserve (duplicates of the worker's eventfd: no file, no path) before
 * its accept is armed, and the accept is single-shot: the kernel takes one connection, the
 * reserve is closed just before the open callback (which then finds the room), and the next
 * accept is armed only once the reserve is taken again. Without the room the listener is
 * held (counted as an accept failure, -EMFILE): the clients wait in the listen queue, and the
 * worker tries again when one of its connections ends and on its tick.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net_internal.h"

/* One open or close handed to the workers; lives on the caller's stack until pending is 0. */
struct listen_ctl {
	struct tide_agent *a;
	unsigned slot;
	int *fds;	  /* open: worker i's socket */
	unsigned pending; /* workers that have not reported yet (a->lock) */
	int rc;		  /* the first error a worker reported */
};

static void ctl_done(struct listen_ctl *ctl, int rc)
{
	struct tide_agent *a = ctl->a;

	pthread_mutex_lock(&a->lock);
	if (rc && !ctl->rc)
		ctl->rc = rc;
	ctl->pending--;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* Post fn(w, ctl) to every worker and wait for their reports; a worker that has ended
 * cannot take it: its share is done here by gone(a, i, ctl). Returns the first error. */
static int ctl_run(struct listen_ctl *ctl, void (*fn)(struct tide_worker *, void *),
		   void (*gone)(struct tide_agent *, unsigned, struct listen_ctl *))
{
	struct tide_agent *a = ctl->a;
	int rc;

	pthread_mutex_lock(&a->lock);
	ctl->pending = a->nworkers;
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < a->nworkers; i++)
		if (tide_agent_post(a, i, fn, ctl)) { /* -ESHUTDOWN (or -ENOMEM) */
			gone(a, i, ctl);
			ctl_done(ctl, -ESHUTDOWN);
		}
	pthread_mutex_lock(&a->lock);
	while (ctl->pending)
		pthread_cond_wait(&a->cond, &a->lock);
	rc = ctl->rc;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

/* ------------------------------------------------------ on the workers -- */

static void accept_failed(struct lsock *ls, int err);

/* Take the reserve of cfg.conn_fds descriptors; false (counted, the listener held) when the
 * process has no room for it. Another error (not a shortage) gives up the reserve. */
static bool spares_take(struct lsock *ls)
{
	struct worker *w = ls->w;

	while (ls->nspare < w->agent->cfg.conn_fds) {
		int fd = fcntl(w->wake_fd, F_DUPFD_CLOEXEC, 0);

		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			accept_failed(ls, -errno);
			w->accept_held = true;
			return false;
		}
		if (fd < 0)
			return true;
		ls->spare[ls->nspare++] = fd;
	}
	return true;
}

/* Hand the reserve to the connection just accepted (or give it back at a close). */
static void spares_give(struct lsock *ls)
{
	while (ls->nspare)
		close(ls->spare[--ls->nspare]);
}

void accept_arm(struct lsock *ls)
{
	struct io_uring_sqe *sqe;
	bool reserve = ls->w->agent->cfg.conn_fds > 0;

	if (ls->armed || ls->closing || ls->w->draining || ls->fd < 0)
		return;
	if (reserve && !spares_take(ls))
		return; /* the clients wait in the queue: a connection's end or the tick retries */
	sqe = sqe_get(ls->w);
	if (reserve) /* one connection per reserve */
		io_uring_prep_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_multishot_accept(sqe, ls->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, UD(ls, OP_ACCEPT));
	ls->armed = true;
}

/* Close the socket once no accept is in flight on it, so that a new connection is refused
 * (and those in its queue reset), never left waiting; then tell a waiting close. */
static void ls_release(struct lsock *ls)
{
	if (ls->armed)
		return;
	spares_give(ls);
	if (ls->fd >= 0) {
		close(ls->fd);
		ls->fd = -1;
	}
	ls->closing = false;
	if (ls->ctl) {
		struct listen_ctl *ctl = ls->ctl;

		ls->ctl = NULL;
		ctl_done(ctl, 0);
	}
}

/* Out of descriptors or memory: the connection waits in the listen queue for the tick's
 * retry; counted, with its cause, for the application (tide_agent_stats()). */
static void accept_failed(struct lsock *ls, int err)
{
	if (err != -EMFILE && err != -ENFILE && err != -ENOBUFS && err != -ENOMEM)
		return;
	STAT_ADD(ls->w, accept_errors, 1);
	atomic_store_explicit(&ls->w->agent->accept_error, err, memory_order_relaxed);
}

void on_accept_cqe(struct lsock *ls, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		ls->armed = false;
	if (cqe->res < 0)
		accept_failed(ls, cqe->res);
	if (ls->w->draining) {
		if (cqe->res >= 0)
			close(cqe->res);
		ls_release(ls);
		return;
	}
	if (cqe->res >= 0) {
		spares_give(ls);	 /* the room this connection may need */
		on_accept(ls, cqe->res); /* also on a closing listener: the kernel took it */
	}
	if (ls->closing)
		ls_release(ls);
	else if (!ls->armed && cqe->res >= 0)
		accept_arm(ls); /* an error (EMFILE ...) waits for the tick: no spinning */
}

void listeners_arm(struct worker *w)
{
	w->accept_held = false; /* set again by a listener that still finds no room */
	for (unsigned i = 0; i < w->nls; i++)
		accept_arm(&w->ls[i]);
}

bool accepts_armed(const struct worker *w)
{
	for (unsigned i = 0; i < w->nls; i++)
		if (w->ls[i].armed)
			return true;
	return false;
}

/* Stop accepting anywhere (drain, close): cancel the armed accepts, close what is idle. */
static void ls_stop(struct worker *w, struct lsock *ls)
{
	if (ls->armed && !ls->closing)
		cancel_ud(w, UD(ls, OP_ACCEPT));
	ls->closing = true;
	ls_release(ls);
}

void listeners_drain(struct worker *w)
{
	for (unsigned i = 0; i < w->nls; i++)
		if (w->ls[i].fd >= 0 || w->ls[i].armed)
			ls_stop(w, &w->ls[i]);
}

/* Posted: take this worker's socket of a new listener and accept on it. */
static void ls_add_on(struct tide_worker *tw, void *arg)
{
	struct worker *w = W(tw);
	struct listen_ctl *ctl = arg;
	const struct listen_cfg *lc = &w->agent->lc[ctl->slot];
	struct lsock *ls = &w->ls[ctl->slot];
	int fd = ctl->fds[w->index];

	if (w->draining || w->ended) {
		close(fd);
		ctl_done(ctl, -ESHUTDOWN);
		return;
	}
	*ls = (struct lsock){.w = w, .fd = fd, .ops = lc->ops, .data = lc->data};
	if (w->nls <= ctl->slot)
		w->nls = ctl->slot + 1;
	accept_arm(ls);
	ctl_done(ctl, 0);
}

/* Posted: close this worker's socket of a listener; reported once it is closed. */
static void ls_close_on(struct tide_worker *tw, void *arg)
{
	struct worker *w = W(tw);
	struct listen_ctl *ctl = arg;
	struct lsock *ls = &w->ls[ctl->slot];

	if (ls->fd < 0 && !ls->armed) {
		ctl_done(ctl, 0);
		return;
	}
	ls->ctl = ctl;
	ls_stop(w, ls);
}

/* A worker that ended cannot take its socket: close it here (its thread no longer runs). */
static void add_gone(struct tide_agent *a, unsigned i, struct listen_ctl *ctl)
{
	(void)a;
	close(ctl->fds[i]);
}

static void close_gone(struct tide_agent *a, unsigned i, struct listen_ctl *ctl)
{
	struct lsock *ls = &a->w[i].ls[ctl->slot];

	if (ls->fd >= 0 && !ls->armed) {
		close(ls->fd);
		ls->fd = -1;
	}
}

/* ------------------------------------------------------ the application -- */

/* Close slot k on every worker (the caller holds listen_lock) and free it. */
static int slot_close(struct tide_agent *a, unsigned k)
{
	struct listen_ctl ctl = {.a = a, .slot = k};
	int rc = 0;

	if (!a->started) {
		for (unsigned i = 0; i < a->nworkers; i++) {
			struct lsock *ls = &a->w[i].ls[k];

			if (ls->fd >= 0)
				close(ls->fd);
			ls->fd = -1;
		}
	} else {
		rc = ctl_run(&ctl, ls_close_on, close_gone);
		if (rc == -ESHUTDOWN) /* those workers ended: their sockets are closed */
			rc = 0;
	}
	a->lc[k].used = false;
	return rc;
}

/* Bind one socket per worker on lc's address (the first picks the port when it is 0). */
static int bind_all(struct tide_agent *a, struct listen_cfg *lc, int *fds, unsigned *port)
{
	unsigned p = 0; /* the first worker binds what the address says; the others join it */

	for (unsigned i = 0; i < a->nworkers; i++) {
		int fd = listener_open(&lc->ss, lc->len, lc->v6only, &p);

		if (fd < 0) {
			while (i--) /* undo the workers before this one */
				close(fds[i]);
			return fd;
		}
		fds[i] = fd;
	}
	*port = p;
	return 0;
}

#define V6ONLY_ANY (-2) /* slot_find(): whatever the listener's IPV6_V6ONLY */

/* The slot listening on the first address of addrs with IPV6_V6ONLY v6only, or -ENOENT. */
static int slot_find(struct tide_agent *a, const struct tide_addrs *addrs, int v6only)
{
	for (unsigned k = 0; k < MAX_LISTENERS; k++)
		if (a->lc[k].used &&
		    addr_same(&a->lc[k].ss, a->lc[k].len, &addrs->addr[0], addrs->len[0]) &&
		    (v6only == V6ONLY_ANY || a->lc[k].v6only == v6only))
			return (int)k;
	return -ENOENT;
}

/* Whether a listener on ss (every: ":P") would overlap one of a's: every address takes
 * every other address of its port, as nginx refuses "listen 80" beside "listen [::]:80
 * ipv6only=off" (the kernel would let SO_REUSEPORT sockets share it, and one family's
 * connections would go to the other listener). */
static bool every_overlaps(const struct tide_agent *a, const struct sockaddr_storage *ss,
			   bool every)
{
	for (unsigned k = 0; k < MAX_LISTENERS; k++)
		if (a->lc[k].used && (every || a->lc[k].every) &&
		    addr_port(&a->lc[k].ss) == addr_port(ss))
			return true;
	return false;
}

/* Hand slot k's sockets to the workers (before start: directly). */
static int slot_open(struct tide_agent *a, unsigned k, int *fds)
{
	struct listen_ctl ctl = {.a = a, .slot = k, .fds = fds};
	int rc;

	if (!a->started) {
		for (unsigned i = 0; i < a->nworkers; i++) {
			struct worker *w = &a->w[i];

			w->ls[k] = (struct lsock){
				.w = w, .fd = fds[i], .ops = a->lc[k].ops, .data = a->lc[k].data};
			if (w->nls <= k)
				w->nls = k + 1;
		}
		return 0;
	}
	rc = ctl_run(&ctl, ls_add_on, add_gone);
	if (rc)
		slot_close(a, k); /* the workers that took theirs close them again */
	return rc;
}

static bool on_own_worker(const struct tide_agent *a)
{
	return tls_worker && tls_worker->agent == a;
}

/**
 * tide_agent_listen() - bind an address, one SO_REUSEPORT socket per worker, and accept
 * there; before start or while the workers run.
 * @a:        the agent.
 * @hostport: "HOST:PORT" ("[V6]:PORT"); an empty HOST or "*" binds every address: one
 *            "::" socket taking IPv6 and IPv4 (IPV6_V6ONLY off) where the host has IPv6,
 *            else "0.0.0.0". Any other IPv6 address, "[::]" included, is IPV6_V6ONLY, so
 *            "[::]:P" takes IPv6 only and may go with "0.0.0.0:P"; the host's
 *            net.ipv6.bindv6only changes neither. Every address overlaps any other
 *            listener on its port (-EADDRINUSE either way round).
 * @ops:      the callbacks of the connections accepted here.
 * @data:     their application data to start with.
 * @port:     gets the port bound (the one picked when @hostport says 0); may be NULL.
 *
 * While the workers run it returns once each of them accepts on its socket (connections
 * that come before wait in that socket's queue). Blocks (name resolution, the workers):
 * call it off the agent's workers, and not at the same time as tide_agent_start() or
 * tide_agent_destroy(); calls of tide_agent_listen() and tide_agent_listen_close() from
 * several threads take turns.
 *
 * Return: 0; -EINVAL a NULL agent or ops, or a bad address; -ENOSPC MAX_LISTENERS (32)
 * listeners already; -ENOENT the name does not resolve; -EADDRINUSE the agent listens there
 * already (or on every address of that port, or on that port when @hostport is every
 * address), or the errors of bind() and listen(); -ESHUTDOWN the agent drains or has ended;
 * -EDEADLK called on one of @a's workers; -ENOMEM.
 */
int tide_agent_listen(struct tide_agent *a, const char *hostport, const struct tide_conn_ops *ops,
		      void *data, unsigned *port)
{
	struct tide_addrs addrs;
	struct listen_cfg *lc;
	unsigned p = 0, k;
	int *fds, rc;

	if (!a || !ops)
		return -EINVAL;
	if (on_own_worker(a))
		return -EDEADLK;
	if (a->started && (a->joined || atomic_load(&a->stop)))
		return -ESHUTDOWN;
	rc = tide_addrs_resolve(hostport, true, &addrs);
	if (rc)
		return rc;
	fds = calloc(a->nworkers, sizeof(*fds));
	if (!fds)
		return -ENOMEM;
	pthread_mutex_lock(&a->listen_lock);
	for (k = 0; k < MAX_LISTENERS && a->lc[k].used; k++)
		;
	rc = k < MAX_LISTENERS ? 0 : -ENOSPC;
	lc = &a->lc[k < MAX_LISTENERS ? k : 0];
	if (!rc && addr_port(&addrs.addr[0]) &&
	    (slot_find(a, &addrs, V6ONLY_ANY) >= 0 ||
	     every_overlaps(a, &addrs.addr[0], hostport_every(hostport))))
		rc = -EADDRINUSE; /* ":P" and "[::]:P" too: both are [::]:P */
	if (!rc) {
		*lc = (struct listen_cfg){
			.ss = addrs.addr[0],
			.len = addrs.len[0],
			.v6only = listen_v6only(&addrs.addr[0], hostport_every(hostport)),
			.every = hostport_every(hostport),
			.ops = ops,
			.data = data};
		rc = bind_all(a, lc, fds, &p);
	}
	if (!rc) {
		set_port(&lc->ss, p); /* as bound: tide_agent_listen_close() finds it so */
		lc->used = true;
		rc = slot_open(a, k, fds);
	}
	pthread_mutex_unlock(&a->listen_lock);
	free(fds);
	if (!rc && port)
		*port = p;
	return rc;
}

/**
 * tide_agent_listen_close() - stop accepting on one listener and close its sockets; the
 * connections accepted there go on untouched.
 * @a:        the agent.
 * @hostport: the listener's "HOST:PORT" as tide_agent_listen() was given it, with the port it
 *            bound (the one picked, if it was given 0).
 *
 * While the workers run it returns once every worker has closed its socket, so a connect
 * after it is refused; connections still in the accept queues then (the kernel finished
 * their handshake, no worker accepted them yet) are reset. Blocks and takes turns like
 * tide_agent_listen(); the slot is free for a new listener once it returns.
 *
 * Return: 0; -EINVAL a NULL agent, or not HOST:PORT; -ENOENT no listener of @a there, or
 * the name does not resolve; -EDEADLK called on one of @a's workers; -ENOMEM.
 */
int tide_agent_listen_close(struct tide_agent *a, const char *hostport)
{
	struct tide_addrs addrs;
	int rc;

	if (!a)
		return -EINVAL;
	if (on_own_worker(a))
		return -EDEADLK;
	rc = tide_addrs_resolve(hostport, true, &addrs);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->listen_lock);
	rc = slot_find(a, &addrs, listen_v6only(&addrs.addr[0], hostport_every(hostport)));
	if (rc >= 0)
		rc = slot_close(a, (unsigned)rc);
	pthread_mutex_unlock(&a->listen_lock);
	return rc;
}
