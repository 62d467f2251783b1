/* SPDX-License-Identifier: MIT */
/*
 * alloc_malloc.h - the malloc-family adapter for worker.c.
 *
 * One source for glibc, jemalloc, mimalloc and tcmalloc: which malloc runs is decided
 * at link time (the library named first on the link line interposes glibc's), so the
 * same worker.c is linked four times. alloc_setup() checks with dladdr() that malloc
 * really comes from the library the executable is named for, so a link mistake cannot
 * silently benchmark glibc four times. No bulk API: the bulk workloads are skipped.
 */
#include <dlfcn.h>
#include <string.h>

#ifndef MALLOC_LIB
#define MALLOC_LIB "libc.so"
#endif

#define ALLOC_HAS_BULK 0

static int alloc_setup(int argc, char **argv, int mode)
{
	Dl_info info;
	void *(*fn)(size_t) = malloc;

	(void)argc;
	(void)argv;
	(void)mode;
	if (!dladdr((void *)fn, &info) || !info.dli_fname || !strstr(info.dli_fname, MALLOC_LIB)) {
		printf("MISSING malloc resolves to %s, not %s\n",
		       info.dli_fname ? info.dli_fname : "?", MALLOC_LIB);
		return -1;
	}
	printf("INFO malloc from %s\n", info.dli_fname);
	return 0;
}

static void alloc_teardown(void)
{
}

static void alloc_thread_enter(void)
{
}

static void alloc_thread_leave(void)
{
}

static inline void *balloc(void)
{
	return malloc(BENCH_BLOCK);
}

static inline void bfree(void *p)
{
	free(p);
}

static inline unsigned balloc_bulk(void **v, unsigned n)
{
	(void)v;
	(void)n;
	return 0;
}

static inline void bfree_bulk(void **v, unsigned n)
{
	(void)v;
	(void)n;
}

/* Bytes the allocator itself reports as mapped for buffers; 0 when it has no such stat. */
static size_t alloc_mapped(void)
{
	return 0;
}

static void alloc_report(void)
{
}
