#!/usr/bin/env bash
# Check 3: `systemctl reload leakguard` (ExecReload: leakguardctl reload) makes the daemon
# re-read /etc/leakguard/leakguard.yaml; a broken file on reload is refused, and systemctl reload
# fails: the running configuration and the rules stay as they were, the service stays up.
# Usage: reload_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init reload
sys_boot
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after install"
conf=/etc/leakguard/leakguard.yaml
# The table as nft shows it, without the counters (they move).
table() { sys_exec nft list table inet leakguard | sed -E 's/counter packets [0-9]+ bytes [0-9]+/counter/'; }
endpoint_in_table() { sys_exec nft list table inet leakguard | sys_has 198.51.100.7; }

# Control for the look below: the endpoint is not in the table before the reload.
endpoint_in_table && sys_fail "198.51.100.7 is in the table before it is configured"
sys_exec sed -i 's|^  endpoints: \[\]|  endpoints: [198.51.100.7:51820/udp]|' "$conf"
sys_exec grep -q '198.51.100.7' "$conf" || sys_fail "could not edit $conf"
pid=$(sys_main_pid)
sys_exec systemctl reload leakguard.service
sys_wait "the reloaded endpoint 198.51.100.7 in the table" 20 endpoint_in_table
[ "$(sys_exec leakguardctl status --json | jq -r '.endpoints[]')" = 198.51.100.7:51820/udp ] || sys_fail "status does not show the reloaded endpoint"
[ "$(sys_main_pid)" = "$pid" ] || sys_fail "reload restarted the daemon"
sys_exec journalctl -u leakguard.service -b -o cat --no-pager | sys_has 'configuration reloaded by uid 0' ||
  sys_fail "no 'configuration reloaded by uid 0' (leakguardctl reload, as root) in the journal"
echo "ok: systemctl reload re-read the file: endpoint 198.51.100.7:51820/udp in the rules, same MainPID $pid"

before=$(table)
sys_exec sed -i 's|^policy: udp|policy: bogus|' "$conf"
sys_exec grep -q '^policy: bogus' "$conf" || sys_fail "could not break $conf"
rc=0; out=$(sys_exec systemctl reload leakguard.service 2>&1) || rc=$?
[ $rc -ne 0 ] || sys_fail "systemctl reload succeeded for a file the daemon refuses"
refused() { sys_exec journalctl -u leakguard.service -b -o cat --no-pager | sys_has 'reload refused'; }
sys_wait "the daemon's 'reload refused' for the broken file" 20 refused
line=$(sys_exec journalctl -u leakguard.service -b -o cat --no-pager | grep 'reload refused' | tail -n 1)
grep -q "$conf:[0-9]*:[0-9]*" <<<"$line" || sys_fail "the refusal does not name the place: $line"
after=$(table)
[ "$before" = "$after" ] || sys_fail "the rules changed on a refused reload: $(diff <(echo "$before") <(echo "$after"))"
sys_active || sys_fail "the service is not active after a refused reload"
[ "$(sys_main_pid)" = "$pid" ] || sys_fail "the daemon restarted on a refused reload"
status=$(sys_exec leakguardctl status --json)
[ "$(jq -r .policy <<<"$status")" = udp ] && [ "$(jq -r '.endpoints[]' <<<"$status")" = 198.51.100.7:51820/udp ] ||
  sys_fail "the running configuration changed on a refused reload: $(jq -c '{policy, endpoints}' <<<"$status")"
echo "ok: broken file refused ($line), systemctl reload exited $rc; rules, configuration and MainPID unchanged"

# An upgrade onto the broken file: apt succeeds, and its postinst says the file is not usable
# (the install of a good file said nothing of the kind: the control); the new daemon keeps the
# last good table untouched, in error.
! grep -q 'is not usable' "$sys_dir/apt.log" || sys_fail "the install of a good configuration warned: $(cat "$sys_dir/apt.log")"
n1=$(basename "$debs"/n1/leakguard_*.deb)
cp "$debs/n1/$n1" "$sys_merged/root/"
out=$(sys_exec sh -c "cd /root && DEBIAN_FRONTEND=noninteractive apt install -y --no-install-recommends ./$n1" 2>&1) ||
  sys_fail "apt install ./$n1 failed: $out"
grep -q "leakguard: $conf is not usable: .*$conf:[0-9]*:[0-9]*" <<<"$out" || sys_fail "the upgrade did not say the file is not usable: $out"
in_error() { [ "$(sys_exec leakguardctl status --json | jq -r .state)" = error ]; }
sys_wait "the upgraded daemon in error" 20 in_error
[ "$(table)" = "$before" ] || sys_fail "the upgraded daemon changed the kept rules: $(diff <(echo "$before") <(table))"
echo "ok: the upgrade onto the broken file said so ($(grep -m1 'is not usable' <<<"$out")); the kept rules unchanged, state error"
echo "PASS"
