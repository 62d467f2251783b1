/* SPDX-License-Identifier: MIT */
/*
 * privdrop.c - --user NAME: give up root for good once the listeners are bound.
 *
 * The order is the one that works: supplementary groups first (initgroups, which needs root
 * and CAP_SETGID), then the group, then the user (setuid as root sets real, effective and
 * saved ids, so nothing is left to regain). glibc applies each to every thread of the
 * process. Then the drop is proven: setuid(0) must now fail, and getuid/geteuid/getgid/
 * getegid must be the target's; otherwise the relay is told to stop (-EPERM) rather than go
 * on as root without saying so.
 *
 * One capability is kept, CAP_NET_BIND_SERVICE, and only on the calling thread (the main
 * thread, where a reload binds): so a reload can add a listener on a port below 1024, as
 * nginx's master (root) and haproxy's master (re-exec) can. PR_SET_KEEPCAPS keeps the
 * permitted set across setuid, then capset narrows it to that one bit (permitted and
 * effective); the workers lose every capability with the switch. It cannot regain root:
 * setuid(0) still fails (proven below). Where the capability is not allowed (the unit's
 * CapabilityBoundingSet, a container), the relay goes on without it and says so when a
 * reload's bind is refused (EACCES). Not root: a --user that is already us is fine, any other is
 * -EPERM (we could not switch, and pretending would be worse).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ops.h"

static int say(char *err, size_t n, int rc, const char *fmt, const char *user)
{
	if (err && n)
		snprintf(err, n, fmt, user, strerror(-rc));
	return rc;
}

/* This thread keeps CAP_NET_BIND_SERVICE only (after setuid with PR_SET_KEEPCAPS). 0/-errno. */
static int keep_bind_capability(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};

	d[0].permitted = d[0].effective = 1u << CAP_NET_BIND_SERVICE;
	return syscall(SYS_capset, &h, d) ? -errno : 0;
}

int relay_privdrop(const char *user, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	bool keep;
	int rc;

	if (!user || !*user)
		return say(err, errlen, -EINVAL, "no user name given%s (%s)", "");
	rc = getpwnam_r(user, &pw, buf, sizeof(buf), &res);
	if (rc || !res)
		return say(err, errlen, rc ? -rc : -ENOENT, "user '%s': %s", user);
	if (geteuid() != 0) {
		if (getuid() == pw.pw_uid && geteuid() == pw.pw_uid)
			return 0;
		return say(err, errlen, -EPERM, "cannot become user '%s' without root: %s", user);
	}
	if (initgroups(pw.pw_name, pw.pw_gid))
		return say(err, errlen, -errno, "initgroups for '%s': %s", user);
	if (setgid(pw.pw_gid))
		return say(err, errlen, -errno, "setgid for '%s': %s", user);
	keep = pw.pw_uid != 0 && !prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0);
	if (setuid(pw.pw_uid))
		return say(err, errlen, -errno, "setuid for '%s': %s", user);
	if (keep) {
		prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
		keep_bind_capability(); /* without it: ports below 1024 need a restart */
	}
	if (pw.pw_uid != 0 && (setuid(0) == 0 || getuid() != pw.pw_uid || geteuid() != pw.pw_uid ||
			       getgid() != pw.pw_gid || getegid() != pw.pw_gid))
		return say(err, errlen, -EPERM, "switch to '%s' did not hold (%s)", user);
	return 0;
}
