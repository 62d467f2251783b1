/* SPDX-License-Identifier: MIT */
/*
 * notify.c - telling systemd what the relay is doing (Type=notify), through libsystemd.
 *
 * READY=1 once every listener is open (and after each reload), RELOADING=1 with
 * MONOTONIC_USEC when a SIGHUP reload starts (systemd 253's reload protocol: the manager
 * waits for READY=1 again), STOPPING=1 when a drain starts, STATUS= a one-line summary for
 * `systemctl status`. Outside systemd (no NOTIFY_SOCKET) each call does nothing and returns 0.
 *
 * libsystemd is optional at build time (TIDE_HAVE_LIBSYSTEMD): without it the calls still
 * return 0 outside systemd, and -ENOSYS when NOTIFY_SOCKET is set, so a Type=notify unit run
 * with such a build fails loudly instead of timing out silently.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ops.h"

#ifdef TIDE_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

static int send_state(const char *state)
{
	int rc = sd_notify(0, state);

	return rc < 0 ? rc : 0; /* > 0 sent, 0 not under systemd */
}

bool relay_notify_available(void)
{
	return true;
}
#else
static int send_state(const char *state)
{
	(void)state;
	return getenv("NOTIFY_SOCKET") ? -ENOSYS : 0;
}

bool relay_notify_available(void)
{
	return false;
}
#endif

int relay_notify_ready(void)
{
	return send_state("READY=1");
}

/* "HEAD" then the formatted status on one line: a newline would start another assignment. */
static int send_status(const char *head, const char *fmt, va_list ap)
{
	char msg[512];
	int n = snprintf(msg, sizeof(msg), "%s", head);

	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	for (char *p = msg + n; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return send_state(msg);
}

int relay_notify_ready_status(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = send_status("READY=1\nSTATUS=", fmt, ap);
	va_end(ap);
	return rc;
}

int relay_notify_reloading(void)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)relay_now_us());
	return send_state(msg);
}

int relay_notify_stopping(void)
{
	return send_state("STOPPING=1");
}

int relay_notify_status(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = send_status("STATUS=", fmt, ap);
	va_end(ap);
	return rc;
}
