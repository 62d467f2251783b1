#!/usr/bin/env bash
# Description: the static archives keep the library's internals out of the user's
# namespace. nm shows that libtide.a and libtide-net.a define no global symbol outside
# tide_*, and a program that defines its own bitmap_init(), pool_alloc(), os_commit(),
# on_accept() and worker_main() (names the archives used to export) links against them
# and runs (mimalloc #107, gperftools #568).
#
# Usage: static_symbols.sh LIBTIDE.A LIBTIDE-NET.A|"" CC NM BUILD_INCLUDE [EXTRA_CFLAGS]
set -uo pipefail

core=$1 net=$2 cc=$3 nm=$4 build_include=$5 san=${6:-}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/tide-static.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

command -v "$nm" >/dev/null || { echo "SKIP: no nm"; exit 77; }
for lib in "$core" $net; do
	others=$("$nm" -g --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[A-TV-Z]$/ {print $3}' |
		grep -v '^tide_' | sort -u)
	public=$("$nm" -g --defined-only "$lib" | awk 'NF == 3 && $3 ~ /^tide_/' | wc -l)
	if [ -z "$others" ]; then
		ok "$(basename "$lib") defines only tide_* globally ($public symbols)"
	else
		fail "$(basename "$lib") defines $(echo "$others" | wc -l) other global symbols:" \
			"$(echo $others | head -c 300)"
	fi
done

cat >"$scratch/clash.c" <<'C'
#include <stdio.h>
#include <tide.h>
/* The application's own helpers, unrelated to tide's internals of the same names. */
struct bitmap_img { int w, h; };
void bitmap_init(struct bitmap_img *b, int w, int h) { b->w = w; b->h = h; }
void *pool_alloc(int n) { static char arena[256]; return n < 256 ? arena : 0; }
int os_commit(void) { return 7; }
int on_accept(int fd) { return fd + 1; }
void *worker_main(void *arg) { return arg; }
int main(void)
{
	struct bitmap_img img;
	struct tide_pool_config c = {0};
	struct tide_pool *p;
	void *b;
	int r;

	c.reserve_size = 1u << 30;
	c.flags = TIDE_AUTO_GROW;
	bitmap_init(&img, 2, 3);
	if (tide_pool_create(&c, &p))
		return 1;
	b = tide_alloc(p, 100);
	r = !b || tide_free(p, b) || !pool_alloc(8) || os_commit() != 7 || on_accept(1) != 2 ||
	    worker_main(&img) != &img;
	tide_pool_destroy(p);
	printf("clash program ran: %s\n", r ? "wrong" : "ok");
	return r;
}
C
include=$(cd "$(dirname "$0")/../include" && pwd)
extra="$san -I$build_include"
libs=("$core")
if [ -n "$net" ]; then
	libs=("$net" "$core" -luring)
fi
# shellcheck disable=SC2086
if "$cc" $extra -I"$include" -o "$scratch/clash" "$scratch/clash.c" "${libs[@]}" -lpthread \
	2>"$scratch/cc.log"; then
	ok "a program defining bitmap_init, pool_alloc, os_commit, on_accept, worker_main links"
	out=$("$scratch/clash" 2>&1) && ok "and runs: $out" || fail "clash program: $out"
else
	head -n 5 "$scratch/cc.log"
	fail "a program defining the old internal names does not link statically"
fi
# Statically as a whole (-static), where the toolchain has a static libc (not with sanitizers).
# shellcheck disable=SC2086
if [ -z "$san" ] && "$cc" -static $extra -I"$include" -o "$scratch/clash_static" "$scratch/clash.c" "$core" -lpthread \
	2>"$scratch/cc.log"; then
	out=$("$scratch/clash_static" 2>&1) && ok "-static: $out" || fail "-static run: $out"
else
	echo "note: -static link not tried or not available here"
fi
echo "static_symbols: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
