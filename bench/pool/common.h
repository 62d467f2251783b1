/* SPDX-License-Identifier: MIT */
/*
 * common.h - small helpers shared by tide-bench and its per-allocator workers.
 *
 * Everything here is static inline so each worker executable gets its own copy and
 * no helper goes through an allocator: the clock, the xorshift generator (the same
 * seed for every allocator), a spin pause, the process's resident size read from
 * /proc/self/statm with open/read (fopen would call malloc), and a median.
 */
#ifndef TIDE_BENCH_COMMON_H
#define TIDE_BENCH_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BLOCK 2048u  /* every workload allocates 2 KiB buffers */
#define BENCH_BATCH 256u   /* batch and bulk size */
#define BENCH_WSET  65536u /* random replace working set */
#define BENCH_SEED  0x9e3779b97f4a7c15ull

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64: cheap enough not to dominate a 20 ns loop, and never 0 from a nonzero seed. */
static inline uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	__asm__ volatile("" ::: "memory");
#endif
}

/* Resident bytes of this process, or 0 when /proc is unreadable. */
static inline size_t rss_bytes(void)
{
	char buf[128];
	unsigned long size = 0, resident = 0;
	ssize_t n;
	int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
	char *p;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	size = strtoul(buf, &p, 10);
	resident = strtoul(p, NULL, 10);
	(void)size;
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median of n values; sorts v in place. */
static inline double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#endif /* TIDE_BENCH_COMMON_H */
