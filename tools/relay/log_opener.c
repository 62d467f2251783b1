/* SPDX-License-Identifier: MIT */
/*
 * log_opener.c - reopening the access log after --user: a small process that stays root.
 *
 * With --user the relay becomes an unprivileged user, but the access log usually lives in a
 * directory only root may write (/var/log/tide-relay). After logrotate moved the file away,
 * a reopen (SIGHUP, SIGUSR1) must create a new one there, which the user cannot. nginx keeps
 * its master process as root for this; the relay keeps the smallest such process: forked at
 * start (before any thread, before the switch), it holds nothing but one socket pair, and
 * its only service is to open the one access-log path given at start (append, create 0640,
 * owned by the target user) and pass the descriptor back (SCM_RIGHTS). It takes no path from
 * the relay, so a compromised relay cannot make it open anything else. It ends when the
 * relay's end of the socket closes (the relay exited, however). A reload that names another
 * access-log file opens that one as the user (it must then be writable by the user).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "ops.h"

static struct {
	int sock; /* the relay's end; -1: no opener */
	char path[4096];
} O = {.sock = -1};

/* The opener's loop: one byte asks, one descriptor (or an errno byte) answers. */
static void serve(int sock, const char *path, uid_t uid, gid_t gid)
{
	char ask;

	while (recv(sock, &ask, 1, 0) == 1) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0640);
		unsigned char err = fd < 0 ? (unsigned char)errno : 0;
		char cbuf[CMSG_SPACE(sizeof(int))] = {0};
		struct iovec iov = {.iov_base = &err, .iov_len = 1};
		struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

		if (fd >= 0) {
			struct cmsghdr *c;

			if (fchown(fd, uid, gid)) /* the user's own file, as the first one */
				err = 0;
			m.msg_control = cbuf;
			m.msg_controllen = sizeof(cbuf);
			c = CMSG_FIRSTHDR(&m);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &fd, sizeof(int));
		}
		sendmsg(sock, &m, MSG_NOSIGNAL);
		if (fd >= 0)
			close(fd);
	}
	_exit(0);
}

int relay_log_opener_start(const char *path, uid_t uid, gid_t gid)
{
	int sv[2];
	pid_t pid;
	sigset_t none;

	if (!path || !*path || strlen(path) >= sizeof(O.path))
		return -EINVAL;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	pid = fork();
	if (pid < 0) {
		int err = -errno;

		close(sv[0]), close(sv[1]);
		return err;
	}
	if (pid == 0) {
		close(sv[0]);
		for (int fd = 3; fd < 1024; fd++) /* nothing of the relay's but the socket */
			if (fd != sv[1])
				close(fd);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGHUP, SIG_IGN); /* a reload of the service is for the relay */
		signal(SIGUSR1, SIG_IGN);
		signal(SIGINT, SIG_IGN); /* a terminal's ^C: the relay drains, this waits for it */
		serve(sv[1], path, uid, gid);
	}
	close(sv[1]);
	O.sock = sv[0];
	snprintf(O.path, sizeof(O.path), "%s", path);
	return 0;
}

int relay_log_opener_open(const char *path, int *fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))], ask = 'o';
	unsigned char err = 0;
	struct iovec iov = {.iov_base = &err, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = cbuf,
			   .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;

	if (O.sock < 0 || strcmp(path, O.path))
		return -ENOENT; /* not ours to open: the caller opens it itself */
	if (send(O.sock, &ask, 1, MSG_NOSIGNAL) != 1 || recvmsg(O.sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -EPIPE;
	c = CMSG_FIRSTHDR(&m);
	if (err || !c || c->cmsg_type != SCM_RIGHTS)
		return err ? -(int)err : -EPROTO;
	memcpy(fd, CMSG_DATA(c), sizeof(int));
	return 0;
}

void relay_log_opener_stop(void)
{
	if (O.sock >= 0)
		close(O.sock);
	O.sock = -1;
}
