/* SPDX-License-Identifier: MIT */
/*
 * log.c - the relay's event log and access log.
 *
 * Event lines: "2026-01-02T03:04:05.678Z LEVEL message", one per event, the timestamp RFC
 * 3339 in UTC with milliseconds, LEVEL one of error warn info debug. With --syslog the
 * message goes to the syslog daemon instead (it adds its own time and the ident
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
 * refused, unreachable, error or resource (the relay's own descriptors, memory or local
 * ports ran out: not the server's fault).
 *
 * Rate limiting: a repeated event (an upstream refusing, a client over its limit) is keyed
 * by the caller; each key may log `burst` lines per interval. Later ones in the interval are
 * counted, not written, and the next line for that key (or relay_log_flush_suppressed, from
 * a timer, or closing the log) first writes "suppressed K lines: KEY". Keys live in a small table
 * with least-recently-used replacement, so a flood of distinct keys costs bounded memory (a
 * replaced key reports what it suppressed before it goes).
 *
 * Logging never blocks the data path (workers write access lines and failures): like
 * haproxy's log sockets, every destination is written without waiting, and a line the
 * destination cannot take now (EAGAIN: a syslog daemon that stopped reading /dev/log, a full
 * pipe on stderr, a FIFO as access log) is dropped and counted (relay_log_dropped(),
 * tide_relay_log_dropped_lines_total); the next line that goes through is preceded by
 * "dropped K log lines". syslog(3) would block in sendto, so the relay writes the
 * protocol itself: a datagram "<PRI>Mmm dd hh:mm:ss tide-relay[PID]: message" on its own
 * non-blocking socket connected to /dev/log (reconnected once when the daemon restarted).
 * stderr, when it is a pipe, FIFO or terminal, is reopened through /proc/self/fd/2 as a new
 * non-blocking open file (the shared one keeps its flags, so the parent's terminal is not
 * changed); a socket (journald's stdout) is written with MSG_DONTWAIT; a regular file as is.
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
#include <sys/stat.h>
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
	int out_fd;    /* event lines without syslog: stderr (reopened non-blocking) or cfg.fd */
	bool out_sock; /* out_fd is a socket: send(MSG_DONTWAIT) */
	int syslog_fd; /* our socket to /dev/log, non-blocking; -1 closed */
	bool syslog_open;
	_Atomic unsigned long long dropped; /* lines a destination could not take now */
	unsigned long long dropped_said;    /* of them, already said in the log */
	struct limit_key keys[KEYS];
} L = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .cfg = {.level = RELAY_LOG_INFO, .fd = -1},
       .access_fd = -1,
       .out_fd = -1,
       .syslog_fd = -1};

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
static const char *const end_names[] = {"clean",   "reset",	  "timeout", "drain",
					"refused", "unreachable", "error",   "resource"};

const char *relay_log_level_name(enum relay_log_level level)
{
	return (unsigned)level <= RELAY_LOG_DEBUG ? level_names[level] : "?";
}

const char *relay_end_name(enum relay_end end)
{
	return (unsigned)end <= RELAY_END_RESOURCE ? end_names[end] : "?";
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

/* Write a whole line without waiting; false (the line dropped and counted) when fd cannot
 * take it now or at all. */
static bool write_line(int fd, bool sock, const char *p, size_t n)
{
	while (n) {
		ssize_t w = sock ? send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) : write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) { /* EAGAIN, or a log that cannot be written: not worth stopping for */
			atomic_fetch_add_explicit(&L.dropped, 1, memory_order_relaxed);
			return false;
		}
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* Under L.lock: where event lines go without syslog. */
static int out_fd(void)
{
	return L.cfg.fd >= 0 ? L.cfg.fd : L.out_fd >= 0 ? L.out_fd : STDERR_FILENO;
}

/* Under L.lock: one timestamped line to fd. */
static bool emit_plain(enum relay_log_level level, const char *msg, int fd)
{
	char line[LINE_MAX_BYTES + 64], ts[32];
	int len;

	relay_log_timestamp(realtime_ms(), ts, sizeof(ts));
	len = snprintf(line, sizeof(line), "%s %s %s\n", ts, level_names[level], msg);
	if (len >= (int)sizeof(line)) {
		len = (int)sizeof(line) - 1;
		line[len - 1] = '\n';
	}
	return write_line(fd, fd == L.out_fd && L.out_sock, line, (size_t)len);
}

/* Under L.lock: (re)connect our datagram socket to the syslog daemon; -1 when it fails. */
static void syslog_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	if (L.syslog_fd >= 0)
		close(L.syslog_fd);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", _PATH_LOG);
	L.syslog_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (L.syslog_fd >= 0 && connect(L.syslog_fd, (struct sockaddr *)&a, sizeof(a))) {
		close(L.syslog_fd);
		L.syslog_fd = -1;
	}
}

/* Under L.lock: one datagram to the syslog daemon, "<PRI>Mmm dd hh:mm:ss tide-relay[PID]: msg"
 * (what syslog(3) sends), never waiting; reconnects once if the daemon went away. */
static bool syslog_send(int prio, const char *msg)
{
	char line[LINE_MAX_BYTES + 128], stamp[32];
	time_t now = time(NULL);
	struct tm tm;
	int len;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
	len = snprintf(line, sizeof(line), "<%d>%s tide-relay[%d]: %s", LOG_DAEMON | prio, stamp,
		       (int)getpid(), msg);
	if (len >= (int)sizeof(line))
		len = (int)sizeof(line) - 1;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (L.syslog_fd >= 0 &&
		    send(L.syslog_fd, line, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL) == len)
			return true;
		if (L.syslog_fd >= 0 && (errno == EAGAIN || errno == ENOBUFS || attempt))
			break;	  /* a stalled daemon: drop, never wait */
		syslog_connect(); /* the daemon restarted (ECONNREFUSED, ENOTCONN): once more */
	}
	atomic_fetch_add_explicit(&L.dropped, 1, memory_order_relaxed);
	return false;
}

/* Under L.lock: say how many lines were dropped since it was last said, if any. */
static void say_dropped(void)
{
	unsigned long long d = atomic_load_explicit(&L.dropped, memory_order_relaxed);
	char msg[96];

	if (d == L.dropped_said)
		return;
	snprintf(msg, sizeof(msg), "dropped %llu log line%s (the log did not take them in time)",
		 d - L.dropped_said, d - L.dropped_said == 1 ? "" : "s");
	L.dropped_said = d;
	if (L.cfg.syslog)
		syslog_send(syslog_prio[RELAY_LOG_WARN], msg);
	else
		emit_plain(RELAY_LOG_WARN, msg, out_fd());
}

/* Under L.lock: write one event line (msg without the newline). */
static void emit(enum relay_log_level level, const char *msg)
{
	bool ok;

	if (L.cfg.syslog) {
		if (!strncmp(msg, "tide-relay: ", 12))
			msg += 12; /* the ident says it */
		ok = syslog_send(syslog_prio[level], msg);
	} else {
		ok = emit_plain(level, msg, out_fd());
	}
	if (ok)
		say_dropped();
}

static int open_access(const char *path, int *fd)
{
	int f, rc = relay_log_opener_open(path, fd); /* after --user: root's helper */

	if (rc != -ENOENT && rc != -EPIPE)
		return rc;
	f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0640);

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
		syslog_connect();
		L.syslog_open = true;
	}
}

/* Under L.lock: event lines to stderr without waiting (see the note at the top). */
static void stderr_setup(void)
{
	struct stat st;

	if (L.out_fd >= 0)
		close(L.out_fd);
	L.out_fd = -1;
	L.out_sock = false;
	if (L.cfg.fd >= 0 || fstat(STDERR_FILENO, &st))
		return;
	if (S_ISSOCK(st.st_mode)) {
		L.out_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
		L.out_sock = L.out_fd >= 0;
	} else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		L.out_fd = open("/proc/self/fd/2", O_WRONLY | O_APPEND | O_NONBLOCK | O_CLOEXEC);
	} /* a regular file (or no /proc): stderr as it is */
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
	stderr_setup();
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
	if (L.syslog_fd >= 0)
		close(L.syslog_fd);
	L.syslog_fd = -1;
	L.syslog_open = false;
	if (L.out_fd >= 0)
		close(L.out_fd);
	L.out_fd = -1;
	L.out_sock = false;
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

unsigned long long relay_log_dropped(void)
{
	return atomic_load_explicit(&L.dropped, memory_order_relaxed);
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
	write_line(L.access_fd, false, line, (size_t)len);
out:
	pthread_mutex_unlock(&L.lock);
}
