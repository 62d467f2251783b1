# shellcheck shell=bash
# lib.sh - shell helpers shared by demo/run-demo.sh and bench/relay/run-bench.sh.
#
# Sourced, not run. Both scripts start servers on loopback and must stop every one of them
# on exit, error or Ctrl-C; these are the pieces they had each written alike.

# Ctrl-C and SIGTERM only set a flag, checked between steps by check_interrupt: a trap
# that runs inside a command substitution confuses bash 5.2.
interrupted=0
trap 'interrupted=1' INT TERM
check_interrupt() {
	if [ "$interrupted" -eq 1 ]; then
		printf '\n%s: interrupted; stopping everything\n' "${0##*/}" >&2
		exit 130
	fi
}

# stop_pids TENTHS PID...: SIGTERM to each, then up to TENTHS tenths of a second for each
# to exit (bounded: one that ignores SIGTERM gets SIGKILL), and reap it.
stop_pids() {
	local tenths=$1 p i
	shift
	for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
	for p in "$@"; do
		for ((i = 0; i < tenths; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}

# A free loopback port: a random one below the ephemeral range that no socket uses.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		ss -Htan "sport = :$p" 2>/dev/null | grep -q . || { echo "$p"; return; }
	done
}
