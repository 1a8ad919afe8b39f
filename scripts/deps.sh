#!/usr/bin/env bash
# Installs what leakguard needs to build and test, from Debian 12 packages only.
# Quick when everything is present: apt is not touched at all then.
set -euo pipefail
packages=(
  # build
  build-essential cmake pkg-config
  ccache  # the compiler cache of build.sh and test.sh (scripts/ccache.sh)
  libnftnl-dev libmnl-dev libboost-dev libyaml-cpp-dev libsdbus-c++-dev libsdbus-c++-bin
  libsystemd-dev libexpected-dev libcli11-dev nlohmann-json3-dev libfmt-dev doctest-dev
  libssl-dev  # HMAC-SHA1 for the RFC 5769 MESSAGE-INTEGRITY vectors (a test only)
  clang       # CI also builds everything with clang (scripts/test.sh), the fuzzers need it too
  # run and test: firewall, lab, VPN, STUN server, bus, browser
  nftables iproute2 procps util-linux iputils-ping jq iperf3
  wireguard-go wireguard-tools coturn dbus-daemon
  systemd lintian  # systemd-analyze checks the unit, lintian the .deb (no systemd runs)
  systemd-container debootstrap python3  # the system tier: Debian 12 booted in systemd-nspawn, the lab flood (tests/system/)
  chromium fonts-dejavu-core
  firefox-esr  # the second browser engine of the WebRTC proof (tests/e2e/browser), driven without a driver
  openvpn openssl  # the real OpenVPN client and server (tests/e2e/vpn), certificates made at test time
  prometheus  # promtool checks the metrics text and the example alert rules (docs/metrics.md)
  dunst xvfb  # a real notification server (under a virtual X display) for leakguardctl monitor --notify
  imagemagick  # the demo's screenshot of that display (import)
)
# Node.js drives Chromium in the browser tests. Any node >= 18 will do: take Debian's only if
# none is installed (a node from elsewhere may already bring its own npm).
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
[ "$(id -u)" -eq 0 ] || { echo "deps.sh: run as root (it installs packages with apt-get)" >&2; exit 2; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps.sh: all ${#packages[@]} packages present"
else
  echo "deps.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: wireguard-tools would otherwise pull in systemd and a kernel image.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The browser harness's one npm package (playwright-core, pinned in package-lock.json).
browser=$(dirname "$(readlink -f "$0")")/../tests/e2e/browser
if [ ! -d "$browser/node_modules/playwright-core" ]; then
  echo "deps.sh: npm ci in tests/e2e/browser"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "deps.sh: done"
