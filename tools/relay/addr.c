/* SPDX-License-Identifier: MIT */
/*
 * addr.c - "HOST:PORT" as operators write it, and socket addresses as the relay prints them.
 *
 * An empty host or "*" (":80", "*:80"), for a listener, is every address, kept as the host "*"
 * and handed to the engine so: one dual-stack "::" socket where the host has IPv6, else
 * "0.0.0.0" (tide_agent_listen(3)). "[::]:80" is IPv6 only (IPV6_V6ONLY): the host's
 * net.ipv6.bindv6only decides neither.
 * Parsing keeps the host as text and checks the port (decimal, in range, no sign or
 * suffix), so the config file can be validated without the network; resolving is a
 * separate step (tide_addrs_resolve(), the agent's resolver: every address for an upstream, which a
 * connect tries in turn, so "localhost" works whether the server listens on ::1 or 127.0.0.1; the
 * first for a listener, as nginx and haproxy bind). IPv6 literals are bracketed, "[::1]:80", as in
 * URLs. Formatting folds v4-mapped IPv6 to IPv4 so that logs and the PROXY protocol show the
 * address a person expects.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <tide/net.h>

#include "ops.h"

static int fail(char *err, size_t n, const char *fmt, const char *what)
{
	if (err && n)
		snprintf(err, n, fmt, what);
	return -EINVAL;
}

int relay_endpoint_parse(const char *text, unsigned port_min, struct relay_endpoint *ep, char *err,
			 size_t errlen)
{
	const char *colon, *host = text, *p;
	size_t hlen;
	unsigned long port = 0;

	if (!text || !*text)
		return fail(err, errlen, "%sempty address, want HOST:PORT", "");
	if (text[0] == '[') {
		const char *close = strchr(text, ']');

		if (!close || close[1] != ':')
			return fail(err, errlen, "'%s': want [IPV6]:PORT", text);
		host = text + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return fail(err, errlen, "'%s': no port, want HOST:PORT", text);
		hlen = (size_t)(colon - text);
		if (memchr(text, ':', hlen))
			return fail(err, errlen, "'%s': an IPv6 address goes in brackets, [::1]:80",
				    text);
	}
	if ((hlen == 0 || (hlen == 1 && text[0] == '*')) && port_min == 0 && text[0] != '[') {
		host = RELAY_EVERY; /* ":80", "*:80": every address (listeners) */
		hlen = 1;
	}
	if (hlen == 0 || hlen >= RELAY_HOST_MAX)
		return fail(err, errlen, "'%s': want a host before the port (at most 255 bytes)",
			    text);
	if (!colon[1])
		return fail(err, errlen, "'%s': no port after ':'", text);
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || p - colon > 5)
			return fail(err, errlen, "'%s': the port is not a number from 0 to 65535",
				    text);
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port > 65535 || port < port_min) {
		if (err && errlen)
			snprintf(err, errlen, "'%s': port %lu out of range (%u to 65535)", text,
				 port, port_min);
		return -EINVAL;
	}
	memcpy(ep->host, host, hlen);
	ep->host[hlen] = '\0';
	ep->port = (uint16_t)port;
	if (text[0] == '[') {
		struct in6_addr a;

		if (inet_pton(AF_INET6, ep->host, &a) != 1)
			return fail(err, errlen, "'%s': not an IPv6 address in the brackets", text);
	}
	return 0;
}

int relay_endpoint_resolve_all(const struct relay_endpoint *ep, bool passive,
			       struct sockaddr_storage *sa, socklen_t *len, unsigned max,
			       unsigned *n)
{
	struct tide_addrs all;
	char text[RELAY_HOST_MAX + 16];
	int rc;

	snprintf(text, sizeof(text), strchr(ep->host, ':') ? "[%s]:%u" : "%s:%u", ep->host,
		 ep->port);
	rc = tide_addrs_resolve(text, passive,
				&all); /* the agent's resolver: one for the project */
	*n = 0;
	if (rc)
		return rc;
	for (; *n < all.n && *n < max; (*n)++) {
		sa[*n] = all.addr[*n];
		len[*n] = all.len[*n];
	}
	return 0;
}

const char *relay_endpoint_resolve_why(const struct relay_endpoint *ep, bool passive, char *why,
				       size_t n)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)},
			*res = NULL;
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%u", ep->port);
	rc = getaddrinfo(ep->host[0] ? ep->host : NULL, port, &hints, &res);
	if (res)
		freeaddrinfo(res);
	snprintf(why, n, "%s",
		 rc == EAI_SYSTEM ? strerror(errno)
		 : rc		  ? gai_strerror(rc)
				  : "no address of a usable family");
	return why;
}

int relay_endpoint_resolve(const struct relay_endpoint *ep, bool passive,
			   struct sockaddr_storage *sa, socklen_t *len)
{
	unsigned n;

	return relay_endpoint_resolve_all(ep, passive, sa, len, 1, &n);
}

size_t relay_addr_ip(const struct sockaddr *sa, uint8_t out[16])
{
	if (!sa)
		return 0;
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 4;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(out, a->s6_addr + 12, 4);
			return 4;
		}
		memcpy(out, a->s6_addr, 16);
		return 16;
	}
	return 0;
}

static unsigned port_of(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
}

bool relay_addr_equal(const struct sockaddr *a, const struct sockaddr *b)
{
	uint8_t x[16], y[16];
	size_t lx = relay_addr_ip(a, x), ly = relay_addr_ip(b, y);

	return lx && lx == ly && !memcmp(x, y, lx) && port_of(a) == port_of(b);
}

char *relay_addr_format(const struct sockaddr *sa, char *buf, size_t n)
{
	uint8_t ip[16];
	char text[INET6_ADDRSTRLEN];
	size_t len = relay_addr_ip(sa, ip);

	if (!len) {
		snprintf(buf, n, "-");
		return buf;
	}
	inet_ntop(len == 4 ? AF_INET : AF_INET6, ip, text, sizeof(text));
	snprintf(buf, n, len == 4 ? "%s:%u" : "[%s]:%u", text, port_of(sa));
	return buf;
}

bool relay_endpoint_every(const struct relay_endpoint *ep)
{
	return !strcmp(ep->host, RELAY_EVERY);
}

const char *relay_endpoint_text(const struct relay_endpoint *ep, char *buf, size_t n)
{
	snprintf(buf, n, strchr(ep->host, ':') ? "[%s]:%u" : "%s:%u", ep->host, ep->port);
	return buf;
}
