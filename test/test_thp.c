/* SPDX-License-Identifier: MIT */
/*
 * Description: resident_size tells the truth under transparent huge pages, in every THP
 * mode (never, madvise, always), and what purge gives back stays given back.
 *
 * khugepaged collapses a huge-page-sized range with a few pages present into one huge page
 * again (gperftools #1073, jemalloc #46): with THP "always" (default config) or "madvise"
 * (TIDE_HUGEPAGES with a grow_unit that is not a multiple of 2 MiB, so purge works in
 * 4 KiB pages), a purged pool was refilled and resident_size lied. khugepaged's timing is
 * its own, so this test does its work at once with MADV_COLLAPSE (Linux 6.1), which
 * collapses as khugepaged would and, like it, leaves MADV_NOHUGEPAGE ranges alone.
 *
 * Root only (else 77): for each mode the test writes /sys/kernel/mm/transparent_hugepage/
 * enabled, runs the trials in a child, and puts the old mode back (also on SIGINT/SIGTERM);
 * RUN_SERIAL, the mode is machine-wide. A trial fills 16 MiB of 2 KiB buffers, frees all
 * but one per 64 KiB, lets maintenance purge, collapses the pool's range, and compares
 * resident_size with the kernel's count (mincore): within 10 % (and 256 KiB), and, where
 * the purge works in pages, well under the filled size.
 */
#include <fcntl.h>

#include "pool_helpers.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

#define THP  "/sys/kernel/mm/transparent_hugepage/enabled"
#define FILL (16 * MiB)
#define NBUF (FILL / 2048)
#define HUGE (2 * MiB)

static char saved[32];
static volatile sig_atomic_t changed;
static void *bufs[NBUF];

static int set_mode(const char *mode)
{
	int fd = open(THP, O_WRONLY);
	ssize_t n = fd < 0 ? -1 : write(fd, mode, strlen(mode));

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)strlen(mode) ? 0 : -1;
}

static void restore(void)
{
	if (changed) {
		changed = 0;
		set_mode(saved);
	}
}

static void on_signal(int sig)
{
	restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The mode in brackets of "always [madvise] never". */
static int read_mode(char *out, size_t len)
{
	char buf[128], *a, *b;
	int fd = open(THP, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (!b || (size_t)(b - a - 1) >= len)
		return -1;
	memcpy(out, a + 1, (size_t)(b - a - 1));
	out[b - a - 1] = 0;
	return 0;
}

/* MADV_COLLAPSE works here: a scratch range with one page present collapses. */
static bool collapse_works(void)
{
	char *p = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;
	bool ok;

	if (p == MAP_FAILED)
		return false;
	a = (char *)(((uintptr_t)p + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	a[0] = 1;
	ok = madvise(a, HUGE, MADV_COLLAPSE) == 0;
	munmap(p, 2 * HUGE);
	return ok;
}

struct trial {
	const char *what;
	size_t grow_unit;
	unsigned flags;
	bool page_purge; /* purge works in 4 KiB pages: most of the fill goes back */
};

static int trial(void *arg)
{
	const struct trial *t = arg;
	struct tide_pool_config cfg = {.grow_unit = t->grow_unit,
				       .shrink_delay_ms = 10,
				       .flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | t->flags};
	struct tide_pool *pool;
	struct tide_stats st;
	long long rss, resident, slack;
	char *base;

	REQUIRE(tide_pool_create(&cfg, &pool) == 0);
	REQUIRE(tide_alloc_bulk(pool, bufs, NBUF) == NBUF);
	base = tide_pool_base(pool);
	for (size_t i = 0; i < NBUF; i++)
		memset(bufs[i], 0x3c, 2048);
	for (size_t i = 0; i < NBUF - 1; i++)
		if (i % 32)
			CHECK_EQ(tide_free(pool, bufs[i]), 0);
	tide_pool_flush_cache(pool);
	for (int i = 0; i < 50; i++) { /* bounded: about 10 delays */
		int ms = tide_pool_maintain(pool);

		usleep((useconds_t)(ms > 0 && ms < 20 ? ms : 2) * 1000);
	}
	/* What khugepaged would do, now. NOHUGEPAGE spans are refused: that is the point. */
	for (size_t off = 0; off < FILL; off += HUGE)
		madvise(base + off, HUGE, MADV_COLLAPSE);
	tide_pool_stats(pool, &st);
	rss = mincore_rss(base, st.unreserved_size);
	resident = (long long)st.resident_size;
	slack = resident / 10 > 256 * (long long)KiB ? resident / 10 : 256 * (long long)KiB;
	printf("thp: %-34s purged %6zu KiB; resident_size %6lld KiB, kernel %6lld KiB\n", t->what,
	       (size_t)st.purged_bytes >> 10, resident >> 10, rss >> 10);
	CHECKF(rss >= resident - slack && rss <= resident + slack,
	       "%s: resident_size %lld KiB, the kernel holds %lld KiB", t->what, resident >> 10,
	       rss >> 10);
	if (t->page_purge)
		CHECKF(rss < (long long)FILL / 4, "%s: %lld KiB resident after purge + collapse",
		       t->what, rss >> 10);
	tide_pool_destroy(pool);
	fflush(stdout);
	return checks_failed ? 1 : 0;
}

int main(void)
{
	static const struct trial trials[] = {
		{"default config", 0, 0, true},
		{"TIDE_HUGEPAGES, grow_unit 1 MiB", MiB, TIDE_HUGEPAGES, true},
		{"TIDE_HUGEPAGES, grow_unit 2 MiB", 0, TIDE_HUGEPAGES, false},
	};
	static const char *modes[] = {"never", "madvise", "always"};
	int rc, tried = 0;

	if (geteuid() != 0)
		skip("needs root to switch the THP mode");
	if (read_mode(saved, sizeof(saved)))
		skip("no transparent huge pages (%s)", THP);
	if (access(THP, W_OK))
		skip("%s is read-only here", THP);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		changed = 1;
		if (set_mode(modes[m])) {
			restore();
			skip("cannot write %s", THP);
		}
		if (!collapse_works()) {
			printf("thp: %s: MADV_COLLAPSE does not work here; mode not tried\n",
			       modes[m]);
			continue;
		}
		tried++;
		for (size_t i = 0; i < sizeof(trials) / sizeof(trials[0]); i++) {
			printf("thp: [%s] ", modes[m]);
			rc = run_in_child(trial, (void *)&trials[i]);
			CHECKF(rc == 0, "[%s] %s: child returned %d", modes[m], trials[i].what, rc);
		}
	}
	restore();
	if (!tried)
		skip("MADV_COLLAPSE (Linux 6.1) does not work here in any THP mode");
	return test_exit("test_thp");
}
