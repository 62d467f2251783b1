#!/bin/bash
# Description: examples/http driven by real clients, every answer checked byte for byte:
#  - curl --http1.1 with several URLs in one call: one connection (num_connects 1, then 0),
#    bodies of 0 B .. 200 KB equal to the pattern;
#  - python3: one request sent a byte at a time, then a pipelined burst of 200 requests in
#    one write (bodies up to 300 KB, HTTP/1.0 keep-alive among them) ending with
#    "Connection: close", and three requests followed by FIN: all answers in order, then a
#    clean FIN from the server (no reset); an oversized head gets 431;
#  - wrk -t1 -c50 for 2 s on / and 1 s on /size/100000: requests done, no socket errors,
#    no non-2xx answers;
#  - SIGTERM with an idle keep-alive connection open: the server ends it with FIN (ops->drain)
#    and exits 0 well before the drain deadline, every buffer given back.
# Exit 0 pass, 1 fail, 77 skip (no curl, wrk or python3, or io_uring unavailable). Every
# wait is bounded.
set -u
http=$1
for tool in curl wrk python3; do
	command -v $tool >/dev/null || { echo "SKIP: $tool not installed"; exit 77; }
done
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/http.err" ] && cat "$work/http.err"; exit 1; }

wait_for() { # up to $2 tenths of a second for the shell condition $1
	local i
	for ((i = 0; i < $2; i++)); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

"$http" --listen 127.0.0.1:0 --threads 2 --max-time 80 >"$work/http.out" 2>"$work/http.err" &
hpid=$!
pids+=("$hpid")
wait_for 'grep -q "listening on port" "$work/http.out" || ! kill -0 $hpid 2>/dev/null' 100
if ! kill -0 "$hpid" 2>/dev/null; then
	wait "$hpid"
	[ $? -eq 77 ] && { echo "SKIP: $(cat "$work/http.err")"; exit 77; }
	fail "http did not start"
fi
port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/http.out")
url=http://127.0.0.1:$port

# The body of /size/N is the first N bytes of the 64-character pattern, repeated.
python3 -c 'import sys
p = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_"
sys.stdout.buffer.write(p * (300000 // 64 + 1))' >"$work/pattern"

# curl: five URLs on one kept-alive connection.
sizes=(10 0 200000 65536 65537)
args=()
for i in "${!sizes[@]}"; do args+=("$url/size/${sizes[$i]}" -o "$work/curl$i"); done
args+=("$url/" -o "$work/curl_hello")
timeout 30 curl --http1.1 -sS -w '%{http_code} %{size_download} %{num_connects}\n' \
	"${args[@]}" >"$work/curl.w" || fail "curl failed"
cat "$work/curl.w"
awk 'NR == 1 && $3 != 1 || NR > 1 && $3 != 0 || $1 != 200 { bad = 1 }
     END { exit bad || NR != 6 }' "$work/curl.w" || fail "curl: not one kept-alive connection"
for i in "${!sizes[@]}"; do
	head -c "${sizes[$i]}" "$work/pattern" | cmp - "$work/curl$i" ||
		fail "curl: /size/${sizes[$i]} differs"
done
printf 'hello from tide\n' | cmp - "$work/curl_hello" || fail "curl: / differs"
echo "curl: 6 answers on one connection, byte for byte"

# python3: split, pipelined, HTTP/1.0 keep-alive, FIN after requests, a long head.
timeout 60 python3 - "$port" "$work/pattern" <<'PY' || fail "python3 client"
import socket, sys
port, pattern = int(sys.argv[1]), open(sys.argv[2], "rb").read()

def answer(n, close=False, v10=False):
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n"
            % (n, b"Connection: close\r\n" if close else b"")) + pattern[:n]

def conn():
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(20)
    return s

def read_to_end(s):
    got = b""
    while True:
        try:
            d = s.recv(1 << 20)
        except ConnectionResetError:
            raise SystemExit("reset instead of FIN after %d bytes" % len(got))
        if not d:
            return got
        got += d

def check(name, got, want):
    if got != want:
        i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                 min(len(got), len(want)))
        raise SystemExit("%s: %d bytes, want %d, first difference at %d"
                         % (name, len(got), len(want), i))
    print("%s: %d bytes as expected" % (name, len(got)))

s = conn()
for b in b"GET /size/7 HTTP/1.1\r\nHost: x\r\n\r\n":
    s.send(bytes([b]))
sizes = [(i * 7919) % 300000 if i % 10 == 0 else (i * 131) % 2000 for i in range(200)]
burst = b"".join(b"GET /size/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in sizes)
burst += b"GET /size/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
burst += b"GET /size/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
s.sendall(burst)
want = answer(7) + b"".join(answer(n) for n in sizes) + answer(3) + answer(5, True)
check("split + 202 pipelined", read_to_end(s), want)

s = conn()
s.sendall(b"GET /size/1 HTTP/1.1\r\n\r\nGET /size/2 HTTP/1.1\r\n\r\nGET /size/70000 HTTP/1.1\r\n\r\n")
s.shutdown(socket.SHUT_WR)
check("3 pipelined then FIN", read_to_end(s), answer(1) + answer(2) + answer(70000))

s = conn()
s.sendall(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
check("long head", read_to_end(s),
      b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
      b"Connection: close\r\n\r\n")
PY

# wrk: short, bounded runs.
for run in "2 /" "1 /size/100000"; do
	set -- $run
	timeout 30 wrk -t1 -c50 -d${1}s "$url$2" >"$work/wrk.out" 2>&1 || fail "wrk $2 failed"
	grep -E "requests in|Requests/sec" "$work/wrk.out" | sed "s|^|wrk $2: |"
	grep -q "requests in" "$work/wrk.out" || fail "wrk $2: no result"
	grep -qE "Socket errors|Non-2xx" "$work/wrk.out" && { cat "$work/wrk.out"; fail "wrk $2: errors"; }
done

# SIGTERM with an idle keep-alive connection: FIN from the drain callback, exit 0.
python3 - "$port" >"$work/idle.out" <<'PY' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(20)
s.sendall(b"GET /size/4 HTTP/1.1\r\n\r\n")
got = b""
while not got.endswith(b"0123"):
    got += s.recv(100)
print("answered", flush=True)
try:
    print("fin" if s.recv(100) == b"" else "data")
except OSError as e:
    print("error", e)
PY
ipid=$!
pids+=("$ipid")
wait_for 'grep -q answered "$work/idle.out"' 100 || fail "idle client: no answer"
kill -TERM "$hpid"
wait_for '! kill -0 $hpid 2>/dev/null' 30 || fail "http did not stop within 3 s of SIGTERM"
wait "$hpid"
rc=$?
[ $rc -eq 0 ] || fail "http exit status $rc"
wait_for '[ $(wc -l <"$work/idle.out") -ge 2 ]' 50
grep -qx fin "$work/idle.out" || fail "idle keep-alive connection: $(tail -1 "$work/idle.out"), not FIN"
echo "SIGTERM: the idle keep-alive connection got FIN; exit 0"
grep -q "still holds" "$work/http.err" && fail "buffers not given back"
echo "PASS"
