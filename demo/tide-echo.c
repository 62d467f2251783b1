// SPDX-License-Identifier: MIT
/*
 * tide-echo.c - a small TCP echo server, the upstream of the demo.
 *
 * What it does: accepts on HOST:PORT and sends every byte it receives back on
 * the same connection. It is deliberately plain (one thread, epoll, one 64 KiB
 * buffer per connection, read() and write()), so the demo measures the relay
 * in front of it and not a second copy of the relay's own machinery.
 *
 * Invariants: a connection's buffer holds bytes read and not yet written back;
 * while it is not empty the connection is not read (backpressure: a client that
 * does not read its echo stops being read, so memory stays bounded at one
 * buffer per connection). An EOF from the client is passed on as a FIN once
 * everything before it was written back (half-close). SIGINT or SIGTERM closes
 * everything and exits 0; --max-time bounds the run.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

#define BUF_SIZE   65536u
#define MAX_EVENTS 256

struct conn {
	int fd;
	bool eof;      /* the client sent FIN */
	bool fin_sent; /* FIN passed back */
	size_t head, tail;
	unsigned char buf[BUF_SIZE];
};

static const char *prog = "tide-echo";
static volatile sig_atomic_t stop_requested;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: %s --listen HOST:PORT [--max-time SEC]\n"
		"\n"
		"A plain TCP echo server (one thread, epoll): every byte received is sent back\n"
		"on the same connection; a FIN is passed back after the data before it.\n"
		"SIGINT or SIGTERM stops it with exit status 0.\n"
		"\n"
		"  -l, --listen HOST:PORT  address to listen on (loopback in the demo)\n"
		"  -t, --max-time SEC      exit by itself after SEC seconds (default 600)\n"
		"  -h, --help              this text\n",
		prog);
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int listen_on(const char *hostport)
{
	char host[256];
	const char *colon = strrchr(hostport, ':');
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
	int fd, one = 1, err;

	if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
		fprintf(stderr, "%s: bad address '%s': want HOST:PORT\n", prog, hostport);
		return -1;
	}
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	err = getaddrinfo(host, colon + 1, &hints, &res);
	if (err) {
		fprintf(stderr, "%s: %s: %s\n", prog, hostport, gai_strerror(err));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 4096)) {
		fprintf(stderr, "%s: listen on %s: %s\n", prog, hostport, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void conn_free(int epfd, struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/*
 * Move bytes: write out what is buffered, read more only when the buffer is
 * empty. Returns false when the connection is finished or broken.
 */
static bool conn_pump(struct conn *c)
{
	for (;;) {
		while (c->head < c->tail) {
			ssize_t w = send(c->fd, c->buf + c->head, c->tail - c->head, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN || errno == EWOULDBLOCK;
			}
			c->head += (size_t)w;
		}
		c->head = c->tail = 0;
		if (c->eof) {
			if (!c->fin_sent) {
				shutdown(c->fd, SHUT_WR);
				c->fin_sent = true;
			}
			return false;
		}
		ssize_t r = recv(c->fd, c->buf, BUF_SIZE, 0);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN || errno == EWOULDBLOCK;
		}
		if (r == 0)
			c->eof = true;
		c->tail = (size_t)r;
	}
}

int main(int argc, char **argv)
{
	const char *addr = NULL;
	double max_time = 600;
	struct epoll_event evs[MAX_EVENTS], ev;
	struct sigaction sa = {.sa_handler = on_signal};
	struct timespec t0, t;
	struct rlimit rl;
	int lfd, epfd;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if (i + 1 < argc &&
			   (!strcmp(argv[i], "-l") || !strcmp(argv[i], "--listen"))) {
			addr = argv[++i];
		} else if (i + 1 < argc &&
			   (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--max-time"))) {
			char *end;

			max_time = strtod(argv[++i], &end);
			if (*end || !(max_time > 0)) {
				fprintf(stderr, "%s: bad --max-time '%s'\n", prog, argv[i]);
				return 2;
			}
		} else {
			fprintf(stderr, "%s: unknown or incomplete option '%s' (see --help)\n",
				prog, argv[i]);
			return 2;
		}
	}
	if (!addr) {
		fprintf(stderr, "%s: --listen HOST:PORT is required (see --help)\n", prog);
		return 2;
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	lfd = listen_on(addr);
	if (lfd < 0)
		return 1;
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev)) {
		fprintf(stderr, "%s: epoll: %s\n", prog, strerror(errno));
		return 1;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &t0);

	while (!stop_requested) {
		int n = epoll_wait(epfd, evs, MAX_EVENTS, 200);

		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((double)(t.tv_sec - t0.tv_sec) > max_time)
			break;
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				int fd;

				while ((fd = accept4(lfd, NULL, NULL,
						     SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					int one = 1;

					c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
					ev.data.ptr = c;
					if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)) {
						close(fd);
						free(c);
						continue;
					}
					if (!conn_pump(c))
						conn_free(epfd, c);
				}
				continue;
			}
			if ((evs[i].events & EPOLLERR) || !conn_pump(c))
				conn_free(epfd, c);
		}
	}
	/* Connections still open are closed by exit; the kernel frees their sockets. */
	close(lfd);
	close(epfd);
	return 0;
}
