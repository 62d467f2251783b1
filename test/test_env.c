/* SPDX-License-Identifier: MIT */
/*
 * Description: the pool in the environments people run it in (issue 9, kinds 5, 7, 8)
 * that need no privilege.
 *
 *  - Reservation fallback: a refused default reservation is halved (valgrind refuses
 *    64 GiB but gives 32 GiB; run in the valgrind stage, the default pool must be created
 *    for real); an explicit reserve_size is not; whatever errno the OS gives, create and
 *    grow say -ENOMEM (valgrind's mmap says EINVAL).
 *  - Commit charge follows the unreserved portion: the writable part of the pool's range
 *    and of its metadata mapping (what vm.overcommit_memory=2 charges) is what describes
 *    the unreserved portion, after create, grow and shrink; a fresh pool of 64-byte blocks
 *    has almost none writable (it had 2 GiB).
 *  - memory_limit: an explicit limit on the process's resident memory stops growth with
 *    -ENOMEM before it is passed, with and without TIDE_POPULATE; TIDE_NO_MEMORY_LIMIT
 *    turns the check off.
 *  - No descriptor kept: pools with and without a limit leave the count of open
 *    descriptors as it was, and a program that closes every descriptor above stderr after
 *    create (and reuses the numbers) keeps its memory_limit.
 * test_overcommit, test_cgroup and test_thp do the parts that need root.
 */
#include <dirent.h>

#include "internal.h"
#include "pool_helpers.h"

/* Writable private bytes of [lo, hi) per /proc/self/maps: what strict accounting charges. */
static size_t writable_bytes(const void *lo, size_t len)
{
	uintptr_t a = (uintptr_t)lo, b = a + len, s, e;
	char line[512], perms[8];
	size_t sum = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &s, &e, perms) == 3 &&
		    perms[1] == 'w' && perms[3] == 'p' && e > a && s < b)
			sum += (e < b ? e : b) - (s > a ? s : a);
	if (f)
		fclose(f);
	return sum;
}

static void test_reserve_fallback(void)
{
	struct tide_pool_config cfg = {0};
	struct tide_pool *pool = NULL;
	struct tide_stats st;
	int err;

	/* The first reservation refused with an errno the OS is not documented to give. */
	tide_os_fault_set(1, EINVAL, false);
	err = tide_pool_create(&cfg, &pool);
	tide_os_fault_set(0, 0, false);
	CHECK_EQ(err, 0);
	if (!err) {
		tide_pool_stats(pool, &st);
		CHECK_EQ(st.reserve_size, 32 * GiB);
		CHECK_EQ(st.max_size, 32 * GiB);
		CHECK_EQ(tide_pool_grow(pool, 4 * MiB), 0);
		CHECK_POOL(pool);
		tide_pool_destroy(pool);
	}

	/* Every reservation refused: -ENOMEM, not the OS's EINVAL. */
	tide_os_fault_set(1, EINVAL, true);
	err = tide_pool_create(&cfg, &pool);
	tide_os_fault_set(0, 0, false);
	CHECK_EQ(err, -ENOMEM);

	/* An explicit reserve_size is reserved as asked, or refused. */
	cfg.reserve_size = 8 * GiB;
	tide_os_fault_set(1, EINVAL, false);
	err = tide_pool_create(&cfg, &pool);
	tide_os_fault_set(0, 0, false);
	CHECK_EQ(err, -ENOMEM);

	/* An explicit max_size is a floor for the fallback: 64 -> 32 GiB would pass it. */
	cfg = (struct tide_pool_config){.max_size = 48 * GiB};
	tide_os_fault_set(1, ENOMEM, false);
	err = tide_pool_create(&cfg, &pool);
	tide_os_fault_set(0, 0, false);
	CHECK_EQ(err, -ENOMEM);

	/* A grow or a shrink refused with an odd errno is -ENOMEM too, and changes nothing. */
	cfg = (struct tide_pool_config){.reserve_size = GiB};
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	tide_os_fault_set(1, EINVAL, false);
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), -ENOMEM);
	tide_os_fault_set(0, 0, false);
	CHECK(tide_pool_boundary(pool) == tide_pool_base(pool));
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), 0);
	tide_os_fault_set(1, EFAULT, false);
	CHECK_EQ(tide_pool_shrink(pool, SIZE_MAX), -ENOMEM);
	tide_os_fault_set(0, 0, false);
	CHECK(tide_pool_boundary(pool) == (char *)tide_pool_base(pool) + 2 * MiB);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);

	/* The real thing: the default pool is created (under valgrind too, by the fallback). */
	cfg = (struct tide_pool_config){.flags = TIDE_AUTO_GROW};
	err = tide_pool_create(&cfg, &pool);
	CHECK_EQ(err, 0);
	if (!err) {
		void *b = tide_alloc(pool, 1500);

		tide_pool_stats(pool, &st);
		printf("env: default pool reserved %zu GiB%s\n", st.reserve_size >> 30,
		       under_valgrind() ? " (under valgrind)" : "");
		CHECK(st.reserve_size >= 4 * GiB && st.reserve_size <= 64 * GiB);
		CHECK(b != NULL);
		CHECK_EQ(tide_free(pool, b), 0);
		tide_pool_destroy(pool);
	}
}

static void test_charge_follows(void)
{
	struct tide_pool_config cfg = {.block_size = 64};
	struct tide_pool *pool;
	size_t meta0, meta1, meta2, range1;
	char *base;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	base = tide_pool_base(pool);
	meta0 = writable_bytes(pool->meta, pool->meta_size);
	printf("env: %zu GiB of 64 B blocks: metadata mapping %zu MiB, writable at create %zu "
	       "KiB\n",
	       pool->reserve_size >> 30, pool->meta_size >> 20, meta0 >> 10);
	CHECK(meta0 <= 5 * MiB); /* the bitmap summaries: 2 x 1 bit per 64-bit word, 4 MiB */
	CHECK_EQ(writable_bytes(base, pool->reserve_size), 0);

	REQUIRE(tide_pool_grow(pool, 64 * MiB) == 0);
	meta1 = writable_bytes(pool->meta, pool->meta_size);
	range1 = writable_bytes(base, pool->reserve_size);
	CHECK_EQ(range1, 64 * MiB);
	/* 1 Mi blocks: 2 MiB of tags, 128 KiB of bitmap words, a little purge state. */
	CHECKF(meta1 - meta0 >= 2 * MiB && meta1 - meta0 <= 3 * MiB,
	       "metadata made writable for 64 MiB: %zu KiB", (meta1 - meta0) >> 10);
	CHECK(tide_alloc(pool, 64) != NULL); /* metadata of the range is writable for real */
	CHECK_POOL(pool);

	CHECK_EQ(tide_free(pool, base), 0);
	CHECK_EQ(tide_pool_shrink(pool, SIZE_MAX), (ssize_t)(64 * MiB));
	meta2 = writable_bytes(pool->meta, pool->meta_size);
	CHECK_EQ(writable_bytes(base, pool->reserve_size), 0);
	CHECKF(meta2 <= meta0 + 2 * os_page_size(), "after shrink %zu KiB writable (create %zu)",
	       meta2 >> 10, meta0 >> 10);
	CHECK_POOL(pool);

	/* Cycles: the charge goes and comes back, and the pool keeps working. */
	for (int i = 0; i < 3; i++) {
		void *b;

		CHECK_EQ(tide_pool_grow(pool, 8 * MiB), 0);
		b = tide_alloc(pool, 64);
		CHECK(b != NULL);
		CHECK_EQ(tide_free(pool, b), 0);
		tide_pool_flush_cache(pool);
		CHECK_EQ(tide_pool_shrink(pool, SIZE_MAX), (ssize_t)(8 * MiB));
		CHECK_POOL(pool);
	}
	CHECK(writable_bytes(pool->meta, pool->meta_size) <= meta0 + 2 * os_page_size());
	tide_pool_destroy(pool);
}

static size_t fill(struct tide_pool *pool, void **bufs, size_t max)
{
	size_t n = 0;

	while (n < max && (bufs[n] = tide_alloc(pool, 2048)) != NULL)
		memset(bufs[n++], 0x5a, 2048);
	return n;
}

static void test_memory_limit(void)
{
	static void *bufs[64 * 1024]; /* 128 MiB of 2 KiB buffers */
	const size_t room = 32 * MiB;

	for (int populate = 0; populate < 2; populate++) {
		struct tide_pool_config cfg = {
			.max_size = 256 * MiB,
			.flags = TIDE_AUTO_GROW | (populate ? TIDE_POPULATE : 0),
		};
		struct tide_pool *pool;
		struct tide_stats st;
		size_t n;

		cfg.memory_limit = (size_t)self_rss() + room;
		REQUIRE(tide_pool_create(&cfg, &pool) == 0);
		n = fill(pool, bufs, sizeof(bufs) / sizeof(bufs[0]));
		tide_pool_stats(pool, &st);
		printf("env: memory_limit RSS + 32 MiB%s: filled %zu KiB, then NULL\n",
		       populate ? ", populate" : "", (n * 2048) >> 10);
		CHECK(n < sizeof(bufs) / sizeof(bufs[0]));
		CHECK(n * 2048 <= room);
		/* Valgrind's and qemu's own memory count in the process's RSS too. */
		if (!under_emulator())
			CHECK(n * 2048 >= (under_valgrind() ? 2 * MiB : room / 2));
		CHECK(st.alloc_failures >= 1 && st.os_failures >= 1);
		CHECK_EQ(tide_pool_grow(pool, 2 * MiB), -ENOMEM);
		CHECK_POOL(pool);
		tide_pool_destroy(pool);
	}

	/* Off: the same pool grows past it. */
	{
		struct tide_pool_config cfg = {.max_size = 256 * MiB,
					       .flags = TIDE_AUTO_GROW,
					       .memory_limit = TIDE_NO_MEMORY_LIMIT};
		struct tide_pool *pool;

		REQUIRE(tide_pool_create(&cfg, &pool) == 0);
		CHECK_EQ(tide_pool_grow(pool, 64 * MiB), 0);
		CHECK_POOL(pool);
		tide_pool_destroy(pool);
	}
	/* A limit below the headroom refuses every grow, and create with initial_size. */
	{
		struct tide_pool_config cfg = {.initial_size = 2 * MiB, .memory_limit = 1};
		struct tide_pool *pool;

		CHECK_EQ(tide_pool_create(&cfg, &pool), -ENOMEM);
	}
}

/* Count this process's open descriptors. */
static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)))
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* In a child: the pool's limit holds after every descriptor above stderr was closed. */
static int fill_after_closing(void *arg)
{
	static void *bufs[64 * 1024];
	struct tide_pool_config cfg = {.max_size = 256 * MiB, .flags = TIDE_AUTO_GROW};
	const size_t room = 32 * MiB;
	struct tide_pool *pool;
	int pipes[2];
	size_t n;

	(void)arg;
	cfg.memory_limit = (size_t)self_rss() + room;
	if (tide_pool_create(&cfg, &pool))
		return 2;
	for (int fd = 3; fd < 1024; fd++)
		close(fd); /* a daemon after setup */
	for (int i = 0; i < 4; i++)
		if (pipe(pipes))
			return 77; /* the numbers reused by the program */
	n = fill(pool, bufs, sizeof(bufs) / sizeof(bufs[0]));
	printf("env: memory_limit RSS + 32 MiB, descriptors closed after create: filled %zu KiB\n",
	       (n * 2048) >> 10);
	fflush(stdout);
	return n * 2048 <= room ? 0 : 1;
}

/* No descriptor kept by a pool, with a limit or not; closing them loses no limit. */
static void test_no_descriptor_kept(void)
{
	size_t limits[] = {0, (size_t)self_rss() + 512 * MiB, TIDE_NO_MEMORY_LIMIT};
	struct tide_pool *pools[3];
	int before = open_fds(), rc;

	for (int i = 0; i < 3; i++) {
		struct tide_pool_config cfg = {.memory_limit = limits[i]};

		REQUIRE(tide_pool_create(&cfg, &pools[i]) == 0);
		if (i != 1 || !under_emulator()) /* the grow is refused by qemu's own RSS there */
			CHECK_EQ(tide_pool_grow(pools[i], 2 * MiB), 0);
	}
	CHECK_EQ(open_fds(), before);
	for (int i = 0; i < 3; i++)
		tide_pool_destroy(pools[i]);
	rc = run_in_child(fill_after_closing, NULL);
	CHECKF(rc == 0 || rc == 77, "memory_limit after the descriptors were closed: %d", rc);
}

int main(void)
{
	test_reserve_fallback();
	test_charge_follows();
	test_memory_limit();
	test_no_descriptor_kept();
	return test_exit("test_env");
}
