#!/usr/bin/env bash
# The built `ipam` binary driven as a runtime drives it, for every cniVersion: result shapes,
# ADD/CHECK/DEL/STATUS/GC and the files it leaves.
source "$(dirname "$0")/lib.sh"

IPAM="$PLUGINS/ipam"
conf() { # <version> [extra top-level json]
    echo "{\"cniVersion\":\"$1\",\"name\":\"e2enet\",\"type\":\"bridge\"${2:-},\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.40.0/24\"}],[{\"subnet\":\"fd00:213:40::/64\"}]],\"routes\":[{\"dst\":\"0.0.0.0/0\"}]}}"
}
conf4() {
    echo "{\"cniVersion\":\"$1\",\"name\":\"e2enet\",\"type\":\"bridge\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.40.0/24\"}],[{\"subnet\":\"fd00:213:40::/64\"}]]}}"
}

for v in 0.1.0 0.2.0; do
    cni "$IPAM" ADD "legacy-$v" /run/netns/x eth0 "$(conf4 $v)"
    expect_eq "$v ADD rc" 0 "$RC"
    expect_eq "$v ip4 shape" "10.213.40" "$(jq -r '.ip4.ip' <<<"$OUT" | cut -d. -f1-3)"
    expect_eq "$v ip6 shape" "true" "$(jq -r '.ip6.ip | startswith("fd00:213:40::")' <<<"$OUT")"
    expect_eq "$v no ips list" "null" "$(jq -r '.ips' <<<"$OUT")"
    cni "$IPAM" DEL "legacy-$v" "" eth0 "$(conf4 $v)"
    expect_eq "$v DEL rc" 0 "$RC"
done

for v in 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0; do
    id="ctr-$v"
    cni "$IPAM" ADD "$id" /run/netns/x eth0 "$(conf $v)"
    expect_eq "$v ADD rc" 0 "$RC"
    expect_eq "$v cniVersion" "$v" "$(jq -r .cniVersion <<<"$OUT")"
    list=ips; [ "$v" == 0.3.0 ] && list=ip
    expect_eq "$v two addresses" 2 "$(jq ".$list | length" <<<"$OUT")"
    case $v in
        0.3.*|0.4.0) expect_eq "$v ips[].version" "4 6" "$(jq -r "[.$list[].version] | join(\" \")" <<<"$OUT")" ;;
        *) expect_eq "$v no ips[].version" "null" "$(jq -r ".$list[0].version" <<<"$OUT")" ;;
    esac
    expect_eq "$v gateway" "10.213.40.1" "$(jq -r ".$list[0].gateway" <<<"$OUT")"
    expect_eq "$v routes" "0.0.0.0/0" "$(jq -r '.routes[0].dst' <<<"$OUT")"
    prev=$OUT
    if [ "$v" != 0.3.0 ] && [ "$v" != 0.3.1 ]; then
        cni "$IPAM" CHECK "$id" /run/netns/x eth0 "$(conf $v ",\"prevResult\":$prev")"
        expect_eq "$v CHECK rc" 0 "$RC"
        expect_eq "$v CHECK prints nothing" "" "$OUT"
    else
        cni "$IPAM" CHECK "$id" /run/netns/x eth0 "$(conf $v ",\"prevResult\":$prev")"
        expect_eq "$v CHECK refused" 1 "$(jq .code <<<"$OUT")"
    fi
    # prevResult in another version than the conf is accepted.
    cni "$IPAM" DEL "$id" /run/netns/x eth0 "$(conf 1.0.0 ",\"prevResult\":$prev")"
    expect_eq "$v DEL rc" 0 "$RC"
    expect_eq "$v DEL prints nothing" "" "$OUT"
    cni "$IPAM" DEL "$id" /run/netns/x eth0 "$(conf $v)"
    expect_eq "$v second DEL rc" 0 "$RC"
done
expect_eq "no lease left after DELs" 0 "$(lease_count)"

# CHECK fails once the lease is gone behind our back.
cni "$IPAM" ADD c1 /run/netns/x eth0 "$(conf 1.0.0)"
prev=$OUT
rm -f "$CNM_STATE_DIR/ipam/cni:e2enet/10.213.40.0_24/leases/$(jq -r '.ips[0].address' <<<"$prev" | cut -d/ -f1)"
cni "$IPAM" CHECK c1 /run/netns/x eth0 "$(conf 1.0.0 ",\"prevResult\":$prev")"
expect_eq "CHECK of a lost lease fails" 1 "$RC"
cni "$IPAM" DEL c1 "" eth0 "$(conf 1.0.0)"

# DEL with an empty CNI_NETNS still frees the lease.
cni "$IPAM" ADD c2 /run/netns/gone eth0 "$(conf 1.0.0)"
cni "$IPAM" DEL c2 "" eth0 "$(conf 1.0.0)"
expect_eq "DEL without netns frees" 0 "$(lease_count)"

# STATUS and GC (1.1.0).
for i in 1 2 3; do cni "$IPAM" ADD "gc$i" /run/netns/x eth0 "$(conf 1.1.0)"; done
cni "$IPAM" STATUS "" "" "" "$(conf 1.1.0)"
expect_eq "STATUS ready" 0 "$RC"
cni "$IPAM" GC "" "" "" "$(conf 1.1.0 ',"cni.dev/valid-attachments":[{"containerID":"gc2","ifname":"eth0"}]')"
expect_eq "GC rc" 0 "$RC"
expect_eq "GC kept one attachment (2 leases)" 2 "$(lease_count)"
cni "$IPAM" GC "" "" "" "$(conf 1.1.0 ',"cni.dev/attachments":[]')"
expect_eq "GC with the old key and an empty list frees all" 0 "$(lease_count)"

full='{"cniVersion":"1.1.0","name":"tiny","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.41.0/30"}]]}}'
cni "$IPAM" ADD t1 /run/netns/x eth0 "$full"
cni "$IPAM" STATUS "" "" "" "$full"
expect_eq "STATUS of a full pool is 50" 50 "$(jq .code <<<"$OUT")"
cni "$IPAM" ADD t2 /run/netns/x eth0 "$full"
expect_eq "exhaustion is an error" 1 "$RC"
expect_eq "exhaustion message" true "$(jq '.msg | contains("no IP addresses available")' <<<"$OUT")"

# The records a person can read.
expect_eq "network record" bridge "$(jq -r .driver "$CNM_STATE_DIR/networks/tiny/network.json")"
expect_eq "endpoint record" ready "$(jq -r .phase "$CNM_STATE_DIR/networks/tiny/endpoints/t1@eth0.json")"
expect_eq "…naming its sandbox and netns" "t1 /run/netns/x" "$(jq -r '"\(.sandbox) \(.netns)"' "$CNM_STATE_DIR/networks/tiny/endpoints/t1@eth0.json")"
expect_eq "no sandbox document (the endpoint records are the sandbox)" no "$([ -e "$CNM_STATE_DIR/sandboxes" ] && echo yes || echo no)"
expect_eq "file mode" 600 "$(stat -c %a "$CNM_STATE_DIR/networks/tiny/network.json")"
expect_eq "dir mode" 700 "$(stat -c %a "$CNM_STATE_DIR/networks/tiny")"

# dataDir in the conf moves the state root (top-level first, then ipam.dataDir).
alt="$WORK/alt"
cni "$IPAM" ADD d1 /run/netns/x eth0 "{\"cniVersion\":\"1.0.0\",\"name\":\"dd\",\"type\":\"x\",\"ipam\":{\"type\":\"ipam\",\"dataDir\":\"$alt\",\"subnet\":\"10.213.42.0/24\"}}"
expect_eq "ipam.dataDir honoured" true "$([ -f "$alt/networks/dd/network.json" ] && echo true || echo false)"

# The plugin log (logFile): an ADD and a failing ADD write one line each; stdout is as without it.
LOG=$WORK/plugin.log
logconf() { echo "{\"cniVersion\":\"1.0.0\",\"name\":\"logged\",\"type\":\"bridge\"${1:-},\"ipam\":{\"type\":\"ipam\",\"subnet\":\"10.213.43.0/30\"}}"; }
cni "$IPAM" ADD l1 /run/netns/x eth0 "$(logconf)"; plain_ok=$OUT
cni "$IPAM" ADD l2 /run/netns/x eth0 "$(logconf)"; plain_err=$OUT
cni "$IPAM" DEL l1 /run/netns/x eth0 "$(logconf)"
expect_eq "no log file without logFile" "no" "$([ -e "$LOG" ] && echo yes || echo no)"
cni "$IPAM" ADD l1 /run/netns/x eth0 "$(logconf ",\"logFile\":\"$LOG\"")"
expect_eq "ADD with a log prints what it prints without" "$plain_ok" "$OUT"
cni "$IPAM" ADD l2 /run/netns/x eth0 "$(logconf ",\"logFile\":\"$LOG\"")"
expect_eq "…and so does a failing ADD" "$plain_err" "$OUT"
expect_eq "one line per ADD" 2 "$(grep -cE ' ADD l[12] eth0 (ok|error) ' "$LOG")"
expect_eq "the ADD's line" 1 "$(grep -cE '^[0-9-]{10}T[0-9:.]{12}Z ipam\[[0-9]+\] ADD l1 eth0 ok [0-9]+ms$' "$LOG")"
expect_eq "the failing ADD's line has its code and message" 1 "$(grep -cE ' ipam\[[0-9]+\] ADD l2 eth0 error [0-9]+ [0-9]+ms: .*no IP addresses available' "$LOG")"
expect_eq "…and the steps it undid are logged before it" yes "$(grep -q 'undid intent' "$LOG" && echo yes || echo no)"
expect_eq "the log is 0600" 600 "$(stat -c %a "$LOG")"
finish
