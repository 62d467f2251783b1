/* SPDX-License-Identifier: MIT */
/*
 * Description: the threaded stress test. Four workers allocate buffers of one to three
 * blocks (through the pool and through a shared user), fill each with a pattern made of
 * its address and a sequence number, and check the pattern when they free it; a quarter
 * of the buffers are handed to the next worker and freed there. Meanwhile a converter
 * thread grows and shrinks the pool and runs maintenance (automatic shrink and purge). At
 * the end every buffer is freed, live is 0, and the invariant checker passes. Run under
 * ThreadSanitizer by `make test` (label threads); bounded by a count and by time.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define WORKERS	       4
#define HELD	       256 /* buffers a worker keeps at once */
#define HANDOFF	       64  /* a mailbox between neighbours */
#define OPS_PER_WORKER 150000
#define TIME_LIMIT_NS  (40ull * 1000000000ull)

struct held {
	unsigned char *buf;
	size_t size;
	uint32_t seq;
	bool user; /* allocated through the shared user */
};

struct mailbox {
	pthread_mutex_t lock;
	struct held items[HANDOFF];
	unsigned n;
};

static struct tide_pool *pool;
static struct tide_user *shared_user;
static struct mailbox boxes[WORKERS];
static _Atomic bool stop;
static _Atomic unsigned long corruptions, bad_returns, allocs, cross_frees, conversions;
static uint64_t deadline;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned char pattern(const struct held *h, size_t i)
{
	return (unsigned char)(((uintptr_t)h->buf >> 11) ^ h->seq ^ (i * 131));
}

static void fill(const struct held *h)
{
	for (size_t i = 0; i < h->size; i += 61)
		h->buf[i] = pattern(h, i);
	h->buf[h->size - 1] = pattern(h, h->size - 1);
}

static void verify_and_free(struct held *h)
{
	int err;

	for (size_t i = 0; i < h->size; i += 61)
		if (h->buf[i] != pattern(h, i)) {
			atomic_fetch_add(&corruptions, 1);
			break;
		}
	if (h->buf[h->size - 1] != pattern(h, h->size - 1))
		atomic_fetch_add(&corruptions, 1);
	err = h->user ? tide_user_free(shared_user, h->buf) : tide_free(pool, h->buf);
	if (err) {
		fprintf(stderr, "free of %p (%zu bytes, user %d) returned %d\n", (void *)h->buf,
			h->size, h->user, err);
		atomic_fetch_add(&bad_returns, 1);
	}
	h->buf = NULL;
}

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void *worker(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg;
	struct mailbox *next = &boxes[(me + 1) % WORKERS], *mine = &boxes[me];
	struct held held[HELD] = {{0}};
	uint32_t rng = 0x9e3779b9u * (me + 1), seq = 0;

	for (unsigned long op = 0; op < OPS_PER_WORKER && !atomic_load(&stop); op++) {
		struct held *h = &held[xorshift(&rng) % HELD];
		uint32_t r = xorshift(&rng);

		if ((op & 1023) == 0 && now_ns() > deadline)
			break;
		/* Free what a neighbour handed over. */
		pthread_mutex_lock(&mine->lock);
		while (mine->n) {
			struct held in = mine->items[--mine->n];

			pthread_mutex_unlock(&mine->lock);
			verify_and_free(&in);
			atomic_fetch_add(&cross_frees, 1);
			pthread_mutex_lock(&mine->lock);
		}
		pthread_mutex_unlock(&mine->lock);

		if (h->buf) {
			bool handed = false;

			if (r % 4 == 0) { /* a quarter go to the next worker */
				pthread_mutex_lock(&next->lock);
				if (next->n < HANDOFF) {
					next->items[next->n++] = *h;
					handed = true;
				}
				pthread_mutex_unlock(&next->lock);
			}
			if (handed)
				h->buf = NULL;
			else
				verify_and_free(h);
			continue;
		}
		h->size = r % 16 == 0 ? 2048 * (2 + r % 2) : 64 + r % 1985;
		h->user = r % 8 == 1;
		h->seq = seq++;
		h->buf =
			h->user ? tide_user_alloc(shared_user, h->size) : tide_alloc(pool, h->size);
		if (!h->buf)
			continue; /* at max_size or the user's quota: allowed, counted */
		atomic_fetch_add(&allocs, 1);
		fill(h);
	}
	for (unsigned k = 0; k < HELD; k++)
		if (held[k].buf)
			verify_and_free(&held[k]);
	return NULL;
}

static void *converter(void *arg)
{
	uint32_t rng = 12345;

	(void)arg;
	while (!atomic_load(&stop)) {
		uint32_t r = xorshift(&rng) % 4;
		struct timespec pause = {0, 200000};

		if (r == 0)
			tide_pool_grow(pool, 256 * 1024);
		else if (r == 1)
			tide_pool_shrink(pool, 512 * 1024);
		else
			tide_pool_maintain(pool);
		atomic_fetch_add(&conversions, 1);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

/* A thread ends inside the hook (pthread_exit): the pool is not left locked. */
static int exiting_hook(struct tide_pool *p, enum tide_convert dir, void *addr, size_t len,
			void *arg)
{
	(void)p, (void)addr, (void)len;
	if (dir == TIDE_TO_UNRESERVED && arg && !pthread_equal(pthread_self(), *(pthread_t *)arg))
		pthread_exit(NULL);
	return 0;
}

static void *grow_in_thread(void *arg)
{
	return tide_alloc(arg, 100);
}

static void hook_ends_thread(void)
{
	struct tide_pool_config cfg = {.reserve_size = 64 << 20,
				       .flags = TIDE_AUTO_GROW,
				       .memory_limit = TIDE_NO_MEMORY_LIMIT};
	pthread_t main_thread = pthread_self(), t;
	struct tide_stats st;
	struct tide_pool *p;
	void *ret = &ret;

	REQUIRE(tide_pool_create(&cfg, &p) == 0);
	REQUIRE(tide_pool_set_convert_hook(p, exiting_hook, &main_thread) == 0);
	REQUIRE(pthread_create(&t, NULL, grow_in_thread, p) == 0);
	pthread_join(t, &ret);
	CHECK(ret == NULL); /* the thread ended in the hook */
	alarm(10);	    /* a pool left locked would hang here: fail, not hang */
	CHECK(tide_pool_grow(p, 64 << 10) == 0);
	CHECK(tide_alloc(p, 100) != NULL);
	alarm(0);
	tide_pool_stats(p, &st);
	CHECK(st.vetoes >= 1);
	CHECK_POOL(p);
	printf("a thread ended in the hook: the pool stays usable (vetoes %" PRIu64 ")\n",
	       st.vetoes);
	tide_pool_destroy(p);
}

int main(void)
{
	struct tide_pool_config cfg = {
		.block_size = 2048,
		.reserve_size = 256 << 20,
		.max_size = 48 << 20,
		.grow_unit = 64 << 10,
		.shrink_delay_ms = 5,
		.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK,
	};
	struct tide_user_config ucfg = {
		.name = "shared", .quota = 4 << 20, .flags = TIDE_USER_MAY_GROW};
	pthread_t workers[WORKERS], conv;
	struct tide_stats st;
	struct tide_user_stats us;

	hook_ends_thread();
	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_user_create(pool, &ucfg, &shared_user) == 0);
	for (unsigned i = 0; i < WORKERS; i++)
		pthread_mutex_init(&boxes[i].lock, NULL);
	deadline = now_ns() + TIME_LIMIT_NS;
	REQUIRE(pthread_create(&conv, NULL, converter, NULL) == 0);
	for (unsigned i = 0; i < WORKERS; i++)
		REQUIRE(pthread_create(&workers[i], NULL, worker, (void *)(uintptr_t)i) == 0);
	for (unsigned i = 0; i < WORKERS; i++)
		pthread_join(workers[i], NULL);
	/* Whatever is still in a mailbox was handed over after its reader stopped. */
	for (unsigned i = 0; i < WORKERS; i++)
		while (boxes[i].n)
			verify_and_free(&boxes[i].items[--boxes[i].n]);
	atomic_store(&stop, true);
	pthread_join(conv, NULL);

	CHECK_POOL(pool);
	tide_pool_stats(pool, &st);
	tide_user_stats(shared_user, &us);
	printf("test_threads: %lu allocations, %lu freed on another thread, %lu conversion "
	       "calls (%" PRIu64 " grows, %" PRIu64 " shrinks, %" PRIu64 " purges)\n",
	       atomic_load(&allocs), atomic_load(&cross_frees), atomic_load(&conversions), st.grows,
	       st.shrinks, st.purges);
	printf("test_threads: %lu corruptions, %lu refused frees, live %zu bytes in %zu buffers"
	       ", user live %zu\n",
	       atomic_load(&corruptions), atomic_load(&bad_returns), st.live_bytes, st.live_buffers,
	       us.live_bytes);
	CHECK_EQ(atomic_load(&corruptions), 0);
	CHECK_EQ(atomic_load(&bad_returns), 0);
	CHECK_EQ(st.live_bytes, 0);
	CHECK_EQ(st.live_buffers, 0);
	CHECK_EQ(us.live_bytes, 0);
	CHECK_EQ(st.bad_frees, 0);
	CHECK(atomic_load(&allocs) > 0);
	CHECK(atomic_load(&cross_frees) > 0);
	CHECK_EQ(tide_user_destroy(shared_user), 0);
	/* Everything free: an explicit shrink gives the whole pool back. */
	tide_pool_shrink(pool, SIZE_MAX / 2);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.unreserved_size, 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	return test_exit("test_threads");
}
