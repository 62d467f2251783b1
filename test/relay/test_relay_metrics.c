/* SPDX-License-Identifier: MIT */
/*
 * Description: the relay's process metrics (tools/relay/process_metrics.c) and the
 * per-upstream block (balance.c) in Prometheus text: promtool check metrics finds no
 * problem (skipped, with the value checks still run, when promtool is absent), and the
 * values agree with the process: resident memory and CPU above zero, open fds counted
 * (one more after an open), the start time in the last day, max fds the soft limit.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <time.h>

#include "helpers.h"
#include "ops.h"

static double value(const char *text, const char *name)
{
	char key[128];
	const char *p;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	return p ? strtod(p + strlen(key), NULL) : -12345;
}

static char *render(struct relay_balancer *b)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	REQUIRE(f);
	relay_write_build_info(f, TIDE_VERSION_STRING_T);
	CHECK_EQ(relay_write_process_metrics(f), 0);
	if (b)
		relay_balancer_write_prometheus(f, b, relay_now_ms());
	fclose(f);
	return text;
}

int main(void)
{
	struct sockaddr_storage addrs[2];
	socklen_t lens[2];
	const char *names[2] = {"127.0.0.1:8080", "[::1]:8081"};
	struct relay_balancer_config bc = {.policy = RELAY_BALANCE_LEASTCONN};
	struct relay_balancer *b;
	struct rlimit rl;
	char *text, path[] = "/tmp/tide-metrics-XXXXXX", cmd[256];
	int fd, extra;
	double fds;

	for (int i = 0; i < 2; i++) {
		struct sockaddr_in *a = (void *)&addrs[i];

		memset(a, 0, sizeof(addrs[i]));
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)(8080 + i));
		lens[i] = sizeof(*a);
	}
	REQUIRE(relay_balancer_create(&bc, addrs, lens, names, NULL, 2, &b) == 0);
	relay_balancer_connect_start(b, 0);
	relay_balancer_connect_failed(b, 0, -ECONNREFUSED, relay_now_ms());

	for (volatile unsigned long i = 0; i < 20000000; i++) /* some CPU time to count */
		;
	text = render(b);
	CHECK(strstr(text, "tide_build_info{version=\"" TIDE_VERSION_STRING_T "\","));
	CHECK(value(text, "process_resident_memory_bytes") > 1 << 20);
	CHECK(value(text, "process_virtual_memory_bytes") >=
	      value(text, "process_resident_memory_bytes"));
	CHECK(value(text, "process_cpu_seconds_total") > 0);
	REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK_EQ(value(text, "process_max_fds"), (double)rl.rlim_cur);
	double start = value(text, "process_start_time_seconds");

	CHECKF(start > (double)time(NULL) - 86400 && start <= (double)time(NULL) + 1,
	       "start time %f", start);
	fds = value(text, "process_open_fds");
	CHECK(fds >= 3);
	free(text);
	extra = open("/dev/null", O_RDONLY);
	text = render(NULL);
	CHECK_EQ(value(text, "process_open_fds"), fds + 1);
	close(extra);
	free(text);

	text = render(b);
	fd = mkstemp(path);
	REQUIRE(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	free(text);
	relay_balancer_put(b);
	if (access("/usr/bin/promtool", X_OK)) {
		unlink(path);
		test_exit("test_relay_metrics");
		skip("promtool not installed: the values were checked, the format was not");
	}
	snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s", path);
	int rc = system(cmd);

	CHECKF(rc == 0, "promtool check metrics said %d for %s", rc, path);
	if (rc == 0)
		unlink(path);
	return test_exit("test_relay_metrics");
}
