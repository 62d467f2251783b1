/* SPDX-License-Identifier: MIT */
/*
 * pool.c - create/destroy, the boundary, conversion (grow/shrink) and the hook.
 *
 * A pool is one reservation [base, base + reserve_size) and one lazily backed metadata
 * mapping: the bitmap (one bit per block), the tags (one uint16_t per block: who holds
 * it), and the purge state. Metadata pages are touched only for blocks below the
 * boundary, so a fresh 64 GiB pool costs a few pages, and a shrink gives the metadata of
 * the range back with it.
 *
 * Locks: convert_lock serialises conversions and the hook; lock guards the bitmap, the
 * cache list and everything that moves with them. Order: convert_lock, then lock. The hook
 * runs with convert_lock held and lock free, so allocation goes on while it runs.
 *
 * Grow: commit [boundary, boundary + n) (plus huge page, populate, lock advice), call the
 * hook (TO_UNRESERVED), then publish: move the boundary and the claim limit under lock.
 * Nothing of the range can be handed out before the hook said yes. A veto gives the range
 * back but keeps its metadata committed (zero, unused) for the retry a vetoing driver
 * makes at the next allocation; a shrink or destroy gives it back.
 *
 * Shrink: under lock, take every cached block back, find the highest claimed block, and
 * lower the claim limit to the grow_unit boundary above it: from then on nobody can take
 * a block of the range, so it is ours without setting a bit. Then the hook (TO_RESERVED),
 * then decommit, then publish the boundary. A veto or an OS refusal restores the limit:
 * the pool is exactly as before. A live buffer is never taken because its bit is set.
 *
 * Invariants (tide_pool_check): unreserved is a multiple of grow_unit and at most
 * max_size; limit equals unreserved in blocks outside a shrink; no bit or tag is set at or
 * above the limit; every tagged block is claimed; claimed = tagged + cached.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "poison.h"

#define DEFAULT_BLOCK_SIZE	((size_t)2048)
#define DEFAULT_RESERVE_SIZE	(64 * GiB)
#define DEFAULT_GROW_UNIT	(2 * MiB)
#define DEFAULT_SHRINK_DELAY_MS 100
#define MAX_SHRINK_DELAY_MS	(24u * 3600 * 1000)
#define MAX_RESERVE_SIZE	((size_t)1 << 46) /* 64 TiB: well inside a 47-bit user space */
#define MIN_FALLBACK_RESERVE	(4 * GiB)	  /* a refused default reservation halves to here */
#define HUGE_PAGE		(2 * MiB)
#define PURGE_REGION		(64 * KiB) /* idle time is tracked per region of this size */

static _Thread_local struct tide_pool *in_hook; /* the pool whose hook runs on this thread */

void tide_assert_fail(const char *cond, const char *file, int line)
{
	fprintf(stderr, "tide: assertion failed: %s (%s:%d)\n", cond, file, line);
	abort();
}

static void uncommit(struct tide_pool *pool, char *addr, size_t len);

/* What a hook was called on, for hook_exited(). */
struct hook_call {
	struct tide_pool *pool;
	enum tide_convert dir;
	char *addr;
	size_t len;
};

/*
 * The hook ended its thread (pthread_exit(), or a cancellation it enabled): the conversion
 * counts as vetoed and the conversion lock its caller holds is released, so the pool stays
 * usable. A grow's range, still above the boundary, is given back to the OS; a shrink's,
 * still below the boundary, gets its blocks back. Only convert_lock is held by the hook's
 * callers (pool lock and cache windows are free while a hook runs).
 */
static void hook_exited(void *arg)
{
	struct hook_call *c = arg;
	struct tide_pool *pool = c->pool;
	size_t off = (size_t)(c->addr - pool->base), cur = pool_unreserved(pool);

	in_hook = NULL;
	atomic_fetch_add_explicit(&pool->vetoes, 1, memory_order_relaxed);
	if (c->dir == TIDE_TO_UNRESERVED && off == cur) {
		uncommit(pool, c->addr, c->len);
		meta_decommit(pool, cur, cur + c->len);
	} else if (c->dir == TIDE_TO_RESERVED && off + c->len == cur &&
		   (pool->limit << pool->block_shift) == off) {
		poison_range(pool, c->addr, c->len);
		pthread_mutex_lock(&pool->lock);
		pool->limit = cur >> pool->block_shift;
		pthread_mutex_unlock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->convert_lock);
	call_guard_set(0);
}

/*
 * Run a hook on [addr, addr + len). in_hook marks the thread so the hook cannot convert
 * this pool (convert_lock is held); the hook may allocate and free, so the re-entry guard
 * is lifted while it runs. 0, or its refusal (a positive return is -ECANCELED). A hook that
 * ends its thread leaves the pool unlocked (hook_exited()).
 */
static int run_hook(struct tide_pool *pool, tide_convert_fn fn, void *arg, enum tide_convert dir,
		    void *addr, size_t len)
{
	struct hook_call call = {pool, dir, addr, len};
	unsigned char guard = tide_in_call;
	int ret;

	in_hook = pool;
	call_guard_set(0);
	pthread_cleanup_push(hook_exited, &call);
	ret = fn(pool, dir, addr, len, arg);
	pthread_cleanup_pop(0);
	call_guard_set(guard);
	in_hook = NULL;
	return ret > 0 ? -ECANCELED : ret;
}

/* The installed hook, if any; a refusal counts as a veto. */
static int call_hook(struct tide_pool *pool, enum tide_convert dir, void *addr, size_t len)
{
	int ret;

	if (!pool->hook)
		return 0;
	ret = run_hook(pool, pool->hook, pool->hook_arg, dir, addr, len);
	if (ret)
		atomic_fetch_add_explicit(&pool->vetoes, 1, memory_order_relaxed);
	return ret;
}

/* Fill in defaults and check every field; 0 or -EINVAL. */
static int resolve_config(const struct tide_pool_config *in, struct tide_pool_config *out)
{
	size_t page = os_page_size();
	struct tide_pool_config c = {0};

	if (in)
		c = *in;
	if (c.flags & ~TIDE_POOL_FLAGS_ALL)
		return -EINVAL;
	if (!c.block_size)
		c.block_size = DEFAULT_BLOCK_SIZE;
	if (!is_pow2(c.block_size) || c.block_size < 64 || c.block_size > MiB)
		return -EINVAL;
	if (!c.grow_unit)
		c.grow_unit = c.block_size > DEFAULT_GROW_UNIT ? c.block_size : DEFAULT_GROW_UNIT;
	if (c.grow_unit % page || c.grow_unit % c.block_size || c.grow_unit > GiB)
		return -EINVAL;
	if (!c.reserve_size)
		c.reserve_size = DEFAULT_RESERVE_SIZE;
	if (c.reserve_size > MAX_RESERVE_SIZE || c.reserve_size < c.grow_unit)
		return -EINVAL;
	c.reserve_size = round_up(c.reserve_size, c.grow_unit);
	if (!c.max_size)
		c.max_size = c.reserve_size;
	if (c.max_size > c.reserve_size || c.max_size < c.grow_unit)
		return -EINVAL;
	c.max_size = round_down(c.max_size, c.grow_unit);
	if (c.initial_size > c.max_size)
		return -EINVAL;
	c.initial_size = round_up(c.initial_size, c.grow_unit);
	if (c.initial_size > c.max_size)
		return -EINVAL;
	if (!c.min_size)
		c.min_size = c.initial_size;
	if (c.min_size > c.max_size)
		return -EINVAL;
	c.min_size = round_up(c.min_size, c.grow_unit);
	if (c.min_size > c.max_size)
		return -EINVAL;
	if (!c.shrink_delay_ms)
		c.shrink_delay_ms = DEFAULT_SHRINK_DELAY_MS;
	if (c.shrink_delay_ms > MAX_SHRINK_DELAY_MS)
		return -EINVAL;
	*out = c;
	return 0;
}

/*
 * Reserve the range. A refused default reservation is halved until it fits, down to
 * MIN_FALLBACK_RESERVE, and never below what the configuration needs (initial, min and an
 * explicit max_size): valgrind, for one, refuses 64 GiB but gives 32 GiB. An explicit
 * reserve_size is reserved as asked or refused. Any refusal is -ENOMEM.
 */
static int reserve_range(struct tide_pool_config *c, const struct tide_pool_config *in, void **base)
{
	bool fallback = !in || !in->reserve_size;
	bool max_defaulted = !in || !in->max_size;
	size_t floor = MIN_FALLBACK_RESERVE, align = c->grow_unit & -c->grow_unit;

	if (align > GiB)
		align = GiB;
	if (floor < c->initial_size)
		floor = c->initial_size;
	if (floor < c->min_size)
		floor = c->min_size;
	if (!max_defaulted && floor < c->max_size)
		floor = c->max_size;
	for (;;) {
		if (os_reserve(c->reserve_size, align, base) == 0)
			return 0;
		if (!fallback || c->reserve_size / 2 < floor || c->reserve_size / 2 < c->grow_unit)
			return -ENOMEM;
		c->reserve_size = align_down(c->reserve_size / 2, c->grow_unit);
		if (max_defaulted)
			c->max_size = c->reserve_size;
	}
}

/*
 * Priority inheritance (PTHREAD_PRIO_INHERIT): a SCHED_FIFO thread that waits for a lock
 * held by a preempted lower-priority thread lends it its priority until the unlock, so a
 * medium-priority thread cannot hold both up (priority inversion). The locks are taken on
 * slow paths only (refill, flush, grow, shrink, maintenance); an uncontended lock stays a
 * userspace compare-and-swap. A system that refuses the protocol gets plain mutexes.
 */
static void lock_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;
	bool done = false;

	if (pthread_mutexattr_init(&attr) == 0) {
		done = pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT) == 0 &&
		       pthread_mutex_init(m, &attr) == 0;
		pthread_mutexattr_destroy(&attr);
	}
	if (!done)
		pthread_mutex_init(m, NULL);
}

void pool_locks_init(struct tide_pool *pool)
{
	lock_init(&pool->lock);
	lock_init(&pool->convert_lock);
}

static void pool_free_struct(struct tide_pool *pool)
{
	limits_exit(pool);
	pthread_mutex_destroy(&pool->lock);
	pthread_mutex_destroy(&pool->convert_lock);
	pthread_cond_destroy(&pool->thread_cond);
	pthread_mutex_destroy(&pool->thread_lock);
	free(pool);
}

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
int tide_pool_create(const struct tide_pool_config *cfg, struct tide_pool **poolp)
{
	struct tide_pool_config c;
	struct tide_pool *pool;
	void *base;
	int err;

	if (!poolp)
		return -EINVAL;
	err = resolve_config(cfg, &c);
	if (err)
		return err;
	err = reserve_range(&c, cfg, &base);
	if (err)
		return err;
	pool = aligned_alloc(64, align_up(sizeof(*pool), 64));
	if (!pool) {
		os_release(base, c.reserve_size);
		return -ENOMEM;
	}
	memset(pool, 0, sizeof(*pool));
	pool->block_size = c.block_size;
	pool->block_shift = (unsigned)__builtin_ctzl(c.block_size);
	pool->reserve_size = c.reserve_size;
	pool->nblocks = c.reserve_size >> pool->block_shift;
	pool->grow_unit = c.grow_unit;
	pool->min_size = c.min_size;
	pool->max_size = c.max_size;
	pool->initial_size = c.initial_size;
	pool->shrink_delay_ms = c.shrink_delay_ms;
	pool->flags = c.flags;
	pool->page_size = os_page_size();
	pool->purge_chunk = pool->page_size > c.block_size ? pool->page_size : c.block_size;
	if ((c.flags & TIDE_HUGEPAGES) && c.grow_unit % HUGE_PAGE == 0)
		pool->purge_chunk = HUGE_PAGE;
	pool->purge_region = pool->purge_chunk > PURGE_REGION ? pool->purge_chunk : PURGE_REGION;
	if (pool->reserve_size % pool->purge_region)
		pool->purge_region = pool->purge_chunk;
	pool->cache_cap = (unsigned)(TCACHE_BYTES >> pool->block_shift);
	if (pool->cache_cap > TCACHE_CAP)
		pool->cache_cap = TCACHE_CAP;
	if (pool->cache_cap < 2)
		pool->cache_cap = 2;
	pool->fence_is_membarrier = cache_init_fence();
	pool->poison = poison_wanted();
	pool_locks_init(pool);
	maintain_init(pool);
	pool->created_ns = os_now_ns();

	pool->base = base;
	err = limits_init(pool, c.memory_limit);
	if (err)
		goto fail_reserve;
	err = meta_map(pool);
	if (err) {
		err = -ENOMEM;
		goto fail_reserve;
	}
	err = user_table_init(pool);
	if (err)
		goto fail_meta;
	if (c.initial_size) {
		pthread_mutex_lock(&pool->convert_lock);
		err = pool_grow_locked(pool, c.initial_size);
		pthread_mutex_unlock(&pool->convert_lock);
		if (err)
			goto fail_users;
	}
	if (c.flags & TIDE_BACKGROUND) {
		err = maintain_start(pool);
		if (err)
			goto fail_users;
	}
	fork_register(pool);
	*poolp = pool;
	return 0;

fail_users: /* a grown range goes with the reservation below */
	user_table_exit(pool);
fail_meta:
	os_release(pool->meta, pool->meta_size);
fail_reserve:
	os_release(pool->base, pool->reserve_size);
	pool_free_struct(pool);
	return err == -EPERM ? -ENOMEM : err;
}

/**
 * tide_pool_destroy() - release the pool's whole range and metadata.
 * @pool: the pool, or NULL (nothing happens).
 *
 * Stops the maintenance thread, calls the hook (TO_RESERVED) for the unreserved portion so
 * the network side can unregister it, and unmaps everything. Buffers still live become
 * invalid; this must be the last call on the pool from any thread.
 */
void tide_pool_destroy(struct tide_pool *pool)
{
	int cancel;

	if (!pool)
		return;
	cancel = cancel_off(); /* the hook, the join: no half-destroyed pool */
	fork_unregister(pool);
	maintain_stop(pool);
	cache_detach_pool(pool);
	pool_drop_hook_locked(pool);
	user_table_exit(pool);
	os_release(pool->meta, pool->meta_size);
	os_release(pool->base, pool->reserve_size);
	pool_free_struct(pool);
	cancel_restore(cancel);
}

void pool_drop_hook_locked(struct tide_pool *pool)
{
	size_t unreserved = pool_unreserved(pool);

	poison_forget(pool, pool->base, unreserved); /* the hook may read what it unregisters */
	if (pool->hook && unreserved)
		run_hook(pool, pool->hook, pool->hook_arg, TIDE_TO_RESERVED, pool->base,
			 unreserved);
	pool->hook = NULL;
	pool->hook_arg = NULL;
}

/* Stamp the purge regions of byte range [lo, hi) as used now: purge leaves them alone. */
static void stamp_regions_locked(struct tide_pool *pool, size_t lo, size_t hi)
{
	for (size_t r = lo / pool->purge_region; r <= (hi - 1) / pool->purge_region; r++)
		pool->region_epoch[r] = pool->epoch;
	pool->stamp_epoch = pool->epoch;
	pool->purge_pending = true;
}

/* Blocks went back to the bitmap: demand fell now (maintain.c dates the window's peak by
 * it). A clock read per give-back, not per block, and only where automatic shrink runs. */
static inline void note_released_locked(struct tide_pool *pool)
{
	if (pool->flags & TIDE_AUTO_SHRINK)
		pool->release_ns = os_now_ns();
	maintain_poke(pool);
}

/* Blocks [first, first + n) were just claimed: purge state, region stamps, demand. */
static void note_claimed_locked(struct tide_pool *pool, size_t first, size_t n)
{
	stamp_regions_locked(pool, first << pool->block_shift, (first + n) << pool->block_shift);
	if (pool->purged_chunks)
		purge_unmark_locked(pool, first, n);
	if (pool->map.count > pool->demand_tick)
		pool->demand_tick = pool->map.count;
	maintain_poke(pool);
}

/*
 * Stamp the purge region of block idx, unless it is *last, the region stamped just
 * before: claims and flushes come in runs of neighbours.
 */
static inline void stamp_block_locked(struct tide_pool *pool, size_t idx, size_t *last)
{
	size_t region = (idx << pool->block_shift) / pool->purge_region;

	if (region != *last) {
		*last = region;
		pool->region_epoch[region] = pool->epoch;
		pool->stamp_epoch = pool->epoch;
		pool->purge_pending = true;
	}
}

unsigned pool_claim_blocks_locked(struct tide_pool *pool, void **out, unsigned n)
{
	size_t idx[TCACHE_CAP], region = SIZE_MAX;
	size_t got;

	if (n > TCACHE_CAP)
		n = TCACHE_CAP;
	got = bitmap_claim_bits(&pool->map, pool->limit, idx, n);
	for (size_t i = 0; i < got; i++) {
		out[i] = pool->base + (idx[i] << pool->block_shift);
		stamp_block_locked(pool, idx[i], &region);
		if (pool->purged_chunks)
			purge_unmark_locked(pool, idx[i], 1);
	}
	if (pool->map.count > pool->demand_tick)
		pool->demand_tick = pool->map.count;
	maintain_poke(pool);
	return (unsigned)got;
}

void pool_release_blocks_locked(struct tide_pool *pool, void *const *blocks, unsigned n)
{
	size_t idx[TCACHE_CAP], region = SIZE_MAX;

	while (n) {
		unsigned k = n < TCACHE_CAP ? n : TCACHE_CAP;

		for (unsigned i = 0; i < k; i++) {
			idx[i] = (size_t)((char *)blocks[i] - pool->base) >> pool->block_shift;
			/* Purge waits a delay from the last free too, not only the last claim. */
			stamp_block_locked(pool, idx[i], &region);
		}
		bitmap_clear_list(&pool->map, idx, k);
		blocks += k;
		n -= k;
	}
	note_released_locked(pool);
}

void pool_release_run_locked(struct tide_pool *pool, size_t first, size_t n)
{
	stamp_regions_locked(pool, first << pool->block_shift, (first + n) << pool->block_shift);
	bitmap_clear_range(&pool->map, first, n);
	note_released_locked(pool);
}

bool pool_claim_run_locked(struct tide_pool *pool, size_t n, size_t *first)
{
	if (!bitmap_claim_run(&pool->map, pool->limit, n, first))
		return false;
	note_claimed_locked(pool, *first, n);
	return true;
}

/* Undo the OS side of a grow whose range [addr, addr + len) was committed. */
static void uncommit(struct tide_pool *pool, char *addr, size_t len)
{
	if (pool->flags & TIDE_LOCKED)
		os_unlock(addr, len);
	os_decommit(addr, len);
}

int pool_grow_locked(struct tide_pool *pool, size_t bytes)
{
	size_t cur = pool_unreserved(pool);
	char *addr = pool->base + cur;
	size_t len;
	int err;

	len = round_up(bytes, pool->grow_unit);
	if (bytes == 0)
		return 0;
	if (len < bytes || len > pool->max_size - cur)
		return -ENOSPC;
	fork_relock_locked(pool); /* a fork child's pool, before its new range is locked */
	err = limits_check(pool, len);
	if (err)
		goto os_refused;
	err = meta_commit(pool, cur, cur + len);
	if (err)
		goto os_refused;
	err = os_commit(addr, len);
	if (err)
		goto undo_meta;
	/* Huge pages are advice: a kernel without them still gives a working pool. */
	if (pool->flags & TIDE_HUGEPAGES)
		os_hugepage(addr, len);
	if (pool->flags & TIDE_LOCKED) {
		err = os_lock(addr, len);
		if (err)
			goto undo_commit;
	}
	if (pool->flags & TIDE_POPULATE) {
		err = os_populate(addr, len);
		if (err)
			goto undo_commit;
	}
	err = call_hook(pool, TIDE_TO_UNRESERVED, addr, len);
	if (err) { /* the metadata stays committed for the retry (zero: nothing used it) */
		uncommit(pool, addr, len);
		return err;
	}
	poison_range(pool, addr, len); /* every block of it is free */
	pthread_mutex_lock(&pool->lock);
	atomic_store_explicit(&pool->unreserved, cur + len, memory_order_release);
	pool->limit = (cur + len) >> pool->block_shift;
	stamp_regions_locked(pool, cur, cur + len); /* a fresh range is not idle */
	note_released_locked(pool); /* new free blocks: the quiet window starts again */
	if (cur + len > pool->unreserved_high)
		pool->unreserved_high = cur + len;
	pthread_mutex_unlock(&pool->lock);
	atomic_fetch_add_explicit(&pool->grows, 1, memory_order_relaxed);
	return 0;

undo_commit:
	uncommit(pool, addr, len);
undo_meta:
	meta_decommit(pool, cur, cur + len);
os_refused:
	atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
	return -ENOMEM; /* whatever the OS said: EAGAIN (mlock), EPERM, EINVAL (valgrind) */
}

int pool_grow_auto(struct tide_pool *pool, size_t seen, size_t bytes)
{
	int err = 0, cancel;

	if (in_hook == pool)
		return -EDEADLK;
	cancel = cancel_off();
	pthread_mutex_lock(&pool->convert_lock);
	if (pool_unreserved(pool) == seen)
		err = pool_grow_locked(pool, bytes > pool->grow_unit ? bytes : pool->grow_unit);
	pthread_mutex_unlock(&pool->convert_lock);
	cancel_restore(cancel);
	return err;
}

ssize_t pool_shrink_locked(struct tide_pool *pool, size_t bytes, size_t floor, bool keep)
{
	size_t cur, top, target, len;
	char *addr;
	int err;

	if (bytes == 0)
		return 0;
	pthread_mutex_lock(&pool->lock);
	cur = pool_unreserved(pool);
	cache_flush_all_locked(pool);
	top = bitmap_top(&pool->map, pool->limit) << pool->block_shift;
	target = round_up(top, pool->grow_unit);
	if (target < floor)
		target = floor;
	if (bytes < cur && target < cur - bytes)
		target = cur - round_up(bytes, pool->grow_unit);
	if (target >= cur) {
		pthread_mutex_unlock(&pool->lock);
		return cur > floor ? -EBUSY : 0;
	}
	pool->limit = target >> pool->block_shift; /* from here the range is ours */
	pthread_mutex_unlock(&pool->lock);

	addr = pool->base + target;
	len = cur - target;
	poison_forget(pool, addr, len); /* ours alone now; the hook may read what it drops */
	err = call_hook(pool, TIDE_TO_RESERVED, addr, len);
	if (err) {
		poison_range(pool, addr, len); /* vetoed: its blocks are free blocks again */
		goto restore;
	}
	if (pool->flags & TIDE_LOCKED)
		os_unlock(addr, len);
	err = keep ? os_protect(addr, len) : os_decommit(addr, len);
	if (err) {
		err = -ENOMEM; /* the documented refusal, whatever errno the OS gave */
		atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
		/* The range stays: pages may be zeroed (they were all free), re-lock, re-register.
		 */
		os_commit(addr, len);
		poison_range(pool, addr, len);
		if (pool->flags & TIDE_LOCKED)
			os_lock(addr, len);
		if (pool->hook)
			run_hook(pool, pool->hook, pool->hook_arg, TIDE_TO_UNRESERVED, addr, len);
		goto restore;
	}
	pthread_mutex_lock(&pool->lock);
	atomic_store_explicit(&pool->unreserved, target, memory_order_release);
	purge_forget_locked(pool, target, cur);
	pthread_mutex_unlock(&pool->lock);
	if (!keep)
		meta_decommit(pool, target, cur);
	atomic_fetch_add_explicit(&pool->shrinks, 1, memory_order_relaxed);
	return (ssize_t)len;

restore:
	pthread_mutex_lock(&pool->lock);
	pool->limit = cur >> pool->block_shift;
	pthread_mutex_unlock(&pool->lock);
	return err;
}

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
int tide_pool_grow(struct tide_pool *pool, size_t bytes)
{
	int err, cancel;

	if (!pool)
		return -EINVAL;
	if (in_hook == pool)
		return -EDEADLK;
	fork_todo_check(pool);
	if (!call_enter(pool))
		return -EAGAIN;
	cancel = cancel_off();
	pthread_mutex_lock(&pool->convert_lock);
	err = pool_grow_locked(pool, bytes);
	pthread_mutex_unlock(&pool->convert_lock);
	cancel_restore(cancel);
	call_leave();
	return err;
}

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
ssize_t tide_pool_shrink(struct tide_pool *pool, size_t bytes)
{
	ssize_t ret;
	int cancel;

	if (!pool)
		return -EINVAL;
	if (in_hook == pool)
		return -EDEADLK;
	fork_todo_check(pool);
	if (!call_enter(pool))
		return -EAGAIN;
	cancel = cancel_off();
	pthread_mutex_lock(&pool->convert_lock);
	ret = pool_shrink_locked(pool, bytes, 0, false);
	pthread_mutex_unlock(&pool->convert_lock);
	cancel_restore(cancel);
	call_leave();
	return ret;
}

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
int tide_pool_set_convert_hook(struct tide_pool *pool, tide_convert_fn fn, void *arg)
{
	size_t cur;
	int err = 0, cancel;

	if (!pool)
		return -EINVAL;
	if (in_hook == pool)
		return -EDEADLK;
	if (!call_enter(pool))
		return -EAGAIN;
	cancel = cancel_off();
	pthread_mutex_lock(&pool->convert_lock);
	cur = pool_unreserved(pool);
	if (fn && cur)
		err = run_hook(pool, fn, arg, TIDE_TO_UNRESERVED, pool->base, cur);
	if (!err) {
		if (pool->hook && cur)
			run_hook(pool, pool->hook, pool->hook_arg, TIDE_TO_RESERVED, pool->base,
				 cur);
		pool->hook = fn;
		pool->hook_arg = arg;
	}
	pthread_mutex_unlock(&pool->convert_lock);
	cancel_restore(cancel);
	call_leave();
	return err;
}

bool pool_hook_running_here(const struct tide_pool *pool)
{
	return in_hook == pool;
}

void pool_release_lost_locked(struct tide_pool *pool)
{
	size_t lost[64];

	for (size_t w = 0; w * 64 < pool->limit; w++) {
		uint64_t bits = pool->map.words[w];
		size_t n = 0;

		if (pool->limit - w * 64 < 64)
			bits &= ((uint64_t)1 << (pool->limit - w * 64)) - 1;
		for (; bits; bits &= bits - 1) {
			size_t i = w * 64 + (size_t)__builtin_ctzll(bits);

			if (pool->tags[i] == TAG_FREE)
				lost[n++] = i;
		}
		if (n)
			bitmap_clear_list(&pool->map, lost, n);
	}
}

/** tide_pool_base() - the start of the pool's range; NULL for a NULL pool. */
void *tide_pool_base(const struct tide_pool *pool)
{
	return pool ? pool->base : NULL;
}

/** tide_pool_boundary() - the end of the unreserved portion; NULL for a NULL pool. */
void *tide_pool_boundary(const struct tide_pool *pool)
{
	return pool ? pool->base + pool_unreserved(pool) : NULL;
}

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		snprintf(why, len, __VA_ARGS__);                                                   \
		err = -EUCLEAN;                                                                    \
		goto out;                                                                          \
	} while (0)

/*
 * The checker's tag scans: whether the 32 tags at t (64 bytes) are all free (all_free) or
 * all interior. One vector load and one test per 64 bytes (no per-word step for a
 * sanitizer to check): the scans below step 32 tags at a time through a long free stretch
 * or run, then 4, then 1.
 */
typedef uint64_t tags32_vec __attribute__((vector_size(64), aligned(2)));

static inline bool tags32(const uint16_t *t, bool all_free)
{
	tags32_vec v;
	uint64_t any, all;

	memcpy(&v, t, sizeof(v));
	any = v[0] | v[1] | v[2] | v[3] | v[4] | v[5] | v[6] | v[7];
	all = v[0] & v[1] & v[2] & v[3] & v[4] & v[5] & v[6] & v[7];
	return all_free ? !any : all == UINT64_MAX;
}

/* One past the run of interior tags that starts at i (tags[i] is one), at most end. */
static size_t interior_run_end(const uint16_t *tags, size_t i, size_t end)
{
	uint64_t four;

	for (i++; i < end && i % 4; i++)
		if (tags[i] != TAG_INTERIOR)
			return i;
	while (i + 32 <= end && tags32(tags + i, false))
		i += 32;
	for (; i + 4 <= end; i += 4) {
		memcpy(&four, tags + i, sizeof(four));
		if (four != UINT64_MAX)
			break;
	}
	for (; i < end; i++)
		if (tags[i] != TAG_INTERIOR)
			return i;
	return end;
}

/* The first index in [i, end) whose tag is not free, or end. */
static size_t next_tagged(const uint16_t *tags, size_t i, size_t end)
{
	uint64_t four;

	for (; i < end && i % 4; i++)
		if (tags[i] != TAG_FREE)
			return i;
	while (i + 32 <= end && tags32(tags + i, true))
		i += 32;
	for (; i + 4 <= end; i += 4) {
		memcpy(&four, tags + i, sizeof(four));
		if (four)
			break;
	}
	for (; i < end; i++)
		if (tags[i] != TAG_FREE)
			return i;
	return end;
}

/*
 * Every tag up to the high-water mark (tags above the boundary are checked as far as the
 * pool could ever grow): tagged blocks lie below limit and are claimed, runs are well
 * formed, heads name a user that exists. Counts tagged blocks and heads; 0 or -EUCLEAN.
 */
static int check_tags_locked(struct tide_pool *pool, size_t limit, size_t *tagged, size_t *heads,
			     char *why, size_t len)
{
	size_t scan_end = pool->unreserved_high >> pool->block_shift;
	int err = 0;

	for (size_t i = 0; i < scan_end; i++) {
		uint16_t tag;

		i = next_tagged(pool->tags, i, scan_end);
		if (i == scan_end)
			break;
		tag = pool->tags[i];
		if (i >= limit)
			FAIL("block %zu above the boundary is tagged %#x", i, tag);
		if (!bitmap_test(&pool->map, i))
			FAIL("block %zu is tagged %#x but not claimed", i, tag);
		(*tagged)++;
		if (tag_is_head(tag))
			(*heads)++;
		if (!tag_is_head(tag) &&
		    (i == 0 || pool->tags[i - 1] == TAG_FREE || pool->tags[i - 1] == TAG_TAIL))
			FAIL("block %zu is an interior or tail block with no head", i);
		if (tag_is_head(tag) && (tag & TAG_MULTI) &&
		    (i + 1 >= limit || tag_is_head(pool->tags[i + 1]) || !pool->tags[i + 1]))
			FAIL("block %zu heads a multi-block buffer of one block", i);
		if (tag == TAG_INTERIOR &&
		    (i + 1 >= limit || tag_is_head(pool->tags[i + 1]) || !pool->tags[i + 1]))
			FAIL("block %zu is an interior block with no tail", i);
		if (tag == TAG_INTERIOR) {
			/* The interior blocks after i up to the run's last: each below the
			 * limit and claimed; the last is checked alone on the next round. */
			size_t last = interior_run_end(pool->tags, i, scan_end) - 1;

			if (last > i + 1 &&
			    (last > limit ||
			     bitmap_count_range(&pool->map, i + 1, last) != last - i - 1))
				FAIL("interior blocks [%zu, %zu) above the boundary or unclaimed",
				     i + 1, last);
			if (last > i + 1) {
				*tagged += last - i - 1;
				i = last - 1;
			}
		}
		if (tag_is_head(tag) &&
		    ((tag & ~TAG_MULTI) >= pool->users_cap || !pool->users[tag & ~TAG_MULTI]))
			FAIL("block %zu is tagged for user %u, who does not exist", i,
			     tag & ~TAG_MULTI);
	}
out:
	return err;
}

int tide_pool_check(struct tide_pool *pool, char *why, size_t len)
{
	char dummy[1];
	size_t unreserved, limit, tagged = 0, heads = 0, cached = 0, purged = 0;
	int err = 0;

	if (!why || !len)
		why = dummy, len = sizeof(dummy);
	why[0] = 0;
	pthread_mutex_lock(&pool->convert_lock);
	pthread_mutex_lock(&pool->lock);
	unreserved = pool_unreserved(pool);
	limit = unreserved >> pool->block_shift;
	if (unreserved % pool->grow_unit || unreserved > pool->max_size)
		FAIL("unreserved %zu is not a multiple of grow_unit within max_size", unreserved);
	if (pool->limit != limit)
		FAIL("claim limit %zu != boundary %zu (blocks)", pool->limit, limit);
	if (!bitmap_check(&pool->map, limit))
		FAIL("bitmap summaries, count or hint disagree with its words");
	err = check_tags_locked(pool, limit, &tagged, &heads, why, len);
	if (err)
		goto out;
	for (struct tcache *c = pool->caches; c; c = c->next) {
		unsigned n = atomic_load_explicit(&c->steal, memory_order_relaxed) == STEAL_DONE
				     ? 0
				     : cache_count(c);

		for (unsigned k = 0; k < n; k++) {
			size_t off = (size_t)((char *)c->slots[k] - pool->base);
			size_t i = off >> pool->block_shift;

			if (off % pool->block_size || i >= limit)
				FAIL("a cached block %p is not a block below the boundary",
				     c->slots[k]);
			if (!bitmap_test(&pool->map, i) || pool->tags[i] != TAG_FREE)
				FAIL("cached block %zu is unclaimed or tagged", i);
		}
		cached += n;
	}
	if (pool->map.count != tagged + cached)
		FAIL("claimed %zu != tagged %zu + cached %zu", pool->map.count, tagged, cached);
	if (heads != stats_live_buffers_locked(pool))
		FAIL("tagged heads %zu != live_buffers %zu", heads,
		     stats_live_buffers_locked(pool));
	for (size_t w = 0; w < (pool->unreserved_high / pool->purge_chunk + 63) / 64; w++)
		purged += (size_t)__builtin_popcountll(pool->purged[w]);
	if (purged != pool->purged_chunks)
		FAIL("purged bits %zu != purged count %zu", purged, pool->purged_chunks);
out:
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&pool->convert_lock);
	return err;
}
