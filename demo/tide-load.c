// SPDX-License-Identifier: MIT
/*
 * tide-load.c - a bounded, scheduled load generator for an echo path.
 *
 * What it does: it plays a schedule of phases against HOST:PORT, where an echo
 * server (directly, or behind tide-relay) sends every byte back. A quiet phase
 * holds no connection. A burst phase opens CONNS connections over a short ramp;
 * each sends BYTES bytes paced at RATE bytes per second and reads the echo
 * back, checking every byte by content, then closes. The relay in front sees
 * its in-flight data rise in the bursts and fall to nothing in the quiet, which
 * is what makes its pool grow and shrink.
 *
 * Content check: the bytes of connection c at stream offset i are
 * pattern[(base(c) + i) mod P], where pattern is a random table of a prime
 * length P (a little over 1 MiB) and base(c) differs per connection. A lost,
 * duplicated, reordered or foreign byte lands at the wrong place in the table
 * and fails the comparison, unless it is displaced by a multiple of P. The
 * table is stored with its first CHUNK bytes repeated after its end, so any
 * CHUNK-long run starting below P is contiguous and can be sent or compared
 * in one call, without copying.
 *
 * Structure: one thread, one epoll set, non-blocking sockets, edge-triggered.
 * A tick of TICK_MS drives the pacing (each connection may have sent
 * rate * elapsed bytes by now), the ramp and the phase clock; socket events
 * drive reads and the writes that were blocked. Everything is bounded: each
 * phase ends at its time, connections still open then are counted as
 * unfinished and closed, and the whole run stops by --max-time at the latest.
 *
 * Output: a line as each phase starts ("T s  phase N burst starts: ...") and one as it
 * ends, with its counts, then a summary; T is seconds since the start. run-demo.sh reads
 * the phase lines to mark and shade the phases.
 *
 * Exit status: 0 when every connection of every burst was echoed in full and
 * every byte matched; 1 for a mismatch, a connection error or an interruption;
 * 3 when the only fault is connections unfinished at their phase's end (the
 * path, or a busy machine, could not carry the rate in time); 2 bad usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATTERN_LEN 1048573u /* a prime a little under 1 MiB */
#define CHUNK	    65536u   /* largest single send or receive */
#define TICK_MS	    5
#define MAX_PHASES  32
#define MAX_EVENTS  512

enum phase_kind {
	PHASE_QUIET,
	PHASE_BURST
};

struct phase {
	enum phase_kind kind;
	double seconds;
	unsigned conns;
	uint64_t bytes; /* per connection */
	uint64_t rate;	/* bytes per second per connection; 0 = unpaced */
};

enum conn_state {
	CONN_FREE,
	CONN_CONNECTING,
	CONN_OPEN
};

struct conn {
	int fd;
	enum conn_state state;
	bool writable;
	bool fin_sent;
	uint32_t id;	/* global connection number, selects the pattern offset */
	uint64_t sent;	/* bytes written */
	uint64_t recvd; /* bytes read back and checked */
	double start;	/* when the connect was issued */
};

struct totals {
	unsigned long opened, done, failed, unfinished, mismatches;
	uint64_t bytes_echoed;
};

static const char *prog = "tide-load";
static unsigned char *pattern; /* PATTERN_LEN + CHUNK bytes */
static unsigned char rxbuf[CHUNK];
static volatile sig_atomic_t stop_requested;
static int verbose;
static bool half_close;
static int rcvbuf;

static struct conn *conns;
static unsigned nconns;	 /* slots allocated for the current burst */
static unsigned nactive; /* connecting or open */
static uint32_t next_id;
static struct totals tot, ptot; /* whole run, current phase */
static int epfd;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s --connect HOST:PORT [options]\n"
		"\n"
		"Plays a schedule of connection bursts against an echo service (directly or\n"
		"through tide-relay), checks every echoed byte by content, and stops by itself.\n"
		"\n"
		"Options:\n"
		"  -c, --connect HOST:PORT  where to connect (required)\n"
		"  -s, --schedule LIST      comma-separated phases (default below):\n"
		"                             quiet:SEC                     no connections\n"
		"                             burst:SEC:CONNS:BYTES[:RATE]  CONNS connections, "
		"each\n"
		"                               sends BYTES at RATE bytes/s (0 or absent: "
		"unpaced)\n"
		"                               and reads them back; SEC bounds the phase\n"
		"                           sizes take K, M, G suffixes (powers of 1024)\n"
		"  -r, --ramp MS            spread a burst's connects over MS ms (default 200)\n"
		"      --rcvbuf BYTES       SO_RCVBUF on each client socket (default: kernel's)\n"
		"      --half-close         send FIN after the last byte and expect EOF back\n"
		"  -t, --max-time SEC       hard bound on the whole run (default: schedule + 5)\n"
		"      --seed N             pattern seed (default 1)\n"
		"  -v, --verbose            print each connection error\n"
		"  -h, --help               this text\n"
		"\n"
		"Default schedule (20 s):\n"
		"  quiet:1.5,burst:5:256:2M:1M,quiet:3.5,burst:7:1024:1M:512K,quiet:3\n"
		"\n"
		"Output: one line per phase, then a summary. Exit 0 when every connection\n"
		"was echoed in full and every byte matched; 1 for a mismatch, a connection\n"
		"error or an interruption; 3 when connections were only unfinished at their\n"
		"phase's end (too slow); 2 for bad usage.\n",
		prog);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A whole number with an optional K, M or G suffix (powers of 1024; "KiB", "KB" too). */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (*s == '-' || *s == '+')
		return false;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
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
	default:
		break;
	}
	if (shift) {
		end++;
		if (v > (UINT64_MAX >> shift))
			return false;
		v <<= shift;
	}
	if (*end == 'i' || *end == 'B')
		end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
	if (*end)
		return false;
	*out = v;
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0) || v > 3600)
		return false;
	*out = v;
	return true;
}

/* Parse one phase, "quiet:SEC" or "burst:SEC:CONNS:BYTES[:RATE]"; the text is modified. */
static bool parse_phase(char *text, struct phase *ph)
{
	char *field[6];
	unsigned n = 0;
	uint64_t v;

	for (char *save = NULL, *t = strtok_r(text, ":", &save); t && n < 6;
	     t = strtok_r(NULL, ":", &save))
		field[n++] = t;
	memset(ph, 0, sizeof(*ph));
	if (n == 2 && !strcmp(field[0], "quiet")) {
		ph->kind = PHASE_QUIET;
		return parse_seconds(field[1], &ph->seconds);
	}
	if ((n != 4 && n != 5) || strcmp(field[0], "burst"))
		return false;
	ph->kind = PHASE_BURST;
	if (!parse_seconds(field[1], &ph->seconds) || ph->seconds <= 0)
		return false;
	if (!parse_size(field[2], &v) || v == 0 || v > 100000)
		return false;
	ph->conns = (unsigned)v;
	if (!parse_size(field[3], &ph->bytes) || ph->bytes == 0 || ph->bytes > (1ull << 40))
		return false;
	if (n == 5 && !parse_size(field[4], &ph->rate))
		return false;
	return true;
}

static int parse_schedule(const char *spec, struct phase *ph, unsigned max)
{
	char *copy = strdup(spec), *save = NULL;
	int n = 0;

	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == (int)max || !parse_phase(t, &ph[n])) {
			fprintf(stderr, "%s: bad phase '%s' in --schedule (see --help)\n", prog, t);
			free(copy);
			return -1;
		}
		n++;
	}
	free(copy);
	if (n == 0)
		fprintf(stderr, "%s: empty --schedule\n", prog);
	return n ? n : -1;
}

static bool resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256], *end;
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	unsigned long port;
	int err;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) ||
	    !colon[1]) {
		fprintf(stderr, "%s: --connect '%s': want HOST:PORT\n", prog, hostport);
		return false;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || errno || colon[1] == '-' || port < 1 || port > 65535) {
		fprintf(stderr, "%s: --connect '%s': the port must be a number from 1 to 65535\n",
			prog, hostport);
		return false;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	err = getaddrinfo(host, colon + 1, &hints, &res);
	if (err) {
		fprintf(stderr, "%s: --connect '%s': cannot resolve '%s': %s\n", prog, hostport,
			host, gai_strerror(err));
		return false;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

static void fill_pattern(uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;

	for (unsigned i = 0; i < PATTERN_LEN; i++) {
		/* xorshift64*: plenty for a test pattern */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		pattern[i] = (unsigned char)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
	memcpy(pattern + PATTERN_LEN, pattern, CHUNK);
}

static inline const unsigned char *pattern_at(uint32_t id, uint64_t off)
{
	uint64_t base = ((uint64_t)id * 104729u) % PATTERN_LEN;

	return pattern + (base + off) % PATTERN_LEN;
}

static void conn_close(struct conn *c, bool ok, const char *why)
{
	if (c->state == CONN_FREE)
		return;
	if (!ok && verbose)
		fprintf(stderr, "%s: connection %u: %s (sent %llu, echoed %llu)\n", prog, c->id,
			why, (unsigned long long)c->sent, (unsigned long long)c->recvd);
	close(c->fd);
	c->fd = -1;
	c->state = CONN_FREE;
	nactive--;
	if (ok)
		ptot.done++;
	else
		ptot.failed++;
}

static void conn_open(struct conn *c, const struct sockaddr_storage *ss, socklen_t sslen)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
	int fd, one = 1;

	memset(c, 0, sizeof(*c));
	c->id = next_id++;
	c->start = now_s();
	c->fd = -1;
	ptot.opened++;
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		if (verbose)
			fprintf(stderr, "%s: socket: %s\n", prog, strerror(errno));
		ptot.failed++;
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (const struct sockaddr *)ss, sslen) < 0 && errno != EINPROGRESS) {
		if (verbose)
			fprintf(stderr, "%s: connect: %s\n", prog, strerror(errno));
		close(fd);
		ptot.failed++;
		return;
	}
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		ptot.failed++;
		return;
	}
	c->fd = fd;
	c->state = CONN_CONNECTING;
	nactive++;
}

/* Write what the pacing allows now. Returns false if the connection was closed. */
static bool conn_send(struct conn *c, const struct phase *ph, double t)
{
	uint64_t allowed = ph->bytes;

	if (c->state != CONN_OPEN)
		return true;
	if (ph->rate) {
		double may = (t - c->start) * (double)ph->rate;

		if (may < (double)allowed)
			allowed = (uint64_t)may;
	}
	while (c->writable && c->sent < allowed) {
		uint64_t n = allowed - c->sent;
		ssize_t w;

		if (n > CHUNK)
			n = CHUNK;
		w = send(c->fd, pattern_at(c->id, c->sent), n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				c->writable = false;
				break;
			}
			if (errno == EINTR)
				continue;
			conn_close(c, false, strerror(errno));
			return false;
		}
		c->sent += (uint64_t)w;
	}
	if (half_close && !c->fin_sent && c->sent == ph->bytes) {
		shutdown(c->fd, SHUT_WR);
		c->fin_sent = true;
	}
	return true;
}

static void conn_recv(struct conn *c, const struct phase *ph)
{
	for (;;) {
		ssize_t r = recv(c->fd, rxbuf, sizeof(rxbuf), 0);

		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			if (errno == EINTR)
				continue;
			conn_close(c, false, strerror(errno));
			return;
		}
		if (r == 0) {
			if (c->recvd == ph->bytes && half_close)
				conn_close(c, true, NULL);
			else
				conn_close(c, false, "closed by peer before the whole echo");
			return;
		}
		if (c->recvd + (uint64_t)r > c->sent || c->recvd + (uint64_t)r > ph->bytes) {
			ptot.mismatches++;
			conn_close(c, false, "more bytes echoed than sent");
			return;
		}
		if (memcmp(rxbuf, pattern_at(c->id, c->recvd), (size_t)r)) {
			ptot.mismatches++;
			conn_close(c, false, "echoed bytes differ from those sent");
			return;
		}
		c->recvd += (uint64_t)r;
		ptot.bytes_echoed += (uint64_t)r;
		if (c->recvd == ph->bytes && !half_close) {
			conn_close(c, true, NULL);
			return;
		}
	}
}

static void conn_event(struct conn *c, uint32_t events, const struct phase *ph, double t)
{
	if (c->state == CONN_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err) {
			conn_close(c, false, strerror(err));
			return;
		}
		c->state = CONN_OPEN;
	}
	if (events & EPOLLOUT)
		c->writable = true;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		conn_recv(c, ph);
	if (c->state == CONN_OPEN)
		conn_send(c, ph, t);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void add_totals(void)
{
	tot.opened += ptot.opened;
	tot.done += ptot.done;
	tot.failed += ptot.failed;
	tot.unfinished += ptot.unfinished;
	tot.mismatches += ptot.mismatches;
	tot.bytes_echoed += ptot.bytes_echoed;
}

/* Run one burst phase until all its connections are done or its time is up. */
static void run_burst(const struct phase *ph, double ramp, const struct sockaddr_storage *ss,
		      socklen_t sslen, double deadline)
{
	struct epoll_event evs[MAX_EVENTS];
	double t0 = now_s(), end = t0 + ph->seconds;
	unsigned launched = 0;

	if (end > deadline)
		end = deadline;
	nconns = ph->conns;
	conns = calloc(nconns, sizeof(*conns));
	if (!conns) {
		fprintf(stderr, "%s: out of memory\n", prog);
		ptot.failed += ph->conns;
		return;
	}
	for (;;) {
		double t = now_s();
		unsigned due;
		int n;

		if (stop_requested || t >= end)
			break;
		due = ramp > 0 ? (unsigned)((t - t0) / ramp * ph->conns) + 1 : ph->conns;
		if (due > ph->conns)
			due = ph->conns;
		while (launched < due)
			conn_open(&conns[launched++], ss, sslen);
		if (launched == ph->conns && nactive == 0)
			break;
		for (unsigned i = 0; i < launched; i++)
			if (conns[i].state == CONN_OPEN)
				conn_send(&conns[i], ph, t);
		n = epoll_wait(epfd, evs, MAX_EVENTS, TICK_MS);
		t = now_s();
		for (int i = 0; i < n; i++)
			conn_event(evs[i].data.ptr, evs[i].events, ph, t);
	}
	for (unsigned i = 0; i < launched; i++) {
		struct conn *c = &conns[i];

		if (c->state == CONN_FREE)
			continue;
		if (verbose)
			fprintf(stderr, "%s: connection %u: unfinished (sent %llu, echoed %llu)\n",
				prog, c->id, (unsigned long long)c->sent,
				(unsigned long long)c->recvd);
		close(c->fd);
		c->state = CONN_FREE;
		nactive--;
		ptot.unfinished++;
	}
	free(conns);
	conns = NULL;
	nconns = 0;
}

static void sleep_until(double until)
{
	while (!stop_requested) {
		double left = until - now_s();
		struct timespec ts;

		if (left <= 0)
			return;
		if (left > 0.1)
			left = 0.1;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)(left * 1e9);
		nanosleep(&ts, NULL);
	}
}

static void raise_nofile(unsigned want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want + 64) {
		rl.rlim_cur = rl.rlim_max < want + 64 ? rl.rlim_max : want + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* A bad value for an option: say which and why, exit status 2. */
static int bad_value(const char *opt, const char *v, const char *want)
{
	fprintf(stderr, "%s: --%s '%s': %s (see --help)\n", prog, opt, v, want);
	return 2;
}

/*
 * The command line, with getopt_long. Returns -1 to go on, or an exit status: 0 after
 * --help, 2 for bad usage (the message says which option and what it wants).
 */
static int parse_args(int argc, char **argv, const char **target, const char **schedule,
		      double *ramp, double *max_time, uint64_t *seed)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"schedule", required_argument, NULL, 's'},
		{"ramp", required_argument, NULL, 'r'},
		{"rcvbuf", required_argument, NULL, 'B'},
		{"half-close", no_argument, NULL, 'H'},
		{"max-time", required_argument, NULL, 't'},
		{"seed", required_argument, NULL, 'S'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	uint64_t b;
	double ms;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:s:r:t:vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			*target = optarg;
			break;
		case 's':
			*schedule = optarg;
			break;
		case 'r':
			if (!parse_seconds(optarg, &ms))
				return bad_value("ramp", optarg, "milliseconds, 0 to 3600");
			*ramp = ms / 1000.0;
			break;
		case 'B':
			if (!parse_size(optarg, &b) || b == 0 || b > INT_MAX)
				return bad_value("rcvbuf", optarg,
						 "bytes, 1 to 2G-1 (K, M suffixes)");
			rcvbuf = (int)b;
			break;
		case 'H':
			half_close = true;
			break;
		case 't':
			if (!parse_seconds(optarg, max_time) || *max_time <= 0)
				return bad_value("max-time", optarg, "seconds, above 0 up to 3600");
			break;
		case 'S':
			if (!parse_size(optarg, seed))
				return bad_value("seed", optarg, "a whole number");
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "%s: %s needs a value (see --help)\n", prog,
				argv[optind - 1]);
			return 2;
		default:
			if (optopt)
				fprintf(stderr, "%s: unknown option '-%c' (see --help)\n", prog,
					optopt);
			else
				fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog,
					argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[optind]);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	const char *schedule = "quiet:1.5,burst:5:256:2M:1M,quiet:3.5,burst:7:1024:1M:512K,quiet:3";
	struct phase phases[MAX_PHASES];
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	double ramp = 0.2, max_time = -1, total = 0, t_start, deadline;
	uint64_t seed = 1;
	unsigned max_conns = 0;
	int nphases;
	struct sigaction sa = {.sa_handler = on_signal};

	int rc = parse_args(argc, argv, &target, &schedule, &ramp, &max_time, &seed);

	if (rc >= 0)
		return rc;
	if (!target) {
		fprintf(stderr, "%s: --connect HOST:PORT is required (see --help)\n", prog);
		return 2;
	}
	if (!resolve(target, &ss, &sslen))
		return 2;
	nphases = parse_schedule(schedule, phases, MAX_PHASES);
	if (nphases < 0)
		return 2;
	for (int i = 0; i < nphases; i++) {
		total += phases[i].seconds;
		if (phases[i].conns > max_conns)
			max_conns = phases[i].conns;
	}
	if (max_time < 0)
		max_time = total + 5;
	raise_nofile(max_conns);

	pattern = malloc(PATTERN_LEN + CHUNK);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!pattern || epfd < 0) {
		fprintf(stderr, "%s: setup failed: %s\n", prog, strerror(errno));
		return 1;
	}
	fill_pattern(seed);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	t_start = now_s();
	deadline = t_start + max_time;
	for (int i = 0; i < nphases && !stop_requested; i++) {
		const struct phase *ph = &phases[i];
		double p0 = now_s();

		memset(&ptot, 0, sizeof(ptot));
		if (ph->kind == PHASE_QUIET)
			printf("%6.1f s  phase %d quiet starts: %.1f s, no connections\n",
			       p0 - t_start, i + 1, ph->seconds);
		else
			printf("%6.1f s  phase %d burst starts: %u connections, each echoing %.1f "
			       "MiB at %.1f MiB/s, within %.1f s\n",
			       p0 - t_start, i + 1, ph->conns, (double)ph->bytes / (1 << 20),
			       (double)ph->rate / (1 << 20), ph->seconds);
		fflush(stdout);
		if (ph->kind == PHASE_QUIET) {
			double until = p0 + ph->seconds;

			sleep_until(until < deadline ? until : deadline);
			printf("%6.1f s  phase %d quiet ends\n", now_s() - t_start, i + 1);
		} else {
			run_burst(ph, ramp, &ss, sslen, deadline);
			printf("%6.1f s  phase %d burst ends: %lu done, %lu failed, %lu "
			       "unfinished, "
			       "%lu mismatched, %.1f MiB echoed\n",
			       now_s() - t_start, i + 1, ptot.done, ptot.failed, ptot.unfinished,
			       ptot.mismatches, (double)ptot.bytes_echoed / (1 << 20));
			fflush(stdout);
			/* A burst that ended early leaves the rest of its time quiet. */
			sleep_until(p0 + ph->seconds < deadline ? p0 + ph->seconds : deadline);
		}
		fflush(stdout);
		add_totals();
		if (now_s() >= deadline)
			break;
	}
	printf("%s: %lu connections, %lu echoed in full, %lu failed, %lu unfinished, "
	       "%lu mismatched; %.1f MiB echoed and checked%s\n",
	       prog, tot.opened, tot.done, tot.failed, tot.unfinished, tot.mismatches,
	       (double)tot.bytes_echoed / (1 << 20), stop_requested ? " (interrupted)" : "");
	free(pattern);
	close(epfd);
	if (tot.failed || tot.mismatches || stop_requested)
		return 1;
	return tot.unfinished ? 3 : 0;
}
