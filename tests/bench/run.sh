#!/usr/bin/env bash
# Builds and runs a benchmark: our plugins against the reference ones from Debian's
# containernetworking-plugins (/usr/lib/cni), interleaved in one run.
#   tests/bench/run.sh ipam   [--reps N]   ipam vs host-local, and ADD at 0…20000 leases
#   tests/bench/run.sh bridge [--reps N]   bridge+ipam vs bridge+host-local, in a throwaway host netns
#   tests/bench/run.sh macvlan [--reps N]  macvlan+ipam vs macvlan+host-local, likewise
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh
scripts/build.sh >/dev/null
what=${1:-ipam}
shift || true
if [ "$what" == bridge ] || [ "$what" == macvlan ]; then
    host="cnm-bench-host-$$"
    ip netns add "$host"
    trap 'ip netns del "$host"' EXIT
    ip netns exec "$host" build/tests/bench/cni-bench "$what" --ours build/plugins "$@"
else
    build/tests/bench/cni-bench "$what" --ours build/plugins "$@"
fi
