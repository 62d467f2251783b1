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
#include <getopt.h>
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

/* HOST:PORT (IPv6 as [ADDR]:PORT) into @ss; false with a message saying what is wrong. */
static bool resolve(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256], *end;
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
	unsigned long port;
	size_t hl;
	int err;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "%s: --connect '%s': want HOST:PORT\n", prog, hostport);
		return false;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || colon[1] == '-' || port < 1 || port > 65535) {
		fprintf(stderr, "%s: --connect '%s': the port must be a number from 1 to 65535\n",
			prog, hostport);
		return false;
	}
	hl = (size_t)(colon - hostport);
	if (hostport[0] == '[' && hl > 2 && hostport[hl - 1] == ']') {
		memcpy(host, hostport + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		memcpy(host, hostport, hl);
		host[hl] = '\0';
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

/* @s as a number in [@lo, @hi] (a whole one when @whole) into @out; false with a message
 * naming --@opt and what it wants otherwise. */
static bool parse_num(const char *opt, const char *s, double lo, double hi, bool whole, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi) || (whole && v != (double)(long)v)) {
		fprintf(stderr, "%s: --%s '%s': want %s from %.10g to %.10g (see --help)\n", prog,
			opt, s, whole ? "a whole number" : "a number", lo, hi);
		return false;
	}
	*out = v;
	return true;
}

struct args {
	const char *target;
	double count, batch, connect_time, hold;
};

/*
 * The command line, with getopt_long. Returns -1 to go on, or an exit status: 0 after
 * --help, 2 for bad usage (the message says which option and what it wants).
 */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option opts[] = {
		{"connect", required_argument, NULL, 'c'},
		{"count", required_argument, NULL, 'n'},
		{"batch", required_argument, NULL, 'b'},
		{"connect-time", required_argument, NULL, 'T'},
		{"hold", required_argument, NULL, 'H'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:n:b:h", opts, NULL)) != -1) {
		bool ok = true;

		switch (c) {
		case 'c':
			a->target = optarg;
			break;
		case 'n':
			ok = parse_num("count", optarg, 1, 1000000, true, &a->count);
			break;
		case 'b':
			ok = parse_num("batch", optarg, 1, 100000, true, &a->batch);
			break;
		case 'T':
			ok = parse_num("connect-time", optarg, 0.1, 3600, false, &a->connect_time);
			break;
		case 'H':
			ok = parse_num("hold", optarg, 0, 3600, false, &a->hold);
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
		if (!ok)
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[optind]);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct args args = {.batch = 256, .connect_time = 30, .hold = 60};
	const char *target;
	double count, batch, connect_time, hold;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct sigaction sa = {.sa_handler = on_signal};
	struct epoll_event evs[MAX_EVENTS];
	struct rlimit rl;
	unsigned n, launched = 0, inflight = 0, open_now = 0, failed = 0, dropped = 0;
	int *fds;
	unsigned char *state;
	int epfd, rc = parse_args(argc, argv, &args);
	double t0, end;

	if (rc >= 0)
		return rc;
	target = args.target;
	count = args.count;
	batch = args.batch;
	connect_time = args.connect_time;
	hold = args.hold;
	if (!target || count < 1) {
		fprintf(stderr, "%s: --connect HOST:PORT and --count N are required\n", prog);
		return 2;
	}
	if (!resolve(target, &ss, &sslen))
		return 2;
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
