#!/usr/bin/env bash
# The built `macvlan` (+ in-process `ipam`) on this kernel, in a throwaway "host" netns whose
# master is one end of a veth pair (this kernel has no dummy): ADD, ping between two containers
# for several cniVersions, every mode observable with `ip -j -d link`, CHECK, DEL twice and with
# the netns gone, a failed ADD leaving nothing, and the reference host-local as delegated IPAM.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
ip -n "$HOST" link add cnmmv0 type veth peer name cnmmv0peer
ip -n "$HOST" link set cnmmv0 up
ip -n "$HOST" link set cnmmv0peer up
MV="$PLUGINS/macvlan"
hcni() { # <cmd> <id> <netns> <conf> [env…]: the plugin in the host netns (lib.sh's cni); sets OUT, RC
    local cmd=$1 id=$2 netns=$3 conf=$4
    shift 4
    cni "$MV" "$cmd" "$id" "$netns" eth0 "$conf" "$@" ip netns exec "$HOST"
}
n=0
for v in 0.2.0 0.4.0 1.0.0 1.1.0; do
    n=$((n + 1))
    A=$(new_netns "a$n"); B=$(new_netns "b$n")
    conf="{\"cniVersion\":\"$v\",\"name\":\"mv$n\",\"type\":\"macvlan\",\"master\":\"cnmmv0\",\"mode\":\"bridge\",
      \"ipam\":{\"type\":\"ipam\",\"subnet\":\"10.213.16$n.0/24\"}}"
    hcni ADD "a$n" "/run/netns/$A" "$conf"; ra=$OUT
    expect_eq "$v ADD a" 0 "$RC"
    hcni ADD "b$n" "/run/netns/$B" "$conf"; rb=$OUT
    expect_eq "$v ADD b" 0 "$RC"
    if [ "$v" == 0.2.0 ]; then
        addr_b=$(jq -r '.ip4.ip' <<<"$rb" | cut -d/ -f1)
    else
        addr_b=$(jq -r '.ips[0].address' <<<"$rb" | cut -d/ -f1)
        expect_eq "$v one interface, in the sandbox" "1 /run/netns/$A 0" "$(jq -r '"\(.interfaces | length) \(.interfaces[0].sandbox) \(.ips[0].interface)"' <<<"$ra")"
    fi
    expect_eq "$v macvlan in bridge mode on the master" "macvlan bridge" "$(ip -n "$A" -j -d link show eth0 | jq -r '.[0].linkinfo | "\(.info_kind) \(.info_data.mode)"')"
    if ip netns exec "$A" ping -c 1 -W 2 "$addr_b" >/dev/null; then pass "$v ping a → b"; CHECKS=$((CHECKS+1)); else fail "$v ping a → b"; fi
    if [ "$v" != 0.2.0 ]; then
        hcni CHECK "a$n" "/run/netns/$A" "$(jq -c ". + {prevResult: $ra}" <<<"$conf")"
        expect_eq "$v CHECK" 0 "$RC"
        ip -n "$A" addr flush dev eth0
        hcni CHECK "a$n" "/run/netns/$A" "$(jq -c ". + {prevResult: $ra}" <<<"$conf")"
        expect_eq "$v CHECK notices a removed address" 1 "$RC"
    fi
    hcni DEL "a$n" "/run/netns/$A" "$conf"
    expect_eq "$v DEL" 0 "$RC"
    hcni DEL "a$n" "/run/netns/$A" "$conf"
    expect_eq "$v DEL again" 0 "$RC"
    expect_eq "$v link gone" "" "$(ip -n "$A" -o link show dev eth0 2>/dev/null || true)"
    ip netns del "$B"
    hcni DEL "b$n" "/run/netns/$B" "$conf"
    expect_eq "$v DEL with the netns gone" 0 "$RC"
    expect_eq "$v no lease left" 0 "$(lease_count)"
done

for mode in private vepa passthru; do
    M=$(new_netns "m$mode")
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"mv-$mode\",\"type\":\"macvlan\",\"master\":\"cnmmv0\",\"mode\":\"$mode\",\"ipam\":{}}"
    hcni ADD "m$mode" "/run/netns/$M" "$conf"
    expect_eq "mode $mode ADD (L2 only)" 0 "$RC"
    expect_eq "mode $mode in the kernel" "$mode" "$(ip -n "$M" -j -d link show eth0 | jq -r '.[0].linkinfo.info_data.mode')"
    hcni DEL "m$mode" "/run/netns/$M" "$conf"
    expect_eq "mode $mode DEL" 0 "$RC"
done

# MAC, MTU, and the reference host-local as delegated IPAM.
H=$(new_netns hl)
conf="{\"cniVersion\":\"1.0.0\",\"name\":\"mvhl\",\"type\":\"macvlan\",\"master\":\"cnmmv0\",\"mtu\":1400,
  \"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$WORK/host-local\",\"subnet\":\"10.213.170.0/24\"}}"
hcni ADD hl "/run/netns/$H" "$conf" CNI_ARGS="IgnoreUnknown=1;MAC=02:13:17:00:00:01"
expect_eq "host-local ADD" 0 "$RC"
expect_eq "MAC from CNI_ARGS and mtu" "02:13:17:00:00:01 1400" "$(ip -n "$H" -j link show eth0 | jq -r '"\(.[0].address) \(.[0].mtu)"')"
expect_eq "arp_notify set" 1 "$(ip netns exec "$H" cat /proc/sys/net/ipv4/conf/eth0/arp_notify)"
if [ -d /proc/sys/net/ipv6 ]; then # both in one visit to the netns (Kernel::write_sysctls)
    expect_eq "ndisc_notify set" 1 "$(ip netns exec "$H" cat /proc/sys/net/ipv6/conf/eth0/ndisc_notify)"
fi
expect_eq "host-local holds the address" 1 "$(ls "$WORK/host-local/mvhl" | grep -c '^10\.213\.170\.')"
hcni DEL hl "/run/netns/$H" "$conf"
expect_eq "host-local released it" 0 "$(ls "$WORK/host-local/mvhl" | grep -c '^10\.213\.170\.' || true)"

# Errors: unknown mode, missing master, too large an MTU — each clear, and nothing left behind.
E=$(new_netns err)
for bad in '"mode":"bogus","master":"cnmmv0"' '"master":"nosuchdev0"' '"master":"cnmmv0","mtu":9000'; do
    hcni ADD err "/run/netns/$E" "{\"cniVersion\":\"1.0.0\",\"name\":\"mverr\",\"type\":\"macvlan\",$bad,\"ipam\":{\"type\":\"ipam\",\"subnet\":\"10.213.171.0/24\"}}"
    expect_eq "{$bad}: code 7" 7 "$(jq .code <<<"$OUT")"
done
expect_eq "errors left no link" 1 "$(ip -n "$E" -o link | wc -l)"
expect_eq "errors left no lease" 0 "$(lease_count)"
finish
