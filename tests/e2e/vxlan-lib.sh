# The multi-host setup the vxlan tiers share: an underlay netns ($U) holding a bridge and etcd's
# address (<net>.250), one netns per "host" joined to it by a veth (u0 in the host, <net>.<i>/24),
# each host with its own cluster file ($WORK/<host>/cluster.json, node "node-<host>"), and one
# etcd-server started in the underlay netns with its data dir under $WORK.
# Set before sourcing (after lib.sh): VX_NS (netns prefix: hosts are $VX_NS-<host>, the underlay
# $VX_NS-u), VX_NET (the underlay /24's three first octets), VX_ETCD_PORT (client port; the next
# two are the peer and metrics ports), and the host names in HOSTS for hosts_up. The test's trap is
# vx_cleanup (or calls it last): the agents in AGENT (host → PID), etcd, then lib.sh's cleanup.

ETCD_BIN=/usr/bin/etcd
[ -x "$ETCD_BIN" ] || { echo "skip: no $ETCD_BIN (Debian's etcd-server)"; exit 77; }
U=$VX_NS-u
ETCD_IP=$VX_NET.250
ETCD_URL=http://$ETCD_IP:$VX_ETCD_PORT
ETCD_PID=""

declare -A AGENT

ns_add() { echo "$1" >>"$WORK/netns"; ip netns add "$1"; ip -n "$1" link set lo up; }

underlay_up() {
    ns_add "$U"
    ip -n "$U" link add ubr type bridge
    ip -n "$U" link set ubr up
    ip -n "$U" link add ue type veth peer name ue-br
    ip -n "$U" link set ue-br master ubr up
    ip -n "$U" addr add "$ETCD_IP/24" dev ue
    ip -n "$U" link set ue up
}

host_up() { # host_up <host> <i> [etcd timeout ms]: netns $VX_NS-<host>, u0 = $VX_NET.<i>/24
    local h=$1 i=$2 timeout=${3:-3000}
    ns_add "$VX_NS-$h"
    ip -n "$U" link add "u$h" type veth peer name u0 netns "$VX_NS-$h"
    ip -n "$U" link set "u$h" master ubr up
    ip -n "$VX_NS-$h" addr add "$VX_NET.$i/24" dev u0
    ip -n "$VX_NS-$h" link set u0 up
    mkdir -p "$WORK/$h"
    jq -n --arg u "$ETCD_URL" --arg n "node-$h" --argjson t "$timeout" '{etcd: [$u], node: $n, underlay: "u0", timeoutMs: $t}' \
        >"$WORK/$h/cluster.json"
}

hosts_up() { # hosts_up [etcd timeout ms]: host_up for each of HOSTS, numbered from 1
    local h i=0
    for h in "${HOSTS[@]}"; do
        i=$((i + 1))
        host_up "$h" "$i" "${1:-3000}"
    done
}

# The cluster agent of a host (cnm-shim agent, its log in $WORK/<host>/agent.log); stop_agent
# returns its exit status.
start_agent() {
    ip netns exec "$VX_NS-$1" env CNM_CLUSTER_FILE="$WORK/$1/cluster.json" "$SHIM" agent --state-dir "$WORK/$1/state" --resync 2 \
        >>"$WORK/$1/agent.log" 2>&1 &
    AGENT[$1]=$!
}
stop_agent() {
    local rc=0
    kill -TERM "${AGENT[$1]}"
    wait "${AGENT[$1]}" 2>/dev/null || rc=$?
    unset "AGENT[$1]"
    return "$rc"
}

vx_cleanup() {
    local pid
    for pid in "${AGENT[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    etcd_kill
    cleanup
}

start_etcd() { # (again after stop_etcd: the same member and data dir)
    ip netns exec "$U" "$ETCD_BIN" --name vx --data-dir "$WORK/etcd" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://$ETCD_IP:$((VX_ETCD_PORT + 1))" --initial-advertise-peer-urls "http://$ETCD_IP:$((VX_ETCD_PORT + 1))" \
        --initial-cluster "vx=http://$ETCD_IP:$((VX_ETCD_PORT + 1))" --initial-cluster-state new \
        --listen-metrics-urls "http://$ETCD_IP:$((VX_ETCD_PORT + 2))" --heartbeat-interval 10 --election-timeout 100 \
        --log-level error >>"$WORK/etcd.log" 2>&1 &
    ETCD_PID=$!
    local _
    for _ in $(seq 100); do
        ip netns exec "$U" curl -sf "$ETCD_URL/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "etcd did not start:" >&2; cat "$WORK/etcd.log" >&2; return 1
}
stop_etcd() { kill -9 "$ETCD_PID"; wait "$ETCD_PID" 2>/dev/null || true; ETCD_PID=""; }
etcd_kill() { [ -z "$ETCD_PID" ] || stop_etcd 2>/dev/null || true; }
