#!/usr/bin/env bash
# Check 7: `apt remove` and `apt purge` (docs/packaging.md has the decision). Remove stops the
# service and lifts the block: the table goes with the package, whether the daemon ran (it is
# disarmed) or was stopped before with its table kept (nft deletes the orphan); the configuration
# file stays (a conffile). Purge leaves nothing of the package: no file, no enable link, no
# deb-systemd-helper state, no /etc/leakguard; the system user and group stay by design, owning
# no file. Usage: remove_purge_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init remove
sys_boot
# What the machine holds that names leakguard before the package: the baseline for purge.
leftovers() {
  sys_exec sh -c 'find / -xdev \( -path /proc -o -path /sys -o -path /root -o -path /var/log/journal -o -path /var/cache/apt -o -path /var/lib/apt/lists \) -prune -o -iname "*leakguard*" -print | sort'
}
baseline=$(leftovers)
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after install"
sys_table_present || sys_fail "no table after install"

remove() {
  local out
  out=$(sys_exec env DEBIAN_FRONTEND=noninteractive apt remove -y leakguard 2>&1) || sys_fail "apt remove failed: $out"
  [ "$(sys_exec dpkg-query -W -f='${db:Status-Abbrev}' leakguard)" = "rc " ] || sys_fail "after remove the package is not in state rc"
  sys_exec pgrep -x leakguardd >/dev/null && sys_fail "leakguardd still runs after remove"
  sys_table_present && sys_fail "the table is still there after remove (the decision: remove lifts the block)"
  sys_exec test -e /etc/leakguard/leakguard.yaml || sys_fail "remove deleted the configuration (a conffile stays until purge)"
  sys_exec test -e /usr/sbin/leakguardd && sys_fail "leakguardd still installed after remove"
  sys_exec test -e /run/leakguard && sys_fail "/run/leakguard (the kept tunnel declaration) is still there after remove"
  return 0
}

# 1. Remove while the daemon runs, with a tunnel declared (kept in /run/leakguard): it is
#    disarmed, then stopped, and the declaration goes too.
sys_exec leakguardctl tunnel set wg0 --endpoint 192.0.2.1:51820/udp >/dev/null
sys_exec test -s /run/leakguard/tunnel.json || sys_fail "the declaration was not kept in /run/leakguard/tunnel.json"
remove
echo "ok: apt remove with the service running: stopped, no leakguardd, table gone, configuration kept (state rc)"

# 2. Reinstall, stop (the table stays: on_stop keep), remove: the orphaned table goes too.
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after reinstall"
sys_exec systemctl stop leakguard.service
sys_table_present || sys_fail "control: no kept table after stop"
remove
echo "ok: apt remove with the service stopped and its table kept: table gone"

# 3. Purge: nothing left but the system user and group.
out=$(sys_exec env DEBIAN_FRONTEND=noninteractive apt purge -y leakguard 2>&1) || sys_fail "apt purge failed: $out"
sys_exec dpkg-query -W leakguard >/dev/null 2>&1 && sys_fail "dpkg still knows leakguard after purge"
after=$(leftovers)
extra=$(comm -13 <(echo "$baseline") <(echo "$after"))
[ -z "$extra" ] || sys_fail "purge left behind: $(echo $extra)"
sys_exec test -e /etc/leakguard && sys_fail "/etc/leakguard is left after purge"
sys_exec sh -c 'ls /etc/systemd/system/*/leakguard.service' >/dev/null 2>&1 && sys_fail "an enable link is left after purge"
owned=$(sys_exec sh -c 'find / -xdev \( -path /proc -o -path /sys \) -prune -o \( -user leakguard -o -group leakguard \) -print')
[ -z "$owned" ] || sys_fail "files owned by user/group leakguard after purge: $(echo $owned)"
sys_exec getent passwd leakguard >/dev/null || sys_fail "the system user was removed (the decision: it stays)"
[ "$(sys_exec systemctl is-active leakguard.service || true)" = inactive ] || sys_fail "systemd still has an active leakguard.service"
echo "ok: apt purge: no file, link or state of the package left (checked: every path naming leakguard, against the machine before install); user leakguard stays, owning nothing"
echo "PASS"
