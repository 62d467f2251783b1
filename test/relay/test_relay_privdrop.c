/* SPDX-License-Identifier: MIT */
/*
 * Description: --user (tools/relay/privdrop.c): as root, a child becomes `nobody` for good
 * (uid, gid, supplementary groups; setuid(0) fails afterwards) while keeping a socket bound
 * to a port below 1024 before the drop; an unknown user is -ENOENT and changes nothing;
 * not root, switching to another user is -EPERM. Skips (77) unless run as root.
 */
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>

#include "helpers.h"
#include "ops.h"

/* In a child: run fn, exit with its check failures (0: all good). */
static int in_child(void (*fn)(void))
{
	pid_t pid = fork();
	int st;

	REQUIRE(pid >= 0);
	if (pid == 0) {
		fn();
		fflush(stdout);
		_exit(checks_failed ? 1 : 0);
	}
	REQUIRE(waitpid(pid, &st, 0) == pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void drop_to_nobody(void)
{
	struct passwd *pw = getpwnam("nobody");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char err[256] = "";
	gid_t groups[64];
	int n, fd = socket(AF_INET, SOCK_STREAM, 0);
	socklen_t len = sizeof(a);

	REQUIRE(pw && fd >= 0);
	/* bind a privileged port first (any free one below 1024), as the relay would */
	for (unsigned p = 1000; p > 900; p--) {
		a.sin_port = htons((uint16_t)p);
		if (!bind(fd, (void *)&a, sizeof(a)))
			break;
	}
	CHECK(listen(fd, 1) == 0);
	CHECK_EQ(relay_privdrop("nobody", err, sizeof(err)), 0);
	CHECK_EQ(getuid(), pw->pw_uid);
	CHECK_EQ(geteuid(), pw->pw_uid);
	CHECK_EQ(getgid(), pw->pw_gid);
	CHECK_EQ(getegid(), pw->pw_gid);
	n = getgroups(64, groups);
	for (int i = 0; i < n; i++)
		CHECKF(groups[i] != 0, "still in group root");
	CHECK(setuid(0) == -1);
	CHECK(seteuid(0) == -1);
	/* the listener bound as root still works */
	CHECK(getsockname(fd, (void *)&a, &len) == 0 && ntohs(a.sin_port) < 1024);
	/* and the same call again, now not root, as that user: fine; as another: -EPERM */
	CHECK_EQ(relay_privdrop("nobody", err, sizeof(err)), 0);
	CHECK_EQ(relay_privdrop("root", err, sizeof(err)), -EPERM);
	CHECK(strstr(err, "without root"));
	close(fd);
}

static void unknown_user(void)
{
	char err[256] = "";

	CHECK_EQ(relay_privdrop("no-such-user-tide", err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "no-such-user-tide"));
	CHECK_EQ(getuid(), 0);
	CHECK_EQ(relay_privdrop("", err, sizeof(err)), -EINVAL);
}

int main(void)
{
	if (geteuid() != 0)
		skip("not root: cannot test a privilege drop");
	if (!getpwnam("nobody"))
		skip("no user nobody here");
	CHECK_EQ(in_child(drop_to_nobody), 0);
	CHECK_EQ(in_child(unknown_user), 0);
	CHECK_EQ(getuid(), 0); /* the parent is untouched */
	return test_exit("test_relay_privdrop");
}
