/* SPDX-License-Identifier: MIT */
/*
 * in_list.h - the comma-separated name lists of tide-bench's --only and --workloads.
 *
 * The harness and the workers read the same options, so they share one parser. It is
 * static inline and calls no allocator (a worker runs with the allocator under test).
 */
#ifndef TIDE_BENCH_IN_LIST_H
#define TIDE_BENCH_IN_LIST_H

#include <stdbool.h>
#include <string.h>

/* Is name one of the entries of the comma-separated list? Every name is, when list is NULL. */
static inline bool in_list(const char *list, const char *name)
{
	size_t len = strlen(name);

	if (!list)
		return true;
	for (const char *p = list; *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n == len && !strncmp(p, name, n))
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

#endif /* TIDE_BENCH_IN_LIST_H */
