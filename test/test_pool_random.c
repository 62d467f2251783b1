/* SPDX-License-Identifier: MIT */
/*
 * Description: the pool under random operations, against a model of its live buffers.
 *
 * The model is a table of live buffers: address, size in blocks, and a seed from which
 * every byte of the buffer's content is derived. Operations: alloc of a random size
 * (one block to several grow units), free of a random live buffer (its content checked
 * first), bulk alloc and free, bad frees (already freed, interior, above the boundary),
 * explicit grow and shrink, maintain, a cache flush, and a hook that now and then vetoes.
 * After every step: the invariant checker, stats equal to the model (live buffers and
 * bytes), every live buffer inside [base, boundary), no two overlapping, the boundary on a
 * grow_unit edge within max_size, and the hook's registrations equal to the unreserved
 * portion. Every 64 steps all live contents are checked.
 *
 * TIDE_SEED picks the seed; TIDE_TEST_SCALE multiplies the steps.
 */
#include "pool_helpers.h"

#define MAX_LIVE  4096
#define MAX_UNITS 48

struct live {
	char *addr;
	size_t blocks;
	uint64_t seed;
};

static struct live live[MAX_LIVE];
static size_t nlive;
static size_t live_blocks;
static uint64_t next_seed = 1;
static unsigned long ops[16];

static void fill(struct live *l)
{
	uint64_t s = l->seed;
	size_t n = l->blocks * TP_BLOCK / sizeof(uint64_t);

	for (size_t i = 0; i < n; i++)
		((uint64_t *)l->addr)[i] = s + i * 0x9E3779B97F4A7C15ULL;
}

static bool intact(const struct live *l)
{
	uint64_t s = l->seed;
	size_t n = l->blocks * TP_BLOCK / sizeof(uint64_t);

	for (size_t i = 0; i < n; i++)
		if (((uint64_t *)l->addr)[i] != s + i * 0x9E3779B97F4A7C15ULL) {
			fprintf(stderr, "buffer %p (%zu blocks): word %zu overwritten\n",
				(void *)l->addr, l->blocks, i);
			return false;
		}
	return true;
}

static void add_live(char *addr, size_t blocks)
{
	struct live *l = &live[nlive++];

	l->addr = addr;
	l->blocks = blocks;
	l->seed = next_seed++ * 0xD1B54A32D192ED03ULL;
	live_blocks += blocks;
	fill(l);
}

static void drop_live(size_t i)
{
	live_blocks -= live[i].blocks;
	live[i] = live[--nlive];
}

static int cmp_live(const void *a, const void *b)
{
	const struct live *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Everything the model knows holds; false stops the run. */
static bool model_agrees(struct tide_pool *pool, struct hook *h, size_t step, bool contents)
{
	char *base = tide_pool_base(pool), *top = tide_pool_boundary(pool);
	unsigned long failed = checks_failed;
	struct tide_stats st;
	static struct live sorted[MAX_LIVE];

	CHECK_POOL(pool);
	tide_pool_stats(pool, &st);
	CHECKF(st.live_buffers == nlive, "step %zu: live_buffers %zu, model %zu", step,
	       st.live_buffers, nlive);
	CHECKF(st.live_bytes == live_blocks * TP_BLOCK, "step %zu: live_bytes %zu, model %zu", step,
	       st.live_bytes, live_blocks * TP_BLOCK);
	CHECKF(st.unreserved_size == (size_t)(top - base) && st.unreserved_size % TP_UNIT == 0 &&
		       st.unreserved_size <= MAX_UNITS * TP_UNIT,
	       "step %zu: unreserved %zu", step, st.unreserved_size);
	CHECK(st.resident_size <= st.unreserved_size);
	CHECK(hook_agrees(h, "model_agrees"));
	memcpy(sorted, live, nlive * sizeof(live[0]));
	qsort(sorted, nlive, sizeof(sorted[0]), cmp_live);
	for (size_t i = 0; i < nlive; i++) {
		struct live *l = &sorted[i];

		CHECKF(l->addr >= base && l->addr + l->blocks * TP_BLOCK <= top,
		       "step %zu: buffer %p outside [base, boundary)", step, (void *)l->addr);
		if (i)
			CHECKF(sorted[i - 1].addr + sorted[i - 1].blocks * TP_BLOCK <= l->addr,
			       "step %zu: buffers %p and %p overlap", step,
			       (void *)sorted[i - 1].addr, (void *)l->addr);
		if (tide_buffer_size(pool, l->addr) != l->blocks * TP_BLOCK)
			CHECKF(0, "step %zu: tide_buffer_size(%p) = %zu, model %zu", step,
			       (void *)l->addr, tide_buffer_size(pool, l->addr),
			       l->blocks * TP_BLOCK);
		if (contents)
			CHECKF(intact(l), "step %zu: content of %p", step, (void *)l->addr);
	}
	return checks_failed == failed;
}

/*
 * Whether the model has n free contiguous blocks below end (NULL: below max_size). Auto
 * grow can only add whole units above the boundary, so a run that crosses the boundary
 * counts when the pool may grow.
 */
static bool model_has_run(struct tide_pool *pool, size_t n, char *end)
{
	static struct live sorted[MAX_LIVE];
	char *pos = tide_pool_base(pool);

	if (!end)
		end = pos + MAX_UNITS * TP_UNIT;
	memcpy(sorted, live, nlive * sizeof(live[0]));
	qsort(sorted, nlive, sizeof(sorted[0]), cmp_live);
	for (size_t i = 0; i <= nlive; i++) {
		char *next = i < nlive ? sorted[i].addr : end;

		if (next > end)
			next = end;
		if (next >= pos && (size_t)(next - pos) >= n * TP_BLOCK)
			return true;
		if (i < nlive)
			pos = sorted[i].addr + sorted[i].blocks * TP_BLOCK;
	}
	return false;
}

static size_t pick_blocks(uint64_t *rng)
{
	switch (rng_below(rng, 8)) {
	case 0:
		return 2 + rng_below(rng, 6);
	case 1:
		return 1 + rng_below(rng, 3 * TP_UNIT / TP_BLOCK); /* up to three units */
	default:
		return 1;
	}
}

static void run(uint64_t seed, size_t steps)
{
	struct tide_pool *pool = tp_create(TIDE_AUTO_GROW, 0, MAX_UNITS * TP_UNIT);
	struct hook h;
	uint64_t rng = seed;
	void *bulk[64];

	hook_install(&h, pool);
	for (size_t step = 0; step < steps; step++) {
		unsigned op = (unsigned)rng_below(&rng, 16);

		ops[op]++;
		h.veto_up = rng_below(&rng, 16) == 0 ? -EIO : 0;
		h.veto_down = rng_below(&rng, 16) == 0 ? -EIO : 0;
		switch (op) {
		case 0:
		case 1:
		case 2:
		case 3: { /* alloc: bytes anywhere in the last block of the run */
			size_t blocks = pick_blocks(&rng);
			size_t bytes = (blocks - 1) * TP_BLOCK + 1 + rng_below(&rng, TP_BLOCK);
			char *b;

			if (nlive == MAX_LIVE)
				break;
			b = tide_alloc(pool, bytes);
			if (b) {
				add_live(b, blocks);
			} else {
				char *top = tide_pool_boundary(pool);

				CHECKF(!model_has_run(pool, blocks, top),
				       "step %zu: alloc of %zu blocks failed below the boundary "
				       "with "
				       "room for it (%zu live blocks)",
				       step, blocks, live_blocks);
				CHECKF(h.veto_up || !model_has_run(pool, blocks, NULL),
				       "step %zu: alloc of %zu blocks failed with room under "
				       "max_size "
				       "(%zu live blocks)",
				       step, blocks, live_blocks);
			}
			break;
		}
		case 4:
		case 5:
		case 6: { /* free a live buffer, content checked */
			size_t i;

			if (!nlive)
				break;
			i = (size_t)rng_below(&rng, nlive);
			CHECKF(intact(&live[i]), "step %zu: content at free", step);
			CHECKF(tide_free(pool, live[i].addr) == 0, "step %zu: free %p", step,
			       (void *)live[i].addr);
			drop_live(i);
			break;
		}
		case 7: { /* bulk alloc */
			unsigned n = 1 + (unsigned)rng_below(&rng, 64), got;

			if (nlive + n > MAX_LIVE)
				break;
			got = tide_alloc_bulk(pool, bulk, n);
			for (unsigned i = 0; i < got; i++)
				add_live(bulk[i], 1);
			break;
		}
		case 8: { /* bulk free of up to 64 live buffers */
			unsigned n = (unsigned)rng_below(&rng, 65);

			if (n > nlive)
				n = (unsigned)nlive;
			for (unsigned i = 0; i < n; i++) {
				CHECK(intact(&live[nlive - 1 - i]));
				bulk[i] = live[nlive - 1 - i].addr;
			}
			CHECKF(tide_free_bulk(pool, bulk, n) == 0, "step %zu: free_bulk", step);
			for (unsigned i = 0; i < n; i++)
				drop_live(nlive - 1);
			break;
		}
		case 9: { /* a bad free: nothing changes */
			struct snap before = tp_snap(pool), after;
			char *bad;
			int rc;

			switch (rng_below(&rng, 3)) {
			case 0: /* interior */
				if (!nlive)
					goto done;
				bad = live[rng_below(&rng, nlive)].addr + 1 + rng_below(&rng, 64);
				break;
			case 1: /* above the boundary */
				bad = (char *)tide_pool_boundary(pool) +
				      TP_BLOCK * rng_below(&rng, 64);
				break;
			default: { /* freed: allocate, free, free again */
				bad = tide_alloc(pool, 1);
				if (!bad)
					goto done;
				CHECK_EQ(tide_free(pool, bad), 0);
				before = tp_snap(pool);
				break;
			}
			}
			rc = tide_free(pool, bad);
			after = tp_snap(pool);
			CHECKF(rc == -EINVAL, "step %zu: bad free of %p: %d", step, (void *)bad,
			       rc);
			CHECK(tp_same(&before, &after, "bad_frees", "bad free"));
		done:
			break;
		}
		case 10: { /* grow */
			struct snap before = tp_snap(pool), after;
			int rc = tide_pool_grow(pool, TP_UNIT * (1 + rng_below(&rng, 3)));

			after = tp_snap(pool);
			CHECKF(rc == 0 || rc == -EIO || rc == -ENOSPC, "step %zu: grow %d", step,
			       rc);
			if (rc)
				CHECK(tp_same(&before, &after, "vetoes", "refused grow"));
			break;
		}
		case 11:
		case 12: { /* shrink */
			struct snap before = tp_snap(pool), after;
			ssize_t got = tide_pool_shrink(pool, TP_UNIT * (1 + rng_below(&rng, 4)));

			after = tp_snap(pool);
			CHECKF(got >= 0 || got == -EIO || got == -EBUSY, "step %zu: shrink %zd",
			       step, got);
			if (got < 0)
				CHECK(tp_same(&before, &after, "vetoes", "refused shrink"));
			else
				CHECK_EQ(before.st.unreserved_size - after.st.unreserved_size,
					 (size_t)got);
			break;
		}
		case 13:
			CHECK(tide_pool_maintain(pool) >= -1);
			break;
		case 14:
			tide_pool_flush_cache(pool);
			break;
		default: /* free everything now and then so the boundary can come down */
			if (rng_below(&rng, 8))
				break;
			while (nlive) {
				CHECK(intact(&live[nlive - 1]));
				CHECK_EQ(tide_free(pool, live[nlive - 1].addr), 0);
				drop_live(nlive - 1);
			}
			break;
		}
		if (!model_agrees(pool, &h, step, step % 64 == 0)) {
			fprintf(stderr, "seed %#" PRIx64 ": stopping at step %zu (op %u)\n", seed,
				step, op);
			break;
		}
	}
	while (nlive) {
		CHECK(intact(&live[nlive - 1]));
		CHECK_EQ(tide_free(pool, live[nlive - 1].addr), 0);
		drop_live(nlive - 1);
	}
	h.veto_down = 0;
	CHECK(tide_pool_shrink(pool, MAX_UNITS * TP_UNIT) >= 0 || pool_unreserved(pool) == 0);
	CHECK_EQ(pool_unreserved(pool), 0);
	CHECK_POOL(pool);
	CHECK_HOOK(&h);
	tide_pool_destroy(pool);
}

int main(void)
{
	uint64_t seed = test_seed(0x5eed);
	const char *scale_env = getenv("TIDE_TEST_SCALE");
	size_t scale = scale_env ? strtoul(scale_env, NULL, 0) : 1;
	size_t steps = 3000 * (scale ? scale : 1);
	unsigned long total = 0;

	printf("test_pool_random: seed %#" PRIx64 ", %zu steps per run, 3 runs\n", seed, steps);
	for (unsigned r = 0; r < 3; r++)
		run(seed + r, steps);
	for (unsigned i = 0; i < 16; i++)
		total += ops[i];
	printf("test_pool_random: %lu operations, each followed by the invariant checker\n", total);
	return test_exit("test_pool_random");
}
