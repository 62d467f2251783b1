/* SPDX-License-Identifier: MIT */
/*
 * Description: the PROXY protocol (tools/relay/proxy_protocol.c) against haproxy's spec:
 * the spec's v1 lines (TCP4, TCP6, UNKNOWN, the 107-byte worst case) and v2 blocks (TCP4,
 * TCP6, LOCAL, UNSPEC, with TLVs) parsed whole, byte by byte and at random splits with
 * payload behind; bad signatures, versions, commands, fields, ports and lengths refused
 * with a reason; the encoder's output parsed back for v4, v6, mixed, unknown and local.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "helpers.h"
#include "ops.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
				0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static struct sockaddr_in v4(const char *ip, unsigned port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	REQUIRE(inet_pton(AF_INET, ip, &a.sin_addr) == 1);
	return a;
}

static struct sockaddr_in6 v6(const char *ip, unsigned port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	REQUIRE(inet_pton(AF_INET6, ip, &a.sin6_addr) == 1);
	return a;
}

static bool addr_is(const struct sockaddr_storage *ss, const char *text)
{
	char buf[80];

	relay_addr_format((const struct sockaddr *)ss, buf, sizeof(buf));
	if (strcmp(buf, text))
		fprintf(stderr, "  address %s, want %s\n", buf, text);
	return !strcmp(buf, text);
}

/* Feed msg in pieces of `step` bytes (0: all at once); the result and header length. */
static int feed(const void *msg, size_t len, size_t step, struct relay_pp_result *res,
		size_t *header, struct relay_pp_parser *p)
{
	const uint8_t *m = msg;
	size_t off = 0, used;
	int rc = 0;

	relay_pp_parser_init(p);
	*header = 0;
	while (off < len) {
		size_t n = step && len - off > step ? step : len - off;

		rc = relay_pp_parse(p, m + off, n, &used, res);
		*header += used;
		off += n;
		if (rc != 0)
			return rc;
		CHECK_EQ(used, n); /* "more needed" uses everything it was given */
	}
	return rc;
}

/* Parse msg + payload whole and byte by byte; both must agree with want_len. */
static int parse_all_ways(const void *msg, size_t len, size_t want_len, struct relay_pp_result *res,
			  struct relay_pp_parser *p)
{
	uint8_t buf[8192];
	size_t header;
	int rc, rc1;

	REQUIRE(len + 7 <= sizeof(buf));
	memcpy(buf, msg, len);
	memcpy(buf + len, "PAYLOAD", 7);
	rc = feed(buf, len + 7, 0, res, &header, p);
	if (rc == 1)
		CHECK_EQ(header, want_len);
	rc1 = feed(buf, len + 7, 1, res, &header, p);
	CHECK_EQ(rc1, rc);
	if (rc1 == 1) {
		CHECK_EQ(header, want_len);
		CHECK_EQ(res->header_len, want_len);
	}
	return rc;
}

static void test_v1_spec(void)
{
	struct relay_pp_result r;
	struct relay_pp_parser p;
	const char *tcp4 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
	const char *tcp6 = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
			   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char *unknown_long = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
				   "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	const char *max4 = "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";

	CHECK_EQ(parse_all_ways(tcp4, strlen(tcp4), strlen(tcp4), &r, &p), 1);
	CHECK(r.version == 1 && r.known && !r.local);
	CHECK(addr_is(&r.src, "192.168.0.1:56324"));
	CHECK(addr_is(&r.dst, "192.168.0.11:443"));
	CHECK_EQ(parse_all_ways(tcp6, strlen(tcp6), strlen(tcp6), &r, &p), 1);
	CHECK(addr_is(&r.src, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"));
	CHECK_EQ(strlen(unknown_long), RELAY_PP_V1_MAX);
	CHECK_EQ(parse_all_ways(unknown_long, strlen(unknown_long), 107, &r, &p), 1);
	CHECK(!r.known);
	CHECK_EQ(parse_all_ways("PROXY UNKNOWN\r\n", 15, 15, &r, &p), 1);
	CHECK(!r.known && r.version == 1);
	CHECK_EQ(strlen(max4), 56);
	CHECK_EQ(parse_all_ways(max4, strlen(max4), 56, &r, &p), 1);
	CHECK(addr_is(&r.dst, "255.255.255.255:65535"));
}

static void bad_v1(const char *line, int want, const char *reason)
{
	struct relay_pp_result r;
	struct relay_pp_parser p;

	CHECKF(parse_all_ways(line, strlen(line), 0, &r, &p) == want, "'%.30s'", line);
	CHECKF(strstr(p.err, reason), "'%.30s': reason '%s', want '%s'", line, p.err, reason);
}

static void test_v1_bad(void)
{
	char longline[200];

	bad_v1("GET / HTTP/1.1\r\n", -EPROTO, "not a PROXY protocol header (byte 0 differs)");
	bad_v1("PROXX TCP4", -EPROTO, "byte 4 differs");
	bad_v1("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", -EPROTO, "byte 0 differs");
	bad_v1("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", -EPROTO, "not TCP4, TCP6 or UNKNOWN");
	bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", -EPROTO, "5 fields, want 6");
	bad_v1("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", -EPROTO, "empty field");
	bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", -EPROTO, "fields, want 6");
	bad_v1("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", -EPROTO, "not IPv4");
	bad_v1("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", -EPROTO, "not IPv4");
	bad_v1("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", -EPROTO, "not IPv6");
	bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", -EPROTO, "port");
	bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", -EPROTO, "port");
	bad_v1("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", -EPROTO, "LF without CR");
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "PROXY UNKNOWN ", 14);
	longline[sizeof(longline) - 1] = '\0';
	bad_v1(longline, -EMSGSIZE, "no CRLF within 107 bytes");
}

/* A v2 block: signature, ver_cmd, fam, then body (len bytes). */
static size_t v2_block(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t len)
{
	memcpy(out, SIG, 12);
	out[12] = ver_cmd;
	out[13] = fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	memcpy(out + 16, body, len);
	return 16 + len;
}

static void test_v2_spec(void)
{
	struct relay_pp_result r;
	struct relay_pp_parser p;
	uint8_t m[4200], body[4200];
	const uint8_t tcp4[12] = {192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB};
	size_t n;

	n = v2_block(m, 0x21, 0x11, tcp4, 12);
	CHECK_EQ(parse_all_ways(m, n, 28, &r, &p), 1);
	CHECK(r.version == 2 && r.known && !r.local);
	CHECK(addr_is(&r.src, "192.168.0.1:56324"));
	CHECK(addr_is(&r.dst, "192.168.0.11:443"));

	memset(body, 0, 36);
	body[15] = 1;			  /* ::1 */
	body[16] = 0x20, body[17] = 0x01; /* 2001:db8::2 */
	body[18] = 0x0d, body[19] = 0xb8, body[31] = 2;
	body[32] = 0x30, body[33] = 0x39; /* 12345 */
	body[34] = 0, body[35] = 80;
	n = v2_block(m, 0x21, 0x21, body, 36);
	CHECK_EQ(parse_all_ways(m, n, 52, &r, &p), 1);
	CHECK(addr_is(&r.src, "[::1]:12345"));
	CHECK(addr_is(&r.dst, "[2001:db8::2]:80"));

	/* LOCAL (health checks of the proxy itself): no address, use the connection's */
	n = v2_block(m, 0x20, 0x00, "", 0);
	CHECK_EQ(parse_all_ways(m, n, 16, &r, &p), 1);
	CHECK(r.local && !r.known);
	/* UNSPEC, UDP and unix are valid and carry no TCP address */
	n = v2_block(m, 0x21, 0x00, "", 0);
	CHECK_EQ(parse_all_ways(m, n, 16, &r, &p), 1);
	CHECK(!r.local && !r.known);
	memset(body, 0, 216);
	n = v2_block(m, 0x21, 0x31, body, 216);
	CHECK_EQ(parse_all_ways(m, n, 232, &r, &p), 1);
	CHECK(!r.known);
	n = v2_block(m, 0x21, 0x12, tcp4, 12);
	CHECK_EQ(parse_all_ways(m, n, 28, &r, &p), 1);
	CHECK(!r.known);

	/* TLVs after the addresses, short and long (past the parser's 256 kept bytes) */
	memcpy(body, tcp4, 12);
	memcpy(body + 12, "\x01\x00\x02h2", 5); /* PP2_TYPE_ALPN "h2" */
	n = v2_block(m, 0x21, 0x11, body, 17);
	CHECK_EQ(parse_all_ways(m, n, 33, &r, &p), 1);
	CHECK(addr_is(&r.src, "192.168.0.1:56324"));
	body[12] = 0x04; /* PP2_TYPE_NOOP, 3000 bytes */
	body[13] = 3000 >> 8, body[14] = 3000 & 0xff;
	memset(body + 15, 0xAB, 3000);
	n = v2_block(m, 0x21, 0x11, body, 3015);
	CHECK_EQ(parse_all_ways(m, n, 3031, &r, &p), 1);
	CHECK(addr_is(&r.dst, "192.168.0.11:443"));
}

static void bad_v2(const uint8_t *m, size_t n, int want, const char *reason)
{
	struct relay_pp_result r;
	struct relay_pp_parser p;

	CHECK_EQ(parse_all_ways(m, n, 0, &r, &p), want);
	CHECKF(strstr(p.err, reason), "reason '%s', want '%s'", p.err, reason);
}

static void test_v2_bad(void)
{
	uint8_t m[64];
	const uint8_t tcp4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
	size_t n;

	n = v2_block(m, 0x21, 0x11, tcp4, 12);
	m[7] = 0x52; /* one signature byte off */
	bad_v2(m, n, -EPROTO, "v2 signature (byte 7 differs)");
	n = v2_block(m, 0x11, 0x11, tcp4, 12);
	bad_v2(m, n, -EPROTO, "version 1, want 2");
	n = v2_block(m, 0x22, 0x11, tcp4, 12);
	bad_v2(m, n, -EPROTO, "unknown command 2");
	n = v2_block(m, 0x21, 0x41, tcp4, 12);
	bad_v2(m, n, -EPROTO, "unknown family");
	n = v2_block(m, 0x21, 0x11, tcp4, 8);
	bad_v2(m, n, -EPROTO, "too short");
	n = v2_block(m, 0x21, 0x11, tcp4, 12);
	m[14] = 0xff, m[15] = 0xff; /* 65535 bytes follow: over the limit */
	bad_v2(m, 16, -EMSGSIZE, "over the limit");

	/* after an error, the parser stays failed */
	struct relay_pp_parser p;
	struct relay_pp_result r;
	size_t used;

	relay_pp_parser_init(&p);
	CHECK_EQ(relay_pp_parse(&p, "X", 1, &used, &r), -EPROTO);
	CHECK_EQ(relay_pp_parse(&p, "PROXY ", 6, &used, &r), -EPROTO);
}

static void roundtrip(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
		      bool local, const char *want_src, const char *want_dst)
{
	uint8_t buf[128];
	struct relay_pp_result r;
	struct relay_pp_parser p;
	ssize_t n = relay_pp_encode(version, src, dst, local, buf, sizeof(buf));

	CHECKF(n > 0, "encode v%u: %zd", version, n);
	if (n <= 0)
		return;
	CHECK_EQ(parse_all_ways(buf, (size_t)n, (size_t)n, &r, &p), 1);
	CHECK_EQ(r.version, version);
	CHECK_EQ(r.local, local && version == 2);
	CHECK_EQ(r.known, want_src != NULL);
	if (want_src) {
		CHECK(addr_is(&r.src, want_src));
		CHECK(addr_is(&r.dst, want_dst));
	}
}

static void test_encoder(void)
{
	struct sockaddr_in a = v4("192.0.2.10", 4242), b = v4("127.0.0.1", 80);
	struct sockaddr_in6 c = v6("2001:db8::7", 5555), d = v6("::1", 443),
			    m = v6("::ffff:198.51.100.1", 1);
	const struct sockaddr *A = (void *)&a, *B = (void *)&b, *C = (void *)&c, *D = (void *)&d,
			      *M = (void *)&m;
	uint8_t buf[128];

	for (unsigned v = 1; v <= 2; v++) {
		roundtrip(v, A, B, false, "192.0.2.10:4242", "127.0.0.1:80");
		roundtrip(v, C, D, false, "[2001:db8::7]:5555", "[::1]:443");
		roundtrip(v, M, B, false, "198.51.100.1:1", "127.0.0.1:80"); /* unmapped: TCP4 */
		/* mixed: sent as TCP6 with the IPv4 side v4-mapped (printed folded back) */
		roundtrip(v, A, D, false, "192.0.2.10:4242", "[::1]:443");
		roundtrip(v, NULL, B, false, NULL, NULL);
		roundtrip(v, A, B, true, NULL, NULL);
	}
	CHECK_EQ(relay_pp_encode(1, A, B, false, buf, sizeof(buf)), 41);
	CHECK(!memcmp(buf, "PROXY TCP4 192.0.2.10 127.0.0.1 4242 80\r\n", 41));
	CHECK_EQ(relay_pp_encode(2, A, B, false, buf, sizeof(buf)), 28);
	CHECK(!memcmp(buf, SIG, 12) && buf[12] == 0x21 && buf[13] == 0x11 && buf[15] == 12);
	CHECK_EQ(relay_pp_encode(2, C, D, false, buf, sizeof(buf)), 52);
	CHECK_EQ(relay_pp_encode(2, A, B, true, buf, sizeof(buf)), 16);
	CHECK(buf[12] == 0x20 && buf[13] == 0x00);
	CHECK_EQ(relay_pp_encode(1, A, D, false, buf, sizeof(buf)), 43);
	CHECK(!memcmp(buf, "PROXY TCP6 ::ffff:192.0.2.10 ::1 4242 443\r\n", 43));
	CHECK_EQ(relay_pp_encode(3, A, B, false, buf, sizeof(buf)), -EINVAL);
	CHECK_EQ(relay_pp_encode(2, C, D, false, buf, 51), -ENOSPC);
	CHECK_EQ(relay_pp_encode(1, C, D, false, buf, 10), -ENOSPC);
}

/* Random splits of encoded headers followed by payload: the header ends where it should. */
static void test_random_splits(void)
{
	uint64_t seed = test_seed(0x5eed);
	uint8_t buf[256];

	for (int i = 0; i < 2000; i++) {
		struct sockaddr_in6 s = {.sin6_family = AF_INET6}, d = {.sin6_family = AF_INET6};
		struct sockaddr_in s4 = {.sin_family = AF_INET}, d4 = {.sin_family = AF_INET};
		bool six = rng_below(&seed, 2);
		unsigned version = 1 + (unsigned)rng_below(&seed, 2);
		struct relay_pp_parser p;
		struct relay_pp_result r;
		size_t off = 0, used, total = 0;
		ssize_t n;
		int rc = 0;

		for (int k = 0; k < 16; k++) {
			s.sin6_addr.s6_addr[k] = (uint8_t)rng_next(&seed);
			d.sin6_addr.s6_addr[k] = (uint8_t)rng_next(&seed);
		}
		s.sin6_addr.s6_addr[0] |= 0x20; /* never v4-mapped */
		s.sin6_port = (uint16_t)rng_next(&seed), d.sin6_port = (uint16_t)rng_next(&seed);
		s4.sin_addr.s_addr = (uint32_t)rng_next(&seed);
		d4.sin_addr.s_addr = (uint32_t)rng_next(&seed);
		s4.sin_port = s.sin6_port, d4.sin_port = d.sin6_port;
		n = relay_pp_encode(version, six ? (void *)&s : (void *)&s4,
				    six ? (void *)&d : (void *)&d4, false, buf, sizeof(buf));
		REQUIRE(n > 0 && n + 10 <= (ssize_t)sizeof(buf));
		memcpy(buf + n, "0123456789", 10);
		relay_pp_parser_init(&p);
		while (rc == 0 && off < (size_t)n + 10) {
			size_t len = 1 + (size_t)rng_below(&seed, 40);

			if (len > (size_t)n + 10 - off)
				len = (size_t)n + 10 - off;
			rc = relay_pp_parse(&p, buf + off, len, &used, &r);
			total += used;
			off += len;
		}
		CHECK_EQ(rc, 1);
		CHECK_EQ(total, n);
		CHECK(relay_addr_equal((void *)&r.src, six ? (void *)&s : (void *)&s4));
		CHECK(relay_addr_equal((void *)&r.dst, six ? (void *)&d : (void *)&d4));
	}
}

/* Random bytes behind a valid signature prefix: whole or split, the parser gives the same
 * answer, never reads past what it was given, and never takes more than the limits. */
static void test_garbage(void)
{
	uint64_t seed = test_seed(0xbad);
	static uint8_t buf[RELAY_PP_V2_MAX + 64];

	for (int i = 0; i < 3000; i++) {
		size_t len = 1 + (size_t)rng_below(&seed, i % 10 ? 140 : sizeof(buf) - 1);
		struct relay_pp_parser p1, p2;
		struct relay_pp_result r1, r2;
		size_t used1, used2 = 0, off = 0, used;
		int rc1, rc2 = 0;

		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)rng_next(&seed);
		switch (rng_below(&seed, 3)) {
		case 0:
			memcpy(buf, "PROXY ", len < 6 ? len : 6);
			break;
		case 1:
			memcpy(buf, SIG, len < 12 ? len : 12);
			if (len > 12)
				buf[12] = (uint8_t)(0x20 | rng_below(&seed, 2));
			if (len > 13)
				buf[13] = (uint8_t)(rng_below(&seed, 4) << 4 | rng_below(&seed, 3));
			if (len > 14)
				buf[14] = (uint8_t)rng_below(&seed, 17);
			break;
		}
		relay_pp_parser_init(&p1);
		rc1 = relay_pp_parse(&p1, buf, len, &used1, &r1);
		CHECK(rc1 == 0 || rc1 == 1 || rc1 == -EPROTO || rc1 == -EMSGSIZE);
		CHECK(used1 <= len);
		relay_pp_parser_init(&p2);
		while (rc2 == 0 && off < len) {
			size_t n = 1 + (size_t)rng_below(&seed, 24);

			if (n > len - off)
				n = len - off;
			rc2 = relay_pp_parse(&p2, buf + off, n, &used, &r2);
			used2 += used;
			off += n;
		}
		CHECK_EQ(rc2, rc1);
		if (rc1 == 1) {
			CHECK_EQ(used2, used1);
			CHECK_EQ(r1.header_len, used1);
			CHECK(used1 <= RELAY_PP_V2_MAX);
			CHECK_EQ(r1.known, r2.known);
		}
	}
}

int main(void)
{
	test_v1_spec();
	test_v1_bad();
	test_v2_spec();
	test_v2_bad();
	test_encoder();
	test_random_splits();
	test_garbage();
	return test_exit("test_proxy_protocol");
}
