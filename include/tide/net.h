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
 * Usage: an echo server (see examples/fanout.c, examples/http.c and tools/ for more).
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
 *		struct tide_agent *agent = NULL;
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
 * Conventions as in tide.h: actions return 0 or a negative errno and never set errno. Each
 * function has a manual page (tide_conn_send(3) ...); tide(7) is the overview.
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

/* Bytes inside one pool buffer, with one reference to that buffer: any range of it, so
 * several pieces of one buffer (one reference each) may be sent or kept. */
struct tide_buf {
	void *data;   /* the first byte */
	uint32_t len; /* how many */
};

/*
 * tide_buf_get - take one more reference to the pool buffer holding @data (any byte of it),
 * e.g. to send the same bytes to one more connection. Any thread.
 *
 * Return: 0; -EINVAL @data is not in a buffer the agent handed out.
 */
TIDE_API int tide_buf_get(struct tide_agent *agent, const void *data);

/*
 * tide_buf_put - drop one reference to the pool buffer holding @data; the last one gives the
 * buffer back (to its worker's ring, or to the pool). Any thread; on the buffer's worker's
 * thread the quota it held is free again from the loop's next turn.
 *
 * Return: 0; -EINVAL @data is not in a buffer the agent handed out.
 */
TIDE_API int tide_buf_put(struct tide_agent *agent, const void *data);

/*
 * tide_buf_alloc - a buffer for the application to fill and send: @len bytes (1 up to the
 * pool's block size) at @buf->data, one reference, charged to @w's tide user. Any thread.
 *
 * Return: 0; -EINVAL a NULL argument or a bad @len; -ENOSPC the worker's quota
 * (worker_quota) or the pool's max_size is reached.
 */
TIDE_API int tide_buf_alloc(struct tide_worker *w, size_t len, struct tide_buf *buf);

/* ---------------------------------------------------------------- config -- */

enum {
	TIDE_AGENT_NO_BUNDLE = 1u << 0, /* never use recv bundles, even where the kernel has them */
	TIDE_AGENT_NO_INCREMENTAL = 1u << 1, /* never use incremental buffer rings (Linux 6.12+) */
	TIDE_AGENT_NO_RECV_LIMIT = 1u << 2   /* never use byte-limited multishot receives (Linux
						 6.16+) for tide_conn_recv_limit() */
};

struct tide_agent_config {	  /* zero means default */
	unsigned threads;	  /* workers; default 1, at most 1024 */
	unsigned max_conns;	  /* accepted connections at once, all workers; 0: no limit */
	unsigned idle_timeout_ms; /* end a connection idle this long (TIDE_END_TIMEOUT); 0: never */
	unsigned drain_timeout_ms; /* at stop, how long connections may still run; default 5000 */
	size_t recv_max;	   /* most bytes one receive completion hands over; default
				      max(16 blocks, 1 MiB); less while the ring holds less */
	size_t worker_quota;	   /* bytes one worker's user may hold (ring, application, send
				      queues); 0: no limit but the pool's */
	unsigned ring_entries;	   /* provided-buffer ring slots per worker, power of two,
				      16..32768; default 512 */
	unsigned ring_min;	   /* buffers a ring keeps ready when traffic is low; default 16 */
	unsigned flags;		   /* TIDE_AGENT_* */
	/* Called on each worker's thread once it runs, and once after its last connection
	 * ended (to drop buffers the application keeps); may be NULL. */
	void (*worker_start)(struct tide_worker *w, void *arg);
	void (*worker_stop)(struct tide_worker *w, void *arg);
	void *worker_arg;
	size_t recv_batch; /* bulk receive batching: a connection whose one receive carried
			      this much (and 64 KiB at least) gets SO_RCVLOWAT of this many
			      bytes, so it is
			      woken once per recv_batch bytes instead of per segment; the mark
			      drops back to 1 byte after the connection received nothing for
			      about a millisecond, so a smaller tail waits at most that long.
			      0: off (the default); at most INT_MAX */
	unsigned conn_fds; /* descriptors an accepted connection may still open (a proxy's
			      upstream socket: 1, and its pipes for tide_conn_splice(): 2 per
			      direction), at most TIDE_CONN_FDS_MAX. A listener then accepts
			      only while its worker holds that many in reserve (handed to the
			      connection as it opens), one connection per accept; without
			      them the clients wait in the listen queue until a connection of
			      the worker ends or the 100 ms tick finds room (counted in
			      accept_errors). 0: accept whenever the kernel can (the default) */
};

#define TIDE_CONN_FDS_MAX 16 /* the most tide_agent_config.conn_fds may ask */

/* How a connection ended (the end callback's reason). */
enum tide_end {
	TIDE_END_CLEAN,	  /* both sides sent FIN, everything queued was sent */
	TIDE_END_RESET,	  /* a reset or error from the peer, a failed send, or tide_conn_abort() */
	TIDE_END_TIMEOUT, /* idle for idle_timeout_ms */
	TIDE_END_DRAIN,	  /* still open at the drain deadline, or a second tide_agent_stop() */
	TIDE_END_CONNECT  /* tide_conn_connect(): no address accepted the connection */
};

/* A connection's callbacks, run on its worker's thread; any may be NULL. */
struct tide_conn_ops {
	/* Accepted, or connected (tide_conn_connect()): reading starts after it returns. */
	void (*open)(struct tide_conn *c);
	/* Bytes received, in order: the application owns one reference per buffer (to send,
	 * keep, or drop with tide_buf_put()). A message may be split over pieces and calls;
	 * one call hands over at most recv_max bytes. NULL: they are dropped. */
	void (*recv)(struct tide_conn *c, struct tide_buf *bufs, unsigned n);
	/* The peer sent FIN: nothing more will be received. */
	void (*eof)(struct tide_conn *c);
	/* Sending failed (err, e.g. -EPIPE): what was queued is dropped and later sends fail;
	 * receiving goes on while the peer's data lasts; the end is TIDE_END_RESET. */
	void (*send_error)(struct tide_conn *c, int err);
	/* The send queue fell to the mark of tide_conn_notify_below() (once per request). */
	void (*drained)(struct tide_conn *c);
	/* The agent began draining (tide_agent_stop()); the connection may finish its work.
	 * One that does not end by itself is reset at the drain deadline (TIDE_END_DRAIN), so a
	 * server ends its idle keep-alive connections here (tide_conn_shutdown()). */
	void (*drain)(struct tide_conn *c);
	/* The connection ended (err: the error, or 0); the handle is invalid after it. Every
	 * ending but TIDE_END_CLEAN resets the socket. It may run inside tide_conn_abort(),
	 * tide_conn_shutdown(), tide_conn_close() (nothing queued) and tide_conn_send() (-ENOMEM),
	 * before they return: inside a callback of @c the handle stays valid until it returns,
	 * but what end freed does not. */
	void (*end)(struct tide_conn *c, enum tide_end why, int err);
};

/* ----------------------------------------------------------- lifecycle -- */

/*
 * tide_agent_probe - check that io_uring and what the agent needs from it work here, and
 * put a sentence for the user in @why (@len bytes; may be NULL).
 *
 * Return: 0; -EPERM io_uring refused (kernel.io_uring_disabled, seccomp, a container
 * policy); -ENOSYS no io_uring in this kernel; -EOPNOTSUPP the kernel lacks multishot
 * receive or provided-buffer rings (Linux 6.0 or newer is needed); -ENOMEM.
 */
TIDE_API int tide_agent_probe(char *why, size_t len);

/*
 * tide_agent_create - set up an agent over @pool (whose block size is the buffer size, and
 * which must outlive the agent) with @cfg; nothing runs until tide_agent_start().
 *
 * Return: 0; -EINVAL a NULL argument, ring_entries not a power of two in 16..32768, threads
 * over 1024, recv_batch over INT_MAX, conn_fds over TIDE_CONN_FDS_MAX or an unknown flag;
 * -ENOMEM; or an error of tide_agent_probe() (-EPERM,
 * -ENOSYS, -EOPNOTSUPP). On an error *@agent is NULL (unless @agent is), so
 * tide_agent_destroy() on it is harmless.
 */
TIDE_API int tide_agent_create(struct tide_pool *pool, const struct tide_agent_config *cfg,
			       struct tide_agent **agent);

/*
 * tide_agent_listen - bind "HOST:PORT" (one SO_REUSEPORT socket per worker) and accept
 * there, before tide_agent_start() or while the workers run (then it returns once each
 * worker accepts on its socket; a connection that comes earlier waits in the queue).
 * An empty HOST or "*" (":P", "*:P") is every address: one "::" socket taking IPv6 and
 * IPv4 where the host has IPv6, else "0.0.0.0". Any other IPv6 address, "[::]" included,
 * is IPV6_V6ONLY: "[::]:P" takes IPv6 only (nginx's default) and may go with "0.0.0.0:P";
 * the host's net.ipv6.bindv6only changes neither.
 * Connections accepted there get @ops and start with @data as their application data.
 * @port gets the port bound, the one picked when HOST:PORT says 0 (may be NULL). Blocks
 * (getaddrinfo, the workers): call it off the agent's workers, not at the same time as
 * tide_agent_start() or tide_agent_destroy().
 *
 * Return: 0; -EINVAL a NULL agent or ops, or not HOST:PORT; -ENOSPC 32 listeners already;
 * -ENOENT the name does not resolve; -EADDRINUSE the agent listens there already (every
 * address of a port overlaps any other listener on it), and the like from bind(); -ESHUTDOWN the
 * agent drains or has ended; -EDEADLK called on one of its workers; -ENOMEM.
 */
TIDE_API int tide_agent_listen(struct tide_agent *agent, const char *hostport,
			       const struct tide_conn_ops *ops, void *data, unsigned *port);

/*
 * tide_agent_listen_close - stop accepting on the listener at "HOST:PORT" (as given to
 * tide_agent_listen(), with the port it bound) and close its sockets, before start or while
 * the workers run; connections accepted there go on untouched. Returns once every worker
 * closed its socket, so a connect after it is refused (those the kernel queued but no worker
 * accepted yet are reset). Blocks like tide_agent_listen().
 *
 * Return: 0; -EINVAL a NULL agent, or not HOST:PORT; -ENOENT no listener of @agent there,
 * or the name does not resolve; -EDEADLK called on one of its workers; -ENOMEM.
 */
TIDE_API int tide_agent_listen_close(struct tide_agent *agent, const char *hostport);

/*
 * tide_agent_start - start the workers and wait until each has its ring armed.
 *
 * Return: 0; -EINVAL a NULL agent; -EALREADY when started before; or the first worker's
 * setup error (-EPERM, -ENOMEM, -EOPNOTSUPP, -EAGAIN ...), in which case every worker is
 * stopped again.
 */
TIDE_API int tide_agent_start(struct tide_agent *agent);

/*
 * tide_agent_stop - drain: stop accepting, tell each connection (ops->drain), let them run
 * until they end or drain_timeout_ms passes, then end the rest (TIDE_END_DRAIN). A second
 * call ends them at once. Async-signal-safe; returns at once; NULL does nothing.
 */
TIDE_API void tide_agent_stop(struct tide_agent *agent);

/*
 * tide_agent_set_idle_timeout - change idle_timeout_ms while the agent runs (0: never); it
 * applies from the workers' next tick to every connection, open ones included. Any thread;
 * NULL does nothing.
 */
TIDE_API void tide_agent_set_idle_timeout(struct tide_agent *agent, unsigned ms);

/*
 * tide_agent_running - whether a worker still runs: true from tide_agent_start() until the
 * last worker ended (after a stop, once its connections are gone).
 */
TIDE_API bool tide_agent_running(const struct tide_agent *agent);

/*
 * tide_agent_wait - join the workers after tide_agent_stop(). Every buffer the engine held
 * is back in the pool; those the application still holds are not.
 *
 * Return: 0 (also when joined before); -EINVAL a NULL or never started agent.
 */
TIDE_API int tide_agent_wait(struct tide_agent *agent);

/*
 * tide_agent_destroy - stop and join the agent if it runs, close the listeners, destroy the
 * workers' pool users and free the agent. The application must have dropped every buffer
 * it kept (a worker's user still holding some is reported on stderr). NULL does nothing.
 */
TIDE_API void tide_agent_destroy(struct tide_agent *agent);

/*
 * tide_agent_post - run fn(w, arg) on worker @index's thread on its loop's next turn; any
 * thread may call it. Work is run in the order posted; work posted before the worker ends
 * runs at the latest while it ends.
 *
 * Return: 0; -EINVAL a NULL agent or function, or a bad index; -ESHUTDOWN the worker has
 * ended; -ENOMEM.
 */
TIDE_API int tide_agent_post(struct tide_agent *agent, unsigned index,
			     void (*fn)(struct tide_worker *w, void *arg), void *arg);

/* ------------------------------------------------------------- workers -- */

/* tide_agent_worker - worker @index of @agent, or NULL for a bad index. */
TIDE_API struct tide_worker *tide_agent_worker(struct tide_agent *agent, unsigned index);
/* tide_worker_agent - the agent @w belongs to. */
TIDE_API struct tide_agent *tide_worker_agent(const struct tide_worker *w);
/* tide_worker_index - @w's index, 0 .. threads - 1. */
TIDE_API unsigned tide_worker_index(const struct tide_worker *w);
/*
 * tide_worker_held - bytes queued for sending on all of @w's connections, plus what their
 * receive limits (tide_conn_recv_limit()) still let them receive: what @w's connections may
 * hold at most, for sharing memory fairly (@w's thread).
 */
TIDE_API size_t tide_worker_held(const struct tide_worker *w);
/* tide_worker_now - the monotonic clock of @w's current loop turn, in milliseconds. */
TIDE_API uint64_t tide_worker_now(const struct tide_worker *w);

/*
 * tide_timer_start - call fn(w, arg) once on @w's thread after @ms milliseconds; call on
 * @w's thread only. @id gets a handle for tide_timer_cancel() (may be NULL).
 *
 * Return: 0; -EINVAL a NULL worker or function; -ENOMEM.
 */
TIDE_API int tide_timer_start(struct tide_worker *w, unsigned ms,
			      void (*fn)(struct tide_worker *, void *), void *arg, uint64_t *id);

/*
 * tide_timer_cancel - cancel timer @id of @w before it fires (on @w's thread).
 *
 * Return: 0; -EINVAL a NULL worker; -ENOENT it fired, was cancelled, or is unknown.
 */
TIDE_API int tide_timer_cancel(struct tide_worker *w, uint64_t id);

/* ----------------------------------------------------------- addresses -- */

#define TIDE_ADDRS_MAX 16

/* A name's addresses, in the resolver's order. */
struct tide_addrs {
	unsigned n;
	socklen_t len[TIDE_ADDRS_MAX];
	struct sockaddr_storage addr[TIDE_ADDRS_MAX];
};

/*
 * tide_addrs_resolve - resolve "HOST:PORT" ("[V6]:PORT") to all its addresses, at most
 * TIDE_ADDRS_MAX. With @passive an empty HOST or "*" is every address, one: "::" where the
 * host has IPv6 (tide_agent_listen() makes that socket dual-stack), else "0.0.0.0".
 * Blocks in getaddrinfo(): call it off the workers.
 *
 * Return: 0; -EINVAL not HOST:PORT, or a bad port; -ENOENT the name does not resolve;
 * -ENOMEM.
 */
TIDE_API int tide_addrs_resolve(const char *hostport, bool passive, struct tide_addrs *out);

/* --------------------------------------------------------- connections -- */

/*
 * tide_conn_connect - open a connection from @w's thread: try @to's addresses in turn, each
 * for at most @timeout_ms (0: the kernel's own), until one accepts. ops->open follows on
 * success; ops->end with TIDE_END_CONNECT (err: the last error, -ETIMEDOUT for a timeout)
 * when none did. *@c is valid at once; data sent before it connects is queued. @to is not
 * copied: it must stay as it is until ops->open or ops->end ran.
 *
 * Return: 0; -EINVAL a NULL argument or an empty list; -ESHUTDOWN the worker drains;
 * -ENOMEM; or socket()'s error (-EMFILE ...) for every address (then no connection and no
 * callback).
 */
TIDE_API int tide_conn_connect(struct tide_worker *w, const struct tide_addrs *to,
			       unsigned timeout_ms, const struct tide_conn_ops *ops, void *data,
			       struct tide_conn **c);

/*
 * tide_conn_send - queue @n buffers for sending on @c, in order, from @c's worker's thread;
 * @c takes their references, also when it fails (then they are dropped). Each piece needs
 * its own reference, also several pieces of one buffer (tide_buf_get()).
 *
 * Return: 0; -EPIPE sending was shut down or failed before; -ENOTCONN @c has ended;
 * -ENOMEM (then @c is reset: ops->end has run).
 */
TIDE_API int tide_conn_send(struct tide_conn *c, const struct tide_buf *bufs, unsigned n);

/*
 * tide_conn_send_copy - copy @len bytes into pool buffers charged to @c's worker and queue
 * them: for small replies (headers, short answers); any @len works, split into blocks, and 0
 * queues nothing. @c's worker's thread, like tide_conn_send().
 *
 * Return: 0; -EPIPE; -ENOTCONN; -ENOSPC the worker's quota or the pool is full: nothing was
 * queued and the buffers taken are back under the quota, so a smaller reply may follow;
 * -ENOMEM.
 */
TIDE_API int tide_conn_send_copy(struct tide_conn *c, const void *data, size_t len);

/* tide_conn_queued - bytes queued on @c and not yet sent, with those a splice's pipe holds
 * for it (tide_conn_splice()). */
TIDE_API size_t tide_conn_queued(const struct tide_conn *c);

/*
 * tide_conn_notify_below - call ops->drained once @c's send queue holds at most @bytes; when
 * it does already, drained runs at once, inside this call (mind re-entering the caller).
 */
TIDE_API void tide_conn_notify_below(struct tide_conn *c, size_t bytes);

/*
 * tide_conn_pause - stop reading @c (backpressure) until tide_conn_resume(); bytes of a
 * receive already completed may still be handed over.
 */
TIDE_API void tide_conn_pause(struct tide_conn *c);
/* tide_conn_resume - read @c again after tide_conn_pause(). */
TIDE_API void tide_conn_resume(struct tide_conn *c);

/*
 * tide_conn_recv_limit - let @c receive at most @bytes more (SIZE_MAX: no limit, the
 * default): each receive asks the kernel for no more than what is left, and reading waits
 * once it is used up until the limit is set again, so a queue filled from @c stays within a
 * bound exactly.
 *
 * Return: 0; -EBUSY @c is still connecting; -ENOTCONN @c has ended.
 */
TIDE_API int tide_conn_recv_limit(struct tide_conn *c, size_t bytes);

/*
 * tide_conn_splice - from now on, forward the bytes @src receives to @dst through a kernel
 * pipe of @pipe_size bytes (0: 1 MiB; the kernel may give less), never copied to user memory
 * nor handed to ops->recv: for bulk data between two connections of one worker, where it
 * costs less CPU per byte than receiving into buffers and sending them. Bytes already
 * received, and those of a receive in flight (still handed to ops->recv, to be sent on to
 * @dst with tide_conn_send()), go out before the pipe's; @dst's send queue is sent before
 * the pipe is. Flow control is the pipe: @src is read only while it has room, so
 * tide_conn_recv_limit() has no effect on @src meanwhile, and tide_conn_queued(@dst) counts
 * what it holds. ops->eof of @src comes once every byte before the FIN went into @dst; a FIN or
 * reset asked for on @dst (tide_conn_shutdown()) waits for the pipe, and reading @src stops
 * then. A read error ends @src (TIDE_END_RESET); a write error is @dst's ops->send_error.
 * When either ends, the splice stops (the pipe's bytes are dropped) and @src is read by its
 * receive again. tide_conn_spliced() counts the bytes. Once per direction; one call each way
 * splices both. @src's worker's thread.
 *
 * Return: 0; -EINVAL a NULL argument, @src is @dst, or they are on different workers;
 * -ENOTCONN one of them ended; -EBUSY one is still connecting or is spliced with a third;
 * -EALREADY this direction was spliced before; -ENOMEM; -EMFILE or -ENFILE from pipe2().
 */
TIDE_API int tide_conn_splice(struct tide_conn *src, struct tide_conn *dst, size_t pipe_size);

/*
 * tide_conn_spliced - bytes @c's splice (tide_conn_splice()) took from it so far, which
 * ops->recv never saw; also inside ops->end. 0 when it was never spliced.
 */
TIDE_API uint64_t tide_conn_spliced(const struct tide_conn *c);

/*
 * tide_conn_shutdown - end sending once everything queued went out: with FIN (@reset
 * false; @c ends TIDE_END_CLEAN when the peer's FIN came too), or with a reset (@reset
 * true; @c ends TIDE_END_RESET, so the peer learns that what it sent was not all taken).
 * Later sends fail with -EPIPE; receiving goes on. ops->end runs inside this call when
 * nothing is queued and the peer's FIN came (FIN) or always (reset, nothing queued).
 */
TIDE_API void tide_conn_shutdown(struct tide_conn *c, bool reset);

/*
 * tide_conn_close - send FIN once everything queued went out and end @c then
 * (TIDE_END_CLEAN), without waiting for the peer's FIN (what it sends later is refused).
 * ops->end runs inside this call when nothing is queued.
 */
TIDE_API void tide_conn_close(struct tide_conn *c);

/* tide_conn_abort - reset @c now, dropping what is queued; ops->end(c, TIDE_END_RESET, 0)
 * runs before it returns. */
TIDE_API void tide_conn_abort(struct tide_conn *c);

enum {
	TIDE_CONN_EOF = 1u << 0,	/* the peer sent FIN */
	TIDE_CONN_SHUT = 1u << 1,	/* FIN was sent */
	TIDE_CONN_PAUSED = 1u << 2,	/* tide_conn_pause() */
	TIDE_CONN_CONNECTING = 1u << 3, /* tide_conn_connect() in progress */
	TIDE_CONN_SEND_FAILED = 1u << 4 /* a send failed (ops->send_error) */
};

/* tide_conn_state - what @c has done so far: TIDE_CONN_* flags. */
TIDE_API unsigned tide_conn_state(const struct tide_conn *c);

/* tide_conn_set_data - set @c's application data. */
TIDE_API void tide_conn_set_data(struct tide_conn *c, void *data);
/* tide_conn_data - @c's application data. */
TIDE_API void *tide_conn_data(const struct tide_conn *c);
/* tide_conn_worker - the worker @c lives on. */
TIDE_API struct tide_worker *tide_conn_worker(const struct tide_conn *c);
/* tide_conn_fd - @c's socket, for getsockopt(), getpeername() and the SIOCINQ/SIOCOUTQ
 * queries only (the agent reads, writes and closes it); -1 while a connect has no socket. */
TIDE_API int tide_conn_fd(const struct tide_conn *c);

/*
 * tide_conn_keepalive - TCP keepalive on @c: after @idle_s seconds without traffic (1..32767;
 * 0 turns it off) a probe every @intvl_s seconds (1..32767; 0: the kernel's default), and
 * @cnt unanswered probes (1..127; 0: the kernel's default) end the connection
 * (TIDE_END_RESET, err -ETIMEDOUT). From ops->open on, on @c's worker's thread.
 *
 * Return: 0; -EINVAL a NULL @c or a value out of range; -EBUSY @c is still connecting;
 * -ENOTCONN @c has ended; or setsockopt()'s error.
 */
TIDE_API int tide_conn_keepalive(struct tide_conn *c, unsigned idle_s, unsigned intvl_s,
				 unsigned cnt);

/* ----------------------------------------------------------------- state -- */

/* tide_agent_workers - the worker count, or 0 for NULL. */
TIDE_API unsigned tide_agent_workers(const struct tide_agent *agent);

/*
 * tide_agent_user - worker @i's pool user, for tide_user_stats(); NULL for a NULL agent, an
 * index out of range, or a worker that has not set up yet.
 */
TIDE_API struct tide_user *tide_agent_user(const struct tide_agent *agent, unsigned i);

struct tide_agent_stats {
	uint64_t conns_current;	    /* accepted connections open now */
	uint64_t conns_accepted;    /* accepted, in all */
	uint64_t conns_rejected;    /* reset at once: past max_conns, or while draining */
	uint64_t conns_idle_closed; /* ended by the idle timeout */
	uint64_t conns_reset;	    /* ended by a reset or error (ours or the peer's) */
	uint64_t upstream_failures; /* tide_conn_connect() that ended TIDE_END_CONNECT */
	uint64_t connect_retries;   /* addresses that failed before another was tried */
	uint64_t bytes_in;	    /* received */
	uint64_t bytes_out;	    /* sent */
	uint64_t short_sends;	    /* sends that took less than offered */
	uint64_t pauses;	 /* reads stopped: tide_conn_pause(), or a receive limit used up */
	uint64_t ring_refills;	 /* times a ring was topped up from the pool */
	uint64_t refill_buffers; /* buffers put into rings from the pool */
	uint64_t enobufs;	 /* receives that found their ring empty */
	uint64_t ring_resets;	 /* idle rings handed their buffers back to the pool */
	uint64_t forced_grows;	 /* pool grows the agent asked for when allocation fell short */
	uint64_t ring_buffers;	 /* buffers sitting in the rings now */
	uint64_t ring_target;	 /* sum of the rings' targets now */
	uint64_t recv_arms;	 /* receives submitted; a multishot one lasts many completions */
	uint64_t batch_marks;	 /* receive batching turned on for a connection (recv_batch) */
	uint64_t batch_quiet;	 /* ... and off again after it went quiet */
	bool bundles;		 /* recv bundles in use */
	bool incremental;	 /* incremental buffer rings in use  */
	bool defer_taskrun;	 /* rings run with IORING_SETUP_DEFER_TASKRUN */
	/* Accepts the kernel failed for want of local resources: -EMFILE (the process's
	 * RLIMIT_NOFILE), -ENFILE (the system's file table), -ENOBUFS, -ENOMEM. The connection
	 * stays in the listen queue and the listener tries again at the worker's next tick
	 * (100 ms), so it accepts again once descriptors or memory are freed; a steadily
	 * rising count means clients wait. */
	uint64_t accept_errors;
	int accept_error; /* the latest of them (-EMFILE ...); 0 when there was none */
};

/*
 * tide_agent_stats - fill @st with the counters summed over the workers, read while they
 * run (all zero for a NULL agent).
 */
TIDE_API void tide_agent_stats(const struct tide_agent *agent, struct tide_agent_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* TIDE_NET_H */
