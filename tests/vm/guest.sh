#!/bin/sh
# The VM's test payload (busybox ash, run by /init; see run.sh). Runs the plugins exactly as a
# runtime does (CNI_* in the environment, conf on stdin, result or error on stdout) against the
# VM's kernel, which has dummy, 802.1Q, ipvlan and bridge VLAN filtering. Reports one line per
# test on the console, `TEST <name>: ok (…)` or `TEST <name>: FAIL (…)`, the failed checks with
# the plugin's output above it, and exits non-zero if any test failed.
#
# Under TCG every exec of a dynamic binary (ip, jq, a plugin) costs ~60–90 ms: setup goes through
# `ip -b`, several JSON documents go through one jq, and the per-netns link list comes from
# /proc/net/dev read by busybox inside the netns. The VM has no NIC: its root netns is the "host".

# Debian's static busybox ash runs its own applets ahead of $PATH; busybox ip has no netns/ipvlan.
ip() { /sbin/ip "$@"; }
bridge() { /sbin/bridge "$@"; }
jq() { /usr/bin/jq "$@"; }

. /etc/cnm-vm.conf   # IPVLAN_IMPL=ours|reference
OURS=/opt/cnm/bin
REFB=/opt/ref/bin
export CNM_STATE_DIR=/run/cnm-state
HL=/run/host-local   # host-local's dataDir
FAILED=0
NTESTS=0

# --- harness ---------------------------------------------------------------------------------
begin() { T_NAME=$1; T_FAILS=0; T_CHECKS=0; read T_START _ </proc/uptime; }
fail() { echo "  [$T_NAME] FAIL: $*"; T_FAILS=$((T_FAILS + 1)); }
expect_eq() { # <what> <expected> <actual>
    T_CHECKS=$((T_CHECKS + 1))
    [ "$2" = "$3" ] || fail "$1: expected [$2], got [$3]"
}
expect_rc() { # <what> <expected exit code>: checks $RC, shows the plugin's stdout on failure
    T_CHECKS=$((T_CHECKS + 1))
    [ "$RC" = "$2" ] || fail "$1: exit $RC, expected $2; stdout: $OUT"
}
expect_match() { # <what> <shell pattern> <actual>
    T_CHECKS=$((T_CHECKS + 1))
    case "$3" in $2) ;; *) fail "$1: [$3] does not match [$2]" ;; esac
}
expect_ping() { # <what> <netns> <address>
    T_CHECKS=$((T_CHECKS + 1))
    nsenter --net=/run/netns/$2 ping -c 1 -W 2 "$3" >/dev/null 2>&1 || fail "$1: no reply from $3 in netns $2"
}
expect_no_ping() { # <what> <netns> <address>
    T_CHECKS=$((T_CHECKS + 1))
    nsenter --net=/run/netns/$2 ping -c 1 -W 1 "$3" >/dev/null 2>&1 && fail "$1: $3 answered from netns $2"
}
end() {
    local t d
    read t _ </proc/uptime
    t=${t%.*}${t#*.}; d=${T_START%.*}${T_START#*.}; d=$((t - d))
    d="$((d / 100)).$((d / 10 % 10))"
    NTESTS=$((NTESTS + 1))
    if [ "$T_FAILS" -eq 0 ] && [ "$T_CHECKS" -gt 0 ]; then
        echo "TEST $T_NAME: ok ($T_CHECKS checks, ${d}s)"
    else
        [ "$T_CHECKS" -gt 0 ] || T_FAILS=1
        echo "TEST $T_NAME: FAIL ($T_FAILS of $T_CHECKS checks failed, ${d}s)"
        FAILED=$((FAILED + 1))
    fi
}

# cni <plugin> <COMMAND> <containerid> <netns name or ""> <conf> [VAR=value…]: sets OUT and RC.
cni() {
    local p=$1 c=$2 id=$3 ns=$4 conf=$5
    shift 5
    [ -z "$ns" ] || ns=/run/netns/$ns
    OUT=$(printf '%s' "$conf" | env CNI_COMMAND="$c" CNI_CONTAINERID="$id" CNI_NETNS="$ns" CNI_IFNAME=eth0 \
        CNI_PATH="$OURS:$REFB" "$@" "$p")
    RC=$?
}
with_prev() { printf '%s' "${1%\}},\"prevResult\":$2}"; }   # <conf> <result>: conf + prevResult

netns_add() { for n; do echo "netns add $n"; done | ip -b -; }
netns_del() { for n; do echo "netns del $n"; done | ip -b - 2>/dev/null; }
# The interfaces of a netns ("-" for the root netns), sorted, space-separated.
links_in() {
    if [ "$1" = - ]; then cat /proc/net/dev; else nsenter --net=/run/netns/$1 cat /proc/net/dev; fi |
        sed -n 's/^ *\([^:]*\):.*/\1/p' | sort | tr '\n' ' ' | sed 's/ $//'
}
# What a DEL must leave in our state dir: nothing.
leftovers() {
    local l e
    l=$(find $CNM_STATE_DIR/ipam -path '*/leases/*' -type f ! -name '.spare-*' 2>/dev/null | wc -l)
    e=$(find $CNM_STATE_DIR/networks -path '*/endpoints/*' -type f ! -name '.spare-*' 2>/dev/null | wc -l)
    echo "leases=$((l)) endpoints=$((e))"
}
CLEAN="leases=0 endpoints=0"
hl_leases() { ls "$HL/$1" 2>/dev/null | grep -c '^[0-9]'; }   # addresses host-local holds for a network

# One line per 1.0.0 result with one interface: "<#interfaces> <name> <sandbox> <#ips> <ips[0].interface> <address>"
SHAPE1='"\(.interfaces | length) \(.interfaces[0].name) \(.interfaces[0].sandbox) \(.ips | length) \(.ips[0].interface) \(.ips[0].address)"'
# One line per `ip -d -j addr show eth0`: "<kind> <mode> <mtu> <mac> <IPv4 addresses>"
KVIEW='.[0] | "\(.linkinfo.info_kind) \(.linkinfo.info_data.mode) \(.mtu) \(.address) \([.addr_info[] | select(.family == "inet") | .local] | join(","))"'

# --- tests -----------------------------------------------------------------------------------

t_modules() {
    begin modules
    local m loaded
    loaded=$(cut -d' ' -f1 /proc/modules | tr '\n' ' ')
    for m in ipvlan macvlan 8021q dummy veth bridge vxlan; do
        expect_match "module $m loaded" "*$m *" "$loaded"
    done
    printf 'link add dummy0 type dummy\nlink set dummy0 up\nlink add dummy1 type dummy\nlink set dummy1 up\n' | ip -b -
    expect_eq "dummy masters up" "unknown unknown" "$(cat /sys/class/net/dummy0/operstate) $(cat /sys/class/net/dummy1/operstate)"
    end
}

# Two containers on one master in bridge mode: result, kernel view, ping both ways, CHECK, DEL twice.
t_macvlan_bridge() { # <test name> <master> <subnet prefix, e.g. 10.213.1> [extra checks]
    begin "$1"
    local master=$2 net=$3 extra=$4 conf ra rb aa ab
    netns_add mva mvb
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$1\",\"type\":\"macvlan\",\"master\":\"$master\",\"mode\":\"bridge\",\"mtu\":1400,\"ipam\":{\"type\":\"ipam\",\"subnet\":\"$net.0/24\"}}"
    cni $OURS/macvlan ADD mva mva "$conf"; ra=$OUT
    expect_rc "ADD a" 0
    cni $OURS/macvlan ADD mvb mvb "$conf"; rb=$OUT
    expect_rc "ADD b" 0
    set -- $(printf '%s\n%s\n' "$ra" "$rb" | jq -r "$SHAPE1")
    expect_eq "result a: eth0 in the sandbox, one address on it" "1 eth0 /run/netns/mva 1 0" "$1 $2 $3 $4 $5"
    expect_eq "result b: eth0 in the sandbox, one address on it" "1 eth0 /run/netns/mvb 1 0" "$7 $8 $9 ${10} ${11}"
    expect_match "address a in $net.0/24" "$net.*/24" "$6"
    expect_match "address b in $net.0/24" "$net.*/24" "${12}"
    aa=${6%/*}; ab=${12%/*}
    set -- $({ ip -n mva -d -j addr show eth0; ip -n mvb -d -j addr show eth0; } | jq -r "$KVIEW")
    expect_eq "kernel a: macvlan bridge, mtu, address" "macvlan bridge 1400 $aa" "$1 $2 $3 $5"
    expect_eq "kernel b: macvlan bridge, mtu, address" "macvlan bridge 1400 $ab" "$6 $7 $8 ${10}"
    expect_ping "ping a → b" mva "$ab"
    expect_ping "ping b → a" mvb "$aa"
    [ -z "$extra" ] || $extra
    cni $OURS/macvlan CHECK mva mva "$(with_prev "$conf" "$ra")"
    expect_rc "CHECK a" 0
    cni $OURS/macvlan DEL mva mva "$conf"; expect_rc "DEL a" 0
    cni $OURS/macvlan DEL mva mva "$conf"; expect_rc "DEL a again" 0
    cni $OURS/macvlan DEL mvb mvb "$conf"; expect_rc "DEL b" 0
    cni $OURS/macvlan DEL mvb mvb "$conf"; expect_rc "DEL b again" 0
    expect_eq "links left in a, b" "lo|lo" "$(links_in mva)|$(links_in mvb)"
    expect_eq "state left" "$CLEAN" "$(leftovers)"
    netns_del mva mvb
    end
}

# private: two containers on one master that must not reach each other; vepa: the mode is set.
t_macvlan_private() {
    begin macvlan-private
    local conf ra rb
    netns_add mpa mpb
    conf='{"cniVersion":"1.0.0","name":"mvpriv","type":"macvlan","master":"dummy0","mode":"private","ipam":{"type":"ipam","subnet":"10.213.2.0/24"}}'
    cni $OURS/macvlan ADD mpa mpa "$conf"; ra=$OUT; expect_rc "ADD a" 0
    cni $OURS/macvlan ADD mpb mpb "$conf"; rb=$OUT; expect_rc "ADD b" 0
    set -- $(printf '%s\n%s\n' "$ra" "$rb" | jq -r '.ips[0].address')
    expect_match "addresses in 10.213.2.0/24" "10.213.2.*/24 10.213.2.*/24" "$1 $2"
    local ab=${2%/*}
    set -- $({ ip -n mpa -d -j addr show eth0; ip -n mpb -d -j addr show eth0; } | jq -r "$KVIEW")
    expect_eq "kernel: both macvlan private" "macvlan private macvlan private" "$1 $2 $6 $7"
    expect_no_ping "private mode isolates a from b" mpa "$ab"
    cni $OURS/macvlan DEL mpa mpa "$conf"; expect_rc "DEL a" 0
    cni $OURS/macvlan DEL mpa mpa "$conf"; expect_rc "DEL a again" 0
    cni $OURS/macvlan DEL mpb mpb "$conf"; expect_rc "DEL b" 0
    expect_eq "links left in a, b" "lo|lo" "$(links_in mpa)|$(links_in mpb)"
    expect_eq "state left" "$CLEAN" "$(leftovers)"
    netns_del mpa mpb
    end
}

t_macvlan_vepa() {
    begin macvlan-vepa
    local conf
    netns_add mve
    conf='{"cniVersion":"1.0.0","name":"mvvepa","type":"macvlan","master":"dummy0","mode":"vepa","ipam":{"type":"ipam","subnet":"10.213.3.0/24"}}'
    cni $OURS/macvlan ADD mve mve "$conf"; expect_rc ADD 0
    expect_match "address in the result" "10.213.3.*/24" "$(printf '%s' "$OUT" | jq -r '.ips[0].address')"
    set -- $(ip -n mve -d -j addr show eth0 | jq -r "$KVIEW")
    expect_eq "kernel: macvlan vepa" "macvlan vepa" "$1 $2"
    cni $OURS/macvlan DEL mve mve "$conf"; expect_rc DEL 0
    cni $OURS/macvlan DEL mve mve "$conf"; expect_rc "DEL again" 0
    expect_eq "links left" lo "$(links_in mve)"
    expect_eq "state left" "$CLEAN" "$(leftovers)"
    netns_del mve
    end
}

# A macvlan whose master is an 802.1Q sub-interface created here: the bridge-mode test on it,
# plus the VLAN device itself and the macvlans' parent link.
vlan_parent_checks() {
    local idx
    read idx </sys/class/net/dummy0.100/ifindex
    set -- $({ ip -d -j link show dummy0.100; ip -n mva -j link show eth0; ip -n mvb -j link show eth0; } |
        jq -r '.[0] | "\(.linkinfo.info_kind // "-") \(.linkinfo.info_data.protocol // "-") \(.linkinfo.info_data.id // "-") \(.link // "-") \(.link_index // "-")"')
    expect_eq "dummy0.100 is an 802.1Q VLAN 100 on dummy0" "vlan 802.1Q 100 dummy0" "$1 $2 $3 $4"
    expect_eq "the macvlans' parent is dummy0.100 (ifindex $idx)" "$idx $idx" "${10} ${15}"
}
t_macvlan_vlan_parent() {
    printf 'link add link dummy0 name dummy0.100 type vlan id 100\nlink set dummy0.100 up\n' | ip -b -
    t_macvlan_bridge macvlan-vlan-parent dummy0.100 10.213.4 vlan_parent_checks
    ip link del dummy0.100
}

# Our bridge with "vlan": 100 — needs CONFIG_BRIDGE_VLAN_FILTERING, which the VM kernel has.
OUR_BRIDGE_VLAN=
t_bridge_vlan() {
    begin bridge-vlan
    local conf ra rb aa ab va vb
    netns_add bva bvb
    conf='{"cniVersion":"1.0.0","name":"brvlan","type":"bridge","bridge":"cnmbr100","vlan":100,"ipam":{"type":"ipam","subnet":"10.213.5.0/24"}}'
    cni $OURS/bridge ADD bva bva "$conf"; ra=$OUT; expect_rc "ADD a" 0
    cni $OURS/bridge ADD bvb bvb "$conf"; rb=$OUT; expect_rc "ADD b" 0
    set -- $(printf '%s\n%s\n' "$ra" "$rb" | jq -r '"\(.interfaces | length) \(.interfaces[0].name) \(.interfaces[1].name) \(.interfaces[2].name) \(.interfaces[2].sandbox) \(.ips[0].interface) \(.ips[0].address)"')
    expect_eq "result a: [bridge, host veth, eth0 in the sandbox]" "3 cnmbr100 eth0 /run/netns/bva 2" "$1 $2 $4 $5 $6"
    expect_eq "result b: [bridge, host veth, eth0 in the sandbox]" "3 cnmbr100 eth0 /run/netns/bvb 2" "$8 $9 ${11} ${12} ${13}"
    expect_match "addresses in 10.213.5.0/24" "10.213.5.*/24 10.213.5.*/24" "$7 ${14}"
    va=$3; vb=${10}; aa=${7%/*}; ab=${14%/*}
    expect_ping "ping a → b" bva "$ab"
    expect_ping "ping b → a" bvb "$aa"
    set -- $({ ip -d -j link show cnmbr100; bridge -j vlan show; } | jq -r -s --arg a "$va" --arg b "$vb" '
        (.[0][0].linkinfo.info_data.vlan_filtering | tostring),
        (.[1][] | select(.ifname == $a or .ifname == $b) | [.vlans[] | "\(.vlan):\(.flags // [] | sort | join("+") | gsub(" "; "_"))"] | join(","))')
    expect_eq "vlan_filtering on the bridge" 1 "$1"
    # Ours also takes the port out of the default VLAN 1 (the reference leaves it in, untagged).
    expect_eq "host veth a: only vid 100, PVID untagged" "100:Egress_Untagged+PVID" "$2"
    expect_eq "host veth b: only vid 100, PVID untagged" "100:Egress_Untagged+PVID" "$3"
    OUR_BRIDGE_VLAN=$2
    cni $OURS/bridge CHECK bva bva "$(with_prev "$conf" "$ra")"; expect_rc "CHECK a" 0
    cni $OURS/bridge DEL bva bva "$conf"; expect_rc "DEL a" 0
    cni $OURS/bridge DEL bva bva "$conf"; expect_rc "DEL a again" 0
    cni $OURS/bridge DEL bvb bvb "$conf"; expect_rc "DEL b" 0
    cni $OURS/bridge DEL bvb bvb "$conf"; expect_rc "DEL b again" 0
    expect_eq "links left in a, b" "lo|lo" "$(links_in bva)|$(links_in bvb)"
    expect_eq "host veths gone" "" "$(links_in - | tr ' ' '\n' | grep -x -e "$va" -e "$vb")"
    expect_eq "state left" "$CLEAN" "$(leftovers)"
    netns_del bva bvb
    ip link del cnmbr100 2>/dev/null
    end
}

# The reference bridge with the same "vlan": the VLANs on its host veth equal ours.
t_bridge_vlan_ref() {
    begin bridge-vlan-vs-reference
    local conf r v
    netns_add rbv
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"refbrvlan\",\"type\":\"bridge\",\"bridge\":\"cnmbr101\",\"vlan\":100,\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$HL\",\"subnet\":\"10.213.6.0/24\"}}"
    cni $REFB/bridge ADD rbv rbv "$conf"; r=$OUT; expect_rc "reference ADD" 0
    v=$(printf '%s' "$r" | jq -r '.interfaces[1].name')
    set -- $({ ip -d -j link show cnmbr101; bridge -j vlan show; } | jq -r -s --arg a "$v" '
        (.[0][0].linkinfo.info_data.vlan_filtering | tostring),
        (.[1][] | select(.ifname == $a) | [.vlans[] | "\(.vlan):\(.flags // [] | sort | join("+") | gsub(" "; "_"))"] | join(","))')
    expect_eq "reference bridge: vlan_filtering" 1 "$1"
    expect_match "reference host veth: vid 100 PVID untagged" "*100:Egress_Untagged+PVID*" "$2"
    T_CHECKS=$((T_CHECKS + 1))
    case ",$2," in
        *",$OUR_BRIDGE_VLAN,"*) [ "$2" = "$OUR_BRIDGE_VLAN" ] ||
            echo "  [$T_NAME] note: host veth VLANs: reference [$2], ours [$OUR_BRIDGE_VLAN] (ours takes the port out of the default VLAN 1)" ;;
        *) fail "VLANs on the host veth: ours [$OUR_BRIDGE_VLAN] is not the reference's [$2] minus the default VLAN" ;;
    esac
    cni $REFB/bridge DEL rbv rbv "$conf"; expect_rc "reference DEL" 0
    expect_eq "host-local released" 0 "$(hl_leases refbrvlan)"
    netns_del rbv
    ip link del cnmbr101 2>/dev/null
    end
}

# ipvlan, against $IPV (ours once it exists, else the reference with host-local).
if [ "$IPVLAN_IMPL" = ours ]; then
    IPV=$OURS/ipvlan
    ipv_ipam() { printf '{"type":"ipam","subnet":"%s"}' "$1"; }
    ipv_left() { leftovers; }
    IPV_CLEAN=$CLEAN
else
    IPV=$REFB/ipvlan
    ipv_ipam() { printf '{"type":"host-local","dataDir":"%s","subnet":"%s"}' "$HL" "$1"; }
    ipv_left() { echo "leases=$(hl_leases "$1")"; }
    IPV_CLEAN=leases=0
fi

t_ipvlan() { # <mode> <subnet prefix>
    local mode=$1 net=$2 name=ipv$1 conf ra rb aa ab mac
    begin "ipvlan-$mode[$IPVLAN_IMPL]"
    netns_add ipa ipb
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"$name\",\"type\":\"ipvlan\",\"master\":\"dummy1\",\"mode\":\"$mode\",\"mtu\":1400,\"ipam\":$(ipv_ipam "$net.0/24")}"
    cni $IPV ADD ipa ipa "$conf"; ra=$OUT; expect_rc "ADD a" 0
    cni $IPV ADD ipb ipb "$conf"; rb=$OUT; expect_rc "ADD b" 0
    set -- $(printf '%s\n%s\n' "$ra" "$rb" | jq -r "$SHAPE1")
    expect_eq "result a: eth0 in the sandbox, one address on it" "1 eth0 /run/netns/ipa 1 0" "$1 $2 $3 $4 $5"
    expect_eq "result b: eth0 in the sandbox, one address on it" "1 eth0 /run/netns/ipb 1 0" "$7 $8 $9 ${10} ${11}"
    expect_match "address a in $net.0/24" "$net.*/24" "$6"
    expect_match "address b in $net.0/24" "$net.*/24" "${12}"
    aa=${6%/*}; ab=${12%/*}
    read mac </sys/class/net/dummy1/address
    set -- $({ ip -n ipa -d -j addr show eth0; ip -n ipb -d -j addr show eth0; } | jq -r "$KVIEW")
    expect_eq "kernel a: ipvlan $mode, mtu, the master's MAC, address" "ipvlan $mode 1400 $mac $aa" "$1 $2 $3 $4 $5"
    expect_eq "kernel b: ipvlan $mode, mtu, the master's MAC, address" "ipvlan $mode 1400 $mac $ab" "$6 $7 $8 $9 ${10}"
    expect_ping "ping a → b" ipa "$ab"
    expect_ping "ping b → a" ipb "$aa"
    cni $IPV CHECK ipa ipa "$(with_prev "$conf" "$ra")"; expect_rc "CHECK a" 0
    if [ "$mode" = l2 ]; then
        ip -n ipb addr flush dev eth0
        cni $IPV CHECK ipb ipb "$(with_prev "$conf" "$rb")"
        T_CHECKS=$((T_CHECKS + 1))
        [ "$RC" != 0 ] || fail "CHECK after the address was removed: exit 0; stdout: $OUT"
    fi
    cni $IPV DEL ipa ipa "$conf"; expect_rc "DEL a" 0
    cni $IPV DEL ipa ipa "$conf"; expect_rc "DEL a again" 0
    cni $IPV DEL ipb ipb "$conf"; expect_rc "DEL b" 0
    cni $IPV DEL ipb ipb "$conf"; expect_rc "DEL b again" 0
    expect_eq "links left in a, b" "lo|lo" "$(links_in ipa)|$(links_in ipb)"
    expect_eq "addresses left" "$IPV_CLEAN" "$(ipv_left "$name")"
    netns_del ipa ipb
    end
}

# l3s: the mode reaches the kernel; ADD/DEL only.
t_ipvlan_l3s() {
    local conf
    begin "ipvlan-l3s[$IPVLAN_IMPL]"
    netns_add ips
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"ipvl3s\",\"type\":\"ipvlan\",\"master\":\"dummy1\",\"mode\":\"l3s\",\"ipam\":$(ipv_ipam 10.213.9.0/24)}"
    cni $IPV ADD ips ips "$conf"; expect_rc ADD 0
    set -- $(ip -n ips -d -j addr show eth0 | jq -r "$KVIEW")
    expect_eq "kernel: ipvlan l3s" "ipvlan l3s" "$1 $2"
    cni $IPV DEL ips ips "$conf"; expect_rc DEL 0
    cni $IPV DEL ips ips "$conf"; expect_rc "DEL again" 0
    expect_eq "links left" lo "$(links_in ips)"
    expect_eq "addresses left" "$IPV_CLEAN" "$(ipv_left ipvl3s)"
    netns_del ips
    end
}

# A custom MAC cannot be honoured (ipvlan slaves share the master's MAC). Ours rejects it, by the
# "mac" key and by CNI_ARGS MAC=, and leaves nothing; the reference ignores both (its behaviour
# is asserted instead, so the test stays honest about which plugin ran).
t_ipvlan_mac() {
    local conf mac custom=02:13:00:00:00:99 how
    begin "ipvlan-mac[$IPVLAN_IMPL]"
    netns_add ipm
    read mac </sys/class/net/dummy1/address
    for how in key args; do
        if [ $how = key ]; then
            conf="{\"cniVersion\":\"1.0.0\",\"name\":\"ipvmac\",\"type\":\"ipvlan\",\"master\":\"dummy1\",\"mac\":\"$custom\",\"ipam\":$(ipv_ipam 10.213.10.0/24)}"
            cni $IPV ADD ipm ipm "$conf"
        else
            conf="{\"cniVersion\":\"1.0.0\",\"name\":\"ipvmac\",\"type\":\"ipvlan\",\"master\":\"dummy1\",\"ipam\":$(ipv_ipam 10.213.10.0/24)}"
            cni $IPV ADD ipm ipm "$conf" CNI_ARGS="IgnoreUnknown=1;MAC=$custom"
        fi
        if [ "$IPVLAN_IMPL" = ours ]; then
            T_CHECKS=$((T_CHECKS + 1))
            [ "$RC" != 0 ] || fail "$how: ADD with a custom MAC succeeded; stdout: $OUT"
            set -- $(printf '%s' "$OUT" | jq -r '"\(.code | type) \(.msg | ascii_downcase | test("mac"))"' 2>/dev/null)
            expect_eq "$how: a CNI error object whose msg names the MAC" "number true" "$1 $2"
            expect_eq "$how: no link left" lo "$(links_in ipm)"
            expect_eq "$how: no address left" "$IPV_CLEAN" "$(ipv_left ipvmac)"
        else
            expect_rc "$how: reference ADD ignores the MAC" 0
            expect_eq "$how: eth0 has the master's MAC" "$mac" "$(ip -n ipm -j link show eth0 | jq -r '.[0].address')"
        fi
        cni $IPV DEL ipm ipm "$conf"; expect_rc "$how: DEL" 0
    done
    netns_del ipm
    end
}

# Ours next to the reference, both delegating to host-local: the same result shape and kernel view.
t_ipvlan_vs_reference() {
    local conf r1 r2 k1 k2
    begin "ipvlan-vs-reference"
    netns_add ipr ipo
    conf="{\"cniVersion\":\"1.0.0\",\"name\":\"ipvdiff\",\"type\":\"ipvlan\",\"master\":\"dummy1\",\"mode\":\"l2\",\"mtu\":1300,\"ipam\":{\"type\":\"host-local\",\"dataDir\":\"$HL\",\"subnet\":\"10.213.11.0/24\",\"routes\":[{\"dst\":\"10.99.0.0/16\"}]},\"dns\":{\"nameservers\":[\"10.213.11.53\"]}}"
    cni $REFB/ipvlan ADD ipr ipr "$conf"; r1=$OUT; expect_rc "reference ADD" 0
    cni $OURS/ipvlan ADD ipo ipo "$conf"; r2=$OUT; expect_rc "our ADD" 0
    set -- $(printf '%s\n%s\n' "$r1" "$r2" | jq -c '[paths(scalars) | map(tostring) | join(".")] | sort | join(",")')
    expect_eq "result keys: ours as the reference's" "$1" "$2"
    set -- $(printf '%s\n%s\n' "$r1" "$r2" | jq -c '{cniVersion, dns, routes, gw: [.ips[].gateway]}')
    expect_eq "cniVersion, dns, routes, gateway: ours as the reference's" "$1" "$2"
    set -- $({ ip -n ipr -d -j addr show eth0; ip -n ipo -d -j addr show eth0; } | jq -r "$KVIEW")
    expect_eq "kernel view (kind mode mtu mac): ours as the reference's" "$1 $2 $3 $4" "$6 $7 $8 $9"
    set -- $({ ip -n ipr -j route; ip -n ipo -j route; } | jq -c '[.[] | "\(.dst)>\(.gateway)"] | sort | join(",")')
    expect_eq "routes in the container: ours as the reference's" "$1" "$2"
    cni $REFB/ipvlan DEL ipr ipr "$conf"; expect_rc "reference DEL" 0
    cni $OURS/ipvlan DEL ipo ipo "$conf"; expect_rc "our DEL" 0
    cni $OURS/ipvlan DEL ipo ipo "$conf"; expect_rc "our DEL again" 0
    expect_eq "host-local released both" 0 "$(hl_leases ipvdiff)"
    netns_del ipr ipo
    end
}

# ipvlan crash points that need the kernel (the earlier ones run on the host: tests/e2e/ipvlan-host.sh),
# and chaining: no master and no ipam, both from prevResult.
t_ipvlan_crash_chain() {
    local conf p prev
    begin "ipvlan-crash-chain"
    netns_add ipc
    conf='{"cniVersion":"1.0.0","name":"ipvc","type":"ipvlan","master":"dummy1","mode":"l2","ipam":{"type":"ipam","subnet":"10.213.23.0/24"}}'
    for p in ipvlan-after-link ipvlan-after-commit; do
        cni $OURS/ipvlan ADD ipc ipc "$conf" CNM_FAULT=$p; expect_rc "$p: killed" 137
        cni $OURS/ipvlan DEL ipc ipc "$conf"; expect_rc "$p: DEL after the crash" 0
        expect_eq "$p: no link left in the container" "lo" "$(links_in ipc)"
        expect_eq "$p: nothing left in the state" "$CLEAN" "$(leftovers)"
    done
    cni $OURS/ipvlan ADD ipc ipc "$conf"; expect_rc "ADD after the crashes" 0
    netns_del ipc
    cni $OURS/ipvlan DEL ipc ipc "$conf"; expect_rc "DEL with the netns already gone" 0
    expect_eq "…frees everything" "$CLEAN" "$(leftovers)"
    netns_add ipc
    # chained: master from prevResult's one interface, addresses from its ips
    prev='{"cniVersion":"1.0.0","interfaces":[{"name":"dummy1"}],"ips":[{"address":"10.213.24.9/24","gateway":"10.213.24.1"}]}'
    conf='{"cniVersion":"1.0.0","name":"ipvchain","type":"ipvlan"}'
    cni $OURS/ipvlan ADD ipc ipc "$(with_prev "$conf" "$prev")"; expect_rc "chained ADD" 0
    expect_eq "chained: prevResult's address on an ipvlan of dummy1" "ipvlan 10.213.24.9" "$(ip -n ipc -d -j addr show eth0 | jq -r '.[0] | "\(.linkinfo.info_kind) \([.addr_info[] | select(.family == "inet") | .local] | join(","))"')"
    cni $OURS/ipvlan DEL ipc ipc "$(with_prev "$conf" "$prev")"; expect_rc "chained DEL" 0
    expect_eq "chained: no link left" "lo" "$(links_in ipc)"
    netns_del ipc
    end
}

# cnm-shim as Docker drives it (Docker itself does not run in the VM): macvlan and ipvlan
# networks whose "<if>.<vid>" parent the shim creates on first use and removes with the last
# network on it, Join's links in the kernel, ipvlan l3's connected default route.
shim_call() { # <Method> [json]: sets OUT (the reply) and RC
    OUT=$($OURS/cnm-shim call --socket /run/cnm-shim.sock "$@" 2>&1)
    RC=$?
}
shim_network() { # <network id> <subnet> <generic options json>: Docker's sequence for network create
    shim_call IpamDriver.RequestPool "{\"AddressSpace\":\"local\",\"Pool\":\"$2\",\"V6\":false}"; expect_rc "RequestPool $2" 0
    shim_call IpamDriver.RequestAddress "{\"PoolID\":\"local/$2\",\"Address\":\"\",\"Options\":{\"RequestAddressType\":\"com.docker.network.gateway\"}}"
    expect_rc "gateway for $2" 0
    local gw; gw=$(printf '%s' "$OUT" | jq -r .Address)
    shim_call NetworkDriver.CreateNetwork "{\"NetworkID\":\"$1\",\"Options\":{\"com.docker.network.generic\":$3},\"IPv4Data\":[{\"AddressSpace\":\"local\",\"Pool\":\"$2\",\"Gateway\":\"$gw\"}]}"
    expect_rc "CreateNetwork $1" 0
}
shim_endpoint() { # <network id> <endpoint id> <pool>: RequestAddress, CreateEndpoint, Join; OUT = Join's reply
    shim_call IpamDriver.RequestAddress "{\"PoolID\":\"local/$3\",\"Address\":\"\"}"; expect_rc "RequestAddress" 0
    local a; a=$(printf '%s' "$OUT" | jq -r .Address)
    shim_call NetworkDriver.CreateEndpoint "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\",\"Interface\":{\"Address\":\"$a\"}}"; expect_rc "CreateEndpoint $2" 0
    shim_call NetworkDriver.Join "{\"NetworkID\":\"$1\",\"EndpointID\":\"$2\",\"SandboxKey\":\"/run/docker/netns/$2\"}"; expect_rc "Join $2" 0
}
t_shim_parents() {
    local join link
    begin shim-vlan-parents
    BASE_LINKS=$(links_in -)
    CNM_STATE_DIR=/run/shim-state $OURS/cnm-shim serve --socket /run/cnm-shim.sock --state-dir /run/shim-state 2>/run/shim.log &
    SHIM=$!
    for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do [ -S /run/cnm-shim.sock ] && break; sleep 0.1; done
    shim_network aaaa1111 10.213.20.0/24 '{"cnm.driver":"macvlan","parent":"dummy0.200","macvlan_mode":"bridge"}'
    expect_eq "the shim made the VLAN parent: 802.1Q id 200 on dummy0" "vlan 200" "$(ip -d -j link show dummy0.200 | jq -r '.[0].linkinfo | "\(.info_kind) \(.info_data.id)"')"
    shim_network bbbb2222 10.213.21.0/24 '{"cnm.driver":"macvlan","parent":"dummy0.200"}'
    shim_endpoint aaaa1111 eeee1111 10.213.20.0/24
    join=$OUT
    link=$(printf '%s' "$join" | jq -r .InterfaceName.SrcName)
    expect_eq "Join: the macvlan child, Docker's prefix, the subnet's gateway" "eth 10.213.20.1 true" "$(printf '%s' "$join" | jq -r '"\(.InterfaceName.DstPrefix) \(.Gateway) \(.DisableGatewayService)"')"
    expect_eq "the child is a macvlan (bridge) on dummy0.200, in the shim's netns" "macvlan bridge dummy0.200" "$(ip -d -j link show "$link" | jq -r '.[0] | "\(.linkinfo.info_kind) \(.linkinfo.info_data.mode) \(.link)"')"
    shim_call NetworkDriver.Leave '{"NetworkID":"aaaa1111","EndpointID":"eeee1111"}'; expect_rc "Leave" 0
    shim_call NetworkDriver.DeleteEndpoint '{"NetworkID":"aaaa1111","EndpointID":"eeee1111"}'; expect_rc "DeleteEndpoint" 0
    expect_eq "DeleteEndpoint removed the child" "gone" "$(ip link show "$link" >/dev/null 2>&1 && echo left || echo gone)"
    shim_call NetworkDriver.DeleteNetwork '{"NetworkID":"aaaa1111"}'; expect_rc "DeleteNetwork 1" 0
    expect_eq "the parent stays while another network uses it" "there" "$(ip link show dummy0.200 >/dev/null 2>&1 && echo there || echo gone)"
    shim_call NetworkDriver.DeleteNetwork '{"NetworkID":"bbbb2222"}'; expect_rc "DeleteNetwork 2" 0
    expect_eq "…and goes with the last one" "gone" "$(ip link show dummy0.200 >/dev/null 2>&1 && echo there || echo gone)"
    # ipvlan l3: a connected default route instead of a gateway, the child in l3 mode
    shim_network cccc3333 10.213.22.0/24 '{"cnm.driver":"ipvlan","parent":"dummy1","ipvlan_mode":"l3"}'
    shim_endpoint cccc3333 ffff3333 10.213.22.0/24
    join=$OUT
    link=$(printf '%s' "$join" | jq -r .InterfaceName.SrcName)
    expect_eq "ipvlan l3 Join: no gateway, connected default route" "null 0.0.0.0/0 1" "$(printf '%s' "$join" | jq -r '"\(.Gateway) \(.StaticRoutes[0].Destination) \(.StaticRoutes[0].RouteType)"')"
    expect_eq "the child is an ipvlan l3 on dummy1" "ipvlan l3 dummy1" "$(ip -d -j link show "$link" | jq -r '.[0] | "\(.linkinfo.info_kind) \(.linkinfo.info_data.mode) \(.link)"')"
    shim_call NetworkDriver.DeleteEndpoint '{"NetworkID":"cccc3333","EndpointID":"ffff3333"}'; expect_rc "DeleteEndpoint ipvlan" 0
    shim_call NetworkDriver.DeleteNetwork '{"NetworkID":"cccc3333"}'; expect_rc "DeleteNetwork ipvlan" 0
    expect_eq "links left in the shim's netns" "$BASE_LINKS" "$(links_in -)"
    kill $SHIM; wait $SHIM
    expect_eq "SIGTERM removed the socket" "gone" "$([ -e /run/cnm-shim.sock ] && echo left || echo gone)"
    [ "$T_FAILS" -eq 0 ] || tail -n 20 /run/shim.log
    end
}

t_modules
t_macvlan_bridge macvlan-bridge dummy0 10.213.1
t_macvlan_private
t_macvlan_vepa
t_macvlan_vlan_parent
t_bridge_vlan
t_bridge_vlan_ref
t_ipvlan l2 10.213.7
t_ipvlan l3 10.213.8
t_ipvlan_l3s
t_ipvlan_mac
[ "$IPVLAN_IMPL" = ours ] && t_ipvlan_vs_reference
[ "$IPVLAN_IMPL" = ours ] && t_ipvlan_crash_chain
[ -x $OURS/cnm-shim ] && t_shim_parents

echo "GUEST: $NTESTS tests, $FAILED failed"
[ "$NTESTS" -gt 0 ] && [ "$FAILED" -eq 0 ]
