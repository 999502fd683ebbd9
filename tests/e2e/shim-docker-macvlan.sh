#!/usr/bin/env bash
# cnm-shim's macvlan and ipvlan networks with a real dockerd (in a netns of its own): a Docker
# container on `-d cnm -o cnm.driver=macvlan -o parent=…` reaches a CNI macvlan pod on the same
# parent and Network (the conf names no master: it inherits the network's), published ports are
# refused rather than ignored, and what this kernel lacks (802.1Q parents, ipvlan) is a clear error
# at `docker network create` that leaves nothing behind. Those paths run for real in tests/vm.
# Docker finds this shim through a .spec file (conf/docker/cnm.spec), not the default socket dir.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker-lib.sh"
SHIM_SPEC=1 # this test finds the shim through a .spec file; shim-docker.sh through /run/docker/plugins
source "$(dirname "$0")/shim-lib.sh"

docker_start
docker_image
shim_start
H=$DOCKER_NETNS
expect_eq "the socket is 0600" "600" "$(stat -c %a "$SOCK")"
# The parent: one end of a veth pair in dockerd's netns (this kernel has no dummy).
h ip link add cnmpar0 type veth peer name cnmpar0p
h ip link set cnmpar0 up
h ip link set cnmpar0p up

out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.72.0/24 \
    -o cnm.driver=macvlan -o parent=cnmpar0 -o macvlan_mode=bridge -o cnm.network=mvshared mvnet 2>&1) || fail "network create: $out"
expect_eq "the network is a macvlan network on cnmpar0" "macvlan cnmpar0 bridge" "$(listing | jq -r '.networks[] | select(.name=="mvshared") | "\(.driver) \(.options.master) \(.options.mode)"')"
dk run -d --name m1 --network mvnet cnm-bb:1 sleep 600 >/dev/null
M1=$(ip_of m1 mvnet)
expect_eq "m1's address" "10.213.72.2" "$M1"
expect_eq "m1's eth0 is a macvlan in bridge mode" "macvlan bridge" "$(nsenter --net="$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' m1)" ip -j -d link show eth0 | jq -r '.[0].linkinfo | "\(.info_kind) \(.info_data.mode)"')"
expect_eq "the default route is the subnet's gateway" "default via 10.213.72.1 dev eth0" "$(dk exec m1 ip route | grep '^default' | xargs)"

# A CNI pod on the same Network through the macvlan plugin: the conf names no master.
POD=$(new_netns pod)
CONF='{"cniVersion":"1.0.0","name":"mvshared","type":"macvlan","ipam":{"type":"ipam","subnet":"10.213.72.0/24"}}'
cni "$PLUGINS/macvlan" ADD pod1 "/run/netns/$POD" eth0 "$CONF" nsenter --net="/run/netns/$H"
expect_eq "CNI macvlan ADD on the Docker-made network" "0" "$RC"
PODIP=$(jq -r '.ips[0].address' <<<"$OUT")
expect_eq "…got the next address of the shared pool" "10.213.72.3/24" "$PODIP"
expect_eq "…on the network's parent (inherited)" "cnmpar0" "$(jq -r '.networks[] | select(.name=="mvshared") | .endpoints[] | select(.frontend=="cni") | .driver.master' <<<"$(listing)")"
dk exec m1 ping -c1 -W2 10.213.72.3 >/dev/null && pass "Docker's m1 pings the CNI pod" || fail "m1 cannot ping the pod"
ip netns exec "$POD" ping -c1 -W2 "$M1" >/dev/null && pass "the pod pings m1" || fail "the pod cannot ping m1"
CHECKS=$((CHECKS + 2))
CONFX='{"cniVersion":"1.0.0","name":"mvshared","type":"macvlan","master":"cnmpar0p","ipam":{"type":"ipam","subnet":"10.213.72.0/24"}}'
cni "$PLUGINS/macvlan" ADD pod2 "/run/netns/$POD" eth1 "$CONFX" nsenter --net="/run/netns/$H"
expect_eq "a conf naming another master is refused, naming both" "7 1" "$(jq -r .code <<<"$OUT") $(jq -r .msg <<<"$OUT" | grep -c 'cnmpar0.*cnmpar0p')"

out=$(dk run -d --name m2 --network mvnet -p 18090:80 cnm-bb:1 sleep 60 2>&1) && fail "-p on macvlan was accepted"
expect_eq "-p on a macvlan network is refused, not ignored" "1" "$(grep -c 'not supported on macvlan' <<<"$out")"
dk rm -f m2 >/dev/null 2>&1 || true

# What this kernel lacks: clear errors at network create, nothing left behind.
before=$(state_snapshot)
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.73.0/24 -o cnm.driver=macvlan -o parent=cnmpar0.10 vlannet 2>&1) && fail "a VLAN parent was accepted on a kernel without 802.1Q"
expect_eq "a VLAN parent names the missing kernel feature" "1" "$(grep -c 'CONFIG_VLAN_8021Q' <<<"$out")"
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.74.0/24 -o cnm.driver=ipvlan -o parent=cnmpar0 -o ipvlan_mode=l3 ivnet 2>&1) && fail "ipvlan was accepted on a kernel without it"
expect_eq "ipvlan names the missing kernel feature" "1" "$(grep -c 'ipvlan is not supported by this kernel' <<<"$out")"
expect_eq "…and neither left state" "$before" "$(state_snapshot)"
expect_eq "…nor a link" "" "$(h ip -o link show | grep -E 'cnmpar0\.10|cnp' || true)"

# Either side goes, the other stays; then nothing is left.
cni "$PLUGINS/macvlan" DEL pod1 "/run/netns/$POD" eth0 "$CONF" nsenter --net="/run/netns/$H"
expect_eq "CNI DEL" "0" "$RC"
dk run -d --name m3 --network mvnet cnm-bb:1 sleep 600 >/dev/null
dk exec m1 ping -c1 -W2 "$(ip_of m3 mvnet)" >/dev/null && pass "after the pod's DEL, m1 pings a new m3" || fail "m1 cannot ping m3"
CHECKS=$((CHECKS + 1))
dk rm -f m1 m3 >/dev/null
dk network rm mvnet >/dev/null
expect_eq "no lease left" "0" "$(lease_count)"
# Pools keep their round-robin cursor on purpose (a pool made again goes on where it was).
expect_eq "no state document left but the pool's cursor" "./ipam/local/10.213.72.0_24/cursor" "$(state_snapshot | awk '{print $2}' | xargs)"
expect_eq "no macvlan left in dockerd's netns" "cnmpar0 cnmpar0p lo" "$(h ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | xargs)"
shim_stop
finish
