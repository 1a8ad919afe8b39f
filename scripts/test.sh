#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test with ctest.
# It also checks that the whole run left the machine's own network namespace exactly as it was.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/deps.sh
scripts/build.sh
tests/lab/lab.sh gc  # labs left by an earlier run that was killed
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
tests/lab/rootns-snapshot.sh >"$before"
rc=0
ctest --test-dir build --output-on-failure -j2 --timeout 600 || rc=$?
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
