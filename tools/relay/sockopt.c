/* SPDX-License-Identifier: MIT */
/*
 * sockopt.c - listening sockets as the operator asked for them.
 *
 * A listener gets SO_REUSEADDR (a restarted relay may bind over connections in TIME_WAIT;
 * on Linux it never lets two listeners share a port) and SO_REUSEPORT only with
 * --reuse-port. Without it a port another socket holds is EADDRINUSE, so a second instance,
 * a stale one or a typo in a unit file is an error at startup instead of the kernel quietly
 * splitting connections between two processes. Workers of one relay share one listening
 * socket (each ring accepts on the same fd), which needs no SO_REUSEPORT. IPv6 listeners
 * are IPV6_V6ONLY, so "[::]:80" and "0.0.0.0:80" are two separate listeners, as in nginx
 * (a v4-mapped address, "[::ffff:10.0.0.1]:80", has the option off: the only way it binds);
 * every address (":80") is one dual-stack socket, as the engine binds it (tide_agent_listen),
 * whatever net.ipv6.bindv6only says.
 *
 * An engine that binds its own SO_REUSEPORT socket per worker can still refuse a taken port:
 * relay_port_probe binds without SO_REUSEPORT first, which fails against any holder.
 *
 * Keepalive (--keepalive, both legs) is set through the engine (tide_conn_keepalive(), in
 * forward.c): the agent owns its connections' sockets.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ops.h"

static int set_int(int fd, int level, int name, int v)
{
	return setsockopt(fd, level, name, &v, sizeof(v)) ? -errno : 0;
}

/* A v4-mapped IPv6 address ("[::ffff:127.0.0.1]") binds only with IPV6_V6ONLY off (the
 * kernel refuses it with EINVAL otherwise), as the engine binds it (tide_agent_listen(3)). */
static bool v4mapped(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 &&
	       IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

int relay_listen_open(const struct sockaddr *sa, socklen_t len, const struct relay_listen_opts *o,
		      int *fd_out)
{
	int fd, rc;

	if (!sa || !fd_out || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return -EINVAL;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (!rc && o && o->reuse_port)
		rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	if (!rc && sa->sa_family == AF_INET6)
		rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, !v4mapped(sa));
	if (!rc && bind(fd, sa, len))
		rc = -errno;
	if (!rc && listen(fd, o && o->backlog > 0 ? o->backlog : SOMAXCONN))
		rc = -errno;
	if (rc) {
		close(fd);
		return rc;
	}
	*fd_out = fd;
	return 0;
}

int relay_port_probe(const struct sockaddr *sa, socklen_t len, bool every)
{
	int fd, rc;

	if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return -EINVAL;
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (!rc && sa->sa_family == AF_INET6)
		rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, !every && !v4mapped(sa));
	if (!rc && bind(fd, sa, len))
		rc = -errno;
	close(fd);
	return rc;
}
