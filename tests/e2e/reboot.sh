#!/usr/bin/env bash
# A reboot leaks nothing (faked with CNM_BOOT_ID: kernel objects and netns are gone after a real
# one, the state dir is kept): a full pool of the old boot is fully allocatable in the new boot
# without any DEL; `cnm-shim list` shows the old records as stale until a sweep (GC) removes
# them; the durable definitions (the network, its pool) stay.
source "$(dirname "$0")/lib.sh"
SHIM=$BUILD/cnm-shim/cnm-shim
I='{"cniVersion":"1.1.0","name":"rb","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.169.0/29"}]]}}'
export CNM_BOOT_ID=boot-a-0000
for k in 1 2 3 4 5; do
    cni "$PLUGINS/ipam" ADD "old$k" /run/netns/none eth0 "$I"
    expect_eq "boot A: ADD $k" 0 "$RC"
done
cni "$PLUGINS/ipam" ADD old6 /run/netns/none eth0 "$I"
expect_eq "boot A: the pool is full (102)" 102 "$(jq .code <<<"$OUT")"

export CNM_BOOT_ID=boot-b-1111
listing=$("$SHIM" list --json --state-dir "$CNM_STATE_DIR")
expect_eq "boot B: list shows the 5 old endpoints as stale" 5 "$(jq '[.networks[].endpoints[] | select(.stale == true)] | length' <<<"$listing")"
expect_eq "…and the table says so" 5 "$("$SHIM" list --state-dir "$CNM_STATE_DIR" | grep -c 'stale (earlier boot)')"
addrs=()
for k in 1 2 3 4 5; do
    cni "$PLUGINS/ipam" ADD "new$k" /run/netns/none eth0 "$I"
    expect_eq "boot B: ADD $k without any DEL" 0 "$RC"
    addrs+=("$(jq -r '.ips[0].address' <<<"$OUT")")
done
expect_eq "boot B: five distinct addresses" 5 "$(printf '%s\n' "${addrs[@]}" | sort -u | wc -l)"
cni "$PLUGINS/ipam" ADD old1 /run/netns/none eth0 "$I"
expect_eq "boot B: an old attachment id is not refused as attached (103), its record is void: the pool is just full (102)" "102" "$(jq .code <<<"$OUT")"
valid='[{"containerID":"new1","ifname":"eth0"},{"containerID":"new2","ifname":"eth0"},{"containerID":"new3","ifname":"eth0"},{"containerID":"new4","ifname":"eth0"},{"containerID":"new5","ifname":"eth0"},{"containerID":"old2","ifname":"eth0"}]'
cni "$PLUGINS/ipam" GC "" "" "" "$(jq -c --argjson v "$valid" '. + {"cni.dev/valid-attachments": $v}' <<<"$I")"
expect_eq "the sweep (GC) succeeds" 0 "$RC"
listing=$("$SHIM" list --json --state-dir "$CNM_STATE_DIR")
expect_eq "…and removes every stale record, listed or not" "0 5" \
    "$(jq '[.networks[].endpoints[] | select(.stale == true)] | length' <<<"$listing") $(jq '[.networks[].endpoints[]] | length' <<<"$listing")"
expect_eq "the network's durable record stayed" yes "$([ -e "$CNM_STATE_DIR/networks/rb/network.json" ] && echo yes || echo no)"
expect_eq "5 leases, all of this boot" "5 0" "$(lease_count) $(grep -rl boot-a "$CNM_STATE_DIR/ipam" 2>/dev/null | wc -l)"
for k in 1 2 3 4 5; do cni "$PLUGINS/ipam" DEL "new$k" /run/netns/none eth0 "$I"; done
expect_eq "DEL of the new ones leaves no lease" 0 "$(lease_count)"
finish
