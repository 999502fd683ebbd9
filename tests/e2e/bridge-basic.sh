#!/usr/bin/env bash
# The built `bridge` (+ in-process `ipam`) as a runtime calls it, in a throwaway "host" netns,
# for every cniVersion from 0.3.1 to 1.1.0 (and the 0.1.0/0.2.0 result shapes): ADD, ping
# between two containers over IPv4 and IPv6, CHECK, DEL twice, DEL with the netns deleted, and
# the keys observable in the kernel.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
hcni() { # like cni, but the plugin runs in the host netns
    local plugin=$1 cmd=$2 id=$3 netns=$4 ifname=$5 conf=$6
    shift 6
    set +e
    OUT=$(printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$netns" \
        CNI_IFNAME="$ifname" CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$@" "$plugin")
    RC=$?
    set -e
}
BR="$PLUGINS/bridge"
n=0
for v in 0.1.0 0.2.0 0.3.1 0.4.0 1.0.0 1.1.0; do
    n=$((n + 1))
    C1=$(new_netns "a$n"); C2=$(new_netns "b$n")
    if [[ $v == 0.[12].0 ]]; then ranges="[[{\"subnet\":\"10.213.10$n.0/24\"}]]"; else ranges="[[{\"subnet\":\"10.213.10$n.0/24\"}],[{\"subnet\":\"fd00:213:10$n::/64\"}]]"; fi
    conf="{\"cniVersion\":\"$v\",\"name\":\"br$n\",\"type\":\"bridge\",\"bridge\":\"cnmtb$n\",\"isDefaultGateway\":true,\"mtu\":1400,
      \"ipam\":{\"type\":\"ipam\",\"ranges\":$ranges}}"
    declare -A RES=()
    for c in "$C1" "$C2"; do
        hcni "$BR" ADD "id-$c" "/run/netns/$c" eth0 "$conf"
        expect_eq "$v ADD ($c)" 0 "$RC"
        [ "$RC" -eq 0 ] || { echo "$OUT" >&2; continue; }
        RES[$c]=$OUT
        expect_eq "$v cniVersion" "$v" "$(jq -r .cniVersion <<<"$OUT")"
    done
    if [[ $v == 0.[12].0 ]]; then
        a1=$(jq -r '.ip4.ip' <<<"${RES[$C1]}" | cut -d/ -f1); a2=$(jq -r '.ip4.ip' <<<"${RES[$C2]}" | cut -d/ -f1)
        expect_eq "$v legacy shape" null "$(jq -r .interfaces <<<"${RES[$C1]}")"
    else
        r=${RES[$C1]}
        expect_eq "$v interfaces [bridge, host veth, container]" "cnmtb$n veth eth0" \
            "$(jq -r '[.interfaces[0].name, (.interfaces[1].name | .[0:4]), .interfaces[2].name] | join(" ")' <<<"$r")"
        expect_eq "$v container sandbox" "/run/netns/$C1" "$(jq -r '.interfaces[2].sandbox' <<<"$r")"
        expect_eq "$v ips point at the container" "2 2" "$(jq -r '[.ips[].interface] | join(" ")' <<<"$r")"
        a1=$(jq -r '.ips[0].address' <<<"$r" | cut -d/ -f1); a2=$(jq -r '.ips[0].address' <<<"${RES[$C2]}" | cut -d/ -f1)
        b2=$(jq -r '.ips[1].address' <<<"${RES[$C2]}" | cut -d/ -f1)
        if ip netns exec "$C1" ping -6 -c 1 -W 2 "$b2" >/dev/null; then pass "$v ping6 c1 → c2"; CHECKS=$((CHECKS+1)); else fail "$v ping6 c1 → c2"; fi
        expect_eq "$v mtu on the container end" 1400 "$(ip -n "$C1" -j link show eth0 | jq '.[0].mtu')"
        veth=$(jq -r '.interfaces[1].name' <<<"$r")
        expect_eq "$v host veth is a port of the bridge" "cnmtb$n" "$(ip -n "$HOST" -j link show "$veth" | jq -r '.[0].master')"
        # The port's own IPv6 is off (ping6 above crossed it all the same); the container keeps its.
        expect_eq "$v the port's IPv6 is off" 1 "$(ip netns exec "$HOST" cat "/proc/sys/net/ipv6/conf/$veth/disable_ipv6")"
        expect_eq "$v no IPv6 address on the port" 0 "$(ip -n "$HOST" -j -6 addr show dev "$veth" | jq '[.[].addr_info[]?] | length')"
        expect_eq "$v the container end has its link-local" 1 "$(ip -n "$C1" -j -6 addr show dev eth0 | jq '[.[0].addr_info[] | select(.scope == "link")] | length')"
        # One queue each way, said at creation (no cut to one afterwards, which waits for RCU).
        expect_eq "$v one queue on both ends" "1 1 1 1" "$( (ip -n "$C1" -j -d link show eth0; ip -n "$HOST" -j -d link show "$veth") \
            | jq -rs '[.[][0] | .num_tx_queues, .num_rx_queues] | join(" ")')"
        expect_eq "$v gateway on the bridge" true "$(ip -n "$HOST" -j addr show cnmtb$n | jq "[.[0].addr_info[].local] | index(\"10.213.10$n.1\") != null")"
        expect_eq "$v default route in the container" "10.213.10$n.1" "$(ip -n "$C1" -j route show default | jq -r '.[0].gateway')"
        expect_eq "$v no IPv6 DAD wait (address not tentative)" 0 "$(ip -n "$C1" -j -6 addr show dev eth0 | jq '[.[0].addr_info[] | select(.scope == "global" and .tentative == true)] | length')"
    fi
    if ip netns exec "$C1" ping -c 1 -W 2 "$a2" >/dev/null; then pass "$v ping c1 → c2"; CHECKS=$((CHECKS+1)); else fail "$v ping c1 → c2 ($a2)"; fi
    if ip netns exec "$C2" ping -c 1 -W 2 "$a1" >/dev/null; then pass "$v ping c2 → c1"; CHECKS=$((CHECKS+1)); else fail "$v ping c2 → c1"; fi
    if [[ $v != 0.[123]* ]]; then
        # CHECK of c1 after c2 joined: the bridge MAC may have changed; CHECK must not care.
        hcni "$BR" CHECK "id-$C1" "/run/netns/$C1" eth0 "$(jq -c ". + {prevResult: ${RES[$C1]}}" <<<"$conf")"
        expect_eq "$v CHECK after another port joined" 0 "$RC"
        ip -n "$C1" addr flush dev eth0
        hcni "$BR" CHECK "id-$C1" "/run/netns/$C1" eth0 "$(jq -c ". + {prevResult: ${RES[$C1]}}" <<<"$conf")"
        expect_eq "$v CHECK notices a removed address" 1 "$RC"
    fi
    hcni "$BR" DEL "id-$C1" "/run/netns/$C1" eth0 "$conf"
    expect_eq "$v DEL" 0 "$RC"
    hcni "$BR" DEL "id-$C1" "/run/netns/$C1" eth0 "$conf"
    expect_eq "$v DEL again" 0 "$RC"
    expect_eq "$v container link gone" "" "$(ip -n "$C1" -o link show dev eth0 2>/dev/null || true)"
    # DEL with the netns already deleted still removes the host veth and the lease.
    veth2=$(ip -n "$HOST" -j link show master "cnmtb$n" | jq -r '.[0].ifname')
    ip netns del "$C2"
    hcni "$BR" DEL "id-$C2" "/run/netns/$C2" eth0 "$conf"
    expect_eq "$v DEL with the netns gone" 0 "$RC"
    expect_eq "$v host veth gone" "" "$(ip -n "$HOST" -o link show dev "$veth2" 2>/dev/null || true)"
    expect_eq "$v no lease left" 0 "$(lease_count)"
    expect_eq "$v no endpoint left" 0 "$(ls "$CNM_STATE_DIR/networks/br$n/endpoints" | wc -l)"
    unset RES
done

# DEL without ADD, and with an empty CNI_NETNS.
hcni "$BR" DEL never-added "" eth0 '{"cniVersion":"1.0.0","name":"br1","type":"bridge","bridge":"cnmtb1","ipam":{"type":"ipam","subnet":"10.213.101.0/24"}}'
expect_eq "DEL without ADD" 0 "$RC"

# Keys observable in the kernel: hairpin, isolation, MAC from CNI_ARGS.
C=$(new_netns keys)
conf='{"cniVersion":"1.1.0","name":"keys","type":"bridge","bridge":"cnmkeys0","hairpinMode":true,"portIsolation":true,
  "ipam":{"type":"ipam","subnet":"10.213.110.0/24"}}'
hcni "$BR" ADD kid "/run/netns/$C" eth0 "$conf" CNI_ARGS="IgnoreUnknown=1;MAC=02:13:00:00:00:42"
expect_eq "keys ADD" 0 "$RC"; [ "$RC" -eq 0 ] || echo "$OUT" >&2
veth=$(jq -r '.interfaces[1].name' <<<"$OUT")
expect_eq "MAC from CNI_ARGS" 02:13:00:00:00:42 "$(ip -n "$C" -j link show eth0 | jq -r '.[0].address')"
port=$(ip -n "$HOST" -j -d link show "$veth" | jq '.[0].linkinfo.info_slave_data')
expect_eq "hairpin on the port" true "$(jq .hairpin <<<"$port")"
expect_eq "isolated port" true "$(jq .isolated <<<"$port")"
hcni "$BR" DEL kid "/run/netns/$C" eth0 "$conf"
# MAC from runtimeConfig wins over args.cni.mac and CNI_ARGS.
hcni "$BR" ADD kid2 "/run/netns/$C" eth0 "$(jq -c '. + {runtimeConfig: {mac: "02:13:00:00:00:44"}, args: {cni: {mac: "02:13:00:00:00:43"}}}' <<<"$conf")" \
    CNI_ARGS="MAC=02:13:00:00:00:42"
expect_eq "runtimeConfig.mac wins" 02:13:00:00:00:44 "$(ip -n "$C" -j link show eth0 | jq -r '.[0].address')"
hcni "$BR" DEL kid2 "/run/netns/$C" eth0 "$conf"
# This kernel has no CONFIG_BRIDGE_VLAN_FILTERING: "vlan" is a clear error naming it, and leaves nothing.
if zcat /proc/config.gz 2>/dev/null | grep -q '^CONFIG_BRIDGE_VLAN_FILTERING=y'; then
    echo "note: this kernel has bridge VLAN filtering; the vlan key is exercised in the VM tier"
else
    before=$(state_snapshot); links=$(ip -n "$HOST" -o link | wc -l)
    hcni "$BR" ADD vid "/run/netns/$C" eth0 '{"cniVersion":"1.0.0","name":"vlan","type":"bridge","bridge":"cnmvlan0","vlan":42,"ipam":{"type":"ipam","subnet":"10.213.112.0/24"}}'
    expect_eq "vlan on a kernel without VLAN filtering: code 105" 105 "$(jq .code <<<"$OUT")"
    expect_eq "…naming the missing feature" true "$(jq '.msg | contains("CONFIG_BRIDGE_VLAN_FILTERING")' <<<"$OUT")"
    expect_eq "…no link left" "$links" "$(ip -n "$HOST" -o link | wc -l)"
    expect_eq "…no lease left" 0 "$(find "$CNM_STATE_DIR/ipam" -path '*10.213.112*' -path '*/leases/*' -type f ! -name '.spare-*' | wc -l)"
fi
P=$(new_netns promisc)
hcni "$BR" ADD pid "/run/netns/$P" eth0 '{"cniVersion":"1.0.0","name":"prom","type":"bridge","bridge":"cnmprom0","promiscMode":true,"ipam":{}}'
expect_eq "promisc, L2 only (empty ipam)" 0 "$RC"
expect_eq "bridge is promiscuous" true "$(ip -n "$HOST" -j link show cnmprom0 | jq '.[0].flags | index("PROMISC") != null')"
expect_eq "L2 only: no address" 0 "$(ip -n "$P" -j -4 addr show dev eth0 | jq '.[0].addr_info | length')"
hcni "$BR" ADD x "/run/netns/$P" eth1 '{"cniVersion":"1.0.0","name":"bad","type":"bridge","hairpinMode":true,"promiscMode":true,"ipam":{}}'
expect_eq "hairpin + promisc is an error (7)" 7 "$(jq .code <<<"$OUT")"

# ipMasq and macspoofchk: nftables elements in our own tables, removed on DEL — also when the
# netns is already gone.
M1=$(new_netns masq1); M2=$(new_netns masq2)
mconf='{"cniVersion":"1.0.0","name":"masq","type":"bridge","bridge":"cnmmasq0","isGateway":true,"ipMasq":true,"macspoofchk":true,
  "ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.113.0/24"}],[{"subnet":"fd00:213:113::/64"}]]}}'
hcni "$BR" ADD m1 "/run/netns/$M1" eth0 "$mconf"
expect_eq "ipMasq ADD" 0 "$RC"
r1=$OUT
hcni "$BR" ADD m2 "/run/netns/$M2" eth0 "$mconf"
r2=$OUT
m1=$(jq -r '.ips[0].address' <<<"$r1" | cut -d/ -f1); m1v6=$(jq -r '.ips[1].address' <<<"$r1" | cut -d/ -f1)
m2=$(jq -r '.ips[0].address' <<<"$r2" | cut -d/ -f1)
veth1=$(jq -r '.interfaces[1].name' <<<"$r1"); mac1=$(jq -r '.interfaces[2].mac' <<<"$r1")
elements() { ip netns exec "$HOST" nft -j list map "$1" cnm masq 2>/dev/null | jq -r '[.nftables[] | select(.map) | .map.elem // [] | .[] | .[0]] | join(" ")'; }
expect_eq "IPv4 masquerade elements" "$m1 $m2" "$(elements ip | tr ' ' '\n' | sort | paste -sd' ')"
expect_eq "IPv6 masquerade element" true "$(elements ip6 | grep -qw "$m1v6" && echo true || echo false)"
expect_eq "the network's chain masquerades" 1 "$(ip netns exec "$HOST" nft list table ip cnm | grep -c 'masquerade$')"
expect_eq "MAC guard for the host veth" 1 "$(ip netns exec "$HOST" nft list set bridge cnm allowed | grep -c "\"$veth1\" . $mac1")"
hcni "$BR" CHECK m1 "/run/netns/$M1" eth0 "$(jq -c ". + {prevResult: $r1}" <<<"$mconf")"
expect_eq "CHECK sees the rules" 0 "$RC"
if ip netns exec "$M1" ping -c 1 -W 2 "$m2" >/dev/null; then pass "ping with its own MAC"; CHECKS=$((CHECKS+1)); else fail "ping with its own MAC"; fi
ip -n "$M1" link set eth0 address 02:13:de:ad:be:ef
ip -n "$M1" neigh flush all
if ip netns exec "$M1" ping -c 1 -W 1 "$m2" >/dev/null; then fail "a spoofed MAC still gets through"; else pass "a spoofed MAC is dropped"; CHECKS=$((CHECKS+1)); fi
hcni "$BR" CHECK m1 "/run/netns/$M1" eth0 "$(jq -c ". + {prevResult: $r1}" <<<"$mconf")"
expect_eq "CHECK notices the changed MAC" 1 "$RC"
hcni "$BR" DEL m1 "/run/netns/$M1" eth0 "$mconf"
expect_eq "ipMasq DEL" 0 "$RC"
ip netns del "$M2"
hcni "$BR" DEL m2 "/run/netns/$M2" eth0 "$mconf"
expect_eq "ipMasq DEL with the netns gone" 0 "$RC"
expect_eq "no masquerade element left" "" "$(elements ip)$(elements ip6)"
expect_eq "no MAC guard left" 0 "$(ip netns exec "$HOST" nft -j list set bridge cnm allowed | jq '[.nftables[] | select(.set) | .set.elem // [] | .[]] | length')"

# forceAddress: a bridge that already holds another address of the subnet.
FA=$(new_netns force)
ip -n "$HOST" link add cnmforce0 type bridge
ip -n "$HOST" addr add 10.213.114.9/24 dev cnmforce0
fconf='{"cniVersion":"1.0.0","name":"force","type":"bridge","bridge":"cnmforce0","isGateway":true,"ipam":{"type":"ipam","subnet":"10.213.114.0/24"}}'
hcni "$BR" ADD fa "/run/netns/$FA" eth0 "$fconf"
expect_eq "a different bridge address without forceAddress: code 7" 7 "$(jq .code <<<"$OUT")"
expect_eq "…naming it" true "$(jq '.msg | contains("already has an IP address different from 10.213.114.1/24")' <<<"$OUT")"
expect_eq "…and nothing was left" 0 "$(ip -n "$HOST" -o link show master cnmforce0 | wc -l)"
hcni "$BR" ADD fa "/run/netns/$FA" eth0 "$(jq -c '.forceAddress = true' <<<"$fconf")"
expect_eq "forceAddress replaces it" "10.213.114.1" "$(ip -n "$HOST" -j -4 addr show cnmforce0 | jq -r '[.[0].addr_info[].local] | join(" ")')"
hcni "$BR" DEL fa "/run/netns/$FA" eth0 "$fconf"

# enabledad: IPv6 addresses go through DAD (no "nodad" flag); dns in the conf wins over IPAM's.
D=$(new_netns dad)
dconf='{"cniVersion":"1.0.0","name":"dad","type":"bridge","bridge":"cnmdad0","enabledad":true,"dns":{"nameservers":["10.213.115.53"],"search":["example.test"]},
  "ipam":{"type":"ipam","ranges":[[{"subnet":"fd00:213:115::/64"}]]}}'
hcni "$BR" ADD d1 "/run/netns/$D" eth0 "$dconf"
expect_eq "enabledad ADD" 0 "$RC"
expect_eq "dns from the conf in the result" "10.213.115.53 example.test" "$(jq -r '[.dns.nameservers[0], .dns.search[0]] | join(" ")' <<<"$OUT")"
expect_eq "enabledad: no nodad flag" false "$(ip -n "$D" -j -6 addr show dev eth0 scope global | jq '.[0].addr_info[0].nodad // false')"
hcni "$BR" DEL d1 "/run/netns/$D" eth0 "$dconf"

# disableContainerInterface: the container end stays down; with IPAM it is refused.
DC=$(new_netns down)
hcni "$BR" ADD dc "/run/netns/$DC" eth0 '{"cniVersion":"1.0.0","name":"down","type":"bridge","bridge":"cnmdown0","disableContainerInterface":true,"ipam":{}}'
expect_eq "disableContainerInterface ADD" 0 "$RC"
expect_eq "…the container interface is down" false "$(ip -n "$DC" -j link show eth0 | jq '.[0].flags | index("UP") != null')"
hcni "$BR" ADD dc2 "/run/netns/$DC" eth1 '{"cniVersion":"1.0.0","name":"down2","type":"bridge","disableContainerInterface":true,"ipam":{"type":"ipam","subnet":"10.213.116.0/24"}}'
expect_eq "disableContainerInterface with IPAM: code 7" 7 "$(jq .code <<<"$OUT")"

# A failed ADD leaves nothing behind: IPAM exhaustion after the bridge exists.
F=$(new_netns full)
full='{"cniVersion":"1.0.0","name":"full","type":"bridge","bridge":"cnmfull0","ipam":{"type":"ipam","subnet":"10.213.111.0/30"}}'
hcni "$BR" ADD f1 "/run/netns/$F" eth0 "$full"
expect_eq "first ADD on a /30" 0 "$RC"
F2=$(new_netns full2)
links_before=$(ip -n "$HOST" -o link | wc -l)
hcni "$BR" ADD f2 "/run/netns/$F2" eth0 "$full"
expect_eq "exhausted pool: ADD fails" 1 "$RC"
expect_eq "…and leaves no veth on the host" "$links_before" "$(ip -n "$HOST" -o link | wc -l)"
expect_eq "…nor in the container" 1 "$(ip -n "$F2" -o link | wc -l)"
expect_eq "…nor an endpoint record" 1 "$(ls "$CNM_STATE_DIR/networks/full/endpoints" | wc -l)"
finish
