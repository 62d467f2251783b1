# SPDX-License-Identifier: MIT
"""What the black-box relay tests (relay_listeners.py, relay_operator.py, relay_ops.py) share.

A test calls init() first: it reads BIN and CASE from the command line and makes the
temporary directory TMP that write() and cleanup() use. check() counts a failure in
`failures` and goes on; skip() cleans up and exits 77. Processes put in `procs` and
socketservers put in `servers` are stopped by cleanup(): killed, or with gentle=True
(init) sent SIGTERM first and killed after 5 s. Every wait is bounded; loopback only.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

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
