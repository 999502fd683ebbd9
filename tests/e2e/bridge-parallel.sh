#!/usr/bin/env bash
# 32 parallel ADDs on one new bridge all succeed with distinct addresses (no EEXIST race on the
# bridge or its gateway address); 32 parallel DELs leave no link, lease or record. Then two
# containers ADD and DEL in turn, 150 times each, so that the network's last DEL removes its
# directory while the other's ADD waits for its lock: every call succeeds (an ADD that took the
# lock of the removed directory failed with "cannot write …/network.json": 3-7 of 600 here).
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
N=32
conf='{"cniVersion":"1.0.0","name":"par32","type":"bridge","bridge":"cnmpar0","isGateway":true,"ipam":{"type":"ipam","subnet":"10.213.130.0/24"}}'
for i in $(seq $N); do new_netns "c$i" >/dev/null; done
ns() { echo "cnm-${TEST_NAME:0:10}-$$-c$1"; }
for i in $(seq $N); do
    ( printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND=ADD CNI_CONTAINERID="p$i" CNI_NETNS="/run/netns/$(ns $i)" CNI_IFNAME=eth0 \
        CNM_STATE_DIR="$CNM_STATE_DIR" "$PLUGINS/bridge" >"$WORK/add-$i.json"; echo $? >"$WORK/add-$i.rc" ) &
done
wait
expect_eq "all $N ADDs succeeded" "$N" "$(cat "$WORK"/add-*.rc | grep -c '^0$')"
expect_eq "distinct addresses" "$N" "$(jq -r '.ips[0].address' "$WORK"/add-*.json | sort -u | wc -l)"
expect_eq "$N ports on the bridge" "$N" "$(ip -n "$HOST" -o link show master cnmpar0 | wc -l)"
expect_eq "one gateway address on the bridge" 1 "$(ip -n "$HOST" -j -4 addr show cnmpar0 | jq '.[0].addr_info | length')"
last=$(jq -r '.ips[0].address' "$WORK/add-$N.json" | cut -d/ -f1)
if ip netns exec "$(ns 1)" ping -c 1 -W 2 "$last" >/dev/null; then pass "ping across the crowd"; CHECKS=$((CHECKS+1)); else fail "ping c1 → c$N"; fi
for i in $(seq $N); do
    ( printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND=DEL CNI_CONTAINERID="p$i" CNI_NETNS="/run/netns/$(ns $i)" CNI_IFNAME=eth0 \
        CNM_STATE_DIR="$CNM_STATE_DIR" "$PLUGINS/bridge" >/dev/null; echo $? >"$WORK/del-$i.rc" ) &
done
wait
expect_eq "all $N DELs succeeded" "$N" "$(cat "$WORK"/del-*.rc | grep -c '^0$')"
expect_eq "no port left" 0 "$(ip -n "$HOST" -o link show master cnmpar0 | wc -l)"
expect_eq "no lease left" 0 "$(lease_count)"
expect_eq "no endpoint left" 0 "$(ls "$CNM_STATE_DIR/networks/par32/endpoints" 2>/dev/null | wc -l)"

churn() { # worker: ADD and DEL of its own container, 150 times; prints its failures
    local w=$1 i cmd
    for i in $(seq 150); do
        for cmd in ADD DEL; do
            printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND=$cmd CNI_CONTAINERID="churn$w-$i" CNI_NETNS="/run/netns/$(ns "$w")" \
                CNI_IFNAME=eth0 CNM_STATE_DIR="$CNM_STATE_DIR" "$PLUGINS/bridge" >"$WORK/churn-$w.out" 2>&1 \
                || { echo "$cmd churn$w-$i: $(jq -r .msg "$WORK/churn-$w.out" 2>/dev/null)"; }
        done
    done
}
# Two busy loops beside them, as on a loaded node: a call preempted between its steps is what
# lines an ADD's wait up with the last DEL (on an idle machine the window is rarely hit).
busy=()
for _ in 1 2; do
    bash -c 'while :; do :; done' &
    busy+=($!)
    PIDS+=($!)
done
churn 1 >"$WORK/churn-1.fails" &
c1=$!
churn 2 >"$WORK/churn-2.fails" &
c2=$!
wait "$c1" "$c2"
kill "${busy[@]}"
cat "$WORK"/churn-*.fails | head -3 >&2
expect_eq "600 ADDs and DELs on a network made and removed under them: none failed" 0 "$(cat "$WORK"/churn-*.fails | wc -l)"
expect_eq "the network went with its last DEL" 0 "$(ls "$CNM_STATE_DIR/networks" | grep -c par32)"
expect_eq "no lease left after the churn" 0 "$(lease_count)"
finish
