#!/usr/bin/env bash
# Docker on a vxlan (cluster) network through cnm-shim, beside CNI pods of the vxlan plugin.
# Two "hosts" (netns a and b) on an underlay bridge in a third netns (10.213.182.0/24), one etcd
# there. Host b has CNI pods (the plugin through `ip netns exec`) and `cnm-shim agent`; host a runs
# dockerd and `cnm-shim serve` in its netns, with its cluster file (so the agent runs beside the
# API) and CNI pods of its own. One cluster network, 10.213.184.0/22, blocks of /26. Checks:
#   - `docker network create -d cnm --ipam-driver cnm -o cnm.driver=vxlan -o cnm.network=NAME
#     --ipam-opt cnm.network=NAME --subnet <cluster subnet>` on a binds to the cluster network b
#     made: the gateway Docker gets is a's block gateway (a claimed a block for it);
#   - a Docker container's address is in a's block, with the cluster prefix (/22), its default
#     route is a's block gateway; it pings b's CNI pod and is pinged back: a's bridge answers its
#     ARP for the remote address (proxy ARP — without it the ping fails), a's vxlan device carries it;
#   - a second Docker container and a CNI pod on a: distinct addresses from the same block, and
#     they reach each other;
#   - the serve's agent registered a on a lease;
#   - docker rm frees the Docker leases, network rm the rest; a's block stays a's (cache and etcd),
#     and a network made again gets the same gateway.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker-lib.sh"
source "$(dirname "$0")/shim-lib.sh"

VX=$PLUGINS/vxlan
[ -x "$VX" ] && [ -x "$SHIM" ] || { echo "no $VX or $SHIM" >&2; exit 1; }
NSP=hdk-$$
VX_NS=$NSP VX_NET=10.213.182 VX_ETCD_PORT=23860
source "$(dirname "$0")/vxlan-lib.sh"
A=$NSP-a
B=$NSP-b
SUBNET=10.213.184.0/22
NET=dkvx
VNI=4184
DEV=cnmvx$VNI
BR=vxb-$NET
AGENT_PID=""

dv_cleanup() {
    # dockerd and the shim go first (cleanup), but etcd's data dir is under $WORK: stop it before.
    [ -z "$AGENT_PID" ] || { kill -9 "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; }
    if [ "$FAILS" -gt 0 ]; then for f in "$WORK"/b/agent.log "$WORK"/etcd.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done; fi
    docker_cleanup
    if [ -n "$SHIM_PID" ]; then kill -TERM "$SHIM_PID" 2>/dev/null || true; wait "$SHIM_PID" 2>/dev/null || true; SHIM_PID=""; fi
    etcd_kill
    cleanup
}
trap dv_cleanup EXIT

# ---- underlay, hosts, etcd ----
underlay_up
host_up a 1
host_up b 2
start_etcd || exit 1

# Host a's state is lib.sh's $CNM_STATE_DIR (the shim's); b's is its own.
STATE_A=$CNM_STATE_DIR
STATE_B=$WORK/b/state
export CNM_CLUSTER_FILE=$WORK/a/cluster.json # the shim's (host a's) cluster file
CONF='{"cniVersion":"1.0.0","name":"'$NET'","type":"vxlan","vni":'$VNI',"subnet":"'$SUBNET'","blockSize":26}'
vx() { # vx <host> <COMMAND> <container>: sets OUT and RC
    local state=$STATE_A
    [ "$1" == a ] || state=$STATE_B
    set +e
    OUT=$(printf '%s' "$CONF" | ip netns exec "$NSP-$1" env CNI_COMMAND="$2" CNI_CONTAINERID="$1-$3" CNI_NETNS="/var/run/netns/$NSP-$1-$3" \
        CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" CNM_STATE_DIR="$state" CNM_CLUSTER_FILE="$WORK/$1/cluster.json" "$VX")
    RC=$?
    set -e
}
pod() { # pod <host> <name>: a netns and a CNI ADD into it; POD_IP
    ns_add "$NSP-$1-$2"
    vx "$1" ADD "$2"
    [ "$RC" -eq 0 ] || fail "$1 ADD $2: $OUT"
    POD_IP=$(jq -r '.ips[0].address' <<<"$OUT")
}
admin() { local h=$1; shift; local state=$STATE_A; [ "$h" == a ] || state=$STATE_B
    ip netns exec "$NSP-$h" env CNM_CLUSTER_FILE="$WORK/$h/cluster.json" "$SHIM" --state-dir "$state" "$@"; }
within() { local n=$(($1 * 10)); shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done; return 1; }
check() { local d=$1; shift; CHECKS=$((CHECKS + 1)); if within "$@"; then pass "$d"; else fail "$d"; fi; }
pings() { ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
dpings() { dk exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
block_of() { admin a cluster blocks --json | jq -r --arg n "$1" '[.[] | select(.node == $n) | .block] | sort | join(" ")'; }
docker_leases_a() { find "$STATE_A/ipam" -path '*/leases/*' -type f ! -name '.spare-*' -exec grep -l '"frontend": *"docker"' {} + 2>/dev/null | wc -l; }
cni_leases_a() { find "$STATE_A/ipam" -path '*/leases/*' -type f ! -name '.spare-*' -exec grep -l '"frontend": *"cni"' {} + 2>/dev/null | wc -l; }
in_block() { python3 -c 'import ipaddress,sys; print("yes" if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else "no")' "$1" "$2"; }
first_host() { python3 -c 'import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])' "$1"; }

# ---- host b: its agent and a CNI pod (b defines the cluster network) ----
ip netns exec "$B" env CNM_CLUSTER_FILE="$WORK/b/cluster.json" "$SHIM" agent --state-dir "$STATE_B" --resync 2 >>"$WORK/b/agent.log" 2>&1 &
AGENT_PID=$!
pod b p1
B_P1=${POD_IP%/*}
B_BLOCK=$(block_of node-b)
expect_eq "b's pod is in b's block" yes "$(in_block "$B_P1" "$B_BLOCK")"

# ---- host a: dockerd and the shim (serve, with a's cluster file: the agent beside the API) ----
DOCKER_NETNS=$A
docker_start
docker_image
shim_start
a_leased() { test "$(admin a cluster hosts --json | jq -r '.[] | select(.node == "node-a") | .lease')" == alive; }
check "the agent in a's cnm-shim serve registered a on a lease" 5 a_leased

before=$(state_snapshot)
out=$(dk network create -d "$P" --ipam-driver "$P" -o cnm.driver=vxlan -o cnm.network=$NET --ipam-opt cnm.network=$NET --subnet 10.213.186.0/23 wrong 2>&1) && fail "a subnet other than the cluster's was accepted"
expect_eq "a --subnet other than the cluster's is refused, naming both" 1 "$(grep -c "$SUBNET.*10.213.186.0/23\|10.213.186.0/23.*$SUBNET" <<<"$out")"
expect_eq "…and changes no state on a (no facts cached, no block claimed)" "$before" "$(state_snapshot)"
expect_eq "…and a holds no block" "" "$(block_of node-a)"

out=$(dk network create -d "$P" --ipam-driver "$P" -o cnm.driver=vxlan -o cnm.network=$NET --ipam-opt cnm.network=$NET --subnet $SUBNET dvx 2>&1) || fail "network create: $out"
A_BLOCK=$(block_of node-a)
A_GW=$(first_host "$A_BLOCK")
expect_eq "a claimed one block, not b's" "yes no" "$([ -n "$A_BLOCK" ] && [ "${A_BLOCK// /}" == "$A_BLOCK" ] && echo yes || echo no) $([ "$A_BLOCK" == "$B_BLOCK" ] && echo yes || echo no)"
# Docker's inspect shows only a --gateway given by hand: ask the shim what it answers Docker.
expect_eq "the gateway the shim gives Docker is a's block gateway, with the cluster prefix" "{\"Address\":\"$A_GW/22\",\"Data\":{}} 200" \
    "$(call IpamDriver.RequestAddress '{"PoolID":"cluster:'$NET'/'$SUBNET'","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}}')"
expect_eq "a's bridge holds the block gateway with the block's prefix" "$A_GW/${A_BLOCK#*/}" "$(ip -n "$A" -4 -o addr show "$BR" | awk '{print $4}' | xargs)"
expect_eq "a's bridge answers ARP for the remote blocks (proxy_arp, no delay)" "1 0" \
    "$(ip netns exec "$A" cat "/proc/sys/net/ipv4/conf/$BR/proxy_arp") $(ip netns exec "$A" cat "/proc/sys/net/ipv4/neigh/$BR/proxy_delay")"
expect_eq "the network is one record with the cluster's facts, Docker's binding" "vxlan cluster:$NET $VNI $SUBNET" \
    "$(admin a list --json | jq -r --arg n $NET '.networks[] | select(.name == $n) | "\(.driver) \(.addressSpace) \(.options.vni) \(.options.subnet)"')"

out=$(dk network create -d "$P" --ipam-driver "$P" -o cnm.driver=vxlan --ipam-opt cnm.network=$NET --subnet $SUBNET wrong 2>&1) && fail "a vxlan network without -o cnm.network was accepted"
expect_eq "-o cnm.driver=vxlan without -o cnm.network is refused, saying so" 1 "$(grep -c 'cnm.network=NAME' <<<"$out")"
expect_eq "…and leaves a's blocks as they were" "$A_BLOCK" "$(block_of node-a)"

# ---- a Docker container on a, a CNI pod on b ----
dk run -d --name d1 --network dvx cnm-bb:1 sleep 600 >/dev/null
D1_CIDR=$(dk exec d1 ip -4 -o addr show eth0 | awk '{print $4}')
D1=${D1_CIDR%/*}
expect_eq "d1's address has the cluster subnet's prefix" "/22" "/${D1_CIDR#*/}"
expect_eq "d1's address is in a's block" yes "$(in_block "$D1" "$A_BLOCK")"
expect_eq "d1's default route is a's block gateway" "default via $A_GW dev eth0" "$(dk exec d1 ip route | grep '^default' | xargs)"
check "Docker's d1 on a pings b's CNI pod ($B_P1)" 5 dpings d1 "$B_P1"
check "b's CNI pod pings Docker's d1 ($D1)" 5 pings "$NSP-b-p1" "$D1"
expect_eq "a answered d1's ARP for the remote pod with its bridge's MAC" "$(ip -n "$A" -j link show "$BR" | jq -r '.[0].address')" \
    "$(nsenter --net="$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' d1)" ip -j neigh show "$B_P1" | jq -r '.[0].lladdr')"
# The proxy ARP is what makes it work: without it d1's ARP for the remote pod goes unanswered.
D1_NS=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' d1)
ip netns exec "$A" sh -c "echo 0 >/proc/sys/net/ipv4/conf/$BR/proxy_arp"
nsenter --net="$D1_NS" ip neigh flush dev eth0
CHECKS=$((CHECKS + 1))
if dpings d1 "$B_P1"; then fail "d1 reached b's pod without proxy ARP on a's bridge"; else pass "without proxy ARP on a's bridge d1 cannot reach b's pod"; fi
ip netns exec "$A" sh -c "echo 1 >/proc/sys/net/ipv4/conf/$BR/proxy_arp"
check "…with it back, d1 reaches b's pod again" 3 dpings d1 "$B_P1"
expect_eq "the traffic went through a's vxlan device" yes "$([ "$(ip -n "$A" -s -j link show "$DEV" | jq '.[0].stats64.tx.packets')" -gt 0 ] && echo yes || echo no)"

# ---- a CNI pod and a second Docker container on a: one block, distinct addresses ----
pod a p1
A_P1=${POD_IP%/*}
dk run -d --name d2 --network dvx cnm-bb:1 sleep 600 >/dev/null
D2=$(ip_of d2 dvx)
expect_eq "a's pod and d2 are in a's block" "yes yes" "$(in_block "$A_P1" "$A_BLOCK") $(in_block "$D2" "$A_BLOCK")"
expect_eq "d1, d2, a's pod and the gateway are four addresses" 4 "$(printf '%s\n' "$D1" "$D2" "$A_P1" "$A_GW" | sort -u | wc -l)"
check "d2 pings a's pod" 3 dpings d2 "$A_P1"
check "a's pod pings d2" 3 pings "$NSP-a-p1" "$D2"
check "b's pod pings d2" 3 pings "$NSP-b-p1" "$D2"
expect_eq "two Docker leases and one CNI lease on a" "2 1" "$(docker_leases_a) $(cni_leases_a)"
# dockerd releasing a live endpoint's address (as it does for stale ones after a restart): the
# shim's hint names d1's record, which still holds it, so the lease stays.
expect_eq "a ReleaseAddress of running d1's address succeeds…" "{} 200" \
    "$(call IpamDriver.ReleaseAddress '{"PoolID":"cluster:'$NET'/'$SUBNET'","Address":"'$D1'"}')"
expect_eq "…and leaves its lease (two Docker leases still)" 2 "$(docker_leases_a)"

# ---- removal frees addresses, the block stays ----
dk rm -f d1 d2 >/dev/null
expect_eq "docker rm frees both Docker leases; the pod's stays" "0 1" "$(docker_leases_a) $(cni_leases_a)"
vx a DEL p1
expect_eq "CNI DEL on a" 0 "$RC"
dk network rm dvx >/dev/null
expect_eq "network rm: no lease left on a" 0 "$(lease_count)"
expect_eq "…no network record" 0 "$(admin a list --json | jq '.networks | length')"
expect_eq "…no bridge" no "$(ip -n "$A" link show "$BR" >/dev/null 2>&1 && echo yes || echo no)"
expect_eq "…and a's block stays a's in etcd" "$A_BLOCK" "$(block_of node-a)"
expect_eq "…and in a's cache" "$A_BLOCK" "$(jq -r '[.blocks[].block] | join(" ")' "$STATE_A/cluster/$NET/blocks.json")"
check "b still routes a's block (routes follow blocks)" 3 bash -c "ip -n $B route show dev $DEV | grep -q '^$A_BLOCK '"
dk network create -d "$P" --ipam-driver "$P" -o cnm.driver=vxlan -o cnm.network=$NET --ipam-opt cnm.network=$NET --subnet $SUBNET dvx2 >/dev/null
expect_eq "a network made again has the same gateway on its bridge (the same block)" "$A_GW/${A_BLOCK#*/}" "$(ip -n "$A" -4 -o addr show "$BR" | awk '{print $4}' | xargs)"
dk network rm dvx2 >/dev/null
expect_eq "…and leaves nothing but the block" "0 $A_BLOCK" "$(lease_count) $(block_of node-a)"
shim_stop
finish
