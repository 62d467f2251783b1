/* SPDX-License-Identifier: MIT */
/*
 * Description: --max-conns-per-ip counting (tools/relay/peer_limit.c): the limit per IP
 * (ports do not matter, v4-mapped IPv6 counts as its IPv4), release frees the entry (memory
 * follows open connections), 0 means no limit, the limit changes on reload, against a
 * naive model under random operations, and many threads acquiring and releasing on shared
 * addresses never exceed the limit and end at zero.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

#include "helpers.h"
#include "ops.h"

static struct sockaddr_in6 ip6(const char *text, unsigned port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};

	REQUIRE(inet_pton(AF_INET6, text, &a.sin6_addr) == 1);
	return a;
}

static struct sockaddr_in ip4(uint32_t host, unsigned port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

	a.sin_addr.s_addr = htonl(host);
	return a;
}

static void test_basics(void)
{
	struct relay_peer_limit *pl;
	struct sockaddr_in a = ip4(0xC0000201, 1000), a2 = ip4(0xC0000201, 2000);
	struct sockaddr_in6 mapped = ip6("::ffff:192.0.2.1", 3000), six = ip6("2001:db8::1", 1);

	REQUIRE(relay_peer_limit_create(2, &pl) == 0);
	CHECK(relay_peer_limit_acquire(pl, (void *)&a));
	CHECK(relay_peer_limit_acquire(pl, (void *)&a2));      /* another port, same IP */
	CHECK(!relay_peer_limit_acquire(pl, (void *)&mapped)); /* the same IP, v4-mapped */
	CHECK_EQ(relay_peer_limit_count(pl, (void *)&a), 2);
	CHECK(relay_peer_limit_acquire(pl, (void *)&six));
	CHECK_EQ(relay_peer_limit_ips(pl), 2);
	relay_peer_limit_release(pl, (void *)&mapped);
	CHECK(relay_peer_limit_acquire(pl, (void *)&a));
	relay_peer_limit_set_max(pl, 4); /* reload */
	CHECK(relay_peer_limit_acquire(pl, (void *)&a));
	CHECK_EQ(relay_peer_limit_count(pl, (void *)&a), 3);
	for (int i = 0; i < 3; i++)
		relay_peer_limit_release(pl, (void *)&a);
	relay_peer_limit_release(pl, (void *)&six);
	CHECK_EQ(relay_peer_limit_ips(pl), 0);
	CHECK_EQ(relay_peer_limit_count(pl, (void *)&a), 0);
	relay_peer_limit_destroy(pl);

	REQUIRE(relay_peer_limit_create(0, &pl) == 0); /* no limit, still counted */
	for (int i = 0; i < 1000; i++)
		CHECK(relay_peer_limit_acquire(pl, (void *)&a));
	CHECK_EQ(relay_peer_limit_count(pl, (void *)&a), 1000);
	relay_peer_limit_destroy(pl); /* with live entries: freed, Valgrind checks */
}

static void test_model(void)
{
	enum {
		IPS = 300,
		MAX = 3
	};
	unsigned model[IPS] = {0};
	struct relay_peer_limit *pl;
	uint64_t seed = test_seed(77);
	size_t live = 0;

	REQUIRE(relay_peer_limit_create(MAX, &pl) == 0);
	for (int step = 0; step < 50000; step++) {
		unsigned i = (unsigned)rng_below(&seed, IPS);
		struct sockaddr_in6 a = {.sin6_family = AF_INET6};

		a.sin6_addr.s6_addr[0] = 0x20;
		a.sin6_addr.s6_addr[14] = (uint8_t)(i >> 8);
		a.sin6_addr.s6_addr[15] = (uint8_t)i;
		if (rng_below(&seed, 2)) {
			bool want = model[i] < MAX;

			CHECK_EQ(relay_peer_limit_acquire(pl, (void *)&a), want);
			if (want && !model[i]++)
				live++;
		} else if (model[i]) {
			relay_peer_limit_release(pl, (void *)&a);
			if (!--model[i])
				live--;
		}
		if (step % 997 == 0) {
			CHECK_EQ(relay_peer_limit_count(pl, (void *)&a), model[i]);
			CHECK_EQ(relay_peer_limit_ips(pl), live);
		}
	}
	relay_peer_limit_destroy(pl);
}

#define THREADS 4
#define ROUNDS	20000
#define SHARED	8
#define LIMIT	3

static struct relay_peer_limit *shared_pl;
static unsigned held[SHARED]; /* what the threads hold, by atomics */
static unsigned over;	      /* times a thread saw more than LIMIT held */

static void *hammer(void *arg)
{
	uint64_t seed = 99 + (uintptr_t)arg;
	unsigned mine[SHARED] = {0};

	for (int r = 0; r < ROUNDS; r++) {
		unsigned i = (unsigned)rng_below(&seed, SHARED);
		struct sockaddr_in a = ip4(0x0A000000u + i, (unsigned)r);

		if (rng_below(&seed, 2) && relay_peer_limit_acquire(shared_pl, (void *)&a)) {
			if (__atomic_add_fetch(&held[i], 1, __ATOMIC_SEQ_CST) > LIMIT)
				__atomic_add_fetch(&over, 1, __ATOMIC_SEQ_CST);
			mine[i]++;
		} else if (mine[i]) {
			__atomic_sub_fetch(&held[i], 1, __ATOMIC_SEQ_CST);
			relay_peer_limit_release(shared_pl, (void *)&a);
			mine[i]--;
		}
	}
	for (unsigned i = 0; i < SHARED; i++)
		while (mine[i]--) {
			struct sockaddr_in a = ip4(0x0A000000u + i, 1);

			__atomic_sub_fetch(&held[i], 1, __ATOMIC_SEQ_CST);
			relay_peer_limit_release(shared_pl, (void *)&a);
		}
	return NULL;
}

static void test_threads(void)
{
	pthread_t t[THREADS];

	REQUIRE(relay_peer_limit_create(LIMIT, &shared_pl) == 0);
	for (uintptr_t i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, hammer, (void *)i) == 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ(over, 0);
	CHECK_EQ(relay_peer_limit_ips(shared_pl), 0);
	relay_peer_limit_destroy(shared_pl);
}

int main(void)
{
	test_basics();
	test_model();
	test_threads();
	return test_exit("test_relay_peer_limit");
}
