#!/usr/bin/env bash
# cnm-shim's per-host agent across four "hosts" (netns h1..h4 on an underlay bridge in a fifth,
# 10.213.240.0/24, one etcd there). Each host runs `cnm-shim agent` (in its netns, in the
# background, killed by PID). Checks:
#   - the agents route every host's first block: the mesh pings both ways, although an ADD on h1
#     (the first host) learned no other block;
#   - a fourth host joins after the pods exist: h1 <-> h4 ping within 2 s, no ADD on the old hosts;
#   - the agent registers the host on a lease (cluster hosts: alive); a stale route on the vxlan
#     device is removed by the periodic reconciliation, also after the network's last DEL
#     and the next ADD made its directory again under the running agent;
#   - h3's agent stopped: its lease goes (hosts: expired), its routes stay, h1 still pings it;
#   - `cnm-shim cluster release node-h3`: the other hosts drop h3's routes within 5 s.
source "$(dirname "$0")/lib.sh"

VX=$PLUGINS/vxlan
SHIM=$BUILD/cnm-shim/cnm-shim
[ -x "$VX" ] && [ -x "$SHIM" ] || { echo "no $VX or $SHIM" >&2; exit 1; }
P=cnmag-$$
VX_NS=$P VX_NET=10.213.240 VX_ETCD_PORT=23820
source "$(dirname "$0")/vxlan-lib.sh"
HOSTS=(h1 h2 h3 h4)
trap vx_cleanup EXIT

underlay_up
hosts_up
start_etcd

CONF='{"cniVersion":"1.0.0","name":"agnet","type":"vxlan","vni":4240,"subnet":"10.213.244.0/22","blockSize":28}'
ADDS=0
vx() { # vx <host> <COMMAND> <container>: sets OUT and RC
    set +e
    OUT=$(printf '%s' "$CONF" | ip netns exec "$P-$1" env CNI_COMMAND="$2" CNI_CONTAINERID="$1-$3" CNI_NETNS="/var/run/netns/$P-$1-$3" \
        CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" CNM_STATE_DIR="$WORK/$1/state" CNM_CLUSTER_FILE="$WORK/$1/cluster.json" "$VX")
    RC=$?
    set -e
}
shim() { local h=$1; shift; ip netns exec "$P-$h" env CNM_CLUSTER_FILE="$WORK/$h/cluster.json" "$SHIM" --state-dir "$WORK/$h/state" "$@"; }
declare -A IP
container() {
    ns_add "$P-$1-$2"
    vx "$1" ADD "$2"
    [ "$RC" -eq 0 ] || fail "$1 ADD $2: $OUT"
    echo "$1" >>"$WORK/adds"
    IP[$1-$2]=$(jq -r '.ips[0].address | split("/")[0]' <<<"$OUT")
}
# within <seconds> <command…>: true once the command succeeds, polling every 0.1 s.
within() {
    local n=$(($1 * 10)); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
pings() { ip netns exec "$P-$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
check() { # check <description> <seconds> <command…>
    local d=$1; shift
    CHECKS=$((CHECKS + 1))
    if within "$@"; then pass "$d"; else fail "$d"; fi
}
routes_on() { ip -n "$P-$1" -j route show dev cnmvx4240 2>/dev/null | jq -r '.[].dst' | sort | paste -sd' '; }
# (grep without -q: it reads all of ip's output, so pipefail never sees ip die of SIGPIPE)
no_route() { ! ip -n "$P-$1" route show dev cnmvx4240 | grep "^$2 " >/dev/null; }
has_route() { ip -n "$P-$1" route show dev cnmvx4240 | grep "^$2 " >/dev/null; }
host_state() { shim h1 cluster hosts --json | jq -r --arg n "$1" '.[] | select(.node == $n) | .lease'; }
# (a function, so `check` asks again on every try; "$(host_state …)" as an argument is asked once)
host_is() { test "$(host_state "$1")" == "$2"; }

# ---- three hosts with agents, one container each ----
for h in h1 h2 h3; do start_agent "$h"; done
for h in h1 h2 h3; do container "$h" c1; done
for a in h1 h2 h3; do
    for b in h1 h2 h3; do
        [ "$a" != "$b" ] || continue
        check "$a/c1 pings $b/c1 (${IP[$b-c1]}) within 2 s" 2 pings "$a-c1" "${IP[$b-c1]}"
    done
done
check "the agent registered h2 on a lease" 3 host_is node-h2 alive
expect_eq "cluster hosts names h2's VTEP" 10.213.240.2 "$(shim h1 cluster hosts --json | jq -r '.[] | select(.node == "node-h2") | .vtep')"
expect_eq "cluster tunnels on h1: the blocks of h2 and h3, via their VTEPs" "10.213.240.2 10.213.240.3" \
    "$(shim h1 cluster tunnels --json | jq -r '.[].vtep' | sort | paste -sd' ')"
expect_eq "cluster blocks: h1's block has 1 used address (local cache)" 1 \
    "$(shim h1 cluster blocks --json | jq -r '.[] | select(.node == "node-h1") | .used')"
expect_eq "cluster networks: agnet with its VNI, subnet, block size, 3 blocks, 1 of them h1's" "agnet 4240 10.213.244.0/22 28 3 1" \
    "$(shim h1 cluster networks --json | jq -r '.[] | "\(.network) \(.vni) \(.subnet) \(.blockSize) \(.blocks) \(.mine)"')"
expect_eq "…and as a table: a header naming VNI and SUBNET, one row for agnet" "1 1" \
    "$(shim h1 cluster networks | { t=$(cat); echo "$(grep -w VNI <<<"$t" | grep -cw SUBNET) $(grep -w agnet <<<"$t" | grep -cw 4240)"; })"

# ---- stale entries go ----
ip -n "$P-h1" route add 10.213.247.0/28 via 10.213.247.1 dev cnmvx4240 onlink
check "h1's agent removes a route no block justifies (resync 2 s)" 5 no_route h1 10.213.247.0/28

# ---- the network made again under the running agent ----
# h1's last DEL removes agnet's directory and the next ADD makes it again: the agent must read the
# new one (a directory fd kept from its last pass would show agnet as gone and leave the route).
vx h1 DEL c1
[ "$RC" -eq 0 ] || fail "h1 DEL c1: $OUT"
expect_eq "h1's last DEL removed agnet's directory" no "$([ -e "$WORK/h1/state/networks/agnet" ] && echo yes || echo no)"
sleep 2.5 # one resync with no agnet
vx h1 ADD c1
[ "$RC" -eq 0 ] || fail "h1 ADD c1 again: $OUT"
IP[h1-c1]=$(jq -r '.ips[0].address | split("/")[0]' <<<"$OUT")
ip -n "$P-h1" route add 10.213.247.16/28 via 10.213.247.17 dev cnmvx4240 onlink
check "h1's agent removes such a route on the network made again (resync 2 s)" 5 no_route h1 10.213.247.16/28
check "h2/c1 pings h1/c1 again (${IP[h1-c1]})" 2 pings h2-c1 "${IP[h1-c1]}"

# ---- a fourth host joins after the pods exist ----
adds_before=$(grep -c -v h4 "$WORK/adds")
start_agent h4
container h4 c1
check "h4/c1 pings h1/c1 within 2 s" 2 pings h4-c1 "${IP[h1-c1]}"
check "h1/c1 pings h4/c1 within 2 s" 2 pings h1-c1 "${IP[h4-c1]}"
check "h2/c1 pings h4/c1 within 2 s" 2 pings h2-c1 "${IP[h4-c1]}"
expect_eq "no ADD ran on the old hosts" "$adds_before" "$(grep -c -v h4 "$WORK/adds")"

# ---- h3's agent stops: membership goes, routes stay ----
h3_block=$(shim h1 cluster blocks --json | jq -r '.[] | select(.node == "node-h3") | .block')
stop_agent h3 || true
check "h3's lease is gone (hosts: expired)" 3 host_is node-h3 expired
sleep 3 # more than a resync
check "h1 still routes h3's block $h3_block" 1 has_route h1 "$h3_block"
check "h1/c1 still pings h3/c1" 2 pings h1-c1 "${IP[h3-c1]}"

# ---- release h3's blocks ----
expect_eq "cluster release node-h3" "released 1 block(s) of node-h3" "$(shim h1 cluster release node-h3)"
for h in h1 h2 h4; do
    check "$h drops h3's route within 5 s" 5 no_route "$h" "$h3_block"
done
expect_eq "h1 routes only h2's and h4's blocks now" 2 "$(ip -n "$P-h1" -j route show dev cnmvx4240 | jq length)"
check "h1/c1 still pings h4/c1" 2 pings h1-c1 "${IP[h4-c1]}"
expect_eq "a bad node name is refused" 1 "$(shim h1 cluster release 'no/such' >/dev/null 2>&1; echo $?)"

# ---- etcd restarts: the agents list and watch again ----
stop_etcd
sleep 1
start_etcd
b64() { printf '%s' "$1" | base64 -w0; }
FAKE=/cnm/blocks/agnet/10.213.246.0_28
ip netns exec "$U" curl -sf -X POST "$ETCD_URL/v3/kv/put" \
    -d "{\"key\":\"$(b64 $FAKE)\",\"value\":\"$(b64 '{"node":"node-x","vtep":"10.213.240.9","mac":"02:0a:d5:f0:09:00"}')\"}" >/dev/null
for h in h1 h2 h4; do check "after an etcd restart, $h routes a block claimed meanwhile within 10 s" 10 has_route "$h" 10.213.246.0/28; done
ip netns exec "$U" curl -sf -X POST "$ETCD_URL/v3/kv/deleterange" -d "{\"key\":\"$(b64 $FAKE)\"}" >/dev/null
check "…and drops it when its key goes" 5 no_route h1 10.213.246.0/28
check "the agent registered h1 again after the restart (lease alive)" 10 host_is node-h1 alive

for h in h1 h2 h4; do stop_agent "$h" || true; done
for h in "${HOSTS[@]}"; do vx "$h" DEL c1; [ "$RC" -eq 0 ] || fail "$h DEL c1: $OUT"; done
finish
