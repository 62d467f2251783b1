/* SPDX-License-Identifier: MIT */
/*
 * Description: the differential pool fuzzer without libFuzzer: replays every file of the
 * seed corpus (fuzz/corpus, and any directory given), then a few thousand random
 * operation streams, each on a fresh pool compared with the model after every step.
 *
 * This is the bounded smoke run `make test` does with any C compiler; `make fuzz` runs the
 * same fuzz_pool_run() under libFuzzer for as long as asked. The corpus files run with the
 * full invariant checker after every step; the random streams with the fuzzer's default
 * (every 8 steps, after conversions, at the end). TIDE_FUZZ_STREAMS sets the number of
 * random streams (default 2000, 100 under Valgrind), TIDE_SEED their seed,
 * TIDE_FUZZ_CHECK_EVERY the checker's period for them. As under libFuzzer, each pool
 * configuration's pool is reset after an input and reused, and must equal a fresh one.
 */
#include <dirent.h>

#include "fuzz_pool.h"
#include "helpers.h"

static int replay_dir(const char *dir, unsigned long *files)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int bad = 0;

	if (!d) {
		fprintf(stderr, "test_fuzz_replay: cannot open %s\n", dir);
		return 1;
	}
	while ((e = readdir(d))) {
		char path[4096];
		uint8_t buf[1 << 16];
		size_t n;
		FILE *fp;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fp = fopen(path, "rb");
		if (!fp)
			continue;
		n = fread(buf, 1, sizeof(buf), fp);
		fclose(fp);
		(*files)++;
		if (fuzz_pool_run(buf, n)) {
			fprintf(stderr, "test_fuzz_replay: mismatch replaying %s\n", path);
			bad++;
		}
	}
	closedir(d);
	return bad;
}

/*
 * The input that once stopped a run with `tide_pool_reset: -12`: it shrinks a pool with one
 * initial unit to nothing, so the reset must commit that unit again. When the OS refuses
 * (as the API allows), the fuzzer replaces the pool instead of reporting a mismatch, and
 * the next input of that configuration gets a new pool.
 */
static void refused_reset(const char *dir)
{
	char path[4096];
	uint8_t buf[1024];
	unsigned long refusals = fuzz_totals.reset_refusals;
	size_t n;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/shrink-to-nothing-then-reset", dir);
	fp = fopen(path, "rb");
	CHECKF(fp != NULL, "%s", path);
	if (!fp)
		return;
	n = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	fuzz_reset_fault = 1;
	CHECK_EQ(fuzz_pool_run(buf, n), 0);
	fuzz_reset_fault = 0;
	CHECK_EQ(fuzz_totals.reset_refusals, refusals + 1);
	CHECK_EQ(fuzz_pool_run(buf, n), 0);
	CHECK_EQ(fuzz_totals.reset_refusals, refusals + 1);
}

int main(int argc, char **argv)
{
	const char *env = getenv("TIDE_FUZZ_STREAMS");
	const char *every = getenv("TIDE_FUZZ_CHECK_EVERY");
	unsigned long streams = env ? strtoul(env, NULL, 0) : under_valgrind() ? 100 : 2000;
	unsigned long files = 0, bad_streams = 0;
	uint64_t rng = test_seed(0xf0220);

	fuzz_check_every = 1;
	for (int i = 1; i < argc; i++)
		CHECKF(replay_dir(argv[i], &files) == 0, "corpus %s", argv[i]);
	CHECKF(files > 0 || argc < 2, "no corpus files found");
	fuzz_check_every = every && atoi(every) > 0 ? (unsigned)atoi(every) : 8;
	for (unsigned long s = 0; s < streams; s++) {
		uint8_t buf[1024];
		size_t n = 16 + (size_t)rng_below(&rng, sizeof(buf) - 16);

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rng_next(&rng);
		if (fuzz_pool_run(buf, n)) {
			fprintf(stderr,
				"test_fuzz_replay: mismatch in random stream %lu (seed "
				"TIDE_SEED=%#" PRIx64 ")\n",
				s, test_seed(0xf0220));
			bad_streams++;
		}
	}
	CHECK_EQ(bad_streams, 0);
	if (argc > 1)
		refused_reset(argv[1]);
	printf("test_fuzz_replay: %lu corpus files, %lu random streams, %lu inputs, %lu steps, "
	       "%lu full checks, %lu mismatches\n",
	       files, streams, fuzz_totals.inputs, fuzz_totals.steps, fuzz_totals.full_checks,
	       fuzz_totals.mismatches);
	fuzz_pools_release();
	return test_exit("test_fuzz_replay");
}
