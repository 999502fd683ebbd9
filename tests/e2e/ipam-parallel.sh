#!/usr/bin/env bash
# 16 parallel ADDs on one network get 16 distinct addresses; 16 parallel DELs leave no lease or
# endpoint behind (and no sandbox document is ever written: a sandbox is the endpoints that name it).
source "$(dirname "$0")/lib.sh"
N=16
conf='{"cniVersion":"1.0.0","name":"par","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.60.0/24"}],[{"subnet":"fd00:213:60::/64"}]]}}'
for round in 1 2 3; do
    for i in $(seq $N); do
        ( printf '%s' "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID="p$round-$i" CNI_NETNS=/run/netns/p CNI_IFNAME=eth0 "$PLUGINS/ipam" \
            >"$WORK/add-$i.json"; echo $? >"$WORK/add-$i.rc" ) &
    done
    wait
    expect_eq "round $round: all ADDs succeeded" "$N" "$(cat "$WORK"/add-*.rc | grep -c '^0$')"
    expect_eq "round $round: distinct IPv4 addresses" "$N" "$(jq -r '.ips[0].address' "$WORK"/add-*.json | sort -u | wc -l)"
    expect_eq "round $round: distinct IPv6 addresses" "$N" "$(jq -r '.ips[1].address' "$WORK"/add-*.json | sort -u | wc -l)"
    expect_eq "round $round: leases on disk" "$((2 * N))" "$(lease_count)"
    for i in $(seq $N); do
        ( printf '%s' "$conf" | CNI_COMMAND=DEL CNI_CONTAINERID="p$round-$i" CNI_NETNS=/run/netns/p CNI_IFNAME=eth0 "$PLUGINS/ipam" \
            >/dev/null; echo $? >"$WORK/del-$i.rc" ) &
    done
    wait
    expect_eq "round $round: all DELs succeeded" "$N" "$(cat "$WORK"/del-*.rc | grep -c '^0$')"
    expect_eq "round $round: no lease left" 0 "$(lease_count)"
    expect_eq "round $round: no endpoint left" 0 "$(ls "$CNM_STATE_DIR/networks/par/endpoints" | wc -l)"
    expect_eq "round $round: no sandbox document" no "$([ -e "$CNM_STATE_DIR/sandboxes" ] && echo yes || echo no)"
    rm -f "$WORK"/add-* "$WORK"/del-*
done
finish
