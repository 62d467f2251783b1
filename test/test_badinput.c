/* SPDX-License-Identifier: MIT */
/*
 * Description: every public function with every bad argument we could think of.
 *
 * NULL, zero, huge, misaligned, not a power of two, unknown flags, another pool's buffer,
 * another user's buffer, interior and freed pointers, the reserved portion. Each call
 * must give its documented error (-EINVAL, -EPERM, -ENOSPC; NULL or 0 from allocators and
 * getters), must not crash, and must leave the pool unchanged: its visible state (stats
 * and boundary) is compared before and after, the bad-free counter excepted where the
 * contract says it counts, and the invariant checker runs after each case.
 *
 * The table of cases tried is printed at the end, with the count to quote.
 */
#include "pool_helpers.h"

static unsigned long cases, cases_failed;
static struct tide_pool *pool, *other;
static struct snap before;

/* One row of the table: the call as written, what it must give, what it gave. */
static void row(const char *call, long long want, long long got, const char *allowed)
{
	struct snap after = tp_snap(pool);
	bool same = tp_same(&before, &after, allowed, call);
	char why[256] = "";
	bool checked = tide_pool_check(pool, why, sizeof(why)) == 0;
	bool ok = want == got && same && checked;

	cases++;
	checks_run++;
	if (!ok) {
		cases_failed++;
		checks_failed++;
	}
	printf("%-4s %-64s want %-6lld got %-6lld%s%s\n", ok ? "ok" : "FAIL", call, want, got,
	       same ? "" : "  (pool changed)", checked ? "" : "  (checker failed)");
	if (!checked)
		printf("     checker: %s\n", why);
	before = tp_snap(pool);
}

/* A row whose result is a pointer that must be NULL. */
static void row_null(const char *call, const void *got, const char *allowed)
{
	row(call, 0, got != NULL, allowed);
}

#define ROW(call, want, allowed) row(#call, (want), (long long)(call), (allowed))
#define ROW_NULL(call, allowed)	 row_null(#call, (call), (allowed))

static void bad_configs(void)
{
	struct {
		const char *what;
		struct tide_pool_config cfg;
	} bad[] = {
		{"block_size 3000", {.block_size = 3000}},
		{"block_size 32", {.block_size = 32}},
		{"block_size 1", {.block_size = 1}},
		{"block_size 2 MiB", {.block_size = 2 * MiB}},
		{"block_size SIZE_MAX", {.block_size = SIZE_MAX}},
		{"block_size 1 << 63", {.block_size = (size_t)1 << 63}},
		{"grow_unit 1000", {.grow_unit = 1000}},
		{"grow_unit 4097", {.grow_unit = 4097}},
		{"grow_unit 4 KiB < block_size 64 KiB",
		 {.block_size = 64 * KiB, .grow_unit = 4096}},
		{"grow_unit SIZE_MAX", {.grow_unit = SIZE_MAX}},
		{"reserve_size SIZE_MAX", {.reserve_size = SIZE_MAX}},
		{"reserve_size 1 << 62", {.reserve_size = (size_t)1 << 62}},
		{"reserve_size 4096 < grow_unit", {.reserve_size = 4096}},
		{"max_size > reserve_size", {.reserve_size = 4 * MiB, .max_size = 8 * MiB}},
		{"max_size 4096 < grow_unit", {.reserve_size = 4 * MiB, .max_size = 4096}},
		{"initial_size > max_size",
		 {.reserve_size = 8 * MiB, .max_size = 4 * MiB, .initial_size = 6 * MiB}},
		{"initial_size > reserve_size", {.reserve_size = 4 * MiB, .initial_size = 8 * MiB}},
		{"initial_size SIZE_MAX", {.reserve_size = 4 * MiB, .initial_size = SIZE_MAX}},
		{"min_size > max_size",
		 {.reserve_size = 8 * MiB, .max_size = 4 * MiB, .min_size = 6 * MiB}},
		{"min_size SIZE_MAX", {.reserve_size = 4 * MiB, .min_size = SIZE_MAX}},
		{"flags 1 << 6", {.flags = 1u << 6}},
		{"flags 1 << 31", {.flags = 1u << 31}},
		{"flags ~0", {.flags = ~0u}},
		{"shrink_delay_ms UINT_MAX", {.shrink_delay_ms = ~0u}},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct tide_pool *p = NULL;
		char call[96];
		int rc = tide_pool_create(&bad[i].cfg, &p);

		snprintf(call, sizeof(call), "tide_pool_create(%s)", bad[i].what);
		/* A reservation too large for this machine may be -ENOMEM: both are refusals. */
		if (rc == -ENOMEM && strstr(bad[i].what, "reserve_size"))
			rc = -EINVAL;
		row(call, -EINVAL, rc, "");
		if (!rc)
			tide_pool_destroy(p);
	}
	{
		struct tide_pool_config ok = {.reserve_size = 4 * MiB};

		ROW(tide_pool_create(&ok, NULL), -EINVAL, "");
		ROW(tide_pool_create(NULL, NULL), -EINVAL, "");
	}
}

int main(void)
{
	struct tide_user_config ucfg = {.name = "u1", .quota = 8 * TP_BLOCK};
	struct tide_user *u1 = NULL, *u2 = NULL, *uo = NULL;
	char *live, *multi, *freed, *theirs, *u1buf, *u2buf, *obuf, *base, *top;
	char stack_buf[128];
	char *heap = malloc(4096);
	void *bufs[8];
	struct tide_stats st;
	struct tide_user_stats us;

	pool = tp_create(TIDE_AUTO_GROW, 2 * TP_UNIT, 8 * TP_UNIT);
	other = tp_create(TIDE_AUTO_GROW, TP_UNIT, 0);
	REQUIRE(tide_user_create(pool, &ucfg, &u1) == 0);
	ucfg.name = "u2";
	REQUIRE(tide_user_create(pool, &ucfg, &u2) == 0);
	ucfg.name = "other-pool";
	REQUIRE(tide_user_create(other, &ucfg, &uo) == 0);
	base = tide_pool_base(pool);
	live = tide_alloc(pool, 1);
	multi = tide_alloc(pool, 3 * TP_BLOCK);
	freed = tide_alloc(pool, 1);
	theirs = tide_alloc(other, 1);
	u1buf = tide_user_alloc(u1, 1);
	u2buf = tide_user_alloc(u2, 2 * TP_BLOCK);
	obuf = tide_user_alloc(uo, 1);
	REQUIRE(heap && live && multi && freed && theirs && u1buf && u2buf && obuf);
	REQUIRE(tide_free(pool, freed) == 0);
	top = tide_pool_boundary(pool);
	before = tp_snap(pool);

	bad_configs();

	/* tide_alloc */
	ROW_NULL(tide_alloc(NULL, 1), "");
	ROW_NULL(tide_alloc(pool, 0), "alloc_failures");
	ROW_NULL(tide_alloc(pool, SIZE_MAX), "alloc_failures");
	ROW_NULL(tide_alloc(pool, SIZE_MAX - TP_BLOCK + 2), "alloc_failures");
	ROW_NULL(tide_alloc(pool, (size_t)1 << 63), "alloc_failures");
	ROW_NULL(tide_alloc(pool, TP_RESERVE + 1), "alloc_failures");
	ROW_NULL(tide_alloc(pool, 8 * TP_UNIT + 1), "alloc_failures");

	/* tide_free */
	ROW(tide_free(NULL, live), -EINVAL, "");
	ROW(tide_free(pool, NULL), 0, "");
	ROW(tide_free(pool, heap), -EINVAL, "bad_frees");
	ROW(tide_free(pool, stack_buf), -EINVAL, "bad_frees");
	ROW(tide_free(pool, theirs), -EINVAL, "bad_frees");
	ROW(tide_free(pool, obuf), -EINVAL, "bad_frees");
	ROW(tide_free(pool, live + 1), -EINVAL, "bad_frees");
	ROW(tide_free(pool, live + TP_BLOCK / 2), -EINVAL, "bad_frees");
	ROW(tide_free(pool, multi + TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, multi + 2 * TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, freed), -EINVAL, "bad_frees");
	ROW(tide_free(pool, base - 1), -EINVAL, "bad_frees");
	ROW(tide_free(pool, base - TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, top), -EINVAL, "bad_frees");
	ROW(tide_free(pool, top + TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, base + TP_RESERVE - TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, base + TP_RESERVE), -EINVAL, "bad_frees");
	ROW(tide_free(pool, (void *)1), -EINVAL, "bad_frees");
	ROW(tide_free(pool, (void *)(uintptr_t)-1), -EINVAL, "bad_frees");
	ROW(tide_free(pool, (void *)(uintptr_t)-TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_free(pool, u1buf), -EPERM, "bad_frees");
	ROW(tide_free(other, live), -EINVAL, "");

	/* tide_alloc_bulk / tide_free_bulk */
	ROW(tide_alloc_bulk(NULL, bufs, 4), 0, "");
	ROW(tide_alloc_bulk(pool, NULL, 4), 0, "");
	ROW(tide_alloc_bulk(pool, bufs, 0), 0, "");
	ROW(tide_free_bulk(NULL, bufs, 1), -EINVAL, "");
	ROW(tide_free_bulk(pool, NULL, 3), -EINVAL, "");
	ROW(tide_free_bulk(pool, NULL, 0), 0, "");
	bufs[0] = live + 1;
	ROW(tide_free_bulk(pool, (void *const *)bufs, 1), -EINVAL, "bad_frees");
	bufs[0] = freed;
	ROW(tide_free_bulk(pool, (void *const *)bufs, 1), -EINVAL, "bad_frees");
	bufs[0] = theirs;
	ROW(tide_free_bulk(pool, (void *const *)bufs, 1), -EINVAL, "bad_frees");
	bufs[0] = u2buf;
	ROW(tide_free_bulk(pool, (void *const *)bufs, 1), -EPERM, "bad_frees");

	/* tide_buffer_size */
	ROW(tide_buffer_size(NULL, live), 0, "");
	ROW(tide_buffer_size(pool, NULL), 0, "");
	ROW(tide_buffer_size(pool, live + 1), 0, "");
	ROW(tide_buffer_size(pool, multi + TP_BLOCK), 0, "");
	ROW(tide_buffer_size(pool, freed), 0, "");
	ROW(tide_buffer_size(pool, heap), 0, "");
	ROW(tide_buffer_size(pool, theirs), 0, "");
	ROW(tide_buffer_size(pool, top), 0, "");
	ROW(tide_buffer_size(pool, base + TP_RESERVE), 0, "");

	/* grow / shrink / maintain / hook */
	ROW(tide_pool_grow(NULL, TP_UNIT), -EINVAL, "");
	ROW(tide_pool_grow(pool, 0), 0, "");
	/* Huge: past max_size (-ENOSPC), or a size no pool can have (-EINVAL); both refuse. */
	{
		int rc = tide_pool_grow(pool, SIZE_MAX);

		row("tide_pool_grow(pool, SIZE_MAX) -> -ENOSPC or -EINVAL", -ENOSPC,
		    rc == -EINVAL ? -ENOSPC : rc, "");
		rc = tide_pool_grow(pool, SIZE_MAX - TP_UNIT + 2);
		row("tide_pool_grow(pool, SIZE_MAX - unit + 2) -> -ENOSPC or -EINVAL", -ENOSPC,
		    rc == -EINVAL ? -ENOSPC : rc, "");
	}
	ROW(tide_pool_grow(pool, TP_RESERVE + 1), -ENOSPC, "");
	ROW(tide_pool_grow(pool, 7 * TP_UNIT), -ENOSPC, "");
	ROW(tide_pool_shrink(NULL, TP_UNIT), -EINVAL, "");
	ROW(tide_pool_shrink(pool, 0), 0, "");
	ROW(tide_pool_maintain(NULL), -EINVAL, "");
	ROW(tide_pool_set_convert_hook(NULL, hook_fn, NULL), -EINVAL, "");
	ROW(tide_pool_set_convert_hook(NULL, NULL, NULL), -EINVAL, "");

	/* getters */
	ROW_NULL(tide_pool_base(NULL), "");
	ROW_NULL(tide_pool_boundary(NULL), "");
	memset(&st, 0xff, sizeof(st));
	tide_pool_stats(NULL, &st);
	row("tide_pool_stats(NULL, &st) leaves no garbage", 0, st.live_buffers == (size_t)-1, "");
	tide_pool_stats(pool, NULL);
	row("tide_pool_stats(pool, NULL) does not crash", 0, 0, "");
	tide_pool_flush_cache(NULL);
	row("tide_pool_flush_cache(NULL) does not crash", 0, 0, "");
	tide_pool_destroy(NULL);
	row("tide_pool_destroy(NULL) does not crash", 0, 0, "");

	/* users */
	{
		struct tide_user *u = (struct tide_user *)&ucfg, *keep = u;
		struct tide_user_config bad_flags = {.name = "x", .flags = 1u << 1};
		struct tide_user_config all_flags = {.name = "x", .flags = ~0u};

		ROW(tide_user_create(NULL, &ucfg, &u), -EINVAL, "");
		ROW(tide_user_create(pool, NULL, &u), -EINVAL, "");
		ROW(tide_user_create(pool, &ucfg, NULL), -EINVAL, "");
		ROW(tide_user_create(pool, &bad_flags, &u), -EINVAL, "");
		ROW(tide_user_create(pool, &all_flags, &u), -EINVAL, "");
		row("tide_user_create failures leave *user alone", 0, u != keep, "");
	}
	ROW(tide_user_destroy(NULL), -EINVAL, "");
	ROW(tide_user_destroy(u1), -EBUSY, "");
	ROW_NULL(tide_user_alloc(NULL, 1), "");
	ROW_NULL(tide_user_alloc(u1, 0), "alloc_failures");
	ROW_NULL(tide_user_alloc(u1, SIZE_MAX), "alloc_failures");
	ROW_NULL(tide_user_alloc(u1, 9 * TP_BLOCK), "alloc_failures"); /* over the quota */
	ROW(tide_user_free(NULL, u1buf), -EINVAL, "");
	ROW(tide_user_free(u1, NULL), 0, "");
	ROW(tide_user_free(u1, u2buf), -EPERM, "bad_frees");
	ROW(tide_user_free(u1, live), -EPERM, "bad_frees");
	ROW(tide_user_free(u1, u1buf + 1), -EINVAL, "bad_frees");
	ROW(tide_user_free(u1, u2buf + TP_BLOCK), -EINVAL, "bad_frees");
	ROW(tide_user_free(u1, freed), -EINVAL, "bad_frees");
	ROW(tide_user_free(u1, theirs), -EINVAL, "bad_frees");
	ROW(tide_user_free(u1, obuf), -EINVAL, "bad_frees");
	ROW(tide_user_free(uo, u1buf), -EINVAL, "");
	ROW(tide_user_free(u1, top), -EINVAL, "bad_frees");
	ROW(tide_user_free(u1, heap), -EINVAL, "bad_frees");
	ROW(tide_user_alloc_bulk(NULL, bufs, 2), 0, "");
	ROW(tide_user_alloc_bulk(u1, NULL, 2), 0, "");
	ROW(tide_user_alloc_bulk(u1, bufs, 0), 0, "");
	ROW(tide_user_free_bulk(NULL, (void *const *)bufs, 1), -EINVAL, "");
	ROW(tide_user_free_bulk(u1, NULL, 2), -EINVAL, "");
	bufs[0] = u2buf;
	ROW(tide_user_free_bulk(u1, (void *const *)bufs, 1), -EPERM, "bad_frees");
	ROW_NULL(tide_user_pool(NULL), "");
	memset(&us, 0, sizeof(us));
	tide_user_stats(NULL, &us);
	row("tide_user_stats(NULL, &us) does not crash", 0, 0, "");
	tide_user_stats(u1, NULL);
	row("tide_user_stats(u1, NULL) does not crash", 0, 0, "");

	/* Everything that was live still is, and frees once. */
	CHECK_EQ(tide_buffer_size(pool, live), TP_BLOCK);
	CHECK_EQ(tide_buffer_size(pool, multi), 3 * TP_BLOCK);
	CHECK_EQ(tide_free(pool, live), 0);
	CHECK_EQ(tide_free(pool, multi), 0);
	CHECK_EQ(tide_user_free(u1, u1buf), 0);
	CHECK_EQ(tide_user_free(u2, u2buf), 0);
	CHECK_EQ(tide_user_free(uo, obuf), 0);
	CHECK_EQ(tide_free(other, theirs), 0);
	CHECK_EQ(tide_user_destroy(u1), 0);
	CHECK_EQ(tide_user_destroy(u2), 0);
	CHECK_EQ(tide_user_destroy(uo), 0);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.live_buffers, 0);
	CHECK_EQ(st.users, 0);
	CHECK_POOL(pool);
	CHECK_POOL(other);
	tide_pool_destroy(other);
	tide_pool_destroy(pool);
	free(heap);

	printf("test_badinput: %lu bad inputs tried, %lu gave the wrong answer\n", cases,
	       cases_failed);
	return test_exit("test_badinput");
}
