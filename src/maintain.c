/* SPDX-License-Identifier: MIT */
/*
 * maintain.c - automatic shrink with decay, purge, and the background thread.
 *
 * Demand is the number of claimed blocks (live plus what thread caches hold). A cache
 * untouched for the delay is taken back here, so an idle thread does not pin memory. Every
 * sample period (shrink_delay_ms / 16, at least 1 ms) maintenance records the highest
 * demand seen since the previous sample (claims raise pool->demand_tick as they happen, so
 * a burst between two samples is not missed). The shrink target is the highest sample of
 * the last shrink_delay_ms, rounded up to grow_unit, never below min_size: space above it
 * has stayed unneeded for the whole delay, so it goes back. A steady load keeps its own
 * peak inside the window and neither grows nor shrinks; a burst is given back one delay
 * after it ends. The peak is dated by the last give-back to the bitmap: when nothing went
 * back for the whole delay, the window's peak is what is claimed now, so one call long after
 * a burst (an event loop that slept, a fork child with no thread) gives the burst back at
 * once instead of sampling it again as if it were current.
 *
 * Purge gives back free pages below the boundary without moving it, so resident memory
 * follows live data when a long-lived buffer holds the top. Idle time is tracked per
 * purge region (64 KiB, or a huge page): claims and releases to the bitmap (cache refills
 * and flushes, not the hot path) stamp the region with the current sample number, so a
 * region unstamped for the delay has had nothing taken or given back; it is examined, and its
 * chunks (pages, or huge pages) with no claimed block are given back. While their pages go (outside
 * the lock, so allocation continues), the chunk's blocks are claimed so nobody takes them, and
 * counted apart so live stays right. Examined regions are stamped with EXAMINED so they
 * are looked at again only after another delay.
 *
 * Transparent huge pages: a range purged in pieces smaller than a huge page would be
 * filled back in by khugepaged (which collapses a huge-page-sized range with a few present
 * pages into one huge page: gperftools #1073, jemalloc #46), with THP "always" by default
 * and with "madvise" under TIDE_HUGEPAGES, and resident_size would no longer describe the
 * pool's memory. So before such a purge the huge-page-aligned span around it is marked
 * MADV_NOHUGEPAGE, in every THP mode (the mode can change while the pool lives): what is
 * given back stays given back, at the price of 4 KiB pages there until a shrink takes the
 * span (decommit maps it afresh; a grow with TIDE_HUGEPAGES advises huge pages again).
 * If the mark is refused (too many mappings), that purge does not happen. Pools whose
 * purge chunk is a whole huge page (TIDE_HUGEPAGES with a grow_unit that is a multiple of
 * 2 MiB) need no mark.
 *
 * Time: the epoch counts sample periods, and a sample counts every period that passed since
 * the last one (from the last give-back at the latest, as a stamp of the current epoch may be
 * that recent), so region stamps and cache looks age with the clock, not with the number of
 * calls: one call after a quiet delay finds them idle, and does in one step everything that
 * is due (shrink what can shrink, take back idle caches, purge below a pinned top).
 *
 * tide_pool_maintain() does one step and says when the next is due: a sample period while
 * space may still shrink (the window has not gone quiet) or a cache holds blocks; the time
 * the newest region stamp turns idle while a purge sweep is owed; -1 when none of these is
 * (a live buffer holding the top, everything else purged, is nothing due: only a free makes
 * work). With TIDE_BACKGROUND a pool-owned thread runs it on that schedule; when nothing is
 * due, or not within the delay, it sleeps until the slow path wakes it (maintain_poke() in
 * every claim from and give-back to the bitmap and every grow: one load while the thread is
 * awake, never on a cache hit), so an idle pool costs no wake-up (jemalloc's background
 * threads sleep the same way: jemalloc #1050). With one-block buffers live it also looks
 * again every max(1 s, 4 delays): such a buffer freed by a cache hit reaches no slow path,
 * and if it held the top only maintenance takes it back from that cache. destroy stops it.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define EXAMINED	       0x80000000u
#define PURGE_BATCH	       64    /* ranges given back per unlock */
#define PURGE_REGIONS_PER_PASS 16384 /* bounds one call: 1 GiB of 64 KiB regions */

static uint64_t sample_period_ns(const struct tide_pool *pool)
{
	uint64_t ns = (uint64_t)pool->shrink_delay_ms * 1000000u / 16;

	return ns < 1000000u ? 1000000u : ns;
}

static unsigned idle_epochs(const struct tide_pool *pool)
{
	return (unsigned)((uint64_t)pool->shrink_delay_ms * 1000000u / sample_period_ns(pool)) + 1;
}

/*
 * Whether nothing went back to the bitmap for the whole delay: then claimed blocks only
 * rose inside the window, and what is claimed now is its peak, however long ago the last
 * sample was (maintenance that ran late, or a fork child with no thread, must not date a
 * peak that ended before the window to now). pool->lock held.
 */
static bool quiet_window_locked(const struct tide_pool *pool, uint64_t now)
{
	return now - pool->release_ns > (uint64_t)pool->shrink_delay_ms * 1000000u;
}

/*
 * Sample periods to count for this sample: those that passed since the last one, so region
 * stamps and cache looks age with time however rarely maintenance runs (one call after a
 * quiet delay finds them idle). A stamp of the current epoch may be from any time since the
 * last sample, though: the newest that left pages free is the last give-back (or grow), so
 * the count starts there, and a page freed just before this call is not taken for idle.
 * At most idle_epochs: everything older looks alike. The first sample counts from create.
 */
static uint32_t elapsed_epochs(const struct tide_pool *pool, uint64_t now)
{
	uint64_t from = pool->demand_n ? pool->last_sample_ns : pool->created_ns, n;

	if (pool->release_ns > from)
		from = pool->release_ns;
	n = now > from ? (now - from) / sample_period_ns(pool) : 0;
	if (n < 1)
		n = 1;
	if (n > idle_epochs(pool))
		n = idle_epochs(pool);
	return (uint32_t)n;
}

/* Record one demand sample if a period has passed; pool->lock held. */
static void sample_locked(struct tide_pool *pool, uint64_t now)
{
	size_t demand;
	unsigned slot;

	if (pool->demand_n && now - pool->last_sample_ns < sample_period_ns(pool))
		return;
	if (quiet_window_locked(pool, now))
		pool->demand_tick = pool->map.count;
	demand = pool->demand_tick > pool->map.count ? pool->demand_tick : pool->map.count;
	slot = (pool->demand_head + pool->demand_n) % DEMAND_SAMPLES;
	if (pool->demand_n == DEMAND_SAMPLES)
		pool->demand_head = (pool->demand_head + 1) % DEMAND_SAMPLES;
	pool->epoch += elapsed_epochs(pool, now);
	if (pool->demand_n < DEMAND_SAMPLES)
		pool->demand_n++;
	pool->demand_time[slot] = now;
	pool->demand_blocks[slot] = demand;
	pool->demand_tick = pool->map.count;
	pool->last_sample_ns = now;
	if (pool->epoch & EXAMINED)
		pool->epoch = 1; /* keep the flag bit free; a wrap only delays one purge */
}

/*
 * The highest demand of the last shrink_delay_ms, in bytes; SIZE_MAX while the pool is
 * younger than the delay (what it needed before its first sample is not known).
 */
static size_t window_peak_locked(struct tide_pool *pool, uint64_t now)
{
	uint64_t delay = (uint64_t)pool->shrink_delay_ms * 1000000u;
	size_t peak = pool->demand_tick > pool->map.count ? pool->demand_tick : pool->map.count;

	if (now - pool->created_ns < delay)
		return SIZE_MAX;
	if (quiet_window_locked(pool, now))
		return pool->map.count << pool->block_shift;
	for (unsigned k = 0; k < pool->demand_n; k++) {
		unsigned slot = (pool->demand_head + k) % DEMAND_SAMPLES;

		if (now - pool->demand_time[slot] <= delay && pool->demand_blocks[slot] > peak)
			peak = pool->demand_blocks[slot];
	}
	return peak << pool->block_shift;
}

void purge_unmark_locked(struct tide_pool *pool, size_t block, size_t nblocks)
{
	size_t lo = (block << pool->block_shift) / pool->purge_chunk;
	size_t hi = (((block + nblocks) << pool->block_shift) - 1) / pool->purge_chunk;

	for (size_t k = lo; k <= hi; k++) {
		uint64_t bit = (uint64_t)1 << (k % 64);

		if (pool->purged[k / 64] & bit) {
			pool->purged[k / 64] &= ~bit;
			pool->purged_chunks--;
		}
	}
}

void purge_forget_locked(struct tide_pool *pool, size_t lo, size_t hi)
{
	if (hi > lo && pool->purged_chunks)
		purge_unmark_locked(pool, lo >> pool->block_shift, (hi - lo) >> pool->block_shift);
	for (size_t r = lo / pool->purge_region; r < hi / pool->purge_region; r++)
		pool->region_epoch[r] = 0;
}

struct purge_range {
	size_t chunk; /* first chunk */
	size_t n;     /* chunks */
};

/* Find idle free chunks and claim them, up to PURGE_BATCH coalesced ranges; lock held. */
static unsigned collect_locked(struct tide_pool *pool, struct purge_range *out, size_t *budget)
{
	size_t chunk_blocks = pool->purge_chunk >> pool->block_shift;
	size_t per_region = pool->purge_region / pool->purge_chunk;
	size_t nregions = pool->limit / (pool->purge_region >> pool->block_shift);
	unsigned idle = idle_epochs(pool), n = 0;

	while (*budget && n < PURGE_BATCH && pool->purge_cursor < nregions) {
		size_t r = pool->purge_cursor++;
		uint32_t stamp = pool->region_epoch[r];

		(*budget)--;
		if (pool->epoch - (stamp & ~EXAMINED) < idle)
			continue;
		pool->region_epoch[r] = pool->epoch | EXAMINED;
		for (size_t k = r * per_region; k < (r + 1) * per_region && n < PURGE_BATCH; k++) {
			size_t first = k * chunk_blocks;

			if (pool->purged[k / 64] & ((uint64_t)1 << (k % 64)))
				continue;
			if (bitmap_count_range(&pool->map, first, first + chunk_blocks))
				continue;
			bitmap_set_range(&pool->map, first, chunk_blocks);
			pool->purging_blocks += chunk_blocks;
			if (n && out[n - 1].chunk + out[n - 1].n == k)
				out[n - 1].n++;
			else
				out[n++] = (struct purge_range){k, 1};
		}
	}
	return n;
}

/*
 * Before a purge in pieces smaller than a huge page: mark the huge-page-aligned span around
 * range r MADV_NOHUGEPAGE (within the reservation), so khugepaged cannot fill the purged
 * pages back in. *marked is the end (pool offset) of the span marked last in this pass.
 * False when the mark was refused: then the range is not purged.
 */
static bool no_collapse(struct tide_pool *pool, const struct purge_range *r, size_t *marked)
{
	size_t huge = os_thp_size(), base = (size_t)(uintptr_t)pool->base, lo, hi;

	if (!huge || pool->purge_chunk >= huge)
		return true;
	/* Aligned in addresses, not offsets: the base may be aligned to less. */
	lo = align_down(base + r->chunk * pool->purge_chunk, huge) - base;
	hi = align_up(base + (r->chunk + r->n) * pool->purge_chunk, huge) - base;
	if ((ssize_t)lo < 0)
		lo = 0;
	if (hi > pool->reserve_size)
		hi = pool->reserve_size;
	if (lo < *marked)
		lo = *marked;
	if (lo >= hi)
		return true;
	if (os_nohugepage(pool->base + lo, hi - lo))
		return false;
	*marked = hi;
	return true;
}

/* Purge regions below the limit; pool->lock held. */
static size_t nregions_locked(const struct tide_pool *pool)
{
	return pool->limit / (pool->purge_region >> pool->block_shift);
}

/* Give back the idle free chunks of ranges[0..n) claimed by collect_locked(); lock held. */
static size_t give_back_locked(struct tide_pool *pool, struct purge_range *ranges, unsigned n,
			       size_t *marked)
{
	size_t chunk_blocks = pool->purge_chunk >> pool->block_shift, given = 0;
	bool ok[PURGE_BATCH];

	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < n; i++)
		ok[i] = no_collapse(pool, &ranges[i], marked) &&
			os_purge(pool->base + ranges[i].chunk * pool->purge_chunk,
				 ranges[i].n * pool->purge_chunk) == 0;
	pthread_mutex_lock(&pool->lock);
	for (unsigned i = 0; i < n; i++) {
		bitmap_clear_range(&pool->map, ranges[i].chunk * chunk_blocks,
				   ranges[i].n * chunk_blocks);
		pool->purging_blocks -= ranges[i].n * chunk_blocks;
		if (!ok[i]) {
			atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
			continue;
		}
		for (size_t k = ranges[i].chunk; k < ranges[i].chunk + ranges[i].n; k++)
			pool->purged[k / 64] |= (uint64_t)1 << (k % 64);
		pool->purged_chunks += ranges[i].n;
		given += ranges[i].n * pool->purge_chunk;
	}
	return given;
}

/*
 * One purge pass over at most PURGE_REGIONS_PER_PASS regions, from where the last one
 * stopped, round to the start when it began mid-way (the pool grew since) and budget is
 * left: one call looks at every region it can. convert_lock held.
 */
static void purge_pass(struct tide_pool *pool)
{
	struct purge_range ranges[PURGE_BATCH];
	size_t budget = PURGE_REGIONS_PER_PASS;
	size_t given = 0, marked = 0;
	unsigned n;

	pthread_mutex_lock(&pool->lock);
	for (int round = 0; round < 2; round++) {
		if (pool->purge_cursor >= nregions_locked(pool)) {
			if (round && pool->sweep_epoch == pool->epoch)
				break; /* this call's own sweep is done */
			pool->purge_cursor = 0;
			pool->sweep_epoch = pool->epoch;
		}
		while ((n = collect_locked(pool, ranges, &budget)))
			given += give_back_locked(pool, ranges, n, &marked);
		if (!budget)
			break;
	}
	/* A whole sweep begun once the newest stamp was idle has looked at every region. */
	if (pool->purge_cursor >= nregions_locked(pool) &&
	    pool->sweep_epoch - pool->stamp_epoch >= idle_epochs(pool) &&
	    pool->sweep_epoch - pool->stamp_epoch < EXAMINED)
		pool->purge_pending = false;
	pthread_mutex_unlock(&pool->lock);
	if (given) {
		atomic_fetch_add_explicit(&pool->purges, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&pool->purged_bytes, given, memory_order_relaxed);
	}
}

/*
 * When the next work is due, in ms (-1: none), after a step; pool->lock held. Work is due
 * while space above min_size may still go back (the window has not gone quiet, or the last
 * shrink failed for another reason than a live top), while a thread cache holds blocks
 * (taken back once idle), and while a purge region was stamped since the last complete
 * sweep that began a delay after it. A live buffer holding the top makes nothing due:
 * freeing it to the bitmap does (the slow path wakes the thread).
 */
static int next_due_locked(struct tide_pool *pool, uint64_t now, bool shrink_failed)
{
	uint64_t period = sample_period_ns(pool), due = UINT64_MAX;
	unsigned idle = idle_epochs(pool);

	if (pool_unreserved(pool) > pool->min_size &&
	    (shrink_failed || !quiet_window_locked(pool, now) ||
	     now - pool->created_ns < (uint64_t)pool->shrink_delay_ms * 1000000u))
		due = period;
	if (due > period && cache_any_held_locked(pool))
		due = period;
	if (!pool_unreserved(pool))
		pool->purge_pending = false; /* nothing left to purge, whatever was stamped */
	if (pool->purge_pending && !(pool->flags & TIDE_LOCKED)) {
		uint32_t age = pool->epoch - pool->stamp_epoch;
		uint64_t wait = age < idle ? (uint64_t)(idle - age) * period : period;

		if (wait < due)
			due = wait;
	}
	if (due == UINT64_MAX)
		return -1;
	return (int)((due + 999999u) / 1000000u);
}

/* tide_pool_maintain(), and whether one-block buffers are live (freed to a cache silently). */
static int maintain_step(struct tide_pool *pool, bool *singles)
{
	uint64_t now, period = sample_period_ns(pool);
	size_t cur, peak, target;
	bool failed = false;
	int cancel, due;

	if (!call_enter(pool))
		return -EAGAIN;
	cancel = cancel_off(); /* the steal wait, purge, the hook: see cancel_off() */
	if (pthread_mutex_trylock(&pool->convert_lock)) {
		cancel_restore(cancel);
		call_leave();
		*singles = true;
		return (int)(period / 1000000u);
	}
	atomic_fetch_add_explicit(&pool->maintenance_runs, 1, memory_order_relaxed);
	now = os_now_ns();
	pthread_mutex_lock(&pool->lock);
	sample_locked(pool, now);
	cache_flush_idle_locked(pool, idle_epochs(pool));
	peak = window_peak_locked(pool, now);
	cur = pool_unreserved(pool);
	pthread_mutex_unlock(&pool->lock);

	if (peak != SIZE_MAX) {
		target = round_up(peak, pool->grow_unit);
		if (target < pool->min_size)
			target = pool->min_size;
		if (cur > target) {
			ssize_t got = pool_shrink_locked(pool, cur - target, pool->min_size, false);

			failed = got < 0 && got != -EBUSY;
		}
		if (!(pool->flags & TIDE_LOCKED))
			purge_pass(pool);
	}
	pthread_mutex_lock(&pool->lock);
	due = next_due_locked(pool, now, failed);
	*singles = pool->map.count > pool->multi_blocks + pool->purging_blocks;
	pthread_mutex_unlock(&pool->lock);
	pthread_mutex_unlock(&pool->convert_lock);
	cancel_restore(cancel);
	call_leave();
	return due;
}

/**
 * tide_pool_maintain() - run the automatic shrink and purge that are due.
 * @pool: the pool.
 *
 * For event loops: call it when the returned time has passed (a timer), and after bursts.
 * One call after nothing went back to the bitmap for shrink_delay_ms does all that is due:
 * it gives back all above what is claimed now and purges the free pages below a top that a
 * live buffer holds (the way for a fork child whose thread could not be started again: its
 * tide_alloc()/tide_free() cache hits do not maintain). Does nothing without
 * TIDE_AUTO_SHRINK. Returns at once (asking to be called again soon) when another thread
 * is converting.
 *
 * Return: milliseconds until the next work is due; -1 when nothing is (nothing can go back
 * until buffers are freed or taken); -EINVAL for a NULL pool; -EAGAIN in a signal handler
 * that interrupted a call into the pool.
 */
int tide_pool_maintain(struct tide_pool *pool)
{
	bool singles;

	if (!pool)
		return -EINVAL;
	if (!(pool->flags & TIDE_AUTO_SHRINK))
		return -1;
	return maintain_step(pool, &singles);
}

/*
 * With nothing due but one-block buffers live, the thread still looks now and then: such a
 * buffer freed by a cache hit reaches no slow path (the fast path stays as it is), and if it
 * held the top, only maintenance takes it back from the cache.
 */
static uint64_t recheck_ns(const struct tide_pool *pool)
{
	uint64_t ns = (uint64_t)pool->shrink_delay_ms * 4000000u;

	return ns < 1000000000u ? 1000000000u : ns;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Wait on the thread's condition, thread_lock held: for ns (0: no limit) or until stopped,
 * and when wakeable (thread_asleep was set for this wait) until the slow path clears
 * thread_asleep (maintain_wake(), maybe before this call). True when the slow path woke it.
 */
static bool sleep_locked(struct tide_pool *pool, uint64_t ns, bool wakeable)
{
	uint64_t wake = mono_ns() + ns;
	struct timespec ts = {(time_t)(wake / 1000000000u), (long)(wake % 1000000000u)};

	while (!pool->thread_stop && (!wakeable || atomic_load(&pool->thread_asleep))) {
		if (!ns)
			pthread_cond_wait(&pool->thread_cond, &pool->thread_lock);
		else if (pthread_cond_timedwait(&pool->thread_cond, &pool->thread_lock, &ts))
			break; /* ETIMEDOUT */
	}
	return wakeable && !pool->thread_stop && !atomic_exchange(&pool->thread_asleep, false);
}

/*
 * The thread sleeps until work is due: the time tide_pool_maintain() returned, or, when
 * that is longer than the delay or nothing is due, until the slow path wakes it (every
 * claim, give-back and grow pokes it: maintain_poke()); with one-block buffers live it also
 * looks again after recheck_ns(). It announces a long sleep (thread_asleep) before the step
 * that decides it, so an event after that step's look wakes it. Woken, it lets the event's
 * burst go on for one sample period before its step: however many events come, an idle
 * pool costs no wake-up and a busy one at most one step per period.
 */
static void *maintain_thread(void *arg)
{
	struct tide_pool *pool = arg;
	uint64_t delay = (uint64_t)pool->shrink_delay_ms * 1000000u;
	uint64_t period = sample_period_ns(pool);

	pthread_mutex_lock(&pool->thread_lock);
	while (!(pool->flags & TIDE_AUTO_SHRINK) && !pool->thread_stop)
		pthread_cond_wait(&pool->thread_cond, &pool->thread_lock); /* nothing to do */
	while (!pool->thread_stop) {
		uint64_t wait;
		bool singles = false, long_wait;
		int ms;

		atomic_store(&pool->thread_asleep, true);
		pthread_mutex_unlock(&pool->thread_lock);
		ms = maintain_step(pool, &singles);
		pthread_mutex_lock(&pool->thread_lock);
		if (ms < -1 || ms == 0)
			ms = 1;
		wait = ms >= 0 ? (uint64_t)ms * 1000000u : singles ? recheck_ns(pool) : 0;
		long_wait = ms < 0 || wait > delay;
		if (!long_wait)
			atomic_store(&pool->thread_asleep, false); /* soon: no wake-up needed */
		if (sleep_locked(pool, wait, long_wait))
			sleep_locked(pool, period, false); /* woken: let the burst run a period */
	}
	pthread_mutex_unlock(&pool->thread_lock);
	return NULL;
}

void maintain_wake(struct tide_pool *pool)
{
	if (!atomic_exchange(&pool->thread_asleep, false))
		return;
	pthread_mutex_lock(&pool->thread_lock);
	pthread_cond_signal(&pool->thread_cond);
	pthread_mutex_unlock(&pool->thread_lock);
}

/* The thread's condition, on the monotonic clock. */
static void init_cond(struct tide_pool *pool)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->thread_cond, &attr);
	pthread_condattr_destroy(&attr);
}

void maintain_init(struct tide_pool *pool)
{
	pthread_mutex_init(&pool->thread_lock, NULL);
	init_cond(pool);
}

int maintain_start(struct tide_pool *pool)
{
	int err;

	pool->thread_stop = false;
	err = pthread_create(&pool->thread, NULL, maintain_thread, pool);
	if (err)
		return -err;
	pool->thread_running = true;
	return 0;
}

/*
 * fork child, thread_lock held: the thread is gone, and may have been waiting on the
 * condition, whose waiter count now never drops (destroying it would wait forever); nothing
 * may try to wake it (maintain_wake() takes the thread_lock this thread holds).
 */
void maintain_fork_child_locked(struct tide_pool *pool)
{
	init_cond(pool);
	atomic_store(&pool->thread_asleep, false); /* nobody to wake until it is started */
}

/* fork child, no lock held: start the thread again where the parent had one. */
/*
 * fork child: the TIDE_BACKGROUND thread is started again. When it cannot be (the child at
 * RLIMIT_NPROC or a pids limit: EAGAIN), the failure counts in os_failures and the pool's
 * callers take over: every call but a tide_alloc()/tide_free() cache hit (fork_catch_up())
 * tries to start it again and,
 * while it cannot be, run tide_pool_maintain() inline, each at most once per sampling
 * period; every failed start counts.
 */
void maintain_fork_child(struct tide_pool *pool)
{
	if (!pool->thread_running)
		return;
	pool->thread_running = false;
	if (maintain_start(pool)) {
		atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
		atomic_store_explicit(&pool->fork_retry_ns, 0, memory_order_relaxed);
		atomic_fetch_or(&pool->fork_todo, FORK_THREAD);
	}
}

void maintain_fallback(struct tide_pool *pool)
{
	uint64_t now = os_now_ns();
	int ms;

	if (now < atomic_load_explicit(&pool->fork_retry_ns, memory_order_relaxed))
		return;
	/* Claimed by clearing the bit: one caller at a time starts or maintains. */
	if (!(atomic_fetch_and(&pool->fork_todo, ~FORK_THREAD) & FORK_THREAD))
		return;
	if (!maintain_start(pool))
		return;
	atomic_fetch_add_explicit(&pool->os_failures, 1, memory_order_relaxed);
	ms = tide_pool_maintain(pool);
	if (ms < 0 || (uint64_t)ms * 1000000u > sample_period_ns(pool))
		ms = (int)((sample_period_ns(pool) + 999999u) / 1000000u);
	atomic_store_explicit(&pool->fork_retry_ns, now + (uint64_t)ms * 1000000u,
			      memory_order_relaxed);
	atomic_fetch_or(&pool->fork_todo, FORK_THREAD);
}

void maintain_stop(struct tide_pool *pool)
{
	if (!pool->thread_running)
		return;
	pthread_mutex_lock(&pool->thread_lock);
	pool->thread_stop = true;
	pthread_cond_signal(&pool->thread_cond);
	pthread_mutex_unlock(&pool->thread_lock);
	pthread_join(pool->thread, NULL);
	pool->thread_running = false;
	atomic_store(&pool->thread_asleep, false); /* nobody to wake */
}
