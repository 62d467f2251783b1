#!/usr/bin/env bash
# Description: install the build tree into a scratch prefix, then configure and build
# test/package_consumer (find_package(tide): tide::tide, tide::static, tide::net) against
# it with CMAKE_PREFIX_PATH, and run what it built. Also: a version the install cannot
# satisfy is refused, and the version macros, tide_version() and the package agree.
#
# Usage: package_consumer.sh BUILD_DIR SOURCE_DIR CC VERSION [EXTRA_CFLAGS]
set -uo pipefail

build=$1 src=$2 cc=$3 version=$4 extra=${5:-}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tide-package.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix
passed=0 failed=0

ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
	echo "package_consumer: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}
# run LOG CMD...: run a command, its output into LOG; on failure print the whole log.
run() {
	local log=$1
	shift
	"$@" >"$log" 2>&1 && return 0
	cat "$log"
	return 1
}

run "$scratch/install.log" cmake --install "$build" --prefix "$prefix" ||
	{ fail "cmake --install $build --prefix $prefix"; finish; }
ok "cmake --install into $prefix"
cfg=$(find "$prefix" -name tideConfig.cmake | head -n 1)
[ -n "$cfg" ] && ok "tideConfig.cmake at ${cfg#"$prefix"/}" || { fail "no tideConfig.cmake"; finish; }

configure() { # configure DIR [VERSION]
	cmake -S "$src/test/package_consumer" -B "$1" -DCMAKE_PREFIX_PATH="$prefix" \
		-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" \
		-DTIDE_SOURCE_DIR="$src" -DTIDE_WANT_VERSION="${2:-}"
}
if run "$scratch/configure.log" configure "$scratch/build" "$version" &&
	run "$scratch/build.log" cmake --build "$scratch/build"; then
	ok "find_package(tide $version): the consumer configures and builds"
else
	fail "the consumer does not configure or build against $prefix"
	finish
fi

out=$("$scratch/build/usage" 2>&1)
[[ $out == *"hello, tide"* ]] && ok "tide::tide consumer runs: ${out%%$'\n'*}" ||
	fail "tide::tide consumer output: $out"
if readelf -d "$scratch/build/usage" | grep NEEDED | grep -q 'libtide\.so'; then
	ok "tide::tide links libtide.so"
else
	fail "tide::tide consumer does not need libtide.so"
fi
out=$("$scratch/build/usage_static" 2>&1)
if [[ $out == *"hello, tide"* ]] && ! readelf -d "$scratch/build/usage_static" | grep NEEDED |
	grep -q libtide; then
	ok "tide::static consumer runs without libtide.so"
else
	fail "tide::static consumer: $out"
fi
if [ -x "$scratch/build/agent" ]; then
	out=$("$scratch/build/agent" 2>&1)
	rc=$?
	if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then
		ok "tide::net consumer runs (exit $rc): $(echo "$out" | tr '\n' ' ')"
	else
		fail "tide::net consumer exit $rc: $out"
	fi
	[[ $out == *"header $version, library $version"* ]] &&
		ok "TIDE_VERSION_STRING and tide_version() are the package's $version" ||
		fail "versions: $out (package $version)"
	readelf -d "$scratch/build/agent" | grep NEEDED | grep -q 'libtide-net\.so' &&
		ok "tide::net links libtide-net.so" || fail "tide::net consumer does not need libtide-net.so"
fi

if configure "$scratch/build-too-new" 99.0 >"$scratch/too-new.log" 2>&1; then
	fail "find_package(tide 99.0) accepted version $version"
else
	ok "find_package(tide 99.0) is refused"
fi
finish
