/* SPDX-License-Identifier: MIT */
/*
 * linger.c - resets that wait for the bytes already handed to the kernel. Engine side.
 *
 * A connection that ends with a reset is closed with SO_LINGER 0, and such a close throws
 * away the socket's send queue. A send completes once its bytes are in that queue, not
 * when the peer has them: a relay that passes an upstream's reset on to its client right
 * after its last send completed would cut the answer the client is still taking (on
 * loopback the queue may hold a window's worth the peer's receive buffer has room for).
 * So a reset close with unsent bytes (SIOCOUTQ) keeps the socket, without its connection,
 * on the worker's linger list, and the tick resets it when its queue is empty (or the peer
 * already reset: nothing more can go), has not moved for STALL_MS (the peer takes nothing more: its
 * receive buffer is full or it left), or LINGER_MAX_MS passed. While the kernel retransmits to
 * the peer, a still queue is not yet a stall: a peer that does not read may still take more on
 * a later retransmission, backed off (200, 400, 800 ms ...) past STALL_MS (seen on loopback:
 * about one reset in ten cut a client that would have had 125 KiB at 64-116), so the stall is
 * judged a tick after the next retransmission is due.
 * The peer still learns of the cut: the close is a reset. Draining waits for the list too; the
 * drain deadline and a second stop reset at once.
 */
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>

#include "net_internal.h"

#define LINGER_MAX_MS 2000u
/* A queue stalled this long is stuck: longer than TCP's least retransmission timeout (200 ms),
 * so a segment the peer dropped and the kernel sends again does not count as a stall. */
#define STALL_MS 300u

struct linger_fd {
	int fd;
	int outq;	   /* unsent bytes at the last look */
	uint64_t check_at; /* next look: STALL_MS after the queue last moved */
	uint64_t until;	   /* reset then whatever is left */
};

static void reset_close(int fd)
{
	struct linger lg = {1, 0};

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/*
 * Unsent bytes in fd's send queue; 0 when the peer can take none any more (it reset).
 * *retry_at: the earliest a stall may be judged: STALL_MS after now or, while the kernel
 * retransmits, one retransmission timeout (its backoff included) after the last data it
 * sent, and a tick to see the result.
 */
static int unsent(struct worker *w, int fd, uint64_t *retry_at)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int n = 0;

	*retry_at = w->now + STALL_MS;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
		uint64_t next = w->now - ti.tcpi_last_data_sent + ti.tcpi_rto / 1000 + TICK_MS;

		if (ti.tcpi_state == TCP_CLOSE)
			return 0;
		if (ti.tcpi_retransmits && next > *retry_at)
			*retry_at = next;
	}
	return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

void linger_reset(struct worker *w, int fd)
{
	uint64_t retry_at;
	int n = unsent(w, fd, &retry_at);
	struct linger_fd *l;

	if (n <= 0 || (w->draining && w->now >= w->drain_deadline) ||
	    atomic_load_explicit(&w->agent->stop, memory_order_relaxed) > 1) {
		reset_close(fd);
		return;
	}
	if (w->nlinger == w->linger_cap) {
		unsigned cap = w->linger_cap ? w->linger_cap * 2 : 16;
		struct linger_fd *more = realloc(w->lingers, cap * sizeof(*more));

		if (!more) {
			reset_close(fd);
			return;
		}
		w->lingers = more;
		w->linger_cap = cap;
	}
	l = &w->lingers[w->nlinger++];
	l->fd = fd;
	l->outq = n;
	l->check_at = retry_at;
	l->until = w->now + LINGER_MAX_MS;
}

void lingers_tick(struct worker *w)
{
	for (unsigned i = 0; i < w->nlinger;) {
		struct linger_fd *l = &w->lingers[i];
		uint64_t retry_at;
		int n = unsent(w, l->fd, &retry_at);

		if (n > 0 && n != l->outq) { /* the peer took some: give it STALL_MS more */
			l->outq = n;
			l->check_at = retry_at;
		} else if (retry_at > l->check_at) { /* the kernel sends again: wait for it */
			l->check_at = retry_at;
		}
		if (n > 0 && w->now < l->check_at && w->now < l->until) {
			i++;
			continue;
		}
		reset_close(l->fd);
		*l = w->lingers[--w->nlinger];
	}
}

void lingers_end_all(struct worker *w)
{
	while (w->nlinger)
		reset_close(w->lingers[--w->nlinger].fd);
	free(w->lingers);
	w->lingers = NULL;
	w->linger_cap = 0;
}
