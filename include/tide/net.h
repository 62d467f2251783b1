/* SPDX-License-Identifier: MIT */
/*
 * tide/net.h - the send/receive agent: a TCP forwarder on io_uring whose receive buffers come
 * from a tide pool.
 *
 * An agent runs one worker thread per core asked for. Each worker owns one io_uring, one
 * SO_REUSEPORT listener with a multishot accept, and one provided-buffer ring that it feeds
 * from the pool through its own tide user. Data arrives by receives that pick a buffer from
 * the ring (part of one with incremental rings), one at a time per direction and never more
 * than the direction's limit leaves, and leaves by sends from the very same buffers, in
 * order; a sent buffer goes back into the ring, or back to the pool when the ring is at its
 * target. The agent either echoes what a client sends or relays it to an upstream address
 * (every address of its name in turn), in both directions, and ends every connection
 * truthfully: a FIN only after every byte before it, a reset for any cut.
 *
 * Usage:
 *
 *	struct tide_pool_config pc = { .block_size = 65536, .flags = TIDE_AUTO_GROW |
 *				       TIDE_AUTO_SHRINK };
 *	struct tide_agent_config ac = { .listen = "127.0.0.1:7000", .upstream = NULL };
 *	struct tide_pool *pool;
 *	struct tide_agent *agent;
 *
 *	tide_pool_create(&pc, &pool);
 *	if (tide_agent_create(pool, &ac, &agent) == 0 && tide_agent_start(agent) == 0) {
 *		... wait for a signal ...
 *		tide_agent_stop(agent);
 *		tide_agent_wait(agent);
 *	}
 *	tide_agent_destroy(agent);
 *	tide_pool_destroy(pool);
 *
 * Conventions as in tide.h: actions return 0 or a negative errno, never set errno.
 */
#ifndef TIDE_NET_H
#define TIDE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tide.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tide_agent; /* opaque: workers, their rings and their connections */

/* ---------------------------------------------------------------- config -- */

/*
 * Fixed-buffer sends through the conversion hook were measured and left out: on this path the
 * kernel's per-send cost of taking a user buffer is under 0.5 % of the relay's CPU (copies and
 * TCP are the rest), while registering pins every page of the unreserved portion, which would
 * stop purge from giving memory back. See docs in the agent's design note (src/net/agent.c).
 */
enum {
	TIDE_AGENT_NO_BUNDLE = 1u << 0,	     /* never use recv bundles (they are used only where
						multishot receives take a byte limit, recent kernels) */
	TIDE_AGENT_NO_INCREMENTAL = 1u << 1, /* never use incremental buffer rings (Linux 6.12+) */
	TIDE_AGENT_NO_RECV_LIMIT = 1u << 2   /* never use byte-limited multishot receives (recent
						kernels): single receives of one buffer instead */
};

struct tide_agent_config {	   /* zero means default */
	const char *listen;	   /* "HOST:PORT" (IPv6 as "[ADDR]:PORT"); port 0 picks one */
	const char *upstream;	   /* "HOST:PORT" to relay to, or NULL to echo */
	unsigned threads;	   /* workers; default 1 */
	unsigned max_conns;	   /* client connections at once, over all workers; 0: no limit */
	unsigned idle_timeout_ms;  /* close a connection idle this long; 0: never */
	size_t flow_limit;	   /* bytes queued per direction before reading stops;
				      default max(16 blocks, 1 MiB) */
	unsigned ring_entries;	   /* provided-buffer ring slots per worker, power of two;
				      default 512 */
	unsigned ring_min;	   /* buffers a ring keeps ready when traffic is low; default 16 */
	unsigned drain_timeout_ms; /* at stop, how long connections may still flow before they
				      are reset; default 5000 */
	unsigned connect_timeout_ms; /* one connect to one upstream address; default 5000 */
	unsigned flags;		     /* TIDE_AGENT_* */
};

/* ----------------------------------------------------------- lifecycle -- */

/*
 * tide_agent_probe - check that io_uring and what the agent needs from it work here.
 * @why: where to put a sentence for the user (may be NULL)
 * @len: its size
 *
 * Return: 0; -EPERM io_uring refused (kernel.io_uring_disabled, seccomp, a container
 * policy); -ENOSYS no io_uring in this kernel; -EOPNOTSUPP the kernel lacks multishot
 * receive or provided-buffer rings (Linux 6.0 or newer is needed); -ENOMEM.
 */
TIDE_API int tide_agent_probe(char *why, size_t len);

/*
 * tide_agent_create - set up an agent over @pool: resolve addresses, bind the listeners.
 * @pool: the pool receive buffers come from; its block size is the buffer size
 * @cfg: the configuration
 * @agent: the new agent, on success
 *
 * The pool must outlive the agent. Nothing runs until tide_agent_start().
 *
 * Return: 0; -EINVAL a bad address or field, or a name that does not resolve; -ERANGE a port
 * over 65535; -EADDRINUSE and the like from bind();
 * -ENOMEM; or an error of tide_agent_probe().
 */
TIDE_API int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
			       struct tide_agent **agent);

/*
 * tide_agent_start - start the workers and wait until each has its ring armed.
 * @agent: the agent
 *
 * Return: 0; -EALREADY when started before; or the first worker's setup error (-EPERM,
 * -ENOMEM, -EOPNOTSUPP ...), in which case every worker is stopped again.
 */
TIDE_API int tide_agent_start(struct tide_agent *agent);

/*
 * tide_agent_stop - ask the workers to drain: stop accepting (the listeners close), let every
 * connection go on in both directions until it ends or drain_timeout_ms passes, then reset
 * what is left. A second call resets everything at once. Async-signal-safe; returns at once.
 * @agent: the agent
 */
TIDE_API void tide_agent_stop(struct tide_agent *agent);

/*
 * tide_agent_wait - join the workers after tide_agent_stop(). Every buffer the agent took is
 * back in the pool when it returns.
 * @agent: the agent
 *
 * Return: 0, or -EINVAL when the agent was never started.
 */
TIDE_API int tide_agent_wait(struct tide_agent *agent);

/*
 * tide_agent_destroy - stop and join the agent if it runs, close the listeners, destroy the
 * workers' pool users and free the agent.
 * @agent: the agent, or NULL (nothing happens)
 */
TIDE_API void tide_agent_destroy(struct tide_agent *agent);

/* --------------------------------------------------------------- state -- */

/*
 * tide_agent_port - the port the listeners are bound to.
 * @agent: the agent, or NULL
 *
 * Return: the port (the one picked when the configuration asked for 0), or 0 for NULL.
 */
TIDE_API unsigned tide_agent_port(const struct tide_agent *agent);

/*
 * tide_agent_workers - the worker count.
 * @agent: the agent, or NULL
 *
 * Return: the number of workers, or 0 for NULL.
 */
TIDE_API unsigned tide_agent_workers(const struct tide_agent *agent);

/*
 * tide_agent_user - a worker's pool user, for tide_user_stats().
 * @agent: the agent, or NULL
 * @i: the worker's index
 *
 * Return: the user; NULL for a NULL agent, an index out of range, or a worker that has not
 * set up yet.
 */
TIDE_API struct tide_user *tide_agent_user(const struct tide_agent *agent, unsigned i);

struct tide_agent_stats {
	uint64_t conns_current;	    /* client connections open now */
	uint64_t conns_accepted;    /* client connections accepted, in all */
	uint64_t conns_rejected;    /* closed at once: past max_conns, or while draining */
	uint64_t conns_idle_closed; /* closed by the idle timeout */
	uint64_t conns_reset;	    /* ended by an error or a reset on either side */
	uint64_t upstream_failures; /* connects to the upstream that failed */
	uint64_t bytes_in;	    /* received, both directions */
	uint64_t bytes_out;	    /* sent, both directions */
	uint64_t short_sends;	    /* sends that took less than offered */
	uint64_t pauses;	    /* reads held back: a direction at its flow_limit, or its
				       worker's memory budget spent */
	uint64_t ring_refills;	    /* times a ring was topped up from the pool */
	uint64_t refill_buffers;    /* buffers put into rings from the pool */
	uint64_t enobufs;	    /* receives that found their ring empty */
	uint64_t ring_resets;	    /* idle rings handed their buffers back to the pool */
	uint64_t forced_grows;	    /* pool grows the agent asked for when allocation fell short */
	uint64_t ring_buffers;	    /* buffers sitting in the rings now */
	uint64_t ring_target;	    /* sum of the rings' targets now */
	bool bundles;		    /* recv bundles in use */
	bool incremental;	    /* incremental buffer rings in use  */
	bool defer_taskrun;	    /* rings run with IORING_SETUP_DEFER_TASKRUN */
};

/*
 * tide_agent_stats - the counters summed over the workers, read while they run.
 * @agent: the agent, or NULL (all zero)
 * @st: where the stats go
 */
TIDE_API void tide_agent_stats(const struct tide_agent *agent, struct tide_agent_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* TIDE_NET_H */
