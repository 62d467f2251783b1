/* SPDX-License-Identifier: MIT */
/*
 * Description: the relay's signal loop (tools/relay/signals.c): SIGHUP runs a reload (the
 * config file's new upstream applies, the log says so) and the loop goes on; SIGTERM ends
 * it with STOPPING=1 and the signal's number. The signals are sent to this process while
 * they are blocked, so the loop takes them without a handler.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/un.h>

#include "helpers.h"
#include "ops.h"

static char conf[] = "/tmp/tide-signals-XXXXXX";

static void write_conf(unsigned upstream_port)
{
	FILE *f = fopen(conf, "w");

	REQUIRE(f);
	fprintf(f, "listen 127.0.0.1:0\nupstream 127.0.0.1:%u\n", upstream_port);
	fclose(f);
}

static void on_tick(void *arg)
{
	++*(unsigned *)arg;
}

int main(void)
{
	unsigned ticks = 0;

	struct relay_runtime rt;
	struct relay_config cfg;
	sigset_t set;
	char *argv[] = {"tide-relay", "--config", conf, NULL};
	int fd = mkstemp(conf), log_fd = memfd_create("log", 0), saved = dup(2), sig;
	struct sockaddr_un na = {.sun_family = AF_UNIX};
	int nfd = socket(AF_UNIX, SOCK_DGRAM, 0);
	char buf[256], *text;
	ssize_t n;

	REQUIRE(fd >= 0 && log_fd >= 0 && nfd >= 0);
	close(fd);
	snprintf(na.sun_path, sizeof(na.sun_path), "%s.sock", conf);
	REQUIRE(bind(nfd, (void *)&na, sizeof(na)) == 0);
	setenv("NOTIFY_SOCKET", na.sun_path, 1);
	REQUIRE(relay_signals_block(&set) == 0);
	write_conf(1000);
	REQUIRE(relay_config_load(3, argv, &cfg, stderr) == 0);
	REQUIRE(dup2(log_fd, 2) == 2);
	REQUIRE(relay_runtime_start(&rt, &cfg, NULL) == 0);

	write_conf(2000);
	kill(getpid(), SIGHUP); /* pending until the loop takes it */
	kill(getpid(), SIGTERM);
	sig = relay_signals_wait(&rt, &set, 3, argv, on_tick, &ticks);
	CHECK_EQ(sig, SIGTERM);
	CHECK(ticks >= 1); /* the tick runs after each wake-up, signals included */
	CHECK_EQ(rt.reloads, 1);
	CHECK_EQ(rt.cfg.upstream[0].ep.port, 2000);
	relay_runtime_stop(&rt);

	off_t len = lseek(log_fd, 0, SEEK_END);

	text = calloc(1, (size_t)len + 1);
	REQUIRE(text && pread(log_fd, text, (size_t)len, 0) == len);
	dup2(saved, 2);
	CHECKF(strstr(text, "info SIGHUP: reloading\n") &&
		       strstr(text, "info reloaded: 1 listener, 1 upstream\n") &&
		       strstr(text, "info Terminated: draining for up to 5000 ms\n"),
	       "log:\n%s", text);
	free(text);
	if (relay_notify_available()) {
		bool stopping = false;

		while ((n = recv(nfd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
			buf[n] = '\0';
			stopping |= !strcmp(buf, "STOPPING=1");
		}
		CHECK(stopping);
	}
	unsetenv("NOTIFY_SOCKET");
	unlink(na.sun_path);
	unlink(conf);
	return test_exit("test_relay_signals");
}
