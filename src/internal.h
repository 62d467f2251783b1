/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the library's files share, grouped by the file that defines it.
 *
 * Tests link the static library and may call anything declared here with a tide_
 * prefix (the OS fault switch, the invariant checker); nothing here is exported
 * from the shared library.
 */
#ifndef TIDE_INTERNAL_H
#define TIDE_INTERNAL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "tide.h"

/*
 * 64-bit only: the reservation is tens of GiB of address space, block indexes and byte
 * offsets share size_t, and the fast path's counters assume a 64-bit word.
 */
_Static_assert(sizeof(void *) == 8 && sizeof(size_t) == 8,
	       "tide needs a 64-bit target (the reservation alone is 64 GiB of address space)");

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#ifndef NDEBUG
#define tide_assert(cond)                                                                          \
	do {                                                                                       \
		if (unlikely(!(cond)))                                                             \
			tide_assert_fail(#cond, __FILE__, __LINE__);                               \
	} while (0)
#else
#define tide_assert(cond) ((void)0)
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

static inline size_t align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static inline size_t align_down(size_t x, size_t a)
{
	return x & ~(a - 1);
}

/* A hint to the CPU inside a spin-wait loop (x86 pause, arm64 yield). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Multiples of any unit (grow_unit need not be a power of two); round_up may wrap past 0. */
static inline size_t round_up(size_t x, size_t unit)
{
	return (x + unit - 1) / unit * unit;
}

static inline size_t round_down(size_t x, size_t unit)
{
	return x / unit * unit;
}

static inline bool is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

// os.c ----------------------------------------------------------------------------------

/*
 * Every system call the pool makes goes through these, and each counts as one OS call
 * for the fault switch below. All return 0 or a negative errno.
 */
size_t os_page_size(void);
int os_reserve(size_t size, size_t align, void **addr); /* PROT_NONE, MAP_NORESERVE */
int os_release(void *addr, size_t size);  /* counted, never fails on purpose: see os.c */
int os_commit(void *addr, size_t size);	  /* PROT_NONE -> read/write */
int os_decommit(void *addr, size_t size); /* pages and commit charge back, PROT_NONE */
int os_purge(void *addr, size_t size);	  /* give pages back, stay read/write */
/* Read-only zero pages, MAP_NORESERVE: not charged; os_commit() makes parts writable. */
int os_map_metadata(size_t size, void **addr);
int os_meta_decommit(void *addr, size_t size); /* back to read-only zero pages, uncharged */
int os_protect(void *addr, size_t size);       /* PROT_NONE, pages and charge kept */
int os_hugepage(void *addr, size_t size);      /* MADV_HUGEPAGE */
int os_nohugepage(void *addr, size_t size);    /* MADV_NOHUGEPAGE */
size_t os_thp_size(void); /* the transparent huge page size, 0 without THP; not counted */
int os_populate(void *addr, size_t size); /* MADV_POPULATE_WRITE, or touch */
int os_lock(void *addr, size_t size);
int os_unlock(void *addr, size_t size);
int os_membarrier_register(void); /* 0 when MEMBARRIER_CMD_PRIVATE_EXPEDITED works */
void os_membarrier(void);	  /* an asymmetric full fence on every thread; not a fault point */
uint64_t os_now_ns(void);	  /* CLOCK_MONOTONIC; not a fault point */

/*
 * Fault injection for tests: the nth OS call from now (1 = the next) fails with -err;
 * with persistent set, every call from then on fails too. nth 0 switches it off.
 */
void tide_os_fault_set(unsigned long nth, int err, bool persistent);
unsigned long tide_os_calls(void); /* OS calls made since the process started */

// bitmap.c ------------------------------------------------------------------------------

/*
 * One bit per block, set = claimed. A summary level keeps one bit per map word for
 * "word is full" and one for "word is not empty", so searches skip whole words 64 at a
 * time; hint is the lowest word that may have a clear bit. The memory is provided by the
 * caller, zeroed, and may be lazily backed: only words below the search limit are touched.
 */
struct bitmap {
	uint64_t *words;
	uint64_t *full;	    /* bit w: words[w] == ~0 */
	uint64_t *nonempty; /* bit w: words[w] != 0 */
	size_t nbits;
	size_t nwords;
	size_t hint; /* every word below hint is full */
	size_t count;
};

size_t bitmap_bytes(size_t nbits); /* memory bitmap_init needs, a multiple of 64 bytes */
void bitmap_init(struct bitmap *map, void *mem, size_t nbits);
/* Clear every bit below used (nothing may be set above it): the map is empty again. */
void bitmap_reset(struct bitmap *map, size_t used);
/* Claim up to n single bits below limit, lowest first; their indexes go to out. */
size_t bitmap_claim_bits(struct bitmap *map, size_t limit, size_t *out, size_t n);
/* Claim the lowest run of n clear bits below limit; false if there is none. */
bool bitmap_claim_run(struct bitmap *map, size_t limit, size_t n, size_t *start);
void bitmap_set_range(struct bitmap *map, size_t start, size_t n);   /* all must be clear */
void bitmap_clear_range(struct bitmap *map, size_t start, size_t n); /* all must be set */
/* Clear each listed bit (all must be set); neighbours in one word are done at once. */
void bitmap_clear_list(struct bitmap *map, const size_t *bits, size_t n);
static inline bool bitmap_test(const struct bitmap *map, size_t bit)
{
	return map->words[bit / 64] >> (bit % 64) & 1;
}

/* One past the highest set bit below limit, or 0 when none is. */
size_t bitmap_top(const struct bitmap *map, size_t limit);
size_t bitmap_count_range(const struct bitmap *map, size_t start, size_t end);
/* The summaries, hint and count agree with the words below limit; nothing is set above. */
bool bitmap_check(const struct bitmap *map, size_t limit);

// cache.c -------------------------------------------------------------------------------

#define TCACHE_CAP   512 /* most blocks a thread keeps; a refill or a flush leaves half */
#define TCACHE_BYTES ((size_t)1 << 20) /* most bytes a thread keeps: cap = this / block */
#define TCACHE_SLOTS 8 /* pools a thread keeps a cache for at once; more go uncached */
#define TCACHE_SHARE 4 /* a cache holds at most 1/4 of the unreserved portion */

/*
 * The re-entry guard: a thread-local byte, CALL_IN while the thread is inside a public call
 * that takes a lock or works on its caches outside the fast path (a slow path). The fast
 * paths only read it; while they work on a cache they mark the cache itself (its busy
 * half, below), so that one store both ends the operation and publishes the new count. A
 * signal handler that calls into the pool while the code it interrupted was inside a slow
 * path (the byte), or inside an operation on the cache the handler would use (busy), is
 * refused (NULL or -EAGAIN, counted in reentries) instead of handing out a block twice;
 * a slow path is refused while any of the thread's caches is busy (cache_window_open()),
 * since it may touch that cache or wait on it. call_enter()/call_guard_set(CALL_IN)/
 * call_leave() mark a thread as inside a call for any other window that must not be
 * re-entered (fork).
 */
#define CALL_IN 1
struct tcache;
/* One thread-local object, so the fast paths find both with one address. */
struct tide_thread {
	struct tcache *last;	       /* tcache_last: the cache used last (see cache_get) */
	_Atomic unsigned char in_call; /* tide_in_call */
};
extern _Thread_local struct tide_thread tide_thread __attribute__((tls_model("initial-exec")));
#define tide_in_call (tide_thread.in_call)
#define tcache_last  (tide_thread.last)

static inline void call_guard_set(unsigned char v)
{
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&tide_in_call, v, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void call_leave(void)
{
	call_guard_set(0);
}

/*
 * A thread's stack of free, claimed blocks of one pool.
 *
 * The count of blocks held and the owner's window mark share one aligned 8-byte word:
 * the owner opens an operation by setting busy (a 4-byte store, made without reading the
 * word first, so a signal handler that ran before it finished its own operation and one
 * that runs after it finds busy set), and ends it with one 8-byte store of the new count
 * with busy clear (cache_leave). Only the owner pushes and pops, inside its window. Another
 * thread takes the blocks back (a steal) holding the pool lock: it raises steal to
 * STEAL_WANTED, runs an asymmetric fence (membarrier), waits until busy is clear, empties
 * the stack, and leaves STEAL_DONE for the owner, whose next operation sees it, backs off,
 * and settles under the lock. See cache.c for why this is safe. The two halves are read
 * and written as parts of the word (a union): every target tide builds for (x86-64,
 * arm64) keeps accesses of different sizes to one aligned word coherent, and the one
 * access that synchronises (the close, and the stealer's acquire) is to the whole word.
 *
 * The thread's live count is derived, not counted: live = live_base + count_base - count,
 * rebased under the lock whenever count moves for another reason than an alloc or a free.
 * low is the lowest count since the last rebase, so count - low is how far this thread's
 * live count rose above where it is now: the pool's peak is exact for one thread.
 */
enum {
	STEAL_NONE,
	STEAL_WANTED,
	STEAL_DONE
};

union cache_word {
	_Atomic uint64_t all;
	struct {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		_Atomic uint32_t count; /* blocks held */
		_Atomic uint32_t busy;	/* the owner is inside an operation on the stack */
#else
		_Atomic uint32_t busy;
		_Atomic uint32_t count;
#endif
	} half;
};

struct tcache {
	union cache_word word;
	_Atomic unsigned low;
	_Atomic int steal;
	unsigned cap;	/* see cap_for(): the owner's, under pool->lock */
	long live_base; /* under pool->lock */
	unsigned count_base;
	struct tide_pool *_Atomic pool; /* NULL once the pool is destroyed */
	long seen_live;			/* maintenance's last look, under pool->lock */
	unsigned seen_count;
	uint32_t seen_epoch;
	struct tcache *next, *prev; /* the pool's list, under pool->lock */
	void *slots[TCACHE_CAP];
};

/* The count, as the owner left it (or the stealer, under the lock). */
static inline unsigned cache_count(const struct tcache *c)
{
	return atomic_load_explicit(&((struct tcache *)c)->word.half.count, memory_order_relaxed);
}

/* Set the count outside a window: the owner under the lock, or a stealer that waited. */
static inline void cache_set_count(struct tcache *c, unsigned n)
{
	atomic_store_explicit(&c->word.half.count, n, memory_order_relaxed);
}

/* The whole word with n blocks held and busy clear, and the busy half of a whole word. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define CACHE_WORD(n)	((uint64_t)(n))
#define CACHE_BUSY_BITS (~(uint64_t)0 << 32)
#else
#define CACHE_WORD(n)	((uint64_t)(n) << 32)
#define CACHE_BUSY_BITS ((uint64_t)UINT32_MAX)
#endif

/* A stealer's look: the owner is inside an operation on c (acquire: its stores are seen). */
static inline bool cache_busy(const struct tcache *c)
{
	return atomic_load_explicit(&((struct tcache *)c)->word.all, memory_order_acquire) &
	       CACHE_BUSY_BITS;
}

/* The owner's own look (relaxed): is a window of this thread open on c? */
static inline bool cache_busy_here(const struct tcache *c)
{
	return atomic_load_explicit(&((struct tcache *)c)->word.half.busy, memory_order_relaxed);
}

struct tcache *cache_lookup(struct tide_pool *pool); /* find or create; NULL: none to be had */
/* A window of this thread is open on one of its caches (a signal handler interrupted it). */
bool cache_window_open(void);
/* Slow paths, pool->lock taken inside: refill and pop one; push one and flush half. */
void *cache_refill_pop(struct tide_pool *pool, struct tcache *c, bool may_grow);
void cache_push_flush(struct tide_pool *pool, struct tcache *c, void *block);
/* Under pool->lock, by the owner: settle a finished steal; then the cache is its own. */
void cache_settle_locked(struct tcache *c);
/* Under pool->lock, by the owner: n more live blocks that did not pass through the stack. */
void cache_add_live_locked(struct tcache *c, long n);
void cache_flush_all_locked(struct tide_pool *pool); /* steal every cache; pool->lock held */
/*
 * The bitmap is empty: take back the blocks of every cache, before growing and before
 * failing. True when any were taken; pool->lock held.
 */
bool cache_reclaim_locked(struct tide_pool *pool);
/* fork child, pool->lock held: drop the caches of threads that do not exist here, give
 * back what they and this thread's own caches held. */
void cache_fork_child_locked(struct tide_pool *pool);
void cache_fork_prepare(void); /* the registry lock, taken before any pool's lock */
void cache_fork_parent(void);  /* and in the child */
/* Steal the caches untouched for idle_epochs maintenance samples; pool->lock held. */
void cache_flush_idle_locked(struct tide_pool *pool, unsigned idle_epochs);
/* Whether any thread's cache holds blocks (maintenance will take it back once idle). */
bool cache_any_held_locked(struct tide_pool *pool);
void cache_flush_own(struct tide_pool *pool);	      /* this thread's cache of pool */
void cache_detach_pool(struct tide_pool *pool);	      /* at destroy */
size_t cache_count_locked(struct tide_pool *pool);    /* blocks parked in caches */
long cache_excursions_locked(struct tide_pool *pool); /* sum of count - low */
void cache_sync_peak_locked(struct tide_pool *pool, struct tcache *c);
bool cache_init_fence(void); /* true when the asymmetric fence (membarrier) is available */

/*
 * The re-entry guard of a slow path: this thread is inside a slow path, or a signal
 * handler interrupted one of its windows. The fast paths read only the byte and their own
 * cache's busy half.
 */
static inline bool call_guard_held(void)
{
	return atomic_load_explicit(&tide_in_call, memory_order_relaxed) != 0 ||
	       cache_window_open();
}

static inline struct tcache *cache_get(struct tide_pool *pool)
{
	struct tcache *c = tcache_last;

	if (likely(c && atomic_load_explicit(&c->pool, memory_order_relaxed) == pool))
		return c;
	return cache_lookup(pool);
}

/*
 * Open the owner's window: the number of blocks held, or UINT_MAX when a steal is under
 * way or done (the window is closed again; take the slow path, which waits on the pool
 * lock and settles). The caller has made sure no window of its thread is open on c (the
 * fast paths look at busy first; a slow path is refused while one is open).
 */
static inline unsigned cache_enter(struct tcache *c, bool membarrier)
{
	atomic_store_explicit(&c->word.half.busy, 1, memory_order_relaxed);
	if (likely(membarrier))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
	if (likely(!atomic_load_explicit(&c->steal, memory_order_acquire)))
		return cache_count(c);
	atomic_store_explicit(&c->word.half.busy, 0, memory_order_release); /* cache_close */
	return UINT_MAX;
}

/* Close the window, the count unchanged. */
static inline void cache_close(struct tcache *c)
{
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&c->word.half.busy, 0, memory_order_release);
}

/* Close the window with n blocks held: one store, the count and busy clear. */
static inline void cache_leave(struct tcache *c, unsigned n)
{
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&c->word.all, CACHE_WORD(n), memory_order_release);
}

static inline void cache_note_low(struct tcache *c, unsigned n)
{
	if (n < atomic_load_explicit(&c->low, memory_order_relaxed))
		atomic_store_explicit(&c->low, n, memory_order_relaxed);
}

/* Pop a block, or NULL when the cache is empty or being stolen. */
static inline void *cache_pop(struct tcache *c, bool membarrier)
{
	unsigned n = cache_enter(c, membarrier);
	void *block;

	if (unlikely(n - 1 >= TCACHE_CAP)) { /* 0, or UINT_MAX */
		if (n == 0)
			cache_close(c);
		return NULL;
	}
	block = c->slots[n - 1];
	cache_note_low(c, n - 1);
	cache_leave(c, n - 1);
	return block;
}

/* Push a block; false when the cache is full or being stolen. */
static inline bool cache_push(struct tcache *c, bool membarrier, void *block)
{
	unsigned n = cache_enter(c, membarrier);

	if (unlikely(n >= c->cap)) {
		if (n != UINT_MAX)
			cache_close(c);
		return false;
	}
	c->slots[n] = block;
	cache_leave(c, n + 1);
	return true;
}

// buffer.c ------------------------------------------------------------------------------

/* The re-entry guard: tide_in_call, see cache.c's section above. */

/*
 * Cancellation off across a slow path that holds a lock and reaches a cancellation point
 * (pread of a usage file, open/read of /proc, nanosleep in a wait, the conversion hook): a
 * thread cancelled there would leave the lock held for ever. Returns the caller's state,
 * which cancel_restore() puts back; a pending cancel acts at the caller's next point.
 */
static inline int cancel_off(void)
{
	int old = PTHREAD_CANCEL_ENABLE;

	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	return old;
}

static inline void cancel_restore(int old)
{
	int ignored;

	pthread_setcancelstate(old, &ignored);
}

// pool.c --------------------------------------------------------------------------------

/*
 * The tag of a block says who holds it. A multi-block buffer is head (owner | TAG_MULTI),
 * interior blocks, and a tail, so its length is found without reading a neighbour's tag.
 */
#define TAG_FREE      0	     /* block not handed out (free, or parked in a cache) */
#define TAG_INTERIOR  0xffff /* a block between the first and the last of a buffer */
#define TAG_TAIL      0xfffe /* the last block of a multi-block buffer */
#define TAG_MULTI     0x8000 /* on the first block: the buffer spans more blocks */
#define TAG_OWNER_MAX 0x7ffd

static inline bool tag_is_head(uint16_t tag)
{
	return tag != TAG_FREE && tag != TAG_INTERIOR && tag != TAG_TAIL;
}

struct tide_user {
	struct tide_pool *pool;
	uint16_t id; /* the tag stamped on this user's blocks */
	unsigned flags;
	size_t quota;
	_Atomic size_t live_bytes;
	_Atomic size_t live_buffers;
	_Atomic size_t peak_live_bytes;
	_Atomic uint64_t alloc_failures;
	_Atomic uint64_t quota_failures;
	_Atomic uint64_t bad_frees;
	bool counted; /* false for the pool's default user: the pool's stats are its stats */
	char name[32];
};

#define DEMAND_SAMPLES 64

/*
 * The memory limit the pool grows under (limits.c). Nothing is kept open: every grow reads
 * the limit and the usage again, through /proc/self (the process and cgroup at that time).
 */
struct mem_limits {
	size_t rss_limit; /* memory_limit given: a limit on this process's resident memory */
	bool off;	  /* TIDE_NO_MEMORY_LIMIT */
	char *mnt[2];	  /* the v1 memory and v2 mount points, or NULL (malloc'd) */
	char *root[2];	  /* the root each shows (a cgroup namespace shows a subtree) */
	bool known;	  /* a limit applied at the last read */
	size_t room;	  /* what could still grow under every limit at the last read */
};

struct tide_pool {
	/* Read on every alloc and free. */
	char *base;
	uint16_t *tags;		   /* one per block over the whole reservation */
	_Atomic size_t unreserved; /* boundary - base */
	unsigned block_shift;
	unsigned flags;
	bool fence_is_membarrier; /* else the fast path pays a full fence */
	bool poison;		  /* free blocks are poisoned for ASan/valgrind (poison.h) */
	struct tide_user default_user;

	/* Fixed at create. */
	size_t block_size;
	size_t reserve_size;
	size_t nblocks;
	size_t grow_unit;
	size_t min_size;
	size_t max_size;
	size_t initial_size; /* committed at create, and again by a reset */
	size_t page_size;
	size_t purge_chunk;  /* bytes: the unit purge gives back (a page, or a huge page) */
	size_t purge_region; /* bytes: the unit whose idle time is tracked (>= purge_chunk) */
	unsigned shrink_delay_ms;
	void *meta; /* bitmap + tags + purge state, one lazily committed mapping (meta.c) */
	size_t meta_size;
	size_t meta_offset[4]; /* words, tags, purged bits, region epochs */
	size_t meta_top[4];    /* bytes of each committed from its start (convert_lock) */

	/* Under lock: the bitmap and what moves with it. */
	pthread_mutex_t lock;
	struct bitmap map;
	size_t limit; /* blocks below this may be claimed (the boundary, or less mid-shrink) */
	size_t multi_buffers;	  /* live buffers of more than one block */
	size_t multi_blocks;	  /* blocks in them */
	size_t peak_live_blocks;  /* see cache_sync_peak_locked */
	size_t demand_tick;	  /* highest map.count since the last maintenance sample */
	uint64_t release_ns;	  /* os_now_ns() of the last give-back to the bitmap; 0: none */
	struct tcache *caches;	  /* every thread's cache of this pool */
	struct tide_user **users; /* by id; users[id] NULL when free */
	unsigned nusers;
	unsigned users_cap;

	/* Purge state, under lock: a page is purged when given back below the boundary. */
	uint64_t *purged;	/* one bit per purge chunk */
	uint32_t *region_epoch; /* per purge region: the maintenance epoch of its last claim */
	size_t purged_chunks;
	size_t purging_blocks;	/* claimed only while purge gives their pages back */
	size_t purge_cursor;	/* the region where the next purge pass starts */
	uint32_t epoch;		/* sample periods counted by maintenance */
	uint32_t stamp_epoch;	/* the epoch of the newest region stamp */
	uint32_t sweep_epoch;	/* the epoch when the purge sweep in progress began */
	bool purge_pending;	/* a stamp no complete sweep begun a delay after it has seen */
	size_t unreserved_high; /* the most the pool was ever grown to */

	/* Under convert_lock: conversions, the hook and the memory limit. */
	struct mem_limits limits;
	pthread_mutex_t convert_lock;
	tide_convert_fn hook;
	void *hook_arg;

	/* Maintenance (maintain.c), under lock. */
	uint64_t demand_time[DEMAND_SAMPLES];
	size_t demand_blocks[DEMAND_SAMPLES];
	unsigned demand_head;
	unsigned demand_n;
	uint64_t last_sample_ns;
	uint64_t created_ns;
	pthread_t thread;
	pthread_mutex_t thread_lock;
	bool thread_running;
	bool thread_stop;
	pthread_cond_t thread_cond;
	_Atomic bool thread_asleep; /* waits longer than the delay: the slow path wakes it */

	/* fork.c: what a fork child still owes the pool, paid at its slow-path calls. */
	_Atomic unsigned fork_todo;	/* FORK_RELOCK, FORK_THREAD */
	_Atomic uint64_t fork_retry_ns; /* the lost thread: not started again before this */

	/* Counters: relaxed atomics, summed by stats. */
	_Atomic uint64_t grows;
	_Atomic uint64_t shrinks;
	_Atomic uint64_t purges;
	_Atomic uint64_t purged_bytes;
	_Atomic uint64_t alloc_failures;
	_Atomic uint64_t bad_frees;
	_Atomic uint64_t vetoes;
	_Atomic uint64_t os_failures;
	_Atomic uint64_t reentries;
	_Atomic uint64_t maintenance_runs;

	/* fork.c: the registry of live pools, under its lock. */
	struct tide_pool *fork_next, *fork_prev;
	unsigned cache_cap; /* blocks a thread cache holds: TCACHE_BYTES, within [2, TCACHE_CAP] */
};

/* Enter a public call; false (and counted) when this thread is already inside one. */
static inline bool call_enter(struct tide_pool *pool)
{
	if (unlikely(call_guard_held())) {
		atomic_fetch_add_explicit(&pool->reentries, 1, memory_order_relaxed);
		return false;
	}
	call_guard_set(CALL_IN);
	return true;
}

static inline size_t pool_unreserved(const struct tide_pool *pool)
{
	return atomic_load_explicit(&((struct tide_pool *)pool)->unreserved, memory_order_acquire);
}

void *pool_alloc(struct tide_pool *pool, struct tide_user *user, size_t size);
int pool_free(struct tide_pool *pool, struct tide_user *user, void *buf);
unsigned pool_alloc_bulk(struct tide_pool *pool, struct tide_user *user, void **bufs, unsigned n);
int pool_free_bulk(struct tide_pool *pool, struct tide_user *user, void *const *bufs, unsigned n);
/* Claim up to n single blocks, lowest first, into out; pool->lock held. */
unsigned pool_claim_blocks_locked(struct tide_pool *pool, void **out, unsigned n);
void pool_release_blocks_locked(struct tide_pool *pool, void *const *blocks, unsigned n);
void pool_release_run_locked(struct tide_pool *pool, size_t first, size_t n);
/* Grow by bytes for an allocation that found nothing while the pool was seen this size:
 * 0 when the pool grew (here or on another thread), else the error. */
int pool_grow_auto(struct tide_pool *pool, size_t seen, size_t bytes);
int pool_grow_locked(struct tide_pool *pool, size_t bytes); /* convert_lock held */
bool pool_claim_run_locked(struct tide_pool *pool, size_t n, size_t *first);
/*
 * Shrink the free top by up to bytes, not below floor; convert_lock held. keep (a reset):
 * the range is made inaccessible but keeps its pages, the metadata stays committed.
 */
ssize_t pool_shrink_locked(struct tide_pool *pool, size_t bytes, size_t floor, bool keep);
/* The hook hears TO_RESERVED for the whole unreserved portion and is removed; convert_lock
 * held (or the pool private to the caller). */
void pool_drop_hook_locked(struct tide_pool *pool);
void tide_assert_fail(const char *cond, const char *file, int line);
/* fork child, pool->lock held: give back blocks claimed but neither tagged nor cached
 * (in flight in a thread that does not exist here); not while this thread runs the hook. */
void pool_release_lost_locked(struct tide_pool *pool);
bool pool_hook_running_here(const struct tide_pool *pool);
/*
 * The pool's lock and convert_lock, priority-inheriting where the system allows (a
 * real-time thread waiting for one boosts its holder), plain otherwise. Also in the fork
 * child: a priority-inheriting mutex records its owner's thread id, which the child's
 * thread does not have, so the child makes them anew instead of unlocking them.
 */
void pool_locks_init(struct tide_pool *pool);

/*
 * The invariant checker: bitmap summaries and count agree with the words; the boundary
 * equals base + unreserved; nothing is claimed or tagged above the boundary; every block
 * parked in a cache is claimed and tagged free; live buffers equal tagged heads. Returns 0,
 * or -EUCLEAN with a description in why. Takes the pool lock; call from one thread.
 */
int tide_pool_check(struct tide_pool *pool, char *why, size_t len);

// reset.c -------------------------------------------------------------------------------

/*
 * Make the pool as tide_pool_create() left it (no buffer, user, hook or cache; initial_size
 * unreserved; counters as fresh) without unmapping anything. 0 or -errno; see reset.c.
 */
int tide_pool_reset(struct tide_pool *pool);

// user.c --------------------------------------------------------------------------------

int user_table_init(struct tide_pool *pool); /* with the default user, id 1 */
void user_table_exit(struct tide_pool *pool);
void user_table_reset_locked(struct tide_pool *pool); /* every user but the default freed */
bool user_charge_counted(struct tide_user *user, size_t bytes, size_t buffers);
/* Charge up to n buffers of unit bytes within the quota; how many were charged. */
unsigned user_charge_upto(struct tide_user *user, size_t unit, unsigned n);

/* Count bytes against the user's quota; false (and counted) when it would pass it. */
static inline bool user_charge(struct tide_user *user, size_t bytes, size_t buffers)
{
	return !user->counted || user_charge_counted(user, bytes, buffers);
}

static inline void user_uncharge(struct tide_user *user, size_t bytes, size_t buffers)
{
	if (user->counted) {
		atomic_fetch_sub_explicit(&user->live_bytes, bytes, memory_order_relaxed);
		atomic_fetch_sub_explicit(&user->live_buffers, buffers, memory_order_relaxed);
	}
}

// meta.c --------------------------------------------------------------------------------

int meta_map(struct tide_pool *pool); /* reserve, lay out, commit the bitmap summaries */
/*
 * Make writable the metadata describing pool bytes [from, to), only the pages not
 * committed yet (meta_top); 0 or the OS's error, with nothing of it left committed.
 */
int meta_commit(struct tide_pool *pool, size_t from, size_t to);
/* Give back the metadata pages that describe only pool bytes [to, from), to < from. */
void meta_decommit(struct tide_pool *pool, size_t to, size_t from);

// fork.c (what a fork child owes) ------------------------------------------------------

#define FORK_RELOCK 1u /* a TIDE_LOCKED pool not locked again yet */
#define FORK_THREAD 2u /* a TIDE_BACKGROUND pool whose thread could not be started again */

/* Pay what the fork child owes the pool: not under the re-entry guard, no lock held. */
void fork_catch_up(struct tide_pool *pool);
/* The same with convert_lock held by this thread (a grow): the re-lock only. */
void fork_relock_locked(struct tide_pool *pool);

static inline void fork_todo_check(struct tide_pool *pool)
{
	if (unlikely(atomic_load_explicit(&pool->fork_todo, memory_order_acquire)) &&
	    !call_guard_held()) /* not in a signal handler that interrupted a call */
		fork_catch_up(pool);
}

// limits.c ------------------------------------------------------------------------------

/*
 * Which limit (0: the cgroup's; TIDE_NO_MEMORY_LIMIT: none; else on the process's RSS) and
 * a first read; 0, or -EMFILE/-ENFILE/-ENOMEM when whether a limit applies cannot be read.
 */
int limits_init(struct tide_pool *pool, size_t memory_limit);
void limits_exit(struct tide_pool *pool);
/*
 * 0 when growing by len keeps the memory in use a headroom under every limit; -ENOMEM.
 * Reads the limits and the usage now; convert_lock held.
 */
int limits_check(struct tide_pool *pool, size_t len);

// maintain.c ----------------------------------------------------------------------------

void maintain_init(struct tide_pool *pool); /* the thread's lock and condition, at create */
int maintain_start(struct tide_pool *pool); /* the background thread, with TIDE_BACKGROUND */
void maintain_stop(struct tide_pool *pool);
void maintain_fork_child_locked(struct tide_pool *pool); /* a fresh condition */
void maintain_fork_child(struct tide_pool *pool);	 /* the thread started again */
/* The thread lost in a fork child: started again, or the pool maintained by this call. */
void maintain_fallback(struct tide_pool *pool);
void maintain_wake(struct tide_pool *pool); /* the thread, out of a long wait */

/*
 * Something was claimed, given back or grown (pool->lock held: the slow path, never a
 * cache hit): work will be due, so a maintenance thread in a long wait is woken. One load
 * while it is awake; the first event after it went to sleep pays the wake-up.
 */
static inline void maintain_poke(struct tide_pool *pool)
{
	if (unlikely(atomic_load_explicit(&pool->thread_asleep, memory_order_relaxed)))
		maintain_wake(pool);
}
void purge_unmark_locked(struct tide_pool *pool, size_t block, size_t nblocks);
void purge_forget_locked(struct tide_pool *pool, size_t lo, size_t hi); /* byte offsets */

// fork.c --------------------------------------------------------------------------------

/* The registry of live pools the fork handlers walk; the handlers are installed once. */
void fork_register(struct tide_pool *pool);
void fork_unregister(struct tide_pool *pool);

// stats.c -------------------------------------------------------------------------------

size_t stats_live_blocks_locked(struct tide_pool *pool); /* claimed - cached */
size_t stats_live_buffers_locked(struct tide_pool *pool);

#endif /* TIDE_INTERNAL_H */
