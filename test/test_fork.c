/* SPDX-License-Identifier: MIT */
/*
 * Description: fork() while the pool is in use (issue 9, kind 1). Three workers allocate
 * and free (one block, runs, bulk, through a user), grow, shrink, flush and read stats,
 * while the pool's background thread maintains it; the main thread forks at random
 * moments. Every child must, within a bound: see no block parked in a cache (the other
 * threads' caches came back), pass the invariant checker, allocate, free, shrink, pass
 * the checker again and destroy the pool. A second part forks a single-threaded
 * TIDE_BACKGROUND pool: the child's pool shrinks by itself after a burst (the maintenance
 * thread runs again) and its destroy returns. A child that hangs is killed and counted.
 *
 * The fork window (second pass): the program's own pthread_atfork handlers, registered
 * before its first pool, allocate from it in prepare, parent and child (tide registers
 * its handlers at load, so these run outside its lock window); a timer signal whose
 * handler allocates lands inside fork() again and again while the thread forks (refused
 * inside the window, counted in reentries, never a deadlock); and a TIDE_LOCKED pool is
 * locked again in the child (fork(2) does not inherit memory locks), before and after a
 * grow, by the kernel's Locked: count in /proc/self/smaps.
 *
 * A thread that fork leaves behind inside a bulk allocation's cache window (the blocks it
 * took already tagged, the cache's count not yet stored): the child counts those blocks
 * live, not free, and passes the checker.
 */
#include <dirent.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#include "helpers.h"
#include "internal.h"

#define WORKERS	    3
#define FORKS	    40
#define HOLD	    64
#define CHILD_LIMIT 5.0 /* seconds a child may take */

/*
 * ThreadSanitizer cannot follow a thread started in the child of a threaded fork (the new
 * thread reuses a vanished one's id), and AddressSanitizer's allocator may hang such a thread
 * as it starts (below): in those trees no pool has a background thread; the release stage
 * runs this test with one.
 */
#if defined(TIDE_TSAN) || defined(__SANITIZE_ADDRESS__)
#define BACKGROUND 0
#else
#define BACKGROUND TIDE_BACKGROUND
#endif

/*
 * AddressSanitizer's allocator (GCC 12's libasan) takes no lock around fork: a grandchild
 * forked while a thread of the child was inside malloc hangs when its own new thread (the
 * pool's maintenance thread) starts and allocates its sanitizer state (gdb: FutexWait in
 * SizeClassAllocator64::GetFromAllocator under AsanThread::Init). The release stage runs
 * the fork of a fork; the ASan tree stops at children.
 */
#ifdef __SANITIZE_ADDRESS__
#define GRANDCHILDREN false
#else
#define GRANDCHILDREN true
#endif

static struct tide_pool *pool;
static struct tide_user *user;
static _Atomic bool stop;

static void *worker(void *arg)
{
	uint64_t rng = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
	void *held[HOLD];
	unsigned n = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned r = (unsigned)rng_below(&rng, 100);

		if (r < 40 && n < HOLD) {
			void *b = r < 30 ? tide_alloc(pool, 1 + rng_below(&rng, 2048))
					 : tide_alloc(pool, 2049 + rng_below(&rng, 6000));

			if (b) {
				memset(b, 0x5a, 16);
				held[n++] = b;
			}
		} else if (r < 80 && n) {
			unsigned k = (unsigned)rng_below(&rng, n);

			tide_free(pool, held[k]);
			held[k] = held[--n];
		} else if (r < 85) {
			void *v[16];
			unsigned got = tide_alloc_bulk(pool, v, 16);

			tide_free_bulk(pool, v, got);
		} else if (r < 88) {
			void *b = tide_user_alloc(user, 100);

			tide_user_free(user, b);
		} else if (r < 90) {
			tide_pool_grow(pool, 2 << 20);
		} else if (r < 92) {
			tide_pool_shrink(pool, 4 << 20);
		} else if (r < 94) {
			tide_pool_flush_cache(pool);
		} else if (r < 96) {
			struct tide_stats st;

			tide_pool_stats(pool, &st);
		} else {
			tide_pool_maintain(pool);
		}
	}
	while (n)
		tide_free(pool, held[--n]);
	return NULL;
}

static bool child_check(const char *when)
{
	char why[256] = "";
	int rc = tide_pool_check(pool, why, sizeof(why));

	if (rc)
		fprintf(stderr, "child %s: tide_pool_check: %d: %s\n", when, rc, why);
	return rc == 0;
}

/*
 * Wait (at most 2 s) until every other thread of this process sleeps in the kernel: a
 * sanitizer's runtime does not lock its own allocator around fork, so a thread it is
 * still starting (the maintenance thread the child started again) must be settled first.
 */
static void wait_others_asleep(void)
{
	for (int round = 0; round < 2000; round++) {
		char path[300], buf[512], *p;
		bool busy = false;
		struct dirent *e;
		DIR *d = opendir("/proc/self/task");

		while (d && (e = readdir(d))) {
			FILE *f;
			size_t n;

			if (e->d_name[0] == '.' || atoi(e->d_name) == (int)syscall(SYS_gettid))
				continue;
			snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
			f = fopen(path, "r");
			if (!f)
				continue;
			n = fread(buf, 1, sizeof(buf) - 1, f);
			fclose(f);
			buf[n] = 0;
			p = strrchr(buf, ')');
			busy |= !p || p[1] != ' ' || p[2] != 'S';
		}
		if (d)
			closedir(d);
		if (!busy)
			return;
		usleep(1000);
	}
}

/* What a child does with the pool it inherited; its exit status. A child of depth 0 may
 * fork a grandchild of its own first (a fork of a fork, while the parent forks again). */
static int child_body(int depth, bool grandchild)
{
	struct tide_stats st;
	void *v[64], *runs[8];
	unsigned got;
	ssize_t shrunk;
	int fail = 0;

	tide_pool_stats(pool, &st);
	if (st.cached_bytes) {
		fprintf(stderr, "child: %zu bytes still parked in caches\n", st.cached_bytes);
		fail = 1;
	}
	fail |= !child_check("at start");
	got = tide_alloc_bulk(pool, v, 64);
	for (int i = 0; i < 8; i++) {
		runs[i] = tide_alloc(pool, 5000);
		if (!runs[i])
			fail = 1;
		else
			memset(runs[i], 1, 5000);
	}
	if (got != 64)
		fail = 1;
	for (unsigned i = 0; i < got; i++)
		memset(v[i], 2, 2048);
	fail |= !child_check("with buffers");
	if (tide_free_bulk(pool, v, got))
		fail = 1;
	for (int i = 0; i < 8; i++)
		if (tide_free(pool, runs[i]))
			fail = 1;
	tide_pool_flush_cache(pool);
	shrunk = tide_pool_shrink(pool, SIZE_MAX);
	if (shrunk < 0 && shrunk != -EBUSY) /* the vanished threads' live buffers may hold it */
		fail = 1;
	fail |= !child_check("after shrink");
	if (tide_pool_maintain(pool) < -1)
		fail = 1;
	if (depth == 0 && grandchild) {
		pid_t pid;
		int status;

		wait_others_asleep();
		fflush(NULL);
		pid = fork();
		if (pid == 0)
			_exit(child_body(1, false));
		status = pid < 0 ? -1 : wait_child(pid, CHILD_LIMIT);
		if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "grandchild: status %#x\n", status);
			fail = 1;
		}
	}
	tide_pool_destroy(pool);
	return fail;
}

static void forks_under_load(void)
{
	struct tide_pool_config cfg = {.block_size = 2048,
				       .reserve_size = 1ul << 30,
				       .initial_size = 4 << 20,
				       .shrink_delay_ms = 5,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | BACKGROUND};
	struct tide_user_config uc = {.name = "u", .flags = TIDE_USER_MAY_GROW};
	uint64_t rng = test_seed(42);
	pthread_t t[WORKERS];
	int hung = 0, bad = 0;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_user_create(pool, &uc, &user) == 0);
	for (long i = 0; i < WORKERS; i++)
		REQUIRE(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
	for (int i = 0; i < FORKS; i++) {
		struct timespec pause = {0, (long)rng_below(&rng, 3000) * 1000};
		pid_t pid;
		int status;

		nanosleep(&pause, NULL);
		fflush(NULL);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			setpgid(0, 0); /* killed with its own child if it hangs */
			_exit(child_body(0, GRANDCHILDREN && i % 4 == 0));
		}
		status = wait_child(pid, CHILD_LIMIT);
		if (status == -1)
			hung++;
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			bad++;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	printf("%d forks under load: %d children hung, %d failed\n", FORKS, hung, bad);
	CHECK_EQ(hung, 0);
	CHECK_EQ(bad, 0);
	tide_pool_flush_cache(pool);
	CHECK_POOL(pool);
	CHECK(tide_user_destroy(user) == 0);
	tide_pool_destroy(pool);
}

/* The child's pool shrinks by itself after a burst: its maintenance thread runs. */
static int child_background(void)
{
	static void *v[8192]; /* 16 MiB of 2 KiB blocks */
	struct tide_stats st;
	unsigned got = tide_alloc_bulk(pool, v, 8192);

	if (got != 8192 || tide_free_bulk(pool, v, got))
		return 1;
	tide_pool_flush_cache(pool);
	for (int i = 0; i < 300; i++) { /* 3 s at most; the delay is 20 ms */
		struct timespec tick = {0, 10 * 1000 * 1000};

		tide_pool_stats(pool, &st);
		if (st.unreserved_size <= (2u << 20))
			break;
		nanosleep(&tick, NULL);
	}
	if (st.unreserved_size > (2u << 20)) {
		fprintf(stderr, "child: %zu bytes unreserved 3 s after the burst\n",
			st.unreserved_size);
		return 1;
	}
	tide_pool_destroy(pool);
	return 0;
}

static void fork_background(void)
{
	struct tide_pool_config cfg = {.block_size = 2048,
				       .shrink_delay_ms = 20,
				       .flags =
					       TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_BACKGROUND};
	int status;
	pid_t pid;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	tide_free(pool, tide_alloc(pool, 100));
	usleep(50 * 1000); /* the thread is asleep on its condition */
	for (int k = 0; k < 2; k++) {
		fflush(NULL);
		pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			if (k == 0)
				_exit(child_background());
			tide_pool_destroy(pool); /* at once: the inherited condition had a waiter */
			_exit(0);
		}
		status = wait_child(pid, CHILD_LIMIT);
		CHECKF(status != -1, "child %d hung", k);
		CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		       "child %d failed (status %#x)", k, status);
	}
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* ------------------------------------------------- fork inside the hook -- */

static _Atomic int hook_forked; /* in the parent: the child's pid; in the child: -1 */

static int forking_hook(struct tide_pool *p, enum tide_convert dir, void *addr, size_t len,
			void *arg)
{
	(void)p, (void)addr, (void)len, (void)arg;
	if (dir == TIDE_TO_UNRESERVED && !atomic_load(&hook_forked)) {
		pid_t pid;

		fflush(NULL);
		pid = fork(); /* this thread holds the conversion lock */
		atomic_store(&hook_forked, pid == 0 ? -1 : pid);
	}
	return 0;
}

/* A hook that forks (a driver that starts a helper process): both sides go on. */
static void fork_in_hook(void)
{
	struct tide_pool_config cfg = {.block_size = 2048, .flags = TIDE_AUTO_GROW};
	int status, err;
	void *b;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_pool_set_convert_hook(pool, forking_hook, NULL) == 0);
	err = tide_pool_grow(pool, 2 << 20);
	b = tide_alloc(pool, 3000);
	if (atomic_load(&hook_forked) == -1) { /* the child, back from the hook */
		int fail = err || !b || tide_free(pool, b) || !child_check("after a hook fork");

		tide_pool_destroy(pool);
		_exit(fail);
	}
	CHECK_EQ(err, 0);
	CHECK(b != NULL);
	CHECK_EQ(tide_free(pool, b), 0);
	REQUIRE(atomic_load(&hook_forked) > 0);
	status = wait_child(atomic_load(&hook_forked), CHILD_LIMIT);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "fork inside the hook: child status %#x", status);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
}

/* ------------------------------------- fork while another thread's hook runs -- */

static _Atomic int slow_hook_state; /* 1: inside, 2: returned */

static int slow_hook(struct tide_pool *p, enum tide_convert dir, void *addr, size_t len, void *arg)
{
	(void)p, (void)addr, (void)len, (void)arg;
	if (dir == TIDE_TO_UNRESERVED && atomic_load(&slow_hook_state) == 0) {
		atomic_store(&slow_hook_state, 1);
		usleep(50000); /* a driver registering the range with a device */
		atomic_store(&slow_hook_state, 2);
	}
	return 0;
}

static _Atomic int grow_result = 1; /* 1 until the detached grower is done */

static void *grow_thread(void *arg)
{
	atomic_store(&grow_result, tide_pool_grow(arg, 2 << 20));
	return NULL;
}

/*
 * The documented rule (tide_pool_set_convert_hook(3)): fork() waits for a hook running in
 * another thread, which is why a hook must not wait for a lock the forking thread holds.
 * When fork() returns, the hook has returned, in the parent and in the child, and the
 * child's pool is whole.
 */
static void fork_while_hook_runs(void)
{
	struct tide_pool_config cfg = {.block_size = 2048, .flags = TIDE_AUTO_GROW};
	struct tide_pool *p;
	pthread_t t;
	pid_t pid;
	int status;

	REQUIRE(tide_pool_create(&cfg, &p) == 0);
	REQUIRE(tide_pool_set_convert_hook(p, slow_hook, NULL) == 0);
	pthread_attr_t attr;

	/* Detached: the child's copy of an unjoined thread would be a leak to ThreadSanitizer. */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	REQUIRE(pthread_create(&t, &attr, grow_thread, p) == 0);
	pthread_attr_destroy(&attr);
	for (int i = 0; i < 5000 && atomic_load(&slow_hook_state) == 0; i++)
		usleep(1000);
	REQUIRE(atomic_load(&slow_hook_state) != 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		void *b = tide_alloc(p, 100);

		_exit(atomic_load(&slow_hook_state) == 2 && b && !tide_free(p, b) &&
				      tide_pool_check(p, NULL, 0) == 0
			      ? 0
			      : 1);
	}
	CHECK_EQ(atomic_load(&slow_hook_state), 2); /* fork waited for the hook */
	for (int i = 0; i < 5000 && atomic_load(&grow_result) == 1; i++)
		usleep(1000);
	CHECK_EQ(atomic_load(&grow_result), 0);
	status = wait_child(pid, CHILD_LIMIT);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "fork while a hook runs: child status %#x", status);
	printf("fork while another thread's hook runs: fork returned after the hook\n");
	tide_pool_destroy(p);
}

/* --------------------------------------------- the program's atfork handlers -- */

static struct tide_pool *handler_pool;
static _Atomic int handler_ok[3]; /* prepare, parent, child: the allocation succeeded */

/* A 3-block buffer: the pool-lock path, the one that would wait for a held lock. */
static void handler_alloc(int which)
{
	void *b = tide_alloc(handler_pool, 3 * 2048);

	if (b) {
		memset(b, 7, 3 * 2048);
		atomic_store(&handler_ok[which], tide_free(handler_pool, b) == 0);
	}
}

static void app_prepare(void)
{
	handler_alloc(0);
}

static void app_parent(void)
{
	handler_alloc(1);
}

static void app_child(void)
{
	handler_alloc(2);
}

/* In a child (the handlers stay with it): register, then make the first pool, then fork. */
static int atfork_child(void *arg)
{
	struct tide_pool_config cfg = {.block_size = 2048, .initial_size = 2 << 20};
	struct tide_stats st;
	int status;
	pid_t pid;

	(void)arg;
	if (pthread_atfork(app_prepare, app_parent, app_child))
		return 77;
	if (tide_pool_create(&cfg, &handler_pool))
		return 2;
	pid = fork();
	if (pid == 0)
		_exit(atomic_load(&handler_ok[2]) && tide_pool_check(handler_pool, NULL, 0) == 0
			      ? 0
			      : 3);
	status = wait_child(pid, CHILD_LIMIT);
	tide_pool_stats(handler_pool, &st);
	printf("atfork handlers: prepare %d, parent %d, child %s, reentries %" PRIu64 "\n",
	       atomic_load(&handler_ok[0]), atomic_load(&handler_ok[1]),
	       status == -1 ? "hung" : "returned", st.reentries);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status))
		return 4;
	return atomic_load(&handler_ok[0]) && atomic_load(&handler_ok[1]) && !st.reentries ? 0 : 5;
}

static void atfork_handlers(void)
{
	int status;

	status = fork_and_wait(atfork_child, NULL, 2 * CHILD_LIMIT);
	CHECKF(status != -1, "the program's atfork handlers hung in the pool");
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "atfork handlers that allocate: status %#x", status);
}

/* ------------------------------------------------ a signal inside fork() -- */

#define SIGNAL_FORKS 150

static struct tide_pool *sig_pool;
static atomic_long sig_got, sig_refused;

static void on_alarm(int sig)
{
	void *b = tide_alloc(sig_pool, 3 * 2048);

	(void)sig;
	if (b) {
		atomic_fetch_add(&sig_got, 1);
		tide_free(sig_pool, b);
	} else {
		atomic_fetch_add(&sig_refused, 1);
	}
}

static int signal_fork_child(void *arg)
{
	struct tide_pool_config cfg = {.block_size = 2048, .initial_size = 2 << 20};
	struct itimerval every = {{0, 50}, {0, 50}}, off = {{0, 0}, {0, 0}};
	struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
	struct tide_stats st;
	int bad = 0;

	(void)arg;
	if (tide_pool_create(&cfg, &sig_pool))
		return 2;
	tide_free(sig_pool, tide_alloc(sig_pool, 100)); /* this thread's cache, before handlers */
	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &every, NULL);
	for (int i = 0; i < SIGNAL_FORKS; i++) {
		pid_t pid = fork();
		int status;

		if (pid == 0)
			_exit(0);
		if (pid < 0)
			continue;
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR)
				break;
	}
	setitimer(ITIMER_REAL, &off, NULL);
	tide_pool_stats(sig_pool, &st);
	printf("signal inside fork: %d forks, handler got %ld, refused %ld (reentries %" PRIu64
	       ")\n",
	       SIGNAL_FORKS, atomic_load(&sig_got), atomic_load(&sig_refused), st.reentries);
	bad |= (uint64_t)atomic_load(&sig_refused) != st.reentries;
	bad |= atomic_load(&sig_got) == 0;
	bad |= tide_pool_check(sig_pool, NULL, 0) != 0;
	bad |= st.live_buffers != 0;
	tide_pool_destroy(sig_pool);
	return bad;
}

static void signal_inside_fork(void)
{
	int status;

	status = fork_and_wait(signal_fork_child, NULL, 30);
	CHECKF(status != -1, "a handler that allocates deadlocked inside fork()");
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "signal inside fork: status %#x", status);
}

/* ---------------------------------------------- TIDE_LOCKED across fork -- */

/* kB of Locked: in the mappings inside [addr, addr + len), from /proc/self/smaps. */
static long long smaps_locked_kb(const void *addr, size_t len)
{
	unsigned long lo = (unsigned long)addr, hi = lo + len, a, b;
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	long long kb = 0, v;
	bool in = false;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2)
			in = a >= lo && b <= hi;
		else if (in && sscanf(line, "Locked: %lld kB", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

static int locked_child(void *arg)
{
	struct tide_pool *p = arg;
	long long before = smaps_locked_kb(tide_pool_base(p), 64 << 20), used, after;
	struct tide_stats st;
	int bad = 0;
	void *b;

	/* Nothing locked (nor copied) until the child uses the pool: fork+exec stays cheap. */
	bad |= before != 0;
	b = tide_alloc(p, 100);
	bad |= b == NULL;
	used = smaps_locked_kb(tide_pool_base(p), 64 << 20);
	bad |= used != (8 << 20) >> 10;
	tide_free(p, b);
	bad |= tide_pool_grow(p, 2 << 20) != 0;
	after = smaps_locked_kb(tide_pool_base(p), 64 << 20);
	bad |= after != (10 << 20) >> 10;
	tide_pool_stats(p, &st);
	bad |= st.os_failures != 0;
	printf("TIDE_LOCKED in the child: Locked %lld kB after fork (0), %lld kB after its first "
	       "alloc (8192), after a grow %lld kB (10240)\n",
	       before, used, after);
	return bad;
}

static void locked_across_fork(void)
{
	struct tide_pool_config cfg = {
		.reserve_size = 64 << 20, .initial_size = 8 << 20, .flags = TIDE_LOCKED};
	struct tide_pool *p;
	int status;

	if (tide_pool_create(&cfg, &p)) {
		printf("cannot lock 8 MiB here (RLIMIT_MEMLOCK): TIDE_LOCKED part skipped\n");
		return;
	}
	if (smaps_locked_kb(tide_pool_base(p), 64 << 20) == 0) {
		/* AddressSanitizer's mlock() does nothing: no Locked: count to compare. */
		printf("mlock has no effect in this build: TIDE_LOCKED part skipped\n");
		tide_pool_destroy(p);
		return;
	}
	CHECK_EQ(smaps_locked_kb(tide_pool_base(p), 64 << 20), (8 << 20) >> 10);
	status = fork_and_wait(locked_child, p, CHILD_LIMIT);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "the child's TIDE_LOCKED pool is not locked: status %#x", status);
	tide_pool_destroy(p);
}

/* ----------------------------------------- the child's own resident memory -- */

/* memory_limit is on this process's RSS: a child's fill stops at its own, not its parent's. */
static void child_rss_limit(void)
{
	struct tide_pool_config cfg = {
		.block_size = 65536, .reserve_size = GiB, .flags = TIDE_AUTO_GROW};
	struct tide_pool *p;
	pid_t pid;
	int status;

	cfg.memory_limit = (size_t)self_rss() + 64 * MiB; /* sanitizers' own memory counts */
	REQUIRE(tide_pool_create(&cfg, &p) == 0);
	fflush(NULL);
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		size_t got = 0;
		char *b;

		while (got < 256 * MiB && (b = tide_alloc(p, 65536))) {
			memset(b, 7, 65536);
			got += 65536;
		}
		printf("memory_limit RSS + 64 MiB in a fork child: %zu MiB handed out\n",
		       got >> 20);
		fflush(NULL);
		_exit(got >= 4 * MiB && got < 64 * MiB ? 0 : 1); /* TSan: shadow pages count */
	}
	status = wait_child(pid, CHILD_LIMIT);
	CHECKF(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "the child's memory_limit did not hold on its own RSS: status %#x", status);
	tide_pool_destroy(p);
}

/* ------------------------------- the background thread cannot be restarted -- */

/*
 * A class of users' burst (tide_user_*, the bulk calls), then silence, then one call that
 * misses the thread cache (a multi-block buffer): it does the maintenance the thread would
 * have done, as the default user's calls do. 0, or 5.
 */
static int user_burst_then_one_call(struct tide_pool *p)
{
	struct tide_user_config ucfg = {.name = "child", .flags = TIDE_USER_MAY_GROW};
	static void *b[4096];
	struct tide_user *u;
	size_t unreserved;
	void *run;
	unsigned got = 0;

	if (tide_user_create(p, &ucfg, &u))
		return 5;
	for (int i = 0; i < 4096; i++)
		if (!(b[i] = tide_user_alloc(u, 2048)))
			return 5;
	for (int i = 0; i < 4096; i++)
		tide_user_free(u, b[i]);
	while (got < 4096) {
		unsigned n = tide_alloc_bulk(p, b + got, 4096 - got);

		if (!n)
			return 5;
		got += n;
	}
	tide_free_bulk(p, b, got);
	usleep(4 * 10000);
	run = tide_user_alloc(u, 3 * 2048);
	unreserved = (size_t)((char *)tide_pool_boundary(p) - (char *)tide_pool_base(p));
	printf("after a user burst, one tide_user_alloc() past the cache: unreserved %zu\n",
	       unreserved);
	tide_user_free(u, run);
	fflush(NULL);
	return run && unreserved <= (2 << 20) ? 0 : 5;
}

/*
 * A fork child with no thread: a burst whose top buffer stays live, silence for several
 * delays, then one tide_pool_maintain(): it purges the free pages below that top (read
 * with mincore, not through the pool, whose calls maintain here too) and says nothing is
 * due any more (-1), instead of asking for calls every sample period.
 */
/* A burst of n 2 KiB buffers, all freed and the caches flushed; -1 when one was refused. */
static int burst(struct tide_pool *p, void **b, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!(b[i] = tide_alloc(p, 2048)))
			return -1;
	for (i = 0; i < n; i++)
		tide_free(p, b[i]);
	tide_pool_flush_cache(p);
	return 0;
}

static int pinned_top_then_one_call(struct tide_pool *p)
{
	static void *b[4096];
	size_t unreserved;
	long long rss;
	int i, ms;

	for (i = 0; i < 4096; i++)
		if (!(b[i] = tide_alloc(p, 2048)))
			return 2;
	for (i = 0; i < 4096; i++)
		memset(b[i], 1, 2048);
	for (i = 0; i < 4095; i++)
		tide_free(p, b[i]);
	tide_pool_flush_cache(p);
	usleep(4 * 10000);
	ms = tide_pool_maintain(p);
	unreserved = (size_t)((char *)tide_pool_boundary(p) - (char *)tide_pool_base(p));
	rss = mincore_rss(tide_pool_base(p), unreserved);
	printf("top live, one tide_pool_maintain() after the idle time: %d, resident %lld of "
	       "%zu\n",
	       ms, rss, unreserved);
	fflush(NULL);
	if (rss < 0 || (size_t)rss > unreserved / 2)
		return 6;
	if (ms != -1 || tide_pool_maintain(p) != -1)
		return 7;
	tide_free(p, b[4095]);
	return 0;
}

/* In a process at RLIMIT_NPROC (uid 54321, limit 3): fork's child cannot start the thread. */
static int nproc_child(void *arg)
{
	struct tide_pool_config cfg = {.reserve_size = GiB,
				       .shrink_delay_ms = 10,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_BACKGROUND,
				       .memory_limit = TIDE_NO_MEMORY_LIMIT};
	struct rlimit rl = {3, 3};
	struct tide_pool *p;
	pid_t pid;
	int status;

	(void)arg;
	if (setrlimit(RLIMIT_NPROC, &rl) || setgid(54321) || setuid(54321))
		return 77;
	if (tide_pool_create(&cfg, &p))
		return 77;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return 77;
	if (pid == 0) {
		static void *b[4096];
		struct tide_stats st;
		int i;

		if (burst(p, b, 4096))
			_exit(2);
		/* Its callers maintain it now: a bounded poll, 2 s at most. */
		for (i = 0; i < 200; i++) {
			tide_pool_stats(p, &st);
			if (st.unreserved_size == 0)
				break;
			usleep(10000);
		}
		printf("no thread in the fork child: os_failures %" PRIu64
		       ", unreserved %zu after %d polls\n",
		       st.os_failures, st.unreserved_size, i);
		if (st.os_failures < 1 || st.unreserved_size != 0)
			_exit(1);
		/* A burst, then silence for several delays, then the one call tide.h names for
		 * such a child: it gives the burst back (read without calling into the pool). */
		if (burst(p, b, 4096))
			_exit(2);
		usleep(4 * 10000);
		i = tide_pool_maintain(p);
		printf("one tide_pool_maintain() after the idle time: %d, unreserved %zu\n", i,
		       (size_t)((char *)tide_pool_boundary(p) - (char *)tide_pool_base(p)));
		if (tide_pool_boundary(p) != tide_pool_base(p))
			_exit(4);
		i = pinned_top_then_one_call(p);
		_exit(i ? i : user_burst_then_one_call(p));
	}
	status = wait_child(pid, CHILD_LIMIT);
	tide_pool_destroy(p);
	return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

static void thread_not_restarted(void)
{
	int rc;

	if (geteuid() != 0) {
		printf("not root: the RLIMIT_NPROC part skipped\n");
		return;
	}
	rc = run_in_child(nproc_child, NULL);
	CHECKF(rc == 0 || rc == 77,
	       "a fork child that cannot start the thread: %d (1: not counted or not shrunk; "
	       "4: one tide_pool_maintain() after the idle time did not give the burst back; "
	       "6: nor purged below a live top; 7: then said work was still due; "
	       "5: a user's call past the cache did not)",
	       rc);
}

/* --------------------------------------------- a window left open by fork -- */

static struct tcache *frozen;
static pthread_barrier_t frozen_bar;

static void *freezer(void *arg)
{
	void *v[8];

	(void)arg;
	REQUIRE(tide_alloc_bulk(pool, v, 8) == 8);
	REQUIRE(tide_free_bulk(pool, v, 8) == 0); /* now in this thread's cache */
	frozen = cache_lookup(pool);
	pthread_barrier_wait(&frozen_bar); /* the main thread forks */
	pthread_barrier_wait(&frozen_bar); /* and puts the cache back as it was */
	return NULL;
}

static void vanished_bulk_pop(void)
{
	struct tide_pool_config cfg = {.block_size = 2048, .initial_size = 2 << 20};
	struct tide_pool *saved = pool;
	pthread_t t;
	unsigned n;
	size_t i;
	int status;
	pid_t pid;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(pthread_barrier_init(&frozen_bar, NULL, 2) == 0);
	REQUIRE(pthread_create(&t, NULL, freezer, NULL) == 0);
	pthread_barrier_wait(&frozen_bar);
	REQUIRE(frozen != NULL);
	n = cache_count(frozen);
	REQUIRE(n >= 8);
	/* As bulk_pop() leaves it between tagging the top block and storing the count. */
	i = (size_t)((char *)frozen->slots[n - 1] - pool->base) / cfg.block_size;
	atomic_store(&frozen->word.half.busy, 1);
	pool->tags[i] = 1; /* the default user */
	pid = fork();
	if (pid == 0) {
		struct tide_stats st;
		bool ok = child_check("after a vanished bulk allocation");

		tide_pool_stats(pool, &st);
		_exit(ok && st.live_buffers == 1 && st.cached_bytes == 0 ? 0 : 3);
	}
	REQUIRE(pid > 0);
	status = wait_child(pid, CHILD_LIMIT);
	pool->tags[i] = TAG_FREE;
	atomic_store(&frozen->word.half.busy, 0);
	pthread_barrier_wait(&frozen_bar);
	pthread_join(t, NULL);
	pthread_barrier_destroy(&frozen_bar);
	CHECK(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	printf("fork inside another thread's bulk allocation window: child %s\n",
	       status == -1				   ? "hung"
	       : WIFEXITED(status) && !WEXITSTATUS(status) ? "ok"
							   : "failed");
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	pool = saved;
}

int main(void)
{
	atfork_handlers(); /* first: no pool yet in this process */
	signal_inside_fork();
	locked_across_fork();
	fork_in_hook();
	fork_while_hook_runs();
	child_rss_limit();
	if (BACKGROUND)
		thread_not_restarted();
	vanished_bulk_pop();
	forks_under_load();
	if (BACKGROUND)
		fork_background();
	else
		printf("the background part is skipped under ThreadSanitizer\n");
	return test_exit("test_fork");
}
