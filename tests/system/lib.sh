# shellcheck shell=bash
# The system tier's helpers (sourced by every tests/system/*_test.sh): a throw-away machine booted
# from an overlay of the cached Debian 12 root (rootfs.sh), driven from outside with nsenter.
#
#   sys_init NAME      root or exit 77; the work directory; cleanup on any exit
#   sys_boot           boot (or boot again) the machine: systemd-nspawn -b --private-network
#   sys_exec CMD...    run CMD inside as root (nsenter into the container's init)
#   sys_user U CMD...  run CMD inside as user U, as a fresh login would (runuser: groups from /etc/group)
#   sys_install DEB    apt install ./DEB inside (offline: the cached root has the dependencies)
#   sys_wait DESC SECONDS CMD...   poll CMD (on the host) until it succeeds, or fail naming DESC
#   sys_reboot         systemctl reboot inside; nspawn must exit 133; boot again
#
# After the machine is gone the EXIT trap evaluates $sys_after_machine (e.g. a lab's teardown).
# Everything a test makes is named lgt-sys-NAME-PID: the work directory under /var/tmp (overlay
# upper and work directories, the merged root, logs) and the container's machine name. The EXIT
# trap ends the container (poweroff, then SIGKILL by PID), unmounts and removes it all; a test
# killed with SIGKILL skips its trap, so sys_init first removes what dead owners left (sys_gc).
set -euo pipefail
SYS_TIMEOUT_BOOT=${SYS_TIMEOUT_BOOT:-90}
sys_dir="" sys_merged="" sys_nspawn_pid="" sys_leader="" sys_name=""

sys_fail() { echo "FAIL: $*" >&2; exit 1; }
sys_log() { echo "[$(date -u +%T.%3N)] $*" >&2; }

# Removes the machines of tests whose process is gone (SIGKILL, a killed ctest).
sys_gc() {
  local d owner
  for d in /var/tmp/lgt-sys-*; do
    [ -d "$d" ] || continue
    owner=$(cat "$d/owner" 2>/dev/null || echo 0)
    [ "$owner" != 0 ] && kill -0 "$owner" 2>/dev/null && continue
    sys_kill_machine "$(cat "$d/leader.pid" 2>/dev/null || true)" "$(cat "$d/nspawn.pid" 2>/dev/null || true)"
    if mountpoint -q "$d/merged"; then umount -l "$d/merged" || true; fi
    rm -rf "$d"
    sys_remove_cgroups "$(basename "$d")"
    echo "sys_gc: removed $d (its test had died)" >&2
  done
}

# SIGKILL to the container's init ends its whole PID namespace (killing only systemd-nspawn
# would leave the container's processes running, reparented to the host's init); then nspawn.
# Each PID is checked to still be what was recorded.
sys_kill_machine() {  # LEADER_PID NSPAWN_PID
  local leader=$1 nspawn=$2
  if [ -n "$leader" ] && [ "$(cat /proc/"$leader"/comm 2>/dev/null)" = systemd ] &&
     [ "$(readlink /proc/"$leader"/ns/pid)" != "$(readlink /proc/self/ns/pid)" ]; then
    kill -KILL "$leader" 2>/dev/null || true
    sys_wait_gone "$leader" 10 || true
  fi
  if [ -n "$nspawn" ] && [ "$(cat /proc/"$nspawn"/comm 2>/dev/null)" = systemd-nspawn ]; then
    kill -KILL "$nspawn" 2>/dev/null || true
    sys_wait_gone "$nspawn" 10 || true
  fi
}

# Every machine runs in cgroups of its own, lgt-sys-NAME-PID under this shell's, in the cgroup2
# hierarchy and in the name=systemd one (a hybrid host). systemd-nspawn puts its container under
# <its own cgroup>/payload, so two machines started from one cgroup would share
# payload/system.slice/...: one machine's systemd removed the cgroup the other's was starting
# leakguard.service in (CI: "Failed to attach to cgroup /system.slice/leakguard.service: No such
# file or directory", status=219/CGROUP). Prints the directories, one per hierarchy.
sys_cgroup_dirs() {  # NAME
  local v2 v1
  v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
  v1=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
  # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
  awk -v v2="$v2" -v v1="$v1" -v name="$1" '{
      for (i = 7; $i != "-"; i++) {}
      if ($(i + 1) == "cgroup2") p = v2
      else if ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)name=systemd(,|$)/) p = v1
      else next
      if (p == "" || seen[$3]++) next
      if ($4 != "/") { if (index(p, $4) != 1) next; p = substr(p, length($4) + 1) }
      sub(/\/$/, "", p)
      print $5 p "/" name
    }' /proc/self/mountinfo
}

# systemd-nspawn ARGS... in the machine's cgroups. Run it in a subshell (`sys_nspawn ... &`,
# `$(sys_nspawn ...)`): it execs, so a background job's $! is nspawn's PID.
sys_nspawn() {
  local d
  [ "$BASHPID" != $$ ] || sys_fail "sys_nspawn: run it in a subshell (it execs systemd-nspawn)"
  while read -r d; do
    mkdir -p "$d" && echo "$BASHPID" >"$d/cgroup.procs" || sys_fail "sys_nspawn: cannot run in a cgroup of its own at $d"
  done < <(sys_cgroup_dirs "$sys_name")
  exec systemd-nspawn "$@"
}

# Removes a machine's cgroups once its processes are gone (they may take a moment to be reaped).
sys_remove_cgroups() {  # NAME
  local d deadline
  while read -r d; do
    [ -d "$d" ] || continue
    deadline=$((SECONDS + 10))
    until find "$d" -depth -type d -exec rmdir {} + 2>/dev/null && [ ! -d "$d" ]; do
      [ $SECONDS -lt $deadline ] || { echo "sys_remove_cgroups: $d still in use" >&2; break; }
      sleep 0.1
    done
  done < <(sys_cgroup_dirs "$1")
}

sys_wait_gone() {  # PID SECONDS
  local deadline=$((SECONDS + $2))
  while [ -e /proc/"$1" ]; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

sys_cleanup() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ] && [ -n "$sys_dir" ] && [ -n "$sys_leader" ] && [ -e /proc/"$sys_leader" ]; then
    echo "--- on failure: the machine's journal, last 60 lines ---" >&2
    sys_exec journalctl -b --no-pager -n 60 >&2 2>/dev/null
  fi
  sys_stop_machine
  [ -z "${sys_after_machine:-}" ] || eval "$sys_after_machine"
  [ -z "$sys_name" ] || sys_remove_cgroups "$sys_name"
  if [ -n "$sys_dir" ]; then
    mountpoint -q "$sys_merged" && umount "$sys_merged" 2>/dev/null || umount -l "$sys_merged" 2>/dev/null
    rm -rf "$sys_dir"
  fi
  exit $rc
}

# Powers the machine off (or kills it when it does not go within 20 s).
sys_stop_machine() {
  [ -n "$sys_nspawn_pid" ] && [ -e /proc/"$sys_nspawn_pid" ] || { sys_nspawn_pid=""; return 0; }
  # SIGTERM to nspawn asks a booted container's init to power off (SIGRTMIN+3).
  kill -TERM "$sys_nspawn_pid" 2>/dev/null
  sys_wait_gone "$sys_nspawn_pid" 20 || sys_kill_machine "$sys_leader" "$sys_nspawn_pid"
  wait "$sys_nspawn_pid" 2>/dev/null
  sys_nspawn_pid="" sys_leader=""
}

sys_init() {
  [ "$(id -u)" -eq 0 ] || { echo "skipped: the system tier needs root (systemd-nspawn, overlay mounts)"; exit 77; }
  sys_root=${LEAKGUARD_SYSTEM_ROOT:-${LEAKGUARD_SYSTEM_CACHE:-/var/cache/leakguard-test}/bookworm}
  [ -x "$sys_root/usr/lib/systemd/systemd" ] || sys_fail "no cached root at $sys_root (the system/setup test builds it: tests/system/rootfs.sh)"
  command -v systemd-nspawn >/dev/null || sys_fail "systemd-nspawn is missing (scripts/deps.sh installs systemd-container)"
  sys_gc
  sys_name=lgt-sys-$1-$$
  sys_dir=/var/tmp/$sys_name
  trap sys_cleanup EXIT
  trap 'exit 143' TERM
  trap 'exit 130' INT
  trap 'exit 129' HUP
  trap 'exit 141' PIPE
  mkdir -p "$sys_dir"/{upper,work,merged}
  echo $$ >"$sys_dir/owner"
  sys_merged=$sys_dir/merged
  mount -t overlay overlay -o "lowerdir=$sys_root,upperdir=$sys_dir/upper,workdir=$sys_dir/work" "$sys_merged"
}

sys_boot() {
  local deadline child state
  [ -z "$sys_nspawn_pid" ] || sys_fail "sys_boot: the machine is already running"
  SYS_BOOT_T0_US=$(date +%s%6N)
  # --private-network: the machine's own network namespace with lo only (never the host's).
  # --register=no --keep-unit: there is no host systemd (FACTS.md).
  # SYS_NETNS=/run/netns/lgt-...: a namespace the test made instead (the lab's host).
  # nspawn keeps CAP_NET_ADMIN in the container only with a private network; the lab's namespace
  # is as much the test's own, so it is given explicitly there.
  local net=(--private-network)
  [ -z "${SYS_NETNS:-}" ] || net=(--network-namespace-path="$SYS_NETNS" --capability=CAP_NET_ADMIN)
  sys_nspawn -q -D "$sys_merged" -b -M "$sys_name" --register=no --keep-unit \
    "${net[@]}" --console=read-only </dev/null >>"$sys_dir/console.log" 2>&1 &
  sys_nspawn_pid=$!
  echo "$sys_nspawn_pid" >"$sys_dir/nspawn.pid"
  deadline=$((SECONDS + SYS_TIMEOUT_BOOT))
  sys_leader=""
  while [ -z "$sys_leader" ]; do
    [ -e /proc/"$sys_nspawn_pid" ] || sys_fail "systemd-nspawn exited during boot: $(tail -n 5 "$sys_dir/console.log")"
    [ $SECONDS -lt $deadline ] || sys_fail "no init in the container after ${SYS_TIMEOUT_BOOT}s"
    for child in $(cat /proc/"$sys_nspawn_pid"/task/*/children 2>/dev/null); do
      [ "$(cat /proc/"$child"/comm 2>/dev/null)" = systemd ] && sys_leader=$child
    done
    [ -n "$sys_leader" ] || sleep 0.05
  done
  echo "$sys_leader" >"$sys_dir/leader.pid"
  # Booted: the system manager says running (or degraded: a unit of the minimal Debian failed,
  # which the tests look at themselves). Waited for from outside: a unit inside that waited
  # would be part of the startup it waits for.
  while :; do
    state=$(sys_exec systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    [ -e /proc/"$sys_nspawn_pid" ] || sys_fail "systemd-nspawn exited during boot: $(tail -n 5 "$sys_dir/console.log")"
    [ $SECONDS -lt $deadline ] || sys_fail "the machine did not finish booting in ${SYS_TIMEOUT_BOOT}s (state: ${state:-none})"
    sleep 0.1
  done
  [ "$state" = running ] || sys_log "degraded: failed units: $(sys_exec systemctl --failed --plain --no-legend | xargs)"
  sys_log "booted $sys_name ($state) in $((($(date +%s%6N) - SYS_BOOT_T0_US) / 1000)) ms"
}

sys_exec() {
  nsenter -t "$sys_leader" -m -u -i -n -p -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb "$@"
}

sys_user() {
  local user=$1; shift
  sys_exec runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME=/ LANG=C.UTF-8 "$@"
}

sys_install() {
  local deb=$1 out
  cp "$deb" "$sys_merged/root/"
  out=$(sys_exec sh -c "cd /root && DEBIAN_FRONTEND=noninteractive apt install -y --no-install-recommends ./$(basename "$deb")" 2>&1) ||
    sys_fail "apt install ./$(basename "$deb") failed: $out"
  echo "$out" >>"$sys_dir/apt.log"
}

sys_wait() {  # DESC SECONDS CMD...
  local desc=$1 secs=$2 deadline; shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || sys_fail "timed out after ${secs}s waiting for: $desc"
    sleep 0.1
  done
}

sys_reboot() {
  local rc=0
  sys_exec systemctl reboot || true
  sys_wait_gone "$sys_nspawn_pid" 60 || sys_fail "the machine did not go down within 60 s of systemctl reboot"
  wait "$sys_nspawn_pid" || rc=$?
  [ $rc -eq 133 ] || sys_fail "systemd-nspawn exited $rc on reboot, not 133"
  sys_nspawn_pid="" sys_leader=""
  sys_boot
}

# grep -q for the end of a pipe: reads all its input first (grep -q stops at the first match, and
# under pipefail the writer's SIGPIPE would fail the pipe).
sys_has() { local all; all=$(cat); grep -q "$@" <<<"$all"; }

# Helpers about leakguard inside the machine.
sys_table_present() { sys_exec nft list table inet leakguard >/dev/null 2>&1; }
sys_table_absent() { ! sys_table_present; }
sys_main_pid() { sys_exec systemctl show -P MainPID leakguard.service; }
sys_active() { [ "$(sys_exec systemctl is-active leakguard.service 2>/dev/null)" = active ]; }
# Shortens the unit's WatchdogSec=30s to 3s (a drop-in) and restarts the service with it.
sys_short_watchdog() {
  sys_exec mkdir -p /etc/systemd/system/leakguard.service.d
  sys_exec sh -c 'printf "[Service]\nWatchdogSec=3s\n" >/etc/systemd/system/leakguard.service.d/lgt-watchdog.conf'
  sys_exec systemctl daemon-reload
  sys_exec systemctl restart leakguard.service
  [ "$(sys_exec systemctl show -P WatchdogUSec leakguard.service)" = 3s ] || sys_fail "the drop-in's WatchdogSec=3s did not apply"
}
sys_state() { sys_exec leakguardctl status --json | jq -r .state; }

# A watcher inside the machine that looks at the table as fast as nft can (each look is one
# netlink dump: a consistent snapshot) until sys_poll_stop; it counts looks that found the table
# and looks that did not. sys_poll_stop sets sys_poll to "FOUND MISSING" and fails when the
# watcher did not run (no look at all).
sys_poll_start() {
  sys_exec rm -f /run/lgt-poll.stop /run/lgt-poll.out /run/lgt-poll.started
  sys_exec sh -c 'found=0 missing=0
    while :; do
      if nft list table inet leakguard >/dev/null 2>&1; then found=$((found+1)); else missing=$((missing+1)); fi
      [ -e /run/lgt-poll.started ] || : >/run/lgt-poll.started
      [ ! -e /run/lgt-poll.stop ] || break
    done
    echo "$found $missing" >/run/lgt-poll.out' &
  sys_poll_pid=$!
  sys_wait "the table watcher's first look" 10 sys_exec test -e /run/lgt-poll.started
}
sys_poll_stop() {  # sets sys_poll ("FOUND MISSING"); not in $(...): it waits for its own child
  sys_exec touch /run/lgt-poll.stop
  wait "$sys_poll_pid" || sys_fail "the table watcher failed"
  sys_poll=$(sys_exec cat /run/lgt-poll.out) || sys_fail "the table watcher left no result"
  [ "${sys_poll%% *}" -gt 0 ] || [ "${sys_poll##* }" -gt 0 ] || sys_fail "the table watcher made no look"
}
