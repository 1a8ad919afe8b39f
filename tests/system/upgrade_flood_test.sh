#!/usr/bin/env bash
# Check 6 under fire: the machine boots in the lab's host namespace (tests/lab: eth0 to an ISP,
# the WireGuard tunnel wg0, the STUN server 203.0.113.3 routed outside the tunnel via eth0 with
# --split-stun on). With leakguard installed in `strict` and the tunnel declared as the wg-quick
# hook does, a flood of UDP datagrams and TCP connection attempts goes to 203.0.113.3 via eth0
# for the whole `apt install` of N+1 over N; a counter in the internet namespace, where
# 203.0.113.3 lives, counts what arrives: nothing may; then the same through `systemctl restart`
# and through a watchdog restart of a daemon stopped with SIGSTOP.
# Before the upgrade, the whole daemon under the unit's hardening proves itself against the lab's
# real peers: its STUN probe through wg0 gets the VPN exit, nothing outside does: `secured`.
# Controls: the same flood arrives before
# the package is installed and again once leakguard is disarmed after the upgrade.
# Usage: upgrade_flood_test.sh DEB_DIR
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
. "$here/lib.sh"
debs=$1
lab=$here/../lab/lab.sh
sys_init flood
id=sys$$
lab_vars=$("$lab" up --id "$id" --owner $$ --split-stun on 2>"$sys_dir/lab.log") || sys_fail "lab up failed: $(tail -n 3 "$sys_dir/lab.log")"
sys_after_machine="\"$lab\" down --id $id >/dev/null 2>&1"
var() { sed -n "s/^$1=//p" <<<"$lab_vars"; }
ns_host=$(var LAB_NS_HOST) ns_inet=$(var LAB_NS_INET) stun=$(var LAB_STUN4)
[ -n "$ns_host" ] && [ -n "$ns_inet" ] && [ -n "$stun" ] || sys_fail "lab up printed no namespaces: $lab_vars"

# What arrives at the STUN server's address from outside, before any NAT or filter there.
ip netns exec "$ns_inet" nft -f - <<EOF
table inet lgt_sys_count {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    ip daddr $stun udp dport 40000 counter
    ip daddr $stun tcp dport 40001 counter
  }
}
EOF
arrived() {  # prints "UDP TCP": packets counted so far
  ip netns exec "$ns_inet" nft list table inet lgt_sys_count | sed -n 's/.*dport \(4000[01]\) counter packets \([0-9]*\).*/\2/p' | paste -sd' '
}
flood_start() {
  rm -f "$sys_dir/flood.stop" "$sys_dir/flood.started"
  ip netns exec "$ns_host" python3 "$here/flood.py" "$stun" 40000 40001 "$sys_dir/flood.stop" "$sys_dir/flood.started" >"$sys_dir/flood.out" 2>&1 &
  flood_pid=$!
  sys_wait "the flood's first send" 10 test -e "$sys_dir/flood.started"
}
flood_stop() {
  : >"$sys_dir/flood.stop"
  wait "$flood_pid" || sys_fail "the flood failed: $(cat "$sys_dir/flood.out")"
  flood=$(cat "$sys_dir/flood.out")
}
grew() {  # BEFORE: both counters above BEFORE's
  local now; now=$(arrived)
  [ "${now% *}" -gt "${1% *}" ] && [ "${now#* }" -gt "${1#* }" ]
}

SYS_NETNS=/run/netns/$ns_host sys_boot

# Control: without leakguard, the flood arrives (UDP and TCP).
c=$(arrived)
flood_start
sys_wait "the flood arriving in the internet namespace without leakguard" 20 grew "$c"
flood_stop
echo "ok: control: without leakguard the flood arrives via eth0 ($(arrived) udp/tcp packets counted; sender: $flood)"

sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after installing N"
# strict, and the lab's STUN server for the daemon's own probe.
sys_exec sed -i -e 's|^policy: udp|policy: strict|' -e "s|^    - stun.l.google.com:19302|    - $stun:$(var LAB_STUN_PORT)|" \
  -e '/^    - stun.cloudflare.com:3478/d' -e '/^    - stun.nextcloud.com:443\/tcp/d' /etc/leakguard/leakguard.yaml
sys_exec systemctl reload leakguard.service
strict() { [ "$(sys_state_json | jq -r .policy)" = strict ]; }
sys_state_json() { sys_exec leakguardctl status --json; }
sys_wait "policy strict after reload" 20 strict
sys_exec leakguardctl tunnel set wg0 --endpoint "$(var LAB_VPN_ENDPOINT)/udp" --fwmark "$(var LAB_FWMARK)" >/dev/null
# The whole daemon under the unit's hardening, with real peers: its STUN probe gets the VPN exit
# through wg0 and nothing outside: secured.
secured() { [ "$(sys_state_json | jq -r .state)" = secured ]; }
sys_exec timeout 30 leakguardctl probe >/dev/null 2>&1 || true
sys_wait "state secured (the daemon's probe through the tunnel, under the unit's hardening)" 60 secured
exit4=$(sys_state_json | jq -r '[.. | strings | select(test("^203\\.0\\.113\\.66"))] | length')
[ "$exit4" -gt 0 ] || sys_fail "the status does not show the VPN exit 203.0.113.66"
echo "ok: leakguard under systemd, in the lab: secured, the probe saw the VPN exit 203.0.113.66 through wg0"

c0=$(arrived)
flood_start
sys_poll_start
sys_install "$debs"/n1/leakguard_*.deb
sys_poll_stop; r=$sys_poll
flood_stop
c1=$(arrived)
n1=$(sys_exec dpkg-query -W -f='${Version}' leakguard)
[ "$c1" = "$c0" ] || sys_fail "flood packets arrived during the upgrade to $n1: udp/tcp counters $c0 -> $c1 (sender: $flood)"
[ "${r##* }" = 0 ] || sys_fail "the table was missing in ${r##* } looks during the upgrade"
set -- $flood
[ $(($2 + $4 + $6)) -gt 0 ] && [ "$8" -gt 0 ] || sys_fail "the flood sent nothing: $flood"
echo "ok: upgrade to $n1 under the flood: 0 packets arrived (sender: $flood; the table never missing in ${r% *} looks)"

# The same flood through `systemctl restart` (the new daemon takes the table over).
c0=$(arrived)
flood_start
sys_exec systemctl restart leakguard.service
sys_active || sys_fail "not active after restart"
flood_stop
c1=$(arrived)
[ "$c1" = "$c0" ] || sys_fail "flood packets arrived during systemctl restart: udp/tcp counters $c0 -> $c1 (sender: $flood)"
echo "ok: systemctl restart under the flood: 0 packets arrived (sender: $flood)"

# The same flood while the daemon hangs (SIGSTOP) and systemd's watchdog restarts it (a drop-in
# shortens WatchdogSec=30s to 3s).
sys_short_watchdog
pid=$(sys_main_pid)
restarted() { local p; p=$(sys_main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && sys_active; }
c0=$(arrived)
flood_start
sys_exec kill -STOP "$pid"
sys_wait "systemd's watchdog to restart the stopped daemon" 60 restarted
flood_stop
c1=$(arrived)
[ "$c1" = "$c0" ] || sys_fail "flood packets arrived while the watchdog restarted the daemon: udp/tcp counters $c0 -> $c1 (sender: $flood)"
echo "ok: SIGSTOP and the watchdog's restart under the flood: 0 packets arrived (sender: $flood)"

# Control: disarmed, the same flood arrives again.
sys_exec leakguardctl disarm >/dev/null
c=$(arrived)
flood_start
sys_wait "the flood arriving once leakguard is disarmed" 20 grew "$c"
flood_stop
echo "ok: control: disarmed, the flood arrives again ($c -> $(arrived))"
echo "PASS"
