/* SPDX-License-Identifier: MIT */
/*
 * options.c - the relay's options: one table for the command line, the config file, --help
 * and --check.
 *
 * Each option is one row of relay_options[]: its long name, argument, help text and a setter
 * that parses one value into struct relay_config. getopt_long's table is built from it, the
 * config file ("name value" per line, long names without "--", "#" comments, blank lines)
 * looks names up in it, and --help prints it, so the three cannot disagree.
 *
 * Order: defaults, then the --config file, then the command line over it. A repeatable option
 * (--listen, --upstream) adds one entry per use, and a list given on the command line replaces
 * the file's list; any other option given twice in one place is a problem, not a silent win.
 * Parsing does not stop at the first problem: each is printed as "FILE:LINE: message" (or
 * "command line: message") and counted, so --check shows all of them at once.
 *
 * Reload (SIGHUP) parses into a fresh struct and validates it; only a clean result replaces
 * the running one, so a bad file keeps the old configuration. Options that need a restart
 * (threads, pool size, user, ...) keep their running values, and each kept change is said.
 * The config struct is plain data with fixed arrays, so copying is swapping.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops.h"

#define WHERE_MAX     4200
#define LINE_MAX_FILE 4198 /* bytes of one config line, its newline included */

/* Where a value came from, for messages: "command line" or "FILE:LINE". */
struct source {
	char where[WHERE_MAX];
	unsigned line;	   /* in the config file; 0 on the command line */
	unsigned seen[64]; /* uses per option in this source (relay_n_options <= 64) */
	FILE *diag;
	unsigned problems;
};

static void problem(struct source *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct source *s, const char *fmt, ...)
{
	va_list ap;

	s->problems++;
	if (!s->diag)
		return;
	fprintf(s->diag, "%s: ", s->where);
	va_start(ap, fmt);
	vfprintf(s->diag, fmt, ap);
	va_end(ap);
	fputc('\n', s->diag);
}

/* ---- value parsers: true on success ---- */

static bool parse_ulong(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = v;
	return true;
}

/* Seconds: "5", "0.25", ".5", "250ms", "2s": decimal digits with an optional fraction and
 * unit, nothing else (no sign, hex, exponent or blanks). Into ms, at most max_s seconds. */
static bool parse_ms(const char *s, double max_s, unsigned *out)
{
	size_t digits, frac = 0;
	const char *end;
	double v;

	if (!s)
		return false;
	digits = strspn(s, "0123456789");
	end = s + digits;
	if (*end == '.') {
		frac = strspn(end + 1, "0123456789");
		end += 1 + frac;
	}
	if (!digits && !frac)
		return false;
	if (strcmp(end, "ms") && strcmp(end, "s") && *end)
		return false;
	v = strtod(s, NULL); /* only digits and one '.' before end: a plain decimal */
	if (!strcmp(end, "ms"))
		v /= 1000;
	if (!(v >= 0) || v > max_s)
		return false;
	if (v > 0 && v < 0.001)
		return false; /* timers count milliseconds: refused rather than rounded up */
	*out = (unsigned)(v * 1000 + 0.5);
	return true;
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
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	}
	if (shift)
		end++;
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (shift && (*end == 'b' || *end == 'B'))
		end++;
	if (*end || (shift && v > (ULLONG_MAX >> shift)))
		return false;
	*out = (size_t)(v << shift);
	return true;
}

/* A flag's value in a file: none, or yes/no, on/off, true/false, 1/0. */
static int parse_flag(const char *val, bool *out, char *err, size_t n)
{
	static const char *const on[] = {"yes", "on", "true", "1"}, *const off[] = {"no", "off",
										    "false", "0"};

	if (!val || !*val) {
		*out = true;
		return 0;
	}
	for (unsigned i = 0; i < 4; i++) {
		if (!strcmp(val, on[i]) || !strcmp(val, off[i])) {
			*out = !strcmp(val, on[i]);
			return 0;
		}
	}
	snprintf(err, n, "wants no value or yes/no, not '%s'", val);
	return -EINVAL;
}

#define BAD(...) (snprintf(err, n, __VA_ARGS__), -EINVAL)

/* ---- setters: one per option ---- */

static int set_listen(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (c->n_listen == RELAY_MAX_LISTEN)
		return BAD("more than %d listeners", RELAY_MAX_LISTEN);
	if (relay_endpoint_parse(val, 0, &c->listen[c->n_listen], err, n))
		return -EINVAL;
	c->n_listen++;
	return 0;
}

/* "HOST:PORT" with an optional " weight=N" or ",weight=N" after it. */
static int set_upstream(struct relay_config *c, const char *val, char *err, size_t n)
{
	char text[RELAY_HOST_MAX + 32];
	struct relay_upstream_spec *u = &c->upstream[c->n_upstream];
	unsigned long long w = 1;
	char *extra;

	if (c->n_upstream == RELAY_MAX_UPSTREAM)
		return BAD("more than %d upstreams", RELAY_MAX_UPSTREAM);
	if (strlen(val) >= sizeof(text))
		return BAD("'%.40s...': too long", val);
	strcpy(text, val);
	extra = strpbrk(text, " \t,");
	if (extra) {
		*extra++ = '\0';
		extra += strspn(extra, " \t");
		if (strncmp(extra, "weight=", 7) || !parse_ulong(extra + 7, 256, &w) || !w)
			return BAD("'%s': after HOST:PORT only weight=N (1 to 256) may follow",
				   val);
	}
	if (relay_endpoint_parse(text, 1, &u->ep, err, n))
		return -EINVAL;
	u->weight = (unsigned)w;
	c->n_upstream++;
	return 0;
}

static int set_echo(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->echo, err, n);
}

static int set_balance(struct relay_config *c, const char *val, char *err, size_t n)
{
	static const char *const names[] = {"roundrobin", "leastconn", "source"};

	for (unsigned i = 0; i < 3; i++)
		if (!strcmp(val, names[i])) {
			c->balance = (enum relay_balance)i;
			return 0;
		}
	return BAD("wants roundrobin, leastconn or source, not '%s'", val);
}

static int seconds(unsigned *field, const char *val, unsigned min_ms, const char *what, char *err,
		   size_t n)
{
	unsigned ms;

	if (!parse_ms(val, 4000000, &ms) || ms < min_ms)
		return BAD("wants %s; other than 0, at least 0.001 (1ms), not '%s'", what, val);
	*field = ms;
	return 0;
}

#define SECONDS_SETTER(fn, field, min_ms, what)                                                    \
	static int fn(struct relay_config *c, const char *val, char *err, size_t n)                \
	{                                                                                          \
		return seconds(&c->field, val, min_ms, what, err, n);                              \
	}
SECONDS_SETTER(set_connect_timeout, connect_timeout_ms, 0,
	       "seconds (e.g. 5, 0.5, 250ms; 0: the kernel's own)")
SECONDS_SETTER(set_drain_timeout, drain_timeout_ms, 0, "seconds (e.g. 2, 0.5, 250ms)")
SECONDS_SETTER(set_drain_idle, drain_idle_ms, 0, "seconds (e.g. 0.2, 200ms; 0: off)")
SECONDS_SETTER(set_health_interval, health_interval_ms, 0, "seconds (0: no active checks)")
SECONDS_SETTER(set_idle_timeout, idle_timeout_ms, 0, "seconds (0: never)")
SECONDS_SETTER(set_stats_timeout, stats_timeout_ms, 1, "seconds above 0")

static int set_send_proxy(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (!strcmp(val, "v1") || !strcmp(val, "1"))
		c->send_proxy = 1;
	else if (!strcmp(val, "v2") || !strcmp(val, "2"))
		c->send_proxy = 2;
	else
		return BAD("wants v1 or v2, not '%s'", val);
	return 0;
}

static int set_accept_proxy(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->accept_proxy, err, n);
}

static int set_config(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (!*val || strlen(val) >= sizeof(c->config_path))
		return BAD("wants a file name, not '%s'", val);
	strcpy(c->config_path, val);
	return 0;
}

static int set_check(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->check, err, n);
}

static int set_log_level(struct relay_config *c, const char *val, char *err, size_t n)
{
	for (int i = RELAY_LOG_ERROR; i <= RELAY_LOG_DEBUG; i++)
		if (!strcmp(val, relay_log_level_name((enum relay_log_level)i))) {
			c->log_level = (enum relay_log_level)i;
			return 0;
		}
	return BAD("wants error, warn, info or debug, not '%s'", val);
}

static int set_syslog(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->syslog, err, n);
}

static int set_access_log(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (val && strlen(val) >= sizeof(c->access_log_path))
		return BAD("%s", "file name too long");
	c->access_log = true;
	strcpy(c->access_log_path, val ? val : "");
	return 0;
}

static int set_user(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (!*val || strlen(val) >= sizeof(c->user) || strchr(val, ':') || strchr(val, '/'))
		return BAD("wants a user name, not '%s'", val);
	strcpy(c->user, val);
	return 0;
}

static int number(unsigned *field, const char *val, unsigned lo, unsigned hi, const char *what,
		  char *err, size_t n)
{
	unsigned long long v;

	if (!parse_ulong(val, hi, &v) || v < lo)
		return BAD("wants %s, not '%s'", what, val);
	*field = (unsigned)v;
	return 0;
}

#define UINT_SETTER(fn, field, lo, hi, what)                                                       \
	static int fn(struct relay_config *c, const char *val, char *err, size_t n)                \
	{                                                                                          \
		return number(&c->field, val, lo, hi, what, err, n);                               \
	}
UINT_SETTER(set_max_conns_per_ip, max_conns_per_ip, 0, 100000000, "a number (0: no limit)")
UINT_SETTER(set_threads, threads, 1, 1024, "a number from 1 to 1024")
UINT_SETTER(set_max_conns, max_conns, 0, 100000000, "a number (0: no limit)")

static int set_keepalive(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->keepalive, err, n);
}

static int set_reuse_port(struct relay_config *c, const char *val, char *err, size_t n)
{
	return parse_flag(val, &c->reuse_port, err, n);
}

static int set_pool_max(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (!parse_size(val, &c->pool_max))
		return BAD("wants a SIZE (a number with K, M or G), not '%s'", val);
	if (c->pool_max < ((size_t)2 << 20))
		return BAD("wants a SIZE of at least 2M, not '%s'", val);
	if (c->pool_max > ((size_t)64 << 30))
		return BAD("'%s' is too big: at most 64G (the address space the pool reserves)",
			   val);
	return 0;
}

static int set_block_size(struct relay_config *c, const char *val, char *err, size_t n)
{
	size_t b;

	if (!parse_size(val, &b) || b < 1024 || b > ((size_t)1 << 20) || (b & (b - 1)))
		return BAD("wants a power of two from 1K to 1M, not '%s'", val);
	c->block_size = b;
	return 0;
}

/* "off" (0) or a SIZE within [min, max] (said as range): --splice and --recv-batch. */
static int set_size_or_off(size_t *out, const char *val, size_t min, size_t max, const char *range,
			   char *err, size_t n)
{
	size_t b;

	if (val && !strcmp(val, "off")) {
		*out = 0;
		return 0;
	}
	if (!parse_size(val, &b) || b < min || b > max)
		return BAD("wants 'off' or a SIZE from %s, not '%s'", range, val);
	*out = b;
	return 0;
}

static int set_splice(struct relay_config *c, const char *val, char *err, size_t n)
{
	return set_size_or_off(&c->splice_pipe, val, 4096, (size_t)1 << 30, "4K to 1G", err, n);
}

static int set_recv_batch(struct relay_config *c, const char *val, char *err, size_t n)
{
	return set_size_or_off(&c->recv_batch, val, 4096, (size_t)64 << 20, "4K to 64M", err, n);
}

static int set_stats(struct relay_config *c, const char *val, char *err, size_t n)
{
	if (relay_endpoint_parse(val, 0, &c->stats, err, n))
		return -EINVAL;
	c->has_stats = true;
	return 0;
}

static int set_help(struct relay_config *c, const char *val, char *err, size_t n)
{
	c->help = true;
	return 0;
}

static int set_version(struct relay_config *c, const char *val, char *err, size_t n)
{
	c->version = true;
	return 0;
}

/* clang-format off */
const struct relay_option relay_options[] = {
	{"listen", "HOST:PORT", false, true, false, false, NULL,
	 "Accept TCP connections on HOST:PORT. HOST is a name, an IPv4 address or\n"
	 "an IPv6 address in brackets ([::1]:7000); an empty HOST or * (:7000,\n"
	 "*:7000) binds every address, IPv6 and IPv4 on one socket ([::] with\n"
	 "IPV6_V6ONLY off; 0.0.0.0 where IPv6 is off); [::]:7000 is IPv6 only\n"
	 "(IPV6_V6ONLY), so 0.0.0.0:7000 may go with it; net.ipv6.bindv6only changes\n"
	 "neither. Port 0 picks a free port (the real one is logged). Repeat for several listeners. A port another socket\n"
	 "already holds is an error (EADDRINUSE) unless --reuse-port is given.\n"
	 "A reload opens new listeners and closes the ones no longer listed.",
	 set_listen},
	{"upstream", "HOST:PORT[,weight=N]", false, true, false, false, NULL,
	 "Relay each connection to one of these servers, chosen by --balance.\n"
	 "Repeat for several. weight=N (1 to 256, default 1) gives a server N\n"
	 "shares of the connections. A server that refuses or does not answer\n"
	 "within --connect-timeout is skipped and the next one is tried before the\n"
	 "client sees a failure. A reload applies a new list to new connections;\n"
	 "established ones keep their server.",
	 set_upstream},
	{"echo", NULL, false, false, false, true, NULL,
	 "Send back what each client sends, instead of relaying to --upstream.",
	 set_echo},
	{"balance", "roundrobin|leastconn|source", false, false, false, false, "roundrobin",
	 "How a server is chosen: roundrobin takes them in turn (by weight);\n"
	 "leastconn the one with the fewest open connections per weight; source a\n"
	 "hash of the client's IP address, so a client keeps its server while the\n"
	 "list and their health stay the same.",
	 set_balance},
	{"connect-timeout", "SEC", false, false, false, false, "5",
	 "How long a connect to a server may take before the next one is tried.\n"
	 "SEC is a decimal number of seconds, or ends in ms (250ms); 0 leaves it\n"
	 "to the kernel's own SYN retries.",
	 set_connect_timeout},
	{"drain-timeout", "SEC", false, false, false, false, "5",
	 "On SIGINT, SIGTERM or SIGQUIT, stop accepting and give open connections\n"
	 "this long to finish; those still open are then reset (logged as 'drain').\n"
	 "0 resets them at once. A reload changes it.",
	 set_drain_timeout},
	{"drain-idle", "SEC", false, false, false, true, "0.2",
	 "While draining, a connection whose upstream has finished (its FIN and\n"
	 "every byte delivered to the client, every byte of the client's taken) ends\n"
	 "once its client has sent nothing for this long: the client's side is\n"
	 "closed, the upstream's reset (logged as 'drain'). 0: such connections wait\n"
	 "for the client's FIN or --drain-timeout.",
	 set_drain_idle},
	{"health-interval", "SEC", false, false, false, false, "0 (off)",
	 "Check every server with a TCP connect this often. A server that fails\n"
	 "3 connects or checks in a row is out until a check succeeds. Without\n"
	 "it, a server that fails 3 connects in a row is out for 10 seconds.",
	 set_health_interval},
	{"send-proxy", "v1|v2", false, false, false, false, "off",
	 "Begin each upstream connection with a PROXY protocol header (haproxy's\n"
	 "spec: v1 text, v2 binary) that tells the server the client's address.",
	 set_send_proxy},
	{"accept-proxy", NULL, false, false, false, false, NULL,
	 "Expect a PROXY protocol header (v1 or v2) at the start of every client\n"
	 "connection and use the address in it as the client's (logs, --balance\n"
	 "source, --max-conns-per-ip, --send-proxy). A connection without a valid\n"
	 "header is closed. Only for listeners behind a proxy you trust.",
	 set_accept_proxy},
	{"config", "FILE", false, false, true, false, NULL,
	 "Read options from FILE: one per line as 'name value', with the long\n"
	 "names of this list without '--' (flags take no value, or yes/no). '#'\n"
	 "starts a comment wherever it is (write \\# for a '#' in a value).\n"
	 "Options on the command line override the file's (a flag is turned off\n"
	 "with --no-NAME or --NAME=no); a --listen or --upstream list given there\n"
	 "replaces the file's list.\n"
	 "SIGHUP reads FILE again.",
	 set_config},
	{"check", NULL, false, false, true, false, NULL,
	 "Check the options and the config file, print each problem with its\n"
	 "line number, and exit: 0 when there is none, 2 otherwise.",
	 set_check},
	{"log-level", "error|warn|info|debug", false, false, false, false, "info",
	 "Log events at this level and above: one line each on stderr,\n"
	 "'2026-01-02T03:04:05.678Z LEVEL message' (UTC). Repeated events (an\n"
	 "upstream failing, connections refused) are rate-limited, and a line\n"
	 "says how many were suppressed.",
	 set_log_level},
	{"syslog", NULL, false, false, false, false, NULL,
	 "Log to syslog(3) (facility daemon, ident tide-relay) instead of stderr.",
	 set_syslog},
	{"access-log", "FILE", true, false, false, false, "off",
	 "Log one line per connection when it ends: time, client, listener,\n"
	 "upstream, bytes each way, duration and how it ended (clean, reset,\n"
	 "timeout, drain, refused, unreachable, error). Without FILE the lines go\n"
	 "with the other logs; FILE is appended to, and reopened on SIGHUP.",
	 set_access_log},
	{"user", "NAME", false, false, false, true, NULL,
	 "After opening the listeners, become user NAME (its groups too) for good.\n"
	 "The relay refuses to go on if the switch does not hold.",
	 set_user},
	{"max-conns-per-ip", "N", false, false, false, false, "0 (no limit)",
	 "Close at once a connection from an IP address that already has N open.",
	 set_max_conns_per_ip},
	{"keepalive", NULL, false, false, false, false, NULL,
	 "Turn on TCP keepalive on both legs (probes after 60 s idle, every 10 s,\n"
	 "6 unanswered end the connection), so dead peers are found.",
	 set_keepalive},
	{"reuse-port", NULL, false, false, false, true, NULL,
	 "Open listeners with SO_REUSEPORT, so other processes that also ask for\n"
	 "it may share the port (one relay per core). Without it a taken port is\n"
	 "an error.",
	 set_reuse_port},
	{"threads", "N", false, false, false, true, "1",
	 "Worker threads, one io_uring each.",
	 set_threads},
	{"max-conns", "N", false, false, false, false, "0 (no limit)",
	 "Client connections at once; more are reset at once (what they sent is\n"
	 "not relayed, so they never see a clean end). A reload changes it for\n"
	 "the connections that come after.",
	 set_max_conns},
	{"pool-max", "SIZE", false, false, false, true, "1G",
	 "Most buffer memory the pool may map. SIZE takes K, M or G (powers of 1024).\n"
	 "Each worker needs at least 32 blocks: pool-max >= threads x 32 x block-size.",
	 set_pool_max},
	{"block-size", "SIZE", false, false, false, true, "64K",
	 "Buffer size, a power of two from 1K to 1M.",
	 set_block_size},
	{"splice", "SIZE|off", false, false, false, true, "off",
	 "A direction that carries bulk data (one receive of 64K or more) goes on\n"
	 "through a kernel pipe of SIZE bytes with splice(2): its bytes are not\n"
	 "copied through the relay's buffers, which costs less CPU per byte but,\n"
	 "measured on loopback, gave less throughput. The kernel may give a\n"
	 "smaller pipe (fs.pipe-max-size). 'off' (the default): every byte goes\n"
	 "through the buffers.",
	 set_splice},
	{"recv-batch", "SIZE|off", false, false, false, true, "off",
	 "A direction that carries bulk data (one receive of SIZE, and 64K, or\n"
	 "more) is woken once SIZE bytes wait in its socket (SO_RCVLOWAT) instead\n"
	 "of per segment: fewer wake-ups and window updates. It drops back to\n"
	 "plain receives once the direction received nothing for about a\n"
	 "millisecond, so a smaller tail waits at most that long. Off by default:\n"
	 "measured with 1 MB replies, it gave occasional stalls of 200 ms or more.",
	 set_recv_batch},
	{"idle-timeout", "SEC", false, false, false, false, "300",
	 "Close connections idle this long (0: never); logged as 'timeout'. A\n"
	 "reload changes it for every connection, open ones too (one idle clock).",
	 set_idle_timeout},
	{"stats", "HOST:PORT", false, false, false, true, NULL,
	 "Serve /stats (JSON) and /metrics (Prometheus text) over HTTP here.",
	 set_stats},
	{"stats-timeout", "SEC", false, false, false, true, "5",
	 "The most time one stats request may take.",
	 set_stats_timeout},
	{"help", NULL, false, false, true, false, NULL, "Print this help and exit.", set_help},
	{"version", NULL, false, false, true, false, NULL, "Print the version and exit.",
	 set_version},
};
/* clang-format on */
const size_t relay_n_options = sizeof(relay_options) / sizeof(relay_options[0]);
_Static_assert(sizeof(relay_options) / sizeof(relay_options[0]) <= 64,
	       "struct source counts uses of at most 64 options");

void relay_config_init(struct relay_config *c)
{
	memset(c, 0, sizeof(*c));
	c->balance = RELAY_BALANCE_ROUNDROBIN;
	c->connect_timeout_ms = 5000;
	c->drain_timeout_ms = 5000;
	c->drain_idle_ms = 200;
	c->idle_timeout_ms = 300000;
	c->stats_timeout_ms = 5000;
	c->log_level = RELAY_LOG_INFO;
	c->threads = 1;
	c->pool_max = (size_t)1 << 30;
	c->block_size = 64 * 1024;
	c->splice_pipe = 0; /* measured: less CPU per byte, less throughput */
	c->recv_batch = 0;  /* measured: 1 MB replies stalled 200 ms at times with it */
}

static const struct relay_option *find(const char *name, size_t *idx)
{
	for (size_t i = 0; i < relay_n_options; i++)
		if (!strcmp(relay_options[i].name, name)) {
			*idx = i;
			return &relay_options[i];
		}
	return NULL;
}

/* Apply one value from source s, with the list and given-twice rules. */
static void apply(struct relay_config *c, struct source *s, size_t idx, const char *val,
		  bool from_file)
{
	const struct relay_option *o = &relay_options[idx];
	char err[512] = "";

	if (o->cli_only && from_file) {
		problem(s, "'%s' is for the command line only", o->name);
		return;
	}
	if (o->repeatable && !s->seen[idx]) { /* this source's list replaces earlier ones */
		if (!strcmp(o->name, "listen"))
			c->n_listen = 0;
		else
			c->n_upstream = 0;
	}
	if (!o->repeatable && s->seen[idx]) {
		problem(s, "'%s' given twice", o->name);
		return;
	}
	s->seen[idx]++;
	if (o->arg && !o->arg_optional && (!val || !*val)) {
		problem(s, "'%s' wants a value (%s)", o->name, o->arg);
		return;
	}
	if (o->set(c, val, err, sizeof(err))) {
		problem(s, "%s%s: %s", from_file ? "" : "--", o->name, err);
		return;
	}
	c->option_line[idx] = s->line;
	if (!strcmp(o->name, "listen"))
		c->listen_line[c->n_listen - 1] = s->line;
	else if (!strcmp(o->name, "upstream"))
		c->upstream_line[c->n_upstream - 1] = s->line;
}

/* '#' starts a comment wherever it is (haproxy's rule: "upstream 10.0.0.1:80#backup" is
 * the address and a comment); "\\#" is a '#' that belongs to the value. In place. */
static char *strip_comment(char *line)
{
	char *r = line, *w = line;

	for (; *r && *r != '#'; r++) {
		if (r[0] == '\\' && r[1] == '#')
			r++;
		*w++ = *r;
	}
	*w = '\0';
	return line;
}

/* Cut leading and trailing blanks, in place. */
static char *trim(char *p)
{
	char *end;

	p += strspn(p, " \t\r\n");
	end = p + strlen(p);
	while (end > p && strchr(" \t\r\n", end[-1]))
		*--end = '\0';
	return p;
}

static unsigned read_file(const char *path, struct relay_config *c, FILE *diag)
{
	struct source s = {.diag = diag};
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	unsigned lineno = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		snprintf(s.where, sizeof(s.where), "%s", path);
		problem(&s, "cannot read: %s", strerror(errno));
		return s.problems;
	}
	while ((got = getline(&line, &cap, f)) >= 0) {
		char *p, *name, *val;
		size_t idx;

		snprintf(s.where, sizeof(s.where), "%s:%u", path, ++lineno);
		s.line = lineno;
		if (memchr(line, '\0', (size_t)got)) {
			problem(&s, "a NUL byte in the line (not a text file?)");
			continue;
		}
		if (got > LINE_MAX_FILE) {
			problem(&s, "line longer than %d bytes", LINE_MAX_FILE);
			continue;
		}
		p = strip_comment(line);
		p = trim(p);
		if (!*p)
			continue;
		name = p;
		p += strcspn(p, " \t");
		if (*p)
			*p++ = '\0';
		val = trim(p);
		if (!strncmp(name, "--", 2))
			name += 2;
		if (!find(name, &idx)) {
			problem(&s, "unknown option '%s'", name);
			continue;
		}
		apply(c, &s, idx, *val ? val : NULL, true);
	}
	if (ferror(f)) {
		snprintf(s.where, sizeof(s.where), "%s", path);
		problem(&s, "read error: %s", strerror(errno));
	}
	free(line);
	fclose(f);
	return s.problems;
}

unsigned relay_config_read_file(const char *path, struct relay_config *c, FILE *diag)
{
	return read_file(path, c, diag);
}

/* s->where for a value set at line (0: the command line, or the whole configuration). */
static struct source *at(struct source *s, const struct relay_config *c, unsigned line)
{
	if (line)
		snprintf(s->where, sizeof(s->where), "%s:%u", c->config_path, line);
	else
		snprintf(s->where, sizeof(s->where), "%s",
			 c->config_path[0] ? c->config_path : "command line");
	return s;
}

/* " (line N)" for a value from the config file, "" for one from the command line. */
static const char *line_text(unsigned line, char *buf, size_t n)
{
	if (line)
		snprintf(buf, n, " (line %u)", line);
	else
		buf[0] = '\0';
	return buf;
}

/* An endpoint as written ("[::1]:80"), for one problem's arguments. */
#define EP(ep) relay_endpoint_text((ep), (char[RELAY_ENDPOINT_TEXT]){0}, RELAY_ENDPOINT_TEXT)

static unsigned line_of(const struct relay_config *c, const char *name)
{
	size_t idx;

	return find(name, &idx) ? c->option_line[idx] : 0;
}

unsigned relay_config_validate(const struct relay_config *c, FILE *diag)
{
	struct source s = {.diag = diag};
	char buf[1024];
	struct passwd pw, *res = NULL;

	at(&s, c, 0);
	if (c->help || c->version)
		return 0;
	if (!c->n_listen)
		problem(&s, "no listen: give at least one HOST:PORT to accept on");
	if (c->echo && c->n_upstream)
		problem(at(&s, c, line_of(c, "echo")), "give upstream servers or echo, not both");
	if (!c->echo && !c->n_upstream)
		problem(at(&s, c, 0),
			"no upstream: give at least one HOST:PORT to relay to, or echo");
	for (unsigned i = 0; i < c->n_listen; i++)
		for (unsigned j = 0; j < i; j++)
			if (c->listen[i].port && c->listen[i].port == c->listen[j].port &&
			    !strcmp(c->listen[i].host, c->listen[j].host))
				problem(at(&s, c, c->listen_line[i]), "listen %s given twice",
					EP(&c->listen[i]));
	for (unsigned i = 0; i < c->n_upstream; i++)
		for (unsigned j = 0; j < i; j++)
			if (c->upstream[i].ep.port == c->upstream[j].ep.port &&
			    !strcmp(c->upstream[i].ep.host, c->upstream[j].ep.host))
				problem(at(&s, c, c->upstream_line[i]),
					"upstream %s given twice (use weight=N)",
					EP(&c->upstream[i].ep));
	if (c->echo && c->send_proxy)
		problem(at(&s, c, line_of(c, "send-proxy")),
			"send-proxy needs upstream servers, not echo");
	if (c->echo && c->health_interval_ms)
		problem(at(&s, c, line_of(c, "health-interval")),
			"health-interval needs upstream servers, not echo");
	if (c->threads && c->block_size &&
	    c->pool_max / c->threads / c->block_size < RELAY_MIN_WORKER_BLOCKS)
		problem(at(&s, c, line_of(c, "pool-max")),
			"pool-max %zu is too small for %u thread%s of block-size %zu: each worker "
			"needs %d blocks, so pool-max at least %zu (or fewer threads, smaller "
			"blocks)",
			c->pool_max, c->threads, c->threads == 1 ? "" : "s", c->block_size,
			RELAY_MIN_WORKER_BLOCKS,
			(size_t)RELAY_MIN_WORKER_BLOCKS * c->block_size * c->threads);
	if (c->has_stats)
		for (unsigned i = 0; i < c->n_listen; i++)
			if (c->stats.port && c->stats.port == c->listen[i].port &&
			    !strcmp(c->stats.host, c->listen[i].host))
				problem(at(&s, c, line_of(c, "stats")),
					"stats and listen on the same address %s", EP(&c->stats));
	if (c->user[0] && (getpwnam_r(c->user, &pw, buf, sizeof(buf), &res) || !res))
		problem(at(&s, c, line_of(c, "user")), "user: no user '%s' on this system",
			c->user);
	return s.problems;
}

/* Whether a and b cannot both be bound: the same address and port, or a wildcard of the
 * family and another address of it on the same port ([::] and 0.0.0.0 may go together:
 * [::] is IPv6 only), or every address (one dual-stack socket: any address on its port). */
static bool overlap(const struct sockaddr_storage *a, bool a_every,
		    const struct sockaddr_storage *b, bool b_every)
{
	uint8_t x[16], y[16], zero[16] = {0};
	size_t lx = relay_addr_ip((const struct sockaddr *)a, x),
	       ly = relay_addr_ip((const struct sockaddr *)b, y);

	if (!lx || !ly)
		return false;
	if (relay_addr_equal((const struct sockaddr *)a, (const struct sockaddr *)b))
		return true;
	if (((const struct sockaddr_in *)a)->sin_port != ((const struct sockaddr_in *)b)->sin_port)
		return false; /* sin_port and sin6_port sit at the same offset */
	return a_every || b_every || (lx == ly && (!memcmp(x, zero, lx) || !memcmp(y, zero, ly)));
}

static void check_name(struct source *s, const struct relay_config *c, unsigned line,
		       const char *what, const struct relay_endpoint *ep, bool passive,
		       struct sockaddr_storage *sa)
{
	socklen_t len;
	char why[256];

	if (!relay_endpoint_resolve(ep, passive, sa, &len))
		return;
	memset(sa, 0, sizeof(*sa));
	problem(at(s, c, line), "%s %s: cannot resolve: %s", what, EP(ep),
		relay_endpoint_resolve_why(ep, passive, why, sizeof(why)));
}

/* Whether path can be appended to (or created in its directory): 0 or -errno. */
static int check_writable(const char *path)
{
	struct stat st;
	char dir[4096], *slash;
	int fd;

	if (!stat(path, &st)) {
		fd = open(path, O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return errno == ENXIO ? 0 : -errno; /* a FIFO without a reader yet */
		close(fd);
		return 0;
	}
	if (errno != ENOENT)
		return -errno;
	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return access(dir, W_OK | X_OK) ? -errno : 0;
}

unsigned relay_config_check_system(const struct relay_config *c, FILE *diag)
{
	struct source s = {.diag = diag};
	struct sockaddr_storage lis[RELAY_MAX_LISTEN], sa;
	char line[32];
	int rc;

	if (c->help || c->version)
		return 0;
	for (unsigned i = 0; i < c->n_listen; i++) {
		check_name(&s, c, c->listen_line[i], "listen", &c->listen[i], true, &lis[i]);
		for (unsigned j = 0; j < i; j++)
			if (c->listen[i].port &&
			    overlap(&lis[i], relay_endpoint_every(&c->listen[i]), &lis[j],
				    relay_endpoint_every(&c->listen[j])))
				problem(at(&s, c, c->listen_line[i]),
					"listen %s is the same socket as listen %s%s: one port, "
					"one "
					"listener",
					EP(&c->listen[i]), EP(&c->listen[j]),
					line_text(c->listen_line[j], line, sizeof(line)));
	}
	for (unsigned i = 0; i < c->n_upstream; i++)
		check_name(&s, c, c->upstream_line[i], "upstream", &c->upstream[i].ep, false, &sa);
	if (c->has_stats)
		check_name(&s, c, line_of(c, "stats"), "stats", &c->stats, true, &sa);
	if (c->access_log && c->access_log_path[0]) {
		rc = check_writable(c->access_log_path);
		if (rc)
			problem(at(&s, c, line_of(c, "access-log")), "access-log %s: %s",
				c->access_log_path, strerror(-rc));
	}
	return s.problems;
}

/* Build getopt_long's table from ours; val is 256 + the row. A flag takes an optional value
 * (--keepalive=no, as "keepalive no" in a file) and has a --no-NAME twin (val 1024 + the row).
 * Returns the number of entries. */
static size_t long_table(struct option *t)
{
	static char no_names[64][48];
	size_t n = 0;

	for (size_t i = 0; i < relay_n_options; i++, n++) {
		const struct relay_option *o = &relay_options[i];

		t[n].name = o->name;
		t[n].has_arg = !o->arg && !o->cli_only ? optional_argument
			       : !o->arg	       ? no_argument
			       : o->arg_optional       ? optional_argument
						       : required_argument;
		t[n].flag = NULL;
		t[n].val = 256 + (int)i;
	}
	for (size_t i = 0; i < relay_n_options; i++) {
		if (relay_options[i].arg || relay_options[i].cli_only)
			continue;
		snprintf(no_names[i], sizeof(no_names[i]), "no-%s", relay_options[i].name);
		t[n].name = no_names[i];
		t[n].has_arg = no_argument;
		t[n].flag = NULL;
		t[n++].val = 1024 + (int)i;
	}
	memset(&t[n], 0, sizeof(t[0]));
	return n;
}

struct cli_value {
	size_t idx;
	const char *val;
};

/* Collect the command line's options in order (applied after the file). */
static size_t scan_argv(int argc, char *const argv[], struct cli_value *out, struct source *s)
{
	struct option t[2 * 64 + 1];
	size_t n = 0;
	int ch;

	long_table(t);
	optind = 0; /* GNU: full reinitialisation, so reload can scan again */
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "-:", t, NULL)) != -1) {
		if (ch == 1) { /* a word that is not an option */
			if (n && relay_options[out[n - 1].idx].arg_optional && !out[n - 1].val) {
				out[n - 1].val = optarg; /* --access-log FILE */
				continue;
			}
			problem(s, "unexpected argument '%s'", optarg);
		} else if (ch == ':') {
			problem(s, "option '%s' wants a value", argv[optind - 1]);
		} else if (ch == '?' && optopt >= 256) { /* --help=x, --no-keepalive=x */
			problem(s, "option '%s' takes no value", argv[optind - 1]);
		} else if (ch == '?') {
			problem(s, "unknown option '%s'", argv[optind - 1]);
		} else if (ch >= 1024 && n < (size_t)argc) { /* --no-NAME */
			out[n].idx = (size_t)ch - 1024;
			out[n++].val = "no";
		} else if (ch >= 256 && n < (size_t)argc) {
			out[n].idx = (size_t)ch - 256;
			out[n++].val = optarg;
		}
	}
	return n;
}

unsigned relay_config_load(int argc, char *const argv[], struct relay_config *c, FILE *diag)
{
	struct source cli = {.diag = diag};
	struct cli_value *vals = calloc((size_t)argc + 1, sizeof(*vals));
	unsigned problems = 0;
	size_t n, i, cfg_idx = 0;
	char err[64];

	relay_config_init(c);
	snprintf(cli.where, sizeof(cli.where), "command line");
	if (!vals) {
		problem(&cli, "out of memory");
		return cli.problems;
	}
	n = scan_argv(argc, argv, vals, &cli);
	find("config", &cfg_idx);
	for (i = 0; i < n; i++) /* the file first, so the command line overrides it */
		if (vals[i].idx == cfg_idx && vals[i].val && !set_config(c, vals[i].val, err, 64))
			break;
	if (c->config_path[0])
		problems += read_file(c->config_path, c, diag);
	for (i = 0; i < n; i++)
		apply(c, &cli, vals[i].idx, vals[i].val, false);
	free(vals);
	problems += cli.problems;
	if (!problems)
		problems += relay_config_validate(c, diag);
	return problems;
}

/* Options a reload cannot change: keep the running value and say so. */
static void keep_restart_only(const struct relay_config *cur, struct relay_config *fresh,
			      FILE *diag)
{
#define KEEP(cond, name, field)                                                                    \
	do {                                                                                       \
		if (cond) {                                                                        \
			if (diag)                                                                  \
				fprintf(diag,                                                      \
					"%s changes only at restart; keeping the running "         \
					"value\n",                                                 \
					name);                                                     \
			memcpy(&fresh->field, &cur->field, sizeof(cur->field));                    \
		}                                                                                  \
	} while (0)
	KEEP(cur->threads != fresh->threads, "threads", threads);
	KEEP(cur->pool_max != fresh->pool_max, "pool-max", pool_max);
	KEEP(cur->block_size != fresh->block_size, "block-size", block_size);
	KEEP(cur->splice_pipe != fresh->splice_pipe, "splice", splice_pipe);
	KEEP(cur->recv_batch != fresh->recv_batch, "recv-batch", recv_batch);
	KEEP(strcmp(cur->user, fresh->user), "user", user);
	KEEP(cur->reuse_port != fresh->reuse_port, "reuse-port", reuse_port);
	KEEP(cur->has_stats != fresh->has_stats ||
		     (cur->has_stats && (cur->stats.port != fresh->stats.port ||
					 strcmp(cur->stats.host, fresh->stats.host))),
	     "stats", stats);
	fresh->has_stats = cur->has_stats;
	KEEP(cur->stats_timeout_ms != fresh->stats_timeout_ms, "stats-timeout", stats_timeout_ms);
	KEEP(cur->drain_idle_ms != fresh->drain_idle_ms, "drain-idle", drain_idle_ms);
#undef KEEP
}

unsigned relay_config_reload(const struct relay_config *cur, int argc, char *const argv[],
			     struct relay_config *fresh, FILE *diag)
{
	unsigned problems = relay_config_load(argc, argv, fresh, diag);

	if (!problems) /* names, the access-log file, listeners: as --check and a start */
		problems = relay_config_check_system(fresh, diag);
	if (!problems && cur->echo != fresh->echo) { /* kept, the rest would not fit it */
		if (diag)
			fprintf(diag, "echo changes only at restart (and the upstream list with "
				      "it); the running configuration stays\n");
		problems++;
	}
	if (problems)
		return problems;
	keep_restart_only(cur, fresh, diag);
	return 0;
}

int relay_config_check_exit(unsigned problems, const struct relay_config *c, FILE *out)
{
	if (problems) {
		fprintf(out, "tide-relay: %u problem%s in the configuration\n", problems,
			problems == 1 ? "" : "s");
		return 2;
	}
	fprintf(out, "tide-relay: configuration OK: %u listener%s, %u upstream%s%s\n", c->n_listen,
		c->n_listen == 1 ? "" : "s", c->n_upstream, c->n_upstream == 1 ? "" : "s",
		c->echo ? " (echo)" : "");
	return 0;
}

void relay_options_usage(FILE *f)
{
	fputs("Usage: tide-relay --listen HOST:PORT... (--upstream HOST:PORT... | --echo) "
	      "[OPTION]...\n"
	      "       tide-relay --config FILE [--check] [OPTION]...\n"
	      "\n"
	      "Relay TCP connections to upstream servers (or echo them back), with buffers\n"
	      "from an elastic tide pool and I/O on io_uring.\n"
	      "\n"
	      "Options (each may also be a line 'name value' of the --config file):\n",
	      f);
	for (size_t i = 0; i < relay_n_options; i++) {
		const struct relay_option *o = &relay_options[i];
		const char *p = o->help;

		fprintf(f, "\n  --%s%s%s%s\n", o->name,
			o->arg ? (o->arg_optional ? " [" : " ") : "", o->arg ? o->arg : "",
			o->arg && o->arg_optional ? "]" : "");
		while (*p) {
			size_t len = strcspn(p, "\n");

			fprintf(f, "        %.*s\n", (int)len, p);
			p += len + (p[len] == '\n');
		}
		if (o->dflt)
			fprintf(f, "        Default: %s.\n", o->dflt);
		if (o->repeatable)
			fprintf(f, "        May be repeated.\n");
		if (o->restart_only)
			fprintf(f,
				"        A reload keeps the running value (restart to change).\n");
	}
	fputs("\nSignals: SIGHUP reloads the configuration (a bad one is logged and the running\n"
	      "one kept) and reopens the access log; SIGUSR1 reopens the access log;\n"
	      "SIGINT, SIGTERM and SIGQUIT drain and stop; SIGUSR2 and SIGALRM are ignored.\n"
	      "Exit status: 0 clean, 1 failure (or buffers not returned), 2 bad options or\n"
	      "configuration, 3 io_uring not available to this process.\n",
	      f);
}
