/* SPDX-License-Identifier: MIT */
/*
 * Description: the fault sweep. For N = 1, 2, ... the Nth OS call of a scenario fails
 * (once, then from then on), until the scenario completes without reaching N.
 *
 * The scenario covers the pool's whole life: create (reserve, metadata, initial commit),
 * hook install, grow, allocations that auto-grow, users (create, alloc that may grow,
 * free, destroy), shrink, maintenance with purge and automatic shrink, and destroy. After
 * every step the invariant checker passes, every refusal is the documented one (-ENOMEM
 * from create, grow and shrink; NULL from an allocation; -EBUSY is never caused by a
 * fault), the hook's registrations match the unreserved portion, and after destroy nothing
 * of the pool's range or metadata is mapped (/proc/self/maps). The same sweep then runs
 * with the conversion hook vetoing its Kth call instead of the OS failing.
 *
 * Two limits of this machine are met in a child process: RLIMIT_AS against create, and
 * RLIMIT_DATA against grow; each must give -ENOMEM and leave a usable pool.
 *
 * The counts printed at the end (fault points swept) are the ones quoted in the notes.
 */
#include "pool_helpers.h"

struct sweep {
	unsigned long points; /* runs made, one per fault point */
	unsigned long hit;    /* runs in which the fault fired */
	unsigned long refusals;
	unsigned long leaks; /* destroys that left something mapped */
};

static const char *step_name;
static bool veto_dir_up;     /* veto sweep: which direction */
static unsigned long veto_k; /* veto sweep: which call */

#define STEP(name) (step_name = (name))

/* Each step: the pool still checks, and the hook agrees with the boundary. */
static void after_step(struct tide_pool *pool, struct hook *h, const char *mode, unsigned long n)
{
	char why[256] = "";

	if (tide_pool_check(pool, why, sizeof(why)))
		CHECKF(0, "%s N=%lu after %s: tide_pool_check: %s", mode, n, step_name, why);
	if (h)
		CHECKF(hook_agrees(h, step_name), "%s N=%lu after %s: hook registrations", mode, n,
		       step_name);
}

/* One run of the scenario; refusals and leaks are counted in sw. */
static void scenario(const char *mode, unsigned long n, struct hook *h, bool veto_mode,
		     struct sweep *sw)
{
	struct tide_pool_config cfg = {
		.block_size = TP_BLOCK,
		.reserve_size = TP_RESERVE,
		.initial_size = TP_UNIT,
		.max_size = 16 * TP_UNIT,
		.grow_unit = TP_UNIT,
		.shrink_delay_ms = 1,
		.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_POPULATE,
	};
	struct tide_user_config ucfg = {.name = "sweep", .flags = TIDE_USER_MAY_GROW};
	struct tide_pool *pool = NULL;
	struct tide_user *user = NULL;
	void *bufs[96] = {0}, *ubufs[40] = {0};
	char *base, *meta;
	size_t meta_size;
	int rc;
	ssize_t got;

	STEP("create");
	rc = tide_pool_create(&cfg, &pool);
	if (rc) {
		CHECKF(rc == -ENOMEM, "%s N=%lu: create: %d, want -ENOMEM", mode, n, rc);
		CHECK(veto_mode == false);
		sw->refusals++;
		return;
	}
	base = tide_pool_base(pool);
	meta = pool->meta;
	meta_size = pool->meta_size;
	after_step(pool, NULL, mode, n);

	STEP("hook install");
	memset(h, 0, sizeof(*h));
	h->pool = pool;
	h->base = base;
	h->unit = TP_UNIT;
	h->installing = true;
	rc = tide_pool_set_convert_hook(pool, hook_fn, h);
	h->installing = false;
	CHECKF(rc == 0, "%s N=%lu: hook install: %d", mode, n, rc);
	if (veto_mode) { /* veto the kth conversion of one direction, once */
		h->veto_once = true;
		if (veto_dir_up) {
			h->veto_up = -EIO;
			h->veto_up_at = veto_k;
		} else {
			h->veto_down = -EIO;
			h->veto_down_at = veto_k;
		}
	}
	after_step(pool, h, mode, n);

	STEP("grow");
	rc = tide_pool_grow(pool, 2 * TP_UNIT);
	CHECKF(rc == 0 || rc == (veto_mode ? -EIO : -ENOMEM), "%s N=%lu: grow: %d", mode, n, rc);
	sw->refusals += rc != 0;
	after_step(pool, h, mode, n);

	STEP("alloc with auto-grow");
	for (size_t i = 0; i < 96; i++) {
		bufs[i] = tide_alloc(pool, i % 8 ? TP_BLOCK : 5 * TP_BLOCK);
		sw->refusals += bufs[i] == NULL;
	}
	after_step(pool, h, mode, n);

	STEP("user ops");
	rc = tide_user_create(pool, &ucfg, &user);
	CHECKF(rc == 0 || rc == -ENOMEM, "%s N=%lu: user_create: %d", mode, n, rc);
	if (rc == 0) {
		for (size_t i = 0; i < 40; i++)
			ubufs[i] = tide_user_alloc(user, 3 * TP_BLOCK);
		after_step(pool, h, mode, n);
		for (size_t i = 0; i < 40; i++)
			CHECKF(tide_user_free(user, ubufs[i]) == 0, "%s N=%lu: user_free", mode, n);
		CHECKF(tide_user_destroy(user) == 0, "%s N=%lu: user_destroy", mode, n);
	}
	after_step(pool, h, mode, n);

	STEP("free");
	for (size_t i = 0; i < 96; i++)
		CHECKF(tide_free(pool, bufs[i]) == 0, "%s N=%lu: free %zu", mode, n, i);
	after_step(pool, h, mode, n);

	STEP("shrink");
	got = tide_pool_shrink(pool, 2 * TP_UNIT);
	CHECKF(got >= 0 || got == (veto_mode ? -EIO : -ENOMEM), "%s N=%lu: shrink: %zd", mode, n,
	       got);
	sw->refusals += got < 0;
	after_step(pool, h, mode, n);

	STEP("maintain (purge, auto shrink)");
	for (int i = 0; i < 4; i++) {
		struct timespec ts = {0, 2 * 1000 * 1000};

		rc = tide_pool_maintain(pool);
		CHECKF(rc >= -1, "%s N=%lu: maintain: %d", mode, n, rc);
		after_step(pool, h, mode, n);
		nanosleep(&ts, NULL);
	}

	STEP("destroy");
	tide_pool_destroy(pool);
	if (maps_any_mapped(base, TP_RESERVE) || maps_any_mapped(meta, meta_size)) {
		sw->leaks++;
		fprintf(stderr, "%s N=%lu: after destroy, %s%s still mapped\n", mode, n,
			maps_any_mapped(base, TP_RESERVE) ? "the range " : "",
			maps_any_mapped(meta, meta_size) ? "the metadata " : "");
		/* Unmap by hand so the next run starts clean. */
		munmap(base, TP_RESERVE);
		munmap(meta, meta_size);
	}
}

static void os_sweep(bool persistent, struct sweep *sw)
{
	const char *mode = persistent ? "OS fault from N on" : "OS fault at N";
	static struct hook h;

	for (unsigned long n = 1; n < 10000; n++) {
		unsigned long before = tide_os_calls();
		bool hit;

		tide_os_fault_set(n, ENOMEM, persistent);
		scenario(mode, n, &h, false, sw);
		tide_os_fault_set(0, 0, false);
		hit = tide_os_calls() - before >= n;
		sw->points++;
		sw->hit += hit;
		if (!hit)
			break; /* the scenario finished before its Nth OS call: swept */
	}
}

/* Veto the kth conversion (TO_UNRESERVED, or TO_RESERVED) after the hook's install. */
static void veto_sweep(bool up, struct sweep *sw)
{
	const char *mode = up ? "veto TO_UNRESERVED at K" : "veto TO_RESERVED at K";
	static struct hook h;

	for (unsigned long k = 1; k < 1000; k++) {
		veto_dir_up = up;
		veto_k = k;
		scenario(mode, k, &h, true, sw);
		sw->points++;
		sw->hit += h.vetoed > 0;
		if (!h.vetoed)
			break;
	}
}

/* RLIMIT_AS just above what is mapped: a 64 GiB reservation is refused with -ENOMEM. */
static int child_rlimit_as(void *arg)
{
	struct tide_pool_config cfg = {0};
	struct tide_pool *pool = NULL;
	long long vm = self_status_bytes("VmSize");
	struct rlimit lim;
	int rc;

	if (vm < 0)
		return 2;
	lim.rlim_cur = lim.rlim_max = (rlim_t)vm + 64 * MiB;
	if (setrlimit(RLIMIT_AS, &lim))
		return 3;
	rc = tide_pool_create(&cfg, &pool);
	if (rc != -ENOMEM) {
		fprintf(stderr, "RLIMIT_AS: create of a 64 GiB pool: %d, want -ENOMEM\n", rc);
		return 1;
	}
	/* A small one fits and works. */
	cfg.reserve_size = 4 * MiB;
	cfg.grow_unit = TP_UNIT;
	rc = tide_pool_create(&cfg, &pool);
	if (rc) {
		fprintf(stderr, "RLIMIT_AS: create of a 4 MiB pool: %d\n", rc);
		return 1;
	}
	rc = tide_pool_grow(pool, TP_UNIT) || tide_pool_check(pool, NULL, 0);
	tide_pool_destroy(pool);
	return rc ? 1 : 0;
}

/* RLIMIT_DATA just above what is mapped: a large grow is refused, the pool unchanged. */
static int child_rlimit_data(void *arg)
{
	struct tide_pool *pool = tp_create(0, 0, 0);
	long long data;
	struct rlimit lim;
	struct snap before, after;
	int rc;

	data = self_status_bytes("VmData");
	if (data < 0)
		return 2;
	lim.rlim_cur = lim.rlim_max = (rlim_t)data + 4 * MiB;
	if (setrlimit(RLIMIT_DATA, &lim))
		return 3;
	before = tp_snap(pool);
	rc = tide_pool_grow(pool, 32 * MiB);
	after = tp_snap(pool);
	if (rc != -ENOMEM) {
		fprintf(stderr, "RLIMIT_DATA: grow of 32 MiB: %d, want -ENOMEM\n", rc);
		rc = 1;
	} else if (!tp_same(&before, &after, "os_failures", "RLIMIT_DATA grow") ||
		   tide_pool_check(pool, NULL, 0)) {
		rc = 1;
	} else {
		rc = tide_pool_grow(pool, TP_UNIT);
		if (rc)
			fprintf(stderr, "RLIMIT_DATA: grow of one unit after: %d\n", rc);
		rc = rc ? 1 : 0;
	}
	tide_pool_destroy(pool);
	return rc;
}

int main(void)
{
	struct sweep once = {0}, persist = {0}, vup = {0}, vdown = {0};

	os_sweep(false, &once);
	os_sweep(true, &persist);
	veto_sweep(true, &vup);
	veto_sweep(false, &vdown);
	printf("test_faults: OS fault once: %lu points swept (%lu hit), %lu refusals, %lu leaks\n",
	       once.points, once.hit, once.refusals, once.leaks);
	printf("test_faults: OS fault persistent: %lu points swept (%lu hit), %lu refusals, "
	       "%lu leaks\n",
	       persist.points, persist.hit, persist.refusals, persist.leaks);
	printf("test_faults: hook veto TO_UNRESERVED: %lu points, TO_RESERVED: %lu points\n",
	       vup.points, vdown.points);
	if (under_valgrind() || under_emulator()) {
		printf("test_faults: RLIMIT_AS/RLIMIT_DATA children skipped under Valgrind or an "
		       "emulator (they manage the address space themselves)\n");
	} else {
		int rc = run_in_child(child_rlimit_as, NULL);

		CHECKF(rc == 0, "RLIMIT_AS child: %d", rc);
		rc = run_in_child(child_rlimit_data, NULL);
		CHECKF(rc == 0, "RLIMIT_DATA child: %d", rc);
		printf("test_faults: RLIMIT_AS against create, RLIMIT_DATA against grow: checked "
		       "in children\n");
	}
	CHECK_EQ(once.leaks, 0);
	CHECK_EQ(vup.leaks + vdown.leaks, 0);
	return test_exit("test_faults");
}
