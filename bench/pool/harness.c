/* SPDX-License-Identifier: MIT */
/*
 * harness.c - tide-bench: tide against DPDK's mempool and the mallocs, each in its own
 * process.
 *
 * tcmalloc, jemalloc and mimalloc replace malloc process-wide, so every allocator has
 * its own worker executable (tide-bench-<name>, beside this one, built only when its
 * library was found). The harness forks and execs one worker at a time, reads the plain
 * lines it prints (worker.c lists them), and does everything else itself: medians,
 * ratios, tables on stdout, CSV and the burst plot under the output directory, progress
 * on stderr. A worker that does not exist, prints MISSING, fails or outlives its
 * time limit is reported as such and the run goes on.
 *
 *   tide-bench [alloc]   ns per alloc+free pair, one column per workload, ratio to DPDK
 *   tide-bench convert   tide_pool_grow/shrink GiB/s against the same raw system calls
 *   tide-bench burst     resident memory after a 1 GiB burst is freed, and fragmented
 *   tide-bench all       the three, as `make bench` runs them
 *
 * Medians are over --runs runs (default 5); the ratios are of medians from the same
 * invocation, so machine-wide noise hits every allocator alike as far as it can.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "common.h"
#include "in_list.h"

#define MAX_RUNS 64
#define MAX_LINE 512

static const char *const alloc_names[] = {"tide",     "dpdk",	  "tcmalloc",
					  "jemalloc", "mimalloc", "glibc"};
#define NALLOC (sizeof(alloc_names) / sizeof(alloc_names[0]))

static const char *const wl_names[] = {"pairs",	      "batch256",   "bulk256",
				       "random64k",   "prodcon",    "pairs-x2",
				       "batch256-x2", "bulk256-x2", "random64k-x2"};
#define NWL	(sizeof(wl_names) / sizeof(wl_names[0]))
#define NSINGLE 4 /* the first four have an -x2 twin at index + 5 */

static const char *const burst_names[] = {"tide",     "tide-thp", "glibc",
					  "jemalloc", "mimalloc", "tcmalloc"};
#define NBURST (sizeof(burst_names) / sizeof(burst_names[0]))

static unsigned opt_runs = 5;
static unsigned opt_rounds = 1; /* alloc: worker invocations per allocator, round-robin */
static double opt_ms = 250;
static bool opt_quick;
static bool opt_cpu_time; /* --cpu-time: workers time each thread's CPU */
static const char *opt_only;
static const char *opt_workloads;
static const char *opt_csv;
static const char *opt_out = "bench-results";
static unsigned opt_timeout = 600; /* seconds per worker */
static char worker_dir[PATH_MAX];

/* ------------------------------------------------------------- helpers -- */

static void progress(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fflush(stderr);
}

static FILE *open_out(const char *name, const char *override)
{
	char path[PATH_MAX];
	FILE *f;

	if (override)
		snprintf(path, sizeof(path), "%s", override);
	else
		snprintf(path, sizeof(path), "%s/%s", opt_out, name);
	f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "tide-bench: cannot write %s: %s\n", path, strerror(errno));
	else
		progress("writing %s\n", path);
	return f;
}

static void find_workers(const char *argv0)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *env = getenv("TIDE_BENCH_WORKERS");
	char *slash;

	if (env) {
		snprintf(worker_dir, sizeof(worker_dir), "%s", env);
		return;
	}
	if (n > 0)
		self[n] = '\0';
	else
		snprintf(self, sizeof(self), "%s", argv0);
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(self, sizeof(self), ".");
	snprintf(worker_dir, sizeof(worker_dir), "%s", self);
}

/*
 * Run one worker to its end. Each complete stdout line goes to on_line. Returns 0 when
 * it exited 0; otherwise fills why (not built, MISSING ..., exit code, signal, timeout)
 * and returns -1. A worker that prints MISSING is reported as missing, not failed.
 */
typedef void (*line_fn)(const char *line, void *ctx);

static int run_worker(const char *exe, char *const args[], line_fn on_line, void *ctx, char *why,
		      size_t whylen)
{
	char path[PATH_MAX], buf[MAX_LINE * 4], *argv[32];
	size_t have = 0;
	int fds[2], status = 0, argc = 0;
	uint64_t deadline = now_ns() + (uint64_t)opt_timeout * 1000000000ull;
	bool timed_out = false, missing = false;
	pid_t pid;

	snprintf(path, sizeof(path), "%.3000s/tide-bench-%.32s", worker_dir, exe);
	if (access(path, X_OK)) {
		snprintf(why, whylen, "missing (worker not built: library not found at configure)");
		return -1;
	}
	argv[argc++] = path;
	for (int i = 0; args[i] && argc < 31; i++)
		argv[argc++] = args[i];
	argv[argc] = NULL;
	if (pipe2(fds, O_CLOEXEC))
		return snprintf(why, whylen, "pipe: %s", strerror(errno)), -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		execv(path, argv);
		_exit(127);
	}
	close(fds[1]);
	why[0] = '\0';
	for (;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		uint64_t now = now_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000) + 1;
		ssize_t n;
		char *nl;

		if (poll(&pfd, 1, left) == 0) {
			kill(pid, SIGKILL);
			timed_out = true;
			break;
		}
		n = read(fds[0], buf + have, sizeof(buf) - 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		while ((nl = strchr(buf, '\n'))) {
			*nl = '\0';
			if (!strncmp(buf, "MISSING ", 8)) {
				snprintf(why, whylen, "missing (%.180s)", buf + 8);
				missing = true;
			} else if (!strncmp(buf, "FAIL ", 5)) {
				snprintf(why, whylen, "failed (%.180s)", buf + 5);
			} else {
				on_line(buf, ctx);
			}
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have + 1);
		}
		if (have == sizeof(buf) - 1)
			have = 0; /* an absurdly long line: drop it */
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out) {
		snprintf(why, whylen, "failed (timed out after %u s)", opt_timeout);
		return -1;
	}
	if (missing)
		return -1;
	if (WIFSIGNALED(status)) {
		snprintf(why, whylen, "failed (signal %d: %s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
		return -1;
	}
	if (WEXITSTATUS(status) == 127 && !why[0]) {
		snprintf(why, whylen, "missing (cannot exec %.150s)", path);
		return -1;
	}
	if (WEXITSTATUS(status)) {
		if (!why[0])
			snprintf(why, whylen, "failed (exit %d)", WEXITSTATUS(status));
		return -1;
	}
	return 0;
}

/* --------------------------------------------------------------- alloc -- */

struct cell {
	double v[MAX_RUNS];
	unsigned n;
	bool skip;
	double med;
};

struct arow {
	const char *name;
	bool ran;
	bool ok;
	char why[200];
	char info[200];
	struct cell c[NWL];
};

static struct arow arows[NALLOC];

static int wl_index(const char *name)
{
	for (unsigned i = 0; i < NWL; i++)
		if (!strcmp(wl_names[i], name))
			return (int)i;
	return -1;
}

static void alloc_line(const char *line, void *ctx)
{
	struct arow *row = ctx;
	char name[64];
	double v;
	int w;

	if (sscanf(line, "R %63s %lf", name, &v) == 2 && (w = wl_index(name)) >= 0) {
		struct cell *c = &row->c[w];

		if (c->n < MAX_RUNS)
			c->v[c->n++] = v;
		if (c->n == opt_runs * opt_rounds) {
			double tmp[MAX_RUNS];

			memcpy(tmp, c->v, sizeof(double) * c->n);
			progress("  %-9s %-13s %8.2f ns (median of %u)\n", row->name, name,
				 median(tmp, c->n), c->n);
		}
	} else if (sscanf(line, "SKIP %63s", name) == 1 && (w = wl_index(name)) >= 0) {
		row->c[w].skip = true;
	} else if (!strncmp(line, "INFO ", 5)) {
		snprintf(row->info, sizeof(row->info), "%s", line + 5);
	}
}

static double cell_med(const struct arow *row, unsigned w)
{
	const struct cell *c = &row->c[w];

	return row->ok && c->n && !c->skip ? c->med : NAN;
}

static const struct arow *dpdk_row(void)
{
	for (unsigned a = 0; a < NALLOC; a++)
		if (!strcmp(arows[a].name, "dpdk") && arows[a].ran && arows[a].ok)
			return &arows[a];
	return NULL;
}

static void print_alloc(FILE *csv)
{
	const struct arow *d = dpdk_row();
	const struct arow *t = NULL;
	bool any2 = false;

	printf("\n== alloc: ns per alloc+free pair, 2 KiB buffers, median of %u runs of ~%.0f "
	       "ms%s; "
	       "(x) = ratio to DPDK, lower is better ==\n",
	       opt_runs * opt_rounds, opt_ms, opt_rounds > 1 ? " (allocators interleaved)" : "");
	if (opt_cpu_time)
		printf("   --cpu-time: each thread's CPU time, not the wall clock\n");
	printf("   -x2: the same workload on 2 threads at once, ns per pair per thread\n");
	printf("%-9s", "alloc");
	for (unsigned w = 0; w < NWL; w++)
		if (in_list(opt_workloads, wl_names[w]))
			printf(" %16s", wl_names[w]);
	printf("\n");
	for (unsigned a = 0; a < NALLOC; a++) {
		const struct arow *row = &arows[a];

		if (!row->ran)
			continue;
		if (!strcmp(row->name, "tide") && row->ok)
			t = row;
		printf("%-9s", row->name);
		if (!row->ok) {
			printf(" %s\n", row->why);
			continue;
		}
		for (unsigned w = 0; w < NWL; w++) {
			double v = cell_med(row, w), r = d ? cell_med(d, w) : NAN;
			char cellbuf[40];

			if (!in_list(opt_workloads, wl_names[w]))
				continue;
			if (isnan(v))
				snprintf(cellbuf, sizeof(cellbuf), "-");
			else if (isnan(r))
				snprintf(cellbuf, sizeof(cellbuf), "%.1f", v);
			else
				snprintf(cellbuf, sizeof(cellbuf), "%.1f (%.2f)", v, v / r);
			printf(" %16s", cellbuf);
		}
		printf("\n");
	}

	for (unsigned w = 0; w < NSINGLE; w++)
		if (in_list(opt_workloads, wl_names[w + 5]))
			any2 = true;
	if (!any2)
		goto targets;
	printf("\n   2-thread scaling = throughput with 2 threads / with 1 = 2 x (1-thread ns) / "
	       "(2-thread ns per thread); 2.0 is perfect\n");
	printf("%-9s", "alloc");
	for (unsigned w = 0; w < NSINGLE; w++)
		printf(" %12s", wl_names[w]);
	printf("\n");
	for (unsigned a = 0; a < NALLOC; a++) {
		const struct arow *row = &arows[a];

		if (!row->ran || !row->ok)
			continue;
		printf("%-9s", row->name);
		for (unsigned w = 0; w < NSINGLE; w++) {
			double s = 2 * cell_med(row, w) / cell_med(row, w + 5);

			if (isnan(s))
				printf(" %12s", "-");
			else
				printf(" %12.2f", s);
		}
		printf("\n");
	}

targets:
	if (t && d) {
		printf("\n   tide targets (same run):\n");
		for (unsigned w = 0; w < NWL; w++) {
			double v = cell_med(t, w), r = cell_med(d, w);

			if (isnan(v) || isnan(r) || w >= 5)
				continue;
			printf("   %-12s ratio to DPDK %.2f (target <= 1.00): %s", wl_names[w],
			       v / r, v <= r ? "met" : "MISSED");
			if (v > r)
				printf(" by %.0f %% (%.1f ns vs %.1f ns)", (v / r - 1) * 100, v, r);
			printf("\n");
		}
		for (unsigned w = 0; w < NSINGLE; w++) {
			double s = 2 * cell_med(t, w) / cell_med(t, w + 5);

			if (isnan(s))
				continue;
			printf("   %-12s 2-thread scaling %.2f (target >= 1.80): %s\n", wl_names[w],
			       s, s >= 1.8 ? "met" : "MISSED");
		}
	}

	if (!csv)
		return;
	fprintf(csv, "allocator,workload,threads,median_ns_per_pair,ratio_to_dpdk,scaling,status,"
		     "runs_ns\n");
	for (unsigned a = 0; a < NALLOC; a++) {
		const struct arow *row = &arows[a];

		if (!row->ran)
			continue;
		for (unsigned w = 0; w < NWL; w++) {
			const struct cell *c = &row->c[w];
			double v = cell_med(row, w), r = d ? cell_med(d, w) : NAN, s = NAN;

			if (!in_list(opt_workloads, wl_names[w]))
				continue;
			if (w >= 5)
				s = 2 * cell_med(row, w - 5) / v;
			fprintf(csv, "%s,%s,%d,", row->name, wl_names[w], w >= 4 ? 2 : 1);
			if (isnan(v))
				fprintf(csv, ",,,%s,\n",
					!row->ok  ? "missing"
					: c->skip ? "no-bulk-api"
						  : "none");
			else {
				fprintf(csv, "%.3f,", v);
				if (!isnan(r))
					fprintf(csv, "%.3f", v / r);
				fprintf(csv, ",");
				if (!isnan(s))
					fprintf(csv, "%.3f", s);
				fprintf(csv, ",ok,");
				for (unsigned i = 0; i < c->n; i++)
					fprintf(csv, "%s%.3f", i ? ";" : "", c->v[i]);
				fprintf(csv, "\n");
			}
		}
	}
}

static void alloc_bench(void)
{
	char runs[16], ms[32], wl[512];
	char *args[] = {"alloc", "--runs", runs, "--ms", ms, NULL, NULL, NULL, NULL};
	int nargs = 5;
	FILE *csv;

	snprintf(runs, sizeof(runs), "%u", opt_runs);
	snprintf(ms, sizeof(ms), "%.0f", opt_ms);
	snprintf(wl, sizeof(wl), "%s", opt_workloads ? opt_workloads : "");
	if (opt_cpu_time)
		args[nargs++] = "--cpu-time";
	if (opt_workloads) {
		args[nargs++] = "--workloads";
		args[nargs++] = wl;
	}
	for (unsigned a = 0; a < NALLOC; a++) {
		arows[a].name = alloc_names[a];
		arows[a].ran = in_list(opt_only, arows[a].name);
		arows[a].ok = arows[a].ran;
	}
	/* With --rounds, every allocator runs once per round, so load that comes and goes on a
	 * shared machine falls on all of them rather than on whichever ran at the time. */
	for (unsigned round = 0; round < opt_rounds; round++) {
		for (unsigned a = 0; a < NALLOC; a++) {
			struct arow *row = &arows[a];

			if (!row->ran || !row->ok)
				continue;
			progress("[alloc] %s", row->name);
			if (opt_rounds > 1)
				progress(" (round %u/%u)", round + 1, opt_rounds);
			progress(" ...\n");
			row->ok = run_worker(row->name, args, alloc_line, row, row->why,
					     sizeof(row->why)) == 0;
			if (!row->ok)
				progress("  %-9s %s\n", row->name, row->why);
		}
	}
	for (unsigned a = 0; a < NALLOC; a++) {
		for (unsigned w = 0; w < NWL; w++) {
			struct cell *c = &arows[a].c[w];
			double tmp[MAX_RUNS];

			memcpy(tmp, c->v, sizeof(double) * c->n);
			c->med = median(tmp, c->n);
		}
	}
	csv = open_out("alloc.csv", opt_csv);
	print_alloc(csv);
	if (csv)
		fclose(csv);
}

/* ------------------------------------------------------------- convert -- */

#define NCONV 4
static const char *const conv_names[NCONV] = {"plain", "populate", "huge", "huge+populate"};

struct conv {
	double v[NCONV][2][2][MAX_RUNS]; /* config, side (tide, raw), dir (grow, shrink) */
	unsigned n[NCONV][2];
};

static void conv_line(const char *line, void *ctx)
{
	struct conv *cv = ctx;
	char cfg[32], side[8];
	double g, s;

	if (sscanf(line, "C %31s %7s %lf %lf", cfg, side, &g, &s) != 4)
		return;
	for (unsigned c = 0; c < NCONV; c++) {
		unsigned sd = !strcmp(side, "raw"), i;

		if (strcmp(conv_names[c], cfg))
			continue;
		i = cv->n[c][sd];
		if (i >= MAX_RUNS)
			return;
		cv->v[c][sd][0][i] = g;
		cv->v[c][sd][1][i] = s;
		cv->n[c][sd]++;
		if (sd)
			progress("  %-14s run %u: tide %.2f/%.2f, raw %.2f/%.2f GiB/s "
				 "(grow/shrink)\n",
				 cfg, i + 1, cv->v[c][0][0][i], cv->v[c][0][1][i], g, s);
	}
}

static void convert_bench(void)
{
	static struct conv cv;
	char runs[16], why[200];
	char *args[] = {"convert", "--runs", runs, NULL};
	double med[NCONV][2][2];
	FILE *csv;

	/* No peers to interleave with: the rounds become runs. */
	snprintf(runs, sizeof(runs), "%u", opt_runs * opt_rounds);
	progress("[convert] tide, 1 GiB in 2 MiB steps, %u runs per configuration ...\n",
		 opt_runs * opt_rounds);
	if (run_worker("tide", args, conv_line, &cv, why, sizeof(why))) {
		printf("\n== convert: %s ==\n", why);
		return;
	}
	for (unsigned c = 0; c < NCONV; c++)
		for (unsigned s = 0; s < 2; s++)
			for (unsigned d = 0; d < 2; d++)
				med[c][s][d] = median(cv.v[c][s][d], cv.n[c][s]);
	printf("\n== convert: grow then shrink 1 GiB in 2 MiB steps, GiB/s, median of %u runs; "
	       "raw = the same system calls on a scratch range; target ratio >= 0.80 ==\n",
	       opt_runs * opt_rounds);
	printf("   not populated: every page is written after each grow step on both sides\n");
	printf("%-14s %10s %10s %7s   %10s %10s %7s\n", "config", "grow tide", "grow raw", "ratio",
	       "shrink tide", "shrink raw", "ratio");
	for (unsigned c = 0; c < NCONV; c++) {
		double rg = med[c][0][0] / med[c][1][0], rs = med[c][0][1] / med[c][1][1];

		printf("%-14s %10.2f %10.2f %6.2f%s   %10.2f %10.2f %6.2f%s\n", conv_names[c],
		       med[c][0][0], med[c][1][0], rg, rg >= 0.8 ? " " : "!", med[c][0][1],
		       med[c][1][1], rs, rs >= 0.8 ? " " : "!");
	}
	printf("   (! = below the 0.80 target)\n");
	csv = open_out("convert.csv", opt_csv);
	if (!csv)
		return;
	fprintf(csv, "config,direction,tide_gib_s,raw_gib_s,ratio,tide_runs,raw_runs\n");
	for (unsigned c = 0; c < NCONV; c++)
		for (unsigned d = 0; d < 2; d++) {
			fprintf(csv, "%s,%s,%.3f,%.3f,%.3f,", conv_names[c], d ? "shrink" : "grow",
				med[c][0][d], med[c][1][d], med[c][0][d] / med[c][1][d]);
			for (unsigned s = 0; s < 2; s++) {
				for (unsigned i = 0; i < cv.n[c][s]; i++)
					fprintf(csv, "%s%.3f", i ? ";" : "", cv.v[c][s][d][i]);
				fprintf(csv, s ? "\n" : ",");
			}
		}
	fclose(csv);
}

/* --------------------------------------------------------------- burst -- */

#define NSAMPLES 201
#define MiB	 (1024.0 * 1024.0)

struct brow {
	const char *name;
	bool ran;
	bool ok;
	char why[200];
	size_t base, peak, live;
	double alloc_ms, free_ms;
	double t[NSAMPLES];
	size_t rss[NSAMPLES], mapped[NSAMPLES];
	unsigned n;
	bool pool;
	size_t pool_unreserved, pool_resident;
};

static struct brow brows[2][NBURST];

static void burst_line(const char *line, void *ctx)
{
	struct brow *b = ctx;
	double t;
	size_t rss, mapped;

	if (sscanf(line, "BASE %zu", &b->base) == 1 || sscanf(line, "PEAK %zu", &b->peak) == 1 ||
	    sscanf(line, "LIVE %zu", &b->live) == 1 ||
	    sscanf(line, "ALLOC_MS %lf", &b->alloc_ms) == 1 ||
	    sscanf(line, "FREE_MS %lf", &b->free_ms) == 1)
		return;
	if (sscanf(line, "S %lf %zu %zu", &t, &rss, &mapped) == 3 && b->n < NSAMPLES) {
		b->t[b->n] = t;
		b->rss[b->n] = rss;
		b->mapped[b->n] = mapped;
		b->n++;
	} else if (sscanf(line, "POOL unreserved %zu resident %zu", &b->pool_unreserved,
			  &b->pool_resident) == 2) {
		b->pool = true;
	}
}

/* Time of the first sample with RSS back to live + 2 MiB over the baseline; -1 never. */
static double back_ms(const struct brow *b)
{
	for (unsigned k = 0; k < b->n; k++)
		if (b->rss[k] <= b->base + b->live + ((size_t)2 << 20))
			return b->t[k];
	return -1;
}

static double over_base(const struct brow *b, size_t v)
{
	return ((double)v - (double)b->base) / MiB;
}

/* Milliseconds for madvise(MADV_DONTNEED) to give back 1 GiB in 2 MiB steps. */
static double raw_giveback_ms(bool huge)
{
	size_t len = (size_t)1 << 30, unit = (size_t)2 << 20;
	double v[3];

	for (unsigned r = 0; r < 3; r++) {
		char *map = mmap(NULL, len + unit, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		char *p;
		uint64_t t0;

		if (map == MAP_FAILED)
			return NAN;
		p = (char *)(((uintptr_t)map + unit - 1) & ~(uintptr_t)(unit - 1));
		madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		for (size_t off = 0; off < len; off += 4096)
			p[off] = 1;
		t0 = now_ns();
		for (size_t off = 0; off < len; off += unit)
			madvise(p + off, unit, MADV_DONTNEED);
		v[r] = (double)(now_ns() - t0) / 1e6;
		munmap(map, len + unit);
	}
	return median(v, 3);
}

static void write_plot(void)
{
	char path[PATH_MAX];
	FILE *dat, *gp;
	static const char *const cases[2] = {"full", "frag"};

	for (unsigned c = 0; c < 2; c++) {
		snprintf(path, sizeof(path), "%s/burst-%s.dat", opt_out, cases[c]);
		dat = fopen(path, "w");
		if (!dat)
			return;
		for (unsigned a = 0; a < NBURST; a++) {
			const struct brow *b = &brows[c][a];

			fprintf(dat, "# %s\n", b->name);
			if (!b->ok || !b->n)
				fprintf(dat, "0 NaN\n");
			for (unsigned k = 0; b->ok && k < b->n; k++)
				fprintf(dat, "%.2f %.2f\n", b->t[k], over_base(b, b->rss[k]));
			fprintf(dat, "\n\n");
		}
		fclose(dat);
	}
	snprintf(path, sizeof(path), "%s/burst.gp", opt_out);
	gp = fopen(path, "w");
	if (!gp)
		return;
	fprintf(gp, "set terminal pngcairo size 1400,560 font ',10'\n"
		    "set output 'burst.png'\n"
		    "set multiplot layout 1,2 title 'Resident memory after a 1 GiB burst of 2 KiB "
		    "buffers is freed (RSS over the pre-burst baseline)'\n"
		    "set xlabel 'ms after the last free'\nset ylabel 'MiB'\nset grid\n"
		    "set key center right\nset xrange [0:2000]\nset yrange [0:*]\n");
	for (unsigned c = 0; c < 2; c++) {
		bool first = true;

		fprintf(gp, "set title '%s'\n",
			c ? "fragmented: every 100th buffer and the topmost kept (1% live)"
			  : "all buffers freed");
		fprintf(gp, "plot ");
		for (unsigned a = 0; a < NBURST; a++) {
			const struct brow *b = &brows[c][a];

			if (!b->ok || !b->n)
				continue;
			fprintf(gp,
				"%s'burst-%s.dat' index %u using 1:2 with lines lw 2 title '%s'",
				first ? "" : ", \\\n     ", cases[c], a, b->name);
			first = false;
		}
		if (first)
			fprintf(gp, "0 title 'no data'");
		fprintf(gp, "\n");
	}
	fprintf(gp, "unset multiplot\n");
	fclose(gp);
	snprintf(path, sizeof(path), "cd '%s' && gnuplot burst.gp", opt_out);
	if (system(path) != 0)
		fprintf(stderr, "tide-bench: gnuplot failed or is missing: no burst.png\n");
	else
		progress("writing %s/burst.png\n", opt_out);
}

static void burst_bench(void)
{
	double raw4k, rawhuge;
	FILE *csv;

	progress("[burst] raw madvise(MADV_DONTNEED) of 1 GiB ...\n");
	raw4k = raw_giveback_ms(false);
	rawhuge = raw_giveback_ms(true);
	for (unsigned c = 0; c < 2; c++) {
		for (unsigned a = 0; a < NBURST; a++) {
			struct brow *b = &brows[c][a];
			const char *exe =
				!strncmp(burst_names[a], "tide", 4) ? "tide" : burst_names[a];
			char *args[4] = {"burst", NULL, NULL, NULL};
			int n = 1;

			b->name = burst_names[a];
			if (!in_list(opt_only, b->name))
				continue;
			if (c)
				args[n++] = "--frag";
			if (!strcmp(b->name, "tide-thp"))
				args[n++] = "--huge";
			b->ran = true;
			progress("[burst] %s %s ...\n", c ? "fragmented" : "full", b->name);
			b->ok = run_worker(exe, args, burst_line, b, b->why, sizeof(b->why)) == 0 &&
				b->n == NSAMPLES;
			if (!b->ok && !b->why[0])
				snprintf(b->why, sizeof(b->why), "failed (short output)");
			if (!b->ok)
				progress("  %s\n", b->why);
		}
	}

	printf("\n== burst: allocate 1 GiB in 2 KiB buffers, free them all, RSS every 10 ms for "
	       "2 s (MiB over the pre-burst baseline) ==\n");
	printf("   back = first sample with RSS <= baseline + live + 2 MiB (one grow_unit)\n");
	printf("%-9s %9s %8s %9s %10s %12s\n", "alloc", "alloc ms", "free ms", "peak MiB",
	       "back ms", "at 2 s MiB");
	for (unsigned a = 0; a < NBURST; a++) {
		const struct brow *b = &brows[0][a];
		double back;

		if (!b->ran)
			continue;
		if (!b->ok) {
			printf("%-9s %s\n", b->name, b->why);
			continue;
		}
		back = back_ms(b);
		printf("%-9s %9.1f %8.1f %9.1f ", b->name, b->alloc_ms, b->free_ms,
		       over_base(b, b->peak));
		if (back < 0)
			printf("%10s", "never");
		else
			printf("%10.0f", back);
		printf(" %12.1f\n", over_base(b, b->rss[b->n - 1]));
	}
	printf("   raw kernel time to give 1 GiB back, madvise(MADV_DONTNEED) per 2 MiB: "
	       "4 KiB pages %.1f ms, huge pages %.1f ms\n",
	       raw4k, rawhuge);
	for (unsigned a = 0; a < NBURST; a++) {
		const struct brow *b = &brows[0][a];
		bool huge = !strcmp(b->name, "tide-thp");
		double target = 100 + 50 + (huge ? rawhuge : raw4k), back;

		if (strncmp(b->name, "tide", 4) || !b->ran || !b->ok)
			continue;
		back = back_ms(b);
		printf("   %s target = shrink_delay 100 + 50 + raw %.1f = %.0f ms: ", b->name,
		       huge ? rawhuge : raw4k, target);
		if (back >= 0 && back <= target)
			printf("met (back after %.0f ms)\n", back);
		else if (back >= 0)
			printf("MISSED by %.0f ms (back after %.0f ms)\n", back - target, back);
		else
			printf("MISSED (not back within 2 s: %.1f MiB left)\n",
			       over_base(b, b->rss[b->n - 1]));
	}

	printf("\n== burst, fragmented: every 100th buffer and the topmost kept (~10 MiB live), "
	       "the rest freed ==\n");
	printf("%-9s %9s %12s %12s %14s %16s\n", "alloc", "live MiB", "peak MiB", "at 2 s MiB",
	       "pool resident", "pool unreserved");
	for (unsigned a = 0; a < NBURST; a++) {
		const struct brow *b = &brows[1][a];

		if (!b->ran)
			continue;
		if (!b->ok) {
			printf("%-9s %s\n", b->name, b->why);
			continue;
		}
		printf("%-9s %9.1f %12.1f %12.1f", b->name, (double)b->live / MiB,
		       over_base(b, b->peak), over_base(b, b->rss[b->n - 1]));
		if (b->pool)
			printf(" %14.1f %16.1f", (double)b->pool_resident / MiB,
			       (double)b->pool_unreserved / MiB);
		printf("\n");
	}

	csv = open_out("burst.csv", opt_csv);
	if (csv) {
		fprintf(csv, "case,allocator,status,alloc_ms,free_ms,live_mib,peak_mib,back_ms,"
			     "at_2s_mib,pool_resident_mib,pool_unreserved_mib,raw_4k_ms,"
			     "raw_huge_ms\n");
		for (unsigned c = 0; c < 2; c++)
			for (unsigned a = 0; a < NBURST; a++) {
				const struct brow *b = &brows[c][a];

				if (!b->ran)
					continue;
				fprintf(csv, "%s,%s,", c ? "frag" : "full", b->name);
				if (!b->ok) {
					fprintf(csv, "\"%s\",,,,,,,,,%.2f,%.2f\n", b->why, raw4k,
						rawhuge);
					continue;
				}
				fprintf(csv, "ok,%.1f,%.1f,%.2f,%.1f,%.0f,%.1f,", b->alloc_ms,
					b->free_ms, (double)b->live / MiB, over_base(b, b->peak),
					back_ms(b), over_base(b, b->rss[b->n - 1]));
				if (b->pool)
					fprintf(csv, "%.1f,%.1f,", (double)b->pool_resident / MiB,
						(double)b->pool_unreserved / MiB);
				else
					fprintf(csv, ",,");
				fprintf(csv, "%.2f,%.2f\n", raw4k, rawhuge);
			}
		fclose(csv);
	}
	csv = open_out("burst-samples.csv", NULL);
	if (csv) {
		fprintf(csv, "case,allocator,t_ms,rss_over_base_mib,allocator_mapped_mib\n");
		for (unsigned c = 0; c < 2; c++)
			for (unsigned a = 0; a < NBURST; a++) {
				const struct brow *b = &brows[c][a];

				for (unsigned k = 0; b->ok && k < b->n; k++)
					fprintf(csv, "%s,%s,%.2f,%.2f,%.2f\n", c ? "frag" : "full",
						b->name, b->t[k], over_base(b, b->rss[k]),
						(double)b->mapped[k] / MiB);
			}
		fclose(csv);
	}
	write_plot();
}

/* ---------------------------------------------------------------- main -- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tide-bench [alloc|convert|burst|all] [options]\n"
		"  alloc (default)   ns per alloc+free pair against DPDK and the mallocs\n"
		"  convert           tide_pool_grow/shrink against the raw system calls\n"
		"  burst             resident memory after a 1 GiB burst is freed\n"
		"  all               the three in turn (make bench)\n"
		"options:\n"
		"  --quick           3 runs of ~50 ms each\n"
		"  --runs N          runs per measurement (median), default 5\n"
		"  --ms T            target length of one run in ms, default 250\n"
		"  --rounds R        alloc: run every allocator R times round-robin, --runs runs\n"
		"                    each (medians over R x runs); evens out shifting load\n"
		"  --only A[,B]      allocators: tide dpdk tcmalloc jemalloc mimalloc glibc "
		"(burst: tide-thp too)\n"
		"  --workloads W[,W] pairs batch256 bulk256 random64k prodcon, and -x2 variants\n"
		"  --csv PATH        CSV file for this mode (default OUT/<mode>.csv)\n"
		"  --out DIR         output directory, default ./bench-results\n"
		"  --timeout S       seconds before a worker is killed, default 600\n"
		"  --cpu-time        alloc: time each thread's CPU time, not the wall clock (a\n"
		"                    machine shared with other work: waits for the CPU do not "
		"count)\n");
}

/* @s as a whole number in [@min, @max] into @out; false (with a message naming --@opt and
 * what it wants) otherwise. */
static bool parse_uint(const char *opt, const char *s, unsigned long min, unsigned long max,
		       unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (*s == '-' || errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "tide-bench: --%s '%s': want a whole number from %lu to %lu\n", opt,
			s, min, max);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

/* Each name of the comma-separated @list is one of @names (NULL-terminated). */
static bool check_names(const char *opt, const char *list, const char *const *names)
{
	for (const char *p = list; *p;) {
		size_t n = strcspn(p, ",");
		bool known = false;

		for (const char *const *k = names; *k && !known; k++)
			known = strlen(*k) == n && !strncmp(*k, p, n);
		if (!known) {
			fprintf(stderr, "tide-bench: --%s: unknown name '%.*s' (see --help)\n", opt,
				(int)n, p);
			return false;
		}
		p += n + (p[n] == ',');
	}
	return true;
}

/*
 * The command line, with getopt_long: the mode as a plain argument, options anywhere.
 * Returns -1 to go on, or an exit status: 0 after --help, 2 for bad usage.
 */
static int parse_args(int argc, char **argv, const char **mode)
{
	static const struct option opts[] = {
		{"quick", no_argument, NULL, 'q'},
		{"runs", required_argument, NULL, 'n'},
		{"rounds", required_argument, NULL, 'R'},
		{"ms", required_argument, NULL, 'm'},
		{"only", required_argument, NULL, 'o'},
		{"workloads", required_argument, NULL, 'w'},
		{"csv", required_argument, NULL, 'c'},
		{"out", required_argument, NULL, 'O'},
		{"timeout", required_argument, NULL, 't'},
		{"cpu-time", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static const char *const allocators[] = {"tide",     "tide-thp", "dpdk",  "tcmalloc",
						 "jemalloc", "mimalloc", "glibc", NULL};
	bool runs_set = false, ms_set = false;
	char *end;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			opt_quick = true;
			break;
		case 'C':
			opt_cpu_time = true;
			break;
		case 'n':
			if (!parse_uint("runs", optarg, 1, MAX_RUNS, &opt_runs))
				return 2;
			runs_set = true;
			break;
		case 'R':
			if (!parse_uint("rounds", optarg, 1, MAX_RUNS, &opt_rounds))
				return 2;
			break;
		case 'm':
			errno = 0;
			opt_ms = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(opt_ms > 0) || opt_ms > 60000) {
				fprintf(stderr,
					"tide-bench: --ms '%s': want milliseconds above 0, up "
					"to 60000\n",
					optarg);
				return 2;
			}
			ms_set = true;
			break;
		case 'o':
			if (!check_names("only", optarg, allocators))
				return 2;
			opt_only = optarg;
			break;
		case 'w':
			opt_workloads = optarg;
			break;
		case 'c':
			opt_csv = optarg;
			break;
		case 'O':
			opt_out = optarg;
			break;
		case 't':
			if (!parse_uint("timeout", optarg, 1, 86400, &opt_timeout))
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			fprintf(stderr, "tide-bench: %s needs a value (see --help)\n",
				argv[optind - 1]);
			return 2;
		default:
			if (optopt)
				fprintf(stderr, "tide-bench: unknown option '-%c' (see --help)\n",
					optopt);
			else
				fprintf(stderr, "tide-bench: unknown option '%s' (see --help)\n",
					argv[optind - 1]);
			return 2;
		}
	}
	for (; optind < argc; optind++) {
		const char *a = argv[optind];

		if (strcmp(a, "alloc") && strcmp(a, "convert") && strcmp(a, "burst") &&
		    strcmp(a, "all")) {
			fprintf(stderr,
				"tide-bench: unknown mode '%s' (alloc, convert, burst, all)\n", a);
			return 2;
		}
		*mode = a;
	}
	if (opt_quick) {
		if (!runs_set)
			opt_runs = 3;
		if (!ms_set)
			opt_ms = 50;
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *mode = "alloc";
	int rc = parse_args(argc, argv, &mode);

	if (rc >= 0)
		return rc;
	if (opt_runs * opt_rounds > MAX_RUNS) {
		fprintf(stderr, "tide-bench: --runs %u x --rounds %u is %u runs; at most %d\n",
			opt_runs, opt_rounds, opt_runs * opt_rounds, MAX_RUNS);
		return 2;
	}
	if (opt_workloads) {
		for (const char *p = opt_workloads; *p;) {
			char name[64];
			size_t n = strcspn(p, ",");

			snprintf(name, sizeof(name), "%.*s", (int)n, p);
			if (wl_index(name) < 0) {
				fprintf(stderr, "tide-bench: unknown workload %s\n", name);
				return 2;
			}
			p += n + (p[n] == ',');
		}
	}
	if (!strcmp(mode, "all"))
		opt_csv = NULL;
	find_workers(argv[0]);
	if (mkdir(opt_out, 0755) && errno != EEXIST) {
		fprintf(stderr, "tide-bench: cannot create %s: %s\n", opt_out, strerror(errno));
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(mode, "alloc") || !strcmp(mode, "all"))
		alloc_bench();
	if (!strcmp(mode, "convert") || !strcmp(mode, "all"))
		convert_bench();
	if (!strcmp(mode, "burst") || !strcmp(mode, "all"))
		burst_bench();
	return 0;
}
