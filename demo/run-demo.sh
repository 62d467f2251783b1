#!/usr/bin/env bash
# run-demo.sh - tide-relay under bursts of connections: the pool grows, then shrinks.
#
# Starts an echo server (tide-echo) and tide-relay in front of it with --stats,
# all on 127.0.0.1, then plays tide-load's schedule (about 20 s: quiet, a burst,
# quiet, a bigger burst, quiet) through the relay. Once a second it prints one
# line polled from the relay's /stats; at the end it stops the relay with
# SIGTERM, checks that it exited 0 with every buffer returned (live = 0), and
# plots unreserved, resident and live memory over time with gnuplot.
#
# Every process it starts is stopped on exit, error or Ctrl-C. It ends by
# itself in about 25 s. Exit status 0 when the load was echoed in full, the
# relay exited 0 and reported live = 0.
#
# Usage: run-demo.sh --relay PATH --load PATH --echo PATH --out DIR
#                    [--schedule LIST] [--relay-args "ARGS"]
set -uo pipefail
# check_interrupt (Ctrl-C is checked between steps), stop_pids, free_port
# shellcheck source=../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

relay= load= echo_bin= out=. schedule= relay_args=
while [ $# -gt 0 ]; do
	case "$1" in
	--relay) relay=$2; shift 2 ;;
	--load) load=$2; shift 2 ;;
	--echo) echo_bin=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--schedule) schedule=$2; shift 2 ;;
	--relay-args) relay_args=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
for b in "$relay" "$load" "$echo_bin"; do
	if [ -z "$b" ] || [ ! -x "$b" ]; then
		echo "run-demo.sh: missing program '${b:-?}': build the tide-relay, tide-load" \
			"and tide-echo targets first" >&2
		exit 1
	fi
done
command -v gnuplot >/dev/null || echo "run-demo.sh: gnuplot not found; no plot (scripts/deps.sh demo)" >&2

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/tide-demo.XXXXXX")
pids=()
cleanup() {
	stop_pids 20 "${pids[@]}" # a process that ignores SIGTERM gets SIGKILL after 2 s
	pids=()
	rm -rf "$work"
}
trap cleanup EXIT

# GET a path from the stats server into $body, without forking (the machine is
# busy during the demo; a poll must not take long). Bounded by read -t.
body=
http_get() {
	local resp=
	body=
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
	IFS= read -r -d '' -t 2 resp <&3
	exec 3<&-
	[[ $resp == "HTTP/"*" 200 "* ]] || return 1
	body=${resp#*$'\r\n\r\n'}
}

# Helpers set a variable instead of printing, so that the loop below runs no
# command substitution: a signal that lands inside one confuses bash 5.2.

# VAR=the first number after "KEY": in $body (keys are unique enough in /stats).
json_num() {
	if [[ $body =~ \"$1\"[[:space:]]*:[[:space:]]*([0-9]+) ]]; then
		printf -v "$2" '%s' "${BASH_REMATCH[1]}"
	else
		printf -v "$2" '%s' ""
	fi
}

# VAR=BYTES as MiB with one decimal, in shell arithmetic.
mib() {
	local t=$(((${1:-0} * 10 + 524288) / 1048576))
	printf -v "$2" '%s' "$((t / 10)).$((t % 10))"
}

# now_ms=milliseconds of the wall clock.
now_ms=0
clock() {
	local r=${EPOCHREALTIME/[.,]/}
	now_ms=$((r / 1000))
}

echo_port=$(free_port)
relay_port=$(free_port)
stats_port=$(free_port)
while [ "$relay_port" = "$echo_port" ]; do relay_port=$(free_port); done
while [ "$stats_port" = "$echo_port" ] || [ "$stats_port" = "$relay_port" ]; do
	stats_port=$(free_port)
done

"$echo_bin" --listen "127.0.0.1:$echo_port" --max-time 60 &
pids+=($!)
# shellcheck disable=SC2086 # relay_args is a list of words on purpose
"$relay" --listen "127.0.0.1:$relay_port" --upstream "127.0.0.1:$echo_port" \
	--stats "127.0.0.1:$stats_port" $relay_args >"$work/relay.log" 2>&1 &
relay_pid=$!
pids+=("$relay_pid")

stats=
for ((i = 0; i < 50; i++)); do
	http_get "$stats_port" /stats 2>/dev/null && stats=$body && [ -n "$stats" ] && break
	kill -0 "$relay_pid" 2>/dev/null || break
	sleep 0.1
	check_interrupt
done
if [ -z "$stats" ]; then
	echo "run-demo.sh: tide-relay did not serve /stats on 127.0.0.1:$stats_port; its log:" >&2
	cat "$work/relay.log" >&2
	exit 1
fi

echo "tide demo: echo on 127.0.0.1:$echo_port, tide-relay on 127.0.0.1:$relay_port," \
	"stats on http://127.0.0.1:$stats_port/stats"
load_args=(--connect "127.0.0.1:$relay_port")
[ -n "$schedule" ] && load_args+=(--schedule "$schedule")
"$load" "${load_args[@]}" >"$work/load.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")

dat="$out/tide-demo.dat"
echo "# t_s conns unreserved_mib resident_mib live_mib boundary_mib grows shrinks" >"$dat"
printf '%6s %6s %11s %10s %9s %13s %6s %7s\n' "t(s)" "conns" "unresv MiB" "resid MiB" \
	"live MiB" "boundary MiB" "grows" "shrinks"
clock
t0=$now_ms
tick=0 load_done=0 after=0
while [ $tick -lt 40 ]; do
	tick=$((tick + 1))
	clock
	wait_ms=$((t0 + tick * 1000 - now_ms))
	[ $wait_ms -gt 0 ] && sleep "$((wait_ms / 1000)).$((wait_ms % 1000 / 100))$((wait_ms % 100 / 10))$((wait_ms % 10))"
	check_interrupt
	http_get "$stats_port" /stats 2>/dev/null || body=
	s=$body
	clock
	el=$((now_ms - t0))
	t="$((el / 1000)).$(((el % 1000) / 100))"
	if [ -n "$s" ]; then
		json_num current conns
		[ -z "$conns" ] && json_num connections conns
		json_num unreserved_size unres
		json_num resident_size resid
		json_num live_bytes live
		json_num boundary_offset bound
		[ -z "$bound" ] && bound=$unres
		json_num grows grows
		json_num shrinks shrinks
		mib "$unres" m_unres
		mib "$resid" m_resid
		mib "$live" m_live
		mib "$bound" m_bound
		printf '%6s %6s %11s %10s %9s %13s %6s %7s\n' "$t" "${conns:-?}" "$m_unres" \
			"$m_resid" "$m_live" "$m_bound" "${grows:-?}" "${shrinks:-?}"
		echo "$t ${conns:-0} $m_unres $m_resid $m_live $m_bound ${grows:-0} ${shrinks:-0}" >>"$dat"
	else
		printf '%6s  (no answer from /stats)\n' "$t"
	fi
	if [ $load_done -eq 0 ] && ! kill -0 "$load_pid" 2>/dev/null; then
		load_done=1
	fi
	# after the load ends, two more seconds show the pool settle
	if [ $load_done -eq 1 ]; then
		after=$((after + 1))
		[ $after -ge 2 ] && break
	fi
done

check_interrupt
status=0
if ! kill -0 "$load_pid" 2>/dev/null; then
	wait "$load_pid"
	load_rc=$?
else
	kill -TERM "$load_pid" 2>/dev/null
	wait "$load_pid"
	load_rc=124
fi
echo
sed 's/^/  /' "$work/load.log"
if [ "$load_rc" -eq 3 ]; then
	echo "run-demo.sh: some connections were unfinished at their phase's end: the machine" \
		"could not carry the load in time (no byte was wrong)" >&2
elif [ "$load_rc" -ne 0 ]; then
	echo "run-demo.sh: tide-load failed (exit $load_rc)" >&2
	status=1
fi

# Stop the relay: SIGTERM drains and exits 0 with live = 0.
kill -TERM "$relay_pid"
relay_rc=
for ((i = 0; i < 50; i++)); do
	if ! kill -0 "$relay_pid" 2>/dev/null; then
		wait "$relay_pid"
		relay_rc=$?
		break
	fi
	sleep 0.1
done
if [ -z "$relay_rc" ]; then
	echo "run-demo.sh: tide-relay still running 5 s after SIGTERM; killing it" >&2
	kill -KILL "$relay_pid" 2>/dev/null
	wait "$relay_pid" 2>/dev/null
	relay_rc=137
fi
echo "tide-relay exited with status $relay_rc; its last lines:"
tail -n 5 "$work/relay.log" | sed 's/^/  /'
if [ "$relay_rc" -ne 0 ]; then
	echo "run-demo.sh: tide-relay exited $relay_rc, not 0" >&2
	status=1
fi
# The relay logs its live count at exit: "live = 0", "live=0", "live_bytes 0", ...
live_re='(^|[^_[:alnum:]])live(_bytes|_buffers)?[[:space:]]*[=:]?[[:space:]]*'
if grep -Eiq "${live_re}0([^0-9.]|\$)" "$work/relay.log" &&
	! grep -Eiq "${live_re}[1-9]" "$work/relay.log"; then
	echo "tide-relay returned every buffer: live = 0"
else
	echo "run-demo.sh: tide-relay did not report live = 0 at exit" >&2
	status=1
fi

if command -v gnuplot >/dev/null; then
	png="$out/tide-demo.png"
	if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
		term='pngcairo size 1000,560 font "sans,10"'
	else
		term='png size 1000,560'
	fi
	gnuplot <<-EOF
		set terminal $term
		set output "$png"
		set title "tide-relay under bursts: the pool grows with in-flight data and shrinks after"
		set xlabel "time (s)"
		set ylabel "MiB"
		set y2label "connections"
		set y2tics
		set ytics nomirror
		set key top left
		set grid
		plot "$dat" using 1:3 with lines lw 2 title "unreserved (boundary - base)", \
		     "$dat" using 1:4 with lines lw 2 dt 2 title "resident", \
		     "$dat" using 1:5 with lines lw 2 title "live", \
		     "$dat" using 1:2 axes x1y2 with steps lc rgb "gray" title "connections"
	EOF
	if [ -s "$png" ]; then
		echo "plot: $png (data: $dat)"
	else
		echo "run-demo.sh: gnuplot wrote no plot" >&2
		status=1
	fi
fi
exit $status
