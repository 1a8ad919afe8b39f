#!/usr/bin/env bash
# Bad input to lab.sh: each case must fail with exactly one line that says what to do, exit 2,
# and leave nothing behind (no namespace, no state). A namespace that was there before stays.
set -uo pipefail
# Exit 77 is the SKIP_RETURN_CODE in tests/lab/CMakeLists.txt: ctest shows a skip, not a failure.
[ "$(id -u)" -eq 0 ] || { echo "bad_input: skipped: needs root (the lab is made of network namespaces)"; exit 77; }
here=$(dirname "$(readlink -f "$0")")
LAB="$here/lab.sh"
tag="bi-$$"
passed=0 failed=0
tmp=$(mktemp -d)
cleanup() {
  ip netns del "lgt-$tag-c-host" 2>/dev/null || true
  local n; for n in $(ip netns list | awk '{print $1}' | grep "^lgt-$tag-" || true); do ip netns del "$n"; done
  rm -rf "$tmp" "/run/leakguard-lab/$tag"-*
}
trap cleanup EXIT

leftovers() { ip netns list | awk '{print $1}' | grep "^lgt-$tag-" | grep -v "^lgt-$tag-c-host$" || true; ls -d "/run/leakguard-lab/$tag"-* 2>/dev/null || true; }
case_() {  # NAME EXPECTED_SUBSTRING COMMAND...
  local name=$1 want=$2; shift 2
  local out rc; out=$("$@" 2>&1); rc=$?
  local lines; lines=$(printf '%s' "$out" | grep -c '')
  local left; left=$(leftovers)
  if [ $rc -eq 2 ] && [ "$lines" -eq 1 ] && [[ $out == *"$want"* ]] && [ -z "$left" ]; then
    printf '  ok   %-34s %s\n' "$name" "$out"; passed=$((passed + 1))
  else
    printf '  FAIL %-34s rc=%s lines=%s left=[%s] output:\n%s\n' "$name" "$rc" "$lines" "$left" "$out"; failed=$((failed + 1))
  fi
}

echo "lab.sh bad input"
case_ "unknown scenario value" "unknown value 'sideways' for --tunnel" "$LAB" up --id "$tag-a" --tunnel sideways
case_ "unknown option" "unknown option '--colour'" "$LAB" up --id "$tag-a" --colour red
case_ "unknown command" "unknown command 'upp'" "$LAB" upp
case_ "bad id" "bad --id '../etc'" "$LAB" up --id ../etc
case_ "split-stun wlan0 without wlan0" "needs --second-uplink on" "$LAB" up --id "$tag-a" --split-stun wlan0
case_ "set on a lab that does not exist" "no lab '$tag-none'" "$LAB" set --id "$tag-none" tunnel down
case_ "down without an id" "down needs --id" "$LAB" down

# A namespace with the lab's name already exists (not ours to delete).
ip netns add "lgt-$tag-c-host"
case_ "namespace name collision" "already exists" "$LAB" up --id "$tag-c"
if ip netns list | grep -q "^lgt-$tag-c-host"; then echo "  ok   the existing namespace was left alone"; passed=$((passed + 1))
else echo "  FAIL the existing namespace was deleted"; failed=$((failed + 1)); fi

# Not root.
case_ "run as non-root" "must run as root" setpriv --reuid=nobody --regid=nogroup --clear-groups "$LAB" up --id "$tag-d"

# A missing package: the same PATH, without coturn's turnserver.
mkdir -p "$tmp/bin"
ln -s /usr/local/sbin/* /usr/local/bin/* /usr/sbin/* /usr/bin/* "$tmp/bin/" 2>/dev/null  # first of each name wins
rm -f "$tmp/bin/turnserver"
case_ "missing package (coturn)" "install it: apt-get install --no-install-recommends coturn" env PATH="$tmp/bin" "$LAB" up --id "$tag-e"

# A failure half-way through the build (wireguard-go that exits at once) takes the partial lab down.
rm "$tmp/bin/wireguard-go"; ln -s "$(command -v turnserver)" "$tmp/bin/turnserver"
printf '#!/bin/sh\necho "fake wireguard-go: cannot create TUN" >&2\nexit 1\n' >"$tmp/bin/wireguard-go"; chmod +x "$tmp/bin/wireguard-go"
case_ "failure while building" "did not start" env PATH="$tmp/bin" "$LAB" up --id "$tag-f"

echo "bad_input: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
