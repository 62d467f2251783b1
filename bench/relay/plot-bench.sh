#!/usr/bin/env bash
# plot-bench.sh CSV PNG - draw run-bench.sh's results: one panel per measure (iperf3
# throughput with 1 and 8 streams, proxy CPU per GB, resident memory per idle connection),
# a bar per proxy (tide-relay and its --tide columns in red), so that its place among its
# peers shows at a glance.
# Without gnuplot it says so and draws nothing (exit 0: the CSV is the result).
set -uo pipefail
csv=$1 png=$2
command -v gnuplot >/dev/null || {
	echo "plot-bench.sh: gnuplot not found: no $png (scripts/deps.sh relay-bench)" >&2
	exit 0
}
[ -s "$csv" ] || { echo "plot-bench.sh: no data in $csv" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tide-plot.XXXXXX")
trap 'rm -rf "$work"' EXIT

# One data file per panel: "proxy metric value" lines, in the CSV's proxy order.
panel() { # panel FILE METRIC
	awk -F, -v m="$2" 'NR > 1 && $2 == m { print $1, $2, $3 }' "$csv" >"$work/$1"
}
panel p1 p1
panel p8 p8
panel cpu cpu_p1
idle=$(awk -F, 'NR > 1 && $2 ~ /^idle/ { m = $2 } END { print m }' "$csv") # the largest count
panel idle "$idle"

# bars FILE TITLE YLABEL [log]: the gnuplot lines of one panel.
bars() {
	if [ "${4:-}" = log ] && [ -s "$work/$1" ]; then
		printf 'set logscale y\nset yrange [0.01:*]\n'
	else
		printf 'unset logscale y\nset yrange [0:*]\n'
	fi
	if [ -s "$work/$1" ]; then
		printf 'set title "%s"\nset ylabel "%s"\n' "$2" "$3"
		printf 'plot "%s" using 0:3:(0.6):(strstrt(strcol(1), "tide") == 1 ? 0xd62728 : 0x1f77b4):xtic(1) with boxes lc rgb variable notitle, ' "$work/$1"
		printf '"" using 0:3:(sprintf("%%g", $3)) with labels offset 0,0.8 notitle\n'
	else
		printf 'set title "%s: not measured"\nunset ylabel\n' "$2"
		printf 'plot [0:1] [0:1] -1 notitle\n'
	fi
}

if gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo; then
	term='pngcairo size 1200,800 font "sans,10"'
else
	term='png size 1200,800'
fi
{
	echo "set terminal $term"
	echo "set output \"$png\""
	echo 'set multiplot layout 2,2 title "tide-relay against its peers on loopback (bench/relay/run-bench.sh)"'
	echo 'set style fill solid 0.8 border -1'
	echo 'set offsets 0.5, 0.5, graph 0.15, 0'
	echo 'set grid ytics'
	echo 'set xtics rotate by -25'
	bars p1 "iperf3, 1 stream (higher is better)" "Gbit/s"
	bars p8 "iperf3, 8 streams (higher is better)" "Gbit/s"
	bars cpu "proxy CPU per GB, 1 stream (lower is better)" "ms/GB"
	bars idle "resident memory per idle connection, ${idle#idle} held (lower is better; log scale)" \
		"KiB/conn" log
	echo 'unset multiplot'
} | gnuplot
if [ -s "$png" ]; then
	echo "plot: $png"
else
	echo "plot-bench.sh: gnuplot wrote no $png" >&2
	exit 1
fi
