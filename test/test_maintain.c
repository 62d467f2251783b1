/* SPDX-License-Identifier: MIT */
/*
 * Description: elasticity. Automatic shrink happens after shrink_delay_ms and not before;
 * it never takes a live buffer and stops at min_size; a steady load neither grows nor
 * shrinks the pool once warm (no oscillation); purge gives back free pages below a live
 * buffer that holds the top, and resident_size agrees with what /proc/self/smaps says of
 * the range; TIDE_BACKGROUND shrinks with no call from the application; maintain's return
 * value follows its contract. Waits are bounded polls: nothing here asserts a duration.
 */
#include <time.h>

#include "helpers.h"
#include "internal.h"

#define MB (1024 * 1024)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct tide_stats stats(struct tide_pool *pool)
{
	struct tide_stats st;

	tide_pool_stats(pool, &st);
	return st;
}

/* Call maintain until cond holds or limit_ms passes; true if it held. */
#define MAINTAIN_UNTIL(pool, cond, limit_ms)                                                       \
	({                                                                                         \
		uint64_t end_ = now_ms() + (limit_ms);                                             \
		bool ok_ = false;                                                                  \
		while (!(ok_ = (cond)) && now_ms() < end_) {                                       \
			tide_pool_maintain(pool);                                                  \
			sleep_ms(2);                                                               \
		}                                                                                  \
		ok_;                                                                               \
	})

static unsigned fill(struct tide_pool *pool, void **bufs, unsigned n)
{
	unsigned got = 0;

	while (got < n && (bufs[got] = tide_alloc(pool, 2048)))
		memset(bufs[got++], 0xa5, 16);
	return got;
}

/* A burst is given back after the delay, not before, down to live data, not below min. */
static void test_shrink_after_delay(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .initial_size = 4 * MB,
				       .min_size = 4 * MB,
				       .shrink_delay_ms = 400,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[32768];
	struct tide_pool *pool;
	unsigned n;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	CHECK_EQ(stats(pool).unreserved_size, 4 * MB);
	n = fill(pool, bufs, 32768); /* 64 MiB */
	CHECK_EQ(n, 32768);
	CHECK(stats(pool).unreserved_size >= 64 * MB);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	/* Right after the burst: the peak is inside the window, nothing goes. */
	for (int i = 0; i < 20; i++)
		tide_pool_maintain(pool);
	CHECK(stats(pool).unreserved_size >= 64 * MB);
	CHECK_EQ(stats(pool).shrinks, 0);
	/* After the delay it goes, down to min_size (no live data). */
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).unreserved_size == 4 * MB, 5000));
	CHECK(stats(pool).shrinks >= 1);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/*
 * One call long after a burst gives it back: an event loop that slept through several
 * delays (or a fork child with no thread, test_fork) must not sample the old peak as if it
 * were current and wait one more delay.
 */
static void test_one_late_call(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .shrink_delay_ms = 50,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[8192];
	struct tide_pool *pool;
	unsigned n;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	sleep_ms(60); /* older than the delay: its samples count */
	n = fill(pool, bufs, 4096);
	tide_pool_maintain(pool); /* a sample in the middle of the burst */
	n += fill(pool, bufs + n, 4096);
	REQUIRE(n == 8192);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	CHECK(stats(pool).unreserved_size >= 16 * MB);
	sleep_ms(4 * 50); /* silence: no call for four delays */
	tide_pool_maintain(pool);
	CHECK_EQ((size_t)((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool)), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* A live buffer near the top stops the boundary there; it is never taken. */
static void test_no_shrink_under_live(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .shrink_delay_ms = 20,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[16384];
	struct tide_pool *pool;
	unsigned n, keep;
	char *top;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	n = fill(pool, bufs, 16384); /* 32 MiB */
	REQUIRE(n == 16384);
	keep = n - 1;
	top = bufs[keep];
	for (unsigned i = 0; i < keep; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).purges > 0, 3000));
	sleep_ms(60);
	for (int i = 0; i < 20; i++)
		tide_pool_maintain(pool);
	/* The boundary stays above the live buffer; its bytes are intact. */
	CHECK((char *)tide_pool_boundary(pool) > top);
	CHECK(top[0] == (char)0xa5 && top[15] == (char)0xa5);
	CHECK_EQ(tide_pool_shrink(pool, 1024 * MB), -EBUSY);
	CHECK_EQ(tide_free(pool, top), 0);
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).unreserved_size == 0, 3000));
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* A steady load, once warm, neither grows nor shrinks the pool. */
static void test_steady_load(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .shrink_delay_ms = 30,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *ws[12000];
	struct tide_pool *pool;
	struct tide_stats warm, end;
	uint64_t rng = 42, stop;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(fill(pool, ws, 12000) == 12000);
	/* Warm up for ten delays, then watch for as long again. */
	for (int phase = 0; phase < 2; phase++) {
		stop = now_ms() + 400;
		if (phase == 1)
			warm = stats(pool);
		while (now_ms() < stop) {
			for (int i = 0; i < 2000; i++) {
				unsigned k = (unsigned)rng_below(&rng, 12000);

				CHECK_EQ(tide_free(pool, ws[k]), 0);
				ws[k] = tide_alloc(pool, 2048);
				REQUIRE(ws[k]);
			}
			tide_pool_maintain(pool);
			sleep_ms(1);
		}
	}
	end = stats(pool);
	CHECKF(end.grows == warm.grows && end.shrinks == warm.shrinks,
	       "steady load: %" PRIu64 " grows and %" PRIu64 " shrinks after warm-up",
	       end.grows - warm.grows, end.shrinks - warm.shrinks);
	CHECK_EQ(end.unreserved_size, warm.unreserved_size);
	for (unsigned i = 0; i < 12000; i++)
		CHECK_EQ(tide_free(pool, ws[i]), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* Purge: free pages below a live top are given back; resident_size agrees with smaps. */
static void test_purge_matches_smaps(void)
{
	struct tide_pool_config cfg = {.reserve_size = 256 * MB,
				       .shrink_delay_ms = 20,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_POPULATE};
	static void *bufs[8192];
	struct tide_pool *pool;
	struct tide_stats st;
	long long rss_before, rss_after;
	unsigned n;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	n = fill(pool, bufs, 8192); /* 16 MiB, populated */
	REQUIRE(n == 8192);
	st = stats(pool);
	rss_before = mincore_rss(tide_pool_base(pool), st.unreserved_size);
	CHECK_EQ(rss_before, (long long)st.resident_size);
	/* Keep every 100th buffer and the topmost; free the rest. */
	for (unsigned i = 0; i < n; i++)
		if (i % 100 && i != n - 1)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).purged_bytes > 8 * MB, 3000));
	st = stats(pool);
	rss_after = mincore_rss(tide_pool_base(pool), st.unreserved_size);
	CHECK_EQ(st.unreserved_size, 16 * MB); /* the top is live: the boundary stays */
	CHECKF(rss_after == (long long)st.resident_size,
	       "smaps/mincore says %lld resident, stats say %zu", rss_after, st.resident_size);
	CHECK(smaps_rss(tide_pool_base(pool), st.unreserved_size) <= rss_after + 2 * MB);
	CHECK(rss_after < rss_before / 4);
	/* Kept buffers are intact; a purged page comes back zeroed and usable. */
	for (unsigned i = 0; i < n; i += 100)
		CHECK(((char *)bufs[i])[0] == (char)0xa5);
	{
		char *again = tide_alloc(pool, 2048);

		REQUIRE(again);
		memset(again, 1, 2048);
		CHECK(stats(pool).resident_size > st.resident_size);
		CHECK_EQ(tide_free(pool, again), 0);
	}
	for (unsigned i = 0; i < n; i++)
		if (i % 100 == 0 || i == n - 1)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/*
 * Purge while the pool grows and allocates: a chunk taken again after a purge counts as
 * resident again, so after the burst resident_size still agrees with the kernel.
 */
static void test_purge_during_burst(void)
{
	struct tide_pool_config cfg = {.reserve_size = 256 * MB,
				       .shrink_delay_ms = 1,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[16384];
	struct tide_pool *pool;
	struct tide_stats st;
	long long rss;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	for (unsigned i = 0; i < 16384; i++) {
		bufs[i] = tide_alloc(pool, 2048);
		REQUIRE(bufs[i]);
		memset(bufs[i], 0x5a, 2048);
		if (i % 256 == 0) {
			tide_pool_maintain(pool);
			sleep_ms(1);
		}
	}
	st = stats(pool);
	rss = mincore_rss(tide_pool_base(pool), st.unreserved_size);
	CHECKF(rss == (long long)st.resident_size, "during: kernel %lld, stats %zu", rss,
	       st.resident_size);
	for (unsigned i = 0; i < 16384; i++)
		if (i % 100 && i != 16383)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).resident_size < 8 * MB, 3000));
	st = stats(pool);
	rss = mincore_rss(tide_pool_base(pool), st.unreserved_size);
	CHECKF(rss == (long long)st.resident_size, "after: kernel %lld, stats %zu", rss,
	       st.resident_size);
	for (unsigned i = 0; i < 16384; i++)
		if (i % 100 == 0 || i == 16383)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/*
 * Purge waits a delay from the free, not from the claim: a page just freed stays. The
 * buffers are held for nearly two delays with maintenance running (so their regions were
 * examined once, a delay after their claim), then freed; for most of a delay after that,
 * nothing may be purged.
 */
static void test_purge_waits_after_free(void)
{
	struct tide_pool_config cfg = {.reserve_size = 64 * MB,
				       .shrink_delay_ms = 1000,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[4096];
	struct tide_pool *pool;
	uint64_t purged, end;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(fill(pool, bufs, 4096) == 4096);
	end = now_ms() + 1900;
	while (now_ms() < end) {
		tide_pool_maintain(pool);
		sleep_ms(10);
	}
	purged = stats(pool).purged_bytes;
	for (unsigned i = 0; i < 4095; i++) /* the topmost stays: no shrink, only purge */
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	end = now_ms() + 700;
	while (now_ms() < end) {
		tide_pool_maintain(pool);
		sleep_ms(10);
	}
	CHECK_EQ(stats(pool).purged_bytes, purged); /* freed less than a delay ago */
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).purged_bytes > purged + 4 * MB, 5000));
	CHECK_EQ(tide_free(pool, bufs[4095]), 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* TIDE_BACKGROUND: the pool's own thread gives a burst back with no call from us. */
static void test_background(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .shrink_delay_ms = 20,
				       .flags =
					       TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_BACKGROUND};
	static void *bufs[16384];
	struct tide_pool *pool;
	uint64_t end;
	unsigned n;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	n = fill(pool, bufs, 16384);
	REQUIRE(n == 16384);
	for (unsigned i = 0; i < n; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	end = now_ms() + 5000;
	while (stats(pool).unreserved_size > 0 && now_ms() < end)
		sleep_ms(5);
	CHECK_EQ(stats(pool).unreserved_size, 0);
	CHECK(stats(pool).shrinks >= 1);
	tide_pool_destroy(pool); /* stops and joins the thread */
}

/*
 * One call after the delay does all that is due: with a live buffer holding the top, the
 * free pages below it are purged by that call (not one delay of calls later), and from
 * then on nothing is due (-1) until buffers move: an event loop is not woken for nothing.
 * Freeing the top then makes work due again, and the calls give the space back.
 */
static void test_one_call_purges_below_live_top(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .block_size = 65536,
				       .shrink_delay_ms = 50,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	static void *bufs[512];
	struct tide_pool *pool;
	struct tide_stats st;
	int ms;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	for (unsigned i = 0; i < 512; i++) { /* 32 MiB, touched */
		bufs[i] = tide_alloc(pool, 65536);
		REQUIRE(bufs[i]);
		memset(bufs[i], 0xa5, 65536);
	}
	for (unsigned i = 0; i < 511; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	sleep_ms(4 * 50); /* quiet for four delays, no call */
	ms = tide_pool_maintain(pool);
	st = stats(pool);
	CHECKF(st.resident_size < st.unreserved_size / 2,
	       "one call after the delay: resident %zu of %zu (returned %d)", st.resident_size,
	       st.unreserved_size, ms);
	CHECK_EQ(st.unreserved_size, 32 * MB); /* the live top holds the boundary */
	CHECK_EQ((long long)st.resident_size,
		 mincore_rss(tide_pool_base(pool), st.unreserved_size));
	CHECK_EQ(ms, -1);
	for (int i = 0; i < 5; i++) {
		sleep_ms(2);
		CHECK_EQ(tide_pool_maintain(pool), -1); /* nothing left to do */
	}
	CHECK(((char *)bufs[511])[0] == (char)0xa5);
	CHECK_EQ(tide_free(pool, bufs[511]), 0);
	tide_pool_flush_cache(pool);
	CHECK(tide_pool_maintain(pool) > 0); /* the freed top can go once the delay passes */
	CHECK(MAINTAIN_UNTIL(pool, stats(pool).unreserved_size == 0, 5000));
	CHECK_EQ(tide_pool_maintain(pool), -1);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* Wait until the pool's thread has stopped stepping (runs unchanged for 100 ms, 5 s at most). */
static uint64_t settled_runs(struct tide_pool *pool)
{
	uint64_t runs = stats(pool).maintenance_runs, end = now_ms() + 5000;

	while (now_ms() < end) {
		uint64_t again;

		sleep_ms(100);
		again = stats(pool).maintenance_runs;
		if (again == runs)
			break;
		runs = again;
	}
	return runs;
}

/*
 * TIDE_BACKGROUND on an idle pool costs no wake-ups: once all is given back (everything
 * free, at the floor) the thread sleeps until the slow path wakes it - no maintenance run
 * for many sample periods (20 ms delay: a period is 1.25 ms; the thread used to step every
 * period for ever). With a live buffer holding the top it looks again only at a long
 * interval (a tide_free() that its cache takes reaches no slow path). A burst after the
 * idle time wakes it and is given back; so is that top once freed, by a cache hit.
 */
static void test_background_idle(void)
{
	struct tide_pool_config cfg = {.reserve_size = 1024 * MB,
				       .shrink_delay_ms = 20,
				       .flags =
					       TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_BACKGROUND};
	static void *bufs[8192];
	struct tide_pool *pool;
	uint64_t runs, end;
	void *top;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	for (int round = 0; round < 2; round++) {
		/* A burst, all freed: given back with no call, then no more runs. */
		REQUIRE(fill(pool, bufs, 8192) == 8192);
		for (unsigned i = 0; i < 8192; i++)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
		tide_pool_flush_cache(pool);
		end = now_ms() + 5000;
		while (stats(pool).unreserved_size > 0 && now_ms() < end)
			sleep_ms(5);
		CHECKF(stats(pool).unreserved_size == 0, "round %d: burst not given back", round);
		runs = settled_runs(pool);
		sleep_ms(300);
		CHECKF(stats(pool).maintenance_runs == runs,
		       "round %d: idle pool, all free: %" PRIu64 " maintenance runs in 300 ms",
		       round, stats(pool).maintenance_runs - runs);
	}
	/* The top held by a live buffer: purged, then at most a look per long interval. */
	REQUIRE(fill(pool, bufs, 8192) == 8192);
	top = bufs[8191];
	for (unsigned i = 0; i < 8191; i++)
		CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	end = now_ms() + 5000;
	while (stats(pool).resident_size > 2 * MB && now_ms() < end)
		sleep_ms(5);
	CHECK(stats(pool).resident_size <= 2 * MB);
	CHECK_EQ(stats(pool).unreserved_size, 16 * MB);
	runs = settled_runs(pool);
	sleep_ms(300);
	CHECKF(stats(pool).maintenance_runs <= runs + 1,
	       "idle pool, live top: %" PRIu64 " maintenance runs in 300 ms",
	       stats(pool).maintenance_runs - runs);
	/* Freed by a cache hit (no slow path): still given back, by the long look. */
	CHECK_EQ(tide_free(pool, top), 0);
	end = now_ms() + 10000;
	while (stats(pool).unreserved_size > 0 && now_ms() < end)
		sleep_ms(10);
	CHECK_EQ(stats(pool).unreserved_size, 0);
	tide_pool_destroy(pool);
}

/* maintain's contract: -EINVAL for NULL, -1 without auto shrink or at the floor. */
static void test_maintain_contract(void)
{
	struct tide_pool_config plain = {.reserve_size = 64 * MB, .initial_size = 8 * MB};
	struct tide_pool_config elastic = {.reserve_size = 64 * MB,
					   .shrink_delay_ms = 10,
					   .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK};
	struct tide_pool *pool;
	void *b;

	CHECK_EQ(tide_pool_maintain(NULL), -EINVAL);
	REQUIRE(tide_pool_create(&plain, &pool) == 0);
	CHECK_EQ(tide_pool_maintain(pool), -1);
	CHECK_EQ(stats(pool).unreserved_size, 8 * MB); /* no auto shrink: nothing moves */
	tide_pool_destroy(pool);

	REQUIRE(tide_pool_create(&elastic, &pool) == 0);
	CHECK_EQ(tide_pool_maintain(pool), -1); /* empty, at its floor */
	b = tide_alloc(pool, 100);
	REQUIRE(b);
	CHECK(tide_pool_maintain(pool) > 0); /* something could go back later */
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK(MAINTAIN_UNTIL(pool, tide_pool_maintain(pool) == -1, 3000));
	CHECK_EQ(stats(pool).unreserved_size, 0);
	tide_pool_destroy(pool);
}

int main(void)
{
	test_maintain_contract();
	test_shrink_after_delay();
	test_one_late_call();
	test_no_shrink_under_live();
	test_steady_load();
	test_purge_matches_smaps();
	test_purge_during_burst();
	test_purge_waits_after_free();
	test_background();
	test_one_call_purges_below_live_top();
	test_background_idle();
	return test_exit("test_maintain");
}
