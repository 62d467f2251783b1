/* SPDX-License-Identifier: MIT */
/*
 * Description: tide-relay's logs (tools/relay/log.c): event lines with an RFC 3339 UTC
 * timestamp (ms) and a level, --log-level filtering, rate limiting per key with a
 * "suppressed K" line (on an injected clock), the access line's stable format in a file
 * and with the event log, reopening the access file, and whole lines from many threads.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <regex.h>
#include <sys/mman.h>

#include "helpers.h"
#include "ops.h"

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
	return fake_now;
}

/* Everything written to fd so far, from the start, as a string (caller frees). */
static char *slurp(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	char *buf = calloc(1, (size_t)len + 1);

	REQUIRE(buf && pread(fd, buf, (size_t)len, 0) == len);
	return buf;
}

static int fresh_fd(void)
{
	int fd = memfd_create("tide-log", MFD_CLOEXEC);

	REQUIRE(fd >= 0);
	return fd;
}

static unsigned count(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static bool every_line_matches(const char *text, const char *pattern, unsigned *lines)
{
	regex_t re;
	bool ok = true;
	char *copy = strdup(text), *save = NULL;

	REQUIRE(copy && !regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB));
	*lines = 0;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		(*lines)++;
		if (regexec(&re, l, 0, NULL, 0)) {
			fprintf(stderr, "  line does not match %s: '%s'\n", pattern, l);
			ok = false;
		}
	}
	regfree(&re);
	free(copy);
	return ok;
}

#define TS "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "

static void test_lines_and_levels(void)
{
	int fd = fresh_fd();
	struct relay_log_config c = {.level = RELAY_LOG_WARN, .fd = fd};
	unsigned lines;
	char *t;

	REQUIRE(relay_log_open(&c) == 0);
	relay_log(RELAY_LOG_ERROR, "upstream %s: %s", "127.0.0.1:9", "Connection refused");
	relay_log(RELAY_LOG_WARN, "warned");
	relay_log(RELAY_LOG_INFO, "not shown");
	relay_log(RELAY_LOG_DEBUG, "not shown either");
	CHECK(relay_log_enabled(RELAY_LOG_WARN));
	CHECK(!relay_log_enabled(RELAY_LOG_INFO));
	t = slurp(fd);
	CHECK(every_line_matches(t, TS "(error|warn|info|debug) .+$", &lines));
	CHECK_EQ(lines, 2);
	CHECK(strstr(t, " error upstream 127.0.0.1:9: Connection refused\n"));
	CHECK(strstr(t, " warn warned\n"));
	CHECK(!strstr(t, "not shown"));
	free(t);

	/* a very long message is cut, still one line */
	char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	relay_log(RELAY_LOG_ERROR, "%s", big);
	t = slurp(fd);
	CHECK(every_line_matches(t, TS "(error|warn) .+$", &lines));
	CHECK_EQ(lines, 3);
	free(t);
	relay_log_close();
	close(fd);

	char ts[32];

	relay_log_timestamp(86400000LL * 365 + 1234, ts, sizeof(ts));
	CHECK(!strcmp(ts, "1971-01-01T00:00:01.234Z"));
}

static void test_rate_limit(void)
{
	int fd = fresh_fd();
	struct relay_log_config c = {.level = RELAY_LOG_INFO,
				     .fd = fd,
				     .burst = 3,
				     .interval_ms = 1000,
				     .clock_ms = fake_clock};
	unsigned logged = 0;
	char *t;

	fake_now = 5000;
	REQUIRE(relay_log_open(&c) == 0);
	for (int i = 0; i < 10; i++)
		logged += relay_log_limited(RELAY_LOG_WARN, "upstream 10.0.0.1:80 refused",
					    "upstream 10.0.0.1:80 refused (%d)", i);
	CHECK_EQ(logged, 3);
	/* another key has its own budget */
	CHECK(relay_log_limited(RELAY_LOG_WARN, "other", "other event"));
	/* below the level: neither logged nor counted */
	CHECK(!relay_log_limited(RELAY_LOG_DEBUG, "dbg", "debug event"));
	fake_now += 999;
	CHECK(!relay_log_limited(RELAY_LOG_WARN, "upstream 10.0.0.1:80 refused", "still same"));
	fake_now += 1;
	CHECK(relay_log_limited(RELAY_LOG_WARN, "upstream 10.0.0.1:80 refused", "next window"));
	t = slurp(fd);
	CHECK_EQ(count(t, "refused ("), 3);
	CHECK(strstr(t, " warn suppressed 8 lines: upstream 10.0.0.1:80 refused\n"));
	CHECK(strstr(t, "suppressed 8 lines") < strstr(t, "next window"));
	CHECK(!strstr(t, "still same"));
	free(t);

	/* the timer flush says what a key suppressed even if it never logs again */
	for (int i = 0; i < 6; i++)
		relay_log_limited(RELAY_LOG_WARN, "burst", "burst %d", i);
	relay_log_flush_suppressed(); /* the window is not over: nothing yet */
	t = slurp(fd);
	CHECK(!strstr(t, "lines: burst"));
	free(t);
	fake_now += 1000;
	relay_log_flush_suppressed();
	t = slurp(fd);
	CHECK(strstr(t, "suppressed 3 lines: burst\n"));
	free(t);

	/* many distinct keys: bounded table, what an evicted key suppressed is still said */
	fake_now += 5000;
	for (int i = 0; i < 200; i++)
		for (int j = 0; j < 5; j++) {
			char key[32];

			snprintf(key, sizeof(key), "key %d", i);
			relay_log_limited(RELAY_LOG_INFO, key, "event of %s", key);
		}
	t = slurp(fd);
	CHECK_EQ(count(t, " info event of key "), 200 * 3);
	CHECK_EQ(count(t, "suppressed 2 lines: key "), 200 - 64); /* the evicted ones */
	free(t);
	relay_log_close(); /* and the ones still in the table, at close */
	t = slurp(fd);
	CHECK_EQ(count(t, "suppressed 2 lines: key "), 200);
	free(t);
	close(fd);
}

static void test_access(void)
{
	char path[] = "/tmp/tide-access-XXXXXX";
	int tfd = mkstemp(path), fd = fresh_fd();
	struct sockaddr_in cl = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in6 up = {.sin6_family = AF_INET6, .sin6_port = htons(8080)};
	struct relay_log_config c = {
		.level = RELAY_LOG_INFO, .fd = fd, .access = true, .access_path = path};
	struct relay_access a = {.client = (struct sockaddr *)&cl,
				 .upstream = (struct sockaddr *)&up,
				 .bytes_up = 123,
				 .bytes_down = 456789,
				 .duration_us = 12345678,
				 .end = RELAY_END_RESET};
	char moved[64], *t;
	unsigned lines;

	REQUIRE(tfd >= 0);
	close(tfd);
	inet_pton(AF_INET, "192.0.2.7", &cl.sin_addr);
	inet_pton(AF_INET6, "2001:db8::1", &up.sin6_addr);
	REQUIRE(relay_log_open(&c) == 0);
	relay_log_access(&a);
	a.end = RELAY_END_CLEAN;
	a.upstream = NULL;
	relay_log_access(&a);
	tfd = open(path, O_RDONLY);
	t = slurp(tfd);
	close(tfd);
	CHECK(every_line_matches(t,
				 TS
				 "access client=[^ ]+ listener=[^ ]+ upstream=[^ ]+ "
				 "bytes_up=[0-9]+ bytes_down=[0-9]+ duration_ms=[0-9]+\\.[0-9]{3} "
				 "end=(clean|reset|timeout|drain|refused|unreachable|error)$",
				 &lines));
	CHECK_EQ(lines, 2);
	CHECK(strstr(t, " access client=192.0.2.7:40000 listener=- upstream=[2001:db8::1]:8080 "
			"bytes_up=123 bytes_down=456789 duration_ms=12345.678 end=reset\n"));
	CHECK(strstr(t, "upstream=- bytes_up=123"));
	free(t);
	t = slurp(fd);
	CHECK_EQ(t[0], 0); /* nothing in the event log */
	free(t);

	/* logrotate: rename, reopen; new lines go to a new file */
	snprintf(moved, sizeof(moved), "%s.1", path);
	REQUIRE(rename(path, moved) == 0);
	CHECK_EQ(relay_log_reopen(), 0);
	a.end = RELAY_END_DRAIN;
	relay_log_access(&a);
	tfd = open(path, O_RDONLY);
	CHECK(tfd >= 0);
	t = slurp(tfd);
	close(tfd);
	CHECK(strstr(t, "end=drain") && !strstr(t, "end=reset"));
	free(t);
	unlink(moved);
	unlink(path);

	/* without a file: with the event log, at info */
	c.access_path = NULL;
	REQUIRE(relay_log_open(&c) == 0);
	a.end = RELAY_END_TIMEOUT;
	relay_log_access(&a);
	t = slurp(fd);
	CHECK(every_line_matches(t, TS "info access client=192.0.2.7:40000 .* end=timeout$",
				 &lines));
	CHECK_EQ(lines, 1);
	free(t);
	/* an access file that cannot be opened: an error, the old setup stays */
	c.access_path = "/nonexistent/dir/access.log";
	CHECK_EQ(relay_log_open(&c), -ENOENT);
	relay_log_close();
	close(fd);
	CHECK(!strcmp(relay_end_name(RELAY_END_UNREACHABLE), "unreachable"));
}

#define THREADS 4
#define PER	300

static void *writer(void *arg)
{
	long id = (long)arg;
	struct sockaddr_in cl = {.sin_family = AF_INET, .sin_port = htons((uint16_t)id)};
	struct relay_access a = {.client = (struct sockaddr *)&cl, .end = RELAY_END_CLEAN};

	for (int i = 0; i < PER; i++) {
		relay_log(RELAY_LOG_INFO, "thread %ld line %d %s", id, i,
			  "padding padding padding padding padding padding padding padding");
		relay_log_limited(RELAY_LOG_WARN, "shared", "limited from %ld", id);
		a.bytes_up = (uint64_t)i;
		relay_log_access(&a);
	}
	return NULL;
}

static void test_threads(void)
{
	int fd = fresh_fd();
	struct relay_log_config c = {.level = RELAY_LOG_INFO, .fd = fd, .access = true, .burst = 2};
	pthread_t t[THREADS];
	unsigned lines;
	char *text;

	REQUIRE(relay_log_open(&c) == 0);
	for (long i = 0; i < THREADS; i++)
		REQUIRE(pthread_create(&t[i], NULL, writer, (void *)i) == 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	text = slurp(fd);
	CHECK(every_line_matches(text,
				 TS "(info thread [0-9] line [0-9]+ padding( padding){7}|"
				    "info access client=.* end=clean|warn limited from [0-9]|"
				    "warn suppressed [0-9]+ lines: shared)$",
				 &lines));
	CHECK_EQ(count(text, " info thread "), THREADS * PER);
	CHECK_EQ(count(text, " info access "), THREADS * PER);
	CHECK(count(text, "limited from") >= 2);
	free(text);
	relay_log_close();
	close(fd);
}

int main(void)
{
	test_lines_and_levels();
	test_rate_limit();
	test_access();
	test_threads();
	return test_exit("test_relay_log");
}
