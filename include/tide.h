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
 */
#ifndef TIDE_H
#define TIDE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TIDE_VERSION_MAJOR  0
#define TIDE_VERSION_MINOR  1
#define TIDE_VERSION_PATCH  0
#define TIDE_VERSION_STRING "0.1.0"

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
	TIDE_BACKGROUND = 1u << 5,  /* a pool-owned thread runs maintenance */
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
};

/* Create a pool: reserve the range, commit initial_size. 0, -EINVAL or -ENOMEM. */
TIDE_API TIDE_NODISCARD int tide_pool_create(const struct tide_pool_config *cfg,
					     struct tide_pool **pool);
/* Destroy a pool and release its whole range. Live buffers become invalid. */
TIDE_API void tide_pool_destroy(struct tide_pool *pool);

/* ------------------------------------------------------------- buffers -- */

/* One buffer of at least size bytes (a run of blocks), or NULL: no space, or size 0. */
TIDE_API TIDE_MALLOC void *tide_alloc(struct tide_pool *pool, size_t size);
/* Free a buffer from tide_alloc. 0; -EINVAL not a live buffer; -EPERM a user's buffer. */
TIDE_API int tide_free(struct tide_pool *pool, void *buf);
/* Up to n one-block buffers into bufs; returns how many it got. */
TIDE_API unsigned tide_alloc_bulk(struct tide_pool *pool, void **bufs, unsigned n);
/* Free n buffers; stops at the first bad one and returns its error (earlier ones are freed). */
TIDE_API int tide_free_bulk(struct tide_pool *pool, void *const *bufs, unsigned n);
/* Bytes usable in a live buffer (a whole number of blocks), or 0 if buf is not one. */
TIDE_API size_t tide_buffer_size(const struct tide_pool *pool, const void *buf);
/* Return this thread's cached free blocks of pool to the bitmap. */
TIDE_API void tide_pool_flush_cache(struct tide_pool *pool);

/* ---------------------------------------------------------- conversion -- */

/* Move the boundary up by bytes (rounded up to grow_unit). 0, -EINVAL, -ENOSPC, -ENOMEM,
 * or the hook's veto. */
TIDE_API int tide_pool_grow(struct tide_pool *pool, size_t bytes);
/* Give back up to bytes (rounded up to grow_unit) of free top. Bytes converted, -EBUSY when
 * the top is not free, -ENOMEM, or the hook's veto. */
TIDE_API ssize_t tide_pool_shrink(struct tide_pool *pool, size_t bytes);
/* Run due automatic shrink and purge. Returns ms until the next due work, -1 for none. */
TIDE_API int tide_pool_maintain(struct tide_pool *pool);

enum tide_convert {
	TIDE_TO_UNRESERVED,
	TIDE_TO_RESERVED
};
/* Called with the pool's conversion lock held; must not grow or shrink the same pool. */
typedef int (*tide_convert_fn)(struct tide_pool *pool, enum tide_convert dir, void *addr,
			       size_t len, void *arg);
/* Install (or with fn NULL remove) the conversion hook. 0 or -EINVAL. */
TIDE_API int tide_pool_set_convert_hook(struct tide_pool *pool, tide_convert_fn fn, void *arg);

/* --------------------------------------------------------------- state -- */

TIDE_API void *tide_pool_base(const struct tide_pool *pool);	 /* start of the range */
TIDE_API void *tide_pool_boundary(const struct tide_pool *pool); /* end of the unreserved part */

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
	uint64_t alloc_failures; /* allocations that returned NULL */
	uint64_t bad_frees;	 /* frees refused with -EINVAL or -EPERM */
	uint64_t vetoes;	 /* conversions refused by the hook */
	uint64_t os_failures;	 /* conversions refused by the OS */
	unsigned users;		 /* user handles alive */
};

/* Fill st with a consistent-enough snapshot (counters are read without stopping threads). */
TIDE_API void tide_pool_stats(const struct tide_pool *pool, struct tide_stats *st);

/* --------------------------------------------------------------- users -- */

enum {
	TIDE_USER_MAY_GROW = 1u << 0, /* this user's allocations may convert reserved space */
};

struct tide_user_config {
	const char *name; /* copied; up to 31 bytes are kept */
	size_t quota;	  /* bytes this user may hold at once; 0 means no limit */
	unsigned flags;	  /* TIDE_USER_MAY_GROW */
};

/* Create a user of pool. 0, -EINVAL, -ENOMEM, or -ENOSPC (too many users). */
TIDE_API TIDE_NODISCARD int tide_user_create(struct tide_pool *pool,
					     const struct tide_user_config *cfg,
					     struct tide_user **user);
/* Destroy a user. 0, -EINVAL, or -EBUSY while it holds buffers. */
TIDE_API int tide_user_destroy(struct tide_user *user);
/* A buffer charged to user, or NULL (no space, quota reached, or size 0). */
TIDE_API TIDE_MALLOC void *tide_user_alloc(struct tide_user *user, size_t size);
/* Free one of user's buffers. 0; -EINVAL not a live buffer; -EPERM another user's buffer. */
TIDE_API int tide_user_free(struct tide_user *user, void *buf);
/* Up to n one-block buffers charged to user; returns how many it got. */
TIDE_API unsigned tide_user_alloc_bulk(struct tide_user *user, void **bufs, unsigned n);
/* Free n of user's buffers; stops at the first bad one and returns its error. */
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

/* Fill st with user's counters. */
TIDE_API void tide_user_stats(const struct tide_user *user, struct tide_user_stats *st);
/* The pool user belongs to. */
TIDE_API struct tide_pool *tide_user_pool(const struct tide_user *user);

#ifdef __cplusplus
}
#endif

#endif /* TIDE_H */
