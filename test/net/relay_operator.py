#!/usr/bin/env python3
"""tide-relay's operator interface, as a black box: signals, reload of every option, logs that
never block the data path, local resource exhaustion, --check against a start, listeners.

Usage: relay_operator.py RELAY_BINARY CASE     exit 0 pass, 1 fail, 77 skip

Cases (the upstream is an echo server of the test's own; loopback only; every wait bounded):
  signals         SIGUSR1 reopens the access log (a rotated file is recreated) and SIGUSR2,
                  SIGALRM are ignored: the relay lives on and an open connection goes on both
                  ways; SIGQUIT drains and exits 0
  drain_zero      --drain-timeout 0: SIGTERM says it resets at once, the open connection
                  is reset (end=drain) and the relay exits 0
  reload_limits   a reload applies idle-timeout (300 -> 1: an idle connection is then cut),
                  max-conns (a second client is then reset) and drain-timeout (60 -> 0.5:
                  SIGTERM with an open connection exits long before 60 s); nothing is "kept"
  syslog_stalled  --syslog to a /dev/log nobody reads (root, a private mount namespace):
                  every connection is still relayed, SIGTERM still stops it
  stderr_stalled  stderr is a pipe nobody reads (filled up): connections are still relayed
                  (access lines go with the event log), SIGTERM still stops it
  fd_exhaustion   (root; own network namespace) connects short of a local resource (no
                  ephemeral port: EADDRNOTAVAIL; descriptors cannot run out there any more,
                  see accept_room) are logged as that, end=resource, and no upstream is
                  taken out of rotation
  accept_exhaustion  at the descriptor limit accepts fail: one log line with the cause
                  (EMFILE, the limit) for the burst, the waiting client and a new one are
                  served once clients close, one line when it accepts again, the count in
                  /metrics (tide_relay_accept_errors_total)
  accept_room     at the descriptor limit a relayed client is accepted only with room for its
                  upstream socket (and pipes with --splice): of 60 clients that connect and
                  send, none is reset; those past the limit wait in the listen queue and are
                  served once the first close; no access line says end=resource
  check_vs_start  --check fails (exit 2, FILE:LINE) where a start fails: an unresolvable
                  upstream or listen name, an access log in a missing directory, one listener
                  spelled twice (127.0.0.1:P and localhost:P); a reload to an unresolvable
                  name says the resolver's reason, not ENOENT
  listen_any      --listen :PORT and *:PORT bind every address (IPv4 and, where there is
                  IPv6, IPv6 on one socket)
  duration        the access log's duration_ms has sub-millisecond digits
  refused_metrics a client over --max-conns-per-ip is counted in /metrics, by reason
                  (tide_relay_connections_refused_total) and in ..._rejected_total
  user_reopen     (root) --user nobody with an access log: after logrotate's mv and a
                  SIGHUP the new file is created and written
  user_low_port   (root) --user nobody: a reload adds a listener on a port below 1024
"""
import ctypes
import os
import re
import resource
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import time

import relaytest
from relaytest import (RelayProc, check, connects, exchange, free_port, procs, read_to_eof,
                       serve, skip, write)

BIN, CASE, TMP = relaytest.init("tide-relay-operator-", "signals")
os.chmod(TMP, 0o755)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        try:
            delay = getattr(self.server, "delay", 0)
            if delay:
                time.sleep(delay)
                self.request.sendall(b"ok")
                return
            while True:
                data = self.request.recv(65536)
                if not data:
                    break
                self.request.sendall(data)
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def upstream(delay=0):
    return serve(Echo, delay=delay)


def relayed_conn(port, data, timeout, within=10):
    """A connection to port that relayed data, tried again for within seconds (the start's
    probes may still be ending); None when none did."""
    end = time.time() + within
    while time.time() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            if exchange(s, data) == data:
                return s
            s.close()
        except OSError:
            pass
        time.sleep(0.1)
    return None


def one_exchange(port, data=b"x"):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            return read_to_eof(s)
        finally:
            s.close()
    except OSError:
        return None


class Relay(RelayProc):
    STOP_WAIT = 20
    LOG_TAIL = 3000

    def __init__(self, args, port, stderr=None, wrap=None, preexec=None, env=None):
        self.errpath = os.path.join(TMP, "relay-%d.err" % len(procs))
        self.err = open(self.errpath, "w+") if stderr is None else None
        self.proc = subprocess.Popen((wrap or []) + [BIN] + args, stdout=subprocess.DEVNULL,
                                     stderr=self.err if stderr is None else stderr,
                                     preexec_fn=preexec, env=env)
        procs.append(self.proc)
        end = time.time() + 15
        while time.time() < end and self.proc.poll() is None:
            if connects(port):
                return
            time.sleep(0.05)
        print(self.log())
        if "io_uring" in self.log():
            skip("io_uring is not available here")
        raise SystemExit("relay did not start")

    def wait_log(self, text, seconds=10):
        end = time.time() + seconds
        while time.time() < end:
            if text in self.log():
                return True
            time.sleep(0.05)
        return False

    def reload(self):
        before = self.log().count("reloaded:") + self.log().count("reload failed")
        self.proc.send_signal(signal.SIGHUP)
        end = time.time() + 10
        while time.time() < end:
            log = self.log()
            if log.count("reloaded:") + log.count("reload failed") > before:
                return log.split("SIGHUP: reloading")[-1]
            time.sleep(0.05)
        return ""


def alive(p):
    return p.poll() is None


def case_signals():
    up = upstream()
    a = free_port()
    log = os.path.join(TMP, "access.log")
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up,
               "--access-log", log], a)
    s = socket.create_connection(("127.0.0.1", a), timeout=5)
    check(exchange(s, b"one") == b"one", "relays before the signals")
    check(one_exchange(a) == b"x", "a first connection")
    os.rename(log, log + ".1")
    r.proc.send_signal(signal.SIGUSR1)
    check(r.wait_log("SIGUSR1: reopening the access log"), "SIGUSR1 is logged as a reopen")
    for sig in (signal.SIGUSR2, signal.SIGALRM):
        r.proc.send_signal(sig)
        check(r.wait_log("%s: ignored" % signal.strsignal(sig)), "%s is ignored" % sig.name)
    time.sleep(0.2)
    check(alive(r.proc), "the relay lives after USR1, USR2, ALRM")
    check(exchange(s, b"two") == b"two", "the open connection goes on after the signals")
    check(one_exchange(a) == b"x", "a new connection after the signals")
    end = time.time() + 5
    while time.time() < end and not os.path.exists(log):
        time.sleep(0.05)
    check(os.path.exists(log), "SIGUSR1 recreated the rotated access log")
    s.close()
    check(r.stop(signal.SIGQUIT) == 0, "SIGQUIT drains and exits 0")
    check("Quit: draining" in r.log(), "SIGQUIT drains: %r" % r.log()[-300:])


def case_drain_zero():
    up = upstream()
    a = free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up,
               "--access-log", "--drain-timeout", "0"], a)
    s = socket.create_connection(("127.0.0.1", a), timeout=10)
    check(exchange(s, b"hi") == b"hi", "relays")
    check(r.stop() == 0, "exit 0")
    log = r.log()
    check("drain-timeout 0: resetting open connections now" in log, "says it resets now")
    check("end=drain" in log, "the open connection ended as drain: %r" % log[-500:])
    try:
        got = s.recv(10)
        check(got == b"", "the client sees the end")
    except OSError:
        pass  # a reset: what drain-timeout 0 promises
    s.close()


def case_reload_limits():
    up = upstream()
    a = free_port()
    base = "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" % (a, up)
    conf = write("r.conf", base + "drain-timeout 60\nidle-timeout 300\n")
    r = Relay(["--config", conf], a)
    write("r.conf", base + "drain-timeout 0.5\nidle-timeout 1\nmax-conns 1\n")
    said = r.reload()
    check("reloaded:" in said, "the reload succeeds: %r" % said)
    check("changes only at restart" not in said, "nothing is kept: %r" % said)
    s = relayed_conn(a, b"idle", 15)
    check(s is not None, "relays after the reload")
    try:
        cut = s.recv(10) == b""  # idle: the relay ends it (a FIN or a reset)
    except socket.timeout:
        cut = False
    except OSError:
        cut = True
    check(cut, "idle-timeout 1 after the reload cuts an idle connection (not 300 s)")
    s.close()
    end = time.time() + 10
    while time.time() < end and one_exchange(a, b"x") != b"x":  # the cut one is gone
        time.sleep(0.1)
    s = relayed_conn(a, b"first", 5)
    check(s is not None, "the first client relays")
    second = one_exchange(a, b"second")
    check(second in (None, b""), "max-conns 1 after the reload: a second client is reset "
          "(got %r)" % second)
    t0 = time.time()
    rc = r.stop(wait=30)
    check(rc == 0, "exit 0")
    check(time.time() - t0 < 30, "drain-timeout 0.5 after the reload ends the drain "
          "(not the 60 s of the start)")
    if s:
        s.close()


def private_devlog(sink_path):
    """A wrapper that runs a command in a private mount namespace whose /dev/log is
    sink_path (the real /dev is never touched); None where that cannot be done."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    setup = ('set -e; mkdir -p "$T/olddev"; mount --rbind /dev "$T/olddev"; '
             'mount -t tmpfs -o mode=755 tmpfs /dev; '
             'for n in null zero full random urandom; do touch /dev/$n; '
             'mount --bind "$T/olddev/$n" /dev/$n; done; '
             'umount -l "$T/olddev"; ln -s "%s" /dev/log; exec "$@"' % sink_path)
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", setup, "sh"]
    probe = subprocess.run(wrap + ["true"], env=dict(os.environ, T=TMP), capture_output=True,
                           timeout=30)
    return wrap if probe.returncode == 0 else None


def case_syslog_stalled():
    sink_path = os.path.join(TMP, "log")
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(sink_path)  # never read: the daemon has stalled
    wrap = private_devlog(sink_path)
    if not wrap:
        skip("needs root and a private mount namespace")
    a = free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--echo", "--syslog", "--access-log"], a,
              wrap=wrap, env=dict(os.environ, T=TMP))
    bad = 0
    for i in range(300):  # far more lines than the socket's queue holds
        if one_exchange(a) != b"x":
            bad += 1
            break  # blocked: each more would wait out its timeout
    check(bad == 0, "every connection relayed with syslog stalled (%d failed)" % bad)
    check(r.stop(wait=20) == 0, "SIGTERM stops it, exit 0")
    sink.close()


def case_stderr_stalled():
    rd, wr = os.pipe()
    try:
        import fcntl
        fcntl.fcntl(wr, 1031, 4096)  # F_SETPIPE_SZ: a small pipe fills with a few lines
    except OSError:
        pass
    os.set_blocking(wr, False)
    try:
        while True:
            os.write(wr, b"x" * 4096)
    except BlockingIOError:
        pass  # full: nobody reads rd
    os.set_blocking(wr, True)
    a = free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--echo", "--access-log", "--log-level",
               "debug"], a, stderr=wr)
    os.close(wr)
    bad = 0
    for i in range(100):
        if one_exchange(a) != b"x":
            bad += 1
            break  # blocked: each more would wait out its timeout
    check(bad == 0, "every connection relayed with stderr full (%d failed)" % bad)
    check(r.stop(wait=20) == 0, "SIGTERM stops it, exit 0")
    os.close(rd)


def case_fd_exhaustion():
    # A connect short of a local resource. Descriptors no longer run out there (a client is
    # accepted only with room for its upstream socket: accept_room), so the shortage is the
    # other local one: no ephemeral port (EADDRNOTAVAIL), in a network namespace of our own.
    if os.geteuid() != 0:
        skip("needs root for a network namespace of its own")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
        skip("unshare(CLONE_NEWNET): %s" % os.strerror(ctypes.get_errno()))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ports = [upstream(), upstream()]
    a = free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % ports[0],
               "--upstream", "127.0.0.1:%d" % ports[1], "--access-log", "--drain-timeout",
               "0.5"], a)
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("40000 40001\n")
    held = []
    for p in ports:  # the ephemeral ports toward each upstream are taken
        for i in range(2):
            c = socket.socket()
            try:
                c.connect(("127.0.0.1", p))
            except OSError:
                pass
            held.append(c)
    for i in range(6):
        c = socket.socket()
        c.settimeout(2)
        c.bind(("127.0.0.1", 50000 + i))
        try:
            c.connect(("127.0.0.1", a))
            c.sendall(b"x")
            c.recv(2)
        except OSError:
            pass
        c.close()
    for c in held:
        c.close()
    r.stop()
    text = r.log()
    check("end=resource" in text, "a connect short of local ports ends with end=resource")
    check("Cannot assign requested address" in text, "the log names the local cause")
    check("out of rotation" not in text, "no upstream was taken out of rotation: %r" %
          [line for line in text.splitlines() if "out of rotation" in line])
    check("end=unreachable" not in text, "no access line blames the upstreams")


def relay_check(conf_text):
    conf = write("c.conf", conf_text)
    p = subprocess.run([BIN, "--config", conf, "--check"], capture_output=True, timeout=60)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


def case_check_vs_start():
    a, up = free_port(), upstream()
    for name, text, line in [
            ("unresolvable upstream",
             "listen 127.0.0.1:%d\nupstream no-such-host.invalid:80\n" % a, 2),
            ("unresolvable listen", "listen no-such-host.invalid:%d\nupstream 127.0.0.1:%d\n"
             % (a, up), 1),
            ("access log in a missing directory",
             "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\naccess-log %s/missing/a.log\n" %
             (a, up, TMP), 3),
            ("one listener spelled twice",
             "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\nlisten localhost:%d\n" % (a, up, a),
             3)]:
        rc, out = relay_check(text)
        check(rc == 2 and "c.conf:%d:" % line in out, "%s: --check exit 2 with c.conf:%d: "
              "(rc %d: %r)" % (name, line, rc, out))
        p = subprocess.run([BIN, "--config", os.path.join(TMP, "c.conf")],
                           capture_output=True, timeout=60)
        check(p.returncode == 2, "%s: a start fails too (rc %d)" % (name, p.returncode))
    rc, out = relay_check("listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" % (a, up))
    check(rc == 0, "a good file passes (%r)" % out)
    # a reload to a name that does not resolve: the resolver's reason
    conf = write("r.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\n" % (a, up))
    r = Relay(["--config", conf], a)
    write("r.conf", "listen 127.0.0.1:%d\nupstream no-such-host.invalid:80\n" % a)
    said = r.reload()
    check("reload failed" in said and "No such file or directory" not in said,
          "a failed reload does not blame a file that exists: %r" % said)
    check("r.conf:2: upstream no-such-host.invalid:80: cannot resolve: " in said,
          "the reload says which name and why: %r" % said)
    check(r.stop() == 0, "exit 0")


def case_listen_any():
    for form in (":%d", "*:%d"):
        a = free_port()
        r = Relay(["--listen", form % a, "--echo"], a)
        check(one_exchange(a) == b"x", "%s: relays over IPv4" % (form % a))
        try:
            s6 = socket.create_connection(("::1", a), timeout=5)
            check(exchange(s6, b"v6") == b"v6", "%s: relays over IPv6" % (form % a))
            s6.close()
        except OSError as e:
            if e.errno not in (97, 99, 101):  # no IPv6 on this host
                check(False, "%s: IPv6 connect: %s" % (form % a, e))
        check(r.stop() == 0, "exit 0")


def case_duration():
    up = upstream(delay=0.0123)
    a = free_port()
    log = os.path.join(TMP, "access.log")
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up,
               "--access-log", log], a)
    for i in range(10):
        one_exchange(a)
    check(r.stop() == 0, "exit 0")
    with open(log) as f:
        got = re.findall(r"duration_ms=(\d+)\.(\d{3}) ", f.read())
    check(len(got) >= 10, "access lines: %r" % got)
    check(any(frac != "000" for _, frac in got), "sub-millisecond digits: %r" % got)


def case_refused_metrics():
    up, a, st = upstream(), free_port(), free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up,
               "--max-conns-per-ip", "1", "--stats", "127.0.0.1:%d" % st], a)
    end = time.time() + 10
    s = None
    while s is None and time.time() < end:  # the start's probe may still be open
        try:
            s = socket.create_connection(("127.0.0.1", a), timeout=5)
            if exchange(s, b"one") != b"one":
                raise OSError("not relayed")
        except OSError:
            s = None
            time.sleep(0.1)
    check(s is not None, "the first client relays")
    check(one_exchange(a) in (None, b""), "the second client from the IP is refused")
    m = ""
    end = time.time() + 10
    while time.time() < end:
        c = socket.create_connection(("127.0.0.1", st), timeout=5)
        c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        m = b"".join(iter(lambda: c.recv(65536), b"")).decode()
        c.close()
        per_ip = re.search(r'^tide_relay_connections_refused_total\{reason="max-conns-per-ip"\} '
                           r'([1-9]\d*)$', m, re.M)
        if per_ip:
            break
        time.sleep(0.1)
    check(per_ip, "the refusal by reason in /metrics")
    rej = re.search(r"^tide_relay_connections_rejected_total (\d+)", m, re.M)
    check(rej and int(rej.group(1)) >= 1, "and in tide_relay_connections_rejected_total")
    if s:
        s.close()
    check(r.stop() == 0, "exit 0")


def metrics(st):
    c = socket.create_connection(("127.0.0.1", st), timeout=5)
    c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    m = b"".join(iter(lambda: c.recv(65536), b"")).decode()
    c.close()
    return m


def case_accept_exhaustion():
    a, st = free_port(), free_port()
    r = Relay(["--listen", "127.0.0.1:%d" % a, "--echo", "--threads", "1",
               "--stats", "127.0.0.1:%d" % st], a,
              preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
    held, waiting = [], None
    for i in range(64):  # clients until one is not served: the relay is at its limit
        c = socket.socket()
        c.settimeout(1)
        c.connect(("127.0.0.1", a))  # the kernel's queue completes the handshake
        held.append(c)
        try:
            if exchange(c, b"x") == b"x":
                continue
        except OSError:
            pass
        waiting = c
        break
    check(waiting is not None, "a client waits once the descriptors are used up")
    check(r.wait_log("accepting connections fails: Too many open files (EMFILE: the "
                     "process's descriptor limit is 48;", 5),
          "the log says accept fails, and why: %r" % r.log()[-600:])
    for c in held[:8]:  # descriptors come free
        c.close()
    if waiting is not None:
        waiting.settimeout(10)
        got = b""
        try:
            got = waiting.recv(1)
        except OSError:
            pass
        check(got == b"x", "the waiting client is served once descriptors are free")
    check(one_exchange(a) == b"x", "a new client is served")
    check(r.wait_log("accepting connections again after", 10),
          "the log says accepting works again: %r" % r.log()[-600:])
    check(r.log().count("accepting connections fails") == 1, "one line for the burst")
    m = re.search(r"^tide_relay_accept_errors_total ([1-9]\d*)$", metrics(st), re.M)
    check(m, "the failed accepts in /metrics")
    for c in held[8:]:
        c.close()
    check(r.stop() == 0, "exit 0")


def case_accept_room():
    up = upstream()
    for extra in ([], ["--splice", "1M"]):
        a = free_port()
        log = os.path.join(TMP, "access%d.log" % len(extra))
        r = Relay(["--listen", "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % up,
                   "--threads", "1", "--access-log", log] + extra, a,
                  preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48)))
        clients = []
        for i in range(60):
            c = socket.create_connection(("127.0.0.1", a), timeout=5)
            c.sendall(b"hello")
            clients.append(c)
        served, waiting, lost = [], [], 0

        def answer(c):
            try:
                return c.recv(5) == b"hello"
            except OSError:
                return False

        time.sleep(1)  # the relay takes all it has room for
        ready = select.select(clients, [], [], 0)[0]
        for c in clients:
            if c not in ready:
                waiting.append(c)
            elif answer(c):
                served.append(c)
            else:
                lost += 1
        check(waiting, "%s: some clients wait at the limit" % extra)
        print("%s: %d served, %d waiting, %d reset" % (extra, len(served), len(waiting), lost))
        for c in served:
            c.close()
        end = time.time() + 20
        while waiting and time.time() < end:
            for c in select.select(waiting, [], [], 1)[0]:
                lost += not answer(c)
                waiting.remove(c)
                c.close()
        for c in waiting:
            c.close()
        check(lost == 0 and not waiting, "%s: every client served, %d reset, %d never served"
              % (extra, lost, len(waiting)))
        check(r.wait_log("accepting connections fails: Too many open files", 5),
              "%s: the wait is logged" % extra)
        check(r.stop() == 0, "exit 0")
        with open(log) as f:
            ends = re.findall(r"end=(\w+)", f.read())
        check(len(ends) >= 60 and set(ends) == {"clean"},  # 60 and the start's probe
              "%s: every access line end=clean: %s" % (extra, {e: ends.count(e) for e in set(ends)}))
        print("%s: %d served at once, the others waited" % (extra, len(served)))


def root_nobody():
    if os.geteuid() != 0:
        skip("needs root")
    try:
        import pwd
        pwd.getpwnam("nobody")
    except KeyError:
        skip("no user nobody")


def case_user_reopen():
    root_nobody()
    up, a = upstream(), free_port()
    logdir = os.path.join(TMP, "log")
    os.mkdir(logdir, 0o755)
    log = os.path.join(logdir, "access.log")
    conf = write("r.conf", "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\nuser nobody\n"
                 "access-log %s\n" % (a, up, log))
    r = Relay(["--config", conf], a)
    one_exchange(a)
    os.rename(log, log + ".1")  # logrotate without copytruncate
    r.reload()
    one_exchange(a)
    check(r.stop() == 0, "exit 0")
    check(os.path.exists(log) and os.path.getsize(log) > 0,
          "a new access log after the rotation: %r" % r.log()[-600:])


def case_user_low_port():
    root_nobody()
    up, a = upstream(), free_port()
    low = None
    for p in range(1000, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            low = p
            break
        except OSError:
            pass
        finally:
            s.close()
    if not low:
        skip("no free port below 1024")
    base = "listen 127.0.0.1:%d\nupstream 127.0.0.1:%d\nuser nobody\n" % (a, up)
    conf = write("r.conf", base)
    r = Relay(["--config", conf], a)
    write("r.conf", base + "listen 127.0.0.1:%d\n" % low)
    said = r.reload()
    check("reloaded:" in said, "the reload adds port %d: %r" % (low, said))
    check(one_exchange(low) == b"x", "port %d relays" % low)
    check(r.stop() == 0, "exit 0")


CASES = {"signals": case_signals, "drain_zero": case_drain_zero,
         "reload_limits": case_reload_limits, "syslog_stalled": case_syslog_stalled,
         "stderr_stalled": case_stderr_stalled, "fd_exhaustion": case_fd_exhaustion,
         "check_vs_start": case_check_vs_start, "listen_any": case_listen_any,
         "duration": case_duration, "refused_metrics": case_refused_metrics,
         "user_reopen": case_user_reopen,
         "user_low_port": case_user_low_port, "accept_exhaustion": case_accept_exhaustion,
         "accept_room": case_accept_room}

relaytest.run(CASES)
