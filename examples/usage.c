/* usage.c - the README's example: a pool that grows under load and gives memory back. */
#include <stdio.h>
#include <string.h>
#include <tide.h>

int main(void)
{
	struct tide_pool_config cfg = {.block_size = 2048, .flags = TIDE_AUTO_GROW};
	struct tide_pool *pool;
	struct tide_stats st;

	if (tide_pool_create(&cfg, &pool))
		return 1;
	char *buf = tide_alloc(pool, 1500); /* one 2 KiB block; the pool grows by 2 MiB */
	strcpy(buf, "hello, tide");
	tide_pool_grow(pool, 8 << 20); /* or convert ahead of a burst */
	tide_pool_stats(pool, &st);
	printf("%s: %zu live, %zu unreserved\n", buf, st.live_bytes, st.unreserved_size);
	tide_free(pool, buf);
	printf("shrink gave back %zd bytes\n", tide_pool_shrink(pool, 64 << 20));
	tide_pool_destroy(pool);
	return 0;
}
