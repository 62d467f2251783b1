/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the pool's counters and what is derived from them.
 *
 * Nothing on the hot path counts: live blocks are the claimed bits minus the blocks parked
 * in thread caches (and minus those purge holds for a moment), read under the pool lock.
 * Buffers are blocks, less the extra blocks of multi-block buffers. The peak comes from
 * cache_sync_peak_locked(), exact for one thread and at most a cache's worth per thread
 * above the truth with several. Event counters are relaxed atomics.
 */
#include <string.h>

#include "internal.h"

size_t stats_live_blocks_locked(struct tide_pool *pool)
{
	return pool->map.count - cache_count_locked(pool) - pool->purging_blocks;
}

size_t stats_live_buffers_locked(struct tide_pool *pool)
{
	return stats_live_blocks_locked(pool) - pool->multi_blocks + pool->multi_buffers;
}

/* Metadata pages that back the unreserved portion: bitmap, tags, purge state. */
static size_t metadata_backing(const struct tide_pool *pool, size_t unreserved)
{
	size_t blocks = unreserved >> pool->block_shift;
	size_t page = pool->page_size;

	if (!unreserved)
		return 0;
	return align_up(bitmap_bytes(blocks), page) + align_up(blocks * sizeof(uint16_t), page) +
	       align_up((unreserved / pool->purge_chunk + 7) / 8, page) +
	       align_up(unreserved / pool->purge_region * sizeof(uint32_t), page);
}

#define LOAD(x) atomic_load_explicit(&pool->x, memory_order_relaxed)

/* The sizes, under the pool lock. */
static void stats_sizes(struct tide_pool *pool, struct tide_stats *st)
{
	size_t live;

	pthread_mutex_lock(&pool->lock);
	cache_sync_peak_locked(pool, NULL);
	live = stats_live_blocks_locked(pool);
	st->unreserved_size = pool_unreserved(pool);
	st->resident_size = st->unreserved_size - pool->purged_chunks * pool->purge_chunk;
	st->live_bytes = live << pool->block_shift;
	st->live_buffers = stats_live_buffers_locked(pool);
	st->peak_live_bytes = pool->peak_live_blocks << pool->block_shift;
	st->cached_bytes = cache_count_locked(pool) << pool->block_shift;
	st->users = pool->nusers;
	pthread_mutex_unlock(&pool->lock);
	st->metadata_size = metadata_backing(pool, st->unreserved_size);
}

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
void tide_pool_stats(const struct tide_pool *cpool, struct tide_stats *st)
{
	struct tide_pool *pool = (struct tide_pool *)cpool; /* the lock, and the sampled peak */

	if (!st)
		return;
	memset(st, 0, sizeof(*st));
	if (!pool)
		return;
	fork_todo_check(pool); /* a fork child's re-lock or lost thread, before the sizes */
	if (call_enter(pool)) {
		stats_sizes(pool, st);
		call_leave();
	}
	st->reserve_size = pool->reserve_size;
	st->block_size = pool->block_size;
	st->grow_unit = pool->grow_unit;
	st->min_size = pool->min_size;
	st->max_size = pool->max_size;
	st->grows = LOAD(grows);
	st->shrinks = LOAD(shrinks);
	st->purges = LOAD(purges);
	st->purged_bytes = LOAD(purged_bytes);
	st->alloc_failures = LOAD(alloc_failures);
	st->bad_frees = LOAD(bad_frees);
	st->vetoes = LOAD(vetoes);
	st->os_failures = LOAD(os_failures);
	st->reentries = LOAD(reentries);
	st->maintenance_runs = LOAD(maintenance_runs);
}
