#!/usr/bin/env bash
# deps.sh GROUP... - install the Debian packages a make target needs, when missing.
#
# Groups: build (compiler, CMake, liburing), test (sanitizer runtimes, valgrind),
# demo (gnuplot), bench (the peers: DPDK, the mallocs), relay-bench (haproxy, nginx,
# socat, iperf3, wrk), fuzz (clang). As root it runs apt-get; otherwise it prints the
# exact apt-get line to run and fails.
set -euo pipefail

pkgs_for() {
	case "$1" in
	build) echo "build-essential cmake pkg-config liburing-dev" ;;
	test) echo "valgrind clang libclang-rt-14-dev iproute2 python3" ;;
	demo) echo "gnuplot-nox iproute2" ;;
	bench) echo "dpdk-dev libdpdk-dev libjemalloc-dev libmimalloc-dev libgoogle-perftools-dev gnuplot-nox" ;;
	relay-bench) echo "haproxy nginx libnginx-mod-stream socat iperf3 wrk iproute2 util-linux" ;;
	fuzz) echo "clang libclang-rt-14-dev" ;;
	*) echo "deps.sh: unknown group '$1' (build test demo bench relay-bench fuzz)" >&2; exit 2 ;;
	esac
}

missing=()
for group in "$@"; do
	for p in $(pkgs_for "$group"); do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing packages; run as root:" >&2
	echo "  apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
