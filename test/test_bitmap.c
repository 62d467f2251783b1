/* SPDX-License-Identifier: MIT */
/*
 * Description: the bitmap (src/bitmap.c) against a naive oracle, a bool per bit.
 *
 * Random operations - claim single bits, claim runs of n, set and clear ranges, test, top,
 * count - on maps of 1, 63, 64, 65, 4095, 4097 and 262145 bits (the word and summary-word
 * edges), with a search limit that moves up and down the way the boundary does: it rises
 * freely and falls only to the highest set bit or above, since nothing may be set above
 * it. After every step the oracle and the bitmap agree, and bitmap_check() passes.
 *
 * The map memory comes from calloc of exactly bitmap_bytes(), so the sanitizers catch a
 * read or write past it. TIDE_SEED picks the seed; TIDE_TEST_SCALE multiplies the steps.
 */
#include "internal.h"
#include "helpers.h"

struct oracle {
	bool *bit;
	size_t nbits;
	size_t count;
};

static size_t steps_done;

static size_t oracle_top(const struct oracle *o, size_t limit)
{
	for (size_t i = limit; i > 0; i--)
		if (o->bit[i - 1])
			return i;
	return 0;
}

static size_t oracle_count(const struct oracle *o, size_t start, size_t end)
{
	size_t n = 0;

	for (size_t i = start; i < end; i++)
		n += o->bit[i];
	return n;
}

/* Lowest start of n clear bits ending at or below limit; nbits + 1 when none. */
static size_t oracle_find_run(const struct oracle *o, size_t limit, size_t n)
{
	size_t run = 0;

	for (size_t i = 0; i < limit; i++) {
		run = o->bit[i] ? 0 : run + 1;
		if (run == n)
			return i + 1 - n;
	}
	return o->nbits + 1;
}

static void oracle_set(struct oracle *o, size_t start, size_t n, bool v)
{
	for (size_t i = start; i < start + n; i++) {
		o->count += v ? !o->bit[i] : -(size_t)o->bit[i];
		o->bit[i] = v;
	}
}

/* Compare every bit and the count; called after every step. */
static bool agree(const struct bitmap *map, const struct oracle *o, size_t limit, const char *op,
		  size_t step)
{
	bool ok = true;

	CHECKF(bitmap_check(map, limit), "bitmap_check after %s, step %zu, limit %zu", op, step,
	       limit);
	if (map->count != o->count) {
		CHECKF(map->count == o->count, "count %zu != oracle %zu after %s, step %zu",
		       map->count, o->count, op, step);
		ok = false;
	}
	for (size_t i = 0; i < o->nbits && ok; i++)
		if (bitmap_test(map, i) != o->bit[i]) {
			CHECKF(0, "bit %zu is %d, oracle %d after %s, step %zu", i,
			       bitmap_test(map, i), o->bit[i], op, step);
			ok = false;
		}
	return ok;
}

/* A run length: mostly short, sometimes spanning words. */
static size_t pick_len(uint64_t *rng, size_t nbits)
{
	size_t max;

	switch (rng_below(rng, 4)) {
	case 0:
		max = 1;
		break;
	case 1:
		max = 8;
		break;
	case 2:
		max = 130;
		break;
	default:
		max = nbits;
		break;
	}
	if (max > nbits)
		max = nbits;
	return 1 + (size_t)rng_below(rng, max);
}

static void run_size(size_t nbits, size_t steps, uint64_t seed)
{
	uint64_t rng = seed ^ (nbits * 0x9E3779B97F4A7C15ULL);
	size_t bytes = bitmap_bytes(nbits);
	void *mem = calloc(1, bytes ? bytes : 1);
	struct oracle o = {calloc(nbits, sizeof(bool)), nbits, 0};
	size_t *out = calloc(nbits + 1, sizeof(size_t));
	struct bitmap map;
	size_t limit = nbits;

	REQUIRE(mem && o.bit && out);
	CHECKF(bytes % 64 == 0, "bitmap_bytes(%zu) = %zu is not a multiple of 64", nbits, bytes);
	CHECKF(bytes * 8 >= nbits, "bitmap_bytes(%zu) = %zu holds fewer bits", nbits, bytes);
	bitmap_init(&map, mem, nbits);
	CHECK_EQ(map.nbits, nbits);
	CHECK_EQ(map.count, 0);
	CHECK(bitmap_check(&map, nbits));
	CHECK_EQ(bitmap_top(&map, nbits), 0);
	CHECK_EQ(bitmap_count_range(&map, 0, nbits), 0);

	for (size_t step = 0; step < steps; step++) {
		unsigned op = (unsigned)rng_below(&rng, 10);
		const char *name = "?";

		switch (op) {
		case 0:
		case 1: { /* claim single bits */
			size_t n = pick_len(&rng, nbits);
			size_t got = bitmap_claim_bits(&map, limit, out, n);
			size_t want = 0;

			name = "claim_bits";
			for (size_t i = 0; i < limit && want < n; i++) {
				if (o.bit[i])
					continue;
				if (want < got && out[want] != i)
					CHECKF(0,
					       "claim_bits(limit %zu, n %zu): out[%zu] = %zu, "
					       "oracle %zu (nbits %zu step %zu)",
					       limit, n, want, out[want], i, nbits, step);
				o.bit[i] = true;
				o.count++;
				want++;
			}
			CHECKF(got == want, "claim_bits(limit %zu, n %zu) got %zu, oracle %zu",
			       limit, n, got, want);
			break;
		}
		case 2:
		case 3: { /* claim a run */
			size_t n = pick_len(&rng, nbits);
			size_t start = (size_t)-1;
			size_t want = oracle_find_run(&o, limit, n);
			bool got = bitmap_claim_run(&map, limit, n, &start);

			name = "claim_run";
			CHECKF(got == (want <= nbits),
			       "claim_run(limit %zu, n %zu) = %d, oracle %s (nbits %zu step %zu)",
			       limit, n, got, want <= nbits ? "found" : "none", nbits, step);
			if (got && want <= nbits)
				CHECKF(start == want,
				       "claim_run(limit %zu, n %zu) at %zu, oracle %zu", limit, n,
				       start, want);
			if (want <= nbits)
				oracle_set(&o, want, n, true);
			break;
		}
		case 4: { /* set a clear range */
			size_t s, n = 0, max = pick_len(&rng, nbits);

			name = "set_range";
			if (!limit)
				break;
			s = (size_t)rng_below(&rng, limit);
			while (s + n < limit && n < max && !o.bit[s + n])
				n++;
			if (!n)
				break;
			bitmap_set_range(&map, s, n);
			oracle_set(&o, s, n, true);
			break;
		}
		case 5: { /* clear a list of set bits, mostly in order, as a cache flush does */
			size_t list[64], n = 0, s;

			name = "clear_list";
			if (!limit)
				break;
			s = (size_t)rng_below(&rng, limit);
			for (size_t i = s; i < limit && n < 64; i += 1 + (size_t)rng_below(&rng, 3))
				if (o.bit[i])
					list[n++] = i;
			if (n > 2 && rng_below(&rng, 2)) { /* and sometimes out of order */
				size_t t = list[0];

				list[0] = list[n - 1];
				list[n - 1] = t;
			}
			bitmap_clear_list(&map, list, n);
			for (size_t i = 0; i < n; i++)
				oracle_set(&o, list[i], 1, false);
			break;
		}
		case 6: { /* clear a set range */
			size_t s, n = 0, max = pick_len(&rng, nbits);

			name = "clear_range";
			if (!limit)
				break;
			s = (size_t)rng_below(&rng, limit);
			while (s + n < limit && n < max && o.bit[s + n])
				n++;
			if (!n)
				break;
			bitmap_clear_range(&map, s, n);
			oracle_set(&o, s, n, false);
			break;
		}
		case 7: { /* top and count over random windows */
			size_t lim = (size_t)rng_below(&rng, nbits + 1);
			size_t a = (size_t)rng_below(&rng, nbits + 1);
			size_t b = a + (size_t)rng_below(&rng, nbits - a + 1);

			name = "top/count";
			CHECKF(bitmap_top(&map, lim) == oracle_top(&o, lim),
			       "top(%zu) = %zu, oracle %zu (nbits %zu step %zu)", lim,
			       bitmap_top(&map, lim), oracle_top(&o, lim), nbits, step);
			CHECKF(bitmap_count_range(&map, a, b) == oracle_count(&o, a, b),
			       "count_range(%zu, %zu) = %zu, oracle %zu", a, b,
			       bitmap_count_range(&map, a, b), oracle_count(&o, a, b));
			break;
		}
		case 8: { /* move the limit: up anywhere, down to the top at least */
			size_t top = oracle_top(&o, nbits);

			name = "limit";
			limit = top + (size_t)rng_below(&rng, nbits - top + 1);
			break;
		}
		default: { /* clear everything now and then so claims keep succeeding */
			name = "clear_all";
			if (rng_below(&rng, 4))
				break;
			for (size_t i = 0; i < nbits;) {
				size_t n = 0;

				while (i + n < nbits && o.bit[i + n])
					n++;
				if (n) {
					bitmap_clear_range(&map, i, n);
					oracle_set(&o, i, n, false);
				}
				i += n + 1;
			}
			break;
		}
		}
		steps_done++;
		if (!agree(&map, &o, limit, name, step)) {
			fprintf(stderr, "nbits %zu: stopping at step %zu (seed %#" PRIx64 ")\n",
				nbits, step, seed);
			break;
		}
	}

	/* Edges: a zero limit finds nothing; a full map finds nothing. */
	CHECK_EQ(bitmap_claim_bits(&map, 0, out, 1), 0);
	if (checks_failed) {
		fprintf(stderr, "nbits %zu: edges skipped after a failure\n", nbits);
	} else {
		size_t s;

		CHECK(!bitmap_claim_run(&map, 0, 1, &s));
		while (bitmap_claim_bits(&map, nbits, out, nbits))
			;
		CHECK_EQ(map.count, nbits);
		CHECK(!bitmap_claim_run(&map, nbits, 1, &s));
		CHECK_EQ(bitmap_top(&map, nbits), nbits);
		CHECK(bitmap_check(&map, nbits));
		bitmap_clear_range(&map, 0, nbits);
		CHECK_EQ(map.count, 0);
		CHECK(bitmap_claim_run(&map, nbits, nbits, &s) && s == 0);
		CHECK(bitmap_check(&map, nbits));
	}
	free(out);
	free(o.bit);
	free(mem);
}

/*
 * A claim stopped by the limit inside a word leaves that word open: when the limit rises,
 * the bits above the old limit are found (by single claims and by runs).
 */
static void test_limit_inside_word(void)
{
	static const size_t cases[][2] = {{128, 50}, {63, 50}, {4097, 4000}, {200, 64}};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		size_t nbits = cases[c][0], limit = cases[c][1], s = 0;
		void *mem = calloc(1, bitmap_bytes(nbits));
		size_t *out = calloc(nbits, sizeof(size_t));
		struct bitmap map;

		REQUIRE(mem && out);
		bitmap_init(&map, mem, nbits);
		CHECK_EQ(bitmap_claim_bits(&map, limit, out, nbits), limit);
		CHECKF(bitmap_check(&map, limit), "nbits %zu: check after claim_bits(limit %zu)",
		       nbits, limit);
		CHECKF(bitmap_claim_run(&map, nbits, 8, &s) && s == limit,
		       "nbits %zu: claim_bits(limit %zu, n %zu), then claim_run(limit %zu, 8) "
		       "must give %zu (got start %zu)",
		       nbits, limit, nbits, nbits, limit, s);
		CHECKF(bitmap_claim_bits(&map, nbits, out, 1) == 1 && out[0] == limit + 8,
		       "nbits %zu: then claim_bits(limit %zu, 1) must give %zu", nbits, nbits,
		       limit + 8);
		CHECKF(bitmap_check(&map, nbits), "nbits %zu: check at the end", nbits);
		free(out);
		free(mem);
	}
}

int main(void)
{
	static const size_t sizes[] = {1, 63, 64, 65, 4095, 4097, 262145};
	uint64_t seed = test_seed(0x7431de);
	const char *scale_env = getenv("TIDE_TEST_SCALE");
	size_t scale = scale_env ? strtoul(scale_env, NULL, 0) : 1;

	if (!scale)
		scale = 1;
	printf("test_bitmap: seed %#" PRIx64 "\n", seed);
	test_limit_inside_word();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t steps = sizes[i] > 100000 ? 300 : 4000;

		if (under_valgrind())
			steps /= 10;

		run_size(sizes[i], steps * scale, seed);
	}
	printf("test_bitmap: %zu random steps over %zu map sizes\n", steps_done,
	       sizeof(sizes) / sizeof(sizes[0]));
	return test_exit("test_bitmap");
}
