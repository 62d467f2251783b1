/* SPDX-License-Identifier: MIT */
/*
 * net_internal.h - what the agent's files share: the agent, worker, connection and buffer
 * types, and the prototypes grouped by the file that defines them.
 *
 * The types are open to every file of the agent because a worker's state is touched by all
 * of them on one thread (the worker's own), and the hot path (a receive completion, a send)
 * reads ring, flow and pair fields together. Who writes which field is by concern:
 *  - ring.c: the provided-buffer ring (br .. target), frees[], and the pool blocks' refs;
 *  - conn.c: pairs, flows, segs, sendops, the LRU list and the waiters;
 *  - worker.c: the io_uring, the listener's accept, the clock, draining;
 *  - agent.c: struct tide_agent, before the workers start and after they end.
 * The counters in struct wstats are written by their worker only and read by
 * tide_agent_stats() from any thread, hence relaxed atomics with plain read-add-store.
 */
#ifndef TIDE_NET_INTERNAL_H
#define TIDE_NET_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "tide/net.h"

/* Kernel ABI values newer than Debian's liburing 2.3 headers. */
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

#define BGID	   0  /* the provided-buffer group of every worker's ring */
#define SEND_IOV   32 /* most iovecs in one send */
#define FREE_BATCH 64 /* buffers handed back to the pool at once */

/* user_data: the pair's (or the worker's) address with the operation in the low 3 bits. */
enum {
	OP_ACCEPT = 1,
	OP_RECV = 2, /* + flow index */
	OP_SEND = 4, /* + flow index */
	OP_CONNECT = 6
};
#define UD(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

enum {
	F_ARMED = 1u << 0,  /* a receive is in flight on the source */
	F_CANCEL = 1u << 1, /* and a cancel for it was submitted */
	F_EOF = 1u << 2,    /* the source ended: FIN, or an error when F_ERR */
	F_SHUT = 1u << 3,   /* the destination was shut down for writing (FIN passed on) */
	F_WAIT = 1u << 4,   /* on the worker's list of flows waiting for buffers or budget */
	F_ERR = 1u << 5,    /* the source failed: once the queue is sent, reset the pair */
	F_DEAD = 1u << 6,   /* the destination failed: queue dropped, source no longer read */
};

#define UP_MAX 16 /* addresses of the upstream name tried in turn */

/* The upstream's addresses, as resolved; an older list stays valid until the agent goes. */
struct upstream {
	unsigned n;
	socklen_t len[UP_MAX];
	struct sockaddr_storage addr[UP_MAX];
	struct upstream *older;
};

/*
 * Segs and sendops are recycled through per-worker free lists: a spare object's first bytes
 * hold the link, so one set of helpers serves both types.
 */
struct spare {
	struct spare *next;
};

/* A received piece of a pool buffer, queued on a flow until it is sent. */
struct seg {
	char *buf;
	uint32_t off, len;
	struct seg *next;
};

/* The one send in flight on a flow: the queue's head as iovecs. */
struct sendop {
	struct msghdr msg;
	size_t len;
	struct iovec iov[SEND_IOV];
};

/* One direction of a pair: from fd[src] to fd[dst]. */
struct flow {
	struct seg *head, *tail;
	struct sendop *send;
	struct flow *wait_next; /* the waiters list, or (F_EOF) the watch list */
	uint32_t queued;
	uint32_t want; /* bytes the armed receive may bring, plus a block (counted in armed) */
	uint8_t src, dst, idx, flags;
};

/* A connection: the client socket and, when relaying, the upstream socket. */
struct pair {
	struct pair *prev, *next; /* the worker's LRU list, oldest activity first */
	uint32_t active_ms;	  /* the worker's clock (ms, modulo 2^32) at the last activity */
	int fd[2];
	int refs;
	uint8_t nflows, closing, abort, connected;
	uint8_t watched; /* a flow of it is on the watch list (holds a reference) */
	uint8_t failed;	 /* bit per side: that socket failed (reset, send error) */
	uint8_t ai;	 /* the upstream address being tried */
	uint8_t tries;	 /* addresses tried for this connection */
	struct flow flow[2];
};

struct wstats {
	_Atomic uint64_t accepted, rejected, idle_closed, reset, upstream_failures;
	_Atomic uint64_t bytes_in, bytes_out, short_sends, pauses;
	_Atomic uint64_t refills, refill_buffers, enobufs, ring_resets, forced_grows;
	_Atomic uint64_t in_ring, target;
};

struct worker {
	struct tide_agent *agent;
	unsigned index;
	pthread_t thread;
	bool thread_started;
	int listen_fd;
	struct io_uring ring;
	bool ring_ok, br_registered, accept_armed, draining, aborted, bundles, defer, inc;
	bool mshot_lim; /* multishot receives take a byte limit (else single receives) */
	uint64_t now, next_tick, drain_deadline, last_enobufs, last_consume;
	struct tide_user *user;
	size_t bs;
	size_t limit;	   /* bytes queued per direction at most (flow_limit) */
	size_t budget;	   /* bytes of blocks held by this worker's queues at most */
	size_t reserve;	   /* the part of budget only flows under small may use */
	size_t small;	   /* a flow holding less than this may dip into the reserve */
	size_t armed;	   /* the sum of the armed receives' want: promised, not yet held */
	unsigned owned;	   /* blocks taken from the pool and not given back */
	unsigned ring_max; /* the ring's target never exceeds this */
	struct __kernel_timespec connect_ts;

	struct io_uring_buf_ring *br;
	size_t br_bytes;
	char **bid_addr;
	uint32_t *boff; /* per slot: bytes the kernel already filled (incremental rings) */
	unsigned entries, mask, cap;
	uint32_t br_tail, br_pub, in_ring, target;

	struct pair lru; /* sentinel */
	unsigned npairs;
	struct flow *waiters;
	struct flow *watch; /* flows whose source sent FIN, linked by wait_next */
	struct spare *spare_segs, *spare_sendops;
	void *frees[FREE_BATCH];
	unsigned nfree;
	struct wstats st;
};

struct tide_agent {
	struct tide_pool *pool;
	char *base;	/* the pool's base: block index = (buf - base) / bs */
	uint32_t *refs; /* per pool block: the kernel's share plus one per seg */
	size_t nblocks;
	struct tide_agent_config cfg;
	size_t bs;
	bool echo;
	char *up_text;			/* the --upstream text, resolved again when all fail */
	_Atomic(struct upstream *) ups; /* the current address list */
	_Atomic unsigned prefer;	/* the address that answered last */
	pthread_t resolver;
	bool resolver_started, resolve_wanted, resolver_stop;
	pthread_mutex_t rlock;
	pthread_cond_t rcond;
	unsigned port;
	unsigned nworkers;
	struct worker *w;
	_Atomic int stop;
	_Atomic uint64_t conns;
	bool started, joined;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned ready;
	int setup_rc;
};

#define STAT_ADD(w, field, n)                                                                      \
	atomic_store_explicit(&(w)->st.field,                                                      \
			      atomic_load_explicit(&(w)->st.field, memory_order_relaxed) + (n),    \
			      memory_order_relaxed)
#define STAT_SET(w, field, v) atomic_store_explicit(&(w)->st.field, (v), memory_order_relaxed)

/* A submission entry, submitting what is queued when the SQ is full. */
static inline struct io_uring_sqe *sqe_get(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

/* Cancel the operation with user_data ud; the cancel's own completion is ignored. */
static inline void cancel_ud(struct worker *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = sqe_get(w);

	io_uring_prep_cancel64(sqe, ud, 0);
	io_uring_sqe_set_data64(sqe, 0);
}

/* The reference count of the pool block that holds buf. */
static inline uint32_t *buf_refs(struct worker *w, const char *buf)
{
	return &w->agent->refs[(size_t)(buf - w->agent->base) / w->bs];
}

// worker.c ------------------------------------------------------------------------------

/* The thread of worker arg: set up, wait for the others, run the loop, tear down. */
void *worker_main(void *arg);

// conn.c --------------------------------------------------------------------------------

/* A connection was accepted: make its pair, connect upstream (relay) or start reading. */
void on_accept(struct worker *w, int fd);
/* Completions of a flow's receive and send. */
void on_recv(struct worker *w, struct pair *p, struct flow *f, int res, unsigned cflags);
void on_send(struct worker *w, struct pair *p, struct flow *f, int res);
/* The upstream socket is connected: start both flows. */
void pair_start(struct worker *w, struct pair *p);
/* Close a pair (abort: with a reset) once nothing is in flight on it. */
void pair_close(struct worker *w, struct pair *p, bool abort);
/* Free p if it is closing and nothing is in flight on it. */
void pair_maybe_free(struct worker *w, struct pair *p);
/* Re-arm the flows that waited for buffers or budget (after a refill or a send). */
void waiters_wake(struct worker *w);
/* Draining: reset the pairs not yet connected; the others flow on until they end. */
void pairs_drain(struct worker *w);
/* The tick's share: notice resets of sockets that already sent FIN. */
void pairs_watch(struct worker *w);
/* Reset every pair (the drain timed out). */
void pairs_abort_all(struct worker *w);
/* Close the pairs without activity for timeout_ms. */
void pairs_close_idle(struct worker *w, unsigned timeout_ms);
/* Free the spare segs and sendops. */
void spares_free(struct worker *w);

// upstream.c ----------------------------------------------------------------------------

/* Connect p's upstream socket: the preferred address first, the others in turn. */
void upstream_connect(struct worker *w, struct pair *p);
void on_connect(struct worker *w, struct pair *p, int res);
/* Resolve the upstream (at creation), start and stop the thread that resolves it again. */
int upstream_init(struct tide_agent *a, const char *text);
int upstream_resolver_start(struct tide_agent *a);
void upstream_fini(struct tide_agent *a);

// ring.c --------------------------------------------------------------------------------

/* Allocate and register the worker's (empty) ring: 0, -ENOMEM, -EOPNOTSUPP or -errno. */
int ring_setup(struct worker *w);
/* Unregister the ring and give its buffers back; ring_free() after io_uring_queue_exit(). */
void ring_drop(struct worker *w);
void ring_free(struct worker *w);
/* Top the ring up to its target from the pool, growing the pool when it has nothing free. */
void ring_refill(struct worker *w);
/* Make the entries added since the last call visible to the kernel. */
void ring_publish(struct worker *w);
/* A receive got -ENOBUFS: raise the target. */
void ring_starved(struct worker *w);
/* The tick's share: decay the target, hand an idle ring's surplus back. */
void ring_decay(struct worker *w);
/* Drop one reference to buf (the kernel's, or a seg's); the last one releases it. */
void buf_put(struct worker *w, char *buf);
/* Hand the buffers batched for the pool back to it. */
void frees_flush(struct worker *w);

// addr.c --------------------------------------------------------------------------------

/*
 * Resolve "HOST:PORT" ("[V6]:PORT") to at most max addresses, in the resolver's order;
 * passive: an empty host means any address. Count (>= 1), -EINVAL a malformed text or an
 * unknown name, -ERANGE a port over 65535, -ENOMEM.
 */
int addr_resolve(const char *text, bool passive, struct sockaddr_storage *ss, socklen_t *len,
		 unsigned max);
unsigned addr_port(const struct sockaddr_storage *ss);
/* A bound, listening SO_REUSEPORT socket on ss at *port (0: pick one, stored back). fd or
 * -errno. */
int listener_open(struct sockaddr_storage *ss, socklen_t len, unsigned *port);

#endif /* TIDE_NET_INTERNAL_H */
