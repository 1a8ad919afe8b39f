#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test with ctest;
# then builds again with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/) and runs the
# unit, integration and fuzz-replay tests there. It also checks that the whole run left the
# machine's own network namespace exactly as it was and no lab behind.
#   --asan     only the sanitized build, with every test (the e2e daemon sanitized too)
#   --no-asan  only the normal build
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
mode=${1:-both}
scripts/deps.sh
asan_build() {
  cmake -S . -B build-asan -DLEAKGUARD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-asan -j"$(nproc)"
}
case $mode in
  both|--no-asan) scripts/build.sh ;;
  --asan) asan_build ;;
  *) echo "usage: scripts/test.sh [--asan|--no-asan]" >&2; exit 2 ;;
esac
[[ $mode == both ]] && asan_build
tests/lab/lab.sh gc  # labs left by an earlier run that was killed
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
tests/lab/rootns-snapshot.sh >"$before"
rc=0
case $mode in
  both)
    ctest --test-dir build --output-on-failure -j2 --timeout 600 || rc=$?
    echo "test.sh: the same under ASan+UBSan (unit, integration, fuzz replays)"
    ctest --test-dir build-asan --output-on-failure -j2 --timeout 600 -L 'unit|integration' || rc=$?
    ;;
  --no-asan) ctest --test-dir build --output-on-failure -j2 --timeout 600 || rc=$? ;;
  --asan) ctest --test-dir build-asan --output-on-failure -j2 --timeout 600 || rc=$? ;;
esac
tests/lab/rootns-snapshot.sh >"$after"
if ! diff -u "$before" "$after"; then
  echo "test.sh: FAIL: the tests changed the root network namespace (diff above)" >&2
  rc=1
fi
left=$(ip netns list | awk '{print $1}' | grep '^lgt-' || true)
if [ -n "$left" ]; then
  echo "test.sh: FAIL: tests left namespaces behind: $(echo $left)" >&2
  rc=1
fi
exit $rc
