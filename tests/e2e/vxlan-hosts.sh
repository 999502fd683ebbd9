#!/usr/bin/env bash
# The vxlan plugin across three "hosts": netns h1, h2, h3 joined by a bridge in a fourth (the
# underlay, 10.213.230.0/24), one etcd the test starts in the underlay netns. Each host has its
# own node name, state dir and cluster file; every plugin call runs inside its host's netns.
# Checks:
#   - containers on all three hosts ping each other both ways (each host learned the others'
#     first blocks when it claimed its second: without the agent, a host knows only the blocks
#     that existed when it last claimed one — routes reaching old hosts at once are the agent's);
#   - the underlay carries UDP to port 4789 (the vxlan devices' counters; the VNI in a capture
#     when tcpdump is installed);
#   - at the overlay MTU (1450) a don't-fragment ping passes, one byte more fails with an error;
#   - etcd stopped: an ADD with room in the host's block succeeds, one needing a block fails with
#     code 11 and leaves nothing; etcd restarted: that ADD claims a block;
#   - 3 hosts × 16 parallel ADDs on a subnet needing several blocks per host: no address twice,
#     and after DEL of everything only the hosts' blocks are left;
#   - kill -9 of an ADD between its block CAS and its cache write: the next ADD adopts the block.
source "$(dirname "$0")/lib.sh"

VX=$PLUGINS/vxlan
[ -x "$VX" ] || { echo "no $VX" >&2; exit 1; }
P=cnmvx-$$
VX_NS=$P VX_NET=10.213.230 VX_ETCD_PORT=23810
source "$(dirname "$0")/vxlan-lib.sh"
HOSTS=(h1 h2 h3)

trap vx_cleanup EXIT

underlay_up
hosts_up 5000

# etcd_keys <prefix>: the keys under it, one per line.
etcd_keys() {
    local k e
    k=$(printf '%s' "$1" | base64 -w0)
    e=$(printf '%s' "${1%?}$(printf '%s' "${1: -1}" | tr '/' '0')" | base64 -w0)
    ip netns exec "$U" curl -s -X POST "$ETCD_URL/v3/kv/range" -d "{\"key\":\"$k\",\"range_end\":\"$e\",\"keys_only\":true}" |
        jq -r '.kvs // [] | .[].key | @base64d'
}
etcd_value() {
    ip netns exec "$U" curl -s -X POST "$ETCD_URL/v3/kv/range" -d "{\"key\":\"$(printf '%s' "$1" | base64 -w0)\"}" | jq -r '.kvs[0].value // "" | @base64d'
}
start_etcd

conf_of() { # conf_of <network> <vni> <subnet>
    jq -nc --arg n "$1" --argjson v "$2" --arg s "$3" '{cniVersion: "1.0.0", name: $n, type: "vxlan", vni: $v, subnet: $s, blockSize: 29}'
}
CONF=$(conf_of vxnet 4213 10.213.232.0/24)

# vx <host> <COMMAND> <container> [conf] [env…]: one plugin call on a host; sets OUT and RC.
vx() {
    local h=$1 cmd=$2 c=$3 conf=${4:-$CONF}
    shift 3; [ $# -gt 0 ] && shift
    set +e
    OUT=$(printf '%s' "$conf" | ip netns exec "$P-$h" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$h-$c" CNI_NETNS="/var/run/netns/$P-$h-$c" \
        CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" CNM_STATE_DIR="$WORK/$h/state" CNM_CLUSTER_FILE="$WORK/$h/cluster.json" \
        CNM_NODE="node-$h" "$@" "$VX")
    RC=$?
    set -e
}
declare -A IP
# container <host> <name>: its netns and an ADD; records the address.
container() {
    ns_add "$P-$1-$2"
    vx "$1" ADD "$2"
    if [ "$RC" -eq 0 ]; then IP[$1-$2]=$(jq -r '.ips[0].address | split("/")[0]' <<<"$OUT"); else IP[$1-$2]=""; fi
}
ping_from() { ip netns exec "$P-$1" ping -c 1 -W 2 "$2" >/dev/null 2>&1; }
leases_of() { find "$WORK/$1/state/ipam" -path '*/leases/*' -type f ! -name '.spare-*' 2>/dev/null | wc -l; }
endpoints_of() { find "$WORK/$1/state/networks" -path '*/endpoints/*.json' -type f 2>/dev/null | wc -l; }
host_veths() { ip -n "$P-$1" -o link show type veth | grep -vc ' u0@' || true; }
blocks_of() { etcd_keys "/cnm/blocks/$1/" | while read -r k; do etcd_value "$k" | jq -r .node; done | grep -c "^$2\$" || true; }

# ---- round 1: one container per host, each claims its first block ----
for h in "${HOSTS[@]}"; do
    container "$h" c1
    expect_eq "$h: first ADD succeeds" 0 "$RC"
done
expect_eq "etcd holds the network" 4213 "$(etcd_value /cnm/networks/vxnet | jq -r .vni)"
expect_eq "etcd holds three blocks, one per host" "1 1 1" "$(blocks_of vxnet node-h1) $(blocks_of vxnet node-h2) $(blocks_of vxnet node-h3)"
expect_eq "each host's record names its VTEP and MAC" "10.213.230.2 02:0a:d5:e6:02:00" "$(etcd_value /cnm/hosts/node-h2 | jq -r '"\(.vtep) \(.mac)"')"
expect_eq "three distinct addresses" 3 "$(printf '%s\n' "${IP[h1-c1]}" "${IP[h2-c1]}" "${IP[h3-c1]}" | sort -u | grep -c .)"

# ---- round 2: each host fills its first block (5 addresses in a /29) and claims a second ----
for h in "${HOSTS[@]}"; do
    for c in c2 c3 c4 c5 c6; do container "$h" "$c"; [ "$RC" -eq 0 ] || fail "$h $c ADD: $OUT"; done
    expect_eq "$h: the 6th container needed a second block" 2 "$(blocks_of vxnet node-$h)"
done
expect_eq "h1 routes the other hosts' first blocks through its vxlan device, onlink" 2 \
    "$(ip -n "$P-h1" -j route show dev cnmvx4213 | jq '[.[] | select((.flags // []) | index("onlink"))] | length')"

# ---- the mesh: every first container pings every other, both ways ----
for a in "${HOSTS[@]}"; do
    for b in "${HOSTS[@]}"; do
        [ "$a" != "$b" ] || continue
        CHECKS=$((CHECKS + 1))
        if ping_from "$a-c1" "${IP[$b-c1]}"; then pass "$a/c1 pings $b/c1 (${IP[$b-c1]})"; else fail "$a/c1 cannot ping $b/c1 (${IP[$b-c1]})"; fi
    done
done

# ---- the underlay carries VXLAN ----
tx=$(ip -n "$P-h1" -s -j link show cnmvx4213 | jq '.[0].stats64.tx.packets')
rx=$(ip -n "$P-h1" -s -j link show cnmvx4213 | jq '.[0].stats64.rx.packets')
expect_eq "h1's vxlan device sent and received packets" yes "$([ "$tx" -gt 0 ] && [ "$rx" -gt 0 ] && echo yes || echo "no (tx $tx rx $rx)")"
expect_eq "h1's vxlan device: VNI 4213, port 4789, no learning, local 10.213.230.1" "4213 4789 false 10.213.230.1" \
    "$(ip -n "$P-h1" -d -j link show cnmvx4213 | jq -r '.[0].linkinfo.info_data | "\(.id) \(.port) \(.learning) \(.local)"')"
if command -v tcpdump >/dev/null; then
    ip netns exec "$U" timeout 5 tcpdump -i ubr -nn -c 2 'udp dst port 4789' >"$WORK/cap.txt" 2>/dev/null &
    cap=$!
    sleep 0.5
    ping_from h2-c1 "${IP[h3-c1]}" || true
    wait "$cap" || true
    expect_eq "the capture on the underlay shows VNI 4213" yes "$(grep -q 'vni 4213' "$WORK/cap.txt" && echo yes || cat "$WORK/cap.txt")"
else
    u_before=$(ip -n "$U" -s -j link show uh3 | jq '.[0].stats64.tx.packets')
    ping_from h2-c1 "${IP[h3-c1]}" || true
    u_after=$(ip -n "$U" -s -j link show uh3 | jq '.[0].stats64.tx.packets')
    expect_eq "a ping h2 → h3 crossed the underlay (no tcpdump: port counters)" yes "$([ "$u_after" -gt "$u_before" ] && echo yes || echo no)"
fi

# ---- MTU ----
expect_eq "container MTU is the underlay's − 50" 1450 "$(ip -n "$P-h1-c1" -j link show eth0 | jq '.[0].mtu')"
CHECKS=$((CHECKS + 1))
if ip netns exec "$P-h1-c1" ping -c 1 -W 2 -M do -s 1422 "${IP[h2-c1]}" >/dev/null 2>&1; then pass "DF ping of 1450 bytes crosses"; else fail "DF ping of 1450 bytes does not cross"; fi
set +e
big=$(ip netns exec "$P-h1-c1" ping -c 1 -W 2 -M do -s 1423 "${IP[h2-c1]}" 2>&1); big_rc=$?
set -e
expect_eq "DF ping of 1451 bytes fails with an error, not silence" "1 yes" "$big_rc $(grep -qi 'message too long\|mtu' <<<"$big" && echo yes || echo "no: $big")"

# ---- etcd stopped ----
stop_etcd
blocks_before=$(jq '.blocks | length' "$WORK/h1/state/cluster/vxnet/blocks.json")
for c in c7 c8 c9 c10; do
    container h1 "$c"
    expect_eq "etcd down: h1 $c with room in its block succeeds" 0 "$RC"
done
l=$(leases_of h1); e=$(endpoints_of h1); v=$(host_veths h1)
container h1 c11
expect_eq "etcd down: an ADD that needs a block fails with code 11" "1 11" "$RC $(jq -r .code <<<"$OUT")"
expect_eq "…and leaves no lease, endpoint record or veth" "$l $e $v" "$(leases_of h1) $(endpoints_of h1) $(host_veths h1)"
expect_eq "…and no interface in the container" "" "$(ip -n "$P-h1-c11" -o link show eth0 2>/dev/null)"
expect_eq "…and no block in the cache" "$blocks_before" "$(jq '.blocks | length' "$WORK/h1/state/cluster/vxnet/blocks.json")"
start_etcd
vx h1 ADD c11
expect_eq "etcd back: that ADD claims a block and succeeds" "0 3" "$RC $(blocks_of vxnet node-h1)"

# ---- DEL of everything; twice ----
for h in "${HOSTS[@]}"; do
    for c in c1 c2 c3 c4 c5 c6 c7 c8 c9 c10 c11; do
        [ -e "/var/run/netns/$P-$h-$c" ] || continue
        vx "$h" DEL "$c"; [ "$RC" -eq 0 ] || fail "$h DEL $c: $OUT"
        vx "$h" DEL "$c"; [ "$RC" -eq 0 ] || fail "$h second DEL $c: $OUT"
    done
    expect_eq "$h: after DEL of everything no lease, record or veth" "0 0 0" "$(leases_of "$h") $(endpoints_of "$h") $(host_veths "$h")"
done
expect_eq "the hosts keep their blocks" "3 2 2" "$(blocks_of vxnet node-h1) $(blocks_of vxnet node-h2) $(blocks_of vxnet node-h3)"

# ---- 3 hosts × 16 parallel ADDs, a second network (/26 in /29 blocks: 8 blocks, 40 addresses) ----
PCONF=$(conf_of vxpar 4214 10.213.233.0/25)
for h in "${HOSTS[@]}"; do for n in $(seq 16); do ns_add "$P-$h-p$n"; done; done
# Only the calls are waited for (a bare `wait` would wait for etcd too).
calls=()
for h in "${HOSTS[@]}"; do
    for n in $(seq 16); do
        ( vx "$h" ADD "p$n" "$PCONF"; echo "$RC" >"$WORK/$h-p$n.rc"; printf '%s' "$OUT" >"$WORK/$h-p$n.out" ) &
        calls+=($!)
    done
done
wait "${calls[@]}"
ok=0; : >"$WORK/par-ips"
for h in "${HOSTS[@]}"; do
    for n in $(seq 16); do
        if [ "$(cat "$WORK/$h-p$n.rc")" == 0 ]; then
            ok=$((ok + 1)); jq -r '.ips[0].address' "$WORK/$h-p$n.out" >>"$WORK/par-ips"
        else
            echo "$h p$n: $(cat "$WORK/$h-p$n.out")" >&2
        fi
    done
done
# 16 blocks of 5: 48 ADDs need ≥ 10 blocks.
expect_eq "48 parallel ADDs over three hosts succeed" 48 "$ok"
expect_eq "no address handed out twice in the cluster" 48 "$(cut -d/ -f1 "$WORK/par-ips" | sort -u | wc -l)"
per=$(for h in "${HOSTS[@]}"; do blocks_of vxpar "node-$h"; done | paste -sd' ')
expect_eq "each host needed several blocks (4 of 5 addresses for 16)" "4 4 4" "$per"
expect_eq "no block claimed twice" "$(etcd_keys /cnm/blocks/vxpar/ | wc -l)" "$(etcd_keys /cnm/blocks/vxpar/ | sort -u | wc -l)"
calls=()
for h in "${HOSTS[@]}"; do
    for n in $(seq 16); do ( vx "$h" DEL "p$n" "$PCONF"; echo "$RC" >"$WORK/$h-p$n.del" ) & calls+=($!); done
done
wait "${calls[@]}"
expect_eq "48 parallel DELs succeed" 48 "$(cat "$WORK"/*-p*.del | grep -c '^0$')"
for h in "${HOSTS[@]}"; do
    expect_eq "$h: nothing left but its blocks" "0 0 0 4" "$(leases_of "$h") $(endpoints_of "$h") $(host_veths "$h") $(jq '.blocks | length' "$WORK/$h/state/cluster/vxpar/blocks.json")"
done

# ---- kill -9 between the block's CAS and the host's cache ----
KCONF=$(conf_of vxkill 4215 10.213.234.0/24)
ns_add "$P-h2-k1"
vx h2 ADD k1 "$KCONF" CNM_FAULT=vxlan-claim-after-cas
expect_eq "the ADD was killed at vxlan-claim-after-cas (no output, failed)" "killed" "$([ "$RC" -ne 0 ] && [ -z "$OUT" ] && echo killed || echo "rc $RC: $OUT")"
expect_eq "…after its claim reached etcd" 1 "$(blocks_of vxkill node-h2)"
expect_eq "…and before the cache knew it" 0 "$(jq '.blocks | length' "$WORK/h2/state/cluster/vxkill/blocks.json")"
vx h2 DEL k1 "$KCONF"
expect_eq "the runtime's DEL of the killed ADD succeeds" 0 "$RC"
vx h2 ADD k1 "$KCONF"
expect_eq "the next ADD succeeds" 0 "$RC"
addr=$(jq -r '.ips[0].address' <<<"$OUT")
block=$(etcd_keys /cnm/blocks/vxkill/ | head -1 | sed 's|.*/||; s|_|/|')
expect_eq "…adopting the block (none leaked: still one, and the address is in it)" "1 yes" \
    "$(blocks_of vxkill node-h2) $(python3 -c 'import ipaddress,sys; print("yes" if ipaddress.ip_interface(sys.argv[1]).ip in ipaddress.ip_network(sys.argv[2]) else "no")' "$addr" "$block")"
vx h2 DEL k1 "$KCONF"
expect_eq "DEL after the adoption" "0 0" "$RC $(leases_of h2)"

finish
