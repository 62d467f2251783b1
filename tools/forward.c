/* SPDX-License-Identifier: MIT */
/*
 * forward.c - tide-relay's forwarding: pairs of connections (client, upstream) or one
 * connection echoed onto itself, on the public agent API (tide/net.h) only. Application side.
 *
 * Each pair is one struct pair, the application data of both its connections. The data
 * path is as before:
 *  - recv: the received buffers go to the peer's send queue as they are (no copy); this
 *    side may then receive only what the queue has room for under the flow limit
 *    (tide_conn_recv_limit), with a worker-wide budget and a reserve for directions that
 *    hold little (allow()); with no room it waits for the peer's queue to halve (drained).
 *  - drain: data flows both ways until each direction has ended (its FIN passed on after
 *    all its bytes: the engine ends a side that both got and sent FIN) or the drain
 *    deadline passes; what is left then is reset on both sides (end). One direction's FIN,
 *    or an empty queue, is not the end of the exchange: a reply may come after the
 *    request's FIN, an upload after the greeting's FIN, a chunk after a pause. One case is
 *    over early (drain_sweep): the upstream has finished (its FIN and every byte before it
 *    went to the client, every byte of the client's reached the upstream's kernel) and the
 *    client has sent nothing for --drain-idle since. The client's socket is then closed
 *    (it has all its bytes and the FIN: nothing was cut toward it, and a byte it sends
 *    later is refused with a reset by its kernel), the upstream's reset (its peer's stream
 *    did not end with a FIN), and the pair logged as 'drain'. A client that finished
 *    first is never cut early: its upstream may still be working on the reply.
 *  - eof: FIN is passed on, after the bytes before it (tide_conn_shutdown(peer, false)).
 *  - send_error: the bytes toward this side are lost, so the peer stops being read.
 *  - end: a clean end leaves the peer to finish by itself; any other resets the peer after
 *    what it has queued went out.
 * The operator's side (tools/relay, through the runtime):
 *  - accept: over --max-conns the client is reset at once, with its access line (refused);
 *    with --access-log, --max-conns-per-ip, --send-proxy or --accept-proxy, the
 *    pair gets a struct pair_ext: the client's address (from getpeername, or a PROXY header
 *    with --accept-proxy) and the listener's, and the start time; the client is counted per
 *    IP (refused over the limit). Keepalive if asked.
 *  - connect: the balancer gives the first server and the ones after it, one at a time
 *    (relay_balancer_first/next: no list per connection); each is tried in turn, one
 *    address per attempt, for the connect timeout, and each failure is told to the balancer
 *    (passive health) and logged, rate-limited. The client is not read until an upstream
 *    accepted, so no byte is queued on an attempt that may fail. --send-proxy writes the
 *    PROXY header first once an attempt succeeded.
 *  - close: when both sides have ended, the access line is written (for a pair with its
 *    ext: one accepted before a reload turned the access log on has no line, and one
 *    accepted before a reload set --max-conns-per-ip does not count), the balancer told
 *    (bytes, active count), the per-IP count released, the balancer reference dropped.
 * Memory: an idle relayed client costs its pair (56 bytes without the options above) and
 * the engine's two connections (64 bytes each).
 */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "relay.h"

static const struct forward_config *fwd;

/* What --accept-proxy needs until the header is complete (then freed). */
struct proxy_wait {
	struct relay_pp_parser pp;
	struct tide_buf pending[16]; /* payload that came with the header */
	unsigned n_pending;
};

/* An IPv4 or IPv6 address and port in 20 bytes (a sockaddr_in6 takes 28); no IPv6 scope id
 * (a PROXY header has none either). */
struct caddr {
	uint8_t ip[16];
	uint16_t port; /* network order */
	uint8_t family;
};

/* What the operator's options need (only with them), from the accept to the end: 56 bytes,
 * a 64-byte malloc chunk. */
struct pair_ext {
	struct proxy_wait *pw; /* --accept-proxy, until the header is in */
	uint64_t start_us;     /* CLOCK_MONOTONIC, for duration_ms */
	struct caddr client, local;
};
_Static_assert(sizeof(struct pair_ext) <= 56, "a 64-byte malloc chunk");

/*
 * One client and its upstream; small, as it lives as long as the connection (idle ones too):
 * 56 bytes, a 64-byte malloc chunk.
 */
struct pair {
	struct tide_conn *client, *up; /* NULL once that side ended (or before it exists) */
	struct relay_balancer *b;      /* a reference, from the pick to the end */
	struct pair_ext *ext;	       /* NULL without the options that need it */
	uint64_t bytes_up, bytes_down;
	uint16_t connect_timeout; /* 10 ms units (as the engine keeps it); the settings it was
				     accepted with */
	uint8_t server;		  /* index in b of the attempt, if has_server */
	uint8_t first;		  /* the balancer's first choice (relay_balancer_next) */
	uint16_t attempt : 9;	  /* servers looked at after first (relay_balancer_next's k) */
	uint16_t depth : 4; /* our callbacks running on it: finish() waits for them to return */
	uint16_t end : 3;
	uint16_t send_proxy : 2, all : 1, has_server : 1, echo : 1, counted : 1, up_open : 1,
		connected : 1, end_set : 1, keepalive : 1, dead : 1;
	uint16_t heard : 1;	/* draining: the client sent bytes since the last sweep */
	uint16_t fin_seen : 1;	/* draining: the upstream had finished at the last sweep */
	uint16_t no_splice : 1; /* a splice was refused: this pair stays on the buffer path */
};
_Static_assert(sizeof(struct pair) <= 56, "an idle pair takes a 64-byte malloc chunk");
_Static_assert(RELAY_MAX_UPSTREAM <= 256, "server and first are 8 bits, attempt 9");

/* --keepalive, as tide-relay(1) says: probes after 60 s idle, every 10 s, 6 unanswered end it. */
static void keepalive_on(struct tide_conn *c)
{
	tide_conn_keepalive(c, 60, 10, 6);
}

static struct tide_agent *agent_of(struct tide_conn *c)
{
	return tide_worker_agent(tide_conn_worker(c));
}

static void drop(struct tide_agent *a, struct tide_buf *bufs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		tide_buf_put(a, bufs[i].data);
}

/* p NULL: a plain echo connection (no access log, limit or PROXY header): no pair at all. */
static struct tide_conn *peer_of(struct pair *p, struct tide_conn *c)
{
	if (!p)
		return c;
	if (p->echo)
		return c == p->client ? c : NULL;
	if (c == p->client)
		return p->up_open ? p->up : NULL;
	return c == p->up ? p->client : NULL; /* NULL too once c has ended */
}

static void set_end(struct pair *p, enum relay_end end)
{
	if (!p->end_set || (p->end == RELAY_END_CLEAN && end != RELAY_END_CLEAN)) {
		p->end = (uint8_t)end;
		p->end_set = true;
	}
}

static enum relay_end end_of(enum tide_end why)
{
	switch (why) {
	case TIDE_END_CLEAN:
		return RELAY_END_CLEAN;
	case TIDE_END_TIMEOUT:
		return RELAY_END_TIMEOUT;
	case TIDE_END_DRAIN:
		return RELAY_END_DRAIN;
	case TIDE_END_CONNECT:
		return RELAY_END_UNREACHABLE;
	default:
		return RELAY_END_RESET;
	}
}

static void caddr_set(struct caddr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		memcpy(a->ip, &in->sin_addr, 4);
		a->port = in->sin_port;
		a->family = AF_INET;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		memcpy(a->ip, &in6->sin6_addr, 16);
		a->port = in6->sin6_port;
		a->family = AF_INET6;
	}
}

/* a as a sockaddr in *buf (AF_UNSPEC when it was neither IPv4 nor IPv6). */
static const struct sockaddr *caddr_get(const struct caddr *a, struct sockaddr_in6 *buf)
{
	memset(buf, 0, sizeof(*buf));
	if (a->family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)buf;

		in->sin_family = AF_INET;
		in->sin_port = a->port;
		memcpy(&in->sin_addr, a->ip, 4);
	} else if (a->family == AF_INET6) {
		buf->sin6_family = AF_INET6;
		buf->sin6_port = a->port;
		memcpy(&buf->sin6_addr, a->ip, 16);
	}
	return (const struct sockaddr *)buf;
}

/* The client's address (the pair has its ext), in *buf. */
static const struct sockaddr *client_addr(const struct pair *p, struct sockaddr_in6 *buf)
{
	return caddr_get(&p->ext->client, buf);
}

/* --accept-proxy's wait is over (the payload behind the header was passed on or dropped). */
static void pw_free(struct pair *p)
{
	if (p->ext) {
		free(p->ext->pw);
		p->ext->pw = NULL;
	}
}

/* Both sides are gone: the access line, the counters, and free. */
static void finish(struct pair *p)
{
	struct proxy_wait *pw = p->ext ? p->ext->pw : NULL;
	struct sockaddr_in6 cbuf, lbuf;
	struct relay_access a = {
		.bytes_up = p->bytes_up,
		.bytes_down = p->bytes_down,
		.end = p->end_set ? (enum relay_end)p->end : RELAY_END_CLEAN,
	};

	if (p->b && p->has_server && p->connected) { /* upstream=-: none was reached */
		a.upstream = relay_balancer_addr(p->b, p->server, NULL);
		relay_balancer_closed(p->b, p->server, p->bytes_up, p->bytes_down);
	}
	if (p->ext) {
		a.client = client_addr(p, &cbuf);
		a.listener = caddr_get(&p->ext->local, &lbuf);
		a.duration_us = relay_now_us() - p->ext->start_us;
		relay_log_access(&a);
	}
	if (p->counted)
		relay_peer_limit_release(fwd->rt->peers, client_addr(p, &cbuf));
	relay_balancer_put(p->b);
	for (unsigned i = 0; pw && i < pw->n_pending; i++)
		tide_buf_put(fwd->agent, pw->pending[i].data);
	pw_free(p);
	free(p->ext);
	p->ext = NULL;
	if (p->depth)
		p->dead = true; /* a callback of ours is still running on it: it frees */
	else
		free(p);
}

/*
 * A callback that may end connections (a shutdown or an abort can run the end callbacks at
 * once, and the last end finishes the pair) holds the pair until it returns.
 */
static struct pair *hold(struct tide_conn *c)
{
	struct pair *p = tide_conn_data(c);

	if (p) {
		assert(p->depth < 15); /* 4 bits: our callbacks nest two or three deep */
		p->depth++;
	}
	return p;
}

static void release(struct pair *p)
{
	if (p && !--p->depth && p->dead)
		free(p);
}

static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n);

/* Adds what c received to its direction's byte count; returns it. */
static uint64_t count(struct pair *p, struct tide_conn *c, const struct tide_buf *bufs, unsigned n)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < n; i++)
		sum += bufs[i].len;
	if (c == p->client) {
		p->bytes_up += sum;
		p->heard = true;
	} else
		p->bytes_down += sum;
	return sum;
}

/*
 * Let src receive what the queue toward peer has room for: the receives ask the kernel for
 * no more (tide_conn_recv_limit), so the queue never passes the flow limit. Fairness: once
 * the worker's queues together hold the budget, only a direction whose queue is empty (it
 * keeps up: everything it received went out) may receive, `small` (one block) at a time,
 * so what is left of the worker's share (the reserve) serves new connections and those that
 * keep up, never the ones that cannot send (slow readers, whose queue is not empty). With no
 * room left (then the queue is not empty), src waits until the queue toward peer has shrunk
 * by half (drained).
 */
static void allow(struct tide_conn *src, struct tide_conn *peer)
{
	size_t q = tide_conn_queued(peer);
	size_t room = q < fwd->flow_limit ? fwd->flow_limit - q : 0;
	size_t held, free_budget;

	tide_conn_recv_limit(src, 0); /* its own promise out of the sum first */
	held = tide_worker_held(tide_conn_worker(peer));
	free_budget = held < fwd->budget ? fwd->budget - held : 0;
	if (room > free_budget) /* the reserve: `small` for a direction that keeps up */
		room = !q && free_budget < fwd->small ? fwd->small : free_budget;
	tide_conn_recv_limit(src, room);
	if (!room) /* q > 0 here: its drained callback comes */
		tide_conn_notify_below(peer, q >= fwd->flow_limit ? fwd->flow_limit / 2 : q / 2);
}

/*
 * A receive this big says the direction carries bulk data (an exchange of requests and
 * answers hardly fills one): from then on it goes through a kernel pipe (--splice), which
 * costs less CPU per byte than receiving into buffers and sending them; small exchanges
 * keep the buffer path. The engine sends what this receive queued before the pipe's bytes.
 */
#define SPLICE_AFTER (64u << 10)

static void forward(struct pair *p, struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct tide_conn *peer = peer_of(p, c);
	uint64_t got = 0;

	if (!peer) {
		drop(agent_of(c), bufs, n); /* the peer is gone; this side is reset once flushed */
		return;
	}
	if (p)
		got = count(p, c, bufs, n);
	if (tide_conn_send(peer, bufs, n))
		return; /* the peer cannot take it: its end resets this side */
	if (p && !p->echo && !p->no_splice && fwd->splice_pipe && got >= SPLICE_AFTER) {
		int rc = tide_conn_splice(c, peer, fwd->splice_pipe);

		if (rc == 0)
			return; /* the pipe bounds it now: no receive limit */
		/* -EALREADY: this direction was spliced (a receive still in flight then hands
		 * over its bytes); else no pipe (-EMFILE...): not one pipe2 per receive. */
		if (rc != -EALREADY)
			p->no_splice = true;
	}
	allow(c, peer);
}

static const struct tide_conn_ops upstream_ops;

/* The next server to try after those tried, or -1. */
static int next_server(struct pair *p)
{
	unsigned k = p->attempt;
	int i = p->b ? relay_balancer_next(p->b, p->first, p->all, &k, relay_now_ms()) : -1;

	p->attempt = k & 0x1ff;
	return i;
}

/* A connect failed for want of our own resources (relay_err_is_local): said as that, not held
 * against server i; the client is reset with end=resource. */
static void local_shortage(struct pair *p, unsigned i, int err)
{
	relay_balancer_closed(p->b, i, 0, 0); /* undo connect_start, no failure counted */
	relay_runtime_refused(fwd->rt, RELAY_REFUSED_RESOURCE);
	relay_log_limited(RELAY_LOG_ERROR, "local resource",
			  "connect to upstream %s: %s (a resource of this process or host ran "
			  "out, not the server's fault; raise ulimit -n / free ports)",
			  relay_balancer_name(p->b, i), strerror(-err));
	p->has_server = false;
	p->up = NULL;
	set_end(p, RELAY_END_RESOURCE);
	tide_conn_abort(p->client);
}

/* Try the next server in the order; false when none is left (the client is reset). */
static bool try_next(struct pair *p)
{
	int next, rc;

	while ((next = next_server(p)) >= 0) {
		unsigned i = (unsigned)next;
		const struct tide_addrs *to = relay_balancer_connect_addrs(p->b, i);

		if (!to)
			break;
		p->server = (uint8_t)i;
		p->has_server = true;
		relay_balancer_connect_start(p->b, i);
		rc = tide_conn_connect(tide_conn_worker(p->client), to,
				       (unsigned)p->connect_timeout * 10, &upstream_ops, p, &p->up);
		if (rc && relay_err_is_local(rc)) {
			local_shortage(p, i, rc);
			return false;
		}
		if (rc) {
			p->up = NULL; /* no connection and no callback: the next server */
			relay_balancer_connect_failed(p->b, i, rc, relay_now_ms());
			continue;
		}
		return true;
	}
	p->has_server = false;
	p->up = NULL;
	atomic_store_explicit(&((struct forward_config *)fwd)->resolve, true,
			      memory_order_relaxed); /* the names may have moved */
	relay_log_limited(RELAY_LOG_ERROR, "no upstream",
			  "no upstream took a connection (%u servers)",
			  p->b ? relay_balancer_count(p->b) : 0);
	set_end(p, RELAY_END_UNREACHABLE);
	tide_conn_abort(p->client);
	return false;
}

static void start_connect(struct pair *p)
{
	struct sockaddr_in6 sa = {0};
	socklen_t len = sizeof(sa);
	const struct sockaddr *who = (struct sockaddr *)&sa;
	int first;
	bool all = false;

	if (p->ext) /* --balance source hashes it */
		who = client_addr(p, &sa);
	else
		getpeername(tide_conn_fd(p->client), (struct sockaddr *)&sa, &len);
	p->b = relay_runtime_balancer(fwd->rt);
	first = p->b ? relay_balancer_first(p->b, who, relay_now_ms(), &all) : -1;
	p->first = (uint8_t)(first < 0 ? 0 : first);
	p->all = all && first >= 0;
	p->attempt = first < 0 ? RELAY_MAX_UPSTREAM : 0; /* none: try_next finds none */
	tide_conn_pause(p->client); /* its bytes wait in its socket until an upstream accepts */
	try_next(p);
}

/* The client's address is known: the per-IP limit, then the upstream. */
static void admitted(struct pair *p)
{
	struct proxy_wait *pw = p->ext ? p->ext->pw : NULL;
	struct sockaddr_in6 cbuf;
	char who[64];

	if (p->ext && !relay_peer_limit_acquire(fwd->rt->peers, client_addr(p, &cbuf))) {
		relay_runtime_refused(fwd->rt, RELAY_REFUSED_PER_IP);
		relay_addr_format(client_addr(p, &cbuf), who, sizeof(who));
		relay_log_limited(RELAY_LOG_WARN, "max-conns-per-ip",
				  "%s is over --max-conns-per-ip: closed", who);
		set_end(p, RELAY_END_REFUSED);
		tide_conn_abort(p->client);
		return;
	}
	p->counted = p->ext != NULL;
	if (p->echo) {
		if (pw) { /* what came behind the PROXY header goes back first */
			count(p, p->client, pw->pending, pw->n_pending);
			tide_conn_send(p->client, pw->pending, pw->n_pending);
			pw_free(p);
		}
		allow(p->client, p->client);
		return;
	}
	start_connect(p);
}

/* --accept-proxy: feed the header parser; the rest of the bytes wait for the upstream. */
static void proxy_header(struct pair *p, struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct proxy_wait *pw = p->ext->pw;
	struct relay_pp_result res;
	struct sockaddr_in6 cbuf;
	unsigned i = 0;
	size_t used;
	int rc = 0;
	char who[64];

	for (; i < n && rc == 0; i++) {
		rc = relay_pp_parse(&pw->pp, bufs[i].data, bufs[i].len, &used, &res);
		if (rc == 1 && used < bufs[i].len) {
			pw->pending[pw->n_pending].data = (char *)bufs[i].data + used;
			pw->pending[pw->n_pending++].len = bufs[i].len - (uint32_t)used;
		} else {
			tide_buf_put(agent_of(c), bufs[i].data);
		}
	}
	for (; i < n; i++) /* more buffers of the same receive: payload */
		if (pw->n_pending < 16)
			pw->pending[pw->n_pending++] = bufs[i];
		else
			tide_buf_put(agent_of(c), bufs[i].data), rc = -ENOBUFS;
	if (rc == 0)
		return;
	if (rc < 0) {
		relay_addr_format(client_addr(p, &cbuf), who, sizeof(who));
		relay_log_limited(RELAY_LOG_WARN, "bad proxy header", "%s: %s", who,
				  rc == -ENOBUFS ? "too much data behind the PROXY header"
						 : pw->pp.err);
		set_end(p, RELAY_END_ERROR);
		tide_conn_abort(c);
		return;
	}
	if (res.known && !res.local) {
		caddr_set(&p->ext->client, (const struct sockaddr *)&res.src);
		caddr_set(&p->ext->local, (const struct sockaddr *)&res.dst);
	}
	if (!pw->n_pending)
		pw_free(p);
	admitted(p);
}

static void on_recv_body(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct pair *p = tide_conn_data(c);

	if (p && p->ext && p->ext->pw && !p->counted &&
	    c == p->client) { /* --accept-proxy: the header first */
		proxy_header(p, c, bufs, n);
		return;
	}
	forward(p, c, bufs, n);
}

static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct pair *p = hold(c);

	on_recv_body(c, bufs, n);
	release(p);
}

/* The peer's queue drained: let the side that fills c read again. */
static void on_drained_body(struct tide_conn *c)
{
	struct pair *p = tide_conn_data(c);
	struct tide_conn *src = peer_of(p, c);

	if (src)
		allow(src, c);
}

static void on_drained(struct tide_conn *c)
{
	struct pair *p = hold(c);

	on_drained_body(c);
	release(p);
}

static void on_eof_body(struct tide_conn *c)
{
	struct pair *p = tide_conn_data(c);
	struct tide_conn *peer = peer_of(p, c);

	if (peer)
		tide_conn_shutdown(peer, false);
}

static void on_eof(struct tide_conn *c)
{
	struct pair *p = hold(c);

	on_eof_body(c);
	release(p);
}

static void on_send_error_body(struct tide_conn *c, int err)
{
	struct pair *p = tide_conn_data(c);
	struct tide_conn *peer = peer_of(p, c);

	(void)err;
	if (!p || p->echo)
		tide_conn_abort(c); /* echo: nothing can go back to the client */
	else if (peer)
		tide_conn_pause(peer);
}

static void on_send_error(struct tide_conn *c, int err)
{
	struct pair *p = hold(c);

	on_send_error_body(c, err);
	release(p);
}

/*
 * --send-proxy: the header goes first, written at once as the upstream is open: nothing is
 * queued on the socket yet, so it fits its send buffer. (Queued as the connect starts, a copy
 * took a pool block per connecting upstream, whose touched page stayed resident after a
 * burst.) What a short write leaves goes through the queue.
 */
static void send_proxy_header(struct pair *p, struct tide_conn *up)
{
	struct sockaddr_in6 cbuf, lbuf;
	uint8_t hdr[128];
	ssize_t len, sent;

	len = relay_pp_encode(p->send_proxy, client_addr(p, &cbuf),
			      caddr_get(&p->ext->local, &lbuf), false, hdr, sizeof(hdr));
	if (len <= 0)
		return;
	sent = send(tide_conn_fd(up), hdr, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent < 0)
		sent = 0; /* EAGAIN, or an error the queue's send reports */
	if (sent < len)
		tide_conn_send_copy(up, hdr + sent, (size_t)(len - sent));
}

static void upstream_open_body(struct tide_conn *c)
{
	struct pair *p = tide_conn_data(c);

	p->up_open = p->connected = true;
	relay_balancer_connect_ok(p->b, p->server, relay_now_ms());
	if (p->keepalive)
		keepalive_on(c);
	if (!p->client) {
		tide_conn_abort(c); /* the client left while we connected */
		return;
	}
	if (p->send_proxy) /* then it has its ext */
		send_proxy_header(p, c);
	if (p->ext && p->ext->pw) {
		count(p, p->client, p->ext->pw->pending, p->ext->pw->n_pending);
		tide_conn_send(c, p->ext->pw->pending, p->ext->pw->n_pending);
		pw_free(p);
	}
	allow(c, p->client);
	allow(p->client, c);
	tide_conn_resume(p->client);
}

static void upstream_open(struct tide_conn *c)
{
	struct pair *p = hold(c);

	upstream_open_body(c);
	release(p);
}

static void upstream_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct pair *p = tide_conn_data(c);
	unsigned i = p->server;
	char who[64];

	p->bytes_down += tide_conn_spliced(c); /* bytes that never reached on_recv */
	p->up = NULL;
	if (!p->connected && !p->client) { /* the client left while we connected */
		relay_balancer_closed(p->b, i, 0, 0);
		finish(p);
		return;
	}
	if (!p->connected && relay_err_is_local(err)) { /* e.g. no local port: not the server */
		local_shortage(p, i, err);
		return;
	}
	if (!p->connected) { /* the connect failed: tell the balancer, try the next server */
		relay_balancer_connect_failed(p->b, i, err ? err : -ECONNRESET, relay_now_ms());
		relay_addr_format(relay_balancer_addr(p->b, i, NULL), who, sizeof(who));
		relay_log_limited(RELAY_LOG_WARN, who, "upstream %s: connect failed: %s%s", who,
				  strerror(err ? -err : ECONNRESET),
				  p->attempt < relay_balancer_count(p->b) ? " (trying the next)"
									  : "");
		try_next(p); /* a new attempt, or the client is reset (and p finished): done */
		return;
	}
	p->up_open = false; /* the client's later bytes are dropped */
	set_end(p, end_of(why));
	if (!p->client) {
		finish(p);
		return;
	}
	if (why != TIDE_END_CLEAN) {
		tide_conn_pause(p->client);
		tide_conn_shutdown(p->client, true);
	}
}

static void client_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct pair *p = tide_conn_data(c);

	(void)err;
	relay_runtime_client_gone(fwd->rt);
	if (!p)
		return; /* plain echo */
	p->bytes_up += tide_conn_spliced(c);
	p->client = NULL;
	set_end(p, end_of(why));
	if (p->up) { /* connecting or open: it ends too, then the pair is finished */
		if (why != TIDE_END_CLEAN || !p->up_open) {
			tide_conn_pause(p->up);
			tide_conn_shutdown(p->up, true);
		}
		return;
	}
	finish(p);
}

/*
 * The access line of a client turned away before it had a pair (--max-conns, or no memory
 * for the pair): every connection gets one line, from the socket's own addresses.
 */
static void refused_line(struct tide_conn *c, const struct relay_conn_settings *cfg,
			 enum relay_end end)
{
	struct sockaddr_storage client = {0}, local = {0};
	socklen_t len = sizeof(client);
	struct relay_access a = {.client = (struct sockaddr *)&client, .end = end};

	if (!cfg->access_log)
		return;
	getpeername(tide_conn_fd(c), (struct sockaddr *)&client, &len);
	len = sizeof(local);
	if (!getsockname(tide_conn_fd(c), (struct sockaddr *)&local, &len))
		a.listener = (struct sockaddr *)&local;
	relay_log_access(&a);
}

static void client_open(struct tide_conn *c)
{
	struct relay_conn_settings set, *cfg = &set;
	struct pair *p;
	struct pair_ext *x;
	struct sockaddr_storage ss;
	socklen_t len;
	bool ext;

	relay_runtime_settings(fwd->rt,
			       &set); /* a reload may change them: one copy per connection */
	if (!relay_runtime_client_open(fwd->rt, cfg)) {
		tide_conn_set_data(c, NULL);
		refused_line(c, cfg, RELAY_END_REFUSED);
		tide_conn_abort(c); /* over --max-conns (the setting of now: a reload changes it) */
		return;
	}
	if (cfg->keepalive)
		keepalive_on(c);
	ext = cfg->access_log || cfg->max_conns_per_ip || cfg->accept_proxy || cfg->send_proxy;
	if (cfg->echo && !ext) {
		tide_conn_set_data(c, NULL); /* plain echo: nothing to remember */
		allow(c, c);
		return;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		tide_conn_set_data(c, NULL);
		refused_line(c, cfg, RELAY_END_RESOURCE);
		tide_conn_abort(c);
		return;
	}
	tide_conn_set_data(c, p);
	p->client = c;
	p->echo = cfg->echo;
	p->keepalive = cfg->keepalive;
	/* in 10 ms units, rounded up, at most 655 s: what tide_conn_connect keeps of it */
	p->connect_timeout =
		(uint16_t)(cfg->connect_timeout_ms > 655350 ? UINT16_MAX
							    : (cfg->connect_timeout_ms + 9) / 10);
	if (!ext) {
		admitted(p);
		return;
	}
	p->ext = x = calloc(1, sizeof(*x));
	if (!x) {
		refused_line(c, cfg, RELAY_END_RESOURCE); /* the pair has no ext for its line */
		tide_conn_abort(c);
		return;
	}
	p->send_proxy = cfg->send_proxy & 3;
	x->start_us = relay_now_us();
	len = sizeof(ss);
	if (!getpeername(tide_conn_fd(c), (struct sockaddr *)&ss, &len))
		caddr_set(&x->client, (struct sockaddr *)&ss);
	len = sizeof(ss);
	if (!getsockname(tide_conn_fd(c), (struct sockaddr *)&ss, &len))
		caddr_set(&x->local, (struct sockaddr *)&ss);
	if (cfg->accept_proxy) {
		x->pw = calloc(1, sizeof(*x->pw));
		if (!x->pw) {
			set_end(p, RELAY_END_RESOURCE);
			tide_conn_abort(c);
			return;
		}
		relay_pp_parser_init(&x->pw->pp);
		allow(c, c); /* the header arrives before there is a peer */
		return;
	}
	admitted(p);
}

/*
 * Draining: the pairs of this worker that may be over before the deadline. Each holds its
 * pair (depth), so a pair that ended is freed by the next sweep, or at the worker's stop.
 */
struct drain_watch {
	struct drain_entry {
		struct pair *p;
		uint64_t spliced; /* the client's bytes spliced at the last sweep (no on_recv) */
	} * e;
	unsigned n, cap;
	bool armed; /* the sweep timer runs */
};

static _Thread_local struct drain_watch watch;

/* The kernel's count of a socket's bytes (SIOCINQ: not yet read, SIOCOUTQ: not yet acked). */
static int sock_bytes(struct tide_conn *c, unsigned long req)
{
	int n = 0;

	return ioctl(tide_conn_fd(c), req, &n) ? -1 : n;
}

/*
 * The upstream has finished and all of it is through: its FIN came and was passed on after
 * every byte (the client's side is shut), nothing is queued either way, the upstream's
 * kernel acknowledged every byte of the client's, and no byte of the client's waits unread.
 */
static bool upstream_done(struct pair *p)
{
	return p->client && p->up && p->up_open && (tide_conn_state(p->up) & TIDE_CONN_EOF) &&
	       (tide_conn_state(p->client) & TIDE_CONN_SHUT) && !tide_conn_queued(p->client) &&
	       !tide_conn_queued(p->up) && sock_bytes(p->up, SIOCOUTQ) == 0 &&
	       sock_bytes(p->client, SIOCINQ) == 0;
}

/* Over early: close the client's side (it has everything and the FIN), reset the upstream. */
static void drain_end(struct pair *p)
{
	set_end(p, RELAY_END_DRAIN);
	tide_conn_close(p->client); /* its FIN went: it ends now, the upstream stays open */
	if (p->up)
		tide_conn_shutdown(p->up, true); /* nothing queued: it resets now */
}

/*
 * Every --drain-idle: a pair whose upstream had finished at the last sweep, still has, and
 * whose client sent nothing since, ends; the others are looked at again at the next.
 */
static void drain_sweep(struct tide_worker *w, void *arg)
{
	unsigned kept = 0;

	(void)arg;
	for (unsigned i = 0; i < watch.n; i++) {
		struct drain_entry e = watch.e[i];
		struct pair *p = e.p;
		bool done = !p->dead && upstream_done(p);

		if (!p->dead && p->client && tide_conn_spliced(p->client) != e.spliced) {
			p->heard = true; /* the client's bytes went through the pipe */
			e.spliced = tide_conn_spliced(p->client);
		}
		if (done && p->fin_seen && !p->heard)
			drain_end(p);
		p->fin_seen = done;
		p->heard = false;
		if (p->dead)
			release(p);
		else
			watch.e[kept++] = e;
	}
	watch.n = kept;
	watch.armed = kept && !tide_timer_start(w, fwd->drain_idle_ms, drain_sweep, NULL, NULL);
}

/* The agent drains: watch each relayed pair (told once, through its client). */
static void on_drain(struct tide_conn *c)
{
	struct pair *p = tide_conn_data(c);
	struct drain_entry *more;

	if (!fwd->drain_idle_ms || !p || p->echo || c != p->client)
		return;
	if (watch.n == watch.cap) {
		unsigned cap = watch.cap ? 2 * watch.cap : 64;

		more = realloc(watch.e, cap * sizeof(*more));
		if (!more)
			return; /* not watched: it runs to the deadline */
		watch.e = more;
		watch.cap = cap;
	}
	p->depth++;
	p->heard = p->fin_seen = false;
	watch.e[watch.n++] = (struct drain_entry){p, tide_conn_spliced(c)};
	if (!watch.armed)
		watch.armed = !tide_timer_start(tide_conn_worker(c), fwd->drain_idle_ms,
						drain_sweep, NULL, NULL);
}

void forward_worker_stop(struct tide_worker *w, void *arg)
{
	(void)w;
	(void)arg;
	for (unsigned i = 0; i < watch.n; i++)
		release(watch.e[i].p); /* every connection ended: each is dead */
	free(watch.e);
	watch = (struct drain_watch){0};
}

static const struct tide_conn_ops upstream_ops = {
	.open = upstream_open,
	.recv = on_recv,
	.eof = on_eof,
	.send_error = on_send_error,
	.drained = on_drained,
	.drain = on_drain,
	.end = upstream_end,
};

static const struct tide_conn_ops client_ops = {
	.open = client_open,
	.recv = on_recv,
	.eof = on_eof,
	.send_error = on_send_error,
	.drained = on_drained,
	.drain = on_drain,
	.end = client_end,
};

const struct tide_conn_ops *forward_ops(const struct forward_config *cfg)
{
	fwd = cfg;
	return &client_ops;
}
