/* SPDX-License-Identifier: MIT */
/*
 * Description: active health checks (tools/relay/health.c): a TCP connect probe accepts a
 * listening loopback port and refuses a closed one; a round of checks reports to the
 * balancer; the checker thread takes a dead server out and brings it back once it
 * listens again, and stops at once when asked. Every wait is bounded. A check whose first
 * address could not be tried for the relay's own shortage (no local port: EADDRNOTAVAIL, made
 * in a network namespace of its own with a two-port ephemeral range) while the second refused
 * is not run: not counted against the server (root; skipped otherwise).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>

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

/* In a network namespace of its own with lo up; false when this process may not make one. */
static bool own_netns(void)
{
	struct ifreq ifr = {0};
	int s;

	if (unshare(CLONE_NEWNET))
		return false;
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	REQUIRE(s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
	ifr.ifr_flags |= IFF_UP;
	REQUIRE(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
	close(s);
	return true;
}

/* Ephemeral ports 40000-40001 only (in the namespace of its own). */
static void two_ports(void)
{
	int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY | O_CLOEXEC);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, "40000 40001\n", 12) == 12);
	close(fd);
}

/* First address out of local ports, second refusing: not run, nothing counted. */
static void local_then_refused(void)
{
	struct sockaddr_in full, closed;
	struct sockaddr_storage addrs[1];
	socklen_t lens[1] = {sizeof(full)};
	struct relay_balancer_config c = {
		.policy = RELAY_BALANCE_ROUNDROBIN, .fail_threshold = 1, .active_checks = true};
	struct relay_balancer *b;
	struct relay_upstream_stats st;
	int lfd, dfd, held[2];

	if (!own_netns()) {
		printf("no network namespace of its own (not root?): local shortage not checked\n");
		return;
	}
	lfd = listener(&full, 0);
	dfd = listener(&closed, 0);
	REQUIRE(lfd >= 0 && dfd >= 0);
	close(dfd);
	two_ports();		      /* after the listeners took their ports */
	for (int i = 0; i < 2; i++) { /* the ephemeral ports toward `full` are taken */
		held[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(held[i] >= 0);
		if (connect(held[i], (void *)&full, sizeof(full)))
			REQUIRE(errno == EADDRNOTAVAIL); /* the kernel connects from one parity */
	}
	CHECK_EQ(relay_health_probe((void *)&full, sizeof(full), 500), -EADDRNOTAVAIL);
	CHECK_EQ(relay_health_probe((void *)&closed, sizeof(closed), 500), -ECONNREFUSED);
	memcpy(&addrs[0], &full, sizeof(full));
	REQUIRE(relay_balancer_create(&c, addrs, lens, NULL, NULL, 1, &b) == 0);
	CHECK_EQ(relay_balancer_add_address(b, 0, (void *)&closed, sizeof(closed)), 0);
	relay_health_check_all(b, 500);
	relay_balancer_stats(b, 0, relay_now_ms(), &st);
	CHECK_EQ(st.health_failures, 0);
	CHECK(relay_balancer_is_up(b, 0, relay_now_ms()));
	relay_balancer_put(b);
	close(held[0]);
	close(held[1]);
	close(lfd);
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
	local_then_refused(); /* last: it moves this process into a network namespace */
	return test_exit("test_relay_health");
}
