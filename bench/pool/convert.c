/* SPDX-License-Identifier: MIT */
/*
 * convert.c - tide-bench convert: how fast the boundary moves, against the raw kernel.
 *
 * For each configuration (plain, TIDE_POPULATE, TIDE_HUGEPAGES, both) and each run, a
 * fresh pool (4 GiB reserved, nothing unreserved, no hook) grows by 1 GiB in grow_unit
 * steps of 2 MiB and shrinks back the same way; then a scratch range does the same
 * system calls by hand: reserve PROT_NONE|MAP_NORESERVE, per step mprotect(RW) (+
 * MADV_HUGEPAGE) (+ MADV_POPULATE_WRITE), and back with MADV_DONTNEED + mprotect(NONE).
 * Where pages are not populated at conversion, both sides write one byte per page right
 * after each grow step, so "grow" means "made resident" on both sides and the page
 * faults are counted for both. Each run prints GiB/s per side and direction; the
 * harness takes medians and the ratio tide/raw.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <tide.h>

#include "common.h"
#include "worker.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define CONV_BYTES   ((size_t)1 << 30)
#define CONV_UNIT    ((size_t)2 << 20)
#define CONV_RESERVE ((size_t)4 << 30)

struct conv_config {
	const char *name;
	unsigned flags;
};

static const struct conv_config configs[] = {
	{"plain", 0},
	{"populate", TIDE_POPULATE},
	{"huge", TIDE_HUGEPAGES},
	{"huge+populate", TIDE_HUGEPAGES | TIDE_POPULATE},
};

static void touch_pages(char *p, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	for (size_t off = 0; off < len; off += page)
		((volatile char *)p)[off] = 1;
}

static double gibs(uint64_t ns)
{
	return (double)CONV_BYTES / (double)(1u << 30) / ((double)ns / 1e9);
}

static int tide_side(unsigned flags, uint64_t *grow_ns, uint64_t *shrink_ns)
{
	struct tide_pool_config cfg = {
		.block_size = BENCH_BLOCK,
		.reserve_size = CONV_RESERVE,
		.grow_unit = CONV_UNIT,
		.flags = flags,
	};
	struct tide_pool *pool;
	uint64_t t0;
	int err = tide_pool_create(&cfg, &pool);

	if (err) {
		printf("FAIL tide_pool_create: %s\n", strerror(-err));
		return err;
	}
	t0 = now_ns();
	for (size_t done = 0; done < CONV_BYTES; done += CONV_UNIT) {
		char *old = tide_pool_boundary(pool);

		err = tide_pool_grow(pool, CONV_UNIT);
		if (err) {
			printf("FAIL tide_pool_grow: %s\n", strerror(-err));
			goto out;
		}
		if (!(flags & TIDE_POPULATE))
			touch_pages(old, (size_t)((char *)tide_pool_boundary(pool) - old));
	}
	*grow_ns = now_ns() - t0;
	t0 = now_ns();
	for (size_t done = 0; done < CONV_BYTES; done += CONV_UNIT) {
		ssize_t got = tide_pool_shrink(pool, CONV_UNIT);

		if (got != (ssize_t)CONV_UNIT) {
			printf("FAIL tide_pool_shrink: %zd\n", got);
			err = got < 0 ? (int)got : -EBUSY;
			goto out;
		}
	}
	*shrink_ns = now_ns() - t0;
out:
	tide_pool_destroy(pool);
	return err;
}

static int raw_side(unsigned flags, uint64_t *grow_ns, uint64_t *shrink_ns)
{
	size_t over = CONV_RESERVE + CONV_UNIT;
	char *map = mmap(NULL, over, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *base;
	uint64_t t0;
	int err = 0;

	if (map == MAP_FAILED) {
		printf("FAIL mmap: %s\n", strerror(errno));
		return -errno;
	}
	base = (char *)(((uintptr_t)map + CONV_UNIT - 1) & ~(uintptr_t)(CONV_UNIT - 1));
	t0 = now_ns();
	for (size_t off = 0; off < CONV_BYTES; off += CONV_UNIT) {
		char *p = base + off;

		if (mprotect(p, CONV_UNIT, PROT_READ | PROT_WRITE))
			err = -errno;
		if (flags & TIDE_HUGEPAGES)
			madvise(p, CONV_UNIT, MADV_HUGEPAGE);
		if (!(flags & TIDE_POPULATE))
			touch_pages(p, CONV_UNIT);
		else if (madvise(p, CONV_UNIT, MADV_POPULATE_WRITE))
			touch_pages(p, CONV_UNIT); /* before Linux 5.14 */
	}
	*grow_ns = now_ns() - t0;
	t0 = now_ns();
	for (size_t off = CONV_BYTES; off > 0; off -= CONV_UNIT) {
		char *p = base + off - CONV_UNIT;

		if (madvise(p, CONV_UNIT, MADV_DONTNEED) || mprotect(p, CONV_UNIT, PROT_NONE))
			err = -errno;
	}
	*shrink_ns = now_ns() - t0;
	munmap(map, over);
	if (err)
		printf("FAIL raw conversion: %s\n", strerror(-err));
	return err;
}

int convert_main(unsigned runs)
{
	for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
		for (unsigned r = 0; r < runs; r++) {
			uint64_t g = 0, s = 0;

			if (tide_side(configs[c].flags, &g, &s))
				return 1;
			printf("C %s tide %.3f %.3f\n", configs[c].name, gibs(g), gibs(s));
			if (raw_side(configs[c].flags, &g, &s))
				return 1;
			printf("C %s raw %.3f %.3f\n", configs[c].name, gibs(g), gibs(s));
			fflush(stdout);
		}
	}
	return 0;
}
