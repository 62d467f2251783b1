/* SPDX-License-Identifier: MIT */
/*
 * ring.c - a worker's provided-buffer ring (group BGID), fed from the pool through the
 * worker's own tide user, and the reference counts of the buffers it hands out.
 *
 * Engine side. Receives pick buffers from the ring; conn.c hands what they filled to the
 * application, and the block comes back here (buf_release, from buf.c) when its last
 * reference goes. A buffer done with goes back into the ring while the ring is below its
 * target, else to the pool (in batches of FREE_BATCH).
 *
 * Invariants:
 *  - A buffer is in the ring (the kernel's), held (by the application, a send queue), or in
 *    the pool; the first two at once only with incremental rings.
 *    in_ring counts the first; ring slot i holds buffer id i, so a completion's buffer id is
 *    the ring position of its first buffer and a bundle's buffers are the next positions.
 *    The ring never holds more than half its slots (cap), so a slot is never refilled before
 *    its completion is seen, even if completions came out of order.
 *  - A block's reference count (buf.c) is the kernel's share (while the buffer is in the
 *    ring) plus one per holder; the buffer is released when it falls to zero.
 *
 * Refill hysteresis: sent buffers refill the ring up to its target; the pool tops it up only
 * when it falls below half the target (or a receive waits), so in steady traffic a buffer
 * cycles ring -> application or send queue -> ring without touching the pool.
 *
 * Elasticity: a receive that finds the ring empty (-ENOBUFS) doubles the ring's target and
 * waits; the refill after the completion batch allocates from the pool (which grows). A
 * second without -ENOBUFS decays the target back toward ring_min, returned buffers then go
 * to the pool, and a ring that stayed idle for a second hands its surplus back, so the pool
 * can shrink.
 *
 * Incremental buffer rings (Linux 6.12+, probed at registration): a receive takes only the
 * bytes it needs from the head buffer, so a small message does not hold a whole block. A
 * buffer is then shared by several segs (of any connections); boff[] says how far the kernel
 * has filled each slot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "net_internal.h"

/* struct io_uring_buf_reg as the kernel has it (liburing 2.3 calls the flags field pad). */
struct buf_reg_abi {
	uint64_t ring_addr;
	uint32_t ring_entries;
	uint16_t bgid;
	uint16_t flags;
	uint64_t resv[3];
};

void frees_flush(struct worker *w)
{
	int rc;

	if (!w->nfree)
		return;
	rc = tide_user_free_bulk(w->user, w->frees, w->nfree);
	if (rc)
		fprintf(stderr, "tide agent: worker %u: freeing %u buffers: %s\n", w->index,
			w->nfree, strerror(-rc));
	w->nfree = 0;
}

static void ring_add(struct worker *w, char *buf)
{
	unsigned pos = w->br_tail & w->mask;

	buf_init(w, buf, 1); /* the kernel's share */
	w->bid_addr[pos] = buf;
	w->boff[pos] = 0;
	io_uring_buf_ring_add(w->br, buf, (unsigned)w->bs, (unsigned short)pos, (int)w->mask,
			      (int)(w->br_tail - w->br_pub));
	w->br_tail++;
	w->in_ring++;
}

void ring_publish(struct worker *w)
{
	if (w->br_tail != w->br_pub) {
		io_uring_buf_ring_advance(w->br, (int)(w->br_tail - w->br_pub));
		w->br_pub = w->br_tail;
	}
	STAT_SET(w, in_ring, w->in_ring);
}

/* A buffer is done with: into the ring while it is below target, else to the pool. */
void buf_release(struct worker *w, char *buf)
{
	if (w->br_registered && w->in_ring < w->target) {
		ring_add(w, buf);
		return;
	}
	w->frees[w->nfree++] = buf;
	if (w->nfree == FREE_BATCH)
		frees_flush(w);
}

/* Top the ring up to its target from the pool, growing the pool when it has nothing free. */
void ring_refill(struct worker *w)
{
	void *bufs[256];
	unsigned want, n, got, added = 0;

	if (!w->br_registered)
		return;
	while (w->in_ring < w->target) {
		want = w->target - w->in_ring;
		n = want < 256 ? want : 256;
		got = tide_user_alloc_bulk(w->user, bufs, n);
		if (got < n) {
			struct tide_pool *pool = w->agent->pool;

			if (tide_pool_grow(pool, (size_t)(n - got) * w->bs) == 0) {
				STAT_ADD(w, forced_grows, 1);
				got += tide_user_alloc_bulk(w->user, bufs + got, n - got);
			}
		}
		for (unsigned i = 0; i < got; i++)
			ring_add(w, bufs[i]);
		added += got;
		if (got < n)
			break;
	}
	if (added) {
		STAT_ADD(w, refills, 1);
		STAT_ADD(w, refill_buffers, added);
	}
	ring_publish(w);
}

/*
 * Drop the kernel's share of the buffers it still owns, by ring position (it consumes in
 * ring order); the ring must be unregistered. A partly filled buffer (incremental rings)
 * stays until its segs are sent.
 */
static void ring_take_all(struct worker *w)
{
	uint32_t first = w->br_tail - w->in_ring;

	w->in_ring = 0;
	for (uint32_t pos = first; pos != w->br_tail; pos++)
		buf_unref(w->agent, w->bid_addr[pos & w->mask]);
	frees_flush(w);
}

static int buf_ring_register(struct worker *w)
{
	struct buf_reg_abi reg;
	int rc = -EINVAL;

	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)w->br;
	reg.ring_entries = w->entries;
	reg.bgid = BGID;
	if (w->inc) {
		reg.flags = IOU_PBUF_RING_INC;
		rc = io_uring_register_buf_ring(&w->ring, (struct io_uring_buf_reg *)&reg, 0);
		if (rc != -EINVAL)
			return rc;
		w->inc = false; /* a kernel before 6.12: whole buffers per receive */
		reg.flags = 0;
	}
	return io_uring_register_buf_ring(&w->ring, (struct io_uring_buf_reg *)&reg, 0);
}

/*
 * Give an idle ring's buffers back to the pool: unregister the group, free what it held,
 * register it again empty and top it up to the (decayed) target. Only with DEFER_TASKRUN,
 * where no receive can take a buffer between our last completion and the unregister; a
 * receive that finds the group missing meanwhile gets -ENOBUFS, which is handled anyway.
 */
static void ring_reset(struct worker *w)
{
	if (!w->defer || io_uring_cq_ready(&w->ring))
		return;
	ring_publish(w);
	if (io_uring_unregister_buf_ring(&w->ring, BGID))
		return;
	w->br_registered = false;
	ring_take_all(w);
	io_uring_buf_ring_init(w->br);
	w->br_tail = w->br_pub = 0;
	if (buf_ring_register(w)) {
		fprintf(stderr, "tide agent: worker %u: re-registering its buffer ring failed\n",
			w->index);
		return;
	}
	w->br_registered = true;
	tide_pool_flush_cache(w->agent->pool);
	STAT_ADD(w, ring_resets, 1);
	ring_refill(w);
}

/* Allocate the ring and its slot tables and register it; the ring starts empty. */
int ring_setup(struct worker *w)
{
	struct tide_agent *a = w->agent;
	int rc;

	w->entries = a->cfg.ring_entries;
	w->mask = w->entries - 1;
	w->cap = w->entries / 2;
	w->target = a->cfg.ring_min;
	w->br_bytes = (size_t)w->entries * sizeof(struct io_uring_buf);
	w->br = mmap(NULL, w->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->br == MAP_FAILED) {
		w->br = NULL;
		return -ENOMEM;
	}
	w->bid_addr = calloc(w->entries, sizeof(*w->bid_addr));
	w->boff = calloc(w->entries, sizeof(*w->boff));
	if (!w->bid_addr || !w->boff)
		return -ENOMEM;
	io_uring_buf_ring_init(w->br);
	rc = buf_ring_register(w);
	if (rc)
		return rc == -EINVAL ? -EOPNOTSUPP : rc;
	w->br_registered = true;
	return 0;
}

/* Unregister the ring and hand what it still holds back to the pool. */
void ring_drop(struct worker *w)
{
	if (w->br_registered) {
		io_uring_unregister_buf_ring(&w->ring, BGID);
		w->br_registered = false;
	}
	if (w->user)
		ring_take_all(w);
}

/* Free the ring's memory (after the io_uring is gone). */
void ring_free(struct worker *w)
{
	free(w->bid_addr);
	w->bid_addr = NULL;
	free(w->boff);
	w->boff = NULL;
	if (w->br)
		munmap(w->br, w->br_bytes);
	w->br = NULL;
	STAT_SET(w, in_ring, 0);
}

/*
 * Most bytes one bundle receive may ask for (its per-completion length): less than the ring
 * holds at its low mark (the loop refills below half the target), or 0 (no length: the
 * kernel takes none). The kernel ends a multishot bundle receive whose pick of buffers
 * reached the ring's tail ("no more immediate buffers") even when it filled only a few bytes
 * of the first one, so asking for the whole ring re-armed the receive after every small
 * message: a new submission, receive attempt and poll arm each.
 */
uint32_t ring_recv_cap(const struct worker *w)
{
	size_t low = w->target / 2 > 1 ? (size_t)(w->target / 2 - 1) * w->bs : w->bs;

	return w->recv_len && low < w->recv_len ? (uint32_t)low : w->recv_len;
}

/* A receive found the ring empty: double the target, up to half the slots. */
void ring_starved(struct worker *w)
{
	STAT_ADD(w, enobufs, 1);
	w->last_enobufs = w->now;
	if (w->target < w->cap)
		w->target = w->target * 2 < w->cap ? w->target * 2 : w->cap;
}

/*
 * On the tick: a second without -ENOBUFS takes a quarter off the target (down to ring_min);
 * a second without a receive resets a ring that holds well over its target, or else flushes
 * the pool's thread cache.
 */
void ring_decay(struct worker *w)
{
	struct tide_agent *a = w->agent;

	if (w->now - w->last_enobufs >= 1000 && w->target > a->cfg.ring_min) {
		unsigned t = w->target - w->target / 4;

		w->target = t > a->cfg.ring_min ? t : a->cfg.ring_min;
	}
	if (w->now - w->last_consume >= 1000 && w->in_ring > w->target + w->target / 2)
		ring_reset(w);
	else if (w->now - w->last_consume >= 1000)
		tide_pool_flush_cache(a->pool);
	STAT_SET(w, target, w->target);
}
