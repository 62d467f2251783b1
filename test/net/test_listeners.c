/* SPDX-License-Identifier: MIT */
/*
 * Description: listeners opened and closed on a running agent, and TCP keepalive through the
 * engine (tide/net.h), on loopback. Each case (argv[1]):
 *   live       three workers: a listener added after start accepts on every worker (many
 *              connections, each echoed); closing the first listener makes its port refuse
 *              while a connection accepted there goes on both ways and ends clean; the port
 *              can be listened on again; a listener added and closed before start; the
 *              errors: the same address twice (-EADDRINUSE), an unknown one (-ENOENT), from
 *              a worker's thread (-EDEADLK), past 32 listeners (-ENOSPC), after stop
 *              (-ESHUTDOWN)
 *   v6only     (root; in a network namespace of its own) under net.ipv6.bindv6only 0 and 1
 *              alike: "[::]:P" takes IPv6 only and "0.0.0.0:P" beside it is a second
 *              listener; ":P" and "*:P" take IPv4 and IPv6; ":P" is the address [::]:P
 *              (-EADDRINUSE), closed by its own spelling
 *   emfile     a server process at its RLIMIT_NOFILE: accepts fail (counted in accept_errors,
 *              accept_error -EMFILE), the connections wait in the queue; once clients
 *              close, the waiting connection and a new one are served
 *   keepalive  tide_conn_keepalive on an accepted and on a connected connection sets
 *              SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT as asked (read back
 *              from the kernel), 0 turns it off; -EBUSY while connecting, -EINVAL out of
 *              range
 * Exits 77 when io_uring is not available here. Every wait is bounded.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <tide/net.h>

#include "helpers.h"
#include "agent_helpers.h"

static struct tide_pool *pool;
static struct tide_agent *agent;
static _Atomic int ends[5];	  /* per enum tide_end */
static _Atomic int per_worker[4]; /* connections opened, by worker */

static void make_agent(unsigned threads)
{
	struct tide_pool_config pc = {.block_size = 16384, .flags = TIDE_AUTO_GROW};
	struct tide_agent_config ac = {.threads = threads, .drain_timeout_ms = 2000};
	char why[256];

	if (tide_agent_probe(why, sizeof(why)))
		skip("%s", why);
	REQUIRE(tide_pool_create(&pc, &pool) == 0);
	REQUIRE(tide_agent_create(pool, &ac, &agent) == 0);
}

static void finish(void)
{
	struct tide_stats st;

	tide_agent_stop(agent);
	CHECK_EQ(tide_agent_listen(agent, "127.0.0.1:0", &(struct tide_conn_ops){0}, NULL, NULL),
		 -ESHUTDOWN);
	CHECK_EQ(tide_agent_wait(agent), 0);
	tide_agent_destroy(agent);
	tide_pool_flush_cache(pool);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 0);
	tide_pool_destroy(pool);
}

/* A connected socket to 127.0.0.1:p, or -errno of connect(). */
static int try_connect(unsigned p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
	struct timeval tv = {10, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0), err;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	err = -errno;
	close(fd);
	return err;
}

/* Send text and read it back (the echo); false on a short or failed read. */
static bool echoes(int fd, const char *text)
{
	size_t len = strlen(text), got = 0;
	char buf[256];

	if (write(fd, text, len) != (ssize_t)len)
		return false;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n <= 0)
			return false;
		got += (size_t)n;
	}
	return !memcmp(buf, text, len);
}

static char *hostport(unsigned p)
{
	static char text[4][32];
	static unsigned i;

	i = (i + 1) % 4;
	snprintf(text[i], sizeof(text[i]), "127.0.0.1:%u", p);
	return text[i];
}

/* ------------------------------------------------------------------- live -- */

static void echo_open(struct tide_conn *c)
{
	unsigned i = tide_worker_index(tide_conn_worker(c));

	if (i < 4)
		atomic_fetch_add(&per_worker[i], 1);
}

static void echo_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	tide_conn_send(c, bufs, n);
}

static void echo_eof(struct tide_conn *c)
{
	tide_conn_shutdown(c, false);
}

static void on_end(struct tide_conn *c, enum tide_end why, int err)
{
	(void)c, (void)err;
	atomic_fetch_add(&ends[why], 1);
}

static const struct tide_conn_ops echo = {
	.open = echo_open, .recv = echo_recv, .eof = echo_eof, .end = on_end};

static _Atomic int on_worker_done;
static char text6[64];
static int on_worker_rc[2];

static void from_worker(struct tide_worker *w, void *arg)
{
	(void)w, (void)arg;
	on_worker_rc[0] = tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, NULL);
	on_worker_rc[1] = tide_agent_listen_close(agent, "127.0.0.1:1");
	atomic_store(&on_worker_done, 1);
}

static void case_live(void)
{
	unsigned pa, pb, px, many[32];
	int held, fds[24], clean;

	make_agent(3);
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, &pa) == 0);
	CHECK_EQ(tide_agent_listen(agent, hostport(pa), &echo, NULL, NULL), -EADDRINUSE);
	/* before start: added and closed again, its port refuses */
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, &px) == 0);
	CHECK_EQ(tide_agent_listen_close(agent, hostport(px)), 0);
	CHECK_EQ(try_connect(px), -ECONNREFUSED);
	CHECK_EQ(tide_agent_listen_close(agent, hostport(px)), -ENOENT);
	CHECK_EQ(tide_agent_listen_close(agent, "no port"), -EINVAL);
	REQUIRE(tide_agent_start(agent) == 0);

	held = try_connect(pa);
	REQUIRE(held >= 0);
	CHECK(echoes(held, "before"));

	/* added while the workers run: every connection is served, whichever worker it hit */
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, &pb) == 0);
	for (int i = 0; i < 24; i++) {
		fds[i] = try_connect(pb);
		CHECKF(fds[i] >= 0 && echoes(fds[i], "b"), "connection %d to the new listener", i);
	}
	printf("connections to the added listener by worker: %d %d %d\n",
	       atomic_load(&per_worker[0]) - 0, atomic_load(&per_worker[1]),
	       atomic_load(&per_worker[2]));
	for (int i = 0; i < 24; i++)
		if (fds[i] >= 0)
			close(fds[i]);

	/* closed: the port refuses, the connection accepted there goes on and ends clean */
	clean = atomic_load(&ends[TIDE_END_CLEAN]);
	CHECK_EQ(tide_agent_listen_close(agent, hostport(pa)), 0);
	CHECK_EQ(try_connect(pa), -ECONNREFUSED);
	CHECK_EQ(tide_agent_listen_close(agent, hostport(pa)), -ENOENT);
	CHECK(echoes(held, "after the listener closed"));
	shutdown(held, SHUT_WR);
	{
		char c;

		CHECK_EQ(read(held, &c, 1), 0); /* the echo's FIN after ours */
	}
	close(held);
	CHECK(wait_for(&ends[TIDE_END_CLEAN], clean + 1, 5000));
	CHECK_EQ(atomic_load(&ends[TIDE_END_RESET]), 0);

	/* the same port again (the slot and the port are free) */
	REQUIRE(tide_agent_listen(agent, hostport(pa), &echo, NULL, NULL) == 0);
	held = try_connect(pa);
	CHECK(held >= 0 && echoes(held, "again"));
	if (held >= 0)
		close(held);

	/* a worker's thread would wait for itself */
	REQUIRE(tide_agent_post(agent, 1, from_worker, NULL) == 0);
	REQUIRE(wait_for(&on_worker_done, 1, 5000));
	CHECK_EQ(on_worker_rc[0], -EDEADLK);
	CHECK_EQ(on_worker_rc[1], -EDEADLK);

	/* 32 at once (two are open), then -ENOSPC; all closed again */
	for (int i = 0; i < 30; i++)
		CHECK_EQ(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, &many[i]), 0);
	CHECK_EQ(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, NULL), -ENOSPC);
	for (int i = 0; i < 30; i++)
		CHECK_EQ(tide_agent_listen_close(agent, hostport(many[i])), 0);
	CHECK_EQ(try_connect(many[29]), -ECONNREFUSED);
	CHECK_EQ(tide_agent_listen_close(agent, hostport(pb)), 0);
	CHECK_EQ(try_connect(pb), -ECONNREFUSED);
	finish();
}

/* -------------------------------------------------------------- keepalive -- */

struct ka_seen {
	int rc, off_rc, bad_rc;
	int on, idle, intvl, cnt, off;
};
static struct ka_seen ka_acc, ka_con;
static _Atomic int ka_opened;
static int ka_busy_rc = 1;
static struct tide_addrs ka_to;

static int getint(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	getsockopt(fd, level, name, &v, &len);
	return v;
}

static void ka_check(struct tide_conn *c, struct ka_seen *s)
{
	int fd = tide_conn_fd(c);

	s->bad_rc = tide_conn_keepalive(c, 40000, 0, 0);
	s->rc = tide_conn_keepalive(c, 30, 5, 3);
	s->on = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
	s->idle = getint(fd, IPPROTO_TCP, TCP_KEEPIDLE);
	s->intvl = getint(fd, IPPROTO_TCP, TCP_KEEPINTVL);
	s->cnt = getint(fd, IPPROTO_TCP, TCP_KEEPCNT);
	s->off_rc = tide_conn_keepalive(c, 0, 0, 0);
	s->off = getint(fd, SOL_SOCKET, SO_KEEPALIVE);
	tide_conn_close(c);
	atomic_fetch_add(&ka_opened, 1);
}

static void ka_acc_open(struct tide_conn *c)
{
	ka_check(c, &ka_acc);
}

static void ka_con_open(struct tide_conn *c)
{
	ka_check(c, &ka_con);
}

static const struct tide_conn_ops ka_acc_ops = {.open = ka_acc_open, .end = on_end};
static const struct tide_conn_ops ka_con_ops = {.open = ka_con_open, .end = on_end};

static void ka_connect(struct tide_worker *w, void *arg)
{
	struct tide_conn *c;

	(void)arg;
	WCHECK(tide_conn_connect(w, &ka_to, 2000, &ka_con_ops, NULL, &c) == 0);
	ka_busy_rc = tide_conn_keepalive(c, 30, 5, 3);
}

static void ka_expect(const char *leg, const struct ka_seen *s)
{
	CHECKF(s->rc == 0 && s->on == 1 && s->idle == 30 && s->intvl == 5 && s->cnt == 3,
	       "%s: rc %d, SO_KEEPALIVE %d, idle %d, intvl %d, cnt %d", leg, s->rc, s->on, s->idle,
	       s->intvl, s->cnt);
	CHECKF(s->off_rc == 0 && s->off == 0, "%s: off: rc %d, SO_KEEPALIVE %d", leg, s->off_rc,
	       s->off);
	CHECK_EQ(s->bad_rc, -EINVAL);
}

static void case_keepalive(void)
{
	unsigned p;

	make_agent(1);
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", &ka_acc_ops, NULL, &p) == 0);
	REQUIRE(tide_agent_start(agent) == 0);
	REQUIRE(tide_addrs_resolve(hostport(p), false, &ka_to) == 0);
	REQUIRE(tide_agent_post(agent, 0, ka_connect, NULL) == 0);
	CHECK(wait_for(&ka_opened, 2, 5000));
	CHECK_EQ(ka_busy_rc, -EBUSY);
	ka_expect("accepted", &ka_acc);
	ka_expect("connected", &ka_con);
	CHECK_EQ(tide_conn_keepalive(NULL, 1, 1, 1), -EINVAL);
	finish();
}

/* ----------------------------------------------------------------- emfile -- */

/* The server: an echo agent whose process may open only a few more descriptors; answers the
 * parent's 'e' with accept_errors (uint64_t) and 'q' with accept_error (int), then ends. */
static int emfile_server(int cmd, int rep)
{
	struct tide_agent_stats as;
	struct rlimit rl;
	unsigned p;
	int limit = 0;
	char c;

	make_agent(1);
	REQUIRE(tide_agent_start(agent) == 0);
	/* Descriptors take the lowest free number: the listener's and four more free under
	 * the limit, then EMFILE. The listener comes after: an accept reads the limit when it
	 * is armed. */
	for (int fd = 0, free_seen = 0; fd < 4096 && !limit; fd++)
		if (fcntl(fd, F_GETFD) < 0 && ++free_seen == 6)
			limit = fd;
	REQUIRE(limit > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0);
	rl.rlim_cur = (rlim_t)limit;
	REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", &echo, NULL, &p) == 0);
	REQUIRE(write(rep, &p, sizeof(p)) == sizeof(p));
	while (read(cmd, &c, 1) == 1 && c == 'e') {
		tide_agent_stats(agent, &as);
		REQUIRE(write(rep, &as.accept_errors, sizeof(as.accept_errors)) ==
			sizeof(as.accept_errors));
	}
	tide_agent_stats(agent, &as);
	REQUIRE(write(rep, &as.accept_error, sizeof(as.accept_error)) == sizeof(as.accept_error));
	finish();
	CHECK_EQ(atomic_load(&worker_fails), 0);
	return test_exit("test_listeners emfile server");
}

static uint64_t ask_errors(int cmd, int rep)
{
	uint64_t n = 0;

	REQUIRE(write(cmd, "e", 1) == 1);
	REQUIRE(read(rep, &n, sizeof(n)) == sizeof(n));
	return n;
}

static void case_emfile(void)
{
	int cmd[2], rep[2], fds[64], n = 0, err = 0, status;
	unsigned p;
	uint64_t errors = 0;
	pid_t pid;

	REQUIRE(pipe(cmd) == 0 && pipe(rep) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		close(cmd[1]);
		close(rep[0]);
		_exit(emfile_server(cmd[0], rep[1]));
	}
	close(cmd[0]);
	close(rep[1]);
	REQUIRE(read(rep[0], &p, sizeof(p)) == sizeof(p));
	/* Connect until the server's accept fails (the kernel queues the rest). */
	while (n < 64 && !(errors = ask_errors(cmd[1], rep[0]))) {
		REQUIRE((fds[n] = try_connect(p)) >= 0);
		n++;
		for (int tries = 0; tries < 50 && !(errors = ask_errors(cmd[1], rep[0])); tries++)
			usleep(10000); /* the accept (or its failure) is the worker's, a moment
					  later */
	}
	printf("accept failed after %d connections (%" PRIu64 " accept errors)\n", n, errors);
	CHECK(errors >= 1);
	REQUIRE(n >= 5);
	/* Descriptors come free: the waiting connection and a new one are served. */
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	CHECK(echoes(fds[n - 1], "waited"));
	fds[0] = try_connect(p);
	CHECK(fds[0] >= 0 && echoes(fds[0], "new"));
	REQUIRE(write(cmd[1], "q", 1) == 1);
	REQUIRE(read(rep[0], &err, sizeof(err)) == sizeof(err));
	CHECK_EQ(err, -EMFILE);
	if (fds[0] >= 0)
		close(fds[0]);
	for (int i = 4; i < n; i++)
		close(fds[i]);
	status = wait_child(pid, 30);
	CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ----------------------------------------------------------------- v6only -- */

/* A connected socket to 127.0.0.1:p (v6 false) or [::1]:p, or -errno of connect(). */
static int connect_family(bool v6, unsigned p)
{
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)p)};
	struct timeval tv = {10, 0};
	int fd, err;

	if (!v6)
		return try_connect(p);
	s6.sin6_addr = in6addr_loopback;
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	REQUIRE(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0)
		return fd;
	err = -errno;
	close(fd);
	return err;
}

/* Whether a connection to port p over IPv4 or IPv6 is echoed (false: refused or not echoed;
 * *err gets connect's error). */
static bool served(bool v6, unsigned p, int *err)
{
	int fd = connect_family(v6, p);
	bool ok;

	*err = fd < 0 ? fd : 0;
	if (fd < 0)
		return false;
	ok = echoes(fd, v6 ? "six" : "four");
	close(fd);
	return ok;
}

/* The sysctl of this network namespace; false when it cannot be written. */
static bool set_bindv6only(int v)
{
	FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%d\n", v) > 0;
	return fclose(f) == 0 && ok;
}

/* Loopback up in a fresh network namespace (lo starts down there). */
static bool loopback_up(void)
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	bool ok;

	strcpy(ifr.ifr_name, "lo");
	ok = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0;
	ifr.ifr_flags |= IFF_UP;
	ok = ok && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* What each listener form takes, under one value of net.ipv6.bindv6only. */
static void v6only_under(int sysctl)
{
	unsigned p6, pany, pstar, p4, pfam;
	int err;

	printf("net.ipv6.bindv6only = %d\n", sysctl);
	REQUIRE(set_bindv6only(sysctl));
	make_agent(1);
	REQUIRE(tide_agent_listen(agent, "[::]:0", &echo, NULL, &p6) == 0);
	REQUIRE(tide_agent_listen(agent, ":0", &echo, NULL, &pany) == 0);
	REQUIRE(tide_agent_listen(agent, "*:0", &echo, NULL, &pstar) == 0);
	REQUIRE(tide_agent_listen(agent, "0.0.0.0:0", &echo, NULL, &p4) == 0);
	REQUIRE(tide_agent_start(agent) == 0);
	/* [::]:P is IPv6 only, so 0.0.0.0:P beside it is a second listener. */
	CHECK(served(true, p6, &err));
	CHECK(!served(false, p6, &err));
	CHECK_EQ(err, -ECONNREFUSED);
	snprintf(text6, sizeof(text6), "[::]:%u", p4);
	CHECK_EQ(tide_agent_listen(agent, text6, &echo, NULL, &pfam), 0);
	CHECK(served(false, p4, &err));
	CHECK(served(true, p4, &err));
	/* Every address, both spellings: IPv4 and IPv6 on one port. */
	CHECK(served(false, pany, &err));
	CHECK(served(true, pany, &err));
	CHECK(served(false, pstar, &err));
	CHECK(served(true, pstar, &err));
	/* ":P" is [::]:P: the same address twice; closed by its own spelling only. Every
	 * address overlaps any other listener on its port, either one first. */
	snprintf(text6, sizeof(text6), "[::]:%u", pany);
	CHECK_EQ(tide_agent_listen(agent, text6, &echo, NULL, NULL), -EADDRINUSE);
	snprintf(text6, sizeof(text6), "127.0.0.1:%u", pany);
	CHECK_EQ(tide_agent_listen(agent, text6, &echo, NULL, NULL), -EADDRINUSE);
	snprintf(text6, sizeof(text6), "*:%u", p4);
	CHECK_EQ(tide_agent_listen(agent, text6, &echo, NULL, NULL), -EADDRINUSE);
	CHECK(served(false, p4, &err)); /* the refusals left the listeners as they were */
	CHECK(served(true, p4, &err));
	CHECK_EQ(tide_agent_listen_close(agent, text6), -ENOENT);
	snprintf(text6, sizeof(text6), ":%u", pany);
	CHECK_EQ(tide_agent_listen_close(agent, text6), 0);
	CHECK(!served(false, pany, &err));
	finish();
}

static void case_v6only(void)
{
	int fd;

	if (geteuid() != 0)
		skip("not root: cannot make a network namespace to set net.ipv6.bindv6only in");
	if (unshare(CLONE_NEWNET))
		skip("unshare(CLONE_NEWNET): %s", strerror(errno));
	if (!loopback_up())
		skip("cannot bring lo up in the new network namespace");
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd < 0)
		skip("no IPv6 here");
	close(fd);
	fd = connect_family(true, 9); /* ::1 there at all? refused is fine */
	if (fd == -EADDRNOTAVAIL || fd == -ENETUNREACH)
		skip("no ::1 in the network namespace");
	if (fd >= 0)
		close(fd);
	/* The namespace is this process's own: the host's sysctl is never touched. */
	v6only_under(0);
	v6only_under(1);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {{"live", case_live},
		     {"keepalive", case_keepalive},
		     {"v6only", case_v6only},
		     {"emfile", case_emfile}};

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (argc > 1 && !strcmp(argv[1], cases[i].name)) {
			printf("case %s\n", cases[i].name);
			cases[i].fn();
			CHECK_EQ(atomic_load(&worker_fails), 0);
			return test_exit("test_listeners");
		}
	fprintf(stderr, "usage: test_listeners live|keepalive|v6only|emfile\n");
	return 1;
}
