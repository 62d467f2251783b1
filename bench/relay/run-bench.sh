#!/usr/bin/env bash
# run-bench.sh - tide-relay against haproxy, nginx stream and socat, on loopback.
#
# Each proxy runs alone, pinned to core 1 (taskset -c 1); the clients and the
# backends run on core 0. Every proxy forwards to the same backends:
#   - iperf3 -s: throughput with 128 KiB writes, 1 and 8 streams, BENCH_SECONDS
#     each, median of BENCH_RUNS runs;
#   - nginx http serving a small response: wrk requests/s through the proxy;
#   - the same nginx: each proxy's resident memory (VmRSS of the proxy and its
#     children, from /proc) with 1k and 10k idle connections held by tide-idle,
#     as the delta over the proxy's own baseline, per connection.
# A "direct" row runs the clients against the backends with no proxy.
#
# Prints one table with ratios to haproxy and nginx and writes the medians as
# CSV. Config files go to a temp dir; everything listens on 127.0.0.1 only;
# every process started is stopped on exit, error or Ctrl-C.
#
# Usage: run-bench.sh --relay PATH --idle PATH --out DIR
# Environment: BENCH_SECONDS (3), BENCH_RUNS (3), BENCH_PROXIES (all:
# "direct tide-relay haproxy nginx socat socat-128k"), BENCH_IDLE ("1000 10000").
set -uo pipefail
# check_interrupt (Ctrl-C is checked between measurements), stop_pids, free_port
# shellcheck source=../../scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

relay= idle= out=.
while [ $# -gt 0 ]; do
	case "$1" in
	--relay) relay=$2; shift 2 ;;
	--idle) idle=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	-h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
secs=${BENCH_SECONDS:-3}
runs=${BENCH_RUNS:-3}
proxies=${BENCH_PROXIES:-direct tide-relay haproxy nginx socat socat-128k}
idle_counts=${BENCH_IDLE:-1000 10000}

die() { echo "run-bench.sh: $*" >&2; exit 1; }
# nginx is also the HTTP backend, so it is needed; a peer proxy that is missing is skipped.
for t in taskset iperf3 wrk nginx ss; do
	command -v "$t" >/dev/null || die "$t not found: run scripts/deps.sh relay-bench"
done
for px in $proxies; do
	command -v "${px%-128k}" >/dev/null || [ "$px" = direct ] || [ "$px" = tide-relay ] || {
		echo "run-bench.sh: ${px%-128k} not found: $px skipped (scripts/deps.sh relay-bench)" >&2
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

established_to() {
	ss -Htn state established "( sport = :$1 )" | wc -l
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ------------------------------------------------------------------ backends --

iperf_port=$(free_port)
taskset -c 0 iperf3 -s -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3-server.log" 2>&1 &
pids+=($!)

http_port=$(free_port)
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
		listen 127.0.0.1:$http_port backlog=4096;
		location / { return 200 "tide relay bench: a small response of 64 bytes, more or less.\n"; }
	}
}
EOF
taskset -c 0 nginx -p "$work/backend" -e "$work/backend/error.log" \
	-c "$work/backend/nginx.conf" -g 'daemon off;' \
	>"$work/backend/stdout.log" 2>&1 &
pids+=($!)
wait_listen "$iperf_port" || die "iperf3 server did not start: $(cat "$work/iperf3-server.log")"
wait_listen "$http_port" || die "nginx backend did not start: $(cat "$work/backend/error.log")"

# -------------------------------------------------------------------- proxies --

# start_proxy NAME UPSTREAM_PORT MAXCONN: starts it pinned to core 1; sets
# proxy_port and proxy_pid ("direct" sets proxy_port to the upstream itself).
start_proxy() {
	local name=$1 up=$2 maxconn=$3 d
	proxy_pid=
	proxy_name=$name
	proxy_log=
	if [ "$name" = direct ]; then
		proxy_port=$up
		return 0
	fi
	proxy_port=$(free_port)
	d="$work/$name.$proxy_port"
	mkdir -p "$d/logs"
	case "$name" in
	tide-relay)
		taskset -c 1 "$relay" --listen "127.0.0.1:$proxy_port" --upstream "127.0.0.1:$up" \
			--threads 1 --max-conns "$maxconn" >"$d/log" 2>&1 &
		;;
	haproxy)
		cat >"$d/haproxy.cfg" <<-EOF
			global
			    nbthread 1
			    maxconn $(((maxconn * 2 + 14) > nofile ? (nofile - 14) / 2 : maxconn))
			defaults
			    mode tcp
			    timeout connect 5s
			    timeout client 600s
			    timeout server 600s
			frontend in
			    bind 127.0.0.1:$proxy_port
			    default_backend out
			backend out
			    server s1 127.0.0.1:$up
		EOF
		taskset -c 1 haproxy -db -f "$d/haproxy.cfg" >"$d/log" 2>&1 &
		;;
	nginx)
		{
			[ -n "$nginx_mod" ] && echo "load_module $nginx_mod;"
			cat <<-EOF
				worker_processes 1;
				pid $d/nginx.pid;
				error_log $d/error.log warn;
				worker_rlimit_nofile $nofile;
				events { worker_connections $((2 * maxconn + 64)); }
				stream {
				    server {
				        listen 127.0.0.1:$proxy_port backlog=4096;
				        proxy_pass 127.0.0.1:$up;
				        proxy_timeout 600s;
				    }
				}
			EOF
		} >"$d/nginx.conf"
		taskset -c 1 nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
			>"$d/log" 2>&1 &
		;;
	socat)
		taskset -c 1 socat "TCP-LISTEN:$proxy_port,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
			"TCP:127.0.0.1:$up" >"$d/log" 2>&1 &
		;;
	socat-128k)
		taskset -c 1 socat -b 131072 \
			"TCP-LISTEN:$proxy_port,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
			"TCP:127.0.0.1:$up" >"$d/log" 2>&1 &
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
	if [ "$name" = tide-relay ] && [ "$rc" -ne 0 ]; then
		echo "run-bench.sh: tide-relay exited $rc after SIGTERM: $(tail -1 "$log")" >&2
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

# Hold N idle connections through the current proxy; KiB of proxy RSS per connection.
idle_once() {
	local n=$1 base rss i held log="$work/idle.$proxy_port.$n"
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
		held=$(established_to "$http_port")
		[ "$held" -ge "$n" ] && break
		kill -0 "$ipid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	rss=$(rss_kib "$proxy_pid")
	held=$(established_to "$http_port")
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
# test), one instance towards iperf3 and one towards nginx, and the runs go round
# the proxies in turn, so that a noisy moment on this shared machine hits them all
# alike. Each run also takes the proxy's CPU time from /proc (user + system).
for px in $proxies; do
	for be in iperf http; do
		up=$iperf_port
		[ $be = http ] && up=$http_port
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
	local px=$1 m=$2 be=iperf port pid t0 t1 v cpu
	[ "$m" = wrk ] && be=http
	port=${PORT[$px,$be]:-}
	[ -z "$port" ] && return
	pid=${PID[$px,$be]:-}
	[ -n "$pid" ] && t0=$(cpu_ticks "$pid")
	case $m in
	p1) v=$(iperf_once "$port" 1) ;;
	p8) v=$(iperf_once "$port" 8) ;;
	wrk) v=$(wrk_once "$port") ;;
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
		if [ "$m" = wrk ]; then
			cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v r="$v" -v s="$secs" \
				'BEGIN { printf "%.1f", t / hz * 1e6 / (r * s) }')
			V[$px,cpu_wrk]="${V[$px,cpu_wrk]:-} $cpu"
		else
			cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v g="$v" -v s="$secs" \
				'BEGIN { printf "%.0f", t / hz * 1e3 / (g * s / 8) }')
			V[$px,cpu_$m]="${V[$px,cpu_$m]:-} $cpu"
		fi
	fi
	echo "$px $m: $v${cpu:+ (proxy CPU $cpu $([ "$m" = wrk ] && echo us/req || echo ms/GB))}" >>"$raw"
}

for ((r = 1; r <= runs; r++)); do
	echo "== run $r of $runs: iperf3 -P 1, -P 8 and wrk through each proxy" >&2
	for m in p1 p8 wrk; do
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
		"wrk [${V[$px,wrk]:-} ] req/s" >&2
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
		if start_proxy "$px" "$http_port" $((n + 100)); then
			v=$(idle_once "$n")
			check_interrupt
			R[$px,idle$label]=$v
			R[idle$label,count]=$n
			echo "$px idle $n: ${v:-failed} KiB/conn" >>"$raw"
			echo "   $px, $n idle connections: ${v:-failed} KiB each" >&2
			stop_proxy
		fi
	done
done

# ---------------------------------------------------------------------- table --

csv="$out/relay.csv"
echo "proxy,metric,value,unit,ratio_to_haproxy,ratio_to_nginx" >"$csv"
ratio() { # value reference -> v/ref with 2 decimals, or -
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f\n", a / b }'
}
metrics="p1 p8 wrk cpu_p1 cpu_p8 cpu_wrk"
for n in $idle_counts; do metrics="$metrics idle$n"; done
hdr() {
	case "$1" in
	p1) echo "iperf3 1 stream Gbit/s" ;;
	p8) echo "iperf3 8 streams Gbit/s" ;;
	wrk) echo "wrk req/s" ;;
	cpu_p1) echo "proxy CPU ms/GB, 1 stream" ;;
	cpu_p8) echo "proxy CPU ms/GB, 8 streams" ;;
	cpu_wrk) echo "proxy CPU us/request" ;;
	idle*) echo "KiB RSS per idle conn (${R[$1,count]:-${1#idle}})" ;;
	esac
}
unit() {
	case "$1" in
	p1 | p8) echo Gbit/s ;;
	wrk) echo req/s ;;
	cpu_p*) echo ms/GB ;;
	cpu_wrk) echo us/req ;;
	*) echo KiB/conn ;;
	esac
}

# Rows are measures, columns the proxies, then tide-relay's ratios to haproxy and nginx.
for px in $proxies; do
	for m in $metrics; do
		v=${R[$px,$m]:-}
		[ -n "$v" ] && echo "$px,$m,$v,$(unit "$m"),$(ratio "$v" "${R[haproxy,$m]:-}")," \
			"$(ratio "$v" "${R[nginx,$m]:-}")" | tr -d ' ' >>"$csv"
	done
done
{
	printf '%-30s' "measure"
	for px in $proxies; do printf ' %11s' "$px"; done
	printf ' %14s %12s\n' "tide/haproxy" "tide/nginx"
	for m in $metrics; do
		printf '%-30s' "$(hdr "$m")"
		for px in $proxies; do printf ' %11s' "${R[$px,$m]:--}"; done
		printf ' %14s %12s\n' "$(ratio "${R[tide-relay,$m]:-}" "${R[haproxy,$m]:-}")" \
			"$(ratio "${R[tide-relay,$m]:-}" "${R[nginx,$m]:-}")"
	done
} | tee "$out/relay-table.txt"
echo
echo "Higher is better for Gbit/s and req/s; lower for CPU per unit and KiB per idle connection."
echo "Medians of $runs runs of ${secs} s; proxy on core 1, clients and backends on core 0."
echo "CSV: $csv   raw runs: $raw"
"$(dirname "${BASH_SOURCE[0]}")/plot-bench.sh" "$csv" "$out/relay.png"
