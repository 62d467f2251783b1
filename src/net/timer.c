/* SPDX-License-Identifier: MIT */
/*
 * timer.c - one-shot timers on a worker's loop (tide_timer_start, tide_timer_cancel).
 * Engine side.
 *
 * Each worker keeps its timers in a binary min-heap on the deadline, touched only on its
 * own thread: start and firing are O(log n); cancel finds the timer by id with a scan (an
 * application cancels rarely compared to how often its timers fire) and clears its
 * function, so the entry just falls out when due. The loop waits no longer than the
 * earliest deadline (worker.c), so a timer fires within the loop's turn after it is due.
 * A timer's function may start and cancel timers.
 */
#include <errno.h>
#include <stdlib.h>

#include "net_internal.h"

static void swap(struct timer *h, unsigned i, unsigned j)
{
	struct timer t = h[i];

	h[i] = h[j];
	h[j] = t;
}

static void sift_up(struct timer *h, unsigned i)
{
	while (i && h[(i - 1) / 2].when > h[i].when) {
		swap(h, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

static void sift_down(struct timer *h, unsigned n, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i + 1, m = i;

		if (l < n && h[l].when < h[m].when)
			m = l;
		if (l + 1 < n && h[l + 1].when < h[m].when)
			m = l + 1;
		if (m == i)
			return;
		swap(h, i, m);
		i = m;
	}
}

/**
 * tide_timer_start() - call @fn(@tw, @arg) once on the worker's thread after @ms.
 * @tw:  the worker; call on its thread only (from a callback or posted work).
 * @ms:  the delay in milliseconds (0: on the loop's next turn).
 * @fn:  the function.
 * @arg: its argument.
 * @id:  gets the timer's id for tide_timer_cancel() (may be NULL).
 *
 * Return: 0; -EINVAL a NULL worker or function; -ENOMEM.
 */
int tide_timer_start(struct tide_worker *tw, unsigned ms, void (*fn)(struct tide_worker *, void *),
		     void *arg, uint64_t *id)
{
	struct worker *w = W(tw);

	if (!w || !fn)
		return -EINVAL;
	if (w->ntimers == w->timers_cap) {
		unsigned cap = w->timers_cap ? 2 * w->timers_cap : 16;
		struct timer *t = realloc(w->timers, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		w->timers = t;
		w->timers_cap = cap;
	}
	w->timers[w->ntimers] = (struct timer){w->now + ms, ++w->timer_ids, fn, arg};
	if (id)
		*id = w->timer_ids;
	sift_up(w->timers, w->ntimers++);
	return 0;
}

/**
 * tide_timer_cancel() - cancel a timer that has not fired.
 * @tw: the worker it was started on (on its thread).
 * @id: the id tide_timer_start() gave.
 *
 * Return: 0; -ENOENT it fired, was cancelled, or is unknown; -EINVAL a NULL worker.
 */
int tide_timer_cancel(struct tide_worker *tw, uint64_t id)
{
	struct worker *w = W(tw);

	if (!w)
		return -EINVAL;
	for (unsigned i = 0; i < w->ntimers; i++)
		if (w->timers[i].id == id && w->timers[i].fn) {
			w->timers[i].fn = NULL;
			return 0;
		}
	return -ENOENT;
}

uint64_t timers_run(struct worker *w)
{
	/* Bounded: a timer started by a timer with delay 0 runs on the next turn. */
	unsigned n = w->ntimers;

	while (w->ntimers && w->timers[0].when <= w->now && n--) {
		struct timer t = w->timers[0];

		w->timers[0] = w->timers[--w->ntimers];
		sift_down(w->timers, w->ntimers, 0);
		if (t.fn)
			t.fn((struct tide_worker *)w, t.arg);
	}
	while (w->ntimers && !w->timers[0].fn) {
		w->timers[0] = w->timers[--w->ntimers];
		sift_down(w->timers, w->ntimers, 0);
	}
	if (!w->ntimers)
		return UINT64_MAX;
	return w->timers[0].when > w->now ? w->timers[0].when - w->now : 0;
}

void timers_free(struct worker *w)
{
	free(w->timers);
	w->timers = NULL;
	w->ntimers = w->timers_cap = 0;
}
