// SPDX-License-Identifier: MIT
/*
 * tide-idle.c - open N TCP connections, send nothing, hold them, then reset them.
 *
 * What it does: the relay benchmark measures what each proxy's resident memory
 * costs per idle connection. This client opens --count connections to
 * HOST:PORT (at most --batch connects in flight, so the proxy's accept queue
 * does not overflow), prints "connected N" on stdout once all are established,
 * then holds them without sending a byte until SIGTERM/SIGINT or --hold
 * seconds, and closes them with RST (SO_LINGER 0) so that no TIME_WAIT is left
 * behind for the next proxy in the run. Connections the far side closes while
 * held are counted and reported.
 *
 * Structure: one thread, one epoll set, non-blocking connects. Everything is
 * bounded: connects by --connect-time, the hold by --hold.
 *
 * Exit status: 0 when every connection was established and still open at the
 * end of the hold; 1 otherwise; 2 for bad usage.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 512

enum {
	C_FREE,
	C_CONNECTING,
	C_OPEN
};

static const char *prog = "tide-idle";
static volatile sig_atomic_t stop_requested;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s --connect HOST:PORT --count N [options]\n"
		"\n"
		"Opens N TCP connections, sends nothing, prints \"connected N\" once all are\n"
		"established, holds them until SIGTERM/SIGINT or --hold seconds, then resets\n"
		"them (SO_LINGER 0). Used to measure a proxy's memory per idle connection.\n"
		"\n"
		"  -c, --connect HOST:PORT  where to connect (required)\n"
		"  -n, --count N            connections to open (required; the open-file limit\n"
		"                           is raised to its hard maximum)\n"
		"  -b, --batch N            connects in flight at once (default 256)\n"
		"      --connect-time SEC   give up on connects after SEC seconds (default 30)\n"
		"      --hold SEC           hold at most SEC seconds (default 60)\n"
		"  -h, --help               this text\n"
		"\n"
		"Exit 0 when every connection was established and still open at the end.\n",
		prog);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host))
		return false;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &res))
		return false;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	const char *target = NULL;
	double count = 0, batch = 256, connect_time = 30, hold = 60;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct sigaction sa = {.sa_handler = on_signal};
	struct epoll_event evs[MAX_EVENTS];
	struct rlimit rl;
	unsigned n, launched = 0, inflight = 0, open_now = 0, failed = 0, dropped = 0;
	int *fds;
	unsigned char *state;
	int epfd;
	double t0, end;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = v != NULL;

		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		} else if (!v) {
			ok = false;
		} else if (!strcmp(a, "-c") || !strcmp(a, "--connect")) {
			target = v;
		} else if (!strcmp(a, "-n") || !strcmp(a, "--count")) {
			ok = parse_num(v, 1, 1000000, &count);
		} else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
			ok = parse_num(v, 1, 100000, &batch);
		} else if (!strcmp(a, "--connect-time")) {
			ok = parse_num(v, 0.1, 3600, &connect_time);
		} else if (!strcmp(a, "--hold")) {
			ok = parse_num(v, 0, 3600, &hold);
		} else {
			fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, a);
			return 2;
		}
		if (!ok) {
			fprintf(stderr, "%s: bad or missing value for %s (see --help)\n", prog, a);
			return 2;
		}
		i++;
	}
	if (!target || count < 1) {
		fprintf(stderr, "%s: --connect HOST:PORT and --count N are required\n", prog);
		return 2;
	}
	if (!resolve(target, &ss, &sslen)) {
		fprintf(stderr, "%s: cannot resolve '%s'\n", prog, target);
		return 2;
	}
	n = (unsigned)count;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 16) {
		fprintf(stderr, "%s: open-file limit %llu is too low for %u connections\n", prog,
			(unsigned long long)rl.rlim_cur, n);
		return 1;
	}
	fds = malloc(n * sizeof(*fds));
	state = calloc(n, 1);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!fds || !state || epfd < 0) {
		fprintf(stderr, "%s: setup: %s\n", prog, strerror(errno));
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	/* Connect, at most batch in flight. */
	t0 = now_s();
	while (!stop_requested && open_now + failed < n && now_s() - t0 < connect_time) {
		int k;

		while (launched < n && inflight < (unsigned)batch) {
			struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = launched};
			int fd =
				socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

			fds[launched] = fd;
			if (fd < 0 ||
			    (connect(fd, (struct sockaddr *)&ss, sslen) && errno != EINPROGRESS) ||
			    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
				fprintf(stderr, "%s: connection %u: %s\n", prog, launched,
					strerror(errno));
				if (fd >= 0)
					close(fd);
				fds[launched] = -1;
				failed++;
			} else {
				state[launched] = C_CONNECTING;
				inflight++;
			}
			launched++;
		}
		k = epoll_wait(epfd, evs, MAX_EVENTS, 100);
		for (int i = 0; i < k; i++) {
			unsigned id = evs[i].data.u32;
			int err = 0;
			socklen_t len = sizeof(err);
			struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = id};

			if (state[id] != C_CONNECTING)
				continue;
			inflight--;
			getsockopt(fds[id], SOL_SOCKET, SO_ERROR, &err, &len);
			if (err || epoll_ctl(epfd, EPOLL_CTL_MOD, fds[id], &ev)) {
				if (failed < 5)
					fprintf(stderr, "%s: connection %u: %s\n", prog, id,
						strerror(err ? err : errno));
				close(fds[id]);
				fds[id] = -1;
				state[id] = C_FREE;
				failed++;
				continue;
			}
			state[id] = C_OPEN;
			open_now++;
		}
	}
	printf("connected %u\n", open_now);
	fflush(stdout);

	/* Hold: wake only to count connections the far side closed. */
	end = now_s() + hold;
	while (!stop_requested && now_s() < end) {
		int k = epoll_wait(epfd, evs, MAX_EVENTS, 100);

		for (int i = 0; i < k; i++) {
			unsigned id = evs[i].data.u32;

			if (state[id] == C_OPEN) {
				epoll_ctl(epfd, EPOLL_CTL_DEL, fds[id], NULL);
				state[id] = C_FREE;
				close(fds[id]);
				fds[id] = -1;
				dropped++;
			}
		}
	}

	for (unsigned i = 0; i < launched; i++) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};

		if (state[i] == C_FREE || fds[i] < 0)
			continue;
		setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fds[i]);
	}
	fprintf(stderr, "%s: %u of %u connected, %u failed, %u closed by the far side while held\n",
		prog, open_now, n, failed, dropped);
	free(fds);
	free(state);
	close(epfd);
	return (open_now == n && dropped == 0) ? 0 : 1;
}
