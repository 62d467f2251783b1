#!/usr/bin/env bash
# Description: the public headers (tide.h, tide/net.h) compile cleanly in every C standard
# from C99 and every C++ standard from C++98, GNU variants included, with -Wall -Wextra
# -pedantic -Werror, under gcc and clang (whichever are installed). A trailing comma after
# the last enumerator, a // comment or a C-only construct would break one of them
# (rapidjson #245, box2d #155). tide/net.h includes only tide.h and standard headers (not
# liburing), so it is held to the same rule. C89 is not a target (the API uses <stdint.h>
# types) and is not tried.
#
# Usage: public_headers.sh INCLUDE_DIR... (the source tree's, and the build tree's for the
# generated tide/version.h)
set -uo pipefail

incs=()
for d in "$@"; do incs+=("-I$d"); done
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tide-headers.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
passed=0 failed=0 tried=0

cat >"$scratch/t.c" <<'C'
#include <tide.h>
#include <tide/net.h>
int main(void)
{
	struct tide_pool_config cfg = {0};
	struct tide_agent_config ac = {0};
	enum tide_convert d = TIDE_TO_RESERVED;
	tide_convert_fn fn = 0;

	(void)ac, (void)d, (void)fn;
	cfg.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_POPULATE;
	ac.flags = TIDE_AGENT_NO_BUNDLE | TIDE_AGENT_NO_INCREMENTAL;
	return cfg.flags == 0;
}
C
cat >"$scratch/t.cc" <<'C'
#include <tide.h>
#include <tide/net.h>
int main()
{
	struct tide_pool_config cfg = tide_pool_config();
	struct tide_agent_config ac = tide_agent_config();
	enum tide_convert d = TIDE_TO_RESERVED;
	tide_convert_fn fn = 0;

	(void)ac, (void)d, (void)fn;
	cfg.flags = TIDE_AUTO_GROW | TIDE_AUTO_SHRINK | TIDE_POPULATE;
	ac.flags = TIDE_AGENT_NO_BUNDLE | TIDE_AGENT_NO_INCREMENTAL;
	return cfg.flags == 0;
}
C

# try COMPILER STD SOURCE
try() {
	# A standard the compiler does not know is not tried.
	echo 'int main(void) { return 0; }' | "$1" -std="$2" -x "$4" -fsyntax-only - 2>/dev/null ||
		return 0
	tried=$((tried + 1))
	if "$1" -std="$2" -fsyntax-only -Wall -Wextra -pedantic -Werror "${incs[@]}" "$3" \
		>"$scratch/log" 2>&1; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAIL: $1 -std=$2: $(grep -m1 -E 'error' "$scratch/log")"
	fi
}

for cc in gcc clang; do
	command -v $cc >/dev/null || continue
	for std in c99 c11 c17 c2x gnu99 gnu11 gnu17 gnu2x; do try $cc $std "$scratch/t.c" c; done
done
for cxx in g++ clang++; do
	command -v $cxx >/dev/null || continue
	for std in c++98 c++03 c++11 c++14 c++17 c++20 gnu++98 gnu++11 gnu++17 gnu++20; do
		try $cxx $std "$scratch/t.cc" c++
	done
done
[ "$tried" -gt 0 ] || { echo "SKIP: no C or C++ compiler"; exit 77; }
echo "public_headers: $passed of $tried compiler/standard pairs clean, $failed failed"
[ "$failed" -eq 0 ]
