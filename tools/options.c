/* SPDX-License-Identifier: MIT */
/*
 * options.c - tide-relay's command line. Application side.
 *
 * One table says, for every option, what its value is (an address, a count, a size, seconds,
 * or none), where it goes in struct options and the range it must be in; one parser per kind
 * of value checks it, and one message shape reports a bad one, so adding an option is one
 * line. Addresses are only checked for their HOST:PORT shape here; resolving them is
 * tide_addrs_resolve()'s job (tide-relay.c), the one parser of the project.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

#define EXIT_USAGE 2

enum kind {
	ADDR,
	LISTEN,
	FLAG,
	COUNT,
	SIZE,
	SECONDS,
	HELP,
	VERSION
};

struct opt {
	const char *name;
	enum kind kind;
	size_t off;	  /* where the value goes in struct options */
	double min, max;  /* the range of a COUNT, SIZE or SECONDS */
	const char *want; /* "wants ..." in the message for a bad value */
};

#define O(field) offsetof(struct options, field)

static const struct opt opts[] = {
	{"listen", LISTEN, 0, 0, 0, "HOST:PORT"},
	{"upstream", ADDR, O(upstream), 0, 0, "HOST:PORT"},
	{"stats", ADDR, O(stats), 0, 0, "HOST:PORT"},
	{"echo", FLAG, O(echo), 0, 0, NULL},
	{"threads", COUNT, O(threads), 1, 1024, "a number from 1 to 1024"},
	{"max-conns", COUNT, O(max_conns), 0, 100000000, "a number"},
	{"pool-max", SIZE, O(pool_max), 2 << 20, 1ull << 46, "a SIZE of at least 2M"},
	{"block-size", SIZE, O(block_size), 1024, 1 << 20, "a power of two from 1K to 1M"},
	{"idle-timeout", SECONDS, O(idle_timeout), 0, 4000000, "seconds (0: never)"},
	{"connect-timeout", SECONDS, O(connect_timeout), 0, 4000000, "seconds (0: the kernel's)"},
	{"drain-timeout", SECONDS, O(drain_timeout), 0.001, 4000000, "seconds above 0"},
	{"stats-timeout", SECONDS, O(stats_timeout), 0.001, 86400, "seconds above 0"},
	{"help", HELP, 0, 0, 0, NULL},
	{"version", VERSION, 0, 0, 0, NULL},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tide-relay --listen HOST:PORT (--upstream HOST:PORT | --echo) [options]\n"
		"\n"
		"Forward TCP connections to an upstream (or echo them back), with buffers from an\n"
		"elastic tide pool and I/O on io_uring.\n"
		"\n"
		"  --listen HOST:PORT     address to accept on (port 0 picks one; see stderr);\n"
		"                         may be given up to 8 times\n"
		"  --upstream HOST:PORT   relay every connection to this address (every address\n"
		"                         of the name is tried in turn)\n"
		"  --echo                 send back what each client sends instead\n"
		"  --threads N            worker threads, one io_uring each (default 1)\n"
		"  --max-conns N          client connections at once; more are closed at once\n"
		"                         (default 0: no limit)\n"
		"  --pool-max SIZE        most buffer memory the pool may map (default 1G)\n"
		"  --block-size SIZE      buffer size, a power of two from 1K to 1M (default 64K)\n"
		"  --idle-timeout SEC     reset connections idle this long (default 300; 0: "
		"never)\n"
		"  --connect-timeout SEC  most one upstream connect attempt may take (default 5)\n"
		"  --drain-timeout SEC    at SIGINT/SIGTERM, how long connections may still run\n"
		"                         (default 5); a second signal ends them at once\n"
		"  --stats HOST:PORT      serve /stats (JSON) and /metrics (Prometheus) here\n"
		"  --stats-timeout SEC    most time one stats request may take (default 5)\n"
		"  --help, --version\n"
		"\n"
		"SIZE takes a K, M or G suffix (powers of 1024).\n"
		"Exit status: 0 clean, 1 failure (or buffers not returned), 2 bad arguments,\n"
		"3 io_uring not available to this process.\n");
}

__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "tide-relay: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\ntry 'tide-relay --help'\n");
	va_end(ap);
	return EXIT_USAGE;
}

/* A decimal number with an optional K/M/G (KiB, kb ...) suffix; false when it is not. */
static bool parse_size(const char *s, double *out)
{
	static const char units[] = "kmg";
	const char *u;
	char *end;
	unsigned long long v;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return false;
	*out = (double)v;
	if (*end && (u = strchr(units, *end | 0x20))) {
		*out *= (double)(1ull << (10 * (u - units + 1)));
		end++;
		end += (*end | 0x20) == 'i';
		end += (*end | 0x20) == 'b';
	}
	return !*end;
}

static bool parse_number(const struct opt *op, const char *s, double *v)
{
	char *end;

	if (op->kind == SIZE)
		return parse_size(s, v) && *v >= op->min && *v <= op->max;
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtod(s, &end);
	if (errno || *end || !(*v >= op->min && *v <= op->max))
		return false;
	return op->kind != COUNT || *v == (double)(unsigned long)*v;
}

static bool looks_like_addr(const char *s)
{
	const char *colon = strrchr(s, ':');

	return colon && colon[1];
}

/* The port of HOST:PORT when it is a number over 65535 (else 0: resolving says the rest). */
static unsigned long port_over(const char *s)
{
	const char *p = strrchr(s, ':') + 1;
	char *end;
	unsigned long v = strtoul(p, &end, 10);

	return !*end && *p >= '0' && *p <= '9' && v > 65535 ? v : 0;
}

/* Store one option's value: 0, or the exit status. */
static int take(const struct opt *op, const char *arg, struct options *o)
{
	char *field = (char *)o + op->off;
	double v;

	switch (op->kind) {
	case LISTEN:
		if (o->nlisten == RELAY_MAX_LISTEN)
			return bad("--listen may be given at most %d times", RELAY_MAX_LISTEN);
		field = (char *)&o->listen[o->nlisten++];
		/* fallthrough */
	case ADDR:
		if (!looks_like_addr(arg))
			return bad("--%s wants HOST:PORT, not '%s'", op->name, arg);
		if (port_over(arg))
			return bad("--%s: port %lu is out of range (0 to 65535)", op->name,
				   port_over(arg));
		*(const char **)field = arg;
		return 0;
	case FLAG:
		*(bool *)field = true;
		return 0;
	case HELP:
		usage(stdout);
		exit(0);
	case VERSION:
		printf("tide-relay %s\n", TIDE_VERSION_STRING);
		exit(0);
	default:
		break;
	}
	if (!parse_number(op, arg, &v))
		return bad("--%s wants %s, not '%s'", op->name, op->want, arg);
	if (op->kind == COUNT)
		*(unsigned *)field = (unsigned)v;
	else if (op->kind == SIZE)
		*(size_t *)field = (size_t)v;
	else
		*(double *)field = v;
	return 0;
}

/* The checks that involve more than one option. */
static int check(const struct options *o)
{
	if (!o->nlisten)
		return bad("--listen HOST:PORT is required");
	if (!o->upstream == !o->echo)
		return bad("give exactly one of --upstream HOST:PORT and --echo");
	if (o->block_size & (o->block_size - 1))
		return bad("--block-size wants a power of two from 1K to 1M, not %zu",
			   o->block_size);
	if (o->pool_max < o->block_size)
		return bad("--pool-max is smaller than --block-size");
	return 0;
}

int options_parse(int argc, char **argv, struct options *o)
{
	struct option longs[NOPTS + 1];
	int c, rc;

	memset(o, 0, sizeof(*o));
	o->threads = 1;
	o->pool_max = (size_t)1 << 30;
	o->block_size = 64 * 1024;
	o->idle_timeout = 300;
	o->connect_timeout = 5;
	o->drain_timeout = 5;
	o->stats_timeout = 5;
	memset(longs, 0, sizeof(longs));
	for (unsigned i = 0; i < NOPTS; i++) {
		longs[i].name = opts[i].name;
		longs[i].has_arg =
			opts[i].kind == FLAG || opts[i].kind == HELP || opts[i].kind == VERSION
				? no_argument
				: required_argument;
		longs[i].val = (int)i + 1; /* 0 would read as "unknown" in optopt */
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		if (c == '?' && optopt > 0 && optopt <= (int)NOPTS)
			return bad("option '%s' wants a value", argv[optind - 1]);
		if (c == '?')
			return bad("unknown option '%s'", argv[optind - 1]);
		rc = take(&opts[c - 1], optarg, o);
		if (rc)
			return rc;
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	return check(o);
}
