#!/usr/bin/env bash
# Runs the benchmarks in bench/ (as root: each builds its own namespaces), keeps each one's output
# in docs/benchmarks/NAME.out (with when, where and how it ran), and writes the report,
# docs/benchmarks.md, from all kept outputs: one table of headline figures (ours, the alternative
# measured in the same run, the ratio) and each benchmark's full output.
#   scripts/bench.sh [--no-build] [NAME...]   run all benchmarks, or only those named
# A benchmark's arguments come from ARGS_<NAME>, e.g.
#   ARGS_bench_zerowindow="--changes 1000000 --kinds same,mode" scripts/bench.sh bench_zerowindow
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench.sh: run as root (benchmarks build network namespaces)" >&2; exit 2; }
build=1
only=()
for a in "$@"; do
  case $a in
    --no-build) build=0 ;;
    -*) echo "usage: scripts/bench.sh [--no-build] [NAME...]" >&2; exit 2 ;;
    *) only+=("$a") ;;
  esac
done
if [ $build -eq 1 ]; then
  scripts/deps.sh
  # Only the benchmarks use perf (bench_pathcost samples the packet path with it).
  if ! command -v perf >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf >/dev/null; } ||
      echo "bench.sh: linux-perf could not be installed; bench_pathcost will not sample" >&2
  fi
  scripts/build.sh
  cmake --build build --target benchmarks -j"$(nproc)" >/dev/null
fi
outputs=docs/benchmarks
mkdir -p "$outputs"
status=0
for exe in $(find build/bench -mindepth 2 -maxdepth 2 -type f -executable | sort); do
  name=$(basename "$exe")
  if [ ${#only[@]} -gt 0 ] && ! printf '%s\n' "${only[@]}" | grep -qx "$name"; then continue; fi
  var="ARGS_$name"
  read -r -a args <<<"${!var:-}"
  echo "== $name ${args[*]}"
  tmp=$(mktemp)
  if ! "$exe" "${args[@]}" >"$tmp" 2>&1; then
    echo "   FAILED (see $outputs/$name.out)"
    status=1
  fi
  {
    echo "# $name ${args[*]}"
    echo "# run on $(date -u +%Y-%m-%d) - $(nproc) cores, $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    cat "$tmp"
  } >"$outputs/$name.out"
  rm -f "$tmp"
  grep -v '^RESULT' "$outputs/$name.out" | sed 's/^/   /'
done

report=docs/benchmarks.md
{
  echo "# Benchmark report"
  echo
  echo "Written by \`scripts/bench.sh\` from the outputs kept in \`docs/benchmarks/\`; each section says"
  echo "when and how its benchmark ran. Each figure comes from one run of the benchmark named; an"
  echo "alternative, where there is one, was measured in the same run. Goals are in the issues and the"
  echo "component docs."
  echo
  echo "| benchmark | figure | ours | alternative | ratio |"
  echo "|---|---|---|---|---|"
  for out in "$outputs"/*.out; do
    name=$(basename "$out" .out)
    awk -F'\t' -v b="$name" '$1 == "RESULT" { printf "| %s | %s | %s | %s | %s |\n", b, $2, $3, $4, $5 }' "$out"
  done
  for out in "$outputs"/*.out; do
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
