#!/usr/bin/env bash
# The system tier's machine: a Debian 12 root file system with systemd, dbus, nftables and what
# the leakguard package depends on, built once with debootstrap and cached under
# /var/cache/leakguard-test/ (LEAKGUARD_SYSTEM_CACHE overrides). Each test boots a throw-away
# overlay of it (lib.sh), so nothing a test does reaches the cache or another test.
#
# Usage: rootfs.sh DEB...   (prints the root's path on success)
#        rootfs.sh --base    (only the debootstrap part: scripts/test.sh starts it early, in the
#                             background, so the download overlaps the build)
#
# Rebuilt when missing or stale: the stamp holds this script's format version, the debootstrap
# include list and the packages' Depends. A Depends change only reinstalls the dependencies; any
# other change bootstraps anew. The network is needed only here (debootstrap, apt-get inside the
# root via systemd-nspawn WITHOUT booting it: the host's network, no firewall started); the tests
# themselves run offline. A failure says so in one line and exits 1: the tier fails, never skips.
set -euo pipefail
version=3   # bump when the recipe below changes: every cached root is rebuilt
mirror=${LEAKGUARD_SYSTEM_MIRROR:-http://deb.debian.org/debian}
cache=${LEAKGUARD_SYSTEM_CACHE:-/var/cache/leakguard-test}
root=$cache/bookworm
include=systemd,systemd-sysv,dbus,nftables,iproute2,util-linux,passwd,init-system-helpers,procps
# Installed with the package's Depends (no new debootstrap when this list changes): the VPN
# clients system/nm runs inside the machine. Their services are disabled and masked in the cached
# root, so every other test boots as it did without them; a test that wants them enables them in
# its own overlay.
extra="network-manager network-manager-openvpn openvpn iputils-ping"
extra_off="NetworkManager.service NetworkManager-wait-online.service NetworkManager-dispatcher.service openvpn.service"
extra_masked="NetworkManager.service openvpn.service"
fail() { echo "rootfs.sh: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: needs root" >&2; exit 77; }
[ $# -ge 1 ] || fail "usage: rootfs.sh DEB... | --base"
base_only=0
if [ "$1" = --base ]; then base_only=1; shift; fi
command -v debootstrap >/dev/null || fail "debootstrap is not installed (scripts/deps.sh installs it)"
command -v systemd-nspawn >/dev/null || fail "systemd-nspawn is not installed (package systemd-container; scripts/deps.sh installs it)"
depends=()
for deb in "$@"; do
  d=$(dpkg-deb -f "$deb" Depends) || fail "cannot read Depends of $deb"
  depends+=("$d")
done
# One apt-get satisfy string (versions and alternatives as the package states them).
satisfy=$(printf '%s\n' "${depends[@]}" | tr ',' '\n' | sed 's/^ *//; s/ *$//' | sort -u | paste -sd, | sed 's/,/, /g')
base_stamp="rootfs.sh v$version
mirror: $mirror
include: $include"
deps_stamp="depends: $satisfy; extra: $extra; off: $extra_off; masked: $extra_masked"
mkdir -p "$cache"
# One builder at a time (ctest runs tests in parallel; the setup fixture runs first, but a
# second run of the tier beside this one must wait rather than build into the same place).
exec 9>"$cache/.lock"
flock -w 1800 9 || fail "timed out waiting for another rootfs.sh (lock $cache/.lock)"

if [ "$(cat "$root.stamp" 2>/dev/null | sed -n '1,3p')" != "$base_stamp" ] || [ ! -x "$root/usr/lib/systemd/systemd" ]; then
  echo "rootfs.sh: building $root (debootstrap $include; a few minutes, needs $mirror)" >&2
  rm -rf "$root.new" "$root.stamp"
  log=$cache/debootstrap.log
  t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$include" bookworm "$root.new" "$mirror" >"$log" 2>&1; then
    fail "debootstrap of Debian 12 from $mirror failed (no network?): $(grep -E '^(E|W):' "$log" | tail -n 1)  (log: $log)"
  fi
  # The same suites the host uses, so that the libraries are as new as those the package was
  # built against.
  cat >"$root.new/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # A machine id is made at first boot of each overlay; a root password is never needed (the
  # tests drive it from outside with nsenter). No getty on the console: output only.
  rm -f "$root.new/etc/machine-id"
  : >"$root.new/etc/machine-id"
  ln -sf /dev/null "$root.new/etc/systemd/system/console-getty.service"
  rm -rf "$root"
  mv "$root.new" "$root"
  printf '%s\n' "$base_stamp" >"$root.stamp"
  echo "rootfs.sh: debootstrap took $((SECONDS - t0)) s" >&2
fi

if [ $base_only -eq 0 ] && [ "$(sed -n 4p "$root.stamp")" != "$deps_stamp" ]; then
  echo "rootfs.sh: installing the package's dependencies into $root: $satisfy" >&2
  log=$cache/apt.log
  # Not booted (no -b): apt-get runs as the container's only process, on the host's network.
  if ! systemd-nspawn -q -D "$root" --register=no --keep-unit --pipe \
         env DEBIAN_FRONTEND=noninteractive sh -c \
         'apt-get update -qq && apt-get -y -qq --no-install-recommends upgrade && apt-get -y -qq --no-install-recommends satisfy "$1" &&
          apt-get -y -qq --no-install-recommends install $2 && systemctl disable --quiet $3 && systemctl mask --quiet $4 &&
          apt-get clean' \
         sh "$satisfy" "$extra" "$extra_off" "$extra_masked" >"$log" 2>&1; then
    fail "installing the dependencies ($satisfy; $extra) into the cached root failed (no network?): $(grep -E '^(E|W):' "$log" | tail -n 1)  (log: $log)"
  fi
  printf '%s\n%s\n' "$base_stamp" "$deps_stamp" >"$root.stamp"
fi
echo "$root"
