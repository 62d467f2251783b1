/* SPDX-License-Identifier: MIT */
/*
 * burst.c - the pool at work on a scripted burst, one line per step.
 *
 * A server's buffer demand comes in bursts: quiet, then thousands of connections want
 * receive buffers at once, then quiet again. This program plays that script on one pool
 * with TIDE_AUTO_GROW and TIDE_AUTO_SHRINK and prints, after every step, where the
 * boundary is (its offset from the base), how much is unreserved (mapped), how much of
 * that is resident (the pool's own count, and the kernel's, from mincore), and how much
 * is live in buffers. Watch the boundary climb under the burst in grow_unit steps, stay
 * while buffers are held, and recede after they are freed: first through maintenance
 * (idle time, then shrink and purge), then through an explicit shrink.
 *
 * Usage: burst [MiB]   (the burst's peak, default 256)
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <tide.h>

#define BLOCK 2048

static long long kernel_resident(struct tide_pool *pool)
{
	char *base = tide_pool_base(pool);
	size_t len = (size_t)((char *)tide_pool_boundary(pool) - base);
	size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page;
	unsigned char *vec;
	long long rss = 0;

	if (!len)
		return 0;
	vec = malloc(n);
	if (!vec || mincore(base, len, vec)) {
		free(vec);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		rss += vec[i] & 1;
	free(vec);
	return rss * (long long)page;
}

static void line(struct tide_pool *pool, int step, const char *what)
{
	struct tide_stats st;
	double mib = 1024.0 * 1024.0;

	tide_pool_stats(pool, &st);
	printf("%3d  %-24s boundary +%8.1f MiB  unreserved %8.1f MiB  resident %8.1f MiB "
	       "(kernel %8.1f)  live %8.1f MiB\n",
	       step, what,
	       (double)((char *)tide_pool_boundary(pool) - (char *)tide_pool_base(pool)) / mib,
	       (double)st.unreserved_size / mib, (double)st.resident_size / mib,
	       (double)kernel_resident(pool) / mib, (double)st.live_bytes / mib);
	fflush(stdout);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
	size_t peak_mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 256;
	struct tide_pool_config cfg = {
		.block_size = BLOCK,
		.reserve_size = (size_t)4 << 30,
		.initial_size = (size_t)2 << 20,
		.shrink_delay_ms = 50,
		.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK,
	};
	size_t nbufs = (peak_mib << 20) / BLOCK, held = 0, step_bufs = nbufs / 8;
	struct tide_pool *pool;
	void **bufs;
	int step = 0, rc;

	if (!peak_mib || peak_mib > 2048 || !(bufs = calloc(nbufs, sizeof(*bufs)))) {
		fprintf(stderr, "usage: burst [MiB, 1..2048]\n");
		return 2;
	}
	rc = tide_pool_create(&cfg, &pool);
	if (rc) {
		fprintf(stderr, "tide_pool_create: %d\n", rc);
		return 1;
	}
	line(pool, step++, "created (2 MiB initial)");

	/* The burst: eight waves of receive buffers, each touched as data would be. */
	for (int wave = 0; wave < 8; wave++) {
		char what[32];
		size_t got = 0;

		while (got < step_bufs) {
			unsigned n =
				tide_alloc_bulk(pool, bufs + held, (unsigned)(step_bufs - got));

			if (!n)
				break;
			for (unsigned i = 0; i < n; i++) {
				char *b = bufs[held + i];

				b[0] = 1;
				b[BLOCK - 1] = 1;
			}
			got += n;
			held += n;
		}
		snprintf(what, sizeof(what), "burst wave %d", wave + 1);
		line(pool, step++, what);
	}

	/* Data drains: free in four waves, newest first, as connections finish. */
	for (int wave = 0; wave < 4; wave++) {
		size_t n = held / (size_t)(4 - wave);
		char what[32];

		tide_free_bulk(pool, bufs + held - n, (unsigned)n);
		held -= n;
		snprintf(what, sizeof(what), "drain wave %d", wave + 1);
		line(pool, step++, what);
	}

	/* Quiet: maintenance runs when it says it is due, for at most two seconds; a line
	 * whenever it changed something. */
	tide_pool_flush_cache(pool);
	{
		void *last = tide_pool_boundary(pool);
		unsigned waited = 0;

		for (int i = 0; i < 40; i++) {
			int due = tide_pool_maintain(pool);
			char what[40];

			if (tide_pool_boundary(pool) != last || due < 0) {
				snprintf(what, sizeof(what), "maintain after %u ms", waited);
				line(pool, step++, what);
				last = tide_pool_boundary(pool);
			}
			if (due < 0)
				break;
			due = due > 50 ? 50 : due ? due : 1;
			sleep_ms((unsigned)due);
			waited += (unsigned)due;
		}
	}

	/* What maintenance left above min_size, an explicit shrink takes. */
	{
		ssize_t got = tide_pool_shrink(pool, (size_t)4 << 30);
		char what[40];

		snprintf(what, sizeof(what), "shrink: %zd", got);
		line(pool, step++, what);
	}
	tide_pool_destroy(pool);
	free(bufs);
	return 0;
}
