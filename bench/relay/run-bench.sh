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
for t in taskset iperf3 wrk nginx haproxy socat ss; do
	command -v "$t" >/dev/null || die "$t not found: run scripts/deps.sh relay-bench"
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
	local p i
	[ -n "$proxy_pid" ] && stop_proxy
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	pids=()
	rm -rf "$work"
}
trap cleanup EXIT
trap 'echo; echo "run-bench.sh: interrupted" >&2; exit 130' INT TERM

# A random port below the ephemeral range that no socket uses.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return; }
	done
}

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

# Resident KiB of a process tree.
rss_kib() {
	local p sum=0 v
	for p in $(tree "$1"); do
		v=$(awk '/^VmRSS:/ { print $2 }' /proc/"$p"/status 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

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
taskset -c 0 nginx -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;' \
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
		taskset -c 1 nginx -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/log" 2>&1 &
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

stop_proxy() {
	local i p all
	[ -z "$proxy_pid" ] && return 0
	all=$(tree "$proxy_pid")
	kill -TERM "$proxy_pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
	for p in $all; do kill -KILL "$p" 2>/dev/null; done
	wait "$proxy_pid" 2>/dev/null
	proxy_rc=$?
	proxy_pid=
}

# ---------------------------------------------------------------- measures --

# iperf3 client through the proxy: receiver Gbit/s.
iperf_once() {
	taskset -c 0 timeout $((secs + 15)) iperf3 -c 127.0.0.1 -p "$proxy_port" -l 128K \
		-t "$secs" -P "$1" -f m 2>&1 |
		awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") v = $(i - 1) }
		     END { if (v != "") printf "%.2f\n", v / 1000 }'
}

wrk_once() {
	taskset -c 0 timeout $((secs + 15)) wrk -t 1 -c 50 -d "${secs}s" \
		"http://127.0.0.1:$proxy_port/" 2>&1 |
		awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }'
}

# Hold N idle connections through the proxy; KiB of proxy RSS per connection.
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
declare -A R # R[proxy,metric] = median

for px in $proxies; do
	echo "== $px" >&2
	# throughput, to iperf3
	if start_proxy "$px" "$iperf_port" 1000; then
		for p in 1 8; do
			vals=()
			for ((r = 0; r < runs; r++)); do
				v=$(iperf_once "$p")
				[ -n "$v" ] && vals+=("$v")
				echo "$px iperf3 P$p run $r: ${v:-failed} Gbit/s" >>"$raw"
			done
			R[$px,p$p]=$(printf '%s\n' "${vals[@]}" | median)
			echo "   iperf3 -P $p: ${vals[*]} Gbit/s -> median ${R[$px,p$p]}" >&2
		done
		stop_proxy
	fi
	# requests/s, to nginx
	if start_proxy "$px" "$http_port" 1000; then
		vals=()
		for ((r = 0; r < runs; r++)); do
			v=$(wrk_once)
			[ -n "$v" ] && vals+=("$v")
			echo "$px wrk run $r: ${v:-failed} req/s" >>"$raw"
		done
		R[$px,wrk]=$(printf '%s\n' "${vals[@]}" | median)
		echo "   wrk: ${vals[*]} req/s -> median ${R[$px,wrk]}" >&2
		stop_proxy
	fi
	# idle connections, to nginx, a fresh proxy each time
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
			echo "   idle $n: skipped for socat (one process per connection)" >&2
			continue
		fi
		if start_proxy "$px" "$http_port" $((n + 100)); then
			v=$(idle_once "$n")
			R[$px,idle$label]=$v
			R[idle$label,count]=$n
			echo "$px idle $n: ${v:-failed} KiB/conn" >>"$raw"
			echo "   idle $n: ${v:-failed} KiB per connection" >&2
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
metrics="p1 p8 wrk"
for n in $idle_counts; do metrics="$metrics idle$n"; done
hdr() {
	case "$1" in
	p1) echo "iperf3 1 stream Gbit/s" ;;
	p8) echo "iperf3 8 streams Gbit/s" ;;
	wrk) echo "wrk req/s" ;;
	idle*) echo "KiB/idle conn (${R[$1,count]:-${1#idle}})" ;;
	esac
}
unit() { case "$1" in p1 | p8) echo Gbit/s ;; wrk) echo req/s ;; *) echo KiB/conn ;; esac; }

{
	printf '%-11s' "proxy"
	for m in $metrics; do printf ' | %-28s' "$(hdr "$m")"; done
	printf '\n%-11s' ""
	for m in $metrics; do printf ' | %-10s %8s %8s ' "value" "/haproxy" "/nginx"; done
	printf '\n'
	for px in $proxies; do
		printf '%-11s' "$px"
		for m in $metrics; do
			v=${R[$px,$m]:-}
			rh=$(ratio "$v" "${R[haproxy,$m]:-}")
			rn=$(ratio "$v" "${R[nginx,$m]:-}")
			printf ' | %-10s %8s %8s ' "${v:--}" "$rh" "$rn"
			[ -n "$v" ] && echo "$px,$m,$v,$(unit "$m"),$rh,$rn" >>"$csv"
		done
		printf '\n'
	done
} | tee "$out/relay-table.txt"
echo
echo "Higher is better for Gbit/s and req/s, lower for KiB per idle connection."
echo "Medians of $runs runs of ${secs} s; proxy on core 1, clients and backends on core 0."
echo "CSV: $csv   raw runs: $raw"
