#!/usr/bin/env bash
# The README's main-job command: installs what is missing, builds, and runs the demo.
# Today the demo is the network lab's self-check: a real WireGuard tunnel, a real STUN server and
# an independent STUN client show what a web page would learn in each scenario.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
scripts/deps.sh
scripts/build.sh
exec tests/lab/selfcheck.sh
