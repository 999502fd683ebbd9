#!/usr/bin/env bash
# cnm-shim with a real Docker engine (docker.io 20.10, started here in a netns of its own), and the
# flagship case: one Network used by Docker containers through the shim and by a CNI attachment
# through the `bridge` binary at the same time — one pool, distinct addresses, they ping each
# other, `cnm-shim list` shows both, removing either side leaves the other working. Between the
# steps the shim is restarted and dockerd is restarted; at the end nothing is left: no lease, no
# record, no link, no nftables element.
#
# Topology: dockerd, the shim and the bridge all live in netns H (dockerd's "host"); the CNI pod is
# netns POD; a client netns CL is wired to H to reach published ports. Nothing touches the machine's
# own network namespace.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker-lib.sh"
source "$(dirname "$0")/shim-lib.sh"
# The CNI side is the example in conf/docker (its name and subnet are the Network's).
EXAMPLE=$(dirname "$0")/../../conf/docker/shared.conflist
CONF=$(jq -c '.plugins[0] + {cniVersion, name}' "$EXAMPLE")
NET=$(jq -r .name "$EXAMPLE")
SUBNET=$(jq -r '.plugins[0].ipam.subnet' "$EXAMPLE")

docker_start
docker_image
shim_start
H=$DOCKER_NETNS
expect_eq "the socket is 0600" "600" "$(stat -c %a "$SOCK")"

# ---- hostile input against the live daemon: clear errors, no state change, still serving ----
before=$(state_snapshot)
r=$(call NetworkDriver.CreateNetwork '{"NetworkID": 5')
expect_eq "malformed JSON is a 500 with Err" "500" "${r##* }"
expect_eq "…and the Err names the decode error" "1" "$(grep -c 'error decoding' <<<"$r")"
r=$(call NetworkDriver.CreateNetwork '{"NetworkID": 5}')
expect_eq "wrong type is a 500" "500" "${r##* }"
r=$(call NetworkDriver.CreateEndpoint '{"NetworkID":"0123abc","EndpointID":"e","Interface":{}}')
expect_eq "CreateEndpoint on an unknown network id is a 500" "500" "${r##* }"
r=$(call NetworkDriver.DeleteNetwork '{"NetworkID":"0123abc"}')
expect_eq "DeleteNetwork of an unknown id succeeds" "{} 200" "$r"
r=$(call NetworkDriver.Frobnicate '{}')
expect_eq "unknown method is a 404" "404" "${r##* }"
head -c 2000000 /dev/zero | tr '\0' ' ' >"$WORK/big"
r=$(curl -s --max-time 10 --unix-socket "$SOCK" -XPOST http://plugin/NetworkDriver.Join --data-binary @"$WORK/big" -w ' %{http_code}')
expect_eq "a 2 MB body is refused with 413" "413" "${r##* }"
# three clients that trickle their bodies do not stop others from being served
for i in 1 2 3; do
    head -c 3000 /dev/zero | tr '\0' ' ' >"$WORK/slow"
    curl -s --max-time 20 --limit-rate 100 --unix-socket "$SOCK" -XPOST http://plugin/NetworkDriver.Join --data-binary @"$WORK/slow" >/dev/null 2>&1 &
    PIDS+=("$!")
done
sleep 0.5
t0=$(date +%s%N)
ok=0
for i in $(seq 20); do [ "$(call Plugin.Activate)" == '{"Implements":["NetworkDriver","IpamDriver"]} 200' ] && ok=$((ok + 1)); done
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "20 calls served while 3 slow clients are connected" "20" "$ok"
CHECKS=$((CHECKS + 1)); if [ "$ms" -lt 3000 ]; then pass "…in ${ms} ms"; else fail "20 calls took ${ms} ms"; fi
expect_eq "hostile input changed no state" "$before" "$(state_snapshot)"

expect_eq "the slow clients were answered or dropped, the shim lives" '{"Implements":["NetworkDriver","IpamDriver"]} 200' "$(call Plugin.Activate)"

# ---- network create, binding the Docker network to the CNM network "$NET" ----
calls_before=$(grep -c 'IpamDriver.RequestAddress' "$WORK/shim.log" || true)
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet "$SUBNET" -o cnm.network="$NET" -o bridge=cnmflag0 -o mtu=1400 -o com.docker.network.bridge.enable_ip_masquerade=false flagnet 2>&1) || fail "network create: $out"
NID=$(dk network inspect -f '{{.Id}}' flagnet)
expect_eq "network $NET is recorded as Docker's, bound to its id" "docker $NID" "$(listing | jq -r --arg n "$NET" '.networks[] | select(.name==$n) | "\(.frontend) \(.dockerIDs[0])"')"
expect_eq "the bridge exists in dockerd's netns with the gateway" "10.213.70.1/24" "$(h ip -4 -o addr show cnmflag0 | awk '{print $4}')"
expect_eq "…which RequestPool named: Docker asked for no gateway address" "$calls_before" "$(grep -c 'IpamDriver.RequestAddress' "$WORK/shim.log" || true)"
expect_eq "…and MTU 1400" "1400" "$(h cat /sys/class/net/cnmflag0/mtu)"
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.62.0/24 -o cnm.network="$NET" bad 2>&1) && fail "a second subnet for the network was accepted"
expect_eq "a disagreeing subnet is refused, naming both" "1" "$(grep -c '10.213.70.0/24.*10.213.62.0/24' <<<"$out")"
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet "$SUBNET" -o cnm.network="$NET" -o bridge=other0 bad 2>&1) && fail "a disagreeing bridge was accepted"
expect_eq "a disagreeing key is refused, naming both values" "1" "$(grep -c 'cnmflag0.*other0' <<<"$out")"
expect_eq "the refused creates left no pool behind" "10.213.70.0_24" "$(ls "$CNM_STATE_DIR/ipam/local" | tr '\n' ' ' | xargs)"
# --gateway: Docker asks for it anyway; the bridge and the containers get it, and .1 is an address.
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.79.0/24 --gateway 10.213.79.254 -o bridge=cnmgw0 gwnet 2>&1) || fail "network create --gateway: $out"
expect_eq "a --gateway network's bridge has that gateway" "10.213.79.254/24" "$(h ip -4 -o addr show cnmgw0 | awk '{print $4}')"
expect_eq "…and Docker reports it" "10.213.79.254" "$(dk network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' gwnet)"
dk run --rm --network gwnet cnm-bb:1 sh -c 'ip -4 -o addr show eth0; ip route' >"$WORK/gw.out" 2>&1 || fail "a container on the --gateway network: $(cat "$WORK/gw.out")"
expect_eq "its container gets the first host, routed via the --gateway" "10.213.79.1/24 default via 10.213.79.254" \
    "$(awk '/inet /{print $4} /^default/{print $1, $2, $3}' "$WORK/gw.out" | xargs)"
dk network rm gwnet >/dev/null || fail "network rm gwnet"
expect_eq "…and goes: no bridge, no pool record, no lease (the cursor stays, as on every pool)" "cursor" \
    "$(h ip -o link show cnmgw0 2>/dev/null; ls -A "$CNM_STATE_DIR/ipam/local/10.213.79.0_24" | grep -v '^\.lock$' | xargs)"

# ---- containers: plain, --ip and --mac-address ----
dk run -d --name c1 --network flagnet cnm-bb:1 sleep 600 >/dev/null
dk run -d --name c2 --network flagnet --ip 10.213.70.77 --mac-address 02:42:0a:d5:3c:4d cnm-bb:1 sleep 600 >/dev/null
C1=$(ip_of c1 flagnet)
expect_eq "c1 got the first address after the gateway" "10.213.70.2" "$C1"
expect_eq "c2 got its --ip" "10.213.70.77/24" "$(dk exec c2 ip -4 -o addr show eth0 | awk '{print $4}')"
expect_eq "c2 kept its --mac-address" "02:42:0a:d5:3c:4d" "$(dk exec c2 cat /sys/class/net/eth0/address)"
expect_eq "c2's eth0 has the network's MTU" "1400" "$(dk exec c2 cat /sys/class/net/eth0/mtu)"
expect_eq "c1's default route is the bridge" "default via 10.213.70.1 dev eth0" "$(dk exec c1 ip route | grep '^default' | xargs)"
dk exec c1 ping -c1 -W2 10.213.70.77 >/dev/null && pass "c1 pings c2" || fail "c1 cannot ping c2"
CHECKS=$((CHECKS + 1))

# ---- shim restart between steps: nothing is in memory ----
shim_stop
expect_eq "SIGTERM removes the socket" "gone" "$([ -e "$SOCK" ] && echo left || echo gone)"
shim_start
kill -KILL "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null || true; SHIM_PID=""
expect_eq "SIGKILL leaves the socket behind" "left" "$([ -S "$SOCK" ] && echo left || echo gone)"
shim_start
expect_eq "a new shim replaces the stale socket and serves" '{"Implements":["NetworkDriver","IpamDriver"]} 200' "$(call Plugin.Activate)"
out=$(timeout 60 "$DOCKER_BIN" run --rm --network flagnet cnm-bb:1 ip -4 -o addr show eth0 2>&1) || fail "run after shim restart: $out"
expect_eq "a container starts after a shim restart" "1" "$(grep -c '10.213.70.3/24' <<<"$out")"

# ---- the flagship: a CNI attachment on the same Network ----
POD=$(new_netns pod)
cni "$PLUGINS/bridge" ADD pod1 "/run/netns/$POD" eth0 "$CONF" nsenter --net="/run/netns/$H"
expect_eq "CNI ADD on the Docker-made network succeeds" "0" "$RC"
PODIP=$(jq -r '.ips[0].address' <<<"$OUT")
expect_eq "the pod is on the network's bridge (inherited, the conf names none)" "cnmflag0" "$(jq -r '.interfaces[0].name' <<<"$OUT")"
CHECKS=$((CHECKS + 1))
case "$PODIP" in 10.213.70.2/24 | 10.213.70.77/24 | 10.213.70.1/24) fail "pod got a Docker address or the gateway: $PODIP" ;; 10.213.70.*) pass "pod got a distinct address $PODIP" ;; *) fail "pod address $PODIP" ;; esac
cni "$PLUGINS/bridge" ADD podx "/run/netns/$POD" eth1 "$(jq -c '. + {bridge: "other0", mtu: 9000}' <<<"$CONF")" nsenter --net="/run/netns/$H"
expect_eq "a conf that disagrees with the network's keys is refused (code 7), naming both values" "7 1" "$(jq -r .code <<<"$OUT") $(jq -r .msg <<<"$OUT" | grep -c 'cnmflag0.*other0')"
# The MTU is one attachment's key: Docker's -o mtu is its endpoints', a conf says its own (none: 1500).
expect_eq "the pod's MTU is its conf's, not imposed by the network" "1500" "$(ip netns exec "$POD" cat /sys/class/net/eth0/mtu)"
ip netns exec "$POD" ping -c1 -W2 "$C1" >/dev/null && pass "pod pings Docker's c1" || fail "pod cannot ping c1"
dk exec c2 ping -c1 -W2 "${PODIP%/*}" >/dev/null && pass "Docker's c2 pings the pod" || fail "c2 cannot ping the pod"
CHECKS=$((CHECKS + 2))
L=$(listing)
expect_eq "list shows the network with 1 CNI and 2 Docker endpoints" "1 2" "$(jq -r --arg n "$NET" '.networks[] | select(.name==$n) | [(.endpoints | map(select(.frontend=="cni")) | length), (.endpoints | map(select(.frontend=="docker")) | length)] | join(" ")' <<<"$L")"
table=$(shim list)
expect_eq "the table lists the pod as cni" "1" "$(grep -c "^$NET  *cni  *pod1" <<<"$table")"
dot=$(shim dot)
expect_eq "dot has network -> endpoint -> sandbox edges" "1" "$(grep -c "\"ep:$NET/pod1@eth0\" -> \"sb:pod1\"" <<<"$dot")"
expect_eq "inspect finds c1's endpoint by id prefix" "10.213.70.2/24" "$(shim inspect "$NET" "$(dk inspect -f "{{(index .NetworkSettings.Networks \"flagnet\").EndpointID}}" c1 | cut -c1-12)" | jq -r '.addresses[0].address')"

# ---- published ports, reached from a client netns wired to H ----
CL=$(new_netns client)
ip link add clh0 netns "$H" type veth peer name cl0 netns "$CL"
h ip addr add 10.213.61.1/24 dev clh0; h ip link set clh0 up
ip -n "$CL" addr add 10.213.61.2/24 dev cl0; ip -n "$CL" link set cl0 up
dk run -d --name web --network flagnet -p 10.213.61.1:18080:8080 -p 18081:8080 cnm-bb:1 \
    sh -c 'mkdir -p /www && echo hello-web >/www/index.html && exec httpd -f -p 8080 -h /www' >/dev/null
sleep 0.5
expect_eq "-p HOSTIP:18080 reaches the container" "hello-web" "$(web_get http://10.213.61.1:18080/index.html)"
expect_eq "-p 18081 (any local address) reaches the container" "hello-web" "$(web_get http://10.213.61.1:18081/index.html)"
out=$(dk run -d --name noport --network flagnet -p 8080 cnm-bb:1 sleep 60 2>&1) && fail "-p without a host port was silently accepted"
expect_eq "-p without a host port is refused, not ignored" "1" "$(grep -c 'explicit host ports' <<<"$out")"
dk rm -f noport >/dev/null 2>&1 || true
dk rm -f web >/dev/null
expect_eq "rm removes the published ports" "" "$(h nft list map ip cnm anyports 2>/dev/null | grep -o '18081' || true)"
expect_eq "…which no longer answer" "" "$(web_get http://10.213.61.1:18081/index.html)"

# ---- disconnect / connect ----
dk network disconnect flagnet c2
expect_eq "disconnect removes c2's interface" "lo" "$(dk exec c2 ls /sys/class/net | xargs)"
expect_eq "…and frees its address" "no" "$([ -e "$CNM_STATE_DIR/ipam/local/10.213.70.0_24/leases/10.213.70.77" ] && echo yes || echo no)"
dk network connect flagnet c2
C2=$(ip_of c2 flagnet)
CHECKS=$((CHECKS + 1)); [ -n "$C2" ] && [ "$C2" != "10.213.70.77" ] && pass "connect gives c2 a new address $C2" || fail "connect: c2 has [$C2]"
# Docker names it eth1 now (the next free index): read whichever eth it is
expect_eq "…and keeps its MAC" "02:42:0a:d5:3c:4d" "$(dk exec c2 sh -c 'cat /sys/class/net/eth*/address')"

# ---- dockerd restart between steps ----
expect_eq "before the restart Docker holds two leases (c1, c2), the pod one" "2 1" "$(docker_leases) $(cni_leases)"
docker_restart
expect_eq "dockerd's shutdown released the stopped containers' addresses" "0" "$(docker_leases)"
dk start c1 c2 >/dev/null
C1=$(ip_of c1 flagnet); C2=$(ip_of c2 flagnet)
dk exec c1 ping -c1 -W2 "$C2" >/dev/null && pass "after a dockerd restart c1 pings c2" || fail "after restart c1 cannot ping c2"
ip netns exec "$POD" ping -c1 -W2 "$C1" >/dev/null && pass "…and the pod pings c1" || fail "after restart the pod cannot ping c1"
CHECKS=$((CHECKS + 2))

# ---- gc: a CNI attachment whose netns vanished without a DEL ----
# With a MAC spoof check: the kernel takes the veth with the netns, but not the nftables element
# that names it; gc must remove that too (before gc was the lifecycle's forget, it left it).
POD2=$(new_netns pod2)
cni "$PLUGINS/bridge" ADD pod2 "/run/netns/$POD2" eth0 "$(jq -c '. + {macspoofchk: true}' <<<"$CONF")" nsenter --net="/run/netns/$H"
expect_eq "second pod ADD (macspoofchk)" "0" "$RC"
POD2MAC=$(jq -r '.interfaces[2].mac' <<<"$OUT")
guards() { h nft list set bridge cnm allowed 2>/dev/null | grep -c "$POD2MAC" || true; }
expect_eq "…its MAC is in the spoof check's allowed set" "1" "$(guards)"
ip netns del "$POD2"
expect_eq "the netns is gone, its allowed element is not" "1" "$(guards)"
out=$(shim gc --json)
expect_eq "gc removes exactly the orphaned pod" "pod2" "$(jq -r '[.removed[].endpoint] | join(",")' <<<"$out")"
expect_eq "…and frees its lease (1 CNI lease left)" "1" "$(cni_leases)"
expect_eq "…and removes its MAC spoof check element" "0" "$(guards)"

# ---- removing either side leaves the other working ----
dk rm -f c1 >/dev/null
ip netns exec "$POD" ping -c1 -W2 "$C2" >/dev/null && pass "Docker's c1 removed: the pod still pings c2" || fail "pod lost c2 after c1 went"
CHECKS=$((CHECKS + 1))
cni "$PLUGINS/bridge" DEL pod1 "/run/netns/$POD" eth0 "$CONF" nsenter --net="/run/netns/$H"
expect_eq "CNI DEL of the pod" "0" "$RC"
dk run -d --name c3 --network flagnet cnm-bb:1 sleep 600 >/dev/null
dk exec c2 ping -c1 -W2 "$(ip_of c3 flagnet)" >/dev/null && pass "pod removed: Docker's c2 pings a new c3" || fail "c2 cannot ping c3 after the pod went"
CHECKS=$((CHECKS + 1))

# ---- CNI first: `docker network create` without --ipam-opt gets the CNI network's pool ----
# (found through the subnet index: the shim reads that network's record, not every network's)
CONF2=$(jq -c '. + {name: "cnifirst", bridge: "cnmcf0", ipam: {type: "ipam", subnet: "10.213.71.0/24"}}' <<<"$CONF")
cni "$PLUGINS/bridge" ADD pod2 "/run/netns/$POD" eth0 "$CONF2" nsenter --net="/run/netns/$H"
expect_eq "CNI ADD on a network of its own" "0" "$RC"
POD2IP=$(jq -r '.ips[0].address' <<<"$OUT")
expect_eq "…which the subnet index names" "cnifirst" "$(ls "$CNM_STATE_DIR/subnets/10.213.71.0_24" 2>&1)"
out=$(dk network create -d "$P" --ipam-driver "$P" --subnet 10.213.71.0/24 -o cnm.network=cnifirst cnifirst 2>&1) || fail "network create on the CNI network's subnet: $out"
dk run -d --name c4 --network cnifirst cnm-bb:1 sleep 600 >/dev/null
C4=$(ip_of c4 cnifirst)
expect_eq "Docker's address is leased in the CNI network's pool, beside the pod's" "2" \
    "$(find "$CNM_STATE_DIR/ipam/cni:cnifirst/10.213.71.0_24/leases" -type f ! -name '.spare-*' 2>/dev/null | wc -l)"
expect_eq "…and Docker got no pool of its own for that subnet" "no" "$([ -e "$CNM_STATE_DIR/ipam/local/10.213.71.0_24" ] && echo yes || echo no)"
CHECKS=$((CHECKS + 2))
case "$C4" in "${POD2IP%/*}" | 10.213.71.1) fail "c4 got the pod's address or the gateway: $C4" ;; 10.213.71.*) pass "c4 got a distinct address $C4" ;; *) fail "c4 address $C4" ;; esac
dk exec c4 ping -c1 -W2 "${POD2IP%/*}" >/dev/null && pass "Docker's c4 pings the pod of the CNI network" || fail "c4 cannot ping the pod at $POD2IP"
dk rm -f c4 >/dev/null
dk network rm cnifirst >/dev/null
cni "$PLUGINS/bridge" DEL pod2 "/run/netns/$POD" eth0 "$CONF2" nsenter --net="/run/netns/$H"
expect_eq "CNI DEL of its last endpoint" "0" "$RC"
expect_eq "…removes the network and its index entry" "no no" \
    "$([ -e "$CNM_STATE_DIR/networks/cnifirst" ] && echo yes || echo no) $([ -e "$CNM_STATE_DIR/subnets/10.213.71.0_24" ] && echo yes || echo no)"
h ip link del cnmcf0 2>/dev/null || true # the bridge stays after a CNI DEL, as the reference leaves it

# ---- teardown: nothing leaks ----
dk rm -f c2 c3 >/dev/null
dk network rm flagnet >/dev/null
expect_eq "no lease left" "0" "$(lease_count)"
expect_eq "no network record left" "0" "$(listing | jq '.networks | length')"
# Pools keep their round-robin cursor on purpose (a pool made again goes on where it was).
expect_eq "no state document left but the pools' cursors" "./ipam/cni:cnifirst/10.213.71.0_24/cursor ./ipam/local/10.213.70.0_24/cursor ./ipam/local/10.213.79.0_24/cursor" "$(state_snapshot | awk '{print $2}' | xargs)"
expect_eq "the bridge is gone" "no" "$(h ip link show cnmflag0 >/dev/null 2>&1 && echo yes || echo no)"
expect_eq "no link left in H but lo and the client wire" "clh0 lo" "$(h ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | xargs)"
expect_eq "no masquerade or port element left" "" "$(h nft list ruleset 2>/dev/null | grep -A1 'elements' || true)"
shim_stop
finish
