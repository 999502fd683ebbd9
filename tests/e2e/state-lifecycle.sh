#!/usr/bin/env bash
# State you can trust, through the built `bridge` and `ipam` in a throwaway host netns:
#  - a first ADD that fails after validation leaves no network record, and a fixed conf works;
#  - a CNI-made network follows its conf: its last DEL removes its record and its firewall chain,
#    an edited conf (another bridge, subnet) takes effect, the round-robin position survives;
#  - ENOSPC at an ADD's writes (a full tmpfs) leaves no lease, and DEL then frees everything;
#  - DEL of an unknown attachment succeeds on a read-only state dir, STATUS says not ready there.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
C1=$(new_netns c1)
C2=$(new_netns c2)
MOUNTS=()
cleanup_mounts() { local m; for m in "${MOUNTS[@]:-}"; do [ -n "$m" ] && umount -l "$m" 2>/dev/null || true; done; }
trap 'cleanup_mounts; cleanup' EXIT

hcni() { # plugin cmd id netns ifname conf [env…]: the plugin runs in the host netns
    local plugin=$1 cmd=$2 id=$3 netns=$4 ifname=$5 conf=$6
    shift 6
    set +e
    OUT=$(printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$netns" \
        CNI_IFNAME="$ifname" CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$@" "$plugin")
    RC=$?
    set -e
}
BR=$PLUGINS/bridge
conf() { # name bridge subnet [extra keys]
    echo "{\"cniVersion\":\"1.0.0\",\"name\":\"$1\",\"type\":\"bridge\",\"bridge\":\"$2\",\"isGateway\":true${4:+,$4},
      \"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"$3\"}]]}}"
}
has_network() { [ -e "$CNM_STATE_DIR/networks/$1/network.json" ] && echo yes || echo no; }

# ---- a failed first ADD leaves no network record -------------------------------------------------
ip -n "$HOST" link add cnmsl-dummy type bridge 2>/dev/null || true
for bad in 'lo-bridge' 'missing-ipam' 'multicast-mac'; do
    case $bad in
        lo-bridge) c=$(conf "fail-$bad" lo 10.213.160.0/24); extra=() ;;
        missing-ipam) c="{\"cniVersion\":\"1.0.0\",\"name\":\"fail-$bad\",\"type\":\"bridge\",\"bridge\":\"cnmsl0\",\"ipam\":{\"type\":\"no-such-ipam\"}}"; extra=() ;;
        multicast-mac) c=$(conf "fail-$bad" cnmsl0 10.213.160.0/24); extra=(CNI_ARGS=MAC=01:00:5e:00:00:01) ;;
    esac
    hcni "$BR" ADD "id-$bad" "/run/netns/$C1" eth0 "$c" "${extra[@]}"
    expect_eq "$bad: first ADD fails" 1 "$RC"
    expect_eq "$bad: …and leaves no network record" no "$(has_network "fail-$bad")"
    expect_eq "$bad: …nor a lease" 0 "$(lease_count)"
    hcni "$BR" ADD "id-$bad" "/run/netns/$C1" eth0 "$(conf "fail-$bad" cnmsl0 10.213.160.0/24)"
    expect_eq "$bad: the fixed conf then works" 0 "$RC"
    hcni "$BR" DEL "id-$bad" "/run/netns/$C1" eth0 "$(conf "fail-$bad" cnmsl0 10.213.160.0/24)"
    expect_eq "$bad: DEL" 0 "$RC"
done

# The plugin log gets one line per verb and every step a failed ADD undid (never stdout).
hcni "$BR" ADD logged "/run/netns/$C1" eth0 "$(conf logged lo 10.213.160.0/24)" CNM_LOG_FILE="$WORK/plugin.log"
expect_eq "a failed ADD with a log: stdout is the error object only" 7 "$(jq .code <<<"$OUT")"
expect_eq "…the log has the verb's line" 1 "$(grep -c ' ADD logged eth0 error 7 ' "$WORK/plugin.log")"
expect_eq "…and the steps it undid" yes "$(grep -q 'undid intent' "$WORK/plugin.log" && grep -q 'undid network record' "$WORK/plugin.log" && echo yes || echo no)"
expect_eq "…in a file of mode 0600" 600 "$(stat -c %a "$WORK/plugin.log")"

# ---- a CNI-made network follows its conf ------------------------------------------------------
A=$(conf edit cnmsl1 10.213.161.0/24 '"ipMasq":true')
hcni "$BR" ADD c1 "/run/netns/$C1" eth0 "$A"
expect_eq "ADD on network edit" 0 "$RC"
first=$(jq -r '.ips[0].address' <<<"$OUT")
chain_count() { ip netns exec "$HOST" nft list table ip cnm 2>/dev/null | grep -c "chain n_edit_" || true; }
expect_eq "its masquerade chain exists" 1 "$(chain_count)"
hcni "$BR" DEL c1 "/run/netns/$C1" eth0 "$A"
expect_eq "DEL of its last endpoint" 0 "$RC"
expect_eq "…removes the network record" no "$(has_network edit)"
expect_eq "…and its firewall chain" 0 "$(chain_count)"
hcni "$BR" ADD c1 "/run/netns/$C1" eth0 "$A"
second=$(jq -r '.ips[0].address' <<<"$OUT")
expect_eq "the next ADD is not handed the just-freed address ($first)" yes "$([ "$first" != "$second" ] && echo yes || echo no)"
hcni "$BR" DEL c1 "/run/netns/$C1" eth0 "$A"
B=$(conf edit cnmsl2 10.213.162.0/24)
hcni "$BR" ADD c1 "/run/netns/$C1" eth0 "$B"
expect_eq "an edited conf (bridge, subnet) takes effect after the last DEL" "0 10.213.162" "$RC $(jq -r '.ips[0].address' <<<"$OUT" | cut -d. -f1-3)"
hcni "$BR" ADD c2 "/run/netns/$C2" eth0 "$(conf edit cnmsl3 10.213.162.0/24)"
expect_eq "while endpoints exist, another bridge is refused naming both" "1 yes" \
    "$RC $(grep -q 'cnmsl2' <<<"$OUT" && grep -q 'cnmsl3' <<<"$OUT" && echo yes || echo no)"
hcni "$BR" DEL c1 "/run/netns/$C1" eth0 "$B"

# Keys of one attachment follow each ADD's conf; keys of the network must agree.
hcni "$BR" ADD c1 "/run/netns/$C1" eth0 "$(conf keys cnmsl6 10.213.166.0/24 '"mtu":1400')"
hcni "$BR" ADD c2 "/run/netns/$C2" eth0 "$(conf keys cnmsl6 10.213.166.0/24 '"mtu":1300,"hairpinMode":true')"
expect_eq "a second ADD with another mtu and hairpinMode succeeds" 0 "$RC"
expect_eq "…each container has its own conf's mtu" "1400 1300" \
    "$(ip -n "$C1" -j link show eth0 | jq '.[0].mtu') $(ip -n "$C2" -j link show eth0 | jq '.[0].mtu')"
hcni "$BR" ADD c3 "/run/netns/$C2" eth1 "$(conf keys cnmsl6 10.213.166.0/24 '"ipMasq":true')"
expect_eq "a network key (ipMasq) that disagrees is refused" 1 "$RC"
for id in c1 c2; do hcni "$BR" DEL $id "/run/netns/$( [ $id == c1 ] && echo "$C1" || echo "$C2")" eth0 "$(conf keys cnmsl6 10.213.166.0/24)"; done
expect_eq "DELs of both" "0 no" "$RC $(has_network keys)"

# ---- DEL and GC of the same attachment at the same time both succeed, leaving nothing ----------
R=$(conf race cnmsl8 10.213.167.64/26 '"ipMasq":true,"macspoofchk":true' | sed 's/"1.0.0"/"1.1.0"/')
Rgc=$(conf race cnmsl8 10.213.167.64/26 '"ipMasq":true,"macspoofchk":true,"cni.dev/valid-attachments":[]' | sed 's/"1.0.0"/"1.1.0"/')
bad=0
for k in $(seq 1 12); do
    hcni "$BR" ADD "r$k" "/run/netns/$C1" eth0 "$R"
    [ "$RC" -eq 0 ] || { bad=$((bad + 1)); continue; }
    ( hcni "$BR" DEL "r$k" "/run/netns/$C1" eth0 "$R"; echo "$RC" >"$WORK/race-del" ) &
    ( hcni "$BR" GC "" "" "" "$Rgc" CNM_GC_GRACE_MS=0; echo "$RC" >"$WORK/race-gc"; echo "$OUT" >"$WORK/race-gc-out" ) &
    wait
    [ "$(cat "$WORK/race-del") $(cat "$WORK/race-gc")" == "0 0" ] || { bad=$((bad + 1)); echo "race $k: DEL/GC rc $(cat "$WORK/race-del") $(cat "$WORK/race-gc") $(tr "\n" " " <"$WORK/race-gc-out")" >&2; }
done
expect_eq "12 times DEL and GC of one attachment at once: both succeed" 0 "$bad"
expect_eq "…and leave no lease, record, link or element" "0 no 1 0" "$(lease_count) $(has_network race) $(ip -n "$C1" -o link | wc -l) \
$(ip netns exec "$HOST" nft -j list set bridge cnm allowed 2>/dev/null | jq '[.nftables[].set.elem // [] | .[]] | length' 2>/dev/null || echo 0)"

# ---- cnm-shim gc decides an endpoint is gone only when it can know ---------------------------
SHIM=$BUILD/cnm-shim/cnm-shim
G=$(conf gcns cnmsl7 10.213.167.0/24)
hcni "$BR" ADD g1 "/run/netns/$C1" eth0 "$G"
expect_eq "ADD of a live pod" 0 "$RC"
# From a mount namespace where /run/netns is not what the ADD saw, the pod's netns path is no netns.
hidden() { ip netns exec "$HOST" unshare -m --propagation private sh -c 'mount -t tmpfs none /run/netns && exec "$@"' hidden "$@"; }
out=$(hidden "$SHIM" gc --json --state-dir "$CNM_STATE_DIR")
expect_eq "gc from another mount namespace removes no live pod (its host veth says it lives)" 0 "$(jq '.removed | length' <<<"$out")"
expect_eq "…and the pod keeps its interface" 1 "$(ip -n "$C1" -o link show eth0 | wc -l)"
I="{\"cniVersion\":\"1.1.0\",\"name\":\"gcip\",\"type\":\"ipam\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.167.128/25\"}]]}}"
cni "$PLUGINS/ipam" ADD g2 /run/netns/not-here eth0 "$I"
out=$(hidden "$SHIM" gc --json --state-dir "$CNM_STATE_DIR")
expect_eq "an endpoint without a host link, added from another mount namespace, is left, saying why" "0 g2 true" \
    "$(jq '.removed | length' <<<"$out") $(jq -r '.left[0].endpoint' <<<"$out") $(jq -r '.left[0].why | test("mount namespace")' <<<"$out")"
out=$("$SHIM" gc --json --state-dir "$CNM_STATE_DIR")
expect_eq "gc from the mount namespace of its ADD removes it" "g2" "$(jq -r '[.removed[].endpoint] | join(" ")' <<<"$out")"
hcni "$BR" DEL g1 "/run/netns/$C1" eth0 "$G"

# ---- ENOSPC ---------------------------------------------------------------------------------
SMALL=$WORK/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=256k,mode=0700 tmpfs "$SMALL"
MOUNTS+=("$SMALL")
saved=$CNM_STATE_DIR
export CNM_STATE_DIR=$SMALL/state
F=$(conf full cnmsl4 10.213.163.0/24)
hcni "$BR" ADD f1 "/run/netns/$C1" eth0 "$F"
expect_eq "ADD on the small state dir" 0 "$RC"
dd if=/dev/zero of="$SMALL/filler" bs=4k 2>/dev/null || true
hcni "$BR" ADD f2 "/run/netns/$C2" eth0 "$F"
expect_eq "ADD on a full state dir fails" 1 "$RC"
expect_eq "…leaving only the first lease" 1 "$(lease_count)"
expect_eq "…and no link in the container" 1 "$(ip -n "$C2" -o link | wc -l)"
hcni "$BR" DEL f2 "/run/netns/$C2" eth0 "$F"
expect_eq "DEL of the failed one succeeds" 0 "$RC"
rm -f "$SMALL/filler"
hcni "$BR" DEL f1 "/run/netns/$C1" eth0 "$F"
expect_eq "DEL of the first one" 0 "$RC"
expect_eq "…and nothing is leased" 0 "$(lease_count)"
export CNM_STATE_DIR=$saved

# A write error at the round-robin cursor (after the lease is taken): a directory in its place.
W=$(conf cursor cnmsl5 10.213.165.0/24)
hcni "$BR" ADD w1 "/run/netns/$C1" eth0 "$W"
expect_eq "ADD before the cursor breaks" 0 "$RC"
cursor=$(find "$CNM_STATE_DIR/ipam" -path '*10.213.165.0*' -name cursor)
rm -f "$cursor"; mkdir "$cursor"; touch "$cursor/x"
hcni "$BR" ADD w2 "/run/netns/$C2" eth0 "$W"
expect_eq "ADD whose cursor write fails fails" 1 "$RC"
expect_eq "…and leaves its fresh lease behind? no: one lease" 1 "$(lease_count)"
hcni "$BR" DEL w2 "/run/netns/$C2" eth0 "$W"
rm -rf "$cursor"
hcni "$BR" DEL w1 "/run/netns/$C1" eth0 "$W"
expect_eq "DEL after it leaves nothing" "0 0" "$RC $(lease_count)"

# ---- a read-only state dir ------------------------------------------------------------------
RO=$WORK/ro
mkdir -p "$RO/state"
chmod 0700 "$RO/state"
mount --bind "$RO/state" "$RO/state"
MOUNTS+=("$RO/state")
mount -o remount,bind,ro "$RO/state"
I="{\"cniVersion\":\"1.1.0\",\"name\":\"ro\",\"type\":\"ipam\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.164.0/24\"}]]}}"
hcni "$PLUGINS/ipam" DEL nobody /run/netns/none eth0 "$I" CNM_STATE_DIR="$RO/state"
expect_eq "DEL of an unknown attachment succeeds on a read-only state dir" 0 "$RC"
hcni "$PLUGINS/ipam" STATUS "" "" "" "$I" CNM_STATE_DIR="$RO/state"
expect_eq "STATUS on a read-only state dir says not ready (50)" "1 50" "$RC $(jq -r .code <<<"$OUT")"
finish
