#!/usr/bin/env bash
# The storm: 64 attachments (16 sandboxes × 4 interfaces) ADD and DEL in parallel on one small
# pool, with macspoofchk and ipMasq (links and nft elements), while a GC runs every few ms with
# the list a runtime would give (every attachment whose ADD has returned, none still in flight),
# cnm-shim takes and frees Docker leases on the same pool, and random calls are killed with
# SIGKILL. Afterwards, and after a DEL of everything: no address was ever held twice at once
# (every result is checked), nothing is left (lease, record, link, nft element), and the pool
# allocates fully again. Every wait is bounded.
source "$(dirname "$0")/lib.sh"
unset CNM_GC_GRACE_MS # the default: the list of a GC is computed while ADDs are in flight
HOST=$(new_netns host)
SANDBOXES=()
for s in $(seq 1 16); do SANDBOXES+=("$(new_netns "s$s")"); done
SHIM=$BUILD/cnm-shim/cnm-shim
SOCK=$WORK/shim.sock
LOG=$WORK/events
mkdir -p "$WORK/valid" "$WORK/events.d"
BR=$PLUGINS/bridge
SUBNET=10.213.168.0/25
conf() {
    echo "{\"cniVersion\":\"1.1.0\",\"name\":\"storm\",\"type\":\"bridge\",\"bridge\":\"cnmstorm0\",\"isGateway\":true,\"ipMasq\":true,
      \"macspoofchk\":true,\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"$SUBNET\"}]]}$1}"
}
CONF=$(conf "")
plugin() { # cmd id netns ifname conf [timeout-prefix…]: runs the bridge in the host netns
    local cmd=$1 id=$2 netns=$3 ifname=$4 c=$5
    shift 5
    printf '%s' "$c" | "$@" ip netns exec "$HOST" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$netns" \
        CNI_IFNAME="$ifname" CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$BR"
}
now() { echo "${EPOCHREALTIME/./}"; }

ip netns exec "$HOST" "$SHIM" serve --socket "$SOCK" --state-dir "$CNM_STATE_DIR" >"$WORK/shim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
call() { curl -s --max-time 10 --unix-socket "$SOCK" -X POST "http://shim/$1" -d "$2"; }

# The network exists first (one ADD), so the Docker side finds the pool of the CNI network.
plugin ADD seed "/run/netns/${SANDBOXES[0]}" seed0 "$CONF" >/dev/null
pool=$(call IpamDriver.RequestPool "{\"AddressSpace\":\"local\",\"Pool\":\"$SUBNET\",\"Options\":{}}" | jq -r .PoolID)
expect_eq "Docker's pool for the subnet is the CNI network's" "cni:storm/$SUBNET" "$pool"

worker() { # index: 4 rounds of ADD (sometimes killed) … DEL
    local i=$1 s=$(( ($1 - 1) / 4 )) ifname="eth$(( ($1 - 1) % 4 ))" round out rc addr id
    local netns="/run/netns/${SANDBOXES[$s]}" ev="$WORK/events.d/w$1"
    id="c$i"
    for round in 1 2 3 4; do
        if [ $((RANDOM % 6)) -eq 0 ]; then
            plugin ADD "$id" "$netns" "$ifname" "$CONF" timeout -s KILL "0.0$((RANDOM % 40 + 10))" >/dev/null 2>&1 || true
            echo "KILLED $id@$ifname $(now)" >>"$ev"
        else
            out=$(plugin ADD "$id" "$netns" "$ifname" "$CONF" timeout 60) && rc=0 || rc=$?
            if [ $rc -eq 0 ]; then
                addr=$(jq -r '.ips[0].address' <<<"$out" | cut -d/ -f1)
                echo "HOLD $addr $id@$ifname $(now)" >>"$ev"
                : >"$WORK/valid/$id@$ifname"
                sleep "0.0$((RANDOM % 50))"
                rm -f "$WORK/valid/$id@$ifname"
                echo "FREE $addr $id@$ifname $(now)" >>"$ev"
            elif ! jq -e '.code == 102 or .code == 11' <<<"$out" >/dev/null 2>&1; then
                echo "ADDFAIL $id@$ifname $rc $(tr '\n' ' ' <<<"$out")" >>"$ev"
            fi
        fi
        local tries=0
        until plugin DEL "$id" "$netns" "$ifname" "$CONF" timeout 60 >/dev/null; do
            tries=$((tries + 1))
            [ $tries -lt 3 ] || { echo "DELFAIL $id@$ifname" >>"$ev"; break; }
        done
    done
}

gc_loop() {
    local list a c ifn
    while [ ! -e "$WORK/stop" ]; do
        list="["
        for a in "$WORK"/valid/*; do
            [ -e "$a" ] || continue
            a=$(basename "$a"); c=${a%@*}; ifn=${a#*@}
            list+="{\"containerID\":\"$c\",\"ifname\":\"$ifn\"},"
        done
        list="${list%,}]"
        # The seed attachment stays valid throughout.
        list=$(jq -c '. + [{"containerID":"seed","ifname":"seed0"}]' <<<"$list")
        plugin GC "" "" "" "$(conf ",\"cni.dev/valid-attachments\":$list")" timeout 60 >/dev/null 2>&1 || echo "GCFAIL $(now)" >>"$WORK/events.d/gc"
        sleep "0.00$((RANDOM % 9 + 1))"
    done
}

docker_loop() {
    local out addr
    while [ ! -e "$WORK/stop" ]; do
        out=$(call IpamDriver.RequestAddress "{\"PoolID\":\"$pool\",\"Address\":\"\",\"Options\":{}}")
        addr=$(jq -r '.Address // empty' <<<"$out" | cut -d/ -f1)
        if [ -n "$addr" ]; then
            echo "HOLD $addr docker $(now)" >>"$WORK/events.d/docker"
            sleep "0.0$((RANDOM % 30))"
            echo "FREE $addr docker $(now)" >>"$WORK/events.d/docker"
            call IpamDriver.ReleaseAddress "{\"PoolID\":\"$pool\",\"Address\":\"$addr\"}" >/dev/null
        fi
    done
}

start=$(date +%s)
gc_loop & GC_PID=$!; PIDS+=($GC_PID)
docker_loop & DK_PID=$!; PIDS+=($DK_PID)
WORKERS=()
for i in $(seq 1 64); do worker "$i" & WORKERS+=($!); PIDS+=($!); done
# Bounded: the storm has 240 s.
# (Its sleep must not outlive it: a child holding the test's stdout keeps meson waiting.)
( trap 'kill "$s" 2>/dev/null; exit 0' TERM; sleep 240 & s=$!; wait "$s"; touch "$WORK/timeout"; kill "${WORKERS[@]}" 2>/dev/null ) >/dev/null 2>&1 &
WATCH=$!; PIDS+=($WATCH)
for p in "${WORKERS[@]}"; do wait "$p" 2>/dev/null || true; done
touch "$WORK/stop"
wait "$GC_PID" "$DK_PID" 2>/dev/null || true
kill "$WATCH" 2>/dev/null || true
expect_eq "the storm finished within its bound" no "$([ -e "$WORK/timeout" ] && echo yes || echo no)"
echo "storm took $(( $(date +%s) - start )) s"
cat "$WORK"/events.d/* >"$LOG"
holds=$(grep -c '^HOLD' "$LOG" || true)
kills=$(grep -c '^KILLED' "$LOG" || true)
echo "holds=$holds kills=$kills gc-runs-failed=$(grep -c '^GCFAIL' "$LOG" || true)"
expect_eq "many addresses were handed out" yes "$([ "$holds" -gt 200 ] && echo yes || echo no)"
expect_eq "no ADD failed but for exhaustion or try-again" "" "$(grep '^ADDFAIL' "$LOG" | head -3)"
expect_eq "no DEL failed" "" "$(grep '^DELFAIL' "$LOG" | head -3)"
expect_eq "no GC failed" "" "$(grep '^GCFAIL' "$LOG" | head -3)"

# No address held twice at once: per address, the HOLD/FREE intervals never overlap.
overlaps=$(grep -E '^(HOLD|FREE) ' "$LOG" | sort -k4,4n -s | awk '
    $1 == "HOLD" { if (($2 in holder) && holder[$2] != "") { print $2 " held by " holder[$2] " and " $3; } holder[$2] = $3 }
    $1 == "FREE" { if (holder[$2] == $3) holder[$2] = "" }')
expect_eq "no address was ever held by two at once" "" "$overlaps"

# DEL of everything (the seed too), a GC with an empty list: nothing is left.
for i in $(seq 1 64); do
    s=$(( (i - 1) / 4 )); plugin DEL "c$i" "/run/netns/${SANDBOXES[$s]}" "eth$(( (i - 1) % 4 ))" "$CONF" >/dev/null || fail "final DEL c$i"
done
plugin DEL seed "/run/netns/${SANDBOXES[0]}" seed0 "$CONF" >/dev/null || fail "final DEL seed"
plugin GC "" "" "" "$(conf ',"cni.dev/valid-attachments":[]')" >/dev/null || fail "final GC"
expect_eq "no lease is left" 0 "$(lease_count)"
expect_eq "no endpoint record is left" 0 "$(find "$CNM_STATE_DIR/networks" -name '*.json' ! -name network.json 2>/dev/null | wc -l)"
expect_eq "no veth is left on the host" 0 "$(ip -n "$HOST" -o link show type veth | wc -l)"
expect_eq "no masquerade element is left" 0 "$(ip netns exec "$HOST" nft -j list map ip cnm masq 2>/dev/null | jq '[.nftables[].map.elem // [] | .[]] | length' 2>/dev/null || echo 0)"
expect_eq "no MAC spoof check element is left" 0 "$(ip netns exec "$HOST" nft -j list set bridge cnm allowed 2>/dev/null | jq '[.nftables[].set.elem // [] | .[]] | length' 2>/dev/null || echo 0)"
left=0
for s in "${SANDBOXES[@]}"; do left=$((left + $(ip -n "$s" -o link | wc -l) - 1)); done
expect_eq "no interface is left in a sandbox" 0 "$left"

# The pool allocates fully again: 125 usable addresses (.2–.126; .1 is the gateway).
I="{\"cniVersion\":\"1.1.0\",\"name\":\"storm\",\"type\":\"bridge\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"$SUBNET\"}]]}}"
got=0
for k in $(seq 1 125); do
    cni "$PLUGINS/ipam" ADD "f$k" /run/netns/none eth0 "$I"
    [ "$RC" -eq 0 ] && got=$((got + 1))
done
expect_eq "the pool hands out all 125 addresses again" 125 "$got"
cni "$PLUGINS/ipam" ADD f126 /run/netns/none eth0 "$I"
expect_eq "…and then is exhausted (code 102)" 102 "$(jq .code <<<"$OUT")"
for k in $(seq 1 125); do cni "$PLUGINS/ipam" DEL "f$k" /run/netns/none eth0 "$I"; done
expect_eq "…and frees them all" 0 "$(lease_count)"
finish
