#!/usr/bin/env bash
# Lab self-check: proves the lab is a real network before anything is tested in it.
# An independent STUN client (coturn's turnutils_stunclient, not leakguard's code) asks the lab's
# STUN server, from the user's machine, which public address it sees, in each scenario:
#   through the tunnel -> the VPN exit; outside it via eth0 -> the ISP address; via wlan0 -> the
#   second ISP's. Then the lab is torn down and must leave nothing behind, and a second run works.
set -uo pipefail
# Exit 77 is the SKIP_RETURN_CODE in tests/lab/CMakeLists.txt: ctest shows a skip, not a failure.
[ "$(id -u)" -eq 0 ] || { echo "selfcheck: skipped: needs root (the lab is made of network namespaces)"; exit 77; }
here=$(dirname "$(readlink -f "$0")")
LAB="$here/lab.sh"
id="sc-$$"
host="lgt-$id-host"
passed=0 failed=0
if [ -t 1 ]; then G=$'\e[32m' R=$'\e[31m' B=$'\e[1m' N=$'\e[0m'; else G='' R='' B='' N=''; fi

cleanup() { LAB_QUIET=1 "$LAB" down --id "$id" >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { echo "$EPOCHREALTIME"; }
secs() { awk "BEGIN {printf \"%.2f\", $2 - $1}"; }
# The server-reflexive address (without port) that coturn's client gets for a STUN server address.
reflexive() {
  local out
  out=$(ip netns exec "$host" timeout 5 turnutils_stunclient "$1" 2>&1 | grep -oE 'reflexive addr: [0-9a-f:.]+' | head -n1)
  out=${out#reflexive addr: }
  echo "${out%:*}"
}
expect() {  # WHAT STUN_ADDR EXPECTED
  local got; got=$(reflexive "$2")
  if [ "$got" = "$3" ]; then
    printf '  %sok%s   %-44s %s\n' "$G" "$N" "$1" "$got"; passed=$((passed + 1))
  else
    printf '  %sFAIL%s %-44s expected %s, got %s\n' "$R" "$N" "$1" "$3" "${got:-no answer}"; failed=$((failed + 1))
  fi
}
check() {  # WHAT COMMAND...: a condition that must hold
  if "${@:2}"; then printf '  %sok%s   %s\n' "$G" "$N" "$1"; passed=$((passed + 1))
  else printf '  %sFAIL%s %s\n' "$R" "$N" "$1"; failed=$((failed + 1)); fi
}
set_knob() { LAB_QUIET=1 "$LAB" set --id "$id" "$1" "$2" || { echo "lab.sh set $1 $2 failed" >&2; exit 1; }; }
lab_pids() { cat "/run/leakguard-lab/$id"/*.pid 2>/dev/null | awk '{print $1}'; }
none_alive() { local p; for p in "$@"; do [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] && return 1; done; return 0; }
no_namespaces() { ! ip netns list | grep -q "^lgt-$id-"; }

echo "${B}Lab self-check${N} (independent client: coturn's turnutils_stunclient)"
t0=$(now)
LAB_QUIET=1 "$LAB" up --id "$id" >/dev/null || { echo "lab.sh up failed" >&2; exit 1; }
t_up=$(secs "$t0" "$(now)")
echo "lab built in ${t_up} s"

echo "Full tunnel (wg-quick style): the internet sees the VPN exit"
expect "IPv4 through wg0" 203.0.113.3 203.0.113.66
expect "IPv6 through wg0" 2001:db8:3::3 2001:db8:3::66
echo "Split routing: STUN server routed via eth0, outside the tunnel"
set_knob split-stun on
expect "IPv4 via eth0 (ISP's NAT)" 203.0.113.3 203.0.113.2
expect "IPv6 via eth0 (the host's own address)" 2001:db8:3::3 2001:db8:2::10
set_knob split-stun off
echo "IPv6 not tunnelled: IPv4 in the tunnel, IPv6 leaks natively"
set_knob ipv6 native
expect "IPv4 through wg0" 203.0.113.3 203.0.113.66
expect "IPv6 via eth0" 2001:db8:3::3 2001:db8:2::10
echo "Tunnel down: everything goes via eth0"
set_knob tunnel down
check "wg0 is gone" bash -c "! ip -n $host link show wg0 >/dev/null 2>&1"
expect "IPv4 via eth0" 203.0.113.3 203.0.113.2
set_knob tunnel up
expect "IPv4 through wg0 again" 203.0.113.3 203.0.113.66
echo "Second uplink (wlan0 via another ISP), STUN routed via wlan0"
set_knob second-uplink on
set_knob split-stun wlan0
expect "IPv4 via wlan0 (second ISP's NAT)" 203.0.113.3 203.0.113.4
expect "IPv6 via wlan0" 2001:db8:3::3 2001:db8:4::10

echo "Teardown"
pids=$(lab_pids)
t0=$(now)
LAB_QUIET=1 "$LAB" down --id "$id"
t_down=$(secs "$t0" "$(now)")
echo "lab torn down in ${t_down} s"
check "no namespace lgt-$id-* remains" no_namespaces
# shellcheck disable=SC2086
check "no lab process remains (PIDs $(echo $pids))" none_alive $pids
check "no state remains" test ! -e "/run/leakguard-lab/$id"

echo "A second run right after"
LAB_QUIET=1 "$LAB" up --id "$id" >/dev/null || { echo "second lab.sh up failed" >&2; exit 1; }
expect "IPv4 through wg0" 203.0.113.3 203.0.113.66
# The first lab's watcher, had it looked only between 'down' and this 'up', found the state of
# this lab: a watcher of an earlier lab of the same id whose owner is gone leaves this one alone.
sleep 0 & gone=$!; wait "$gone"
LAB_INSTANCE="an-earlier-lab" LAB_QUIET=1 "$LAB" watch --id "$id" --owner "$gone"
check "an earlier lab's watcher left this one alone" test -e "/run/leakguard-lab/$id/settings"
expect "IPv4 through wg0, still" 203.0.113.3 203.0.113.66
LAB_QUIET=1 "$LAB" down --id "$id"
check "no namespace remains" no_namespaces

echo "An owner killed with SIGKILL (no cleanup of its own): the lab goes by itself"
sleep 60 &
owner=$!
LAB_QUIET=1 "$LAB" up --id "$id" --owner "$owner" >/dev/null || { echo "third lab.sh up failed" >&2; exit 1; }
kill -9 "$owner"; wait "$owner" 2>/dev/null
gone_within() {  # SECONDS: waits for the lab's namespaces and state to disappear
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do no_namespaces && [ ! -e "/run/leakguard-lab/$id" ] && return 0; sleep 0.1; done
  return 1
}
check "lab removed within 5 s of its owner's death" gone_within 5

echo "figures: build ${t_up} s (goal < 15 s), teardown ${t_down} s (goal < 5 s)"
echo "selfcheck: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
