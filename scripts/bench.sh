#!/usr/bin/env bash
# Runs every benchmark in bench/ (as root: each builds its own namespaces) and writes the report,
# docs/benchmarks.md: one table of headline figures (ours, the alternative measured in the same
# run, the ratio) and each benchmark's full output. Usage: scripts/bench.sh [--no-build]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (benchmarks build network namespaces)" >&2; exit 2; }
if [[ ${1:-} != --no-build ]]; then
  scripts/deps.sh
  scripts/build.sh
  cmake --build build --target benchmarks -j"$(nproc)" >/dev/null
fi
report=docs/benchmarks.md
tmp=$(mktemp -d /tmp/lgt-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
status=0
for exe in $(find build/bench -mindepth 2 -maxdepth 2 -type f -executable | sort); do
  name=$(basename "$exe")
  echo "== $name"
  if ! "$exe" >"$tmp/$name.out" 2>&1; then
    echo "   FAILED (see the report)"
    status=1
  fi
  grep -v '^RESULT' "$tmp/$name.out" | sed 's/^/   /'
done
{
  echo "# Benchmark report"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) — $(nproc) cores, $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")."
  echo "Each figure comes from one run of the benchmark named; an alternative, where there is one, was"
  echo "measured in the same run. Goals are in the issues and the component docs."
  echo
  echo "| benchmark | figure | ours | alternative | ratio |"
  echo "|---|---|---|---|---|"
  for out in "$tmp"/*.out; do
    name=$(basename "$out" .out)
    awk -F'\t' -v b="$name" '$1 == "RESULT" { printf "| %s | %s | %s | %s | %s |\n", b, $2, $3, $4, $5 }' "$out"
  done
  for out in "$tmp"/*.out; do
    echo
    echo "## $(basename "$out" .out)"
    echo
    echo '```'
    grep -v '^RESULT' "$out"
    echo '```'
  done
} >"$report"
echo "report: $report"
exit $status
