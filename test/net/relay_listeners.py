#!/usr/bin/env python3
"""tide-relay: listeners changed by SIGHUP, --syslog and --keepalive, as a black box.

Usage: relay_listeners.py RELAY_BINARY CASE     exit 0 pass, 1 fail, 77 skip

Cases (an echo server of the test's own is the upstream, so bytes cross the relay both ways):
  reload_add     a reload that adds a listener: its port accepts afterwards and relays; the
                 reload is bracketed by RELOADING=1 / READY=1 (sd_notify, when built with it)
  reload_remove  (two workers) a reload that removes a listener: its port refuses afterwards,
                 while a connection accepted there before goes on both ways and ends clean
                 (access log end=clean); the other listener is untouched
  reload_keep    (two workers) a bounded client loop against one listener while reloads add
                 and remove others (which accept while they are configured): 0 failed
  reload_bad     a reload that adds a listener on a port another socket holds: refused and
                 logged ("Address already in use"), the old configuration kept entirely (the
                 upstream change in the same file is not applied, the listener not opened)
  syslog         --syslog in a private mount namespace whose /dev/log is the test's socket:
                 lines arrive through syslog(3) with facility daemon and the priority of their
                 level (info, warning, err), ident tide-relay[PID], no timestamp of our own,
                 and nothing on stderr; with no /dev/log at all, a warning on stderr says so
                 and the lines go to stderr instead of nowhere
  keepalive      --keepalive: both of the relay's sockets of a connection (client side and
                 upstream side) have a keepalive timer in `ss -o`; without it neither has
  v6only         (root; in a network namespace of its own) under net.ipv6.bindv6only 0 and 1
                 alike: --listen [::]:P takes IPv6 and refuses IPv4, :P takes both (logged
                 *:P), 0.0.0.0:P with [::]:P are two listeners serving one family each
  v4mapped       (root; own network namespace) --listen [::ffff:127.0.0.1]:P passes --check,
                 starts and serves IPv4, with and without --reuse-port, and a reload adds one;
                 problems print IPv6 in brackets ([::]:P) and no "(line 0)" for options given
                 on the command line
Every wait is bounded; loopback only.
"""
import ctypes
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time

import relaytest
from relaytest import (RelayProc, check, connects, exchange, free_port, procs, serve, skip,
                       write)

BIN, CASE, TMP = relaytest.init("tide-relay-listeners-", "reload_add")


class Echo(socketserver.BaseRequestHandler):
    """Echoes what it gets; "who?" is answered with the server's tag; FIN after the client's."""

    def handle(self):
        self.request.settimeout(20)
        try:
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(self.server.tag if data == b"who?" else data)
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def upstream(tag):
    return serve(Echo, tag=tag)


class Relay(RelayProc):
    def __init__(self, args, wrap=None, env=None, wait_listen=None):
        self.err = open(os.path.join(TMP, "relay-%d.err" % len(procs)), "w+")
        self.proc = subprocess.Popen((wrap or []) + [BIN] + args, stdout=subprocess.DEVNULL,
                                     stderr=self.err, env=env)
        procs.append(self.proc)
        end = time.time() + 10
        while time.time() < end and self.proc.poll() is None:
            if wait_listen is not None and connects(wait_listen):
                return
            if wait_listen is None and "listening on" in self.log():
                return
            time.sleep(0.05)
        print(self.log())
        if "io_uring" in self.log():
            skip("io_uring is not available here")
        raise SystemExit("relay did not start")

    def reload(self, what):
        """SIGHUP, and wait until the log says it is done; True when it says `what`."""
        before = self.log().count("reloaded:") + self.log().count("reload failed")
        self.proc.send_signal(signal.SIGHUP)
        end = time.time() + 10
        while time.time() < end:
            log = self.log()
            if log.count("reloaded:") + log.count("reload failed") > before:
                return what in log.split("SIGHUP: reloading")[-1]
            time.sleep(0.05)
        return False


def ask(port, msg=b"who?"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(msg)
        return s.recv(100)
    finally:
        s.close()


class Notify:
    """A NOTIFY_SOCKET of our own: what the relay tells the service manager."""

    def __init__(self):
        self.path = os.path.join(TMP, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.env = dict(os.environ, NOTIFY_SOCKET=self.path)

    def messages(self, seconds=2.0):
        out, end = [], time.time() + seconds
        while time.time() < end:
            try:
                out.append(self.sock.recv(4096).decode())
            except socket.timeout:
                if out:
                    break
        return out


def case_reload_add():
    up = upstream(b"one")
    a, b = free_port(), free_port()
    n = Notify()
    conf = write("relay.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" % (a, up))
    r = Relay(["--config", conf], env=n.env)
    notified = n.messages()
    check(not connects(b), "before: the second port refuses")
    write("relay.conf", "listen 127.0.0.1:%d\nlisten 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" %
          (a, b, up))
    check(r.reload("reloaded: 2 listeners"), "the reload is logged: 2 listeners")
    check("listening on 127.0.0.1:%d" % b in r.log(), "the new listener is logged")
    check(ask(b) == b"one", "the added port relays")
    check(ask(a) == b"one", "the kept port relays")
    if any("READY=1" in m for m in notified):
        got = n.messages()
        check(len(got) >= 2 and got[0].startswith("RELOADING=1") and "READY=1" in got[-1],
              "sd_notify brackets the reload: %r" % got)
    else:
        print("no READY=1 at start (built without libsystemd): notify not checked")
    check(r.stop() == 0, "relay exit 0")


def case_reload_remove():
    up = upstream(b"one")
    a, b = free_port(), free_port()
    access = os.path.join(TMP, "access.log")
    conf = write("relay.conf", "listen 127.0.0.1:%d\nlisten 127.0.0.1:%d\nupstream 127.0.0.1:%d\n"
                 "access-log %s\nthreads 2\n" % (a, b, up, access))
    r = Relay(["--config", conf])
    held = socket.create_connection(("127.0.0.1", b), timeout=5)
    check(exchange(held, b"before") == b"before", "a connection through the second port")
    write("relay.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\naccess-log %s\nthreads 2\n" %
          (a, up, access))
    check(r.reload("reloaded: 1 listener"), "the reload is logged: 1 listener")
    check("stopped listening on 127.0.0.1:%d" % b in r.log(), "the removal is logged")
    check(not connects(b), "the removed port refuses")
    check(ask(a) == b"one", "the kept port relays")
    big = os.urandom(256 * 1024)
    check(exchange(held, big) == big, "the established connection goes on both ways")
    held.shutdown(socket.SHUT_WR)
    try:
        rest = held.recv(10)
    except OSError as e:
        rest = repr(e).encode()
    check(rest == b"", "it ends with FIN, not a reset: %r" % rest)
    held.close()
    check(r.stop() == 0, "relay exit 0")
    with open(access) as f:
        lines = [ln for ln in f if "listener=127.0.0.1:%d " % b in ln]
    check(len(lines) == 1 and "end=clean" in lines[0], "its access line: end=clean: %r" % lines)


def case_reload_keep():
    up = upstream(b"one")
    a, b, c = free_port(), free_port(), free_port()
    base = "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\nthreads 2\n" % (a, up)
    conf = write("relay.conf", base)
    r = Relay(["--config", conf])
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()

    def load():
        end = time.time() + 20
        while not stop.is_set() and time.time() < end:
            try:
                ok = ask(a, b"ping") == b"ping"
            except OSError:
                ok = False
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    edits = [base + "listen 127.0.0.1:%d\n" % b,
             base + "listen 127.0.0.1:%d\nlisten 127.0.0.1:%d\n" % (b, c),
             base + "listen 127.0.0.1:%d\n" % c, base]
    for i, text in enumerate(edits):
        time.sleep(0.3)
        write("relay.conf", text)
        check(r.reload("reloaded:"), "reload %d applied" % i)
        if i == 1:
            check(connects(b) and connects(c), "the added listeners accept")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(30)
    print("bounded load across %d reloads: %d connections, %d failed" %
          (len(edits), counts["ok"] + counts["failed"], counts["failed"]))
    check(counts["failed"] == 0 and counts["ok"] > 20, "0 failed connections: %s" % counts)
    check(not connects(b) and not connects(c), "the removed listeners refuse")
    check(r.stop() == 0, "relay exit 0")


def case_reload_bad():
    one, two = upstream(b"one"), upstream(b"two")
    a, held_port = free_port(), free_port()
    conf = write("relay.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" % (a, one))
    r = Relay(["--config", conf])
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", held_port))
    blocker.listen(1)
    write("relay.conf", "listen 127.0.0.1:%d\nlisten 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" %
          (a, held_port, two))
    check(r.reload("reload failed"), "the reload fails")
    log = r.log().split("SIGHUP: reloading")[-1]
    check("listen 127.0.0.1:%d: Address already in use" % held_port in log,
          "the reason is logged: %r" % log[-600:])
    check("the running configuration stays" in log, "the old configuration stays (logged)")
    check(ask(a) == b"one", "new connections still go to the old upstream")
    blocker.close()
    check(not connects(held_port), "the listener of the refused reload was not opened")
    check(r.stop() == 0, "relay exit 0")


def case_syslog():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        skip("needs root and unshare(1) for a private mount namespace")
    up = upstream(b"one")
    a, dead = free_port(), free_port()
    log_path = os.path.join(TMP, "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(log_path)
    sink.settimeout(0.2)
    # /dev/log is ours in a mount namespace of the relay's own: a tmpfs over /dev holding the
    # few devices a process needs and the symlink, so the real /dev is never touched.
    setup = ('set -e; mkdir -p "$T/olddev"; mount --rbind /dev "$T/olddev"; '
             'mount -t tmpfs -o mode=755 tmpfs /dev; '
             'for n in null zero full random urandom; do touch /dev/$n; '
             'mount --bind "$T/olddev/$n" /dev/$n; done; '
             'umount -l "$T/olddev"; [ -n "$NOLOG" ] || ln -s "$T/log" /dev/log; exec "$@"')
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", setup, "sh",
                            "true"], env=dict(os.environ, T=TMP), capture_output=True,
                           timeout=30)
    if probe.returncode != 0:
        skip("no private mount namespace here: %s" % probe.stderr.decode().strip())
    conf = write("relay.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n"
                 "upstream 127.0.0.1:%d\nsyslog\naccess-log\n" % (a, dead, up))
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", setup, "sh"]
    msgs = []

    def collect(text, seconds=5.0):
        end = time.time() + seconds
        while time.time() < end and not any(text in m for m in msgs):
            try:
                msgs.append(sink.recv(65536).decode(errors="replace"))
            except socket.timeout:
                pass
        return any(text in m for m in msgs)

    r = Relay(["--config", conf], wrap=wrap, env=dict(os.environ, T=TMP), wait_listen=a)
    check(ask(a) == b"one", "relays (the dead upstream is skipped)")
    r.proc.send_signal(signal.SIGHUP)
    check(collect("reloaded:"), "a reload")
    check(r.stop() == 0, "relay exit 0")
    collect("shutdown:")
    form = re.compile(r"^<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d tide-relay\[(\d+)\]: (.*)$", re.S)
    parsed = [form.match(m) for m in msgs]
    check(msgs and all(parsed), "every message is '<PRI>TIME tide-relay[PID]: text': %r" %
          [m for m, p in zip(msgs, parsed) if not p][:3])
    got = [(int(p.group(1)), p.group(3)) for p in parsed if p]

    def prio(text):
        return [pri for pri, msg in got if text in msg]

    daemon = 3 << 3
    check(prio("listening on 127.0.0.1:%d" % a) == [daemon | 6], "listening: daemon.info")
    failed = prio("upstream 127.0.0.1:%d: connect failed" % dead)
    check(failed and set(failed) == {daemon | 4}, "a failed upstream: daemon.warning: %r" %
          failed)
    check(daemon | 6 in prio("access client="), "the access line: daemon.info")
    check(prio("reloaded:") == [daemon | 6], "the reload: daemon.info")
    check(prio("shutdown: live_buffers=0") == [daemon | 6], "shutdown: daemon.info")
    check(not any(re.match(r"\d{4}-\d\d-\d\dT", msg) for _, msg in got),
          "no timestamp of our own in the message")
    check(not any(msg.startswith("tide-relay: ") for _, msg in got),
          "no 'tide-relay: ' after the ident tide-relay[PID]")
    check(r.log().strip() == "", "nothing on stderr: %r" % r.log()[:300])

    # An error line: every upstream dead.
    conf = write("relay.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\nsyslog\n" %
                 (a, dead))
    msgs = []
    r = Relay(["--config", conf, "--connect-timeout", "1"], wrap=wrap,
              env=dict(os.environ, T=TMP), wait_listen=a)
    try:
        ask(a)
    except OSError:
        pass
    check(r.stop() == 0, "relay exit 0")
    collect("shutdown:")
    errs = [m for m in msgs if "no upstream" in m]
    check(errs and all(m.startswith("<%d>" % (daemon | 3)) for m in errs),
          "no upstream took a client: daemon.err: %r" % errs)

    # No syslog daemon (no /dev/log): said on stderr, and the lines go there, not nowhere.
    msgs = []
    r = Relay(["--config", conf], wrap=wrap, env=dict(os.environ, T=TMP, NOLOG="1"),
              wait_listen=a)
    check(r.stop() == 0, "relay exit 0")
    log = r.log()
    check(re.search(r"^\S+ warn --syslog: /dev/log: No such file or directory", log, re.M),
          "no /dev/log: a warning on stderr: %r" % log[:300])
    check("listening on 127.0.0.1:%d" % a in log and "shutdown: live_buffers=0" in log,
          "no /dev/log: the lines go to stderr")
    sink.close()


def ss_keepalive(relay_port, up_port):
    """For the relay's two sockets of one connection: whether each has a keepalive timer."""
    out = subprocess.run(["ss", "-tnoH", "state", "established"], capture_output=True,
                         timeout=10).stdout.decode()
    client_leg = upstream_leg = None
    for line in out.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        local, peer = f[2], f[3]
        ka = "timer:(keepalive" in line
        if local == "127.0.0.1:%d" % relay_port:
            client_leg = ka
        elif peer == "127.0.0.1:%d" % up_port and local != "127.0.0.1:%d" % up_port:
            upstream_leg = ka
    return client_leg, upstream_leg


def case_keepalive():
    if not shutil.which("ss"):
        skip("ss (iproute2) is not installed")
    up = upstream(b"one")
    for flag, want in (([], False), (["--keepalive"], True)):
        a = free_port()
        r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up] + flag,
                  )
        s = socket.create_connection(("127.0.0.1", a), timeout=5)
        check(exchange(s, b"hello") == b"hello", "relays %s" % flag)
        legs = ss_keepalive(a, up)
        check(legs == (want, want), "%s: keepalive on (client leg, upstream leg): %s" %
              (flag or "without --keepalive", legs))
        s.close()
        check(r.stop() == 0, "relay exit 0")


def enter_netns():
    """Move this process into a network namespace of its own with lo up (root), so that
    net.ipv6.bindv6only can be set there without touching the host's."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        skip("needs root and ip(8) for a network namespace of its own")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        skip("unshare(CLONE_NEWNET): %s" % os.strerror(ctypes.get_errno()))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    try:
        socket.create_connection(("::1", 9), timeout=2).close()
    except ConnectionRefusedError:
        pass
    except OSError as e:
        skip("no ::1 in the network namespace: %s" % e)


def served(v6, port):
    """Whether a connection to [::1]:port (v6) or 127.0.0.1:port is echoed."""
    try:
        s = socket.create_connection(("::1" if v6 else "127.0.0.1", port), timeout=5)
    except OSError:
        return False
    try:
        return exchange(s, b"ping") == b"ping"
    finally:
        s.close()


def case_v6only():
    enter_netns()
    for sysctl in (0, 1):
        with open("/proc/sys/net/ipv6/bindv6only", "w") as f:
            f.write("%d\n" % sysctl)
        six, every, both = free_port(), free_port(), free_port()
        r = Relay(["--listen", "[::]:%d" % six, "--listen", ":%d" % every,
                   "--listen", "0.0.0.0:%d" % both, "--listen", "[::]:%d" % both, "--echo"],
                  wait_listen=both)
        what = "bindv6only=%d: " % sysctl
        check(served(True, six), what + "[::]:P takes IPv6")
        check(not served(False, six), what + "[::]:P refuses IPv4 (IPV6_V6ONLY)")
        check(served(False, every) and served(True, every), what + ":P takes IPv4 and IPv6")
        check(served(False, both) and served(True, both),
              what + "0.0.0.0:P and [::]:P are two listeners, one per family")
        check("listening on *:%d" % every in r.log(), what + "every address is logged *:P")
        check(r.stop() == 0, what + "relay exit 0")
    # --check: every address covers 0.0.0.0 on its port; [::] (IPv6 only) does not.
    p = free_port()
    bad = subprocess.run([BIN, "--listen", ":%d" % p, "--listen", "0.0.0.0:%d" % p, "--echo",
                          "--check"], capture_output=True, text=True, timeout=30)
    check(bad.returncode == 2 and "same socket" in bad.stderr,
          ":P with 0.0.0.0:P: --check says one port, one listener: %r" % bad.stderr)
    good = subprocess.run([BIN, "--listen", "[::]:%d" % p, "--listen", "0.0.0.0:%d" % p,
                           "--echo", "--check"], capture_output=True, text=True, timeout=30)
    check(good.returncode == 0, "[::]:P with 0.0.0.0:P passes --check: %r" % good.stderr)


def case_v4mapped():
    enter_netns()
    for extra in ([], ["--reuse-port"]):
        p = free_port()
        args = ["--listen", "[::ffff:127.0.0.1]:%d" % p, "--echo"] + extra
        chk = subprocess.run([BIN] + args + ["--check"], capture_output=True, text=True,
                             timeout=30)
        check(chk.returncode == 0, "--check %s: %r" % (extra, chk.stderr))
        r = Relay(args, wait_listen=p)
        check(served(False, p), "[::ffff:127.0.0.1]:P %s serves IPv4" % extra)
        check(r.stop() == 0, "relay exit 0")
    a, b = free_port(), free_port()
    conf = write("relay.conf", "echo\nlisten 127.0.0.1:%d\n" % a)
    r = Relay(["--config", conf])
    write("relay.conf", "echo\nlisten 127.0.0.1:%d\nlisten [::ffff:127.0.0.1]:%d\n" % (a, b))
    check(r.reload("reloaded: 2 listeners"), "a reload adds [::ffff:127.0.0.1]:P: %r" % r.log())
    check(served(False, b), "the added v4-mapped listener serves")
    check(r.stop() == 0, "relay exit 0")
    # messages: IPv6 in brackets, no line for command-line options
    p = free_port()
    bad = subprocess.run([BIN, "--listen", ":%d" % p, "--listen", "[::]:%d" % p, "--echo",
                          "--check"], capture_output=True, text=True, timeout=30)
    check(bad.returncode == 2 and "listen [::]:%d is the same socket as listen *:%d:" % (p, p)
          in bad.stderr and "(line" not in bad.stderr, "overlap message: %r" % bad.stderr)
    held = socket.socket(socket.AF_INET6)
    held.bind(("::", p))
    held.listen(1)
    start = subprocess.run([BIN, "--listen", "[::]:%d" % p, "--echo"], capture_output=True,
                           text=True, timeout=30)
    held.close()
    check(start.returncode != 0 and "listen [::]:%d: Address already in use" % p in start.stderr,
          "a taken port is named [::]:P: %r" % start.stderr)


CASES = {"reload_add": case_reload_add, "reload_remove": case_reload_remove,
         "reload_keep": case_reload_keep, "reload_bad": case_reload_bad,
         "syslog": case_syslog, "keepalive": case_keepalive, "v6only": case_v6only,
         "v4mapped": case_v4mapped}

relaytest.run(CASES)
