#!/usr/bin/env bash
# Configures and builds leakguard in build/ (extra arguments go to cmake's configure step).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
. scripts/ccache.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${ccache_args[@]}" "$@" >/dev/null
ccache_build build -j"$(nproc)"
