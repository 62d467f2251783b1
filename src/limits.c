/* SPDX-License-Identifier: MIT */
/*
 * limits.c - the memory limit the pool grows under.
 *
 * In a container the kernel's answer to "too much memory" is not a refused mmap but the
 * OOM killer, at the first touch of a page past the cgroup's limit: a pool that only asks
 * the OS would never see -ENOMEM, its process would just die (gVisor #2520, Kubernetes
 * #114142). So at create the pool finds the limit it runs under, and every grow checks that
 * the memory in use plus the grow plus a headroom stays under it, or refuses with -ENOMEM
 * while the process can still act on it.
 *
 * Which limit (tide_pool_config.memory_limit):
 *  - 0 (default): the memory cgroup of the process at create, found through
 *    /proc/self/cgroup and /proc/self/mountinfo: cgroup v2 memory.max and memory.high (the
 *    lower; high throttles, then the OOM killer follows), v1 memory.limit_in_bytes, at its
 *    own level and each ancestor up to the mount's root (the tightest counts). The memory
 *    in use is the cgroup's working set at the level of the limit, so other processes of
 *    the cgroup count too: its count (memory.current, memory.usage_in_bytes) less its
 *    inactive file pages (memory.stat inactive_file, v1 total_inactive_file), the rule of
 *    the kubelet and cAdvisor. The count includes page cache, which the kernel reclaims
 *    before it kills anyone: a process that wrote a large file would otherwise see itself
 *    at its limit with most of it free (kumomta #549, moby #21759). Active file pages still
 *    count (the kernel may not give them up quickly). No limit found: no check.
 *  - TIDE_NO_MEMORY_LIMIT: no check.
 *  - any other value: a limit on this process's resident memory (/proc/self/statm).
 * Headroom: a sixteenth of the limit, between 1 MiB and 256 MiB, for what the process
 * touches besides the pool between two grows. The usage files are kept open (two preads
 * per level per grow); nothing is read when there is no limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NO_LIMIT ((size_t)1 << 60) /* v1 says 2^63 rounded to a page for "none" */

static size_t headroom_of(size_t limit)
{
	size_t h = limit / 16;

	return h < MiB ? MiB : h > 256 * MiB ? 256 * MiB : h;
}

/* Read a decimal value (or "max") from dir/name; NO_LIMIT for "max" or a missing file. */
static size_t read_value(const char *dir, const char *name)
{
	char path[PATH_MAX], buf[64];
	ssize_t n;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return NO_LIMIT;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NO_LIMIT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NO_LIMIT;
	buf[n] = 0;
	if (!strncmp(buf, "max", 3))
		return NO_LIMIT;
	return (size_t)strtoull(buf, NULL, 10);
}

static int open_in(const char *dir, const char *name)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC);
}

static void add_level(struct tide_pool *pool, size_t limit, const char *dir, const char *usage,
		      bool v2)
{
	int fd;

	if (limit >= NO_LIMIT || pool->nlimits >= MEM_LIMIT_LEVELS)
		return;
	fd = open_in(dir, usage);
	if (fd < 0)
		return;
	/* Without memory.stat the whole count is taken as used: stricter, never looser. */
	pool->limits[pool->nlimits] = (struct mem_limit){
		.limit = limit, .fd = fd, .stat_fd = open_in(dir, "memory.stat"), .v2 = v2};
	pool->nlimits++;
}

/* Walk from the cgroup directory dir up to the mount point mnt, adding each limit found. */
static void walk_up(struct tide_pool *pool, char *dir, size_t mnt_len, bool v2)
{
	for (;;) {
		if (v2) {
			size_t max = read_value(dir, "memory.max"),
			       high = read_value(dir, "memory.high");

			add_level(pool, max < high ? max : high, dir, "memory.current", true);
		} else {
			add_level(pool, read_value(dir, "memory.limit_in_bytes"), dir,
				  "memory.usage_in_bytes", false);
		}
		char *slash = strrchr(dir, '/');

		if (strlen(dir) <= mnt_len || !slash || (size_t)(slash - dir) < mnt_len)
			return;
		*slash = 0;
	}
}

/* The cgroup path of this process in the v2 hierarchy or the v1 memory one; 0 or -1. */
static int own_cgroup(bool v2, char *out, size_t len)
{
	char line[PATH_MAX + 64];
	FILE *f = fopen("/proc/self/cgroup", "re");
	int ret = -1;

	while (f && ret && fgets(line, sizeof(line), f)) {
		char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;

		if (!path)
			continue;
		*path++ = 0;
		path[strcspn(path, "\n")] = 0;
		ctl++;
		if (v2 ? !strcmp(line, "0") && !*ctl : (strstr(ctl, "memory") != NULL)) {
			snprintf(out, len, "%s", path);
			ret = 0;
		}
	}
	if (f)
		fclose(f);
	return ret;
}

/* The mount point and root of the v2 hierarchy, or of the v1 one with memory; 0 or -1. */
static int cgroup_mount(bool v2, char *mnt, char *root, size_t len)
{
	char line[2 * PATH_MAX];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int ret = -1;

	while (f && ret && fgets(line, sizeof(line), f)) {
		char r[PATH_MAX], mp[PATH_MAX], fs[64], opts[512];
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", r, mp) != 2 ||
		    sscanf(dash + 3, "%63s %*s %511s", fs, opts) != 2)
			continue;
		if (v2 ? !strcmp(fs, "cgroup2") : !strcmp(fs, "cgroup") && strstr(opts, "memory")) {
			snprintf(mnt, len, "%s", mp);
			snprintf(root, len, "%s", r);
			ret = 0;
		}
	}
	if (f)
		fclose(f);
	return ret;
}

static void detect(struct tide_pool *pool, bool v2)
{
	char mnt[PATH_MAX], root[PATH_MAX], path[PATH_MAX], dir[2 * PATH_MAX];
	const char *rel;

	if (cgroup_mount(v2, mnt, root, sizeof(mnt)) || own_cgroup(v2, path, sizeof(path)))
		return;
	rel = path;
	if (strcmp(root, "/") && !strncmp(path, root, strlen(root)))
		rel = path + strlen(root); /* the mount shows a subtree (a cgroup namespace) */
	snprintf(dir, sizeof(dir), "%s%s", mnt, strcmp(rel, "/") ? rel : "");
	walk_up(pool, dir, strlen(mnt), v2);
}

int limits_init(struct tide_pool *pool, size_t memory_limit)
{
	pool->nlimits = 0;
	if (memory_limit == TIDE_NO_MEMORY_LIMIT)
		return 0;
	if (memory_limit) {
		int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return -ENOMEM;
		pool->limits[0] = (struct mem_limit){
			.limit = memory_limit, .fd = fd, .stat_fd = -1, .statm = true};
		pool->nlimits = 1;
		return 0;
	}
	detect(pool, true);
	detect(pool, false);
	return 0;
}

void limits_exit(struct tide_pool *pool)
{
	for (unsigned i = 0; i < pool->nlimits; i++) {
		close(pool->limits[i].fd);
		if (pool->limits[i].stat_fd >= 0)
			close(pool->limits[i].stat_fd);
	}
	pool->nlimits = 0;
}

/* The cgroup's inactive file pages (reclaimable page cache) in bytes; 0 when unknown. */
static size_t inactive_file(const struct mem_limit *l)
{
	const char *key = l->v2 ? "inactive_file " : "total_inactive_file ";
	char buf[8192]; /* memory.stat: about 1.5 KiB in v1, 3 KiB in v2 */
	ssize_t n;
	char *at;

	if (l->stat_fd < 0 || (n = pread(l->stat_fd, buf, sizeof(buf) - 1, 0)) <= 0)
		return 0;
	buf[n] = 0;
	for (at = buf; at; at = strchr(at, '\n'), at = at ? at + 1 : NULL)
		if (!strncmp(at, key, strlen(key)))
			return (size_t)strtoull(at + strlen(key), NULL, 10);
	return 0;
}

/* Bytes in use at one level: the cgroup's working set, or this process's resident set. */
static bool usage_of(const struct mem_limit *l, size_t page, size_t *usage)
{
	char buf[128];
	ssize_t n = pread(l->fd, buf, sizeof(buf) - 1, 0);
	unsigned long long size, resident;

	if (n <= 0)
		return false;
	buf[n] = 0;
	if (!l->statm) {
		size_t count = (size_t)strtoull(buf, NULL, 10), cache = inactive_file(l);

		*usage = count > cache ? count - cache : 0;
		return true;
	}
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return false;
	*usage = (size_t)resident * page;
	return true;
}

int limits_check(struct tide_pool *pool, size_t len)
{
	for (unsigned i = 0; i < pool->nlimits; i++) {
		const struct mem_limit *l = &pool->limits[i];
		size_t usage, room = l->limit - headroom_of(l->limit);

		if (l->limit < headroom_of(l->limit) + len)
			return -ENOMEM;
		if (usage_of(l, pool->page_size, &usage) && usage > room - len)
			return -ENOMEM;
	}
	return 0;
}
