/* SPDX-License-Identifier: MIT */
/*
 * cache.c - per-thread caches in front of the bitmap.
 *
 * Each thread keeps, per pool, a stack of up to cap free blocks that it has claimed from
 * the bitmap: TCACHE_BYTES worth, at most TCACHE_CAP (512 blocks of 2 KiB, 2 blocks of
 * 1 MiB), and at most 1/TCACHE_SHARE of the pool's unreserved portion (re-read at every
 * refill and flush, so it follows grows and shrinks), so what a cache hoards is bounded in
 * bytes whatever the block size, and one thread never holds most of a small pool. Alloc
 * pops, free pushes; an empty stack is refilled and a full one flushed to half under the
 * pool lock, so the lock is taken once per few dozen to few hundred operations and steady
 * alloc/free pairs never leave the thread. A thread that only frees (a consumer) thus
 * hands its excess back to the bitmap every cap/2 frees, where the allocating thread's
 * refill finds it.
 *
 * An allocation that finds the bitmap empty takes back the blocks of every cache, busy or
 * idle, before it grows the pool or fails (a steal, below): an allocation never grows the
 * pool while free blocks sit in other threads' caches. That costs one membarrier per
 * reclaim, but a reclaim only happens when the bitmap is empty, and with every cache
 * bounded to a fraction of the pool the bitmap only runs empty when live buffers fill most
 * of it (or many threads each hold their share) - the point where the pool would
 * otherwise grow, which costs far more (page faults, a hook) than one fence. Maintenance
 * separately takes back caches left unchanged for a while (cache_flush_idle_locked).
 *
 * The fast path has no atomic read-modify-write and no fence, and as few stores as it can
 * (every store queues behind the caller's cache-missing stores to its buffers): the owner
 * marks its operation by setting the busy half of the cache's word, and one store of the
 * whole word ends it with the new count (two stores per operation, where a thread-local
 * mark took three). A shrink must be able to take back every cached block, even of a
 * thread that sleeps, so the stealer (holding the pool lock) raises the cache's steal
 * flag, runs membarrier(PRIVATE_EXPEDITED) - a full fence on every running thread of the
 * process - and then waits while busy is set. Either the owner's busy store came before
 * the fence (the stealer sees it and waits for the operation to end) or the owner's load
 * of steal comes after it (the owner sees the flag, clears busy, and takes the slow path,
 * which queues on the pool lock). This is the asymmetric Dekker pattern of userspace RCU.
 * A steal ends in STEAL_DONE, not STEAL_NONE: the owner settles it under the lock (count
 * 0) and nobody trusts the count of a DONE cache. Without membarrier both sides pay a full
 * fence. The stealer's wait is bounded spinning, then yielding, then sleeping: the owner
 * may be unable to run while the stealer spins (a higher real-time priority on the same
 * CPU). A signal handler on the owner's thread that interrupts an operation finds busy set
 * on that cache and is refused, and any slow path it would take is refused while one of
 * the thread's caches is busy (cache_window_open()); one that runs before the busy store
 * finds the cache consistent (the count is read only after busy is set).
 *
 * Lifetimes: a cache belongs to its thread and is freed at thread exit (pthread key
 * destructor), after flushing its blocks back. From then on the thread is marked exiting
 * and goes uncached: a later key destructor of the application (glibc runs up to
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds) may still allocate and free, through the lock,
 * and strands nothing. A pool destroyed first detaches its caches (pool pointer NULL)
 * under the registry lock, which thread exit also takes, and keeps them on the registry's
 * orphan list: their thread frees them at its next lookup or at exit, and the library's
 * destructor (dlclose) frees the rest when no cache of a live pool is left - a thread of
 * an unloaded library can no longer reach them. The key is deleted there too, so no
 * destructor outlives the code. When the key, the cache's memory or its registration
 * cannot be had, the thread goes uncached (every operation under the pool lock) instead
 * of failing. After fork() only the forking thread exists: the child drops the other
 * threads' caches and takes their blocks back.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static _Thread_local struct tcache *tcache_slots[TCACHE_SLOTS];
static _Thread_local bool tcache_exiting; /* thread_exit ran: no cache from here on */

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t exit_key;
static bool exit_key_ok; /* pthread_key_create worked: caches can be flushed at thread exit */
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static struct tcache *orphans; /* caches of destroyed pools, under registry */
static atomic_long attached;   /* caches linked to a live pool */
static bool fence_ok;
static pthread_once_t fence_once = PTHREAD_ONCE_INIT;

static void fence_probe(void)
{
#ifdef TIDE_TSAN
	fence_ok = false; /* ThreadSanitizer models fences, not membarrier */
#else
	fence_ok = os_membarrier_register() == 0;
#endif
}

bool cache_init_fence(void)
{
	pthread_once(&fence_once, fence_probe);
	return fence_ok;
}

static void link_cache_locked(struct tide_pool *pool, struct tcache *c)
{
	c->prev = NULL;
	c->next = pool->caches;
	if (pool->caches)
		pool->caches->prev = c;
	pool->caches = c;
}

static void unlink_cache_locked(struct tide_pool *pool, struct tcache *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		pool->caches = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

static inline unsigned count_of(const struct tcache *c)
{
	if (atomic_load_explicit(&c->steal, memory_order_relaxed) == STEAL_DONE)
		return 0;
	return cache_count(c);
}

/* This thread's live blocks (may be negative: it freed others' buffers); pool->lock held. */
static inline long live_of(const struct tcache *c)
{
	return c->live_base + (long)c->count_base - (long)count_of(c);
}

/* Count moves for a reason other than alloc or free: keep live where it is. */
static void rebase(struct tcache *c, long live, unsigned count)
{
	c->live_base = live;
	c->count_base = count;
	atomic_store_explicit(&c->low, count, memory_order_relaxed);
}

void cache_settle_locked(struct tcache *c)
{
	if (atomic_load_explicit(&c->steal, memory_order_acquire) != STEAL_DONE)
		return;
	cache_set_count(c, 0);
	atomic_store_explicit(&c->steal, STEAL_NONE, memory_order_relaxed);
	rebase(c, c->live_base, 0); /* the stealer rebased to count 0 */
}

void cache_add_live_locked(struct tcache *c, long n)
{
	rebase(c, live_of(c) + n, count_of(c));
}

/* Give every block of c back to the bitmap; pool->lock held, c not in an operation. */
static void drain_locked(struct tide_pool *pool, struct tcache *c)
{
	unsigned n = count_of(c);
	long live = live_of(c);

	pool_release_blocks_locked(pool, c->slots, n);
	cache_set_count(c, 0);
	rebase(c, live, 0);
}

/* The orphan list (registry held) reuses the links of the pool's list, which c has left. */
static void link_orphan_locked(struct tcache *c)
{
	c->prev = NULL;
	c->next = orphans;
	if (orphans)
		orphans->prev = c;
	orphans = c;
}

static void unlink_orphan_locked(struct tcache *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		orphans = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

/* Thread exit: flush and free this thread's caches. */
static void thread_exit(void *unused)
{
	(void)unused;
	call_guard_set(CALL_IN); /* a signal handler now must not make a new cache */
	tcache_exiting = true;	 /* a later key destructor's calls go uncached: none stranded */
	pthread_mutex_lock(&registry);
	for (int i = 0; i < TCACHE_SLOTS; i++) {
		struct tcache *c = tcache_slots[i];
		struct tide_pool *pool;

		if (!c)
			continue;
		pool = atomic_load_explicit(&c->pool, memory_order_relaxed);
		if (pool) {
			pthread_mutex_lock(&pool->lock);
			drain_locked(pool, c);
			unlink_cache_locked(pool, c);
			pthread_mutex_unlock(&pool->lock);
			atomic_fetch_sub_explicit(&attached, 1, memory_order_relaxed);
		} else {
			unlink_orphan_locked(c);
		}
		free(c);
		tcache_slots[i] = NULL;
	}
	tcache_last = NULL;
	pthread_mutex_unlock(&registry);
	call_guard_set(0); /* a later key destructor may still free a buffer */
}

static void make_exit_key(void)
{
	exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0;
}

/*
 * dlclose() of the library (and process exit): a thread exiting later must not find a
 * destructor in unmapped code, and the caches other threads made for pools since destroyed
 * (orphans) would have no owner left to free them: they are freed here when no cache of a
 * live pool is left (every pool is destroyed before dlclose; no thread can call into
 * unloaded code, so the dead pointers in their thread-local slots are never read).
 */
__attribute__((destructor)) static void delete_exit_key(void)
{
	if (exit_key_ok) {
		exit_key_ok = false;
		pthread_key_delete(exit_key);
	}
	pthread_mutex_lock(&registry);
	if (atomic_load_explicit(&attached, memory_order_relaxed) == 0) {
		while (orphans) {
			struct tcache *c = orphans;

			unlink_orphan_locked(c);
			for (int i = 0; i < TCACHE_SLOTS; i++)
				if (tcache_slots[i] == c)
					tcache_slots[i] = NULL;
			if (tcache_last == c)
				tcache_last = NULL;
			free(c);
		}
	}
	pthread_mutex_unlock(&registry);
}

/*
 * A cache's capacity: pool->cache_cap (TCACHE_BYTES), but at most 1/TCACHE_SHARE of the
 * unreserved portion, so that one thread never holds most of a small pool.
 */
static unsigned cap_for(const struct tide_pool *pool)
{
	size_t share = (pool_unreserved(pool) >> pool->block_shift) / TCACHE_SHARE;

	if (share < 2)
		return 2;
	return share < pool->cache_cap ? (unsigned)share : pool->cache_cap;
}

bool cache_window_open(void)
{
	for (int i = 0; i < TCACHE_SLOTS; i++)
		if (tcache_slots[i] && cache_busy_here(tcache_slots[i]))
			return true;
	return false;
}

/*
 * Whether c may become tcache_last, the cache tide_alloc()/tide_free() use inline: not for
 * a pool that poisons (poison.h), nor without membarrier, since the inline path opens its
 * window with a compiler fence only; such pools go through pool_alloc()/pool_free(),
 * whose cache operations pay the full fence.
 */
static inline bool fast_path_ok(const struct tide_pool *pool)
{
	return !pool->poison && pool->fence_is_membarrier;
}

struct tcache *cache_lookup(struct tide_pool *pool)
{
	struct tcache *c;
	int slot = -1;

	for (int i = 0; i < TCACHE_SLOTS; i++) {
		c = tcache_slots[i];
		if (c && atomic_load_explicit(&c->pool, memory_order_relaxed) == pool) {
			if (likely(fast_path_ok(pool)))
				tcache_last = c;
			return c;
		}
		if (slot < 0 && (!c || !atomic_load_explicit(&c->pool, memory_order_relaxed)))
			slot = i;
	}
	if (slot < 0 || tcache_exiting)
		return NULL; /* too many pools, or past thread exit: through the lock */
	if (tcache_slots[slot]) {
		if (tcache_last == tcache_slots[slot])
			tcache_last = NULL;
		pthread_mutex_lock(&registry);
		unlink_orphan_locked(tcache_slots[slot]); /* orphaned by a destroyed pool */
		pthread_mutex_unlock(&registry);
		free(tcache_slots[slot]);
		tcache_slots[slot] = NULL;
	}
	pthread_once(&exit_key_once, make_exit_key);
	if (!exit_key_ok)
		return NULL; /* no way to flush at thread exit: stay uncached */
	c = aligned_alloc(64, align_up(sizeof(*c), 64));
	if (!c)
		return NULL;
	if (pthread_setspecific(exit_key, (void *)1)) {
		free(c);
		return NULL;
	}
	atomic_init(&c->word.all, CACHE_WORD(0));
	atomic_init(&c->low, 0);
	atomic_init(&c->steal, STEAL_NONE);
	c->live_base = 0;
	c->count_base = 0;
	c->seen_live = 0;
	c->seen_count = 0;
	c->seen_epoch = 0;
	atomic_init(&c->pool, pool);
	atomic_fetch_add_explicit(&attached, 1, memory_order_relaxed);
	pthread_mutex_lock(&pool->lock);
	c->cap = cap_for(pool);
	link_cache_locked(pool, c);
	pthread_mutex_unlock(&pool->lock);
	tcache_slots[slot] = c;
	if (likely(fast_path_ok(pool)))
		tcache_last = c;
	return c;
}

void cache_sync_peak_locked(struct tide_pool *pool, struct tcache *c)
{
	size_t live = stats_live_blocks_locked(pool);
	long excursion = cache_excursions_locked(pool);

	if (live + (size_t)excursion > pool->peak_live_blocks)
		pool->peak_live_blocks = live + (size_t)excursion;
	if (c)
		rebase(c, live_of(c), count_of(c));
}

/* Refill an empty cache with half its capacity from the bitmap; how many it got. */
static unsigned refill_locked(struct tide_pool *pool, struct tcache *c)
{
	long live = live_of(c);
	unsigned n;

	c->cap = cap_for(pool); /* the pool may have grown or shrunk */
	n = pool_claim_blocks_locked(pool, c->slots, c->cap / 2);

	/* The stack pops from its end: put the lowest address there. */
	for (unsigned i = 0; i < n / 2; i++) {
		void *t = c->slots[i];

		c->slots[i] = c->slots[n - 1 - i];
		c->slots[n - 1 - i] = t;
	}
	cache_set_count(c, n);
	rebase(c, live, n);
	return n;
}

/*
 * c changed since the last look (by maintenance, a reclaim, or its own slow path): note
 * it and answer false; unchanged, true. pool->lock held.
 */
static bool unchanged_since_look(struct tide_pool *pool, struct tcache *c)
{
	unsigned count = count_of(c);

	if (c->live_base == c->seen_live && count == c->seen_count)
		return true;
	c->seen_live = c->live_base;
	c->seen_count = count;
	c->seen_epoch = pool->epoch;
	return false;
}

void *cache_refill_pop(struct tide_pool *pool, struct tcache *c, bool may_grow)
{
	bool all = !may_grow;

	for (int attempt = 0; attempt < 4; attempt++) {
		size_t seen;
		unsigned n;

		pthread_mutex_lock(&pool->lock);
		cache_settle_locked(c);
		n = count_of(c);
		if (n == 0)
			n = refill_locked(pool, c);
		if (n == 0 && cache_reclaim_locked(pool)) {
			cache_settle_locked(c);
			n = refill_locked(pool, c);
		}
		if (n) {
			void *block = c->slots[n - 1];

			cache_sync_peak_locked(pool, c);
			cache_set_count(c, n - 1);
			cache_note_low(c, n - 1);
			unchanged_since_look(pool, c); /* a look: idle from here if left alone */
			pthread_mutex_unlock(&pool->lock);
			return block;
		}
		seen = pool_unreserved(pool);
		pthread_mutex_unlock(&pool->lock);
		if (all)
			return NULL;
		if (pool_grow_auto(pool, seen, pool->block_size))
			all = true; /* no growth: every cache is taken back before failing */
	}
	return NULL;
}

void cache_push_flush(struct tide_pool *pool, struct tcache *c, void *block)
{
	unsigned n;
	long live;

	pthread_mutex_lock(&pool->lock);
	cache_settle_locked(c);
	n = count_of(c);
	live = live_of(c);
	c->cap = cap_for(pool);
	if (n >= c->cap) {
		/* The oldest half goes back: the recent half is what this thread reuses. */
		unsigned out = n - c->cap / 2;

		pool_release_blocks_locked(pool, c->slots, out);
		memmove(c->slots, c->slots + out, (n - out) * sizeof(void *));
		n -= out;
		cache_set_count(c, n);
		rebase(c, live, n);
	}
	c->slots[n] = block;
	cache_set_count(c, n + 1);
	cache_sync_peak_locked(pool, c);
	unchanged_since_look(pool, c);
	pthread_mutex_unlock(&pool->lock);
}

/*
 * One round of waiting for another thread: spin a little, then yield, then sleep for
 * longer and longer (up to 1 ms), so that a thread which cannot run while we spin (a lower
 * priority on the same CPU, or more threads than CPUs) gets the CPU.
 */
static void wait_round(unsigned *round)
{
	if (*round < 128) {
		cpu_relax();
	} else if (*round < 136) {
		sched_yield();
	} else {
		unsigned shift = *round - 136 < 10 ? *round - 136 : 10;
		struct timespec ts = {0, 1000L << shift};

		nanosleep(&ts, NULL);
	}
	(*round)++;
}

/* Take back every block of the caches marked STEAL_WANTED; pool->lock held. */
static void steal_marked_locked(struct tide_pool *pool)
{
	if (pool->fence_is_membarrier)
		os_membarrier();
	else
		atomic_thread_fence(memory_order_seq_cst);
	for (struct tcache *c = pool->caches; c; c = c->next) {
		unsigned round = 0;

		if (atomic_load_explicit(&c->steal, memory_order_relaxed) != STEAL_WANTED)
			continue;
		while (cache_busy(c))
			wait_round(&round);
		drain_locked(pool, c);
		atomic_store_explicit(&c->steal, STEAL_DONE, memory_order_release);
	}
}

void cache_flush_all_locked(struct tide_pool *pool)
{
	cache_reclaim_locked(pool);
}

/*
 * The bitmap is empty: take back every cache's blocks before the pool grows or an
 * allocation fails. One fence for all of them; an owner inside an operation is waited for
 * (a few instructions), its next operation backs off to the lock.
 */
bool cache_reclaim_locked(struct tide_pool *pool)
{
	bool any = false;

	for (struct tcache *c = pool->caches; c; c = c->next)
		if (count_of(c)) {
			atomic_store_explicit(&c->steal, STEAL_WANTED, memory_order_relaxed);
			any = true;
		}
	if (any) {
		int cancel = cancel_off(); /* the steal wait may sleep, pool->lock held */

		steal_marked_locked(pool);
		cancel_restore(cancel);
	}
	return any;
}

void cache_flush_idle_locked(struct tide_pool *pool, unsigned idle_epochs)
{
	bool any = false;

	for (struct tcache *c = pool->caches; c; c = c->next) {
		unsigned count = count_of(c);

		if (!unchanged_since_look(pool, c))
			continue;
		if (count && pool->epoch - c->seen_epoch >= idle_epochs) {
			atomic_store_explicit(&c->steal, STEAL_WANTED, memory_order_relaxed);
			any = true;
		}
	}
	if (any)
		steal_marked_locked(pool);
}

bool cache_any_held_locked(struct tide_pool *pool)
{
	for (struct tcache *c = pool->caches; c; c = c->next)
		if (count_of(c))
			return true;
	return false;
}

void cache_flush_own(struct tide_pool *pool)
{
	for (int i = 0; i < TCACHE_SLOTS; i++) {
		struct tcache *c = tcache_slots[i];

		if (c && atomic_load_explicit(&c->pool, memory_order_relaxed) == pool) {
			pthread_mutex_lock(&pool->lock);
			cache_settle_locked(c);
			drain_locked(pool, c);
			pthread_mutex_unlock(&pool->lock);
		}
	}
}

void cache_detach_pool(struct tide_pool *pool)
{
	pthread_mutex_lock(&registry);
	pthread_mutex_lock(&pool->lock);
	while (pool->caches) {
		struct tcache *c = pool->caches;

		unlink_cache_locked(pool, c);
		link_orphan_locked(c);
		atomic_fetch_sub_explicit(&attached, 1, memory_order_relaxed);
		atomic_store_explicit(&c->pool, NULL, memory_order_relaxed);
	}
	pthread_mutex_unlock(&pool->lock);
	/*
	 * This thread's own orphans can go now; other threads free theirs at their next
	 * cache lookup or at exit, and the library's destructor frees what is left.
	 */
	for (int i = 0; i < TCACHE_SLOTS; i++) {
		struct tcache *c = tcache_slots[i];

		if (c && !atomic_load_explicit(&c->pool, memory_order_relaxed)) {
			if (tcache_last == c)
				tcache_last = NULL;
			unlink_orphan_locked(c);
			free(c);
			tcache_slots[i] = NULL;
		}
	}
	pthread_mutex_unlock(&registry);
}

size_t cache_count_locked(struct tide_pool *pool)
{
	size_t n = 0;

	for (struct tcache *c = pool->caches; c; c = c->next)
		n += count_of(c);
	return n;
}

long cache_excursions_locked(struct tide_pool *pool)
{
	long sum = 0;

	for (struct tcache *c = pool->caches; c; c = c->next) {
		unsigned count = count_of(c),
			 low = atomic_load_explicit(&c->low, memory_order_relaxed);

		sum += count > low ? (long)(count - low) : 0;
	}
	return sum;
}

/* fork(): the registry lock is taken before any pool lock, as thread exit takes them. */
void cache_fork_prepare(void)
{
	pthread_mutex_lock(&registry);
}

void cache_fork_parent(void) /* and child */
{
	pthread_mutex_unlock(&registry);
}

static bool is_own(const struct tcache *c)
{
	for (int i = 0; i < TCACHE_SLOTS; i++)
		if (tcache_slots[i] == c)
			return true;
	return false;
}

void cache_fork_child_locked(struct tide_pool *pool)
{
	struct tcache *c = pool->caches;

	while (c) {
		struct tcache *next = c->next;

		if (is_own(c)) {
			/* busy: fork ran in a signal handler that interrupted an operation on
			 * c; that operation goes on in the child when the handler returns. */
			if (!cache_busy_here(c)) {
				cache_settle_locked(c);
				drain_locked(pool, c);
			}
		} else {
			/*
			 * Its thread is gone, perhaps in the middle of an operation (a window):
			 * the blocks counted are free, but for any a bulk allocation had tagged
			 * before its count was stored (live: its holder is gone with the thread);
			 * one being pushed is found by the caller's scan for lost blocks.
			 */
			unsigned n =
				atomic_load_explicit(&c->steal, memory_order_relaxed) == STEAL_DONE
					? 0
					: cache_count(c);
			unsigned kept = 0;

			for (unsigned k = 0; k < n && k < TCACHE_CAP; k++) {
				size_t i = (size_t)((char *)c->slots[k] - pool->base) >>
					   pool->block_shift;

				if (pool->tags[i] == TAG_FREE)
					c->slots[kept++] = c->slots[k];
			}
			pool_release_blocks_locked(pool, c->slots, kept);
			unlink_cache_locked(pool, c);
			atomic_fetch_sub_explicit(&attached, 1, memory_order_relaxed);
			free(c);
		}
		c = next;
	}
}
