#!/usr/bin/env bash
# Builds and runs the benchmark: our plugins against the reference ones from Debian's
# containernetworking-plugins (/usr/lib/cni), interleaved in one run.
#   tests/bench/run.sh [ipam] [--reps N]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
what=${1:-ipam}
shift || true
build/tests/bench/cni-bench "$what" --ours build/plugins "$@"
