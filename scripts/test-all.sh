#!/usr/bin/env bash
# test-all.sh - the whole suite, as `make test` runs it: each sanitizer tree in turn, then
# one closing line with the totals ("N passed, N failed"), which CI reads.
#
#   asan      every test, with AddressSanitizer and UBSan (Debug)
#   tsan      the threaded tests (label threads), with ThreadSanitizer
#   release   the install, pkg-config consumer and example tests (label release)
#   valgrind  the unit tests under Valgrind memcheck, failing on any error or definite leak
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
passed=0 failed=0 status=0

# run NAME DIR CTEST-ARGS...: run one stage, add its counts to the totals.
run() {
	local name=$1 dir=$2 out
	shift 2
	echo "== $name"
	out=$(cd "$dir" && ctest --output-on-failure -j "$jobs" "$@" 2>&1)
	local rc=$?
	echo "$out" | tail -n 25
	local line total fails
	line=$(echo "$out" | grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' | tail -n 1)
	total=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
	fails=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/')
	if [ -z "$line" ]; then
		echo "test-all: stage $name ran no test (ctest exit $rc)" >&2
		failed=$((failed + 1))
		status=1
		return
	fi
	passed=$((passed + total - fails))
	failed=$((failed + fails))
	[ "$rc" -eq 0 ] || status=1
}

build() {
	cmake --preset "$1" >/dev/null && cmake --build "build/$1" -j "$jobs" >/dev/null
}

build asan || { echo "test-all: the asan build failed" >&2; exit 1; }
run asan build/asan
build tsan || { echo "test-all: the tsan build failed" >&2; exit 1; }
run tsan build/tsan -L threads
build release || { echo "test-all: the release build failed" >&2; exit 1; }
run release build/release -L release
run valgrind build/release -L unit -T memcheck --overwrite \
	MemoryCheckCommandOptions="--error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite"

echo
echo "tide: $passed passed, $failed failed"
exit $status
