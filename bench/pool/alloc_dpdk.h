/* SPDX-License-Identifier: MIT */
/*
 * alloc_dpdk.h - the DPDK rte_mempool adapter for worker.c.
 *
 * EAL runs in memory only (--no-huge --no-shconf --no-pci --no-telemetry, one lcore),
 * and one mempool of 2 KiB elements with a 256-entry per-lcore cache holds enough
 * elements for the largest workload (two threads with 64 Ki buffers each, plus what
 * the caches and the producer/consumer ring can hold). rte_mempool_get/put find their
 * cache by rte_lcore_id(): a thread that is not an lcore gets no cache and goes to the
 * ring every time. So every thread the worker starts registers itself with
 * rte_thread_register() and gets a cache of its own, as an lcore would; the main thread
 * is lcore 0. EAL pins the main thread to its lcore's CPU; the original affinity is put
 * back after rte_eal_init() so DPDK's threads are scheduled like every other worker's.
 */
#include <pthread.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_version.h>
#include <sched.h>

#define ALLOC_HAS_BULK 1
#define DPDK_ELEMS     (2 * BENCH_WSET + 8192)

static struct rte_mempool *bpool;

static int alloc_setup(int argc, char **argv, int mode)
{
	char *eal[] = {argv[0], "--no-huge", "--no-shconf", "--no-pci", "--no-telemetry", "-l", "0",
		       "-m", "1024", "--log-level", "error",
#ifdef DPDK_MEMPOOL_RING
		       /* the ring mempool driver is a plugin: load it even if EAL would not */
		       "-d", DPDK_MEMPOOL_RING,
#endif
		       NULL};
	int neal = (int)(sizeof(eal) / sizeof(eal[0])) - 1;
	cpu_set_t cpus;

	(void)argc;
	(void)mode;
	sched_getaffinity(0, sizeof(cpus), &cpus);
	if (rte_eal_init(neal, eal) < 0) {
		printf("MISSING rte_eal_init: %s\n", rte_strerror(rte_errno));
		return -1;
	}
	sched_setaffinity(0, sizeof(cpus), &cpus);
	pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
	bpool = rte_mempool_create("tide_bench", DPDK_ELEMS, BENCH_BLOCK, 256, 0, NULL, NULL, NULL,
				   NULL, SOCKET_ID_ANY, 0);
	if (!bpool) {
		printf("MISSING rte_mempool_create: %s\n", rte_strerror(rte_errno));
		rte_eal_cleanup();
		return -1;
	}
	printf("INFO dpdk %s mempool %u elements of %u B, cache 256, ops %s\n", rte_version(),
	       bpool->size, bpool->elt_size, rte_mempool_get_ops(bpool->ops_index)->name);
	return 0;
}

static void alloc_teardown(void)
{
	rte_mempool_free(bpool);
	bpool = NULL;
	rte_eal_cleanup();
}

static void alloc_thread_enter(void)
{
	if (rte_thread_register() < 0) {
		fprintf(stderr, "dpdk: rte_thread_register: %s\n", rte_strerror(rte_errno));
		abort();
	}
}

static void alloc_thread_leave(void)
{
	/* Hand the cache back so the next thread given this lcore id starts like this one. */
	rte_mempool_cache_flush(rte_mempool_default_cache(bpool, rte_lcore_id()), bpool);
	rte_thread_unregister();
}

static inline void *balloc(void)
{
	void *p;

	if (__builtin_expect(rte_mempool_get(bpool, &p) < 0, 0))
		return NULL;
	return p;
}

static inline void bfree(void *p)
{
	rte_mempool_put(bpool, p);
}

static inline unsigned balloc_bulk(void **v, unsigned n)
{
	return rte_mempool_get_bulk(bpool, v, n) < 0 ? 0 : n;
}

static inline void bfree_bulk(void **v, unsigned n)
{
	rte_mempool_put_bulk(bpool, v, n);
}

static size_t alloc_mapped(void)
{
	return 0;
}

static void alloc_report(void)
{
}
