/* SPDX-License-Identifier: MIT */
/*
 * stats_http.c - tide-relay's /stats (JSON) and /metrics (Prometheus text) over HTTP/1.0.
 *
 * One thread, one request per connection, answered and closed: the endpoint is for a scraper
 * or a person with curl, not for load, so it stays out of the workers' event loops and takes
 * nothing from them but relaxed counter reads (tide_pool_stats, tide_agent_stats). A pipe
 * wakes the thread for shutdown. A client gets one second to send its request line.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

void stats_write_json(FILE *f, struct tide_pool *pool, const struct tide_agent *agent)
{
	struct tide_stats ps;
	struct tide_agent_stats as;
	unsigned n = tide_agent_workers(agent);

	tide_pool_stats(pool, &ps);
	tide_agent_stats(agent, &as);
	fprintf(f, "{\"version\":\"%s\",\n", TIDE_VERSION_STRING);
	fprintf(f,
		"\"pool\":{\"reserve_size\":%zu,\"unreserved_size\":%zu,\"resident_size\":%zu,"
		"\"live_bytes\":%zu,\"live_buffers\":%zu,\"peak_live_bytes\":%zu,"
		"\"cached_bytes\":%zu,\"metadata_size\":%zu,\"block_size\":%zu,\"grow_unit\":%zu,"
		"\"max_size\":%zu,\"boundary_offset\":%zu,\"grows\":%llu,\"shrinks\":%llu,"
		"\"purges\":%llu,\"purged_bytes\":%llu,\"alloc_failures\":%llu,"
		"\"bad_frees\":%llu,\"users\":%u},\n",
		ps.reserve_size, ps.unreserved_size, ps.resident_size, ps.live_bytes,
		ps.live_buffers, ps.peak_live_bytes, ps.cached_bytes, ps.metadata_size,
		ps.block_size, ps.grow_unit, ps.max_size,
		(size_t)((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool)),
		(unsigned long long)ps.grows, (unsigned long long)ps.shrinks,
		(unsigned long long)ps.purges, (unsigned long long)ps.purged_bytes,
		(unsigned long long)ps.alloc_failures, (unsigned long long)ps.bad_frees, ps.users);
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
	fprintf(f,
		"\"connections\":{\"current\":%llu,\"total\":%llu,\"rejected\":%llu,"
		"\"idle_closed\":%llu,\"reset\":%llu,\"upstream_failures\":%llu},\n",
		(unsigned long long)as.conns_current, (unsigned long long)as.conns_accepted,
		(unsigned long long)as.conns_rejected, (unsigned long long)as.conns_idle_closed,
		(unsigned long long)as.conns_reset, (unsigned long long)as.upstream_failures);
	fprintf(f,
		"\"traffic\":{\"bytes_in\":%llu,\"bytes_out\":%llu,\"short_sends\":%llu,"
		"\"pauses\":%llu},\n",
		(unsigned long long)as.bytes_in, (unsigned long long)as.bytes_out,
		(unsigned long long)as.short_sends, (unsigned long long)as.pauses);
	fprintf(f,
		"\"ring\":{\"refills\":%llu,\"refill_buffers\":%llu,\"enobufs\":%llu,"
		"\"resets\":%llu,\"forced_grows\":%llu,\"buffers\":%llu,\"target\":%llu},\n",
		(unsigned long long)as.ring_refills, (unsigned long long)as.refill_buffers,
		(unsigned long long)as.enobufs, (unsigned long long)as.ring_resets,
		(unsigned long long)as.forced_grows, (unsigned long long)as.ring_buffers,
		(unsigned long long)as.ring_target);
	fprintf(f,
		"\"features\":{\"workers\":%u,\"recv_bundles\":%s,\"incremental_rings\":%s,"
		"\"defer_taskrun\":%s}}\n",
		n, yes(as.bundles), yes(as.incremental), yes(as.defer_taskrun));
}

static void metric(FILE *f, const char *name, const char *type, const char *help,
		   unsigned long long v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

void stats_write_prometheus(FILE *f, struct tide_pool *pool, const struct tide_agent *agent)
{
	struct tide_stats ps;
	struct tide_agent_stats as;
	unsigned n = tide_agent_workers(agent);

	tide_pool_stats(pool, &ps);
	tide_agent_stats(agent, &as);
	metric(f, "tide_pool_reserve_bytes", "gauge", "Virtual bytes reserved.", ps.reserve_size);
	metric(f, "tide_pool_unreserved_bytes", "gauge", "Bytes below the boundary (mapped).",
	       ps.unreserved_size);
	metric(f, "tide_pool_resident_bytes", "gauge", "Unreserved bytes minus purged pages.",
	       ps.resident_size);
	metric(f, "tide_pool_live_bytes", "gauge", "Bytes in buffers handed out.", ps.live_bytes);
	metric(f, "tide_pool_live_buffers", "gauge", "Buffers handed out.", ps.live_buffers);
	metric(f, "tide_pool_peak_live_bytes", "gauge", "Highest live bytes seen.",
	       ps.peak_live_bytes);
	metric(f, "tide_pool_cached_bytes", "gauge", "Free blocks parked in thread caches.",
	       ps.cached_bytes);
	metric(f, "tide_pool_boundary_offset_bytes", "gauge", "Boundary minus base.",
	       (unsigned long long)((char *)tide_pool_boundary(pool) -
				    (char *)tide_pool_base(pool)));
	metric(f, "tide_pool_grows_total", "counter", "Conversions to unreserved.", ps.grows);
	metric(f, "tide_pool_shrinks_total", "counter", "Conversions to reserved.", ps.shrinks);
	metric(f, "tide_pool_purges_total", "counter", "Purge passes that gave pages back.",
	       ps.purges);
	metric(f, "tide_pool_alloc_failures_total", "counter", "Allocations that failed.",
	       ps.alloc_failures);
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
	metric(f, "tide_relay_connections", "gauge", "Client connections open.", as.conns_current);
	metric(f, "tide_relay_connections_accepted_total", "counter",
	       "Client connections accepted.", as.conns_accepted);
	metric(f, "tide_relay_connections_rejected_total", "counter",
	       "Connections closed at once (max-conns, draining).", as.conns_rejected);
	metric(f, "tide_relay_connections_idle_closed_total", "counter",
	       "Connections closed by the idle timeout.", as.conns_idle_closed);
	metric(f, "tide_relay_connections_reset_total", "counter",
	       "Connections ended by an error or reset.", as.conns_reset);
	metric(f, "tide_relay_upstream_failures_total", "counter", "Failed upstream connects.",
	       as.upstream_failures);
	metric(f, "tide_relay_received_bytes_total", "counter", "Bytes received.", as.bytes_in);
	metric(f, "tide_relay_sent_bytes_total", "counter", "Bytes sent.", as.bytes_out);
	metric(f, "tide_relay_short_sends_total", "counter", "Sends that took less than offered.",
	       as.short_sends);
	metric(f, "tide_relay_pauses_total", "counter", "Reads stopped by backpressure.",
	       as.pauses);
	metric(f, "tide_ring_refills_total", "counter", "Ring top-ups from the pool.",
	       as.ring_refills);
	metric(f, "tide_ring_refill_buffers_total", "counter", "Buffers put into rings.",
	       as.refill_buffers);
	metric(f, "tide_ring_enobufs_total", "counter", "Receives that found the ring empty.",
	       as.enobufs);
	metric(f, "tide_ring_resets_total", "counter", "Idle rings that gave buffers back.",
	       as.ring_resets);
	metric(f, "tide_ring_buffers", "gauge", "Buffers in the rings now.", as.ring_buffers);
	metric(f, "tide_ring_target_buffers", "gauge", "Sum of the rings' targets.",
	       as.ring_target);
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
