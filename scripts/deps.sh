#!/usr/bin/env bash
# deps.sh GROUP... - the Debian packages a make target needs, checked all at once.
#
# Groups: build (compiler, CMake, liburing, libsystemd for sd_notify), test (sanitizer
# runtimes, valgrind, groff; nginx and haproxy for the PROXY protocol check, promtool from
# prometheus for /metrics, systemd-analyze for the unit file), cross (the arm64 stage of
# make test: Debian's aarch64 cross gcc and qemu-user), demo (gnuplot), bench (the peers:
# DPDK, the mallocs), relay-bench (haproxy, nginx, socat, iperf3, wrk, h2load), fuzz
# (clang). A make target names every group it needs in one call
# (make demo: build demo), so that what is missing is said once, in one line.
#
# As root: apt-get update, then apt-get install of everything missing. As another user:
# one line naming every missing package, to run as root, and exit 1. The peers of bench
# and relay-bench, and cross, are optional: missing ones are named and skipped, they stop nothing.
# Without dpkg (another distribution) the tools themselves are looked for instead: when
# they are there the build goes on, with a warning; when not, their names are printed.
set -euo pipefail

optional_group() { [ "$1" = bench ] || [ "$1" = relay-bench ] || [ "$1" = cross ]; }

pkgs_for() {
	case "$1" in
	build) echo "build-essential cmake pkg-config liburing-dev libsystemd-dev" ;;
	test) echo "valgrind clang libclang-rt-14-dev iproute2 python3 groff-base nginx haproxy prometheus systemd redis-server curl wrk socat" ;;
	cross) echo "gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user" ;;
	demo) echo "gnuplot-nox iproute2" ;;
	bench) echo "dpdk-dev libdpdk-dev libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev gnuplot-nox" ;;
	relay-bench) echo "haproxy nginx libnginx-mod-stream socat iperf3 wrk nghttp2-client iproute2 util-linux gnuplot-nox" ;;
	fuzz) echo "clang libclang-rt-14-dev" ;;
	*) echo "deps.sh: unknown group '$1' (build test cross demo bench relay-bench fuzz)" >&2; exit 2 ;;
	esac
}

# What each group needs, as commands (and pkg-config modules, "pc:NAME"), for a system
# without dpkg.
tools_for() {
	case "$1" in
	build) echo "cc make cmake pkg-config pc:liburing" ;;
	test) echo "valgrind clang ss python3 groff" ;;
	cross) echo "aarch64-linux-gnu-gcc qemu-aarch64" ;;
	demo) echo "gnuplot ss" ;;
	bench) echo "gnuplot pc:libdpdk" ;;
	relay-bench) echo "haproxy nginx socat iperf3 wrk h2load ss taskset gnuplot" ;;
	fuzz) echo "clang" ;;
	esac
}

[ $# -gt 0 ] || set -- build
for group in "$@"; do pkgs_for "$group" >/dev/null; done

if ! command -v dpkg-query >/dev/null; then
	missing=() optional=()
	for group in "$@"; do
		for t in $(tools_for "$group"); do
			case "$t" in
			pc:*) pkg-config --exists "${t#pc:}" 2>/dev/null && continue ;;
			*) command -v "$t" >/dev/null && continue ;;
			esac
			if optional_group "$group"; then optional+=("$t"); else missing+=("$t"); fi
		done
	done
	[ ${#optional[@]} -eq 0 ] ||
		echo "deps.sh: optional, not found (skipped): ${optional[*]}" >&2
	if [ ${#missing[@]} -gt 0 ]; then
		echo "deps.sh: no dpkg here (not Debian?) and these are not found: ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: no dpkg here (not Debian?): the tools for '$*' are present; going on" >&2
	exit 0
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=() optional=()
for group in "$@"; do
	for p in $(pkgs_for "$group"); do
		installed "$p" && continue
		[[ " ${missing[*]} ${optional[*]} " == *" $p "* ]] && continue
		if optional_group "$group"; then optional+=("$p"); else missing+=("$p"); fi
	done
done
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	all=("${missing[@]}" "${optional[@]}")
	if [ ${#missing[@]} -gt 0 ]; then
		echo "deps.sh: missing for '$*'; as root run: apt-get update && apt-get install -y ${all[*]}" >&2
		exit 1
	fi
	echo "deps.sh: optional peers not installed, skipped (to measure them too, as root:" \
		"apt-get update && apt-get install -y ${all[*]})" >&2
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing ${missing[*]} ${optional[*]}"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ] &&
	! apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null; then
	echo "deps.sh: could not install the optional peers ${optional[*]}; they are skipped" >&2
fi
