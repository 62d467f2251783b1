/* SPDX-License-Identifier: MIT */
/*
 * privdrop.c - --user NAME: give up root for good once the listeners are bound.
 *
 * The order is the one that works: supplementary groups first (initgroups, which needs root
 * and CAP_SETGID), then the group, then the user (setuid as root sets real, effective and
 * saved ids, so nothing is left to regain). glibc applies each to every thread of the
 * process. Then the drop is proven: setuid(0) must now fail, and getuid/geteuid/getgid/
 * getegid must be the target's; otherwise the relay is told to stop (-EPERM) rather than go
 * on as root without saying so. Not root: a --user that is already us is fine, any other is
 * -EPERM (we could not switch, and pretending would be worse).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops.h"

static int say(char *err, size_t n, int rc, const char *fmt, const char *user)
{
	if (err && n)
		snprintf(err, n, fmt, user, strerror(-rc));
	return rc;
}

int relay_privdrop(const char *user, char *err, size_t errlen)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
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
	if (setuid(pw.pw_uid))
		return say(err, errlen, -errno, "setuid for '%s': %s", user);
	if (pw.pw_uid != 0 && (setuid(0) == 0 || getuid() != pw.pw_uid || geteuid() != pw.pw_uid ||
			       getgid() != pw.pw_gid || getegid() != pw.pw_gid))
		return say(err, errlen, -EPERM, "switch to '%s' did not hold (%s)", user);
	return 0;
}
