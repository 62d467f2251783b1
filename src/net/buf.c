/* SPDX-License-Identifier: MIT */
/*
 * buf.c - the references to pool blocks that receives hand out, and the public buffer calls
 * (tide_buf_get, tide_buf_put, tide_buf_alloc). Engine side.
 *
 * Every block the agent took from the pool has a reference count and an owner (the worker
 * whose tide user it is charged to), in two arrays indexed by block over the pool's whole
 * range (the range never moves, so an index stays valid while the pool grows). A block in
 * the ring holds the kernel's share (one); each piece of it handed to an application, queued
 * for sending or held by the application holds one more. The application may hold and send
 * blocks on any worker, or drop them from any thread, so the counts are atomic.
 *
 * When the last reference goes, the block goes back where it came from: on its owner's
 * thread into the owner's ring (or a batch for the pool, ring.c); on any other thread
 * straight to the pool through the owner's user (tide_user_free is thread-safe). So the
 * pool's quota of a worker's user bounds everything charged to that worker, whoever holds it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net_internal.h"

_Thread_local struct worker *tls_worker;

char *buf_block(const struct tide_agent *a, const void *p)
{
	size_t off;

	if (!a || (const char *)p < a->base)
		return NULL;
	off = (size_t)((const char *)p - a->base);
	if (off / a->bs >= a->nblocks)
		return NULL;
	return a->base + off / a->bs * a->bs;
}

static size_t idx(const struct tide_agent *a, const char *blk)
{
	return (size_t)(blk - a->base) / a->bs;
}

void buf_init(struct worker *w, char *blk, uint32_t refs)
{
	struct tide_agent *a = w->agent;
	size_t i = idx(a, blk);

	a->owner[i] = (uint16_t)w->index;
	atomic_store_explicit(&a->refs[i], refs, memory_order_relaxed);
}

void buf_ref(struct tide_agent *a, char *blk)
{
	atomic_fetch_add_explicit(&a->refs[idx(a, blk)], 1, memory_order_relaxed);
}

void buf_unref(struct tide_agent *a, char *blk)
{
	size_t i = idx(a, blk);
	struct worker *owner;
	int rc;

	if (atomic_fetch_sub_explicit(&a->refs[i], 1, memory_order_acq_rel) != 1)
		return;
	owner = &a->w[a->owner[i]];
	if (tls_worker == owner) {
		buf_release(owner, blk);
		return;
	}
	rc = tide_user_free(owner->user, blk);
	if (rc)
		fprintf(stderr, "tide agent: freeing a buffer of worker %u: %s\n", owner->index,
			strerror(-rc));
}

/* A live agent buffer holding p (a count above zero), or NULL. */
static char *live_block(struct tide_agent *a, const void *p)
{
	char *blk = buf_block(a, p);

	if (!blk || !atomic_load_explicit(&a->refs[idx(a, blk)], memory_order_relaxed))
		return NULL;
	return blk;
}

/**
 * tide_buf_get() - take one more reference to the pool buffer holding @data.
 * @a:    the agent the buffer came from.
 * @data: any byte of the buffer (a struct tide_buf's data, for instance).
 *
 * For sending the same bytes to several connections: one reference per tide_conn_send().
 *
 * Return: 0; -EINVAL @data is not in a buffer the agent handed out.
 */
int tide_buf_get(struct tide_agent *a, const void *data)
{
	char *blk = live_block(a, data);

	if (!blk)
		return -EINVAL;
	buf_ref(a, blk);
	return 0;
}

/**
 * tide_buf_put() - drop one reference to the pool buffer holding @data; the last one gives
 * the buffer back (to its worker's ring, or the pool). Any thread may call it.
 * @a:    the agent the buffer came from.
 * @data: any byte of the buffer.
 *
 * Return: 0; -EINVAL @data is not in a buffer the agent handed out.
 */
int tide_buf_put(struct tide_agent *a, const void *data)
{
	char *blk = live_block(a, data);

	if (!blk)
		return -EINVAL;
	buf_unref(a, blk);
	return 0;
}

/**
 * tide_buf_alloc() - a pool buffer for the application to fill and send, charged to the
 * worker's tide user (so its quota counts it).
 * @tw:  the worker (any thread may call).
 * @len: the bytes wanted, 1 up to the pool's block size.
 * @b:   gets the buffer's start and @len, with one reference.
 *
 * Return: 0; -EINVAL a NULL argument or a bad @len; -ENOSPC the worker's quota or the
 * pool's max_size is reached.
 */
int tide_buf_alloc(struct tide_worker *tw, size_t len, struct tide_buf *b)
{
	struct worker *w = W(tw);
	char *blk;

	if (!w || !b || !len || len > w->bs)
		return -EINVAL;
	blk = tide_user_alloc(w->user, w->bs);
	if (!blk)
		return -ENOSPC;
	buf_init(w, blk, 1);
	b->data = blk;
	b->len = (uint32_t)len;
	return 0;
}
