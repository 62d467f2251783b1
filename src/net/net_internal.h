/* SPDX-License-Identifier: MIT */
/*
 * net_internal.h - what the agent's files share, grouped by the file that defines it.
 */
#ifndef TIDE_NET_INTERNAL_H
#define TIDE_NET_INTERNAL_H

#include <stdbool.h>
#include <sys/socket.h>

#include "tide/net.h"

// addr.c --------------------------------------------------------------------------------

/* Resolve "HOST:PORT" ("[V6]:PORT"); passive: an empty host means any address. */
int addr_parse(const char *text, bool passive, struct sockaddr_storage *ss, socklen_t *len);
unsigned addr_port(const struct sockaddr_storage *ss);
/* A bound, listening SO_REUSEPORT socket on ss at *port (0: pick one, stored back). fd or
 * -errno. */
int listener_open(struct sockaddr_storage *ss, socklen_t len, unsigned *port);

#endif /* TIDE_NET_INTERNAL_H */
