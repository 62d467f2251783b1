/* SPDX-License-Identifier: MIT */
/*
 * accepts.c - telling the operator that accepting connections fails for want of local
 * resources, once per burst.
 *
 * The engine counts accepts that failed with EMFILE, ENFILE, ENOBUFS or ENOMEM and keeps the
 * latest cause (tide_agent_stats(): accept_errors, accept_error); the connections wait in
 * the listen queue and the listener tries again every 100 ms (also when a relayed client
 * could be accepted but not its upstream socket: the engine holds that room in reserve,
 * tide_agent_config.conn_fds, and counts a listener held without it). The relay's main thread feeds
 * the counter here at each of its ticks (200 ms). A burst starts with the first failure after
 * a quiet spell: one error line with the cause and what to raise; it ends after a second
 * with no new failure: one line with how many failed. Between them nothing is logged, so a
 * relay stuck at its descriptor limit writes two lines, not one per retry; the count is in
 * /metrics (tide_relay_accept_errors_total) throughout.
 */
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "ops.h"

#define QUIET_TICKS 5 /* ticks without a failure that end a burst */

static const char *cause(int err, char *buf, size_t n)
{
	struct rlimit rl;

	switch (err) {
	case -EMFILE:
		if (!getrlimit(RLIMIT_NOFILE, &rl))
			snprintf(buf, n,
				 "EMFILE: the process's descriptor limit is %llu; raise ulimit -n "
				 "or "
				 "the unit's LimitNOFILE=",
				 (unsigned long long)rl.rlim_cur);
		else
			snprintf(buf, n, "EMFILE: the process's descriptor limit");
		return buf;
	case -ENFILE:
		return "ENFILE: the system's file table is full; raise sysctl fs.file-max";
	case -ENOBUFS:
		return "ENOBUFS: the kernel's socket memory; see sysctl net.ipv4.tcp_mem";
	case -ENOMEM:
		return "ENOMEM: the kernel's memory";
	default:
		return "unknown cause";
	}
}

void relay_accepts_watch(struct relay_accepts *w, uint64_t errors, int last_error)
{
	char buf[160];

	if (errors > w->seen) {
		if (!w->burst) {
			w->burst = true;
			w->burst_start = w->seen;
			relay_log(RELAY_LOG_ERROR,
				  "tide-relay: accepting connections fails: %s (%s); clients wait "
				  "in the listen queue, retried every 100 ms",
				  strerror(-last_error), cause(last_error, buf, sizeof(buf)));
		}
		w->quiet = 0;
	} else if (w->burst && ++w->quiet >= QUIET_TICKS) {
		w->burst = false;
		relay_log(RELAY_LOG_INFO,
			  "tide-relay: accepting connections again after %llu failed accepts",
			  (unsigned long long)(errors - w->burst_start));
	}
	w->seen = errors;
}
