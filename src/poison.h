/* SPDX-License-Identifier: MIT */
/*
 * poison.h - tell AddressSanitizer (and valgrind) which pool blocks are not handed out.
 *
 * To ASan the pool is one big mapping: a use after tide_free() or a write past a buffer
 * into its free neighbour is not seen. So, as DPDK's mempool and mimalloc do, free blocks
 * are poisoned and a block is unpoisoned when it is handed out: the whole unreserved
 * portion when it is grown, a buffer's blocks when freed (before they reach a thread
 * cache, so blocks parked in caches are poisoned too), unpoisoned when allocated, and the
 * shadow is cleared again when a range is shrunk or the pool destroyed.
 *
 * ASan is found at run time: the ASan entry points are weak references, non-NULL when the
 * process has the ASan runtime - a library built with -fsanitize=address, or a release
 * library loaded by a program built with it. Valgrind client requests are compiled in with
 * -DTIDE_VALGRIND=ON (they need valgrind/memcheck.h) and act when RUNNING_ON_VALGRIND; they
 * are off by default because memcheck then reports every read of a freed buffer, which
 * existing valgrind-clean programs may do.
 *
 * Under ASan a poisoned range costs shadow memory, an eighth of it, written at grow: the
 * price of seeing the misuse. TIDE_POISON=0 in the environment turns poisoning off.
 *
 * The hot path pays nothing: a thread's cache of a pool that poisons never becomes its
 * tcache_last (cache.c), so tide_alloc()/tide_free() never take their inline cache path
 * for it (the check they already make fails) and go through pool_alloc()/pool_free(),
 * where poisoning is one well-predicted branch. The inline path's code is unchanged.
 */
#ifndef TIDE_POISON_H
#define TIDE_POISON_H

#include "internal.h"

#ifdef TIDE_VALGRIND
#include <valgrind/memcheck.h>
#endif

void __asan_poison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));
void __asan_unpoison_memory_region(void const volatile *addr, size_t size) __attribute__((weak));

/*
 * Whether this process wants poisoning: it has the ASan runtime, or runs under valgrind,
 * and the environment does not say TIDE_POISON=0 (for a program that touches blocks it was
 * not handed on purpose, e.g. a conversion hook that writes the whole unreserved range).
 */
static inline bool poison_wanted(void)
{
	const char *env = getenv("TIDE_POISON");

	if (env && env[0] == '0')
		return false;
#ifdef TIDE_VALGRIND
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
	return __asan_poison_memory_region && __asan_unpoison_memory_region;
}

/* [addr, addr + len) is free: any touch is a bug. */
static inline void poison_range(const struct tide_pool *pool, void *addr, size_t len)
{
	if (likely(!pool->poison))
		return;
	if (__asan_poison_memory_region)
		__asan_poison_memory_region(addr, len);
#ifdef TIDE_VALGRIND
	VALGRIND_MAKE_MEM_NOACCESS(addr, len);
#endif
}

/* [addr, addr + len) is handed out: usable, contents undefined. */
static inline void unpoison_range(const struct tide_pool *pool, void *addr, size_t len)
{
	if (likely(!pool->poison))
		return;
	if (__asan_unpoison_memory_region)
		__asan_unpoison_memory_region(addr, len);
#ifdef TIDE_VALGRIND
	VALGRIND_MAKE_MEM_UNDEFINED(addr, len);
#endif
}

/* [addr, addr + len) leaves the pool's care (shrink, destroy): clean shadow, as mmap'd. */
static inline void poison_forget(const struct tide_pool *pool, void *addr, size_t len)
{
	if (likely(!pool->poison))
		return;
	if (__asan_unpoison_memory_region)
		__asan_unpoison_memory_region(addr, len);
#ifdef TIDE_VALGRIND
	VALGRIND_MAKE_MEM_DEFINED(addr, len);
#endif
}

#endif /* TIDE_POISON_H */
