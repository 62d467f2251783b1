/* SPDX-License-Identifier: MIT */
/*
 * Description: in a memory cgroup the pool refuses growth with -ENOMEM before the OOM
 * killer acts (gVisor #2520, Kubernetes #114142), with and without TIDE_POPULATE, and
 * memory_limit = TIDE_NO_MEMORY_LIMIT turns that off.
 *
 * Root only, with a writable memory cgroup hierarchy (v2 with the memory controller, or
 * v1's memory mount), else 77. The test makes a child cgroup of its own with a 64 MiB
 * limit and no swap, runs each case in a child process moved into it (the pool finds the
 * limit by itself: /proc/self/cgroup, mountinfo, memory.max or memory.limit_in_bytes), and
 * removes the cgroup at the end, also on SIGINT/SIGTERM. RUN_SERIAL: it fills 64 MiB.
 *
 * Also with the process in a cgroup below the limited one (the limit is found up the tree).
 * A case allocates and fills 2 KiB buffers from an auto-growing pool (max 1 GiB) until
 * NULL: it must stop cleanly (exit 0, not SIGKILL) having filled at least 32 MiB, with
 * tide_pool_grow() saying -ENOMEM. With the check off the same child is OOM-killed (which
 * shows the cgroup's limit is real and the pool's check is what stopped the others).
 *
 * Page cache: a child first writes and syncs a 40 MiB file (clean page cache charged to
 * the cgroup, which the kernel reclaims before it kills anyone), then fills the pool the
 * same way: it must still reach 32 MiB (the limit counts the working set, usage minus
 * inactive file pages, as the kubelet does), and stop cleanly before the OOM killer.
 *
 * Limits read at each grow, nothing kept open: the same fill stops cleanly when the limit
 * was lowered from 1 GiB after create, reaches 40 MiB when it was raised from 32 MiB, and
 * stops cleanly when the program closed every descriptor above stderr after create (and
 * reused the numbers), or created the pool with no descriptor left (create says -EMFILE,
 * or the limit holds), or moved into the limited cgroup after create (the cgroup is the
 * process's at the grow, as for a fork child moved by its supervisor).
 */
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "pool_helpers.h"

#define LIMIT (64 * MiB)

static char cg[3000], inner[3100];
static bool v2;

static int wr(const char *dir, const char *file, const char *val)
{
	char path[3200];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	n = fd < 0 ? -1 : write(fd, val, strlen(val));
	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

static void cleanup(void)
{
	if (inner[0])
		rmdir(inner);
	if (cg[0])
		rmdir(cg);
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Make our cgroup under the hierarchy that has the memory controller; 0 or -1. */
static int make_cgroup(void)
{
	char line[1024], mnt1[256] = "", mnt2[256] = "";
	char rel1[1024] = "", rel2[1024] = "", ctl[1400];
	FILE *f = fopen("/proc/self/mountinfo", "r");

	while (f && fgets(line, sizeof(line), f)) {
		char mp[256], fs[64], opts[512], *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1 ||
		    sscanf(dash + 3, "%63s %*s %511s", fs, opts) != 2)
			continue;
		if (!strcmp(fs, "cgroup") && strstr(opts, "memory"))
			snprintf(mnt1, sizeof(mnt1), "%s", mp);
		if (!strcmp(fs, "cgroup2"))
			snprintf(mnt2, sizeof(mnt2), "%s", mp);
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "r");
	while (f && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (strstr(line, ":memory:"))
			snprintf(rel1, sizeof(rel1), "%s", strstr(line, ":memory:") + 8);
		if (!strncmp(line, "0::", 3))
			snprintf(rel2, sizeof(rel2), "%s", line + 3);
	}
	if (f)
		fclose(f);
	if (!strcmp(rel2, "/"))
		rel2[0] = 0;
	if (!strcmp(rel1, "/"))
		rel1[0] = 0;
	/* v2 only where its memory controller is enabled for children of our cgroup. */
	snprintf(ctl, sizeof(ctl), "%s%s/cgroup.subtree_control", mnt2, rel2);
	f = mnt2[0] ? fopen(ctl, "r") : NULL;
	if (f && fgets(line, sizeof(line), f) && strstr(line, "memory")) {
		v2 = true;
		snprintf(cg, sizeof(cg), "%s%s/tide-test-%d", mnt2, rel2, (int)getpid());
	} else if (mnt1[0]) {
		snprintf(cg, sizeof(cg), "%s%s/tide-test-%d", mnt1, rel1, (int)getpid());
	}
	if (f)
		fclose(f);
	if (!cg[0] || mkdir(cg, 0755)) {
		cg[0] = 0;
		return -1;
	}
	if (wr(cg, v2 ? "memory.max" : "memory.limit_in_bytes", "67108864")) {
		cleanup();
		return -1;
	}
	if (v2)
		wr(cg, "memory.swap.max", "0");
	else
		wr(cg, "memory.memsw.limit_in_bytes", "67108864");
	snprintf(inner, sizeof(inner), "%s/inner", cg);
	if (v2)
		wr(cg, "cgroup.subtree_control", "+memory");
	if (mkdir(inner, 0755))
		inner[0] = 0;
	return 0;
}

struct trial {
	unsigned flags;
	size_t memory_limit;
	bool nested; /* join a cgroup below the limited one (a pod's limit, a container's group) */
	size_t cached; /* bytes of a file written and synced first: page cache in the cgroup */
	int twist;     /* what happens around create: one of the TWIST_ values */
};

enum {
	TWIST_NONE,
	TWIST_LOWERED, /* the limit is 1 GiB at create, lowered to 64 MiB before the fill */
	TWIST_RAISED,  /* 32 MiB at create, raised to 64 MiB before the fill */
	TWIST_CLOSED,  /* every descriptor above stderr closed after create, numbers reused */
	TWIST_EMFILE,  /* created with no descriptor left */
	TWIST_MOVED,   /* created outside the limited cgroup, moved into it after */
};

/* Set our cgroup's limit (v1: memory+swap too, in the order the kernel accepts); 0 or -1. */
static int set_limit(size_t bytes)
{
	char v[32];
	int err = 0;

	snprintf(v, sizeof(v), "%zu", bytes);
	if (v2)
		return wr(cg, "memory.max", v);
	err = wr(cg, "memory.limit_in_bytes", v); /* refused above memsw when raising */
	wr(cg, "memory.memsw.limit_in_bytes", v); /* refused below memory when lowering */
	return err ? wr(cg, "memory.limit_in_bytes", v) : 0;
}

/* Create the pool the way t->twist says; 0, 77 (cannot set up), or create's error. */
static int create_twisted(const struct trial *t, struct tide_pool_config *cfg,
			  struct tide_pool **pool)
{
	int err, fd, opened = 0;

	if (t->twist == TWIST_LOWERED || t->twist == TWIST_RAISED)
		if (set_limit(t->twist == TWIST_LOWERED ? GiB : 32 * MiB))
			return 77;
	if (t->twist == TWIST_EMFILE) {
		struct rlimit rl = {64, 64};

		if (setrlimit(RLIMIT_NOFILE, &rl))
			return 77;
		while (opened < 64 && open("/dev/null", O_RDONLY) >= 0)
			opened++;
	}
	err = tide_pool_create(cfg, pool);
	if (t->twist == TWIST_EMFILE) {
		printf("cgroup: create with no descriptor left: %d\n", err);
		fflush(stdout);
		if (err)
			return err == -EMFILE ? 0 : 1;
		for (fd = 3; fd < 64; fd++)
			close(fd);
		open("/dev/null", O_RDONLY); /* now it may read: the limit must hold either way */
	}
	if (t->twist == TWIST_LOWERED || t->twist == TWIST_RAISED)
		if (set_limit(LIMIT))
			return 77;
	if (t->twist == TWIST_MOVED) {
		char me[32];

		snprintf(me, sizeof(me), "%d", (int)getpid());
		if (!err && wr(cg, "cgroup.procs", me))
			return 77;
	}
	if (t->twist == TWIST_CLOSED) {
		int pipes[2];

		for (fd = 3; fd < 1024; fd++)
			close(fd);
		for (int i = 0; i < 4; i++)
			if (pipe(pipes))
				return 77; /* the numbers the pool had, now the program's */
	}
	return err;
}

/* Write and sync a file of len bytes next to the test, unlinked at once (the open fd keeps
 * its page cache, charged to our cgroup); the fd, or -1. */
static int page_cache(size_t len)
{
	static char chunk[1 << 20];
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "tide-test-cache-%d", (int)getpid());
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	unlink(path);
	memset(chunk, 'c', sizeof(chunk));
	for (size_t done = 0; done < len; done += sizeof(chunk))
		if (write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk)) {
			close(fd);
			return -1;
		}
	fsync(fd);
	return fd;
}

static int fill_in_cgroup(void *arg)
{
	const struct trial *t = arg;
	struct tide_pool_config cfg = {.max_size = GiB,
				       .flags = TIDE_AUTO_GROW | t->flags,
				       .memory_limit = t->memory_limit};
	struct tide_pool *pool = NULL;
	struct tide_stats st;
	char me[32];
	size_t n = 0;

	snprintf(me, sizeof(me), "%d", (int)getpid());
	if (t->twist != TWIST_MOVED && wr(t->nested ? inner : cg, "cgroup.procs", me))
		return 77;
	if (t->cached && page_cache(t->cached) < 0)
		return 77;
	int err = create_twisted(t, &cfg, &pool);

	if (err)
		return err == 77 ? 77 : 2;
	if (!pool)
		return 0; /* create said -EMFILE: the limit was not lost silently */
	for (; n < 256 * MiB / 2048; n++) {
		char *b = tide_alloc(pool, 2048);

		if (!b)
			break;
		memset(b, 1, 2048);
	}
	tide_pool_stats(pool, &st);
	printf("cgroup: %s%s%s (twist %d): stopped at %zu MiB (alloc_failures %" PRIu64
	       ", os_failures %" PRIu64 ")\n",
	       t->flags ? "populate" : "plain   ", t->nested ? " (limit on the parent)" : "",
	       t->cached ? " (after 40 MiB of page cache)" : "", t->twist, (n * 2048) >> 20,
	       st.alloc_failures, st.os_failures);
	CHECK(n * 2048 >= LIMIT / 2 && n * 2048 < LIMIT);
	if (t->twist == TWIST_RAISED)
		CHECK(n * 2048 >= 40 * MiB); /* past the limit it was created under */
	CHECK(st.alloc_failures >= 1);
	CHECK_EQ(tide_pool_grow(pool, 2 * MiB), -ENOMEM);
	CHECK_POOL(pool);
	tide_pool_destroy(pool);
	fflush(stdout);
	return checks_failed ? 1 : 0;
}

int main(void)
{
	struct trial plain = {0, 0, false, 0, 0}, populate = {TIDE_POPULATE, 0, false, 0, 0},
		     nested = {0, 0, true, 0, 0}, off = {0, TIDE_NO_MEMORY_LIMIT, false, 0, 0},
		     cached = {0, 0, false, 40 * MiB, 0};
	static const char *const twists[] = {
		[TWIST_LOWERED] = "the limit lowered from 1 GiB to 64 MiB after create",
		[TWIST_RAISED] = "the limit raised from 32 MiB to 64 MiB after create",
		[TWIST_CLOSED] = "descriptors 3.. closed after create and reused",
		[TWIST_EMFILE] = "created with no descriptor left",
		[TWIST_MOVED] = "moved into the 64 MiB cgroup after create",
	};
	int rc;

	if (geteuid() != 0)
		skip("needs root to make a memory cgroup");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (make_cgroup())
		skip("no writable memory cgroup (v2 memory controller or v1 memory mount)");
	printf("cgroup: %s, %s, limit 64 MiB\n", v2 ? "v2" : "v1", cg);
	rc = run_in_child(fill_in_cgroup, &plain);
	CHECKF(rc == 0, "plain pool in a 64 MiB cgroup: child returned %d (137: OOM-killed)", rc);
	rc = run_in_child(fill_in_cgroup, &populate);
	CHECKF(rc == 0, "TIDE_POPULATE pool in a 64 MiB cgroup: child returned %d", rc);
	if (inner[0]) {
		rc = run_in_child(fill_in_cgroup, &nested);
		CHECKF(rc == 0, "a pool in a cgroup below the 64 MiB one: child returned %d", rc);
	}
	rc = run_in_child(fill_in_cgroup, &cached);
	if (rc == 77)
		printf("cgroup: no file could be written here: the page cache part skipped\n");
	else
		CHECKF(rc == 0,
		       "a pool in a 64 MiB cgroup holding 40 MiB of clean page cache: child "
		       "returned "
		       "%d (1: refused early, the cache counted as used)",
		       rc);
	for (int k = TWIST_LOWERED; k <= TWIST_MOVED; k++) {
		struct trial twisted = {0, 0, false, 0, k};

		rc = run_in_child(fill_in_cgroup, &twisted);
		set_limit(LIMIT); /* restored whatever the child did */
		printf("cgroup: %s: child returned %d\n", twists[k], rc);
		CHECKF(rc == 0 || rc == 77, "%s: child returned %d (137: OOM-killed)", twists[k],
		       rc);
	}
	rc = run_in_child(fill_in_cgroup, &off);
	printf("cgroup: with TIDE_NO_MEMORY_LIMIT the child returned %d\n", rc);
	CHECKF(rc == 128 + SIGKILL, "with the check off the child should be OOM-killed: %d", rc);
	cleanup();
	return test_exit("test_cgroup");
}
