#!/usr/bin/env bash
# A dual-stack vxlan network (subnet + subnet6) across three "hosts" (netns h1..h3 on an
# underlay bridge in a fourth, 10.213.196.0/24, one etcd there on ports 23880-23882). IPv6 blocks
# are routed through IPv4 VTEPs. h1 and h2 run `cnm-shim agent`; h3 runs `cnm-shim serve` (the
# Docker API on a socket in the test's temp dir, no dockerd) with its cluster file, which runs the
# agent beside the API. Checks:
#   - pods get an IPv6 address from their host's IPv6 block (and an IPv4 one), the result routes
#     the cluster subnet6 (and subnet);
#   - ping6 and ping across all hosts both ways (h1's ADD came first and learned no block: the
#     agents — serve's on h3 — program the others);
#   - serve registers h3's host lease, answers the plugin API, reconciles (a stale IPv6 route on its
#     vxlan device goes), and stops on SIGTERM removing its socket; `serve --etcd --node --underlay`
#     with no cluster file runs the agent too; an unusable cluster file makes serve exit 1;
#   - `cnm-shim cluster dot` is valid Graphviz (dot -Tsvg) and draws the hosts, blocks and tunnels;
#   - DEL frees every address (used 0 in every block), twice is success.
source "$(dirname "$0")/lib.sh"

VX=$PLUGINS/vxlan
SHIM=$BUILD/cnm-shim/cnm-shim
[ -x "$VX" ] && [ -x "$SHIM" ] || { echo "no $VX or $SHIM" >&2; exit 1; }
command -v dot >/dev/null || { echo "no dot (graphviz: scripts/deps.sh)" >&2; exit 1; }

P=hag-$$
VX_NS=$P VX_NET=10.213.196 VX_ETCD_PORT=23880
source "$(dirname "$0")/vxlan-lib.sh"
HOSTS=(h1 h2 h3)
trap vx_cleanup EXIT

underlay_up
hosts_up
start_etcd || exit 1

DEV=cnmvx4196
CONF='{"cniVersion":"1.0.0","name":"v6net","type":"vxlan","vni":4196,"subnet":"10.213.198.0/23","blockSize":26,"subnet6":"fd00:213:198::/64","blockSize6":122}'
vx() { # vx <host> <COMMAND> <container>: sets OUT and RC
    set +e
    OUT=$(printf '%s' "$CONF" | ip netns exec "$P-$1" env CNI_COMMAND="$2" CNI_CONTAINERID="$1-$3" CNI_NETNS="/var/run/netns/$P-$1-$3" \
        CNI_IFNAME=eth0 CNI_PATH="$PLUGINS" CNM_STATE_DIR="$WORK/$1/state" CNM_CLUSTER_FILE="$WORK/$1/cluster.json" "$VX")
    RC=$?
    set -e
}
shim() { local h=$1; shift; ip netns exec "$P-$h" env CNM_CLUSTER_FILE="$WORK/$h/cluster.json" "$SHIM" --state-dir "$WORK/$h/state" "$@"; }
start_serve() {
    ip netns exec "$P-$1" env CNM_CLUSTER_FILE="$WORK/$1/cluster.json" "$SHIM" serve --socket "$WORK/$1/cnm.sock" \
        --state-dir "$WORK/$1/state" --resync 2 >>"$WORK/$1/agent.log" 2>&1 &
    AGENT[$1]=$!
}
within() {
    local n=$(($1 * 10)); shift
    for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
    return 1
}
check() { # check <description> <seconds> <command…>
    local d=$1; shift
    if within "$@"; then pass "$d"; else fail "$d"; fi
}
pings() { ip netns exec "$P-$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }
pings6() { ip netns exec "$P-$1" ping -6 -c 1 -W 1 "$2" >/dev/null 2>&1; }
# (grep without -q: it reads all of ip's output, so pipefail never sees ip die of SIGPIPE)
no_route6() { ! ip -n "$P-$1" -6 route show dev $DEV | grep "^$2 " >/dev/null; }
host_state() { shim h1 cluster hosts --json | jq -r --arg n "$1" '.[] | select(.node == $n) | .lease'; }
# (a function, so `check` asks again on every try; "$(host_state …)" as an argument is asked once)
host_is() { test "$(host_state "$1")" == "$2"; }
in_net() { python3 -c 'import ipaddress,sys; sys.exit(0 if ipaddress.ip_address(sys.argv[1]) in ipaddress.ip_network(sys.argv[2]) else 1)' "$1" "$2"; }

start_agent h1
start_agent h2
start_serve h3
check "serve on h3 listens on its socket" 5 test -S "$WORK/h3/cnm.sock"
expect_eq "serve on h3 answers the plugin API" local \
    "$(shim h3 call --socket "$WORK/h3/cnm.sock" NetworkDriver.GetCapabilities 2>&1 | jq -r .Scope 2>&1)"
check "serve on h3 registered its host lease (cluster hosts: alive)" 5 host_is node-h3 alive
expect_eq "…with its VTEP" 10.213.196.3 "$(shim h1 cluster hosts --json | jq -r '.[] | select(.node == "node-h3") | .vtep')"

declare -A IP4 IP6
for h in h1 h2 h3; do
    ns_add "$P-$h-c1"
    vx "$h" ADD c1
    [ "$RC" -eq 0 ] || { fail "$h ADD c1: $OUT"; continue; }
    IP4[$h]=$(jq -r '[.ips[].address | select(contains(".") and (contains(":") | not))][0] | split("/")[0]' <<<"$OUT")
    IP6[$h]=$(jq -r '[.ips[].address | select(contains(":"))][0] | split("/")[0]' <<<"$OUT")
    block6=$(shim "$h" cluster blocks --json | jq -r --arg n "node-$h" '.[] | select(.node == $n and (.block | contains(":"))) | .block')
    if [ -n "${IP6[$h]}" ] && [ "${IP6[$h]}" != null ] && [ -n "$block6" ] && in_net "${IP6[$h]}" "$block6"; then
        pass "$h/c1 has ${IP6[$h]}, in its host's IPv6 block $block6"
    else
        fail "$h/c1's IPv6 address '${IP6[$h]}' is not in its host's IPv6 block '$block6': $OUT"
    fi
    expect_eq "$h's IPv6 block is a /122 of the cluster subnet6" 1 "$(in_net "${block6%/*}" fd00:213:198::/64 && [ "${block6#*/}" = 122 ] && echo 1)"
    expect_eq "$h: the result routes the cluster subnet6" fd00:213:198::/64 "$(jq -r '.routes[].dst | select(. == "fd00:213:198::/64")' <<<"$OUT")"
    expect_eq "$h: the result routes the cluster subnet" 10.213.198.0/23 "$(jq -r '.routes[].dst | select(. == "10.213.198.0/23")' <<<"$OUT")"
    expect_eq "$h/c1 has the IPv6 address on eth0" 1 "$(ip -n "$P-$h-c1" -6 -j addr show dev eth0 | jq --arg a "${IP6[$h]}" '[.[].addr_info[] | select(.local == $a)] | length')"
done

for a in h1 h2 h3; do
    for b in h1 h2 h3; do
        [ "$a" != "$b" ] || continue
        check "$a/c1 ping6s $b/c1 (${IP6[$b]}) within 3 s" 3 pings6 "$a-c1" "${IP6[$b]}"
        check "$a/c1 pings $b/c1 (${IP4[$b]}) within 3 s" 3 pings "$a-c1" "${IP4[$b]}"
    done
done
for h in h1 h2 h3; do
    expect_eq "$h routes the other hosts' IPv6 blocks on $DEV, onlink via their gateways" 2 \
        "$(ip -n "$P-$h" -6 -j route show dev $DEV | jq '[.[] | select(.gateway != null and (.flags | index("onlink")))] | length')"
done
expect_eq "the IPv6 gateways of h2's block resolve to h2's VTEP MAC on h1" "02:0a:d5:c4:02:00" \
    "$(ip -n "$P-h1" -6 -j neigh show dev $DEV | jq -r '[.[] | select(.state | index("PERMANENT"))] | map(.lladdr) | unique | map(select(. == "02:0a:d5:c4:02:00")) | .[0]')"

# ---- serve's agent reconciles like `cnm-shim agent` ----
ip -n "$P-h3" -6 route add fd00:213:198:0:ffff::/122 via fd00:213:198:0:ffff::1 dev $DEV onlink || fail "cannot add a stale route on h3"
expect_eq "a stale IPv6 route is on h3's $DEV" 1 "$(no_route6 h3 fd00:213:198:0:ffff::/122 || echo 1)"
check "serve on h3 removes an IPv6 route no block justifies (resync 2 s)" 6 no_route6 h3 fd00:213:198:0:ffff::/122
expect_eq "…and keeps the kernel's fe80::/64 on $DEV" fe80::/64 "$(ip -n "$P-h3" -6 -j route show dev $DEV | jq -r '.[] | select(.dst == "fe80::/64") | .dst')"
expect_eq "h3's agent log has no error" "" "$(grep -E 'cannot|broke|error' "$WORK/h3/agent.log" || true)"

# ---- cluster dot ----
shim h1 cluster dot >"$WORK/cluster.dot" 2>"$WORK/dot.err" || fail "cluster dot: $(cat "$WORK/dot.err")"
if dot -Tsvg "$WORK/cluster.dot" -o "$WORK/cluster.svg" 2>"$WORK/dot-svg.err" && [ ! -s "$WORK/dot-svg.err" ]; then
    pass "cluster dot is valid Graphviz (dot -Tsvg)"
else
    fail "dot -Tsvg rejects cluster dot: $(cat "$WORK/dot-svg.err"); $(cat "$WORK/cluster.dot")"
fi
dot -Tjson "$WORK/cluster.dot" >"$WORK/cluster.json" 2>/dev/null || true
expect_eq "cluster dot draws the three hosts" "host:node-h1 host:node-h2 host:node-h3" \
    "$(jq -r '[.objects[].name | select(startswith("host:"))] | sort | join(" ")' "$WORK/cluster.json")"
expect_eq "…six blocks (an IPv4 and an IPv6 one per host)" 6 "$(jq '[.objects[].name | select(startswith("block:"))] | length' "$WORK/cluster.json")"
expect_eq "…and h1's two tunnels, each labelled with the IPv4 and the IPv6 block routed" 2 \
    "$(grep -c '"host:node-h1" -> "host:node-h[23]" \[style=bold.*/26\\n.*/122' "$WORK/cluster.dot")"

# ---- DEL frees ----
for h in h1 h2 h3; do
    vx "$h" DEL c1
    [ "$RC" -eq 0 ] || fail "$h DEL c1: $OUT"
    vx "$h" DEL c1
    [ "$RC" -eq 0 ] || fail "$h DEL c1 again: $OUT"
    expect_eq "$h: after DEL its blocks have no address used" "0 0" \
        "$(shim "$h" cluster blocks --json | jq -r --arg n "node-$h" '[.[] | select(.node == $n) | .used] | map(tostring) | join(" ")')"
done
expect_eq "no endpoint left on h3" 0 "$(shim h3 list --json | jq '[.networks[].endpoints[]] | length')"

# ---- serve stops cleanly, and its agent revokes the lease ----
if stop_agent h3; then pass "serve on h3 exits 0 on SIGTERM"; else fail "serve on h3 exited $? on SIGTERM: $(tail -5 "$WORK/h3/agent.log")"; fi
expect_eq "…and removed its socket" no "$([ -e "$WORK/h3/cnm.sock" ] && echo yes || echo no)"
check "…and its lease went with it (hosts: expired)" 3 host_is node-h3 expired

# ---- serve with --etcd and no cluster file runs the agent too; an unusable cluster file is an error ----
ip netns exec "$P-h3" env CNM_CLUSTER_FILE="$WORK/none.json" "$SHIM" serve --socket "$WORK/h3/cnm2.sock" --state-dir "$WORK/h3/state" \
    --etcd "$ETCD_URL" --node node-h3b --underlay u0 >>"$WORK/h3/serve2.log" 2>&1 &
AGENT[h3]=$!
check "serve --etcd … --node node-h3b --underlay u0 registers that node's lease" 5 host_is node-h3b alive
if stop_agent h3; then pass "…and exits 0 on SIGTERM"; else fail "serve --etcd exited $? on SIGTERM"; fi
echo '{"etcd": ' >"$WORK/bad.json"
set +e
err=$(ip netns exec "$P-h3" env CNM_CLUSTER_FILE="$WORK/bad.json" timeout 10 "$SHIM" serve --socket "$WORK/h3/cnm3.sock" --state-dir "$WORK/h3/state" 2>&1)
rc=$?
set -e
expect_eq "serve with an unusable cluster file exits 1" 1 "$rc"
expect_eq "…naming the file" 1 "$(grep -c "bad.json" <<<"$err")"
expect_eq "…without listening" no "$([ -e "$WORK/h3/cnm3.sock" ] && echo yes || echo no)"
stop_agent h1 || true
stop_agent h2 || true
finish
