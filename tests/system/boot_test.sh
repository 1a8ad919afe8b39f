#!/usr/bin/env bash
# Check 5: boot. With leakguard installed (enabled by the package), `systemctl reboot` in the
# machine (nspawn exits 133) and booting it again: the service is up and its table is in place
# before network-pre.target is reached (the journal's monotonic timestamps: systemd's "Started"
# entry comes when READY=1 does, and the daemon sends READY=1 only once a block is in). Then with
# a broken /etc/leakguard/leakguard.yaml the machine still boots blocked (the emergency block),
# and `leakguardctl status`, for root and for an unprivileged user, says why.
# Each boot has a network namespace of its own (--private-network), so no table survives a
# reboot here, as none survives a real one. Usage: boot_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init boot
sys_boot
sys_install "$debs"/n/leakguard_*.deb
[ "$(sys_exec systemctl is-enabled leakguard.service)" = enabled ] || sys_fail "not enabled after install"
sys_exec useradd -M -s /bin/sh bob

# The first journal entry (JSON) of this boot matching a jq filter.
first() { sys_exec journalctl -b -o json --no-pager | jq -c -s "map(select($1)) | .[0] // empty"; }
boot_figures() {
  local started pre state t_started t_pre t_state
  started=$(first '.UNIT == "leakguard.service" and .JOB_TYPE == "start" and .JOB_RESULT == "done"')
  pre=$(first '.UNIT == "network-pre.target" and .JOB_TYPE == "start" and .JOB_RESULT == "done"')
  state=$(first '._SYSTEMD_UNIT == "leakguard.service" and .LEAKGUARD_STATE != null')
  [ -n "$started" ] || sys_fail "no 'Started leakguard.service' in this boot's journal"
  [ -n "$pre" ] || sys_fail "no 'Reached target network-pre.target' in this boot's journal"
  [ -n "$state" ] || sys_fail "no LEAKGUARD_STATE entry in this boot's journal"
  t_started=$(jq -r .__MONOTONIC_TIMESTAMP <<<"$started")
  t_pre=$(jq -r .__MONOTONIC_TIMESTAMP <<<"$pre")
  t_state=$(jq -r .__MONOTONIC_TIMESTAMP <<<"$state")
  [ "$t_started" -lt "$t_pre" ] || sys_fail "leakguard was READY at $t_started us, after network-pre.target at $t_pre us"
  echo "ok: $1: state $(jq -r .LEAKGUARD_STATE <<<"$state") logged $(( t_pre - t_state )) us and READY=1 $(( t_pre - t_started )) us before network-pre.target was reached"
  echo "FIGURE $1: container start -> first state (table in) $(( ($(jq -r .__REALTIME_TIMESTAMP <<<"$state") - SYS_BOOT_T0_US) / 1000 )) ms, -> READY $(( ($(jq -r .__REALTIME_TIMESTAMP <<<"$started") - SYS_BOOT_T0_US) / 1000 )) ms, -> network-pre.target $(( ($(jq -r .__REALTIME_TIMESTAMP <<<"$pre") - SYS_BOOT_T0_US) / 1000 )) ms"
}

sys_reboot
sys_active || sys_fail "leakguard not active after reboot"
sys_table_present || sys_fail "no table after reboot"
[ "$(sys_state)" = blocking ] || sys_fail "state after reboot is $(sys_state), not blocking"
boot_figures "reboot"

# A broken configuration at boot: the emergency block, and status says why.
sys_exec sed -i 's|^policy: udp|policy: bogus|' /etc/leakguard/leakguard.yaml
sys_exec grep -q '^policy: bogus' /etc/leakguard/leakguard.yaml || sys_fail "could not break the configuration"
sys_reboot
sys_active || sys_fail "leakguard not active after a reboot with a broken configuration: $(sys_exec systemctl status --no-pager leakguard.service)"
sys_table_present || sys_fail "no table after a reboot with a broken configuration: the machine is not blocked"
boot_figures "reboot with a broken configuration"
status=$(sys_exec leakguardctl status --json)
[ "$(jq -r .state <<<"$status")" = error ] || sys_fail "state is $(jq -r .state <<<"$status"), not error"
grep -q '/etc/leakguard/leakguard.yaml:[0-9]*:[0-9]*' <<<"$(jq -r .reason <<<"$status")" ||
  sys_fail "status does not say where the file is broken: $(jq -r .reason <<<"$status")"
[ "$(jq -r .protection <<<"$status")" = emergency ] || sys_fail "protection is $(jq -r .protection <<<"$status"), not emergency"
sys_exec nft list table inet leakguard | sys_has 'comment "ip-out"' || sys_fail "the table lacks the emergency block's last rule (ip-out: everything else out refused)"
rc=0; out=$(sys_user bob timeout 30 leakguardctl status 2>&1) || rc=$?
[ $rc -ne 3 ] && [ $rc -ne 124 ] || sys_fail "bob's status got no answer (exit $rc): $out"
head -n 1 <<<"$out" | sys_has 'error' || sys_fail "bob's status does not say error: $(head -n 1 <<<"$out")"
grep -q 'leakguard.yaml' <<<"$out" || sys_fail "bob's status does not say why: $out"
echo "ok: broken configuration at boot: blocked (the emergency block: all but loopback), state error; root sees: $(jq -r .reason <<<"$status" | cut -c1-120)"
echo "ok: bob (unprivileged) sees: $(head -n 1 <<<"$out" | cut -c1-120) (exit $rc)"
echo "PASS"
