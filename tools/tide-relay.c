/* SPDX-License-Identifier: MIT */
/*
 * tide-relay.c - a TCP relay (or echo server): a program on the public agent API.
 * Application side: it includes tide.h and tide/net.h only (through relay.h).
 *
 * The program parses the command line (options.c), creates the pool (TIDE_AUTO_GROW |
 * TIDE_AUTO_SHRINK, so buffer memory follows in-flight data), makes an agent whose accepted
 * connections are forwarded (forward.c), starts it and the optional stats endpoint, then
 * waits for SIGINT or SIGTERM in sigwait() on the main thread (the signals are blocked
 * everywhere else, so no handler runs on a worker). The first signal drains (connections
 * may run for --drain-timeout), a second ends them at once. The relay then checks that
 * every buffer came back to the pool (live buffers 0), says so on stderr, and exits 0 only
 * if it did.
 *
 * Lines on stderr that scripts may rely on:
 *   tide-relay: listening on HOST:PORT (...)           once per --listen; PORT is the real one
 *   tide-relay: stats on HOST:PORT                     with --stats
 *   tide-relay: shutdown: live_buffers=N live_bytes=N ...   at exit
 * Environment: TIDE_RELAY_NO_BUNDLE, TIDE_RELAY_NO_INCREMENTAL, TIDE_RELAY_NO_RECV_LIMIT (any
 * value) turn those kernel features off, for tests and comparisons.
 * Exit status: 0 clean, 1 runtime failure or buffers not returned, 2 bad arguments,
 * 3 io_uring unavailable here.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "relay.h"

#define EXIT_USAGE    2
#define EXIT_NO_URING 3

/* Address lists of the upstream, newest first: older ones stay until exit, since a connect
 * in progress keeps the list it started with. A new one is kept only when it differs. */
struct addrs_list {
	struct addrs_list *older;
	struct tide_addrs addrs;
};

struct relay {
	struct options o;
	struct forward_config fwd;
	struct addrs_list *lists;
	struct timespec last_resolve;
	struct tide_pool *pool;
	struct tide_agent *agent;
	struct stats_server *srv;
	unsigned port[RELAY_MAX_LISTEN];
};

static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static unsigned ms(double sec)
{
	unsigned v = (unsigned)(sec * 1000 + 0.5);

	return sec > 0 && !v ? 1 : v;
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

static int make_pool(struct relay *r)
{
	struct tide_pool_config pc = {
		.block_size = r->o.block_size,
		.max_size = r->o.pool_max,
		.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK,
	};
	int rc = tide_pool_create(&pc, &r->pool);

	if (rc)
		fprintf(stderr, "tide-relay: creating the buffer pool: %s\n", strerror(-rc));
	return rc ? 1 : 0;
}

/* Resolve --upstream; publish the list when it is new or differs from the last. 0 or -errno. */
static int resolve(struct relay *r)
{
	struct addrs_list *l = calloc(1, sizeof(*l));
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &r->last_resolve);
	if (!l)
		return -ENOMEM;
	rc = tide_addrs_resolve(r->o.upstream, false, &l->addrs);
	if (rc || (r->lists && !memcmp(&r->lists->addrs, &l->addrs, sizeof(l->addrs)))) {
		free(l);
		return rc;
	}
	l->older = r->lists;
	r->lists = l;
	atomic_store_explicit(&r->fwd.upstream, &l->addrs, memory_order_release);
	return 0;
}

static void lists_free(struct relay *r)
{
	while (r->lists) {
		struct addrs_list *l = r->lists;

		r->lists = l->older;
		free(l);
	}
}

/* Every address failed a connect: resolve the name again, at most once a second. */
static void maybe_resolve(struct relay *r)
{
	struct timespec now;

	if (!atomic_load_explicit(&r->fwd.resolve, memory_order_relaxed))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec - r->last_resolve.tv_sec < 1)
		return;
	atomic_store_explicit(&r->fwd.resolve, false, memory_order_relaxed);
	resolve(r);
}

/* The agent, its listeners and the upstream's addresses: 0 or the exit status. */
static int make_agent(struct relay *r)
{
	struct tide_agent_config ac = {
		.threads = r->o.threads,
		.max_conns = r->o.max_conns,
		.idle_timeout_ms = ms(r->o.idle_timeout),
		.drain_timeout_ms = ms(r->o.drain_timeout),
	};
	const struct tide_conn_ops *ops;
	int rc;

	/* For tests and benchmarks: turn newer kernel features off without a CLI change. */
	if (getenv("TIDE_RELAY_NO_BUNDLE"))
		ac.flags |= TIDE_AGENT_NO_BUNDLE;
	if (getenv("TIDE_RELAY_NO_INCREMENTAL"))
		ac.flags |= TIDE_AGENT_NO_INCREMENTAL;
	if (getenv("TIDE_RELAY_NO_RECV_LIMIT"))
		ac.flags |= TIDE_AGENT_NO_RECV_LIMIT;
	r->fwd.connect_timeout_ms = ms(r->o.connect_timeout);
	r->fwd.flow_limit = 16 * r->o.block_size > (1 << 20) ? 16 * r->o.block_size : 1 << 20;
	ac.recv_max = r->fwd.flow_limit;
	/* Fairness (forward.c): each worker's queues may fill 3/4 of its share of the pool; the
	 * last quarter is the reserve for directions holding under two blocks. */
	r->fwd.budget = r->o.pool_max / r->o.threads / 4 * 3;
	r->fwd.small = 2 * r->o.block_size;
	if (r->o.upstream && resolve(r)) {
		fprintf(stderr, "tide-relay: cannot resolve '%s'\n", r->o.upstream);
		return EXIT_USAGE;
	}
	rc = tide_agent_create(r->pool, &ac, &r->agent);
	if (rc) {
		fprintf(stderr, "tide-relay: creating the agent: %s\n", strerror(-rc));
		return 1;
	}
	ops = forward_ops(&r->fwd);
	for (unsigned i = 0; i < r->o.nlisten; i++) {
		rc = tide_agent_listen(r->agent, r->o.listen[i], ops, NULL, &r->port[i]);
		if (rc == -EINVAL || rc == -ENOENT) {
			fprintf(stderr, "tide-relay: cannot resolve '%s'\n", r->o.listen[i]);
			return EXIT_USAGE;
		}
		if (rc) {
			fprintf(stderr, "tide-relay: listening on %s: %s\n", r->o.listen[i],
				strerror(-rc));
			return 1;
		}
	}
	return 0;
}

static int start(struct relay *r)
{
	int rc;

	if (r->o.stats) {
		rc = stats_server_start(r->o.stats, ms(r->o.stats_timeout), r->pool, r->agent,
					&r->srv);
		if (rc) {
			fprintf(stderr, "tide-relay: stats on %s: %s\n", r->o.stats,
				rc == -EINVAL ? "cannot resolve" : strerror(-rc));
			return rc == -EINVAL ? EXIT_USAGE : 1;
		}
	}
	rc = tide_agent_start(r->agent);
	if (rc) {
		fprintf(stderr, "tide-relay: starting the workers: %s%s\n", strerror(-rc),
			rc == -EPERM ? " (io_uring refused)" : "");
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? EXIT_NO_URING : 1;
	}
	return 0;
}

static void say_listening(const struct relay *r)
{
	const struct options *o = &r->o;
	struct tide_agent_stats as;
	char host[256];

	tide_agent_stats(r->agent, &as);
	for (unsigned i = 0; i < o->nlisten; i++)
		fprintf(stderr,
			"tide-relay: listening on %s:%u (%s%s, %u thread%s, block %zu, pool max "
			"%zu, recv bundles %s, incremental rings %s, max conns %u, idle timeout "
			"%gs, connect timeout %gs, drain timeout %gs)\n",
			host_of(o->listen[i], host, sizeof(host)), r->port[i],
			o->echo ? "echo" : "upstream ", o->echo ? "" : o->upstream, o->threads,
			o->threads == 1 ? "" : "s", o->block_size, o->pool_max,
			as.bundles ? "on" : "off", as.incremental ? "on" : "off", o->max_conns,
			o->idle_timeout, o->connect_timeout, o->drain_timeout);
	if (r->srv)
		fprintf(stderr, "tide-relay: stats on %s:%u\n",
			host_of(o->stats, host, sizeof(host)), stats_server_port(r->srv));
	fflush(stderr);
}

/* Drain on the first signal, end at once on a second; join the workers. */
static void run_until_signal(struct relay *r, const sigset_t *set)
{
	struct timespec tick = {0, 50 * 1000000L}, rest = {0, 200 * 1000000L};
	siginfo_t si;
	int sig;

	while ((sig = sigtimedwait(set, &si, &rest)) < 0)
		maybe_resolve(r); /* the main thread's only other work */
	fprintf(stderr, "tide-relay: %s: draining\n", strsignal(sig));
	tide_agent_stop(r->agent);
	while (tide_agent_running(r->agent)) {
		if (sigtimedwait(set, &si, &tick) > 0) {
			fprintf(stderr, "tide-relay: %s again: ending now\n",
				strsignal(si.si_signo));
			tide_agent_stop(r->agent);
		}
	}
	tide_agent_wait(r->agent);
}

/* Stop everything, check that every buffer came back: the exit status. */
static int finish(struct relay *r)
{
	struct tide_agent_stats as;
	struct tide_stats ps;

	stats_server_stop(r->srv);
	tide_agent_stats(r->agent, &as);
	tide_agent_destroy(r->agent);
	tide_pool_flush_cache(r->pool);
	tide_pool_stats(r->pool, &ps);
	fprintf(stderr,
		"tide-relay: shutdown: live_buffers=%zu live_bytes=%zu connections_total=%llu "
		"bytes_in=%llu bytes_out=%llu grows=%llu shrinks=%llu peak_live_bytes=%zu%s\n",
		ps.live_buffers, ps.live_bytes, (unsigned long long)as.conns_accepted,
		(unsigned long long)as.bytes_in, (unsigned long long)as.bytes_out,
		(unsigned long long)ps.grows, (unsigned long long)ps.shrinks, ps.peak_live_bytes,
		ps.live_buffers ? " (BUFFERS NOT RETURNED)" : "");
	tide_pool_destroy(r->pool);
	lists_free(r);
	return ps.live_buffers ? 1 : 0;
}

int main(int argc, char **argv)
{
	struct relay r = {0};
	char why[256];
	sigset_t set;
	int rc;

	rc = options_parse(argc, argv, &r.o);
	if (rc)
		return rc;
	raise_nofile();
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (tide_agent_probe(why, sizeof(why))) {
		fprintf(stderr, "tide-relay: %s\n", why);
		return EXIT_NO_URING;
	}
	rc = make_pool(&r);
	if (!rc)
		rc = make_agent(&r);
	if (!rc)
		rc = start(&r);
	if (rc) {
		stats_server_stop(r.srv);
		tide_agent_destroy(r.agent);
		tide_pool_destroy(r.pool);
		lists_free(&r);
		return rc;
	}
	say_listening(&r);
	run_until_signal(&r, &set);
	return finish(&r);
}
