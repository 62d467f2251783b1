/* SPDX-License-Identifier: MIT */
/*
 * Description: tide-relay end to end on loopback. Each case (argv[1]) starts the relay
 * binary as a child with --listen 127.0.0.1:0 --stats 127.0.0.1:0, reads the ports from its
 * stderr, and checks behaviour through sockets and /stats:
 *   echo       many concurrent connections (two workers), random sizes, content compared
 *   relay      the same through a relay in front of an echo relay
 *   pressure   the echo case with a 2 MiB pool: rings run dry and receives wait
 *   modes      the echo case without incremental rings, without bundles, without both
 *   halfclose  a client's FIN reaches the upstream, which still answers after it
 *   reset      a client reset (SO_LINGER 0) mid-transfer closes the upstream side too
 *   maxconns   connections past --max-conns are reset at once, the others keep working
 *   slowreader a client that never reads: its writes stall and the pool stays bounded
 *   idle       --idle-timeout closes an idle connection, not a busy one; idle memory
 *   idlepair   idle relayed clients (client, upstream and the pair between them) cost
 *              under 0.25 KiB of relay RSS each without operator options, under 0.5 KiB
 *              with --access-log, --max-conns-per-ip and --send-proxy v2 (release tree)
 *   shutdown   SIGTERM with connections open: exit 0 and every buffer returned
 *   cli        --help, --version, and exit status 2 with a message for bad arguments
 *   nouring    io_uring refused (seccomp EPERM): a plain message and exit status 3
 * Exits 77 when io_uring is not available here. Every loop is bounded in count and time.
 */
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "helpers.h"

#ifndef TIDE_RELAY_PATH
#define TIDE_RELAY_PATH "tide-relay"
#endif

struct relay {
	pid_t pid;
	int err;
	unsigned port, stats_port;
	char log[65536];
	size_t loglen;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Read what the relay wrote to stderr, waiting up to ms; false at EOF. */
static bool relay_read_log(struct relay *r, int ms)
{
	struct pollfd pf = {r->err, POLLIN, 0};
	ssize_t n;

	if (r->err < 0 || poll(&pf, 1, ms) <= 0)
		return r->err >= 0;
	if (r->loglen >= sizeof(r->log) - 1) {
		char sink[4096];

		return read(r->err, sink, sizeof(sink)) > 0;
	}
	n = read(r->err, r->log + r->loglen, sizeof(r->log) - 1 - r->loglen);
	if (n <= 0)
		return false;
	r->loglen += (size_t)n;
	r->log[r->loglen] = '\0';
	return true;
}

/* Start tide-relay with args (NULL-terminated) after the listen and stats options. */
static void relay_start(struct relay *r, const char *const *args)
{
	const char *argv[32] = {TIDE_RELAY_PATH, "--listen", "127.0.0.1:0", "--stats",
				"127.0.0.1:0"};
	unsigned argc = 5;
	int fds[2];
	uint64_t deadline = now_ms() + 20000;
	const char *p;

	memset(r, 0, sizeof(*r));
	while (*args && argc < 31)
		argv[argc++] = *args++;
	argv[argc] = NULL;
	REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
	fflush(NULL);
	r->pid = fork();
	REQUIRE(r->pid >= 0);
	if (r->pid == 0) {
		dup2(fds[1], 2);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	r->err = fds[0];
	while (now_ms() < deadline && !strstr(r->log, "stats on"))
		if (!relay_read_log(r, 200))
			break;
	p = strstr(r->log, "listening on 127.0.0.1:");
	if (p)
		r->port = (unsigned)atoi(p + strlen("listening on 127.0.0.1:"));
	p = strstr(r->log, "stats on 127.0.0.1:");
	if (p)
		r->stats_port = (unsigned)atoi(p + strlen("stats on 127.0.0.1:"));
	if (!r->port || !r->stats_port) {
		int status = 0;

		kill(r->pid, SIGKILL);
		waitpid(r->pid, &status, 0);
		while (relay_read_log(r, 100))
			;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
			skip("tide-relay: %s", r->log);
		fprintf(stderr, "tide-relay did not start:\n%s\n", r->log);
		exit(1);
	}
}

/* SIGTERM, wait for the exit (20 s at most), return the exit status (or 128 + signal). */
static int relay_stop(struct relay *r)
{
	uint64_t deadline = now_ms() + 20000;
	int status = 0;
	pid_t got = 0;

	kill(r->pid, SIGTERM);
	while (now_ms() < deadline && relay_read_log(r, 200))
		;
	while ((got = waitpid(r->pid, &status, WNOHANG)) == 0 && now_ms() < deadline)
		sleep_ms(10);
	if (got == 0) {
		fprintf(stderr, "tide-relay did not stop in time\n");
		kill(r->pid, SIGKILL);
		waitpid(r->pid, &status, 0);
	}
	close(r->err);
	r->err = -1;
	if (!strstr(r->log, "live_buffers=0 "))
		fprintf(stderr, "relay log:\n%s\n", r->log);
	return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static int connect_to(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		close(fd);
		return -1;
	}
	return fd;
}

static int listen_any(unsigned *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	REQUIRE(fd >= 0);
	REQUIRE(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	REQUIRE(listen(fd, 64) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void set_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void set_timeout(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Fetch /stats into buf; false on failure. */
static bool stats_get(unsigned port, char *buf, size_t len)
{
	int fd = connect_to(port);
	size_t have = 0;
	const char *req = "GET /stats HTTP/1.0\r\n\r\n";

	if (fd < 0)
		return false;
	set_timeout(fd, 5000);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		close(fd);
		return false;
	}
	while (have < len - 1) {
		ssize_t n = read(fd, buf + have, len - 1 - have);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	close(fd);
	return strstr(buf, "\"pool\"") != NULL;
}

/* The first number after "key": in the /stats document, or -1. */
static long long stat_num(unsigned port, const char *key)
{
	static char buf[16384];
	char pat[64];
	const char *p;

	if (!stats_get(port, buf, sizeof(buf)))
		return -1;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(buf, pat);
	return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* Wait up to ms for the stat to equal want; returns the last value seen. */
static long long stat_wait(unsigned port, const char *key, long long want, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;
	long long v;

	for (;;) {
		v = stat_num(port, key);
		if (v == want || now_ms() >= deadline)
			return v;
		sleep_ms(50);
	}
}

/* Echo one small message on fd; true when it came back. */
static bool ping(int fd, char c)
{
	char got = 0;

	set_timeout(fd, 5000);
	return write(fd, &c, 1) == 1 && read(fd, &got, 1) == 1 && got == c;
}

/* Read until EOF or a reset within ms: true when the peer ended the connection. */
static bool wait_closed(int fd, int ms)
{
	char buf[4096];
	uint64_t deadline = now_ms() + (uint64_t)ms;

	set_timeout(fd, 200);
	while (now_ms() < deadline) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return true;
	}
	return false;
}

/* --------------------------------------------------------- load clients -- */

#define PATTERN_SIZE (1u << 20)
static unsigned char *pattern;

struct client {
	int fd;
	size_t size, sent, got, start;
	bool shut, done, bad;
};

/*
 * total connections, at most conc at once, each sending a random-size payload (then FIN)
 * and reading the echo to EOF; every byte is compared. Returns connections that were right.
 */
static unsigned run_clients(unsigned port, unsigned total, unsigned conc, size_t max_size,
			    uint64_t seed, unsigned budget_ms)
{
	struct client *c = calloc(conc, sizeof(*c));
	struct pollfd *pf = calloc(conc, sizeof(*pf));
	unsigned started = 0, ok = 0, active = 0;
	uint64_t deadline = now_ms() + budget_ms;
	unsigned char buf[65536];

	REQUIRE(c && pf);
	if (!pattern) {
		pattern = malloc(PATTERN_SIZE * 2);
		REQUIRE(pattern);
		for (size_t i = 0; i < PATTERN_SIZE; i++)
			pattern[i] = (unsigned char)rng_next(&seed);
		memcpy(pattern + PATTERN_SIZE, pattern, PATTERN_SIZE); /* reads may wrap */
	}
	for (unsigned i = 0; i < conc; i++)
		c[i].fd = -1;
	while ((started < total || active) && now_ms() < deadline) {
		for (unsigned i = 0; i < conc && started < total; i++) {
			if (c[i].fd >= 0)
				continue;
			memset(&c[i], 0, sizeof(c[i]));
			c[i].fd = connect_to(port);
			REQUIRE(c[i].fd >= 0);
			set_nonblock(c[i].fd);
			switch (rng_below(&seed, 8)) {
			case 0:
				c[i].size = 0;
				break;
			case 1:
				c[i].size = 1 + rng_below(&seed, 100);
				break;
			default:
				c[i].size = rng_below(&seed, max_size + 1);
			}
			c[i].start = rng_below(&seed, PATTERN_SIZE);
			started++;
			active++;
		}
		for (unsigned i = 0; i < conc; i++) {
			pf[i].fd = c[i].fd;
			pf[i].events = POLLIN | (c[i].sent < c[i].size ? POLLOUT : 0);
			pf[i].revents = 0;
		}
		if (poll(pf, conc, 200) < 0)
			continue;
		for (unsigned i = 0; i < conc; i++) {
			struct client *k = &c[i];

			if (k->fd < 0)
				continue;
			while (k->sent < k->size) {
				size_t n = k->size - k->sent;
				ssize_t w;
				const unsigned char *src;

				src = pattern + (k->start + k->sent) % PATTERN_SIZE;
				if (n > PATTERN_SIZE)
					n = PATTERN_SIZE;
				w = send(k->fd, src, n, MSG_NOSIGNAL);
				if (w <= 0)
					break;
				k->sent += (size_t)w;
			}
			if (k->sent == k->size && !k->shut) {
				shutdown(k->fd, SHUT_WR);
				k->shut = true;
			}
			for (;;) {
				ssize_t n = recv(k->fd, buf, sizeof(buf), 0);

				if (n > 0) {
					const unsigned char *want =
						pattern + (k->start + k->got) % PATTERN_SIZE;

					if (k->got + (size_t)n > k->size ||
					    memcmp(buf, want, (size_t)n))
						k->bad = true;
					k->got += (size_t)n;
					continue;
				}
				if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
					k->done = true;
				break;
			}
			if (k->done) {
				if (!k->bad && k->got == k->size && k->sent == k->size)
					ok++;
				else
					fprintf(stderr, "client: size %zu sent %zu got %zu%s\n",
						k->size, k->sent, k->got,
						k->bad ? " (content differs)" : "");
				close(k->fd);
				k->fd = -1;
				active--;
			}
		}
	}
	for (unsigned i = 0; i < conc; i++)
		if (c[i].fd >= 0) {
			fprintf(stderr, "client: timed out at size %zu sent %zu got %zu\n",
				c[i].size, c[i].sent, c[i].got);
			close(c[i].fd);
		}
	free(c);
	free(pf);
	return ok;
}

/* ---------------------------------------------------------------- cases -- */

static void case_echo(void)
{
	struct relay r;
	const char *args[] = {"--echo", "--threads", "2", NULL};
	unsigned ok;

	relay_start(&r, args);
	ok = run_clients(r.port, 600, 150, 256 * 1024, test_seed(11), 40000);
	CHECK_EQ(ok, 600);
	CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	CHECK(stat_num(r.stats_port, "total") == 600);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void case_pressure(void)
{
	struct relay r;
	const char *args[] = {"--echo", "--pool-max", "2M", "--block-size", "16K", NULL};
	unsigned ok;

	/* 128 buffers for 200 busy connections: rings run dry, receives wait for buffers. */
	relay_start(&r, args);
	ok = run_clients(r.port, 400, 200, 256 * 1024, test_seed(13), 40000);
	CHECK_EQ(ok, 400);
	CHECK(stat_num(r.stats_port, "unreserved_size") <= 2 << 20);
	printf("pressure: enobufs %lld, alloc failures %lld\n", stat_num(r.stats_port, "enobufs"),
	       stat_num(r.stats_port, "alloc_failures"));
	CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void case_modes(void)
{
	static const char *const envs[][2] = {
		{"TIDE_RELAY_NO_INCREMENTAL", NULL},
		{"TIDE_RELAY_NO_BUNDLE", NULL},
		{"TIDE_RELAY_NO_BUNDLE", "TIDE_RELAY_NO_INCREMENTAL"},
		{"TIDE_RELAY_NO_RECV_LIMIT", NULL},
		{"TIDE_RELAY_NO_RECV_LIMIT", "TIDE_RELAY_NO_INCREMENTAL"},
	};
	const char *args[] = {"--echo", "--block-size", "8K", NULL};

	for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++) {
		struct relay r;

		for (int k = 0; k < 2; k++)
			if (envs[i][k])
				setenv(envs[i][k], "1", 1);
		relay_start(&r, args);
		CHECKF(run_clients(r.port, 200, 50, 128 * 1024, test_seed(21 + i), 30000) == 200,
		       "mode %zu", i);
		CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
		CHECK_EQ(relay_stop(&r), 0);
		CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
		unsetenv("TIDE_RELAY_NO_BUNDLE");
		unsetenv("TIDE_RELAY_NO_INCREMENTAL");
		unsetenv("TIDE_RELAY_NO_RECV_LIMIT");
	}
}

static void case_relay(void)
{
	struct relay up, r;
	const char *uargs[] = {"--echo", NULL};
	char upstream[64];
	const char *args[] = {"--upstream", upstream, "--block-size", "16K", NULL};
	unsigned ok;

	relay_start(&up, uargs);
	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", up.port);
	relay_start(&r, args);
	ok = run_clients(r.port, 400, 100, 512 * 1024, test_seed(12), 40000);
	CHECK_EQ(ok, 400);
	CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	CHECK_EQ(stat_wait(up.stats_port, "current", 0, 5000), 0);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
	CHECK_EQ(relay_stop(&up), 0);
	CHECK(strstr(up.log, "live_buffers=0 ") != NULL);
}

static void case_halfclose(void)
{
	struct relay r;
	unsigned uport;
	int lfd = listen_any(&uport), cfd, ufd;
	char upstream[64], buf[64];
	const char *args[] = {"--upstream", upstream, NULL};
	ssize_t n;
	size_t have = 0;

	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", uport);
	relay_start(&r, args);
	cfd = connect_to(r.port);
	REQUIRE(cfd >= 0);
	set_timeout(cfd, 5000);
	set_timeout(lfd, 5000);
	ufd = accept(lfd, NULL, NULL);
	REQUIRE(ufd >= 0);
	set_timeout(ufd, 5000);
	CHECK(write(cfd, "hello", 5) == 5);
	CHECK(shutdown(cfd, SHUT_WR) == 0);
	/* The upstream gets the data, then EOF: the FIN was passed on. */
	while (have < sizeof(buf) && (n = read(ufd, buf + have, sizeof(buf) - have)) > 0)
		have += (size_t)n;
	CHECK_EQ(have, 5);
	CHECK(!memcmp(buf, "hello", 5));
	CHECK_EQ(n, 0);
	/* The other direction is still open: an answer after the FIN reaches the client. */
	CHECK(write(ufd, "world", 5) == 5);
	CHECK(shutdown(ufd, SHUT_WR) == 0);
	have = 0;
	while (have < sizeof(buf) && (n = read(cfd, buf + have, sizeof(buf) - have)) > 0)
		have += (size_t)n;
	CHECK_EQ(have, 5);
	CHECK(!memcmp(buf, "world", 5));
	CHECK_EQ(n, 0);
	close(cfd);
	close(ufd);
	CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	CHECK_EQ(stat_num(r.stats_port, "reset"), 0);
	close(lfd);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void reset_fd(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static void case_reset(void)
{
	struct relay r;
	unsigned uport;
	int lfd = listen_any(&uport), cfd, ufd;
	char upstream[64], buf[4096];
	const char *args[] = {"--upstream", upstream, NULL};
	size_t have = 0;

	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", uport);
	relay_start(&r, args);
	set_timeout(lfd, 5000);
	for (int round = 0; round < 2; round++) {
		/* round 0: the client resets; round 1: the upstream resets. */
		cfd = connect_to(r.port);
		REQUIRE(cfd >= 0);
		ufd = accept(lfd, NULL, NULL);
		REQUIRE(ufd >= 0);
		set_timeout(cfd, 5000);
		set_timeout(ufd, 5000);
		memset(buf, 'r', sizeof(buf));
		for (int i = 0; i < 64; i++) {
			CHECK(write(round ? ufd : cfd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
		}
		have = 0;
		while (have < 8192) {
			ssize_t n = read(round ? cfd : ufd, buf, sizeof(buf));

			if (n <= 0)
				break;
			have += (size_t)n;
		}
		CHECK(have >= 8192);
		reset_fd(round ? ufd : cfd);
		CHECKF(wait_closed(round ? cfd : ufd, 5000), "round %d: other side not closed",
		       round);
		close(round ? cfd : ufd);
		CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	}
	CHECK(stat_num(r.stats_port, "reset") >= 1);
	/* An upstream that refuses: the client is closed, the failure counted. */
	{
		unsigned dead;
		int dfd = listen_any(&dead), rfd;
		char addr[64];
		const char *a2[] = {"--upstream", addr, NULL};
		struct relay r2;

		close(dfd);
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", dead);
		relay_start(&r2, a2);
		rfd = connect_to(r2.port);
		REQUIRE(rfd >= 0);
		CHECK(wait_closed(rfd, 5000));
		close(rfd);
		CHECK_EQ(stat_wait(r2.stats_port, "upstream_failures", 1, 5000), 1);
		CHECK_EQ(stat_wait(r2.stats_port, "current", 0, 5000), 0);
		CHECK_EQ(relay_stop(&r2), 0);
	}
	/* The relay still works. */
	cfd = connect_to(r.port);
	ufd = accept(lfd, NULL, NULL);
	REQUIRE(cfd >= 0 && ufd >= 0);
	set_timeout(ufd, 5000);
	CHECK(write(cfd, "x", 1) == 1);
	CHECK(read(ufd, buf, 1) == 1 && buf[0] == 'x');
	close(cfd);
	close(ufd);
	close(lfd);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void case_maxconns(void)
{
	struct relay r;
	const char *args[] = {"--echo", "--max-conns", "8", NULL};
	int keep[8], extra[24];
	unsigned closed = 0;

	relay_start(&r, args);
	for (int i = 0; i < 8; i++) {
		keep[i] = connect_to(r.port);
		REQUIRE(keep[i] >= 0);
		CHECK(ping(keep[i], (char)('a' + i)));
	}
	CHECK_EQ(stat_wait(r.stats_port, "current", 8, 5000), 8);
	for (int i = 0; i < 24; i++) {
		extra[i] = connect_to(r.port);
		REQUIRE(extra[i] >= 0);
	}
	for (int i = 0; i < 24; i++) {
		if (wait_closed(extra[i], 5000))
			closed++;
		close(extra[i]);
	}
	CHECK_EQ(closed, 24);
	CHECK_EQ(stat_wait(r.stats_port, "rejected", 24, 5000), 24);
	for (int i = 0; i < 8; i++)
		CHECK(ping(keep[i], (char)('A' + i)));
	close(keep[0]);
	CHECK_EQ(stat_wait(r.stats_port, "current", 7, 5000), 7);
	keep[0] = connect_to(r.port);
	REQUIRE(keep[0] >= 0);
	CHECK(ping(keep[0], 'z'));
	for (int i = 0; i < 8; i++)
		close(keep[i]);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void case_slowreader(void)
{
	struct relay r;
	const char *args[] = {"--echo", NULL};
	enum {
		N = 4
	};
	int fd[N];
	size_t written[N] = {0}, cap = (size_t)256 << 20;
	static char buf[65536];
	long long live, bound = 48ll << 20;
	uint64_t deadline;

	relay_start(&r, args);
	memset(buf, 's', sizeof(buf));
	for (int i = 0; i < N; i++) {
		fd[i] = connect_to(r.port);
		REQUIRE(fd[i] >= 0);
		set_nonblock(fd[i]);
	}
	/* Write for 3 s (or until 256 MiB each); nobody reads the echo. */
	deadline = now_ms() + 3000;
	while (now_ms() < deadline) {
		bool any = false;

		for (int i = 0; i < N; i++) {
			ssize_t w;

			if (written[i] >= cap)
				continue;
			w = send(fd[i], buf, sizeof(buf), MSG_NOSIGNAL);
			if (w > 0) {
				written[i] += (size_t)w;
				any = true;
			}
		}
		if (!any)
			sleep_ms(20);
	}
	live = stat_num(r.stats_port, "live_bytes");
	printf("slow readers: wrote %zu %zu %zu %zu bytes, relay live %lld bytes\n", written[0],
	       written[1], written[2], written[3], live);
	for (int i = 0; i < N; i++)
		CHECKF(written[i] < cap, "client %d wrote %zu bytes: no backpressure", i,
		       written[i]);
	CHECKF(live >= 0 && live <= bound, "live_bytes %lld over %lld", live, bound);
	CHECK(stat_num(r.stats_port, "pauses") >= N);
	for (int i = 0; i < N; i++)
		close(fd[i]);
	CHECK_EQ(stat_wait(r.stats_port, "current", 0, 5000), 0);
	CHECK_EQ(relay_stop(&r), 0);
	CHECK(strstr(r.log, "live_buffers=0 ") != NULL);
}

static void case_idle(void)
{
	struct relay r;
	const char *args[] = {"--echo", "--idle-timeout", "1", NULL};
	int idle, busy;
	uint64_t end;
	bool busy_ok = true;

	relay_start(&r, args);
	idle = connect_to(r.port);
	busy = connect_to(r.port);
	REQUIRE(idle >= 0 && busy >= 0);
	CHECK(ping(idle, 'i'));
	/* The busy one talks every 200 ms for 2.5 s and must stay; the idle one must go. */
	end = now_ms() + 2500;
	while (now_ms() < end) {
		busy_ok = busy_ok && ping(busy, 'b');
		sleep_ms(200);
	}
	CHECK(busy_ok);
	CHECK(wait_closed(idle, 3000));
	CHECK(ping(busy, 'c'));
	CHECK(stat_num(r.stats_port, "idle_closed") >= 1);
	close(idle);
	close(busy);
	CHECK_EQ(relay_stop(&r), 0);

	/* Idle connections cost the relay under 1 KiB of resident memory each. */
	if (!TEST_ASAN) {
		enum {
			MAXN = 10000
		};
		static int fds[MAXN];
		const char *a2[] = {"--echo", NULL};
		long long before, after;
		struct rlimit rl;
		int n = 0, N = MAXN;

		/* 10k connections when this process may hold that many descriptors. */
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < (rlim_t)MAXN + 100)
			N = rl.rlim_cur > 1200 ? (int)rl.rlim_cur - 100 : 0;
		if (!N) {
			printf("idle memory: skipped, RLIMIT_NOFILE is %llu\n",
			       (unsigned long long)rl.rlim_cur);
			return;
		}
		relay_start(&r, a2);
		/* A first batch warms up what is allocated once. */
		for (; n < 100; n++)
			REQUIRE((fds[n] = connect_to(r.port)) >= 0);
		stat_wait(r.stats_port, "current", n, 5000);
		before = pid_rss(r.pid);
		for (; n < N; n++)
			REQUIRE((fds[n] = connect_to(r.port)) >= 0);
		CHECK_EQ(stat_wait(r.stats_port, "current", N, 10000), N);
		after = pid_rss(r.pid);
		printf("idle connections: %lld bytes of relay RSS each\n",
		       (after - before) / (N - 100));
		CHECKF(after - before < (long long)(N - 100) * 1024,
		       "%lld bytes for %d idle connections", after - before, N - 100);
		for (n = 0; n < N; n++)
			close(fds[n]);
		CHECK_EQ(relay_stop(&r), 0);
	}
}

#if defined(__SANITIZE_THREAD__)
#define TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#endif
#endif
#ifndef TEST_TSAN
#define TEST_TSAN 0
#endif

/* Accept what is pending on the non-blocking listener ls into held[]; the new count. */
static int accept_pending(int ls, int *held, int n, int max)
{
	int fd;

	while (n < max && (fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		held[n++] = fd;
	return n;
}

/*
 * Resident bytes per idle relayed client: N clients through the relay to an upstream that
 * accepts and holds; the relay's RSS over a first warm-up batch, per client. -1 when this
 * process may not hold the descriptors.
 */
static long long idle_pair_bytes(const char *const *extra, int N)
{
	enum {
		WARM = 100
	};
	static int fds[4096], held[4096];
	const char *args[16] = {"--upstream", NULL};
	char upstream[64];
	struct rlimit rl;
	struct relay r;
	unsigned port;
	int ls, n = 0, got = 0, a = 2;
	long long before, after;
	uint64_t end;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (N > 4096 || rl.rlim_cur < (rlim_t)(2 * N + 100))
		return -1;
	ls = listen_any(&port);
	REQUIRE(listen(ls, 4096) == 0);
	set_nonblock(ls);
	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", port);
	args[1] = upstream;
	while (*extra && a < 15)
		args[a++] = *extra++;
	args[a] = NULL;
	relay_start(&r, args);
	for (; n < WARM; n++) {
		REQUIRE((fds[n] = connect_to(r.port)) >= 0);
		got = accept_pending(ls, held, got, N);
	}
	for (end = now_ms() + 10000; got < n && now_ms() < end; sleep_ms(10))
		got = accept_pending(ls, held, got, N);
	before = pid_rss(r.pid);
	for (; n < N; n++) {
		REQUIRE((fds[n] = connect_to(r.port)) >= 0);
		got = accept_pending(ls, held, got, N);
	}
	for (end = now_ms() + 20000; got < N && now_ms() < end; sleep_ms(10))
		got = accept_pending(ls, held, got, N);
	CHECK_EQ(got, N); /* every client has its upstream connection */
	after = pid_rss(r.pid);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	for (int i = 0; i < got; i++)
		close(held[i]);
	close(ls);
	CHECK_EQ(relay_stop(&r), 0);
	return (after - before) / (N - WARM);
}

static void case_idlepair(void)
{
	const char *plain[] = {NULL};
	const char *ops[] = {
		"--access-log", "/dev/null", "--max-conns-per-ip", "100000", "--send-proxy",
		"v2",		NULL};
	long long b0, b1;
	const int N = 4000;

	b0 = idle_pair_bytes(plain, N);
	if (b0 < 0) {
		printf("idle pairs: skipped, RLIMIT_NOFILE is under %d\n", 2 * N + 100);
		return;
	}
	b1 = idle_pair_bytes(ops, N);
	printf("idle relayed clients: %lld bytes of relay RSS each; %lld with --access-log, "
	       "--max-conns-per-ip and --send-proxy v2\n",
	       b0, b1);
	if (TEST_ASAN || TEST_TSAN)
		return; /* a sanitizer's allocator and shadow are not what is measured */
	CHECKF(b0 < 256, "%lld bytes per idle relayed client (goal: under 0.2 KiB)", b0);
	CHECKF(b1 < 512, "%lld bytes per idle relayed client with the options", b1);
}

static void case_shutdown(void)
{
	struct relay up, r;
	const char *uargs[] = {"--echo", NULL};
	char upstream[64];
	const char *args[] = {"--upstream", upstream, NULL};
	enum {
		N = 40
	};
	int fd[N];
	static char buf[65536];
	int st;

	relay_start(&up, uargs);
	snprintf(upstream, sizeof(upstream), "127.0.0.1:%u", up.port);
	relay_start(&r, args);
	memset(buf, 'd', sizeof(buf));
	for (int i = 0; i < N; i++) {
		fd[i] = connect_to(r.port);
		REQUIRE(fd[i] >= 0);
		set_nonblock(fd[i]);
		/* Half of them have data in flight that nobody reads. */
		if (i % 2)
			for (int k = 0; k < 16; k++)
				if (send(fd[i], buf, sizeof(buf), MSG_NOSIGNAL) <= 0)
					break;
	}
	CHECK_EQ(stat_wait(r.stats_port, "current", N, 5000), N);
	st = relay_stop(&r);
	CHECK_EQ(st, 0);
	CHECK(strstr(r.log, "shutdown: live_buffers=0 live_bytes=0") != NULL);
	for (int i = 0; i < N; i++) {
		set_nonblock(fd[i]);
		CHECK(wait_closed(fd[i], 5000));
		close(fd[i]);
	}
	st = relay_stop(&up);
	CHECK_EQ(st, 0);
	CHECK(strstr(up.log, "shutdown: live_buffers=0 live_bytes=0") != NULL);
}

/* Run the relay with args and no stats; return its exit status, output in out. */
static int relay_run(const char *const *args, char *out, size_t len)
{
	const char *argv[16] = {TIDE_RELAY_PATH};
	unsigned argc = 1;
	int fds[2], status = 0;
	size_t have = 0;
	ssize_t n;
	pid_t pid;

	while (*args && argc < 15)
		argv[argc++] = *args++;
	argv[argc] = NULL;
	REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	set_timeout(fds[0], 10000);
	while (have < len - 1 && (n = read(fds[0], out + have, len - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void case_cli(void)
{
	static const char *const bad[][8] = {
		{"--echo", NULL},
		{"--listen", "127.0.0.1:0", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--upstream", "127.0.0.1:1", NULL},
		{"--listen", "nocolon", "--echo", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--block-size", "3000", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--block-size", "4M", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--pool-max", "1X", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--threads", "0", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--idle-timeout", "-1", NULL},
		{"--listen", "127.0.0.1:0", "--echo", "--bogus", NULL},
		{"--listen", "127.0.0.1:99999", "--echo", NULL},
	};
	static const char *const help[] = {"--help", NULL};
	static const char *const version[] = {"--version", NULL};
	char out[8192];

	CHECK_EQ(relay_run(help, out, sizeof(out)), 0);
	CHECK(strstr(out, "--upstream HOST:PORT") && strstr(out, "--idle-timeout SEC"));
	CHECK_EQ(relay_run(version, out, sizeof(out)), 0);
	CHECK(strstr(out, "tide-relay 0.") != NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECKF(relay_run(bad[i], out, sizeof(out)) == 2, "case %zu: %s", i, out);
		CHECKF(strstr(out, "tide-relay: ") != NULL, "case %zu: no message", i);
	}
}

/* In the child: make io_uring_setup fail with EPERM, as a locked-down container does. */
static void deny_io_uring(void)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(filter) / sizeof(filter[0]), filter};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0))
		_exit(99);
}

static void case_nouring(void)
{
	const char *argv[] = {TIDE_RELAY_PATH, "--listen", "127.0.0.1:0", "--echo", NULL};
	char out[4096];
	size_t have = 0;
	ssize_t n;
	int fds[2], status = 0;
	pid_t pid;

	REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 2);
		deny_io_uring();
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	set_timeout(fds[0], 10000);
	while (have < sizeof(out) - 1 && (n = read(fds[0], out + have, sizeof(out) - 1 - have)) > 0)
		have += (size_t)n;
	out[have] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 99)
		skip("cannot install a seccomp filter here");
	CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 3, "status %d: %s", status, out);
	CHECKF(strstr(out, "io_uring") && strstr(out, "refused"), "message: %s", out);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"echo", case_echo},   {"relay", case_relay},	    {"halfclose", case_halfclose},
		{"reset", case_reset}, {"maxconns", case_maxconns}, {"slowreader", case_slowreader},
		{"idle", case_idle},   {"idlepair", case_idlepair}, {"shutdown", case_shutdown},
		{"cli", case_cli},     {"pressure", case_pressure}, {"nouring", case_nouring},
		{"modes", case_modes},
	};
	const char *want = argc > 1 ? argv[1] : "echo";
	bool found = false;

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (!strcmp(want, "all") || !strcmp(want, cases[i].name)) {
			printf("case %s\n", cases[i].name);
			fflush(stdout);
			cases[i].fn();
			found = true;
		}
	if (!found) {
		fprintf(stderr, "unknown case '%s'\n", want);
		return 1;
	}
	free(pattern);
	return test_exit("test_relay");
}
