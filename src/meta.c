/* SPDX-License-Identifier: MIT */
/*
 * meta.c - the metadata mapping: reserved whole at create, committed with the unreserved
 * portion.
 *
 * One mapping holds four arrays, each page-aligned: the bitmap (its words, then the two
 * small summary arrays), the tags (one uint16_t per block), the purged bits (one per purge
 * chunk) and the region epochs (one uint32_t per purge region). It starts as read-only
 * zero pages (os_map_metadata): no memory and, even under vm.overcommit_memory=2, no
 * commit charge. The part of each array that describes [0, unreserved) is made writable
 * before a grow publishes the range (meta_commit) and given back, pages and charge, after
 * a shrink has moved the boundary below it (meta_decommit). So the charge follows the
 * unreserved portion both ways: a 64 GiB pool of 64-byte blocks no longer charges 2 GiB at
 * create. The bitmap summaries (1 bit per 64 words: 16 KiB for the default 64 GiB pool) are
 * committed once at create.
 *
 * Only whole pages that describe nothing below the new boundary are given back, so a page
 * shared by both sides of the boundary stays. Reads above the committed part see zeros.
 * meta_top counts the committed bytes of each array, so a grow commits only pages not
 * committed yet (a grow inside the last committed page makes no system call) and a reset
 * may keep what it has (reset.c).
 */
#include <string.h>

#include "internal.h"

enum {
	META_WORDS,
	META_TAGS,
	META_PURGED,
	META_EPOCHS,
	META_NSLICES
};

/* Bytes of slice s that describe the pool's first `bytes` bytes. */
static size_t slice_need(const struct tide_pool *pool, int s, size_t bytes)
{
	size_t blocks = bytes >> pool->block_shift;

	switch (s) {
	case META_WORDS:
		return (blocks + 63) / 64 * sizeof(uint64_t);
	case META_TAGS:
		return blocks * sizeof(uint16_t);
	case META_PURGED:
		return (bytes / pool->purge_chunk + 63) / 64 * sizeof(uint64_t);
	default:
		return (bytes + pool->purge_region - 1) / pool->purge_region * sizeof(uint32_t);
	}
}

static size_t slice_start(const struct tide_pool *pool, int s)
{
	return s == META_WORDS ? 0 : pool->meta_offset[s];
}

/* One past the last byte of slice s (the words end where the summaries begin). */
static size_t slice_end(const struct tide_pool *pool, int s)
{
	if (s == META_WORDS)
		return (size_t)((char *)pool->map.full - (char *)pool->meta);
	return s + 1 < META_NSLICES ? pool->meta_offset[s + 1] : pool->meta_size;
}

int meta_map(struct tide_pool *pool)
{
	size_t page = pool->page_size;
	size_t npages = pool->reserve_size / pool->purge_chunk;
	size_t nregions = pool->reserve_size / pool->purge_region;
	size_t size = 0, sum_lo, sum_hi;
	int err;

	pool->meta_offset[META_WORDS] = size;
	size += align_up(bitmap_bytes(pool->nblocks), page);
	pool->meta_offset[META_TAGS] = size;
	size += align_up(pool->nblocks * sizeof(uint16_t), page);
	pool->meta_offset[META_PURGED] = size;
	size += align_up((npages + 63) / 64 * sizeof(uint64_t), page);
	pool->meta_offset[META_EPOCHS] = size;
	size += align_up(nregions * sizeof(uint32_t), page);
	pool->meta_size = size;
	err = os_map_metadata(size, &pool->meta);
	if (err)
		return err;
	bitmap_init(&pool->map, pool->meta, pool->nblocks); /* sets pointers, touches nothing */
	pool->tags = (uint16_t *)((char *)pool->meta + pool->meta_offset[META_TAGS]);
	pool->purged = (uint64_t *)((char *)pool->meta + pool->meta_offset[META_PURGED]);
	pool->region_epoch = (uint32_t *)((char *)pool->meta + pool->meta_offset[META_EPOCHS]);
	sum_lo = align_down(slice_end(pool, META_WORDS), page);
	sum_hi = pool->meta_offset[META_TAGS];
	err = os_commit((char *)pool->meta + sum_lo, sum_hi - sum_lo);
	if (err)
		os_release(pool->meta, pool->meta_size);
	return err;
}

/*
 * Give back the committed pages of slice s from byte keep (page aligned, from the slice's
 * start) up: all but a page the slice shares with the next array. A refusal leaves them
 * committed (counted as an OS failure).
 */
static void decommit_above(struct tide_pool *pool, int s, size_t keep)
{
	size_t start = slice_start(pool, s);
	size_t end = align_down(slice_end(pool, s), pool->page_size);
	size_t lo = start + keep, hi = start + pool->meta_top[s];

	if (hi > end)
		hi = end;
	if (hi <= lo)
		return;
	if (os_meta_decommit((char *)pool->meta + lo, hi - lo)) {
		atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
		return;
	}
	pool->meta_top[s] = keep;
}

int meta_commit(struct tide_pool *pool, size_t from, size_t to)
{
	size_t page = pool->page_size, top[META_NSLICES];
	int err = 0;

	(void)from; /* what is committed already is known per slice */
	memcpy(top, pool->meta_top, sizeof(top));
	for (int s = 0; s < META_NSLICES && !err; s++) {
		size_t start = slice_start(pool, s), end = align_up(slice_end(pool, s), page);
		size_t lo = start + pool->meta_top[s];
		size_t hi = align_up(start + slice_need(pool, s, to), page);

		if (hi > end)
			hi = end;
		if (hi <= lo)
			continue;
		err = os_commit((char *)pool->meta + lo, hi - lo);
		if (!err)
			pool->meta_top[s] = hi - start;
	}
	if (err) /* give back what this call committed */
		for (int s = 0; s < META_NSLICES; s++)
			decommit_above(pool, s, top[s]);
	return err;
}

void meta_decommit(struct tide_pool *pool, size_t to, size_t from)
{
	/* [to, from) of the pool went back to reserved (to < from). */
	(void)from;
	for (int s = 0; s < META_NSLICES; s++)
		decommit_above(pool, s, align_up(slice_need(pool, s, to), pool->page_size));
}
