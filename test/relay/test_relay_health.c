/* SPDX-License-Identifier: MIT */
/*
 * Description: active health checks (tools/relay/health.c): a TCP connect probe accepts a
 * listening loopback port and refuses a closed one; a round of checks reports to the
 * balancer; the checker thread takes a dead server out and brings it back once it
 * listens again, and stops at once when asked. Every wait is bounded.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "helpers.h"
#include "ops.h"

/* A loopback listener on a free port; its address in *a. */
static int listener(struct sockaddr_in *a, unsigned port)
{
	socklen_t len = sizeof(*a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a->sin_port = htons((uint16_t)port);
	REQUIRE(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (void *)a, sizeof(*a)) || listen(fd, 16)) {
		close(fd);
		return -1;
	}
	REQUIRE(getsockname(fd, (void *)a, &len) == 0);
	return fd;
}

struct changes {
	unsigned ups, downs;
};

static void on_change(const char *name, bool up, const char *why, void *arg)
{
	struct changes *c = arg;

	__atomic_add_fetch(up ? &c->ups : &c->downs, 1, __ATOMIC_SEQ_CST);
}

/* The callback runs after the state changed: wait for the count, bounded. */
static unsigned count_of(unsigned *n, unsigned want)
{
	for (int k = 0; k < 300 && __atomic_load_n(n, __ATOMIC_SEQ_CST) != want; k++)
		usleep(10000);
	return __atomic_load_n(n, __ATOMIC_SEQ_CST);
}

static bool wait_for(struct relay_balancer *b, unsigned i, bool up)
{
	for (int k = 0; k < 300; k++) { /* at most 3 s */
		if (relay_balancer_is_up(b, i, relay_now_ms()) == up)
			return true;
		usleep(10000);
	}
	return false;
}

int main(void)
{
	struct sockaddr_in live, dead;
	struct sockaddr_storage addrs[2];
	socklen_t lens[2] = {sizeof(live), sizeof(dead)};
	struct changes ch = {0};
	struct relay_balancer_config c = {.policy = RELAY_BALANCE_ROUNDROBIN,
					  .fail_threshold = 2,
					  .active_checks = true,
					  .on_change = on_change,
					  .arg = &ch};
	struct relay_balancer *b;
	struct relay_health *h;
	int lfd = listener(&live, 0), dfd = listener(&dead, 0);
	unsigned dead_port = ntohs(dead.sin_port);

	REQUIRE(lfd >= 0 && dfd >= 0);
	close(dfd); /* nobody listens there now */
	CHECK_EQ(relay_health_probe((void *)&live, sizeof(live), 1000), 0);
	CHECK_EQ(relay_health_probe((void *)&dead, sizeof(dead), 1000), -ECONNREFUSED);

	memcpy(&addrs[0], &live, sizeof(live));
	memcpy(&addrs[1], &dead, sizeof(dead));
	REQUIRE(relay_balancer_create(&c, addrs, lens, NULL, NULL, 2, &b) == 0);
	relay_health_check_all(b, 1000);
	relay_health_check_all(b, 1000);
	CHECK(relay_balancer_is_up(b, 0, relay_now_ms()));
	CHECK(!relay_balancer_is_up(b, 1, relay_now_ms()));
	CHECK_EQ(ch.downs, 1);

	/* the thread: the dead server comes back once something listens on its port */
	CHECK_EQ(relay_health_start(b, 0, 100, &h), -EINVAL);
	REQUIRE(relay_health_start(b, 20, 500, &h) == 0);
	dfd = listener(&dead, dead_port);
	if (dfd < 0) {
		printf("port %u was taken meanwhile; the come-back part is not checked\n",
		       dead_port);
	} else {
		CHECK(wait_for(b, 1, true));
		CHECK_EQ(count_of(&ch.ups, 1), 1);
		close(dfd);
		CHECK(wait_for(b, 1, false));
		CHECK_EQ(count_of(&ch.downs, 2), 2);
	}
	CHECK(relay_balancer_is_up(b, 0, relay_now_ms()));
	relay_health_stop(h);
	relay_health_stop(NULL);
	struct relay_upstream_stats st;

	relay_balancer_stats(b, 0, relay_now_ms(), &st);
	CHECK_EQ(st.health_failures, 0);
	relay_balancer_stats(b, 1, relay_now_ms(), &st);
	CHECK(st.health_failures >= 4);
	relay_balancer_put(b);

	/* a name whose first address is dead and second alive is healthy (any address) */
	memcpy(&addrs[0], &dead, sizeof(dead));
	REQUIRE(relay_balancer_create(&c, addrs, lens, NULL, NULL, 1, &b) == 0);
	if (relay_health_probe((void *)&dead, sizeof(dead), 500) == -ECONNREFUSED) {
		relay_health_check_all(b, 500);
		relay_health_check_all(b, 500);
		CHECK(!relay_balancer_is_up(b, 0, relay_now_ms()));
		CHECK_EQ(relay_balancer_add_address(b, 0, (void *)&live, sizeof(live)), 0);
		relay_health_check_all(b, 500);
		CHECK(relay_balancer_is_up(b, 0, relay_now_ms()));
	}
	relay_balancer_put(b);
	close(lfd);
	return test_exit("test_relay_health");
}
