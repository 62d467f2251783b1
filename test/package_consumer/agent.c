// SPDX-License-Identifier: MIT
/*
 * agent.c - the smallest program on libtide-net: an echo server on a port of loopback,
 * written from the installed header alone; one client's "ping" comes back, then the agent
 * stops and is destroyed. Prints the versions it was built with and runs with.
 * Exit 0 when it ran, 77 when io_uring is not available here, 1 otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <tide.h>
#include <tide/net.h>

static void echo(struct tide_conn *c, struct tide_buf *bufs, unsigned n)
{
	tide_conn_send(c, bufs, n); /* the received buffers go back as they are */
}

static void eof(struct tide_conn *c)
{
	tide_conn_shutdown(c, false);
}

static const struct tide_conn_ops ops = {.recv = echo, .eof = eof};

/* Connect to the port, send "ping", read it back: 0 when it came back. */
static int ping(unsigned port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {5, 0};
	char buf[8] = "";
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	     write(fd, "ping", 4) == 4 && read(fd, buf, sizeof(buf)) == 4 &&
	     !memcmp(buf, "ping", 4);
	if (fd >= 0)
		close(fd);
	return ok ? 0 : 1;
}

int main(void)
{
	struct tide_pool_config pc = {.block_size = 65536, .flags = TIDE_AUTO_GROW};
	struct tide_agent_config ac = {.threads = 1};
	struct tide_pool *pool;
	struct tide_agent *agent = NULL;
	unsigned port = 0;
	char why[256] = "";
	int rc;

	printf("tide header %s, library %s\n", TIDE_VERSION_STRING, tide_version());
	if (strcmp(TIDE_VERSION_STRING, tide_version()))
		return 1;
	if (tide_agent_probe(why, sizeof(why))) {
		printf("no io_uring here: %s\n", why);
		return 77;
	}
	rc = tide_pool_create(&pc, &pool);
	if (rc) {
		printf("tide_pool_create: %s\n", strerror(-rc));
		return 1;
	}
	rc = tide_agent_create(pool, &ac, &agent);
	if (!rc)
		rc = tide_agent_listen(agent, "127.0.0.1:0", &ops, NULL, &port);
	if (!rc)
		rc = tide_agent_start(agent);
	if (rc)
		printf("agent: %s\n", strerror(-rc));
	if (!rc) {
		rc = ping(port);
		printf("echo agent on port %u, %u worker: ping %s\n", port,
		       tide_agent_workers(agent), rc ? "lost" : "echoed");
		tide_agent_stop(agent);
		tide_agent_wait(agent);
	}
	tide_agent_destroy(agent);
	tide_pool_destroy(pool);
	return rc ? 1 : 0;
}
