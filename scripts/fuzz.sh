#!/usr/bin/env bash
# Runs every libFuzzer target for a fixed time (default 60 s each) from a clang build with
# -DLEAKGUARD_FUZZ=ON in build-fuzz/, starting from the committed corpora; prints executions and
# findings per target. A crash leaves its input in build-fuzz/findings/: add it to the target's
# corpus, so the replay test in `ctest` keeps it fixed. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
seconds=${1:-60}
command -v clang++ >/dev/null || apt-get install -y -qq --no-install-recommends clang >/dev/null
CXX=clang++ cmake -S . -B build-fuzz -DLEAKGUARD_FUZZ=ON -DLEAKGUARD_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(probes_stun_fuzzer:probes/fuzz/corpus rtnl_fuzz:tests/fuzz/netwatch/corpus config_fuzz:tests/fuzz/config/corpus
         nftdump_fuzz:tests/fuzz/firewall/corpus nflog_fuzz:tests/fuzz/attribution/corpus
         report_fuzz:tests/fuzz/probes/report-corpus)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]%%:*}" >/dev/null
mkdir -p build-fuzz/findings
status=0
for t in "${targets[@]}"; do
  name=${t%%:*} corpus=${t#*:}
  exe=$(find build-fuzz -name "$name" -type f -executable | head -n1)
  work=$(mktemp -d /tmp/lgt-fuzz.XXXXXX)
  cp "$corpus"/* "$work"/
  log=build-fuzz/findings/$name.log
  if "$exe" "$work" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix=build-fuzz/findings/"$name"- >"$log" 2>&1; then
    result="no finding"
  else
    result="FINDING (see $log and build-fuzz/findings/$name-*)"
    status=1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '#[0-9]+' "$log" | tail -n1 | tr -d '#')
  printf '%-22s %6ss  %12s executions  %s\n' "$name" "$seconds" "${execs:-?}" "$result"
  rm -rf "$work"
done
exit $status
