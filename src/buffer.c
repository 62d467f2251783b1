/* SPDX-License-Identifier: MIT */
/*
 * buffer.c - alloc and free: the hot path.
 *
 * A one-block buffer comes from this thread's cache (cache.c) and is stamped in the tag
 * array with its owner's id; free checks the pointer (inside the unreserved portion, on a
 * block boundary) and the tag (this owner's, a buffer's first block) before it clears the
 * tag and pushes the block back. So every free is checked - double, interior, foreign,
 * above the boundary, another user's - at the cost of one load and one compare, and a
 * bad free changes nothing. A bulk free whose buffers are one run of neighbouring blocks
 * (what a cache fed lowest block first mostly hands out) checks and clears their tags as
 * one slice, with the same outcome as one buffer at a time.
 *
 * Buffers larger than a block take the lowest run of free blocks under the pool lock;
 * their first block is tagged owner | TAG_MULTI, the last TAG_TAIL and those between
 * TAG_INTERIOR, so free finds the length by walking its own tags.
 *
 * The pool's own tide_alloc/tide_free act as its default user (id 1), which may grow when
 * the pool has TIDE_AUTO_GROW and keeps no counters of its own (the pool's are its).
 *
 * Every public call that touches a thread cache or a lock runs inside the re-entry guard
 * (one thread-local byte, see internal.h): a signal handler that interrupts such a call
 * and calls in again on the same thread is refused, since the interrupted code may be
 * half-way through the same cache or hold the lock the handler would wait for. The fast
 * paths only read the byte, and the busy half of their cache's word, which they set for
 * the operation (internal.h): the guard costs them two loads and a branch, and no store
 * of its own.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "poison.h"

#define DEFAULT_USER_ID 1 /* user.c gives the pool's default user this id */

_Thread_local struct tide_thread tide_thread __attribute__((tls_model("initial-exec")));

static inline bool may_grow(const struct tide_pool *pool, const struct tide_user *user)
{
	return (pool->flags & TIDE_AUTO_GROW) && (user->flags & TIDE_USER_MAY_GROW);
}

static inline size_t block_index(const struct tide_pool *pool, const void *block)
{
	return (size_t)((const char *)block - pool->base) >> pool->block_shift;
}

static void count_failure(struct tide_pool *pool, struct tide_user *user)
{
	atomic_fetch_add_explicit(&pool->alloc_failures, 1, memory_order_relaxed);
	if (user->counted)
		atomic_fetch_add_explicit(&user->alloc_failures, 1, memory_order_relaxed);
}

static int bad_free(struct tide_pool *pool, struct tide_user *user, int err)
{
	atomic_fetch_add_explicit(&pool->bad_frees, 1, memory_order_relaxed);
	if (user->counted)
		atomic_fetch_add_explicit(&user->bad_frees, 1, memory_order_relaxed);
	return err;
}

/* One block without a cache (this thread has too many pools): straight from the bitmap. */
static void *alloc_uncached(struct tide_pool *pool, bool grow)
{
	bool all =
		!grow; /* see cache_refill_pop(): idle caches before growth, all before failing */

	for (int attempt = 0; attempt < 4; attempt++) {
		void *block;
		size_t seen;

		pthread_mutex_lock(&pool->lock);
		if (pool_claim_blocks_locked(pool, &block, 1) ||
		    (cache_reclaim_locked(pool) && pool_claim_blocks_locked(pool, &block, 1))) {
			cache_sync_peak_locked(pool, NULL);
			pthread_mutex_unlock(&pool->lock);
			return block;
		}
		seen = pool_unreserved(pool);
		pthread_mutex_unlock(&pool->lock);
		if (all)
			break;
		if (pool_grow_auto(pool, seen, pool->block_size))
			all = true;
	}
	return NULL;
}

static inline void *alloc_block(struct tide_pool *pool, bool grow)
{
	struct tcache *c = cache_get(pool);
	void *block;

	if (unlikely(!c))
		return alloc_uncached(pool, grow);
	block = cache_pop(c, pool->fence_is_membarrier);
	if (unlikely(!block))
		block = cache_refill_pop(pool, c, grow);
	return block;
}

static inline void free_block(struct tide_pool *pool, void *block)
{
	struct tcache *c = cache_get(pool);

	if (unlikely(!c)) {
		pthread_mutex_lock(&pool->lock);
		pool_release_blocks_locked(pool, &block, 1);
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	if (unlikely(!cache_push(c, pool->fence_is_membarrier, block)))
		cache_push_flush(pool, c, block);
}

/*
 * A buffer of n > 1 blocks: the lowest free run. Blocks parked in thread caches break up
 * runs, so before growing, every cache is taken back and the search runs again.
 */
static void *alloc_run(struct tide_pool *pool, struct tide_user *user, size_t n)
{
	bool grow = may_grow(pool, user);

	for (int attempt = 0; attempt < 4; attempt++) {
		size_t first, seen, free_top, want;

		pthread_mutex_lock(&pool->lock);
		if (pool_claim_run_locked(pool, n, &first) ||
		    (cache_reclaim_locked(pool) && pool_claim_run_locked(pool, n, &first))) {
			pool->tags[first] = user->id | TAG_MULTI;
			memset(pool->tags + first + 1, 0xff, (n - 2) * sizeof(*pool->tags));
			pool->tags[first + n - 1] = TAG_TAIL;
			pool->multi_buffers++;
			pool->multi_blocks += n;
			cache_sync_peak_locked(pool, NULL);
			pthread_mutex_unlock(&pool->lock);
			return pool->base + (first << pool->block_shift);
		}
		seen = pool_unreserved(pool);
		free_top = seen - (bitmap_top(&pool->map, pool->limit) << pool->block_shift);
		pthread_mutex_unlock(&pool->lock);
		if (!grow)
			break;
		want = n << pool->block_shift;
		if (pool_grow_auto(pool, seen,
				   want > free_top ? want - free_top : pool->block_size))
			break;
	}
	return NULL;
}

_Static_assert(TAG_INTERIOR == 0xffff && TAG_FREE == 0, "tags are set with memset");

/*
 * Blocks in the multi-block buffer whose head is first. One tag at a time: a wider read
 * past the tail would race with whoever frees the next buffer.
 */
static size_t run_length(const struct tide_pool *pool, size_t first)
{
	size_t n = 1;

	while (pool->tags[first + n] == TAG_INTERIOR)
		n++;
	tide_assert(pool->tags[first + n] == TAG_TAIL);
	return n + 1;
}

static void free_run(struct tide_pool *pool, struct tide_user *user, size_t first)
{
	size_t n = run_length(pool, first);

	pthread_mutex_lock(&pool->lock); /* tags and bits change together: see fork.c */
	memset(pool->tags + first, 0, n * sizeof(*pool->tags)); /* TAG_FREE */
	poison_range(pool, pool->base + (first << pool->block_shift), n << pool->block_shift);
	pool_release_run_locked(pool, first, n);
	pool->multi_buffers--;
	pool->multi_blocks -= n;
	pthread_mutex_unlock(&pool->lock);
	user_uncharge(user, n << pool->block_shift, 1);
}

__attribute__((noinline)) void *pool_alloc(struct tide_pool *pool, struct tide_user *user,
					   size_t size)
{
	void *block;
	size_t n;

	if (likely(size - 1 < pool->block_size)) {
		if (unlikely(user->counted && !user_charge(user, pool->block_size, 1)))
			goto fail;
		block = alloc_block(pool, may_grow(pool, user));
		if (unlikely(!block)) {
			user_uncharge(user, pool->block_size, 1);
			goto fail;
		}
		unpoison_range(pool, block, pool->block_size);
		pool->tags[block_index(pool, block)] = user->id;
		return block;
	}
	if (size == 0)
		return NULL;
	if (size > pool->max_size)
		goto fail;
	n = (size + pool->block_size - 1) >> pool->block_shift;
	if (!user_charge(user, n << pool->block_shift, 1))
		goto fail;
	block = alloc_run(pool, user, n);
	if (block) {
		unpoison_range(pool, block, n << pool->block_shift);
		return block;
	}
	user_uncharge(user, n << pool->block_shift, 1);
fail:
	count_failure(pool, user);
	return NULL;
}

/*
 * A byte offset's block index, rotated: the bits below the block size land at the top, so
 * an offset off a block boundary gives an index above any pool's, and one compare with
 * the number of blocks checks both the range and the alignment.
 */
static inline size_t rotated_index(uintptr_t off, unsigned shift)
{
	return off >> shift | off << (-shift & 63);
}

/* The pointer is a block of the unreserved portion; its index, or SIZE_MAX. */
static inline size_t checked_index(const struct tide_pool *pool, const void *buf)
{
	unsigned shift = pool->block_shift;
	size_t i = rotated_index((uintptr_t)buf - (uintptr_t)pool->base, shift);

	if (unlikely(i >= pool_unreserved(pool) >> shift))
		return SIZE_MAX;
	return i;
}

/*
 * The check every free makes: buf is a live one-block buffer of the user with this id.
 * Its block index, or SIZE_MAX for anything else (NULL, a multi-block buffer, a bad free).
 */
static inline size_t owned_block(const struct tide_pool *pool, const void *buf, uint16_t id)
{
	size_t i = checked_index(pool, buf);

	if (unlikely(i == SIZE_MAX || pool->tags[i] != id))
		return SIZE_MAX;
	return i;
}

/* Anything but this user's one-block buffer: NULL, a multi-block buffer, or a bad free. */
static int free_slow(struct tide_pool *pool, struct tide_user *user, void *buf)
{
	size_t i;
	uint16_t tag;

	if (!buf)
		return 0;
	i = checked_index(pool, buf);
	if (i == SIZE_MAX)
		return bad_free(pool, user, -EINVAL);
	tag = pool->tags[i];
	if (tag == (user->id | TAG_MULTI)) {
		free_run(pool, user, i);
		return 0;
	}
	if (!tag_is_head(tag))
		return bad_free(pool, user, -EINVAL);
	return bad_free(pool, user, -EPERM);
}

__attribute__((noinline)) int pool_free(struct tide_pool *pool, struct tide_user *user, void *buf)
{
	size_t i = owned_block(pool, buf, user->id);

	if (unlikely(i == SIZE_MAX))
		return free_slow(pool, user, buf);
	pool->tags[i] = TAG_FREE;
	if (user->counted)
		user_uncharge(user, pool->block_size, 1);
	poison_range(pool, buf, pool->block_size); /* before another thread can take it */
	free_block(pool, buf);
	return 0;
}

/*
 * Bulk calls on runs. A thread cache is fed lowest block first, so the blocks a bulk call
 * takes or gives back are mostly one run of neighbours, up or down the stack. For such a
 * batch the tags are one array slice: checked with one pass that the compiler vectorises
 * and set with one fill, where one buffer at a time costs a load, a compare, a branch and
 * a store each. Whether the batch is a run is itself one vectorisable pass over the
 * pointers, after a look at both ends that turns most other batches away at once.
 */

/*
 * The lowest block index of bufs[0..n) when they are n neighbouring blocks below limit,
 * in address order up or down; else SIZE_MAX. n > 0.
 */
static inline size_t batch_run(void *const *bufs, unsigned n, uintptr_t base, unsigned shift,
			       size_t limit)
{
	uintptr_t first = (uintptr_t)bufs[0], last = (uintptr_t)bufs[n - 1], low, want, step;
	uintptr_t span = (uintptr_t)(n - 1) << shift, diff = 0;
	size_t k;

	if (last - first == span) {
		step = (uintptr_t)1 << shift;
		low = first;
	} else if (first - last == span) {
		step = -((uintptr_t)1 << shift);
		low = last;
	} else {
		return SIZE_MAX;
	}
	want = first;
	for (unsigned i = 0; i < n; i++, want += step)
		diff |= (uintptr_t)bufs[i] ^ want;
	k = rotated_index(low - base, shift); /* a misaligned run lands above any limit */
	if (diff || k >= limit || limit - k < n)
		return SIZE_MAX;
	return k;
}

/* Every tag of the slice [k, k + n) is id. */
static inline bool tags_all(const uint16_t *tags, size_t k, unsigned n, uint16_t id)
{
	unsigned diff = 0;

	for (unsigned i = 0; i < n; i++)
		diff |= (unsigned)(tags[k + i] ^ id);
	return !diff;
}

static inline void tags_fill(uint16_t *tags, size_t k, unsigned n, uint16_t id)
{
	for (unsigned i = 0; i < n; i++)
		tags[k + i] = id;
}

/*
 * Pop up to n blocks of c's stack into bufs, each tagged for id, in one window: how many.
 * The top n pointers are copied as one block (the top of the stack, in stack order), then
 * tagged: as one slice when they are a run, else one by one. The pool's fields are read
 * once, not per block.
 */
static __attribute__((noinline)) unsigned bulk_pop(struct tide_pool *pool, struct tcache *c,
						   uint16_t id, void **bufs, unsigned n)
{
	unsigned have = cache_enter(c, pool->fence_is_membarrier);
	uintptr_t base = (uintptr_t)pool->base;
	uint16_t *tags = pool->tags;
	unsigned shift = pool->block_shift;
	size_t k;

	if (have == UINT_MAX)
		return 0;
	if (n > have)
		n = have;
	if (n) {
		memcpy(bufs, c->slots + have - n, (size_t)n * sizeof(*bufs));
		k = batch_run(bufs, n, base, shift, SIZE_MAX);
		if (likely(k != SIZE_MAX)) {
			tags_fill(tags, k, n, id);
		} else {
#pragma GCC unroll 4
			for (unsigned i = 0; i < n; i++)
				tags[((uintptr_t)bufs[i] - base) >> shift] = id;
		}
	}
	cache_note_low(c, have - n);
	cache_leave(c, have - n);
	return n;
}

/*
 * Push bufs[0..n) on c's stack in one window while each is a live one-block buffer of id
 * (the check of owned_block(), with the pool's fields read once) and there is room: how
 * many were pushed. The first bad buffer stops the push: every buffer before it is freed,
 * it and every buffer after it are untouched (a buffer given twice in one batch is bad the
 * second time). A run whose tags are all id is freed as one slice (its blocks are distinct
 * by construction); any other batch, or a run with a bad tag, one buffer at a time. The
 * pointers pushed are copied onto the stack as one block. The boundary read once is safe
 * for the whole window: a live buffer cannot be shrunk away, and the tags above the
 * boundary read as free.
 */
static __attribute__((noinline)) unsigned bulk_push(struct tide_pool *pool, struct tcache *c,
						    uint16_t id, void *const *bufs, unsigned n)
{
	unsigned have = cache_enter(c, pool->fence_is_membarrier), i;
	uintptr_t base = (uintptr_t)pool->base;
	uint16_t *tags = pool->tags;
	unsigned shift = pool->block_shift;
	size_t limit = pool_unreserved(pool) >> shift, k;

	if (have == UINT_MAX)
		return 0;
	if (n > c->cap - have)
		n = have < c->cap ? c->cap - have : 0;
	if (n && (k = batch_run(bufs, n, base, shift, limit)) != SIZE_MAX &&
	    tags_all(tags, k, n, id)) {
		tags_fill(tags, k, n, TAG_FREE);
		i = n;
	} else {
#pragma GCC unroll 4
		for (i = 0; i < n; i++) {
			k = rotated_index((uintptr_t)bufs[i] - base, shift);
			if (unlikely(k >= limit || tags[k] != id))
				break;
			tags[k] = TAG_FREE;
		}
	}
	memcpy(c->slots + have, bufs, (size_t)i * sizeof(*bufs));
	cache_leave(c, have + i);
	return i;
}

unsigned pool_alloc_bulk(struct tide_pool *pool, struct tide_user *user, void **bufs, unsigned n)
{
	struct tcache *c;
	unsigned got = 0, cached = 0;
	bool all = !may_grow(pool, user); /* as in cache_refill_pop() */

	if (!n || !bufs)
		return 0;
	if (user->counted) {
		n = user_charge_upto(user, pool->block_size, n);
		if (!n) {
			count_failure(pool, user);
			return 0;
		}
	}
	c = cache_get(pool);
	if (likely(c))
		got = cached = bulk_pop(pool, c, user->id, bufs, n);
	for (int attempt = 0; got < n && attempt < 4; attempt++) {
		unsigned before = got;
		bool reclaimed = false;
		size_t seen;

		pthread_mutex_lock(&pool->lock);
		while (got < n) {
			unsigned more = pool_claim_blocks_locked(pool, bufs + got, n - got);

			if (!more && (reclaimed || !cache_reclaim_locked(pool)))
				break;
			reclaimed |= !more;
			got += more;
		}
		if (c) { /* these did not pass through the stack: count them live here */
			cache_settle_locked(c);
			cache_add_live_locked(c, got - before);
		}
		cache_sync_peak_locked(pool, NULL);
		seen = pool_unreserved(pool);
		pthread_mutex_unlock(&pool->lock);
		if (got == n || all)
			break;
		if (pool_grow_auto(pool, seen, (size_t)(n - got) * pool->block_size))
			all = true;
	}
	for (unsigned i = 0; pool->poison && i < got; i++)
		unpoison_range(pool, bufs[i], pool->block_size);
	for (unsigned i = cached; i < got; i++) /* from the bitmap: not tagged yet */
		pool->tags[block_index(pool, bufs[i])] = user->id;
	if (got < n) {
		if (user->counted)
			user_uncharge(user, (size_t)(n - got) * pool->block_size, n - got);
		count_failure(pool, user);
	}
	return got;
}

int pool_free_bulk(struct tide_pool *pool, struct tide_user *user, void *const *bufs, unsigned n)
{
	struct tcache *c = cache_get(pool);
	unsigned i = 0, pushed = 0;
	int err = 0;

	if (n && !bufs)
		return -EINVAL;
	while (i < n) {
		/* Push as many plain one-block buffers as fit in one cache window (a pool that
		 * poisons frees one by one through pool_free). */
		if (c && !pool->poison) {
			unsigned done = bulk_push(pool, c, user->id, bufs + i, n - i);

			i += done;
			pushed += done;
		}
		if (i < n) {
			err = pool_free(pool, user,
					bufs[i++]); /* NULL, a run, full cache, or bad */
			if (err)
				break;
		}
	}
	if (user->counted && pushed)
		user_uncharge(user, (size_t)pushed * pool->block_size, pushed);
	return err;
}

static __attribute__((noinline, cold)) void *reentry(struct tide_pool *pool)
{
	atomic_fetch_add_explicit(&pool->reentries, 1, memory_order_relaxed);
	return NULL;
}

/*
 * The slow paths of tide_alloc() and tide_free(), each under the guard (CALL_IN). The fast
 * paths only test the byte and their own cache's busy mark: the busy mark is the guard
 * while they touch the cache, and a signal handler that runs outside an operation finds
 * nothing half-done. A slow path is refused while an operation of this thread is open on
 * any of its caches (a handler that interrupted one).
 */
static __attribute__((noinline)) void *alloc_slow(struct tide_pool *pool, size_t size)
{
	void *block;

	if (unlikely(cache_window_open()))
		return reentry(pool);
	call_guard_set(CALL_IN);
	block = pool_alloc(pool, &pool->default_user, size);
	call_leave();
	fork_todo_check(pool); /* a fork child's re-lock or lost thread */
	return block;
}

/*
 * flush: the tag is cleared already, push under the lock (the fast path found this cache
 * idle and this thread holds no lock of the pool: the byte was clear); else the general
 * free.
 */
static __attribute__((noinline)) int free_slow_default(struct tide_pool *pool, void *buf,
						       bool flush)
{
	int err = 0;

	if (unlikely(!flush && cache_window_open())) {
		reentry(pool);
		return -EAGAIN;
	}
	call_guard_set(CALL_IN);
	if (flush)
		cache_push_flush(pool, cache_get(pool), buf); /* this thread's cache of pool */
	else
		err = pool_free(pool, &pool->default_user, buf);
	call_leave();
	fork_todo_check(pool);
	return err;
}

/**
 * tide_alloc() - take a buffer from the pool.
 * @pool: the pool.
 * @size: bytes wanted; up to block_size takes one block, more a contiguous run.
 *
 * Lowest address first, from this thread's cache, refilled from the bitmap; with
 * TIDE_AUTO_GROW a pool with nothing free grows by a grow_unit (or what the run needs).
 *
 * The fast path is the default user's hit in this thread's cache, with no counters but the
 * cache's; everything else (no cache yet, an empty cache, a steal under way, sizes above a
 * block) goes to pool_alloc().
 *
 * Return: the buffer, aligned to block_size; NULL for size 0, a NULL pool, or no space
 * (counted in alloc_failures), or a call from a signal handler that interrupted a call
 * into the pool on the same thread (counted in reentries).
 */
void *tide_alloc(struct tide_pool *pool, size_t size)
{
	struct tcache *c;
	unsigned n;
	void *block;

	if (unlikely(!pool))
		return NULL;
	if (unlikely(atomic_load_explicit(&tide_in_call, memory_order_relaxed)))
		return reentry(pool);
	c = tcache_last;
	if (unlikely(size - 1 >= pool->block_size || !c ||
		     atomic_load_explicit(&c->pool, memory_order_relaxed) != pool ||
		     cache_busy_here(c)))
		return alloc_slow(pool, size); /* busy: refused there */
	n = cache_enter(c, true); /* tcache_last: a pool with membarrier (fast_path_ok()) */
	if (unlikely(n - 1 >= TCACHE_CAP)) { /* empty, or a steal (window closed) */
		if (n == 0)
			cache_close(c);
		return alloc_slow(pool, size);
	}
	block = c->slots[n - 1];
	cache_note_low(c, n - 1);
	cache_leave(c, n - 1);
	pool->tags[block_index(pool, block)] = DEFAULT_USER_ID;
	return block;
}

/**
 * tide_free() - give a buffer back.
 * @pool: the pool it came from.
 * @buf:  the buffer, or NULL.
 *
 * The fast path is a live one-block buffer of the default user pushed on this thread's
 * cache; anything else (NULL, a run, a full cache, a steal, a bad pointer) goes to
 * pool_free() or a flush under the lock.
 *
 * Return: 0 (also for NULL); -EINVAL when @buf is not a live buffer of this pool (foreign,
 * interior, above the boundary, already freed) or @pool is NULL; -EPERM when it belongs to
 * a user (free it with tide_user_free()). A refused free changes nothing and is counted
 * in bad_frees. -EAGAIN from a signal handler that interrupted a call into the pool on the
 * same thread (counted in reentries; free the buffer later, outside the handler).
 */
int tide_free(struct tide_pool *pool, void *buf)
{
	struct tcache *c;
	size_t i;

	if (unlikely(!pool))
		return buf ? -EINVAL : 0;
	if (unlikely(atomic_load_explicit(&tide_in_call, memory_order_relaxed))) {
		reentry(pool);
		return -EAGAIN;
	}
	c = tcache_last;
	if (unlikely(!c || atomic_load_explicit(&c->pool, memory_order_relaxed) != pool ||
		     cache_busy_here(c)))
		return free_slow_default(pool, buf, false); /* busy: refused there */
	i = owned_block(pool, buf, DEFAULT_USER_ID);
	if (unlikely(i == SIZE_MAX))
		return free_slow_default(pool, buf, false);
	pool->tags[i] = TAG_FREE;		 /* before the block can reach another thread */
	if (unlikely(!cache_push(c, true, buf))) /* as in tide_alloc() */
		return free_slow_default(pool, buf, true);
	return 0;
}

/**
 * tide_alloc_bulk() - take up to @n one-block buffers.
 * @pool: the pool.
 * @bufs: room for @n pointers.
 * @n:    how many.
 *
 * Return: how many were taken (0 for bad arguments, or inside a signal handler that
 * interrupted a call into the pool); the rest of @bufs is untouched.
 */
unsigned tide_alloc_bulk(struct tide_pool *pool, void **bufs, unsigned n)
{
	unsigned got;

	if (unlikely(!pool || !call_enter(pool)))
		return 0;
	got = pool_alloc_bulk(pool, &pool->default_user, bufs, n);
	call_leave();
	fork_todo_check(pool);
	return got;
}

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
int tide_free_bulk(struct tide_pool *pool, void *const *bufs, unsigned n)
{
	int err;

	if (unlikely(!pool))
		return -EINVAL;
	if (unlikely(!call_enter(pool)))
		return -EAGAIN;
	err = pool_free_bulk(pool, &pool->default_user, bufs, n);
	call_leave();
	fork_todo_check(pool);
	return err;
}

/**
 * tide_buffer_size() - the usable size of a live buffer.
 * @pool: the pool.
 * @buf:  a buffer from it.
 *
 * Return: its size, a whole number of blocks; 0 when @buf is not a live buffer.
 */
size_t tide_buffer_size(const struct tide_pool *pool, const void *buf)
{
	size_t i;
	uint16_t tag;

	if (!pool || !buf)
		return 0;
	i = checked_index(pool, buf);
	if (i == SIZE_MAX)
		return 0;
	tag = pool->tags[i];
	if (!tag_is_head(tag))
		return 0;
	return (tag & TAG_MULTI ? run_length(pool, i) : 1) << pool->block_shift;
}

/**
 * tide_pool_flush_cache() - return this thread's cached free blocks of @pool.
 * @pool: the pool, or NULL.
 *
 * Useful before a thread goes idle for long; thread exit does it by itself. Does nothing
 * inside a signal handler that interrupted a call into the pool.
 */
void tide_pool_flush_cache(struct tide_pool *pool)
{
	if (pool && call_enter(pool)) {
		cache_flush_own(pool);
		call_leave();
		fork_todo_check(pool);
	}
}
