// SPDX-License-Identifier: MIT
/*
 * tide-echo.c - a small TCP echo server on the public agent API (tide/net.h), the upstream
 * of the demo. Application side: it includes tide.h and tide/net.h only.
 *
 * What it does: accepts on HOST:PORT and sends every byte it receives back on the same
 * connection, from the very buffers it was received into (tide_conn_send takes the
 * references the receive callback handed over: no copy). One worker thread.
 *
 * Invariants: a connection's send queue holds the bytes received and not yet echoed; past
 * QUEUE_MAX the connection stops being read until the queue is under half of it
 * (backpressure: a client that does not read its echo stops being read, so memory stays
 * bounded per connection). An EOF from the client is passed back as a FIN once everything
 * before it was echoed (half-close). SIGINT or SIGTERM drains and exits 0; --max-time bounds
 * the run.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <tide.h>
#include <tide/net.h>

#define QUEUE_MAX (1u << 20)

static const char *prog = "tide-echo";

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s --listen HOST:PORT [--max-time SEC]\n"
		"\n"
		"A TCP echo server on the tide agent: every byte received is sent back on the\n"
		"same connection from the buffer it arrived in; a FIN is passed back after the\n"
		"data before it. SIGINT or SIGTERM stops it with exit status 0.\n"
		"\n"
		"  -l, --listen HOST:PORT  address to listen on (loopback in the demo)\n"
		"  -t, --max-time SEC      exit by itself after SEC seconds (default 600)\n"
		"  -h, --help              this text\n",
		prog);
}

static void echo_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	if (tide_conn_send(c, bufs, n))
		return;
	if (tide_conn_queued(c) >= QUEUE_MAX) {
		tide_conn_pause(c);
		tide_conn_notify_below(c, QUEUE_MAX / 2);
	}
}

static void echo_drained(struct tide_conn *c)
{
	tide_conn_resume(c);
}

static void echo_eof(struct tide_conn *c)
{
	tide_conn_shutdown(c, false);
}

static void echo_send_error(struct tide_conn *c, int err)
{
	(void)err;
	tide_conn_abort(c);
}

static const struct tide_conn_ops echo_ops = {
	.recv = echo_recv,
	.eof = echo_eof,
	.send_error = echo_send_error,
	.drained = echo_drained,
};

static int parse_args(int argc, char **argv, const char **addr, double *max_time)
{
	for (int i = 1; i < argc; i++) {
		bool has = i + 1 < argc;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			exit(0);
		} else if (has && (!strcmp(argv[i], "-l") || !strcmp(argv[i], "--listen"))) {
			*addr = argv[++i];
		} else if (has && (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--max-time"))) {
			char *end;

			*max_time = strtod(argv[++i], &end);
			if (*end || !(*max_time > 0)) {
				fprintf(stderr, "%s: bad --max-time '%s'\n", prog, argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "%s: unknown or incomplete option '%s' (see --help)\n",
				prog, argv[i]);
			return 2;
		}
	}
	if (!*addr) {
		fprintf(stderr, "%s: --listen HOST:PORT is required (see --help)\n", prog);
		return 2;
	}
	return 0;
}

/* Wait for SIGINT/SIGTERM or max_time seconds, whichever comes first. */
static void wait_stop(double max_time)
{
	struct timespec ts = {(time_t)max_time, (long)((max_time - (time_t)max_time) * 1e9)};
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	while (sigtimedwait(&set, NULL, &ts) < 0 && errno == EINTR)
		;
}

int main(int argc, char **argv)
{
	struct tide_pool_config pc = {.block_size = 65536,
				      .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	struct tide_agent_config ac = {.threads = 1};
	struct tide_pool *pool = NULL;
	struct tide_agent *agent = NULL;
	const char *addr = NULL;
	double max_time = 600;
	struct rlimit rl;
	sigset_t set;
	int rc;

	rc = parse_args(argc, argv, &addr, &max_time);
	if (rc)
		return rc;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the workers start: they inherit it */
	signal(SIGPIPE, SIG_IGN);
	rc = tide_pool_create(&pc, &pool);
	if (!rc)
		rc = tide_agent_create(pool, &ac, &agent);
	if (!rc)
		rc = tide_agent_listen(agent, addr, &echo_ops, NULL, NULL);
	if (!rc)
		rc = tide_agent_start(agent);
	if (rc) {
		fprintf(stderr, "%s: listen on %s: %s\n", prog, addr, strerror(-rc));
	} else {
		wait_stop(max_time);
		tide_agent_stop(agent);
		tide_agent_wait(agent);
	}
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	return rc ? 1 : 0;
}
