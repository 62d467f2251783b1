/* SPDX-License-Identifier: MIT */
/*
 * log.c - the relay's event log and access log.
 *
 * Event lines: "2026-01-02T03:04:05.678Z LEVEL message", one per event, the timestamp RFC
 * 3339 in UTC with milliseconds, LEVEL one of error warn info debug. With --syslog the
 * message goes to syslog(3) instead (the daemon adds its own time and the ident
 * "tide-relay[PID]", so a leading "tide-relay: " is left out) at the matching priority,
 * facility daemon. syslog(3) drops lines without a word when no daemon listens on /dev/log,
 * so opening the log checks that the socket takes a connection; when it does not, a warning
 * says why and lines go to stderr instead (until a reload finds the socket).
 *
 * Access lines (--access-log), one per connection when it ends; fields in this order,
 * separated by one space, stable (new fields are only ever added at the end):
 *
 *   TIME access client=ADDR listener=ADDR upstream=ADDR bytes_up=N bytes_down=N
 *        duration_ms=N.NNN end=REASON
 *
 * (in the event log, "TIME info access ..."). ADDR is "1.2.3.4:80", "[::1]:80" or "-"; bytes_up
 * went client -> upstream, bytes_down upstream -> client; REASON is clean, reset, timeout, drain,
 * refused, unreachable or error.
 *
 * Rate limiting: a repeated event (an upstream refusing, a client over its limit) is keyed
 * by the caller; each key may log `burst` lines per interval. Later ones in the interval are
 * counted, not written, and the next line for that key (or relay_log_flush_suppressed, from
 * a timer, or closing the log) first writes "suppressed K lines: KEY". Keys live in a small table
 * with least-recently-used replacement, so a flood of distinct keys costs bounded memory (a
 * replaced key reports what it suppressed before it goes).
 *
 * Thread-safety: every line is formatted into a local buffer and written with one write(2)
 * under a mutex, so lines from workers never interleave and an O_APPEND access file stays
 * whole-line even with another writer. The mutex also guards the rate-limit table.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ops.h"

#define LINE_MAX_BYTES 2048
#define KEYS	       64
#define KEY_LEN	       96

struct limit_key {
	char key[KEY_LEN];
	enum relay_log_level level;
	uint64_t window_start, last_use;
	unsigned in_window;
	unsigned long long suppressed;
};

static struct {
	pthread_mutex_t lock;
	struct relay_log_config cfg;
	char access_path[4096];
	int access_fd; /* -1: with the event log */
	bool syslog_open;
	struct limit_key keys[KEYS];
} L = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cfg = {.level = RELAY_LOG_INFO, .fd = -1},
       .access_fd = -1};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
static const char *const end_names[] = {"clean",   "reset",	  "timeout", "drain",
					"refused", "unreachable", "error"};

const char *relay_log_level_name(enum relay_log_level level)
{
	return (unsigned)level <= RELAY_LOG_DEBUG ? level_names[level] : "?";
}

const char *relay_end_name(enum relay_end end)
{
	return (unsigned)end <= RELAY_END_ERROR ? end_names[end] : "?";
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(void)
{
	return L.cfg.clock_ms ? L.cfg.clock_ms() : mono_ms();
}

void relay_log_timestamp(int64_t realtime_ms, char *buf, size_t n)
{
	time_t sec = (time_t)(realtime_ms / 1000);
	struct tm tm;
	char day[32];

	gmtime_r(&sec, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, n, "%s.%03dZ", day, (int)(realtime_ms % 1000));
}

static int64_t realtime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* a log that cannot be written is not worth stopping for */
		p += w;
		n -= (size_t)w;
	}
}

/* Under L.lock: write one event line (msg without the newline). */
static void emit(enum relay_log_level level, const char *msg)
{
	char line[LINE_MAX_BYTES + 64], ts[32];
	int len;

	if (L.cfg.syslog) {
		if (!strncmp(msg, "tide-relay: ", 12))
			msg += 12; /* the ident says it */
		syslog(syslog_prio[level], "%s", msg);
		return;
	}
	relay_log_timestamp(realtime_ms(), ts, sizeof(ts));
	len = snprintf(line, sizeof(line), "%s %s %s\n", ts, level_names[level], msg);
	if (len >= (int)sizeof(line)) {
		len = (int)sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	write_all(L.cfg.fd >= 0 ? L.cfg.fd : STDERR_FILENO, line, (size_t)len);
}

static int open_access(const char *path, int *fd)
{
	int f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (f < 0)
		return -errno;
	*fd = f;
	return 0;
}

/* Whether the syslog daemon's socket (_PATH_LOG, which syslog(3) uses, datagram first) takes
 * a connection: 0 or -errno. */
static int syslog_reachable(void)
{
	static const int types[] = {SOCK_DGRAM, SOCK_STREAM};
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int err = ENOENT;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", _PATH_LOG);
	for (unsigned i = 0; i < 2; i++) {
		int fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -errno;
		if (!connect(fd, (struct sockaddr *)&a, sizeof(a))) {
			close(fd);
			return 0;
		}
		err = errno;
		close(fd);
		if (err != EPROTOTYPE) /* a stream socket is worth a try only then */
			break;
	}
	return -err;
}

/* Under L.lock: syslog as asked, or a warning and stderr when no daemon takes lines. */
static void syslog_setup(void)
{
	char msg[256];
	int rc;

	if (!L.cfg.syslog)
		return;
	rc = syslog_reachable();
	if (rc) {
		L.cfg.syslog = false;
		snprintf(msg, sizeof(msg),
			 "--syslog: %s: %s (no syslog daemon?); logging here instead", _PATH_LOG,
			 strerror(-rc));
		emit(RELAY_LOG_WARN, msg);
		return;
	}
	if (!L.syslog_open) {
		openlog("tide-relay", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		L.syslog_open = true;
	}
}

int relay_log_open(const struct relay_log_config *cfg)
{
	int fd = -1, rc;

	if (cfg->access && cfg->access_path && cfg->access_path[0]) {
		rc = open_access(cfg->access_path, &fd);
		if (rc)
			return rc;
	}
	pthread_mutex_lock(&L.lock);
	if (L.access_fd >= 0)
		close(L.access_fd);
	L.access_fd = fd;
	L.cfg = *cfg;
	if (!L.cfg.burst)
		L.cfg.burst = 5;
	if (!L.cfg.interval_ms)
		L.cfg.interval_ms = 1000;
	snprintf(L.access_path, sizeof(L.access_path), "%s",
		 cfg->access_path ? cfg->access_path : "");
	L.cfg.access_path = L.access_path;
	syslog_setup();
	pthread_mutex_unlock(&L.lock);
	return 0;
}

/* Under L.lock: say what k suppressed, and forget it. */
static void report_suppressed(struct limit_key *k)
{
	char msg[KEY_LEN + 64];

	if (!k->suppressed)
		return;
	snprintf(msg, sizeof(msg), "suppressed %llu line%s: %s", k->suppressed,
		 k->suppressed == 1 ? "" : "s", k->key);
	emit(k->level, msg);
	k->suppressed = 0;
}

void relay_log_close(void)
{
	pthread_mutex_lock(&L.lock);
	for (unsigned i = 0; i < KEYS && L.keys[i].key[0]; i++)
		report_suppressed(&L.keys[i]); /* a count is never lost at exit */
	if (L.access_fd >= 0)
		close(L.access_fd);
	L.access_fd = -1;
	if (L.syslog_open)
		closelog();
	L.syslog_open = false;
	memset(L.keys, 0, sizeof(L.keys));
	L.cfg = (struct relay_log_config){.level = RELAY_LOG_INFO, .fd = -1};
	pthread_mutex_unlock(&L.lock);
}

int relay_log_reopen(void)
{
	int fd = -1, rc = 0;

	pthread_mutex_lock(&L.lock);
	if (L.access_fd >= 0) {
		rc = open_access(L.access_path, &fd);
		if (!rc) {
			close(L.access_fd);
			L.access_fd = fd;
		}
	}
	pthread_mutex_unlock(&L.lock);
	return rc;
}

bool relay_log_enabled(enum relay_log_level level)
{
	bool on;

	pthread_mutex_lock(&L.lock);
	on = level <= L.cfg.level;
	pthread_mutex_unlock(&L.lock);
	return on;
}

static void vlog(enum relay_log_level level, const char *fmt, va_list ap)
{
	char msg[LINE_MAX_BYTES];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	emit(level, msg);
}

void relay_log(enum relay_log_level level, const char *fmt, ...)
{
	va_list ap;

	if ((unsigned)level > RELAY_LOG_DEBUG)
		return;
	pthread_mutex_lock(&L.lock);
	if (level <= L.cfg.level) {
		va_start(ap, fmt);
		vlog(level, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&L.lock);
}

/* Under L.lock: the slot of key, taking the least recently used one if it is new. */
static struct limit_key *slot_of(const char *key, enum relay_log_level level, uint64_t now)
{
	struct limit_key *lru = &L.keys[0];

	for (unsigned i = 0; i < KEYS; i++) {
		struct limit_key *k = &L.keys[i];

		if (k->key[0] && !strncmp(k->key, key, KEY_LEN - 1))
			return k;
		if (!k->key[0] || k->last_use < lru->last_use)
			lru = k;
		if (!k->key[0])
			break;
	}
	report_suppressed(lru);
	memset(lru, 0, sizeof(*lru));
	snprintf(lru->key, sizeof(lru->key), "%s", key);
	lru->level = level;
	lru->window_start = now;
	return lru;
}

bool relay_log_limited(enum relay_log_level level, const char *key, const char *fmt, ...)
{
	struct limit_key *k;
	uint64_t now;
	bool logged = false;
	va_list ap;

	if ((unsigned)level > RELAY_LOG_DEBUG)
		return false;
	pthread_mutex_lock(&L.lock);
	if (level > L.cfg.level)
		goto out;
	now = now_ms();
	k = slot_of(key, level, now);
	k->last_use = now;
	if (now - k->window_start >= L.cfg.interval_ms) {
		report_suppressed(k);
		k->window_start = now;
		k->in_window = 0;
	}
	if (k->in_window >= L.cfg.burst) {
		k->suppressed++;
		goto out;
	}
	k->in_window++;
	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
	logged = true;
out:
	pthread_mutex_unlock(&L.lock);
	return logged;
}

void relay_log_flush_suppressed(void)
{
	uint64_t now;

	pthread_mutex_lock(&L.lock);
	now = now_ms();
	for (unsigned i = 0; i < KEYS && L.keys[i].key[0]; i++)
		if (now - L.keys[i].window_start >= L.cfg.interval_ms)
			report_suppressed(&L.keys[i]);
	pthread_mutex_unlock(&L.lock);
}

void relay_log_access(const struct relay_access *a)
{
	char client[64], listener[64], upstream[64], ts[32], body[400], line[448];
	int len;

	pthread_mutex_lock(&L.lock);
	if (!L.cfg.access)
		goto out;
	relay_addr_format(a->client, client, sizeof(client));
	relay_addr_format(a->listener, listener, sizeof(listener));
	relay_addr_format(a->upstream, upstream, sizeof(upstream));
	snprintf(body, sizeof(body),
		 "access client=%s listener=%s upstream=%s bytes_up=%llu bytes_down=%llu "
		 "duration_ms=%llu.%03llu end=%s",
		 client, listener, upstream, (unsigned long long)a->bytes_up,
		 (unsigned long long)a->bytes_down, (unsigned long long)(a->duration_us / 1000),
		 (unsigned long long)(a->duration_us % 1000), relay_end_name(a->end));
	if (L.access_fd < 0) {
		emit(RELAY_LOG_INFO, body); /* "TIME info access ..." (or syslog) */
		goto out;
	}
	relay_log_timestamp(realtime_ms(), ts, sizeof(ts));
	len = snprintf(line, sizeof(line), "%s %s\n", ts, body);
	write_all(L.access_fd, line, (size_t)len);
out:
	pthread_mutex_unlock(&L.lock);
}
