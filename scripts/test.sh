#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test with ctest.
# It also checks that the whole run left the machine's own network namespace exactly as it was.
# --asan: build in build-asan/ with AddressSanitizer + UBSan and run the suite there instead
# (about 10 more minutes of build on 2 cores; the daemon the e2e tests start is sanitized too).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
dir=build
scripts/deps.sh
if [[ ${1:-} == --asan ]]; then
  dir=build-asan
  cmake -S . -B "$dir" -DLEAKGUARD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$dir" -j"$(nproc)"
else
  scripts/build.sh
fi
tests/lab/lab.sh gc  # labs left by an earlier run that was killed
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
tests/lab/rootns-snapshot.sh >"$before"
rc=0
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 600 || rc=$?
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
