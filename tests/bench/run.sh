#!/usr/bin/env bash
# Builds and runs a benchmark: our plugins against the reference ones from Debian's
# containernetworking-plugins (/usr/lib/cni), interleaved in one run.
#   tests/bench/run.sh ipam     [--reps N] [--base DIR]  ipam vs host-local (and base), ADD at 0…20000 leases
#   tests/bench/run.sh bridge   [--reps N] [--base DIR]  bridge+ipam vs bridge+host-local (and base)
#   tests/bench/run.sh macvlan  [--reps N] [--base DIR]  macvlan+ipam vs macvlan+host-local, likewise
#   tests/bench/run.sh fill     [--reps N] [--kind macvlan] [--endpoints 1000] [--per-netns 10] [--container-ipv6 off]  ADD/DEL/CHECK/STATUS at N vs 1, GC
#   tests/bench/run.sh nets     [--reps N] [--networks 500] [--per-netns 10] [--container-ipv6 off]  bridge ADD with 500 networks on the host vs none
#   tests/bench/run.sh gc       [--reps N] [--attachments 10000]  ipam GC, µs per attachment
#   tests/bench/run.sh parallel [--reps N] [--width 64]  64 ADDs at once vs one after the other
#   tests/bench/run.sh shim-release [--reps N] [--endpoints 1000] [--base SHIM]  a Docker container's stop through cnm-shim at N endpoints vs 1
#   tests/bench/run.sh shim-pool [--reps N] [--networks 500] [--base SHIM]  RequestPool + ReleasePool through cnm-shim with N CNI networks vs none
# --base DIR: a second build of our plugins (e.g. the landed one's build/plugins), in the same rounds.
# CNM_BENCH_TRACE=DIR (fill, nets): one more ADD, CHECK and DEL at N and at the empty case under strace (fill: and one GC).
# tests/bench/syscalls.sh bridge|macvlan OURS BASE [--lone]: per-syscall counts of one ADD/DEL of two builds.
# Every netns is named cnmbn-<this script's pid>-…, made by the bench in its own host namespaces,
# and removed at exit (the bench's exit hook, and this script's trap after a crash).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/deps.sh
[ "${1:-}" != vxlan ] || { shift; exec tests/bench/vxlan.sh "$@"; } # vxlan ADD vs bridge ADD, first ADD, iperf3 (see vxlan.sh)
[ "${1:-}" != docker ] || { shift; exec tests/bench/docker.sh "$@"; } # docker run/network create/rm via cnm-shim vs the bridge driver (see docker.sh)
if [ ! -f build/build.ninja ]; then
    meson setup build >/dev/null
fi
what=${1:-ipam}
shift || true
tag=$$
cleanup() {
    local ns pid
    for ns in $(ip netns list | awk '{print $1}' | grep "^cnmbn-$tag-" || true); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done # shim-release's shims
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf /tmp/cnm-bench-rel-"$tag"-*
}
trap cleanup EXIT
if [ "$what" == shim-release ] || [ "$what" == shim-pool ]; then
    ninja -C build cnm-shim/cnm-shim >/dev/null
    pool=()
    if [ "$what" == shim-pool ]; then
        pool=(--networks 500)
    fi
    python3 tests/bench/shim_release.py --shim build/cnm-shim/cnm-shim --tag "$tag" "${pool[@]}" "$@"
    exit
fi
ninja -C build plugins/bridge plugins/ipam plugins/macvlan tests/bench/cni-bench tests/bench/exec-shim tests/bench/noop-mnl >/dev/null
build/tests/bench/cni-bench "$what" --ours build/plugins --tag "$tag" "$@"
