/* SPDX-License-Identifier: MIT */
/*
 * Description: the PROXY protocol encoder (tools/relay/proxy_protocol.c) against real
 * receivers: Debian's nginx (an http server on a `listen ... proxy_protocol` loopback port
 * that answers and logs $proxy_protocol_addr) and haproxy (a `bind ... accept-proxy`
 * frontend that answers with %[src]). For v1 and v2, TCP4 and TCP6, a client connects,
 * writes the header and an HTTP request, and checks the address the server saw; haproxy
 * also gets a v2 LOCAL header (it must use the connection's own address). Skips (77) when
 * neither server is installed; every wait is bounded.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "helpers.h"
#include "ops.h"

static char dir[] = "/tmp/tide-ppinterop-XXXXXX";

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

static int connect_to(unsigned port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 3};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	REQUIRE(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (void *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static pid_t start(char *const argv[])
{
	pid_t pid = fork();

	REQUIRE(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(null, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Up to 5 s for the port to accept; false if the server died or never listened. */
static bool wait_ready(pid_t pid, unsigned port)
{
	for (int i = 0; i < 100; i++) {
		int fd = connect_to(port), st;

		if (fd >= 0) {
			close(fd);
			return true;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			return false;
		usleep(50000);
	}
	return false;
}

static void stop(pid_t pid)
{
	int st;

	kill(pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return;
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

/* Send a PROXY header from src and an HTTP request; the response body (after the blank
 * line) into body. */
static bool ask(unsigned port, unsigned version, const struct sockaddr *src,
		const struct sockaddr *dst, bool local, char *body, size_t n)
{
	uint8_t hdr[128];
	char resp[4096];
	const char *req = "GET / HTTP/1.0\r\nHost: tide\r\n\r\n";
	ssize_t len = relay_pp_encode(version, src, dst, local, hdr, sizeof(hdr)), got;
	size_t have = 0;
	int fd = connect_to(port);
	char *p;

	body[0] = '\0';
	if (fd < 0 || len <= 0 || write(fd, hdr, (size_t)len) != len ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	while (have < sizeof(resp) - 1 &&
	       (got = read(fd, resp + have, sizeof(resp) - 1 - have)) > 0)
		have += (size_t)got;
	close(fd);
	resp[have] = '\0';
	p = strstr(resp, "\r\n\r\n");
	if (strncmp(resp, "HTTP/1.", 7) || !strstr(resp, " 200 ") || !p)
		return false;
	snprintf(body, n, "%s", p + 4);
	return true;
}

struct sample {
	const char *label;
	unsigned version;
	bool six;
	const char *want;
};

static const struct sample samples[] = {
	{"v1 TCP4", 1, false, "192.0.2.10 4242"},
	{"v2 TCP4", 2, false, "192.0.2.10 4242"},
	{"v1 TCP6", 1, true, "2001:db8::7 5555"},
	{"v2 TCP6", 2, true, "2001:db8::7 5555"},
};

static void run_samples(const char *server, unsigned port)
{
	struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons(4242)};
	struct sockaddr_in d4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(5555)};
	struct sockaddr_in6 d6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	char body[256];

	inet_pton(AF_INET, "192.0.2.10", &s4.sin_addr);
	inet_pton(AF_INET, "127.0.0.1", &d4.sin_addr);
	inet_pton(AF_INET6, "2001:db8::7", &s6.sin6_addr);
	inet_pton(AF_INET6, "::1", &d6.sin6_addr);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		const struct sample *s = &samples[i];
		bool ok = ask(port, s->version, s->six ? (void *)&s6 : (void *)&s4,
			      s->six ? (void *)&d6 : (void *)&d4, false, body, sizeof(body));

		CHECKF(ok && !strncmp(body, s->want, strlen(s->want)),
		       "%s, %s: saw '%s', want '%s'", server, s->label, body, s->want);
		printf("%s %s: saw '%.*s'\n", server, s->label, (int)strcspn(body, "\n"), body);
	}
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	REQUIRE(f);
	fputs(text, f);
	fclose(f);
}

static bool test_nginx(void)
{
	const char *bin = "/usr/sbin/nginx";
	char conf[8192], path[256], log[256], errlog[256];
	unsigned port = free_port();
	pid_t pid;

	if (access(bin, X_OK))
		return false;
	snprintf(path, sizeof(path), "%s/nginx.conf", dir);
	snprintf(log, sizeof(log), "%s/access.log", dir);
	snprintf(errlog, sizeof(errlog), "%s/error.log", dir);
	snprintf(conf, sizeof(conf),
		 "daemon off; master_process off; worker_processes 1;\n"
		 "pid %s/nginx.pid; error_log %s warn;\n"
		 "events { worker_connections 64; }\n"
		 "http {\n"
		 "  log_format pp '$proxy_protocol_addr $proxy_protocol_port';\n"
		 "  access_log %s pp;\n"
		 "  client_body_temp_path %s/b; proxy_temp_path %s/p; fastcgi_temp_path %s/f;\n"
		 "  uwsgi_temp_path %s/u; scgi_temp_path %s/s;\n"
		 "  server {\n"
		 "    listen 127.0.0.1:%u proxy_protocol;\n"
		 "    location / { return 200 \"$proxy_protocol_addr $proxy_protocol_port\\n\"; }\n"
		 "  }\n"
		 "}\n",
		 dir, errlog, log, dir, dir, dir, dir, dir, port);
	write_text(path, conf);
	pid = start((char *[]){(char *)bin, "-p", dir, "-c", path, "-e", errlog, NULL});
	if (!wait_ready(pid, port)) {
		stop(pid);
		CHECKF(false, "nginx did not start (see %s)", errlog);
		return true;
	}
	run_samples("nginx", port);
	stop(pid);

	/* and its log has the same addresses, one line per request */
	FILE *f = fopen(log, "r");
	char line[256];
	unsigned n = 0;

	CHECK(f != NULL);
	while (f && fgets(line, sizeof(line), f))
		n += !strncmp(line, "192.0.2.10 4242", 15) ||
		     !strncmp(line, "2001:db8::7 5555", 16);
	if (f)
		fclose(f);
	CHECK_EQ(n, 4);
	return true;
}

static bool test_haproxy(void)
{
	const char *bin = "/usr/sbin/haproxy";
	char conf[4096], path[256], body[256];
	unsigned port = free_port();
	pid_t pid;

	if (access(bin, X_OK))
		return false;
	snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
	snprintf(conf, sizeof(conf),
		 "global\n  nbthread 1\n"
		 "defaults\n  mode http\n  timeout client 5s\n  timeout server 5s\n"
		 "  timeout connect 5s\n"
		 "frontend fe\n  bind 127.0.0.1:%u accept-proxy\n"
		 "  http-request return status 200 content-type text/plain lf-string "
		 "\"%%[src] %%[src_port]\\n\"\n",
		 port);
	write_text(path, conf);
	pid = start((char *[]){(char *)bin, "-f", path, "-db", NULL});
	if (!wait_ready(pid, port)) {
		stop(pid);
		CHECKF(false, "haproxy did not start with %s", path);
		return true;
	}
	run_samples("haproxy", port);
	/* LOCAL: the connection's own address */
	CHECK(ask(port, 2, NULL, NULL, true, body, sizeof(body)));
	CHECKF(!strncmp(body, "127.0.0.1 ", 10), "haproxy, v2 LOCAL: saw '%s'", body);
	stop(pid);
	return true;
}

int main(void)
{
	bool any;

	signal(SIGPIPE, SIG_IGN);
	REQUIRE(mkdtemp(dir));
	any = test_nginx();
	any = test_haproxy() || any;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	if (!any)
		skip("neither nginx nor haproxy is installed");
	return test_exit("test_proxy_interop");
}
