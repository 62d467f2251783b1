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
 */
#include <dlfcn.h>
#include <sys/syscall.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"
#include "internal.h"

static struct tide_pool *pool;
static pthread_barrier_t took, done;
static bool give_back; /* holders free their buffer before they sleep */
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

static void idle_caches(unsigned flags, size_t max, bool freed)
{
	struct tide_pool_config cfg = {
		.block_size = 2048, .initial_size = 2 << 20, .max_size = max, .flags = flags};
	struct late_result r = {0};
	struct tide_stats before, after;
	pthread_t t[4], l;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	give_back = freed;
	want = 1024 - (freed ? 0 : 4) - 1; /* 2 MiB of blocks, less those held, less one */
	pthread_barrier_init(&took, NULL, 5);
	pthread_barrier_init(&done, NULL, 5);
	for (int i = 0; i < 4; i++)
		REQUIRE(pthread_create(&t[i], NULL, idle_holder, (void *)(intptr_t)i) == 0);
	pthread_barrier_wait(&took);
	wait_holders_asleep();
	tide_pool_stats(pool, &before);
	REQUIRE(pthread_create(&l, NULL, late, &r) == 0);
	pthread_join(l, NULL);
	tide_pool_stats(pool, &after);
	printf("idle caches (%s, %s): cached %zu KiB before; one %s, bulk %u of %u, run %s; "
	       "unreserved %zu -> %zu KiB\n",
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

int main(int argc, char **argv)
{
	no_keys_left(); /* first: this process has made no cache yet */
	for (int freed = 0; freed < 2; freed++) {
		idle_caches(0, 2 << 20, freed);
		idle_caches(TIDE_AUTO_GROW, 0, freed);
		idle_caches(TIDE_AUTO_GROW, 2 << 20, freed);
	}
	cache_bytes(2048);
	cache_bytes(64 << 10);
	cache_bytes(1 << 20);
	large_blocks_in_flight();
	run_uncached(true);
	dlclose_then_exit(argc > 1 ? argv[1] : NULL);
	return test_exit("test_caches");
}
