/* SPDX-License-Identifier: MIT */
/*
 * stats_http.c - tide-relay's /stats (JSON) and /metrics (Prometheus text) over HTTP/1.0.
 *
 * One thread, one request per connection, answered and closed: the endpoint is for a scraper
 * or a person with curl, not for load, so it stays out of the workers' event loops and takes
 * nothing from them but relaxed counter reads (tide_pool_stats, tide_agent_stats). A pipe
 * wakes the thread for shutdown. A client gets one second to send its request line.
 *
 * Both formats walk the same tables of counters (pool_fields, agent_fields: JSON key,
 * Prometheus name, type and help, where the value sits), so a counter is added in one place
 * and the two endpoints cannot disagree on what a value means.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "relay.h"

struct stats_server {
	int fd;
	int wake[2];
	unsigned port;
	pthread_t thread;
	struct tide_pool *pool;
	const struct tide_agent *agent;
};

static const char *yes(bool b)
{
	return b ? "true" : "false";
}

/* What one request reads, once, so that both formats print the same numbers. */
struct snapshot {
	struct tide_stats ps;
	struct tide_agent_stats as;
	size_t boundary_offset;
};

/*
 * One counter of both endpoints: its JSON object and key in /stats and, unless metric is
 * NULL, its Prometheus name, type and help in /metrics. The value is a size_t, uint64_t or
 * unsigned at off in struct snapshot. A new counter is one line in a table below.
 */
struct field {
	const char *section;
	const char *key;
	size_t off, size;
	const char *metric, *type, *help;
};

#define FIELD(section, key, member, metric, type, help)                                            \
	{                                                                                          \
		section, key, offsetof(struct snapshot, member),                                   \
			sizeof(((struct snapshot *)0)->member), metric, type, help                 \
	}
#define JSON_ONLY(section, key, member) FIELD(section, key, member, NULL, NULL, NULL)

/* The "pool" object; in /stats the "users" array follows it. */
static const struct field pool_fields[] = {
	FIELD("pool", "reserve_size", ps.reserve_size, "tide_pool_reserve_bytes", "gauge",
	      "Virtual bytes reserved."),
	FIELD("pool", "unreserved_size", ps.unreserved_size, "tide_pool_unreserved_bytes", "gauge",
	      "Bytes below the boundary (mapped)."),
	FIELD("pool", "resident_size", ps.resident_size, "tide_pool_resident_bytes", "gauge",
	      "Unreserved bytes minus purged pages."),
	FIELD("pool", "live_bytes", ps.live_bytes, "tide_pool_live_bytes", "gauge",
	      "Bytes in buffers handed out."),
	FIELD("pool", "live_buffers", ps.live_buffers, "tide_pool_live_buffers", "gauge",
	      "Buffers handed out."),
	FIELD("pool", "peak_live_bytes", ps.peak_live_bytes, "tide_pool_peak_live_bytes", "gauge",
	      "Highest live bytes seen."),
	FIELD("pool", "cached_bytes", ps.cached_bytes, "tide_pool_cached_bytes", "gauge",
	      "Free blocks parked in thread caches."),
	JSON_ONLY("pool", "metadata_size", ps.metadata_size),
	JSON_ONLY("pool", "block_size", ps.block_size),
	JSON_ONLY("pool", "grow_unit", ps.grow_unit),
	JSON_ONLY("pool", "max_size", ps.max_size),
	FIELD("pool", "boundary_offset", boundary_offset, "tide_pool_boundary_offset_bytes",
	      "gauge", "Boundary minus base."),
	FIELD("pool", "grows", ps.grows, "tide_pool_grows_total", "counter",
	      "Conversions to unreserved."),
	FIELD("pool", "shrinks", ps.shrinks, "tide_pool_shrinks_total", "counter",
	      "Conversions to reserved."),
	FIELD("pool", "purges", ps.purges, "tide_pool_purges_total", "counter",
	      "Purge passes that gave pages back."),
	JSON_ONLY("pool", "purged_bytes", ps.purged_bytes),
	FIELD("pool", "alloc_failures", ps.alloc_failures, "tide_pool_alloc_failures_total",
	      "counter", "Allocations that failed."),
	JSON_ONLY("pool", "bad_frees", ps.bad_frees),
	JSON_ONLY("pool", "users", ps.users),
};

/* The agent's objects; in /stats the "features" object follows them. */
static const struct field agent_fields[] = {
	FIELD("connections", "current", as.conns_current, "tide_relay_connections", "gauge",
	      "Client connections open."),
	FIELD("connections", "total", as.conns_accepted, "tide_relay_connections_accepted_total",
	      "counter", "Client connections accepted."),
	FIELD("connections", "rejected", as.conns_rejected, "tide_relay_connections_rejected_total",
	      "counter", "Connections closed at once (max-conns, draining)."),
	FIELD("connections", "idle_closed", as.conns_idle_closed,
	      "tide_relay_connections_idle_closed_total", "counter",
	      "Connections closed by the idle timeout."),
	FIELD("connections", "reset", as.conns_reset, "tide_relay_connections_reset_total",
	      "counter", "Connections ended by an error or reset."),
	FIELD("connections", "upstream_failures", as.upstream_failures,
	      "tide_relay_upstream_failures_total", "counter", "Failed upstream connects."),
	FIELD("traffic", "bytes_in", as.bytes_in, "tide_relay_received_bytes_total", "counter",
	      "Bytes received."),
	FIELD("traffic", "bytes_out", as.bytes_out, "tide_relay_sent_bytes_total", "counter",
	      "Bytes sent."),
	FIELD("traffic", "short_sends", as.short_sends, "tide_relay_short_sends_total", "counter",
	      "Sends that took less than offered."),
	FIELD("traffic", "pauses", as.pauses, "tide_relay_pauses_total", "counter",
	      "Reads stopped by backpressure."),
	FIELD("ring", "refills", as.ring_refills, "tide_ring_refills_total", "counter",
	      "Ring top-ups from the pool."),
	FIELD("ring", "refill_buffers", as.refill_buffers, "tide_ring_refill_buffers_total",
	      "counter", "Buffers put into rings."),
	FIELD("ring", "enobufs", as.enobufs, "tide_ring_enobufs_total", "counter",
	      "Receives that found the ring empty."),
	FIELD("ring", "resets", as.ring_resets, "tide_ring_resets_total", "counter",
	      "Idle rings that gave buffers back."),
	JSON_ONLY("ring", "forced_grows", as.forced_grows),
	FIELD("ring", "buffers", as.ring_buffers, "tide_ring_buffers", "gauge",
	      "Buffers in the rings now."),
	FIELD("ring", "target", as.ring_target, "tide_ring_target_buffers", "gauge",
	      "Sum of the rings' targets."),
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static void take_snapshot(struct snapshot *s, struct tide_pool *pool,
			  const struct tide_agent *agent)
{
	tide_pool_stats(pool, &s->ps);
	tide_agent_stats(agent, &s->as);
	s->boundary_offset =
		(size_t)((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool));
}

static unsigned long long value(const struct snapshot *s, const struct field *fl)
{
	const char *p = (const char *)s + fl->off;
	unsigned u;
	uint64_t v;

	if (fl->size == sizeof(u)) {
		memcpy(&u, p, sizeof(u));
		return u;
	}
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Each run of fields with the same section as one JSON object, a line each. */
static void json_fields(FILE *f, const struct snapshot *s, const struct field *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		bool first = !i || strcmp(t[i].section, t[i - 1].section);
		bool last = i + 1 == n || strcmp(t[i].section, t[i + 1].section);

		if (first)
			fprintf(f, "\"%s\":{", t[i].section);
		fprintf(f, "\"%s\":%llu%s", t[i].key, value(s, &t[i]), last ? "},\n" : ",");
	}
}

void stats_write_json(FILE *f, struct tide_pool *pool, const struct tide_agent *agent)
{
	struct snapshot s;
	unsigned n = tide_agent_workers(agent);

	take_snapshot(&s, pool, agent);
	fprintf(f, "{\"version\":\"%s\",\n", TIDE_VERSION_STRING);
	json_fields(f, &s, pool_fields, NFIELDS(pool_fields));
	fprintf(f, "\"users\":[");
	for (unsigned i = 0; i < n; i++) {
		struct tide_user *u = tide_agent_user(agent, i);
		struct tide_user_stats us;

		if (!u)
			continue;
		tide_user_stats(u, &us);
		fprintf(f,
			"%s{\"name\":\"%s\",\"live_bytes\":%zu,\"live_buffers\":%zu,"
			"\"peak_live_bytes\":%zu,\"alloc_failures\":%llu}",
			i ? "," : "", us.name, us.live_bytes, us.live_buffers, us.peak_live_bytes,
			(unsigned long long)us.alloc_failures);
	}
	fprintf(f, "],\n");
	json_fields(f, &s, agent_fields, NFIELDS(agent_fields));
	fprintf(f,
		"\"features\":{\"workers\":%u,\"recv_bundles\":%s,\"incremental_rings\":%s,"
		"\"defer_taskrun\":%s}}\n",
		n, yes(s.as.bundles), yes(s.as.incremental), yes(s.as.defer_taskrun));
}

/* Every field with a metric name, in table order. */
static void prometheus_fields(FILE *f, const struct snapshot *s, const struct field *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (t[i].metric)
			fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", t[i].metric, t[i].help,
				t[i].metric, t[i].type, t[i].metric, value(s, &t[i]));
}

void stats_write_prometheus(FILE *f, struct tide_pool *pool, const struct tide_agent *agent)
{
	struct snapshot s;
	unsigned n = tide_agent_workers(agent);

	take_snapshot(&s, pool, agent);
	prometheus_fields(f, &s, pool_fields, NFIELDS(pool_fields));
	fprintf(f, "# HELP tide_user_live_bytes Bytes a pool user holds.\n"
		   "# TYPE tide_user_live_bytes gauge\n");
	for (unsigned i = 0; i < n; i++) {
		struct tide_user *u = tide_agent_user(agent, i);
		struct tide_user_stats us;

		if (!u)
			continue;
		tide_user_stats(u, &us);
		fprintf(f, "tide_user_live_bytes{user=\"%s\"} %zu\n", us.name, us.live_bytes);
	}
	prometheus_fields(f, &s, agent_fields, NFIELDS(agent_fields));
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void serve_one(struct stats_server *s, int fd)
{
	struct timeval tv = {1, 0};
	char req[2048], head[256], *body = NULL;
	size_t have = 0, blen = 0;
	const char *type = "text/plain; charset=utf-8", *status = "200 OK";
	FILE *f;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	while (have < sizeof(req) - 1) {
		ssize_t r = recv(fd, req + have, sizeof(req) - 1 - have, 0);

		if (r <= 0)
			break;
		have += (size_t)r;
		req[have] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[have] = '\0';
	f = open_memstream(&body, &blen);
	if (!f)
		return;
	if (!strncmp(req, "GET /stats", 10) && strchr(" ?", req[10])) {
		type = "application/json";
		stats_write_json(f, s->pool, s->agent);
	} else if (!strncmp(req, "GET /metrics", 12) && strchr(" ?", req[12])) {
		type = "text/plain; version=0.0.4";
		stats_write_prometheus(f, s->pool, s->agent);
	} else {
		status = "404 Not Found";
		fprintf(f, "try /stats or /metrics\n");
	}
	fclose(f);
	snprintf(head, sizeof(head),
		 "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		 "Connection: close\r\n\r\n",
		 status, type, blen);
	write_all(fd, head, strlen(head));
	write_all(fd, body, blen);
	free(body);
}

static void *serve(void *arg)
{
	struct stats_server *s = arg;

	for (;;) {
		struct pollfd pf[2] = {{s->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve_one(s, fd);
		close(fd);
	}
	return NULL;
}

int stats_server_start(const char *addr, struct tide_pool *pool, const struct tide_agent *agent,
		       struct stats_server **srvp)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct addrinfo hints, *res = NULL;
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	struct stats_server *s;
	size_t hlen;
	int one = 1, rc;

	if (!colon || !colon[1])
		return -EINVAL;
	hlen = (size_t)(colon - addr);
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
		memmove(host, host + 1, hlen - 2);
		host[hlen - 2] = '\0';
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if (getaddrinfo(*host ? host : NULL, colon + 1, &hints, &res) || !res)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s) {
		freeaddrinfo(res);
		return -ENOMEM;
	}
	s->pool = pool;
	s->agent = agent;
	s->wake[0] = s->wake[1] = -1;
	s->fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s->fd, res->ai_addr, res->ai_addrlen) || listen(s->fd, 64) ||
	    getsockname(s->fd, (struct sockaddr *)&got, &glen) || pipe2(s->wake, O_CLOEXEC)) {
		rc = -errno;
		freeaddrinfo(res);
		stats_server_stop(s);
		return rc;
	}
	freeaddrinfo(res);
	s->port = got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
					    : ntohs(((struct sockaddr_in *)&got)->sin_port);
	rc = -pthread_create(&s->thread, NULL, serve, s);
	if (rc) {
		close(s->wake[1]);
		s->wake[1] = -1;
		stats_server_stop(s);
		return rc;
	}
	*srvp = s;
	return 0;
}

unsigned stats_server_port(const struct stats_server *s)
{
	return s ? s->port : 0;
}

void stats_server_stop(struct stats_server *s)
{
	if (!s)
		return;
	if (s->wake[1] >= 0) {
		if (write(s->wake[1], "x", 1) == 1)
			pthread_join(s->thread, NULL);
		close(s->wake[1]);
	}
	if (s->wake[0] >= 0)
		close(s->wake[0]);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}
