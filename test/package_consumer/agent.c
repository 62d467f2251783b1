// SPDX-License-Identifier: MIT
/*
 * agent.c - the smallest program on libtide-net: an echo agent on a port of loopback that
 * starts, stops and is destroyed. Prints the versions it was built with and runs with.
 * Exit 0 when it ran, 77 when io_uring is not available here, 1 otherwise.
 */
#include <stdio.h>
#include <string.h>
#include <tide.h>
#include <tide/net.h>

int main(void)
{
	struct tide_pool_config pc = {.block_size = 65536, .flags = TIDE_AUTO_GROW};
	struct tide_agent_config ac = {.listen = "127.0.0.1:0"};
	struct tide_pool *pool;
	struct tide_agent *agent = NULL;
	char why[256] = "";
	int rc;

	printf("tide header %s, library %s\n", TIDE_VERSION_STRING, tide_version());
	if (strcmp(TIDE_VERSION_STRING, tide_version()))
		return 1;
	if (tide_agent_probe(why, sizeof(why))) {
		printf("no io_uring here: %s\n", why);
		return 77;
	}
	if (tide_pool_create(&pc, &pool))
		return 1;
	rc = tide_agent_create(pool, &ac, &agent);
	if (!rc)
		rc = tide_agent_start(agent);
	if (!rc) {
		printf("echo agent on port %u, %u worker\n", tide_agent_port(agent),
		       tide_agent_workers(agent));
		tide_agent_stop(agent);
		rc = tide_agent_wait(agent);
	}
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	return rc ? 1 : 0;
}
