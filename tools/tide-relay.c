/* SPDX-License-Identifier: MIT */
/*
 * tide-relay.c - a TCP relay (or echo server) on the tide agent.
 *
 * The program is the agent's command line: it parses and checks arguments, creates the pool
 * (TIDE_AUTO_GROW | TIDE_AUTO_SHRINK, so buffer memory follows in-flight data), starts the
 * agent and the optional stats endpoint, then waits for SIGINT or SIGTERM in sigwait() on the
 * main thread (the signals are blocked everywhere else, so no handler runs on a worker). On a
 * signal the agent drains (--drain-timeout); a thread joins the workers and wakes the main
 * thread with SIGUSR1, so that a second SIGINT/SIGTERM meanwhile can end the drain at once.
 * The relay then checks that every buffer came back to the pool (live buffers 0), says so
 * on stderr, and exits 0 only if it did.
 *
 * Lines on stderr that scripts may rely on:
 *   tide-relay: listening on HOST:PORT (...)           once listening; PORT is the real one
 *   tide-relay: stats on HOST:PORT                     with --stats
 *   tide-relay: shutdown: live_buffers=N live_bytes=N ...   at exit
 * Environment: TIDE_RELAY_NO_BUNDLE, TIDE_RELAY_NO_INCREMENTAL, TIDE_RELAY_NO_RECV_LIMIT (any
 * value) turn those kernel features off, for tests and comparisons.
 * Exit status: 0 clean, 1 runtime failure or buffers not returned, 2 bad arguments,
 * 3 io_uring unavailable here.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "relay.h"

#define EXIT_USAGE    2
#define EXIT_NO_URING 3

struct options {
	const char *listen;
	const char *upstream;
	const char *stats;
	bool echo;
	unsigned threads;
	unsigned max_conns;
	size_t pool_max;
	size_t block_size;
	double idle_timeout;
	double connect_timeout;
	double drain_timeout;
	double stats_timeout;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tide-relay --listen HOST:PORT (--upstream HOST:PORT | --echo) [options]\n"
		"\n"
		"Forward TCP connections to an upstream (or echo them back), with buffers from an\n"
		"elastic tide pool and I/O on io_uring.\n"
		"\n"
		"  --listen HOST:PORT     address to accept on (port 0 picks one; see stderr)\n"
		"  --upstream HOST:PORT   relay every connection to this address\n"
		"  --echo                 send back what each client sends instead\n"
		"  --threads N            worker threads, one io_uring each (default 1)\n"
		"  --max-conns N          client connections at once; more are closed at once\n"
		"                         (default 0: no limit)\n"
		"  --pool-max SIZE        most buffer memory the pool may map (default 1G)\n"
		"  --block-size SIZE      buffer size, a power of two from 1K to 1M (default 64K)\n"
		"  --idle-timeout SEC     reset connections idle this long (default 300; 0: "
		"never)\n"
		"  --connect-timeout SEC  give up on one upstream address after this long, try "
		"the\n"
		"                         next (default 5)\n"
		"  --drain-timeout SEC    at SIGINT/SIGTERM, let connections finish this long, "
		"then\n"
		"                         reset what is left (default 5; a second signal: at "
		"once)\n"
		"  --stats HOST:PORT      serve /stats (JSON) and /metrics (Prometheus) here\n"
		"  --stats-timeout SEC    most time one stats request may take (default 5)\n"
		"  --help, --version\n"
		"\n"
		"SIZE takes a K, M or G suffix (powers of 1024). SEC may have a fraction.\n"
		"Exit status: 0 clean, 1 failure (or buffers not returned), 2 bad arguments,\n"
		"3 io_uring not available to this process.\n");
}

static int bad(const char *fmt, const char *arg)
{
	fprintf(stderr, "tide-relay: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\ntry 'tide-relay --help'\n");
	return EXIT_USAGE;
}

/* "tide-relay: OPT ", then fmt with the strings a1 and a2 (either may be unused). */
static int bad_opt(const char *opt, const char *fmt, const char *a1, const char *a2)
{
	fprintf(stderr, "tide-relay: --%s ", opt);
	fprintf(stderr, fmt, a1, a2);
	fprintf(stderr, "\ntry 'tide-relay --help'\n");
	return EXIT_USAGE;
}

static bool parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || (shift && v > (ULLONG_MAX >> shift)))
		return false;
	*out = (size_t)(v << shift);
	return true;
}

static bool parse_uint(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

/* Check HOST:PORT for option opt: 0, or the exit status after saying what is wrong. */
static int check_addr(const char *opt, const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	if (!colon || !colon[1])
		return bad_opt(opt, "wants HOST:PORT, not '%s'", s, NULL);
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] < '0' || colon[1] > '9')
		return bad_opt(opt, "wants a numeric port, not '%s'", colon + 1, NULL);
	if (errno || port > 65535)
		return bad_opt(opt, "port %s is out of range (0 to 65535)", colon + 1, NULL);
	return 0;
}

/* Seconds, with a fraction, from 0 to max: 0, or the exit status after saying why not. */
static int parse_seconds(const char *opt, const char *s, double max, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno || *end || end == s || !(*out >= 0) || *out > max)
		return bad_opt(opt, "wants seconds (0 to %s), not '%s'",
			       max > 1e6 ? "4000000" : "86400", s);
	return 0;
}

/* The value of option c (its long name is name): 0, or the exit status after saying why not. */
static int parse_value(int c, const char *name, const char *v, struct options *o)
{
	switch (c) {
	case 'l':
		o->listen = v;
		return check_addr(name, v);
	case 'u':
		o->upstream = v;
		return check_addr(name, v);
	case 's':
		o->stats = v;
		return check_addr(name, v);
	case 't':
		if (!parse_uint(v, 1024, &o->threads) || !o->threads)
			return bad("--threads wants a number from 1 to 1024, not '%s'", v);
		return 0;
	case 'm':
		if (!parse_uint(v, 100000000, &o->max_conns))
			return bad("--max-conns wants a number, not '%s'", v);
		return 0;
	case 'p':
		if (!parse_size(v, &o->pool_max) || o->pool_max < ((size_t)2 << 20))
			return bad("--pool-max wants a SIZE of at least 2M, not '%s'", v);
		return 0;
	case 'b':
		if (!parse_size(v, &o->block_size) || o->block_size < 1024 ||
		    o->block_size > ((size_t)1 << 20) || (o->block_size & (o->block_size - 1)))
			return bad("--block-size wants a power of two from 1K to 1M, not '%s'", v);
		return 0;
	case 'i':
		return parse_seconds(name, v, 4000000, &o->idle_timeout);
	case 'c':
		return parse_seconds(name, v, 86400, &o->connect_timeout);
	case 'd':
		return parse_seconds(name, v, 86400, &o->drain_timeout);
	case 'T':
		return parse_seconds(name, v, 86400, &o->stats_timeout);
	}
	return bad("%s", "internal: an option without a parser");
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longs[] = {
		{"listen", required_argument, NULL, 'l'},
		{"upstream", required_argument, NULL, 'u'},
		{"echo", no_argument, NULL, 'e'},
		{"threads", required_argument, NULL, 't'},
		{"max-conns", required_argument, NULL, 'm'},
		{"pool-max", required_argument, NULL, 'p'},
		{"block-size", required_argument, NULL, 'b'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"connect-timeout", required_argument, NULL, 'c'},
		{"drain-timeout", required_argument, NULL, 'd'},
		{"stats", required_argument, NULL, 's'},
		{"stats-timeout", required_argument, NULL, 'T'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int c, idx, rc;

	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->pool_max = (size_t)1 << 30;
	o->block_size = 64 * 1024;
	o->idle_timeout = 300;
	o->connect_timeout = 5;
	o->drain_timeout = 5;
	o->stats_timeout = 5;
	opterr = 0;
	/* ":" first: a missing value is ':', an unknown option '?'; no short options. */
	while (idx = -1, (c = getopt_long(argc, argv, ":", longs, &idx)) != -1) {
		if (c == 'e') {
			o->echo = true;
		} else if (c == 'h') {
			usage(stdout);
			exit(0);
		} else if (c == 'V') {
			printf("tide-relay %s\n", TIDE_VERSION_STRING);
			exit(0);
		} else if (c == ':') {
			return bad("option '%s' wants a value", argv[optind - 1]);
		} else if (c == '?') {
			if (optopt) {
				char opt[3] = {'-', (char)optopt, '\0'};

				return bad("unknown option '%s'", opt);
			}
			return bad("unknown option '%s'", argv[optind - 1]);
		} else if ((rc = parse_value(c, idx >= 0 ? longs[idx].name : "option", optarg,
					     o))) {
			return rc;
		}
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	if (!o->listen)
		return bad("%s", "--listen HOST:PORT is required");
	if (!o->upstream == !o->echo)
		return bad("%s", "give exactly one of --upstream HOST:PORT and --echo");
	if (o->pool_max < o->block_size)
		return bad("%s", "--pool-max is smaller than --block-size");
	return 0;
}

static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static const char *host_of(const char *addr, char *buf, size_t len)
{
	const char *colon = strrchr(addr, ':');
	size_t n = (size_t)(colon - addr);

	if (n >= len)
		n = len - 1;
	memcpy(buf, addr, n);
	buf[n] = '\0';
	return buf;
}

/* The agent's configuration from the options. */
static void agent_config(const struct options *o, struct tide_agent_config *ac)
{
	memset(ac, 0, sizeof(*ac));
	ac->listen = o->listen;
	ac->upstream = o->echo ? NULL : o->upstream;
	ac->threads = o->threads;
	ac->max_conns = o->max_conns;
	/* For tests and benchmarks: turn newer kernel features off without a CLI change. */
	if (getenv("TIDE_RELAY_NO_BUNDLE"))
		ac->flags |= TIDE_AGENT_NO_BUNDLE;
	if (getenv("TIDE_RELAY_NO_INCREMENTAL"))
		ac->flags |= TIDE_AGENT_NO_INCREMENTAL;
	if (getenv("TIDE_RELAY_NO_RECV_LIMIT"))
		ac->flags |= TIDE_AGENT_NO_RECV_LIMIT;
	ac->idle_timeout_ms = (unsigned)(o->idle_timeout * 1000 + 0.5);
	if (o->idle_timeout > 0 && !ac->idle_timeout_ms)
		ac->idle_timeout_ms = 1;
	/* 0 s means "at once": the smallest the agent takes (its 0 is the default). */
	ac->connect_timeout_ms = (unsigned)(o->connect_timeout * 1000 + 0.5) ?: 1;
	ac->drain_timeout_ms = (unsigned)(o->drain_timeout * 1000 + 0.5) ?: 1;
}

/* Create the agent, the stats server and start the workers: 0 or the exit status. */
static int start(const struct options *o, struct tide_pool *pool, struct tide_agent **agent,
		 struct stats_server **srv)
{
	struct tide_agent_config ac;
	int rc;

	agent_config(o, &ac);
	rc = tide_agent_create(pool, &ac, agent);
	if (rc) {
		if (rc == -EINVAL)
			fprintf(stderr, "tide-relay: cannot resolve '%s'%s%s%s\n", o->listen,
				o->upstream ? " or '" : "", o->upstream ? o->upstream : "",
				o->upstream ? "'" : "");
		else
			fprintf(stderr, "tide-relay: listening on %s: %s\n", o->listen,
				strerror(-rc));
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	if (o->stats) {
		rc = stats_server_start(o->stats, (unsigned)(o->stats_timeout * 1000 + 0.5), pool,
					*agent, srv);
		if (rc) {
			fprintf(stderr, "tide-relay: stats on %s: %s\n", o->stats,
				rc == -EINVAL ? "cannot resolve" : strerror(-rc));
			return rc == -EINVAL ? EXIT_USAGE : 1;
		}
	}
	rc = tide_agent_start(*agent);
	if (rc) {
		fprintf(stderr, "tide-relay: starting the workers: %s%s\n", strerror(-rc),
			rc == -EPERM ? " (io_uring refused)" : "");
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? EXIT_NO_URING : 1;
	}
	return 0;
}

static void say_listening(const struct options *o, struct tide_agent *agent,
			  struct stats_server *srv)
{
	struct tide_agent_stats as;
	char host[256];

	tide_agent_stats(agent, &as);
	fprintf(stderr,
		"tide-relay: listening on %s:%u (%s%s, %u thread%s, block %zu, pool max %zu, "
		"recv bundles %s, incremental rings %s, max conns %u, idle timeout %gs)\n",
		host_of(o->listen, host, sizeof(host)), tide_agent_port(agent),
		o->echo ? "echo" : "upstream ", o->echo ? "" : o->upstream, o->threads,
		o->threads == 1 ? "" : "s", o->block_size, o->pool_max, as.bundles ? "on" : "off",
		as.incremental ? "on" : "off", o->max_conns, o->idle_timeout);
	if (srv)
		fprintf(stderr, "tide-relay: stats on %s:%u\n",
			host_of(o->stats, host, sizeof(host)), stats_server_port(srv));
	fflush(stderr);
}

struct waiter {
	struct tide_agent *agent;
	pthread_t main;
};

/* Join the workers, then wake the main thread's sigwait() with SIGUSR1. */
static void *wait_workers(void *arg)
{
	struct waiter *wt = arg;

	tide_agent_wait(wt->agent);
	pthread_kill(wt->main, SIGUSR1);
	return NULL;
}

/*
 * Wait for SIGINT or SIGTERM, drain, and stop: a second signal during the drain ends it at
 * once (the agent resets what is left). set holds SIGINT, SIGTERM and SIGUSR1, blocked.
 */
static void run_until_signalled(struct tide_agent *agent, sigset_t *set)
{
	struct waiter wt = {agent, pthread_self()};
	pthread_t thread;
	int sig = 0;

	while (sigwait(set, &sig) || sig == SIGUSR1)
		;
	fprintf(stderr, "tide-relay: %s: draining (a second signal stops at once)\n",
		strsignal(sig));
	tide_agent_stop(agent);
	if (pthread_create(&thread, NULL, wait_workers, &wt)) {
		tide_agent_wait(agent);
		return;
	}
	while (!sigwait(set, &sig) && sig != SIGUSR1) {
		fprintf(stderr, "tide-relay: %s: stopping now\n", strsignal(sig));
		tide_agent_stop(agent);
	}
	pthread_join(thread, NULL);
}

/* Say what came back at shutdown; the exit status (1 when buffers were not returned). */
static int report(struct tide_pool *pool, const struct tide_agent_stats *as)
{
	struct tide_stats ps;

	tide_pool_flush_cache(pool);
	tide_pool_stats(pool, &ps);
	fprintf(stderr,
		"tide-relay: shutdown: live_buffers=%zu live_bytes=%zu connections_total=%llu "
		"bytes_in=%llu bytes_out=%llu grows=%llu shrinks=%llu peak_live_bytes=%zu%s\n",
		ps.live_buffers, ps.live_bytes, (unsigned long long)as->conns_accepted,
		(unsigned long long)as->bytes_in, (unsigned long long)as->bytes_out,
		(unsigned long long)ps.grows, (unsigned long long)ps.shrinks, ps.peak_live_bytes,
		ps.live_buffers ? " (BUFFERS NOT RETURNED)" : "");
	return ps.live_buffers ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct tide_pool_config pc;
	struct tide_pool *pool = NULL;
	struct tide_agent *agent = NULL;
	struct stats_server *srv = NULL;
	struct tide_agent_stats as;
	char why[256];
	sigset_t set;
	int rc;

	rc = parse_args(argc, argv, &o);
	if (rc)
		return rc;
	raise_nofile();
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = tide_agent_probe(why, sizeof(why));
	if (rc) {
		fprintf(stderr, "tide-relay: %s\n", why);
		return EXIT_NO_URING;
	}
	memset(&pc, 0, sizeof(pc));
	pc.block_size = o.block_size;
	pc.max_size = o.pool_max;
	pc.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK;
	rc = tide_pool_create(&pc, &pool);
	if (rc) {
		fprintf(stderr, "tide-relay: creating the buffer pool: %s\n", strerror(-rc));
		return 1;
	}
	rc = start(&o, pool, &agent, &srv);
	if (rc) {
		stats_server_stop(srv);
		tide_agent_destroy(agent);
		tide_pool_destroy(pool);
		return rc;
	}
	say_listening(&o, agent, srv);
	run_until_signalled(agent, &set);
	stats_server_stop(srv);
	tide_agent_stats(agent, &as);
	tide_agent_destroy(agent);
	rc = report(pool, &as);
	tide_pool_destroy(pool);
	return rc;
}
