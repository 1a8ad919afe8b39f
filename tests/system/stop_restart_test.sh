#!/usr/bin/env bash
# Check 4: `systemctl stop` keeps the block (on_stop: keep); `systemctl restart` takes the table
# over with no moment without it; a daemon that hangs (SIGSTOP) is killed and restarted by
# systemd's watchdog (a drop-in shortens WatchdogSec=30s to 3s), the block held throughout.
# "No moment without it": a watcher inside the machine lists the table in a tight loop the whole
# time; its control is the same watcher seeing the table go at `leakguardctl disarm`.
# Usage: stop_restart_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init stop
sys_boot
sys_install "$debs"/n/leakguard_*.deb
sys_active || sys_fail "not active after install"
sys_table_present || sys_fail "no table after install"

# stop: the block stays, the daemon is gone.
sys_poll_start
sys_exec systemctl stop leakguard.service
[ "$(sys_exec systemctl is-active leakguard.service || true)" = inactive ] || sys_fail "not inactive after stop"
sys_exec pgrep -x leakguardd >/dev/null && sys_fail "leakguardd still runs after stop"
sys_poll_stop; r=$sys_poll
[ "${r##* }" = 0 ] || sys_fail "the table was missing in ${r##* } of $((${r% *} + ${r##* })) looks around systemctl stop"
sys_table_present || sys_fail "systemctl stop removed the block (on_stop: keep)"
echo "ok: systemctl stop: daemon gone, table kept ($r: looks found/missing)"

# start again: the new daemon takes the kept table over (the kernel then refuses a foreign delete).
sys_exec systemctl start leakguard.service
sys_active || sys_fail "start failed"
rc=0; out=$(sys_exec nft delete table inet leakguard 2>&1) || rc=$?
[ $rc -ne 0 ] || sys_fail "a foreign nft delete of the table went through after start (not taken over)"
sys_table_present || sys_fail "table missing after start"
echo "ok: started again: the table is owned (foreign delete refused: $(grep -m1 -o 'Error: [^;]*' <<<"$out" || echo "exit $rc"))"

# restart under the watcher.
pid=$(sys_main_pid)
sys_poll_start
sys_exec systemctl restart leakguard.service
sys_active || sys_fail "restart failed"
sys_poll_stop; r=$sys_poll
[ "$(sys_main_pid)" != "$pid" ] || sys_fail "restart kept the same MainPID"
[ "${r##* }" = 0 ] || sys_fail "the table was missing in ${r##* } looks during systemctl restart ($r)"
echo "ok: systemctl restart: new MainPID, the table never missing ($r: looks found/missing)"

# watchdog: SIGSTOP the daemon; systemd must kill and restart it.
sys_short_watchdog
pid=$(sys_main_pid)
restarts=$(sys_exec systemctl show -P NRestarts leakguard.service)
sys_poll_start
t_stop=$(date +%s%3N)
sys_exec kill -STOP "$pid"
restarted() { local p; p=$(sys_main_pid); [ "$p" != 0 ] && [ "$p" != "$pid" ] && sys_active; }
sys_wait "systemd's watchdog to restart the stopped daemon (WatchdogSec=3s, TimeoutStopSec=10s)" 60 restarted
t_back=$(date +%s%3N)
sys_poll_stop; r=$sys_poll
[ "${r##* }" = 0 ] || sys_fail "the table was missing in ${r##* } looks while the watchdog restarted the daemon ($r)"
[ "$(sys_exec systemctl show -P NRestarts leakguard.service)" -gt "$restarts" ] || sys_fail "NRestarts did not grow"
sys_exec journalctl -u leakguard.service -b -o cat --no-pager | sys_has 'Watchdog timeout' ||
  sys_fail "no 'Watchdog timeout' from systemd in the journal"
echo "ok: SIGSTOP -> watchdog timeout -> restarted (MainPID $pid -> $(sys_main_pid)) $((t_back - t_stop)) ms after the SIGSTOP, the table never missing ($r)"

# Control: the watcher does see a table go (disarm deletes it).
sys_poll_start
sys_exec leakguardctl disarm >/dev/null
sys_wait "the table gone after disarm" 10 sys_table_absent
sys_poll_stop; r=$sys_poll
[ "${r##* }" -gt 0 ] || sys_fail "the watcher did not see the table go at disarm ($r): it could not have seen a gap either"
echo "ok: control: the same watcher saw the table go at disarm ($r: looks found/missing)"
echo "PASS"
