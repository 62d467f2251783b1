/* SPDX-License-Identifier: MIT */
/*
 * helpers.h - what every test program shares: checks, skip, death tests, and readers of
 * /proc/self/smaps and /proc/self/maps.
 *
 * Checks do not stop the program: a failed CHECK prints file:line and the expression, is
 * counted, and the test goes on so that one run shows every broken sentence; test_exit()
 * turns the count into the exit status (0 pass, 1 fail). skip() exits 77, which CTest reads
 * as "skipped" (a kernel feature or a limit of this machine is missing).
 *
 * Everything here is static inline so that each test includes only what it uses without
 * unused-function warnings.
 */
#ifndef TIDE_TEST_HELPERS_H
#define TIDE_TEST_HELPERS_H

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long checks_run;
static unsigned long checks_failed;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		checks_run++;                                                                      \
		if (!(cond)) {                                                                     \
			checks_failed++;                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

/* Compare two integers and print both values when they differ. */
#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long a_ = (long long)(a), b_ = (long long)(b);                                \
		checks_run++;                                                                      \
		if (a_ != b_) {                                                                    \
			checks_failed++;                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",          \
				__FILE__, __LINE__, #a, #b, a_, b_);                               \
		}                                                                                  \
	} while (0)

/* Like CHECK, with a printf-style message after the expression. */
#define CHECKF(cond, ...)                                                                          \
	do {                                                                                       \
		checks_run++;                                                                      \
		if (!(cond)) {                                                                     \
			checks_failed++;                                                           \
			fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
	} while (0)

/* Stop the whole program at once: a precondition of the test itself did not hold. */
#define REQUIRE(cond)                                                                              \
	do {                                                                                       \
		checks_run++;                                                                      \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                                   \
		}                                                                                  \
	} while (0)

/* The invariant checker of the pool, as a check (needs internal.h). */
#define CHECK_POOL(pool)                                                                           \
	do {                                                                                       \
		char why_[256] = "";                                                               \
		int rc_ = tide_pool_check((pool), why_, sizeof(why_));                             \
		checks_run++;                                                                      \
		if (rc_) {                                                                         \
			checks_failed++;                                                           \
			fprintf(stderr, "%s:%d: tide_pool_check: %d: %s\n", __FILE__, __LINE__,    \
				rc_, why_);                                                        \
		}                                                                                  \
	} while (0)

/* Exit 77: the test cannot run here. Says why on stdout, where ctest -V shows it. */
static inline void __attribute__((noreturn, format(printf, 1, 2))) skip(const char *fmt, ...)
{
	va_list ap;

	printf("SKIP: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(77);
}

/* Print the totals and return the exit status for main. */
static inline int test_exit(const char *name)
{
	printf("%s: %lu checks, %lu failed\n", name, checks_run, checks_failed);
	printf("%s: %lu passed, %lu failed\n", name, checks_run - checks_failed, checks_failed);
	return checks_failed ? 1 : 0;
}

/* ------------------------------------------------------------- random -- */

/* xorshift64*: small, fast, reproducible from a printed seed. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform-enough value in [0, n). */
static inline uint64_t rng_below(uint64_t *s, uint64_t n)
{
	return n ? rng_next(s) % n : 0;
}

/* The seed from TIDE_SEED, or a fixed default so runs repeat. */
static inline uint64_t test_seed(uint64_t dflt)
{
	const char *env = getenv("TIDE_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : dflt;

	return seed ? seed : 1;
}

/* True when running under Valgrind: tests scale their random steps down there. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TEST_HAVE_VALGRIND_H 1
#endif
#endif
static inline bool under_valgrind(void)
{
#ifdef TEST_HAVE_VALGRIND_H
	return RUNNING_ON_VALGRIND;
#else
	const char *preload = getenv("LD_PRELOAD");

	return preload && strstr(preload, "valgrind");
#endif
}

/*
 * True under a user-mode emulator (the arm64 stage runs the unit tests under qemu-user with
 * TIDE_EMULATOR set): it keeps its own map of guest memory, so residency (mincore on
 * PROT_NONE ranges, RSS) and address-space limits are the emulator's, not the kernel's.
 */
static inline bool under_emulator(void)
{
	return getenv("TIDE_EMULATOR") != NULL;
}

/* A residency check: skipped under an emulator (see under_emulator()). */
#define CHECK_RSS(a, b)                                                                            \
	do {                                                                                       \
		if (!under_emulator())                                                             \
			CHECK_EQ(a, b);                                                            \
	} while (0)

/* ---------------------------------------------------------- death test -- */

/*
 * Run fn(arg) in a child process and report whether the child died of signal sig.
 * Under Valgrind it answers true without running: memcheck reports the faulting touch as
 * an error of its own. The child puts the default action back on sig (the sanitizers install their
 * own handlers) and turns core dumps off, so a death is quick and quiet.
 */
static unsigned long deaths_skipped; /* under Valgrind, which reports the touch itself */

static inline bool expect_death(void (*fn)(void *), void *arg, int sig)
{
	pid_t pid;
	int status;

	if (under_valgrind()) {
		if (!deaths_skipped++)
			printf("death checks skipped under Valgrind (the sanitizer run has "
			       "them)\n");
		return true;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		struct rlimit no_core = {0, 0};
		struct sigaction sa;

		setrlimit(RLIMIT_CORE, &no_core);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		sigemptyset(&sa.sa_mask);
		sigaction(sig, &sa, NULL);
		fn(arg);
		_exit(0); /* survived: the caller sees an exit, not the signal */
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return false;
	if (WIFSIGNALED(status) && WTERMSIG(status) == sig)
		return true;
	if (WIFSIGNALED(status))
		fprintf(stderr, "expect_death: child died of signal %d, expected %d\n",
			WTERMSIG(status), sig);
	else
		fprintf(stderr, "expect_death: child exited with %d, expected signal %d\n",
			WEXITSTATUS(status), sig);
	return false;
}

/* Run fn(arg) in a child process and report whether it returned normally. */
static inline bool child_survives(void (*fn)(void *), void *arg)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		fn(arg);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * Run fn(arg) in a child process; return its exit status (0..255), or 128 + signal when it
 * died of one, or -1 when fork failed. For work that must not touch the parent (rlimits).
 */
static inline int run_in_child(int (*fn)(void *), void *arg)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit no_core = {0, 0};

		setrlimit(RLIMIT_CORE, &no_core);
		fflush(NULL);
		_exit(fn(arg));
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* ------------------------------------------------------- /proc readers -- */

/*
 * Resident bytes of the mappings that overlap [addr, addr + len), from /proc/self/smaps.
 * smaps counts per mapping (VMA): a mapping that only partly overlaps the range is counted
 * whole, so callers pass ranges that match mappings (the pool splits its range at the
 * boundary by protection). Returns -1 when smaps cannot be read.
 */
static inline long long smaps_rss(const void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len;
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;
	long long rss = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long a, b, kb;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &a, &b, perms) == 3) {
			in = a < hi && b > lo;
			continue;
		}
		if (in && sscanf(line, "Rss: %llu kB", &kb) == 1)
			rss += (long long)kb * 1024;
	}
	fclose(f);
	return rss;
}

/*
 * Resident bytes in [addr, addr + len), page by page from mincore(): exact where
 * smaps_rss() counts whole mappings. addr must be page aligned. -1 on error.
 */
static inline long long mincore_rss(const void *addr, size_t len)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t n = (len + page - 1) / page;
	unsigned char *vec = malloc(n ? n : 1);
	long long rss = 0;

	if (!vec)
		return -1;
	if (mincore((void *)addr, len, vec)) {
		free(vec);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (vec[i] & 1)
			rss += (long long)page;
	free(vec);
	return rss;
}

/*
 * True when some mapping of this process overlaps [addr, addr + len), per /proc/self/maps.
 * On a read error it answers true (the caller's "nothing is mapped" check then fails loudly).
 */
static inline bool maps_any_mapped(const void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	if (!f)
		return true;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long a, b;

		if (sscanf(line, "%llx-%llx", &a, &b) == 2 && a < hi && b > lo)
			found = true;
	}
	fclose(f);
	return found;
}

/* The resident set in bytes (VmRSS) of process pid, 0 for this one; -1 on error. */
static inline long long pid_rss(pid_t pid)
{
	char path[64], line[256];
	long long kb = -1;
	FILE *f;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/status");
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* This process's resident set in bytes (VmRSS), or -1. */
static inline long long self_rss(void)
{
	return pid_rss(0);
}

/* A field of /proc/self/status in bytes ("VmSize", "VmData", ...), or -1. */
static inline long long self_status_bytes(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t n = strlen(field);
	long long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':') {
			kb = strtoll(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

/* True when built with AddressSanitizer (its allocator keeps a large VM). */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

/* ------------------------------------------------------------- children -- */

/*
 * Wait for child pid at most seconds; a child still running then is killed (SIGKILL, with
 * its process group if it leads one: its own children must not outlive it and hold the
 * test's output open) and reaped. Returns its wait status, or -1 when it had to be killed.
 */
static inline int wait_child(pid_t pid, double seconds)
{
	struct timespec tick = {0, 5 * 1000 * 1000};
	int status;

	for (double waited = 0; waited < seconds; waited += 0.005) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			return status;
		if (r < 0 && errno != EINTR)
			return -1;
		nanosleep(&tick, NULL);
	}
	kill(-pid, SIGKILL); /* its process group, when the child made one (setpgid) */
	kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* Run fn(arg) in a child, waited for at most seconds: its wait status, or -1 (hung, killed). */
static inline int fork_and_wait(int (*fn)(void *), void *arg, double seconds)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int rc = fn(arg);

		fflush(NULL);
		_exit(rc);
	}
	return wait_child(pid, seconds);
}

#endif /* TIDE_TEST_HELPERS_H */
