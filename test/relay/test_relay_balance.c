/* SPDX-License-Identifier: MIT */
/*
 * Description: upstream balancing and health (tools/relay/balance.c): smooth weighted
 * round robin, leastconn by active connections per weight, source hashing (a client keeps
 * its server; an out server's clients move to the next), the retry order (as a list, and one
 * server at a time as the connect path takes it: the same order), passive health
 * (N failures in a row out for a while, back after), active-check mode (out until a check
 * succeeds), state-change callbacks, inheriting state on reload, counters and their
 * Prometheus/JSON output, and many threads picking and reporting at once.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

#include "helpers.h"
#include "ops.h"

#define N 3

static struct sockaddr_storage addrs[N];
static socklen_t lens[N];
static const char *names[N] = {"a:1", "b:2", "c:3"};

static void setup(void)
{
	for (int i = 0; i < N; i++) {
		struct sockaddr_in *a = (struct sockaddr_in *)&addrs[i];

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)(8000 + i));
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		lens[i] = sizeof(*a);
	}
}

static struct sockaddr_in client(unsigned i)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(1000 + i))};

	a.sin_addr.s_addr = htonl(0x0A000000u + i * 7919u);
	return a;
}

struct change_log {
	char text[1024];
	unsigned ups, downs;
};

static void on_change(const char *name, bool up, const char *why, void *arg)
{
	struct change_log *l = arg;
	size_t len = strlen(l->text);

	snprintf(l->text + len, sizeof(l->text) - len, "%s %s (%s); ", name, up ? "up" : "down",
		 why);
	if (up)
		l->ups++;
	else
		l->downs++;
}

static struct relay_balancer *make(enum relay_balance policy, const unsigned *weights, bool active,
				   struct change_log *log)
{
	struct relay_balancer_config c = {.policy = policy,
					  .fail_threshold = 3,
					  .down_ms = 1000,
					  .active_checks = active,
					  .on_change = on_change,
					  .arg = log};
	struct relay_balancer *b = NULL;

	REQUIRE(relay_balancer_create(&c, addrs, lens, names, weights, N, &b) == 0);
	return b;
}

static unsigned pick1(struct relay_balancer *b, unsigned cl, uint64_t now)
{
	struct sockaddr_in a = client(cl);
	unsigned order[N];

	REQUIRE(relay_balancer_pick(b, (void *)&a, now, order, N) >= 1);
	return order[0];
}

static void test_roundrobin(void)
{
	struct change_log log = {0};
	const unsigned w[N] = {5, 1, 1};
	struct relay_balancer *b = make(RELAY_BALANCE_ROUNDROBIN, NULL, false, &log);
	unsigned count[N] = {0}, seq[70], run = 0, max_run = 0;

	for (int i = 0; i < 9; i++)
		count[pick1(b, 0, 0)]++;
	CHECK(count[0] == 3 && count[1] == 3 && count[2] == 3);
	relay_balancer_put(b);

	b = make(RELAY_BALANCE_ROUNDROBIN, w, false, &log);
	memset(count, 0, sizeof(count));
	for (int i = 0; i < 70; i++) {
		seq[i] = pick1(b, 0, 0);
		count[seq[i]]++;
		run = i && seq[i] == seq[i - 1] ? run + 1 : 1;
		if (run > max_run)
			max_run = run;
	}
	CHECK(count[0] == 50 && count[1] == 10 && count[2] == 10);
	CHECKF(max_run <= 4, "smooth: %u picks of one server in a row", max_run); /* naive: 50 */
	relay_balancer_put(b);
}

static void test_leastconn(void)
{
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_LEASTCONN, NULL, false, &log);
	unsigned s;

	/* two connections on a, one on b: c has the fewest */
	relay_balancer_connect_start(b, 0), relay_balancer_connect_ok(b, 0, 0);
	relay_balancer_connect_start(b, 0), relay_balancer_connect_ok(b, 0, 0);
	relay_balancer_connect_start(b, 1), relay_balancer_connect_ok(b, 1, 0);
	CHECK_EQ(pick1(b, 0, 0), 2);
	relay_balancer_connect_start(b, 2), relay_balancer_connect_ok(b, 2, 0);
	relay_balancer_connect_start(b, 2), relay_balancer_connect_ok(b, 2, 0);
	CHECK_EQ(pick1(b, 0, 0), 1);
	/* ties go round */
	relay_balancer_closed(b, 0, 0, 0);
	relay_balancer_closed(b, 2, 0, 0);
	s = pick1(b, 0, 0);
	CHECK(s <= 2);
	unsigned seen = 0;

	for (int i = 0; i < 6; i++)
		seen |= 1u << pick1(b, 0, 0);
	CHECK_EQ(seen, 7);
	relay_balancer_put(b);

	/* per weight: a (weight 3) with 2 active beats b (weight 1) with 1 */
	const unsigned w[N] = {3, 1, 1};

	b = make(RELAY_BALANCE_LEASTCONN, w, false, &log);
	for (int i = 0; i < 2; i++)
		relay_balancer_connect_start(b, 0);
	relay_balancer_connect_start(b, 1);
	relay_balancer_connect_start(b, 2);
	CHECK_EQ(pick1(b, 0, 0), 0);
	relay_balancer_put(b);
}

static void test_source(void)
{
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_SOURCE, NULL, false, &log);
	unsigned count[N] = {0}, first[64];

	for (unsigned c = 0; c < 64; c++) {
		first[c] = pick1(b, c, 0);
		count[first[c]]++;
		CHECK_EQ(pick1(b, c, 0), first[c]); /* the same client keeps its server */
		struct sockaddr_in a = client(c), other_port = client(c);
		unsigned o[N];

		other_port.sin_port = htons(9);
		relay_balancer_pick(b, (void *)&other_port, 0, o, N);
		CHECK_EQ(o[0], first[c]); /* the port does not matter */
		(void)a;
	}
	for (int i = 0; i < N; i++)
		CHECKF(count[i] >= 8, "source: server %d got %u of 64 clients", i, count[i]);
	/* take server 1 out: its clients go to the next; others stay */
	for (int k = 0; k < 3; k++) {
		relay_balancer_connect_start(b, 1);
		relay_balancer_connect_failed(b, 1, -ECONNREFUSED, 0);
	}
	for (unsigned c = 0; c < 64; c++)
		CHECK_EQ(pick1(b, c, 10), first[c] == 1 ? 2 : first[c]);
	relay_balancer_put(b);
}

static void test_order_and_passive_health(void)
{
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_ROUNDROBIN, NULL, false, &log);
	unsigned o[N], n;

	n = relay_balancer_pick(b, NULL, 0, o, N);
	CHECK_EQ(n, 3);
	CHECK(o[1] == (o[0] + 1) % N && o[2] == (o[0] + 2) % N); /* then the next servers */
	CHECK_EQ(relay_balancer_pick(b, NULL, 0, o, 1), 1);

	/* two failures: still in; the third takes it out, once */
	for (int k = 0; k < 2; k++) {
		relay_balancer_connect_start(b, 0);
		relay_balancer_connect_failed(b, 0, -ETIMEDOUT, 100);
	}
	CHECK(relay_balancer_is_up(b, 0, 100));
	relay_balancer_connect_start(b, 0);
	relay_balancer_connect_failed(b, 0, -ETIMEDOUT, 100);
	CHECK(!relay_balancer_is_up(b, 0, 100));
	CHECK_EQ(log.downs, 1);
	CHECK(strstr(log.text, "a:1 down (connects timed out)"));
	for (int i = 0; i < 10; i++) {
		n = relay_balancer_pick(b, NULL, 500, o, N);
		CHECK_EQ(n, 2);
		CHECK(o[0] != 0 && o[1] != 0);
	}
	/* down_ms later it is tried again; a failure takes it out again (no new "down") */
	CHECK(relay_balancer_is_up(b, 0, 1100));
	relay_balancer_connect_start(b, 0);
	relay_balancer_connect_failed(b, 0, -ECONNREFUSED, 1100);
	CHECK(!relay_balancer_is_up(b, 0, 1200));
	CHECK(relay_balancer_is_up(b, 0, 2100));
	relay_balancer_connect_start(b, 0);
	relay_balancer_connect_ok(b, 0, 2100);
	CHECK_EQ(log.ups, 1);
	CHECK(strstr(log.text, "a:1 up (a connect succeeded)"));
	CHECK(relay_balancer_is_up(b, 0, 2100));

	/* every server out: all are still offered, so a connection gets a chance */
	for (unsigned s = 0; s < N; s++)
		for (int k = 0; k < 3; k++) {
			relay_balancer_connect_start(b, s);
			relay_balancer_connect_failed(b, s, -ECONNREFUSED, 3000);
		}
	CHECK_EQ(relay_balancer_pick(b, NULL, 3000, o, N), 3);

	struct relay_upstream_stats st;

	relay_balancer_stats(b, 0, 3000, &st);
	CHECK(!strcmp(st.name, "a:1"));
	CHECK_EQ(st.connect_failures, 7);
	CHECK_EQ(st.connects, 1);
	CHECK_EQ(st.downs, 2);
	CHECK_EQ(st.active, 1);
	CHECK(!st.up);
	relay_balancer_closed(b, 0, 100, 2000);
	relay_balancer_stats(b, 0, 3000, &st);
	CHECK(st.active == 0 && st.bytes_up == 100 && st.bytes_down == 2000);
	relay_balancer_put(b);
}

/* relay_balancer_first/next give pick's order one server at a time, with no list. */
static void fail3(struct relay_balancer *b, unsigned s, uint64_t now)
{
	for (int k = 0; k < 3; k++) {
		relay_balancer_connect_start(b, s);
		relay_balancer_connect_failed(b, s, -ECONNREFUSED, now);
	}
}

static unsigned walk(struct relay_balancer *b, const struct sockaddr_in *c, uint64_t now,
		     unsigned *order)
{
	unsigned k = 0, n = 0;
	bool all = true;
	int first = relay_balancer_first(b, (const struct sockaddr *)c, now, &all), i;

	REQUIRE(first >= 0 && first < N);
	while ((i = relay_balancer_next(b, (unsigned)first, all, &k, now)) >= 0 && n < N + 1)
		order[n++] = (unsigned)i;
	return n;
}

static void test_first_next(void)
{
	const enum relay_balance pol[] = {RELAY_BALANCE_ROUNDROBIN, RELAY_BALANCE_LEASTCONN,
					  RELAY_BALANCE_SOURCE};
	const unsigned w[N] = {3, 1, 2};

	for (unsigned p = 0; p < 3; p++) {
		struct change_log l1 = {0}, l2 = {0};
		struct relay_balancer *b1 = make(pol[p], w, false, &l1);
		struct relay_balancer *b2 = make(pol[p], w, false, &l2);
		unsigned o1[N], o2[N + 1], n1, n2;
		bool same = true;

		for (unsigned round = 0; round < 3; round++) {
			if (round == 1) { /* one server out */
				fail3(b1, 1, 0);
				fail3(b2, 1, 0);
			} else if (round == 2) { /* every server out: all are tried */
				fail3(b1, 0, 0);
				fail3(b2, 0, 0);
				fail3(b1, 2, 0);
				fail3(b2, 2, 0);
			}
			for (unsigned c = 0; c < 20; c++) {
				struct sockaddr_in a = client(c);

				n1 = relay_balancer_pick(b1, (void *)&a, 0, o1, N);
				n2 = walk(b2, &a, 0, o2);
				same = same && n1 == n2 && !memcmp(o1, o2, n1 * sizeof(o1[0]));
			}
			CHECKF(same, "policy %u round %u: first/next differ from pick", p, round);
			CHECK_EQ(n2, round == 1 ? 2u : 3u);
		}
		relay_balancer_put(b1);
		relay_balancer_put(b2);
	}

	/* a server that goes out after the first choice is skipped by the next attempt */
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_ROUNDROBIN, NULL, false, &log);
	unsigned k = 0;
	bool all = true;
	int first = relay_balancer_first(b, NULL, 0, &all);

	CHECK(!all && first >= 0);
	CHECK_EQ(relay_balancer_next(b, (unsigned)first, all, &k, 0), first);
	fail3(b, (unsigned)(first + 1) % N, 0);
	CHECK_EQ(relay_balancer_next(b, (unsigned)first, all, &k, 0), (first + 2) % N);
	CHECK_EQ(relay_balancer_next(b, (unsigned)first, all, &k, 0), -1);
	relay_balancer_put(b);
}

static void test_active_mode_and_inherit(void)
{
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_ROUNDROBIN, NULL, true, &log), *nb;
	struct relay_upstream_stats st;

	for (int k = 0; k < 3; k++)
		relay_balancer_health_result(b, 2, -ECONNREFUSED, 0);
	CHECK(!relay_balancer_is_up(b, 2, 0));
	CHECK(!relay_balancer_is_up(b, 2, 1000000)); /* no timer: a check must succeed */
	CHECK(strstr(log.text, "c:3 down (health checks failed)"));
	relay_balancer_stats(b, 2, 0, &st);
	CHECK_EQ(st.health_failures, 3);

	/* reload: same names keep their state and counters, new names start fresh */
	const char *nn[N] = {"c:3", "a:1", "d:4"};
	struct relay_balancer_config c = {.policy = RELAY_BALANCE_ROUNDROBIN,
					  .active_checks = true};

	REQUIRE(relay_balancer_create(&c, addrs, lens, nn, NULL, N, &nb) == 0);
	relay_balancer_inherit(nb, b);
	CHECK(!relay_balancer_is_up(nb, 0, 0));
	CHECK(relay_balancer_is_up(nb, 2, 0));
	relay_balancer_stats(nb, 0, 0, &st);
	CHECK_EQ(st.health_failures, 3);
	relay_balancer_health_result(b, 2, 0, 5);
	CHECK(relay_balancer_is_up(b, 2, 5));
	CHECK(strstr(log.text, "c:3 up (a health check succeeded)"));

	/* references: a connection keeps the old set alive after the swap */
	relay_balancer_get(b);
	relay_balancer_put(b);
	CHECK_EQ(relay_balancer_count(b), 3); /* still ours: ASan would see a use after free */
	relay_balancer_put(b);
	relay_balancer_put(nb);

	/* a name's further addresses: kept in order, bounded */
	struct sockaddr_in extra = {.sin_family = AF_INET, .sin_port = htons(9999)};
	struct sockaddr_storage got[RELAY_ADDRS_MAX];
	socklen_t got_len[RELAY_ADDRS_MAX];

	REQUIRE(relay_balancer_create(&c, addrs, lens, NULL, NULL, N, &nb) == 0);
	CHECK_EQ(relay_balancer_addrs(nb, 1, got, got_len, RELAY_ADDRS_MAX), 1);
	CHECK_EQ(relay_balancer_add_address(nb, 1, (void *)&extra, sizeof(extra)), 0);
	CHECK_EQ(relay_balancer_addrs(nb, 1, got, got_len, RELAY_ADDRS_MAX), 2);
	CHECK(relay_addr_equal((void *)&got[0], (void *)&addrs[1]));
	CHECK(relay_addr_equal((void *)&got[1], (void *)&extra));
	CHECK_EQ(relay_balancer_addrs(nb, 1, got, got_len, 1), 1);
	for (int k = 2; k < RELAY_ADDRS_MAX; k++)
		CHECK_EQ(relay_balancer_add_address(nb, 1, (void *)&extra, sizeof(extra)), 0);
	CHECK_EQ(relay_balancer_add_address(nb, 1, (void *)&extra, sizeof(extra)), -EINVAL);
	CHECK_EQ(relay_balancer_addrs(nb, 1, got, got_len, RELAY_ADDRS_MAX), RELAY_ADDRS_MAX);
	relay_balancer_put(nb);

	/* bad arguments */
	const unsigned zero[N] = {1, 0, 1};

	CHECK_EQ(relay_balancer_create(&c, addrs, lens, NULL, zero, N, &nb), -EINVAL);
	CHECK_EQ(relay_balancer_create(&c, addrs, lens, NULL, NULL, 0, &nb), -EINVAL);
}

static void test_output(void)
{
	struct change_log log = {0};
	struct relay_balancer *b = make(RELAY_BALANCE_ROUNDROBIN, NULL, false, &log);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	relay_balancer_connect_start(b, 1);
	relay_balancer_connect_ok(b, 1, 0);
	relay_balancer_write_prometheus(f, b, 0);
	fflush(f);
	CHECK(strstr(text,
		     "# TYPE tide_upstream_up gauge\ntide_upstream_up{upstream=\"a:1\"} 1\n"));
	CHECK(strstr(text, "tide_upstream_connections_total{upstream=\"b:2\"} 1\n"));
	CHECK(strstr(text, "tide_upstream_active_connections{upstream=\"b:2\"} 1\n"));
	fclose(f);
	free(text);
	f = open_memstream(&text, &len);
	relay_balancer_write_json(f, b, 0);
	fclose(f);
	CHECK(text[0] == '[' && text[len - 1] == ']');
	CHECK(strstr(text, "{\"name\": \"b:2\", \"up\": true, \"weight\": 1, "
			   "\"active_connections\": 1, \"connections_total\": 1"));
	free(text);
	relay_balancer_put(b);
}

#define THREADS 4
#define ROUNDS	5000

struct worker {
	struct relay_balancer *b;
	unsigned id;
	uint64_t ok, failed;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = 0x1234 + w->id;

	for (unsigned r = 0; r < ROUNDS; r++) {
		struct sockaddr_in c = client(r * THREADS + w->id);
		unsigned o[N], n = relay_balancer_pick(w->b, (void *)&c, r, o, N);

		for (unsigned k = 0; k < n; k++) {
			relay_balancer_connect_start(w->b, o[k]);
			if (o[k] == 2 && rng_below(&seed, 2)) { /* c fails half the time */
				relay_balancer_connect_failed(w->b, o[k], -ECONNREFUSED, r);
				w->failed++;
				continue;
			}
			relay_balancer_connect_ok(w->b, o[k], r);
			relay_balancer_closed(w->b, o[k], 1, 2);
			w->ok++;
			break;
		}
	}
	return NULL;
}

static void test_threads(void)
{
	static const enum relay_balance policies[] = {
		RELAY_BALANCE_ROUNDROBIN, RELAY_BALANCE_LEASTCONN, RELAY_BALANCE_SOURCE};

	for (int p = 0; p < 3; p++) {
		struct change_log log = {0};
		struct relay_balancer_config c = {.policy = policies[p], .down_ms = 50};
		struct relay_balancer *b;
		pthread_t t[THREADS];
		struct worker w[THREADS];
		uint64_t ok = 0, failed = 0, connects = 0, failures = 0, bytes = 0;

		(void)log;
		REQUIRE(relay_balancer_create(&c, addrs, lens, names, NULL, N, &b) == 0);
		for (unsigned i = 0; i < THREADS; i++) {
			w[i] = (struct worker){.b = b, .id = i};
			REQUIRE(pthread_create(&t[i], NULL, work, &w[i]) == 0);
		}
		for (unsigned i = 0; i < THREADS; i++) {
			pthread_join(t[i], NULL);
			ok += w[i].ok;
			failed += w[i].failed;
		}
		for (unsigned i = 0; i < N; i++) {
			struct relay_upstream_stats st;

			relay_balancer_stats(b, i, ROUNDS, &st);
			CHECK_EQ(st.active, 0);
			connects += st.connects;
			failures += st.connect_failures;
			bytes += st.bytes_up + st.bytes_down;
		}
		CHECK_EQ(ok, THREADS * ROUNDS); /* a and b never fail: every client got through */
		CHECK_EQ(connects, ok);
		CHECK_EQ(failures, failed);
		CHECK_EQ(bytes, 3 * ok);
		relay_balancer_put(b);
	}
}

int main(void)
{
	setup();
	test_roundrobin();
	test_leastconn();
	test_source();
	test_order_and_passive_health();
	test_first_next();
	test_active_mode_and_inherit();
	test_output();
	test_threads();
	return test_exit("test_relay_balance");
}
