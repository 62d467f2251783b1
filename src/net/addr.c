/* SPDX-License-Identifier: MIT */
/*
 * addr.c - "HOST:PORT" parsing, listener sockets, and the io_uring probe.
 *
 * Everything here runs at agent creation, on the caller's thread (and addr_resolve() again on
 * upstream.c's resolver thread): resolving names to every address they have,
 * binding the SO_REUSEPORT listeners (the first one picks the port when 0 is asked for, the
 * others join it) and checking that this kernel lets the process use io_uring at all. Errors
 * are negative errnos, and the probe adds a sentence a user can act on, because "Operation
 * not permitted" from io_uring_setup() alone does not say that a sysctl or a container
 * policy is the reason.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "net_internal.h"

int addr_resolve(const char *text, bool passive, struct sockaddr_storage *ss, socklen_t *len,
		 unsigned max)
{
	char host[256];
	const char *colon, *port;
	struct addrinfo hints, *res = NULL, *ai;
	size_t hlen;
	char *end;
	unsigned long p;
	unsigned n = 0;
	int rc;

	if (!text || !*text || !max)
		return -EINVAL;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - text - 1);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, text + 1, hlen);
		port = close + 2;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return -EINVAL;
		hlen = (size_t)(colon - text);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, text, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';
	if (*port < '0' || *port > '9')
		return -EINVAL;
	errno = 0;
	p = strtoul(port, &end, 10);
	if (*end)
		return -EINVAL;
	if (p > 65535 || errno)
		return -ERANGE;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(hlen ? host : NULL, port, &hints, &res);
	if (rc || !res) {
		if (res)
			freeaddrinfo(res);
		return rc == EAI_MEMORY ? -ENOMEM : -EINVAL;
	}
	for (ai = res; ai && n < max; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(*ss))
			continue;
		memcpy(&ss[n], ai->ai_addr, ai->ai_addrlen);
		len[n++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return n ? (int)n : -EINVAL;
}

unsigned addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

static void set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

int listener_open(struct sockaddr_storage *ss, socklen_t len, unsigned *port)
{
	int one = 1, fd, err;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (*port)
		set_port(ss, *port);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)ss, len) || listen(fd, 4096)) {
		err = -errno;
		close(fd);
		return err;
	}
	if (!*port) {
		struct sockaddr_storage got;
		socklen_t glen = sizeof(got);

		if (getsockname(fd, (struct sockaddr *)&got, &glen)) {
			err = -errno;
			close(fd);
			return err;
		}
		*port = addr_port(&got);
	}
	return fd;
}

static void say(char *why, size_t len, const char *fmt, const char *detail)
{
	if (why && len)
		snprintf(why, len, fmt, detail);
}

int tide_agent_probe(char *why, size_t len)
{
	struct io_uring ring;
	struct io_uring_probe *probe;
	int rc;

	rc = io_uring_queue_init(4, &ring, 0);
	if (rc == -EPERM) {
		FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
		int v = 0;

		if (f) {
			if (fscanf(f, "%d", &v) != 1)
				v = 0;
			fclose(f);
		}
		if (v)
			say(why, len,
			    "io_uring is disabled on this machine (sysctl "
			    "kernel.io_uring_disabled=%s); "
			    "tide needs it",
			    v == 1 ? "1: only the io_uring_group may use it"
				   : "2: nobody may use it");
		else
			say(why, len, "%s",
			    "io_uring is refused to this process (EPERM: a seccomp filter or "
			    "container "
			    "policy blocks io_uring_setup); tide needs it");
		return rc;
	}
	if (rc == -ENOSYS) {
		say(why, len, "%s", "this kernel has no io_uring (ENOSYS); tide needs Linux 6.0+");
		return rc;
	}
	if (rc < 0) {
		say(why, len, "io_uring_setup failed: %s", strerror(-rc));
		return rc;
	}
	probe = io_uring_get_probe_ring(&ring);
	if (probe) {
		bool ok = io_uring_opcode_supported(probe, IORING_OP_RECV) &&
			  io_uring_opcode_supported(probe, IORING_OP_SEND) &&
			  io_uring_opcode_supported(probe, IORING_OP_ACCEPT) &&
			  io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);

		io_uring_free_probe(probe);
		if (!ok) {
			io_uring_queue_exit(&ring);
			say(why, len, "%s",
			    "this kernel's io_uring lacks multishot receive and provided-buffer "
			    "rings; tide needs Linux 6.0+");
			return -EOPNOTSUPP;
		}
	}
	io_uring_queue_exit(&ring);
	return 0;
}
