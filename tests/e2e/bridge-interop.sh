#!/usr/bin/env bash
# Interop of our `bridge`: with the reference host-local as delegated IPAM; in a chain
# bridge → reference tuning → reference portmap with prevResult threaded through ADD, CHECK and
# DEL, as libcni runs a conflist (in order for ADD/CHECK, reverse for DEL).
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
run_in_host() { # <plugin> <cmd> <id> <netns> <conf>; sets OUT, RC
    set +e
    OUT=$(printf '%s' "$5" | ip netns exec "$HOST" env CNI_COMMAND="$2" CNI_CONTAINERID="$3" CNI_NETNS="$4" CNI_IFNAME=eth0 \
        CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$1")
    RC=$?
    set -e
}

# Our bridge + the reference host-local.
C1=$(new_netns h1); C2=$(new_netns h2)
conf="{\"cniVersion\":\"1.0.0\",\"name\":\"hlnet\",\"type\":\"bridge\",\"bridge\":\"cnmhl0\",\"isGateway\":true,
  \"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$WORK/host-local\",\"ranges\":[[{\"subnet\":\"10.213.120.0/24\"}]]}}"
for c in "$C1" "$C2"; do
    run_in_host "$PLUGINS/bridge" ADD "id-$c" "/run/netns/$c" "$conf"
    expect_eq "bridge + host-local ADD" 0 "$RC"
    declare "R_${c//-/_}=$OUT"
done
r1_var="R_${C1//-/_}"; r2_var="R_${C2//-/_}"
a2=$(jq -r '.ips[0].address' <<<"${!r2_var}" | cut -d/ -f1)
expect_eq "host-local handed out the address" 2 "$(ls "$WORK/host-local/hlnet" | grep -c '^10\.213\.120\.')"
if ip netns exec "$C1" ping -c 1 -W 2 "$a2" >/dev/null; then pass "ping over our bridge with host-local"; CHECKS=$((CHECKS+1)); else fail "ping with host-local"; fi
run_in_host "$PLUGINS/bridge" CHECK "id-$C1" "/run/netns/$C1" "$(jq -c ". + {prevResult: ${!r1_var}}" <<<"$conf")"
expect_eq "CHECK delegates to host-local" 0 "$RC"
for c in "$C1" "$C2"; do
    run_in_host "$PLUGINS/bridge" DEL "id-$c" "/run/netns/$c" "$conf"
    expect_eq "DEL delegates to host-local" 0 "$RC"
done
expect_eq "host-local released both" 0 "$(ls "$WORK/host-local/hlnet" | grep -c '^10\.213\.120\.' || true)"

# A failed ADD after host-local allocated releases it through host-local (an existing ifname).
C3=$(new_netns h3)
ip -n "$C3" link add eth0 type veth peer name other
run_in_host "$PLUGINS/bridge" ADD id-c3 "/run/netns/$C3" "$conf"
expect_eq "ADD into a netns that already has eth0 fails" 1 "$RC"
expect_eq "…and host-local's lease is released" 0 "$(ls "$WORK/host-local/hlnet" | grep -c '^10\.213\.120\.' || true)"
expect_eq "…and no host veth is left" 0 "$(ip -n "$HOST" -o link show master cnmhl0 | wc -l)"

# A chain: our bridge → reference tuning → reference portmap, as a runtime runs a conflist.
C4=$(new_netns chain)
plugins=(
  '{"type":"bridge","bridge":"cnmchain0","isGateway":true,"ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.121.0/24"}],[{"subnet":"fd00:213:121::/64"}]]}}'
  '{"type":"tuning","sysctl":{"net.ipv4.conf.eth0.arp_notify":"1"},"mtu":1300}'
  '{"type":"portmap","capabilities":{"portMappings":true},"snat":false}'
)
prev=""
for p in "${plugins[@]}"; do
    type=$(jq -r .type <<<"$p")
    conf=$(jq -c --argjson prev "${prev:-null}" '. + {cniVersion: "1.0.0", name: "chain"} + (if $prev then {prevResult: $prev} else {} end)
        + (if .type == "portmap" then {runtimeConfig: {portMappings: [{hostPort: 18080, containerPort: 80, protocol: "tcp"}]}} else {} end)' <<<"$p")
    bin=$PLUGINS/$type; [ -x "$bin" ] || bin=$REF/$type
    run_in_host "$bin" ADD chain1 "/run/netns/$C4" "$conf"
    expect_eq "chain ADD: $type" 0 "$RC"
    [ "$RC" -eq 0 ] || echo "$OUT" >&2
    prev=$OUT
done
expect_eq "tuning applied its MTU after our bridge" 1300 "$(ip -n "$C4" -j link show eth0 | jq '.[0].mtu')"
expect_eq "the final result still names our interfaces" "cnmchain0" "$(jq -r '.interfaces[0].name' <<<"$prev")"
for p in "${plugins[@]}"; do
    type=$(jq -r .type <<<"$p")
    conf=$(jq -c --argjson prev "$prev" '. + {cniVersion: "1.0.0", name: "chain", prevResult: $prev}
        + (if .type == "portmap" then {runtimeConfig: {portMappings: [{hostPort: 18080, containerPort: 80, protocol: "tcp"}]}} else {} end)' <<<"$p")
    bin=$PLUGINS/$type; [ -x "$bin" ] || bin=$REF/$type
    run_in_host "$bin" CHECK chain1 "/run/netns/$C4" "$conf"
    if [ "$type" == portmap ]; then
        # portmap 1.1.1 looks for the IPv4 DNAT rule in its IPv6 chain and fails its own CHECK
        # whatever ran before it; check its rule directly instead.
        expect_eq "portmap's DNAT rule is installed" 1 "$(ip netns exec "$HOST" iptables -t nat -S | grep -c -- '--dport 18080 -j DNAT --to-destination 10.213.121.2:80' || true)"
        continue
    fi
    expect_eq "chain CHECK: $type" 0 "$RC"
    [ "$RC" -eq 0 ] || echo "$OUT" >&2
done
for ((i = ${#plugins[@]} - 1; i >= 0; i--)); do
    p=${plugins[$i]}
    type=$(jq -r .type <<<"$p")
    conf=$(jq -c --argjson prev "$prev" '. + {cniVersion: "1.0.0", name: "chain", prevResult: $prev}
        + (if .type == "portmap" then {runtimeConfig: {portMappings: [{hostPort: 18080, containerPort: 80, protocol: "tcp"}]}} else {} end)' <<<"$p")
    bin=$PLUGINS/$type; [ -x "$bin" ] || bin=$REF/$type
    run_in_host "$bin" DEL chain1 "/run/netns/$C4" "$conf"
    expect_eq "chain DEL (reverse): $type" 0 "$RC"
done
expect_eq "chain: nothing left on the bridge" 0 "$(ip -n "$HOST" -o link show master cnmchain0 | wc -l)"
expect_eq "chain: no lease left" 0 "$(lease_count)"
expect_eq "chain: portmap's rule removed" 0 "$(ip netns exec "$HOST" iptables -t nat -S | grep -c -- '--dport 18080' || true)"
# On GC a delegated IPAM plugin gets the whole conf, with its list of attachments (which we read
# straight from the text, never into our document). A recorder stands in: host-local here speaks
# no GC (CNI 1.0.0).
REC=$WORK/recorder
mkdir -p "$REC"
printf '#!/bin/sh\ncat > "%s/recorded-$CNI_COMMAND.json"\n' "$WORK" > "$REC/recorder"
chmod +x "$REC/recorder"
gcconf='{"cniVersion":"1.1.0","name":"recnet","type":"bridge","bridge":"cnmrec0","ipam":{"type":"recorder"},
  "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth1","extra":[1,{"k":null}]}]}'
set +e
printf '%s' "$gcconf" | ip netns exec "$HOST" env CNI_COMMAND=GC CNI_PATH="$PLUGINS:$REC" CNM_STATE_DIR="$CNM_STATE_DIR" "$PLUGINS/bridge"
RC=$?
set -e
expect_eq "GC through a delegated IPAM plugin" 0 "$RC"
expect_eq "the delegate got the whole conf, its list too" "$(jq -cS . <<<"$gcconf")" "$(jq -cS . "$WORK/recorded-GC.json" 2>/dev/null || echo none)"
finish
