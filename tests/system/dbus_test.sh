#!/usr/bin/env bash
# Check 2: the installed D-Bus policy on the machine's real system bus. An unprivileged user's
# `leakguardctl status` works and its `disarm` is refused (exit 4, the block stays); once the user
# is in group leakguard (a new login) `tunnel set` works; with the service stopped, a call
# activates it (the package ships org.leakguard.Daemon1.service: SystemdService=leakguard.service).
# Usage: dbus_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init dbus
sys_boot
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after install"
sys_exec useradd -M -s /bin/sh alice

rc=0; out=$(sys_user alice timeout 30 leakguardctl status 2>&1) || rc=$?
[ $rc -eq 0 ] || sys_fail "alice's leakguardctl status exited $rc: $out"
head -n 1 <<<"$out" | sys_has 'leakguard: blocking' || sys_fail "alice's status does not say blocking: $(head -n 1 <<<"$out")"
echo "ok: unprivileged status: $(head -n 1 <<<"$out")"

rc=0; out=$(sys_user alice timeout 30 leakguardctl disarm 2>&1) || rc=$?
[ $rc -eq 4 ] || sys_fail "alice's disarm exited $rc, not 4 (access denied): $out"
sys_table_present || sys_fail "the table is gone after a refused disarm"
[ "$(sys_state)" = blocking ] || sys_fail "state changed after a refused disarm"
rc=0; out=$(sys_user alice timeout 30 leakguardctl tunnel set wg0 --endpoint 192.0.2.1:51820/udp 2>&1) || rc=$?
[ $rc -eq 4 ] || sys_fail "alice's tunnel set (not yet in the group) exited $rc, not 4: $out"
echo "ok: unprivileged disarm and tunnel set refused with exit 4; the block stays"

sys_exec usermod -aG leakguard alice
# runuser starts a new login: its groups come from /etc/group, leakguard among them now.
sys_user alice id -nG | sys_has -w leakguard || sys_fail "alice's new login is not in group leakguard"
rc=0; out=$(sys_user alice timeout 30 leakguardctl tunnel set wg0 --endpoint 192.0.2.1:51820/udp 2>&1) || rc=$?
[ $rc -eq 0 ] || sys_fail "alice (group leakguard) tunnel set exited $rc: $out"
[ "$(sys_exec leakguardctl status --json | jq -r .tunnel.declared)" = wg0 ] || sys_fail "the tunnel declaration did not take"
sys_exec nft list table inet leakguard | sys_has '192.0.2.1' || sys_fail "the declared endpoint is not in the table"
echo "ok: after usermod -aG leakguard (new login) tunnel set works: wg0 declared, endpoint in the table"

# Root's private socket under the real unit's hardening: the daemon's user's alone, in its 0700
# runtime directory; root's leakguardctl reads and steers through it with no bus in reach.
perm=$(sys_exec stat -c '%a %U %F' /run/leakguard/private) || sys_fail "no /run/leakguard/private"
[ "$perm" = "600 leakguard socket" ] || sys_fail "/run/leakguard/private is '$perm', not '600 leakguard socket'"
[ "$(sys_exec stat -c '%a %U' /run/leakguard)" = "700 leakguard" ] || sys_fail "/run/leakguard is not 0700 leakguard"
rc=0; out=$(sys_exec env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent leakguardctl tunnel set wg1 --endpoint 192.0.2.2:51820/udp 2>&1) || rc=$?
[ $rc -eq 0 ] || sys_fail "root's tunnel set without the bus (the private socket) exited $rc: $out"
[ "$(sys_exec env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent leakguardctl status --json | jq -r .tunnel.declared)" = wg1 ] ||
  sys_fail "root's status without the bus does not show wg1 declared"
rc=0; out=$(sys_user alice env DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent timeout 30 leakguardctl status 2>&1) || rc=$?
[ $rc -eq 3 ] || sys_fail "alice reached the daemon without the bus (exit $rc): $out"
echo "ok: /run/leakguard/private is '$perm'; root steers through it without the bus, alice cannot reach it"

# Bus activation: stop the service; an unprivileged call starts it through the bus.
sys_exec systemctl stop leakguard.service
[ "$(sys_exec systemctl is-active leakguard.service || true)" = inactive ] || sys_fail "the service did not stop"
sys_table_present || sys_fail "the block went with systemctl stop (on_stop: keep)"
rc=0; out=$(sys_user alice timeout 60 leakguardctl status 2>&1) || rc=$?
[ $rc -eq 0 ] || sys_fail "status with the service stopped (bus activation) exited $rc: $out"
sys_active || sys_fail "the call did not activate leakguard.service"
sys_exec journalctl -b --no-pager -o cat -u dbus.service | sys_has "Activating via systemd: service name='org.leakguard.Daemon1'" ||
  sys_fail "dbus-daemon did not log the activation of org.leakguard.Daemon1"
echo "ok: with the service stopped, alice's status activated it over the bus: $(head -n 1 <<<"$out")"

# A unit the administrator disabled is never started by the bus (the activation goes through
# dbus-org.leakguard.Daemon1.service, the alias that exists only while it is enabled).
sys_exec leakguardctl disarm >/dev/null
sys_exec systemctl disable --now leakguard.service 2>/dev/null
[ "$(sys_exec systemctl is-active leakguard.service || true)" = inactive ] || sys_fail "the service did not stop"
rc=0; out=$(sys_user alice timeout 60 leakguardctl status 2>&1) || rc=$?
[ $rc -eq 3 ] || sys_fail "alice's status with the service disabled exited $rc (expected 3, not running): $out"
[ "$(sys_exec systemctl is-active leakguard.service || true)" = inactive ] || sys_fail "the bus started the disabled service"
sys_table_present && sys_fail "the disarmed, disabled kill switch has a table again"
sys_exec systemctl enable --now leakguard.service 2>/dev/null
sys_active || sys_fail "not active after systemctl enable --now"
echo "ok: disabled, alice's status did not start it (exit $rc: $(head -n 1 <<<"$out")); enabled again, it runs"
echo "PASS"
