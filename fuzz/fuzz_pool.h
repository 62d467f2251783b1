/* SPDX-License-Identifier: MIT */
/*
 * fuzz_pool.h - the differential pool fuzzer's entry points, shared by the libFuzzer
 * target (fuzz/) and the plain-C replay driver that `make test` runs (test/).
 */
#ifndef TIDE_FUZZ_POOL_H
#define TIDE_FUZZ_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of an input that are played; the rest is ignored (libFuzzer's default -max_len). */
#define FUZZ_MAX_INPUT 1024

/* Steps run and mismatches found since the process started. */
struct fuzz_totals {
	unsigned long inputs;
	unsigned long steps;
	unsigned long full_checks;
	unsigned long mismatches;
	unsigned long reset_refusals;  /* tide_pool_reset -ENOMEM: the pool was replaced */
	unsigned long create_refusals; /* tide_pool_create -ENOMEM: the input was skipped */
	unsigned long ops[20];
};

extern struct fuzz_totals fuzz_totals;

/*
 * The full invariant checker runs at least every this many steps (default 8; 1: after
 * every step), besides after conversions and at the end of each input.
 */
extern unsigned fuzz_check_every;

/*
 * true (the default): each configuration's pool is created once and reset after every
 * input (tide_pool_reset), and must then equal a fresh pool; false: a new pool per input.
 */
extern bool fuzz_reuse_pools;

/*
 * Nonzero (tests): the OS fault switch fails every OS call of each reset from its Nth on
 * (-ENOMEM), as an OS or a memory limit that refuses the grow back to initial_size would.
 */
extern unsigned long fuzz_reset_fault;

/* Destroy the pools kept for reuse (at the end of a replay; libFuzzer never returns). */
void fuzz_pools_release(void);

/*
 * Play one operation stream on a fresh pool against the model. Returns 0, or -1 after the
 * first mismatch (described on stderr). The fault switch is off again on return.
 */
int fuzz_pool_run(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* TIDE_FUZZ_POOL_H */
