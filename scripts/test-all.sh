#!/usr/bin/env bash
# test-all.sh - the whole suite, as `make test` runs it: each sanitizer tree in turn, then
# one closing line with the totals ("tide: N passed, N failed"), which CI reads.
#
#   asan      every test, with AddressSanitizer and UBSan (Debug)
#   tsan      the threaded tests (label threads), with ThreadSanitizer
#   release   the install, package, man page, pkg-config consumer and example tests
#             (label release)
#   valgrind  the unit tests under Valgrind memcheck, failing on any error or definite leak
#   arm64     the core library cross-built for aarch64 (Debian's cross gcc), its unit tests
#             under qemu-user; skipped when the cross tools are not installed
#
# As it runs it prints each stage as it starts, the build's warnings (its whole log when
# it fails), and CTest's own lines: each test's name and result as it finishes, and the
# whole output of a test that fails. Exit status 0 only when every stage passed.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
passed=0 failed=0 status=0
logs=$(mktemp -d "${TMPDIR:-/tmp}/tide-test.XXXXXX")
trap 'rm -rf "$logs"' EXIT

# run NAME DIR CTEST-ARGS...: run one stage, streaming CTest's lines, and add its counts.
run() {
	local name=$1 dir=$2 log=$logs/$1.ctest
	shift 2
	echo "== $name: the tests (in $dir: ctest${1:+ $1 $2})"
	(cd "$dir" && ctest --output-on-failure --test-output-size-failed 100000000 \
		-j "$jobs" "$@") 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line total fails
	line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "test-all: stage $name ran no test (ctest exit $rc)" >&2
		failed=$((failed + 1))
		status=1
		return
	fi
	total=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
	fails=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/')
	passed=$((passed + total - fails))
	failed=$((failed + fails))
	[ "$rc" -eq 0 ] || status=1
	echo "== $name: $((total - fails)) passed, $fails failed"
}

# build PRESET: configure and build one tree. Its warnings are shown; when it fails, its
# whole log is, and the suite stops.
build() {
	local log=$logs/$1.build
	echo "== $1: building build/$1"
	if ! { cmake --preset "$1" && cmake --build "build/$1" -j "$jobs"; } >"$log" 2>&1; then
		cat "$log"
		echo "test-all: the $1 build failed (its log is above)" >&2
		echo
		echo "tide: $passed passed, $((failed + 1)) failed"
		exit 1
	fi
	grep -E -A3 'warning:|CMake Warning' "$log" || true
}

build asan
run asan build/asan
build tsan
run tsan build/tsan -L threads
build release
run release build/release -L release
run valgrind build/release -L unit -T memcheck --overwrite \
	MemoryCheckCommandOptions="--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"

if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null &&
	[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]; then
	build aarch64
	run arm64 build/aarch64 -L unit
else
	echo "== arm64: skipped (no aarch64-linux-gnu-gcc, qemu-aarch64 or arm64 libc; deps.sh cross)"
fi

echo
echo "tide: $passed passed, $failed failed"
exit $status
