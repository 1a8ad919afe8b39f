#!/usr/bin/env bash
# `cmake --install` puts every piece where Debian expects it (relative to the build's prefix; a
# package builds with --prefix /usr), and the installed unit starts the installed daemon.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
dest=$(mktemp -d /tmp/lgt-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
sysconf=$([ "$prefix" = /usr ] && echo /etc || echo "$prefix/etc")
DESTDIR=$dest cmake --install "$build" >/dev/null
for f in "$prefix/sbin/leakguardd" "$prefix/bin/leakguardctl" "$prefix/lib/systemd/system/leakguard.service" \
         "$prefix/lib/sysusers.d/leakguard.conf" "$prefix/share/dbus-1/system.d/org.leakguard.Daemon1.conf" \
         "$prefix/share/dbus-1/system-services/org.leakguard.Daemon1.service" "$sysconf/leakguard/leakguard.yaml" \
         "$prefix/lib/leakguard/hooks/wg-quick" "$prefix/lib/leakguard/hooks/networkmanager" \
         "$prefix/lib/leakguard/hooks/openvpn"; do
  [ -e "$dest$f" ] || fail "$f not installed"
done
[ -x "$dest$prefix/lib/leakguard/hooks/wg-quick" ] || fail "hooks are not executable"
# NetworkManager finds the hook without a step by the user: links (relative, resolving inside the
# installed tree) in its dispatcher directory and in pre-up.d.
for l in "$prefix/lib/NetworkManager/dispatcher.d/90-leakguard" "$prefix/lib/NetworkManager/dispatcher.d/pre-up.d/90-leakguard"; do
  [ -L "$dest$l" ] || fail "$l is not installed as a link"
  [ "$(readlink -f "$dest$l")" = "$(readlink -f "$dest$prefix/lib/leakguard/hooks/networkmanager")" ] ||
    fail "$l points to $(readlink "$dest$l"), not the networkmanager hook"
done
exec_start=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$dest$prefix/lib/systemd/system/leakguard.service")
[ "$exec_start" = "$prefix/sbin/leakguardd" ] || fail "ExecStart is $exec_start, not $prefix/sbin/leakguardd"
"$dest$prefix/sbin/leakguardd" --check-config "$dest$sysconf/leakguard/leakguard.yaml" >/dev/null || fail "installed config invalid"
echo "ok: $(find "$dest" -type f | wc -l) files installed under $prefix (config in $sysconf); the unit starts the installed daemon"
