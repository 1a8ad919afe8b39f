#!/usr/bin/env bash
# `cpack -G DEB` builds a package with everything where Debian expects it, and lintian reports no
# errors on it (its warnings are printed). Usage: deb_test.sh BUILD_DIR
# Without lintian there is no verdict on the package: exit 77, which ctest shows as skipped
# (SKIP_RETURN_CODE in CMakeLists.txt), never a pass.
set -euo pipefail
build=$1
command -v lintian >/dev/null || { echo "deb_test: skipped: lintian is not installed (scripts/deps.sh installs it)"; exit 77; }
out=$(mktemp -d /tmp/lgt-deb.XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
(cd "$build" && cpack -G DEB -B "$out" >/dev/null) || fail "cpack failed"
deb=$(ls "$out"/*.deb)
contents=$(dpkg-deb -c "$deb")
for f in ./usr/sbin/leakguardd ./usr/bin/leakguardctl ./usr/lib/systemd/system/leakguard.service \
         ./usr/lib/sysusers.d/leakguard.conf ./usr/share/dbus-1/system.d/org.leakguard.Daemon1.conf \
         ./etc/leakguard/leakguard.yaml ./usr/share/doc/leakguard/copyright; do
  grep -q " $f\$" <<<"$contents" || fail "$f missing from the package"
done
for l in "./usr/lib/NetworkManager/dispatcher.d/90-leakguard -> ../../leakguard/hooks/networkmanager" \
         "./usr/lib/NetworkManager/dispatcher.d/pre-up.d/90-leakguard -> ../../../leakguard/hooks/networkmanager"; do
  grep -qF " $l" <<<"$contents" || fail "${l%% *} missing from the package (or not that link)"
done
dpkg-deb -e "$deb" "$out/control"
grep -qx /etc/leakguard/leakguard.yaml "$out/control/conffiles" || fail "the configuration is not a conffile"
# Desktop notifications start with each user's session (XDG autostart), a conffile like the rest of /etc.
grep -qF " ./etc/xdg/autostart/leakguard-notify.desktop" <<<"$contents" || fail "the XDG autostart file is missing from the package"
grep -qx /etc/xdg/autostart/leakguard-notify.desktop "$out/control/conffiles" || fail "the XDG autostart file is not a conffile"
# The maintainer scripts (packaging/; what they do is proven on a booted system: tests/system/).
for s in postinst prerm postrm; do
  [ -x "$out/control/$s" ] || fail "no executable $s in the package"
  sh -n "$out/control/$s" || fail "$s is not valid sh"
done
# lintian exits 1 when it finds errors and 2 when it could not check at all: both fail here.
rc=0
report=$(lintian --fail-on error "$deb" 2>&1) || rc=$?
report=$(grep -v 'running with root privileges' <<<"$report" || true)
[ -z "$report" ] || echo "$report"
[ "$rc" -eq 0 ] || fail "lintian exited with $rc"
! grep -q '^E: ' <<<"$report" || fail "lintian reports errors"
echo "ok: $(basename "$deb"), $(grep -c . <<<"$contents") entries, lintian: no errors"
