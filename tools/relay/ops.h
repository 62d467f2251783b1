/* SPDX-License-Identifier: MIT */
/*
 * ops.h - the relay's operator features, as a static library (tide-relay-ops) the program
 * links: options and the config file, logs, the PROXY protocol, balancing and health,
 * systemd notify, privilege drop, per-IP limits, listening sockets, process metrics.
 *
 * None of it touches the agent: each part takes addresses, file descriptors and counters,
 * so the relay calls it from its accept, connect and close paths and from SIGHUP (see the
 * design note at the top of each file). Sections follow the file that defines them.
 * Actions return 0 or -errno and never set errno for the caller to read.
 */
#ifndef TIDE_RELAY_OPS_H
#define TIDE_RELAY_OPS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Listeners in a configuration (the agent takes 32 at once: a reload holds two lists). */
#define RELAY_MAX_LISTEN 8
/* Blocks each worker needs at least (pool-max / threads): a ring of 8, a budget of 16 and a
 * reserve of 8 (tide-relay.c, size_memory). */
#define RELAY_MIN_WORKER_BLOCKS 32
#define RELAY_MAX_UPSTREAM	256
#define RELAY_HOST_MAX		256
#define RELAY_ADDRS_MAX		16 /* addresses kept per name */

// addr.c --------------------------------------------------------------------------------

/* "HOST:PORT" as given: HOST a name, an IPv4 address or a bracketed IPv6 address. */
struct relay_endpoint {
	char host[RELAY_HOST_MAX]; /* RELAY_EVERY for every address (":80", "*:80") */
	uint16_t port;
};

/* The host of every address: IPv6 and IPv4 on one dual-stack socket (tide_agent_listen(3)). */
#define RELAY_EVERY "*"
bool relay_endpoint_every(const struct relay_endpoint *ep);
/* ep as an operator writes it, for messages: "[::1]:80" (IPv6 in brackets), "host:80", "*:80"
 * (every address). Into buf (RELAY_ENDPOINT_TEXT bytes suffice), returns buf. */
#define RELAY_ENDPOINT_TEXT (RELAY_HOST_MAX + 8)
const char *relay_endpoint_text(const struct relay_endpoint *ep, char *buf, size_t n);

/* Split "HOST:PORT" / "[V6]:PORT"; port_min is 0 for listeners, 1 for upstreams. 0 or -EINVAL
 * with a reason in err. */
int relay_endpoint_parse(const char *text, unsigned port_min, struct relay_endpoint *ep, char *err,
			 size_t errlen);
/* Why ep does not resolve, in the resolver's words (gai_strerror: "Name or service not
 * known", "Temporary failure in name resolution"); into why, returns why. */
const char *relay_endpoint_resolve_why(const struct relay_endpoint *ep, bool passive, char *why,
				       size_t n);
/* Resolve to the first address (AI_PASSIVE for listeners). 0, -ENOENT, -EINVAL. */
int relay_endpoint_resolve(const struct relay_endpoint *ep, bool passive,
			   struct sockaddr_storage *sa, socklen_t *len);
/* Resolve to every address, in the resolver's order (duplicates dropped), at most max;
 * *n gets the count. 0, -ENOENT (no such name), -EAGAIN (the resolver failed for now), -EINVAL. */
int relay_endpoint_resolve_all(const struct relay_endpoint *ep, bool passive,
			       struct sockaddr_storage *sa, socklen_t *len, unsigned max,
			       unsigned *n);
/* "1.2.3.4:80" or "[::1]:80"; writes at most n bytes, NUL-terminated. Returns buf. */
char *relay_addr_format(const struct sockaddr *sa, char *buf, size_t n);
/* Whether two socket addresses are the same address and port (v4-mapped equal v4). */
bool relay_addr_equal(const struct sockaddr *a, const struct sockaddr *b);
/* The 4 or 16 address bytes of sa, v4-mapped IPv6 folded to IPv4. Length, 0 if not IP. */
size_t relay_addr_ip(const struct sockaddr *sa, uint8_t out[16]);

// options.c -----------------------------------------------------------------------------

enum relay_balance {
	RELAY_BALANCE_ROUNDROBIN,
	RELAY_BALANCE_LEASTCONN,
	RELAY_BALANCE_SOURCE
};
enum relay_log_level {
	RELAY_LOG_ERROR,
	RELAY_LOG_WARN,
	RELAY_LOG_INFO,
	RELAY_LOG_DEBUG
};

struct relay_upstream_spec {
	struct relay_endpoint ep;
	unsigned weight; /* 1..256, default 1 */
};

/* Everything the command line and the config file say. Plain data: copy, compare, swap. */
struct relay_config {
	struct relay_endpoint listen[RELAY_MAX_LISTEN];
	unsigned n_listen;
	struct relay_upstream_spec upstream[RELAY_MAX_UPSTREAM];
	unsigned n_upstream;
	bool echo;
	enum relay_balance balance;
	unsigned connect_timeout_ms; /* default 5000; 0: the kernel's own */
	unsigned drain_timeout_ms;   /* default 5000 */
	unsigned drain_idle_ms;	     /* default 200; 0: finished pairs wait for the deadline */
	unsigned health_interval_ms; /* 0: no active checks (default) */
	unsigned idle_timeout_ms;    /* default 300000; 0: never */
	unsigned send_proxy;	     /* 0 off, 1 or 2: PROXY protocol version */
	bool accept_proxy;
	char config_path[4096];
	bool check;
	enum relay_log_level log_level; /* default info */
	bool syslog;
	bool access_log;	    /* --access-log given */
	char access_log_path[4096]; /* "" : to the log (stderr or syslog) */
	char user[64];
	unsigned max_conns_per_ip; /* 0: no limit */
	bool keepalive;
	bool reuse_port;
	unsigned threads;
	unsigned max_conns;
	size_t pool_max;
	size_t block_size;
	size_t splice_pipe; /* --splice: pipe bytes of a bulk direction; 0: off */
	size_t recv_batch;  /* --recv-batch: receive mark of a bulk direction; 0: off */
	bool has_stats;
	struct relay_endpoint stats;
	unsigned stats_timeout_ms; /* default 5000 */
	bool help, version;	   /* --help / --version: print and exit 0 */
	/* Where each value came from, for messages: its line in config_path, 0 for the command
	 * line or the default. */
	unsigned listen_line[RELAY_MAX_LISTEN];
	unsigned upstream_line[RELAY_MAX_UPSTREAM];
	unsigned option_line[64]; /* by row of relay_options[] */
};

/* One option of the relay: its long name, argument, and the help text (--help is made from
 * this table, and the config file takes the same names). */
struct relay_option {
	const char *name;
	const char *arg;   /* the metavariable, or NULL for a flag */
	bool arg_optional; /* --access-log [FILE] */
	bool repeatable;   /* --listen, --upstream: each use adds one */
	bool cli_only;	   /* --config, --check, --help, --version: not in a file */
	bool restart_only; /* a reload keeps the running value */
	const char *dflt;
	const char *help;
	int (*set)(struct relay_config *c, const char *val, char *err, size_t errlen);
};

extern const struct relay_option relay_options[];
extern const size_t relay_n_options;

/* Defaults: no listener, no upstream, roundrobin, info, 1 thread, 1 GiB pool, 64 KiB blocks. */
void relay_config_init(struct relay_config *c);
/*
 * Build a configuration from argv (and the --config file it names): defaults, then the file,
 * then the command line over it (a list given on the command line replaces the file's).
 * Every problem is written to diag as "WHERE: message" (WHERE: "FILE:LINE" or "command
 * line") and counted; parsing goes on so that one run shows them all. With check_only the
 * final checks (a listener, an upstream or --echo, ...) still run.
 * Return: the number of problems (0: c is usable).
 */
unsigned relay_config_load(int argc, char *const argv[], struct relay_config *c, FILE *diag);
/* Read one config file into c (the same setters). Problems as above. */
unsigned relay_config_read_file(const char *path, struct relay_config *c, FILE *diag);
/* Cross-option checks, after everything is read. Problems as above. */
unsigned relay_config_validate(const struct relay_config *c, FILE *diag);
/*
 * What a start checks short of binding, for --check and the start itself: every listener,
 * upstream and stats name resolves (the resolver's reason otherwise), no two listeners are
 * the same address and port after resolution (127.0.0.1:P and localhost:P) or overlap (a
 * wildcard and an address on one port), and the access-log file can be opened for
 * appending (or created in its directory). Problems as above, with FILE:LINE.
 */
unsigned relay_config_check_system(const struct relay_config *c, FILE *diag);
/*
 * Reload: build a fresh configuration from the same argv into fresh. If it has problems,
 * they go to diag and *fresh is not to be used (return > 0); the caller keeps cur. Options a
 * reload cannot change (threads, pool, block size, user, stats, reuse-port) are kept from
 * cur and each kept difference is reported as one line in diag (not counted as a problem).
 */
unsigned relay_config_reload(const struct relay_config *cur, int argc, char *const argv[],
			     struct relay_config *fresh, FILE *diag);
/* --help text made from the option table, man-page style. */
void relay_options_usage(FILE *f);
/* What --check prints and returns: 0 when c loaded without problems, 2 otherwise. */
int relay_config_check_exit(unsigned problems, const struct relay_config *c, FILE *out);

// log.c ---------------------------------------------------------------------------------

struct relay_log_config {
	enum relay_log_level level;
	bool syslog; /* syslog(3), facility daemon, ident tide-relay; when /dev/log takes no
			connection at open: a warning, and lines to fd instead */
	int fd;	     /* where lines go without syslog; -1: stderr */
	bool access; /* write access lines at all */
	const char *access_path;    /* NULL or "": with the event log; else appended to */
	unsigned burst;		    /* rate limit: lines per key per interval (default 5) */
	unsigned interval_ms;	    /* default 1000 */
	uint64_t (*clock_ms)(void); /* monotonic ms; NULL: CLOCK_MONOTONIC (tests inject) */
};

/* How a connection ended, in the access log. Names are stable: clean reset timeout drain
 * refused (a limit turned it away) unreachable (no upstream took it) error resource (the
 * relay's own descriptors, memory or local ports ran out). */
enum relay_end {
	RELAY_END_CLEAN,
	RELAY_END_RESET,
	RELAY_END_TIMEOUT,
	RELAY_END_DRAIN,
	RELAY_END_REFUSED,
	RELAY_END_UNREACHABLE,
	RELAY_END_ERROR,
	RELAY_END_RESOURCE, /* the relay's own resources ran out (descriptors, memory, local
			       ports): haproxy's 'R'; not counted against any server */
};

struct relay_access {
	const struct sockaddr *client;	 /* the original client (after --accept-proxy) */
	const struct sockaddr *listener; /* the address it came in on; NULL: "-" */
	const struct sockaddr *upstream; /* NULL: "-" (none reached) */
	uint64_t bytes_up;		 /* client -> upstream */
	uint64_t bytes_down;		 /* upstream -> client */
	uint64_t duration_us;
	enum relay_end end;
};

/* Set up (or, on reload, switch) where lines go. 0 or -errno (opening the access file). */
int relay_log_open(const struct relay_log_config *cfg);
void relay_log_close(void);
/* Reopen the access log file (after logrotate; SIGHUP). 0 or -errno (old file kept). */
int relay_log_reopen(void);
/* Lines dropped because their destination could not take them without waiting (a stalled
 * syslog daemon, a full pipe); logging never blocks. Any thread. */
unsigned long long relay_log_dropped(void);
/* Whether a line at this level would be written (skip building expensive arguments). */
bool relay_log_enabled(enum relay_log_level level);
/* One line: "2026-01-02T03:04:05.678Z LEVEL message". Thread-safe. */
void relay_log(enum relay_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* As relay_log, but at most `burst` lines per key per interval; the first line after a
 * suppressed stretch is preceded by "suppressed K lines: KEY". Returns whether it logged. */
bool relay_log_limited(enum relay_log_level level, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Report suppressed counts of finished intervals now (call from a timer). */
void relay_log_flush_suppressed(void);
/* One access line (format in log.c). Thread-safe. */
void relay_log_access(const struct relay_access *a);
const char *relay_end_name(enum relay_end end);
const char *relay_log_level_name(enum relay_log_level level);
/* "2026-01-02T03:04:05.678Z" for a CLOCK_REALTIME time in ms; buf at least 25 bytes. */
void relay_log_timestamp(int64_t realtime_ms, char *buf, size_t n);

// log_opener.c --------------------------------------------------------------------------

/* Fork (single-threaded, as root, before --user) the process that reopens path for the
 * relay after the switch, owned by uid:gid. 0 or -errno. */
int relay_log_opener_start(const char *path, uid_t uid, gid_t gid);
/* A fresh descriptor of path from it: 0 and *fd, -ENOENT (no opener, or another path: open
 * it yourself), -EPIPE (it is gone), or the open's -errno. Main thread. */
int relay_log_opener_open(const char *path, int *fd);
void relay_log_opener_stop(void); /* the opener exits when it sees the socket close */

// proxy_protocol.c ----------------------------------------------------------------------

#define RELAY_PP_V1_MAX 107  /* the spec's longest v1 line, CRLF included */
#define RELAY_PP_V2_MAX 4096 /* the longest v2 header we accept (16 + addresses + TLVs) */

/*
 * Encode a PROXY header for the connection src -> dst (what the upstream should see as the
 * client and as the address it connected to). version 1 (text) or 2 (binary). NULL or
 * non-IP addresses give UNKNOWN (v1) / UNSPEC (v2); local (v2 only) gives the LOCAL command.
 * Mixed IPv4/IPv6 pairs are sent as TCP6 with the IPv4 side v4-mapped.
 * Return: bytes written, -EINVAL (bad version), -ENOSPC (out too small; 108 and 52 suffice).
 */
ssize_t relay_pp_encode(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
			bool local, void *out, size_t cap);

struct relay_pp_result {
	unsigned version; /* 1 or 2 */
	bool local;	  /* v2 LOCAL: use the connection's own addresses */
	bool known;	  /* src and dst hold addresses (TCP4/TCP6) */
	struct sockaddr_storage src, dst;
	size_t header_len; /* bytes of the header; what follows is payload */
};

/* Incremental parser state: init once per connection, feed what arrives. */
struct relay_pp_parser {
	uint8_t buf[256]; /* the header so far, up to the addresses (TLVs are skipped) */
	size_t have;	  /* bytes seen */
	size_t need;	  /* v2: total header length once known, else 0 */
	char err[128];
};

void relay_pp_parser_init(struct relay_pp_parser *p);
/*
 * Feed len bytes. *used is set to how many of them belong to the header.
 * Return: 1 the header is complete (*res filled; data[*used..] is payload), 0 more bytes
 * needed (all used), -EPROTO not a PROXY header or a malformed one (p->err says why; close
 * the connection), -EMSGSIZE longer than the limits above.
 */
int relay_pp_parse(struct relay_pp_parser *p, const void *data, size_t len, size_t *used,
		   struct relay_pp_result *res);

// balance.c -----------------------------------------------------------------------------

struct relay_balancer;

/* One upstream's counters, for /stats and /metrics (a snapshot). */
struct relay_upstream_stats {
	char name[RELAY_HOST_MAX + 8];
	unsigned weight;
	bool up;
	unsigned active;	   /* connections now */
	uint64_t connects;	   /* connections established */
	uint64_t connect_failures; /* refused, timed out, unreachable */
	uint64_t health_failures;  /* active checks that failed */
	uint64_t downs;		   /* times it was taken out */
	uint64_t bytes_up, bytes_down;
	unsigned consecutive_failures;
};

struct relay_balancer_config {
	enum relay_balance policy;
	unsigned fail_threshold; /* consecutive failures that take a server out (default 3) */
	unsigned down_ms;	 /* passive only: how long it stays out (default 10000) */
	bool active_checks;	 /* out until a check succeeds instead of for down_ms */
	/* Told of every state change (outside the balancer's lock); may be NULL. */
	void (*on_change)(const char *name, bool up, const char *why, void *arg);
	void *arg;
};

/* A set of upstreams with its policy; n addresses with weights (NULL: all 1). -EINVAL, -ENOMEM */
int relay_balancer_create(const struct relay_balancer_config *cfg,
			  const struct sockaddr_storage *addrs, const socklen_t *lens,
			  const char *const *names, const unsigned *weights, unsigned n,
			  struct relay_balancer **out);
/* Take over health state and counters of same-named servers from old (on reload). */
void relay_balancer_inherit(struct relay_balancer *b, const struct relay_balancer *old);
/* References: a connection holds one from pick to close, so a reload can swap sets. */
void relay_balancer_get(struct relay_balancer *b);
void relay_balancer_put(struct relay_balancer *b); /* the last put frees */
unsigned relay_balancer_count(const struct relay_balancer *b);
const struct sockaddr *relay_balancer_addr(const struct relay_balancer *b, unsigned i,
					   socklen_t *len);
const char *relay_balancer_name(const struct relay_balancer *b, unsigned i);
/* Give server i another address of its name (before use). 0, -EINVAL (over RELAY_ADDRS_MAX),
 * -ENOMEM. */
int relay_balancer_add_address(struct relay_balancer *b, unsigned i, const struct sockaddr *sa,
			       socklen_t len);
/* Server i's addresses, first one first, at most max; returns how many. */
unsigned relay_balancer_addrs(const struct relay_balancer *b, unsigned i,
			      struct sockaddr_storage *addrs, socklen_t *lens, unsigned max);
struct tide_addrs;
/* The same, as tide_conn_connect() takes them: kept by b (valid while a reference to b is
 * held), made at the first call; NULL when out of memory. Call after the last
 * relay_balancer_add_address(). */
const struct tide_addrs *relay_balancer_connect_addrs(struct relay_balancer *b, unsigned i);
/*
 * The order to try servers in for one client: order[0] by the policy, then the next servers
 * after it (in list order, skipping those that are out); when every server is out, all of
 * them in order, so a connection still gets a chance. Returns how many were written.
 */
unsigned relay_balancer_pick(struct relay_balancer *b, const struct sockaddr *client,
			     uint64_t now_ms, unsigned *order, unsigned max);
/*
 * The same order one server at a time, without a list per connection (the connect path):
 * relay_balancer_first() gives the first choice (-1: b has no server) and sets *all when
 * every server is out; relay_balancer_next() then gives the server at position *k (0 first)
 * or the next after it, advancing *k past it, skipping those that are out now unless all;
 * -1 when none is left. A server that went out since the first call is skipped.
 */
int relay_balancer_first(struct relay_balancer *b, const struct sockaddr *client, uint64_t now_ms,
			 bool *all);
int relay_balancer_next(struct relay_balancer *b, unsigned first, bool all, unsigned *k,
			uint64_t now_ms);
/* The connect path reports on server i: started (counts as active for leastconn), then
 * exactly one of ok / failed; a connection that was ok ends with closed. */
void relay_balancer_connect_start(struct relay_balancer *b, unsigned i);
void relay_balancer_connect_ok(struct relay_balancer *b, unsigned i, uint64_t now_ms);
void relay_balancer_connect_failed(struct relay_balancer *b, unsigned i, int err, uint64_t now_ms);
void relay_balancer_closed(struct relay_balancer *b, unsigned i, uint64_t bytes_up,
			   uint64_t bytes_down);
/* An active check's result (health.c). */
void relay_balancer_health_result(struct relay_balancer *b, unsigned i, int err, uint64_t now_ms);
bool relay_balancer_is_up(struct relay_balancer *b, unsigned i, uint64_t now_ms);
void relay_balancer_stats(struct relay_balancer *b, unsigned i, uint64_t now_ms,
			  struct relay_upstream_stats *st);
/* The per-upstream block of /metrics (Prometheus text) and of /stats (a JSON array). */
void relay_balancer_write_prometheus(FILE *f, struct relay_balancer *b, uint64_t now_ms);
void relay_balancer_write_json(FILE *f, struct relay_balancer *b, uint64_t now_ms);
/* Whether a connect's -errno is a shortage of this process or host (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM, EADDRNOTAVAIL: no ephemeral port), not a fault of the server: such a
 * failure is logged as the local cause and never counted against a server. */
bool relay_err_is_local(int err);
/* CLOCK_MONOTONIC in ms: the now_ms the functions above take. */
uint64_t relay_now_ms(void);
/* CLOCK_MONOTONIC in microseconds (the access log's duration). */
uint64_t relay_now_us(void);

// health.c ------------------------------------------------------------------------------

struct relay_health;

/* One TCP connect to sa, bounded by timeout_ms. 0, or -errno (-ETIMEDOUT, -ECONNREFUSED..). */
int relay_health_probe(const struct sockaddr *sa, socklen_t len, unsigned timeout_ms);
/* Probe every server of b once and report each result to it. */
void relay_health_check_all(struct relay_balancer *b, unsigned timeout_ms);
/* A thread that runs relay_health_check_all every interval_ms until stopped. -errno. */
int relay_health_start(struct relay_balancer *b, unsigned interval_ms, unsigned timeout_ms,
		       struct relay_health **out);
void relay_health_stop(struct relay_health *h); /* joins; NULL is a no-op */

// accepts.c -----------------------------------------------------------------------------

/* Accepts failing for want of descriptors or memory, as the relay's main thread saw them. */
struct relay_accepts {
	uint64_t seen;	      /* the agent's accept_errors at the last tick */
	uint64_t burst_start; /* ... when the burst began */
	unsigned quiet;	      /* ticks since the last failure, in a burst */
	bool burst;
};

/* Feed tide_agent_stats()'s accept_errors and accept_error at each tick: logs the start of a
 * burst (the cause, what to raise) and its end (how many failed), nothing between. */
void relay_accepts_watch(struct relay_accepts *w, uint64_t errors, int last_error);

// notify.c ------------------------------------------------------------------------------

/* The service manager's notify protocol (sd_notify(3)); each is 0 when not run by systemd.
 * Return: 0 sent or nothing to send to, -errno from sending, -ENOSYS when NOTIFY_SOCKET is set
 * but this build has no libsystemd. */
int relay_notify_ready(void);
int relay_notify_reloading(void); /* RELOADING=1 with MONOTONIC_USEC; READY=1 ends it */
int relay_notify_stopping(void);
int relay_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* READY=1 and a new STATUS= in one message (the end of a reload). */
int relay_notify_ready_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool relay_notify_available(void); /* built with libsystemd */

// privdrop.c ----------------------------------------------------------------------------

/*
 * Become user (its uid, primary gid and supplementary groups) for good; call after binding.
 * Refuses to carry on as root: after the switch, regaining uid 0 must fail.
 * Return: 0, -ENOENT (no such user), -EPERM (not root and not already that user, or the
 * switch did not hold), -errno of setgroups/setgid/setuid. err says which.
 */
int relay_privdrop(const char *user, char *err, size_t errlen);

// peer_limit.c --------------------------------------------------------------------------

struct relay_peer_limit;

/* Connections per client IP, at most max each (0: no limit, every acquire succeeds). */
int relay_peer_limit_create(unsigned max, struct relay_peer_limit **out);
void relay_peer_limit_destroy(struct relay_peer_limit *pl);
void relay_peer_limit_set_max(struct relay_peer_limit *pl, unsigned max); /* reload */
/* Count one more connection from sa's IP; false (nothing counted) when at the limit. */
bool relay_peer_limit_acquire(struct relay_peer_limit *pl, const struct sockaddr *sa);
/* One connection from sa's IP ended (each successful acquire gets exactly one release). */
void relay_peer_limit_release(struct relay_peer_limit *pl, const struct sockaddr *sa);
unsigned relay_peer_limit_count(struct relay_peer_limit *pl, const struct sockaddr *sa);
size_t relay_peer_limit_ips(struct relay_peer_limit *pl); /* distinct IPs with connections */

// sockopt.c -----------------------------------------------------------------------------

struct relay_listen_opts {
	bool reuse_port; /* SO_REUSEPORT: share the port with other sockets that also set it */
	int backlog;	 /* 0: SOMAXCONN */
};

/* A non-blocking, close-on-exec listening socket on sa. SO_REUSEADDR always (restart over
 * TIME_WAIT), SO_REUSEPORT only when asked, IPV6_V6ONLY on IPv6 but a v4-mapped address.
 * Return: 0 and *fd, or -EADDRINUSE (taken; without reuse_port always), -EACCES, -errno. */
int relay_listen_open(const struct sockaddr *sa, socklen_t len, const struct relay_listen_opts *o,
		      int *fd);
/* Whether sa could be bound without SO_REUSEPORT now: a bind, closed at once; an IPv6 sa
 * IPV6_V6ONLY unless every (the dual-stack socket of every address, which IPv4 holders of
 * the port also refuse) or a v4-mapped address (which binds only without it). Return: 0 free,
 * -EADDRINUSE taken (also by sockets that set SO_REUSEPORT), -errno. */
int relay_port_probe(const struct sockaddr *sa, socklen_t len, bool every);

// process_metrics.c ---------------------------------------------------------------------

/* tide_build_info{version=...} 1 and the process_* metrics of the Prometheus client
 * conventions (cpu, resident and virtual memory, fds, start time), from /proc/self. */
void relay_write_build_info(FILE *f, const char *version);
int relay_write_process_metrics(FILE *f); /* 0, or -errno when /proc could not be read */

// runtime.c -----------------------------------------------------------------------------

/* What the engine does with listeners the runtime adds and removes (the agent API: the
 * engine binds its own sockets). NULL ops, or ops without listener_add: the engine binds
 * the start's listeners itself and a reload keeps the listener list (logged). Either way the
 * runtime first checks that each new port is free (a bind without SO_REUSEPORT, closed at
 * once; skipped with reuse-port), since the engine's sockets set SO_REUSEPORT. */
struct relay_runtime_ops {
	/* Start accepting on ep; 0 or -errno (logged; the reload is undone). */
	int (*listener_add)(const struct relay_endpoint *ep, void *arg);
	/* Stop accepting on ep (added before, or bound by the engine at start) and close it;
	 * connections accepted there go on. */
	void (*listener_remove)(const struct relay_endpoint *ep, void *arg);
	/* A reload changed idle-timeout (ms, 0: never); may be NULL (then it is kept). */
	void (*idle_timeout)(unsigned ms, void *arg);
	void *arg;
};

struct relay_listener {
	struct relay_endpoint ep;
};

/* What a new connection needs to know of the configuration (reload changes it). */
struct relay_conn_settings {
	unsigned connect_timeout_ms;
	unsigned send_proxy; /* 0, 1, 2 */
	unsigned max_conns_per_ip;
	unsigned max_conns; /* client connections at once; 0: no limit */
	bool accept_proxy, keepalive, echo, access_log;
};

/* Why a client was turned away at once (tide_relay_connections_refused_total{reason}). */
enum relay_refusal {
	RELAY_REFUSED_MAX_CONNS, /* over --max-conns */
	RELAY_REFUSED_PER_IP,	 /* over --max-conns-per-ip */
	RELAY_REFUSED_RESOURCE,	 /* the relay's own descriptors or memory ran out */
	RELAY_REFUSED_N
};

/* The relay's running state outside the engine: configuration, upstream set, health
 * checker, per-IP counts, listeners. Fields are the main thread's (reload writes them);
 * workers use the calls below, never the fields. */
struct relay_runtime {
	struct relay_config cfg;
	struct relay_listener listeners[RELAY_MAX_LISTEN];
	unsigned n_listeners;
	struct relay_peer_limit *peers;
	struct relay_health *health;
	struct relay_runtime_ops ops;
	unsigned reloads, failed_reloads;
	_Atomic unsigned long clients; /* open client connections (max-conns) */
	_Atomic unsigned long long refused[RELAY_REFUSED_N]; /* by enum relay_refusal */
	/* what workers read, behind a lock so that get+swap cannot race a put */
	struct relay_balancer *balancer;
	struct relay_conn_settings settings;
	pthread_mutex_t lock;
};

/*
 * Start from a validated cfg: open the logs, resolve the upstreams into a balancer, start
 * health checks, check every listener's port (unless reuse-port) and hand it to ops (when
 * given). Everything opened is closed again on failure. Problems are logged.
 * Return: 0, -ENOENT (an upstream or listener name did not resolve), -EADDRINUSE, -errno.
 */
int relay_runtime_start(struct relay_runtime *rt, const struct relay_config *cfg,
			const struct relay_runtime_ops *ops);
/*
 * SIGHUP: tell systemd (RELOADING=1), read argv and the config file again into a fresh
 * configuration; if it has problems, or a new listener cannot be opened, or an upstream does
 * not resolve, log why, keep everything as it was and return -EINVAL (or the -errno).
 * Otherwise apply: logs reopened, new listeners added, removed ones closed (unchanged ones
 * untouched), a new balancer (state inherited) for new connections, the per-IP limit, the
 * health checker. READY=1 at the end either way. Established connections keep the balancer
 * reference they hold.
 */
int relay_runtime_reload(struct relay_runtime *rt, int argc, char *const argv[]);
/*
 * Resolve the upstream names again into a new balancer (state and counters inherited) and
 * swap it in, as a reload would but without reading the configuration: for a name that
 * moved (every server failed). Main thread. 0, or -errno with the running set kept (logged).
 */
int relay_runtime_resolve(struct relay_runtime *rt);
/* From now on listeners a reload adds or removes go through ops (copied; NULL: none), e.g.
 * once the engine that bound the start's listeners runs. Main thread. */
void relay_runtime_attach(struct relay_runtime *rt, const struct relay_runtime_ops *ops);
/* The current balancer, with a reference the caller puts (the connect path, per connection);
 * NULL with --echo. Any thread. */
struct relay_balancer *relay_runtime_balancer(struct relay_runtime *rt);
/* A copy of the settings new connections use now (any thread; the accept path). */
void relay_runtime_settings(struct relay_runtime *rt, struct relay_conn_settings *s);
/* A client connection opened (any thread): counts it and returns true, or false when that
 * is over s->max_conns (counted as refused; the caller resets it). Each call is matched by
 * one relay_runtime_client_gone(), whatever it returned. */
bool relay_runtime_client_open(struct relay_runtime *rt, const struct relay_conn_settings *s);
void relay_runtime_client_gone(struct relay_runtime *rt);
/* Count a refusal (any thread). */
void relay_runtime_refused(struct relay_runtime *rt, enum relay_refusal why);
/* "max-conns", "max-conns-per-ip", "resource": the metric's reason label. */
const char *relay_refusal_name(enum relay_refusal why);
/* Close listeners (through ops), stop checks, drop the balancer and counts, close logs. */
void relay_runtime_stop(struct relay_runtime *rt);
/* The log setup cfg asks for (level, syslog, access log). */
void relay_runtime_log_config(const struct relay_config *cfg, struct relay_log_config *lc);

// signals.c -----------------------------------------------------------------------------

/* Block SIGHUP, SIGINT and SIGTERM in the calling thread (before any thread starts, so
 * every thread inherits it) and ignore SIGPIPE; *set gets the three for relay_signals_wait.
 * Return: 0 or -errno. */
int relay_signals_block(sigset_t *set);
/*
 * The main thread's loop: SIGHUP reloads (relay_runtime_reload with argv) and reopens the
 * access log; every 200 ms suppressed log counts of finished intervals are said and
 * tick(arg) runs (may be NULL: the relay's own periodic work, e.g. resolving names again);
 * SIGINT or SIGTERM say STOPPING=1 to systemd, log the drain, and end the loop.
 * Return: the signal that stopped it (SIGINT or SIGTERM).
 */
int relay_signals_wait(struct relay_runtime *rt, const sigset_t *set, int argc, char *const argv[],
		       void (*tick)(void *arg), void *arg);

#endif /* TIDE_RELAY_OPS_H */
