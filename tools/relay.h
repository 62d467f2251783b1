/* SPDX-License-Identifier: MIT */
/*
 * relay.h - what tide-relay's files share.
 */
#ifndef TIDE_RELAY_H
#define TIDE_RELAY_H

#include <stdio.h>

#include <tide.h>
#include <tide/net.h>

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
