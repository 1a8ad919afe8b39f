#!/usr/bin/env bash
# The lab must not change the machine's own network namespace: links, addresses, routes, rules,
# nftables and forwarding are compared before and after a full lab cycle with every switch used.
set -uo pipefail
# Exit 77 is the SKIP_RETURN_CODE in tests/lab/CMakeLists.txt: ctest shows a skip, not a failure.
[ "$(id -u)" -eq 0 ] || { echo "rootns_untouched: skipped: needs root (the lab is made of network namespaces)"; exit 77; }
here=$(dirname "$(readlink -f "$0")")
id="ru-$$"
before=$(mktemp) after=$(mktemp)
trap 'LAB_QUIET=1 "$here/lab.sh" down --id "$id" >/dev/null 2>&1; rm -f "$before" "$after"' EXIT
"$here/rootns-snapshot.sh" >"$before"
export LAB_QUIET=1
"$here/lab.sh" up --id "$id" --second-uplink on --ipv6 native >/dev/null || exit 1
for knob in "tunnel down" "tunnel up" "ipv6 tunnel" "split-stun wlan0" "second-uplink off" "split-stun on"; do
  # shellcheck disable=SC2086
  "$here/lab.sh" set --id "$id" $knob || exit 1
done
"$here/lab.sh" down --id "$id"
"$here/rootns-snapshot.sh" >"$after"
if diff -u "$before" "$after"; then
  echo "root namespace unchanged: $(grep -c . "$before") lines compared"
else
  echo "FAIL: the root network namespace changed (diff above)"; exit 1
fi
