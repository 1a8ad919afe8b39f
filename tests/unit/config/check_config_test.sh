#!/bin/sh
# leakguardd --check-config as an operator runs it: what the daemon (and --print-ruleset) would
# refuse, the check refuses too, exit status 2 with the file's place; --check-config and
# --print-ruleset exclude each other. No root, no network: a check only reads the file.
# Usage: check_config_test.sh LEAKGUARDD
set -u
leakguardd=$1
if [ ! -x "$leakguardd" ]; then
  echo "$leakguardd is not built in this tree"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0

# expect STATUS WANTED ARGS...: leakguardd ARGS exits STATUS and says WANTED (a fixed string).
expect() {
  status=$1 wanted=$2
  shift 2
  out=$("$leakguardd" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$status" ] || ! printf '%s\n' "$out" | grep -qF -- "$wanted"; then
    echo "FAIL: leakguardd $*: exit $rc, said: $out"
    echo "      wanted exit $status and: $wanted"
    failures=$((failures + 1))
  fi
}

# refused NAME WANTED: the file $dir/NAME.yaml is refused with WANTED after its name.
refused() { expect 2 "$dir/$1.yaml:$2" --check-config "$dir/$1.yaml"; }

# Cut to the first document, this file was all defaults (policy udp).
printf -- '---\n---\npolicy: strict\n' >"$dir/two_documents.yaml"
refused two_documents "2:1: a second YAML document"
printf -- 'policy: strict\n...\npolicy: udp\n' >"$dir/after_end.yaml"
refused after_end "3:1: a second YAML document"

# Endpoints the firewall refuses: the check passed them, the daemon went to `error`.
for ep in 0.0.0.0:51820 '"[::]:51820"' 127.0.0.1:51820 224.0.0.251:5353; do
  printf 'tunnel:\n  endpoints: [%s]\n' "$ep" >"$dir/endpoint.yaml"
  refused endpoint "2:15: tunnel.endpoints[0]:"
done

# Past the firewall's limits: 68 tunnel interfaces (64), 1099 endpoints (1024), 300 LAN ranges (256).
{
  printf 'tunnel:\n  interfaces:\n'
  for i in $(seq 0 67); do printf '    - wg%s\n' "$i"; done
} >"$dir/interfaces.yaml"
refused interfaces "67:7: tunnel.interfaces[64]: more than 64 entries"
{
  printf 'tunnel:\n  endpoints:\n'
  for i in $(seq 0 1098); do printf '    - 198.18.%s.%s:51820\n' "$((i / 256))" "$((i % 256))"; done
} >"$dir/endpoints.yaml"
refused endpoints "1027:7: tunnel.endpoints[1024]: more than 1024 entries"
{
  printf 'allow_lan: true\nallow_lan_ranges:\n'
  for i in $(seq 0 299); do printf '  - 10.%s.%s.0/24\n' "$((i / 256))" "$((i % 256))"; done
} >"$dir/ranges.yaml"
refused ranges "259:5: allow_lan_ranges[256]: more than 256 entries"

# Not a file: a directory read as an empty one meant all defaults.
mkdir "$dir/directory"
expect 2 "$dir/directory: cannot read the file: Is a directory" --check-config "$dir/directory"
expect 2 "$dir/missing.yaml: cannot read the file: No such file or directory" --check-config "$dir/missing.yaml"

# Two files named: neither may be checked in place of the other.
printf 'policy: strict\n' >"$dir/good.yaml"
expect 2 "--check-config excludes --print-ruleset" --check-config "$dir/good.yaml" --print-ruleset "$dir/good.yaml"
# The control: a good file passes.
expect 0 "$dir/good.yaml: ok" --check-config "$dir/good.yaml"

[ "$failures" -eq 0 ] && echo "all checks passed"
exit "$failures"
