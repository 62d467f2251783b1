#!/bin/bash
# Description: examples/fanout driven by socat, as a user would try it: three subscribers
# connect at different moments, one publisher sends 1000 lines of 1 B to 40 KiB (several
# lines per pool buffer, and lines over several buffers), and every subscriber must get
# every line, in order, byte for byte (the ones before it came from the history, which
# keeps the received buffers). A fourth client connects after the publisher is gone and
# gets the history alone. Then SIGTERM: fanout exits 0 with every buffer given back.
# Exit 0 pass, 1 fail, 77 skip (no socat, or io_uring unavailable). Every wait is bounded.
set -u
fanout=$1
command -v socat >/dev/null || { echo "SKIP: socat not installed"; exit 77; }
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$work/fanout.err" ] && cat "$work/fanout.err"; exit 1; }

# Wait up to $2 tenths of a second for the shell condition $1.
wait_for() {
	local i
	for ((i = 0; i < $2; i++)); do
		eval "$1" && return 0
		sleep 0.1
	done
	return 1
}

"$fanout" --listen 127.0.0.1:0 --history 1000 --max-time 50 >"$work/fanout.out" \
	2>"$work/fanout.err" &
fpid=$!
pids+=("$fpid")
wait_for 'grep -q "listening on port" "$work/fanout.out" || ! kill -0 $fpid 2>/dev/null' 100
if ! kill -0 "$fpid" 2>/dev/null; then
	wait "$fpid"
	[ $? -eq 77 ] && { echo "SKIP: $(cat "$work/fanout.err")"; exit 77; }
	fail "fanout did not start"
fi
port=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$work/fanout.out")

# 1000 lines, lengths 1 .. ~40000 bytes, deterministic.
awk 'BEGIN { s = 7; for (i = 0; i < 1000; i++) { s = (s * 1103515245 + 12345) % 2147483648;
	n = (i % 10 == 0) ? s % 40000 : s % 300; l = sprintf("%d:", i);
	while (length(l) < n) l = l "abcdefghijklmnopqrstuvwxyz0123456789";
	print substr(l, 1, n > length(i ":") ? n : length(i ":")) } }' >"$work/lines"
total=$(wc -c <"$work/lines")

sub() { socat -u "TCP:127.0.0.1:$port" - >"$work/sub$1" 2>/dev/null & pids+=($!); }
sub 1
sub 2
# The publisher sends half, a third subscriber comes, then the rest: from two writes.
head -n 500 "$work/lines" >"$work/half1"
tail -n +501 "$work/lines" >"$work/half2"
(cat "$work/half1"; sleep 0.3; cat "$work/half2") | socat -u - "TCP:127.0.0.1:$port" &
pids+=($!)
sleep 0.1
sub 3
for i in 1 2 3; do
	wait_for "[ \$(wc -c <\"$work/sub$i\") -ge $total ]" 200 ||
		fail "subscriber $i got $(wc -c <"$work/sub$i") of $total bytes"
	cmp "$work/sub$i" "$work/lines" || fail "subscriber $i: lines differ"
done
echo "3 subscribers got all 1000 lines ($total bytes) in order"
sub 4
wait_for "[ \$(wc -c <\"$work/sub4\") -ge $total ]" 200 || fail "late subscriber: no history"
cmp "$work/sub4" "$work/lines" || fail "late subscriber: history differs"
echo "a late subscriber got the history (1000 lines)"

for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null; done
kill -TERM "$fpid"
wait_for '! kill -0 $fpid 2>/dev/null' 100 || fail "fanout did not stop on SIGTERM"
wait "$fpid"
rc=$?
[ $rc -eq 0 ] || fail "fanout exit status $rc"
grep -q "still holds" "$work/fanout.err" && fail "buffers not given back"
echo "PASS"
