// SPDX-License-Identifier: MIT
/*
 * http.c - an HTTP/1.1 responder on the public agent API (tide/net.h). Application side.
 *
 *	http --listen 127.0.0.1:8080 [--threads N] [--max-time SEC]
 *
 * GET /size/N answers N bytes (0 .. 64 MiB) of a fixed pattern, the 64 characters
 * 0-9 a-z A-Z - _ repeated; any other request gets a short text. Connections are kept alive
 * (HTTP/1.1, or HTTP/1.0 asking for it) and requests may be pipelined. Try it with
 * `curl --http1.1 http://127.0.0.1:8080/size/10 http://127.0.0.1:8080/` (one connection)
 * or `wrk -t1 -c50 -d3s http://127.0.0.1:8080/`.
 *
 * What it shows of the API:
 *  - buffers kept past the receive callback: a request head arrives in pieces (struct
 *    tide_buf, one reference each), maybe over several callbacks and maybe together with the
 *    next requests; a connection keeps them until a head is whole, copies out only the head
 *    (at most HEAD_MAX bytes) to parse it, and drops the pieces it consumed;
 *  - headers copied, bodies not: the status line and headers go out with
 *    tide_conn_send_copy(); a body is pieces of one pattern block per worker (allocated with
 *    tide_buf_alloc() in worker_start), one reference per piece (tide_buf_get());
 *  - backpressure: past QUEUE_HIGH bytes queued the connection stops reading and answering;
 *    its drained callback resumes and answers the pipelined requests it already holds;
 *  - clean endings: the peer's FIN, "Connection: close" and an error answer end with FIN
 *    after the last answer (tide_conn_shutdown); at tide_agent_stop() idle keep-alive
 *    connections are shut down at once and busy ones after the answer in progress (ops->drain),
 *    so none is reset at the drain deadline.
 * A request with a body (Content-Length, Transfer-Encoding) gets 501 and the connection ends;
 * a head over HEAD_MAX gets 431. Each connection lives on one worker: nothing is shared
 * between workers but the per-worker pattern blocks, each touched by its own worker only.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h> /* strncasecmp */
#include <time.h>

#include <tide.h>
#include <tide/net.h>

#define BLOCK	   65536u      /* pool block: one pattern block, one body piece */
#define HEAD_MAX   8192u       /* request head, request line included */
#define PIECES_MAX 4096u       /* received pieces a connection keeps: a bound, never reached */
#define BODY_MAX   (64u << 20) /* largest /size/N */
#define QUEUE_HIGH (4u << 20)  /* bytes queued before a connection stops answering */

static const char PATTERN[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
static const char HELLO[] = "hello from tide\n";

static struct tide_agent *agent;
static struct tide_buf *pattern; /* one block per worker, [tide_worker_index()] */

struct client {
	struct tide_buf *kept; /* received, not yet consumed, in order */
	unsigned n, cap;
	size_t bytes;
	bool eof;      /* the peer sent FIN: answer what is whole, then end */
	bool ending;   /* FIN asked for: take no more requests */
	bool paused;   /* waiting for drained */
	bool draining; /* the agent stops: end after the answer in progress */
};

/* ------------------------------------------------------------ the pattern -- */

static void worker_start(struct tide_worker *w, void *arg)
{
	struct tide_buf *b = &pattern[tide_worker_index(w)];

	(void)arg;
	if (tide_buf_alloc(w, BLOCK, b)) {
		b->data = NULL; /* /size/N answers 503 on this worker */
		return;
	}
	for (uint32_t i = 0; i < BLOCK; i++)
		((char *)b->data)[i] = PATTERN[i % 64];
}

/* After the worker's last connection ended: give the block back before tide_agent_wait(). */
static void worker_stop(struct tide_worker *w, void *arg)
{
	struct tide_buf *b = &pattern[tide_worker_index(w)];

	(void)arg;
	if (b->data)
		tide_buf_put(agent, b->data);
	b->data = NULL;
}

/* Queue n body bytes: pieces of the worker's pattern block, a reference each. */
static int send_body(struct tide_conn *c, size_t n)
{
	const struct tide_buf *b = &pattern[tide_worker_index(tide_conn_worker(c))];
	struct tide_buf out[16];
	unsigned k = 0;
	int rc = 0;

	while (n && !rc) {
		out[k].data = b->data;
		out[k].len = n < BLOCK ? (uint32_t)n : BLOCK;
		tide_buf_get(agent, b->data);
		n -= out[k++].len;
		if (k == 16 || !n) {
			rc = tide_conn_send(c, out, k); /* takes the references, also on error */
			k = 0;
		}
	}
	return rc;
}

/* ---------------------------------------------------------- kept pieces -- */

/* Room for n more pieces. While a connection answers, the pieces it keeps are at most one
 * head; while it waits for drained, at most what one receive completed before the pause. */
static bool keep_room(struct client *cl, unsigned n)
{
	unsigned cap = cl->cap ? cl->cap : 16;
	struct tide_buf *kept;

	while (cap < cl->n + n && cap < PIECES_MAX)
		cap *= 2;
	if (cl->n + n > cap)
		return false;
	if (cap == cl->cap)
		return true;
	kept = realloc(cl->kept, cap * sizeof(*kept));
	if (!kept)
		return false;
	cl->kept = kept;
	cl->cap = cap;
	return true;
}

static void drop_all(struct client *cl)
{
	for (unsigned i = 0; i < cl->n; i++)
		tide_buf_put(agent, cl->kept[i].data);
	cl->n = 0;
	cl->bytes = 0;
}

/* Length of the first head (through its blank line) in the kept pieces, or 0. */
static size_t head_length(const struct client *cl)
{
	static const char end[] = "\r\n\r\n";
	unsigned matched = 0;
	size_t off = 0;

	for (unsigned i = 0; i < cl->n; i++) {
		const char *p = cl->kept[i].data;

		for (uint32_t j = 0; j < cl->kept[i].len; j++) {
			off++;
			if (p[j] == end[matched])
				matched++;
			else
				matched = p[j] == '\r';
			if (matched == 4)
				return off;
		}
	}
	return 0;
}

/* Copy the first len kept bytes out and drop them; a piece consumed in part stays, shorter,
 * with its reference. */
static void take(struct client *cl, char *dst, size_t len)
{
	unsigned i = 0;

	cl->bytes -= len;
	while (len) {
		struct tide_buf *b = &cl->kept[i];
		uint32_t k = len < b->len ? (uint32_t)len : b->len;

		memcpy(dst, b->data, k);
		dst += k;
		len -= k;
		if (k < b->len) {
			b->data = (char *)b->data + k;
			b->len -= k;
		} else {
			tide_buf_put(agent, b->data);
			i++;
		}
	}
	memmove(cl->kept, cl->kept + i, (cl->n - i) * sizeof(cl->kept[0]));
	cl->n -= i;
}

/* ------------------------------------------------------------- requests -- */

/* Whether the head has header name with a value that begins with value (both any case). */
static bool header_is(const char *head, const char *name, const char *value)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p && p[2] != '\r'; p = strstr(p + 2, "\r\n")) {
		const char *h = p + 2;

		if (!strncasecmp(h, name, nl) && h[nl] == ':') {
			h += nl + 1;
			h += strspn(h, " \t");
			if (!*value || !strncasecmp(h, value, strlen(value)))
				return true;
		}
	}
	return false;
}

/* End sending after what is queued: FIN, and no more requests. Last call on cl: end may
 * run inside tide_conn_shutdown() and free it. */
static void finish(struct tide_conn *c, struct client *cl)
{
	cl->ending = true;
	drop_all(cl);
	tide_conn_shutdown(c, false);
}

/* An error answer: the connection ends after it. */
static void fail(struct tide_conn *c, struct client *cl, const char *status)
{
	char hdr[160];
	int len = snprintf(hdr, sizeof(hdr),
			   "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);

	tide_conn_send_copy(c, hdr, (size_t)len);
	finish(c, cl);
}

/* Answer one request head (NUL-terminated). Return: false when the connection ends. */
static bool answer(struct tide_conn *c, struct client *cl, const char *head)
{
	char method[16], target[1024], version[16], hdr[256], extra;
	unsigned long long n;
	bool keep;
	int len, rc;

	if (sscanf(head, "%15s %1023s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7)) {
		fail(c, cl, "400 Bad Request");
		return false;
	}
	if (header_is(head, "Content-Length", "") || header_is(head, "Transfer-Encoding", "")) {
		fail(c, cl, "501 Not Implemented");
		return false;
	}
	keep = strcmp(version, "HTTP/1.0") ? !header_is(head, "Connection", "close")
					   : header_is(head, "Connection", "keep-alive");
	keep = keep && !cl->draining;
	if (!strcmp(method, "GET") && sscanf(target, "/size/%llu%c", &n, &extra) == 1 &&
	    n <= BODY_MAX) {
		if (!pattern[tide_worker_index(tide_conn_worker(c))].data) {
			fail(c, cl, "503 Service Unavailable");
			return false;
		}
		len = snprintf(hdr, sizeof(hdr),
			       "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n%s\r\n", n,
			       keep ? "" : "Connection: close\r\n");
		rc = tide_conn_send_copy(c, hdr, (size_t)len);
		if (!rc)
			rc = send_body(c, n);
	} else {
		len = snprintf(
			hdr, sizeof(hdr),
			"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			"%s\r\n%s",
			sizeof(HELLO) - 1, keep ? "" : "Connection: close\r\n", HELLO);
		rc = tide_conn_send_copy(c, hdr, (size_t)len);
	}
	if (rc == -ENOSPC) { /* the worker's quota: nothing of this answer was queued */
		fail(c, cl, "503 Service Unavailable");
		return false;
	}
	if (rc) { /* -EPIPE: the peer is gone; -ENOMEM: already reset */
		if (rc != -ENOMEM)
			tide_conn_abort(c);
		return false;
	}
	if (!keep) {
		finish(c, cl);
		return false;
	}
	return true;
}

/* Answer every whole head kept, until the send queue is long (then wait for drained). */
static void serve(struct tide_conn *c, struct client *cl)
{
	char head[HEAD_MAX + 1];
	size_t len;

	while (!cl->ending) {
		if (tide_conn_queued(c) > QUEUE_HIGH) {
			cl->paused = true;
			tide_conn_pause(c);
			tide_conn_notify_below(c, QUEUE_HIGH / 2); /* not below yet: no re-entry */
			return;
		}
		len = head_length(cl);
		if (len > HEAD_MAX || (!len && cl->bytes > HEAD_MAX)) {
			fail(c, cl, "431 Request Header Fields Too Large");
			return;
		}
		if (!len) {
			if (cl->eof || (cl->draining && !cl->bytes))
				finish(c, cl); /* nothing whole is left to answer */
			return;
		}
		take(cl, head, len);
		head[len] = '\0';
		if (!answer(c, cl, head))
			return;
	}
}

/* ------------------------------------------------------------ callbacks -- */

static void on_open(struct tide_conn *c)
{
	struct client *cl = calloc(1, sizeof(*cl));

	if (!cl) {
		tide_conn_abort(c); /* end runs with no client */
		return;
	}
	tide_conn_set_data(c, cl);
}

static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct client *cl = tide_conn_data(c);
	bool room = !cl->ending && keep_room(cl, n);

	for (unsigned i = 0; i < n; i++) {
		if (!room) { /* after the end was asked, or no room: not kept */
			tide_buf_put(agent, bufs[i].data);
			continue;
		}
		cl->kept[cl->n++] = bufs[i];
		cl->bytes += bufs[i].len;
	}
	if (!room && !cl->ending)
		fail(c, cl, "431 Request Header Fields Too Large"); /* last use of cl */
	else if (!cl->paused && !cl->ending)
		serve(c, cl);
}

static void on_drained(struct tide_conn *c)
{
	struct client *cl = tide_conn_data(c);

	cl->paused = false;
	tide_conn_resume(c);
	serve(c, cl);
}

static void on_eof(struct tide_conn *c)
{
	struct client *cl = tide_conn_data(c);

	cl->eof = true;
	if (!cl->paused && !cl->ending)
		serve(c, cl);
}

static void on_drain(struct tide_conn *c)
{
	struct client *cl = tide_conn_data(c);

	cl->draining = true;
	if (!cl->paused && !cl->ending)
		serve(c, cl);
}

static void on_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct client *cl = tide_conn_data(c);

	(void)why;
	(void)err;
	if (!cl)
		return;
	drop_all(cl);
	free(cl->kept);
	free(cl);
}

static const struct tide_conn_ops http_ops = {
	.open = on_open,
	.recv = on_recv,
	.eof = on_eof,
	.drained = on_drained,
	.drain = on_drain,
	.end = on_end,
};

int main(int argc, char **argv)
{
	struct tide_pool_config pc = {.block_size = BLOCK,
				      .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	struct tide_agent_config ac = {.threads = 1,
				       .idle_timeout_ms = 60000,
				       .worker_start = worker_start,
				       .worker_stop = worker_stop};
	struct timespec ts = {600, 0};
	struct tide_pool *pool = NULL;
	const char *addr = NULL;
	unsigned port = 0;
	sigset_t set;
	int rc;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen"))
			addr = argv[i + 1];
		else if (!strcmp(argv[i], "--threads"))
			ac.threads = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--max-time"))
			ts.tv_sec = atoi(argv[i + 1]);
	}
	if (!addr || ac.threads < 1 || ac.threads > 64) {
		fprintf(stderr,
			"usage: http --listen HOST:PORT [--threads 1..64] [--max-time SEC]\n");
		return 2;
	}
	pattern = calloc(ac.threads, sizeof(*pattern));
	if (!pattern)
		return 1;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = tide_pool_create(&pc, &pool);
	if (!rc)
		rc = tide_agent_create(pool, &ac, &agent);
	if (!rc)
		rc = tide_agent_listen(agent, addr, &http_ops, NULL, &port);
	if (!rc)
		rc = tide_agent_start(agent);
	if (rc) {
		fprintf(stderr, "http: %s: %s\n", addr, strerror(-rc));
		tide_agent_destroy(agent);
		tide_pool_destroy(pool);
		free(pattern);
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? 77 : 1;
	}
	printf("http: listening on port %u\n", port);
	fflush(stdout);
	while (sigtimedwait(&set, NULL, &ts) < 0 && errno == EINTR)
		;
	tide_agent_stop(agent); /* ops->drain ends the keep-alive connections with FIN */
	tide_agent_wait(agent);
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	free(pattern);
	return 0;
}
