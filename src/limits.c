/* SPDX-License-Identifier: MIT */
/*
 * limits.c - the memory limit the pool grows under.
 *
 * In a container the kernel's answer to "too much memory" is not a refused mmap but the
 * OOM killer, at the first touch of a page past the cgroup's limit: a pool that only asks
 * the OS would never see -ENOMEM, its process would just die (gVisor #2520, Kubernetes
 * #114142). So every grow checks that the memory in use plus the grow plus a headroom stays
 * under the limit, or refuses with -ENOMEM while the process can still act on it.
 *
 * Which limit (tide_pool_config.memory_limit):
 *  - 0 (default): the memory cgroup the process is in at the grow, found through
 *    /proc/self/cgroup under the cgroup mounts of /proc/self/mountinfo (read at create):
 *    cgroup v2 memory.max and memory.high (the lower; high throttles, then the OOM killer
 *    follows), v1 memory.limit_in_bytes, at its own level and each ancestor up to the
 *    mount's root (the tightest counts). The memory in use is the cgroup's working set at
 *    the level of the limit, so other processes of the cgroup count too: its count
 *    (memory.current, memory.usage_in_bytes) less its inactive file pages (memory.stat
 *    inactive_file, v1 total_inactive_file), the rule of the kubelet and cAdvisor. The
 *    count includes page cache, which the kernel reclaims before it kills anyone: a process
 *    that wrote a large file would otherwise see itself at its limit with most of it free
 *    (kumomta #549, moby #21759). Active file pages still count. No limit: no check.
 *  - TIDE_NO_MEMORY_LIMIT: no check.
 *  - any other value: a limit on this process's resident memory (/proc/self/statm).
 * Headroom: a sixteenth of the limit, between 1 MiB and 256 MiB, for what the process
 * touches besides the pool between two grows.
 *
 * Everything is read at the grow (a grow is the slow path: a few small files per level),
 * nothing is kept open: a limit changed at run time (docker update, an in-place pod resize)
 * counts from the next grow; a fork child reads its own /proc/self and its own cgroup (it
 * may have been moved); a daemon that closes every descriptor after setup, or a program at
 * its descriptor limit, loses nothing. A read that fails while a limit applied at the last
 * read fails safe: it counts in os_failures and the grow is allowed only within the room
 * left at that read (less what grew since). Create reads once, and fails (-EMFILE, -ENFILE,
 * -ENOMEM) when it cannot tell whether a limit applies.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define NO_LIMIT ((size_t)1 << 60) /* v1 says 2^63 rounded to a page for "none" */

static size_t headroom_of(size_t limit)
{
	size_t h = limit / 16;

	return h < MiB ? MiB : h > 256 * MiB ? 256 * MiB : h;
}

/* Read up to len - 1 bytes of dir/name (dir may be NULL), NUL-terminated; bytes or -errno. */
static ssize_t read_file(const char *dir, const char *name, char *buf, size_t len)
{
	char path[PATH_MAX];
	ssize_t n, got = 0;
	int fd;

	if ((size_t)snprintf(path, sizeof(path), "%s%s%s", dir ? dir : "", dir ? "/" : "", name) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while ((size_t)got < len - 1 && (n = read(fd, buf + got, len - 1 - (size_t)got)) > 0)
		got += n;
	n = n < 0 ? -errno : got;
	close(fd);
	if (n >= 0)
		buf[n] = 0;
	return n;
}

/* A missing file (no such controller file at this level) is "no limit"; else -errno. */
static bool missing(ssize_t err)
{
	return err == -ENOENT || err == -ENOTDIR || err == -EACCES || err == -ENAMETOOLONG;
}

/* The decimal value (or "max") of dir/name into *v: NO_LIMIT when "max" or missing. */
static int read_value(const char *dir, const char *name, size_t *v)
{
	char buf[64];
	ssize_t n = read_file(dir, name, buf, sizeof(buf));

	if (n < 0 && !missing(n))
		return (int)n;
	*v = n <= 0 || !strncmp(buf, "max", 3) ? NO_LIMIT : (size_t)strtoull(buf, NULL, 10);
	return 0;
}

/* The cgroup's inactive file pages (reclaimable page cache) in bytes; 0 when unknown. */
static size_t inactive_file(const char *dir, bool v2)
{
	const char *key = v2 ? "inactive_file " : "total_inactive_file ";
	char buf[8192]; /* memory.stat: about 1.5 KiB in v1, 3 KiB in v2 */

	if (read_file(dir, "memory.stat", buf, sizeof(buf)) <= 0)
		return 0; /* without memory.stat all the count is taken as used: stricter */
	for (char *at = buf; at; at = strchr(at, '\n'), at = at ? at + 1 : NULL)
		if (!strncmp(at, key, strlen(key)))
			return (size_t)strtoull(at + strlen(key), NULL, 10);
	return 0;
}

/* Lower *room to what may grow under limit with usage in use. */
static void take_room(size_t *room, size_t limit, size_t usage)
{
	size_t avail = limit - headroom_of(limit);

	if (limit < headroom_of(limit) || usage >= avail)
		avail = 0;
	else
		avail -= usage;
	if (avail < *room)
		*room = avail;
}

/* One cgroup level: its limit and, when it has one, its working set; 0 or -errno. */
static int level_room(const char *dir, bool v2, size_t *room)
{
	size_t limit, high = NO_LIMIT, count, cache;
	char buf[64];
	ssize_t n;
	int err;

	err = read_value(dir, v2 ? "memory.max" : "memory.limit_in_bytes", &limit);
	if (!err && v2)
		err = read_value(dir, "memory.high", &high);
	if (err)
		return err;
	if (high < limit)
		limit = high;
	if (limit >= NO_LIMIT)
		return 0;
	n = read_file(dir, v2 ? "memory.current" : "memory.usage_in_bytes", buf, sizeof(buf));
	if (n <= 0)
		return n < 0 ? (int)n : -EIO; /* a limit whose usage cannot be read */
	count = (size_t)strtoull(buf, NULL, 10);
	cache = inactive_file(dir, v2);
	take_room(room, limit, count > cache ? count - cache : 0);
	return 0;
}

/* The cgroup path of this process in the v2 hierarchy or the v1 memory one; -errno. */
static int own_cgroup(bool v2, char *out, size_t len)
{
	char buf[8192];
	ssize_t n = read_file(NULL, "/proc/self/cgroup", buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *ctl = strchr(line, ':'), *path = ctl ? strchr(ctl + 1, ':') : NULL;

		if (!path)
			continue;
		*path++ = 0;
		ctl++;
		if (v2 ? !strcmp(line, "0") && !*ctl : (strstr(ctl, "memory") != NULL)) {
			snprintf(out, len, "%s", path);
			return 0;
		}
	}
	return -ENOENT;
}

/* Walk from this process's cgroup up to the mount's root, lowering *room; 0 or -errno. */
static int cgroup_room(const struct mem_limits *m, bool v2, size_t *room)
{
	char path[PATH_MAX], dir[2 * PATH_MAX];
	const char *rel, *root = m->root[v2];
	size_t mnt_len = strlen(m->mnt[v2]);
	int err = own_cgroup(v2, path, sizeof(path));

	if (err)
		return err == -ENOENT ? 0 : err; /* not in this hierarchy */
	rel = path;
	if (strcmp(root, "/") && !strncmp(path, root, strlen(root)))
		rel = path + strlen(root); /* the mount shows a subtree (a cgroup namespace) */
	snprintf(dir, sizeof(dir), "%s%s", m->mnt[v2], strcmp(rel, "/") ? rel : "");
	for (;;) {
		char *slash = strrchr(dir, '/');

		err = level_room(dir, v2, room);
		if (err)
			return err;
		if (strlen(dir) <= mnt_len || !slash || (size_t)(slash - dir) < mnt_len)
			return 0;
		*slash = 0;
	}
}

/* What may grow under the resident-memory limit; 0 or -errno. */
static int rss_room(const struct mem_limits *m, size_t page, size_t *room)
{
	char buf[128];
	unsigned long long size, resident;
	ssize_t n = read_file(NULL, "/proc/self/statm", buf, sizeof(buf));

	if (n < 0)
		return (int)n;
	if (sscanf(buf, "%llu %llu", &size, &resident) != 2)
		return -EIO;
	take_room(room, m->rss_limit, (size_t)resident * page);
	return 0;
}

/* What may grow now under every limit (SIZE_MAX: none applies); 0 or -errno. */
static int read_room(const struct mem_limits *m, size_t page, size_t *room)
{
	int err = 0;

	*room = SIZE_MAX;
	if (m->rss_limit)
		return rss_room(m, page, room);
	for (int v2 = 1; v2 >= 0 && !err; v2--)
		if (m->mnt[v2])
			err = cgroup_room(m, v2, room);
	return err;
}

/* The mount point and root of the v2 hierarchy and of the v1 one with memory; -errno. */
static int cgroup_mounts(struct mem_limits *m)
{
	char line[2 * PATH_MAX];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return missing(-errno) ? 0 : -errno; /* no /proc: no limit can be found */
	while (fgets(line, sizeof(line), f)) {
		char r[PATH_MAX], mp[PATH_MAX], fs[64], opts[512];
		char *dash = strstr(line, " - ");
		int v2;

		if (!dash || sscanf(line, "%*s %*s %*s %4095s %4095s", r, mp) != 2 ||
		    sscanf(dash + 3, "%63s %*s %511s", fs, opts) != 2)
			continue;
		v2 = !strcmp(fs, "cgroup2");
		if ((!v2 && (strcmp(fs, "cgroup") || !strstr(opts, "memory"))) || m->mnt[v2])
			continue;
		m->mnt[v2] = strdup(mp);
		m->root[v2] = strdup(r);
		if (!m->mnt[v2] || !m->root[v2]) {
			fclose(f);
			return -ENOMEM;
		}
	}
	fclose(f);
	return 0;
}

int limits_init(struct tide_pool *pool, size_t memory_limit)
{
	struct mem_limits *m = &pool->limits;
	size_t room;
	int err;

	*m = (struct mem_limits){.off = memory_limit == TIDE_NO_MEMORY_LIMIT};
	if (m->off)
		return 0;
	if (memory_limit)
		m->rss_limit = memory_limit;
	else if ((err = cgroup_mounts(m)))
		goto fail;
	err = read_room(m, pool->page_size, &room);
	if (err == -EMFILE || err == -ENFILE || err == -ENOMEM)
		goto fail;
	if (err && m->rss_limit) { /* no /proc/self/statm: the limit cannot be kept */
		err = -ENOMEM;
		goto fail;
	}
	m->known = !err && room != SIZE_MAX;
	m->room = room;
	return 0;
fail:
	limits_exit(pool);
	return err;
}

void limits_exit(struct tide_pool *pool)
{
	for (int v2 = 0; v2 < 2; v2++) {
		free(pool->limits.mnt[v2]);
		free(pool->limits.root[v2]);
		pool->limits.mnt[v2] = pool->limits.root[v2] = NULL;
	}
}

int limits_check(struct tide_pool *pool, size_t len)
{
	struct mem_limits *m = &pool->limits;
	size_t room;

	if (m->off)
		return 0;
	if (read_room(m, pool->page_size, &room)) {
		/* Fail safe: within what was left at the last read, less what grew since. */
		if (m->known && len > m->room)
			return -ENOMEM; /* counted in os_failures by the grow */
		atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
		if (m->known)
			m->room -= len;
		return 0;
	}
	m->known = room != SIZE_MAX;
	m->room = room;
	if (len > room)
		return -ENOMEM;
	m->room = room - len;
	return 0;
}
