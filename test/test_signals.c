/* SPDX-License-Identifier: MIT */
/*
 * Description: signals and priorities (issue 9, kind 4).
 *  - The re-entry guard: a call made while this thread is inside another is refused
 *    (NULL, 0, -EAGAIN), counted in reentries, and changes nothing. Also while the
 *    thread is inside a fast operation on its cache (the cache's busy half set, no
 *    thread-local mark): every call, fast or slow, on that pool or another, is refused
 *    and a refused free leaves the buffer live.
 *  - Signal storms: a thread allocates and frees (one block, runs, bulk, a user) while a
 *    timer (setitimer, every 20 us) or another thread (pthread_kill) interrupts it, and
 *    the handler allocates from the same pool and keeps or frees the buffer. No block is
 *    ever held by two owners (a count per block), no valid free is refused, and the run
 *    ends (a child process, killed and failed when it hangs). Cold (the pool grows under
 *    the handler) and warm.
 *  - Priorities: a SCHED_FIFO thread that shrinks the pool (taking back every cache)
 *    preempts, on the same CPU, a lower-priority thread in the middle of its cache
 *    operation; the shrink must still finish (its wait sleeps, so the owner can run).
 *    Skipped (77 for this part) where real-time priorities are not permitted.
 *  - Priority inheritance: on one CPU, a SCHED_FIFO 10 thread holds the conversion lock
 *    (inside its hook) when a FIFO 20 thread starts spinning; a FIFO 30 thread then wants
 *    the lock. With a priority-inheriting lock the holder is boosted above the spinner,
 *    releases, and the FIFO 30 thread's grow and shrink finish while the spinner spins;
 *    with a plain lock the holder never runs until the spinner ends. Asserted by order
 *    (the spinner sees the high thread done before its count runs out), not by time.
 *  - Cancellation: threads that grow, shrink, allocate (auto-grow past a memory limit, so
 *    every grow reads a usage file) and run a hook that sleeps (a cancellation point,
 *    like a driver's system call) are cancelled (deferred) at random moments; then the
 *    pool must still grow, allocate and shrink (no lock left held by a cancelled thread).
 *    The caller's cancellation state is the same after a call as before.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <time.h>

#include "helpers.h"
#include "internal.h"

#define RESERVE (256ul << 20)
#define BS	2048
#define NBLK	(RESERVE / BS)
#define RING	4096

static struct tide_pool *pool;
static struct tide_user *user;
static char *base;

/* ------------------------------------------------------------- guard -- */

static void guard_refuses(void)
{
	struct tide_pool_config cfg = {.block_size = BS, .initial_size = 2 << 20};
	struct tide_user_config uc = {.name = "u"};
	struct tide_stats st;
	void *b, *v[4];

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_user_create(pool, &uc, &user) == 0);
	b = tide_alloc(pool, 100);
	REQUIRE(b != NULL);
	call_guard_set(1); /* as a handler sees it when it interrupted a call */
	CHECK(tide_alloc(pool, 100) == NULL);
	CHECK(tide_alloc(pool, 5000) == NULL);
	CHECK_EQ(tide_free(pool, b), -EAGAIN);
	CHECK_EQ(tide_alloc_bulk(pool, v, 4), 0);
	CHECK_EQ(tide_free_bulk(pool, &b, 1), -EAGAIN);
	CHECK(tide_user_alloc(user, 100) == NULL);
	CHECK_EQ(tide_user_free(user, b), -EAGAIN);
	CHECK_EQ(tide_pool_grow(pool, 2 << 20), -EAGAIN);
	CHECK_EQ(tide_pool_shrink(pool, 2 << 20), -EAGAIN);
	CHECK_EQ(tide_pool_maintain(pool), -1); /* no TIDE_AUTO_SHRINK: nothing to refuse */
	CHECK(tide_buffer_size(pool, b) == BS); /* lock-free, allowed */
	tide_pool_stats(pool, &st);		/* counters only */
	call_guard_set(0);
	CHECK_EQ(st.unreserved_size, 0);
	CHECK_EQ(st.reentries, 10);
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.reentries, 10);
	CHECK_EQ(st.live_buffers, 1);
	CHECK_EQ(st.unreserved_size, 2 << 20);
	CHECK_EQ(st.alloc_failures, 0);
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK(tide_user_destroy(user) == 0);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* A handler that interrupted tide_alloc/tide_free inside its cache operation sees this. */
static void window_refuses(void)
{
	struct tide_pool_config cfg = {.block_size = BS, .initial_size = 2 << 20};
	struct tide_user_config uc = {.name = "u"};
	struct tide_pool *other;
	struct tide_stats st;
	struct tcache *c;
	void *b, *o, *v[4];

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_pool_create(&cfg, &other) == 0);
	REQUIRE(tide_user_create(pool, &uc, &user) == 0);
	o = tide_alloc(other, 100);
	b = tide_alloc(pool, 100);
	REQUIRE(b != NULL && o != NULL);
	c = cache_lookup(pool); /* this thread's cache of pool, which the alloc made */
	REQUIRE(c != NULL && atomic_load(&c->pool) == pool);
	atomic_store(&c->word.half.busy, 1);
	CHECK(call_guard_held());
	CHECK(tide_alloc(pool, 100) == NULL);
	CHECK(tide_alloc(pool, 5000) == NULL);
	CHECK_EQ(tide_free(pool, b), -EAGAIN);
	CHECK_EQ(tide_free(pool, b), -EAGAIN); /* the first refusal left it live */
	CHECK_EQ(tide_alloc_bulk(pool, v, 4), 0);
	CHECK_EQ(tide_free_bulk(pool, &b, 1), -EAGAIN);
	CHECK(tide_user_alloc(user, 100) == NULL);
	CHECK_EQ(tide_pool_grow(pool, 2 << 20), -EAGAIN);
	CHECK(tide_alloc(other, 100) == NULL); /* another pool's slow path: refused too */
	CHECK_EQ(tide_free(other, o), -EAGAIN);
	CHECK_EQ(atomic_load(&c->word.half.count), cache_count(c)); /* nothing moved */
	atomic_store(&c->word.half.busy, 0);
	CHECK(!call_guard_held());
	tide_pool_stats(pool, &st);
	CHECK_EQ(st.reentries, 8);
	CHECK_EQ(st.live_buffers, 1);
	CHECK_EQ(tide_buffer_size(pool, b), BS);
	CHECK_EQ(tide_free(pool, b), 0);
	CHECK_EQ(tide_free(pool, b), -EINVAL); /* checked as ever */
	CHECK_EQ(tide_free(other, o), 0);
	tide_pool_stats(other, &st);
	CHECK_EQ(st.reentries, 2);
	CHECK(tide_user_destroy(user) == 0);
	CHECK_POOL(pool);
	CHECK_POOL(other);
	tide_pool_destroy(other);
	tide_pool_destroy(pool);
}

/* ------------------------------------------------------------ storms -- */

static _Atomic unsigned char owners[NBLK];
static void *ring[RING];
static atomic_uint head, tail;
static atomic_long dups, refused, handled, progress;

static void take(void *b, size_t len)
{
	for (size_t i = 0; i < (len + BS - 1) / BS; i++)
		if (atomic_fetch_add(&owners[((char *)b - base) / BS + i], 1) != 0)
			atomic_fetch_add(&dups, 1);
}

static void give(void *b, size_t len)
{
	for (size_t i = 0; i < (len + BS - 1) / BS; i++)
		atomic_fetch_sub(&owners[((char *)b - base) / BS + i], 1);
}

static void on_signal(int sig)
{
	void *q = tide_alloc(pool, 100);

	(void)sig;
	atomic_fetch_add(&handled, 1);
	if (!q)
		return;
	take(q, 100);
	if (atomic_load(&head) - atomic_load(&tail) < RING && (atomic_load(&handled) & 1)) {
		ring[atomic_load(&head) % RING] = q; /* kept, freed later by the main loop */
		atomic_fetch_add(&head, 1);
	} else {
		give(q, 100);
		if (tide_free(pool, q)) /* the interrupted code was not inside: must work */
			atomic_fetch_add(&refused, 1);
	}
}

static void release(void *b, size_t len, bool as_user)
{
	give(b, len);
	if (as_user ? tide_user_free(user, b) : tide_free(pool, b))
		atomic_fetch_add(&refused, 1);
}

/* One round of the interrupted thread's work. */
static void work_round(uint64_t *rng)
{
	for (int i = 0; i < 200; i++) {
		unsigned r = (unsigned)rng_below(rng, 100);
		size_t len = r < 80 ? 100 : 3 * BS;
		bool as_user = r % 5 == 0;
		void *b = as_user ? tide_user_alloc(user, len) : tide_alloc(pool, len);
		void *v[8];
		unsigned got;

		if (b) {
			take(b, len);
			memset(b, 1, 64);
			release(b, len, as_user);
		}
		got = tide_alloc_bulk(pool, v, r % 8 + 1);
		for (unsigned k = 0; k < got; k++)
			take(v[k], BS);
		for (unsigned k = 0; k < got; k++)
			give(v[k], BS);
		if (tide_free_bulk(pool, v, got))
			atomic_fetch_add(&refused, 1);
	}
}

/* Free what the handler kept, with the signal blocked. */
static void drain_ring(const sigset_t *sig)
{
	sigset_t old;

	pthread_sigmask(SIG_BLOCK, sig, &old);
	while (atomic_load(&tail) != atomic_load(&head)) {
		void *q = ring[atomic_load(&tail) % RING];

		atomic_fetch_add(&tail, 1);
		release(q, 100, false);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static _Atomic bool storm_stop;

static void *sender(void *target)
{
	struct timespec gap = {0, 10 * 1000};

	for (int i = 0; i < 100000 && !atomic_load(&storm_stop); i++) {
		pthread_kill(*(pthread_t *)target, SIGUSR1);
		nanosleep(&gap, NULL);
	}
	return NULL;
}

enum storm {
	TIMER_COLD,
	TIMER_WARM,
	KILL_WARM
};

/* In a child: one second of storm; exit 0 when no block was doubly held or refused. */
static int storm_child(enum storm mode)
{
	struct tide_pool_config cfg = {.block_size = BS,
				       .reserve_size = RESERVE,
				       .initial_size = mode == TIMER_COLD ? 0 : 32 << 20,
				       .flags = TIDE_AUTO_GROW};
	struct tide_user_config uc = {.name = "u", .flags = TIDE_USER_MAY_GROW};
	int sig = mode == KILL_WARM ? SIGUSR1 : SIGALRM;
	struct itimerval it = {{0, 20}, {0, 20}};
	struct sigaction sa = {.sa_handler = on_signal};
	uint64_t rng = test_seed(7), t0 = 0;
	struct timespec now;
	pthread_t self = pthread_self(), snd;
	sigset_t set;
	struct tide_stats st;

	if (tide_pool_create(&cfg, &pool) || tide_user_create(pool, &uc, &user))
		return 77;
	base = tide_pool_base(pool);
	tide_free(pool, tide_alloc(pool, 100)); /* this thread's cache exists (it mallocs) */
	tide_user_free(user, tide_user_alloc(user, 100));
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigemptyset(&sa.sa_mask);
	sigaction(sig, &sa, NULL);
	if (mode == KILL_WARM) {
		pthread_sigmask(SIG_BLOCK, &set, NULL); /* the sender inherits it blocked */
		if (pthread_create(&snd, NULL, sender, &self))
			return 77;
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	} else {
		setitimer(ITIMER_REAL, &it, NULL);
	}
	for (;;) {
		work_round(&rng);
		drain_ring(&set);
		atomic_fetch_add(&progress, 1);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!t0)
			t0 = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
		else if ((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec - t0 >
			 1000000000u)
			break;
		if (atomic_load(&dups))
			break;
	}
	if (mode == KILL_WARM) {
		atomic_store(&storm_stop, true);
		pthread_join(snd, NULL);
	} else {
		setitimer(ITIMER_REAL, &(struct itimerval){{0, 0}, {0, 0}}, NULL);
	}
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	drain_ring(&set);
	tide_pool_stats(pool, &st);
	printf("storm %d: %ld signals, %lu refused as re-entries, %ld blocks held twice, %ld "
	       "valid frees refused, live %zu\n",
	       mode, atomic_load(&handled), (unsigned long)st.reentries, atomic_load(&dups),
	       atomic_load(&refused), st.live_bytes);
	fflush(stdout);
	return atomic_load(&dups) || atomic_load(&refused) || st.live_bytes ||
	       tide_pool_check(pool, NULL, 0);
}

static void storms(void)
{
	for (enum storm mode = TIMER_COLD; mode <= KILL_WARM; mode++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0)
			_exit(storm_child(mode));
		status = wait_child(pid, 20);
		CHECKF(status != -1, "storm %d: the child hung (deadlock)", mode);
		if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 77)
			continue;
		CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		       "storm %d: status %#x", mode, status);
	}
}

/* --------------------------------------------------------- priorities -- */

static _Atomic bool rt_stop;

static bool pin_fifo(int prio)
{
	struct sched_param sp = {.sched_priority = prio};
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	return pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0 &&
	       pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
}

static void *rt_owner(void *arg)
{
	(void)arg;
	if (!pin_fifo(1))
		return (void *)77;
	while (!atomic_load_explicit(&rt_stop, memory_order_relaxed)) {
		void *b = tide_alloc(pool, 100);

		tide_free(pool, b);
	}
	return NULL;
}

static void *rt_stealer(void *arg)
{
	struct timespec gap = {0, 100 * 1000};

	(void)arg;
	if (!pin_fifo(2))
		return (void *)77;
	for (int i = 0; i < 500; i++) {
		nanosleep(&gap, NULL);			 /* wakes up preempting the owner */
		tide_pool_shrink(pool, (size_t)1 << 30); /* takes back the owner's cache */
	}
	atomic_store(&rt_stop, true);
	return NULL;
}

/* In a child: 0 when the shrinks all finished, 77 when SCHED_FIFO is not permitted. */
static int rt_child(void *arg)
{
	struct tide_pool_config cfg = {.block_size = BS, .flags = TIDE_AUTO_GROW};
	pthread_t o, s;
	void *ro, *rs;

	(void)arg;
	if (tide_pool_create(&cfg, &pool))
		return 77;
	if (pthread_create(&o, NULL, rt_owner, NULL))
		return 77;
	if (pthread_create(&s, NULL, rt_stealer, NULL)) {
		atomic_store(&rt_stop, true);
		pthread_join(o, NULL);
		return 77;
	}
	pthread_join(s, &rs);
	atomic_store(&rt_stop, true);
	pthread_join(o, &ro);
	if (ro || rs)
		return 77;
	return tide_pool_check(pool, NULL, 0) ? 1 : 0;
}

/*
 * Run a SCHED_FIFO scenario in a child, waited for at most limit_s seconds: its wait status,
 * -1 when it hung, or 77 (after saying so) when this machine does not permit SCHED_FIFO.
 */
static int fifo_child(int (*child)(void *), unsigned limit_s, const char *part)
{
	int status = fork_and_wait(child, NULL, limit_s);

	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("SCHED_FIFO on CPU 0 not permitted here: %s skipped\n", part);
		return 77;
	}
	return status;
}

static void priorities(void)
{
	int status = fifo_child(rt_child, 20, "priority part");

	if (status == 77)
		return;
	CHECKF(status != -1, "a SCHED_FIFO shrink never finished: it spun while the cache's "
			     "owner could not run");
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "priorities: status %#x", status);
	printf("priorities: a SCHED_FIFO shrink preempting a cache owner on its CPU: %s\n",
	       status == -1 ? "hung" : "finished");
}

/* ---------------------------------------------- priority inheritance -- */

#define PI_SPINS (400u * 1000 * 1000) /* the spinner's count: far more than a grow takes */

static _Atomic bool pi_holder_in_hook, pi_high_waiting, pi_high_done;
static _Atomic int pi_seen_done = -1; /* the spinner: 1 saw the high thread finish, 0 not */
static _Thread_local bool pi_is_holder;

static bool pin_fifo_attr(pthread_attr_t *a, int prio)
{
	struct sched_param sp = {.sched_priority = prio};
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(0, &one);
	return !pthread_attr_init(a) && !pthread_attr_setinheritsched(a, PTHREAD_EXPLICIT_SCHED) &&
	       !pthread_attr_setschedpolicy(a, SCHED_FIFO) && !pthread_attr_setschedparam(a, &sp) &&
	       !pthread_attr_setaffinity_np(a, sizeof(one), &one);
}

/*
 * The holder's hook keeps the conversion lock until the high thread waits for it. It polls
 * with short sleeps, so it does not hold CPU 0 while the main thread starts the others;
 * each wake-up needs the CPU, which the spinner has unless the holder is boosted.
 */
static int pi_hook(struct tide_pool *p, enum tide_convert dir, void *addr, size_t len, void *arg)
{
	(void)p, (void)dir, (void)addr, (void)len, (void)arg;
	if (!pi_is_holder)
		return 0;
	atomic_store(&pi_holder_in_hook, true);
	for (unsigned i = 0; i < 200000 && !atomic_load(&pi_high_waiting); i++)
		nanosleep(&(struct timespec){0, 20 * 1000}, NULL);
	return 0;
}

static void *pi_holder(void *arg)
{
	(void)arg;
	pi_is_holder = true;
	return (void *)(intptr_t)tide_pool_grow(pool, 2 << 20);
}

static void *pi_spinner(void *arg)
{
	unsigned i = 0;

	(void)arg;
	while (i < PI_SPINS && !atomic_load_explicit(&pi_high_done, memory_order_relaxed))
		i++;
	atomic_store(&pi_seen_done, atomic_load(&pi_high_done));
	return NULL;
}

static void *pi_high(void *arg)
{
	intptr_t err;

	(void)arg;
	atomic_store(&pi_high_waiting, true); /* then blocks on the holder's lock */
	err = tide_pool_grow(pool, 2 << 20);
	if (!err)
		err = tide_pool_shrink(pool, 2 << 20) == 2 << 20 ? 0 : -1;
	atomic_store(&pi_high_done, true);
	return (void *)err;
}

/* In a child: 0 when the high thread finished while the spinner spun, 77 without FIFO. */
static int pi_child(void *arg)
{
	struct tide_pool_config cfg = {.block_size = BS};
	pthread_attr_t lo, mid, hi;
	pthread_t l, m, h;
	void *rl, *rh;
	int spins = 0;

	(void)arg;
	cpu_set_t rest;

	/* This thread stays off CPU 0, where the FIFO threads would starve it. */
	if (sched_getaffinity(0, sizeof(rest), &rest) || !CPU_ISSET(0, &rest))
		return 77;
	CPU_CLR(0, &rest);
	if (!CPU_COUNT(&rest) || sched_setaffinity(0, sizeof(rest), &rest))
		return 77;
	if (tide_pool_create(&cfg, &pool) || tide_pool_set_convert_hook(pool, pi_hook, NULL))
		return 2;
	if (!pin_fifo_attr(&lo, 10) || !pin_fifo_attr(&mid, 20) || !pin_fifo_attr(&hi, 30))
		return 77;
	if (pthread_create(&l, &lo, pi_holder, NULL))
		return 77;
	while (!atomic_load(&pi_holder_in_hook) && spins++ < 5000)
		nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
	if (pthread_create(&m, &mid, pi_spinner, NULL) || pthread_create(&h, &hi, pi_high, NULL)) {
		atomic_store(&pi_high_waiting, true);
		pthread_join(l, NULL);
		return 77;
	}
	pthread_join(h, &rh);
	pthread_join(m, NULL);
	pthread_join(l, &rl);
	printf("priority inheritance: the FIFO 20 spinner %s the FIFO 30 grow+shrink finish "
	       "(holder %ld, high %ld)\n",
	       atomic_load(&pi_seen_done) == 1 ? "saw" : "did not see", (long)(intptr_t)rl,
	       (long)(intptr_t)rh);
	fflush(stdout);
	return atomic_load(&pi_seen_done) == 1 && !rl && !rh && !tide_pool_check(pool, NULL, 0) ? 0
												: 1;
}

static void priority_inheritance(void)
{
	int status = fifo_child(pi_child, 60, "priority inheritance");

	if (status == 77)
		return;
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a FIFO 30 thread waited behind a FIFO 20 spinner for a FIFO 10 lock holder "
	       "(no priority inheritance): status %#x",
	       status);
}

/* ------------------------------------------------------- cancellation -- */

#define CANCEL_WORKERS 60

/* A driver's registration: a system call that is a cancellation point. */
static int sleepy_hook(struct tide_pool *p, enum tide_convert dir, void *addr, size_t len,
		       void *arg)
{
	(void)p, (void)dir, (void)addr, (void)len, (void)arg;
	nanosleep(&(struct timespec){0, 20 * 1000}, NULL);
	return 0;
}

static void *cancel_worker(void *arg)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);

	for (;;) {
		void *v[64];
		unsigned n = 0;

		tide_pool_grow(pool, 2 << 20);
		while (n < 64 && (v[n] = tide_alloc(pool, 1 + rng_below(&rng, 3 * BS))))
			n++;
		tide_free_bulk(pool, v, n);
		tide_pool_shrink(pool, (size_t)1 << 30);
		pthread_testcancel(); /* where the cancel acts: outside the pool */
	}
	return NULL;
}

static int cancel_child(void)
{
	struct tide_pool_config cfg = {.block_size = BS,
				       .reserve_size = RESERVE,
				       .flags = TIDE_AUTO_GROW,
				       .memory_limit = (size_t)1 << 40}; /* each grow reads statm */
	uint64_t rng = test_seed(11);
	int old, bad = 0;
	void *b;

	if (tide_pool_create(&cfg, &pool) || tide_pool_set_convert_hook(pool, sleepy_hook, NULL))
		return 2;
	for (uintptr_t i = 0; i < CANCEL_WORKERS; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, cancel_worker, (void *)i))
			return 2;
		nanosleep(&(struct timespec){0, (long)rng_below(&rng, 2000) * 1000}, NULL);
		pthread_cancel(t);
		pthread_join(t, NULL);
	}
	/* Alone now: every lock must be free. */
	bad |= tide_pool_grow(pool, 2 << 20) != 0;
	b = tide_alloc(pool, 3 * BS);
	bad |= b == NULL || tide_free(pool, b) != 0;
	bad |= tide_pool_shrink(pool, (size_t)1 << 30) < 0;
	bad |= tide_pool_check(pool, NULL, 0) != 0;
	/* The caller's state comes back as it was, enabled or disabled. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old);
	tide_pool_grow(pool, 2 << 20);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	bad |= old != PTHREAD_CANCEL_DISABLE;
	tide_pool_shrink(pool, 2 << 20);
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, &old);
	bad |= old != PTHREAD_CANCEL_ENABLE;
	printf("cancellation: %d workers cancelled inside the pool, then grow, alloc and "
	       "shrink %s\n",
	       CANCEL_WORKERS, bad ? "FAILED" : "work");
	fflush(stdout);
	return bad;
}

static void cancellation(void)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		_exit(cancel_child());
	status = wait_child(pid, 60);
	CHECKF(status != -1, "a pool lock was left held by a cancelled thread (hung)");
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "cancellation: status %#x", status);
}

int main(void)
{
	guard_refuses();
	window_refuses();
	storms();
	priorities();
	priority_inheritance();
	cancellation();
	return test_exit("test_signals");
}
