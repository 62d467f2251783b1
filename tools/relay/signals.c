/* SPDX-License-Identifier: MIT */
/*
 * signals.c - the main thread's signal loop: SIGHUP reloads, SIGINT/SIGTERM/SIGQUIT stop.
 *
 * Every signal an operator may send has a defined behaviour (tide-relay(1), SIGNALS):
 *   SIGHUP          reload the configuration, reopen the access log
 *   SIGUSR1         reopen the access log only (nginx's USR1, for logrotate's postrotate)
 *   SIGINT, SIGTERM, SIGQUIT   drain (a second one ends connections at once)
 *   SIGUSR2, SIGALRM, SIGWINCH, SIGURG, SIGPIPE   ignored (SIGUSR2 and SIGALRM are logged)
 * They are blocked before anything else runs (the first thing main does), so a signal that
 * arrives while the relay starts stays pending instead of killing it with the default action.
 *
 * The signals are blocked in every thread (the mask is set before the workers start and
 * inherited), and the main thread takes them with sigtimedwait, so nothing runs in a
 * signal handler: a reload is ordinary code that may allocate, lock and log. The wait has
 * a 200 ms bound, the tick of the rate limiter's "suppressed K" lines and of the relay's own
 * periodic work (a callback).
 * A SIGHUP that arrives during a reload stays pending and runs the next reload after it;
 * several pending SIGHUPs collapse into one (POSIX signals do not queue), which is what an
 * operator who pressed reload twice wants.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ops.h"

int relay_signals_block(sigset_t *set)
{
	int rc;

	static const int taken[] = {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM};

	sigemptyset(set);
	for (unsigned i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
		sigaddset(set, taken[i]);
	rc = pthread_sigmask(SIG_BLOCK, set, NULL);
	if (rc)
		return -rc;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGWINCH, SIG_IGN);
	signal(SIGURG, SIG_IGN);
	return 0;
}

static void reopen_access_log(void)
{
	int rc = relay_log_reopen();

	if (rc)
		relay_log(RELAY_LOG_ERROR,
			  "reopening the access log failed (%s); still writing "
			  "the old file",
			  strerror(-rc));
}

int relay_signals_wait(struct relay_runtime *rt, const sigset_t *set, int argc, char *const argv[],
		       void (*tick)(void *arg), void *arg)
{
	const struct timespec period = {.tv_nsec = 200 * 1000000L};

	for (;;) {
		int sig = sigtimedwait(set, NULL, &period);

		relay_log_flush_suppressed();
		if (tick)
			tick(arg);
		if (sig == SIGHUP) {
			relay_log(RELAY_LOG_INFO, "SIGHUP: reloading");
			relay_runtime_reload(rt, argc, argv);
			reopen_access_log();
		} else if (sig == SIGUSR1) {
			relay_log(RELAY_LOG_INFO, "SIGUSR1: reopening the access log");
			reopen_access_log();
		} else if (sig == SIGUSR2 || sig == SIGALRM) {
			relay_log(RELAY_LOG_INFO,
				  "%s: ignored (SIGHUP reloads, SIGUSR1 reopens "
				  "the access log, SIGTERM drains)",
				  strsignal(sig));
		} else if (sig == SIGINT || sig == SIGTERM || sig == SIGQUIT) {
			relay_notify_stopping();
			if (rt->cfg.drain_timeout_ms)
				relay_log(RELAY_LOG_INFO, "%s: draining for up to %u ms",
					  strsignal(sig), rt->cfg.drain_timeout_ms);
			else
				relay_log(RELAY_LOG_INFO,
					  "%s: drain-timeout 0: resetting open "
					  "connections now",
					  strsignal(sig));
			return sig;
		}
	}
}
