/* SPDX-License-Identifier: MIT */
/*
 * addr.c - "HOST:PORT" resolution (the one parser of the project: the relay, its stats
 * endpoint and the examples use tide_addrs_resolve()), listener sockets, and the io_uring
 * probe. Engine side.
 *
 * Everything here runs on the caller's thread, before or beside the workers: resolving names
 * (every address of a name, for connects tried in turn), binding the SO_REUSEPORT listeners (the
 * first one picks the port when 0 is asked for, the others join it) and checking that this kernel
 * lets the process use io_uring at all. Errors are negative errnos, and the probe adds a sentence
 * a user can act on, because "Operation not permitted" from io_uring_setup() alone does not say
 * that a sysctl or a container policy is the reason.
 *
 * A listener's IPv6 socket never follows net.ipv6.bindv6only (a host setting, 0 by default,
 * that would decide whether "[::]:80" also takes IPv4): every IPv6 listener is IPV6_V6ONLY
 * (as nginx's default, ipv6only=on), so "[::]:80" and "0.0.0.0:80" are two listeners, and
 * every address (":80", "*:80") is one dual-stack "::" socket with the option off (haproxy's
 * "v4v6"), or "0.0.0.0" on a host without IPv6.
 *
 * The probe's ring is made and torn down on a thread of its own, never the caller's: a ring's
 * teardown queues task work to the task that created it, and the kernel delivers that as a
 * notification that makes the task's blocking socket calls with a timeout (SO_RCVTIMEO,
 * SO_SNDTIMEO) fail with EINTR. An application that calls tide_agent_create() and then reads a
 * socket with a timeout must not see that.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "net_internal.h"

/*
 * Every address, for a listener: "::" where this host has IPv6 (socket(AF_INET6) works),
 * its listeners made dual-stack (IPV6_V6ONLY off, whatever net.ipv6.bindv6only says), else
 * "0.0.0.0".
 */
static void every_address(struct sockaddr_storage *ss, socklen_t *len, unsigned port)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(ss, 0, sizeof(*ss));
	if (fd >= 0) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		close(fd);
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_any;
		*len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		*len = sizeof(*in);
	}
	set_port(ss, port);
}

bool hostport_every(const char *text)
{
	return text && (text[0] == ':' || (text[0] == '*' && text[1] == ':'));
}

int listen_v6only(const struct sockaddr_storage *ss, bool every)
{
	if (ss->ss_family != AF_INET6)
		return -1;
	/* A v4-mapped address binds only with the option off. */
	return !every && !IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* Split "HOST:PORT" or "[V6]:PORT" into host and port; false when it is neither. */
static bool split_hostport(const char *text, char *host, size_t hostlen, const char **port)
{
	const char *end;
	size_t hlen;

	if (!text || !*text)
		return false;
	if (text[0] == '[') {
		end = strchr(text, ']');
		if (!end || end[1] != ':')
			return false;
		text++;
		*port = end + 2;
	} else {
		end = strrchr(text, ':');
		if (!end)
			return false;
		*port = end + 1;
	}
	hlen = (size_t)(end - text);
	if (hlen >= hostlen)
		return false;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	return true;
}

/**
 * tide_addrs_resolve() - resolve "HOST:PORT" to all its addresses, in the resolver's order.
 * @text:    "HOST:PORT", "[V6ADDR]:PORT"; HOST may be a name or a numeric address.
 * @passive: for binding: an empty HOST or "*" means every address, one: "::" where this
 *           host has IPv6 (a listener there takes IPv4 too: tide_agent_listen() turns
 *           IPV6_V6ONLY off for it), else "0.0.0.0".
 * @out:     gets the addresses (at most TIDE_ADDRS_MAX; the rest are left out).
 *
 * Blocks in getaddrinfo(); call it off the workers.
 *
 * Return: 0; -EINVAL not HOST:PORT, or a port that is not a number up to 65535; -ENOENT
 * the name does not resolve; -ENOMEM.
 */
int tide_addrs_resolve(const char *text, bool passive, struct tide_addrs *out)
{
	char host[256], *end;
	const char *port;
	struct addrinfo hints, *res = NULL;
	unsigned long p;
	int rc;

	if (!out || !split_hostport(text, host, sizeof(host), &port) || !*port)
		return -EINVAL;
	errno = 0;
	p = strtoul(port, &end, 10);
	if (*end || p > 65535 || errno || *port < '0' || *port > '9')
		return -EINVAL;
	if (passive && hostport_every(text)) {
		out->n = 1;
		every_address(&out->addr[0], &out->len[0], (unsigned)p);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (rc || !res) {
		if (res)
			freeaddrinfo(res);
		return rc == EAI_MEMORY ? -ENOMEM : -ENOENT;
	}
	out->n = 0;
	for (struct addrinfo *ai = res; ai && out->n < TIDE_ADDRS_MAX; ai = ai->ai_next) {
		bool dup = false;

		for (unsigned k = 0; k < out->n && !dup; k++) /* a name listed twice: try it once */
			dup = out->len[k] == ai->ai_addrlen &&
			      !memcmp(&out->addr[k], ai->ai_addr, ai->ai_addrlen);
		if (dup || ai->ai_addrlen > sizeof(out->addr[0]))
			continue;
		memset(&out->addr[out->n], 0, sizeof(out->addr[0]));
		memcpy(&out->addr[out->n], ai->ai_addr, ai->ai_addrlen);
		out->len[out->n++] = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	return out->n ? 0 : -ENOENT;
}

unsigned addr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return 0;
}

void set_port(struct sockaddr_storage *ss, unsigned port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

bool addr_same(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
	       socklen_t blen)
{
	return alen == blen && a->ss_family == b->ss_family && addr_port(a) == addr_port(b) &&
	       !memcmp(a, b, alen);
}

int listener_open(struct sockaddr_storage *ss, socklen_t len, int v6only, unsigned *port)
{
	int one = 1, fd, err;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (*port)
		set_port(ss, *port);
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
	    (v6only >= 0 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only))) ||
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

static int probe_here(char *why, size_t len)
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

struct probe_call {
	char *why;
	size_t len;
	int rc;
};

static void *probe_thread(void *arg)
{
	struct probe_call *call = arg;

	call->rc = probe_here(call->why, call->len);
	return NULL;
}

int tide_agent_probe(char *why, size_t len)
{
	struct probe_call call = {.why = why, .len = len};
	pthread_t t;

	if (pthread_create(&t, NULL, probe_thread, &call))
		return probe_here(why, len); /* no thread to spare: probe here, as before */
	pthread_join(t, NULL);
	return call.rc;
}
