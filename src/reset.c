/* SPDX-License-Identifier: MIT */
/*
 * reset.c - put a pool back as tide_pool_create() left it, without unmapping anything.
 *
 * For programs that run many short, independent lives of one pool (the differential
 * fuzzer runs one per input): creating and destroying a pool maps, commits, first-touches
 * and unmaps its range each time, and on a virtual machine those system calls and page
 * faults cost more than the work done in between. A reset keeps the reservation, the
 * metadata mapping and the initially committed range, and forgets everything else:
 *
 *   - the hook hears TO_RESERVED for the whole unreserved portion and is removed (as at
 *     destroy: a fresh pool has no hook), the range's ASan/valgrind poisoning forgotten
 *     first, and every block of what stays is poisoned again as free at the end;
 *   - every thread's cache is detached as at destroy (its blocks are not put back one by
 *     one: the whole bitmap is cleared), every buffer freed, every user but the pool's
 *     default one destroyed (their handles become invalid);
 *   - the unreserved portion goes back to initial_size (a shrink without the hook, or a
 *     grow when it was shrunk below), the purge state and the maintenance samples are
 *     cleared, and every counter reads as a fresh pool's (grows is 1 when initial_size
 *     committed a range at create, else 0).
 *
 * What the pool grew beyond initial_size is made inaccessible again (PROT_NONE) but keeps
 * its pages, and the metadata pages committed for it stay committed (meta.c keeps count,
 * so the next grow commits none of them again, zero above the boundary as fresh pages
 * would read): a pool reset many times keeps the memory of its largest life, at most
 * max_size and its metadata, in no statistic, and the next grow costs one mprotect and no
 * page fault. With nothing grown beyond the initial range, a reset makes no system call. The bytes
 * of the initially committed range are not cleared: the pool never promised zeroed buffers. A pool
 * with TIDE_BACKGROUND gets its maintenance thread restarted, so no purge or sample is in flight
 * while the state is cleared.
 *
 * Afterwards tide_pool_check() passes and tide_pool_stats() equals a fresh pool's of the
 * same configuration field by field (test_pool checks both).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "poison.h"

/*
 * Every block free, every tag clear, nothing purged, no sample: under pool->lock. The
 * metadata is cleared below the boundary only, the part that is committed (meta.c): above
 * it no bit or tag is set (tide_pool_check), a shrink forgot the purged bits, and a grow
 * stamps the region epochs of what it adds.
 */
static void clear_blocks_locked(struct tide_pool *pool)
{
	size_t cur = pool_unreserved(pool);
	size_t blocks = cur >> pool->block_shift;
	size_t chunks = cur / pool->purge_chunk;
	size_t regions = (cur + pool->purge_region - 1) / pool->purge_region;

	bitmap_reset(&pool->map, blocks);
	memset(pool->tags, 0, blocks * sizeof(*pool->tags));
	memset(pool->purged, 0, (chunks + 63) / 64 * sizeof(*pool->purged));
	memset(pool->region_epoch, 0, regions * sizeof(*pool->region_epoch));
	pool->multi_buffers = 0;
	pool->multi_blocks = 0;
	pool->peak_live_blocks = 0;
	pool->demand_tick = 0;
	pool->release_ns = 0;
	pool->purged_chunks = 0;
	pool->purging_blocks = 0;
	pool->purge_cursor = 0;
	pool->epoch = 0;
	pool->stamp_epoch = 0;
	pool->sweep_epoch = 0;
	pool->purge_pending = true; /* the regions a reset leaves are looked at once */
	memset(pool->demand_time, 0, sizeof(pool->demand_time));
	memset(pool->demand_blocks, 0, sizeof(pool->demand_blocks));
	pool->demand_head = 0;
	pool->demand_n = 0;
	pool->last_sample_ns = 0;
	user_table_reset_locked(pool);
}

/* Back to initial_size: the free range above it goes, or a range below it comes back. */
static int resize_to_initial(struct tide_pool *pool)
{
	size_t cur = pool_unreserved(pool), initial = pool->initial_size;
	ssize_t got;

	if (cur < initial)
		return pool_grow_locked(pool, initial - cur);
	if (cur == initial)
		return 0;
	got = pool_shrink_locked(pool, cur - initial, initial, true);
	return got < 0 ? (int)got : 0;
}

static void clear_counters(struct tide_pool *pool)
{
	atomic_store_explicit(&pool->grows, pool->initial_size ? 1 : 0, memory_order_relaxed);
	atomic_store_explicit(&pool->shrinks, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->purges, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->purged_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->alloc_failures, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->bad_frees, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->vetoes, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->os_failures, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->reentries, 0, memory_order_relaxed);
	atomic_store_explicit(&pool->maintenance_runs, 0, memory_order_relaxed);
}

/**
 * tide_pool_reset() - make a pool as tide_pool_create() left it, keeping its mappings.
 * @pool: the pool; no other thread may use it during the call (as for destroy).
 *
 * Frees every buffer, destroys every user but the default one, removes the hook (which
 * hears TO_RESERVED for the whole unreserved portion first), converts the unreserved
 * portion back to initial_size and clears every counter and sample. Internal: for the
 * fuzzer and tests, not exported from the shared library.
 *
 * Return: 0; -EINVAL for a NULL pool; -EDEADLK from inside the pool's own hook; the OS's
 * refusal to decommit or commit the range back to initial_size (-ENOMEM, ...), or
 * -EAGAIN when the maintenance thread cannot be restarted; after an error the pool is
 * valid, empty and hookless, but its size and counters may differ from a fresh pool's.
 */
int tide_pool_reset(struct tide_pool *pool)
{
	int err, cancel;

	if (!pool)
		return -EINVAL;
	if (pool_hook_running_here(pool))
		return -EDEADLK;
	cancel = cancel_off(); /* the hook, the join, the locks: as at destroy */
	maintain_stop(pool);
	pthread_mutex_lock(&pool->convert_lock);
	pool_drop_hook_locked(pool);
	/* As at destroy: the caches are dropped, not drained; the bitmap is cleared below. */
	cache_detach_pool(pool);
	pthread_mutex_lock(&pool->lock);
	clear_blocks_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	err = resize_to_initial(pool);
	poison_range(pool, pool->base, pool_unreserved(pool)); /* every block of it is free */
	if (!err) {
		pthread_mutex_lock(&pool->lock);
		pool->unreserved_high = pool_unreserved(pool);
		pthread_mutex_unlock(&pool->lock);
		clear_counters(pool);
		pool->created_ns = os_now_ns();
	}
	pthread_mutex_unlock(&pool->convert_lock);
	if (pool->flags & TIDE_BACKGROUND) {
		int started = maintain_start(pool);

		if (!err && started)
			err = started;
	}
	cancel_restore(cancel);
	return err;
}
