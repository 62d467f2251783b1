/* SPDX-License-Identifier: MIT */
/*
 * Description: tide-relay's options (tools/relay/options.c): the command line and the
 * config file through one table; repeatable --listen/--upstream; numbers, ports and names
 * checked with clear messages and file:line; --check's exit status; reload keeps the old
 * configuration when the new one is bad and keeps restart-only values; --help covers every
 * option.
 */
#include <stddef.h>

#include "helpers.h"
#include "ops.h"

static char diag_buf[1 << 16];

/* Load argv (NULL-terminated list) with problems captured into diag_buf. */
static unsigned load(struct relay_config *c, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	FILE *f = fmemopen(diag_buf, sizeof(diag_buf), "w");

	argv[argc++] = "tide-relay";
	while (*args)
		argv[argc++] = (char *)*args++;
	argv[argc] = NULL;
	REQUIRE(f);
	unsigned n = relay_config_load(argc, argv, c, f);
	fclose(f);
	return n;
}

#define LOAD(c, ...) load(c, (const char *const[]){__VA_ARGS__, NULL})

static bool said(const char *needle)
{
	bool ok = strstr(diag_buf, needle) != NULL;

	if (!ok)
		fprintf(stderr, "  expected '%s' in:\n%s", needle, diag_buf);
	return ok;
}

static char tmpdir[] = "/tmp/tide-options-XXXXXX";

static const char *write_file(const char *name, const char *text)
{
	static char path[4][256];
	static int k;
	char *p = path[k++ % 4];
	FILE *f;

	snprintf(p, 256, "%s/%s", tmpdir, name);
	f = fopen(p, "w");
	REQUIRE(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static void test_command_line(void)
{
	struct relay_config c;

	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:7000", "--listen", "[::1]:7001", "--upstream",
		      "127.0.0.1:8080", "--upstream", "127.0.0.1:8081,weight=3", "--upstream",
		      "localhost:8082 weight=2", "--balance", "leastconn", "--connect-timeout",
		      "250ms", "--drain-timeout", "1.5", "--health-interval", "2s", "--send-proxy",
		      "v2", "--accept-proxy", "--log-level", "debug", "--access-log",
		      "--max-conns-per-ip", "10", "--keepalive", "--reuse-port", "--threads", "2",
		      "--pool-max", "64M", "--block-size", "16K", "--idle-timeout", "0", "--stats",
		      "127.0.0.1:0", "--stats-timeout", "0.5"),
		 0);
	CHECK_EQ(c.n_listen, 2);
	CHECK(!strcmp(c.listen[1].host, "::1") && c.listen[1].port == 7001);
	CHECK_EQ(c.n_upstream, 3);
	CHECK_EQ(c.upstream[0].weight, 1);
	CHECK_EQ(c.upstream[1].weight, 3);
	CHECK(!strcmp(c.upstream[2].ep.host, "localhost") && c.upstream[2].weight == 2);
	CHECK_EQ(c.balance, RELAY_BALANCE_LEASTCONN);
	CHECK_EQ(c.connect_timeout_ms, 250);
	CHECK_EQ(c.drain_timeout_ms, 1500);
	CHECK_EQ(c.health_interval_ms, 2000);
	CHECK_EQ(c.send_proxy, 2);
	CHECK(c.accept_proxy && c.keepalive && c.reuse_port && c.access_log);
	CHECK_EQ(c.access_log_path[0], 0);
	CHECK_EQ(c.log_level, RELAY_LOG_DEBUG);
	CHECK_EQ(c.max_conns_per_ip, 10);
	CHECK_EQ(c.threads, 2);
	CHECK_EQ(c.pool_max, 64 << 20);
	CHECK_EQ(c.block_size, 16 << 10);
	CHECK_EQ(c.idle_timeout_ms, 0);
	CHECK(c.has_stats && c.stats.port == 0);
	CHECK_EQ(c.stats_timeout_ms, 500);

	/* --access-log FILE as two words, and --access-log=FILE */
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--access-log", "/tmp/a.log"), 0);
	CHECK(!strcmp(c.access_log_path, "/tmp/a.log"));
	CHECK_EQ(LOAD(&c, "--listen=127.0.0.1:1", "--echo", "--access-log=/tmp/b.log"), 0);
	CHECK(!strcmp(c.access_log_path, "/tmp/b.log"));

	/* defaults */
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:2"), 0);
	CHECK_EQ(c.balance, RELAY_BALANCE_ROUNDROBIN);
	CHECK_EQ(c.connect_timeout_ms, 5000);
	CHECK_EQ(c.log_level, RELAY_LOG_INFO);
	CHECK(!c.reuse_port && !c.send_proxy && !c.access_log);
}

static void test_command_line_problems(void)
{
	struct relay_config c;

	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:70000", "--echo"), 1);
	CHECK(said("command line: --listen: '127.0.0.1:70000': port 70000 out of range"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:0"), 1);
	CHECK(said("port 0 out of range (1 to 65535)"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:http", "--echo"), 1);
	CHECK(said("the port is not a number"));
	CHECK_EQ(LOAD(&c, "--listen", "::1:80", "--echo"), 1);
	CHECK(said("an IPv6 address goes in brackets"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--threads", "0"), 1);
	CHECK(said("--threads: wants a number from 1 to 1024, not '0'"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--max-conns", "12x"), 1);
	CHECK(said("--max-conns: wants a number"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--connect-timeout", "-1"), 1);
	CHECK(said("--connect-timeout: wants seconds (e.g. 5, 0.5, 250ms; 0: the kernel's own)"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--balance", "random"), 1);
	CHECK(said("wants roundrobin, leastconn or source, not 'random'"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--send-proxy", "v3"), 1);
	CHECK(said("wants v1 or v2"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--upstream", "127.0.0.1:2,weight=0"), 1);
	CHECK(said("weight=N (1 to 256)"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--bogus"), 1);
	CHECK(said("unknown option '--bogus'"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--threads"), 1);
	CHECK(said("option '--threads' wants a value"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--keepalive=maybe"), 1);
	CHECK(said("--keepalive: wants no value or yes/no, not 'maybe'"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--no-keepalive=x"), 1);
	CHECK(said("option '--no-keepalive=x' takes no value"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "stray"), 1);
	CHECK(said("unexpected argument 'stray'"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--balance", "source", "--balance",
		      "leastconn"),
		 1);
	CHECK(said("'balance' given twice"));
	/* the agent's limit of listeners */
	CHECK_EQ(LOAD(&c, "--echo", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2",
		      "--listen", "127.0.0.1:3", "--listen", "127.0.0.1:4", "--listen",
		      "127.0.0.1:5", "--listen", "127.0.0.1:6", "--listen", "127.0.0.1:7",
		      "--listen", "127.0.0.1:8", "--listen", "127.0.0.1:9"),
		 1);
	CHECK(said("--listen: more than 8 listeners"));
	/* every problem is reported, not only the first */
	CHECK_EQ(LOAD(&c, "--listen", "x", "--threads", "x", "--block-size", "3000"), 3);
	/* cross-option checks */
	CHECK_EQ(LOAD(&c, "--echo"), 1);
	CHECK(said("no listen"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1"), 1);
	CHECK(said("no upstream"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--upstream", "127.0.0.1:2"), 1);
	CHECK(said("not both"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:1", "--echo"), 1);
	CHECK(said("listen 127.0.0.1:1 given twice"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--upstream", "h:2", "--upstream", "h:2"), 1);
	CHECK(said("upstream h:2 given twice"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--send-proxy", "v1"), 1);
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--user", "no-such-user-tide"), 1);
	CHECK(said("no user 'no-such-user-tide'"));
	/* each worker needs 32 blocks (its ring, budget and reserve): the minimum is named */
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--pool-max", "2M", "--block-size",
		      "1M"),
		 1);
	CHECK(said("needs 32 blocks, so pool-max at least 33554432"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--pool-max", "32M", "--block-size",
		      "1M"),
		 0);
	/* --recv-batch: a size, or off (the default) */
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo"), 0);
	CHECK_EQ(c.recv_batch, 0);
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--recv-batch", "1M"), 0);
	CHECK_EQ(c.recv_batch, 1 << 20);
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--recv-batch", "off"), 0);
	CHECK_EQ(c.recv_batch, 0);
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--recv-batch", "1K"), 1);
	CHECK(said("wants 'off' or a SIZE from 4K to 64M"));
	/* --help needs nothing else */
	CHECK_EQ(LOAD(&c, "--help"), 0);
	CHECK(c.help);
}

static void test_file(void)
{
	struct relay_config c;
	const char *good = write_file("good.conf", "# a comment\n"
						   "\n"
						   "listen 127.0.0.1:7000   # trailing comment\n"
						   "  listen   [::1]:7000\n"
						   "upstream 127.0.0.1:8080\n"
						   "upstream 127.0.0.1:8081 weight=4\n"
						   "balance source\n"
						   "keepalive\n"
						   "reuse-port no\n"
						   "access-log\n"
						   "log-level warn\r\n"
						   "--threads 3\n");
	const char *bad = write_file("bad.conf", "listen 127.0.0.1:7000\n"
						 "upstream 127.0.0.1:99999\n"
						 "# fine\n"
						 "balanse roundrobin\n"
						 "threads many\n"
						 "keepalive maybe\n"
						 "check\n"
						 "log-level\n");

	CHECK_EQ(LOAD(&c, "--config", good), 0);
	CHECK_EQ(c.n_listen, 2);
	CHECK_EQ(c.n_upstream, 2);
	CHECK_EQ(c.upstream[1].weight, 4);
	CHECK_EQ(c.balance, RELAY_BALANCE_SOURCE);
	CHECK(c.keepalive && !c.reuse_port && c.access_log);
	CHECK_EQ(c.log_level, RELAY_LOG_WARN);
	CHECK_EQ(c.threads, 3);
	CHECK(!strcmp(c.config_path, good));

	/* the command line overrides the file; its list replaces the file's list */
	CHECK_EQ(LOAD(&c, "--config", good, "--upstream", "127.0.0.1:9000", "--threads", "4",
		      "--balance", "roundrobin"),
		 0);
	CHECK_EQ(c.n_upstream, 1);
	CHECK_EQ(c.upstream[0].ep.port, 9000);
	CHECK_EQ(c.n_listen, 2); /* not given on the command line: the file's */
	CHECK_EQ(c.threads, 4);
	CHECK_EQ(c.balance, RELAY_BALANCE_ROUNDROBIN);

	/* every problem with its line */
	CHECK_EQ(LOAD(&c, "--config", bad), 6);
	char where[300];

	snprintf(where, sizeof(where), "%s:2: upstream: '127.0.0.1:99999': port 99999 out of range",
		 bad);
	CHECK(said(where));
	snprintf(where, sizeof(where), "%s:4: unknown option 'balanse'", bad);
	CHECK(said(where));
	snprintf(where, sizeof(where), "%s:5: threads: wants a number from 1 to 1024", bad);
	CHECK(said(where));
	snprintf(where, sizeof(where), "%s:6: keepalive: wants no value or yes/no", bad);
	CHECK(said(where));
	snprintf(where, sizeof(where), "%s:7: 'check' is for the command line only", bad);
	CHECK(said(where));
	snprintf(where, sizeof(where), "%s:8: 'log-level' wants a value", bad);
	CHECK(said(where));
	CHECK(!strstr(diag_buf, ":3:"));

	/* a file that is not there */
	CHECK_EQ(LOAD(&c, "--config", "/nonexistent/tide.conf"), 1);
	CHECK(said("/nonexistent/tide.conf: cannot read: No such file or directory"));

	/* the example shipped with the unit passes --check */
	CHECK_EQ(LOAD(&c, "--config", TIDE_SOURCE_DIR "/tools/relay/relay.conf.example", "--check"),
		 0);
	CHECK(c.check);
	CHECK_EQ(c.n_upstream, 3);
}

static void test_resolve(void)
{
	struct relay_endpoint ep = {.host = "localhost", .port = 80};
	struct sockaddr_storage sa[RELAY_ADDRS_MAX];
	socklen_t len[RELAY_ADDRS_MAX];
	unsigned n = 0;

	CHECK_EQ(relay_endpoint_resolve_all(&ep, false, sa, len, RELAY_ADDRS_MAX, &n), 0);
	CHECK(n >= 1);
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < i; j++)
			CHECK(!relay_addr_equal((void *)&sa[i],
						(void *)&sa[j])); /* no duplicates */
	snprintf(ep.host, sizeof(ep.host), "127.0.0.1");
	CHECK_EQ(relay_endpoint_resolve_all(&ep, false, sa, len, RELAY_ADDRS_MAX, &n), 0);
	CHECK_EQ(n, 1);
	snprintf(ep.host, sizeof(ep.host), "no-such-host.invalid");
	CHECK(relay_endpoint_resolve(&ep, false, sa, len) < 0); /* -ENOENT, or -EAGAIN offline */
}

static void test_check_exit(void)
{
	struct relay_config c;
	char out[512];
	FILE *f;

	f = fmemopen(out, sizeof(out), "w");
	CHECK_EQ(relay_config_check_exit(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--check"),
					 &c, f),
		 0);
	fclose(f);
	CHECK(strstr(out, "configuration OK: 1 listener, 0 upstreams (echo)"));
	f = fmemopen(out, sizeof(out), "w");
	CHECK_EQ(relay_config_check_exit(LOAD(&c, "--listen", "127.0.0.1:1", "--check"), &c, f), 2);
	fclose(f);
	CHECK(strstr(out, "1 problem in the configuration"));
}

static void test_reload(void)
{
	struct relay_config cur, fresh;
	char *argv[] = {"tide-relay", "--config", NULL, NULL};
	FILE *f;
	unsigned n;

	argv[2] = (char *)write_file("reload.conf", "listen 127.0.0.1:7000\n"
						    "upstream 127.0.0.1:8080\n"
						    "threads 2\n");
	REQUIRE(relay_config_load(3, argv, &cur, NULL) == 0);

	/* a good edit: new upstreams apply; threads is restart-only and is kept */
	write_file("reload.conf", "listen 127.0.0.1:7000\n"
				  "listen 127.0.0.1:7002\n"
				  "upstream 127.0.0.1:8081\n"
				  "upstream 127.0.0.1:8082\n"
				  "threads 4\n");
	f = fmemopen(diag_buf, sizeof(diag_buf), "w");
	n = relay_config_reload(&cur, 3, argv, &fresh, f);
	fclose(f);
	CHECK_EQ(n, 0);
	CHECK_EQ(fresh.n_upstream, 2);
	CHECK_EQ(fresh.n_listen, 2);
	CHECK_EQ(fresh.threads, 2);
	CHECK(said("threads changes only at restart"));
	cur = fresh;

	/* a bad edit: problems reported, the running configuration stays what it was */
	write_file("reload.conf", "listen 127.0.0.1:7000\nupstream 127.0.0.1:0\n");
	f = fmemopen(diag_buf, sizeof(diag_buf), "w");
	n = relay_config_reload(&cur, 3, argv, &fresh, f);
	fclose(f);
	CHECK(n > 0);
	CHECK(said("reload.conf:2: upstream"));
	CHECK_EQ(cur.n_upstream, 2);
	CHECK_EQ(cur.upstream[0].ep.port, 8081);
}

/* Reload what was started with extra_a as if the file now said extra_b. */
static unsigned reload_pair(const char *extra_a, const char *extra_b, struct relay_config *cur,
			    struct relay_config *fresh)
{
	char *argv[] = {"tide-relay", "--config", NULL, NULL};
	char text[512];
	FILE *f;
	unsigned n;

	snprintf(text, sizeof(text), "listen 127.0.0.1:7000\n%s", extra_a);
	argv[2] = (char *)write_file("audit.conf", text);
	REQUIRE(relay_config_load(3, argv, cur, NULL) == 0);
	snprintf(text, sizeof(text), "listen 127.0.0.1:7000\n%s", extra_b);
	write_file("audit.conf", text);
	memset(diag_buf, 0, sizeof(diag_buf));
	f = fmemopen(diag_buf, sizeof(diag_buf), "w");
	n = relay_config_reload(cur, 3, argv, fresh, f);
	fclose(f);
	return n;
}

/* Every option of the table either applies on reload (the fresh configuration has the new
 * value, nothing is said) or is restart-only (the running value is kept and the reload says
 * so). A new option must be added here, so it cannot be forgotten by reload. */
static void test_reload_every_option(void)
{
	static const struct {
		const char *name, *a, *b;
	} t[] = {
		{"listen", "upstream 127.0.0.1:1\n",
		 "upstream 127.0.0.1:1\nlisten 127.0.0.1:7001\n"},
		{"upstream", "upstream 127.0.0.1:1\n", "upstream 127.0.0.1:2\n"},
		{"balance", "upstream 127.0.0.1:1\n", "upstream 127.0.0.1:1\nbalance source\n"},
		{"connect-timeout", "echo\n", "echo\nconnect-timeout 2\n"},
		{"drain-timeout", "echo\n", "echo\ndrain-timeout 0\n"},
		{"drain-idle", "echo\n", "echo\ndrain-idle 1\n"},
		{"splice", "echo\n", "echo\nsplice 1M\n"},
		{"recv-batch", "echo\n", "echo\nrecv-batch 1M\n"},
		{"health-interval", "upstream 127.0.0.1:1\n",
		 "upstream 127.0.0.1:1\nhealth-interval 3\n"},
		{"send-proxy", "upstream 127.0.0.1:1\n", "upstream 127.0.0.1:1\nsend-proxy v2\n"},
		{"accept-proxy", "echo\n", "echo\naccept-proxy\n"},
		{"log-level", "echo\n", "echo\nlog-level debug\n"},
		{"syslog", "echo\n", "echo\nsyslog\n"},
		{"access-log", "echo\n", "echo\naccess-log\n"},
		{"user", "echo\n", "echo\nuser root\n"},
		{"max-conns-per-ip", "echo\n", "echo\nmax-conns-per-ip 3\n"},
		{"keepalive", "echo\n", "echo\nkeepalive\n"},
		{"reuse-port", "echo\n", "echo\nreuse-port\n"},
		{"threads", "echo\n", "echo\nthreads 2\n"},
		{"max-conns", "echo\n", "echo\nmax-conns 7\n"},
		{"pool-max", "echo\n", "echo\npool-max 512M\n"},
		{"block-size", "echo\n", "echo\nblock-size 16K\n"},
		{"idle-timeout", "echo\n", "echo\nidle-timeout 9\n"},
		{"stats", "echo\n", "echo\nstats 127.0.0.1:7009\n"},
		{"stats-timeout", "echo\n", "echo\nstats-timeout 9\n"},
	};
	struct relay_config cur, fresh;
	unsigned covered = 0;

	for (size_t i = 0; i < relay_n_options; i++) {
		const struct relay_option *o = &relay_options[i];
		size_t k = 0;
		char kept[96];

		if (o->cli_only || !strcmp(o->name, "echo"))
			continue; /* echo: below */
		while (k < sizeof(t) / sizeof(t[0]) && strcmp(t[k].name, o->name))
			k++;
		CHECKF(k < sizeof(t) / sizeof(t[0]), "option '%s' is not in the reload audit",
		       o->name);
		if (k == sizeof(t) / sizeof(t[0]))
			continue;
		covered++;
		CHECKF(reload_pair(t[k].a, t[k].b, &cur, &fresh) == 0, "%s: %s", o->name, diag_buf);
		snprintf(kept, sizeof(kept), "%s changes only at restart", o->name);
		if (o->restart_only) {
			CHECKF(strstr(diag_buf, kept), "%s: restart-only, kept and said: '%s'",
			       o->name, diag_buf);
			CHECKF(!memcmp(&cur, &fresh, offsetof(struct relay_config, listen_line)),
			       "%s: the running value is kept", o->name);
		} else {
			CHECKF(!strstr(diag_buf, "changes only at restart"),
			       "%s: applied, not kept: %s", o->name, diag_buf);
			CHECKF(memcmp(&cur, &fresh, offsetof(struct relay_config, listen_line)),
			       "%s: the new value applies", o->name);
		}
	}
	CHECK_EQ(covered, sizeof(t) / sizeof(t[0]));
	/* echo <-> upstreams: refused as a whole (kept, with the reason) */
	CHECK(reload_pair("echo\n", "upstream 127.0.0.1:1\n", &cur, &fresh) > 0);
	CHECK(said("echo changes only at restart"));
}

/* The file's syntax: '#' anywhere, decimal seconds only, flags off from the command line,
 * FILE:LINE for cross-line problems, NUL bytes, sizes too big. */
static void test_syntax(void)
{
	struct relay_config c;
	const char *p;

	p = write_file("hash.conf", "listen 127.0.0.1:7000\nupstream 127.0.0.1:7001#backup\n"
				    "balance source# comment\naccess-log /tmp/a\\#b.log\n");
	CHECKF(LOAD(&c, "--config", p) == 0, "%s", diag_buf);
	CHECK_EQ(c.upstream[0].ep.port, 7001);
	CHECK_EQ(c.balance, RELAY_BALANCE_SOURCE);
	CHECK(!strcmp(c.access_log_path, "/tmp/a#b.log"));
	for (const char *const *v = (const char *const[]){"0x10", "1e3", "0x1p4", "-1", " 5", "5 s",
							  "1.2.3", ".", "inf", "nan", NULL};
	     *v; v++) {
		CHECKF(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--idle-timeout", *v) == 1,
		       "idle-timeout '%s' refused", *v);
	}
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--idle-timeout", ".5"), 0);
	CHECK_EQ(c.idle_timeout_ms, 500);
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--idle-timeout", "250ms"), 0);
	CHECK_EQ(c.idle_timeout_ms, 250);
	p = write_file("flags.conf", "listen 127.0.0.1:7000\necho\nkeepalive\naccept-proxy\n");
	CHECK_EQ(LOAD(&c, "--config", p, "--no-keepalive", "--accept-proxy=no"), 0);
	CHECK(!c.keepalive && !c.accept_proxy);
	CHECK_EQ(LOAD(&c, "--config", p), 0);
	CHECK(c.keepalive && c.accept_proxy);
	p = write_file("lines.conf", "listen 127.0.0.1:7000\nupstream 127.0.0.1:7001\n"
				     "listen 127.0.0.1:7000\nupstream 127.0.0.1:7001\n"
				     "user no-such-user-xyz\n");
	CHECK_EQ(LOAD(&c, "--config", p), 3);
	CHECK(said("lines.conf:3: listen 127.0.0.1:7000 given twice"));
	CHECK(said("lines.conf:4: upstream 127.0.0.1:7001 given twice"));
	CHECK(said("lines.conf:5: user: no user"));
	p = write_file("nul.conf", "listen 127.0.0.1:7000\n");
	{
		FILE *f = fopen(p, "a");

		REQUIRE(f);
		fwrite("echo\0x\n", 1, 7, f);
		fclose(f);
	}
	CHECK_EQ(LOAD(&c, "--config", p), 1);
	CHECK(said("nul.conf:2: a NUL byte"));
	CHECK_EQ(LOAD(&c, "--listen", "127.0.0.1:1", "--echo", "--pool-max", "1T"), 1);
	CHECK(said("too big"));
	CHECK_EQ(LOAD(&c, "--listen", ":7000", "--echo"), 0);
	CHECK(!strcmp(c.listen[0].host, "*")); /* every address, as the engine binds it */
	CHECK_EQ(LOAD(&c, "--listen", "*:7000", "--echo"), 0);
	CHECK(!strcmp(c.listen[0].host, "*"));
	CHECK_EQ(LOAD(&c, "--listen", "[::]:7000", "--echo"), 0);
	CHECK(!strcmp(c.listen[0].host, "::"));
	CHECK_EQ(LOAD(&c, "--upstream", ":7000", "--listen", "127.0.0.1:1"), 1);
}

static void test_help(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	const char *fixed[] = {"listen",	  "upstream",	   "balance",
			       "connect-timeout", "drain-timeout", "health-interval",
			       "send-proxy",	  "accept-proxy",  "config",
			       "check",		  "log-level",	   "syslog",
			       "access-log",	  "user",	   "max-conns-per-ip",
			       "keepalive",	  "reuse-port",	   "echo",
			       "threads",	  "max-conns",	   "pool-max",
			       "block-size",	  "idle-timeout",  "stats",
			       "stats-timeout"};

	relay_options_usage(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		char opt[64];

		snprintf(opt, sizeof(opt), "\n  --%s", fixed[i]);
		CHECKF(strstr(text, opt), "--help lacks --%s", fixed[i]);
	}
	for (size_t i = 0; i < relay_n_options; i++)
		CHECKF(relay_options[i].help && strlen(relay_options[i].help) > 20,
		       "--%s has no help", relay_options[i].name);
	CHECK(strstr(text, "--access-log [FILE]"));
	free(text);
}

int main(void)
{
	REQUIRE(mkdtemp(tmpdir));
	test_command_line();
	test_command_line_problems();
	test_file();
	test_resolve();
	test_check_exit();
	test_reload();
	test_reload_every_option();
	test_syntax();
	test_help();
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return test_exit("test_relay_options");
}
