# SPDX-License-Identifier: MIT
"""What the black-box relay tests (relay_listeners.py, relay_operator.py, relay_ops.py) share.

A test calls init() first: it reads BIN and CASE from the command line and makes the
temporary directory TMP that write() and cleanup() use. check() counts a failure in
`failures` and goes on; skip() cleans up and exits 77. Processes put in `procs` and
socketservers put in `servers` are stopped by cleanup(): killed, or with gentle=True
(init) sent SIGTERM first and killed after 5 s. serve() starts a threaded upstream of the
test's own; RelayProc is what each test's Relay class shares (its log, its stop). Every
wait is bounded; loopback only.
"""
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading

BIN = "tide-relay"
CASE = None
TMP = None
GENTLE = False
failures = []
procs = []
servers = []


def init(prefix, default_case, gentle=False):
    """Read BIN and CASE from argv, make TMP; returns (BIN, CASE, TMP)."""
    global BIN, CASE, TMP, GENTLE
    BIN = sys.argv[1] if len(sys.argv) > 1 else "tide-relay"
    CASE = sys.argv[2] if len(sys.argv) > 2 else default_case
    TMP = tempfile.mkdtemp(prefix=prefix)
    GENTLE = gentle
    return BIN, CASE, TMP


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)
    return cond


def skip(why):
    print("SKIP:", why)
    cleanup()
    sys.exit(77)


def cleanup():
    for p in procs:
        if p.poll() is None:
            if GENTLE:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            else:
                p.kill()
                p.wait()
    for s in servers:
        s.shutdown()
        s.server_close()
    shutil.rmtree(TMP, ignore_errors=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def exchange(sock, data):
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        b = sock.recv(65536)
        if not b:
            break
        got += b
    return got


def read_to_eof(sock):
    """Every byte sock receives until the peer's FIN."""
    got = b""
    while True:
        b = sock.recv(65536)
        if not b:
            return got
        got += b


def run(cases):
    """Run cases[CASE], clean up, print the verdict and exit 0 (pass) or 1."""
    try:
        cases[CASE]()
    finally:
        cleanup()
    print("%s: %s" % (CASE, "FAIL (%d)" % len(failures) if failures else "pass"))
    sys.exit(1 if failures else 0)


def serve(handler, **attrs):
    """A threaded TCP server on 127.0.0.1 with handler, attrs set on it: its port."""
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    s = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    for k, v in attrs.items():
        setattr(s, k, v)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    servers.append(s)
    return s.server_address[1]


class RelayProc:
    """A started relay: self.proc, and self.err its stderr file (None: not ours to read)."""

    STOP_WAIT = 15  # seconds stop() waits for the exit by default
    LOG_TAIL = 4000  # characters of stderr stop() prints when the exit is not 0

    def log(self):
        if not self.err:
            return ""
        self.err.flush()
        with open(self.err.name, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, wait=None):
        """Send sig and wait for the exit, killed after wait seconds: its status or None."""
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(self.STOP_WAIT if wait is None else wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        if rc != 0:
            print("relay exit %s; its stderr ends:\n%s" % (rc, self.log()[-self.LOG_TAIL:]))
        return rc
