/* SPDX-License-Identifier: MIT */
/*
 * fork.c - pools across fork(): a registry of live pools and the pthread_atfork handlers.
 *
 * fork() copies one thread. Any lock another thread held at that instant would stay held
 * in the child forever, so around fork the forking thread takes every lock the pool code
 * has, in one fixed order, and the parent releases them after (jemalloc, mimalloc and
 * tcmalloc do the same). Order, the same as everywhere else in the library:
 *
 *   registry (this file) -> every pool's convert_lock -> cache registry (cache.c)
 *     -> every pool's lock -> every pool's thread_lock
 *
 * All convert_locks come before any pool lock because a hook runs with its pool's
 * convert_lock held and may allocate from another pool (its lock). A hook running on the
 * forking thread itself keeps its convert_lock: this thread holds it, and so does the
 * child's copy of it.
 *
 * In the child, holding every lock, nothing is half-way through anything but what the
 * vanished threads were doing outside the locks: their caches (and the block each may
 * have been pushing or popping, or a bulk allocation not yet tagged). The child frees
 * those caches and gives their blocks back, and gives back every block that is claimed
 * but neither tagged nor cached (it was in flight in a thread that does not exist here).
 * Then it releases the locks: the thread that took them is the one that goes on in the
 * child (the pool's two locks are made anew, see child()). The maintenance thread's
 * condition may count the vanished thread as a waiter, so it is made anew, and the thread
 * is started again (when it cannot be, see maintain_fallback()). Memory locks are not
 * inherited: TIDE_LOCKED pools are locked again at the child's first use (relock_child()).
 *
 * From prepare to parent/child the forking thread holds every lock, so a call into the
 * pool on that thread - a signal handler that interrupts fork, an atfork handler that runs
 * inside the window - would wait for itself: the window counts as a call into the pool
 * (the re-entry guard is set) and such calls are refused (NULL or -EAGAIN, counted in
 * reentries). The handlers are registered at load (fork_load()), so the program's own
 * atfork handlers, registered later, run outside the window and may use the pool.
 *
 * Children made without fork()'s handlers - the raw clone system call, or vfork() and
 * then anything but exec - are not supported (as with every malloc): a lock another
 * thread held stays held (a priority-inheriting one makes the C library abort: its owner
 * is a thread of another process). posix_spawn() and vfork()+exec are fine.
 */
#include "internal.h"

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct tide_pool *pools;	   /* live pools, newest first */
static unsigned char guard_before; /* the forking thread's re-entry guard; under registry */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
	unsigned char guard = tide_in_call;

	call_guard_set(CALL_IN); /* first: a handler interrupting fork from here on is refused */
	pthread_mutex_lock(&registry);
	guard_before = guard;
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		if (!pool_hook_running_here(p))
			pthread_mutex_lock(&p->convert_lock);
	cache_fork_prepare();
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_lock(&p->lock);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_lock(&p->thread_lock);
}

/* Release the registry and give the forking thread its guard back: calls are open again. */
static void leave_fork(void)
{
	unsigned char guard = guard_before;

	pthread_mutex_unlock(&registry);
	call_guard_set(guard);
}

static void parent(void)
{
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_unlock(&p->thread_lock);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_unlock(&p->lock);
	cache_fork_parent();
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		if (!pool_hook_running_here(p))
			pthread_mutex_unlock(&p->convert_lock);
	leave_fork();
}

/*
 * fork(2): memory locks are not inherited. A TIDE_LOCKED pool's unreserved portion is
 * locked again, lazily: at the child's first slow-path call into the pool (a grow, a shrink,
 * a refill or spill of its cache, tide_pool_stats, tide_pool_flush_cache), not in the atfork
 * handler. mlock breaks copy-on-write, so locking in the handler would copy the whole
 * portion before a child that only execs could run (512 MiB and a second, or an OOM kill
 * under a cgroup); fork()+exec costs what it costs with a plain pool. A refusal
 * (RLIMIT_MEMLOCK, no memory) is counted in os_failures; the pool stays usable, unpinned.
 */
static void relock_child(struct tide_pool *p)
{
	size_t len = pool_unreserved(p);

	if ((p->flags & TIDE_LOCKED) && len && os_lock(p->base, len))
		atomic_fetch_add_explicit(&p->os_failures, 1, memory_order_relaxed);
}

void fork_relock_locked(struct tide_pool *pool)
{
	if (atomic_fetch_and(&pool->fork_todo, ~FORK_RELOCK) & FORK_RELOCK)
		relock_child(pool);
}

void fork_catch_up(struct tide_pool *pool)
{
	unsigned todo = atomic_load_explicit(&pool->fork_todo, memory_order_acquire);

	/* A conversion in progress (maybe this thread's hook): at a later call. */
	if ((todo & FORK_RELOCK) && !pthread_mutex_trylock(&pool->convert_lock)) {
		fork_relock_locked(pool);
		pthread_mutex_unlock(&pool->convert_lock);
	}
	if (todo & FORK_THREAD)
		maintain_fallback(pool);
}

/*
 * The pool's lock and convert_lock may be priority-inheriting (pool_locks_init): such a
 * mutex names its owner by thread id, and the child's thread has a new one, so the kernel
 * refuses the unlock and the mutex would stay locked. Every lock is held by this thread
 * and nobody else exists: each is unlocked (for the record of whoever watches, as
 * ThreadSanitizer does) and made anew, and a convert_lock that a hook running here holds
 * is taken again.
 */
static void child(void)
{
	for (struct tide_pool *p = pools; p; p = p->fork_next) {
		/* First: the blocks taken back below would wake a thread that is gone, with its
		 * thread_lock held here. */
		maintain_fork_child_locked(p);
		cache_fork_child_locked(p);
		/* A hook on this thread may sit inside a bulk allocation not yet tagged. */
		if (!pool_hook_running_here(p))
			pool_release_lost_locked(p);
		if (p->flags & TIDE_LOCKED)
			atomic_fetch_or(&p->fork_todo, FORK_RELOCK);
	}
	for (struct tide_pool *p = pools; p; p = p->fork_next) {
		pthread_mutex_unlock(&p->thread_lock);
		pthread_mutex_unlock(&p->lock);
		pthread_mutex_unlock(&p->convert_lock);
		pool_locks_init(p);
	}
	cache_fork_parent();
	leave_fork();
	/* Alone still (no maintenance thread yet): the hook's lock after the others, in order. */
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		if (pool_hook_running_here(p))
			pthread_mutex_lock(&p->convert_lock);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		maintain_fork_child(p);
}

static void install_handlers(void)
{
	pthread_atfork(prepare, parent, child); /* fails only without memory: then no handlers */
}

/*
 * At load, not at the first pool: glibc runs prepare handlers in the reverse order of
 * registration and parent/child handlers in order, so handlers the program registers
 * later (its own, which may use a pool) run before this prepare takes the locks and after
 * this parent/child releases them. Handlers registered earlier (the library loaded late
 * by dlopen) run while the locks are held: their calls are refused (the guard, above).
 */
__attribute__((constructor)) static void fork_load(void)
{
	pthread_once(&handlers_once, install_handlers);
}

void fork_register(struct tide_pool *pool)
{
	pthread_once(&handlers_once, install_handlers);
	pthread_mutex_lock(&registry);
	pool->fork_prev = NULL;
	pool->fork_next = pools;
	if (pools)
		pools->fork_prev = pool;
	pools = pool;
	pthread_mutex_unlock(&registry);
}

void fork_unregister(struct tide_pool *pool)
{
	pthread_mutex_lock(&registry);
	if (pool->fork_prev)
		pool->fork_prev->fork_next = pool->fork_next;
	else
		pools = pool->fork_next;
	if (pool->fork_next)
		pool->fork_next->fork_prev = pool->fork_prev;
	pthread_mutex_unlock(&registry);
}
