/* SPDX-License-Identifier: MIT */
/*
 * Description: touching the reserved portion faults, in a child process.
 *
 * "Touching the reserved portion faults": the first byte above the boundary, the last byte
 * of the reservation, a range that was unreserved and then shrunk away, a range whose grow
 * was vetoed by the hook, and a range after the pool is destroyed each kill a child with
 * SIGSEGV; the byte just below the boundary does not.
 */
#include "pool_helpers.h"

static void touch(void *p)
{
	*(volatile char *)p = 1;
}

static void read_byte(void *p)
{
	(void)*(volatile char *)p;
}

/* Vetoes every grow; lets the install call (the range already unreserved) through. */
static int veto(struct tide_pool *pool, enum tide_convert dir, void *addr, size_t len, void *arg)
{
	return dir == TIDE_TO_UNRESERVED && (char *)addr >= (char *)tide_pool_boundary(pool) ? -EIO
											     : 0;
}

int main(void)
{
	struct tide_pool *pool = tp_create(0, 2 * TP_UNIT, 0);
	char *base = tide_pool_base(pool);
	char *top = tide_pool_boundary(pool);
	unsigned deaths = 0;

	/* Below the boundary: fine. */
	CHECKF(child_survives(touch, top - 1), "the last unreserved byte must be usable");
	CHECKF(child_survives(touch, base), "the first byte must be usable");

	/* The reserved portion. */
	CHECKF(expect_death(touch, top, SIGSEGV), "write at the boundary");
	CHECKF(expect_death(read_byte, top, SIGSEGV), "read at the boundary");
	CHECKF(expect_death(touch, top + TP_UNIT + 123, SIGSEGV), "write above the boundary");
	CHECKF(expect_death(touch, base + TP_RESERVE - 1, SIGSEGV), "write at the last byte");
	deaths += 4;

	/* A range after a shrink: used, then given back. */
	memset(base, 0x42, 2 * TP_UNIT);
	CHECK_EQ(tide_pool_shrink(pool, TP_UNIT), TP_UNIT);
	CHECK_POOL(pool);
	CHECKF(expect_death(touch, base + TP_UNIT, SIGSEGV), "write into a shrunk range");
	CHECKF(expect_death(read_byte, base + 2 * TP_UNIT - 1, SIGSEGV), "read a shrunk range");
	CHECKF(child_survives(read_byte, base + TP_UNIT - 1), "below stays usable");
	deaths += 2;

	/* A range whose grow the hook vetoed. */
	CHECK_EQ(tide_pool_set_convert_hook(pool, veto, NULL), 0);
	CHECK_EQ(tide_pool_grow(pool, TP_UNIT), -EIO);
	CHECK_POOL(pool);
	CHECKF(expect_death(touch, base + TP_UNIT, SIGSEGV), "write into a vetoed grow");
	deaths++;

	/* A range after an OS refusal during grow. */
	CHECK_EQ(tide_pool_set_convert_hook(pool, NULL, NULL), 0);
	tide_os_fault_set(1, ENOMEM, false);
	CHECK_EQ(tide_pool_grow(pool, TP_UNIT), -ENOMEM);
	tide_os_fault_set(0, 0, false);
	CHECK_POOL(pool);
	top = tide_pool_boundary(pool);
	CHECKF(expect_death(touch, top, SIGSEGV), "write above the boundary after a refused grow");
	deaths++;

	/* After destroy, nothing of the pool is there. */
	tide_pool_destroy(pool);
	CHECKF(expect_death(read_byte, base, SIGSEGV), "read a destroyed pool");
	deaths++;

	printf("test_pool_death: %u deaths expected in children\n", deaths);
	return test_exit("test_pool_death");
}
