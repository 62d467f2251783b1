/* SPDX-License-Identifier: MIT */
/*
 * Description: AddressSanitizer sees misuse of pool buffers. Free blocks are poisoned -
 * never handed out, freed, parked in a thread cache, flushed back to the bitmap - and a
 * buffer is unpoisoned when handed out, by every allocation path (tide_alloc, bulk, runs,
 * users). Shrink and destroy leave no poisoned shadow behind. A death test shows ASan
 * stopping a use after tide_free() (bitcoin #32581, DPDK's and mimalloc's annotations).
 *
 * Only in the ASan tree (skips elsewhere: without ASan there is nothing to see).
 */
#include "pool_helpers.h"

#if TEST_ASAN
#include <sanitizer/asan_interface.h>

static bool poisoned(const void *p)
{
	return __asan_address_is_poisoned(p);
}

/* Every byte of [p, p + len) handed out, and the bytes around it not. */
static bool usable(const void *p, size_t len)
{
	return __asan_region_is_poisoned((void *)p, len) == NULL;
}

static void use_after_free(void *arg)
{
	struct tide_pool *pool = arg;
	char *b = tide_alloc(pool, 100);

	tide_free(pool, b);
	*(volatile char *)b = 1; /* ASan must stop here */
}

static void check_death(struct tide_pool *pool)
{
	int pfd[2], status;
	char out[4096] = "";
	ssize_t n = 0, r;
	pid_t pid;

	REQUIRE(pipe(pfd) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], 2);
		close(pfd[0]);
		use_after_free(pool);
		_exit(0); /* not reached when ASan sees it */
	}
	close(pfd[1]);
	while (n < (ssize_t)sizeof(out) - 1 &&
	       (r = read(pfd[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += r;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	CHECKF(!(WIFEXITED(status) && WEXITSTATUS(status) == 0),
	       "a write after tide_free() went unseen");
	CHECKF(strstr(out, "AddressSanitizer") && strstr(out, "use-after-poison"),
	       "no ASan use-after-poison report: %.200s", out);
	printf("poison: the child's write after tide_free(): %s\n",
	       strstr(out, "use-after-poison") ? "ASan use-after-poison report" : "unseen");
}

int main(void)
{
	struct tide_pool_config cfg = {.initial_size = 2 * MiB, .flags = TIDE_AUTO_GROW};
	struct tide_user_config ucfg = {.name = "u"};
	struct tide_pool *pool;
	struct tide_user *user;
	void *many[1000], *bulk[64];
	char *a, *b, *top, *run, *ub, *base;
	size_t unreserved;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	base = tide_pool_base(pool);
	top = (char *)tide_pool_boundary(pool) - 2048;
	CHECK(poisoned(base) && poisoned(top)); /* never handed out */

	a = tide_alloc(pool, 2048);
	b = tide_alloc(pool, 2048);
	CHECK(usable(a, 2048) && usable(b, 2048));
	CHECK(poisoned(b + 2048)); /* one past the last live buffer: the next, free block */
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK(poisoned(b)); /* freed, in this thread's cache */
	memset(a, 1, 2048);

	/* More than a cache holds: some go back to the bitmap, all stay poisoned. */
	for (int i = 0; i < 1000; i++)
		CHECK((many[i] = tide_alloc(pool, 1500)) && usable(many[i], 2048));
	for (int i = 0; i < 1000; i++)
		CHECK_EQ(tide_free(pool, many[i]), 0);
	for (int i = 0; i < 1000; i++)
		CHECK(poisoned(many[i]));
	tide_pool_flush_cache(pool);
	CHECK(poisoned(many[0]) && poisoned(many[999]));

	/* Bulk, runs, users. */
	CHECK_EQ(tide_alloc_bulk(pool, bulk, 64), 64);
	for (int i = 0; i < 64; i++)
		CHECK(usable(bulk[i], 2048));
	CHECK_EQ(tide_free_bulk(pool, bulk, 64), 0);
	for (int i = 0; i < 64; i++)
		CHECK(poisoned(bulk[i]));
	run = tide_alloc(pool, 10000);
	CHECK(run && usable(run, tide_buffer_size(pool, run)));
	CHECK(poisoned(run + tide_buffer_size(pool, run)));
	CHECK_EQ(tide_free(pool, run), 0);
	CHECK(poisoned(run) && poisoned(run + 8192));
	REQUIRE(tide_user_create(pool, &ucfg, &user) == 0);
	ub = tide_user_alloc(user, 2048);
	CHECK(ub && usable(ub, 2048));
	CHECK_EQ(tide_user_free(user, ub), 0);
	CHECK(poisoned(ub));
	CHECK_EQ(tide_user_destroy(user), 0);
	CHECK_POOL(pool);

	check_death(pool);

	/* Grow: the new range is poisoned; shrink and destroy leave clean shadow. */
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), 0);
	CHECK(poisoned((char *)tide_pool_boundary(pool) - 1));
	CHECK_EQ(tide_free(pool, a), 0);
	tide_pool_flush_cache(pool);
	unreserved = (size_t)((char *)tide_pool_boundary(pool) - base);
	CHECK(tide_pool_shrink(pool, SIZE_MAX) > 0);
	CHECK(__asan_region_is_poisoned(base, unreserved) == NULL);
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), 0);
	CHECK(poisoned(base));
	tide_pool_destroy(pool);
	CHECK(!poisoned(base) && !poisoned(base + 2 * MiB - 1));
	return test_exit("test_poison");
}
#else
int main(void)
{
	skip("built without AddressSanitizer: nothing to poison for");
}
#endif
