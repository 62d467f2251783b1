/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one allocator's side of tide-bench, run in a process of its own.
 *
 * tcmalloc, jemalloc and mimalloc each replace malloc for the whole process, so no two
 * of them can share a binary: this file is compiled once per allocator, with one of the
 * adapters (alloc_tide.h, alloc_dpdk.h, alloc_malloc.h) giving balloc/bfree and their
 * bulk forms as static inline functions. The workloads are therefore compiled against
 * each allocator's real entry points, with no indirect call in the timed loops: DPDK's
 * get/put inline into the loop, the mallocs and tide are one library call each.
 *
 * Modes (argv[1]), each printing plain lines on stdout for the harness to parse:
 *   alloc [--runs N] [--ms T] [--workloads a,b] [--cpu-time]
 *                                                 R <workload> <ns per pair>, SKIP ...
 *   burst [--frag] [--huge]                       BASE/PEAK/LIVE/S <ms> <rss> <mapped>
 *   convert [--runs N]                            (tide only) C <config> <side> <dir> <GiB/s>
 * A worker whose allocator cannot start prints "MISSING <why>" and exits 2.
 *
 * Timing: a workload is first calibrated by doubling its count until one run takes
 * 20 ms (this is also its warm-up: the pool grows, the caches fill), then sized so one
 * run lasts about --ms, and run --runs times; the harness takes the median. Every
 * buffer's first byte is written at allocation, and an empty asm keeps the compiler
 * from proving a malloc/free pair dead.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "in_list.h"
#include "worker.h"

enum {
	MODE_ALLOC,
	MODE_BURST,
	MODE_CONVERT
};

#if defined(WORKER_TIDE)
#include "alloc_tide.h"
#elif defined(WORKER_DPDK)
#include "alloc_dpdk.h"
#else
#include "alloc_malloc.h"
#endif

#define MAX_RUNS     64
#define RING_CAP     1024u /* producer/consumer ring; a power of two */
#define RING_PUBLISH 32u   /* each side publishes its index every this many buffers */

static unsigned opt_runs = 5;
static double opt_ms = 300;
static const char *opt_workloads;
static bool opt_cpu_time; /* --cpu-time: time each thread's CPU, not the wall clock */

/*
 * The clock the alloc workloads are timed with. On a machine shared with other work, the
 * wall clock also counts the time a run waits for its CPU; CPU time counts only the time
 * it ran (what other processes do to the caches still shows).
 */
static uint64_t bench_ns(void)
{
	struct timespec ts;

	if (!opt_cpu_time)
		return now_ns();
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void touch(void *p)
{
	*(volatile char *)p = 1;
	__asm__ volatile("" : : "r"(p) : "memory");
}

static void __attribute__((noreturn)) out_of_memory(void)
{
	printf("FAIL allocation returned NULL\n");
	fflush(stdout);
	_exit(1);
}

/* ------------------------------------------------------------ workloads -- */

struct tstate {
	void *batch[BENCH_BATCH];
	void **wset; /* BENCH_WSET live buffers for random replace */
	uint64_t rng;
	unsigned index;
};

static uint64_t run_pairs(struct tstate *t, uint64_t n)
{
	uint64_t t0 = bench_ns();

	(void)t;
	for (uint64_t i = 0; i < n; i++) {
		void *p = balloc();

		if (__builtin_expect(!p, 0))
			out_of_memory();
		touch(p);
		bfree(p);
	}
	return bench_ns() - t0;
}

static uint64_t run_batch(struct tstate *t, uint64_t n)
{
	uint64_t t0 = bench_ns();

	for (uint64_t r = 0; r < n / BENCH_BATCH; r++) {
		for (unsigned j = 0; j < BENCH_BATCH; j++) {
			void *p = balloc();

			if (__builtin_expect(!p, 0))
				out_of_memory();
			touch(p);
			t->batch[j] = p;
		}
		for (unsigned j = 0; j < BENCH_BATCH; j++)
			bfree(t->batch[j]);
	}
	return bench_ns() - t0;
}

static uint64_t run_bulk(struct tstate *t, uint64_t n)
{
	uint64_t t0 = bench_ns();

	for (uint64_t r = 0; r < n / BENCH_BATCH; r++) {
		if (__builtin_expect(balloc_bulk(t->batch, BENCH_BATCH) != BENCH_BATCH, 0))
			out_of_memory();
		for (unsigned j = 0; j < BENCH_BATCH; j++)
			touch(t->batch[j]);
		bfree_bulk(t->batch, BENCH_BATCH);
	}
	return bench_ns() - t0;
}

static void random_prepare(struct tstate *t)
{
	t->wset = mmap(NULL, BENCH_WSET * sizeof(void *), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->wset == MAP_FAILED)
		out_of_memory();
	t->rng = BENCH_SEED + t->index;
	for (unsigned i = 0; i < BENCH_WSET; i++) {
		void *p = balloc();

		if (!p)
			out_of_memory();
		touch(p);
		t->wset[i] = p;
	}
}

static uint64_t run_random(struct tstate *t, uint64_t n)
{
	uint64_t t0 = bench_ns();

	for (uint64_t i = 0; i < n; i++) {
		unsigned k = (unsigned)(xorshift(&t->rng) >> 20) & (BENCH_WSET - 1);
		void *p;

		bfree(t->wset[k]);
		p = balloc();
		if (__builtin_expect(!p, 0))
			out_of_memory();
		touch(p);
		t->wset[k] = p;
	}
	return bench_ns() - t0;
}

static void random_finish(struct tstate *t)
{
	for (unsigned i = 0; i < BENCH_WSET; i++)
		bfree(t->wset[i]);
	munmap(t->wset, BENCH_WSET * sizeof(void *));
	t->wset = NULL;
}

struct workload {
	const char *name;
	bool bulk;     /* needs the allocator's bulk API */
	unsigned unit; /* the count is a multiple of this */
	void (*prepare)(struct tstate *t);
	uint64_t (*run)(struct tstate *t, uint64_t n); /* ns for n alloc+free pairs */
	void (*finish)(struct tstate *t);
};

static const struct workload workloads[] = {
	{"pairs", false, 1, NULL, run_pairs, NULL},
	{"batch256", false, BENCH_BATCH, NULL, run_batch, NULL},
	{"bulk256", true, BENCH_BATCH, NULL, run_bulk, NULL},
	{"random64k", false, 1, random_prepare, run_random, random_finish},
};

static uint64_t round_unit(double n, unsigned unit)
{
	uint64_t r = (uint64_t)n / unit * unit;

	return r < unit ? unit : r;
}

/* Double n until a run takes 20 ms, then size one run to opt_ms. */
static uint64_t calibrate(const struct workload *w, struct tstate *t)
{
	uint64_t n = 4096, el;

	for (;;) {
		el = w->run(t, n);
		if (el >= 20000000ull || n >= (1ull << 40))
			break;
		n *= 2;
	}
	return round_unit((double)n * opt_ms * 1e6 / (double)(el ? el : 1), w->unit);
}

static void report(const char *name, uint64_t el, uint64_t n)
{
	printf("R %s %.4f\n", name, (double)el / (double)n);
	fflush(stdout);
}

/* Two threads run the same workload at once, each on its own buffers. */
struct duo {
	const struct workload *w;
	uint64_t n;
	pthread_barrier_t bar;
	uint64_t el[2][MAX_RUNS];
	struct tstate ts[2];
};

struct duo_arg {
	struct duo *d;
	unsigned index;
};

static void *duo_thread(void *arg)
{
	struct duo_arg *a = arg;
	struct duo *d = a->d;
	struct tstate *t = &d->ts[a->index];

	alloc_thread_enter();
	t->index = a->index;
	if (d->w->prepare)
		d->w->prepare(t);
	for (unsigned r = 0; r < opt_runs; r++) {
		pthread_barrier_wait(&d->bar);
		d->el[a->index][r] = d->w->run(t, d->n);
	}
	if (d->w->finish)
		d->w->finish(t);
	alloc_thread_leave();
	return NULL;
}

static void run_duo(const struct workload *w, uint64_t n)
{
	static struct duo d;
	struct duo_arg args[2] = {{&d, 0}, {&d, 1}};
	pthread_t th[2];
	char name[64];

	d.w = w;
	d.n = n;
	pthread_barrier_init(&d.bar, NULL, 2);
	for (unsigned i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, duo_thread, &args[i])) {
			printf("FAIL pthread_create\n");
			exit(1);
		}
	for (unsigned i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&d.bar);
	snprintf(name, sizeof(name), "%s-x2", w->name);
	for (unsigned r = 0; r < opt_runs; r++)
		report(name, d.el[0][r] > d.el[1][r] ? d.el[0][r] : d.el[1][r], n);
}

/*
 * Producer/consumer: one thread allocates and passes buffers through a bounded
 * single-producer/single-consumer ring, the other frees them. Each side publishes its
 * index every RING_PUBLISH buffers (and before it waits), and rereads the other's only
 * when the ring looks full or empty, so the ring's own cache-line traffic stays small
 * beside the allocator's cost of a free on another thread.
 */
struct spsc {
	_Alignas(64) _Atomic uint64_t head; /* written by the producer */
	_Alignas(64) _Atomic uint64_t tail; /* written by the consumer */
	_Alignas(64) void *slot[RING_CAP];
	uint64_t n;
	pthread_barrier_t bar;
	uint64_t el[2];
};

static void spin_wait(unsigned *spins)
{
	if (++*spins & 1023)
		cpu_relax();
	else
		sched_yield(); /* the machine is shared: do not starve the other side */
}

static void *producer(void *arg)
{
	struct spsc *q = arg;
	uint64_t tail = 0, t0;

	alloc_thread_enter();
	pthread_barrier_wait(&q->bar);
	t0 = bench_ns();
	for (uint64_t i = 0; i < q->n; i++) {
		void *p = balloc();
		unsigned spins = 0;

		if (__builtin_expect(!p, 0))
			out_of_memory();
		touch(p);
		if (i - tail >= RING_CAP) {
			/* publish what is written before waiting, or both sides could wait */
			atomic_store_explicit(&q->head, i, memory_order_release);
			while (i - (tail = atomic_load_explicit(&q->tail, memory_order_acquire)) >=
			       RING_CAP)
				spin_wait(&spins);
		}
		q->slot[i & (RING_CAP - 1)] = p;
		if (!((i + 1) & (RING_PUBLISH - 1)))
			atomic_store_explicit(&q->head, i + 1, memory_order_release);
	}
	atomic_store_explicit(&q->head, q->n, memory_order_release);
	q->el[0] = bench_ns() - t0;
	pthread_barrier_wait(&q->bar);
	alloc_thread_leave();
	return NULL;
}

static void *consumer(void *arg)
{
	struct spsc *q = arg;
	uint64_t head = 0, t0;

	alloc_thread_enter();
	pthread_barrier_wait(&q->bar);
	t0 = bench_ns();
	for (uint64_t i = 0; i < q->n; i++) {
		unsigned spins = 0;

		if (i >= head) {
			atomic_store_explicit(&q->tail, i, memory_order_release);
			while (i >= (head = atomic_load_explicit(&q->head, memory_order_acquire)))
				spin_wait(&spins);
		}
		bfree(q->slot[i & (RING_CAP - 1)]);
		if (!((i + 1) & (RING_PUBLISH - 1)))
			atomic_store_explicit(&q->tail, i + 1, memory_order_release);
	}
	q->el[1] = bench_ns() - t0;
	pthread_barrier_wait(&q->bar);
	alloc_thread_leave();
	return NULL;
}

static uint64_t run_prodcon(uint64_t n)
{
	static struct spsc q;
	pthread_t th[2];

	atomic_store(&q.head, 0);
	atomic_store(&q.tail, 0);
	q.n = n;
	pthread_barrier_init(&q.bar, NULL, 2);
	if (pthread_create(&th[0], NULL, producer, &q) ||
	    pthread_create(&th[1], NULL, consumer, &q)) {
		printf("FAIL pthread_create\n");
		exit(1);
	}
	pthread_join(th[0], NULL);
	pthread_join(th[1], NULL);
	pthread_barrier_destroy(&q.bar);
	return q.el[0] > q.el[1] ? q.el[0] : q.el[1];
}

static void alloc_mode(void)
{
	static struct tstate t;

	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++) {
		const struct workload *w = &workloads[i];
		char name2[64];
		bool one, two;
		uint64_t n;

		snprintf(name2, sizeof(name2), "%s-x2", w->name);
		one = in_list(opt_workloads, w->name);
		two = in_list(opt_workloads, name2);
		if (!one && !two)
			continue;
		if (w->bulk && !ALLOC_HAS_BULK) {
			if (one)
				printf("SKIP %s no bulk API\n", w->name);
			if (two)
				printf("SKIP %s no bulk API\n", name2);
			fflush(stdout);
			continue;
		}
		t.index = 0;
		if (w->prepare)
			w->prepare(&t);
		n = calibrate(w, &t);
		printf("N %s %llu\n", w->name, (unsigned long long)n);
		if (one)
			for (unsigned r = 0; r < opt_runs; r++)
				report(w->name, w->run(&t, n), n);
		if (w->finish)
			w->finish(&t);
		if (two)
			run_duo(w, n);
	}
	if (in_list(opt_workloads, "prodcon")) {
		uint64_t n = 4096, el;

		for (;;) {
			el = run_prodcon(n);
			if (el >= 20000000ull || n >= (1ull << 40))
				break;
			n *= 2;
		}
		n = round_unit((double)n * opt_ms * 1e6 / (double)(el ? el : 1), 1);
		printf("N prodcon %llu\n", (unsigned long long)n);
		for (unsigned r = 0; r < opt_runs; r++)
			report("prodcon", run_prodcon(n), n);
	}
}

/* ---------------------------------------------------------------- burst -- */

#define BURST_BYTES   ((size_t)1 << 30)
#define BURST_N	      (BURST_BYTES / BENCH_BLOCK)
#define BURST_STEP_MS 10
#define BURST_SAMPLES 201 /* 0 ms .. 2000 ms */

struct sample {
	uint64_t t_ns;
	size_t rss;
	size_t mapped;
};

static struct sample samples[BURST_SAMPLES];

/*
 * Allocate 1 GiB in 2 KiB buffers, free them all (or all but every 100th and the
 * topmost with --frag), then sample resident memory every 10 ms for 2 s and call
 * nothing else. The pointer array is mapped and touched before the baseline, so it
 * is part of it and not of any allocator.
 */
static void burst_mode(bool frag)
{
	void **ptrs = mmap(NULL, BURST_N * sizeof(void *), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	size_t base, peak, kept = 0, top = 0;
	uint64_t t0, t1, t2;
	struct timespec ts;

	if (ptrs == MAP_FAILED)
		out_of_memory();
	memset(ptrs, 0, BURST_N * sizeof(void *));
	memset(samples, 0, sizeof(samples));
	ts.tv_sec = 0;
	ts.tv_nsec = 100 * 1000000;
	nanosleep(&ts, NULL);
	base = rss_bytes();
	t0 = now_ns();
	for (size_t i = 0; i < BURST_N; i++) {
		void *p = balloc();

		if (!p)
			out_of_memory();
		touch(p);
		ptrs[i] = p;
		if ((uintptr_t)p > (uintptr_t)ptrs[top])
			top = i;
	}
	t1 = now_ns();
	peak = rss_bytes();
	for (size_t i = 0; i < BURST_N; i++) {
		if (frag && (i % 100 == 0 || i == top)) {
			kept++;
			continue;
		}
		bfree(ptrs[i]);
	}
	t2 = now_ns();
	for (unsigned k = 0; k < BURST_SAMPLES; k++) {
		uint64_t at = t2 + (uint64_t)k * BURST_STEP_MS * 1000000ull;

		ts.tv_sec = (time_t)(at / 1000000000ull);
		ts.tv_nsec = (long)(at % 1000000000ull);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		samples[k].t_ns = now_ns() - t2;
		samples[k].rss = rss_bytes();
		samples[k].mapped = alloc_mapped();
	}
	printf("BASE %zu\nPEAK %zu\nLIVE %zu\nALLOC_MS %.1f\nFREE_MS %.1f\n", base, peak,
	       kept * BENCH_BLOCK, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
	for (unsigned k = 0; k < BURST_SAMPLES; k++)
		printf("S %.2f %zu %zu\n", (double)samples[k].t_ns / 1e6, samples[k].rss,
		       samples[k].mapped);
	alloc_report();
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int mode;
	bool frag = false;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: %s alloc|burst|convert [options]\n", argv[0]);
		return 2;
	}
	if (!strcmp(argv[1], "alloc"))
		mode = MODE_ALLOC;
	else if (!strcmp(argv[1], "burst"))
		mode = MODE_BURST;
	else if (!strcmp(argv[1], "convert"))
		mode = MODE_CONVERT;
	else {
		fprintf(stderr, "%s: unknown mode %s\n", argv[0], argv[1]);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			opt_runs = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
			opt_ms = atof(argv[++i]);
		else if (!strcmp(argv[i], "--workloads") && i + 1 < argc)
			opt_workloads = argv[++i];
		else if (!strcmp(argv[i], "--cpu-time"))
			opt_cpu_time = true;
		else if (!strcmp(argv[i], "--frag"))
			frag = true;
	}
	if (opt_runs < 1)
		opt_runs = 1;
	if (opt_runs > MAX_RUNS)
		opt_runs = MAX_RUNS;
	if (mode == MODE_CONVERT) {
#ifdef WORKER_TIDE
		return convert_main(opt_runs);
#else
		printf("MISSING convert is tide's own benchmark\n");
		return 2;
#endif
	}
	if (alloc_setup(argc, argv, mode))
		return 2;
	if (mode == MODE_ALLOC)
		alloc_mode();
	else
		burst_mode(frag);
	alloc_teardown();
	return 0;
}
