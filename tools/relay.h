/* SPDX-License-Identifier: MIT */
/*
 * relay.h - what tide-relay's files share. Application side: tide-relay is a program on the
 * public API (tide.h, tide/net.h) and includes nothing of the engine's.
 */
#ifndef TIDE_RELAY_H
#define TIDE_RELAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include <tide.h>
#include <tide/net.h>

// forward.c -----------------------------------------------------------------------------

struct forward_config {
	/* The upstream's addresses (NULL: echo). Replaced, never changed in place, when the
	 * name is resolved again: a connect in progress keeps the list it started with. */
	_Atomic(const struct tide_addrs *) upstream;
	_Atomic bool resolve; /* every address failed: resolve the name again (main thread) */
	unsigned connect_timeout_ms;
	size_t flow_limit; /* bytes queued toward one side before its source is paused */
	size_t budget;	   /* bytes one worker's queues may hold together before directions
			      holding at least `small` wait (the rest is the reserve) */
	size_t small;
};

/* The callbacks of accepted connections: relay to cfg->upstream, or echo. cfg is kept. */
const struct tide_conn_ops *forward_ops(const struct forward_config *cfg);

// options.c -----------------------------------------------------------------------------

#define RELAY_MAX_LISTEN 8

struct options {
	const char *listen[RELAY_MAX_LISTEN];
	unsigned nlisten;
	const char *upstream;
	const char *stats;
	bool echo;
	unsigned threads;
	unsigned max_conns;
	size_t pool_max;
	size_t block_size;
	double idle_timeout, connect_timeout, drain_timeout, stats_timeout;
};

/* Parse the command line into o: 0, or the exit status (2) after a message on stderr;
 * --help and --version print and exit. */
int options_parse(int argc, char **argv, struct options *o);

// stats_http.c --------------------------------------------------------------------------

struct stats_server;

/* Write the JSON document of /stats, or the Prometheus text of /metrics, to f. */
void stats_write_json(FILE *f, struct tide_pool *pool, const struct tide_agent *agent);
void stats_write_prometheus(FILE *f, struct tide_pool *pool, const struct tide_agent *agent);

/*
 * Bind addr ("HOST:PORT", port 0 picks one) and serve from a thread, many clients at once,
 * each given timeout_ms to send its request and take the answer. 0 or -errno.
 */
int stats_server_start(const char *addr, unsigned timeout_ms, struct tide_pool *pool,
		       const struct tide_agent *agent, struct stats_server **srv);
unsigned stats_server_port(const struct stats_server *srv);
void stats_server_stop(struct stats_server *srv); /* join and free; NULL is a no-op */

#endif /* TIDE_RELAY_H */
