#!/usr/bin/env bash
# Installs what leakguard needs to build and test, from Debian 12 packages only.
# Quick when everything is present: apt is not touched at all then.
set -euo pipefail
packages=(
  # build
  build-essential cmake pkg-config
  libnftnl-dev libmnl-dev libboost-dev libyaml-cpp-dev libsdbus-c++-dev libsdbus-c++-bin
  libsystemd-dev libexpected-dev libcli11-dev nlohmann-json3-dev libfmt-dev doctest-dev
  # run and test: firewall, lab, VPN, STUN server, bus
  nftables iproute2 procps util-linux iputils-ping
  wireguard-go wireguard-tools coturn dbus-daemon
)
[ "$(id -u)" -eq 0 ] || { echo "deps.sh: run as root (it installs packages with apt-get)" >&2; exit 2; }
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps.sh: all ${#packages[@]} packages present"
  exit 0
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: wireguard-tools would otherwise pull in systemd and a kernel image.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done"
