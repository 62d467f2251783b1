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

#include "ops.h"

// forward.c -----------------------------------------------------------------------------

struct forward_config {
	struct relay_runtime *rt; /* configuration, balancer, per-IP counts (tools/relay) */
	struct tide_agent *agent;
	_Atomic bool resolve; /* every server failed a connect: resolve the names again (main) */
	size_t flow_limit;    /* bytes queued toward one side before its source waits */
	size_t budget;	      /* bytes one worker's queues may hold together before only
				 directions with an empty queue receive, `small` at a time */
	size_t small;
	unsigned drain_idle_ms; /* draining: a pair whose upstream finished ends once its client
				   was silent this long (--drain-idle); 0: at the deadline */
	size_t splice_pipe; /* a bulk direction goes through a pipe this big; 0: never */
};

/* The callbacks of accepted connections: relay through rt's balancer, or echo. cfg is kept. */
const struct tide_conn_ops *forward_ops(const struct forward_config *cfg);
/* The agent's worker_stop: drop what the drain kept of this worker's pairs. */
void forward_worker_stop(struct tide_worker *w, void *arg);

// stats_http.c --------------------------------------------------------------------------

struct stats_server;

/* Write the JSON document of /stats, or the Prometheus text of /metrics, to f. */
void stats_write_json(FILE *f, struct tide_pool *pool, const struct tide_agent *agent);
void stats_write_prometheus(FILE *f, struct tide_pool *pool, const struct tide_agent *agent);

/*
 * Bind addr ("HOST:PORT", port 0 picks one) and serve from a thread, many clients at once,
 * each given timeout_ms to send its request and take the answer. 0 or -errno.
 */
/* What /stats and /metrics add for the relay's runtime (upstreams, process); NULL: none. */
void stats_set_runtime(struct relay_runtime *rt);
int stats_server_start(const char *addr, unsigned timeout_ms, struct tide_pool *pool,
		       const struct tide_agent *agent, struct stats_server **srv);
unsigned stats_server_port(const struct stats_server *srv);
void stats_server_stop(struct stats_server *srv); /* join and free; NULL is a no-op */

#endif /* TIDE_RELAY_H */
