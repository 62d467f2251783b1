/* SPDX-License-Identifier: MIT */
/*
 * Description: the pool contract (tide.h, man 7 tide), one test function per sentence.
 *
 * Each function names the sentence it checks. After every step the invariant checker
 * (tide_pool_check) runs; a refused call is compared with a snapshot of the pool's
 * visible state (stats and boundary) taken before it, so "nothing changed" is checked
 * field by field. Hook tests use the recording hook of pool_helpers.h, which also checks
 * that the registered ranges are exactly the unreserved portion after every call.
 *
 * The pools are small (64 MiB reserved, 64 KiB grow unit) so the test is quick under the
 * sanitizers and Valgrind; one test creates a default 64 GiB pool.
 */
#include "pool_helpers.h"

static size_t page;

/* A buffer lies in the unreserved portion, on a block edge. */
static bool in_pool(struct tide_pool *pool, void *buf)
{
	char *b = buf, *base = tide_pool_base(pool);

	return b >= base && b < (char *)tide_pool_boundary(pool) &&
	       (size_t)(b - base) % TP_BLOCK == 0;
}

/* "block_size: power of two, 64 B..1 MiB"; every field validated (-EINVAL). */
static void test_config_validation(void)
{
	struct tide_pool_config good = {
		.block_size = TP_BLOCK,
		.reserve_size = TP_RESERVE,
		.grow_unit = TP_UNIT,
	};
	struct {
		const char *what;
		struct tide_pool_config cfg;
	} bad[] = {
		{"block_size 3000 (not a power of two)", {.block_size = 3000}},
		{"block_size 32 (below 64)", {.block_size = 32}},
		{"block_size 2 MiB (above 1 MiB)", {.block_size = 2 * MiB}},
		{"block_size 1 (below 64)", {.block_size = 1}},
		{"grow_unit 1000 (not a page multiple)", {.grow_unit = 1000}},
		{"grow_unit page + 1", {.grow_unit = 4097}},
		{"grow_unit 4 KiB below block_size 64 KiB",
		 {.block_size = 64 * KiB, .grow_unit = 4 * KiB}},
		{"initial_size above reserve_size",
		 {.reserve_size = 4 * MiB, .initial_size = 8 * MiB, .grow_unit = TP_UNIT}},
		{"max_size above reserve_size",
		 {.reserve_size = 4 * MiB, .max_size = 8 * MiB, .grow_unit = TP_UNIT}},
		{"min_size above max_size",
		 {.reserve_size = 8 * MiB,
		  .min_size = 4 * MiB,
		  .max_size = 2 * MiB,
		  .grow_unit = TP_UNIT}},
		{"initial_size above max_size",
		 {.reserve_size = 8 * MiB,
		  .initial_size = 4 * MiB,
		  .max_size = 2 * MiB,
		  .grow_unit = TP_UNIT}},
		{"reserve_size below grow_unit", {.reserve_size = 4096, .grow_unit = TP_UNIT}},
		{"flags 1 << 6 (unknown)", {.reserve_size = TP_RESERVE, .flags = 1u << 6}},
		{"flags 1 << 31 (unknown)", {.reserve_size = TP_RESERVE, .flags = 1u << 31}},
		{"flags ~0", {.reserve_size = TP_RESERVE, .flags = ~0u}},
	};
	struct tide_pool *pool = (struct tide_pool *)&good;
	unsigned long calls = tide_os_calls();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tide_pool *p = (struct tide_pool *)&good; /* must stay untouched */
		int rc = tide_pool_create(&bad[i].cfg, &p);

		CHECKF(rc == -EINVAL, "create with %s: %d, want -EINVAL", bad[i].what, rc);
		CHECKF(p == (struct tide_pool *)&good, "create with %s wrote *pool", bad[i].what);
		if (rc == 0)
			tide_pool_destroy(p);
	}
	CHECKF(tide_os_calls() == calls, "a refused config made %lu OS calls",
	       tide_os_calls() - calls);
	CHECK_EQ(tide_pool_create(&good, NULL), -EINVAL);

	/* A huge reservation: refused with -EINVAL or -ENOMEM, never a crash. */
	{
		struct tide_pool_config huge = {.reserve_size = SIZE_MAX - 4095};
		int rc = tide_pool_create(&huge, &pool);

		CHECKF(rc == -EINVAL || rc == -ENOMEM, "reserve_size ~SIZE_MAX: %d", rc);
	}

	/* Every limit value that is allowed is taken. */
	for (size_t bs = 64; bs <= MiB; bs <<= 1) {
		struct tide_pool_config c = {.block_size = bs,
					     .reserve_size = 16 * MiB,
					     .grow_unit = bs > 2 * MiB ? bs : 2 * MiB};
		int rc = tide_pool_create(&c, &pool);

		CHECKF(rc == 0, "block_size %zu refused: %d", bs, rc);
		if (rc == 0) {
			void *b = tide_alloc(pool, 1);

			CHECK(tide_pool_grow(pool, 1) == 0);
			b = b ? b : tide_alloc(pool, 1);
			CHECK(b != NULL);
			CHECK_EQ(tide_buffer_size(pool, b), bs);
			CHECK_EQ(tide_free(pool, b), 0);
			CHECK_POOL(pool);
			tide_pool_destroy(pool);
		}
	}
}

/* "zero means default": the defaults the config comment gives. */
static void test_defaults(void)
{
	struct tide_pool_config cfg = {0};
	struct tide_pool *pool = NULL;
	struct tide_stats st;
	long long rss_before = self_rss(), rss_after;

	if (under_valgrind()) {
		printf("pool: default 64 GiB pool not checked under Valgrind (it cannot map it)\n");
		return;
	}
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	rss_after = self_rss();
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.block_size, 2048);
	CHECK_EQ(st.reserve_size, 64 * GiB);
	CHECK_EQ(st.unreserved_size, 0);
	CHECK_EQ(st.min_size, 0);
	CHECK_EQ(st.max_size, 64 * GiB);
	CHECK_EQ(st.grow_unit, 2 * MiB);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_EQ(st.users, 0);
	CHECK(tide_pool_boundary(pool) == tide_pool_base(pool));
	CHECK((uintptr_t)tide_pool_base(pool) % (2 * MiB) == 0);
	printf("pool: a fresh default pool (64 GiB) added %lld KiB of resident memory\n",
	       (rss_after - rss_before) / 1024);
	CHECKF(under_emulator() || rss_after - rss_before < (long long)MiB,
	       "fresh 64 GiB pool: %lld bytes resident", rss_after - rss_before);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);

	/* min_size defaults to initial_size. */
	cfg.initial_size = 4 * MiB;
	cfg.reserve_size = 64 * MiB;
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.min_size, 4 * MiB);
	CHECK_EQ(st.unreserved_size, 4 * MiB);
	CHECK_EQ(st.max_size, 64 * MiB);
	CHECK_EQ((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool), 4 * MiB);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* "tide_alloc: NULL: no space (or size 0)"; "tide_free: NULL is a no-op returning 0". */
static void test_alloc_free_single(void)
{
	struct tide_pool *pool = tp_create(0, 0, 0);
	struct tide_stats st;
	struct snap s;
	char *b;

	CHECK(tide_alloc(pool, 0) == NULL);
	s = tp_snap(pool);
	CHECK(tide_alloc(pool, 1) == NULL); /* no space: nothing unreserved, no AUTO_GROW */
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.alloc_failures, s.st.alloc_failures + 1);
	CHECK_EQ(tide_free(pool, NULL), 0);
	CHECK_POOL(pool);

	CHECK_EQ(tide_pool_grow(pool, TP_UNIT), 0);
	CHECK(tide_alloc(pool, 0) == NULL);
	b = tide_alloc(pool, 1);
	REQUIRE(b);
	CHECK(in_pool(pool, b));
	CHECK_EQ(tide_buffer_size(pool, b), TP_BLOCK);
	memset(b, 0x11, TP_BLOCK);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 1);
	CHECK_EQ(st.live_bytes, TP_BLOCK);
	CHECK(st.peak_live_bytes >= TP_BLOCK);
	CHECK_POOL(pool);
	CHECK_EQ(tide_free(pool, b), 0);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 0);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_EQ(tide_buffer_size(pool, b), 0);
	CHECK_POOL(pool);

	/* Exactly a block, and the whole unreserved portion one block at a time. */
	{
		size_t n = TP_UNIT / TP_BLOCK;
		char *bufs[TP_UNIT / TP_BLOCK];

		for (size_t i = 0; i < n; i++) {
			bufs[i] = tide_alloc(pool, TP_BLOCK);
			CHECK(bufs[i] && in_pool(pool, bufs[i]));
			if (bufs[i])
				memset(bufs[i], (int)i, TP_BLOCK);
		}
		CHECK(tide_alloc(pool, 1) == NULL);
		for (size_t i = 0; i < n; i++)
			for (size_t j = i + 1; j < n; j++)
				CHECK(bufs[i] != bufs[j]);
		CHECK_POOL(pool);
		for (size_t i = 0; i < n; i++) {
			CHECK(bufs[i][0] == (char)i && bufs[i][TP_BLOCK - 1] == (char)i);
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
		}
		CHECK_POOL(pool);
	}
	tide_pool_destroy(pool);
}

/* "Sizes above block_size take a contiguous run of blocks." */
static void test_alloc_multi(void)
{
	struct tide_pool *pool = tp_create(0, TP_UNIT, 0);
	struct tide_stats st;
	char *a, *b, *c;

	a = tide_alloc(pool, TP_BLOCK + 1);
	REQUIRE(a);
	CHECK_EQ(tide_buffer_size(pool, a), 2 * TP_BLOCK);
	memset(a, 0xaa, 2 * TP_BLOCK);
	b = tide_alloc(pool, 5 * TP_BLOCK);
	REQUIRE(b);
	CHECK_EQ(tide_buffer_size(pool, b), 5 * TP_BLOCK);
	CHECK(b + 5 * TP_BLOCK <= a || b >= a + 2 * TP_BLOCK);
	memset(b, 0xbb, 5 * TP_BLOCK);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 2);
	CHECK_EQ(st.live_bytes, 7 * TP_BLOCK);
	CHECK_POOL(pool);
	/* Interior blocks are not buffers. */
	CHECK_EQ(tide_buffer_size(pool, b + TP_BLOCK), 0);
	CHECK_EQ(tide_free(pool, b + TP_BLOCK), -EINVAL);
	CHECK_EQ(tide_free(pool, b + 4 * TP_BLOCK), -EINVAL);
	CHECK(a[0] == (char)0xaa && a[2 * TP_BLOCK - 1] == (char)0xaa);
	CHECK_EQ(tide_free(pool, a), 0);
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK_POOL(pool);

	/*
	 * "NULL: no space": free single blocks parked in this thread's cache are space; a run
	 * must find them (flush, then search) rather than fail.
	 */
	{
		size_t n = TP_UNIT / TP_BLOCK;
		void *bufs[TP_UNIT / TP_BLOCK];

		CHECK_EQ(tide_alloc_bulk(pool, bufs, (unsigned)n), n);
		for (size_t i = 0; i < n; i++)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
		c = tide_alloc(pool, 2 * TP_BLOCK);
		CHECKF(c != NULL,
		       "alloc_bulk(%zu) + free each (all space now free), then "
		       "tide_alloc(2 blocks) failed: free blocks left in the thread cache?",
		       n);
		if (c)
			CHECK_EQ(tide_free(pool, c), 0);
		CHECK_POOL(pool);
	}

	/* The whole unreserved portion as one buffer; then one block more does not fit. */
	c = tide_alloc(pool, TP_UNIT);
	CHECK(c == tide_pool_base(pool));
	CHECK(tide_alloc(pool, TP_UNIT + 1) == NULL);
	if (c)
		CHECK_EQ(tide_free(pool, c), 0);
	CHECK(tide_alloc(pool, TP_UNIT + 1) == NULL);
	CHECK(tide_alloc(pool, SIZE_MAX) == NULL);
	CHECK(tide_alloc(pool, SIZE_MAX - TP_BLOCK) == NULL);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/*
 * "-EINVAL: a pointer that is not a live buffer of this pool (foreign, interior, above the
 * boundary, already freed)", counted in bad_frees, nothing changed.
 */
static void test_bad_frees(void)
{
	struct tide_pool *pool = tp_create(0, 2 * TP_UNIT, 0);
	struct tide_pool *other = tp_create(0, TP_UNIT, 0);
	char *base = tide_pool_base(pool), *top = tide_pool_boundary(pool);
	char *live = tide_alloc(pool, 3 * TP_BLOCK);
	char *freed = tide_alloc(pool, 1);
	char *theirs = tide_alloc(other, 1);
	char stack_buf[64];
	char *heap = malloc(4096);
	struct {
		const char *what;
		void *ptr;
	} cases[] = {
		{"foreign: heap", heap},
		{"foreign: stack", stack_buf},
		{"foreign: another pool's buffer", theirs},
		{"foreign: just below base", base - 1},
		{"foreign: a block below base", base - TP_BLOCK},
		{"interior: live + 1", live + 1},
		{"interior: second block of a run", live + TP_BLOCK},
		{"interior: third block + 100", live + 2 * TP_BLOCK + 100},
		{"interior: freed + 1", freed + 1},
		{"misaligned: base + 64", base + 64},
		{"above the boundary: boundary", top},
		{"above the boundary: boundary + block", top + TP_BLOCK},
		{"above the boundary: last block of the reservation", base + TP_RESERVE - TP_BLOCK},
		{"past the reservation", base + TP_RESERVE},
		{"already freed", freed},
		{"never allocated (free block below the boundary)", top - TP_BLOCK},
		{"address 1", (void *)1},
		{"address -block", (void *)(uintptr_t)-TP_BLOCK},
	};

	REQUIRE(live && freed && theirs && heap);
	CHECK_EQ(tide_free(pool, freed), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct snap before = tp_snap(pool), after;
		int rc = tide_free(pool, cases[i].ptr);

		after = tp_snap(pool);
		CHECKF(rc == -EINVAL, "tide_free(%s): %d, want -EINVAL", cases[i].what, rc);
		CHECKF(after.st.bad_frees == before.st.bad_frees + 1,
		       "tide_free(%s): bad_frees %llu", cases[i].what,
		       (unsigned long long)after.st.bad_frees);
		CHECK(tp_same(&before, &after, "bad_frees", cases[i].what));
		CHECK_POOL(pool);
	}
	/* The live buffer survived every attempt and frees normally, once. */
	CHECK_EQ(tide_buffer_size(pool, live), 3 * TP_BLOCK);
	CHECK_EQ(tide_free(pool, live), 0);
	CHECK_EQ(tide_free(pool, live), -EINVAL);
	CHECK_EQ(tide_free(other, theirs), 0);
	CHECK_POOL(pool);
	CHECK_POOL(other);
	free(heap);
	tide_pool_destroy(other);
	tide_pool_destroy(pool);
}

/* "tide_alloc_bulk: up to n one-block buffers"; "tide_free_bulk: stops at the first bad". */
static void test_bulk(void)
{
	struct tide_pool *pool = tp_create(0, TP_UNIT, 0);
	size_t nblk = TP_UNIT / TP_BLOCK;
	void *bufs[2 * (TP_UNIT / TP_BLOCK)];
	struct tide_stats st;
	unsigned got;

	CHECK_EQ(tide_alloc_bulk(pool, bufs, 0), 0);
	got = tide_alloc_bulk(pool, bufs, 10);
	CHECK_EQ(got, 10);
	for (unsigned i = 0; i < got; i++) {
		CHECK(in_pool(pool, bufs[i]));
		CHECK_EQ(tide_buffer_size(pool, bufs[i]), TP_BLOCK);
		memset(bufs[i], (int)i, TP_BLOCK);
		for (unsigned j = 0; j < i; j++)
			CHECK(bufs[i] != bufs[j]);
	}
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 10);
	CHECK_EQ(st.live_bytes, 10 * TP_BLOCK);
	CHECK_POOL(pool);
	CHECK_EQ(tide_free_bulk(pool, bufs, got), 0);
	CHECK_EQ(tide_free_bulk(pool, bufs, 0), 0);
	CHECK_POOL(pool);

	/* More than there is: all there is, no more. */
	got = tide_alloc_bulk(pool, bufs, (unsigned)(2 * nblk));
	CHECK_EQ(got, nblk);
	CHECK(tide_alloc(pool, 1) == NULL);
	CHECK_POOL(pool);

	/* A bad pointer in the middle: the ones before are freed, it and the rest are not. */
	{
		void *mixed[5] = {bufs[0], bufs[1], (char *)bufs[2] + 1, bufs[3], bufs[4]};
		struct snap before = tp_snap(pool), after;

		CHECK_EQ(tide_free_bulk(pool, mixed, 5), -EINVAL);
		after = tp_snap(pool);
		CHECK_EQ(after.st.live_buffers, before.st.live_buffers - 2);
		CHECK_EQ(after.st.bad_frees, before.st.bad_frees + 1);
		CHECK_EQ(tide_buffer_size(pool, bufs[0]), 0);
		CHECK_EQ(tide_buffer_size(pool, bufs[2]), TP_BLOCK);
		CHECK_EQ(tide_buffer_size(pool, bufs[3]), TP_BLOCK);
		CHECK_POOL(pool);
		/* A double free inside one bulk call. */
		mixed[0] = bufs[2];
		mixed[1] = bufs[2];
		CHECK_EQ(tide_free_bulk(pool, mixed, 2), -EINVAL);
		CHECK_EQ(tide_buffer_size(pool, bufs[2]), 0);
		CHECK_POOL(pool);
	}
	CHECK_EQ(tide_free_bulk(pool, bufs + 3, got - 3), 0);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (void *const *)a, y = (uintptr_t) * (void *const *)b;

	return (x > y) - (x < y);
}

#define RUN_N 96 /* blocks in the run batches below: several vector steps, not a multiple */

/*
 * One refused bulk free: rc, one bad_frees more, batch[0..good) freed, the rest as before
 * (a repeat of one of the first good is freed with it), and the pool consistent.
 */
static void bulk_refused(struct tide_pool *pool, const char *what, void **batch, unsigned n,
			 unsigned good, int want)
{
	struct snap before = tp_snap(pool), after;
	size_t sizes[2 * RUN_N];
	int rc;

	REQUIRE(n <= 2 * RUN_N);
	for (unsigned i = 0; i < n; i++)
		sizes[i] = tide_buffer_size(pool, batch[i]);
	rc = tide_free_bulk(pool, batch, n);
	after = tp_snap(pool);
	CHECKF(rc == want, "%s: %d, want %d", what, rc, want);
	CHECKF(after.st.bad_frees == before.st.bad_frees + 1, "%s: bad_frees %llu -> %llu", what,
	       (unsigned long long)before.st.bad_frees, (unsigned long long)after.st.bad_frees);
	CHECKF(after.st.live_buffers == before.st.live_buffers - good, "%s: live %zu -> %zu", what,
	       before.st.live_buffers, after.st.live_buffers);
	for (unsigned i = 0; i < n; i++) {
		size_t want_size = i < good ? 0 : sizes[i];

		for (unsigned k = 0; k < good && i >= good; k++)
			if (batch[k] == batch[i])
				want_size = 0;
		CHECKF(tide_buffer_size(pool, batch[i]) == want_size, "%s: [%u] size %zu, want %zu",
		       what, i, tide_buffer_size(pool, batch[i]), want_size);
	}
	CHECK_POOL(pool);
}

/* The batch as the run, up or down. */
static void run_batch(void **batch, void *const *run, bool down)
{
	for (unsigned i = 0; i < RUN_N; i++)
		batch[i] = run[down ? RUN_N - 1 - i : i];
}

/* Take back the n blocks this thread freed last (its cache gives the last freed first). */
static void take_back(struct tide_pool *pool, void *const *run, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		REQUIRE(tide_alloc(pool, 1) != NULL);
	for (unsigned i = 0; i < RUN_N; i++)
		REQUIRE(tide_buffer_size(pool, run[i]) == TP_BLOCK);
}

/*
 * "tide_free_bulk: the ones before the first bad are freed, it and the ones after are not",
 * for batches that are runs of neighbouring blocks, up or down (freed as one slice): a bad
 * block anywhere in the run (already freed, another user's, the tail of a multi-block
 * buffer, above the boundary, misaligned, repeated) is found where a one-by-one free finds
 * it, and nothing after it changes.
 */
static void test_bulk_runs(void)
{
	struct tide_pool *pool = tp_create(0, 4 * TP_UNIT, 0);
	struct tide_user_config ucfg = {.name = "other"};
	const unsigned spots[] = {0, 1, 37, RUN_N / 2, RUN_N - 2, RUN_N - 1};
	void *run[RUN_N], *batch[2 * RUN_N];
	struct tide_user *user;
	struct tide_stats st;
	char *multi, *top;
	unsigned below = 8;

	REQUIRE(tide_user_create(pool, &ucfg, &user) == 0);
	multi = tide_alloc(pool, 4 * TP_BLOCK); /* the lowest blocks; the run follows it */
	REQUIRE(multi != NULL);
	REQUIRE(tide_alloc_bulk(pool, run, RUN_N) == RUN_N);
	qsort(run, RUN_N, sizeof(run[0]), cmp_ptr);
	REQUIRE((char *)run[0] == multi + 4 * TP_BLOCK);
	for (unsigned i = 1; i < RUN_N; i++)
		REQUIRE((char *)run[i] == (char *)run[0] + (size_t)i * TP_BLOCK);

	for (size_t s = 0; s < sizeof(spots) / sizeof(spots[0]); s++) {
		for (int down = 0; down < 2; down++) {
			unsigned j = spots[s];
			char what[96];

			run_batch(batch, run, down);
			CHECK_EQ(tide_free(pool, batch[j]), 0);
			snprintf(what, sizeof(what), "run %s, [%u] already freed",
				 down ? "down" : "up", j);
			bulk_refused(pool, what, batch, RUN_N, j, -EINVAL);
			take_back(pool, run, j + 1);

			CHECK_EQ(tide_free(pool, batch[j]), 0);
			REQUIRE(tide_user_alloc(user, 1) == batch[j]); /* the block just freed */
			snprintf(what, sizeof(what), "run %s, [%u] another user's",
				 down ? "down" : "up", j);
			bulk_refused(pool, what, batch, RUN_N, j, -EPERM);
			CHECK_EQ(tide_user_free(user, batch[j]), 0);
			take_back(pool, run, j + 1);
		}
	}

	/* The run, then the run again: the second time round each is a double free. */
	run_batch(batch, run, false);
	memcpy(batch + RUN_N, batch, RUN_N * sizeof(batch[0]));
	bulk_refused(pool, "run, then again", batch, 2 * RUN_N, RUN_N, -EINVAL);
	take_back(pool, run, RUN_N);

	/* Misaligned: every pointer one byte in. */
	for (unsigned i = 0; i < RUN_N; i++)
		batch[i] = (char *)run[i] + 1;
	bulk_refused(pool, "run of interior pointers", batch, RUN_N, 0, -EINVAL);

	/* Down the run into the multi-block buffer below it: its tail, then an interior block. */
	for (unsigned i = 0; i < RUN_N; i++)
		batch[i] = (char *)run[0] +
			   ((ptrdiff_t)RUN_N - 3 - (ptrdiff_t)i) * (ptrdiff_t)TP_BLOCK;
	bulk_refused(pool, "run into a multi-block buffer", batch, RUN_N, RUN_N - 2, -EINVAL);
	take_back(pool, run, RUN_N - 2);
	CHECK_EQ(tide_buffer_size(pool, multi), 4 * TP_BLOCK);

	/* Across the boundary: every block taken, a run from the last blocks below it on. */
	while (tide_alloc(pool, 1))
		;
	top = tide_pool_boundary(pool);
	for (unsigned i = 0; i < RUN_N; i++)
		batch[i] = top + ((ptrdiff_t)i - (ptrdiff_t)below) * (ptrdiff_t)TP_BLOCK;
	for (unsigned i = 0; i < below; i++)
		REQUIRE(tide_buffer_size(pool, batch[i]) == TP_BLOCK);
	bulk_refused(pool, "run across the boundary", batch, RUN_N, below, -EINVAL);

	/* And a good run, both ways, is freed whole. */
	for (int down = 0; down < 2; down++) {
		struct snap before = tp_snap(pool), after;

		run_batch(batch, run, down);
		CHECK_EQ(tide_free_bulk(pool, batch, RUN_N), 0);
		after = tp_snap(pool);
		CHECK_EQ(after.st.live_buffers, before.st.live_buffers - RUN_N);
		CHECK(tp_same(&before, &after, "live_bytes,live_buffers", "a good run"));
		for (unsigned i = 0; i < RUN_N; i++)
			CHECK_EQ(tide_buffer_size(pool, run[i]), 0);
		CHECK_POOL(pool);
		REQUIRE(tide_alloc_bulk(pool, batch, RUN_N) == RUN_N);
		qsort(batch, RUN_N, sizeof(batch[0]), cmp_ptr);
		CHECK(memcmp(batch, run, sizeof(run)) == 0); /* the same blocks come back */
	}
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.bad_frees, 2 * 2 * (sizeof(spots) / sizeof(spots[0])) + 4);
	REQUIRE(tide_user_destroy(user) == 0);
	tide_pool_destroy(pool);
}

/* "Growth and shrink are in grow_unit steps"; "tide_pool_shrink: bytes converted". */
static void test_grow_shrink_steps(void)
{
	struct tide_pool *pool = tp_create(0, 0, 0);
	char *base = tide_pool_base(pool);
	struct tide_stats st;
	ssize_t got;

	CHECK_EQ(tide_pool_grow(pool, 1), 0);
	CHECK(tide_pool_boundary(pool) == base + TP_UNIT);
	CHECK_EQ(tide_pool_grow(pool, TP_UNIT + 1), 0);
	CHECK(tide_pool_boundary(pool) == base + 3 * TP_UNIT);
	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	CHECK(tide_pool_boundary(pool) == base + 5 * TP_UNIT);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.unreserved_size, 5 * TP_UNIT);
	CHECK(st.resident_size <= st.unreserved_size);
	CHECK_EQ(st.grows, 3);
	CHECK_POOL(pool);

	/* The new range is usable to its last byte. */
	memset(base, 1, 5 * TP_UNIT);
	CHECK_EQ(mincore_rss(base, 5 * TP_UNIT), (long long)(5 * TP_UNIT));

	got = tide_pool_shrink(pool, 1);
	CHECK_EQ(got, TP_UNIT);
	CHECK(tide_pool_boundary(pool) == base + 4 * TP_UNIT);
	CHECK_RSS(mincore_rss(base + 4 * TP_UNIT, TP_UNIT), 0); /* pages given back */
	got = tide_pool_shrink(pool, TP_UNIT + 1);
	CHECK_EQ(got, 2 * TP_UNIT);
	CHECK(tide_pool_boundary(pool) == base + 2 * TP_UNIT);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.unreserved_size, 2 * TP_UNIT);
	CHECK_EQ(st.shrinks, 2);
	CHECK_POOL(pool);

	/* More than there is: what there is. */
	got = tide_pool_shrink(pool, 100 * TP_UNIT);
	CHECK_EQ(got, 2 * TP_UNIT);
	CHECK(tide_pool_boundary(pool) == base);
	got = tide_pool_shrink(pool, TP_UNIT);
	CHECKF(got == 0 || got == -EBUSY, "shrink of an empty pool: %zd", got);
	CHECK(tide_pool_boundary(pool) == base);
	CHECK_RSS(mincore_rss(base, 5 * TP_UNIT), 0);
	CHECK_POOL(pool);

	/* Grow again after shrinking: fresh pages read zero. */
	CHECK_EQ(tide_pool_grow(pool, TP_UNIT), 0);
	CHECK(base[0] == 0 && base[TP_UNIT - 1] == 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* "-ENOSPC the pool is at max_size"; TIDE_AUTO_GROW up to max_size. */
static void test_max_size(void)
{
	struct tide_pool *pool = tp_create(0, 0, 3 * TP_UNIT);
	struct snap before, after;
	int rc;

	CHECK_EQ(tide_pool_grow(pool, 3 * TP_UNIT), 0);
	before = tp_snap(pool);
	CHECK_EQ(tide_pool_grow(pool, 1), -ENOSPC);
	after = tp_snap(pool);
	CHECK_SAME(&before, &after, "");
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), TP_UNIT);
	/* Past max by more than one unit: refused whole, or grown only to max. */
	before = tp_snap(pool);
	rc = tide_pool_grow(pool, 2 * TP_UNIT);
	after = tp_snap(pool);
	CHECKF(rc == -ENOSPC || rc == 0, "grow past max: %d", rc);
	if (rc)
		CHECK_SAME(&before, &after, "");
	CHECK(after.st.unreserved_size <= 3 * TP_UNIT);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);

	/* Auto grow: allocations convert up to max_size, then fail. */
	pool = tp_create(TIDE_AUTO_GROW, 0, 3 * TP_UNIT);
	{
		size_t n = 3 * TP_UNIT / TP_BLOCK;
		void **bufs = calloc(n + 1, sizeof(void *));
		struct tide_stats st;
		size_t got = 0;

		REQUIRE(bufs);
		for (size_t i = 0; i < n + 1; i++) {
			bufs[got] = tide_alloc(pool, TP_BLOCK);
			if (bufs[got])
				got++;
			CHECK_POOL(pool);
		}
		CHECK_EQ(got, n);
		tide_pool_stats(pool, &st);
		CHECK_EQ(st.unreserved_size, 3 * TP_UNIT);
		CHECK_EQ(st.grows, 3);
		CHECK_EQ(st.alloc_failures, 1);
		CHECK_EQ(tide_pool_grow(pool, 1), -ENOSPC);
		for (size_t i = 0; i < got; i++)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
		/* A multi-block buffer also grows the pool, by as many units as it needs. */
		CHECK_EQ(tide_pool_shrink(pool, 3 * TP_UNIT), 3 * TP_UNIT);
		bufs[0] = tide_alloc(pool, 2 * TP_UNIT);
		CHECK(bufs[0] != NULL);
		tide_pool_stats(pool, &st);
		CHECK_EQ(st.unreserved_size, 2 * TP_UNIT);
		CHECK(tide_alloc(pool, 2 * TP_UNIT) == NULL);
		if (bufs[0])
			CHECK_EQ(tide_free(pool, bufs[0]), 0);
		CHECK_POOL(pool);
		free(bufs);
	}
	tide_pool_destroy(pool);
}

/* "-EBUSY a shrink found no free top to take"; "A live buffer is never taken." */
static void test_shrink_busy(void)
{
	struct tide_pool *pool = tp_create(0, 0, 0);
	char *base = tide_pool_base(pool);
	struct snap before, after;
	char *top, *low;
	ssize_t got;

	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	/* Fill everything, free all but the last block. */
	{
		size_t n = 2 * TP_UNIT / TP_BLOCK;
		void **bufs = calloc(n, sizeof(void *));

		REQUIRE(bufs);
		CHECK_EQ(tide_alloc_bulk(pool, bufs, (unsigned)n), n);
		top = NULL;
		for (size_t i = 0; i < n; i++)
			if ((char *)bufs[i] == base + 2 * TP_UNIT - TP_BLOCK)
				top = bufs[i];
			else
				CHECK_EQ(tide_free(pool, bufs[i]), 0);
		free(bufs);
	}
	REQUIRE(top);
	memset(top, 0x77, TP_BLOCK);
	before = tp_snap(pool);
	got = tide_pool_shrink(pool, TP_UNIT);
	after = tp_snap(pool);
	CHECK_EQ(got, -EBUSY);
	CHECK_SAME(&before, &after, "");
	CHECK(top[0] == 0x77 && top[TP_BLOCK - 1] == 0x77);
	CHECK_POOL(pool);

	/* A live buffer low down does not stop the free top from going. */
	CHECK_EQ(tide_free(pool, top), 0);
	/* Runs come from the bitmap, lowest first (single blocks may come from a cache). */
	low = tide_alloc(pool, 2 * TP_BLOCK);
	CHECK(low && low < base + TP_UNIT);
	got = tide_pool_shrink(pool, 2 * TP_UNIT);
	CHECK_EQ(got, TP_UNIT);
	CHECK(tide_pool_boundary(pool) == base + TP_UNIT);
	CHECK_EQ(tide_buffer_size(pool, low), 2 * TP_BLOCK);
	CHECK_EQ(tide_free(pool, low), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* TIDE_HUGEPAGES, TIDE_POPULATE, TIDE_LOCKED. */
static void test_flags_memory(void)
{
	struct tide_pool_config cfg = {.reserve_size = 64 * MiB, .flags = TIDE_HUGEPAGES};
	struct tide_pool *pool = NULL;
	char *base, *b;
	int rc;

	/* Huge pages: 2 MiB units; works whether or not the kernel gives huge pages. */
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	CHECK_EQ(tide_pool_grow(pool, 4 * MiB), 0);
	b = tide_alloc(pool, 64 * KiB);
	CHECK(b != NULL);
	if (b) {
		memset(b, 3, 64 * KiB);
		CHECK_EQ(tide_free(pool, b), 0);
	}
	CHECK_EQ(tide_pool_shrink(pool, 4 * MiB), 4 * MiB);
	CHECK_RSS(mincore_rss(tide_pool_base(pool), 4 * MiB), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);

	/* Populate: resident at conversion, before any touch; without it, not. */
	pool = tp_create(TIDE_POPULATE, 0, 0);
	base = tide_pool_base(pool);
	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	CHECK_RSS(mincore_rss(base, 2 * TP_UNIT), (long long)(2 * TP_UNIT));
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), TP_UNIT);
	CHECK_RSS(mincore_rss(base + TP_UNIT, TP_UNIT), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	pool = tp_create(0, 0, 0);
	base = tide_pool_base(pool);
	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	CHECK_EQ(mincore_rss(base, 2 * TP_UNIT), 0);
	tide_pool_destroy(pool);

	/* Locked: a small pool, well under RLIMIT_MEMLOCK (8 MiB here). */
	pool = tp_create(TIDE_LOCKED, 0, 0);
	base = tide_pool_base(pool);
	{
		long long lck0 = self_status_bytes("VmLck"), lck1, lck2;

		rc = tide_pool_grow(pool, 4 * TP_UNIT);
		if (rc == -ENOMEM || rc == -EPERM || rc == -EAGAIN) {
			printf("pool: TIDE_LOCKED grow of %zu refused here (%d; RLIMIT_MEMLOCK?): "
			       "lock not checked\n",
			       4 * TP_UNIT, rc);
			CHECK(tide_pool_boundary(pool) == base);
		} else {
			CHECK_EQ(rc, 0);
			lck1 = self_status_bytes("VmLck");
			if (!TEST_ASAN) { /* ASan makes mlock a no-op */
				CHECK_EQ(lck1 - lck0, (long long)(4 * TP_UNIT));
				CHECK_EQ(mincore_rss(base, 4 * TP_UNIT), (long long)(4 * TP_UNIT));
			}
			CHECK_EQ(tide_pool_shrink(pool, 2 * TP_UNIT), 2 * TP_UNIT);
			lck2 = self_status_bytes("VmLck");
			if (!TEST_ASAN)
				CHECK_EQ(lck2 - lck0, (long long)(2 * TP_UNIT));
		}
		CHECK_POOL(pool);
		tide_pool_destroy(pool);
		CHECK_EQ(self_status_bytes("VmLck"), lck0);
	}
}

/*
 * The hook: "TO_UNRESERVED after commit and before any buffer of the range is handed out;
 * TO_RESERVED after the range is claimed and before its pages go"; "a nonzero return
 * vetoes and the pool is exactly as before".
 */
static void test_hook(void)
{
	struct tide_pool *pool = tp_create(TIDE_AUTO_GROW, 0, 0);
	char *base = tide_pool_base(pool);
	struct snap before, after;
	struct hook h;
	void *b;

	hook_install(&h, pool);
	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	CHECK_EQ(h.up, 1);
	CHECK_HOOK(&h);
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), TP_UNIT);
	CHECK_EQ(h.down, 1);
	CHECK_HOOK(&h);
	CHECK_POOL(pool);

	/* Veto TO_UNRESERVED: the grow fails with the hook's error, nothing changed. */
	h.veto_up = -EIO;
	before = tp_snap(pool);
	CHECK_EQ(tide_pool_grow(pool, TP_UNIT), -EIO);
	after = tp_snap(pool);
	CHECK_SAME(&before, &after, "vetoes");
	CHECK_EQ(after.st.vetoes, before.st.vetoes + 1);
	CHECK_RSS(mincore_rss(base + TP_UNIT, TP_UNIT), 0);
	CHECK_HOOK(&h);
	CHECK_POOL(pool);

	/* A positive return also vetoes. */
	h.veto_up = 1;
	before = tp_snap(pool);
	CHECK(tide_pool_grow(pool, TP_UNIT) < 0);
	after = tp_snap(pool);
	CHECK_SAME(&before, &after, "vetoes");
	CHECK_HOOK(&h);

	/* An allocation that needs to grow fails when the hook vetoes. */
	{
		size_t n = TP_UNIT / TP_BLOCK;
		void **bufs = calloc(n, sizeof(void *));

		REQUIRE(bufs);
		CHECK_EQ(tide_alloc_bulk(pool, bufs, (unsigned)n), n);
		h.veto_up = -EIO;
		before = tp_snap(pool);
		b = tide_alloc(pool, 1);
		after = tp_snap(pool);
		CHECK(b == NULL);
		CHECK_SAME(&before, &after, "vetoes,alloc_failures");
		CHECK_HOOK(&h);
		CHECK_POOL(pool);
		h.veto_up = 0;
		b = tide_alloc(pool, 1);
		CHECK(b != NULL && (char *)b >= base + TP_UNIT);
		CHECK_HOOK(&h);
		CHECK_EQ(tide_free(pool, b), 0);
		CHECK_EQ(tide_free_bulk(pool, bufs, (unsigned)n), 0);
		free(bufs);
	}

	/* Veto TO_RESERVED: the shrink fails, the range stays usable and registered. */
	tide_pool_flush_cache(pool);
	h.veto_down = -ECANCELED;
	before = tp_snap(pool);
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), -ECANCELED);
	after = tp_snap(pool);
	CHECK_SAME(&before, &after, "vetoes");
	CHECK_HOOK(&h);
	CHECK_POOL(pool);
	{
		size_t n = 2 * TP_UNIT / TP_BLOCK;
		void **bufs = calloc(n, sizeof(void *));

		REQUIRE(bufs);
		CHECK_EQ(tide_alloc_bulk(pool, bufs, (unsigned)n), n); /* all of it, again */
		CHECK_EQ(tide_free_bulk(pool, bufs, (unsigned)n), 0);
		free(bufs);
	}
	h.veto_down = 0;
	CHECK_EQ(tide_pool_shrink(pool, 2 * TP_UNIT), 2 * TP_UNIT);
	CHECK_HOOK(&h);

	/* Removing the hook: no more calls. */
	CHECK_EQ(tide_pool_set_convert_hook(pool, NULL, NULL), 0);
	{
		unsigned up = h.up;

		CHECK_EQ(tide_pool_grow(pool, TP_UNIT), 0);
		CHECK_EQ(h.up, up);
	}
	CHECK_EQ(tide_pool_set_convert_hook(NULL, hook_fn, &h), -EINVAL);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* "An OS refusal ... leaves the pool consistent and usable" (grow and shrink). */
static void test_os_failure(void)
{
	static const unsigned flag_sets[] = {0, TIDE_POPULATE, TIDE_HUGEPAGES | TIDE_POPULATE};

	for (size_t f = 0; f < sizeof(flag_sets) / sizeof(flag_sets[0]); f++) {
		struct tide_pool *pool = tp_create(flag_sets[f], 0, 0);
		struct snap before, after;
		struct hook h;

		hook_install(&h, pool);
		CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
		for (unsigned nth = 1; nth <= 8; nth++) {
			for (int persistent = 0; persistent <= 1; persistent++) {
				int rc;
				ssize_t got;

				before = tp_snap(pool);
				tide_os_fault_set(nth, ENOMEM, persistent);
				rc = tide_pool_grow(pool, TP_UNIT);
				tide_os_fault_set(0, 0, false);
				after = tp_snap(pool);
				CHECKF(rc == 0 || rc == -ENOMEM,
				       "flags %#x grow with OS call %u failing%s: %d", flag_sets[f],
				       nth, persistent ? " from then on" : "", rc);
				if (rc)
					CHECK(tp_same(&before, &after, "os_failures",
						      "grow fault"));
				CHECK_HOOK(&h);
				CHECK_POOL(pool);

				before = tp_snap(pool);
				tide_os_fault_set(nth, ENOMEM, persistent);
				got = tide_pool_shrink(pool, TP_UNIT);
				tide_os_fault_set(0, 0, false);
				after = tp_snap(pool);
				CHECKF(got == TP_UNIT || got == -ENOMEM,
				       "flags %#x shrink with OS call %u failing%s: %zd",
				       flag_sets[f], nth, persistent ? " from then on" : "", got);
				if (got < 0)
					CHECK(tp_same(&before, &after, "os_failures",
						      "shrink fault"));
				CHECK_HOOK(&h);
				CHECK_POOL(pool);

				/* Usable afterwards: bring it back to two units. */
				while (pool_unreserved(pool) < 2 * TP_UNIT)
					REQUIRE(tide_pool_grow(pool, TP_UNIT) == 0);
				while (pool_unreserved(pool) > 2 * TP_UNIT)
					REQUIRE(tide_pool_shrink(pool, TP_UNIT) == TP_UNIT);
			}
		}
		{
			struct tide_stats st;

			tide_pool_stats(pool, &st);
			CHECK(st.os_failures > 0);
		}
		tide_pool_destroy(pool);
	}
}

/* The stats fields: each one moves with what it counts. */
static void test_stats(void)
{
	struct tide_pool *pool = tp_create(0, 0, 4 * TP_UNIT);
	struct tide_stats st;
	void *a, *b;

	tide_pool_stats(pool, &st);
	CHECK_EQ(st.reserve_size, TP_RESERVE);
	CHECK_EQ(st.block_size, TP_BLOCK);
	CHECK_EQ(st.grow_unit, TP_UNIT);
	CHECK_EQ(st.max_size, 4 * TP_UNIT);
	CHECK_EQ(st.min_size, 0);
	CHECK_EQ(st.unreserved_size + st.live_bytes + st.live_buffers + st.grows + st.shrinks +
			 st.purges + st.alloc_failures + st.bad_frees + st.vetoes + st.os_failures,
		 0);
	CHECK_EQ(tide_pool_grow(pool, 2 * TP_UNIT), 0);
	a = tide_alloc(pool, 3 * TP_BLOCK);
	b = tide_alloc(pool, 1);
	CHECK(a && b);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.unreserved_size, 2 * TP_UNIT);
	CHECK_EQ(st.unreserved_size,
		 (size_t)((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool)));
	CHECK(st.resident_size <= st.unreserved_size);
	CHECK_EQ(st.live_bytes, 4 * TP_BLOCK);
	CHECK_EQ(st.live_buffers, 2);
	CHECK_EQ(st.grows, 1);
	CHECK(st.metadata_size > 0);
	CHECK(st.cached_bytes <= st.unreserved_size - st.live_bytes);
	CHECK_EQ(tide_free(pool, a), 0);
	CHECK(tide_alloc(pool, 0) == NULL);
	CHECK(tide_alloc(pool, 5 * TP_UNIT) == NULL);
	CHECK_EQ(tide_free(pool, a), -EINVAL);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_bytes, TP_BLOCK);
	CHECK_EQ(st.live_buffers, 1);
	CHECK(st.peak_live_bytes >= 4 * TP_BLOCK);
	CHECK(st.alloc_failures >= 1);
	CHECK_EQ(st.bad_frees, 1);
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), TP_UNIT);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.shrinks, 1);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* Users: quota, MAY_GROW, -EPERM for another user's buffer, -EBUSY destroy while holding. */
static void test_users(void)
{
	struct tide_pool *pool = tp_create(TIDE_AUTO_GROW, 0, 0);
	struct tide_user_config c1 = {.name = "conn-1", .quota = 4 * TP_BLOCK};
	struct tide_user_config c2 = {.name = "ring-with-a-very-long-name-over-31-bytes",
				      .flags = TIDE_USER_MAY_GROW};
	struct tide_user *u1 = NULL, *u2 = NULL;
	struct tide_user_stats us;
	struct tide_stats st;
	void *b1[5], *b2, *bp;

	CHECK_EQ(tide_user_create(pool, &c1, &u1), 0);
	CHECK_EQ(tide_user_create(pool, &c2, &u2), 0);
	REQUIRE(u1 && u2);
	CHECK(tide_user_pool(u1) == pool);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.users, 2);
	tide_user_stats(u2, &us);
	CHECK_EQ(strlen(us.name), 31);
	CHECK(!strncmp(us.name, c2.name, 31));
	CHECK_POOL(pool);

	/* u1 may not grow: nothing is unreserved yet. */
	CHECK(tide_user_alloc(u1, 1) == NULL);
	tide_user_stats(u1, &us);
	CHECK_EQ(us.alloc_failures, 1);
	CHECK_EQ(us.quota_failures, 0);
	CHECK(tide_pool_boundary(pool) == tide_pool_base(pool));
	/* u2 may. */
	b2 = tide_user_alloc(u2, 1);
	CHECK(b2 != NULL);
	CHECK_EQ(pool_unreserved(pool), TP_UNIT);
	CHECK_POOL(pool);

	/* Now there is space: u1 up to its quota, and no further. */
	for (int i = 0; i < 4; i++) {
		b1[i] = tide_user_alloc(u1, 1);
		CHECK(b1[i] != NULL);
	}
	b1[4] = tide_user_alloc(u1, 1);
	CHECK(b1[4] == NULL);
	tide_user_stats(u1, &us);
	CHECK_EQ(us.quota, 4 * TP_BLOCK);
	CHECK_EQ(us.live_bytes, 4 * TP_BLOCK);
	CHECK_EQ(us.live_buffers, 4);
	CHECK_EQ(us.quota_failures, 1);
	CHECK_EQ(us.alloc_failures, 2);
	CHECK_EQ(tide_user_free(u1, b1[3]), 0);
	CHECK(tide_user_alloc(u1, 2 * TP_BLOCK) == NULL); /* 3 + 2 blocks > quota */
	b1[3] = tide_user_alloc(u1, TP_BLOCK);
	CHECK(b1[3] != NULL);
	CHECK_POOL(pool);

	/* Another user's buffer: -EPERM, counted, nothing changed. */
	{
		struct snap before = tp_snap(pool), after;

		CHECK_EQ(tide_user_free(u2, b1[0]), -EPERM);
		CHECK_EQ(tide_user_free(u1, b2), -EPERM);
		CHECK_EQ(tide_free(pool, b2), -EPERM);
		after = tp_snap(pool);
		CHECK_SAME(&before, &after, "bad_frees");
		CHECK_EQ(after.st.bad_frees, before.st.bad_frees + 3);
		tide_user_stats(u2, &us);
		CHECK_EQ(us.bad_frees, 1);
		CHECK_EQ(tide_buffer_size(pool, b1[0]), TP_BLOCK);
	}
	/* A pool buffer is not a user's to free either. */
	bp = tide_alloc(pool, 1);
	CHECK(bp != NULL);
	CHECK_EQ(tide_user_free(u1, bp), -EPERM);
	CHECK_EQ(tide_user_free(u1, (char *)b1[0] + 1), -EINVAL);
	CHECK_EQ(tide_free(pool, bp), 0);
	CHECK_EQ(tide_user_free(u1, bp), -EINVAL);
	CHECK_POOL(pool);

	/* Destroy while holding: -EBUSY; after the last free: 0. */
	CHECK_EQ(tide_user_destroy(u1), -EBUSY);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.users, 2);
	for (int i = 0; i < 4; i++)
		CHECK_EQ(tide_user_free(u1, b1[i]), 0);
	tide_user_stats(u1, &us);
	CHECK_EQ(us.live_bytes, 0);
	CHECK_EQ(us.peak_live_bytes, 4 * TP_BLOCK);
	CHECK_EQ(tide_user_destroy(u1), 0);
	CHECK_EQ(tide_user_free(u2, b2), 0);
	CHECK_EQ(tide_user_destroy(u2), 0);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.users, 0);
	CHECK_EQ(st.live_buffers, 0);
	CHECK_POOL(pool);

	/* Bulk through a user, within the quota. */
	c1.quota = 8 * TP_BLOCK;
	CHECK_EQ(tide_user_create(pool, &c1, &u1), 0);
	{
		void *bufs[16];

		CHECK_EQ(tide_user_alloc_bulk(u1, bufs, 16), 8);
		CHECK_EQ(tide_user_free_bulk(u1, bufs, 8), 0);
	}
	CHECK_EQ(tide_user_destroy(u1), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* "Buffer addresses stay valid for the pool's life": grow never moves a live buffer. */
static void test_address_stable(void)
{
	struct tide_pool *pool = tp_create(TIDE_AUTO_GROW, 0, 0);
	char *first = tide_alloc(pool, 1);
	char *base = tide_pool_base(pool);

	REQUIRE(first);
	strcpy(first, "stays");
	for (int i = 0; i < 20; i++)
		CHECK_EQ(tide_pool_grow(pool, TP_UNIT), 0);
	CHECK(tide_pool_base(pool) == base);
	CHECK(!strcmp(first, "stays"));
	CHECK(tide_pool_shrink(pool, 20 * TP_UNIT) == 20 * TP_UNIT);
	CHECK(!strcmp(first, "stays"));
	CHECK_EQ(tide_free(pool, first), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* Maintenance and the background flags exist, link, and do nothing wrong. */
static void test_maintain_minimal(void)
{
	struct tide_pool *pool =
		tp_create(TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_BACKGROUND, 0, 0);
	void *b = tide_alloc(pool, 1);
	int rc;

	CHECK(b != NULL);
	rc = tide_pool_maintain(pool);
	CHECK(rc >= -1);
	CHECK_EQ(tide_buffer_size(pool, b), TP_BLOCK);
	CHECK_EQ(tide_free(pool, b), 0);
	rc = tide_pool_maintain(pool);
	CHECK(rc >= -1);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* "tide_pool_destroy ... release its whole range": nothing of it stays mapped. */
/* Every field a reader sees, plus the four tp_same leaves out. */
static bool same_as_fresh(const struct snap *fresh, struct tide_pool *pool, const char *where)
{
	struct snap now = tp_snap(pool);

	return tp_same(fresh, &now, "", where) &&
	       now.st.peak_live_bytes == fresh->st.peak_live_bytes &&
	       now.st.cached_bytes == fresh->st.cached_bytes &&
	       now.st.metadata_size == fresh->st.metadata_size &&
	       now.st.reentries == fresh->st.reentries;
}

/*
 * tide_pool_reset (internal, for the fuzzer): after buffers, users, a hook, grows past
 * initial or shrinks below it, bad frees, vetoes and OS failures, the pool is as created:
 * the checker passes, every stat equals a fresh pool's, the hook heard the whole range go,
 * the address range is the same, and the pool works again.
 */
static void test_reset(void)
{
	static const unsigned flags[] = {TIDE_AUTO_GROW, TIDE_AUTO_GROW | TIDE_BACKGROUND};

	for (unsigned f = 0; f < 2; f++) {
		struct tide_pool *pool = tp_create(flags[f], 2 * TP_UNIT, 8 * TP_UNIT);
		struct tide_user_config ucfg = {.name = "u", .quota = TP_UNIT};
		struct snap fresh = tp_snap(pool);
		char *base = tide_pool_base(pool);
		struct tide_user *user;
		struct hook h;
		void *big, *bufs[40];
		unsigned long calls;

		hook_install(&h, pool);
		CHECK_EQ(tide_user_create(pool, &ucfg, &user), 0);
		CHECK(tide_user_alloc(user, TP_BLOCK) != NULL);
		big = tide_alloc(pool, 3 * TP_UNIT); /* grows past initial */
		CHECK(big != NULL);
		CHECK_EQ(tide_alloc_bulk(pool, bufs, 40), 40);
		CHECK_EQ(tide_free(pool, (char *)big + 1), -EINVAL);
		h.veto_up = -EIO;
		CHECK_EQ(tide_pool_grow(pool, TP_UNIT), -EIO);
		h.veto_up = 0;
		tide_os_fault_set(1, ENOMEM, false);
		CHECK_EQ(tide_pool_grow(pool, TP_UNIT), -ENOMEM);
		CHECK_POOL(pool);
		CHECK_EQ(tp_snap(pool).st.users, 1);

		CHECK_EQ(tide_pool_reset(pool), 0);
		CHECK_POOL(pool);
		CHECK(same_as_fresh(&fresh, pool, "after a reset"));
		CHECK_EQ(h.errors, 0);
		for (size_t u = 0; u < HOOK_UNITS; u++)
			CHECKF(!h.reg[u], "unit %zu still registered after the reset", u);
		CHECK(tide_pool_base(pool) == base);

		/* Below initial, then reset: the initial range comes back. */
		CHECK_EQ(tide_pool_shrink(pool, 2 * TP_UNIT), 2 * TP_UNIT);
		CHECK_EQ(tide_pool_reset(pool), 0);
		CHECK_POOL(pool);
		CHECK(same_as_fresh(&fresh, pool, "after a reset from below initial"));

		/*
		 * A reset keeps the pages and metadata of what was grown: growing the same
		 * range again is one OS call (the range's mprotect), and a reset with nothing
		 * grown or shrunk makes none (counted without the maintenance thread, which
		 * makes calls of its own).
		 */
		CHECK_EQ(tide_pool_grow(pool, 3 * TP_UNIT), 0);
		CHECK_EQ(tide_pool_reset(pool), 0);
		calls = tide_os_calls();
		CHECK_EQ(tide_pool_grow(pool, 3 * TP_UNIT), 0);
		if (!(flags[f] & TIDE_BACKGROUND))
			CHECK_EQ(tide_os_calls() - calls, 1);
		CHECK_EQ(tide_pool_reset(pool), 0);
		calls = tide_os_calls();
		CHECK_EQ(tide_pool_reset(pool), 0);
		if (!(flags[f] & TIDE_BACKGROUND))
			CHECK_EQ(tide_os_calls() - calls, 0);
		CHECK_POOL(pool);
		CHECK(same_as_fresh(&fresh, pool, "after a grow, a reset and a grow again"));

		/*
		 * Below initial, and the OS refuses the grow back: the reset says so, and the
		 * pool is valid, empty and hookless (what the fuzzer relies on); the next reset
		 * brings the initial range back.
		 */
		hook_install(&h, pool);
		CHECK_EQ(tide_pool_shrink(pool, 2 * TP_UNIT), 2 * TP_UNIT);
		tide_os_fault_set(1, ENOMEM, true);
		CHECK_EQ(tide_pool_reset(pool), -ENOMEM);
		tide_os_fault_set(0, 0, false);
		CHECK_POOL(pool);
		CHECK_EQ(tp_snap(pool).st.live_buffers, 0);
		CHECK_EQ(tp_snap(pool).st.users, 0);
		CHECK_EQ(h.errors, 0);
		for (size_t u = 0; u < HOOK_UNITS; u++)
			CHECKF(!h.reg[u], "unit %zu registered after a refused reset", u);
		CHECK_EQ(tide_pool_reset(pool), 0);
		CHECK(same_as_fresh(&fresh, pool, "after a refused reset and a reset"));

		/* The pool works as a fresh one, hook install included. */
		hook_install(&h, pool);
		big = tide_alloc(pool, TP_BLOCK);
		CHECK(big != NULL);
		CHECK_EQ(tide_free(pool, big), 0);
		CHECK(hook_agrees(&h, "reused"));
		CHECK_EQ(tide_pool_reset(NULL), -EINVAL);
		tide_pool_destroy(pool);
	}
}

static void test_destroy_unmaps(void)
{
	struct tide_pool *pool = tp_create(TIDE_AUTO_GROW, 2 * TP_UNIT, 0);
	char *base = tide_pool_base(pool);

	CHECK(tide_alloc(pool, 1) != NULL); /* live buffers become invalid */
	CHECK(maps_any_mapped(base, TP_RESERVE));
	tide_pool_destroy(pool);
	CHECK(!maps_any_mapped(base, TP_RESERVE));
}

int main(void)
{
	page = (size_t)sysconf(_SC_PAGESIZE);
	test_config_validation();
	test_defaults();
	test_alloc_free_single();
	test_alloc_multi();
	test_bad_frees();
	test_bulk();
	test_bulk_runs();
	test_grow_shrink_steps();
	test_max_size();
	test_shrink_busy();
	test_flags_memory();
	test_hook();
	test_os_failure();
	test_stats();
	test_users();
	test_address_stable();
	test_maintain_minimal();
	test_reset();
	test_destroy_unmaps();
	return test_exit("test_pool");
}
