/* SPDX-License-Identifier: MIT */
/*
 * process_metrics.c - tide_build_info and the process_* metrics of /metrics.
 *
 * The names and meanings are the Prometheus client libraries' standard process collector
 * (process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_virtual_memory_max_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds), so dashboards made for any exporter work. Values come from
 * /proc/self/stat (CPU ticks, start time in ticks since boot, sizes), /proc/stat (btime,
 * the boot time) and /proc/self/fd (open descriptors), read at scrape time: a scrape is
 * rare, and reading then costs nothing between scrapes.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ops.h"

void relay_write_build_info(FILE *f, const char *version)
{
	fprintf(f,
		"# HELP tide_build_info The running tide-relay's version and build (always 1).\n"
		"# TYPE tide_build_info gauge\n"
		"tide_build_info{version=\"%s\",systemd=\"%s\"} 1\n",
		version ? version : "unknown", relay_notify_available() ? "yes" : "no");
}

struct proc_stat {
	unsigned long long utime, stime, starttime, vsize, rss_pages;
};

/* /proc/self/stat: fields after the command name, which may hold spaces and parentheses. */
static int read_stat(struct proc_stat *ps)
{
	char buf[2048], *p;
	size_t n;
	FILE *f = fopen("/proc/self/stat", "re");

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	/* field 3 (state) is p[2]; utime 14, stime 15, starttime 22, vsize 23, rss 24 */
	if (sscanf(p + 2,
		   "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
		   "%*d %llu %llu %llu",
		   &ps->utime, &ps->stime, &ps->starttime, &ps->vsize, &ps->rss_pages) != 5)
		return -EIO;
	return 0;
}

static long long boot_time(void)
{
	char line[256];
	long long bt = -1;
	FILE *f = fopen("/proc/stat", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "btime %lld", &bt) == 1)
			break;
	fclose(f);
	return bt;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void metric(FILE *f, const char *name, const char *type, const char *help, double v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

int relay_write_process_metrics(FILE *f)
{
	struct proc_stat ps;
	struct rlimit nofile, as;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), fds = open_fds();
	long long bt = boot_time();
	int rc = read_stat(&ps);

	if (rc)
		return rc;
	if (tck <= 0 || page <= 0 || bt < 0 || fds < 0 || getrlimit(RLIMIT_NOFILE, &nofile) ||
	    getrlimit(RLIMIT_AS, &as))
		return -EIO;
	metric(f, "process_cpu_seconds_total", "counter",
	       "Total user and system CPU time spent in seconds.",
	       (double)(ps.utime + ps.stime) / (double)tck);
	metric(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	       (double)ps.rss_pages * (double)page);
	metric(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
	       (double)ps.vsize);
	metric(f, "process_virtual_memory_max_bytes", "gauge",
	       "Maximum amount of virtual memory available in bytes (-1: no limit).",
	       as.rlim_cur == RLIM_INFINITY ? -1.0 : (double)as.rlim_cur);
	metric(f, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
	metric(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
	       nofile.rlim_cur == RLIM_INFINITY ? -1.0 : (double)nofile.rlim_cur);
	metric(f, "process_start_time_seconds", "gauge",
	       "Start time of the process since unix epoch in seconds.",
	       (double)bt + (double)ps.starttime / (double)tck);
	return 0;
}
