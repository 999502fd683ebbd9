#!/usr/bin/env bash
# `ipvlan` on this kernel, which has no CONFIG_IPVLAN: every ADD gives the clear code-105 error
# naming the missing feature and leaves no state (not even the network record a first ADD makes)
# and no link; bad confs are refused before any kernel work; DEL, STATUS and GC still work. The
# plugin's data path (l2/l3, ping, CHECK) runs on a kernel that has ipvlan: tests/vm.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
ip -n "$HOST" link add cnmiv0 type veth peer name cnmiv0peer
ip -n "$HOST" link set cnmiv0 up
C=$(new_netns c)
IV="$PLUGINS/ipvlan"
hcni() { # <cmd> <id> <conf> [env…]: the plugin in the host netns (lib.sh's cni); sets OUT, RC
    local cmd=$1 id=$2 conf=$3
    shift 3
    cni "$IV" "$cmd" "$id" "/run/netns/$C" eth0 "$conf" "$@" ip netns exec "$HOST"
}
conf() { echo "{\"cniVersion\":\"1.1.0\",\"name\":\"iv\",\"type\":\"ipvlan\",\"master\":\"cnmiv0\"$1,\"ipam\":{\"type\":\"ipam\",\"subnet\":\"10.213.170.0/24\"}}"; }

mkdir -p "$CNM_STATE_DIR"
before=$(state_snapshot)
for mode in l2 l3 l3s; do
    hcni ADD c1 "$(conf ",\"mode\":\"$mode\"")"
    expect_eq "$mode ADD fails with code 105" "1 105" "$RC $(jq -r .code <<<"$OUT")"
    expect_eq "$mode …naming the missing feature" "ipvlan is not supported by this kernel (CONFIG_IPVLAN)" "$(jq -r .msg <<<"$OUT")"
    expect_eq "$mode …leaving no state" "$before" "$(state_snapshot)"
    expect_eq "$mode …and no link in the container" "lo" "$(ip -n "$C" -o link show | awk -F': ' '{print $2}' | xargs)"
done
expect_eq "no lease was left" "0" "$(lease_count)"
expect_eq "no network record was left" "no" "$([ -e "$CNM_STATE_DIR/networks/iv/network.json" ] && echo yes || echo no)"

hcni ADD c1 "$(conf ',"mode":"l4"')"
expect_eq "unknown mode: code 7 naming the modes" "7 1" "$(jq -r .code <<<"$OUT") $(jq -r .msg <<<"$OUT" | grep -c 'l2, l3, l3s')"
hcni ADD c1 "$(conf ',"mac":"02:00:00:00:00:01"')"
expect_eq "custom MAC in the conf refused (code 7)" "7" "$(jq -r .code <<<"$OUT")"
hcni ADD c1 "$(conf '')" CNI_ARGS="MAC=02:00:00:00:00:01"
expect_eq "custom MAC from CNI_ARGS refused" "1" "$(jq -r .msg <<<"$OUT" | grep -c "share their master's MAC")"
hcni ADD c1 '{"cniVersion":"1.0.0","name":"iv","type":"ipvlan","master":"cnmiv0"}'
expect_eq "no ipam and no prevResult: code 7" "7" "$(jq -r .code <<<"$OUT")"
hcni ADD c1 "$(conf ',"master":"nosuch0"')"
expect_eq "missing master: code 7" "7" "$(jq -r .code <<<"$OUT")"
expect_eq "refused confs left no state" "$before" "$(state_snapshot)"

hcni DEL c1 "$(conf '')"
expect_eq "DEL of an attachment that never was succeeds" "0" "$RC"

# Crash points before the kernel work (the rest need a kernel with ipvlan: tests/vm): a SIGKILL
# leaves an intent record (and a lease); DEL, or the next ADD, resolves it.
for point in ipvlan-after-intent ipvlan-after-ipam; do
    hcni ADD c2 "$(conf '')" CNM_FAULT="$point"
    expect_eq "$point: killed" "137" "$RC"
    CHECKS=$((CHECKS + 1))
    if [ -n "$(state_snapshot)" ]; then pass "$point: the intent is on disk"; else fail "$point: nothing recorded"; fi
    hcni DEL c2 "$(conf '')"
    expect_eq "$point: DEL after the crash" "0" "$RC"
    expect_eq "$point: …frees the lease" "0" "$(lease_count)"
    expect_eq "$point: …and the endpoint" "0" "$(ls "$CNM_STATE_DIR/networks/iv/endpoints" 2>/dev/null | wc -l)"
done
hcni STATUS c1 "$(conf '')"
expect_eq "STATUS (the pool has room)" "0" "$RC"
hcni GC c1 "$(jq -c '. + {"cni.dev/valid-attachments": []}' <<<"$(conf '')")"
expect_eq "GC" "0" "$RC"
finish
