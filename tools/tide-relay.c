/* SPDX-License-Identifier: MIT */
/*
 * tide-relay.c - a TCP relay (or echo server) on the tide agent.
 *
 * The program is the agent's command line: it parses and checks arguments, creates the pool
 * (TIDE_AUTO_GROW | TIDE_AUTO_SHRINK, so buffer memory follows in-flight data), starts the
 * agent and the optional stats endpoint, then waits for SIGINT or SIGTERM in sigwait() on the
 * main thread (the signals are blocked everywhere else, so no handler runs on a worker). On a
 * signal the agent drains; the relay then checks that every buffer came back to the pool
 * (live buffers 0), says so on stderr, and exits 0 only if it did.
 *
 * Lines on stderr that scripts may rely on:
 *   tide-relay: listening on HOST:PORT (...)           once listening; PORT is the real one
 *   tide-relay: stats on HOST:PORT                     with --stats
 *   tide-relay: shutdown: live_buffers=N live_bytes=N ...   at exit
 * Environment: TIDE_RELAY_NO_BUNDLE, TIDE_RELAY_NO_INCREMENTAL (any value) turn those kernel
 * features off, for tests and comparisons.
 * Exit status: 0 clean, 1 runtime failure or buffers not returned, 2 bad arguments,
 * 3 io_uring unavailable here.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
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
		"  --idle-timeout SEC     close connections idle this long (default 300; 0: "
		"never)\n"
		"  --stats HOST:PORT      serve /stats (JSON) and /metrics (Prometheus) here\n"
		"  --help, --version\n"
		"\n"
		"SIZE takes a K, M or G suffix (powers of 1024). SIGINT or SIGTERM drain and "
		"stop.\n"
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

static bool looks_like_addr(const char *s)
{
	const char *colon = s ? strrchr(s, ':') : NULL;

	return colon && colon[1];
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
		{"stats", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->pool_max = (size_t)1 << 30;
	o->block_size = 64 * 1024;
	o->idle_timeout = 300;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (!looks_like_addr(optarg))
				return bad("--listen wants HOST:PORT, not '%s'", optarg);
			o->listen = optarg;
			break;
		case 'u':
			if (!looks_like_addr(optarg))
				return bad("--upstream wants HOST:PORT, not '%s'", optarg);
			o->upstream = optarg;
			break;
		case 'e':
			o->echo = true;
			break;
		case 't':
			if (!parse_uint(optarg, 1024, &o->threads) || !o->threads)
				return bad("--threads wants a number from 1 to 1024, not '%s'",
					   optarg);
			break;
		case 'm':
			if (!parse_uint(optarg, 100000000, &o->max_conns))
				return bad("--max-conns wants a number, not '%s'", optarg);
			break;
		case 'p':
			if (!parse_size(optarg, &o->pool_max) || o->pool_max < ((size_t)2 << 20))
				return bad("--pool-max wants a SIZE of at least 2M, not '%s'",
					   optarg);
			break;
		case 'b':
			if (!parse_size(optarg, &o->block_size) || o->block_size < 1024 ||
			    o->block_size > ((size_t)1 << 20) ||
			    (o->block_size & (o->block_size - 1)))
				return bad(
					"--block-size wants a power of two from 1K to 1M, not '%s'",
					optarg);
			break;
		case 'i':
			errno = 0;
			o->idle_timeout = strtod(optarg, &end);
			if (errno || *end || end == optarg || !(o->idle_timeout >= 0) ||
			    o->idle_timeout > 4000000)
				return bad("--idle-timeout wants seconds (0: never), not '%s'",
					   optarg);
			break;
		case 's':
			if (!looks_like_addr(optarg))
				return bad("--stats wants HOST:PORT, not '%s'", optarg);
			o->stats = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("tide-relay %s\n", TIDE_VERSION_STRING);
			exit(0);
		default:
			if (optopt)
				fprintf(stderr, "tide-relay: option '%s' wants a value\n",
					argv[optind - 1]);
			else
				fprintf(stderr, "tide-relay: unknown option '%s'\n",
					argv[optind - 1]);
			fprintf(stderr, "try 'tide-relay --help'\n");
			return EXIT_USAGE;
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

int main(int argc, char **argv)
{
	struct options o;
	struct tide_pool_config pc;
	struct tide_agent_config ac;
	struct tide_pool *pool = NULL;
	struct tide_agent *agent = NULL;
	struct stats_server *srv = NULL;
	struct tide_agent_stats as;
	struct tide_stats ps;
	char why[256], host[256];
	sigset_t set;
	int rc, sig = 0;

	rc = parse_args(argc, argv, &o);
	if (rc)
		return rc;
	raise_nofile();
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
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

	memset(&ac, 0, sizeof(ac));
	ac.listen = o.listen;
	ac.upstream = o.echo ? NULL : o.upstream;
	ac.threads = o.threads;
	ac.max_conns = o.max_conns;
	/* For tests and benchmarks: turn newer kernel features off without a CLI change. */
	if (getenv("TIDE_RELAY_NO_BUNDLE"))
		ac.flags |= TIDE_AGENT_NO_BUNDLE;
	if (getenv("TIDE_RELAY_NO_INCREMENTAL"))
		ac.flags |= TIDE_AGENT_NO_INCREMENTAL;
	ac.idle_timeout_ms = (unsigned)(o.idle_timeout * 1000 + 0.5);
	if (o.idle_timeout > 0 && !ac.idle_timeout_ms)
		ac.idle_timeout_ms = 1;
	rc = tide_agent_create(pool, &ac, &agent);
	if (rc) {
		if (rc == -EINVAL)
			fprintf(stderr, "tide-relay: cannot resolve '%s' or '%s'\n", o.listen,
				o.upstream ? o.upstream : "");
		else
			fprintf(stderr, "tide-relay: listening on %s: %s\n", o.listen,
				strerror(-rc));
		tide_pool_destroy(pool);
		return rc == -EINVAL ? EXIT_USAGE : 1;
	}
	if (o.stats) {
		rc = stats_server_start(o.stats, pool, agent, &srv);
		if (rc) {
			fprintf(stderr, "tide-relay: stats on %s: %s\n", o.stats,
				rc == -EINVAL ? "cannot resolve" : strerror(-rc));
			tide_agent_destroy(agent);
			tide_pool_destroy(pool);
			return rc == -EINVAL ? EXIT_USAGE : 1;
		}
	}
	rc = tide_agent_start(agent);
	if (rc) {
		fprintf(stderr, "tide-relay: starting the workers: %s%s\n", strerror(-rc),
			rc == -EPERM ? " (io_uring refused)" : "");
		stats_server_stop(srv);
		tide_agent_destroy(agent);
		tide_pool_destroy(pool);
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? EXIT_NO_URING : 1;
	}
	tide_agent_stats(agent, &as);
	fprintf(stderr,
		"tide-relay: listening on %s:%u (%s%s, %u thread%s, block %zu, pool max %zu, "
		"recv bundles %s, incremental rings %s, max conns %u, idle timeout %gs)\n",
		host_of(o.listen, host, sizeof(host)), tide_agent_port(agent),
		o.echo ? "echo" : "upstream ", o.echo ? "" : o.upstream, o.threads,
		o.threads == 1 ? "" : "s", o.block_size, o.pool_max, as.bundles ? "on" : "off",
		as.incremental ? "on" : "off", o.max_conns, o.idle_timeout);
	if (srv)
		fprintf(stderr, "tide-relay: stats on %s:%u\n",
			host_of(o.stats, host, sizeof(host)), stats_server_port(srv));
	fflush(stderr);

	while (sigwait(&set, &sig) && errno == EINTR)
		;
	fprintf(stderr, "tide-relay: %s: draining\n", strsignal(sig));
	tide_agent_stop(agent);
	tide_agent_wait(agent);
	stats_server_stop(srv);
	tide_agent_stats(agent, &as);
	tide_agent_destroy(agent);
	tide_pool_flush_cache(pool);
	tide_pool_stats(pool, &ps);
	fprintf(stderr,
		"tide-relay: shutdown: live_buffers=%zu live_bytes=%zu connections_total=%llu "
		"bytes_in=%llu bytes_out=%llu grows=%llu shrinks=%llu peak_live_bytes=%zu%s\n",
		ps.live_buffers, ps.live_bytes, (unsigned long long)as.conns_accepted,
		(unsigned long long)as.bytes_in, (unsigned long long)as.bytes_out,
		(unsigned long long)ps.grows, (unsigned long long)ps.shrinks, ps.peak_live_bytes,
		ps.live_buffers ? " (BUFFERS NOT RETURNED)" : "");
	tide_pool_destroy(pool);
	return ps.live_buffers ? 1 : 0;
}
