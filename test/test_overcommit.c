/* SPDX-License-Identifier: MIT */
/*
 * Description: under strict accounting (vm.overcommit_memory=2) the commit charge follows
 * the unreserved portion both ways (jemalloc #193: MADV_DONTNEED keeps the charge).
 *
 * Root only (else 77). The parent switches the machine to mode 2 with a commit limit 16 GiB
 * above what is committed now (nothing else on the machine is starved), runs the checks in
 * a child (so a crash or a failed check still restores), and restores every setting within
 * a second, also on SIGINT/SIGTERM. RUN_SERIAL: the setting is machine-wide.
 *
 * In the child: creating a 64 GiB pool charges almost nothing (the metadata is committed
 * with the unreserved portion: a pool of 64-byte blocks charged 2 GiB at create); three
 * cycles of grow 6 GiB / touch / shrink all each raise Committed_AS by about 6 GiB and give
 * it back; then another pool grows by 12 GiB, which fits only if the 6 GiB came back; a
 * grow of 24 GiB, past the limit, is refused with -ENOMEM and the pool stays as it was.
 */
#include <fcntl.h>

#include "pool_helpers.h"

#define KNOB "/proc/sys/vm/"

static char saved_mode[32], saved_ratio[32], saved_kbytes[32];
static volatile sig_atomic_t changed;

static int rd(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 0;
}

static int wr(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY);
	ssize_t n = fd < 0 ? -1 : write(fd, val, strlen(val));

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

/* Async-signal-safe: open/write/close only. */
static void restore(void)
{
	if (!changed)
		return;
	changed = 0;
	wr(KNOB "overcommit_memory", saved_mode);
	/* kbytes and ratio exclude each other: write back the one that was in use. */
	if (strcmp(saved_kbytes, "0"))
		wr(KNOB "overcommit_kbytes", saved_kbytes);
	else
		wr(KNOB "overcommit_ratio", saved_ratio);
}

static void on_signal(int sig)
{
	restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static long long committed_bytes(void)
{
	char line[256];
	long long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Committed_AS: %lld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb * 1024;
}

#define GROW  ((size_t)6 << 30)
#define NOISE ((long long)1 << 30) /* other processes commit and release meanwhile */

static int child(void *arg)
{
	struct tide_pool_config def = {0}, tiny = {.block_size = 64};
	struct tide_pool *pool, *p64;
	long long c0, c1;
	char *bnd;
	int rc;

	(void)arg;
	alarm(30);
	c0 = committed_bytes();
	REQUIRE(tide_pool_create(&def, &pool) == 0);
	c1 = committed_bytes();
	printf("overcommit: create(64 GiB, 2 KiB blocks) charged %lld KiB\n", (c1 - c0) >> 10);
	CHECKF(c1 - c0 < 64 * (long long)MiB, "create charged %lld KiB", (c1 - c0) >> 10);
	c0 = committed_bytes();
	CHECK_EQ(tide_pool_create(&tiny, &p64), 0);
	c1 = committed_bytes();
	printf("overcommit: create(64 GiB, 64 B blocks) charged %lld KiB\n", (c1 - c0) >> 10);
	CHECKF(c1 - c0 < 64 * (long long)MiB, "create of 64 B blocks charged %lld KiB",
	       (c1 - c0) >> 10);
	tide_pool_destroy(p64);

	for (int i = 0; i < 3; i++) {
		long long before = committed_bytes(), grown, shrunk;
		char *b;
		int err = tide_pool_grow(pool, GROW);

		CHECKF(err == 0, "cycle %d: grow 6 GiB: %d", i, err);
		if (err)
			break;
		grown = committed_bytes();
		b = tide_alloc(pool, 100); /* one page touched */
		CHECK(b != NULL);
		memset(b, 1, 100);
		CHECK_EQ(tide_free(pool, b), 0);
		CHECK_EQ(tide_pool_shrink(pool, SIZE_MAX), (ssize_t)GROW);
		shrunk = committed_bytes();
		printf("overcommit: cycle %d: grow %+lld MiB, shrink %+lld MiB\n", i,
		       (grown - before) >> 20, (shrunk - grown) >> 20);
		CHECKF(grown - before > (long long)GROW - NOISE, "grow charged %lld MiB",
		       (grown - before) >> 20);
		CHECKF(grown - shrunk > (long long)GROW - NOISE, "shrink gave back %lld MiB",
		       (grown - shrunk) >> 20);
		CHECK_POOL(pool);
	}
	/* Another pool can use what A gave back: 12 GiB fits only if A's 6 GiB came back. */
	{
		struct tide_pool_config bcfg = {.reserve_size = (size_t)16 << 30};
		struct tide_pool *b;

		REQUIRE(tide_pool_create(&bcfg, &b) == 0);
		CHECK_EQ(tide_pool_grow(b, (size_t)12 << 30), 0);
		tide_pool_destroy(b);
	}
	/* Past the limit: refused, and the pool is as it was. */
	bnd = tide_pool_boundary(pool);
	CHECK_EQ(tide_pool_grow(pool, (size_t)24 << 30), -ENOMEM);
	CHECK(tide_pool_boundary(pool) == bnd);
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), 0);
	CHECK(tide_alloc(pool, 100) != NULL);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	rc = test_exit("test_overcommit child");
	fflush(stdout);
	return rc;
}

int main(void)
{
	char limit[64];
	int rc;

	if (geteuid() != 0)
		skip("needs root to set vm.overcommit_memory");
	if (rd(KNOB "overcommit_memory", saved_mode, sizeof(saved_mode)) ||
	    rd(KNOB "overcommit_ratio", saved_ratio, sizeof(saved_ratio)) ||
	    rd(KNOB "overcommit_kbytes", saved_kbytes, sizeof(saved_kbytes)))
		skip("no /proc/sys/vm/overcommit_*");
	if (access(KNOB "overcommit_memory", W_OK))
		skip("/proc/sys/vm is read-only here");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	snprintf(limit, sizeof(limit), "%lld", (committed_bytes() >> 10) + (16ll << 20));
	changed = 1;
	if (wr(KNOB "overcommit_kbytes", limit) || wr(KNOB "overcommit_memory", "2")) {
		restore();
		skip("cannot set vm.overcommit_memory=2");
	}
	rc = run_in_child(child, NULL);
	restore();
	CHECKF(rc == 0, "the child under vm.overcommit_memory=2 returned %d", rc);
	return test_exit("test_overcommit");
}
