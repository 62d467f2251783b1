#!/usr/bin/env bash
# Description: install the build tree into a scratch prefix, then build the README's
# usage example against it with pkg-config, shared (run with LD_LIBRARY_PATH) and static
# (pkg-config --static), and run both; the agent's example through tide-net.pc. Also: the
# header is installed, tide.pc points at the prefix it was installed to, and the shared
# libraries export only their API's symbols.
#
# Usage: install_consumer.sh BUILD_DIR SOURCE_DIR CC [EXTRA_CFLAGS]
set -uo pipefail

build=$1 src=$2 cc=$3 extra=${4:-}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tide-install.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix
passed=0 failed=0

ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
	echo "install_consumer: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}

if ! cmake --install "$build" --prefix "$prefix" >"$scratch/install.log" 2>&1; then
	cat "$scratch/install.log"
	fail "cmake --install $build --prefix $prefix"
	finish
fi
ok "cmake --install into $prefix"

[ -f "$prefix/include/tide.h" ] && ok "include/tide.h installed" || fail "no include/tide.h"
pc=$(find "$prefix" -name tide.pc | head -n 1)
if [ -z "$pc" ]; then
	fail "no tide.pc under $prefix"
	finish
fi
ok "tide.pc at ${pc#"$prefix"/}"
export PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(dirname "$(dirname "$pc")")

pc_prefix=$(pkg-config --variable=prefix tide)
if [ "$(realpath -m "$pc_prefix")" = "$(realpath -m "$prefix")" ]; then
	ok "tide.pc prefix is the install prefix"
else
	fail "tide.pc says prefix=$pc_prefix, installed to $prefix (configure-time prefix baked" \
		"in; prefix=\${pcfiledir}/../.. would follow the install)"
fi
echo "pkg-config --cflags --libs tide: $(pkg-config --cflags --libs tide)"

# Shared: the default link, run against the scratch tree.
# shellcheck disable=SC2046,SC2086
if $cc $extra -o "$scratch/consumer_shared" "$src/examples/usage.c" \
	$(pkg-config --cflags --libs tide) 2>"$scratch/cc.log"; then
	ok "consumer builds against the shared library"
	out=$(LD_LIBRARY_PATH=$libdir "$scratch/consumer_shared" 2>&1)
	if [[ $out == *"hello, tide"* ]]; then
		ok "shared consumer runs: ${out%%$'\n'*}"
	else
		fail "shared consumer output: $out"
	fi
	if LD_LIBRARY_PATH=$libdir ldd "$scratch/consumer_shared" | grep -F "$libdir/libtide.so" >/dev/null; then
		ok "shared consumer loads $libdir/libtide.so"
	else
		fail "shared consumer does not load libtide from $libdir"
	fi
else
	cat "$scratch/cc.log"
	fail "consumer does not build against the shared library"
fi

# Static: pkg-config --static, and the archive named so the linker cannot pick the .so.
# shellcheck disable=SC2046,SC2086
libs=$(pkg-config --static --libs tide | sed 's/-ltide\b/-l:libtide.a/')
# shellcheck disable=SC2086
if $cc $extra -o "$scratch/consumer_static" "$src/examples/usage.c" \
	$(pkg-config --cflags tide) $libs 2>"$scratch/cc.log"; then
	ok "consumer builds against the static library ($libs)"
	if readelf -d "$scratch/consumer_static" | grep NEEDED | grep -q libtide; then
		fail "static consumer still needs libtide.so"
	else
		ok "static consumer does not need libtide.so"
	fi
	out=$(env -u LD_LIBRARY_PATH "$scratch/consumer_static" 2>&1)
	if [[ $out == *"hello, tide"* ]]; then
		ok "static consumer runs: ${out%%$'\n'*}"
	else
		fail "static consumer output: $out"
	fi
else
	cat "$scratch/cc.log"
	fail "consumer does not build against the static library"
fi

# The agent through tide-net.pc: libtide-net.so, which brings libtide.so.
if [ -f "$(dirname "$pc")/tide-net.pc" ]; then
	# shellcheck disable=SC2046,SC2086
	if $cc $extra -o "$scratch/consumer_net" "$src/test/package_consumer/agent.c" \
		$(pkg-config --cflags --libs tide-net) 2>"$scratch/cc.log"; then
		out=$(LD_LIBRARY_PATH=$libdir "$scratch/consumer_net" 2>&1)
		rc=$?
		if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then
			ok "tide-net consumer (pkg-config) runs (exit $rc): ${out%%$'\n'*}"
		else
			fail "tide-net consumer exit $rc: $out"
		fi
	else
		cat "$scratch/cc.log"
		fail "consumer does not build with pkg-config tide-net"
	fi
	net_so=$(find "$libdir" -name 'libtide-net.so*' -type f | head -n 1)
	others=$(nm -D --defined-only "$net_so" |
		awk '$3 !~ /^tide_(agent|worker|conn|buf|timer|addrs)_|^TIDE_NET_/ {print $3}')
	[ -z "$others" ] && ok "libtide-net.so exports only the API of tide/net.h" ||
		fail "libtide-net.so exports others: $(echo $others | head -c 300)"
fi

# The shared library exports the public API and nothing else.
so=$(find "$libdir" -name 'libtide.so*' -type f | head -n 1)
if [ -n "$so" ]; then
	others=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -v '^tide_' | grep -v '^TIDE_' || true)
	if [ -z "$others" ]; then
		ok "libtide.so exports only tide_* ($(nm -D --defined-only "$so" | grep -c ' tide_') symbols)"
	else
		fail "libtide.so exports non-tide symbols: $(echo $others | head -c 300)"
	fi
else
	fail "no libtide.so under $libdir"
fi
finish
