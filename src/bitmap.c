/* SPDX-License-Identifier: MIT */
/*
 * bitmap.c - one bit per block, set = claimed; the pool's source of truth.
 *
 * Access pattern: the hot path never comes here. Thread caches claim and release blocks in
 * batches of a few hundred, lowest address first, so the top of the unreserved portion
 * stays free for shrink; conversions ask for the highest claimed bit; multi-block buffers
 * ask for the lowest run of n clear bits. All under the pool lock.
 *
 * Layout: the words, then two summary arrays with one bit per word: "full" (the word is
 * all ones) and "nonempty" (the word is not zero). Both are zero for an all-clear word, so
 * zero-filled memory is a valid empty map and pages the pool never reached stay
 * untouched (the mapping is lazily backed: metadata grows with the unreserved portion).
 * A search for clear bits skips full words 64 at a time through "full"; a search for the
 * top skips empty words through "nonempty". hint is a word index below which every word
 * is full; releases lower it, claims move it up.
 *
 * Invariants (bitmap_check): each summary bit agrees with its word; count is the number of
 * set bits; every word below hint is full.
 */
#include <string.h>

#include "internal.h"

#define WORD_BITS 64

static inline size_t word_of(size_t bit)
{
	return bit / WORD_BITS;
}

static inline uint64_t bit_of(size_t bit)
{
	return (uint64_t)1 << (bit % WORD_BITS);
}

/* Bits [lo, hi) of a word, 0 <= lo < hi <= 64. */
static inline uint64_t mask_range(unsigned lo, unsigned hi)
{
	uint64_t upper = hi == WORD_BITS ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;

	return upper & ~(((uint64_t)1 << lo) - 1);
}

size_t bitmap_bytes(size_t nbits)
{
	size_t nwords = (nbits + WORD_BITS - 1) / WORD_BITS;
	size_t nsum = (nwords + WORD_BITS - 1) / WORD_BITS;

	return align_up((nwords + 2 * nsum) * sizeof(uint64_t), 64);
}

void bitmap_init(struct bitmap *map, void *mem, size_t nbits)
{
	size_t nwords = (nbits + WORD_BITS - 1) / WORD_BITS;
	size_t nsum = (nwords + WORD_BITS - 1) / WORD_BITS;

	map->words = mem;
	map->full = map->words + nwords;
	map->nonempty = map->full + nsum;
	map->nbits = nbits;
	map->nwords = nwords;
	map->hint = 0;
	map->count = 0;
}

void bitmap_reset(struct bitmap *map, size_t used)
{
	size_t nwords = (used + WORD_BITS - 1) / WORD_BITS;
	size_t nsum = (nwords + WORD_BITS - 1) / WORD_BITS;

	memset(map->words, 0, nwords * sizeof(uint64_t));
	memset(map->full, 0, nsum * sizeof(uint64_t));
	memset(map->nonempty, 0, nsum * sizeof(uint64_t));
	map->hint = 0;
	map->count = 0;
}

static void summarize(struct bitmap *map, size_t w)
{
	uint64_t word = map->words[w];
	uint64_t b = bit_of(w);

	if (word == ~(uint64_t)0)
		map->full[word_of(w)] |= b;
	else
		map->full[word_of(w)] &= ~b;
	if (word)
		map->nonempty[word_of(w)] |= b;
	else
		map->nonempty[word_of(w)] &= ~b;
}

/*
 * The first word in [from, end) whose summary bit, XORed with flip, is set, or end:
 * with the "full" summary and flip ~0, the first word that is not full; with "nonempty"
 * and flip 0, the first word that is not empty.
 */
static size_t next_word(const uint64_t *summary, uint64_t flip, size_t from, size_t end)
{
	size_t s = word_of(from);
	uint64_t hits;

	if (from >= end)
		return end;
	hits = (summary[s] ^ flip) & ~(bit_of(from) - 1);
	for (;;) {
		if (hits) {
			size_t w = s * WORD_BITS + (size_t)__builtin_ctzll(hits);
			return w < end ? w : end;
		}
		if (++s * WORD_BITS >= end)
			return end;
		hits = summary[s] ^ flip;
	}
}

static inline size_t next_nonfull_word(const struct bitmap *map, size_t from, size_t end)
{
	return next_word(map->full, ~(uint64_t)0, from, end);
}

/* Clear bits of word w that lie below limit. */
static inline uint64_t clear_bits_below(const struct bitmap *map, size_t w, size_t limit)
{
	uint64_t open = ~map->words[w];

	if ((w + 1) * WORD_BITS > limit)
		open &= mask_range(0, (unsigned)(limit - w * WORD_BITS));
	return open;
}

size_t bitmap_claim_bits(struct bitmap *map, size_t limit, size_t *out, size_t n)
{
	size_t end = (limit + WORD_BITS - 1) / WORD_BITS;
	size_t got = 0;
	size_t w;

	if (limit > map->nbits)
		limit = map->nbits, end = map->nwords;
	if (map->hint >= end || n == 0)
		return 0;
	w = next_nonfull_word(map, map->hint, end);
	while (got < n && w < end) {
		uint64_t open = clear_bits_below(map, w, limit);
		uint64_t taken = 0;

		while (open && got < n) {
			unsigned b = (unsigned)__builtin_ctzll(open);

			open &= open - 1;
			taken |= (uint64_t)1 << b;
			out[got++] = w * WORD_BITS + b;
		}
		if (taken) {
			map->words[w] |= taken;
			map->count += (size_t)__builtin_popcountll(taken);
			summarize(map, w);
		}
		if (got < n)
			w = next_nonfull_word(map, w + 1, end);
	}
	/* Words the search passed are full now; the hint moves to the first that is not. */
	map->hint = next_nonfull_word(map, map->hint, map->nwords);
	return got;
}

/*
 * The first bit in [from, to) that is set (flip 0) or clear (flip ~0), or to. Words with
 * none are skipped through the matching summary: "nonempty" for set, "full" for clear.
 */
static size_t next_bit(const struct bitmap *map, uint64_t flip, size_t from, size_t to)
{
	const uint64_t *summary = flip ? map->full : map->nonempty;
	size_t w = word_of(from);
	size_t end = (to + WORD_BITS - 1) / WORD_BITS;
	uint64_t hits;

	if (from >= to)
		return to;
	hits = (map->words[w] ^ flip) & ~(bit_of(from) - 1);
	while (!hits) {
		w = next_word(summary, flip, w + 1, end);
		if (w >= end)
			return to;
		hits = map->words[w] ^ flip;
	}
	from = w * WORD_BITS + (size_t)__builtin_ctzll(hits);
	return from < to ? from : to;
}

bool bitmap_claim_run(struct bitmap *map, size_t limit, size_t n, size_t *start)
{
	size_t pos;

	if (limit > map->nbits)
		limit = map->nbits;
	if (n == 0 || n > limit)
		return false;
	pos = map->hint * WORD_BITS;
	for (;;) {
		size_t first = next_bit(map, ~(uint64_t)0, pos, limit);
		size_t blocker;

		if (first + n > limit)
			return false;
		blocker = next_bit(map, 0, first, first + n);
		if (blocker == first + n) {
			bitmap_set_range(map, first, n);
			*start = first;
			return true;
		}
		pos = blocker + 1;
	}
}

/* Apply set (or clear) to bits [start, start + n), word by word. */
static void change_range(struct bitmap *map, size_t start, size_t n, bool set)
{
	size_t end = start + n;

	while (start < end) {
		size_t w = word_of(start);
		unsigned lo = (unsigned)(start % WORD_BITS);
		unsigned hi = end - w * WORD_BITS >= WORD_BITS ? WORD_BITS
							       : (unsigned)(end - w * WORD_BITS);
		uint64_t m = mask_range(lo, hi);

		if (set) {
			tide_assert(!(map->words[w] & m));
			map->words[w] |= m;
			map->count += (size_t)__builtin_popcountll(m);
		} else {
			tide_assert((map->words[w] & m) == m);
			map->words[w] &= ~m;
			map->count -= (size_t)__builtin_popcountll(m);
		}
		summarize(map, w);
		start = (w + 1) * WORD_BITS;
	}
}

void bitmap_set_range(struct bitmap *map, size_t start, size_t n)
{
	change_range(map, start, n, true);
}

void bitmap_clear_range(struct bitmap *map, size_t start, size_t n)
{
	change_range(map, start, n, false);
	if (n && word_of(start) < map->hint)
		map->hint = word_of(start);
}

void bitmap_clear_list(struct bitmap *map, const size_t *bits, size_t n)
{
	size_t lowest = SIZE_MAX;

	/* Bits of one word are cleared together: a flushed cache is mostly runs of neighbours. */
	for (size_t i = 0; i < n;) {
		size_t w = word_of(bits[i]);
		uint64_t m = 0;

		for (; i < n && word_of(bits[i]) == w; i++)
			m |= bit_of(bits[i]);
		tide_assert((map->words[w] & m) == m);
		map->words[w] &= ~m;
		map->count -= (size_t)__builtin_popcountll(m);
		summarize(map, w);
		if (w < lowest)
			lowest = w;
	}
	if (lowest < map->hint)
		map->hint = lowest;
}

/* The highest nonempty word below before (before > 0), or SIZE_MAX. */
static size_t prev_nonempty_word(const struct bitmap *map, size_t before)
{
	size_t w = before - 1;
	size_t s = word_of(w);
	uint64_t busy = map->nonempty[s] & mask_range(0, (unsigned)(w % WORD_BITS) + 1);

	for (;;) {
		if (busy)
			return s * WORD_BITS + 63 - (size_t)__builtin_clzll(busy);
		if (s == 0)
			return SIZE_MAX;
		busy = map->nonempty[--s];
	}
}

size_t bitmap_top(const struct bitmap *map, size_t limit)
{
	size_t w;
	uint64_t busy;

	if (limit > map->nbits)
		limit = map->nbits;
	if (limit == 0)
		return 0;
	w = word_of(limit - 1);
	busy = map->words[w] & mask_range(0, (unsigned)(limit - w * WORD_BITS));
	while (!busy) {
		if (w == 0)
			return 0;
		w = prev_nonempty_word(map, w);
		if (w == SIZE_MAX)
			return 0;
		busy = map->words[w];
	}
	return w * WORD_BITS + WORD_BITS - (size_t)__builtin_clzll(busy);
}

size_t bitmap_count_range(const struct bitmap *map, size_t start, size_t end)
{
	size_t total = 0;

	while (start < end) {
		size_t w = word_of(start);
		unsigned lo = (unsigned)(start % WORD_BITS);
		unsigned hi = end - w * WORD_BITS >= WORD_BITS ? WORD_BITS
							       : (unsigned)(end - w * WORD_BITS);

		total += (size_t)__builtin_popcountll(map->words[w] & mask_range(lo, hi));
		start = (w + 1) * WORD_BITS;
	}
	return total;
}

bool bitmap_check(const struct bitmap *map, size_t limit)
{
	size_t end, count = 0;

	if (limit > map->nbits)
		limit = map->nbits;
	end = (limit + WORD_BITS - 1) / WORD_BITS;
	for (size_t w = 0; w < end; w++) {
		uint64_t word = map->words[w];
		bool full = map->full[word_of(w)] & bit_of(w);
		bool nonempty = map->nonempty[word_of(w)] & bit_of(w);

		if (full != (word == ~(uint64_t)0) || nonempty != (word != 0))
			return false;
		if (w < map->hint && word != ~(uint64_t)0)
			return false;
		count += (size_t)__builtin_popcountll(word);
	}
	if (end && limit % WORD_BITS)
		count -= (size_t)__builtin_popcountll(
			map->words[end - 1] & ~mask_range(0, (unsigned)(limit % WORD_BITS)));
	/* A bit set above the limit would show as count exceeding what lies below it. */
	return count == map->count;
}
