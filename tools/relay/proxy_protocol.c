/* SPDX-License-Identifier: MIT */
/*
 * proxy_protocol.c - the PROXY protocol (haproxy's spec, versions 1 and 2): an encoder for
 * --send-proxy and an incremental parser for --accept-proxy.
 *
 * A header tells a server who the client was when a proxy stands between them. Version 1 is
 * one text line, "PROXY TCP4 SRC DST SPORT DPORT\r\n" (TCP6, or "PROXY UNKNOWN...\r\n"), at
 * most 107 bytes. Version 2 is binary: a 12-byte signature, version/command, family,
 * a big-endian length, then the addresses (12 bytes for TCP4, 36 for TCP6) and optional TLVs.
 *
 * The parser takes bytes as they arrive, in any split, and never reads past the header: it
 * tells the caller how many bytes of each chunk were header, so the rest goes on as
 * payload. A wrong signature is rejected as soon as one byte differs (so a client that
 * sends plain data is refused at once, not after a timeout), a v1 line without CRLF within
 * 107 bytes and a v2 header longer than RELAY_PP_V2_MAX are refused, and so are malformed
 * addresses and ports. It keeps the first 256 bytes (up to the addresses) and counts past
 * the TLVs, which the relay does not use. Families other than TCP over IPv4/IPv6 (UDP, unix)
 * parse as "not known": the connection's own addresses apply, as the spec says.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

#define V2_HDR	      16
#define V2_CMD_LOCAL  0x0
#define V2_CMD_PROXY  0x1
#define V2_FAM_UNSPEC 0x00
#define V2_TCP4	      0x11
#define V2_TCP6	      0x21

/* ---- encoder ---- */

/* The 16 bytes of sa as IPv6 (IPv4 v4-mapped) and its port, host order. */
static void as_v6(const struct sockaddr *sa, uint8_t ip[16], uint16_t *port)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &in->sin_addr, 4);
		*port = ntohs(in->sin_port);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		memcpy(ip, &in6->sin6_addr, 16);
		*port = ntohs(in6->sin6_port);
	}
}

static bool is_ip(const struct sockaddr *sa)
{
	return sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6);
}

ssize_t relay_pp_encode(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
			bool local, void *out, size_t cap)
{
	uint8_t s[16], d[16], *o = out;
	uint16_t sp = 0, dp = 0;
	size_t alen = 0;
	uint8_t tmp[16];
	int n;

	if (version != 1 && version != 2)
		return -EINVAL;
	bool known = !local && is_ip(src) && is_ip(dst);
	if (known) {
		size_t ls = relay_addr_ip(src, tmp), ld;

		as_v6(src, s, &sp);
		ld = relay_addr_ip(dst, tmp);
		as_v6(dst, d, &dp);
		alen = ls == 4 && ld == 4 ? 4 : 16; /* both IPv4 (after unmapping), or TCP6 */
	}
	if (version == 1) {
		char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], line[RELAY_PP_V1_MAX + 1];

		if (!known) {
			n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
		} else {
			inet_ntop(alen == 4 ? AF_INET : AF_INET6, alen == 4 ? s + 12 : s, a,
				  sizeof(a));
			inet_ntop(alen == 4 ? AF_INET : AF_INET6, alen == 4 ? d + 12 : d, b,
				  sizeof(b));
			n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
				     alen == 4 ? "TCP4" : "TCP6", a, b, sp, dp);
		}
		if ((size_t)n > cap)
			return -ENOSPC;
		memcpy(out, line, (size_t)n);
		return n;
	}
	size_t len = V2_HDR + (known ? alen * 2 + 4 : 0);
	if (len > cap)
		return -ENOSPC;
	memcpy(o, v2_sig, 12);
	o[12] = (uint8_t)(0x20 | (local ? V2_CMD_LOCAL : V2_CMD_PROXY));
	o[13] = !known ? V2_FAM_UNSPEC : alen == 4 ? V2_TCP4 : V2_TCP6;
	o[14] = (uint8_t)((len - V2_HDR) >> 8);
	o[15] = (uint8_t)(len - V2_HDR);
	if (known) {
		uint8_t *p = o + V2_HDR;

		memcpy(p, alen == 4 ? s + 12 : s, alen);
		memcpy(p + alen, alen == 4 ? d + 12 : d, alen);
		p += 2 * alen;
		p[0] = (uint8_t)(sp >> 8), p[1] = (uint8_t)sp;
		p[2] = (uint8_t)(dp >> 8), p[3] = (uint8_t)dp;
	}
	return (ssize_t)len;
}

/* ---- parser ---- */

void relay_pp_parser_init(struct relay_pp_parser *p)
{
	memset(p, 0, sizeof(*p));
}

static int reject(struct relay_pp_parser *p, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reject(struct relay_pp_parser *p, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->err, sizeof(p->err), fmt, ap);
	va_end(ap);
	return rc;
}

static void set_addr(struct sockaddr_storage *ss, int family, const void *ip, unsigned port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		memcpy(&in->sin_addr, ip, 4);
		in->sin_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		memcpy(&in6->sin6_addr, ip, 16);
		in6->sin6_port = htons((uint16_t)port);
	}
}

static bool parse_port(const char *s, unsigned *port)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned long)(*s - '0');
	}
	*port = (unsigned)v;
	return v <= 65535;
}

/* The whole v1 line is in p->buf (CRLF included, p->have bytes). */
static int finish_v1(struct relay_pp_parser *p, struct relay_pp_result *res)
{
	char line[RELAY_PP_V1_MAX + 1], *f[7], *save = line;
	uint8_t a[16], b[16];
	unsigned n = 0, sp, dp;
	int fam;

	memcpy(line, p->buf, p->have - 2);
	line[p->have - 2] = '\0';
	if (!strncmp(line + 6, "UNKNOWN", 7) && (line[13] == '\0' || line[13] == ' ')) {
		res->known = false; /* the rest of the line is ignored, as the spec says */
		return 1;
	}
	while (n < 7 && (f[n] = strsep(&save, " ")))
		if (!*f[n++])
			return reject(p, -EPROTO, "PROXY v1: empty field %u (two spaces?)", n);
	if (n != 6)
		return reject(p, -EPROTO,
			      "PROXY v1: %u fields, want 6 (PROXY TCP4 SRC DST SPORT DPORT)", n);
	if (!strcmp(f[1], "TCP4"))
		fam = AF_INET;
	else if (!strcmp(f[1], "TCP6"))
		fam = AF_INET6;
	else
		return reject(p, -EPROTO, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (inet_pton(fam, f[2], a) != 1 || inet_pton(fam, f[3], b) != 1)
		return reject(p, -EPROTO, "PROXY v1: an address is not IPv%d",
			      fam == AF_INET ? 4 : 6);
	if (!parse_port(f[4], &sp) || !parse_port(f[5], &dp))
		return reject(p, -EPROTO, "PROXY v1: a port is not a number from 0 to 65535");
	set_addr(&res->src, fam, a, sp);
	set_addr(&res->dst, fam, b, dp);
	res->known = true;
	return 1;
}

/* The first V2_HDR + address bytes are in p->buf; the whole header has been consumed. */
static int finish_v2(struct relay_pp_parser *p, struct relay_pp_result *res)
{
	const uint8_t *h = p->buf, *a = p->buf + V2_HDR;
	size_t alen = p->need - V2_HDR;

	if ((h[12] & 0xf) == V2_CMD_LOCAL) {
		res->local = true;
		return 1;
	}
	if (h[13] == V2_TCP4 && alen >= 12) {
		set_addr(&res->src, AF_INET, a, (unsigned)(a[8] << 8 | a[9]));
		set_addr(&res->dst, AF_INET, a + 4, (unsigned)(a[10] << 8 | a[11]));
		res->known = true;
	} else if (h[13] == V2_TCP6 && alen >= 36) {
		set_addr(&res->src, AF_INET6, a, (unsigned)(a[32] << 8 | a[33]));
		set_addr(&res->dst, AF_INET6, a + 16, (unsigned)(a[34] << 8 | a[35]));
		res->known = true;
	} else if (h[13] == V2_TCP4 || h[13] == V2_TCP6) {
		return reject(p, -EPROTO, "PROXY v2: address block of %u bytes is too short",
			      (unsigned)alen);
	}
	return 1;
}

/* v2: the 16-byte header is complete; check it and learn the total length. */
static int v2_header(struct relay_pp_parser *p)
{
	const uint8_t *h = p->buf;
	size_t len = (size_t)h[14] << 8 | h[15];

	if ((h[12] >> 4) != 2)
		return reject(p, -EPROTO, "PROXY v2: version %u, want 2", h[12] >> 4);
	if ((h[12] & 0xf) > V2_CMD_PROXY)
		return reject(p, -EPROTO, "PROXY v2: unknown command %u", h[12] & 0xf);
	if ((h[13] >> 4) > 3 || (h[13] & 0xf) > 2)
		return reject(p, -EPROTO, "PROXY v2: unknown family/protocol 0x%02x", h[13]);
	if (V2_HDR + len > RELAY_PP_V2_MAX)
		return reject(p, -EMSGSIZE, "PROXY v2: header of %u bytes is over the limit",
			      (unsigned)(V2_HDR + len));
	p->need = V2_HDR + len;
	return 0;
}

/* The signature so far: 0, or -EPROTO at the first byte that differs. */
static int check_signature(struct relay_pp_parser *p, uint8_t c, bool v2)
{
	if (!v2 && p->have < 6 && c != (uint8_t)v1_sig[p->have])
		return reject(p, -EPROTO, "not a PROXY protocol header (byte %u differs)",
			      (unsigned)p->have);
	if (v2 && p->have < 12 && c != v2_sig[p->have])
		return reject(p, -EPROTO, "not a PROXY protocol v2 signature (byte %u differs)",
			      (unsigned)p->have);
	return 0;
}

/* v1, after byte c was taken: 1 the line is complete, 0 more, or an error. */
static int v1_step(struct relay_pp_parser *p, uint8_t c, struct relay_pp_result *res)
{
	if (c == '\n') {
		if (p->buf[p->have - 2] != '\r')
			return reject(p, -EPROTO, "PROXY v1: LF without CR");
		memset(res, 0, sizeof(*res));
		res->version = 1;
		return finish_v1(p, res);
	}
	if (p->have >= RELAY_PP_V1_MAX)
		return reject(p, -EMSGSIZE, "PROXY v1: no CRLF within %u bytes", RELAY_PP_V1_MAX);
	return 0;
}

/* v2, after a byte was taken: the fixed header checked at 16 bytes, the end recognised. */
static int v2_step(struct relay_pp_parser *p, struct relay_pp_result *res)
{
	int rc = p->have == V2_HDR ? v2_header(p) : 0;

	if (rc || !p->need || p->have != p->need)
		return rc;
	memset(res, 0, sizeof(*res));
	res->version = 2;
	return finish_v2(p, res);
}

int relay_pp_parse(struct relay_pp_parser *p, const void *data, size_t len, size_t *used,
		   struct relay_pp_result *res)
{
	const uint8_t *d = data;
	size_t i = 0;
	int rc = 0;

	*used = 0;
	if (p->err[0])
		return -EPROTO;
	while (i < len && rc == 0) {
		uint8_t c = d[i];
		bool v2 = p->have ? p->buf[0] == v2_sig[0] : c == v2_sig[0];

		rc = check_signature(p, c, v2);
		if (rc)
			break;
		if (p->have < sizeof(p->buf))
			p->buf[p->have] = c;
		p->have++;
		i++;
		rc = v2 ? v2_step(p, res) : v1_step(p, c, res);
		if (rc == 0 && v2 && p->need && p->have >= sizeof(p->buf)) {
			/* TLVs past what is kept: count them without copying, all but the last
			 * byte, which the loop takes so that the end is seen in one place */
			size_t skip = p->need - p->have < len - i ? p->need - p->have : len - i;

			p->have += skip - (skip ? 1 : 0);
			i += skip - (skip ? 1 : 0);
		}
	}
	*used = i;
	if (rc == 1)
		res->header_len = p->have;
	else if (rc < 0 && !p->err[0])
		snprintf(p->err, sizeof(p->err), "bad PROXY header");
	return rc;
}
