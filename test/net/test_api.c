/* SPDX-License-Identifier: MIT */
/*
 * Description: the agent's application API (tide/net.h), used as an application would, on
 * loopback. Each case (argv[1]):
 *   buffers  received buffers kept past the callback and sent later from a timer; one
 *            buffer sent to two connections (a reference each); tide_buf_get/put on a
 *            pointer that is not an agent's buffer (-EINVAL); every buffer back at the end
 *   connect  an address list tried in turn (refused, black hole, live): it opens after
 *            two failed attempts; a refused-only list ends TIDE_END_CONNECT -ECONNREFUSED,
 *            a black-hole-only list -ETIMEDOUT within its timeout
 *   endings  the reason of each ending: clean (FIN both ways), reset (the peer's RST), a
 *            reset after the peer's FIN with nothing to send, the idle timeout, the drain
 *            deadline
 *   limit    tide_conn_recv_limit: a connection receives exactly what it is allowed, and
 *            the rest once the limit is raised
 *   post     tide_agent_post runs work on the worker's thread, in order; -ESHUTDOWN after
 *   copy     tide_conn_send_copy of more than its quota leaves: -ENOSPC and nothing queued,
 *            also past 16 blocks (the peer gets only the reply sent after it)
 *   rearm    an echo of 300 small messages, one at a time, with the ring at its default size:
 *            the connection's multishot receive stays armed (a handful of receives
 *            submitted, not one per message; Linux 6.16+, where a multishot bundle receive
 *            takes a length)
 *   splice   a forwarder that splices each direction after its first receive
 *            (tide_conn_splice): 6 MiB of random bytes each way at once arrive exact, each
 *            with its FIN after the last byte; received plus spliced counts every byte;
 *            -EBUSY while connecting, -EINVAL, -EALREADY
 *   batch    receive batching (recv_batch 256 KiB) on an echo server: 200 KiB exchanges
 *            never raise the mark; after each bulk phase a 4-byte request (a tail below
 *            the mark, no FIN) is answered, and the time it took is printed; a tail right
 *            behind a bulk phase arrives, with the FIN after it; a reset behind a bulk
 *            phase ends the connection RESET; the mark was raised and dropped (stats)
 * Exits 77 when io_uring is not available here. Every wait is bounded.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <inttypes.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>

#include <tide/net.h>

#include "helpers.h"
#include "agent_helpers.h"

static struct tide_pool *pool;
static struct tide_agent *agent;
static unsigned port;
static size_t quota;	    /* worker_quota of the next start() */
static unsigned ring_slots; /* ring_entries and ring_min of the next start() */
static size_t batch_bytes;  /* recv_batch of the next start() */
static size_t block_bytes;  /* the pool's block size of the next start(); 0: 16 KiB */

static _Atomic int ends[5]; /* per enum tide_end */
static _Atomic int last_err;
static _Atomic size_t received; /* bytes handed to recv callbacks */
static _Atomic int opened;

static void ends_clear(void)
{
	for (int i = 0; i < 5; i++)
		atomic_store(&ends[i], 0);
}

static void on_end(struct tide_conn *c, enum tide_end why, int err)
{
	(void)c;
	atomic_fetch_add(&ends[why], 1);
	atomic_store(&last_err, err);
}

static void start(const struct tide_conn_ops *ops, unsigned idle_ms, unsigned drain_ms)
{
	struct tide_pool_config pc = {.block_size = block_bytes ? block_bytes : 16384,
				      .flags = TIDE_AUTO_GROW};
	struct tide_agent_config ac = {.idle_timeout_ms = idle_ms,
				       .drain_timeout_ms = drain_ms,
				       .worker_quota = quota,
				       .ring_entries = ring_slots,
				       .ring_min = ring_slots,
				       .recv_batch = batch_bytes};
	char why[256];

	if (tide_agent_probe(why, sizeof(why)))
		skip("%s", why);
	ends_clear();
	atomic_store(&received, 0);
	atomic_store(&opened, 0);
	REQUIRE(tide_pool_create(&pc, &pool) == 0);
	REQUIRE(tide_agent_create(pool, &ac, &agent) == 0);
	REQUIRE(tide_agent_listen(agent, "127.0.0.1:0", ops, NULL, &port) == 0);
	REQUIRE(tide_agent_start(agent) == 0);
}

/* Stop, join, destroy; every buffer must be back in the pool. */
static void finish(void)
{
	struct tide_stats st;

	tide_agent_stop(agent);
	CHECK_EQ(tide_agent_wait(agent), 0);
	tide_agent_destroy(agent);
	tide_pool_flush_cache(pool);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 0);
	tide_pool_destroy(pool);
}

static int connect_port(unsigned p)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p)};
	struct timeval tv = {10, 0};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Read exactly len bytes (10 s at most). */
static bool read_all(int fd, char *buf, size_t len)
{
	while (len) {
		ssize_t n = read(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			printf("read: %zd (%s), %zu bytes missing\n", n,
			       n ? strerror(errno) : "eof", len);
			return false;
		}
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static void reset_close(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---------------------------------------------------------------- buffers -- */

/* The first two connections are subscribers; what the third sends goes to both, kept
 * until a timer fires 50 ms later. */
static struct tide_conn *subs[2];
static _Atomic int nsubs;
static struct tide_buf kept[64];
static unsigned nkept;
static bool timer_pending;

static void later(struct tide_worker *w, void *arg)
{
	(void)w;
	(void)arg;
	timer_pending = false;
	for (unsigned i = 0; i < nkept; i++)
		tide_buf_get(agent, kept[i].data); /* a second reference: one per subscriber */
	tide_conn_send(subs[0], kept, nkept);
	tide_conn_send(subs[1], kept, nkept);
	nkept = 0;
}

static void buf_open(struct tide_conn *c)
{
	int n = atomic_load(&nsubs);

	if (n < 2) {
		subs[n] = c;
		atomic_store(&nsubs, n + 1);
	}
}

static void buf_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	(void)c;
	for (unsigned i = 0; i < n; i++) {
		atomic_fetch_add(&received, bufs[i].len);
		if (nkept < 64)
			kept[nkept++] = bufs[i];
		else
			tide_buf_put(agent, bufs[i].data);
	}
	if (!timer_pending) { /* send what is kept 50 ms from now */
		timer_pending = true;
		WCHECK(tide_timer_start(tide_conn_worker(c), 50, later, NULL, NULL) == 0);
	}
	WCHECK(tide_conn_send_copy(c, "ok", 2) == 0);
}

static void case_buffers(void)
{
	static const struct tide_conn_ops ops = {.open = buf_open, .recv = buf_recv, .end = on_end};
	char msg[3000], got[3000], ok[2];
	int a, b, pub;

	start(&ops, 0, 0);
	a = connect_port(port);
	REQUIRE(wait_for(&nsubs, 1, 5000));
	b = connect_port(port);
	REQUIRE(wait_for(&nsubs, 2, 5000));
	pub = connect_port(port);
	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (char)('a' + i % 26);
	REQUIRE(write(pub, msg, sizeof(msg)) == (ssize_t)sizeof(msg));
	CHECK(read_all(pub, ok, 2) && !memcmp(ok, "ok", 2));
	CHECK(read_all(a, got, sizeof(got)) && !memcmp(got, msg, sizeof(msg)));
	memset(got, 0, sizeof(got));
	CHECK(read_all(b, got, sizeof(got)) && !memcmp(got, msg, sizeof(msg)));
	CHECK_EQ(tide_buf_put(agent, msg), -EINVAL);
	CHECK_EQ(tide_buf_get(agent, msg), -EINVAL);
	close(a);
	close(b);
	close(pub);
	finish();
}

/* ---------------------------------------------------------------- connect -- */

static void cn_open(struct tide_conn *c)
{
	atomic_fetch_add(&opened, 1);
	tide_conn_abort(c);
}

static const struct tide_conn_ops cn_ops = {.open = cn_open, .end = on_end};
static struct tide_addrs cn_to;
static unsigned cn_timeout;

static void connect_now(struct tide_worker *w, void *arg)
{
	struct tide_conn *c;

	(void)arg;
	WCHECK(tide_conn_connect(w, &cn_to, cn_timeout, &cn_ops, NULL, &c) == 0);
}

/* A listener whose accept queue is full: the kernel drops further SYNs. */
static int black_hole(unsigned *p, int fills[2])
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(fd, 0) == 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	*p = ntohs(sa.sin_port);
	for (int i = 0; i < 2; i++) {
		fills[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fills[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	return fd;
}

static void add_addr(unsigned p)
{
	struct sockaddr_in *sa = (struct sockaddr_in *)&cn_to.addr[cn_to.n];

	memset(sa, 0, sizeof(cn_to.addr[0]));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)p);
	sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cn_to.len[cn_to.n++] = sizeof(*sa);
}

static void case_connect(void)
{
	static const struct tide_conn_ops none = {.end = on_end};
	struct tide_agent_stats st;
	int fills[2], hole, live;
	unsigned hole_port, live_port, refused_port;
	uint64_t t0;

	start(&none, 0, 0);
	hole = black_hole(&hole_port, fills);
	live = socket(AF_INET, SOCK_STREAM, 0);
	{
		struct sockaddr_in sa = {.sin_family = AF_INET};
		socklen_t len = sizeof(sa);

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		REQUIRE(bind(live, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			listen(live, 16) == 0);
		getsockname(live, (struct sockaddr *)&sa, &len);
		live_port = ntohs(sa.sin_port);
	}
	refused_port = port + 1 == hole_port || port + 1 == live_port ? port + 2 : port + 1;

	/* refused, black hole, live: opens after two failures */
	cn_to.n = 0;
	add_addr(refused_port);
	add_addr(hole_port);
	add_addr(live_port);
	cn_timeout = 300;
	REQUIRE(tide_agent_post(agent, 0, connect_now, NULL) == 0);
	CHECK(wait_for(&opened, 1, 5000));
	tide_agent_stats(agent, &st);
	CHECK_EQ(st.connect_retries, 2);

	/* refused only */
	cn_to.n = 0;
	add_addr(refused_port);
	ends_clear();
	REQUIRE(tide_agent_post(agent, 0, connect_now, NULL) == 0);
	CHECK(wait_for(&ends[TIDE_END_CONNECT], 1, 5000));
	CHECK_EQ(atomic_load(&last_err), -ECONNREFUSED);

	/* black hole only: -ETIMEDOUT, within a few timeouts */
	cn_to.n = 0;
	add_addr(hole_port);
	ends_clear();
	t0 = now_ms();
	REQUIRE(tide_agent_post(agent, 0, connect_now, NULL) == 0);
	CHECK(wait_for(&ends[TIDE_END_CONNECT], 1, 5000));
	CHECK_EQ(atomic_load(&last_err), -ETIMEDOUT);
	printf("connect: black hole ended after %llu ms (timeout 300)\n",
	       (unsigned long long)(now_ms() - t0));
	finish();
	close(hole);
	close(live);
	close(fills[0]);
	close(fills[1]);
}

/* ---------------------------------------------------------------- endings -- */

static void echo_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	tide_conn_send(c, bufs, n);
}

static void echo_eof(struct tide_conn *c)
{
	tide_conn_shutdown(c, false);
}

/* The peer's FIN is not answered: a reset that follows must still be noticed. */
static void quiet_eof(struct tide_conn *c)
{
	(void)c;
}

static void case_endings(void)
{
	static const struct tide_conn_ops echo = {
		.recv = echo_recv, .eof = echo_eof, .end = on_end};
	static const struct tide_conn_ops quiet = {
		.recv = echo_recv, .eof = quiet_eof, .end = on_end};
	char buf[8];
	int fd;

	start(&echo, 600, 200);
	/* clean: data, FIN both ways */
	fd = connect_port(port);
	REQUIRE(write(fd, "abc", 3) == 3);
	CHECK(read_all(fd, buf, 3));
	shutdown(fd, SHUT_WR);
	CHECK_EQ(read(fd, buf, 1), 0);
	CHECK(wait_for(&ends[TIDE_END_CLEAN], 1, 5000));
	close(fd);
	/* reset by the peer */
	fd = connect_port(port);
	REQUIRE(write(fd, "abc", 3) == 3);
	CHECK(read_all(fd, buf, 3));
	reset_close(fd);
	CHECK(wait_for(&ends[TIDE_END_RESET], 1, 5000));
	/* idle timeout (600 ms) */
	fd = connect_port(port);
	CHECK(wait_for(&ends[TIDE_END_TIMEOUT], 1, 5000));
	close(fd);
	/* drain deadline (200 ms, before the idle timeout) with a connection open */
	fd = connect_port(port);
	REQUIRE(write(fd, "x", 1) == 1);
	CHECK(read_all(fd, buf, 1));
	tide_agent_stop(agent);
	CHECK(wait_for(&ends[TIDE_END_DRAIN], 1, 5000));
	close(fd);
	finish();

	/* a reset after the peer's FIN, with nothing to send: noticed on the tick */
	start(&quiet, 0, 0);
	fd = connect_port(port);
	REQUIRE(write(fd, "abc", 3) == 3);
	CHECK(read_all(fd, buf, 3));
	shutdown(fd, SHUT_WR);
	{
		struct timespec ts = {0, 200 * 1000000L};

		nanosleep(&ts, NULL);
	}
	reset_close(fd);
	CHECK(wait_for(&ends[TIDE_END_RESET], 1, 5000));
	finish();
}

/* ------------------------------------------------------------------ limit -- */

static struct tide_conn *limited;

static void lim_open(struct tide_conn *c)
{
	limited = c;
	WCHECK(tide_conn_recv_limit(c, 10000) == 0);
}

static void lim_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	(void)c;
	for (unsigned i = 0; i < n; i++) {
		atomic_fetch_add(&received, bufs[i].len);
		tide_buf_put(agent, bufs[i].data);
	}
}

static void raise_limit(struct tide_worker *w, void *arg)
{
	(void)w;
	(void)arg;
	tide_conn_recv_limit(limited, SIZE_MAX);
}

static void case_limit(void)
{
	static const struct tide_conn_ops ops = {.open = lim_open, .recv = lim_recv, .end = on_end};
	static char data[100000];
	struct timespec ts = {0, 500 * 1000000L};
	uint64_t end;
	int fd;

	start(&ops, 0, 0);
	fd = connect_port(port);
	REQUIRE(write(fd, data, sizeof(data)) == (ssize_t)sizeof(data));
	nanosleep(&ts, NULL);
	CHECKF(atomic_load(&received) == 10000, "received %zu, limit 10000",
	       atomic_load(&received));
	REQUIRE(tide_agent_post(agent, 0, raise_limit, NULL) == 0);
	end = now_ms() + 5000;
	while (atomic_load(&received) < sizeof(data) && now_ms() < end)
		nanosleep(&(struct timespec){0, 10 * 1000000L}, NULL);
	CHECK_EQ(atomic_load(&received), sizeof(data));
	close(fd);
	finish();
}

/* ------------------------------------------------------------------- copy -- */

/* 64 blocks of quota, a ring of 16: a copy of 128 blocks cannot fit, but its first 16-block
 * chunks could. */
#define COPY_BLOCKS 128

static void copy_open(struct tide_conn *c)
{
	static char big[COPY_BLOCKS * 16384];
	int rc = tide_conn_send_copy(c, big, sizeof(big));

	WCHECK(rc == -ENOSPC);
	WCHECK(tide_conn_queued(c) == 0);
	WCHECK(tide_conn_send_copy(c, "ok", 2) == 0);
	tide_conn_close(c);
	atomic_fetch_add(&opened, 1);
}

static void case_copy(void)
{
	static const struct tide_conn_ops ops = {.open = copy_open, .end = on_end};
	char buf[16];
	ssize_t n;
	int fd;

	quota = 64 * 16384;
	ring_slots = 16;
	start(&ops, 0, 0);
	fd = connect_port(port);
	CHECK(wait_for(&opened, 1, 5000));
	CHECK(read_all(fd, buf, 2) && memcmp(buf, "ok", 2) == 0);
	n = read(fd, buf, sizeof(buf));
	CHECKF(n == 0, "after the reply: %zd more bytes, not the end", n);
	close(fd);
	CHECK(wait_for(&ends[TIDE_END_CLEAN], 1, 5000));
	finish();
}

/* ------------------------------------------------------------------- post -- */

static _Atomic int posted;
static pthread_t worker_thread;

static void post_one(struct tide_worker *w, void *arg)
{
	int want = (int)(intptr_t)arg;

	WCHECK(tide_worker_index(w) == 0);
	WCHECK(tide_worker_agent(w) == agent);
	if (want == 0)
		worker_thread = pthread_self();
	WCHECK(pthread_equal(worker_thread, pthread_self()));
	WCHECK(atomic_load(&posted) == want); /* in the order posted */
	atomic_fetch_add(&posted, 1);
}

static void case_post(void)
{
	static const struct tide_conn_ops none = {.end = on_end};

	start(&none, 0, 0);
	for (int i = 0; i < 100; i++)
		REQUIRE(tide_agent_post(agent, 0, post_one, (void *)(intptr_t)i) == 0);
	CHECK(wait_for(&posted, 100, 5000));
	CHECK(!pthread_equal(worker_thread, pthread_self()));
	CHECK_EQ(tide_agent_post(agent, 1, post_one, NULL), -EINVAL);
	tide_agent_stop(agent);
	tide_agent_wait(agent);
	CHECK(!tide_agent_running(agent));
	CHECK_EQ(tide_agent_post(agent, 0, post_one, NULL), -ESHUTDOWN);
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
}

/* ------------------------------------------------------------------ quiet -- */

/*
 * The caller's thread is the application's: probing and creating agents must leave no io_uring
 * work for it, whose delivery would make its blocking socket calls with a timeout fail with
 * EINTR (seen as a lost echo in an application that read its reply with SO_RCVTIMEO).
 */
static void case_quiet(void)
{
	static const struct tide_conn_ops none = {.end = on_end};
	struct timeval tv = {0, 20000};
	int sv[2], interrupted = 0;
	char byte;

	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	REQUIRE(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0);
	for (int i = 0; i < 30; i++) {
		REQUIRE(tide_agent_probe(NULL, 0) == 0);
		if (read(sv[0], &byte, 1) < 0 && errno == EINTR)
			interrupted++;
	}
	start(&none, 0, 0);
	for (int i = 0; i < 10; i++)
		if (read(sv[0], &byte, 1) < 0 && errno == EINTR)
			interrupted++;
	CHECKF(interrupted == 0, "%d of 40 timed reads on the caller's thread failed with EINTR",
	       interrupted);
	tide_agent_stop(agent);
	tide_agent_wait(agent);
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	close(sv[0]);
	close(sv[1]);
}

/* ------------------------------------------------------------------ rearm -- */

/*
 * A multishot bundle receive that asked for more than the ring held ended after each
 * completion (the kernel stops one whose pick of buffers reached the ring's tail), so every
 * small message cost a new submission, receive attempt and poll arm.
 */
static void case_rearm(void)
{
	static const struct tide_conn_ops ops = {.recv = echo_recv, .eof = echo_eof, .end = on_end};
	struct tide_agent_stats as;
	struct utsname un;
	unsigned major = 0, minor = 0;
	char msg[200], back[200];
	int fd;

	if (uname(&un) == 0)
		sscanf(un.release, "%u.%u", &major, &minor);
	if (major < 6 || (major == 6 && minor < 16))
		skip("Linux %s: a multishot bundle receive takes no length before 6.16",
		     un.release);
	start(&ops, 0, 0);
	fd = connect_port(port);
	for (int i = 0; i < 300; i++) {
		memset(msg, 'a' + i % 26, sizeof(msg));
		REQUIRE(write(fd, msg, sizeof(msg)) == (ssize_t)sizeof(msg));
		REQUIRE(read_all(fd, back, sizeof(back)));
		REQUIRE(memcmp(msg, back, sizeof(msg)) == 0);
	}
	tide_agent_stats(agent, &as);
	printf("300 messages: %" PRIu64 " receives submitted (bundles %d, incremental %d)\n",
	       as.recv_arms, as.bundles, as.incremental);
	CHECKF(as.recv_arms <= 10, "%" PRIu64 " receives submitted for 300 messages", as.recv_arms);
	close(fd);
	finish();
}

/* ----------------------------------------------------------------- splice -- */

/* A forwarder on the API: each accepted connection connects to the backend (sp_to); the
 * first receive each way goes through the send queue, then tide_conn_splice() takes over. */
static struct tide_addrs sp_to;
static _Atomic uint64_t sp_recv[2], sp_spliced[2]; /* [0]: client -> backend, [1]: back */
static _Atomic int sp_splices;

static void sp_recv_cb(struct tide_conn *c, struct tide_buf *bufs, unsigned n);
static void sp_eof(struct tide_conn *c);
static void sp_end(struct tide_conn *c, enum tide_end why, int err);
static void sp_up_open(struct tide_conn *c);

static const struct tide_conn_ops sp_up_ops = {
	.open = sp_up_open, .recv = sp_recv_cb, .eof = sp_eof, .end = sp_end};

/* Each side's data is its peer (one pair in this case); 0: the client's side. */
static struct tide_conn *sp_client;

static int sp_side(struct tide_conn *c)
{
	return c == sp_client ? 0 : 1;
}

static void sp_open(struct tide_conn *c)
{
	struct tide_conn *up;

	sp_client = c;
	WCHECK(tide_conn_connect(tide_conn_worker(c), &sp_to, 5000, &sp_up_ops, c, &up) == 0);
	tide_conn_set_data(c, up);
	WCHECK(tide_conn_splice(c, up, 0) == -EBUSY); /* still connecting */
}

static void sp_up_open(struct tide_conn *up)
{
	struct tide_conn *c = tide_conn_data(up);

	WCHECK(tide_conn_splice(c, c, 0) == -EINVAL);
	WCHECK(tide_conn_splice(NULL, c, 0) == -EINVAL);
	WCHECK(tide_conn_spliced(c) == 0);
}

static void sp_recv_cb(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	struct tide_conn *peer = tide_conn_data(c);
	int side = sp_side(c);
	uint64_t got = 0;
	int rc;

	for (unsigned i = 0; i < n; i++)
		got += bufs[i].len;
	atomic_fetch_add(&sp_recv[side], got);
	if (!peer || tide_conn_send(peer, bufs, n))
		return;
	rc = tide_conn_splice(c, peer, 128 << 10);
	WCHECK(rc == 0 || rc == -EALREADY || rc == -EBUSY);
	if (rc == 0) {
		atomic_fetch_add(&sp_splices, 1);
		WCHECK(tide_conn_splice(c, peer, 0) == -EALREADY);
	}
}

static void sp_eof(struct tide_conn *c)
{
	struct tide_conn *peer = tide_conn_data(c);

	if (peer)
		tide_conn_shutdown(peer, false);
}

static void sp_end(struct tide_conn *c, enum tide_end why, int err)
{
	struct tide_conn *peer = tide_conn_data(c);

	atomic_fetch_add(&sp_spliced[sp_side(c)], tide_conn_spliced(c));
	if (peer) {
		tide_conn_set_data(peer, NULL);
		if (why != TIDE_END_CLEAN)
			tide_conn_shutdown(peer, true);
	}
	on_end(c, why, err);
}

struct sp_xfer {
	int fd;
	const char *out;
	char *in;
	size_t len, got;
	bool eof;
};

/* Send out and read in at once on x->fd (blocking, 10 s receive timeout), FIN after out. */
static void *sp_xfer_run(void *arg)
{
	struct sp_xfer *x = arg;
	size_t sent = 0;

	while (sent < x->len || !x->eof) {
		struct pollfd pfd = {.fd = x->fd,
				     .events = (short)(POLLIN | (sent < x->len ? POLLOUT : 0))};
		ssize_t n;

		if (poll(&pfd, 1, 10000) <= 0)
			break;
		if ((pfd.revents & POLLOUT) && sent < x->len) {
			n = send(x->fd, x->out + sent, x->len - sent, MSG_DONTWAIT);
			if (n > 0 && (sent += (size_t)n) == x->len)
				shutdown(x->fd, SHUT_WR);
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(x->fd, x->in + x->got, x->len + 1 - x->got, MSG_DONTWAIT);
			if (n == 0)
				x->eof = true;
			else if (n > 0)
				x->got += (size_t)n;
			else if (errno != EAGAIN)
				break;
		}
	}
	return NULL;
}

static void case_splice(void)
{
	static const struct tide_conn_ops client_ops = {
		.open = sp_open, .recv = sp_recv_cb, .eof = sp_eof, .end = sp_end};
	const size_t len = 6 << 20;
	struct sp_xfer x[2];
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);
	pthread_t th[2];
	char *buf = malloc(4 * len + 2);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	REQUIRE(buf && lfd >= 0);
	for (size_t i = 0; i < 2 * len; i++)
		buf[i] = (char)(rand() >> 7);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 4) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	cn_to.n = 0;
	add_addr(ntohs(sa.sin_port));
	sp_to = cn_to;
	start(&client_ops, 0, 0);
	x[0] = (struct sp_xfer){
		.fd = connect_port(port), .out = buf, .in = buf + 2 * len, .len = len};
	x[1] = (struct sp_xfer){.fd = accept(lfd, NULL, NULL),
				.out = buf + len,
				.in = buf + 3 * len + 1,
				.len = len};
	REQUIRE(x[1].fd >= 0);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, sp_xfer_run, &x[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	/* x[0] got what the backend sent, x[1] what the client sent: whole, exact, then FIN */
	CHECKF(x[0].got == len && x[0].eof && !memcmp(x[0].in, x[1].out, len),
	       "client got %zu of %zu bytes, %s", x[0].got, len, x[0].eof ? "eof" : "no eof");
	CHECKF(x[1].got == len && x[1].eof && !memcmp(x[1].in, x[0].out, len),
	       "backend got %zu of %zu bytes, %s", x[1].got, len, x[1].eof ? "eof" : "no eof");
	close(x[0].fd);
	close(x[1].fd);
	CHECK(wait_for(&ends[TIDE_END_CLEAN], 2, 10000));
	CHECK_EQ(atomic_load(&sp_splices), 2);
	for (int i = 0; i < 2; i++) {
		CHECKF(atomic_load(&sp_spliced[i]) > 0, "direction %d spliced nothing", i);
		CHECKF(atomic_load(&sp_recv[i]) + atomic_load(&sp_spliced[i]) == len,
		       "direction %d: %llu received + %llu spliced, not %zu", i,
		       (unsigned long long)atomic_load(&sp_recv[i]),
		       (unsigned long long)atomic_load(&sp_spliced[i]), len);
	}
	finish();
	close(lfd);
	free(buf);
}

/* ------------------------------------------------------------------ batch -- */

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Send len bytes of a pattern and read the echo at the same time (10 s at most): whether
 * every byte came back as sent. */
static bool echo_bulk(int fd, size_t len)
{
	char *out = malloc(len), *in = malloc(len);
	size_t sent = 0, got = 0;
	uint64_t end = now_ms() + 10000;
	bool ok;

	REQUIRE(out && in);
	for (size_t i = 0; i < len; i++)
		out[i] = (char)(i * 7 + i / 4096);
	while (got < len && now_ms() < end) {
		struct pollfd p = {.fd = fd, .events = POLLIN | (sent < len ? POLLOUT : 0)};
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (sent < len && (p.revents & POLLOUT)) {
			n = send(fd, out + sent, len - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
			sent += n > 0 ? (size_t)n : 0;
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			n = recv(fd, in + got, len - got, MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
			got += n > 0 ? (size_t)n : 0;
		}
	}
	ok = got == len && !memcmp(in, out, len);
	if (!ok)
		printf("echo of %zu bytes: %zu sent, %zu back%s\n", len, sent, got,
		       got == len ? ", different" : "");
	free(out);
	free(in);
	return ok;
}

static void case_batch(void)
{
	static const struct tide_conn_ops echo = {
		.recv = echo_recv, .eof = echo_eof, .end = on_end};
	struct tide_agent_stats st;
	char buf[8];
	int fd;

	batch_bytes = 256 << 10;
	block_bytes = 64 << 10; /* a receive can carry 64 KiB without bundles too */
	start(&echo, 0, 0);
	/* an exchange of 200 KiB replies (below the mark) never raises it */
	fd = connect_port(port);
	for (int i = 0; i < 20; i++)
		CHECK(echo_bulk(fd, (size_t)200 << 10));
	tide_agent_stats(agent, &st);
	CHECKF(st.batch_marks == 0, "200 KiB exchanges raised the mark %llu times",
	       (unsigned long long)st.batch_marks);
	/* request/response after bulk phases: the request is a tail below the mark */
	for (int round = 0; round < 3; round++) {
		uint64_t t0;

		CHECK(echo_bulk(fd, (size_t)4 << 20));
		t0 = now_us();
		REQUIRE(write(fd, "ping", 4) == 4);
		CHECK(read_all(fd, buf, 4) && !memcmp(buf, "ping", 4));
		printf("round %d: a 4-byte request right after a 4 MiB echo answered in %llu us\n",
		       round, (unsigned long long)(now_us() - t0));
	}
	/* a tail right behind the bulk, then the FIN after its last byte */
	CHECK(echo_bulk(fd, ((size_t)4 << 20) + 100));
	shutdown(fd, SHUT_WR);
	CHECK_EQ(read(fd, buf, 1), 0);
	CHECK(wait_for(&ends[TIDE_END_CLEAN], 1, 5000));
	close(fd);
	/* a reset behind a bulk phase is passed on as a reset */
	fd = connect_port(port);
	CHECK(echo_bulk(fd, (size_t)2 << 20));
	REQUIRE(write(fd, "tail", 4) == 4);
	reset_close(fd);
	CHECK(wait_for(&ends[TIDE_END_RESET], 1, 5000));
	tide_agent_stats(agent, &st);
	CHECKF(st.batch_marks > 0, "the bulk phases never raised the receive mark");
	CHECKF(st.batch_quiet > 0, "no quiet connection dropped its mark");
	printf("marks raised %llu, dropped when quiet %llu\n", (unsigned long long)st.batch_marks,
	       (unsigned long long)st.batch_quiet);
	finish();
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"buffers", case_buffers}, {"connect", case_connect}, {"endings", case_endings},
		{"limit", case_limit},	   {"post", case_post},	      {"quiet", case_quiet},
		{"copy", case_copy},	   {"splice", case_splice},   {"rearm", case_rearm},
		{"batch", case_batch},
	};

	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (argc > 1 && !strcmp(argv[1], cases[i].name)) {
			printf("case %s\n", cases[i].name);
			cases[i].fn();
			CHECK_EQ(atomic_load(&worker_fails), 0);
			return test_exit("test_api");
		}
	fprintf(stderr,
		"usage: test_api buffers|connect|endings|limit|post|quiet|copy|splice|rearm|"
		"batch\n");
	return 1;
}
