#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every test with ctest;
# then builds again with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/, configured as
# the README shows it) and runs the unit, integration and fuzz-replay tests there (not the
# systemd/packaging scripts); and compiles
# leakguard itself (every program and library, not the tests) with clang as well (build-clang/,
# -fsyntax-only: every warning clang's front end gives, and warnings are errors there too; no code
# made, nothing runs from it).
# It also checks that the whole run left the machine's own network namespace exactly as it was
# and no lab behind.
#   --asan     only the sanitized build, with every test (the e2e daemon sanitized too)
#   --no-asan  only the normal build (no sanitized build, no clang build)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
mode=${1:-both}
scripts/deps.sh
. scripts/ccache.sh  # the compiler cache (ccache_args)
# The system tier's machine (a Debian 12 root file system, cached) is downloaded while the code
# compiles: debootstrap waits on the network, not the CPU. Nothing happens when the cache is
# current; if this run is interrupted, it finishes on its own (rootfs.sh holds a lock).
rootfs_pid=""
if [ "$(id -u)" -eq 0 ] && [ "$mode" != --asan ]; then
  mkdir -p build
  tests/system/rootfs.sh --base >build/rootfs-base.log 2>&1 &
  rootfs_pid=$!
fi
asan_build() {
  # The README's command (a sanitized build defaults to Debug, see CMakeLists.txt); with both
  # builds, only what the sanitized run executes (target sanitized_tests: the unit, integration
  # and fuzz-replay programs and what they start), the rest is compiled by the other two builds.
  cmake -S . -B build-asan -DLEAKGUARD_SANITIZE=ON "${ccache_args[@]}" >/dev/null
  if [ "$mode" = both ]; then
    ccache_build build-asan -j"$(nproc)" --target sanitized_tests
  else
    ccache_build build-asan -j"$(nproc)"
  fi
}
# The clang build only has to compile: LEAKGUARD_COMPILE_ONLY runs every source through the front
# end alone (-fsyntax-only: every warning clang gives, no code generated, nothing linked), and
# LEAKGUARD_TESTS=OFF keeps it to the product, which users may build with clang (the tests are
# GCC's, warnings as errors too): with the tests it was the run's last step from scratch. It runs
# niced in the background while
# the tests run (they mostly wait on namespaces, processes and the browser), so it costs the run
# little wall time and the tests almost no CPU.
clang_log=build-clang/build.log
clang_pid=""
clang_build_start() {
  mkdir -p build-clang
  # A process group of its own (setsid), so that an interrupted run can end all of it.
  setsid bash -c 'cmake -S . -B build-clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
                    -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DLEAKGUARD_COMPILE_ONLY=ON -DLEAKGUARD_TESTS=OFF >/dev/null &&
                  nice -n 19 cmake --build build-clang -j"$(nproc)"' \
    >"$clang_log" 2>&1 &
  clang_pid=$!
  clang_t0=$SECONDS
}
clang_build_wait() {
  local status=0
  wait "$clang_pid" || status=$?
  clang_pid=""
  if [ "$status" -eq 0 ]; then
    echo "test.sh: clang build (build-clang/) done, $((SECONDS - clang_t0)) s in the background"
  else
    tail -n 40 "$clang_log" >&2
    echo "test.sh: FAIL: the clang build failed (all of it in $clang_log)" >&2
  fi
  return "$status"
}
case $mode in
  both|--no-asan) scripts/build.sh ;;
  --asan) asan_build ;;
  *) echo "usage: scripts/test.sh [--asan|--no-asan]" >&2; exit 2 ;;
esac
[[ $mode == both ]] && asan_build
tests/lab/lab.sh gc  # labs left by an earlier run that was killed
# The download started above is done by now (the builds take longer); a failure is the tier's
# setup's to report, in one line, when it tries again.
if [ -n "$rootfs_pid" ]; then
  wait "$rootfs_pid" || echo "test.sh: the system tier's root file system did not build early (build/rootfs-base.log); its setup tries again"
  rootfs_pid=""
fi
before=$(mktemp) after=$(mktemp)
trap 'rm -f "$before" "$after"; [ -z "$clang_pid" ] || kill -- "-$clang_pid" 2>/dev/null' EXIT
tests/lab/rootns-snapshot.sh >"$before"
rc=0
case $mode in
  both)
    clang_build_start
    ctest --test-dir build --output-on-failure -j2 --timeout 600 || rc=$?
    echo "test.sh: the same under ASan+UBSan (unit, integration, fuzz replays)"
    # Not the systemd/packaging scripts (unit/systemd/*): no compiled code of ours runs in them,
    # and building and linting a sanitized .deb again only costs time.
    ctest --test-dir build-asan --output-on-failure -j2 --timeout 600 -L 'unit|integration' -E '^unit/systemd/' || rc=$?
    clang_build_wait || rc=1
    ;;
  --no-asan) ctest --test-dir build --output-on-failure -j2 --timeout 600 || rc=$? ;;
  --asan) ctest --test-dir build-asan --output-on-failure -j2 --timeout 600 || rc=$? ;;
esac
tests/lab/rootns-snapshot.sh >"$after"
if ! diff -u "$before" "$after"; then
  echo "test.sh: FAIL: the tests changed the root network namespace (diff above)" >&2
  rc=1
fi
# Namespaces whose owner has exited (those of a benchmark or another run still going are theirs).
left=$(tests/lab/lab.sh orphans)
if [ -n "$left" ]; then
  echo "test.sh: FAIL: tests left namespaces behind: $(echo $left)" >&2
  rc=1
fi
exit $rc
