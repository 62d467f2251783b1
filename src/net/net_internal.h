/* SPDX-License-Identifier: MIT */
/*
 * net_internal.h - the engine's shared types (agent, worker, connection, send queue,
 * listener, timer) and its cross-file prototypes, grouped by the file that defines them.
 * Engine side: nothing here is seen by applications, which have include/tide/net.h only.
 *
 * The types are open to every file of the engine because a worker's state is touched by all
 * of them on one thread (the worker's own), and the hot path (a receive completion, a send)
 * reads ring, connection and queue fields together. Who writes which field is by concern:
 *  - ring.c: the provided-buffer ring (br .. target), frees[];
 *  - buf.c: the pool blocks' references and owners, and the public buffer calls;
 *  - conn.c: connections, their send queues, the LRU list and the waiters;
 *  - connect.c: outbound connects, their address lists and timeouts;
 *  - worker.c: the io_uring, the listeners' accepts, timers, posted work, the clock, draining;
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
#include <stdlib.h>
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

#define BGID	      0	 /* the provided-buffer group of every worker's ring */
#define SEND_IOV      32 /* most iovecs in one send */
#define FREE_BATCH    64 /* buffers handed back to the pool at once */
#define RECV_BATCH    64 /* most buffers handed to a receive callback at once */
#define MAX_LISTENERS 32 /* listeners of one agent at once */

/* user_data: an object's address with the operation in the low 3 bits (0: ignore). */
enum {
	OP_ACCEPT = 1,	 /* struct lsock */
	OP_RECV = 2,	 /* struct tide_conn */
	OP_SEND = 3,	 /* struct tide_conn */
	OP_CONNECT = 4,	 /* struct tide_conn */
	OP_LTIMEOUT = 5, /* struct tide_conn: the connect's linked timeout */
	OP_WAKE = 6,	 /* struct worker: its eventfd was written (posted work) */
	OP_SPLICE = 7,	 /* a splice direction's tag_in or tag_out: its poll */
};
#define UD(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

#define TICK_MS 100 /* the worker's tick */

enum {
	F_ARMED = 1u << 0,	 /* a multishot receive is in flight */
	F_CANCEL = 1u << 1,	 /* and a cancel for it was submitted */
	F_EOF = 1u << 2,	 /* the peer sent FIN */
	F_SHUT = 1u << 3,	 /* we sent FIN */
	F_WANT_SHUT = 1u << 4,	 /* end sending once the queue is empty */
	F_WANT_RST = 1u << 5,	 /* ... with a reset */
	F_PAUSED = 1u << 6,	 /* the application stopped reading */
	F_WAIT = 1u << 7,	 /* on the worker's list of receives waiting for buffers */
	F_CONNECTING = 1u << 8,	 /* tide_conn_connect() in progress */
	F_ENDED = 1u << 9,	 /* the end callback ran (or runs); freed when refs reach 0 */
	F_TXERR = 1u << 10,	 /* a send failed */
	F_ACCEPTED = 1u << 11,	 /* counted in the agent's conns */
	F_RESET = 1u << 12,	 /* close with SO_LINGER 0 */
	F_SENDING = 1u << 13,	 /* a send is in flight */
	F_WANT_CLOSE = 1u << 14, /* end CLEAN once FIN went out, without the peer's */
	F_WATCH = 1u << 15,	 /* on the worker's watch list (after the peer's FIN) */
};

/* Segs and txqs are recycled through per-worker free lists: a spare's first bytes link it. */
struct spare {
	struct spare *next;
};

/* Queued bytes in a pool buffer; holds one reference to the buffer. */
struct seg {
	struct seg *next;
	char *data;
	uint32_t len;
};

/* The sendmsg of a send of several pieces, only while it is in flight. */
struct txmsg {
	struct msghdr msg;
	struct iovec iov[SEND_IOV];
};

struct splice;

/* One way of a splice (splice.c): from the pair's c[i] to c[1 - i] through a pipe. */
struct splice_dir {
	/* The polls' user_data point here; each word holds the direction's address. */
	struct splice_dir *tag_in, *tag_out;
	struct splice *sp;
	int pipe[2];
	size_t size;	/* the pipe's size */
	size_t in_pipe; /* bytes in it */
	uint64_t moved; /* bytes taken from the source */
	bool on, used;	/* running; was started once */
	bool eof;	/* the source's FIN was read, not yet handed over */
	bool poll_in;	/* a POLLIN on the source is in flight */
	bool poll_out;	/* a POLLOUT on the destination is in flight */
};

/* A pair of connections that splice to each other, one way or both (splice.c). */
struct splice {
	struct worker *w;
	struct tide_conn *c[2];	  /* until each is freed */
	struct splice_dir dir[2]; /* dir[i]: from c[i] */
	unsigned inflight;	  /* polls in flight, plus pumps running */
};

/*
 * A connection's send queue and its one send in flight; only while there is something.
 * Small (72 bytes, an 80-byte malloc chunk): a connection that waits with a few bytes
 * queued (a PROXY header before its connect completes) holds no more; a send of one piece
 * needs no txmsg.
 */
struct txq {
	struct seg *head, *tail;
	size_t queued;	   /* bytes in the segs */
	size_t notify;	   /* call ops->drained when queued <= notify; SIZE_MAX: not asked */
	size_t sending;	   /* bytes of the send in flight */
	struct txmsg *tm;  /* the send in flight's, when it has several pieces */
	struct splice *sp; /* tide_conn_splice() with another connection (the txq stays while
			      it lasts: a connection holds no field for it), or NULL */
	/* Receive batching (batch.c), which also keeps the txq while it is on: the next
	 * connection on the worker's list, and receives since the last quiet check. */
	struct tide_conn *batch_next;
	uint32_t batch_hits;
	bool batch_on;
};

/*
 * 64 bytes, in a slot of a slab (slab.c), which gives its worker (conn_w()): an idle
 * connection costs this and nothing else.
 */
struct tide_conn {
	struct tide_conn *prev, *next; /* the worker's LRU list, oldest activity first */
	const struct tide_conn_ops *ops;
	void *data;
	struct txq *tx;
	union {
		struct tide_conn *wait_next; /* F_WAIT, or F_WATCH */
		const struct tide_addrs *to; /* F_CONNECTING: the caller's list */
	};
	uint32_t active; /* worker clock (ms, wraps) of the last activity */
	int fd;
	uint16_t refs; /* operations in flight, plus one while a handler runs */
	uint16_t flags;
	union {
		/* F_CONNECTING (in what was padding: a connect costs no allocation): the next
		 * address, the last attempt's errno, the timeout in 10 ms units. */
		struct {
			uint8_t cn_next, cn_err;
			uint16_t cn_timeout;
		};
		/* Once connected: bytes the application lets it still receive, plus one (0: no
		 * limit; 1: none left, reading waits as if paused). */
		uint32_t window;
	};
};

/* A slab of connection slots (slab.c); SLAB_SIZE bytes aligned to SLAB_SIZE, this first. */
#define SLAB_SIZE ((size_t)64 << 10)
struct slab {
	_Alignas(64) struct worker *w;
	struct slab *prev, *next; /* on the worker's list while it has a free slot */
	struct tide_conn *free;	  /* freed slots, linked through their first word */
	unsigned fresh;		  /* slots handed out at least once (the lowest) */
	unsigned used;
	bool listed;
};

/* The worker of a connection: the header of the slab it is in. */
static inline struct worker *conn_w(const struct tide_conn *c)
{
	return ((const struct slab *)((uintptr_t)c & ~(uintptr_t)(SLAB_SIZE - 1)))->w;
}

struct listen_ctl;

/* One listener on one worker (listen.c): slot k of the agent's table is ls[k] of each. */
struct lsock {
	struct worker *w;
	int fd;			/* -1: none (a free slot, or closed) */
	bool armed;		/* an accept (multishot, or one with conn_fds) is in flight */
	bool closing;		/* closed once no accept is in flight */
	struct listen_ctl *ctl; /* tide_agent_listen_close() waits for this worker */
	const struct tide_conn_ops *ops;
	void *data;
	int spare[TIDE_CONN_FDS_MAX]; /* cfg.conn_fds held for the next accepted connection */
	unsigned nspare;
};

struct timer {
	uint64_t when, id;
	void (*fn)(struct tide_worker *, void *);
	void *arg;
};

struct post {
	struct post *next;
	void (*fn)(struct tide_worker *, void *);
	void *arg;
};

struct wstats {
	_Atomic uint64_t accepted, rejected, idle_closed, reset, upstream_failures, retries;
	_Atomic uint64_t bytes_in, bytes_out, short_sends, pauses;
	_Atomic uint64_t refills, refill_buffers, enobufs, ring_resets, forced_grows, recv_arms;
	_Atomic uint64_t in_ring, target;
	_Atomic uint64_t accept_errors; /* accepts failed for want of descriptors or memory */
	_Atomic uint64_t batch_marks, batch_quiet;
};

struct worker {
	struct tide_agent *agent;
	unsigned index;
	pthread_t thread;
	bool thread_started;
	struct io_uring ring;
	bool ring_ok, br_registered, draining, bundles, defer, inc, ended;
	bool mshot_lim; /* multishot receives take a byte limit (Linux 6.16+) */
	uint64_t now, next_tick, drain_deadline, last_enobufs, last_consume;
	struct tide_user *user;
	size_t bs;
	uint32_t recv_len;	 /* most bytes one receive completion may carry; 0: no limit */
	struct tide_conn *batch; /* connections with a raised receive mark (batch.c) */
	uint64_t batch_check_us; /* when batch_check() looks at them next */

	struct lsock ls[MAX_LISTENERS];
	unsigned nls;	  /* slots up to the highest one ever used */
	bool accept_held; /* a listener waits for descriptors (cfg.conn_fds) */

	struct io_uring_buf_ring *br;
	size_t br_bytes;
	char **bid_addr;
	uint32_t *boff; /* per slot: bytes the kernel already filled (incremental rings) */
	unsigned entries, mask, cap;
	uint32_t br_tail, br_pub, in_ring, target;

	struct tide_conn lru; /* sentinel */
	unsigned nconns;
	size_t queued;	 /* bytes in the send queues of all its connections */
	size_t promised; /* bytes their receive limits still allow (tide_conn_recv_limit) */
	struct tide_conn *waiters;
	struct tide_conn *watch;   /* after the peer's FIN: checked for a reset on the tick */
	struct linger_fd *lingers; /* reset closes waiting for their send queue (linger.c) */
	unsigned nlinger, linger_cap;
	struct spare *spare_segs, *spare_txqs, *spare_txmsgs;
	struct slab *slabs;	 /* its slabs with a free slot (slab.c) */
	struct slab *slab_spare; /* an empty one kept */
	/* The connects' link timeout: read by the kernel when submitted, so it changes only
	 * after what used it was submitted. */
	struct __kernel_timespec connect_ts;
	unsigned connect_ts_units;
	void *frees[FREE_BATCH];
	unsigned nfree;

	struct timer *timers; /* a binary min-heap on when */
	unsigned ntimers, timers_cap;
	uint64_t timer_ids;

	int wake_fd; /* eventfd: tide_agent_post() writes, a read on the ring waits */
	uint64_t wake_val;
	bool wake_armed;
	pthread_mutex_t post_lock;
	struct post *posts;
	struct wstats st;
};

struct listen_cfg {
	bool used;
	struct sockaddr_storage ss; /* with the port bound */
	socklen_t len;
	int v6only; /* listen_v6only() */
	bool every; /* ":P", "*:P": every address, any other listener on P overlaps it */
	const struct tide_conn_ops *ops;
	void *data;
};

struct tide_agent {
	struct tide_pool *pool;
	char *base;		/* the pool's base: block index = (buf - base) / bs */
	_Atomic uint32_t *refs; /* per pool block: the kernel's share plus the holders' */
	uint16_t *owner;	/* per pool block: the worker whose user it is charged to */
	size_t nblocks;
	struct tide_agent_config cfg;
	size_t bs;
	pthread_mutex_t listen_lock; /* lc[]: tide_agent_listen(), tide_agent_listen_close() */
	struct listen_cfg lc[MAX_LISTENERS];
	unsigned nworkers;
	struct worker *w;
	_Atomic unsigned idle_ms; /* cfg.idle_timeout_ms; tide_agent_set_idle_timeout() */
	_Atomic int stop;	  /* 1: drain; 2: end now */
	_Atomic unsigned running; /* workers in their loop or setup */
	_Atomic uint64_t conns;
	_Atomic int accept_error; /* the latest accept_errors' -errno; 0: none yet */
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

/* The public handle of a worker is the worker. */
static inline struct worker *W(struct tide_worker *tw)
{
	return (struct worker *)tw;
}

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

static inline void *spare_get(struct spare **list, size_t size)
{
	struct spare *s = *list;

	if (s) {
		*list = s->next;
		return s;
	}
	return malloc(size);
}

static inline void spare_put(struct spare **list, void *obj)
{
	struct spare *s = obj;

	s->next = *list;
	*list = s;
}

// buf.c ---------------------------------------------------------------------------------

/* The worker whose thread this is, or NULL. */
extern _Thread_local struct worker *tls_worker;
/* The pool block holding p; NULL when p is not in the pool's range. */
char *buf_block(const struct tide_agent *a, const void *p);
/* Set a fresh block's owner and reference count. */
void buf_init(struct worker *w, char *blk, uint32_t refs);
/* One more reference to blk. */
void buf_ref(struct tide_agent *a, char *blk);
/* Drop one reference to blk; the last one gives it back (ring, or pool through its owner). */
void buf_unref(struct tide_agent *a, char *blk);

// worker.c ------------------------------------------------------------------------------

/* The thread of worker arg: set up, wait for the others, run the loop, tear down. */
void *worker_main(void *arg);
/* Run every posted work item (at teardown too). */
void posts_run(struct worker *w);

// conn.c --------------------------------------------------------------------------------

/* A new connection on w (not yet on the LRU list), or NULL. */
struct tide_conn *conn_new(struct worker *w, int fd, const struct tide_conn_ops *ops, void *data);
/* A connection is ready (accepted, or connected): call ops->open, start reading, send. */
void conn_open(struct tide_conn *c);
/* End c once: cancel what is in flight, call ops->end; freed when nothing is in flight. */
void conn_end(struct tide_conn *c, enum tide_end why, int err);
/* Completions of a connection's receive and send. */
void on_recv(struct tide_conn *c, int res, unsigned cflags);
void on_send(struct tide_conn *c, int res);
/* The tick: end the connections on the watch list (after the peer's FIN) that were reset. */
void conns_watch(struct worker *w);
/* Free c if it ended and nothing is in flight on it. */
void conn_maybe_free(struct tide_conn *c);
/* A connection was accepted on ls. */
void on_accept(struct lsock *ls, int fd);
/* Re-arm the receives that waited for buffers (after a refill). */
void waiters_wake(struct worker *w);
/* Draining starts: tell each connection. */
void conns_drain(struct worker *w);
/* End every connection with why (the drain timed out, or a second stop). */
void conns_end_all(struct worker *w, enum tide_end why);
/* End the connections without activity for timeout_ms. */
void conns_end_idle(struct worker *w, unsigned timeout_ms);
/* Free the spare segs and txqs. */
void spares_free(struct worker *w);

/* slab.c */
struct tide_conn *slab_alloc(struct worker *w);
void slab_free(struct tide_conn *c);
void slabs_free(struct worker *w);
/* Mark activity on c (the LRU list). */
void conn_touch(struct tide_conn *c);
/* c's txq, made when it has none (NULL: no memory). */
struct txq *conn_txq(struct tide_conn *c);
/* Give c's txq back if nothing keeps it. */
void conn_txq_put(struct tide_conn *c);
/* (Re)start reading c: its multishot receive, or its splice (splice_arm()). */
void recv_rearm(struct tide_conn *c);
/* Cancel c's multishot receive. */
void conn_recv_cancel(struct tide_conn *c);
/* c's peer sent FIN and every byte before it was handed over: ops->eof, and what follows. */
void conn_eof(struct tide_conn *c);
/* Sending on c failed with err: drop the queue, ops->send_error. */
void conn_send_failed(struct tide_conn *c, int err);
/* c's queue (and the pipe into it) is empty: the FIN or reset asked for goes now. */
void conn_send_idle(struct tide_conn *c);
/* c no longer has a receive limit (it is spliced). */
void conn_window_clear(struct tide_conn *c);
/* A splice's pipe into c emptied some: a drained mark that is reached is told. */
void conn_notify_check(struct tide_conn *c);

// splice.c ------------------------------------------------------------------------------

/* The splice c is part of, or NULL: kept in its txq, which lives as long as the splice. */
static inline struct splice *conn_sp(const struct tide_conn *c)
{
	return c->tx ? c->tx->sp : NULL;
}

/* A poll of a splice direction completed (tag: its tag_in or tag_out word). */
void on_splice_poll(void *tag, int res);
/* Whether src's bytes go through a running splice (then recv_rearm() arms that). */
bool splice_reads(struct tide_conn *src);
/* Start or continue reading src into its pipe. */
void splice_arm(struct tide_conn *src);
/* dst's send queue emptied: the pipe into it may go on. */
void splice_kick(struct tide_conn *dst);
/* Bytes a pipe into dst holds (counted in tide_conn_queued()). */
size_t splice_queued(const struct tide_conn *dst);
/* Whether a pipe into dst still holds bytes (or a FIN) that go before its own FIN. */
bool splice_holds(const struct tide_conn *dst);
/* c ends: stop the splices it is part of; the other side reads by its receive again. */
void splice_stop(struct tide_conn *c);
/* c is freed: let go of its struct splice. */
void splice_release(struct tide_conn *c);

// batch.c -------------------------------------------------------------------------------

/* A receive of res bytes completed on c (after it was handed over). */
void batch_recv(struct tide_conn *c, int res);
/* c ends, or its bytes go through a splice: its mark goes (and it leaves the list). */
void batch_stop(struct tide_conn *c);
/* The loop's turn: drop the marks of the connections that went quiet. */
void batch_check(struct worker *w);
/* Cap the loop's wait at the next quiet check while a mark is raised. */
void batch_wait(const struct worker *w, struct __kernel_timespec *ts);

// linger.c ------------------------------------------------------------------------------

/* Reset and close fd, once the bytes in its send queue went out or stopped moving. */
void linger_reset(struct worker *w, int fd);
/* The tick: reset the lingering sockets whose queue emptied, stalled, or ran out of time. */
void lingers_tick(struct worker *w);
/* Reset every lingering socket now (drain deadline, second stop, teardown). */
void lingers_end_all(struct worker *w);

// connect.c -----------------------------------------------------------------------------

/* Completions of a connect and of its linked timeout. */
void on_connect(struct tide_conn *c, int res);
void on_connect_timeout(struct tide_conn *c);
/* Free the connect state (at end). */
void connecting_free(struct tide_conn *c);

// timer.c -------------------------------------------------------------------------------

/* Run the timers that are due; the ms until the next one (UINT64_MAX: none). */
uint64_t timers_run(struct worker *w);
void timers_free(struct worker *w);

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
/* Most bytes one bundle receive asks for: less than the ring holds at its low mark. */
uint32_t ring_recv_cap(const struct worker *w);
/* A receive got -ENOBUFS: raise the target. */
void ring_starved(struct worker *w);
/* The tick's share: decay the target, hand an idle ring's surplus back. */
void ring_decay(struct worker *w);
/* A block of w's came back (last reference): into the ring, or batched for the pool. */
void buf_release(struct worker *w, char *blk);
/* Hand the buffers batched for the pool back to it. */
void frees_flush(struct worker *w);

// listen.c ------------------------------------------------------------------------------

/* Arm ls's multishot accept (unless it is, or closes, or the worker drains). */
void accept_arm(struct lsock *ls);
/* An accept completion on ls. */
void on_accept_cqe(struct lsock *ls, struct io_uring_cqe *cqe);
/* Arm every listener's accept (setup, and the tick's retry after an error). */
void listeners_arm(struct worker *w);
/* Whether an accept is in flight on one of w's listeners. */
bool accepts_armed(const struct worker *w);
/* Draining: cancel the accepts, close each socket once its accept ended. */
void listeners_drain(struct worker *w);

// addr.c --------------------------------------------------------------------------------

/* A bound, listening SO_REUSEPORT socket on ss at *port (0: pick one, stored back), with
 * IPV6_V6ONLY set to v6only (-1: not IPv6). fd or -errno. */
int listener_open(struct sockaddr_storage *ss, socklen_t len, int v6only, unsigned *port);
/* Whether "HOST:PORT" names every address: an empty HOST or "*". */
bool hostport_every(const char *text);
/* IPV6_V6ONLY for a listener on ss: -1 not IPv6; 0 every address (dual-stack) or a
 * v4-mapped one; else 1. */
int listen_v6only(const struct sockaddr_storage *ss, bool every);
/* The port of an IPv4 or IPv6 address (0 for another family), and setting it. */
unsigned addr_port(const struct sockaddr_storage *ss);
void set_port(struct sockaddr_storage *ss, unsigned port);
/* Whether two addresses are the same (family, address, port). */
bool addr_same(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr_storage *b,
	       socklen_t blen);
void set_nodelay(int fd);

#endif /* TIDE_NET_INTERNAL_H */
