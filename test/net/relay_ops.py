#!/usr/bin/env python3
"""tide-relay as operators run it, against real servers from Debian (nginx, redis, haproxy).

Usage: relay_ops.py RELAY_BINARY CASE     exit 0 pass, 1 fail, 77 skip (a server is missing)

Cases:
  balance     three upstreams (two nginx servers, one dead port), roundrobin: 0 failed
              client connections, both live servers used, the dead one out in /metrics,
              one access line per connection, promtool-clean /metrics
  reload      redis behind the relay; SIGHUP with an edited file (another redis) during a
              bounded client loop: 0 failed connections, established ones keep their
              server, new ones go to the new one; a bad file keeps the old configuration
  proxy       --send-proxy v1 and v2 to nginx (proxy_protocol listener): nginx sees the
              client's address; with --accept-proxy the address the client's header gave
  check       --check on good and bad files: exit 0 / 2, problems with FILE:LINE
  port_in_use a second relay on a taken port exits with "Address already in use"
  logs        every stderr line is "RFC3339 LEVEL message"
  limits      --max-conns-per-ip 2, then --max-conns 2: a third connection is closed (and
              logged, access end=refused: every connection has its line), a new one is taken
              once one closed
Every wait is bounded; loopback only.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import relaytest
from relaytest import RelayProc, check, free_port, procs, read_to_eof, skip, write

BIN, CASE, TMP = relaytest.init("tide-relay-ops-", "balance", gentle=True)
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug) .+$")


def wait_port(port, proc=None, seconds=5.0):
    end = time.time() + seconds
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.05)
    return False


def nginx(bodies, proxy_protocol=False):
    """One nginx with a server per body; returns the ports."""
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(exe, os.X_OK):
        skip("nginx is not installed")
    ports = [free_port() for _ in bodies]
    servers = "".join(
        "server { listen 127.0.0.1:%d%s; location / { return 200 \"%s\\n\"; } }\n" %
        (p, " proxy_protocol" if proxy_protocol else "", b) for p, b in zip(ports, bodies))
    d = tempfile.mkdtemp(dir=TMP)
    conf = write("nginx-%d.conf" % ports[0],
                 "daemon off; master_process off; worker_processes 1; pid %s/pid;\n"
                 "error_log %s/error.log warn; events { worker_connections 256; }\n"
                 "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
                 "fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n%s}\n" %
                 (d, d, d, d, d, d, d, servers))
    p = subprocess.Popen([exe, "-p", d, "-c", conf, "-e", d + "/error.log"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    for port in ports:
        if not wait_port(port, p):
            skip("nginx did not start")
    return ports


def redis(tag):
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(exe, os.X_OK):
        skip("redis-server is not installed")
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", TMP],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    if not wait_port(port, p):
        skip("redis-server did not start")
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"SET who %s\r\n" % tag.encode())
    s.recv(64)
    s.close()
    return port


class Relay(RelayProc):
    LOG_TAIL = 6000

    def __init__(self, args):
        self.err = open(os.path.join(TMP, "relay-%d.err" % len(procs)), "w+")
        self.proc = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=self.err)
        procs.append(self.proc)
        self.port = self.stats = None
        end = time.time() + 10
        while time.time() < end and self.port is None:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+) ", self.log())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            time.sleep(0.05)
        m = re.search(r"stats on 127\.0\.0\.1:(\d+)", self.log())
        if m:
            self.stats = int(m.group(1))
        if self.port is None:
            print(self.log())
            if "io_uring" in self.log():
                skip("io_uring is not available here")
            raise SystemExit("relay did not start")

    def get(self, path):
        s = socket.create_connection(("127.0.0.1", self.stats), timeout=3)
        s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
        data = read_to_eof(s)
        s.close()
        return data.split(b"\r\n\r\n", 1)[-1].decode()


def http_get(port, header=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(header + b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
    data = read_to_eof(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode() if b" " in head else "", body.decode().strip()


def redis_cmd(sock, cmd):
    sock.sendall(cmd + b"\r\n")
    data = b""
    while not data.endswith(b"\r\n") or (data.startswith(b"$") and data.count(b"\r\n") < 2):
        b = sock.recv(4096)
        if not b:
            raise OSError("closed")
        data += b
    return data


def case_balance():
    a, b = nginx(["A", "B"])
    dead = free_port()
    access = os.path.join(TMP, "access.log")
    r = Relay(["--listen", "127.0.0.1:0", "--stats", "127.0.0.1:0", "--upstream",
               "127.0.0.1:%d" % a, "--upstream", "127.0.0.1:%d" % dead, "--upstream",
               "127.0.0.1:%d" % b, "--connect-timeout", "1", "--access-log", access])
    seen, failed = {}, 0
    for _ in range(60):
        try:
            status, body = http_get(r.port)
            if status != "200":
                failed += 1
            seen[body] = seen.get(body, 0) + 1
        except OSError:
            failed += 1
    print("60 requests through 3 upstreams (one dead): %d failed, served %s" % (failed, seen))
    check(failed == 0, "%d of 60 client connections failed" % failed)
    check(seen.get("A", 0) > 10 and seen.get("B", 0) > 10, "both live servers used: %s" % seen)
    metrics = r.get("/metrics")
    check('tide_upstream_up{upstream="127.0.0.1:%d"} 0' % dead in metrics,
          "the dead upstream is out in /metrics")
    check('tide_upstream_up{upstream="127.0.0.1:%d"} 1' % a in metrics, "A is up in /metrics")
    check("process_resident_memory_bytes" in metrics and "tide_build_info{" in metrics,
          "process_* and tide_build_info in /metrics")
    check('"upstreams":[' in r.get("/stats"), "/stats has the upstreams")
    for name in ("tide_pool_vetoes_total", "tide_pool_os_failures_total",
                 "tide_pool_bad_frees_total", "tide_pool_purged_bytes_total",
                 "tide_agent_forced_grows_total", "tide_agent_recv_arms_total",
                 "tide_pool_maintenance_runs_total"):
        check("\n%s " % name in metrics, "/metrics has %s" % name)
    s = socket.create_connection(("127.0.0.1", r.stats), timeout=3)
    s.sendall(b"HEAD /metrics HTTP/1.0\r\n\r\n")
    head = read_to_eof(s)
    s.close()
    check(head.startswith(b"HTTP/1.0 200") and head.endswith(b"\r\n\r\n"),
          "HEAD /metrics: the headers, no body")
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=metrics.encode(),
                           capture_output=True, timeout=30)
        check(p.returncode == 0, "promtool check metrics: %s" % p.stdout.decode()[:500])
    check(r.stop() == 0, "relay exit 0")
    with open(access) as f:
        lines = f.read().splitlines()
    fmt = re.compile(r"^\S+Z access client=127\.0\.0\.1:\d+ listener=127\.0\.0\.1:\d+ "
                     r"upstream=127\.0\.0\.1:(\d+) bytes_up=\d+ bytes_down=\d+ "
                     r"duration_ms=\d+\.\d{3} end=clean$")
    ok = [m for m in map(fmt.match, lines) if m]
    check(len(lines) == 60 and len(ok) == 60, "60 access lines, all clean: %d of %d" %
          (len(ok), len(lines)))
    check(all(int(m.group(1)) != dead for m in ok), "no access line names the dead server")
    check("connect failed" in r.log(), "the dead upstream's failures are logged")


def case_reload():
    r1, r2 = redis("one"), redis("two")
    conf = write("relay.conf", "listen 127.0.0.1:0\nupstream 127.0.0.1:%d\n" % r1)
    r = Relay(["--config", conf, "--connect-timeout", "1"])
    held = []
    for _ in range(4):  # established before the reload
        s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        check(redis_cmd(s, b"GET who").endswith(b"one\r\n"), "before: redis one")
        held.append(s)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def load():
        end = time.time() + 20
        while not stop.is_set() and time.time() < end:
            try:
                s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
                ok = redis_cmd(s, b"PING") == b"+PONG\r\n"
                s.close()
                counts["ok" if ok else "failed"] += 1
            except OSError:
                counts["failed"] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    write("relay.conf", "listen 127.0.0.1:0\nupstream 127.0.0.1:%d\n" % r2)
    r.proc.send_signal(signal.SIGHUP)
    end = time.time() + 5
    while "reloaded:" not in r.log() and time.time() < end:
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    print("bounded load across a reload: %d connections, %d failed" %
          (counts["ok"] + counts["failed"], counts["failed"]))
    check("reloaded: 1 listener, 1 upstream" in r.log(), "the reload is logged")
    check(counts["failed"] == 0 and counts["ok"] > 20, "0 failed connections: %s" % counts)
    for s in held:
        check(redis_cmd(s, b"GET who").endswith(b"one\r\n"), "established ones keep redis one")
        s.close()
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    check(redis_cmd(s, b"GET who").endswith(b"two\r\n"), "new connections go to redis two")
    s.close()
    write("relay.conf", "listen 127.0.0.1:0\nupstream 127.0.0.1:0\n")
    r.proc.send_signal(signal.SIGHUP)
    end = time.time() + 5
    while "reload failed" not in r.log() and time.time() < end:
        time.sleep(0.05)
    check("relay.conf:2: upstream" in r.log() and "reload failed" in r.log(),
          "a bad file is logged with its line and refused")
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    check(redis_cmd(s, b"GET who").endswith(b"two\r\n"), "after a bad file: still redis two")
    s.close()
    check(r.stop() == 0, "relay exit 0")


def case_proxy():
    (port,) = nginx(["$proxy_protocol_addr $proxy_protocol_port"], proxy_protocol=True)
    for v in ("v1", "v2"):
        r = Relay(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:%d" % port,
                   "--send-proxy", v])
        status, body = http_get(r.port)
        print("nginx behind --send-proxy %s saw %r" % (v, body))
        check(status == "200" and body.startswith("127.0.0.1 "), "send-proxy %s: %r" % (v, body))
        check(r.stop() == 0, "relay exit 0")
    r = Relay(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:%d" % port,
               "--send-proxy", "v2", "--accept-proxy"])
    status, body = http_get(r.port, b"PROXY TCP4 192.0.2.10 127.0.0.1 4242 80\r\n")
    print("nginx behind --accept-proxy --send-proxy v2 saw %r" % body)
    check(status == "200" and body == "192.0.2.10 4242", "accept-proxy passes it on: %r" % body)
    s = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    try:
        data = s.recv(100)
    except OSError:
        data = b""
    s.close()
    check(data == b"", "a client without a PROXY header is closed")
    check(r.stop() == 0, "relay exit 0")
    check("not a PROXY protocol header" in r.log(), "the bad header is logged")


def case_check():
    good = write("good.conf", "# ok\nlisten 127.0.0.1:7000\nupstream 127.0.0.1:8080\n")
    bad = write("bad.conf", "listen 127.0.0.1:7000\nupstream 127.0.0.1:70000\nbogus 1\n")
    p = subprocess.run([BIN, "--config", good, "--check"], capture_output=True, timeout=30)
    check(p.returncode == 0 and b"configuration OK" in p.stdout, "good file: exit 0")
    p = subprocess.run([BIN, "--config", bad, "--check"], capture_output=True, timeout=30)
    err = p.stderr.decode()
    print(err)
    check(p.returncode == 2, "bad file: exit 2, got %d" % p.returncode)
    check("bad.conf:2: upstream: '127.0.0.1:70000': port 70000 out of range" in err and
          "bad.conf:3: unknown option 'bogus'" in err, "each problem with its line")


def case_port_in_use():
    a = Relay(["--listen", "127.0.0.1:0", "--echo"])
    p = subprocess.run([BIN, "--listen", "127.0.0.1:%d" % a.port, "--echo"],
                       capture_output=True, timeout=30)
    check(p.returncode != 0 and b"Address already in use" in p.stderr,
          "a second relay on a taken port fails: exit %d" % p.returncode)
    b = Relay(["--listen", "127.0.0.1:0", "--echo", "--reuse-port"])
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:%d" % b.port, "--echo", "--reuse-port"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    time.sleep(0.5)
    check(p.poll() is None, "--reuse-port on both: shared")
    check(a.stop() == 0 and b.stop() == 0, "relays exit 0")


def case_logs():
    r = Relay(["--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:%d" % free_port(),
               "--connect-timeout", "0.5", "--log-level", "debug"])
    for _ in range(20):
        try:
            http_get(r.port)
        except OSError:
            pass
    check(r.stop() == 0, "relay exit 0")
    lines = r.log().splitlines()
    bad = [ln for ln in lines if not LINE.match(ln)]
    check(lines and not bad, "every line is 'TIME LEVEL message': %r" % bad[:3])
    check(any("suppressed" in ln for ln in lines), "repeated failures are rate-limited")


def case_limits():
    for limit in ("--max-conns-per-ip", "--max-conns"):
        limits(limit)


def limits(limit):
    access = os.path.join(TMP, "access%s.log" % limit)
    r = Relay(["--listen", "127.0.0.1:0", "--echo", limit, "2",
               "--access-log", access, "--keepalive"])
    keep = [socket.create_connection(("127.0.0.1", r.port), timeout=5) for _ in range(2)]
    for i, s in enumerate(keep):
        s.sendall(b"x%d" % i)
        check(s.recv(10) == b"x%d" % i, "%s: the first two connections echo" % limit)
    try:  # the reset may even beat the connect's own return
        extra = socket.create_connection(("127.0.0.1", r.port), timeout=5)
        try:
            extra.sendall(b"y")
            data = extra.recv(10)
        except OSError:
            data = b""
        extra.close()
    except ConnectionResetError:
        data = b""
    check(data == b"", "%s: the third connection is closed at once" % limit)
    keep[0].close()
    time.sleep(0.2)
    again = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    again.sendall(b"z")
    check(again.recv(10) == b"z", "%s: after one closed, a new one is taken" % limit)
    again.close()
    keep[1].close()
    check(r.stop() == 0, "relay exit 0")
    with open(access) as f:
        ends = re.findall(r"end=(\w+)", f.read())
    check(ends.count("refused") == 1 and len(ends) == 4,
          "%s: one access line each, the refused one end=refused: %s" % (limit, ends))
    check("over %s" % limit in r.log(), "the refusal is logged")


CASES = {"limits": case_limits, "balance": case_balance, "reload": case_reload, "proxy": case_proxy,
         "check": case_check, "port_in_use": case_port_in_use, "logs": case_logs}

relaytest.run(CASES)
