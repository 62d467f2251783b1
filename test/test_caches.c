/* SPDX-License-Identifier: MIT */
/*
 * Description: thread caches and thread-exit machinery in hostile conditions (issue 9,
 * kinds 2 and 3).
 *  - Idle threads' caches: four threads take one buffer each and sleep; another thread's
 *    allocations (one block, a bulk of everything that is free, a run) succeed on a pool
 *    at its max_size, and a growable pool does not grow for them.
 *  - A cache holds a bounded number of bytes whatever the block size: freeing many 1 MiB
 *    (or 64 KiB) blocks leaves at most TCACHE_BYTES (two blocks at the least) cached, and a
 *    1 MiB producer/consumer pair keeps the pool near what is in flight.
 *  - No pthread key to be had (all taken), or no memory for a cache: the thread works
 *    uncached, nobody else's key is touched, and nothing is lost at thread exit.
 *  - dlopen, use, destroy, dlclose, then the thread exits: no crash (argv[1] is the
 *    shared library; without it that part is skipped).
 *  - An application key destructor that uses the pool in the last destructor round, after
 *    the library's own ran: nothing stays cached and no cache is left behind per thread.
 *  - dlopen, create, use from live worker threads, destroy, dlclose, many times: the C
 *    heap does not grow with the cycles (glibc's heap; not measured under a sanitizer's).
 *  - One thread allocates, another frees, 64 in flight, in a 1 MiB pool: the pool never
 *    grows (the consumer's cache is bounded by the pool's size and flushes its excess).
 */
#include <dlfcn.h>
#include <malloc.h>
#include <sys/syscall.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"
#include "internal.h"

static struct tide_pool *pool;
static pthread_barrier_t took, done;
static bool give_back; /* holders free their buffer before they sleep */
static bool spin;      /* holders stay runnable (yield in a loop) instead of sleeping */
static atomic_bool released;
static _Atomic pid_t holder_tid[4];

/* The scheduler state of one of this process's threads (R, S, ...), or 0. */
static char thread_state(pid_t tid)
{
	char path[64], buf[512], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : 0;
}

/* Wait (at most 5 s) until every holder sleeps in the kernel, as an idle worker does. */
static void wait_holders_asleep(void)
{
	for (int k = 0; k < 4; k++)
		for (int i = 0; i < 5000 && thread_state(atomic_load(&holder_tid[k])) != 'S'; i++)
			usleep(1000);
}
static unsigned want; /* the late thread's bulk: every block still free */

/* ------------------------------------------------------- idle caches -- */

static void *idle_holder(void *arg)
{
	void *b = tide_alloc(pool, 1500);

	atomic_store(&holder_tid[(intptr_t)arg], (pid_t)syscall(SYS_gettid));
	if (give_back) {
		tide_free(pool, b); /* took and freed one buffer: the cache holds all it claimed */
		b = NULL;
	}
	pthread_barrier_wait(&took);
	if (spin) /* busy elsewhere: running, its cache untouched (bounded by the test) */
		while (!atomic_load(&released))
			sched_yield();
	else
		pthread_barrier_wait(&done); /* asleep with one buffer and a full cache */
	tide_free(pool, b);
	return NULL;
}

struct late_result {
	void *one;
	unsigned bulk;
	void *run;
};

static void *late(void *arg)
{
	static void *v[1024];
	struct late_result *r = arg;

	r->one = tide_alloc(pool, 1500);
	r->bulk = tide_alloc_bulk(pool, v, want);
	tide_free_bulk(pool, v, r->bulk);
	r->run = tide_alloc(pool, 64 * 2048);
	tide_free(pool, r->run);
	tide_free(pool, r->one);
	return NULL;
}

static void idle_caches(unsigned flags, size_t max, bool freed, bool spinning)
{
	struct tide_pool_config cfg = {
		.block_size = 2048, .initial_size = 2 << 20, .max_size = max, .flags = flags};
	struct late_result r = {0};
	struct tide_stats before, after;
	pthread_t t[4], l;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	give_back = freed;
	spin = spinning;
	atomic_store(&released, false);
	want = 1024 - (freed ? 0 : 4) - 1; /* 2 MiB of blocks, less those held, less one */
	pthread_barrier_init(&took, NULL, 5);
	pthread_barrier_init(&done, NULL, 5);
	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, idle_holder, (void *)(intptr_t)i) == 0);
	pthread_barrier_wait(&took);
	if (!spin)
		wait_holders_asleep();
	tide_pool_stats(pool, &before);
	REQUIRE(pthread_create(&l, NULL, late, &r) == 0);
	pthread_join(l, NULL);
	tide_pool_stats(pool, &after);
	atomic_store(&released, true);
	printf("%s caches (%s, %s): cached %zu KiB before; one %s, bulk %u of %u, run %s; "
	       "unreserved %zu -> %zu KiB\n",
	       spin ? "running holders'" : "idle",
	       !max    ? "growable"
	       : flags ? "may grow, at max_size"
		       : "at max_size",
	       freed ? "took and freed" : "holding one", before.cached_bytes >> 10,
	       r.one ? "ok" : "NULL", r.bulk, want, r.run ? "ok" : "NULL",
	       before.unreserved_size >> 10, after.unreserved_size >> 10);
	CHECK(before.cached_bytes > 0); /* the scenario: blocks parked in sleeping threads */
	CHECK(r.one != NULL);
	CHECK_EQ(r.bulk, want);
	CHECK(r.run != NULL);
	CHECK_EQ(after.unreserved_size, before.unreserved_size);
	CHECK_EQ(after.alloc_failures, 0);
	if (!spin)
		pthread_barrier_wait(&done);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	pthread_barrier_destroy(&took);
	pthread_barrier_destroy(&done);
}

/* ------------------------------------------------ bytes, not blocks -- */

static void cache_bytes(size_t block)
{
	struct tide_pool_config cfg = {.block_size = block, .flags = TIDE_AUTO_GROW};
	size_t bound = TCACHE_BYTES > 2 * block ? TCACHE_BYTES : 2 * block;
	struct tide_stats st;
	void *v[256];
	unsigned got;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	got = tide_alloc_bulk(pool, v, 256);
	CHECK_EQ(got, 256);
	for (unsigned i = 0; i < got; i++)
		CHECK(tide_free(pool, v[i]) == 0);
	tide_pool_stats(pool, &st);
	CHECKF(st.cached_bytes <= bound, "block %zu: %zu bytes cached, bound %zu", block,
	       st.cached_bytes, bound);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

static _Atomic(void *) slot;
static atomic_long handoff_failures; /* CHECK counts are the main thread's */

static void *producer(void *arg)
{
	size_t block = (size_t)arg;

	for (int i = 0; i < 400; i++) {
		void *b = tide_alloc(pool, block);

		if (!b) {
			atomic_fetch_add(&handoff_failures, 1);
			continue;
		}
		memset(b, i, 4096);
		while (atomic_load(&slot))
			sched_yield();
		atomic_store(&slot, b);
	}
	while (atomic_load(&slot))
		sched_yield();
	atomic_store(&slot, (void *)1);
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	for (;;) {
		void *b = atomic_exchange(&slot, NULL);

		if (b == (void *)1)
			break;
		if (b && tide_free(pool, b))
			atomic_fetch_add(&handoff_failures, 1);
		else if (!b)
			sched_yield();
	}
	return NULL;
}

static void large_blocks_in_flight(void)
{
	struct tide_pool_config cfg = {
		.block_size = 1 << 20, .max_size = 1ul << 30, .flags = TIDE_AUTO_GROW};
	struct tide_stats st;
	pthread_t p, c;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	atomic_store(&slot, NULL);
	REQUIRE(pthread_create(&c, NULL, consumer, NULL) == 0);
	REQUIRE(pthread_create(&p, NULL, producer, (void *)(size_t)(1 << 20)) == 0);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	tide_pool_stats(pool, &st);
	printf("1 MiB blocks, producer -> consumer, 400 handoffs: unreserved %zu MiB\n",
	       st.unreserved_size >> 20);
	CHECK(st.unreserved_size <= (16u << 20));
	CHECK_EQ(atomic_load(&handoff_failures), 0);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* ------------------------------------- no key, no memory: uncached -- */

static _Thread_local bool refuse_cache_memory;

void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);

/* The library's aligned_alloc (linked with --wrap): a thread can make it fail. */
void *__wrap_aligned_alloc(size_t align, size_t size)
{
	if (refuse_cache_memory)
		return NULL;
	return __real_aligned_alloc(align, size);
}

#define MY_KEYS 2048
static pthread_key_t keys[MY_KEYS];
static unsigned nkeys;
static char marker;

/* Alloc and free through one thread; 0 when everything worked and no key was touched. */
static void *uncached_user(void *arg)
{
	void *v[600];
	long bad = 0;

	refuse_cache_memory = arg != NULL;
	for (unsigned k = 0; k < nkeys; k++)
		pthread_setspecific(keys[k], &marker);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 600; i++) {
			v[i] = tide_alloc(pool, i % 7 ? 100 : 5000);
			bad += !v[i];
		}
		for (int i = 0; i < 600; i++)
			bad += tide_free(pool, v[i]) != 0;
	}
	bad += tide_alloc_bulk(pool, v, 600) != 600;
	bad += tide_free_bulk(pool, v, 600) != 0;
	for (unsigned k = 0; k < nkeys; k++)
		bad += pthread_getspecific(keys[k]) != &marker;
	refuse_cache_memory = false;
	return (void *)bad;
}

static void run_uncached(bool no_memory)
{
	struct tide_pool_config cfg = {.flags = TIDE_AUTO_GROW};
	struct tide_stats st;
	pthread_t t;
	void *bad;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(pthread_create(&t, NULL, uncached_user, no_memory ? &marker : NULL) == 0);
	pthread_join(t, &bad);
	tide_pool_stats(pool, &st);
	printf("%s: %ld failures in the thread; after its exit live %zu, cached %zu\n",
	       no_memory ? "no memory for a cache" : "no pthread key left", (long)bad,
	       st.live_bytes, st.cached_bytes);
	CHECK(bad == NULL);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_EQ(st.cached_bytes, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* In a child that has not used a cache yet, with every pthread key taken. */
static void no_keys_left(void)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		while (nkeys < MY_KEYS && pthread_key_create(&keys[nkeys], NULL) == 0)
			nkeys++;
		run_uncached(false);
		fflush(stdout);
		_exit(checks_failed ? 1 : 0);
	}
	status = wait_child(pid, 30);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "child with no key left: status %#x", status);
}

/* ------------------------------------------------------------ dlclose -- */

static void *plugin(void *path)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	int (*create)(const struct tide_pool_config *, struct tide_pool **);
	void *(*alloc)(struct tide_pool *, size_t);
	int (*release)(struct tide_pool *, void *);
	void (*destroy)(struct tide_pool *);
	struct tide_pool_config cfg = {.flags = TIDE_AUTO_GROW};
	struct tide_pool *p;

	if (!h)
		return (void *)77;
	*(void **)&create = dlsym(h, "tide_pool_create");
	*(void **)&alloc = dlsym(h, "tide_alloc");
	*(void **)&release = dlsym(h, "tide_free");
	*(void **)&destroy = dlsym(h, "tide_pool_destroy");
	if (!create || !alloc || !release || !destroy || create(&cfg, &p))
		return (void *)77;
	release(p, alloc(p, 100));
	destroy(p);
	dlclose(h);
	return NULL; /* the thread exits: no key destructor may be left in the unloaded code */
}

/* Loaded and unloaded without a call: the library must not delete a key it never made
 * (key 0 may be someone else's). */
static void *unused_plugin(void *path)
{
	pthread_key_t mine;
	void *h;
	long bad = 0;

	if (pthread_key_create(&mine, NULL))
		return (void *)77;
	pthread_setspecific(mine, &marker);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return (void *)77;
	dlclose(h);
	bad += pthread_getspecific(mine) != &marker;
	bad += pthread_setspecific(mine, &marker) != 0; /* EINVAL once the key is deleted */
	return (void *)bad;
}

static void dlclose_then_exit(const char *path)
{
	int status;
	pid_t pid;

	if (!path) {
		printf("dlclose: no shared library given, skipped\n");
		return;
	}
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		pthread_t t;
		void *r;

		if (pthread_create(&t, NULL, unused_plugin, (void *)path))
			_exit(77);
		pthread_join(t, &r);
		if (r)
			_exit(r == (void *)77 ? 77 : 1);
		if (pthread_create(&t, NULL, plugin, (void *)path))
			_exit(77);
		pthread_join(t, &r);
		_exit(r ? 77 : 0);
	}
	status = wait_child(pid, 30);
	CHECKF(status != -1 && !WIFSIGNALED(status) && WEXITSTATUS(status) != 1,
	       "dlclose then thread exit: status %#x", status);
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 77)
		printf("dlclose: %s could not be loaded, skipped\n", path);
	else
		printf("dlclose then thread exit: %s\n", WIFSIGNALED(status) ? "crashed" : "ok");
}

/* ------------------------------------------- late key destructor -- */

static pthread_key_t late_key;

/* Re-arm until the last round, then use the pool as a connection's last flush would. */
static void late_dtor(void *v)
{
	long round = (long)v;

	if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
		pthread_setspecific(late_key, (void *)(round + 1));
		return;
	}
	if (tide_free(pool, tide_alloc(pool, 100)))
		atomic_fetch_add(&handoff_failures, 1);
}

/* arg: late_key exists, arm it. */
static void *late_user(void *arg)
{
	if (tide_free(pool, tide_alloc(pool, 100))) /* the library's key is set from here */
		atomic_fetch_add(&handoff_failures, 1);
	if (arg)
		pthread_setspecific(late_key, (void *)1L);
	return NULL;
}

static void late_key_destructor(void)
{
	struct tide_pool_config cfg = {.block_size = 2048, .flags = TIDE_AUTO_GROW};
	struct tide_stats st;
	size_t caches = 0;
	pthread_t t;

#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer tears its own thread state down in the last round: any lock then
	 * crashes inside its interceptor, whatever the library does. */
	printf("last key destructor round: not run under ThreadSanitizer\n");
	return;
#endif
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(pthread_create(&t, NULL, late_user, NULL) == 0); /* the library's key first */
	pthread_join(t, NULL);
	REQUIRE(pthread_key_create(&late_key, late_dtor) == 0);
	atomic_store(&handoff_failures, 0);
	for (int i = 0; i < 50; i++) {
		REQUIRE(pthread_create(&t, NULL, late_user, &late_key) == 0);
		pthread_join(t, NULL);
	}
	tide_pool_stats(pool, &st);
	pthread_mutex_lock(&pool->lock);
	for (struct tcache *c = pool->caches; c; c = c->next)
		caches++;
	pthread_mutex_unlock(&pool->lock);
	printf("pool used in the last key destructor round of 50 threads: cached %zu, caches "
	       "left %zu, live %zu\n",
	       st.cached_bytes, caches, st.live_bytes);
	CHECK_EQ(st.cached_bytes, 0);
	CHECK_EQ(caches, 0);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_EQ(atomic_load(&handoff_failures), 0);
	pthread_key_delete(late_key);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* ----------------------------------------------- producer/consumer -- */

#define QN 64

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
static void *_Atomic queue[QN];
static atomic_uint q_head, q_tail;
static atomic_bool q_stop;

static void *queue_producer(void *arg)
{
	unsigned total = (unsigned)(size_t)arg;
	double end = now_s() + 3;

	while (atomic_load(&q_head) < total && now_s() < end) {
		void *b;

		if (atomic_load(&q_head) - atomic_load(&q_tail) >= QN) {
			sched_yield();
			continue;
		}
		b = tide_alloc(pool, 1500);
		if (!b) {
			atomic_fetch_add(&handoff_failures, 1);
			continue;
		}
		atomic_store(&queue[atomic_load(&q_head) % QN], b);
		atomic_fetch_add(&q_head, 1);
	}
	atomic_store(&q_stop, true);
	return NULL;
}

static void *queue_consumer(void *arg)
{
	(void)arg;
	while (!atomic_load(&q_stop) || atomic_load(&q_tail) != atomic_load(&q_head)) {
		if (atomic_load(&q_tail) == atomic_load(&q_head)) {
			sched_yield();
			continue;
		}
		if (tide_free(pool, atomic_load(&queue[atomic_load(&q_tail) % QN])))
			atomic_fetch_add(&handoff_failures, 1);
		atomic_fetch_add(&q_tail, 1);
	}
	return NULL;
}

static void producer_consumer_small_pool(void)
{
	struct tide_pool_config cfg = {.block_size = 2048,
				       .initial_size = 1 << 20,
				       .grow_unit = 1 << 20,
				       .flags = TIDE_AUTO_GROW,
				       .memory_limit = TIDE_NO_MEMORY_LIMIT};
	struct tide_stats st0, st;
	pthread_t p, c;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	tide_pool_stats(pool, &st0);
	atomic_store(&handoff_failures, 0);
	atomic_store(&q_stop, false);
	REQUIRE(pthread_create(&c, NULL, queue_consumer, NULL) == 0);
	REQUIRE(pthread_create(&p, NULL, queue_producer, (void *)(size_t)300000) == 0);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	tide_pool_stats(pool, &st);
	printf("1 MiB pool, producer -> consumer, %u handoffs, <= %d in flight: grows %llu -> "
	       "%llu, unreserved %zu KiB, peak live %zu KiB\n",
	       atomic_load(&q_head), QN, (unsigned long long)st0.grows,
	       (unsigned long long)st.grows, st.unreserved_size >> 10, st.peak_live_bytes >> 10);
	CHECK_EQ(st.grows, st0.grows);
	CHECK_EQ(atomic_load(&handoff_failures), 0);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* ----------------------------------------------- dlclose in cycles -- */

#define WORKERS 4
struct plugin_api {
	struct tide_pool *pool;
	void *(*alloc)(struct tide_pool *, size_t);
	int (*release)(struct tide_pool *, void *);
};
static struct plugin_api api;
static pthread_barrier_t cycle_start, cycle_done;
static atomic_bool cycles_over;

static void *cycle_worker(void *arg)
{
	(void)arg;
	for (;;) {
		void *v[100];

		pthread_barrier_wait(&cycle_start);
		if (atomic_load(&cycles_over))
			return NULL;
		for (int i = 0; i < 100; i++)
			v[i] = api.alloc(api.pool, 100);
		for (int i = 0; i < 100; i++)
			api.release(api.pool, v[i]);
		pthread_barrier_wait(&cycle_done);
	}
}

/* One cycle: load, create, use from every worker, destroy, unload. 0, or 77. */
static int plugin_cycle(const char *path)
{
	int (*create)(const struct tide_pool_config *, struct tide_pool **);
	void (*destroy)(struct tide_pool *);
	struct tide_pool_config cfg = {.flags = TIDE_AUTO_GROW};
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (!h)
		return 77;
	*(void **)&create = dlsym(h, "tide_pool_create");
	*(void **)&destroy = dlsym(h, "tide_pool_destroy");
	*(void **)&api.alloc = dlsym(h, "tide_alloc");
	*(void **)&api.release = dlsym(h, "tide_free");
	if (!create || !destroy || !api.alloc || !api.release || create(&cfg, &api.pool))
		return 77;
	pthread_barrier_wait(&cycle_start);
	pthread_barrier_wait(&cycle_done);
	destroy(api.pool);
	dlclose(h);
	return 0;
}

/* In a child: 0 pass, 1 the heap grew, 77 cannot run here. */
static int dlclose_cycles_child(const char *path)
{
	pthread_t t[WORKERS];
	struct mallinfo2 m0, m1;
	char *volatile probe;
	size_t grew;
	int cycles = 40, rc = 0;

	pthread_barrier_init(&cycle_start, NULL, WORKERS + 1);
	pthread_barrier_init(&cycle_done, NULL, WORKERS + 1);
	for (int i = 0; i < WORKERS; i++)
		if (pthread_create(&t[i], NULL, cycle_worker, NULL))
			return 77;
	for (int i = 0; i < 3 && !rc; i++) /* warm up: dlopen's own first-time allocations */
		rc = plugin_cycle(path);
	m0 = mallinfo2();
	for (int i = 0; i < cycles && !rc; i++)
		rc = plugin_cycle(path);
	m1 = mallinfo2();
	atomic_store(&cycles_over, true);
	pthread_barrier_wait(&cycle_start);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	if (rc)
		return rc;
	grew = m1.uordblks > m0.uordblks ? m1.uordblks - m0.uordblks : 0;
	probe = malloc(64 << 10); /* below the mmap threshold */
	if (probe)
		probe[0] = 1;
	m0 = mallinfo2();
	free(probe);
	m1 = mallinfo2();
	if (m0.uordblks - m1.uordblks < (64 << 10)) {
		printf("dlclose cycles: the heap is not glibc's here (a sanitizer): not "
		       "measured\n");
		return 0;
	}
	printf("dlclose cycles: heap grew by %zu KiB over %d cycles with %d live workers "
	       "(bound 128 KiB)\n",
	       grew >> 10, cycles, WORKERS);
	fflush(stdout);
	return grew < (128 << 10) ? 0 : 1;
}

static void dlclose_cycles(const char *path)
{
	int status;
	pid_t pid;

	if (!path)
		return;
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int rc = dlclose_cycles_child(path);

		if (rc == 77)
			printf("dlclose cycles: could not load or create, skipped\n");
		fflush(stdout);
		_exit(rc);
	}
	status = wait_child(pid, 60);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) != 1,
	       "dlclose cycles: status %#x", status);
}

int main(int argc, char **argv)
{
	no_keys_left(); /* first: this process has made no cache yet */
	for (int freed = 0; freed < 2; freed++) {
		idle_caches(0, 2 << 20, freed, false);
		idle_caches(TIDE_AUTO_GROW, 0, freed, false);
		idle_caches(TIDE_AUTO_GROW, 2 << 20, freed, false);
	}
	idle_caches(TIDE_AUTO_GROW, 0, true, true); /* busy caches are taken back too */
	idle_caches(0, 2 << 20, true, true);
	cache_bytes(2048);
	cache_bytes(64 << 10);
	cache_bytes(1 << 20);
	large_blocks_in_flight();
	run_uncached(true);
	dlclose_then_exit(argc > 1 ? argv[1] : NULL);
	late_key_destructor();
	producer_consumer_small_pool();
	dlclose_cycles(argc > 1 ? argv[1] : NULL);
	return test_exit("test_caches");
}
