/* SPDX-License-Identifier: MIT */
/*
 * tide-relay.c - a TCP relay (or echo server): a program on the public agent API.
 * Application side: it includes tide.h and tide/net.h only (through relay.h), and the
 * operator's features from tools/relay (ops.h).
 *
 * The program reads its options (command line and --config file, tools/relay/options.c;
 * --check stops there; the signals are blocked before anything else), starts the runtime (logs, the
 * upstream set and its health checks, per-IP counts; each port checked free), creates the
 * pool (TIDE_AUTO_GROW | TIDE_AUTO_SHRINK) and an agent whose accepted connections are
 * forwarded (forward.c), starts it and the optional stats endpoint, drops privileges
 * (--user), tells systemd it is ready, and then waits on the main thread: SIGHUP reloads
 * (the listeners a reload adds or removes go to the running agent: tide_agent_listen() and
 * tide_agent_listen_close(); unchanged ones are not touched), SIGINT/SIGTERM/SIGQUIT drain for
 * drain-timeout (a second one ends connections at once), SIGUSR1 reopens the access log. It then
 * checks that every buffer came back to the pool (live buffers 0), says so, and exits 0 only if it
 * did.
 *
 * Lines on stderr that scripts may rely on (after the timestamp and level):
 *   tide-relay: listening on HOST:PORT (...)           once per --listen; PORT is the real one
 *   tide-relay: stats on HOST:PORT                     with --stats
 *   tide-relay: shutdown: live_buffers=N live_bytes=N ...   at exit
 * Environment: TIDE_RELAY_NO_BUNDLE, TIDE_RELAY_NO_INCREMENTAL (any value) turn those kernel
 * features off, for tests and comparisons.
 * Exit status: 0 clean, 1 runtime failure or buffers not returned, 2 bad arguments,
 * 3 io_uring unavailable here.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "relay.h"

#define EXIT_USAGE    2
#define EXIT_NO_URING 3

struct relay {
	struct relay_config *cfg; /* as loaded; the runtime keeps the running copy */
	struct relay_runtime rt;
	struct forward_config fwd;
	const struct tide_conn_ops *ops; /* forward_ops(&fwd), taken once before the workers run */
	struct tide_pool *pool;
	struct tide_agent *agent;
	struct stats_server *srv;
	/* The agent's listeners: the start's first, in order; a reload adds before it removes. */
	struct listener {
		struct relay_endpoint ep; /* as configured (port 0: picked) */
		unsigned port;		  /* as bound */
		bool used;
	} lis[2 * RELAY_MAX_LISTEN];
	char stats_text[RELAY_HOST_MAX + 8];
	uint64_t last_resolve_ms;
	struct relay_accepts accepts;
};

static void raise_nofile(void)
{
	struct rlimit rl;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int make_pool(struct relay *r)
{
	struct tide_pool_config pc = {
		.block_size = r->cfg->block_size,
		.max_size = r->cfg->pool_max,
		.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK,
	};
	int rc = tide_pool_create(&pc, &r->pool);

	if (rc)
		relay_log(RELAY_LOG_ERROR, "tide-relay: creating the buffer pool: %s",
			  strerror(-rc));
	return rc ? 1 : 0;
}

/*
 * Split the pool (README, "Memory"): each worker owns S = pool-max / threads, in whole
 * blocks, and no more (its tide user's quota), so one worker's ring or queues never take
 * another's share. Of S, the provided-buffer ring may hold a quarter (its slots are sized
 * so: half the slots at most are filled), the queues half (the budget, for any direction)
 * and the last quarter is the reserve, one block at a time for directions whose queue is
 * empty (new connections, those that keep up; forward.c). One direction may queue at most
 * max(1 MiB, 16 blocks), and no more than an eighth of the budget, so a few slow readers
 * cannot take the whole budget of a small pool. options.c refuses an S under
 * RELAY_MIN_WORKER_BLOCKS (then the ring and the reserve could not hold what they must).
 */
static void size_memory(struct relay *r, size_t pool_max, unsigned threads, size_t bs,
			struct tide_agent_config *ac)
{
	size_t blocks = pool_max / threads / bs;
	unsigned entries = 16;

	while (entries < 512 && (size_t)entries <= blocks / 4)
		entries *= 2; /* the ring fills at most entries / 2 <= blocks / 4 */
	ac->ring_entries = entries;
	ac->ring_min = entries / 4 < 16 ? entries / 4 : 16;
	ac->worker_quota = blocks * bs;
	r->fwd.budget = blocks / 2 * bs;
	r->fwd.flow_limit = 16 * bs > (1 << 20) ? 16 * bs : 1 << 20;
	if (r->fwd.flow_limit > r->fwd.budget / 8) /* a small pool: one direction, an eighth */
		r->fwd.flow_limit = r->fwd.budget / 8;
	ac->recv_max = r->fwd.flow_limit;
	r->fwd.small = bs;
}

/* Listen on ep (at start, or added by a reload: the runtime checked the port). 0 or -errno,
 * logged. */
static int listener_add(const struct relay_endpoint *ep, void *arg)
{
	struct relay *r = arg;
	struct listener *l = NULL;
	char text[RELAY_HOST_MAX + 8];
	int rc;

	for (unsigned i = 0; i < 2 * RELAY_MAX_LISTEN && !l; i++)
		if (!r->lis[i].used)
			l = &r->lis[i];
	if (!l)
		return -ENOSPC; /* not reached: the runtime has at most two lists at once */
	relay_endpoint_text(ep, text, sizeof(text));
	rc = tide_agent_listen(r->agent, text, r->ops, NULL, &l->port);
	if (rc) {
		relay_log(RELAY_LOG_ERROR, "tide-relay: listening on %s: %s", text,
			  rc == -EINVAL || rc == -ENOENT ? "cannot resolve" : strerror(-rc));
		return rc;
	}
	l->ep = *ep;
	l->used = true;
	if (tide_agent_running(r->agent)) { /* added by a reload */
		struct relay_endpoint bound = {.port = (uint16_t)l->port};

		memcpy(bound.host, ep->host, sizeof(bound.host));
		relay_endpoint_text(&bound, text, sizeof(text));
		relay_log(RELAY_LOG_INFO, "tide-relay: listening on %s", text);
	}
	return 0;
}

/* A reload changed idle-timeout: the agent's one clock, for every connection. */
static void idle_timeout(unsigned ms, void *arg)
{
	struct relay *r = arg;

	tide_agent_set_idle_timeout(r->agent, ms);
}

/* Stop listening on ep (a reload removed it); its connections go on. */
static void listener_remove(const struct relay_endpoint *ep, void *arg)
{
	struct relay *r = arg;
	struct relay_endpoint bound;
	char text[RELAY_HOST_MAX + 8];
	int rc;

	for (unsigned i = 0; i < 2 * RELAY_MAX_LISTEN; i++) {
		struct listener *l = &r->lis[i];

		if (!l->used || l->ep.port != ep->port || strcmp(l->ep.host, ep->host))
			continue;
		bound = l->ep;
		bound.port = (uint16_t)l->port;
		relay_endpoint_text(&bound, text, sizeof(text));
		rc = tide_agent_listen_close(r->agent, text);
		if (rc)
			relay_log(RELAY_LOG_ERROR, "tide-relay: closing the listener %s: %s", text,
				  strerror(-rc));
		else
			relay_log(RELAY_LOG_INFO, "tide-relay: stopped listening on %s", text);
		l->used = false;
		return;
	}
}

/* The agent and its listeners: 0 or the exit status. */
static int make_agent(struct relay *r)
{
	const struct relay_config *c = r->cfg;
	struct tide_agent_config ac = {
		.threads = c->threads,
		.idle_timeout_ms = c->idle_timeout_ms,
		.drain_timeout_ms =
			UINT_MAX, /* the relay times the drain (run_until_signal) and
				     counts max-conns (forward.c): a reload changes both */
		.worker_stop = forward_worker_stop,
		.recv_batch = c->recv_batch,
		/* a client is accepted only with room for its upstream socket (and its two
		 * pipes with --splice): else it waits in the listen queue, not reset */
		.conn_fds = c->echo ? 0 : 1 + (c->splice_pipe ? 4 : 0),
	};
	int rc;

	/* For tests and benchmarks: turn newer kernel features off without a CLI change. */
	if (getenv("TIDE_RELAY_NO_BUNDLE"))
		ac.flags |= TIDE_AGENT_NO_BUNDLE;
	if (getenv("TIDE_RELAY_NO_INCREMENTAL"))
		ac.flags |= TIDE_AGENT_NO_INCREMENTAL;
	if (getenv("TIDE_RELAY_NO_RECV_LIMIT"))
		ac.flags |= TIDE_AGENT_NO_RECV_LIMIT;
	r->fwd.rt = &r->rt;
	r->fwd.drain_idle_ms = c->drain_idle_ms;
	r->fwd.splice_pipe = c->splice_pipe;
	size_memory(r, c->pool_max, c->threads, c->block_size, &ac);
	rc = tide_agent_create(r->pool, &ac, &r->agent);
	if (rc) {
		relay_log(RELAY_LOG_ERROR, "tide-relay: creating the agent: %s", strerror(-rc));
		return 1;
	}
	r->fwd.agent = r->agent;
	r->ops = forward_ops(&r->fwd);
	for (unsigned i = 0; i < c->n_listen; i++) {
		rc = listener_add(&c->listen[i], r);
		if (rc)
			return rc == -EINVAL || rc == -ENOENT ? EXIT_USAGE : 1;
	}
	return 0;
}

static int start(struct relay *r)
{
	int rc;

	if (r->cfg->has_stats) {
		relay_endpoint_text(&r->cfg->stats, r->stats_text, sizeof(r->stats_text));
		stats_set_runtime(&r->rt);
		rc = stats_server_start(r->stats_text, r->cfg->stats_timeout_ms, r->pool, r->agent,
					&r->srv);
		if (rc) {
			relay_log(RELAY_LOG_ERROR, "tide-relay: stats on %s: %s", r->stats_text,
				  rc == -EINVAL ? "cannot resolve" : strerror(-rc));
			return rc == -EINVAL ? EXIT_USAGE : 1;
		}
	}
	rc = tide_agent_start(r->agent);
	if (rc) {
		relay_log(RELAY_LOG_ERROR, "tide-relay: starting the workers: %s%s", strerror(-rc),
			  rc == -EPERM ? " (io_uring refused)" : "");
		return rc == -EPERM || rc == -ENOSYS || rc == -EOPNOTSUPP ? EXIT_NO_URING : 1;
	}
	if (r->cfg->user[0]) {
		char why[256];

		rc = relay_privdrop(r->cfg->user, why, sizeof(why));
		if (rc) {
			relay_log(RELAY_LOG_ERROR, "tide-relay: --user: %s", why);
			return 1;
		}
	} else if (geteuid() == 0) {
		relay_log(RELAY_LOG_WARN, "tide-relay: running as root; --user NAME drops "
					  "privileges after binding");
	}
	return 0;
}

static void say_listening(const struct relay *r)
{
	const struct relay_config *c = r->cfg;
	struct tide_agent_stats as;
	char host[RELAY_HOST_MAX + 2];

	tide_agent_stats(r->agent, &as);
	for (unsigned i = 0; i < c->n_listen; i++) {
		snprintf(host, sizeof(host), strchr(c->listen[i].host, ':') ? "[%s]" : "%s",
			 c->listen[i].host);
		relay_log(RELAY_LOG_INFO,
			  "tide-relay: listening on %s:%u (%s, %u upstream%s, balance %s, %u "
			  "thread%s, block %zu, pool max %zu, recv bundles %s, incremental rings "
			  "%s, max conns %u, idle timeout %gs, connect timeout %gs, drain timeout "
			  "%gs)",
			  host, r->lis[i].port, c->echo ? "echo" : "relay", c->n_upstream,
			  c->n_upstream == 1 ? "" : "s",
			  c->balance == RELAY_BALANCE_ROUNDROBIN  ? "roundrobin"
			  : c->balance == RELAY_BALANCE_LEASTCONN ? "leastconn"
								  : "source",
			  c->threads, c->threads == 1 ? "" : "s", c->block_size, c->pool_max,
			  as.bundles ? "on" : "off", as.incremental ? "on" : "off", c->max_conns,
			  c->idle_timeout_ms / 1000.0, c->connect_timeout_ms / 1000.0,
			  c->drain_timeout_ms / 1000.0);
	}
	if (r->srv) {
		snprintf(host, sizeof(host), strchr(c->stats.host, ':') ? "[%s]" : "%s",
			 c->stats.host);
		relay_log(RELAY_LOG_INFO, "tide-relay: stats on %s:%u", host,
			  stats_server_port(r->srv));
	}
	relay_notify_ready();
	relay_notify_status("%u listener%s, %u upstream%s", c->n_listen,
			    c->n_listen == 1 ? "" : "s", c->n_upstream,
			    c->n_upstream == 1 ? "" : "s");
}

/* The main thread's tick: failing accepts told once per burst (accepts.c); every server
 * failed a connect: resolve the names again, at most once a second. */
static void main_tick(void *arg)
{
	struct relay *r = arg;
	struct tide_agent_stats as;
	uint64_t now = relay_now_ms();

	tide_agent_stats(r->agent, &as);
	relay_accepts_watch(&r->accepts, as.accept_errors, as.accept_error);

	if (!atomic_load_explicit(&r->fwd.resolve, memory_order_relaxed) ||
	    now - r->last_resolve_ms < 1000)
		return;
	atomic_store_explicit(&r->fwd.resolve, false, memory_order_relaxed);
	r->last_resolve_ms = now;
	relay_runtime_resolve(&r->rt);
}

/*
 * SIGHUP reloads; the first SIGINT/SIGTERM/SIGQUIT drains, a second ends at once. The drain
 * deadline is the relay's own (the agent is given none): it is the running configuration's
 * drain-timeout at the moment of the signal, so a reload changes it, and 0 resets what is
 * left at once.
 */
static void run_until_signal(struct relay *r, const sigset_t *set, int argc, char **argv)
{
	struct timespec tick = {0, 50 * 1000000L};
	uint64_t deadline;
	bool cut;
	siginfo_t si;

	relay_signals_wait(&r->rt, set, argc, argv, main_tick, r);
	deadline = relay_now_ms() + r->rt.cfg.drain_timeout_ms;
	tide_agent_stop(r->agent);
	cut = !r->rt.cfg.drain_timeout_ms;
	if (cut)
		tide_agent_stop(r->agent); /* drain-timeout 0: what is left is reset now */
	while (tide_agent_running(r->agent)) {
		int sig = sigtimedwait(set, &si, &tick);

		if (sig == SIGUSR1 || sig == SIGHUP) {
			if (relay_log_reopen())
				relay_log(RELAY_LOG_ERROR, "reopening the access log failed");
		} else if (sig > 0 && sig != SIGUSR2 && sig != SIGALRM && !cut) {
			relay_log(RELAY_LOG_WARN, "tide-relay: %s again: ending now",
				  strsignal(si.si_signo));
			tide_agent_stop(r->agent);
			cut = true;
		}
		if (!cut && relay_now_ms() >= deadline) {
			relay_log(RELAY_LOG_INFO, "tide-relay: drain deadline: resetting the "
						  "connections left");
			tide_agent_stop(r->agent);
			cut = true;
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
	relay_runtime_attach(&r->rt, NULL); /* the agent's listeners go with it */
	tide_agent_destroy(r->agent);
	tide_pool_flush_cache(r->pool);
	tide_pool_stats(r->pool, &ps);
	relay_log(ps.live_buffers ? RELAY_LOG_ERROR : RELAY_LOG_INFO,
		  "tide-relay: shutdown: live_buffers=%zu live_bytes=%zu connections_total=%llu "
		  "bytes_in=%llu bytes_out=%llu grows=%llu shrinks=%llu peak_live_bytes=%zu%s",
		  ps.live_buffers, ps.live_bytes, (unsigned long long)as.conns_accepted,
		  (unsigned long long)as.bytes_in, (unsigned long long)as.bytes_out,
		  (unsigned long long)ps.grows, (unsigned long long)ps.shrinks, ps.peak_live_bytes,
		  ps.live_buffers ? " (BUFFERS NOT RETURNED)" : "");
	relay_runtime_stop(&r->rt);
	relay_log_opener_stop();
	tide_pool_destroy(r->pool);
	return ps.live_buffers ? 1 : 0;
}

/* --user with an access-log file, started as root: a process that stays root reopens the
 * file after logrotate (log_opener.c). Before any thread. */
static void start_log_opener(const struct relay_config *c)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int rc;

	if (!c->user[0] || !c->access_log || !c->access_log_path[0] || geteuid() != 0 ||
	    getpwnam_r(c->user, &pw, buf, sizeof(buf), &res) || !res)
		return;
	rc = relay_log_opener_start(c->access_log_path, pw.pw_uid, pw.pw_gid);
	if (rc)
		fprintf(stderr,
			"tide-relay: the access log's reopener: %s (after logrotate, the "
			"file must be writable by %s)\n",
			strerror(-rc), c->user);
}

/* Options: 0 to go on, or the exit status (after --help, --version, --check, problems). */
static int load(int argc, char **argv, struct relay_config *c)
{
	unsigned problems = relay_config_load(argc, argv, c, stderr);

	if (!problems) /* what a start would find short of binding: --check says it too */
		problems = relay_config_check_system(c, stderr);

	if (c->help) {
		relay_options_usage(stdout);
		exit(0);
	}
	if (c->version) {
		printf("tide-relay %s\n", TIDE_VERSION_STRING);
		exit(0);
	}
	if (c->check)
		exit(relay_config_check_exit(problems, c, problems ? stderr : stdout));
	if (problems) {
		fprintf(stderr, "tide-relay: try 'tide-relay --help'\n");
		return EXIT_USAGE;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static struct relay_config cfg; /* large: not on the stack */
	static struct relay relay;
	struct relay *r = &relay;
	char why[256];
	sigset_t set;
	int rc;

	relay_signals_block(&set); /* first: a signal while starting waits for the loop */
	r->cfg = &cfg;
	rc = load(argc, argv, r->cfg);
	if (rc)
		return rc;
	raise_nofile();
	start_log_opener(r->cfg);
	if (tide_agent_probe(why, sizeof(why))) {
		fprintf(stderr, "tide-relay: %s\n", why);
		return EXIT_NO_URING;
	}
	rc = relay_runtime_start(&r->rt, r->cfg, NULL);
	if (rc)
		return rc == -ENOENT ? EXIT_USAGE : 1;
	rc = make_pool(r);
	if (!rc)
		rc = make_agent(r);
	if (!rc)
		rc = start(r);
	if (rc) {
		stats_server_stop(r->srv);
		tide_agent_destroy(r->agent);
		relay_runtime_stop(&r->rt);
		tide_pool_destroy(r->pool);
		return rc;
	}
	say_listening(r);
	relay_runtime_attach(&r->rt, &(struct relay_runtime_ops){.listener_add = listener_add,
								 .listener_remove = listener_remove,
								 .idle_timeout = idle_timeout,
								 .arg = r});
	run_until_signal(r, &set, argc, argv);
	return finish(r);
}
