/* SPDX-License-Identifier: MIT */
/*
 * tide.h - an elastic, address-stable buffer pool for network I/O.
 *
 * One virtual range is reserved once and never moves. An address inside it,
 * the boundary, splits it: below, the unreserved portion (mapped, buffers are
 * allocated there through a bitmap, one bit per block); above, the reserved
 * portion (PROT_NONE, no resident pages). Growing moves the boundary up,
 * shrinking moves it down and gives the pages back. Buffer addresses stay
 * valid for the pool's life.
 *
 * Conventions: actions return 0 or a negative errno; allocators return a
 * pointer or NULL; getters return values. The library never sets errno.
 * Every function is safe to call from several threads at once, except
 * tide_pool_destroy(), which must be the last call on a pool.
 *
 * Each function's contract follows it here (kernel-doc), and in its manual page
 * (man 3 tide_alloc ...); man 7 tide describes the model.
 *
 * Signal handlers: tide_alloc(), tide_free(), their _bulk and tide_user_ forms,
 * tide_buffer_size(), tide_pool_base() and tide_pool_boundary() may be called from a
 * handler, on a thread that has called into the pool at least once before (the first call
 * on a thread allocates its cache with malloc). When the handler interrupted a call into
 * the pool on the same thread, the call is refused - NULL, 0 buffers, or -EAGAIN, counted
 * in tide_stats.reentries - instead of handing out a buffer twice or waiting for a lock
 * the interrupted code holds; retry outside the handler. Growth from a handler takes
 * locks another thread may hold for a while and runs the conversion hook: create the pool
 * without TIDE_AUTO_GROW (or grow it ahead) where a handler allocates. tide_pool_stats()
 * in such a handler fills in only the configuration and counters; grow, shrink, maintain,
 * flush, tide_user_create/destroy and tide_pool_set_convert_hook refuse with -EAGAIN (or do
 * nothing). tide_pool_create() and tide_pool_destroy() are not async-signal-safe.
 *
 * fork(): the child may use every pool it inherits (locks are taken around fork,
 * blocks held by the parent's other threads come back to the pool, the TIDE_BACKGROUND
 * thread is started again - when it cannot be, that counts in os_failures and the child's
 * own calls into the pool start it or do its maintenance, at most once per sampling
 * period: every call but a tide_alloc()/tide_free() that its thread cache serves (those
 * stay as cheap as in any process), so such a child that goes quiet after a burst, or
 * only allocates and frees from its cache, gets the memory back by calling
 * tide_pool_maintain() once the delay has passed - and a TIDE_LOCKED pool is locked again
 * at the child's first such call, so fork()+exec copies nothing - a refusal is counted in
 * os_failures). The memory limit is read at each grow through /proc/self: a child
 * counts its own memory and cgroup. Buffers the other threads held stay allocated. Do not fork from
 * inside a signal handler that interrupted a call into the pool. The library registers its
 * pthread_atfork handlers when it is loaded: atfork handlers the program registers after
 * that may use the pool; while fork holds the pool's locks (between the library's prepare
 * and its parent/child handlers: a signal handler interrupting fork, atfork handlers
 * registered before the library was loaded) calls on the forking thread are refused as
 * above (-EAGAIN, NULL, counted in reentries). Only fork() (and posix_spawn(), vfork()
 * followed by exec) is supported: a child made by the raw clone system call, or by vfork()
 * then anything but exec, skips the atfork handlers: a call into the pool there may wait
 * for ever on a lock another thread held, or abort in the C library (the locks are
 * priority-inheriting and name their owner by a thread id the child does not have).
 *
 * Cancellation: the calls that may wait or read files (grow, shrink, maintain, an
 * allocation that grows the pool or takes back other threads' caches, the conversion
 * hook) run with cancellation disabled, so a thread cancelled by pthread_cancel() never
 * leaves a pool lock held; a pending cancel acts at the thread's next cancellation point.
 */
#ifndef TIDE_H
#define TIDE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#include <tide/version.h> /* TIDE_VERSION_MAJOR, _MINOR, _PATCH, _STRING, _NUMBER */

#if defined(__GNUC__)
#define TIDE_API       __attribute__((visibility("default")))
#define TIDE_MALLOC    __attribute__((malloc))
#define TIDE_NODISCARD __attribute__((warn_unused_result))
#else
#define TIDE_API
#define TIDE_MALLOC
#define TIDE_NODISCARD
#endif

struct tide_pool; /* opaque: one reservation, its bitmap and its users */
struct tide_user; /* opaque: a class of memory user (connection, ring, worker) */

/* ---------------------------------------------------------------- pool -- */

enum {
	TIDE_AUTO_GROW = 1u << 0,   /* an allocation may convert reserved space when none is free */
	TIDE_AUTO_SHRINK = 1u << 1, /* maintenance returns idle unreserved space after a delay */
	TIDE_HUGEPAGES = 1u << 2,   /* ask for transparent huge pages on the unreserved portion */
	TIDE_POPULATE = 1u << 3,    /* fault pages in at conversion, not at first touch */
	TIDE_LOCKED = 1u << 4,	    /* keep the unreserved portion locked in memory (pinned) */
	TIDE_BACKGROUND = 1u << 5   /* a pool-owned thread runs maintenance */
};

#define TIDE_POOL_FLAGS_ALL 0x3fu /* every flag above */

struct tide_pool_config {    /* zero means default */
	size_t block_size;   /* bytes per bitmap bit: power of two, 64 B..1 MiB; default 2048 */
	size_t reserve_size; /* virtual bytes reserved; default 64 GiB */
	size_t initial_size; /* unreserved at creation; default 0 */
	size_t min_size;     /* automatic shrink stops here; default initial_size */
	size_t max_size;     /* growth stops here; default reserve_size */
	size_t grow_unit;    /* conversion step, multiple of the page size; default 2 MiB */
	unsigned shrink_delay_ms; /* idle time before automatic shrink; default 100 */
	unsigned flags;		  /* TIDE_AUTO_GROW | ... */
	size_t memory_limit;	  /* growth keeps a headroom under it, else -ENOMEM: 0 detects the
				     memory cgroup's limit (v2 memory.max/high, v1 limit_in_bytes);
				     TIDE_NO_MEMORY_LIMIT: none; else bytes of this process's RSS.
				     Read at each grow, through /proc/self; no descriptor kept */
};

#define TIDE_NO_MEMORY_LIMIT ((size_t)-1) /* tide_pool_config.memory_limit: no check */

/**
 * tide_pool_create() - reserve a range and make a pool of it.
 * @cfg:  the configuration; NULL or zero fields mean the defaults.
 * @pool: where the new pool goes.
 *
 * Reserves reserve_size bytes of address space (no memory), maps the metadata lazily, and
 * commits initial_size. With TIDE_BACKGROUND a maintenance thread is started. When the OS
 * refuses the default reservation (reserve_size 0), it is halved until it fits, down to
 * 4 GiB and never below initial_size, min_size or an explicit max_size (valgrind refuses
 * 64 GiB, for one); stats.reserve_size says what was reserved, and a max_size left at its
 * default follows it. An explicit reserve_size is reserved as asked or refused.
 *
 * Example::
 *
 *	struct tide_pool_config cfg = { .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK };
 *	struct tide_pool *pool;
 *	int err = tide_pool_create(&cfg, &pool);
 *	if (err)
 *		return err;
 *	void *buf = tide_alloc(pool, 1500);
 *	...
 *	tide_free(pool, buf);
 *	tide_pool_destroy(pool);
 *
 * Return: 0; -EINVAL for a bad field or flag or a NULL @pool; -ENOMEM when the OS refuses
 * the reservation, the metadata or the initial commit (whatever errno the OS gave), or the
 * initial commit would pass the memory limit; -EMFILE, -ENFILE or -ENOMEM when the
 * memory limit's files (/proc/self, the cgroup's) cannot be read to tell whether a limit
 * applies (memory_limit not TIDE_NO_MEMORY_LIMIT); -EAGAIN when the thread cannot be
 * started.
 */
TIDE_API TIDE_NODISCARD int tide_pool_create(const struct tide_pool_config *cfg,
					     struct tide_pool **pool);
/**
 * tide_pool_destroy() - release the pool's whole range and metadata.
 * @pool: the pool, or NULL (nothing happens).
 *
 * Stops the maintenance thread, calls the hook (TO_RESERVED) for the unreserved portion so
 * the network side can unregister it, and unmaps everything. Buffers still live become
 * invalid; this must be the last call on the pool from any thread.
 */
TIDE_API void tide_pool_destroy(struct tide_pool *pool);

/* ------------------------------------------------------------- buffers -- */

/**
 * tide_alloc() - take a buffer from the pool.
 * @pool: the pool.
 * @size: bytes wanted; up to block_size takes one block, more a contiguous run.
 *
 * Lowest address first, from this thread's cache, refilled from the bitmap; with
 * TIDE_AUTO_GROW a pool with nothing free grows by a grow_unit (or what the run needs).
 *
 * Return: the buffer, aligned to block_size; NULL for size 0, a NULL pool, or no space
 * (counted in alloc_failures), or a call from a signal handler that interrupted a call
 * into the pool on the same thread (counted in reentries).
 */
TIDE_API TIDE_MALLOC void *tide_alloc(struct tide_pool *pool, size_t size);
/**
 * tide_free() - give a buffer back.
 * @pool: the pool it came from.
 * @buf:  the buffer, or NULL.
 *
 * Return: 0 (also for NULL); -EINVAL when @buf is not a live buffer of this pool (foreign,
 * interior, above the boundary, already freed) or @pool is NULL; -EPERM when it belongs to
 * a user (free it with tide_user_free()). A refused free changes nothing and is counted
 * in bad_frees. -EAGAIN from a signal handler that interrupted a call into the pool on the
 * same thread (counted in reentries; free the buffer later, outside the handler).
 */
TIDE_API int tide_free(struct tide_pool *pool, void *buf);
/**
 * tide_alloc_bulk() - take up to @n one-block buffers.
 * @pool: the pool.
 * @bufs: room for @n pointers.
 * @n:    how many.
 *
 * Return: how many were taken (0 for bad arguments, or inside a signal handler that
 * interrupted a call into the pool); the rest of @bufs is untouched.
 */
TIDE_API unsigned tide_alloc_bulk(struct tide_pool *pool, void **bufs, unsigned n);
/**
 * tide_free_bulk() - give @n buffers back.
 * @pool: the pool.
 * @bufs: the buffers; NULL entries are skipped.
 * @n:    how many.
 *
 * Return: 0; or the error of the first buffer refused (as tide_free(): -EINVAL, -EPERM):
 * the ones before it are freed, it and the ones after it are not. -EAGAIN (none freed)
 * from a signal handler that interrupted a call into the pool.
 */
TIDE_API int tide_free_bulk(struct tide_pool *pool, void *const *bufs, unsigned n);
/**
 * tide_buffer_size() - the usable size of a live buffer.
 * @pool: the pool.
 * @buf:  a buffer from it.
 *
 * Return: its size, a whole number of blocks; 0 when @buf is not a live buffer.
 */
TIDE_API size_t tide_buffer_size(const struct tide_pool *pool, const void *buf);
/**
 * tide_pool_flush_cache() - return this thread's cached free blocks of @pool.
 * @pool: the pool, or NULL.
 *
 * Useful before a thread goes idle for long; thread exit does it by itself. Does nothing
 * inside a signal handler that interrupted a call into the pool.
 */
TIDE_API void tide_pool_flush_cache(struct tide_pool *pool);

/* ---------------------------------------------------------- conversion -- */

/**
 * tide_pool_grow() - convert reserved space to unreserved.
 * @pool:  the pool.
 * @bytes: how much; rounded up to a multiple of grow_unit. 0 does nothing.
 *
 * Commits the range above the boundary, calls the hook (TO_UNRESERVED), then moves the
 * boundary. All or nothing: on any error the pool is exactly as before.
 *
 * Return: 0; -EINVAL for a NULL pool; -ENOSPC past max_size; -ENOMEM when the OS refuses
 * (mmap, mprotect, mlock, populate; whatever errno it gave) or the grow would pass the
 * memory limit (tide_pool_config.memory_limit, by default the cgroup's); -EDEADLK from
 * inside the pool's own hook; -EAGAIN in a signal handler that interrupted a call into the
 * pool; or the hook's negative return (-ECANCELED for a positive one).
 */
TIDE_API int tide_pool_grow(struct tide_pool *pool, size_t bytes);
/**
 * tide_pool_shrink() - convert the free top of the unreserved portion back to reserved.
 * @pool:  the pool.
 * @bytes: at most this much; rounded up to a multiple of grow_unit.
 *
 * Takes back the blocks parked in every thread's cache, finds the highest live block, and
 * converts whole grow_units above it: the hook (TO_RESERVED) runs first, then the pages go
 * back to the OS. An explicit shrink may go below min_size (that floor is for automatic
 * shrink only). A live buffer is never taken.
 *
 * Return: bytes converted (0 when there is nothing unreserved or @bytes is 0); -EINVAL for
 * a NULL pool; -EBUSY when the top grow_unit holds a live buffer; -EDEADLK from inside the
 * pool's own hook; -EAGAIN in a signal handler that interrupted a call into the pool; the
 * OS's refusal (-ENOMEM), or the hook's veto, with the pool as before.
 */
TIDE_API ssize_t tide_pool_shrink(struct tide_pool *pool, size_t bytes);
/**
 * tide_pool_maintain() - run the automatic shrink and purge that are due.
 * @pool: the pool.
 *
 * For event loops: call it when the returned time has passed (a timer), and after bursts
 * and frees. One call made after the pool has given nothing back to its bitmap for
 * shrink_delay_ms (however long the caller slept) does all that is due: it gives back
 * everything above what is claimed now, takes back the blocks of thread caches idle that
 * long, and purges the free pages below a top that a live buffer holds - the way for a fork
 * child whose TIDE_BACKGROUND thread could not be started again (see fork() above). Does
 * nothing without TIDE_AUTO_SHRINK. Returns at once (asking to be called again soon) when
 * another thread is converting.
 *
 * Return: milliseconds until the next work is due; -1 when nothing is: the pool is at its
 * floor or its top is held by a live buffer, the pages below are purged, and no thread
 * cache holds blocks - nothing can go back until buffers are freed (a tide_free() that a
 * thread cache keeps does not make work due by itself: call again after frees). -EINVAL for
 * a NULL pool; -EAGAIN in a signal handler that interrupted a call into the pool. A
 * TIDE_BACKGROUND thread sleeps while nothing is due, until an allocation or free past the
 * thread caches, or a grow, wakes it (and, while one-block buffers are live, looks again
 * every max(1 s, 4 * shrink_delay_ms)).
 */
TIDE_API int tide_pool_maintain(struct tide_pool *pool);

enum tide_convert {
	TIDE_TO_UNRESERVED,
	TIDE_TO_RESERVED
};
/*
 * A conversion hook: called with the pool's conversion lock held; must not grow or shrink
 * the same pool, nor wait for a lock a forking thread may hold (fork() waits for the hook). Returns
 * 0 to accept, anything else to veto (see tide_pool_set_convert_hook()).
 */
typedef int (*tide_convert_fn)(struct tide_pool *pool, enum tide_convert dir, void *addr,
			       size_t len, void *arg);
/**
 * tide_pool_set_convert_hook() - install the driver's hand on conversions.
 * @pool: the pool.
 * @fn:   called as fn(pool, dir, addr, len, arg); NULL removes the hook.
 * @arg:  passed through.
 *
 * @fn sees TIDE_TO_UNRESERVED after a range is committed and before any of its buffers is
 * handed out, and TIDE_TO_RESERVED before a range's pages go back. A nonzero return vetoes
 * that conversion. So that a driver sees every range exactly once, a new hook is called at
 * once with TO_UNRESERVED for the range already unreserved (its veto refuses the install),
 * and a hook being replaced or removed is called with TO_RESERVED for it; the pool's
 * destroy calls it too. The hook runs with the conversion lock held: it must not grow or
 * shrink the same pool (those return -EDEADLK), but may allocate and free. One call cannot
 * be refused: when the OS fails to take back a range the hook already released, the hook
 * is called again with TO_UNRESERVED to register it anew, and its return is ignored (the
 * range stays in the pool, which stays consistent; a driver that cannot re-register
 * should fall back to copying). fork() in another thread waits for a hook that is
 * running (its atfork handler takes every pool's conversion lock), so a hook must not wait
 * for a lock that a thread may hold while it calls fork() (the application's lock held
 * around fork): both would wait for ever. A hook may end its thread (pthread_exit(), a
 * cancellation it enabled): the conversion counts as a veto and no pool lock stays held.
 *
 * Return: 0; -EINVAL for a NULL pool; -EDEADLK from inside a hook; -EAGAIN in a signal
 * handler that interrupted a call into the pool; or the new hook's veto.
 */
TIDE_API int tide_pool_set_convert_hook(struct tide_pool *pool, tide_convert_fn fn, void *arg);

/* --------------------------------------------------------------- state -- */

/**
 * tide_pool_base() - the start of the pool's range.
 * @pool: the pool.
 *
 * Return: the lowest address of the reservation, fixed for the pool's life (NULL for a NULL
 * pool). The whole range is [base, base + reserve_size).
 */
TIDE_API void *tide_pool_base(const struct tide_pool *pool);
/**
 * tide_pool_boundary() - the end of the unreserved portion.
 * @pool: the pool.
 *
 * Return: the boundary now: [base, boundary) is unreserved (mapped), [boundary, base +
 * reserve_size) reserved. It moves with every grow and shrink; NULL for a NULL pool.
 */
TIDE_API void *tide_pool_boundary(const struct tide_pool *pool);

struct tide_stats {
	size_t reserve_size;	 /* virtual bytes reserved */
	size_t unreserved_size;	 /* boundary - base */
	size_t resident_size;	 /* unreserved minus purged pages */
	size_t live_bytes;	 /* bytes in buffers handed out (whole blocks) */
	size_t live_buffers;	 /* buffers handed out */
	size_t peak_live_bytes;	 /* highest live_bytes seen (sampled at slow-path events) */
	size_t cached_bytes;	 /* free blocks parked in thread caches */
	size_t metadata_size;	 /* bytes of bitmap and block tags backing the unreserved part */
	size_t block_size;	 /* as configured */
	size_t grow_unit;	 /* as configured */
	size_t min_size;	 /* as configured */
	size_t max_size;	 /* as configured */
	uint64_t grows;		 /* conversions to unreserved */
	uint64_t shrinks;	 /* conversions to reserved */
	uint64_t purges;	 /* purge passes that gave pages back */
	uint64_t purged_bytes;	 /* bytes given back by purge, in all */
	uint64_t alloc_failures; /* allocations that found no space (or quota): NULL */
	uint64_t bad_frees;	 /* frees refused with -EINVAL or -EPERM */
	uint64_t vetoes;	 /* conversions refused by the hook */
	uint64_t os_failures;	 /* conversions refused by the OS */
	uint64_t reentries; /* calls refused: a signal handler interrupted a call, same thread */
	unsigned users;	    /* user handles alive */
	uint64_t maintenance_runs; /* maintenance steps run (thread or tide_pool_maintain()) */
};

/**
 * tide_pool_stats() - a snapshot of the pool's sizes and counters.
 * @pool: the pool.
 * @st:   filled in; zeroed for a NULL pool.
 *
 * Sizes are exact at the moment the pool lock is held; counters are read without stopping
 * other threads. peak_live_bytes is exact for a pool used by one thread; with several it
 * may overstate the truth by at most a thread cache (512 blocks) per thread. Inside a
 * signal handler that interrupted a call into the pool, only the configuration and the
 * counters are filled in (the sizes need the lock the interrupted call may hold).
 */
TIDE_API void tide_pool_stats(const struct tide_pool *pool, struct tide_stats *st);

/* --------------------------------------------------------------- users -- */

enum {
	TIDE_USER_MAY_GROW = 1u << 0 /* this user's allocations may convert reserved space */
};

struct tide_user_config {
	const char *name; /* copied; up to 31 bytes are kept */
	size_t quota;	  /* bytes this user may hold at once; 0 means no limit */
	unsigned flags;	  /* TIDE_USER_MAY_GROW */
};

/**
 * tide_user_create() - make a class of memory user of @pool.
 * @pool: the pool.
 * @cfg:  name (copied, up to 31 bytes kept; NULL for none), quota in bytes (0: no limit),
 *        flags (TIDE_USER_MAY_GROW: this user's allocations may grow a TIDE_AUTO_GROW pool).
 * @user: where the handle goes.
 *
 * Return: 0; -EINVAL for a NULL argument or an unknown flag; -ENOMEM; -ENOSPC when the
 * pool already has the most users it can tag (32765).
 */
TIDE_API TIDE_NODISCARD int tide_user_create(struct tide_pool *pool,
					     const struct tide_user_config *cfg,
					     struct tide_user **user);
/**
 * tide_user_destroy() - remove a user.
 * @user: the user.
 *
 * Return: 0; -EINVAL for NULL; -EBUSY while it holds buffers (nothing changes); -EAGAIN
 * from a signal handler that interrupted a call into the pool.
 */
TIDE_API int tide_user_destroy(struct tide_user *user);
/**
 * tide_user_alloc() - a buffer charged to @user.
 * @user: the user.
 * @size: bytes wanted, as tide_alloc().
 *
 * The pool grows only if the pool has TIDE_AUTO_GROW and the user TIDE_USER_MAY_GROW;
 * otherwise only what is already unreserved is taken.
 *
 * Return: the buffer; NULL for size 0, a NULL user, no space, or the quota reached
 * (counted in the user's and the pool's alloc_failures), or inside a signal handler that
 * interrupted a call into the pool (counted in the pool's reentries).
 */
TIDE_API TIDE_MALLOC void *tide_user_alloc(struct tide_user *user, size_t size);
/**
 * tide_user_free() - give back one of @user's buffers.
 * @user: the user.
 * @buf:  the buffer, or NULL.
 *
 * Return: 0; -EINVAL when @buf is not a live buffer of the pool; -EPERM when another user
 * (or the pool's default user) holds it: the buffer is untouched; -EAGAIN inside a signal
 * handler that interrupted a call into the pool.
 */
TIDE_API int tide_user_free(struct tide_user *user, void *buf);
/**
 * tide_user_alloc_bulk() - up to @n one-block buffers charged to @user.
 * @user: the user.
 * @bufs: room for @n pointers.
 * @n:    how many.
 *
 * Return: how many were taken, fewer when the quota or the space runs out (0 inside a
 * signal handler that interrupted a call into the pool).
 */
TIDE_API unsigned tide_user_alloc_bulk(struct tide_user *user, void **bufs, unsigned n);
/**
 * tide_user_free_bulk() - give back @n of @user's buffers.
 * @user: the user.
 * @bufs: the buffers; NULL entries are skipped.
 * @n:    how many.
 *
 * Return: 0, or the first refusal (as tide_user_free(): -EINVAL, -EPERM); the ones before
 * it are freed. -EAGAIN (none freed) from a signal handler that interrupted a call into
 * the pool.
 */
TIDE_API int tide_user_free_bulk(struct tide_user *user, void *const *bufs, unsigned n);

struct tide_user_stats {
	char name[32];
	size_t quota;		 /* 0: no limit */
	size_t live_bytes;	 /* bytes held now */
	size_t live_buffers;	 /* buffers held now */
	size_t peak_live_bytes;	 /* most bytes held at once */
	uint64_t alloc_failures; /* allocations refused (space or quota) */
	uint64_t quota_failures; /* of which refused by the quota */
	uint64_t bad_frees;	 /* frees refused */
};

/**
 * tide_user_stats() - @user's counters.
 * @user: the user.
 * @st:   filled in; zeroed for a NULL user.
 */
TIDE_API void tide_user_stats(const struct tide_user *user, struct tide_user_stats *st);
/**
 * tide_user_pool() - the pool a user belongs to.
 * @user: the user.
 *
 * Return: the pool given to tide_user_create(); NULL for a NULL user.
 */
TIDE_API struct tide_pool *tide_user_pool(const struct tide_user *user);

/* ------------------------------------------------------------- version -- */

/**
 * tide_version() - the version of the library this program runs with.
 *
 * TIDE_VERSION_STRING is the version of the header a program was compiled with; the
 * library may be a later release with the same soname.
 *
 * Return: "MAJOR.MINOR.PATCH", a static string.
 */
TIDE_API const char *tide_version(void);

#ifdef __cplusplus
}
#endif

#endif /* TIDE_H */
