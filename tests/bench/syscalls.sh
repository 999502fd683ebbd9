#!/usr/bin/env bash
# One ADD and one DEL of two builds of our plugins under strace, on a network with one resident
# endpoint (or, with --lone, the ADD that creates the network and the DEL of its last endpoint):
# per-syscall counts side by side, and the -T -tt traces kept for reading.
#   tests/bench/syscalls.sh bridge|macvlan OURS_DIR BASE_DIR [--lone] [OUT_DIR]
# Namespaces cnmbn-sc<pid>-…, addresses 10.213.220.0/24 (ours) and 10.213.221.0/24 (base).
set -euo pipefail
kind=$1 ours=$(realpath "$2") base=$(realpath "$3")
shift 3
lone=0
if [ "${1:-}" == --lone ]; then lone=1; shift; fi
suffix=""
[ $lone == 1 ] && suffix=" (lone network)"
out=${1:-/tmp/cnm-syscalls-$kind${suffix:+-lone}}
T=cnmbn-sc$$ H=cnmbn-sc$$-host
mkdir -p "$out"
state=$(mktemp -d /tmp/cnm-syscalls-state-XXXXXX)
cleanup() {
    local n
    for n in $(ip netns list | awk '{print $1}' | grep "^$T-" || true); do ip netns del "$n"; done
    rm -rf "$state"
}
trap cleanup EXIT
ip netns add "$H"
if [ "$kind" == macvlan ]; then
    ip -n "$H" link add cnmbnmv0 type veth peer name cnmbnmv1
    ip -n "$H" link set cnmbnmv0 up
fi
conf() { # letter third-octet
    local keys
    if [ "$kind" == bridge ]; then keys="\"bridge\":\"cnmbn$1\",\"isGateway\":true,"; else keys="\"master\":\"cnmbnmv0\",\"mode\":\"bridge\","; fi
    echo "{\"cniVersion\":\"1.0.0\",\"name\":\"sc-$1\",\"type\":\"$kind\",$keys\"ipam\":{\"type\":\"ipam\",\"dataDir\":\"$state/$1\",\"ranges\":[[{\"subnet\":\"10.213.$2.0/24\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}}"
}
run() { # dir verb id netns conf [prefix…]
    local dir=$1 verb=$2 id=$3 ns=$4 c=$5
    shift 5
    echo "$c" | CNI_COMMAND=$verb CNI_CONTAINERID=$id CNI_NETNS=/run/netns/$ns CNI_IFNAME=eth0 CNI_PATH=$dir \
        ip netns exec "$H" "$@" "$dir/$kind" >/dev/null
}
counts() { # strace -c file → "syscall calls" lines
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, ($5 ~ /^[0-9]+$/ ? $4 : $4) }' "$1" | sort
}
for b in "O:$ours:220" "B:$base:221"; do
    IFS=: read -r L D third <<<"$b"
    c=$(conf "$L" "$third")
    if [ $lone == 0 ]; then
        ip netns add "$T-r$L"
        run "$D" ADD resident "$T-r$L" "$c"
    fi
    for i in 1 2; do # warm: the bridge exists, the page cache holds the binary
        ip netns add "$T-w$L$i"
        run "$D" ADD "w$i" "$T-w$L$i" "$c"
        run "$D" DEL "w$i" "$T-w$L$i" "$c"
        ip netns del "$T-w$L$i"
    done
    ip netns add "$T-s$L"
    sync
    run "$D" ADD s1 "$T-s$L" "$c" strace -f -qq -c -o "$out/$L-add-c.txt"
    run "$D" DEL s1 "$T-s$L" "$c" strace -f -qq -c -o "$out/$L-del-c.txt"
    sync
    run "$D" ADD s2 "$T-s$L" "$c" strace -f -qq -T -tt -o "$out/$L-add-T.txt"
    run "$D" DEL s2 "$T-s$L" "$c" strace -f -qq -T -tt -o "$out/$L-del-T.txt"
done
for verb in add del; do
    echo "$kind ${verb^^}$suffix: syscalls that differ (ours base)"
    join -a1 -a2 -e0 -o 0,1.2,2.2 <(counts "$out/O-$verb-c.txt") <(counts "$out/B-$verb-c.txt") | awk '$2 != $3 { printf "  %-14s %4d %4d  %+d\n", $1, $2, $3, $2 - $3 }'
    printf "  %-14s %4d %4d\n" total "$(grep ' total$' "$out/O-$verb-c.txt" | awk '{print $(NF-2) ~ /^[0-9]+$/ && NF == 6 ? $(NF-2) : $(NF-1)}')" \
        "$(grep ' total$' "$out/B-$verb-c.txt" | awk '{print $(NF-2) ~ /^[0-9]+$/ && NF == 6 ? $(NF-2) : $(NF-1)}')"
done
echo "traces: $out/{O,B}-{add,del}-T.txt"
