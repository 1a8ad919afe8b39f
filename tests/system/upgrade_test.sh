#!/usr/bin/env bash
# Check 6: upgrade N -> N+1 with `apt install ./leakguard_N+1.deb` on a running machine. The
# block is never gone (a watcher lists the table in a tight loop through the whole apt run), the
# service is restarted by the postinst (one systemd restart job: the old prerm did not stop it),
# the new package is installed and running; and (--tunnel) the VPN client's tunnel declaration
# survives.
# Usage: upgrade_test.sh DEB_DIR [--tunnel]
#   without --tunnel: the block, the restart and the version (ctest system/upgrade)
#   --tunnel: only whether the declaration survives (ctest system/upgrade_tunnel: the daemon keeps
#             it in its runtime directory, /run/leakguard, which the unit preserves across restarts)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1 mode=${2:-}
sys_init upgrade
sys_boot
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after installing N"
n=$(sys_exec dpkg-query -W -f='${Version}' leakguard)
# The VPN's interface exists (a restarted daemon drops a declaration whose interface is gone).
sys_exec ip link add wg0 type veth peer name wg0-peer
sys_exec leakguardctl tunnel set wg0 --endpoint 192.0.2.1:51820/udp >/dev/null
[ "$(sys_exec leakguardctl status --json | jq -r .tunnel.declared)" = wg0 ] || sys_fail "tunnel declaration did not take before the upgrade"
pid=$(sys_main_pid)
cursor=$(sys_exec journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')

if [ "$mode" = --tunnel ]; then
  sys_install "$debs"/n1/leakguard_*.deb
  sys_active || sys_fail "not active after the upgrade"
  declared=$(sys_exec leakguardctl status --json | jq -r .tunnel.declared)
  [ "$declared" = wg0 ] || sys_fail "the tunnel declaration did not survive the upgrade (declared: $declared): the VPN's endpoint is no longer allowed until its client declares it again"
  [ "$(sys_exec leakguardctl status --json | jq -r '.endpoints | join(",")')" = 192.0.2.1:51820/udp ] ||
    sys_fail "the declared endpoint did not survive the upgrade"
  sys_exec journalctl -u leakguard --no-pager | grep -q "tunnel wg0 as declared before the restart (/run/leakguard/tunnel.json)" ||
    sys_fail "the new daemon did not say it took the declaration back"
  echo "ok: the tunnel declaration survived the upgrade (wg0, 192.0.2.1:51820/udp, read back from /run/leakguard)"
  echo "PASS"
  exit 0
fi

sys_poll_start
sys_install "$debs"/n1/leakguard_*.deb
sys_poll_stop; r=$sys_poll
n1=$(sys_exec dpkg-query -W -f='${Version}' leakguard)
dpkg --compare-versions "$n1" gt "$n" || sys_fail "installed version is $n1 after the upgrade from $n"
[ "${r##* }" = 0 ] || sys_fail "the table was missing in ${r##* } of $((${r% *} + ${r##* })) looks during the upgrade"
echo "ok: upgrade $n -> $n1: the table never missing ($r: looks found/missing)"

sys_active || sys_fail "not active after the upgrade"
[ "$(sys_main_pid)" != "$pid" ] || sys_fail "the daemon was not restarted by the upgrade (MainPID $pid)"
# systemd's finished jobs since the upgrade began: a restart (its stop half is logged as
# JOB_TYPE=restart, its start half as start), and no stop job: a prerm that stopped the service
# would show "Stopped" with JOB_TYPE=stop.
jobs=$(sys_exec journalctl --after-cursor "$cursor" -o json --no-pager -u leakguard.service |
       jq -r 'select(.JOB_TYPE != null and .JOB_RESULT != null) | .JOB_TYPE + "/" + .JOB_RESULT' | sort | uniq -c | xargs)
grep -q 'restart/done' <<<"$jobs" || sys_fail "no restart job during the upgrade (jobs: $jobs)"
grep -q 'stop/' <<<"$jobs" && sys_fail "the service was stopped during the upgrade (jobs: $jobs)"
echo "ok: the postinst restarted the service (systemd jobs: $jobs), MainPID $pid -> $(sys_main_pid)"

echo "PASS"
