/* SPDX-License-Identifier: MIT */
/*
 * Description: SIGHUP reload as a transaction (tools/relay/runtime.c): a good edit adds
 * and removes listeners (unchanged ones keep their socket), swaps the upstream set with
 * state inherited while a connection's reference keeps the old set alive, and tells
 * systemd RELOADING=1 then READY=1; a bad file, or a new listener on a port another socket
 * holds, changes nothing (same sockets, same configuration, no descriptor leaked) and the
 * log says why.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/un.h>

#include "helpers.h"
#include "ops.h"

static char dir[] = "/tmp/tide-reload-XXXXXX";
static char conf[300];
static unsigned port[4];
static int adds, removes;
static int log_fd, notify_fd;

/* The engine's side, as a fake: a listening socket per endpoint it was given. */
static struct {
	struct relay_endpoint ep;
	int fd;
} engine[16];

static int on_add(const struct relay_endpoint *ep, void *arg)
{
	struct sockaddr_storage sa;
	socklen_t len;
	int rc = relay_endpoint_resolve(ep, true, &sa, &len);

	for (unsigned i = 0; !rc && i < 16; i++)
		if (!engine[i].ep.port) {
			rc = relay_listen_open((struct sockaddr *)&sa, len, NULL, &engine[i].fd);
			if (!rc)
				engine[i].ep = *ep;
			adds += !rc;
			return rc;
		}
	return rc ? rc : -ENOSPC;
}

static void on_remove(const struct relay_endpoint *ep, void *arg)
{
	for (unsigned i = 0; i < 16; i++)
		if (engine[i].ep.port == ep->port && !strcmp(engine[i].ep.host, ep->host)) {
			close(engine[i].fd);
			memset(&engine[i], 0, sizeof(engine[i]));
			removes++;
			return;
		}
}

static unsigned free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	REQUIRE(fd >= 0 && bind(fd, (void *)&a, sizeof(a)) == 0);
	REQUIRE(getsockname(fd, (void *)&a, &len) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool can_connect(unsigned p)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)p),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = connect(fd, (void *)&a, sizeof(a)) == 0;

	close(fd);
	return ok;
}

static void write_conf(const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(conf, "w");

	REQUIRE(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	REQUIRE(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static char *log_text(void)
{
	off_t len = lseek(log_fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);

	REQUIRE(buf && pread(log_fd, buf, (size_t)len, 0) == len);
	return buf;
}

static void expect_notify(const char *prefix)
{
	char buf[256];
	ssize_t n = recv(notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (!relay_notify_available())
		return;
	buf[n > 0 ? n : 0] = '\0';
	CHECKF(!strncmp(buf, prefix, strlen(prefix)), "notify got '%s', want '%s'", buf, prefix);
}

/* The fake engine's socket for port p (the runtime's listener for it), or -1. */
static int listener_fd(const struct relay_runtime *rt, unsigned p)
{
	for (unsigned i = 0; i < rt->n_listeners; i++)
		for (unsigned k = 0; rt->listeners[i].ep.port == p && k < 16; k++)
			if (engine[k].ep.port == p)
				return engine[k].fd;
	return -1;
}

/* An engine that binds its own SO_REUSEPORT listeners (no listener_add): the runtime refuses a
 * port another process holds, even one that set SO_REUSEPORT (a second relay), unless
 * reuse-port is asked for; a reload keeps the listeners and says so. */
static void test_engine_listens(int saved_err)
{
	struct relay_runtime rt;
	struct relay_config cfg;
	char *argv[] = {"tide-relay", "--config", conf, NULL}, *t;
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port[3]),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int other = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	off_t start;

	REQUIRE(dup2(log_fd, 2) == 2);
	start = lseek(log_fd, 0, SEEK_END);
	setsockopt(other, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	REQUIRE(bind(other, (void *)&a, sizeof(a)) == 0 && listen(other, 1) == 0);
	write_conf("listen 127.0.0.1:%u\nupstream 127.0.0.1:1\n", port[3]);
	REQUIRE(relay_config_load(3, argv, &cfg, stderr) == 0);
	CHECK_EQ(relay_runtime_start(&rt, &cfg, NULL), -EADDRINUSE);
	write_conf("listen 127.0.0.1:%u\nupstream 127.0.0.1:1\nreuse-port\n", port[3]);
	REQUIRE(relay_config_load(3, argv, &cfg, stderr) == 0);
	CHECK_EQ(relay_runtime_start(&rt, &cfg, NULL), 0);
	CHECK_EQ(rt.n_listeners, 1);
	write_conf("listen 127.0.0.1:%u\nupstream 127.0.0.1:2\nreuse-port\n", port[2]);
	CHECK_EQ(relay_runtime_reload(&rt, 3, argv), 0);
	CHECK_EQ(rt.cfg.listen[0].port, port[3]);
	CHECK_EQ(rt.cfg.upstream[0].ep.port, 2);
	relay_runtime_stop(&rt);
	close(other);
	t = log_text();
	dup2(saved_err, 2);
	CHECK(strstr(t + start, "Address already in use (another socket holds the port"));
	CHECK(strstr(t + start, "warn reload: listen changes only at restart with this engine"));
	free(t);
}

/* A worker's view during reloads: balancer references and settings, never rt->cfg. */
static int readers_stop;
static unsigned long reads;

static void *reader(void *arg)
{
	struct relay_runtime *rt = arg;

	while (!__atomic_load_n(&readers_stop, __ATOMIC_SEQ_CST)) {
		struct relay_conn_settings s;
		struct relay_balancer *b = relay_runtime_balancer(rt);

		relay_runtime_settings(rt, &s);
		if (b) {
			unsigned o[8];

			relay_balancer_pick(b, NULL, relay_now_ms(), o, 8);
			relay_balancer_put(b);
		}
		__atomic_add_fetch(&reads, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int main(void)
{
	struct relay_runtime rt;
	struct relay_config cfg;
	struct relay_runtime_ops ops = {.listener_add = on_add, .listener_remove = on_remove};
	struct relay_balancer *held, *b;
	struct relay_upstream_stats st;
	struct sockaddr_un na = {.sun_family = AF_UNIX};
	char *argv[] = {"tide-relay", "--config", conf, NULL}, *t;
	int fd2, fds, blocker, saved_err = dup(2);

	REQUIRE(mkdtemp(dir));
	snprintf(conf, sizeof(conf), "%s/relay.conf", dir);
	for (int i = 0; i < 4; i++)
		port[i] = free_port();
	/* the runtime logs to stderr: send it to a memfd we can read */
	log_fd = memfd_create("log", 0);
	REQUIRE(log_fd >= 0 && dup2(log_fd, 2) == 2);
	snprintf(na.sun_path, sizeof(na.sun_path), "%s/notify", dir);
	notify_fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	REQUIRE(bind(notify_fd, (void *)&na, sizeof(na)) == 0);
	setenv("NOTIFY_SOCKET", na.sun_path, 1);

	write_conf("listen 127.0.0.1:%u\nlisten 127.0.0.1:%u\n"
		   "upstream 127.0.0.1:9\nupstream 127.0.0.1:10\nthreads 1\n",
		   port[0], port[1]);
	REQUIRE(relay_config_load(3, argv, &cfg, stderr) == 0);
	REQUIRE(relay_runtime_start(&rt, &cfg, &ops) == 0);
	CHECK_EQ(adds, 2);
	CHECK(can_connect(port[0]) && can_connect(port[1]));
	fd2 = listener_fd(&rt, port[1]);

	/* a connection established before the reload holds the old set */
	held = relay_runtime_balancer(&rt);
	REQUIRE(held && relay_balancer_count(held) == 2);
	relay_balancer_connect_start(held, 1);
	relay_balancer_connect_ok(held, 1, relay_now_ms());

	/* readers (workers) run through every reload below */
	pthread_t rd;
	struct relay_conn_settings set;

	relay_runtime_settings(&rt, &set);
	CHECK_EQ(set.max_conns_per_ip, 0);
	REQUIRE(pthread_create(&rd, NULL, reader, &rt) == 0);

	/* a good edit */
	write_conf("listen 127.0.0.1:%u\nlisten 127.0.0.1:%u\n"
		   "upstream 127.0.0.1:10\nupstream 127.0.0.1:11\nbalance leastconn\n"
		   "threads 2\nmax-conns-per-ip 5\n",
		   port[1], port[2]);
	fds = open_fds();
	CHECK_EQ(relay_runtime_reload(&rt, 3, argv), 0);
	expect_notify("RELOADING=1\nMONOTONIC_USEC=");
	expect_notify("READY=1");
	CHECK_EQ(adds, 3);
	CHECK_EQ(removes, 1);
	CHECK_EQ(listener_fd(&rt, port[1]), fd2); /* unchanged: the same socket */
	CHECK(!can_connect(port[0]) && can_connect(port[1]) && can_connect(port[2]));
	CHECK_EQ(open_fds(), fds); /* one opened, one closed */
	CHECK_EQ(rt.cfg.balance, RELAY_BALANCE_LEASTCONN);
	CHECK_EQ(rt.cfg.threads, 1); /* restart only */
	CHECK_EQ(rt.cfg.max_conns_per_ip, 5);
	relay_runtime_settings(&rt, &set);
	CHECK_EQ(set.max_conns_per_ip, 5);
	b = relay_runtime_balancer(&rt);
	REQUIRE(b && b != held);
	CHECK(!strcmp(relay_balancer_name(b, 0), "127.0.0.1:10"));
	relay_balancer_stats(b, 0, relay_now_ms(), &st);
	CHECK_EQ(st.connects, 1); /* inherited from the old set's 127.0.0.1:10 */
	relay_balancer_put(b);
	relay_balancer_closed(held, 1, 10, 20); /* the old connection ends: old set freed */
	relay_balancer_put(held);

	/* the names resolved again: a new set, same names, state kept */
	b = relay_runtime_balancer(&rt);
	CHECK_EQ(relay_runtime_resolve(&rt), 0);
	held = relay_runtime_balancer(&rt);
	CHECK(held != b);
	CHECK(!strcmp(relay_balancer_name(held, 0), "127.0.0.1:10"));
	relay_balancer_stats(held, 0, relay_now_ms(), &st);
	CHECK_EQ(st.connects, 1);
	relay_balancer_put(held);
	relay_balancer_put(b);

	/* a bad file: nothing changes */
	write_conf("listen 127.0.0.1:%u\nupstream 127.0.0.1:0\n", port[3]);
	fds = open_fds();
	CHECK_EQ(relay_runtime_reload(&rt, 3, argv), -EINVAL);
	expect_notify("RELOADING=1");
	expect_notify("READY=1");
	CHECK_EQ(rt.n_listeners, 2);
	CHECK_EQ(rt.cfg.n_upstream, 2);
	CHECK(!can_connect(port[3]));
	CHECK_EQ(open_fds(), fds);

	/* a new listener on a port another socket holds: undone, nothing leaked */
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port[3]),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	blocker = socket(AF_INET, SOCK_STREAM, 0);
	REQUIRE(bind(blocker, (void *)&a, sizeof(a)) == 0 && listen(blocker, 1) == 0);
	write_conf("listen 127.0.0.1:%u\nlisten 127.0.0.1:%u\nlisten 127.0.0.1:%u\n"
		   "upstream 127.0.0.1:12\n",
		   port[1], port[0], port[3]);
	fds = open_fds();
	CHECK_EQ(relay_runtime_reload(&rt, 3, argv), -EADDRINUSE);
	CHECK_EQ(open_fds(), fds);
	CHECK_EQ(rt.n_listeners, 2);
	CHECK(!can_connect(port[0])); /* opened during the reload, closed when it failed */
	CHECK_EQ(listener_fd(&rt, port[1]), fd2);
	CHECK_EQ(rt.cfg.upstream[0].ep.port, 10);
	CHECK_EQ(rt.reloads, 1);
	CHECK_EQ(rt.failed_reloads, 2);
	close(blocker);

	__atomic_store_n(&readers_stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(rd, NULL);
	CHECK(__atomic_load_n(&reads, __ATOMIC_RELAXED) > 0);
	t = log_text();
	dup2(saved_err, 2);
	char want[400];

	snprintf(want, sizeof(want), "error reload: %s:2: upstream: '127.0.0.1:0': port 0 out",
		 conf);
	CHECKF(strstr(t, want), "log lacks '%s':\n%s", want, t);
	CHECK(strstr(t, "warn reload: threads changes only at restart"));
	CHECK(strstr(t, "info reloaded: 2 listeners, 2 upstreams"));
	CHECK(strstr(t, "info upstream names resolved again"));
	CHECK(strstr(t,
		     "error reload failed (bad configuration); the running configuration stays"));
	CHECK(strstr(t, "Address already in use (another socket holds the port; --reuse-port"));
	free(t);

	relay_runtime_stop(&rt);
	CHECK_EQ(removes, 4); /* 1 by the reload, 1 undone by a failed one, 2 at stop */
	CHECK_EQ(adds, removes);
	CHECK(!can_connect(port[1]));
	test_engine_listens(saved_err);
	unsetenv("NOTIFY_SOCKET");
	close(notify_fd);
	unlink(na.sun_path);
	unlink(conf);
	rmdir(dir);
	return test_exit("test_relay_reload");
}
