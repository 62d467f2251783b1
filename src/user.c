/* SPDX-License-Identifier: MIT */
/*
 * user.c - classes of memory users: quotas, the right to grow, ownership.
 *
 * A user is a handle through which a connection, a ring or a worker allocates. Its id is
 * stamped in the tag of every block it holds, so a free through another user is refused
 * (-EPERM) by the same compare that checks every free. A user counts what it holds with
 * atomics (live bytes and buffers, peak, failures): the quota check is one fetch-add, and
 * destroy can refuse while the user still holds buffers.
 *
 * Ids live in a table indexed by id (under the pool lock): 1 is the pool's default user,
 * behind tide_alloc/tide_free, which may grow and keeps no counters of its own.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_USER_ID 1
#define FIRST_USER_ID	2

int user_table_init(struct tide_pool *pool)
{
	struct tide_user *def = &pool->default_user;

	pool->users_cap = 64;
	pool->users = calloc(pool->users_cap, sizeof(*pool->users));
	if (!pool->users)
		return -ENOMEM;
	def->pool = pool;
	def->id = DEFAULT_USER_ID;
	def->flags = TIDE_USER_MAY_GROW;
	def->counted = false;
	strcpy(def->name, "pool");
	pool->users[DEFAULT_USER_ID] = def;
	return 0;
}

void user_table_exit(struct tide_pool *pool)
{
	for (unsigned id = FIRST_USER_ID; id < pool->users_cap; id++)
		free(pool->users[id]);
	free(pool->users);
	pool->users = NULL;
}

void user_table_reset_locked(struct tide_pool *pool)
{
	struct tide_user *def = &pool->default_user;

	for (unsigned id = FIRST_USER_ID; id < pool->users_cap && pool->nusers; id++) {
		if (pool->users[id])
			pool->nusers--;
		free(pool->users[id]);
		pool->users[id] = NULL;
	}
	atomic_store_explicit(&def->live_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&def->live_buffers, 0, memory_order_relaxed);
	atomic_store_explicit(&def->peak_live_bytes, 0, memory_order_relaxed);
	atomic_store_explicit(&def->alloc_failures, 0, memory_order_relaxed);
	atomic_store_explicit(&def->quota_failures, 0, memory_order_relaxed);
	atomic_store_explicit(&def->bad_frees, 0, memory_order_relaxed);
}

bool user_charge_counted(struct tide_user *user, size_t bytes, size_t buffers)
{
	size_t now =
		atomic_fetch_add_explicit(&user->live_bytes, bytes, memory_order_relaxed) + bytes;
	size_t peak;

	if (user->quota && now > user->quota) {
		atomic_fetch_sub_explicit(&user->live_bytes, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(&user->quota_failures, 1, memory_order_relaxed);
		return false;
	}
	atomic_fetch_add_explicit(&user->live_buffers, buffers, memory_order_relaxed);
	peak = atomic_load_explicit(&user->peak_live_bytes, memory_order_relaxed);
	while (now > peak &&
	       !atomic_compare_exchange_weak_explicit(&user->peak_live_bytes, &peak, now,
						      memory_order_relaxed, memory_order_relaxed))
		;
	return true;
}

unsigned user_charge_upto(struct tide_user *user, size_t unit, unsigned n)
{
	size_t held, room;

	if (!user->counted || user_charge_counted(user, unit * n, n))
		return n;
	held = atomic_load_explicit(&user->live_bytes, memory_order_relaxed);
	room = held < user->quota ? (user->quota - held) / unit : 0;
	if (room > n)
		room = n;
	while (room && !user_charge_counted(user, unit * room, room))
		room--;
	return (unsigned)room;
}

/**
 * tide_user_create() - make a class of memory user of @pool.
 * @pool: the pool.
 * @cfg:  name (copied, up to 31 bytes kept; NULL for none), quota in bytes (0: no limit),
 *        flags (TIDE_USER_MAY_GROW: this user's allocations may grow a TIDE_AUTO_GROW pool).
 * @user: where the handle goes.
 *
 * Return: 0; -EINVAL for a NULL argument or an unknown flag; -ENOMEM; -ENOSPC when the
 * pool already has the most users it can tag (32765).
 */
int tide_user_create(struct tide_pool *pool, const struct tide_user_config *cfg,
		     struct tide_user **userp)
{
	struct tide_user *user;
	unsigned id;

	if (!pool || !cfg || !userp || (cfg->flags & ~TIDE_USER_MAY_GROW))
		return -EINVAL;
	user = calloc(1, sizeof(*user));
	if (!user)
		return -ENOMEM;
	user->pool = pool;
	user->flags = cfg->flags;
	user->quota = cfg->quota;
	user->counted = true;
	if (cfg->name)
		snprintf(user->name, sizeof(user->name), "%s", cfg->name);
	if (!call_enter(pool)) {
		free(user);
		return -EAGAIN;
	}
	pthread_mutex_lock(&pool->lock);
	for (id = FIRST_USER_ID; id < pool->users_cap && pool->users[id]; id++)
		;
	if (id >= pool->users_cap) {
		unsigned cap = pool->users_cap * 2;
		struct tide_user **grown;

		if (cap > TAG_OWNER_MAX + 1)
			cap = TAG_OWNER_MAX + 1;
		grown = id < cap ? realloc(pool->users, cap * sizeof(*grown)) : NULL;
		if (!grown) {
			pthread_mutex_unlock(&pool->lock);
			call_leave();
			free(user);
			return id < cap ? -ENOMEM : -ENOSPC;
		}
		memset(grown + pool->users_cap, 0, (cap - pool->users_cap) * sizeof(*grown));
		pool->users = grown;
		pool->users_cap = cap;
	}
	user->id = (uint16_t)id;
	pool->users[id] = user;
	pool->nusers++;
	pthread_mutex_unlock(&pool->lock);
	call_leave();
	*userp = user;
	return 0;
}

/**
 * tide_user_destroy() - remove a user.
 * @user: the user.
 *
 * Return: 0; -EINVAL for NULL; -EBUSY while it holds buffers (nothing changes); -EAGAIN
 * from a signal handler that interrupted a call into the pool.
 */
int tide_user_destroy(struct tide_user *user)
{
	struct tide_pool *pool;
	int err = 0;

	if (!user || !user->counted)
		return -EINVAL;
	pool = user->pool;
	if (!call_enter(pool))
		return -EAGAIN;
	pthread_mutex_lock(&pool->lock);
	if (atomic_load_explicit(&user->live_buffers, memory_order_relaxed)) {
		err = -EBUSY;
	} else {
		pool->users[user->id] = NULL;
		pool->nusers--;
	}
	pthread_mutex_unlock(&pool->lock);
	call_leave();
	if (!err)
		free(user);
	return err;
}

/**
 * tide_user_alloc() - a buffer charged to @user.
 * @user: the user.
 * @size: bytes wanted, as tide_alloc().
 *
 * The pool grows only if the pool has TIDE_AUTO_GROW and the user TIDE_USER_MAY_GROW;
 * otherwise only what is already unreserved is taken.
 *
 * Return: the buffer; NULL for size 0, a NULL user, no space, or the quota reached
 * (counted in the user's and the pool's alloc_failures), or inside a signal handler that
 * interrupted a call into the pool (counted in the pool's reentries).
 */
void *tide_user_alloc(struct tide_user *user, size_t size)
{
	void *buf;

	if (!user || !call_enter(user->pool))
		return NULL;
	buf = pool_alloc(user->pool, user, size);
	call_leave();
	fork_todo_check(user->pool); /* a fork child's re-lock or lost thread */
	return buf;
}

/**
 * tide_user_free() - give back one of @user's buffers.
 * @user: the user.
 * @buf:  the buffer, or NULL.
 *
 * Return: 0; -EINVAL when @buf is not a live buffer of the pool; -EPERM when another user
 * (or the pool's default user) holds it: the buffer is untouched; -EAGAIN inside a signal
 * handler that interrupted a call into the pool.
 */
int tide_user_free(struct tide_user *user, void *buf)
{
	int err;

	if (!user)
		return buf ? -EINVAL : 0;
	if (!call_enter(user->pool))
		return -EAGAIN;
	err = pool_free(user->pool, user, buf);
	call_leave();
	fork_todo_check(user->pool);
	return err;
}

/**
 * tide_user_alloc_bulk() - up to @n one-block buffers charged to @user.
 * @user: the user.
 * @bufs: room for @n pointers.
 * @n:    how many.
 *
 * Return: how many were taken, fewer when the quota or the space runs out (0 inside a
 * signal handler that interrupted a call into the pool).
 */
unsigned tide_user_alloc_bulk(struct tide_user *user, void **bufs, unsigned n)
{
	unsigned got;

	if (!user || !call_enter(user->pool))
		return 0;
	got = pool_alloc_bulk(user->pool, user, bufs, n);
	call_leave();
	fork_todo_check(user->pool);
	return got;
}

/**
 * tide_user_free_bulk() - give back @n of @user's buffers.
 * @user: the user.
 * @bufs: the buffers; NULL entries are skipped.
 * @n:    how many.
 *
 * Return: 0, or the first refusal (as tide_user_free(): -EINVAL, -EPERM); the ones before
 * it are freed. -EAGAIN (none freed) from a signal handler that interrupted a call into
 * the pool.
 */
int tide_user_free_bulk(struct tide_user *user, void *const *bufs, unsigned n)
{
	int err;

	if (!user)
		return -EINVAL;
	if (!call_enter(user->pool))
		return -EAGAIN;
	err = pool_free_bulk(user->pool, user, bufs, n);
	call_leave();
	fork_todo_check(user->pool);
	return err;
}

/**
 * tide_user_stats() - @user's counters.
 * @user: the user.
 * @st:   filled in; zeroed for a NULL user.
 */
void tide_user_stats(const struct tide_user *user, struct tide_user_stats *st)
{
	if (!st)
		return;
	memset(st, 0, sizeof(*st));
	if (!user)
		return;
	memcpy(st->name, user->name, sizeof(st->name));
	st->quota = user->quota;
	if (!user->counted) {
		struct tide_stats ps;

		tide_pool_stats(user->pool, &ps);
		st->live_bytes = ps.live_bytes;
		st->live_buffers = ps.live_buffers;
		st->peak_live_bytes = ps.peak_live_bytes;
		st->alloc_failures = ps.alloc_failures;
		st->bad_frees = ps.bad_frees;
		return;
	}
	st->live_bytes = atomic_load_explicit(&user->live_bytes, memory_order_relaxed);
	st->live_buffers = atomic_load_explicit(&user->live_buffers, memory_order_relaxed);
	st->peak_live_bytes = atomic_load_explicit(&user->peak_live_bytes, memory_order_relaxed);
	st->alloc_failures = atomic_load_explicit(&user->alloc_failures, memory_order_relaxed);
	st->quota_failures = atomic_load_explicit(&user->quota_failures, memory_order_relaxed);
	st->bad_frees = atomic_load_explicit(&user->bad_frees, memory_order_relaxed);
}

/** tide_user_pool() - the pool @user belongs to; NULL for NULL. */
struct tide_pool *tide_user_pool(const struct tide_user *user)
{
	return user ? user->pool : NULL;
}
