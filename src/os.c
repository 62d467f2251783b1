/* SPDX-License-Identifier: MIT */
/*
 * os.c - the only file that talks to the kernel about memory.
 *
 * The pool needs six things from the OS: reserve a range (address space, no memory),
 * commit part of it (make it read/write), decommit (give pages back and make it
 * inaccessible again), purge (give pages back but keep it read/write), and the optional
 * huge page, populate and lock advice. Each is one or two system calls here, each call
 * counts as one "OS call", and a test can make the Nth call fail with a chosen errno
 * (SQLite's fault-injecting malloc, mimalloc's prim layer). Nothing here keeps state but
 * that switch, so every function is safe from any thread.
 *
 * Reserved memory is PROT_NONE + MAP_NORESERVE: it costs no RSS and no commit charge,
 * and touching it faults. Commit is mprotect(READ|WRITE); the kernel charges the commit
 * then (under vm.overcommit_memory=2, where MAP_NORESERVE is ignored) and backs pages at
 * first touch (or at once with populate). Decommit maps a fresh PROT_NONE, MAP_NORESERVE
 * range over the old one (MAP_FIXED): that drops the pages and the commit charge in one
 * call, where madvise(MADV_DONTNEED) + mprotect(PROT_NONE) would keep the charge (glibc's
 * heap trimming does the same; jemalloc #193). A stray touch then faults.
 *
 * The metadata mapping is read-only zero pages until committed: a private read-only
 * mapping is not charged either, and reading it (the checker, a racing bad free) sees
 * zeros instead of faulting. Its decommit maps fresh read-only pages over the range.
 * os_protect (PROT_NONE, pages kept) is for a reset (reset.c), whose next grow reuses them.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static _Atomic unsigned long os_calls;
static _Atomic unsigned long fault_at; /* 0: off; else the os_calls value that fails */
static _Atomic int fault_err;
static _Atomic bool fault_persistent;

void tide_os_fault_set(unsigned long nth, int err, bool persistent)
{
	atomic_store(&fault_err, err > 0 ? err : -err);
	atomic_store(&fault_persistent, persistent);
	atomic_store(&fault_at, nth ? atomic_load(&os_calls) + nth : 0);
}

unsigned long tide_os_calls(void)
{
	return atomic_load(&os_calls);
}

/* Count one OS call; a negative errno when the fault switch says this one fails. */
static int os_call(void)
{
	unsigned long n = atomic_fetch_add_explicit(&os_calls, 1, memory_order_relaxed) + 1;
	unsigned long at = atomic_load_explicit(&fault_at, memory_order_relaxed);

	if (likely(at == 0) || n < at)
		return 0;
	if (n == at || atomic_load_explicit(&fault_persistent, memory_order_relaxed))
		return -atomic_load_explicit(&fault_err, memory_order_relaxed);
	return 0;
}

size_t os_page_size(void)
{
	static size_t page;

	if (!page)
		page = (size_t)sysconf(_SC_PAGESIZE);
	return page;
}

uint64_t os_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int os_reserve(size_t size, size_t align, void **addr)
{
	size_t over = size + (align > os_page_size() ? align : 0);
	char *p, *start;
	int err = os_call();

	if (err)
		return err;
	if (over < size)
		return -ENOMEM;
	p = mmap(NULL, over, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	start = (char *)align_up((uintptr_t)p, align > os_page_size() ? align : os_page_size());
	/* Trim the slack on both sides so the reservation is exactly [start, start + size). */
	if (start > p)
		munmap(p, (size_t)(start - p));
	if (p + over > start + size)
		munmap(start + size, (size_t)(p + over - (start + size)));
	*addr = start;
	return 0;
}

/*
 * Release is counted but is not a fault point: it runs on destroy and on the unwinding
 * of a failed create, where nothing could recover from a refusal, and munmap of a whole
 * mapping the pool made fails only on arguments the pool never passes.
 */
int os_release(void *addr, size_t size)
{
	atomic_fetch_add_explicit(&os_calls, 1, memory_order_relaxed);
	return munmap(addr, size) ? -errno : 0;
}

int os_map_metadata(size_t size, void **addr)
{
	void *p;
	int err = os_call();

	if (err)
		return err;
	p = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	*addr = p;
	return 0;
}

/* One counted, fault-injectable madvise or mprotect. */
static int os_madvise(void *addr, size_t size, int advice)
{
	int err = os_call();

	if (err)
		return err;
	return madvise(addr, size, advice) ? -errno : 0;
}

static int os_mprotect(void *addr, size_t size, int prot)
{
	int err = os_call();

	if (err)
		return err;
	return mprotect(addr, size, prot) ? -errno : 0;
}

int os_commit(void *addr, size_t size)
{
	return os_mprotect(addr, size, PROT_READ | PROT_WRITE);
}

/* A fresh anonymous mapping over [addr, addr + size): pages and commit charge go. */
static int os_remap(void *addr, size_t size, int prot)
{
	int err = os_call();

	if (err)
		return err;
	if (mmap(addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
		 0) == MAP_FAILED)
		return -errno;
	return 0;
}

int os_decommit(void *addr, size_t size)
{
	return os_remap(addr, size, PROT_NONE);
}

/* Inaccessible again, pages kept (a reset: the next grow finds them without a fault). */
int os_protect(void *addr, size_t size)
{
	return os_mprotect(addr, size, PROT_NONE);
}

int os_meta_decommit(void *addr, size_t size)
{
	return os_remap(addr, size, PROT_READ);
}

int os_purge(void *addr, size_t size)
{
	return os_madvise(addr, size, MADV_DONTNEED);
}

int os_hugepage(void *addr, size_t size)
{
	return os_madvise(addr, size, MADV_HUGEPAGE);
}

int os_nohugepage(void *addr, size_t size)
{
	return os_madvise(addr, size, MADV_NOHUGEPAGE);
}

size_t os_thp_size(void)
{
	static _Atomic size_t size = 1; /* 1: not read yet */
	size_t s = atomic_load_explicit(&size, memory_order_relaxed);

	if (s == 1) {
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "re");
		unsigned long long v = 0;

		if (!f || fscanf(f, "%llu", &v) != 1 || !is_pow2((size_t)v))
			v = 0;
		if (f)
			fclose(f);
		s = (size_t)v;
		atomic_store_explicit(&size, s, memory_order_relaxed);
	}
	return s;
}

int os_populate(void *addr, size_t size)
{
	int err = os_call();

	if (err)
		return err;
	if (madvise(addr, size, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno; /* ENOMEM, EFAULT, EHWPOISON: a real refusal */
	/* Before Linux 5.14: fault the pages in by writing one byte per page. */
	for (size_t off = 0; off < size; off += os_page_size())
		((volatile char *)addr)[off] = 0;
	return 0;
}

int os_lock(void *addr, size_t size)
{
	int err = os_call();

	if (err)
		return err;
	return mlock(addr, size) ? -errno : 0;
}

int os_unlock(void *addr, size_t size)
{
	int err = os_call();

	if (err)
		return err;
	return munlock(addr, size) ? -errno : 0;
}

int os_membarrier_register(void)
{
	long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		return -ENOSYS;
	return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) ? -errno
											 : 0;
}

void os_membarrier(void)
{
	syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}
