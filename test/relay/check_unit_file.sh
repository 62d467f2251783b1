#!/bin/sh
# Description: the installed tide-relay.service passes `systemd-analyze verify`, with its
# ExecStart pointed at this tree's tide-relay (verify wants the binary to exist).
# Usage: check_unit_file.sh UNIT RELAY_BINARY. Exit 0 pass, 1 fail, 77 skip.
unit=$1 relay=$(realpath "$2" 2>/dev/null || echo "$2")
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: no systemd-analyze"; exit 77; }
[ -f "$unit" ] || { echo "no unit at $unit"; exit 1; }
[ -x "$relay" ] || { echo "SKIP: no tide-relay at $relay (TIDE_NET off?)"; exit 77; }
dir=$(mktemp -d /tmp/tide-unit-XXXXXX) || exit 1
trap 'rm -rf "$dir"' EXIT
bin=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
sed "s|$bin|$relay|g" "$unit" > "$dir/tide-relay.service"
for key in Type=notify 'ExecReload=/bin/kill -HUP $MAINPID' NoNewPrivileges=yes; do
	grep -qxF "$key" "$dir/tide-relay.service" || { echo "unit lacks '$key'"; exit 1; }
done
out=$(systemd-analyze verify --man=no "$dir/tide-relay.service" 2>&1)
rc=$?
# Outside a booted systemd (containers) verify can fail for reasons that are not the unit's.
if [ $rc -ne 0 ] && echo "$out" | grep -qiE 'Failed to (connect|initialize)|bus|not been booted'; then
	echo "SKIP: systemd-analyze cannot run here: $out"
	exit 77
fi
[ -n "$out" ] && echo "$out"
[ $rc -eq 0 ] && [ -z "$out" ] || { echo "systemd-analyze verify: exit $rc"; exit 1; }
echo "test_relay_unit_file: systemd-analyze verify clean"
