/* SPDX-License-Identifier: MIT */
/*
 * Description: systemd notify (tools/relay/notify.c) through libsystemd: with a
 * NOTIFY_SOCKET datagram socket made here, READY=1, RELOADING=1 with MONOTONIC_USEC (now,
 * on CLOCK_MONOTONIC), STOPPING=1 and STATUS= (one line) arrive as sent; without
 * NOTIFY_SOCKET every call is a no-op returning 0. A build without libsystemd answers
 * -ENOSYS under a NOTIFY_SOCKET (checked here when so built).
 */
#include <sys/un.h>
#include <time.h>

#include "helpers.h"
#include "ops.h"

static int sock;

static void expect(const char *want)
{
	char buf[1024];
	ssize_t n = recv(sock, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	CHECKF(n > 0, "nothing received, want '%s'", want);
	if (n <= 0)
		return;
	buf[n] = '\0';
	CHECKF(!strcmp(buf, want), "received '%s', want '%s'", buf, want);
}

int main(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char dir[] = "/tmp/tide-notify-XXXXXX", buf[256];
	struct timespec ts;
	unsigned long long usec, before;
	ssize_t n;

	unsetenv("NOTIFY_SOCKET");
	CHECK_EQ(relay_notify_ready(), 0);
	CHECK_EQ(relay_notify_status("idle"), 0);

	REQUIRE(mkdtemp(dir));
	snprintf(a.sun_path, sizeof(a.sun_path), "%s/notify", dir);
	sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	REQUIRE(sock >= 0 && bind(sock, (void *)&a, sizeof(a)) == 0);
	setenv("NOTIFY_SOCKET", a.sun_path, 1);

	if (!relay_notify_available()) {
		CHECK_EQ(relay_notify_ready(), -ENOSYS);
		unlink(a.sun_path);
		rmdir(dir);
		test_exit("test_relay_notify");
		skip("built without libsystemd: only the -ENOSYS answer was checked");
	}
	CHECK_EQ(relay_notify_ready(), 0);
	expect("READY=1");
	CHECK_EQ(relay_notify_stopping(), 0);
	expect("STOPPING=1");
	CHECK_EQ(relay_notify_status("%u listeners, %s", 2, "3 upstreams\nup"), 0);
	expect("STATUS=2 listeners, 3 upstreams up");

	clock_gettime(CLOCK_MONOTONIC, &ts);
	before = (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000;
	CHECK_EQ(relay_notify_reloading(), 0);
	n = recv(sock, buf, sizeof(buf) - 1, MSG_DONTWAIT);
	CHECK(n > 0);
	buf[n > 0 ? n : 0] = '\0';
	CHECKF(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1, "got '%s'", buf);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	CHECK(usec >= before && usec <= (unsigned long long)ts.tv_sec * 1000000 +
						(unsigned long long)ts.tv_nsec / 1000);

	/* a socket that is gone: the error comes back, nothing crashes */
	close(sock);
	unlink(a.sun_path);
	CHECK(relay_notify_ready() < 0);
	rmdir(dir);
	unsetenv("NOTIFY_SOCKET");
	return test_exit("test_relay_notify");
}
