// SPDX-License-Identifier: MIT
/*
 * fanout.c - a line broadcaster on the public agent API (tide/net.h). Application side.
 *
 *	fanout --listen 127.0.0.1:7001 [--history N] [--max-time SEC]
 *
 * Every client is a subscriber and may publish: each complete line one client sends goes to
 * every other client, and the last N lines (default 16) go to each new client when it
 * connects. Try it with two terminals running `socat - TCP:127.0.0.1:7001`.
 *
 * What it shows of the API:
 *  - buffers kept past the receive callback: a line that is not complete yet stays as the
 *    pieces it arrived in (struct tide_buf, one reference each) until its newline comes,
 *    and the history keeps the last lines' pieces for clients that come later;
 *  - one buffer sent to many connections: a line is sent from the pieces it was received in
 *    to every subscriber, with one more reference per send (tide_buf_get); no byte is copied;
 *  - a piece split at a newline: the rest of the piece takes its own reference, so two
 *    lines can share one pool buffer and each is released on its own;
 *  - bounded memory: a subscriber whose send queue passes QUEUE_MAX is dropped (reset), as
 *    Redis drops a pub/sub client over its output buffer limit; a line over LINE_MAX drops
 *    its sender.
 * One worker: the subscriber list and the history are touched on its thread only.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tide.h>
#include <tide/net.h>

#define QUEUE_MAX   (4u << 20) /* bytes queued to one subscriber before it is dropped */
#define LINE_MAX    (64u << 10)
#define PIECES_MAX  64 /* pieces of one line */
#define HISTORY_MAX 1024

struct line {
	struct tide_buf piece[PIECES_MAX];
	unsigned n;
	size_t len;
};

struct client {
	struct tide_conn *c;
	unsigned index; /* in subs[] */
	struct line partial;
};

static struct tide_agent *agent;
static struct client **subs;
static unsigned nsubs, subs_cap;
static struct line history[HISTORY_MAX];
static unsigned hist_len, hist_head, hist_max = 16;

static void line_put(struct line *l)
{
	for (unsigned i = 0; i < l->n; i++)
		tide_buf_put(agent, l->piece[i].data);
	l->n = 0;
	l->len = 0;
}

/* Send l to c from its own buffers: one more reference per piece, taken by the send. */
static void line_send(struct tide_conn *c, const struct line *l)
{
	for (unsigned i = 0; i < l->n; i++)
		tide_buf_get(agent, l->piece[i].data);
	if (tide_conn_send(c, l->piece, l->n) == 0 && tide_conn_queued(c) > QUEUE_MAX)
		tide_conn_abort(c); /* a subscriber that does not keep up */
}

/* A complete line from one client: to every other client, then into the history. */
static void publish(struct client *from, struct line *l)
{
	struct line *slot;

	/* Backwards: a subscriber dropped here is swapped for the last one, already served. */
	for (unsigned i = nsubs; i--;)
		if (subs[i] != from)
			line_send(subs[i]->c, l);
	if (!hist_max) {
		line_put(l);
		return;
	}
	slot = &history[(hist_head + hist_len) % HISTORY_MAX];
	if (hist_len == hist_max) {
		slot = &history[hist_head];
		hist_head = (hist_head + 1) % HISTORY_MAX;
		hist_len--;
	}
	line_put(slot);
	*slot = *l; /* the history takes the line's references */
	hist_len++;
	l->n = 0;
	l->len = 0;
}

static bool line_add(struct line *l, void *data, uint32_t len)
{
	if (l->n == PIECES_MAX || l->len + len > LINE_MAX)
		return false;
	l->piece[l->n++] = (struct tide_buf){data, len};
	l->len += len;
	return true;
}

/* Cut the received pieces at newlines; a line's pieces are kept until it is complete. */
static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct client *cl = tide_conn_data(c);
	unsigned i = 0;

	for (; i < n; i++) {
		char *p = bufs[i].data;
		uint32_t left = bufs[i].len;
		char *nl;

		while ((nl = memchr(p, '\n', left)) && (uint32_t)(nl + 1 - p) < left) {
			uint32_t take = (uint32_t)(nl + 1 - p);

			tide_buf_get(agent, p); /* the rest of the piece keeps its own */
			if (!line_add(&cl->partial, p, take)) {
				tide_buf_put(agent, p);
				goto too_long;
			}
			publish(cl, &cl->partial);
			p += take;
			left -= take;
		}
		if (!line_add(&cl->partial, p, left))
			goto too_long;
		if (nl)
			publish(cl, &cl->partial);
	}
	return;
too_long:
	for (; i < n; i++)
		tide_buf_put(agent, bufs[i].data);
	tide_conn_abort(c);
}

static void on_open(struct tide_conn *c)
{
	struct client *cl = calloc(1, sizeof(*cl));

	if (!cl || (nsubs == subs_cap &&
		    !(subs = realloc(subs, (subs_cap = subs_cap * 2 + 16) * sizeof(*subs))))) {
		fprintf(stderr, "fanout: out of memory\n");
		exit(1);
	}
	cl->c = c;
	cl->index = nsubs;
	subs[nsubs++] = cl;
	tide_conn_set_data(c, cl);
	for (unsigned i = 0; i < hist_len; i++)
		line_send(c, &history[(hist_head + i) % HISTORY_MAX]);
}

static void on_eof(struct tide_conn *c)
{
	tide_conn_shutdown(c, false);
}

static void on_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct client *cl = tide_conn_data(c);

	(void)why;
	(void)err;
	subs[cl->index] = subs[--nsubs];
	subs[cl->index]->index = cl->index;
	line_put(&cl->partial);
	free(cl);
}

static const struct tide_conn_ops fanout_ops = {
	.open = on_open,
	.recv = on_recv,
	.eof = on_eof,
	.end = on_end,
};

/* The worker ends: give the history's buffers back before the agent is destroyed. */
static void worker_stop(struct tide_worker *w, void *arg)
{
	(void)w;
	(void)arg;
	for (unsigned i = 0; i < HISTORY_MAX; i++)
		line_put(&history[i]);
	hist_len = 0;
}

int main(int argc, char **argv)
{
	struct tide_pool_config pc = {.block_size = 16384, .flags = TIDE_AUTO_GROW};
	struct tide_agent_config ac = {.threads = 1, .worker_stop = worker_stop};
	struct timespec ts = {600, 0};
	struct tide_pool *pool = NULL;
	const char *addr = NULL;
	unsigned port = 0;
	sigset_t set;
	int rc;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen"))
			addr = argv[i + 1];
		else if (!strcmp(argv[i], "--history"))
			hist_max = (unsigned)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--max-time"))
			ts.tv_sec = atoi(argv[i + 1]);
	}
	if (!addr || hist_max > HISTORY_MAX) {
		fprintf(stderr,
			"usage: fanout --listen HOST:PORT [--history N (max %d)] "
			"[--max-time SEC]\n",
			HISTORY_MAX);
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	rc = tide_pool_create(&pc, &pool);
	if (!rc)
		rc = tide_agent_create(pool, &ac, &agent);
	if (!rc)
		rc = tide_agent_listen(agent, addr, &fanout_ops, NULL, &port);
	if (!rc)
		rc = tide_agent_start(agent);
	if (rc) {
		fprintf(stderr, "fanout: %s: %s\n", addr, strerror(-rc));
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? 77 : 1;
	}
	printf("fanout: listening on port %u\n", port);
	fflush(stdout);
	while (sigtimedwait(&set, NULL, &ts) < 0 && errno == EINTR)
		;
	tide_agent_stop(agent);
	tide_agent_wait(agent);
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	return 0;
}
