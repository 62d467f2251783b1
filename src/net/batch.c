/* SPDX-License-Identifier: MIT */
/*
 * batch.c - receive batching for bulk connections (tide_agent_config.recv_batch). Engine
 * side.
 *
 * A connection that carries bulk data wakes its worker once per segment the kernel queues
 * (64 KiB on loopback), and each receive that frees room in the socket sends the peer a
 * window update, which makes the peer's kernel push more of its queued data from this
 * worker's CPU: many small wake-ups on both sides, and on loopback segments of one flow sent
 * from two CPUs arrive out of order (retransmissions). SO_RCVLOWAT asks TCP to wake the
 * receive only once that many bytes wait (a FIN, an error or memory pressure wake it anyway),
 * so a bulk connection is woken once per mark and the peer gets fewer, larger window updates.
 *
 * The hazard is a tail smaller than the mark (the last bytes of an upload, a request after a
 * bulk phase): without a FIN it would wait for bytes that never come. So the mark is raised
 * only while a connection is busy and dropped as soon as it goes quiet:
 *  - raised when one receive completion carried a whole mark (and at least BATCH_AFTER): the
 *    socket held that much at once, so the sender is ahead of us. An exchange of requests and
 *    replies smaller than the mark never gets there, so its replies are never held back
 *    (with a 64 KiB trigger a 100 KiB reply raised it, and the next reply, if it came within
 *    the millisecond, waited for the quiet look). Not for a connection whose bytes go
 *    through a splice;
 *  - every QUIET_US the worker looks at its marked connections: one that received nothing
 *    since the last look gets its mark set back to 1 byte, which makes TCP wake the receive
 *    at once when bytes are waiting. So a tail waits at most two intervals (plus the
 *    scheduling of the worker), and a connection that stopped sending is back to plain
 *    receives before its next exchange, whatever the exchange is.
 * While a mark is raised the worker's wait is capped at the next look, so the bound holds on
 * an otherwise idle worker; without marked connections the loop is as before (no clock read,
 * no timer). A marked connection keeps its txq (the per-connection state lives there, as for
 * a splice: an idle connection stays 64 bytes); the list is short (connections that received
 * bulk data within the last millisecond or two), so removing from it walks it.
 */
#include <errno.h>
#include <sys/socket.h>
#include <time.h>

#include "net_internal.h"

#define BATCH_AFTER (64u << 10) /* the least a receive that raises the mark carried */
#define QUIET_US    500		/* how often the marked connections are looked at */

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int set_lowat(int fd, int bytes)
{
	return setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) ? -errno : 0;
}

/* Take c off its worker's list and put its mark back to 1 byte (which wakes a receive that
 * has bytes waiting). */
static void unmark(struct worker *w, struct tide_conn *c)
{
	struct tide_conn **pp;

	for (pp = &w->batch; *pp; pp = &(*pp)->tx->batch_next)
		if (*pp == c) {
			*pp = c->tx->batch_next;
			break;
		}
	c->tx->batch_on = false;
	c->tx->batch_next = NULL;
	if (!(c->flags & F_ENDED))
		set_lowat(c->fd, 1);
}

void batch_recv(struct tide_conn *c, int res)
{
	struct worker *w = conn_w(c);
	size_t mark = w->agent->cfg.recv_batch;
	struct txq *q;

	if (!mark)
		return;
	if (c->tx && c->tx->batch_on) {
		c->tx->batch_hits++;
		return;
	}
	if ((size_t)res < (mark > BATCH_AFTER ? mark : BATCH_AFTER) ||
	    (c->flags & (F_ENDED | F_EOF | F_PAUSED)) || (conn_sp(c) && splice_reads(c)))
		return;
	q = conn_txq(c);
	if (!q)
		return; /* no memory for the state: plain receives */
	if (set_lowat(c->fd, (int)mark)) {
		conn_txq_put(c);
		return;
	}
	q->batch_on = true;
	q->batch_hits = 0;
	q->batch_next = w->batch;
	if (!w->batch)
		w->batch_check_us = mono_us() + QUIET_US;
	w->batch = c;
	STAT_ADD(w, batch_marks, 1);
}

void batch_stop(struct tide_conn *c)
{
	if (c->tx && c->tx->batch_on)
		unmark(conn_w(c), c);
}

void batch_check(struct worker *w)
{
	uint64_t now = mono_us();
	struct tide_conn **pp = &w->batch;

	if (now < w->batch_check_us)
		return;
	while (*pp) {
		struct tide_conn *c = *pp;
		struct txq *q = c->tx;

		if (q->batch_hits) {
			q->batch_hits = 0;
			pp = &q->batch_next;
			continue;
		}
		*pp = q->batch_next; /* quiet since the last look: back to plain receives */
		q->batch_on = false;
		q->batch_next = NULL;
		set_lowat(c->fd, 1);
		STAT_ADD(w, batch_quiet, 1);
		conn_txq_put(c);
	}
	w->batch_check_us = now + QUIET_US;
}

void batch_wait(const struct worker *w, struct __kernel_timespec *ts)
{
	uint64_t now, left;

	if (!w->batch)
		return;
	now = mono_us();
	left = w->batch_check_us > now ? w->batch_check_us - now : 0;
	if ((uint64_t)ts->tv_sec * 1000000 + (uint64_t)ts->tv_nsec / 1000 > left) {
		ts->tv_sec = (long long)(left / 1000000);
		ts->tv_nsec = (long long)(left % 1000000) * 1000;
	}
}
