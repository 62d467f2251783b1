/* SPDX-License-Identifier: MIT */
/*
 * alloc_tide.h - the tide adapter for worker.c.
 *
 * One pool per process, 2 KiB blocks, created empty with TIDE_AUTO_GROW so the first
 * runs pay for growth (calibration doubles as warm-up). The burst mode adds
 * TIDE_AUTO_SHRINK | TIDE_BACKGROUND with the default shrink delay, and --huge adds
 * TIDE_HUGEPAGES. Every free's result is checked: a refused free aborts the worker,
 * since a benchmark of a broken pool means nothing.
 */
#include <tide.h>

#define ALLOC_HAS_BULK 1

static struct tide_pool *bpool;

static int alloc_setup(int argc, char **argv, int mode)
{
	struct tide_pool_config cfg = {.block_size = BENCH_BLOCK, .flags = TIDE_AUTO_GROW};
	int err;

	if (mode == MODE_BURST) {
		cfg.flags |= TIDE_AUTO_SHRINK | TIDE_BACKGROUND;
		for (int i = 0; i < argc; i++)
			if (!strcmp(argv[i], "--huge"))
				cfg.flags |= TIDE_HUGEPAGES;
	}
	err = tide_pool_create(&cfg, &bpool);
	if (err) {
		printf("MISSING tide_pool_create: %s\n", strerror(-err));
		return -1;
	}
	printf("INFO tide %s flags 0x%x\n", TIDE_VERSION_STRING, cfg.flags);
	return 0;
}

static void alloc_teardown(void)
{
	tide_pool_destroy(bpool);
	bpool = NULL;
}

static void alloc_thread_enter(void)
{
}

static void alloc_thread_leave(void)
{
}

static inline void *balloc(void)
{
	return tide_alloc(bpool, BENCH_BLOCK);
}

static inline void bfree(void *p)
{
	if (__builtin_expect(tide_free(bpool, p) != 0, 0))
		abort();
}

static inline unsigned balloc_bulk(void **v, unsigned n)
{
	return tide_alloc_bulk(bpool, v, n);
}

static inline void bfree_bulk(void **v, unsigned n)
{
	if (__builtin_expect(tide_free_bulk(bpool, v, n) != 0, 0))
		abort();
}

static size_t alloc_mapped(void)
{
	struct tide_stats st;

	tide_pool_stats(bpool, &st);
	return st.unreserved_size;
}

static void alloc_report(void)
{
	struct tide_stats st;

	tide_pool_stats(bpool, &st);
	printf("POOL unreserved %zu resident %zu live %zu metadata %zu cached %zu grows %llu "
	       "shrinks %llu purges %llu purged %llu\n",
	       st.unreserved_size, st.resident_size, st.live_bytes, st.metadata_size,
	       st.cached_bytes, (unsigned long long)st.grows, (unsigned long long)st.shrinks,
	       (unsigned long long)st.purges, (unsigned long long)st.purged_bytes);
}
