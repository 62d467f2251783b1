/* SPDX-License-Identifier: MIT */
/*
 * Description: the OS layer (src/os.c): reserve, commit, decommit, purge, release, the
 * huge page, populate and lock advice, and the fault switch.
 *
 * Memory effects are read back from the kernel, not taken on trust: resident bytes from
 * mincore() and /proc/self/smaps (decommit and purge really lower them, populate raises
 * them without a touch), mappings from /proc/self/maps (release leaves nothing), and
 * protection by touching in a child process (reserved and decommitted memory faults).
 * The fault switch fails exactly the Nth call with the chosen errno, once or from then on,
 * and tide_os_calls() counts every call.
 */
#include "internal.h"
#include "helpers.h"

static void touch(void *p)
{
	*(volatile char *)p = 1;
}

static void test_reserve_release(void)
{
	size_t size = 1 * GiB, align = 2 * MiB;
	unsigned long before = tide_os_calls();
	void *p = NULL;

	CHECK_EQ(os_reserve(size, align, &p), 0);
	REQUIRE(p);
	CHECK_EQ(tide_os_calls(), before + 1);
	CHECK((uintptr_t)p % align == 0);
	CHECK(maps_any_mapped(p, size));
	CHECK_RSS(mincore_rss(p, size), 0);
	CHECK_EQ(smaps_rss(p, size), 0);
	CHECKF(expect_death(touch, p, SIGSEGV), "touching a reserved range must fault");
	CHECKF(expect_death(touch, (char *)p + size - 1, SIGSEGV), "last byte must fault");

	before = tide_os_calls();
	CHECK_EQ(os_release(p, size), 0);
	CHECK_EQ(tide_os_calls(), before + 1);
	CHECK(!maps_any_mapped(p, size));

	/* A huge reservation costs no memory: 64 GiB (Valgrind cannot map that much). */
	if (under_valgrind())
		return;
	CHECK_EQ(os_reserve(64 * GiB, align, &p), 0);
	CHECK_EQ(smaps_rss(p, 64 * GiB), 0);
	CHECK_EQ(os_release(p, 64 * GiB), 0);
	CHECK(!maps_any_mapped(p, 64 * GiB));
}

static void test_commit_decommit(void)
{
	size_t size = 64 * MiB, part = 8 * MiB;
	unsigned long before;
	long long rss;
	char *p = NULL;

	REQUIRE(os_reserve(size, 2 * MiB, (void **)&p) == 0);
	before = tide_os_calls();
	CHECK_EQ(os_commit(p, part), 0);
	CHECK_EQ(tide_os_calls(), before + 1);
	CHECK_EQ(mincore_rss(p, part), 0); /* committed, not yet touched */
	memset(p, 0xa5, part);
	CHECK_EQ(mincore_rss(p, part), (long long)part);
	rss = smaps_rss(p, part);
	CHECKF(rss >= (long long)part, "smaps Rss of the committed part %lld < %zu", rss, part);
	CHECKF(expect_death(touch, p + part, SIGSEGV), "above the committed part must fault");

	before = tide_os_calls();
	CHECK_EQ(os_decommit(p, part), 0);
	CHECK(tide_os_calls() > before);
	printf("os: decommit is %lu OS call(s)\n", tide_os_calls() - before);
	CHECK_RSS(mincore_rss(p, part), 0);
	CHECK_EQ(smaps_rss(p, size), 0);
	CHECKF(expect_death(touch, p, SIGSEGV), "a decommitted range must fault");

	/* Commit again: the pages come back zeroed. */
	CHECK_EQ(os_commit(p, part), 0);
	CHECK(p[0] == 0 && p[part - 1] == 0);
	CHECK_EQ(os_decommit(p, part), 0);
	CHECK_EQ(os_release(p, size), 0);
}

static void test_purge(void)
{
	size_t size = 4 * MiB;
	char *p = NULL;

	REQUIRE(os_reserve(size, 2 * MiB, (void **)&p) == 0);
	REQUIRE(os_commit(p, size) == 0);
	memset(p, 0x5a, size);
	CHECK_EQ(mincore_rss(p, size), (long long)size);
	CHECK_EQ(os_purge(p + MiB, 2 * MiB), 0);
	CHECK_EQ(mincore_rss(p, size), (long long)(size - 2 * MiB));
	/* Still read/write, reads zero, and the rest is untouched. */
	CHECK(p[MiB] == 0 && p[3 * MiB - 1] == 0);
	CHECK(p[0] == 0x5a && p[3 * MiB] == 0x5a);
	p[MiB] = 1;
	CHECK_EQ(os_release(p, size), 0);
}

static void test_map_metadata(void)
{
	size_t size = 16 * MiB;
	char *p = NULL;

	CHECK_EQ(os_map_metadata(size, (void **)&p), 0);
	REQUIRE(p);
	CHECK_EQ(mincore_rss(p, size), 0);
	/* Read-only zeros until committed; writable after; zeros again after decommit. */
	CHECK(p[0] == 0 && p[size - 1] == 0);
	CHECKF(expect_death(touch, p + 12345, SIGSEGV),
	       "uncommitted metadata must not be writable");
	CHECK_EQ(os_commit(p, MiB), 0);
	p[12345] = 7;
	CHECK(p[12345] == 7);
	CHECK_EQ(os_meta_decommit(p, MiB), 0);
	CHECK_EQ(mincore_rss(p, MiB), 0);
	CHECK(p[12345] == 0);
	CHECKF(expect_death(touch, p + 12345, SIGSEGV),
	       "decommitted metadata must not be writable");
	CHECK_EQ(os_release(p, size), 0);
}

static void test_advice(void)
{
	size_t size = 4 * MiB, small = 64 * KiB;
	char *p = NULL;
	int rc;

	REQUIRE(os_reserve(size, 2 * MiB, (void **)&p) == 0);
	REQUIRE(os_commit(p, size) == 0);

	rc = os_hugepage(p, size);
	CHECKF(rc == 0 || rc == -EINVAL, "os_hugepage: %d", rc);
	if (rc)
		printf("os: MADV_HUGEPAGE not available here (%d)\n", rc);

	CHECK_EQ(os_populate(p, size), 0);
	CHECK_RSS(mincore_rss(p, size), (long long)size);
	CHECK_EQ(os_decommit(p, size), 0);
	CHECK_RSS(mincore_rss(p, size), 0);

	REQUIRE(os_commit(p, small) == 0);
	rc = os_lock(p, small);
	if (rc == -ENOMEM || rc == -EPERM) {
		printf("os: mlock of %zu bytes refused here (%d): lock not checked\n", small, rc);
	} else {
		CHECK_EQ(rc, 0);
		/* mlock faults the pages in (ASan intercepts mlock and does nothing). */
		if (!TEST_ASAN)
			CHECK_EQ(mincore_rss(p, small), (long long)small);
		CHECK_EQ(os_unlock(p, small), 0);
	}
	CHECK_EQ(os_decommit(p, small), 0);
	CHECK_EQ(os_release(p, size), 0);
}

static void test_faults(void)
{
	size_t size = 8 * MiB;
	unsigned long before;
	char *p = NULL;

	REQUIRE(os_reserve(size, 2 * MiB, (void **)&p) == 0);

	/* Once, at the next call. */
	tide_os_fault_set(1, ENOMEM, false);
	before = tide_os_calls();
	CHECK_EQ(os_commit(p, MiB), -ENOMEM);
	CHECK_EQ(tide_os_calls(), before + 1); /* a failed call still counts */
	CHECKF(expect_death(touch, p, SIGSEGV), "a failed commit must leave the range PROT_NONE");
	CHECK_EQ(os_commit(p, MiB), 0);
	touch(p);
	CHECK_EQ(os_decommit(p, MiB), 0);

	/* Once, at the third call, with another errno. */
	tide_os_fault_set(3, EAGAIN, false);
	CHECK_EQ(os_commit(p, MiB), 0);
	CHECK_EQ(os_purge(p, MiB), 0);
	CHECK_EQ(os_hugepage(p, MiB) == -EAGAIN, 1);
	CHECK_EQ(os_purge(p, MiB), 0);
	CHECK_EQ(os_decommit(p, MiB), 0);

	/* Persistent from the second call on, until switched off. */
	tide_os_fault_set(2, EPERM, true);
	CHECK_EQ(os_commit(p, MiB), 0);
	CHECK_EQ(os_purge(p, MiB), -EPERM);
	CHECK_EQ(os_commit(p + MiB, MiB), -EPERM);
	CHECK_EQ(os_lock(p, 4096), -EPERM);
	CHECK_EQ(os_populate(p, MiB), -EPERM);
	{
		void *q = NULL;

		CHECK_EQ(os_reserve(size, 2 * MiB, &q), -EPERM);
		CHECK(q == NULL);
		CHECK_EQ(os_map_metadata(size, &q), -EPERM);
		CHECK(q == NULL);
	}
	tide_os_fault_set(0, 0, false);
	CHECK_EQ(os_purge(p, MiB), 0);
	CHECK_EQ(os_decommit(p, MiB), 0);

	/* A negative errno means the same. */
	tide_os_fault_set(1, -ENOMEM, false);
	CHECK_EQ(os_commit(p, MiB), -ENOMEM);

	/* The clock is not a fault point and makes no OS call. */
	tide_os_fault_set(1, ENOMEM, true);
	before = tide_os_calls();
	CHECK(os_now_ns() > 0);
	CHECK(os_page_size() >= 4096);
	CHECK_EQ(tide_os_calls(), before);
	tide_os_fault_set(0, 0, false);

	CHECK_EQ(os_release(p, size), 0);
	CHECK(!maps_any_mapped(p, size));
}

int main(void)
{
	test_reserve_release();
	test_commit_decommit();
	test_purge();
	test_map_metadata();
	test_advice();
	test_faults();
	printf("test_os: %lu OS calls made\n", tide_os_calls());
	return test_exit("test_os");
}
