#!/usr/bin/env bash
# The system tier's fixture (ctest FIXTURES_SETUP system_machine): the two packages every test
# installs, and the cached Debian 12 root they boot.
#   DEB_DIR/n/   leakguard_VERSION_ARCH.deb      cpack of this tree, as a user gets it
#   DEB_DIR/n1/  leakguard_VERSION+1_ARCH.deb    the same tree with a higher version (upgrade N -> N+1)
# Usage: setup.sh BUILD_DIR DEB_DIR
set -euo pipefail
build=$(readlink -f "$1") debs=$(readlink -m "$2")
here=$(dirname "$(readlink -f "$0")")
[ "$(id -u)" -eq 0 ] || { echo "skipped: the system tier needs root"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
t0=$SECONDS
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
[ -n "$version" ] || fail "no project version in $build/CMakeCache.txt"
rm -rf "$debs"
mkdir -p "$debs/n" "$debs/n1"
(cd "$build" && cpack -G DEB -B "$debs/n" >"$debs/n.log" 2>&1) || fail "cpack (N) failed: $(tail -n 3 "$debs/n.log")"
# N+1: a Debian revision above N ("0.1.0" < "0.1.0+systest1").
(cd "$build" && cpack -G DEB -B "$debs/n1" -D CPACK_PACKAGE_VERSION="$version+systest1" >"$debs/n1.log" 2>&1) ||
  fail "cpack (N+1) failed: $(tail -n 3 "$debs/n1.log")"
n=$(ls "$debs"/n/leakguard_*.deb) n1=$(ls "$debs"/n1/leakguard_*.deb)
dpkg --compare-versions "$(dpkg-deb -f "$n1" Version)" gt "$(dpkg-deb -f "$n" Version)" ||
  fail "N+1 ($(dpkg-deb -f "$n1" Version)) is not above N ($(dpkg-deb -f "$n" Version))"
echo "ok: $(basename "$n") and $(basename "$n1") ($((SECONDS - t0)) s)"
"$here/rootfs.sh" "$n" "$n1" >/dev/null
echo "ok: cached root $(cat "${LEAKGUARD_SYSTEM_CACHE:-/var/cache/leakguard-test}/bookworm.stamp" | head -n 1) ready ($((SECONDS - t0)) s in all)"
