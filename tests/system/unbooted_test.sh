#!/usr/bin/env bash
# The maintainer scripts without a running systemd (an image build, a chroot, debootstrap): the
# package installs into the root file system with nothing booted; the user and group are made and
# the unit is enabled, nothing is started. Booted afterwards, the machine comes up with leakguard
# active and its table in place. Usage: unbooted_test.sh DEB_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
debs=$1
sys_init unbooted
deb=$(ls "$debs"/n/leakguard_*.deb)
cp "$deb" "$sys_merged/root/"
# Not booted (no -b): apt is the container's only process; no systemd, no bus.
out=$(sys_nspawn -q -D "$sys_merged" --register=no --keep-unit --private-network --pipe \
        env DEBIAN_FRONTEND=noninteractive apt install -y --no-install-recommends "./root/$(basename "$deb")" 2>&1) ||
  sys_fail "apt install without a running systemd failed: $out"
sys_has '^leakguard:' <"$sys_merged/etc/passwd" || sys_fail "no user leakguard after an unbooted install"
sys_has '^leakguard:' <"$sys_merged/etc/group" || sys_fail "no group leakguard after an unbooted install"
[ -L "$sys_merged/etc/systemd/system/sysinit.target.wants/leakguard.service" ] || sys_fail "not enabled after an unbooted install"
! grep -qi 'failed\|error' <<<"$out" || sys_fail "apt reported a failure: $(grep -i 'failed\|error' <<<"$out" | head -n 3)"
echo "ok: installed without a running systemd: user and group made, enabled, nothing started"

sys_boot
sys_active || sys_fail "leakguard not active at the first boot after an unbooted install"
sys_table_present || sys_fail "no table at the first boot after an unbooted install"
[ "$(sys_state)" = blocking ] || sys_fail "state is $(sys_state), not blocking"
echo "ok: first boot: active, table in place, blocking"
echo "PASS"
