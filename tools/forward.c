/* SPDX-License-Identifier: MIT */
/*
 * forward.c - tide-relay's forwarding: pairs of connections (client, upstream) or one
 * connection echoed onto itself, on the public agent API (tide/net.h) only. Application side.
 *
 * Each connection's application data is its peer: the upstream for a client, the client for
 * an upstream, itself in echo mode, NULL once the peer ended. The same callbacks serve every
 * case:
 *  - recv: the received buffers go to the peer's send queue as they are (no copy); this
 *    side may then receive only what the queue has room for under the flow limit
 *    (tide_conn_recv_limit: the kernel is asked for no more), and with no room it waits
 *    until the peer's queue is back under half the limit (tide_conn_notify_below ->
 *    drained). So a direction holds at most the limit, exactly; and once a worker's queues
 *    hold its budget, only directions holding less than `small` receive (the reserve).
 *  - eof: FIN is passed on, after the bytes before it (tide_conn_shutdown(peer, false)).
 *  - send_error: the bytes toward this side are lost, so the peer stops being read; what
 *    this side still receives is forwarded; its end resets the peer (below).
 *  - drain: a pair whose exchange is over (a FIN passed on, nothing queued) closes at once
 *    instead of holding the drain to its deadline; the others run until they end.
 *  - end: a clean end leaves the peer to finish by itself; any other (reset, timeout, drain,
 *    connect failure) resets the peer after what it has queued went out, so the peer gets
 *    every byte that was received for it and then learns that the rest was cut.
 * The upstream connect tries every address of the name in turn, each for the connect
 * timeout; the client's bytes wait in the upstream's queue meanwhile (bounded as above).
 * When every address failed, the main thread resolves the name again (tide-relay.c).
 */
#include <stdatomic.h>
#include <stddef.h>

#include "relay.h"

static const struct forward_config *fwd;
static _Atomic bool draining; /* set by the first drain callback; read on every worker */

static void drop(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct tide_agent *a = tide_worker_agent(tide_conn_worker(c));

	for (unsigned i = 0; i < n; i++)
		tide_buf_put(a, bufs[i].data);
}

/*
 * Let src receive what the queue toward peer has room for: the receives ask the kernel for
 * no more (tide_conn_recv_limit), so the queue never passes the flow limit. Fairness: once
 * the worker's queues together hold the budget, a direction that already holds `small`
 * gets no more, so what is left of the pool (the reserve) serves the directions that hold
 * little (a new connection) and never the ones that cannot send (slow readers). With no room
 * left, src waits until the queue toward peer has shrunk by half (drained).
 */
static void allow(struct tide_conn *src, struct tide_conn *peer)
{
	size_t q = tide_conn_queued(peer);
	size_t room = q < fwd->flow_limit ? fwd->flow_limit - q : 0;
	size_t held, free_budget;

	tide_conn_recv_limit(src, 0); /* its own promise out of the sum first */
	held = tide_worker_held(tide_conn_worker(peer));
	free_budget = held < fwd->budget ? fwd->budget - held : 0;
	if (room > free_budget) /* the reserve: up to `small` for a direction holding less */
		room = q < fwd->small && free_budget < fwd->small - q ? fwd->small - q
								      : free_budget;
	tide_conn_recv_limit(src, room);
	if (!room)
		tide_conn_notify_below(peer, q >= fwd->flow_limit ? fwd->flow_limit / 2 : q / 2);
}

static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct tide_conn *peer = tide_conn_data(c);

	if (!peer) {
		drop(c, bufs, n); /* the peer is gone; this side is reset once flushed */
		return;
	}
	if (tide_conn_send(peer, bufs, n))
		return; /* the peer cannot take it: its end resets this side */
	allow(c, peer);
}

/*
 * While draining, a pair one of whose directions passed its FIN on, with nothing queued
 * either way, has finished its exchange: close both sides normally rather than hold the
 * drain to its deadline (a client that keeps its side open after the upstream's answer).
 * While something is queued, the check runs again when the queue is empty (drained).
 */
static void drain_check(struct tide_conn *c)
{
	struct tide_conn *peer = tide_conn_data(c);

	if (!atomic_load_explicit(&draining, memory_order_relaxed) || !peer)
		return;
	if (tide_conn_queued(c)) {
		tide_conn_notify_below(c, 0);
		return;
	}
	if (tide_conn_queued(peer)) {
		tide_conn_notify_below(peer, 0);
		return;
	}
	if (!((tide_conn_state(c) | tide_conn_state(peer)) & TIDE_CONN_SHUT))
		return;
	if (peer != c)
		tide_conn_close(peer);
	tide_conn_close(c);
}

/* The peer's queue drained: read from it again (c's data is the side that fills c). */
static void on_drained(struct tide_conn *c)
{
	struct tide_conn *src = tide_conn_data(c);

	if (src)
		allow(src, c);
	drain_check(c);
}

static void on_eof(struct tide_conn *c)
{
	struct tide_conn *peer = tide_conn_data(c);

	if (peer)
		tide_conn_shutdown(peer, false);
	drain_check(c);
}

static void on_drain(struct tide_conn *c)
{
	atomic_store_explicit(&draining, true, memory_order_relaxed);
	drain_check(c);
}

static void on_send_error(struct tide_conn *c, int err)
{
	struct tide_conn *peer = tide_conn_data(c);

	(void)err;
	if (peer == c)
		tide_conn_abort(c); /* echo: nothing can go back to the client */
	else if (peer)
		tide_conn_pause(peer);
}

static void on_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct tide_conn *peer = tide_conn_data(c);

	(void)err;
	if (why == TIDE_END_CONNECT) /* the name may have moved: resolve it again */
		atomic_store_explicit(&((struct forward_config *)fwd)->resolve, true,
				      memory_order_relaxed);
	if (!peer || peer == c)
		return;
	tide_conn_set_data(peer, NULL);
	if (why == TIDE_END_CLEAN)
		return;
	tide_conn_pause(peer);
	tide_conn_shutdown(peer, true);
}

/* Connected (or, for echo, accepted): receive what the queue toward the peer has room for.
 * An upstream's peer is its client; a client opens before its upstream exists (itself). */
static void limit_open(struct tide_conn *c)
{
	struct tide_conn *peer = tide_conn_data(c);

	allow(c, peer ? peer : c);
}

static const struct tide_conn_ops upstream_ops = {
	.open = limit_open,
	.recv = on_recv,
	.eof = on_eof,
	.send_error = on_send_error,
	.drained = on_drained,
	.drain = on_drain,
	.end = on_end,
};

static void client_open(struct tide_conn *c)
{
	struct tide_conn *up;

	const struct tide_addrs *to = atomic_load_explicit(&fwd->upstream, memory_order_acquire);

	if (tide_conn_connect(tide_conn_worker(c), to, fwd->connect_timeout_ms, &upstream_ops, c,
			      &up)) {
		tide_conn_set_data(c, NULL);
		tide_conn_abort(c);
		return;
	}
	tide_conn_set_data(c, up);
	limit_open(c);
}

static void echo_open(struct tide_conn *c)
{
	tide_conn_set_data(c, c);
	limit_open(c);
}

static const struct tide_conn_ops client_ops = {
	.open = client_open,
	.recv = on_recv,
	.eof = on_eof,
	.send_error = on_send_error,
	.drained = on_drained,
	.drain = on_drain,
	.end = on_end,
};

static const struct tide_conn_ops echo_ops = {
	.open = echo_open,
	.recv = on_recv,
	.eof = on_eof,
	.send_error = on_send_error,
	.drained = on_drained,
	.drain = on_drain,
	.end = on_end,
};

const struct tide_conn_ops *forward_ops(const struct forward_config *cfg)
{
	fwd = cfg;
	return atomic_load(&cfg->upstream) ? &client_ops : &echo_ops;
}
