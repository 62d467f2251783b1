/* SPDX-License-Identifier: MIT */
/*
 * worker.h - what the tide worker's files share.
 */
#ifndef TIDE_BENCH_WORKER_H
#define TIDE_BENCH_WORKER_H

/* convert.c: tide_pool_grow/shrink against the raw system calls; prints C lines. */
int convert_main(unsigned runs);

#endif /* TIDE_BENCH_WORKER_H */
