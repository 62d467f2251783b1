/* SPDX-License-Identifier: MIT */
/*
 * pool_helpers.h - what the pool tests share: a small test pool, a snapshot of the pool's
 * visible state to show "exactly as before", and a recording conversion hook.
 *
 * The recording hook keeps one flag per grow_unit of the reservation: set by
 * TO_UNRESERVED, cleared by TO_RESERVED. The network side sees exactly what the hook was
 * told, so after every operation the registered units must be exactly the unreserved
 * portion: a conversion rolled back after its hook ran must have told the hook so. It also
 * checks the order the contract gives: TO_UNRESERVED sees a committed (writable) range
 * that is not yet below the published boundary; TO_RESERVED sees a range still mapped.
 */
#ifndef TIDE_TEST_POOL_HELPERS_H
#define TIDE_TEST_POOL_HELPERS_H

#include "internal.h"
#include "helpers.h"

#define TP_BLOCK   (2 * KiB)
#define TP_UNIT	   (64 * KiB)
#define TP_RESERVE (64 * MiB)

/* A small pool: 2 KiB blocks, 64 KiB grow unit, 64 MiB reserved, max as given (0: all). */
static inline struct tide_pool *tp_create(unsigned flags, size_t initial, size_t max)
{
	struct tide_pool_config cfg = {
		.block_size = TP_BLOCK,
		.reserve_size = TP_RESERVE,
		.initial_size = initial,
		.max_size = max,
		.grow_unit = TP_UNIT,
		.flags = flags,
	};
	struct tide_pool *pool = NULL;
	int rc = tide_pool_create(&cfg, &pool);

	if (rc) {
		fprintf(stderr, "tp_create(flags %#x, initial %zu, max %zu): %d\n", flags, initial,
			max, rc);
		exit(1);
	}
	return pool;
}

/* The visible state of a pool; what a refused call must leave unchanged. */
struct snap {
	struct tide_stats st;
	void *boundary;
};

static inline struct snap tp_snap(struct tide_pool *pool)
{
	struct snap s;

	memset(&s, 0, sizeof(s));
	tide_pool_stats(pool, &s.st);
	s.boundary = tide_pool_boundary(pool);
	return s;
}

/*
 * Compare two snapshots field by field, printing each difference; the counters named in
 * "allowed" (a comma list: "bad_frees,vetoes") may differ. True when nothing else does.
 */
static inline bool tp_same(const struct snap *a, const struct snap *b, const char *allowed,
			   const char *where)
{
	bool same = true;

#define TP_FIELD(f)                                                                                \
	do {                                                                                       \
		if ((uint64_t)a->st.f != (uint64_t)b->st.f && !strstr(allowed, #f)) {              \
			fprintf(stderr, "%s: %s changed: %llu -> %llu\n", where, #f,               \
				(unsigned long long)a->st.f, (unsigned long long)b->st.f);         \
			same = false;                                                              \
		}                                                                                  \
	} while (0)
	TP_FIELD(reserve_size);
	TP_FIELD(unreserved_size);
	TP_FIELD(resident_size);
	TP_FIELD(live_bytes);
	TP_FIELD(live_buffers);
	TP_FIELD(block_size);
	TP_FIELD(grow_unit);
	TP_FIELD(min_size);
	TP_FIELD(max_size);
	TP_FIELD(grows);
	TP_FIELD(shrinks);
	TP_FIELD(purges);
	TP_FIELD(purged_bytes);
	TP_FIELD(alloc_failures);
	TP_FIELD(bad_frees);
	TP_FIELD(vetoes);
	TP_FIELD(os_failures);
	TP_FIELD(users);
#undef TP_FIELD
	if (a->boundary != b->boundary) {
		fprintf(stderr, "%s: boundary moved: %p -> %p\n", where, a->boundary, b->boundary);
		same = false;
	}
	return same;
}

#define CHECK_SAME(a, b, allowed) CHECK(tp_same((a), (b), (allowed), __func__))

/* --------------------------------------------------------- recording hook -- */

#define HOOK_UNITS (TP_RESERVE / TP_UNIT)

struct hook {
	struct tide_pool *pool;
	char *base;
	size_t unit;
	unsigned up, down;	    /* calls seen */
	int veto_up, veto_down;	    /* returned instead of 0 when nonzero */
	unsigned long veto_up_at;   /* veto only the Nth TO_UNRESERVED call from now (0: every) */
	unsigned long veto_down_at; /* likewise for TO_RESERVED */
	unsigned errors;	    /* order or range violations seen inside the hook */
	bool installing;	    /* the install call: the range is already unreserved */
	bool veto_once;		    /* a veto switches itself off after it fired */
	unsigned vetoed;	    /* vetoes returned */
	bool reg[HOOK_UNITS];
};

/*
 * No block of [p, p + len) can be or has been handed out: each is tagged free and either
 * claimed in the bitmap or at or above the claim limit (which a shrink lowers first).
 */
static inline bool range_not_handed_out(struct tide_pool *pool, char *p, size_t len)
{
	size_t first = (size_t)(p - pool->base) >> pool->block_shift;
	size_t n = len >> pool->block_shift;

	for (size_t b = first; b < first + n; b++)
		if ((b < pool->limit && !bitmap_test(&pool->map, b)) || pool->tags[b] != TAG_FREE)
			return false;
	return true;
}

static inline int hook_fn(struct tide_pool *pool, enum tide_convert dir, void *addr, size_t len,
			  void *arg)
{
	struct hook *h = arg;
	char *p = addr;
	size_t first, n;
	int veto = 0;

	if (pool != h->pool || p < h->base || len == 0 || len % h->unit ||
	    (size_t)(p - h->base) % h->unit || (size_t)(p - h->base) + len > TP_RESERVE) {
		fprintf(stderr, "hook: bad call pool %p addr %p len %zu\n", (void *)pool, addr,
			len);
		h->errors++;
		return 0;
	}
	first = (size_t)(p - h->base) / h->unit;
	n = len / h->unit;
	if (dir == TIDE_TO_UNRESERVED) {
		h->up++;
		/* Committed already: writable. Not handed out yet: not below the boundary. */
		p[0] = 0;
		p[len - 1] = 0;
		/*
		 * Above the boundary (a grow), or below it but claimed and not handed out (a
		 * shrink rolled back after its TO_RESERVED): no buffer of it is out yet.
		 */
		if (!h->installing && (char *)tide_pool_boundary(pool) > p &&
		    !range_not_handed_out(pool, p, len)) {
			fprintf(stderr,
				"hook: TO_UNRESERVED of %p+%zu below the boundary (%p) with blocks "
				"handed out or claimable\n",
				addr, len, tide_pool_boundary(pool));
			h->errors++;
		}
		/*
		 * A rollback (a shrink whose decommit failed re-registers a range below the
		 * boundary) cannot be refused: the pool ignores the result, so this hook does
		 * not veto it; nor the install call.
		 */
		if (h->veto_up && !h->installing && p >= (char *)tide_pool_boundary(pool) &&
		    (h->veto_up_at == 0 || --h->veto_up_at == 0)) {
			veto = h->veto_up;
			h->vetoed++;
			if (h->veto_once)
				h->veto_up = 0;
		}
		for (size_t i = first; i < first + n; i++) {
			if (h->reg[i]) {
				fprintf(stderr, "hook: unit %zu registered twice\n", i);
				h->errors++;
			}
			if (!veto)
				h->reg[i] = true;
		}
	} else if (dir == TIDE_TO_RESERVED) {
		h->down++;
		/* The pages are still there: reading must not fault. */
		(void)*(volatile char *)p;
		(void)*(volatile char *)(p + len - 1);
		if (h->veto_down && !h->installing &&
		    (h->veto_down_at == 0 || --h->veto_down_at == 0)) {
			veto = h->veto_down;
			h->vetoed++;
			if (h->veto_once)
				h->veto_down = 0;
		}
		for (size_t i = first; i < first + n; i++) {
			if (!h->reg[i]) {
				fprintf(stderr, "hook: unit %zu unregistered but not registered\n",
					i);
				h->errors++;
			}
			if (!veto)
				h->reg[i] = false;
		}
	} else {
		h->errors++;
	}
	return veto;
}

/* The registered units are exactly the unreserved portion, and the hook saw no error. */
static inline bool hook_agrees(const struct hook *h, const char *where)
{
	size_t below = (size_t)((char *)tide_pool_boundary(h->pool) - h->base) / h->unit;
	bool ok = h->errors == 0;

	for (size_t i = 0; i < HOOK_UNITS; i++)
		if (h->reg[i] != (i < below)) {
			fprintf(stderr, "%s: unit %zu is %sregistered, boundary at unit %zu\n",
				where, i, h->reg[i] ? "" : "not ", below);
			ok = false;
			break;
		}
	if (h->errors)
		fprintf(stderr, "%s: %u error(s) seen inside the hook\n", where, h->errors);
	return ok;
}

/*
 * Install the recording hook. The pool calls a new hook at once with TO_UNRESERVED for the
 * range already unreserved, so every unit is registered through the hook itself.
 */
static inline void hook_install(struct hook *h, struct tide_pool *pool)
{
	memset(h, 0, sizeof(*h));
	h->pool = pool;
	h->base = tide_pool_base(pool);
	h->unit = TP_UNIT;
	h->installing = true;
	REQUIRE(tide_pool_set_convert_hook(pool, hook_fn, h) == 0);
	h->installing = false;
	CHECK(hook_agrees(h, "hook_install"));
}

#define CHECK_HOOK(h) CHECK(hook_agrees((h), __func__))

#endif /* TIDE_TEST_POOL_HELPERS_H */
