#!/usr/bin/env bash
# run-demo.sh - tide-relay under bursts of connections: the pool grows, then shrinks.
#
# Starts an echo server (tide-echo) and tide-relay in front of it with --stats,
# all on 127.0.0.1, then plays tide-load's schedule (about 20 s: quiet, a burst,
# quiet, a bigger burst, quiet) through the relay. It says first what unreserved,
# resident and live mean; samples the relay's /stats 10 times a second (one line
# printed a second), marks each phase as it starts and ends; stops the relay with
# SIGTERM and checks that it exited 0 with every buffer returned (live = 0); ends
# with a summary (the peaks, and what the pool was back to how soon after the
# load) and plots unreserved, resident and live memory over time with gnuplot
# (tide-demo.png; the samples in tide-demo.dat, the bursts in tide-demo.phases).
#
# Every process it starts is stopped on exit, error or Ctrl-C. It ends by
# itself in about 25 s. Exit status 0 only when the load generator did all its
# work (every connection echoed in full and checked), the relay exited 0 and
# reported live = 0; otherwise 1, with a message saying which failed.
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
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
cat <<'TXT'
What the columns say (MiB, from the relay's /stats, 10 samples a second, one printed a second):
  unreserved  address space the pool has mapped (its boundary minus its base): it grows
              in 2 MiB steps when buffers run out and shrinks when the top goes idle
  resident    of that, what still holds memory: unreserved minus pages purged back to the OS
  live        bytes in buffers the relay holds now: data in flight, and buffers its
              receive rings keep ready (shown apart as "in rings")
TXT
load_args=(--connect "127.0.0.1:$relay_port")
[ -n "$schedule" ] && load_args+=(--schedule "$schedule")
clock
t0=$now_ms
"$load" "${load_args[@]}" >"$work/load.log" 2>&1 &
load_pid=$!
pids+=("$load_pid")

dat="$out/tide-demo.dat"
phases="$out/tide-demo.phases" # one line per burst: start_s end_s label
echo "# t_s conns unreserved_mib resident_mib live_mib rings_mib grows shrinks" >"$dat"
: >"$phases"
header() {
	printf '%6s %6s %11s %10s %9s %9s %6s %7s\n' "t(s)" "conns" "unreserved" "resident" \
		"live" "in rings" "grows" "shrinks"
}
header

# Lines tide-load printed since the last look, as they come: each phase is marked as it
# starts and ends ("T s  phase N burst starts: ..."); bursts are noted for the plot.
seen=0 burst_start= burst_label= last_burst_end=
follow_load() {
	local lines l
	mapfile -t -s "$seen" lines <"$work/load.log"
	for l in "${lines[@]}"; do
		seen=$((seen + 1))
		if [[ $l =~ ^\ *([0-9.]+)\ s\ +phase\ ([0-9]+)\ (quiet|burst)\ (starts|ends) ]]; then
			[ "${BASH_REMATCH[3]} ${BASH_REMATCH[4]}" = "quiet ends" ] ||
				printf -- '-- %s\n' "${l#"${l%%[! ]*}"}"
			if [ "${BASH_REMATCH[3]} ${BASH_REMATCH[4]}" = "burst starts" ]; then
				burst_start=${BASH_REMATCH[1]} burst_label="phase ${BASH_REMATCH[2]}: burst"
			elif [ "${BASH_REMATCH[3]} ${BASH_REMATCH[4]}" = "burst ends" ]; then
				echo "$burst_start ${BASH_REMATCH[1]} $burst_label" >>"$phases"
				last_burst_end=${BASH_REMATCH[1]}
			fi
		fi
	done
}

# 10 samples a second, up to 60 s; after the load ends, two more seconds show the pool
# settle.
tick=0 load_done=0 after=0
while [ $tick -lt 600 ]; do
	tick=$((tick + 1))
	clock
	wait_ms=$((t0 + tick * 100 - now_ms))
	[ $wait_ms -gt 0 ] && sleep "0.$((wait_ms / 100 % 10))$((wait_ms % 100 / 10))$((wait_ms % 10))"
	check_interrupt
	http_get "$stats_port" /stats 2>/dev/null || body=
	clock
	el=$((now_ms - t0))
	t="$((el / 1000)).$(((el % 1000) / 100))"
	follow_load
	if [ -n "$body" ]; then
		json_num current conns
		json_num unreserved_size unres
		json_num resident_size resid
		json_num live_bytes live
		json_num buffers ringbufs
		json_num block_size block
		json_num grows grows
		json_num shrinks shrinks
		mib "$unres" m_unres
		mib "$resid" m_resid
		mib "$live" m_live
		mib "$((${ringbufs:-0} * ${block:-0}))" m_rings
		echo "$t ${conns:-0} $m_unres $m_resid $m_live $m_rings ${grows:-0} ${shrinks:-0}" >>"$dat"
		((tick % 10 == 0)) && printf '%6s %6s %11s %10s %9s %9s %6s %7s\n' "$t" "${conns:-?}" \
			"$m_unres" "$m_resid" "$m_live" "$m_rings" "${grows:-?}" "${shrinks:-?}"
	elif ((tick % 10 == 0)); then
		printf '%6s  (no answer from /stats)\n' "$t"
	fi
	if [ $load_done -eq 0 ] && ! kill -0 "$load_pid" 2>/dev/null; then
		load_done=1
	fi
	if [ $load_done -eq 1 ]; then
		after=$((after + 1))
		[ $after -ge 20 ] && break
	fi
done
follow_load

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
grep -v ' phase [0-9]* \(quiet\|burst\) \(starts\|ends\)' "$work/load.log" | sed 's/^/  /'
if [ "$load_rc" -ne 0 ]; then
	status=1
	{
		echo
		echo "run-demo.sh: FAILED: the load generator could not do its work (tide-load exit $load_rc):"
		if [ "$load_rc" -eq 3 ]; then
			echo "  connections were unfinished at their phase's end: the relay path, or this"
			echo "  machine, did not carry the load in time (no byte was wrong). The plot below"
			echo "  does not show the demo's load."
		else
			echo "  connections failed, bytes came back wrong, or it was stopped (see above)"
		fi
		echo
	} >&2
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

# The closing summary: the peaks, and where the pool settled after the last burst ended
# (the first sample from which unreserved stays at its final value).
summary=$(awk -v end="${last_burst_end:-}" '
	!/^#/ {
		t[n] = $1; u[n] = $3; r[n] = $4; l[n] = $5; n++
		if ($3 > pu) { pu = $3; tu = $1 }
		if ($4 > pr) pr = $4
		if ($5 > pl) { pl = $5; tl = $1 }
	}
	END {
		if (n == 0) { print "no samples"; exit }
		printf "peak: %.1f MiB unreserved at %.1f s, %.1f MiB resident, %.1f MiB live at %.1f s\n",
			pu, tu, pr, pl, tl
		if (end == "") { print "the load did not end a burst: no settling time"; exit }
		fin = u[n - 1]; settled = n - 1
		while (settled > 0 && u[settled - 1] == fin && t[settled - 1] >= end) settled--
		ms = (t[settled] - end) * 1000
		if (ms < 0) ms = 0
		printf "after the load (last burst ended at %.1f s): back to %.1f MiB unreserved, %.1f MiB resident, %.1f MiB live within %.0f ms (sampled every 100 ms)\n",
			end, fin, r[n - 1], l[n - 1], ms
	}' "$dat")
echo
echo "summary: ${summary//$'\n'/$'\n'summary: }"

if command -v gnuplot >/dev/null; then
	png="$out/tide-demo.png"
	if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
		term='pngcairo size 1100,600 font "sans,10"'
	else
		term='png size 1100,600'
	fi
	# Bursts shaded behind the lines, each labelled at the top; the key sits below the
	# plot, off the data; the y range leaves a fifth above the peak.
	ymax=$(awk '!/^#/ { for (i = 3; i <= 6; i++) if ($i > m) m = $i } END { print (m > 0 ? m : 1) * 1.2 }' "$dat")
	shade=$(awk -v ymax="$ymax" '{
		printf "set object %d rect from %s, graph 0 to %s, graph 1 fc rgb \"#dde6f5\" fs solid 1.0 noborder behind\n", NR, $1, $2
		printf "set label %d \"%s\" at %s, graph 0.97 left offset 0.5,0 tc rgb \"#44557a\"\n", NR, substr($0, index($0, $3)), $1
	}' "$phases")
	gnuplot <<-EOF
		set terminal $term
		set output "$png"
		set title "tide-relay under bursts: the pool grows with in-flight data and gives memory back after (shaded: bursts)"
		set xlabel "time (s)"
		set ylabel "MiB"
		set y2label "client connections"
		set yrange [0:$ymax]
		set y2range [0:*]
		set y2tics
		set ytics nomirror
		set key outside bottom center horizontal maxrows 2
		set bmargin 7
		set xrange [0:*]
		set autoscale xfixmax
		set grid
		$shade
		plot "$dat" using 1:2 axes x1y2 with steps lw 1 lc rgb "#999999" title "connections (right axis)", \
		     "$dat" using 1:3 with lines lw 4 lc rgb "#1f77b4" title "unreserved (boundary - base)", \
		     "$dat" using 1:4 with lines lw 2 dt 2 lc rgb "#ff7f0e" title "resident (unreserved - purged)", \
		     "$dat" using 1:5 with lines lw 2 lc rgb "#2ca02c" title "live (held by the relay)", \
		     "$dat" using 1:6 with lines lw 2 dt 3 lc rgb "#9467bd" title "in rings (part of live)"
	EOF
	if [ -s "$png" ]; then
		echo "plot: $png (data: $dat)"
	else
		echo "run-demo.sh: gnuplot wrote no plot" >&2
		status=1
	fi
fi
[ "$status" -eq 0 ] || echo "run-demo.sh: the demo FAILED (see the messages above)" >&2
exit $status
