#!/usr/bin/env bash
# The vxlan bench (tests/bench/run.sh vxlan [--reps N] [--fresh N] [--iperf-runs N] [--iperf-secs S] [--ours DIR]):
#   1. vxlan ADD on a host that already holds a block (network with one resident endpoint) against
#      our bridge ADD and the reference bridge in the same interleaved rounds, each against the
#      floor (exec of /bin/true + the kernel's own work in-process), and a check under strace that
#      this ADD makes no etcd round trip (cni-bench vxlan);
#   2. the first ADD on a fresh host (claims a block in etcd), median over --fresh hosts;
#   3. TCP throughput (iperf3) between containers on two hosts through our overlay against the
#      same kernel's vxlan set up by hand with `ip` (same MTU, same underlay veths), interleaved.
# Layout: an underlay netns (a bridge, etcd on 10.213.190.250:23870-23872) and hosts as netns with
# a veth "u0" on it (10.213.190.0/24). Every netns is hbv-<pid>-…; every process started here is
# killed by its PID and the temp dir removed at exit, also after a failure or a signal.
# Subnets: 10.213.192.0/22 for the cluster networks (cni-bench's and, 10.213.195.128/25, the
# throughput one), 10.213.188.0/24 for the overlay made by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=41 fresh=12 iruns=9 isecs=3 ours=build/plugins
while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift 2 ;;
    --fresh) fresh=$2; shift 2 ;;
    --iperf-runs) iruns=$2; shift 2 ;;
    --iperf-secs) isecs=$2; shift 2 ;;
    --ours) ours=$2; shift 2 ;; # another build of our plugins (vxlan, bridge, ipam)
    *) echo "vxlan.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$fresh" -ge 3 ] && [ "$fresh" -le 15 ] || { echo "vxlan.sh: --fresh must be 3..15 (/28 blocks of a /24)" >&2; exit 2; }
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build plugins/vxlan plugins/cnm-etcd-http.so plugins/bridge plugins/ipam tests/bench/cni-bench tests/bench/exec-shim tests/bench/noop-httplib >/dev/null
for tool in /usr/bin/etcd /usr/bin/iperf3 /usr/bin/strace; do
    [ -x $tool ] || { echo "vxlan.sh: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done

P=hbv-$$
U=$P-u
ETCD_IP=10.213.190.250
ETCD_URL=http://$ETCD_IP:23870
ours=$(realpath "$ours")
VX=$ours/vxlan
WORK=$(mktemp -d /tmp/hbv-bench-XXXXXX)
PIDS=()
cleanup() {
    local pid ns
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ns_add() { ip netns add "$1"; ip -n "$1" link set lo up; }
ns_add "$U"
ip -n "$U" link add ubr type bridge
ip -n "$U" link set ubr up
ip -n "$U" link add ue type veth peer name ue-br
ip -n "$U" link set ue-br master ubr up
ip -n "$U" addr add $ETCD_IP/24 dev ue
ip -n "$U" link set ue up
# host <name> <last octet>: a host netns with its underlay veth u0 (MTU 1500) on the bridge.
host() {
    ns_add "$P-$1"
    ip -n "$U" link add "u$1" type veth peer name u0 netns "$P-$1"
    ip -n "$U" link set "u$1" master ubr up
    ip -n "$P-$1" addr add "10.213.190.$2/24" dev u0
    ip -n "$P-$1" link set u0 up
}
host a 1
host c 3
host d 4
fresh_list=""
for i in $(seq "$fresh"); do
    host "f$i" $((10 + i))
    fresh_list+="${fresh_list:+,}$P-f$i"
done

ip netns exec "$U" /usr/bin/etcd --name hbv --data-dir "$WORK/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls http://$ETCD_IP:23871 --initial-advertise-peer-urls http://$ETCD_IP:23871 \
    --initial-cluster hbv=http://$ETCD_IP:23871 --initial-cluster-state new \
    --listen-metrics-urls http://$ETCD_IP:23872 --heartbeat-interval 10 --election-timeout 100 \
    --log-level error >"$WORK/etcd.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 100); do
    if ip netns exec "$U" curl -sf "$ETCD_URL/health" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
[ $ready == 1 ] || { echo "etcd did not start:" >&2; cat "$WORK/etcd.log" >&2; exit 1; }

echo "== vxlan bench: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
# ---- 1 and 2: ADD timings (cni-bench, its netns hbv-<pid>-b-…) ----
# In the background and waited for, so that a signal reaches the trap at once (the trap kills it
# by PID; its netns carry this script's prefix and go with the others).
build/tests/bench/cni-bench vxlan --ours "$ours" --prefix hbv --tag "$$-b" --work "$WORK/bench" --reps "$reps" \
    --host "$P-a" --fresh "$fresh_list" --etcd "$ETCD_URL" &
PIDS+=($!)
wait $!

# ---- 3: TCP throughput, our overlay vs the same kernel's vxlan made by hand ----
# Ours: network "bt" in /30 blocks (one container each), so that c's second ADD claims a second
# block and learns d's: routes programmed by the plugin both ways, no agent.
BT='{"cniVersion":"1.0.0","name":"bt","type":"vxlan","vni":4195,"subnet":"10.213.195.128/25","blockSize":30,"underlay":"u0","cluster":{"etcd":["'$ETCD_URL'"]}}'
vx_add() { # vx_add <host> <container>: prints the container's address
    ns_add "$P-$1-$2"
    printf '%s' "$BT" | ip netns exec "$P-$1" env CNI_COMMAND=ADD CNI_CONTAINERID="$1-$2" CNI_NETNS="/run/netns/$P-$1-$2" CNI_IFNAME=eth0 \
        CNI_PATH="$ours" CNM_STATE_DIR="$WORK/state-$1" CNM_NODE="tput-$1" "$VX" | jq -er '.ips[0].address | split("/")[0]'
}
ip_c=$(vx_add c vx)
ip_d=$(vx_add d vx)
vx_add c second >/dev/null
# By hand, as flannel's vxlan backend (../shared/reference/cluster.md §2), in the same hosts on the
# same u0: a vxlan device (VNI 4188, port 4789, nolearning), a bridge with the host's /25 gateway,
# a veth to the container, and about the peer a permanent neighbour, an FDB entry and a route.
hand_host() { # hand_host <host> <third octet part: 0|128> <peer host> <peer part> <peer underlay>
    local H=$P-$1 gw=10.213.188.$(($2 + 1)) peer_gw=10.213.188.$(($4 + 1))
    ip -n "$H" link add hvx type vxlan id 4188 local "10.213.190.$([ "$1" == c ] && echo 3 || echo 4)" dev u0 dstport 4789 nolearning
    ip -n "$H" link set hvx address "02:bb:00:00:00:0$([ "$1" == c ] && echo 3 || echo 4)" mtu 1450 up
    ip -n "$H" link add hbr type bridge
    ip -n "$H" link set hbr mtu 1450 up
    ip -n "$H" addr add "$gw/25" dev hbr
    ns_add "$H-hand"
    ip -n "$H" link add hveth mtu 1450 type veth peer name eth0 mtu 1450 netns "$H-hand"
    ip -n "$H" link set hveth master hbr up
    ip -n "$H-hand" addr add "10.213.188.$(($2 + 2))/25" dev eth0
    ip -n "$H-hand" link set eth0 up
    ip -n "$H-hand" route add 10.213.188.0/24 via "$gw"
    ip netns exec "$H" sysctl -qw net.ipv4.ip_forward=1
    ip -n "$H" neigh replace "$peer_gw" lladdr "02:bb:00:00:00:0$([ "$3" == c ] && echo 3 || echo 4)" dev hvx nud permanent
    bridge -n "$H" fdb replace "02:bb:00:00:00:0$([ "$3" == c ] && echo 3 || echo 4)" dev hvx dst "$5" self permanent
    ip -n "$H" route replace "10.213.188.$4/25" via "$peer_gw" dev hvx onlink
}
hand_host c 0 d 128 10.213.190.4
hand_host d 128 c 0 10.213.190.3
ip_hand_d=10.213.188.130
mtu_of() { ip -n "$1" -j link show "$2" | jq '.[0].mtu'; }
echo "MTU: ours container $(mtu_of "$P-c-vx" eth0), vxlan device $(mtu_of "$P-c" cnmvx4195); by hand container $(mtu_of "$P-c-hand" eth0), device $(mtu_of "$P-c" hvx); underlay u0 $(mtu_of "$P-c" u0)"
# The two paths differ in nothing but the VNI, addresses and MACs, else the comparison says little.
attrs() { ip -n "$1" -j -d link show "$2" | jq -c '.[0] | {mtu, txqlen, gso_max_size, gso_max_segs, gro_max_size, tso_max_size, info: (.linkinfo.info_data // {} | del(.id, .bridge_id, .root_id, .gc_timer, .hello_timer, .tcn_timer, .topology_change_timer))}'; }
for pair in "$P-c cnmvx4195 $P-c hvx vxlan-device" "$P-c-vx eth0 $P-c-hand eth0 container-veth" "$P-c vxb-bt $P-c hbr bridge"; do
    read -r n1 d1 n2 d2 what <<<"$pair"
    a1=$(attrs "$n1" "$d1") a2=$(attrs "$n2" "$d2")
    if [ "$a1" == "$a2" ]; then echo "$what: the same attributes, ours and by hand (VNI, addresses and MACs aside)"; else echo "$what DIFFERS: ours $a1, by hand $a2"; fi
done
for pair in "$P-c-vx $ip_d ours" "$P-c-hand $ip_hand_d by-hand"; do
    read -r ns dst what <<<"$pair"
    ip netns exec "$ns" ping -c 1 -W 2 -M do -s 1422 "$dst" >/dev/null || { echo "vxlan.sh: $what: c cannot reach $dst at the overlay MTU" >&2; exit 1; }
done
for ns in "$P-d-vx" "$P-d-hand"; do
    ip netns exec "$ns" /usr/bin/iperf3 -s -p 5201 >"$WORK/iperf-$ns.log" 2>&1 &
    PIDS+=($!)
done
for ns in "$P-d-vx" "$P-d-hand"; do
    for _ in $(seq 50); do ip netns exec "$ns" ss -Hltn 'sport = :5201' | grep -q . && break; sleep 0.1; done
done
through() { # through <client netns> <server address>: Gbit/s received over $isecs s (the first second omitted)
    ip netns exec "$1" /usr/bin/iperf3 -c "$2" -p 5201 -t "$isecs" -O 1 -J | jq -er '.end.sum_received.bits_per_second / 1e9'
}
# One untimed run each first (neighbour resolution, first connections, caches).
isecs_timed=$isecs isecs=1
through "$P-c-vx" "$ip_d" >/dev/null
through "$P-c-hand" "$ip_hand_d" >/dev/null
isecs=$isecs_timed
ours=() hand=() ratios=()
for r in $(seq "$iruns"); do
    if [ $((r % 2)) == 1 ]; then o=$(through "$P-c-vx" "$ip_d"); h=$(through "$P-c-hand" "$ip_hand_d")
    else h=$(through "$P-c-hand" "$ip_hand_d"); o=$(through "$P-c-vx" "$ip_d"); fi
    ours+=("$o") hand+=("$h") ratios+=("$(awk -v a="$o" -v b="$h" 'BEGIN { printf "%.3f", a / b }')")
done
# Decided while both still run: the rx/tx counters of our device moved, so the traffic was VXLAN.
rx=$(ip -n "$P-d" -s -j link show cnmvx4195 | jq '.[0].stats64.rx.bytes')
[ "$rx" -gt 100000000 ] || { echo "vxlan.sh: our vxlan device on d received only $rx bytes: the traffic did not take the overlay" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
mo=$(median "${ours[@]}") mh=$(median "${hand[@]}")
printf 'TCP throughput c -> d through the overlay, iperf3 %s s x %d interleaved runs, MTU 1450: ours %.2f Gbit/s (%s), by hand %.2f Gbit/s (%s)\n' \
    "$isecs" "$iruns" "$mo" "$(range "${ours[@]}")" "$mh" "$(range "${hand[@]}")"
printf 'ours/by hand: %.2f (paired median %.2f; target >= 0.9); our device on d received %d MB\n' \
    "$(awk -v a="$mo" -v b="$mh" 'BEGIN { print a / b }')" "$(median "${ratios[@]}")" $((rx / 1000000))
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
