/* SPDX-License-Identifier: MIT */
/*
 * stats_http.c - tide-relay's /stats (JSON) and /metrics (Prometheus text) over HTTP/1.0.
 * Application side: it reads the engine only through tide/net.h (tide_agent_stats).
 *
 * One thread, one request per connection, answered and closed: the endpoint is for a scraper
 * or a person with curl, not for load, so it stays out of the workers' event loops and takes
 * nothing from them but relaxed counter reads (tide_pool_stats, tide_agent_stats).
 *
 * Every wait is bounded and no client waits for another: the thread polls the listener, a
 * wake pipe (shutdown) and up to MAX_CLIENTS non-blocking connections at once, each with its
 * own deadline (the request timeout) for reading its request and writing the answer; a
 * client past it is closed. More clients than that are closed at once. Out of descriptors
 * (the workers' connections took them all), a scrape is still answered: the server keeps
 * a spare descriptor and gives it up to accept one client, served as any other, then takes
 * it back when that client is closed (the classic reserve-fd trick). When that fails too
 * (the spare is in use, or a worker took the freed descriptor) the listener rests for a
 * moment instead of waking poll again and again. Shutdown closes whatever is open and returns at
 * once.
 *
 * Both formats walk the same tables of counters (one per JSON object: JSON key,
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
#include <time.h>
#include <unistd.h>

#include "relay.h"

#define MAX_CLIENTS 32
#define REQ_MAX	    2048

/* One connection: its request as read so far, then the answer as written so far. */
struct client {
	int fd;
	bool spare; /* accepted in the spare descriptor's place: take it back at close */
	uint64_t deadline_ms;
	size_t have, off, len;
	char *out; /* the answer (head and body), once the request is complete */
	char req[REQ_MAX];
};

struct stats_server {
	int fd;
	int spare; /* /dev/null, given up to accept a scrape when out of descriptors */
	int wake[2];
	unsigned port;
	unsigned timeout_ms;
	struct client *c[MAX_CLIENTS];
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
 * One counter in one JSON object of /stats (its key) and, unless metric is NULL, in /metrics
 * (its Prometheus name, type and help). The value is a size_t, uint64_t or unsigned at off in
 * struct snapshot. A new counter is one line in one of the tables below.
 */
struct field {
	const char *key;
	size_t off, size;
	const char *metric, *type, *help;
};

#define FIELD(key, member, metric, type, help)                                                     \
	{                                                                                          \
		key, offsetof(struct snapshot, member), sizeof(((struct snapshot *)0)->member),    \
			metric, type, help                                                         \
	}
#define GAUGE(key, member, metric, help)   FIELD(key, member, metric, "gauge", help)
#define COUNTER(key, member, metric, help) FIELD(key, member, metric, "counter", help)
#define JSON_ONLY(key, member)		   FIELD(key, member, NULL, NULL, NULL)

/* "pool"; in /stats the "users" array follows it. */
static const struct field pool_fields[] = {
	GAUGE("reserve_size", ps.reserve_size, "tide_pool_reserve_bytes",
	      "Virtual bytes reserved."),
	GAUGE("unreserved_size", ps.unreserved_size, "tide_pool_unreserved_bytes",
	      "Bytes below the boundary (mapped)."),
	GAUGE("resident_size", ps.resident_size, "tide_pool_resident_bytes",
	      "Unreserved bytes minus purged pages."),
	GAUGE("live_bytes", ps.live_bytes, "tide_pool_live_bytes", "Bytes in buffers handed out."),
	GAUGE("live_buffers", ps.live_buffers, "tide_pool_live_buffers", "Buffers handed out."),
	GAUGE("peak_live_bytes", ps.peak_live_bytes, "tide_pool_peak_live_bytes",
	      "Highest live bytes seen."),
	GAUGE("cached_bytes", ps.cached_bytes, "tide_pool_cached_bytes",
	      "Free blocks parked in thread caches."),
	JSON_ONLY("metadata_size", ps.metadata_size),
	JSON_ONLY("block_size", ps.block_size),
	JSON_ONLY("grow_unit", ps.grow_unit),
	JSON_ONLY("max_size", ps.max_size),
	GAUGE("boundary_offset", boundary_offset, "tide_pool_boundary_offset_bytes",
	      "Boundary minus base."),
	COUNTER("grows", ps.grows, "tide_pool_grows_total", "Conversions to unreserved."),
	COUNTER("shrinks", ps.shrinks, "tide_pool_shrinks_total", "Conversions to reserved."),
	COUNTER("purges", ps.purges, "tide_pool_purges_total",
		"Purge passes that gave pages back."),
	COUNTER("purged_bytes", ps.purged_bytes, "tide_pool_purged_bytes_total",
		"Bytes given back by purge."),
	COUNTER("alloc_failures", ps.alloc_failures, "tide_pool_alloc_failures_total",
		"Allocations that failed."),
	COUNTER("bad_frees", ps.bad_frees, "tide_pool_bad_frees_total",
		"Frees refused with -EINVAL or -EPERM."),
	COUNTER("vetoes", ps.vetoes, "tide_pool_vetoes_total",
		"Conversions refused by the conversion hook."),
	COUNTER("os_failures", ps.os_failures, "tide_pool_os_failures_total",
		"Conversions refused by the OS."),
	COUNTER("maintenance_runs", ps.maintenance_runs, "tide_pool_maintenance_runs_total",
		"Maintenance steps run (shrink and purge checks)."),
	JSON_ONLY("users", ps.users),
};

/* "connections" */
static const struct field connection_fields[] = {
	GAUGE("current", as.conns_current, "tide_relay_connections", "Client connections open."),
	COUNTER("total", as.conns_accepted, "tide_relay_connections_accepted_total",
		"Client connections accepted."),
	COUNTER("rejected", as.conns_rejected, "tide_relay_connections_rejected_total",
		"Connections closed at once (max-conns, max-conns-per-ip, no local resources, "
		"draining)."),
	COUNTER("idle_closed", as.conns_idle_closed, "tide_relay_connections_idle_closed_total",
		"Connections closed by the idle timeout."),
	COUNTER("reset", as.conns_reset, "tide_relay_connections_reset_total",
		"Connections ended by an error or reset."),
	COUNTER("upstream_failures", as.upstream_failures, "tide_relay_upstream_failures_total",
		"Failed upstream connects."),
	JSON_ONLY("accept_errors", as.accept_errors), /* /metrics: beside refused_total */
};

/* "traffic" */
static const struct field traffic_fields[] = {
	COUNTER("bytes_in", as.bytes_in, "tide_relay_received_bytes_total", "Bytes received."),
	COUNTER("bytes_out", as.bytes_out, "tide_relay_sent_bytes_total", "Bytes sent."),
	COUNTER("short_sends", as.short_sends, "tide_relay_short_sends_total",
		"Sends that took less than offered."),
	COUNTER("pauses", as.pauses, "tide_relay_pauses_total",
		"Reads held back (a direction full, or the memory budget spent)."),
	COUNTER("batch_marks", as.batch_marks, "tide_relay_recv_batch_marks_total",
		"Bulk directions woken per --recv-batch bytes instead of per segment."),
	COUNTER("batch_quiet", as.batch_quiet, "tide_relay_recv_batch_quiet_total",
		"Bulk directions back to plain receives after going quiet."),
};

/* "ring"; in /stats the "features" object follows it. */
static const struct field ring_fields[] = {
	COUNTER("refills", as.ring_refills, "tide_ring_refills_total",
		"Ring top-ups from the pool."),
	COUNTER("refill_buffers", as.refill_buffers, "tide_ring_refill_buffers_total",
		"Buffers put into rings."),
	COUNTER("enobufs", as.enobufs, "tide_ring_enobufs_total",
		"Receives that found the ring empty."),
	COUNTER("resets", as.ring_resets, "tide_ring_resets_total",
		"Idle rings that gave buffers back."),
	COUNTER("forced_grows", as.forced_grows, "tide_agent_forced_grows_total",
		"Pool grows the agent asked for when allocation fell short."),
	COUNTER("recv_arms", as.recv_arms, "tide_agent_recv_arms_total",
		"Receives submitted (a multishot one lasts many completions)."),
	GAUGE("buffers", as.ring_buffers, "tide_ring_buffers", "Buffers in the rings now."),
	GAUGE("target", as.ring_target, "tide_ring_target_buffers", "Sum of the rings' targets."),
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

static struct relay_runtime *runtime;

void stats_set_runtime(struct relay_runtime *rt)
{
	runtime = rt;
}

static void take_snapshot(struct snapshot *s, struct tide_pool *pool,
			  const struct tide_agent *agent)
{
	tide_pool_stats(pool, &s->ps);
	tide_agent_stats(agent, &s->as);
	for (unsigned i = 0; runtime && i < RELAY_REFUSED_N; i++) /* the relay's own refusals */
		s->as.conns_rejected += atomic_load(&runtime->refused[i]);
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

/* One JSON object of /stats, on a line of its own. */
static void json_object(FILE *f, const char *name, const struct field *t, size_t n,
			const struct snapshot *s)
{
	fprintf(f, "\"%s\":{", name);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\"%s\":%llu", i ? "," : "", t[i].key, value(s, &t[i]));
	fprintf(f, "},\n");
}

void stats_write_json(FILE *f, struct tide_pool *pool, const struct tide_agent *agent)
{
	struct snapshot s;
	unsigned n = tide_agent_workers(agent);

	take_snapshot(&s, pool, agent);
	fprintf(f, "{\"version\":\"%s\",\n", TIDE_VERSION_STRING);
	json_object(f, "pool", pool_fields, NFIELDS(pool_fields), &s);
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
	json_object(f, "connections", connection_fields, NFIELDS(connection_fields), &s);
	json_object(f, "traffic", traffic_fields, NFIELDS(traffic_fields), &s);
	json_object(f, "ring", ring_fields, NFIELDS(ring_fields), &s);
	if (runtime) {
		struct relay_balancer *b = relay_runtime_balancer(runtime);

		fprintf(f, "\"refused\":{");
		for (unsigned i = 0; i < RELAY_REFUSED_N; i++)
			fprintf(f, "%s\"%s\":%llu", i ? "," : "",
				relay_refusal_name((enum relay_refusal)i),
				(unsigned long long)atomic_load(&runtime->refused[i]));
		fprintf(f, "},\n\"log_dropped_lines\":%llu,\n", relay_log_dropped());
		if (b) {
			fprintf(f, "\"upstreams\":");
			relay_balancer_write_json(f, b, relay_now_ms());
			fprintf(f, ",\n");
			relay_balancer_put(b);
		}
	}
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
	prometheus_fields(f, &s, connection_fields, NFIELDS(connection_fields));
	prometheus_fields(f, &s, traffic_fields, NFIELDS(traffic_fields));
	prometheus_fields(f, &s, ring_fields, NFIELDS(ring_fields));
	relay_write_build_info(f, TIDE_VERSION_STRING);
	relay_write_process_metrics(f);
	if (runtime) {
		struct relay_balancer *b = relay_runtime_balancer(runtime);

		fprintf(f,
			"# HELP tide_relay_connections_refused_total Client connections the relay "
			"reset at once, by the limit that refused them.\n"
			"# TYPE tide_relay_connections_refused_total counter\n");
		for (unsigned i = 0; i < RELAY_REFUSED_N; i++)
			fprintf(f, "tide_relay_connections_refused_total{reason=\"%s\"} %llu\n",
				relay_refusal_name((enum relay_refusal)i),
				(unsigned long long)atomic_load(&runtime->refused[i]));
		fprintf(f,
			"# HELP tide_relay_accept_errors_total Accepts that failed for want of "
			"local resources (EMFILE, ENFILE, ENOBUFS, ENOMEM); those clients wait in "
			"the listen queue, retried every 100 ms.\n"
			"# TYPE tide_relay_accept_errors_total counter\n"
			"tide_relay_accept_errors_total %llu\n",
			(unsigned long long)s.as.accept_errors);
		fprintf(f,
			"# HELP tide_relay_log_dropped_lines_total Log lines dropped because their "
			"destination could not take them without waiting.\n"
			"# TYPE tide_relay_log_dropped_lines_total counter\n"
			"tide_relay_log_dropped_lines_total %llu\n",
			relay_log_dropped());
		if (b) {
			relay_balancer_write_prometheus(f, b, relay_now_ms());
			relay_balancer_put(b);
		}
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The answer to a complete request, head and body in one buffer; NULL without memory. */
static char *answer(struct stats_server *s, const char *req, size_t *len)
{
	const char *type = "text/plain; charset=utf-8", *status = "200 OK";
	char *body = NULL, *out = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&body, &blen);
	int n;

	bool head_only = !strncmp(req, "HEAD ", 5); /* the same head, no body */
	const char *path = head_only ? req + 5 : !strncmp(req, "GET ", 4) ? req + 4 : "";

	if (!f)
		return NULL;
	if (!strncmp(path, "/stats", 6) && strchr(" ?", path[6])) {
		type = "application/json";
		stats_write_json(f, s->pool, s->agent);
	} else if (!strncmp(path, "/metrics", 8) && strchr(" ?", path[8])) {
		type = "text/plain; version=0.0.4";
		stats_write_prometheus(f, s->pool, s->agent);
	} else {
		status = "404 Not Found";
		fprintf(f, "try /stats or /metrics\n");
	}
	fclose(f);
	n = asprintf(&out,
		     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n%s",
		     status, type, blen, body && !head_only ? body : "");
	free(body);
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return out;
}

static void client_close(struct stats_server *s, unsigned i)
{
	close(s->c[i]->fd);
	if (s->c[i]->spare)
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	free(s->c[i]->out);
	free(s->c[i]);
	s->c[i] = NULL;
}

/* Make progress on client i (poll said it may): false when it is done with. */
static bool client_step(struct stats_server *s, struct client *c)
{
	ssize_t n;

	if (!c->out) {
		n = recv(c->fd, c->req + c->have, sizeof(c->req) - 1 - c->have, 0);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		c->have += (size_t)n;
		c->req[c->have] = '\0';
		if (n && c->have < sizeof(c->req) - 1 && !strstr(c->req, "\r\n\r\n") &&
		    !strstr(c->req, "\n\n"))
			return true;
		c->out = answer(s, c->req, &c->len);
		if (!c->out)
			return false;
	}
	n = send(c->fd, c->out + c->off, c->len - c->off, MSG_NOSIGNAL);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR;
	c->off += (size_t)n;
	return c->off < c->len;
}

/* Take a new connection into a free slot (or close it when there is none). */
static void client_accept(struct stats_server *s, uint64_t now, uint64_t *rest_until)
{
	int fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	bool spare = false;
	struct client *c;

	if (fd < 0 && (errno == EMFILE || errno == ENFILE) && s->spare >= 0) {
		close(s->spare); /* out of descriptors: this one is for a scrape */
		s->spare = -1;
		fd = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		spare = fd >= 0;
		if (!spare) /* a worker took it: try again later */
			s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
		errno = EMFILE;
	}
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			*rest_until = now + 100;
		return;
	}
	for (unsigned i = 0; i < MAX_CLIENTS; i++) {
		if (s->c[i])
			continue;
		c = calloc(1, sizeof(*c));
		if (!c)
			break;
		c->fd = fd;
		c->spare = spare;
		c->deadline_ms = now + s->timeout_ms;
		s->c[i] = c;
		return;
	}
	close(fd);
	if (spare)
		s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void *serve(void *arg)
{
	struct stats_server *s = arg;
	uint64_t rest_until = 0;

	for (;;) {
		struct pollfd pf[2 + MAX_CLIENTS];
		unsigned slot[MAX_CLIENTS], n = 2;
		uint64_t now = now_ms(), next = now + 1000;

		pf[0] = (struct pollfd){rest_until > now ? -1 : s->fd, POLLIN, 0};
		pf[1] = (struct pollfd){s->wake[0], POLLIN, 0};
		if (rest_until > now && rest_until < next)
			next = rest_until;
		for (unsigned i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = s->c[i];

			if (!c)
				continue;
			if (now >= c->deadline_ms) {
				client_close(s, i);
				continue;
			}
			if (c->deadline_ms < next)
				next = c->deadline_ms;
			slot[n - 2] = i;
			pf[n++] = (struct pollfd){c->fd, c->out ? POLLOUT : POLLIN, 0};
		}
		if (poll(pf, n, (int)(next - now)) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		now = now_ms();
		for (unsigned k = 2; k < n; k++)
			if (pf[k].revents && !client_step(s, s->c[slot[k - 2]]))
				client_close(s, slot[k - 2]);
		if (pf[0].revents & POLLIN)
			client_accept(s, now, &rest_until);
	}
	for (unsigned i = 0; i < MAX_CLIENTS; i++)
		if (s->c[i])
			client_close(s, i);
	return NULL;
}

int stats_server_start(const char *addr, unsigned timeout_ms, struct tide_pool *pool,
		       const struct tide_agent *agent, struct stats_server **srvp)
{
	struct tide_addrs at;
	struct sockaddr_storage got;
	socklen_t glen = sizeof(got);
	struct stats_server *s;
	int one = 1, v6only, rc;

	rc = tide_addrs_resolve(addr, true, &at);
	if (rc)
		return rc == -ENOENT ? -EINVAL : rc;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pool = pool;
	s->agent = agent;
	s->timeout_ms = timeout_ms ? timeout_ms : 1;
	s->wake[0] = s->wake[1] = -1;
	s->spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
	s->fd = socket(at.addr[0].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	v6only = addr[0] != ':' && addr[0] != '*'; /* as the listeners: every address is both */
	if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    (at.addr[0].ss_family == AF_INET6 &&
	     setsockopt(s->fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only))) ||
	    bind(s->fd, (struct sockaddr *)&at.addr[0], at.len[0]) || listen(s->fd, 64) ||
	    getsockname(s->fd, (struct sockaddr *)&got, &glen) || pipe2(s->wake, O_CLOEXEC)) {
		rc = -errno;
		stats_server_stop(s);
		return rc;
	}
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
	if (s->spare >= 0)
		close(s->spare);
	free(s);
}
