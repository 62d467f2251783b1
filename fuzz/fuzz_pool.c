/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pool.c - differential fuzzing of the pool against a model.
 *
 * An input is a stream of operations: byte 0 picks the block size and flags, then each
 * operation is one byte (its kind) followed by the bytes it needs. Kinds: alloc of any
 * size (0 included), free of a live buffer, of a freed one, of an interior, foreign or
 * above-the-boundary pointer, bulk alloc and free, grow, shrink, maintain, cache flush,
 * user create / alloc / free (its own buffer or another's) / destroy, the OS fault switch
 * on (the Nth call, once or from then on) or off, and the conversion hook vetoing or not.
 *
 * The model holds every live buffer (address, blocks, owner, canary seed) and every
 * user (quota, bytes held). After each step the pool must agree with it: the invariant
 * checker passes, live buffers and bytes match, every live buffer is inside
 * [base, boundary), the hook's registrations equal the unreserved portion, each user is
 * within its quota, and every refused call returned its documented error and changed
 * nothing. Each live buffer carries a canary (its first, middle and last words) checked
 * when it is freed. Results that depend on memory being free (an alloc that fails) are
 * not asserted, since thread caches and faults make them legitimately vary; everything
 * the caller can see after the call is.
 *
 * Speed (libFuzzer wants many short runs): each input gets a small pool (1 MiB max, 2 MiB
 * reserved, 64 KiB grow unit), one per configuration, kept across inputs and reset after
 * each (tide_pool_reset; the reset pool must then equal a fresh one, see pool_done), so no
 * input maps or unmaps a reservation; an input is cut at FUZZ_MAX_INPUT bytes. The model
 * comparison (stats, users, the hook's registrations, every live buffer below the boundary)
 * runs after every step; the full invariant checker (tide_pool_check, a scan of every block
 * tag) runs every fuzz_check_every steps, after every step that moved the boundary or was
 * a grow, shrink, maintain or cache flush, and at the end of each input. The model's own
 * bookkeeping (overlap bitmap, canaries, comparisons) is left out of the coverage
 * instrumentation: its branches say nothing about the pool and only slowed libFuzzer down.
 *
 * A mismatch is printed and makes fuzz_pool_run() return -1; the libFuzzer entry point
 * turns that into abort() so the input is saved.
 */
#include "fuzz_pool.h"
#include "pool_helpers.h"

#define MAX_LIVE   256
#define MAX_USERS  4
#define MAX_UNITS  16 /* max_size, in grow units */
#define RES_UNITS  32 /* reserve_size, in grow units: room above max_size */
#define FREED_RING 16
#define HELD_WORDS (MAX_UNITS * TP_UNIT / 64 / 64) /* a bit per 64 B block up to max_size */

#if defined(__clang__) && __clang_major__ >= 13
#define NOCOV __attribute__((no_sanitize("coverage")))
#else
#define NOCOV
#endif

struct fuzz_totals fuzz_totals;
unsigned fuzz_check_every = 8;
bool fuzz_reuse_pools = true;
unsigned long fuzz_reset_fault;

struct fbuf {
	char *addr;
	size_t bytes;
	int owner; /* -1: the pool's default user; else an index into users */
	uint64_t seed;
};

struct fuser {
	struct tide_user *u;
	size_t quota;
	size_t held;
	size_t buffers;
	bool may_grow;
};

struct fuzz {
	const uint8_t *p, *end;
	struct tide_pool *pool;
	struct hook hook;
	size_t block;
	char *base;
	struct fbuf live[MAX_LIVE];
	size_t nlive;
	uint64_t held[HELD_WORDS]; /* a bit per block below max_size: a live buffer's */
	size_t held_end;	   /* no bit was set in held[] at or above this word */
	struct fuser users[MAX_USERS];
	char *freed[FREED_RING];
	unsigned freed_head;
	uint64_t next_seed;
	size_t model_bytes;   /* sum of live[].bytes */
	char *checked_top;    /* the boundary at the last full check */
	unsigned since_check; /* steps since the last full check */
	bool fault_on;
	bool failed;
};

static unsigned take(struct fuzz *f)
{
	return f->p < f->end ? *f->p++ : 0;
}

static unsigned take16(struct fuzz *f)
{
	unsigned lo = take(f);

	return lo | take(f) << 8;
}

#define MISMATCH(f, ...)                                                                           \
	do {                                                                                       \
		fprintf(stderr, "fuzz mismatch at step %lu (%s:%d): ", fuzz_totals.steps,          \
			__FILE__, __LINE__);                                                       \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		(f)->failed = true;                                                                \
	} while (0)

static NOCOV uint64_t canary(const struct fbuf *b, size_t word)
{
	return (b->seed ^ (uintptr_t)b->addr) * 0x9E3779B97F4A7C15ULL + word;
}

static NOCOV size_t canary_words(const struct fbuf *b, size_t out[3])
{
	size_t n = b->bytes / sizeof(uint64_t);

	out[0] = 0;
	out[1] = n / 2;
	out[2] = n - 1;
	return 3;
}

static NOCOV void stamp(struct fbuf *b)
{
	size_t w[3];

	for (size_t i = 0, n = canary_words(b, w); i < n; i++)
		((uint64_t *)b->addr)[w[i]] = canary(b, w[i]);
}

static NOCOV bool canary_ok(const struct fbuf *b)
{
	size_t w[3];

	for (size_t i = 0, n = canary_words(b, w); i < n; i++)
		if (((uint64_t *)b->addr)[w[i]] != canary(b, w[i]))
			return false;
	return true;
}

/*
 * Set the held bits of blocks [first, first + n) (set) or clear them: whether any was set
 * already. Word-wide, so checking a new buffer against every live one costs its length,
 * not the number of live buffers.
 */
static NOCOV bool held_mark(struct fuzz *f, size_t first, size_t n, bool set)
{
	uint64_t *held = f->held;
	bool clash = false;

	if (set && n && (first + n + 63) / 64 > f->held_end)
		f->held_end = (first + n + 63) / 64;
	while (n) {
		size_t w = first / 64;
		unsigned lo = first % 64, k = n < 64 - lo ? (unsigned)n : 64 - lo;
		uint64_t m = (k == 64 ? UINT64_MAX : ((uint64_t)1 << k) - 1) << lo;

		if (set) {
			clash |= (held[w] & m) != 0;
			held[w] |= m;
		} else {
			held[w] &= ~m;
		}
		first += k;
		n -= k;
	}
	return clash;
}

/* Whether a held bit is set at block index top or above (below max_size). */
static NOCOV bool held_from(const struct fuzz *f, size_t top)
{
	if (top >= f->held_end * 64)
		return false;
	if (f->held[top / 64] >> (top % 64))
		return true;
	for (size_t w = top / 64 + 1; w < f->held_end; w++)
		if (f->held[w])
			return true;
	return false;
}

static NOCOV struct fbuf *find_live(struct fuzz *f, const char *addr)
{
	for (size_t i = 0; i < f->nlive; i++)
		if (f->live[i].addr == addr)
			return &f->live[i];
	return NULL;
}

/* A new buffer from the pool: inside the unreserved portion, overlapping nothing live. */
static NOCOV void add_live(struct fuzz *f, char *addr, size_t bytes, int owner)
{
	char *base = tide_pool_base(f->pool), *top = tide_pool_boundary(f->pool);
	size_t got = tide_buffer_size(f->pool, addr);
	struct fbuf *b;

	if (addr < base || addr + bytes > top || (size_t)(addr - base) % f->block ||
	    (size_t)(addr - base) + got > MAX_UNITS * TP_UNIT)
		MISMATCH(f, "buffer %p+%zu outside [%p, %p) or misaligned", (void *)addr, bytes,
			 (void *)base, (void *)top);
	if (got < bytes || got % f->block || got - bytes >= f->block)
		MISMATCH(f, "buffer %p: tide_buffer_size %zu for %zu bytes asked", (void *)addr,
			 got, bytes);
	if (f->failed)
		return; /* the held bits below are for buffers that passed the checks above */
	if (held_mark(f, (size_t)(addr - base) / f->block, got / f->block, true)) {
		for (size_t i = 0; i < f->nlive; i++)
			if (addr < f->live[i].addr + f->live[i].bytes &&
			    f->live[i].addr < addr + got)
				MISMATCH(f, "buffer %p+%zu overlaps live %p+%zu", (void *)addr, got,
					 (void *)f->live[i].addr, f->live[i].bytes);
		return;
	}
	if (f->nlive == MAX_LIVE) { /* the model is full: give it straight back */
		int rc = owner < 0 ? tide_free(f->pool, addr)
				   : tide_user_free(f->users[owner].u, addr);

		if (rc)
			MISMATCH(f, "free of a fresh buffer: %d", rc);
		held_mark(f, (size_t)(addr - base) / f->block, got / f->block, false);
		return;
	}
	b = &f->live[f->nlive++];
	b->addr = addr;
	b->bytes = got;
	b->owner = owner;
	b->seed = ++f->next_seed;
	f->model_bytes += got;
	stamp(b);
	if (owner >= 0) {
		f->users[owner].held += got;
		f->users[owner].buffers++;
	}
}

static NOCOV void drop_live(struct fuzz *f, struct fbuf *b)
{
	if (b->owner >= 0) {
		f->users[b->owner].held -= b->bytes;
		f->users[b->owner].buffers--;
	}
	f->freed[f->freed_head++ % FREED_RING] = b->addr;
	f->model_bytes -= b->bytes;
	held_mark(f, (size_t)(b->addr - f->base) / f->block, b->bytes / f->block, false);
	*b = f->live[--f->nlive];
}

/* Free a live buffer through its owner; the canary must be intact and the free succeed. */
static void free_live(struct fuzz *f, struct fbuf *b)
{
	int rc;

	if (!canary_ok(b))
		MISMATCH(f, "canary of %p+%zu overwritten", (void *)b->addr, b->bytes);
	rc = b->owner < 0 ? tide_free(f->pool, b->addr)
			  : tide_user_free(f->users[b->owner].u, b->addr);
	if (rc)
		MISMATCH(f, "free of live %p (owner %d): %d", (void *)b->addr, b->owner, rc);
	drop_live(f, b);
}

/* A refused free: the documented error, bad_frees + 1, nothing else changed. */
static void bad_free(struct fuzz *f, struct tide_user *u, void *ptr, int want, const char *what)
{
	struct snap before = tp_snap(f->pool), after;
	int rc = u ? tide_user_free(u, ptr) : tide_free(f->pool, ptr);

	after = tp_snap(f->pool);
	if (rc != want)
		MISMATCH(f, "free of %s %p: %d, want %d", what, ptr, rc, want);
	if (after.st.bad_frees != before.st.bad_frees + 1)
		MISMATCH(f, "free of %s: bad_frees %llu -> %llu", what,
			 (unsigned long long)before.st.bad_frees,
			 (unsigned long long)after.st.bad_frees);
	if (!tp_same(&before, &after, "bad_frees", what))
		MISMATCH(f, "free of %s changed the pool", what);
}

static size_t pick_size(struct fuzz *f)
{
	unsigned v = take16(f);

	switch (v & 3) {
	case 0:
		return v >> 2 & 7; /* tiny, 0 included */
	case 1:
		return f->block;
	case 2:
		return (v >> 2) % (8 * f->block) + 1;
	default:
		return (size_t)(v >> 2) * f->block / 4; /* up to several grow units */
	}
}

/* One operation; returns its kind. */
static unsigned step(struct fuzz *f)
{
	unsigned kind = take(f) % 20;

	fuzz_totals.ops[kind]++;
	switch (kind) {
	case 0:
	case 1: { /* alloc */
		size_t size = pick_size(f);
		char *b = tide_alloc(f->pool, size);

		if (size == 0 && b)
			MISMATCH(f, "tide_alloc(0) returned %p", (void *)b);
		if (b)
			add_live(f, b, size, -1);
		break;
	}
	case 2:
	case 3: /* free a live buffer */
		if (f->nlive)
			free_live(f, &f->live[take(f) % f->nlive]);
		break;
	case 4: { /* free a freed pointer (unless it was handed out again) */
		char *p = f->freed[take(f) % FREED_RING];

		if (p && !find_live(f, p))
			bad_free(f, NULL, p, -EINVAL, "a freed buffer");
		break;
	}
	case 5: { /* free an interior, foreign or reserved-portion pointer */
		unsigned how = take(f) % 4;
		char local;

		if (how == 0 && f->nlive) {
			struct fbuf *b = &f->live[take(f) % f->nlive];
			size_t off = 1 + take16(f) % (b->bytes - 1);

			bad_free(f, NULL, b->addr + off, -EINVAL, "an interior pointer");
		} else if (how == 1) {
			bad_free(f, NULL, &local, -EINVAL, "a stack pointer");
		} else if (how == 2) {
			bad_free(f, NULL, (char *)tide_pool_boundary(f->pool) + f->block * take(f),
				 -EINVAL, "a reserved-portion pointer");
		} else {
			bad_free(f, NULL, (char *)tide_pool_base(f->pool) - f->block, -EINVAL,
				 "a pointer below base");
		}
		break;
	}
	case 6: { /* bulk alloc */
		void *bufs[32];
		unsigned n = take(f) % 33, got = tide_alloc_bulk(f->pool, bufs, n);

		if (got > n)
			MISMATCH(f, "alloc_bulk(%u) got %u", n, got);
		for (unsigned i = 0; i < got && i < n; i++)
			add_live(f, bufs[i], f->block, -1);
		break;
	}
	case 7: { /* bulk free of the pool's own buffers */
		void *bufs[32] = {0};
		struct fbuf *pick[32];
		unsigned n = 0, want = take(f) % 33;
		int rc;

		for (size_t i = 0; i < f->nlive && n < want; i++)
			if (f->live[i].owner < 0) {
				if (!canary_ok(&f->live[i]))
					MISMATCH(f, "canary of %p overwritten",
						 (void *)f->live[i].addr);
				pick[n] = &f->live[i];
				bufs[n++] = f->live[i].addr;
			}
		rc = tide_free_bulk(f->pool, bufs, n);
		if (rc)
			MISMATCH(f, "free_bulk of %u live buffers: %d", n, rc);
		while (n--) /* highest index first, so drop_live's swap moves nothing picked */
			drop_live(f, pick[n]);
		break;
	}
	case 8: { /* grow */
		struct snap before = tp_snap(f->pool), after;
		size_t units = 1 + take(f) % 3;
		int rc = tide_pool_grow(f->pool, units * TP_UNIT);

		after = tp_snap(f->pool);
		if (rc == 0 &&
		    after.st.unreserved_size != before.st.unreserved_size + units * TP_UNIT)
			MISMATCH(f, "grow by %zu units: %zu -> %zu", units,
				 before.st.unreserved_size, after.st.unreserved_size);
		if (rc && rc != -ENOSPC && rc != -ENOMEM && rc != -EIO)
			MISMATCH(f, "grow: %d", rc);
		if (rc && !tp_same(&before, &after, "vetoes,os_failures", "refused grow"))
			MISMATCH(f, "a refused grow (%d) changed the pool", rc);
		break;
	}
	case 9: { /* shrink */
		struct snap before = tp_snap(f->pool), after;
		ssize_t got = tide_pool_shrink(f->pool, (1 + take(f) % 4) * TP_UNIT);

		after = tp_snap(f->pool);
		if (got >= 0 && before.st.unreserved_size - after.st.unreserved_size != (size_t)got)
			MISMATCH(f, "shrink returned %zd, unreserved %zu -> %zu", got,
				 before.st.unreserved_size, after.st.unreserved_size);
		if (got < 0 && got != -EBUSY && got != -ENOMEM && got != -EIO)
			MISMATCH(f, "shrink: %zd", got);
		if (got < 0 && !tp_same(&before, &after, "vetoes,os_failures", "refused shrink"))
			MISMATCH(f, "a refused shrink (%zd) changed the pool", got);
		break;
	}
	case 10:
		if (tide_pool_maintain(f->pool) < -1)
			MISMATCH(f, "maintain below -1");
		break;
	case 11:
		tide_pool_flush_cache(f->pool);
		break;
	case 12: { /* user create */
		unsigned i = take(f) % MAX_USERS, q = take(f);
		struct tide_user_config cfg = {.name = "fuzz",
					       .quota = (q & 0x7f) * f->block,
					       .flags = q & 0x80 ? TIDE_USER_MAY_GROW : 0};
		int rc;

		if (f->users[i].u)
			break;
		rc = tide_user_create(f->pool, &cfg, &f->users[i].u);
		if (rc && rc != -ENOMEM) {
			MISMATCH(f, "user_create: %d", rc);
			f->users[i].u = NULL;
		}
		if (!rc) {
			f->users[i].quota = cfg.quota;
			f->users[i].may_grow = q & 0x80;
			f->users[i].held = f->users[i].buffers = 0;
		}
		break;
	}
	case 13: { /* user alloc */
		unsigned i = take(f) % MAX_USERS;
		size_t size = pick_size(f);
		struct fuser *u = &f->users[i];
		size_t before = tp_snap(f->pool).st.unreserved_size;
		char *b;

		if (!u->u)
			break;
		b = tide_user_alloc(u->u, size);
		if (b) {
			add_live(f, b, size, (int)i);
			if (u->quota && u->held > u->quota)
				MISMATCH(f, "user %u holds %zu over its quota %zu", i, u->held,
					 u->quota);
		}
		if (!u->may_grow && tp_snap(f->pool).st.unreserved_size > before)
			MISMATCH(f, "user %u without MAY_GROW grew the pool", i);
		break;
	}
	case 14: { /* user free: its own buffer, or another's (-EPERM) */
		unsigned i = take(f) % MAX_USERS;
		struct fbuf *b;

		if (!f->users[i].u || !f->nlive)
			break;
		b = &f->live[take(f) % f->nlive];
		if (b->owner == (int)i)
			free_live(f, b);
		else
			bad_free(f, f->users[i].u, b->addr, -EPERM, "another user's buffer");
		break;
	}
	case 15: { /* user destroy: -EBUSY while holding */
		unsigned i = take(f) % MAX_USERS;
		int rc;

		if (!f->users[i].u)
			break;
		rc = tide_user_destroy(f->users[i].u);
		if (rc != (f->users[i].buffers ? -EBUSY : 0))
			MISMATCH(f, "user_destroy holding %zu buffers: %d", f->users[i].buffers,
				 rc);
		if (!rc)
			f->users[i].u = NULL;
		break;
	}
	case 16: { /* the OS fault switch */
		unsigned v = take(f);

		f->fault_on = v & 1;
		tide_os_fault_set(f->fault_on ? 1 + (v >> 2) % 8 : 0, ENOMEM, v & 2);
		break;
	}
	case 17: { /* the hook vetoes, or not */
		unsigned v = take(f);

		f->hook.veto_up = v & 1 ? -EIO : 0;
		f->hook.veto_down = v & 2 ? -EIO : 0;
		break;
	}
	default: /* buffer_size of a live buffer and of its interior */
		if (f->nlive) {
			struct fbuf *b = &f->live[take(f) % f->nlive];

			if (tide_buffer_size(f->pool, b->addr) != b->bytes)
				MISMATCH(f, "buffer_size(%p) %zu != %zu", (void *)b->addr,
					 tide_buffer_size(f->pool, b->addr), b->bytes);
			if (tide_buffer_size(f->pool, b->addr + 1) != 0)
				MISMATCH(f, "buffer_size of an interior pointer is not 0");
		}
		break;
	}
	return kind;
}

/*
 * The recording hook of pool_helpers.h, with one more check: every call stays inside this
 * pool's (small) reservation, so comparing the units of the reservation covers all calls.
 */
static int fuzz_hook(struct tide_pool *pool, enum tide_convert dir, void *addr, size_t len,
		     void *arg)
{
	struct hook *h = arg;

	if ((char *)addr < h->base || len > RES_UNITS * TP_UNIT ||
	    (size_t)((char *)addr - h->base) > RES_UNITS * TP_UNIT - len) {
		fprintf(stderr, "hook: %p+%zu outside the reservation\n", addr, len);
		h->errors++;
		return 0;
	}
	return hook_fn(pool, dir, addr, len, arg);
}

/* As hook_install(): the new hook registers the range already unreserved through itself. */
static void fuzz_hook_install(struct fuzz *f)
{
	struct hook *h = &f->hook;

	memset(h, 0, sizeof(*h));
	h->pool = f->pool;
	h->base = tide_pool_base(f->pool);
	h->unit = TP_UNIT;
	h->installing = true;
	if (tide_pool_set_convert_hook(f->pool, fuzz_hook, h))
		MISMATCH(f, "tide_pool_set_convert_hook failed");
	h->installing = false;
}

/* hook_agrees() over the reservation's units only (fuzz_hook refuses any beyond). */
static NOCOV bool hook_ok(const struct hook *h)
{
	size_t below = (size_t)((char *)tide_pool_boundary(h->pool) - h->base) / h->unit;

	if (h->errors)
		return false;
	for (size_t i = 0; i < RES_UNITS; i++)
		if (h->reg[i] != (i < below))
			return false;
	return true;
}

/* The pool and the model agree: after every step. */
static NOCOV void compare(struct fuzz *f)
{
	struct tide_stats st;
	char *top = tide_pool_boundary(f->pool);

	tide_pool_stats(f->pool, &st);
	if (held_from(f, (size_t)(top - f->base) / f->block))
		for (size_t i = 0; i < f->nlive; i++)
			if (f->live[i].addr + f->live[i].bytes > top)
				MISMATCH(f, "live %p+%zu above the boundary %p",
					 (void *)f->live[i].addr, f->live[i].bytes, (void *)top);
	if (st.live_buffers != f->nlive || st.live_bytes != f->model_bytes)
		MISMATCH(f, "stats live %zu buffers / %zu bytes, model %zu / %zu", st.live_buffers,
			 st.live_bytes, f->nlive, f->model_bytes);
	if (st.unreserved_size > MAX_UNITS * TP_UNIT || st.unreserved_size % TP_UNIT ||
	    st.unreserved_size != (size_t)(top - (char *)tide_pool_base(f->pool)))
		MISMATCH(f, "unreserved %zu, boundary %p", st.unreserved_size, (void *)top);
	if (!hook_ok(&f->hook)) {
		hook_agrees(&f->hook, "fuzz"); /* prints the first difference */
		MISMATCH(f, "hook registrations differ from the unreserved portion");
	}
	for (unsigned i = 0; i < MAX_USERS; i++) {
		struct tide_user_stats us;

		if (!f->users[i].u)
			continue;
		tide_user_stats(f->users[i].u, &us);
		if (us.live_bytes != f->users[i].held || us.live_buffers != f->users[i].buffers)
			MISMATCH(f, "user %u: %zu bytes / %zu buffers, model %zu / %zu", i,
				 us.live_bytes, us.live_buffers, f->users[i].held,
				 f->users[i].buffers);
	}
}

/* The full invariant checker: a scan of every block tag up to the high-water mark. */
static void full_check(struct fuzz *f)
{
	char why[256] = "";

	if (tide_pool_check(f->pool, why, sizeof(why)))
		MISMATCH(f, "tide_pool_check: %s", why);
	f->checked_top = tide_pool_boundary(f->pool);
	f->since_check = 0;
	fuzz_totals.full_checks++;
}

/*
 * The pool for an input's head byte: one per configuration (block size, auto grow, initial
 * unit), created on first use and reset after each input, so an input costs no mapping.
 * fresh[] is its tide_pool_stats() as created: a reset must give exactly that back.
 *
 * No memory limit (TIDE_NO_MEMORY_LIMIT): with the default, every grow reads the cgroup
 * files of the process (limits.c: about 7 opens and 14 reads per grow here, 60 system
 * calls per input, the largest cost of an execution), and what it reads is the machine's,
 * not the input's: the model cannot tell a limit's -ENOMEM from the OS's and checks
 * neither. The limit is tested where it can be controlled (test_cgroup).
 */
static struct fuzz_pools {
	struct tide_pool *pool[6 * 4];
	struct snap fresh[6 * 4];
} pools;

static struct tide_pool *pool_for(unsigned head, size_t block, struct snap **fresh, bool *refused)
{
	unsigned key = head % 6 + 6 * (head >> 6 & 3);
	struct tide_pool_config cfg = {.block_size = block,
				       .flags = head & 0x40 ? TIDE_AUTO_GROW : 0,
				       .initial_size = head & 0x80 ? TP_UNIT : 0,
				       .reserve_size = RES_UNITS * TP_UNIT,
				       .max_size = MAX_UNITS * TP_UNIT,
				       .grow_unit = TP_UNIT,
				       .memory_limit = TIDE_NO_MEMORY_LIMIT};
	int rc;

	*fresh = &pools.fresh[key];
	if (fuzz_reuse_pools && pools.pool[key])
		return pools.pool[key];
	rc = tide_pool_create(&cfg, &pools.pool[key]);
	if (rc) {
		pools.pool[key] = NULL;
		*refused = rc == -ENOMEM; /* the OS or the memory limit said no */
		if (*refused)
			fuzz_totals.create_refusals++;
		else
			fprintf(stderr, "fuzz: tide_pool_create: %d\n", rc);
		return NULL;
	}
	pools.fresh[key] = tp_snap(pools.pool[key]);
	return pools.pool[key];
}

static void pool_forget(struct fuzz *f)
{
	for (unsigned k = 0; k < 6 * 4; k++)
		if (pools.pool[k] == f->pool)
			pools.pool[k] = NULL;
	tide_pool_destroy(f->pool);
}

/* The hook heard every unit of the reservation go back, and nothing else went wrong. */
static NOCOV bool hook_released_all(const struct hook *h)
{
	if (h->errors)
		return false;
	for (size_t i = 0; i < RES_UNITS; i++)
		if (h->reg[i])
			return false;
	return true;
}

/* Mappings of this process (/proc/self/maps lines), for a refusal's report. */
static NOCOV unsigned long mappings(void)
{
	FILE *fp = fopen("/proc/self/maps", "re");
	unsigned long n = 0;
	int c;

	while (fp && (c = getc(fp)) != EOF)
		n += c == '\n';
	if (fp)
		fclose(fp);
	return n;
}

/*
 * A reset that could not commit initial_size again (-ENOMEM: the OS, or the memory limit's
 * headroom, refused the grow back after an input shrank below it). The API allows it: the
 * pool must then be valid, empty and hookless; it is replaced (the next input of its kind
 * gets a new one). Anything else is a mismatch.
 */
static NOCOV void reset_refused(struct fuzz *f, int rc)
{
	struct snap now = tp_snap(f->pool);

	fuzz_totals.reset_refusals++;
	fprintf(stderr,
		"fuzz: tide_pool_reset: %d (unreserved %zu, initial %zu, os_failures %llu, %lu "
		"mappings); the pool is replaced\n",
		rc, now.st.unreserved_size, f->pool->initial_size,
		(unsigned long long)now.st.os_failures, mappings());
	if (rc != -ENOMEM)
		MISMATCH(f, "tide_pool_reset: %d", rc);
	if (!hook_released_all(&f->hook))
		MISMATCH(f, "the refused reset did not release the unreserved portion");
	full_check(f);
	if (now.st.live_buffers || now.st.live_bytes || now.st.users)
		MISMATCH(f, "the refused reset left buffers or users");
	if (f->failed)
		fuzz_totals.mismatches++;
	pool_forget(f);
}

/* After an input: reset the pool (or destroy it), then it must be exactly as created. */
static NOCOV void pool_done(struct fuzz *f, const struct snap *fresh)
{
	struct snap now;
	int rc;

	if (!fuzz_reuse_pools || f->failed) {
		pool_forget(f);
		return;
	}
	tide_os_fault_set(fuzz_reset_fault, ENOMEM, true);
	rc = tide_pool_reset(f->pool);
	tide_os_fault_set(0, 0, false);
	if (rc) {
		reset_refused(f, rc);
		return;
	}
	if (!hook_released_all(&f->hook))
		MISMATCH(f, "the reset did not release the unreserved portion through the hook");
	full_check(f);
	now = tp_snap(f->pool);
	if (!tp_same(fresh, &now, "", "reset") ||
	    now.st.peak_live_bytes != fresh->st.peak_live_bytes ||
	    now.st.cached_bytes != fresh->st.cached_bytes ||
	    now.st.metadata_size != fresh->st.metadata_size ||
	    now.st.reentries != fresh->st.reentries)
		MISMATCH(f, "the reset pool's stats differ from a fresh pool's");
	if (f->failed) { /* not reusable: the next input of this kind gets a new one */
		fuzz_totals.mismatches++;
		pool_forget(f);
	}
}

void fuzz_pools_release(void)
{
	for (unsigned k = 0; k < 6 * 4; k++) {
		tide_pool_destroy(pools.pool[k]);
		pools.pool[k] = NULL;
	}
}

int fuzz_pool_run(const uint8_t *data, size_t size)
{
	static const size_t blocks[] = {64, 256, 2048, 4096, 16384, 65536};
	static struct fuzz fz;
	struct fuzz *f = &fz;
	struct snap *fresh;
	unsigned head, kind;
	bool refused = false;

	memset(f, 0, sizeof(*f));
	f->p = data;
	f->end = data + (size < FUZZ_MAX_INPUT ? size : FUZZ_MAX_INPUT);
	head = take(f);
	f->block = blocks[head % 6];
	tide_os_fault_set(0, 0, false);
	f->pool = pool_for(head, f->block, &fresh, &refused);
	if (!f->pool) { /* refused by the OS: counted and skipped; else a mismatch */
		if (!refused)
			fuzz_totals.mismatches++;
		return refused ? 0 : -1;
	}
	f->base = tide_pool_base(f->pool);
	fuzz_hook_install(f);
	f->checked_top = tide_pool_boundary(f->pool);
	fuzz_totals.inputs++;
	while (f->p < f->end && !f->failed) {
		kind = step(f);
		fuzz_totals.steps++;
		if (f->failed)
			break;
		compare(f);
		if (++f->since_check >= fuzz_check_every || (kind >= 8 && kind <= 11) ||
		    tide_pool_boundary(f->pool) != f->checked_top)
			full_check(f);
	}
	/* Put everything back with the fault switch and vetoes off; the pool must allow it. */
	tide_os_fault_set(0, 0, false);
	f->hook.veto_up = f->hook.veto_down = 0;
	while (f->nlive && !f->failed)
		free_live(f, &f->live[f->nlive - 1]);
	for (unsigned i = 0; i < MAX_USERS && !f->failed; i++) {
		if (f->users[i].u && tide_user_destroy(f->users[i].u))
			MISMATCH(f, "destroy of an idle user failed");
		f->users[i].u = NULL;
	}
	if (!f->failed)
		compare(f);
	if (!f->failed)
		full_check(f);
	if (f->failed)
		fuzz_totals.mismatches++;
	pool_done(f, fresh);
	return f->failed ? -1 : 0;
}

static void print_totals(void)
{
	if (fuzz_totals.inputs) /* not in the -jobs parent, which runs none */
		fprintf(stderr,
			"tide-fuzz: %lu inputs, %lu steps, %lu full checks, %lu mismatches, %lu "
			"refused resets, %lu refused creates\n",
			fuzz_totals.inputs, fuzz_totals.steps, fuzz_totals.full_checks,
			fuzz_totals.mismatches, fuzz_totals.reset_refusals,
			fuzz_totals.create_refusals);
}

/*
 * libFuzzer reads its flags after this: a default -max_len of FUZZ_MAX_INPUT goes first,
 * so one given on the command line still wins. The model's totals are printed at exit.
 * The recording hook writes to each range it is told about (pool_helpers.h), which ASan
 * poisoning of free blocks (poison.h) would report: TIDE_POISON=0, as for the tests
 * (test/CMakeLists.txt), unless the environment says otherwise.
 */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char max_len[32];
	static char *args[256];
	int n = *argc < 254 ? *argc : 254;

	setenv("TIDE_POISON", "0", 0);

	snprintf(max_len, sizeof(max_len), "-max_len=%d", FUZZ_MAX_INPUT);
	args[0] = (*argv)[0];
	args[1] = max_len;
	for (int i = 1; i < n; i++)
		args[i + 1] = (*argv)[i];
	args[n + 1] = NULL;
	*argc = n + 1;
	*argv = args;
	atexit(print_totals);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fuzz_pool_run(data, size))
		abort();
	return 0;
}
