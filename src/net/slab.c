/* SPDX-License-Identifier: MIT */
/*
 * slab.c - where a worker's connection objects live: slabs of SLAB_SIZE bytes, aligned to
 * their size, cut into 64-byte slots. Engine side.
 *
 * Why not malloc: an idle connection costs its object and nothing else, so the object is the
 * idle cost. From malloc a 64-byte object takes an 80-byte chunk (its header and 16-byte
 * rounding) in the arena of whichever thread allocates; here it takes 64 bytes, and the slab's
 * header gives the connection's worker (conn_w(): the address rounded down to the slab), so
 * the object needs no worker pointer either. A relayed client costs two of them.
 *
 * A slab hands out its never-used slots in address order (so the pages it has not reached are
 * not resident) and reuses freed ones first (a list through their first word). The worker
 * keeps the slabs that have a free slot on a list; a slab that empties is kept as the one
 * spare, or unmapped if there is one already, so that memory a burst of connections took goes
 * back to the system once they are gone, without mapping and unmapping at every connection
 * around a slab's boundary. Everything runs on the worker's own thread.
 *
 * Under AddressSanitizer a free slot is poisoned, so a use after free is still reported.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "net_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define TIDE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TIDE_ASAN 1
#endif
#endif
#ifdef TIDE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define SLOT	   sizeof(struct tide_conn)
#define SLAB_SLOTS ((SLAB_SIZE - sizeof(struct slab)) / SLOT)
#define SLOT0(s)   ((char *)(s) + sizeof(struct slab))
#define SLAB_OF(c) ((struct slab *)((uintptr_t)(c) & ~(uintptr_t)(SLAB_SIZE - 1)))

_Static_assert(sizeof(struct tide_conn) == 64, "an idle connection costs 64 bytes");
_Static_assert(sizeof(struct slab) % SLOT == 0, "slots stay aligned to their size");
_Static_assert((SLOT & (SLOT - 1)) == 0, "a slot's low bits are free for the operation (UD)");

static void avail_add(struct worker *w, struct slab *s)
{
	s->prev = NULL;
	s->next = w->slabs;
	if (w->slabs)
		w->slabs->prev = s;
	w->slabs = s;
	s->listed = true;
}

static void avail_del(struct worker *w, struct slab *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		w->slabs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	s->listed = false;
}

/* A fresh slab of SLAB_SIZE aligned to SLAB_SIZE: map twice the size, unmap the edges. */
static struct slab *slab_map(struct worker *w)
{
	char *p = mmap(NULL, 2 * SLAB_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);
	uintptr_t at;
	struct slab *s;

	if (p == MAP_FAILED)
		return NULL;
	at = ((uintptr_t)p + SLAB_SIZE - 1) & ~(uintptr_t)(SLAB_SIZE - 1);
	if (at > (uintptr_t)p)
		munmap(p, at - (uintptr_t)p);
	if ((char *)at + SLAB_SIZE < p + 2 * SLAB_SIZE)
		munmap((char *)at + SLAB_SIZE,
		       (size_t)(p + 2 * SLAB_SIZE - ((char *)at + SLAB_SIZE)));
	s = (struct slab *)at;
	s->w = w; /* the rest is zero, as mapped */
	POISON(SLOT0(s), SLAB_SLOTS * SLOT);
	return s;
}

static void slab_unmap(struct slab *s)
{
	UNPOISON(SLOT0(s), SLAB_SLOTS * SLOT);
	munmap(s, SLAB_SIZE);
}

struct tide_conn *slab_alloc(struct worker *w)
{
	struct slab *s = w->slabs;
	struct tide_conn *c;

	if (!s && (s = w->slab_spare))
		w->slab_spare = NULL;
	else if (!s && !(s = slab_map(w)))
		return NULL;
	if (!s->listed)
		avail_add(w, s);
	if (s->free) {
		c = s->free;
		UNPOISON(c, SLOT);
		memcpy(&s->free, c, sizeof(s->free)); /* the next free slot */
	} else {
		c = (struct tide_conn *)(SLOT0(s) + s->fresh++ * SLOT);
		UNPOISON(c, SLOT);
	}
	memset(c, 0, SLOT);
	if (!s->free && s->fresh == SLAB_SLOTS)
		avail_del(w, s); /* full */
	s->used++;
	return c;
}

void slab_free(struct tide_conn *c)
{
	struct slab *s = SLAB_OF(c);
	struct worker *w = s->w;

	memcpy(c, &s->free, sizeof(s->free));
	s->free = c;
	POISON(c, SLOT);
	if (!s->listed)
		avail_add(w, s);
	if (--s->used)
		return;
	avail_del(w, s); /* empty: the spare, or back to the system */
	if (!w->slab_spare)
		w->slab_spare = s;
	else
		slab_unmap(s);
}

void slabs_free(struct worker *w)
{
	while (w->slabs) { /* none once every connection is freed; this is teardown */
		struct slab *s = w->slabs;

		avail_del(w, s);
		slab_unmap(s);
	}
	if (w->slab_spare)
		slab_unmap(w->slab_spare);
	w->slab_spare = NULL;
}
