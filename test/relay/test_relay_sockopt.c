/* SPDX-License-Identifier: MIT */
/*
 * Description: listeners (tools/relay/sockopt.c): a port another listener
 * holds is EADDRINUSE unless both asked for SO_REUSEPORT (--reuse-port), over IPv4 and
 * IPv6 (when ::1 is there); [::] and 0.0.0.0 on one port are two listeners (IPV6_V6ONLY);
 * relay_port_probe sees a port held with SO_REUSEPORT as taken, and for every address (the
 * dual-stack [::]) a port 0.0.0.0 holds; a v4-mapped address ([::ffff:127.0.0.1]) probes
 * and opens (IPV6_V6ONLY off, the only way it binds) and sees 127.0.0.1's holder. (Keepalive is the
 * engine's: tide_conn_keepalive, test_listeners keepalive.)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "helpers.h"
#include "ops.h"

static int getint(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	REQUIRE(getsockopt(fd, level, name, &v, &len) == 0);
	return v;
}

static void family(struct sockaddr_storage *ss, socklen_t len)
{
	struct relay_listen_opts plain = {0}, reuse = {.reuse_port = true};
	int a, b, c;
	socklen_t sl = len;

	REQUIRE(relay_listen_open((void *)ss, len, &plain, &a) == 0);
	CHECK_EQ(getint(a, SOL_SOCKET, SO_REUSEPORT), 0);
	REQUIRE(getsockname(a, (void *)ss, &sl) == 0); /* the port picked */
	CHECK_EQ(relay_listen_open((void *)ss, len, &plain, &b), -EADDRINUSE);
	CHECK_EQ(relay_listen_open((void *)ss, len, &reuse, &b), -EADDRINUSE);
	CHECK_EQ(relay_listen_open((void *)ss, len, NULL, &b), -EADDRINUSE);
	close(a);
	/* both ask: shared */
	REQUIRE(relay_listen_open((void *)ss, len, &reuse, &a) == 0);
	CHECK_EQ(getint(a, SOL_SOCKET, SO_REUSEPORT), 1);
	CHECK_EQ(relay_listen_open((void *)ss, len, &reuse, &b), 0);
	CHECK_EQ(relay_listen_open((void *)ss, len, &plain, &c), -EADDRINUSE);
	/* the probe an engine's own SO_REUSEPORT listeners need: taken is taken */
	CHECK_EQ(relay_port_probe((void *)ss, len, false), -EADDRINUSE);
	close(a);
	close(b);
	CHECK_EQ(relay_port_probe((void *)ss, len, false), 0);
	/* the listener accepts */
	REQUIRE(relay_listen_open((void *)ss, len, &plain, &a) == 0);
	c = socket(ss->ss_family, SOCK_STREAM, 0);
	CHECK(connect(c, (void *)ss, len) == 0);
	close(c);
	close(a);
}

/* [::ffff:127.0.0.1]:P: free, opened, taken by itself and by an IPv4 127.0.0.1:P. */
static void v4mapped(struct sockaddr_storage *ss)
{
	struct sockaddr_in6 *in6 = (void *)ss;
	struct sockaddr_in *in = (void *)ss;
	socklen_t sl = sizeof(*in6);
	unsigned port;
	int a, b;

	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	REQUIRE(inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr) == 1);
	CHECK_EQ(relay_port_probe((void *)ss, sizeof(*in6), false), 0);
	REQUIRE(relay_listen_open((void *)ss, sizeof(*in6), NULL, &a) == 0);
	CHECK_EQ(getint(a, IPPROTO_IPV6, IPV6_V6ONLY), 0);
	REQUIRE(getsockname(a, (void *)ss, &sl) == 0);
	port = ntohs(in6->sin6_port);
	CHECK_EQ(relay_port_probe((void *)ss, sizeof(*in6), false), -EADDRINUSE);
	/* an IPv4 client reaches it */
	b = socket(AF_INET, SOCK_STREAM, 0);
	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	in->sin_port = htons((uint16_t)port);
	CHECK(connect(b, (void *)ss, sizeof(*in)) == 0);
	close(b);
	close(a);
	/* 127.0.0.1:P held over IPv4: the v4-mapped probe sees it taken */
	REQUIRE(relay_listen_open((void *)ss, sizeof(*in), NULL, &a) == 0);
	memset(ss, 0, sizeof(*ss));
	in6->sin6_family = AF_INET6;
	REQUIRE(inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6->sin6_addr) == 1);
	in6->sin6_port = htons((uint16_t)port);
	CHECK_EQ(relay_port_probe((void *)ss, sizeof(*in6), false), -EADDRINUSE);
	close(a);
}

int main(void)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (void *)&ss;
	struct sockaddr_in6 *in6 = (void *)&ss;
	int a, b, fd;

	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	family(&ss, sizeof(*in));

	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_addr = in6addr_loopback;
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	if (fd >= 0 && bind(fd, (void *)in6, sizeof(*in6)) == 0) {
		close(fd);
		family(&ss, sizeof(*in6));
		/* [::] and 0.0.0.0 on one port: two listeners */
		memset(&ss, 0, sizeof(ss));
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_any;
		REQUIRE(relay_listen_open((void *)&ss, sizeof(*in6), NULL, &a) == 0);
		socklen_t sl = sizeof(ss);

		REQUIRE(getsockname(a, (void *)&ss, &sl) == 0);
		unsigned port = ntohs(in6->sin6_port);

		memset(&ss, 0, sizeof(ss));
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		CHECK_EQ(relay_listen_open((void *)&ss, sizeof(*in), NULL, &b), 0);
		close(a);
		/* with 0.0.0.0 held: [::] alone is free, every address (dual-stack) is not */
		memset(&ss, 0, sizeof(ss));
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_any;
		in6->sin6_port = htons((uint16_t)port);
		CHECK_EQ(relay_port_probe((void *)&ss, sizeof(*in6), false), 0);
		CHECK_EQ(relay_port_probe((void *)&ss, sizeof(*in6), true), -EADDRINUSE);
		close(b);
		v4mapped(&ss);
	} else {
		printf("no ::1 here: IPv6 not checked\n");
		if (fd >= 0)
			close(fd);
	}
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	CHECK_EQ(relay_listen_open((void *)&ss, sizeof(ss), NULL, &a), -EINVAL);

	return test_exit("test_relay_sockopt");
}
