#!/usr/bin/env bash
# `cpack -G DEB` builds a package with everything where Debian expects it, and lintian reports no
# errors on it (warnings are printed: no man pages yet). Usage: deb_test.sh BUILD_DIR
set -euo pipefail
build=$1
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
dpkg-deb -e "$deb" "$out/control"
grep -qx /etc/leakguard/leakguard.yaml "$out/control/conffiles" || fail "the configuration is not a conffile"
report=$(lintian "$deb" 2>&1 | grep -v 'running with root privileges' || true)
echo "$report"
! grep -q '^E: ' <<<"$report" || fail "lintian reports errors"
echo "ok: $(basename "$deb"), $(grep -c . <<<"$contents") entries, lintian: no errors"
