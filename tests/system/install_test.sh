#!/usr/bin/env bash
# Check 1: `apt install ./leakguard_*.deb` on a booted Debian 12 leaves leakguard enabled and
# running as its unit says: active (Type=notify: READY=1 came), as user leakguard with exactly the
# unit's capabilities, the table inet leakguard in the kernel, the daemon on the real system bus,
# and the structured state fields in the journal. Usage: install_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init install
sys_boot

# Control: the probe for the table sees none before the package (and one after).
sys_table_present && sys_fail "a table inet leakguard exists before the package is installed"
sys_exec id leakguard >/dev/null 2>&1 && sys_fail "user leakguard exists before the package is installed"
sys_install "$debs"/n/leakguard_*.deb

[ "$(sys_exec systemctl is-enabled leakguard.service)" = enabled ] || sys_fail "not enabled after install"
sys_active || sys_fail "not active after install: $(sys_exec systemctl status --no-pager leakguard.service)"
[ "$(sys_exec systemctl show -P Type leakguard.service)" = notify ] || sys_fail "the unit is not Type=notify"
# For Type=notify, active means READY=1 arrived; STATUS= came with it.
status_text=$(sys_exec systemctl show -P StatusText leakguard.service)
[ -n "$status_text" ] || sys_fail "no STATUS= from the daemon"
[ "$(sys_exec systemctl show -P NRestarts leakguard.service)" = 0 ] || sys_fail "the service restarted during install"
echo "ok: enabled, active (READY=1), status \"$status_text\", no restart"

pid=$(sys_main_pid)
[ "$pid" -gt 0 ] || sys_fail "no MainPID"
status=$(sys_exec cat /proc/"$pid"/status)
uid=$(sys_exec id -u leakguard) gid=$(sys_exec id -g leakguard)
[ "$(awk '/^Uid:/ {print $2 $3 $4 $5}' <<<"$status")" = "$uid$uid$uid$uid" ] || sys_fail "MainPID $pid does not run as leakguard ($uid): $(grep ^Uid <<<"$status")"
[ "$(awk '/^Gid:/ {print $2}' <<<"$status")" = "$gid" ] || sys_fail "MainPID $pid does not run as group leakguard"
[ "$(sys_exec systemctl show -P User leakguard.service)" = leakguard ] || sys_fail "the unit's User= is not leakguard"
# The unit's capabilities as systemd read them, as a mask (capability(7) numbers).
declare -A capbit=([cap_net_admin]=12 [cap_net_raw]=13 [cap_net_bind_service]=10 [cap_sys_admin]=21)
mask=0
for c in $(sys_exec systemctl show -P CapabilityBoundingSet leakguard.service); do
  [ -n "${capbit[$c]:-}" ] || sys_fail "capability $c not in this test's table"
  mask=$((mask | (1 << capbit[$c])))
done
want=$(printf '%016x' "$mask")
[ "$want" = 0000000000001000 ] || sys_fail "the unit's bounding set is $want, not CAP_NET_ADMIN alone"
for field in CapEff CapPrm CapBnd CapAmb; do
  got=$(awk -v f="$field:" '$1 == f {print $2}' <<<"$status")
  [ "$got" = "$want" ] || sys_fail "$field of MainPID is $got, the unit says $want"
done
[ "$(awk '/^NoNewPrivs:/ {print $2}' <<<"$status")" = 1 ] || sys_fail "NoNewPrivileges not in effect"
echo "ok: MainPID $pid runs as leakguard ($uid:$gid) with CapEff=CapPrm=CapBnd=CapAmb=$want (CAP_NET_ADMIN), NoNewPrivs"

sys_table_present || sys_fail "table inet leakguard missing while the service is active"
echo "ok: table inet leakguard in place"

# The real system bus with the installed policy: root's status answers at once.
out=$(sys_exec timeout 20 leakguardctl status --json) || sys_fail "leakguardctl status as root failed: $out"
[ "$(jq -r .state <<<"$out")" = blocking ] || sys_fail "state is $(jq -r .state <<<"$out"), not blocking"
# The install order held: the daemon owned its name at the first try (no AccessDenied from a
# policy read before the user existed) and never failed to start for a missing user.
journal=$(sys_exec journalctl -u leakguard.service -b --no-pager -o cat)
grep -q 'cannot register' <<<"$journal" && sys_fail "the daemon could not own its bus name: $(grep 'cannot register' <<<"$journal" | head -n 1)"
grep -q '217/USER' <<<"$journal" && sys_fail "the service failed for a missing user"
echo "ok: leakguardctl status over the system bus: blocking; the bus name owned at once"

# Structured fields: the state transition carries LEAKGUARD_STATE.
fields=$(sys_exec journalctl -u leakguard.service -b --no-pager -o json | jq -r 'select(.LEAKGUARD_STATE != null) | .LEAKGUARD_STATE')
grep -qx blocking <<<"$fields" || sys_fail "no journal entry with LEAKGUARD_STATE=blocking (got: $(echo $fields))"
echo "ok: journal has LEAKGUARD_STATE=$(echo $fields)"

# Figure: from the exec of leakguardd to READY=1 (systemd's own monotonic timestamps).
t_exec=$(sys_exec systemctl show -P ExecMainStartTimestampMonotonic leakguard.service)
t_ready=$(sys_exec systemctl show -P ActiveEnterTimestampMonotonic leakguard.service)
echo "FIGURE start_to_ready_ms=$(( (t_ready - t_exec) / 1000 ))  (exec of leakguardd -> READY=1, at install)"
echo "PASS"
