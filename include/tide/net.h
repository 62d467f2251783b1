/* SPDX-License-Identifier: MIT */
/*
 * tide/net.h - the send/receive agent: TCP connections on io_uring whose received bytes arrive
 * in tide pool buffers that the application owns, keeps, and sends on without a copy.
 *
 * An agent runs one worker thread per core asked for. Each worker owns one io_uring, one
 * provided-buffer ring fed from the pool through its own tide user, its listeners' accepts,
 * its timers, and the connections it accepted or opened; every callback of a connection runs
 * on its worker's thread, and a connection is used from that thread only (other threads hand
 * work over with tide_agent_post()). Data arrives by multishot receives that pick buffers
 * from the ring (several at once with recv bundles): the receive callback gets them as an
 * array of struct tide_buf, one reference each, which the application now owns. It may send
 * them on (tide_conn_send() takes the references), keep them as long as it likes and drop
 * them with tide_buf_put(), or take more references with tide_buf_get() to send the same
 * bytes to several connections. A buffer goes back to the ring or the pool when its last
 * reference goes. Every buffer is charged to its worker's pool user, whose quota
 * (tide_agent_config.worker_quota) bounds what one worker's connections and the application
 * hold together.
 *
 * A connection ends once, with a reason: both sides sent FIN and everything queued went out
 * (TIDE_END_CLEAN), a reset or error (TIDE_END_RESET), the idle or connect timeout
 * (TIDE_END_TIMEOUT), the drain deadline (TIDE_END_DRAIN), or no address accepted the
 * connect (TIDE_END_CONNECT). Every ending but CLEAN resets the socket, so the peer learns
 * that data may have been lost. After the end callback the handle is gone.
 *
 * Usage: an echo server (see examples/ and tools/ for more).
 *
 *	static void on_recv(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
 *	{
 *		tide_conn_send(c, bufs, n);          // the same buffers go back, no copy
 *		if (tide_conn_queued(c) > (1 << 20)) { // the peer reads slowly: stop reading
 *			tide_conn_pause(c);
 *			tide_conn_notify_below(c, 1 << 19);
 *		}
 *	}
 *	static void on_drained(struct tide_conn *c) { tide_conn_resume(c); }
 *	static void on_eof(struct tide_conn *c) { tide_conn_shutdown(c, false); }
 *	static const struct tide_conn_ops echo = {
 *		.recv = on_recv, .drained = on_drained, .eof = on_eof,
 *	};
 *
 *	int main(void)
 *	{
 *		struct tide_pool_config pc = { .block_size = 65536,
 *					       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK };
 *		struct tide_agent_config ac = { .threads = 2, .idle_timeout_ms = 60000 };
 *		struct tide_pool *pool;
 *		struct tide_agent *agent;
 *		unsigned port;
 *
 *		if (tide_pool_create(&pc, &pool))
 *			return 1;
 *		if (tide_agent_create(pool, &ac, &agent) == 0 &&
 *		    tide_agent_listen(agent, "127.0.0.1:7000", &echo, NULL, &port) == 0 &&
 *		    tide_agent_start(agent) == 0) {
 *			... wait for SIGTERM (sigwait) ...
 *			tide_agent_stop(agent);  // drain: data in flight may still go out
 *			tide_agent_wait(agent);
 *		}
 *		tide_agent_destroy(agent);
 *		tide_pool_destroy(pool);
 *		return 0;
 *	}
 *
 * Conventions as in tide.h: actions return 0 or a negative errno and never set errno.
 */
#ifndef TIDE_NET_H
#define TIDE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <tide.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tide_agent;  /* opaque: the workers over one pool */
struct tide_worker; /* opaque: one worker thread and its io_uring */
struct tide_conn;   /* opaque: one TCP connection, on one worker */

/* -------------------------------------------------------------- buffers -- */

/* Bytes inside one pool buffer, with one reference to that buffer. */
struct tide_buf {
	void *data;   /* the first byte */
	uint32_t len; /* how many */
};

/* Take one more reference to the buffer holding data. 0; -EINVAL not an agent's buffer. */
int tide_buf_get(struct tide_agent *agent, const void *data);
/* Drop one reference to the buffer holding data (any thread). 0; -EINVAL as above. */
int tide_buf_put(struct tide_agent *agent, const void *data);
/* A buffer of len bytes (at most the block size) charged to w's user, one reference.
 * 0; -EINVAL; -ENOSPC the worker's quota or the pool's max_size is reached. */
int tide_buf_alloc(struct tide_worker *w, size_t len, struct tide_buf *buf);

/* ---------------------------------------------------------------- config -- */

enum {
	TIDE_AGENT_NO_BUNDLE = 1u << 0, /* never use recv bundles, even where the kernel has them */
	TIDE_AGENT_NO_INCREMENTAL = 1u << 1, /* never use incremental buffer rings (Linux 6.12+) */
};

struct tide_agent_config {	  /* zero means default */
	unsigned threads;	  /* workers; default 1 */
	unsigned max_conns;	  /* accepted connections at once, all workers; 0: no limit */
	unsigned idle_timeout_ms; /* end a connection idle this long (TIDE_END_TIMEOUT); 0: never */
	unsigned drain_timeout_ms; /* at stop, how long connections may still run; default 5000 */
	size_t recv_max;	   /* most bytes one receive completion hands over; default 1 MiB */
	size_t worker_quota;	   /* bytes one worker's user may hold (ring, app, queues); 0: no
				      limit but the pool's */
	unsigned ring_entries;	   /* provided-buffer ring slots per worker, power of two;
				      default 512 */
	unsigned ring_min;	   /* buffers a ring keeps ready when traffic is low; default 16 */
	unsigned flags;		   /* TIDE_AGENT_* */
	/* Called on each worker's thread once it runs, and once before it ends (may be NULL). */
	void (*worker_start)(struct tide_worker *w, void *arg);
	void (*worker_stop)(struct tide_worker *w, void *arg);
	void *worker_arg;
};

/* How a connection ended (the end callback's reason). */
enum tide_end {
	TIDE_END_CLEAN,	  /* both sides sent FIN, everything queued was sent */
	TIDE_END_RESET,	  /* a reset or error from the peer, or tide_conn_abort() */
	TIDE_END_TIMEOUT, /* idle for idle_timeout_ms (or a connect attempt timed out) */
	TIDE_END_DRAIN,	  /* still open at the drain deadline */
	TIDE_END_CONNECT, /* tide_conn_connect(): no address accepted the connection */
};

/* A connection's callbacks, run on its worker's thread; any may be NULL. */
struct tide_conn_ops {
	/* Accepted, or connected (tide_conn_connect()): reading starts after it returns. */
	void (*open)(struct tide_conn *c);
	/* Bytes received, in order: the application owns one reference per buffer. NULL:
	 * they are dropped. */
	void (*recv)(struct tide_conn *c, struct tide_buf *bufs, unsigned n);
	/* The peer sent FIN: nothing more will be received. */
	void (*eof)(struct tide_conn *c);
	/* Sending failed (err, e.g. -EPIPE): what was queued is dropped and later sends fail;
	 * receiving goes on while the peer's data lasts. */
	void (*send_error)(struct tide_conn *c, int err);
	/* The send queue fell to the mark of tide_conn_notify_below() (once per request). */
	void (*drained)(struct tide_conn *c);
	/* The agent began draining (tide_agent_stop()); the connection may finish its work. */
	void (*drain)(struct tide_conn *c);
	/* The connection ended (err: the error, or 0); the handle is invalid after it. */
	void (*end)(struct tide_conn *c, enum tide_end why, int err);
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
int tide_agent_probe(char *why, size_t len);

/*
 * tide_agent_create - set up an agent over @pool. Nothing runs until tide_agent_start().
 * @pool: the pool receive buffers come from; its block size is the buffer size; it must
 *        outlive the agent
 * @cfg: the configuration
 * @agent: the new agent, on success
 *
 * Return: 0; -EINVAL a bad field; -ENOMEM; or an error of tide_agent_probe().
 */
int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
		      struct tide_agent **agent);

/*
 * tide_agent_listen - bind "HOST:PORT" (one SO_REUSEPORT socket per worker) before start;
 * accepted connections get @ops and start with @data as their application data.
 * @port: gets the port bound, the one picked when HOST:PORT says 0 (may be NULL)
 *
 * Return: 0; -EINVAL a bad address; -EALREADY started; -EADDRINUSE and the like from bind();
 * -ENOSPC more than 8 listeners.
 */
int tide_agent_listen(struct tide_agent *agent, const char *hostport,
		      const struct tide_conn_ops *ops, void *data, unsigned *port);

/*
 * tide_agent_start - start the workers and wait until each has its ring armed.
 *
 * Return: 0; -EALREADY when started before; or the first worker's setup error (-EPERM,
 * -ENOMEM, -EOPNOTSUPP ...), in which case every worker is stopped again.
 */
int tide_agent_start(struct tide_agent *agent);

/*
 * tide_agent_stop - drain: stop accepting, tell each connection (ops->drain), let them run
 * until they end or drain_timeout_ms passes, then end the rest (TIDE_END_DRAIN). A second
 * call ends them at once. Async-signal-safe; returns at once.
 */
void tide_agent_stop(struct tide_agent *agent);

/* True while a worker still runs (started and not yet ended). */
bool tide_agent_running(const struct tide_agent *agent);

/* Join the workers after tide_agent_stop(); every buffer the agent holds is back in the pool
 * (those the application still holds are not). 0, or -EINVAL never started. */
int tide_agent_wait(struct tide_agent *agent);

/* Destroy an agent (stopping and joining it first if it runs). NULL is a no-op. */
void tide_agent_destroy(struct tide_agent *agent);

/*
 * tide_agent_post - run fn(w, arg) on worker @index's thread, soon (any thread may call).
 *
 * Return: 0; -EINVAL bad index; -ESHUTDOWN the worker has ended; -ENOMEM.
 */
int tide_agent_post(struct tide_agent *agent, unsigned index,
		    void (*fn)(struct tide_worker *w, void *arg), void *arg);

/* ------------------------------------------------------------- workers -- */

struct tide_worker *tide_agent_worker(struct tide_agent *agent, unsigned index); /* or NULL */
struct tide_agent *tide_worker_agent(const struct tide_worker *w);
unsigned tide_worker_index(const struct tide_worker *w);
/* The monotonic clock of the worker's current turn, in milliseconds. */
uint64_t tide_worker_now(const struct tide_worker *w);

/*
 * tide_timer_start - call fn(w, arg) once on w's thread after @ms milliseconds (on w's
 * thread only). @id gets a handle for tide_timer_cancel() (may be NULL).
 *
 * Return: 0; -EINVAL; -ENOMEM.
 */
int tide_timer_start(struct tide_worker *w, unsigned ms, void (*fn)(struct tide_worker *, void *),
		     void *arg, uint64_t *id);
/* Cancel a timer that has not fired. 0; -ENOENT fired, cancelled or unknown. */
int tide_timer_cancel(struct tide_worker *w, uint64_t id);

/* ----------------------------------------------------------- addresses -- */

#define TIDE_ADDRS_MAX 16

/* A name's addresses, in the resolver's order. */
struct tide_addrs {
	unsigned n;
	socklen_t len[TIDE_ADDRS_MAX];
	struct sockaddr_storage addr[TIDE_ADDRS_MAX];
};

/*
 * tide_addrs_resolve - resolve "HOST:PORT" ("[V6]:PORT"; an empty HOST with @passive means
 * any address) to all its addresses (at most TIDE_ADDRS_MAX). Blocks in getaddrinfo().
 *
 * Return: 0; -EINVAL not HOST:PORT, a bad port; -ENOENT the name does not resolve; -ENOMEM.
 */
int tide_addrs_resolve(const char *hostport, bool passive, struct tide_addrs *out);

/* --------------------------------------------------------- connections -- */

/*
 * tide_conn_connect - open a connection from w's thread: try @to's addresses in turn, each
 * for at most @timeout_ms (0: the kernel's own), until one accepts. ops->open follows on
 * success; ops->end with TIDE_END_CONNECT (err: the last error) when none did. Data sent
 * before it is connected is queued.
 *
 * Return: 0 and *c; -EINVAL; -ENOMEM; -ESHUTDOWN the worker is draining.
 */
int tide_conn_connect(struct tide_worker *w, const struct tide_addrs *to, unsigned timeout_ms,
		      const struct tide_conn_ops *ops, void *data, struct tide_conn **c);

/* Application data of a connection. */
void tide_conn_set_data(struct tide_conn *c, void *data);
void *tide_conn_data(const struct tide_conn *c);
struct tide_worker *tide_conn_worker(const struct tide_conn *c);
/* The socket, for getsockopt and getpeername only (the agent reads, writes and closes it). */
int tide_conn_fd(const struct tide_conn *c);

/*
 * tide_conn_send - queue @n buffers for sending, in order; the connection takes their
 * references, also when it fails.
 *
 * Return: 0; -EPIPE the connection was shut down for sending, or its sending failed;
 * -ENOTCONN it has ended.
 */
int tide_conn_send(struct tide_conn *c, const struct tide_buf *bufs, unsigned n);
/* Copy @len bytes into pool buffers and queue them. 0; -EPIPE; -ENOTCONN; -ENOSPC. */
int tide_conn_send_copy(struct tide_conn *c, const void *data, size_t len);
/* Bytes queued for sending and not yet sent. */
size_t tide_conn_queued(const struct tide_conn *c);
/* Call ops->drained once the queue holds at most @bytes (at once if it does already). */
void tide_conn_notify_below(struct tide_conn *c, size_t bytes);

/* Stop reading (backpressure): nothing more is received until tide_conn_resume(). */
void tide_conn_pause(struct tide_conn *c);
void tide_conn_resume(struct tide_conn *c);

/*
 * tide_conn_shutdown - end sending once everything queued went out: with FIN (@reset false:
 * the connection ends CLEAN after the peer's FIN too), or with a reset (@reset true: ends
 * RESET, so the peer learns that what it sent was not all taken).
 */
void tide_conn_shutdown(struct tide_conn *c, bool reset);
/* Reset now, dropping what is queued; ops->end follows (TIDE_END_RESET, err 0). */
void tide_conn_abort(struct tide_conn *c);

/* ----------------------------------------------------------------- state -- */

unsigned tide_agent_workers(const struct tide_agent *agent);
/* Worker i's pool user (for tide_user_stats), or NULL. */
struct tide_user *tide_agent_user(const struct tide_agent *agent, unsigned i);

struct tide_agent_stats {
	uint64_t conns_current;	    /* accepted connections open now */
	uint64_t conns_accepted;    /* accepted, in all */
	uint64_t conns_rejected;    /* closed at once: past max_conns, or while draining */
	uint64_t conns_idle_closed; /* ended by the idle timeout */
	uint64_t conns_reset;	    /* ended by a reset or error (ours or the peer's) */
	uint64_t upstream_failures; /* tide_conn_connect() that ended TIDE_END_CONNECT */
	uint64_t connect_retries;   /* addresses that failed before another was tried */
	uint64_t bytes_in;	    /* received */
	uint64_t bytes_out;	    /* sent */
	uint64_t short_sends;	    /* sends that took less than offered */
	uint64_t pauses;	    /* tide_conn_pause() calls that stopped a receive */
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

/* Fill st with the sum over the workers (counters read without stopping them). */
void tide_agent_stats(const struct tide_agent *agent, struct tide_agent_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* TIDE_NET_H */
