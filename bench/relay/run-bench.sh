#!/usr/bin/env bash
# run-bench.sh - tide-relay against haproxy, nginx stream and socat, on loopback.
#
# Each proxy runs alone, pinned to core 1 (taskset -c 1); the clients and the
# backends run on core 0. Every proxy forwards to the same backends:
#   - iperf3 -s: throughput with 128 KiB writes, 1 and 8 streams;
#   - nginx http serving a small response: wrk requests/s through the proxy (at
#     saturation), and latency at a fixed offered rate below saturation: h2load
#     --h1 with --rps, p50 and p99 from its per-request log, with the proxy's CPU
#     per request at that rate;
#   - the same nginx on three ports, balanced round robin by each proxy that can
#     (tide-relay --upstream x3 --balance roundrobin, haproxy balance roundrobin,
#     nginx stream upstream with three servers): wrk requests/s and CPU per request;
#   - the same nginx: each proxy's resident memory (VmRSS of the proxy and its
#     children, from /proc) with idle connections held by tide-idle, as the delta
#     over the proxy's own baseline, per connection.
# A "direct" column runs the clients against the backends with no proxy.
#
# The peers run at their defaults and at their best documented settings for bulk
# data: haproxy-256k (tune.bufsize 262144), haproxy-splice (the same plus option
# splice-request, option splice-response and tune.pipesize 1048576: splice always, as
# splice-auto measured worse than no splice here), nginx-256k (proxy_buffer_size 256k). Two
# tables: the peers at their defaults, and at their best settings with, for each
# measure, the best peer of all (any setting) and tide-relay's ratio to it. The
# medians also go to CSV.
#
# Usage: run-bench.sh --relay PATH --idle PATH [--out DIR] [options]
#   --seconds N        length of each measurement (BENCH_SECONDS, 3)
#   --runs N           runs of each measurement; medians are reported (BENCH_RUNS, 3)
#   --proxies "LIST"   columns (BENCH_PROXIES; default: all of direct tide-relay
#                      haproxy haproxy-256k haproxy-splice nginx nginx-256k socat
#                      socat-128k)
#   --idle-counts "N.." idle connections held per proxy (BENCH_IDLE, "1000 10000";
#                      "" skips the idle measure)
#   --lat-rate N       offered requests/s of the latency measure (BENCH_LAT_RATE,
#                      10000), spread over --lat-conns N connections (BENCH_LAT_CONNS, 10)
#   --tide NAME=ARGS   one more tide-relay column, "tide-NAME", run with these extra
#                      arguments (repeatable), e.g. --tide "bs256k=--block-size 256K";
#                      with --send-proxy it relays to nginx's proxy_protocol ports and
#                      skips iperf3 (which would take the header for data)
#   --only "M.."       run only these measures (BENCH_ONLY; default all of p1 p8 wrk
#                      lat rr3 idle): p1/p8 iperf3 1/8 streams, wrk, lat the latency,
#                      rr3 wrk over three upstreams round robin, idle the idle memory
# A quick look while developing: --seconds 1 --runs 1 --idle-counts 100.
set -uo pipefail
# check_interrupt (Ctrl-C is checked between measurements), stop_pids, free_port
# shellcheck source=../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

relay= idle= out=.
secs=${BENCH_SECONDS:-3}
runs=${BENCH_RUNS:-3}
proxies=${BENCH_PROXIES:-direct tide-relay haproxy haproxy-256k haproxy-splice nginx nginx-256k socat socat-128k}
idle_counts=${BENCH_IDLE-1000 10000}
lat_rate=${BENCH_LAT_RATE:-10000}
lat_conns=${BENCH_LAT_CONNS:-10}
declare -A TIDE_ARGS # extra arguments of each tide-relay column
tide_cols=()
only=${BENCH_ONLY:-p1 p8 wrk lat rr3 idle}
while [ $# -gt 0 ]; do
	case "$1" in
	--relay) relay=$2; shift 2 ;;
	--idle) idle=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--seconds) secs=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--proxies) proxies=$2; shift 2 ;;
	--idle-counts) idle_counts=$2; shift 2 ;;
	--lat-rate) lat_rate=$2; shift 2 ;;
	--lat-conns) lat_conns=$2; shift 2 ;;
	--only) only=$2; shift 2 ;;
	--tide)
		[[ $2 == *=* ]] || { echo "run-bench.sh: --tide wants NAME=ARGS" >&2; exit 2; }
		TIDE_ARGS[tide-${2%%=*}]=${2#*=}
		tide_cols+=("tide-${2%%=*}")
		shift 2
		;;
	-h | --help) sed -n '2,44p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
for v in "$secs" "$runs" "$lat_rate" "$lat_conns"; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || { echo "run-bench.sh: '$v' is not a positive count" >&2; exit 2; }
done
for m in $only; do
	[[ " p1 p8 wrk lat rr3 idle " == *" $m "* ]] ||
		{ echo "run-bench.sh: --only: unknown measure '$m'" >&2; exit 2; }
done
runs_on() { [[ " $only " == *" $1 "* ]]; } # runs_on MEASURE: it is measured
runs_on idle || idle_counts=
# the extra tide-relay columns go right after tide-relay (or first when it is absent)
if [ ${#tide_cols[@]} -gt 0 ]; then
	if [[ " $proxies " == *" tide-relay "* ]]; then
		proxies=${proxies/tide-relay/tide-relay ${tide_cols[*]}}
	else
		proxies="${tide_cols[*]} $proxies"
	fi
fi
is_tide() { [ "$1" = tide-relay ] || [ -n "${TIDE_ARGS[$1]+x}" ]; }
is_peer() { [[ $1 == haproxy* || $1 == nginx* ]]; }
# sends_proxy PROXY: a tide column that begins each upstream connection with a PROXY header
sends_proxy() { is_tide "$1" && [[ " ${TIDE_ARGS[$1]:-} " == *" --send-proxy "* ]]; }

die() { echo "run-bench.sh: $*" >&2; exit 1; }
# nginx is also the HTTP backend and h2load the latency client, so they are needed; a
# peer proxy that is missing is skipped.
for t in taskset iperf3 wrk h2load nginx ss; do
	command -v "$t" >/dev/null || die "$t not found: run scripts/deps.sh relay-bench"
done
for px in $proxies; do
	is_tide "$px" || [ "$px" = direct ] || command -v "${px%%-*}" >/dev/null || {
		echo "run-bench.sh: ${px%%-*} not found: $px skipped (scripts/deps.sh relay-bench)" >&2
		proxies=$(echo " $proxies " | sed "s/ $px / /; s/^ //; s/ \$//")
	}
done
[ -x "$relay" ] || die "tide-relay not built ('$relay')"
[ -x "$idle" ] || die "tide-idle not built ('$idle')"
[ "$(nproc)" -ge 2 ] || die "needs two cores (proxy on core 1, clients on core 0)"
nginx_mod=
for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
	[ -f "$m" ] && nginx_mod=$m && break
done

# Idle connections need two descriptors each in the proxy: raise the soft limit
# to the hard one and cap the count where it no longer fits.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/tide-bench-relay.XXXXXX")
pids=()      # long-lived: the backends
proxy_pid=   # the proxy under test
cleanup() {
	[ -n "$proxy_pid" ] && stop_proxy
	declare -F stop_all >/dev/null && stop_all
	stop_pids 30 "${pids[@]}"
	pids=()
	rm -rf "$work"
}
trap cleanup EXIT

wait_listen() {
	local i
	for ((i = 0; i < 100; i++)); do
		ss -Hltn "sport = :$1" | grep -q . && return 0
		sleep 0.05
	done
	return 1
}

# The process and all its descendants.
tree() {
	local p c
	for p in "$@"; do
		echo "$p"
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
	done
}

# Resident KiB of a process tree (VmRSS summed; one awk for all of them).
rss_kib() {
	local files=() p
	for p in $(tree "$1"); do files+=("/proc/$p/status"); done
	awk '/^VmRSS:/ { s += $2 } END { print s + 0 }' "${files[@]}" 2>/dev/null
}

# CPU time (user + system, clock ticks) of a process tree, children reaped included.
cpu_ticks() {
	local files=() p
	for p in $(tree "$1"); do files+=("/proc/$p/stat"); done
	# fields after the ")" of the command name: utime is $12, stime $13, cutime $14, cstime $15
	awk '{ sub(/^.*\) /, ""); s += $12 + $13 + $14 + $15 } END { print s + 0 }' \
		"${files[@]}" 2>/dev/null
}
hz=$(getconf CLK_TCK)

# established_to PORT...: established connections from these local ports.
established_to() {
	local f= p
	for p in "$@"; do f+="${f:+ or }sport = :$p"; done
	ss -Htn state established "( $f )" | wc -l
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ------------------------------------------------------------------ backends --

iperf_port=$(free_port)
taskset -c 0 iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3-server.log" 2>&1 &
pids+=($!)

# nginx http: three plain ports (the first serves the single-upstream measures; the
# three-upstream row balances over all), and three that expect a PROXY header first
# (for tide columns with --send-proxy). One server, one worker: the same backend
# whatever the proxy spreads its connections over.
http_ports=() pp_ports=()
for i in 1 2 3; do
	p=$(free_port)
	while [[ " ${http_ports[*]} ${pp_ports[*]} " == *" $p "* ]]; do p=$(free_port); done
	http_ports+=("$p")
	p=$(free_port)
	while [[ " ${http_ports[*]} ${pp_ports[*]} " == *" $p "* ]]; do p=$(free_port); done
	pp_ports+=("$p")
done
listens=
for p in "${http_ports[@]}"; do listens+="		listen 127.0.0.1:$p backlog=4096;"$'\n'; done
for p in "${pp_ports[@]}"; do listens+="		listen 127.0.0.1:$p backlog=4096 proxy_protocol;"$'\n'; done
mkdir -p "$work/backend/logs"
# nginx http closes idle connections once fewer than 1/16 of worker_connections are
# free: give it the whole descriptor limit so that none of the held ones is closed.
cat >"$work/backend/nginx.conf" <<EOF
worker_processes 1;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
worker_rlimit_nofile $nofile;
events { worker_connections $((nofile - 100)); }
http {
	access_log off;
	client_header_timeout 600s;
	keepalive_timeout 600s;
	keepalive_requests 1000000;
	server {
$listens		location / { return 200 "tide relay bench: a small response of 64 bytes, more or less.\n"; }
	}
}
EOF
taskset -c 0 nginx -p "$work/backend" -e "$work/backend/error.log" \
	-c "$work/backend/nginx.conf" -g 'daemon off;' \
	>"$work/backend/stdout.log" 2>&1 &
pids+=($!)
wait_listen "$iperf_port" || die "iperf3 server did not start: $(cat "$work/iperf3-server.log")"
for p in "${http_ports[@]}" "${pp_ports[@]}"; do
	wait_listen "$p" || die "nginx backend did not start: $(cat "$work/backend/error.log")"
done

# http_ups PROXY N: the first N http backend ports PROXY relays to.
http_ups() {
	if sends_proxy "$1"; then echo "${pp_ports[@]:0:$2}"; else echo "${http_ports[@]:0:$2}"; fi
}

# -------------------------------------------------------------------- proxies --

# start_proxy NAME "UPSTREAM_PORT..." MAXCONN: starts it pinned to core 1; sets
# proxy_port and proxy_pid ("direct" sets proxy_port to the (first) upstream).
# Several upstream ports are balanced round robin (tide-relay, haproxy, nginx).
start_proxy() {
	local name=$1 ups=$2 maxconn=$3 d up1 u servers= nginx_servers= tide_ups=() n=0
	proxy_pid=
	proxy_name=$name
	proxy_log=
	up1=${ups%% *}
	if [ "$name" = direct ]; then
		proxy_port=$up1
		return 0
	fi
	for u in $ups; do
		n=$((n + 1))
		servers+="    server s$n 127.0.0.1:$u"$'\n'
		nginx_servers+="        server 127.0.0.1:$u;"$'\n'
		tide_ups+=(--upstream "127.0.0.1:$u")
	done
	proxy_port=$(free_port)
	d="$work/$name.$proxy_port"
	mkdir -p "$d/logs"
	case "$name" in
	tide-relay | tide-*)
		# shellcheck disable=SC2086 # the extra arguments are words
		taskset -c 1 "$relay" --listen "127.0.0.1:$proxy_port" "${tide_ups[@]}" \
			--balance roundrobin --threads 1 --max-conns "$maxconn" \
			${TIDE_ARGS[$name]:-} >"$d/log" 2>&1 &
		;;
	haproxy | haproxy-256k | haproxy-splice)
		{
			cat <<-EOF
				global
				    nbthread 1
				    maxconn $(((maxconn * 2 + 14) > nofile ? (nofile - 14) / 2 : maxconn))
			EOF
			[ "$name" != haproxy ] && echo "    tune.bufsize 262144"
			[ "$name" = haproxy-splice ] && echo "    tune.pipesize 1048576"
			cat <<-EOF
				defaults
				    mode tcp
				    timeout connect 5s
				    timeout client 600s
				    timeout server 600s
			EOF
			# splice-auto splices only after a read filled the buffer and goes back and
			# forth; on loopback it cost more CPU per GB than no splice at all, while
			# splicing every byte cost the least (measured, bench/relay/README.md).
			[ "$name" = haproxy-splice ] && printf '    option splice-request\n    option splice-response\n'
			cat <<-EOF
				frontend in
				    bind 127.0.0.1:$proxy_port
				    default_backend out
				backend out
				    balance roundrobin
			EOF
			printf '%s' "$servers"
		} >"$d/haproxy.cfg"
		taskset -c 1 haproxy -db -f "$d/haproxy.cfg" >"$d/log" 2>&1 &
		;;
	nginx | nginx-256k)
		{
			[ -n "$nginx_mod" ] && echo "load_module $nginx_mod;"
			cat <<-EOF
				worker_processes 1;
				pid $d/nginx.pid;
				error_log $d/error.log warn;
				worker_rlimit_nofile $nofile;
				events { worker_connections $((2 * maxconn + 64)); }
				stream {
				    upstream out {
				$nginx_servers    }
				    server {
				        listen 127.0.0.1:$proxy_port backlog=4096;
				        proxy_pass out;
				        proxy_timeout 600s;
			EOF
			[ "$name" = nginx-256k ] && echo "        proxy_buffer_size 256k;"
			echo "    }"
			echo "}"
		} >"$d/nginx.conf"
		taskset -c 1 nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
			>"$d/log" 2>&1 &
		;;
	socat)
		[ "$n" -eq 1 ] || die "socat: one upstream only"
		taskset -c 1 socat "TCP-LISTEN:$proxy_port,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
			"TCP:127.0.0.1:$up1" >"$d/log" 2>&1 &
		;;
	socat-128k)
		[ "$n" -eq 1 ] || die "socat: one upstream only"
		taskset -c 1 socat -b 131072 \
			"TCP-LISTEN:$proxy_port,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
			"TCP:127.0.0.1:$up1" >"$d/log" 2>&1 &
		;;
	*) die "unknown proxy '$name'" ;;
	esac
	proxy_pid=$!
	proxy_log="$d/log"
	if ! wait_listen "$proxy_port"; then
		echo "run-bench.sh: $name did not start; its log:" >&2
		cat "$d/log" "$d/error.log" >&2 2>/dev/null
		stop_proxy
		return 1
	fi
	sleep 0.2
}

# stop_proxy [PID NAME LOG]: SIGTERM, then SIGKILL to the whole tree after 5 s.
# tide-relay must exit 0 (it drains and checks live = 0).
stop_proxy() {
	local pid=${1:-$proxy_pid} name=${2:-$proxy_name} log=${3:-$proxy_log} i p all rc
	[ -z "$pid" ] && return 0
	all=$(tree "$pid")
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	for p in $all; do kill -KILL "$p" 2>/dev/null; done
	wait "$pid" 2>/dev/null
	rc=$?
	if is_tide "$name" && [ "$rc" -ne 0 ]; then
		echo "run-bench.sh: $name exited $rc after SIGTERM: $(tail -1 "$log")" >&2
	fi
	[ "$pid" = "$proxy_pid" ] && proxy_pid=
}

# ---------------------------------------------------------------- measures --

# iperf3 client through PORT with N streams: receiver Gbit/s.
iperf_once() {
	taskset -c 0 timeout $((secs + 15)) iperf3 -c 127.0.0.1 -p "$1" -l 128K \
		-t "$secs" -P "$2" -f m 2>&1 |
		awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
		     END { if (v != "") printf "%.2f\n", v / 1000 }'
}

# wrk through PORT: requests/s.
wrk_once() {
	taskset -c 0 timeout $((secs + 15)) wrk -t 1 -c 50 -d "${secs}s" \
		"http://127.0.0.1:$1/" 2>&1 |
		awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'
}

# h2load --h1 through PORT at lat_rate requests/s offered (lat_conns connections, each
# at an even share, one request in flight each) for 1 + secs seconds. Its per-request log
# (start time; microseconds from the request's start to the end of its response) gives
# the percentiles over the requests started after the first second (the warm-up); the
# proxy tree PID's CPU is read over the same window. A request held back by a slow
# response is sent late and timed from when it was sent (h2load catches up on the
# rate; the wait before sending is not counted).
# Prints "p50_us p99_us achieved_req/s cpu_us/req" (cpu "-" without a PID).
lat_once() {
	local port=$1 pid=$2 log="$work/lat.$1.log" t0='' t1='' hp
	rm -f "$log"
	taskset -c 0 timeout $((secs + 20)) h2load --h1 -c "$lat_conns" -t 1 \
		--rps $((lat_rate / lat_conns)) -D $((secs + 1)) --log-file "$log" \
		"http://127.0.0.1:$port/" >"$log.out" 2>&1 &
	hp=$!
	sleep 1
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	wait "$hp"
	[ -n "$pid" ] && t1=$(cpu_ticks "$pid")
	[ -s "$log" ] || return
	awk -F'\t' '$2 == 200 { print $1, $3 }' "$log" | sort -n |
		awk 'NR == 1 { from = $1 + 1e6 } $1 >= from { print $2 }' | sort -n |
		awk -v s="$secs" -v t="${t1:+$((t1 - t0))}" -v hz="$hz" '
			{ v[NR] = $1 }
			END {
				if (NR == 0) exit
				p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
				cpu = t == "" ? "-" : sprintf("%.1f", t / hz * 1e6 / NR)
				printf "%d %d %.0f %s\n", p50, p99, NR / s, cpu
			}'
}

# idle_once N BACKEND_PORT: hold N idle connections through the current proxy (which
# relays to BACKEND_PORT); KiB of proxy RSS per connection.
idle_once() {
	local n=$1 be_port=$2 base rss i held log="$work/idle.$proxy_port.$n"
	base=$(rss_kib "$proxy_pid")
	taskset -c 0 "$idle" --connect "127.0.0.1:$proxy_port" --count "$n" --hold 60 \
		>"$log.out" 2>"$log.err" &
	local ipid=$!
	for ((i = 0; i < 300; i++)); do
		grep -q '^connected' "$log.out" 2>/dev/null && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	# the proxy has opened its side when the backend sees n connections
	for ((i = 0; i < 200; i++)); do
		held=$(established_to "$be_port")
		[ "$held" -ge "$n" ] && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	rss=$(rss_kib "$proxy_pid")
	held=$(established_to "$be_port")
	kill -TERM "$ipid" 2>/dev/null
	wait "$ipid" 2>/dev/null
	if [ "$held" -lt "$n" ]; then
		echo "run-bench.sh: only $held of $n idle connections reached the backend" \
			"($(tail -1 "$log.err"))" >&2
		echo ""
		return
	fi
	awk -v a="$base" -v b="$rss" -v n="$n" 'BEGIN { printf "%.2f\n", (b - a) / n }'
}

raw="$out/relay-raw.txt"
: >"$raw"
declare -A R     # R[proxy,metric] = median
declare -A V     # V[proxy,metric] = the runs' values, space-separated
declare -A PORT PID NAMELOG

# Throughput and requests: every proxy runs at once (each idle but the one under
# test), one instance towards iperf3, one towards nginx and one towards nginx's three
# ports (rr3; the proxies that balance), each only when a measure needs it; the runs go round
# the proxies in turn, so that a noisy moment on this shared machine hits them all
# alike. Each run also takes the proxy's CPU time from /proc (user + system).
need_be=()
{ runs_on p1 || runs_on p8; } && need_be+=(iperf)
{ runs_on wrk || runs_on lat; } && need_be+=(http)
runs_on rr3 && need_be+=(http3)
for px in $proxies; do
	for be in "${need_be[@]}"; do
		case $be in
		iperf)
			if sends_proxy "$px"; then
				echo "   $px: no iperf3 (it sends a PROXY header)" >&2
				continue
			fi
			up=$iperf_port
			;;
		http) up=$(http_ups "$px" 1) ;;
		http3)
			# balancing over three: not direct (one backend) nor socat (one upstream)
			[ "$px" = direct ] || [[ $px == socat* ]] && continue
			up=$(http_ups "$px" 3)
			;;
		esac
		if start_proxy "$px" "$up" 1000; then
			PORT[$px,$be]=$proxy_port
			PID[$px,$be]=$proxy_pid
			NAMELOG[$px,$be]=$proxy_log
			proxy_pid= # kept running; stopped after the runs
		fi
	done
done
stop_all() {
	local k
	for k in "${!PID[@]}"; do
		[ -n "${PID[$k]}" ] && stop_proxy "${PID[$k]}" "${k%,*}" "${NAMELOG[$k]}"
		PID[$k]=
	done
}

# measure PROXY METRIC: one run; appends the value (and CPU per unit) to V.
measure() {
	local px=$1 m=$2 be=iperf port pid t0 t1 v cpu p50 p99 rate
	[ "$m" = wrk ] || [ "$m" = lat ] && be=http
	[ "$m" = wrk3 ] && be=http3
	port=${PORT[$px,$be]:-}
	[ -z "$port" ] && return
	pid=${PID[$px,$be]:-}
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	case $m in
	p1) v=$(iperf_once "$port" 1) ;;
	p8) v=$(iperf_once "$port" 8) ;;
	wrk | wrk3) v=$(wrk_once "$port") ;;
	lat)
		[[ $px == socat* ]] && pid= # one process per connection: no CPU figure
		read -r p50 p99 rate cpu <<<"$(lat_once "$port" "$pid")"
		if [ -z "${p50:-}" ]; then
			echo "$px lat: failed" >>"$raw"
			return
		fi
		V[$px,lat_p50]="${V[$px,lat_p50]:-} $p50"
		V[$px,lat_p99]="${V[$px,lat_p99]:-} $p99"
		V[$px,lat_rate]="${V[$px,lat_rate]:-} $rate"
		[ "$cpu" != - ] && V[$px,cpu_lat]="${V[$px,cpu_lat]:-} $cpu"
		[ "$rate" -lt $((lat_rate * 95 / 100)) ] &&
			echo "   $px: $rate of $lat_rate req/s offered (saturated?)" >&2
		echo "$px lat: p50 $p50 us, p99 $p99 us at $rate req/s, proxy CPU $cpu us/req" >>"$raw"
		return
		;;
	esac
	if [ -z "$v" ]; then
		echo "$px $m: failed" >>"$raw"
		return
	fi
	V[$px,$m]="${V[$px,$m]:-} $v"
	# socat's per-connection children come and go between the two readings: no CPU figure
	if [ -n "$pid" ] && [[ $px != socat* ]]; then
		t1=$(cpu_ticks "$pid")
		# CPU per unit of work: ms per GB moved, or microseconds per request
		if [[ $m == wrk* ]]; then
			cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v r="$v" -v s="$secs" \
				'BEGIN { printf "%.1f", t / hz * 1e6 / (r * s) }')
			V[$px,cpu_$m]="${V[$px,cpu_$m]:-} $cpu"
		else
			cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v g="$v" -v s="$secs" \
				'BEGIN { printf "%.0f", t / hz * 1e3 / (g * s / 8) }')
			V[$px,cpu_$m]="${V[$px,cpu_$m]:-} $cpu"
		fi
	fi
	echo "$px $m: $v${cpu:+ (proxy CPU $cpu $([[ $m == wrk* ]] && echo us/req || echo ms/GB))}" >>"$raw"
}

# the round's measures, in this order
round=
for m in p1 p8 wrk lat rr3; do
	runs_on "$m" && round+=" ${m/rr3/wrk3}"
done
for ((r = 1; r <= runs && ${#round}; r++)); do
	echo "== run $r of $runs:$round (lat: h2load at $lat_rate req/s; wrk3: three upstreams)" \
		"through each proxy" >&2
	for m in $round; do
		for px in $proxies; do
			measure "$px" "$m"
			check_interrupt
		done
	done
done
stop_all
for k in "${!V[@]}"; do
	R[$k]=$(printf '%s\n' ${V[$k]} | median)
done
for px in $proxies; do
	echo "   $px: iperf3 -P 1 [${V[$px,p1]:-} ] -P 8 [${V[$px,p8]:-} ] Gbit/s," \
		"wrk [${V[$px,wrk]:-} ] req/s, p99 [${V[$px,lat_p99]:-} ] us," \
		"wrk 3 upstreams [${V[$px,wrk3]:-} ] req/s" >&2
done

# Idle connections, towards nginx, a fresh proxy each time.
for px in $proxies; do
	[ "$px" = direct ] && continue
	for n in $idle_counts; do
		cap=$(((nofile - 200) / 2))
		label=$n
		if [ "$n" -gt "$cap" ]; then
			echo "   idle: $n connections need $((2 * n)) descriptors in the proxy;" \
				"the hard limit is $nofile: holding $cap" >&2
			n=$cap
		fi
		if [[ $px == socat* ]] && [ "$n" -gt 1000 ]; then
			echo "   idle $n: skipped for $px (one process per connection)" >&2
			continue
		fi
		up=$(http_ups "$px" 1)
		if start_proxy "$px" "$up" $((n + 100)); then
			v=$(idle_once "$n" "$up")
			check_interrupt
			R[$px,idle$label]=$v
			R[idle$label,count]=$n
			echo "$px idle $n: ${v:-failed} KiB/conn" >>"$raw"
			echo "   $px, $n idle connections: ${v:-failed} KiB each" >&2
			stop_proxy
		fi
	done
done

# --------------------------------------------------------------------- tables --

ratio() { # value reference -> v/ref with 2 decimals, or -
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
metrics="p1 p8 wrk cpu_p1 cpu_p8 cpu_wrk lat_p50 lat_p99 lat_rate cpu_lat wrk3 cpu_wrk3"
for n in $idle_counts; do metrics="$metrics idle$n"; done
# only the rows something was measured for (--only)
all_metrics=$metrics metrics=
for m in $all_metrics; do
	for px in $proxies; do
		[ -n "${R[$px,$m]:-}" ] && metrics+=" $m" && break
	done
done
hdr() {
	case "$1" in
	p1) echo "iperf3 1 stream Gbit/s" ;;
	p8) echo "iperf3 8 streams Gbit/s" ;;
	wrk) echo "wrk req/s" ;;
	cpu_p1) echo "proxy CPU ms/GB, 1 stream" ;;
	cpu_p8) echo "proxy CPU ms/GB, 8 streams" ;;
	cpu_wrk) echo "proxy CPU us/request (wrk)" ;;
	lat_p50) echo "latency p50 us @ $lat_rate/s" ;;
	lat_p99) echo "latency p99 us @ $lat_rate/s" ;;
	lat_rate) echo "achieved req/s of $lat_rate" ;;
	cpu_lat) echo "proxy CPU us/req @ $lat_rate/s" ;;
	wrk3) echo "wrk req/s, 3 upstreams rr" ;;
	cpu_wrk3) echo "proxy CPU us/req, 3 upstreams" ;;
	idle*) echo "KiB RSS per idle conn (${R[$1,count]:-${1#idle}})" ;;
	esac
}
unit() {
	case "$1" in
	p1 | p8) echo Gbit/s ;;
	wrk | wrk3 | lat_rate) echo req/s ;;
	cpu_p*) echo ms/GB ;;
	cpu_wrk | cpu_wrk3 | cpu_lat) echo us/req ;;
	lat_*) echo us ;;
	*) echo KiB/conn ;;
	esac
}
higher_better() { [[ $1 == p1 || $1 == p8 || $1 == wrk || $1 == wrk3 ]]; }

# The best peer (haproxy or nginx, any setting) of a measure: "name value", or nothing.
# lat_rate is what was offered, not a score: it has none.
declare -A BEST_PX BEST_V
for m in $metrics; do
	[ "$m" = lat_rate ] && continue
	for px in $proxies; do
		is_peer "$px" || continue
		v=${R[$px,$m]:-}
		[ -z "$v" ] && continue
		b=${BEST_V[$m]:-}
		if [ -z "$b" ] || awk -v v="$v" -v b="$b" -v hi="$(higher_better "$m" && echo 1)" \
			'BEGIN { exit !(hi ? v > b : v < b) }'; then
			BEST_PX[$m]=$px
			BEST_V[$m]=$v
		fi
	done
done

csv="$out/relay.csv"
echo "proxy,metric,value,unit,best_peer,best_peer_value,ratio_to_best_peer" >"$csv"
for px in $proxies; do
	for m in $metrics; do
		v=${R[$px,$m]:-}
		[ -z "$v" ] && continue
		echo "$px,$m,$v,$(unit "$m"),${BEST_PX[$m]:-},${BEST_V[$m]:-},$(ratio "$v" "${BEST_V[$m]:-}")"
	done
done >>"$csv"

# table TITLE COLUMN...: rows are measures, then each tide column's ratio(s); with best=1,
# the best peer and the ratio to it instead of the ratio to each peer column.
best=0
tides=()
for px in $proxies; do is_tide "$px" && tides+=("$px"); done
table() {
	local title=$1 px m t
	shift
	echo "$title"
	printf '%-32s' "measure"
	for px in "$@"; do printf ' %14s' "$px"; done
	[ "$best" = 1 ] && printf ' %24s' "best peer"
	for t in "${tides[@]}"; do
		if [ "$best" = 1 ]; then
			printf ' %20s' "${t/tide-relay/tide}/best"
		else
			for px in "$@"; do is_peer "$px" && printf ' %20s' "${t/tide-relay/tide}/$px"; done
		fi
	done
	echo
	for m in $metrics; do
		printf '%-32s' "$(hdr "$m")"
		for px in "$@"; do printf ' %14s' "${R[$px,$m]:--}"; done
		[ "$best" = 1 ] && printf ' %24s' "${BEST_V[$m]:--} ${BEST_PX[$m]:+(${BEST_PX[$m]})}"
		for t in "${tides[@]}"; do
			if [ "$best" = 1 ]; then
				printf ' %20s' "$(ratio "${R[$t,$m]:-}" "${BEST_V[$m]:-}")"
			else
				for px in "$@"; do
					is_peer "$px" || continue
					[ "$m" = lat_rate ] && printf ' %20s' - && continue
					printf ' %20s' "$(ratio "${R[$t,$m]:-}" "${R[$px,$m]:-}")"
				done
			fi
		done
		echo
	done
	echo
}
cols_default=() cols_best=()
for px in $proxies; do
	case "$px" in
	haproxy | nginx | socat*) cols_default+=("$px") ;;
	haproxy-* | nginx-*) cols_best+=("$px") ;;
	*) cols_default+=("$px") cols_best+=("$px") ;;
	esac
done
{
	best=0 table "Peers at their defaults (16 KiB buffers):" "${cols_default[@]}"
	best=1 table "Peers at their best settings; best peer = best haproxy or nginx of any setting:" \
		"${cols_best[@]}"
} | tee "$out/relay-table.txt"
echo "Higher is better for Gbit/s and req/s; lower for CPU per unit, latency and KiB per idle connection."
echo "haproxy-256k: tune.bufsize 262144; haproxy-splice: also option splice-request/-response, tune.pipesize 1048576;"
echo "nginx-256k: proxy_buffer_size 256k. Latency: h2load --h1, $lat_conns connections at $lat_rate req/s"
echo "offered in all, p50/p99 from its per-request log. Medians of $runs runs of ${secs} s; proxy on core 1,"
echo "clients and backends on core 0. 3 upstreams rr: the backend nginx on three ports, balanced round robin"
echo "(tide-relay --balance roundrobin, haproxy balance roundrobin, nginx stream upstream), wrk as above."
echo "CSV: $csv   raw runs: $raw"
"$(dirname "${BASH_SOURCE[0]}")/plot-bench.sh" "$csv" "$out/relay.png"
