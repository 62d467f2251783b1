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
 * Then it releases the locks as the parent does: the thread that took them is the one
 * that goes on in the child. The maintenance thread's condition may count the vanished
 * thread as a waiter, so it is made anew, and the thread is started again.
 */
#include "internal.h"

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static struct tide_pool *pools; /* live pools, newest first */
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void prepare(void)
{
	pthread_mutex_lock(&registry);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		if (!pool_hook_running_here(p))
			pthread_mutex_lock(&p->convert_lock);
	cache_fork_prepare();
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_lock(&p->lock);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_lock(&p->thread_lock);
}

static void unlock_all(void)
{
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_unlock(&p->thread_lock);
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		pthread_mutex_unlock(&p->lock);
	cache_fork_parent();
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		if (!pool_hook_running_here(p))
			pthread_mutex_unlock(&p->convert_lock);
	pthread_mutex_unlock(&registry);
}

static void parent(void)
{
	unlock_all();
}

static void child(void)
{
	for (struct tide_pool *p = pools; p; p = p->fork_next) {
		cache_fork_child_locked(p);
		/* A hook on this thread may sit inside a bulk allocation not yet tagged. */
		if (!pool_hook_running_here(p))
			pool_release_lost_locked(p);
		maintain_fork_child_locked(p);
	}
	unlock_all();
	for (struct tide_pool *p = pools; p; p = p->fork_next)
		maintain_fork_child(p);
}

static void install_handlers(void)
{
	pthread_atfork(prepare, parent, child); /* fails only without memory: then no handlers */
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
