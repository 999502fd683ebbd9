#!/usr/bin/env bash
# Interop: the reference bridge (/usr/lib/cni/bridge, containernetworking-plugins) delegating to
# our `ipam`, in a throwaway "host" netns with two container netns: ADD, ping, CHECK, DEL, for
# every cniVersion the reference speaks with chaining (0.3.1, 0.4.0, 1.0.0).
source "$(dirname "$0")/lib.sh"
[ -x "$REF/bridge" ] || { echo "reference plugins missing: apt-get install containernetworking-plugins" >&2; exit 1; }

HOST=$(new_netns host)
n=0
for v in 0.3.1 0.4.0 1.0.0; do
    n=$((n + 1))
    C1=$(new_netns "c1v$n"); C2=$(new_netns "c2v$n")
    conf="{\"cniVersion\":\"$v\",\"name\":\"refbr$n\",\"type\":\"bridge\",\"bridge\":\"cnmrb$n\",\"isGateway\":true,
      \"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.5$n.0/24\"}]]}}"
    declare -A ADDR=()
    for c in "$C1" "$C2"; do
        set +e
        OUT=$(printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND=ADD CNI_CONTAINERID="id-$c" CNI_NETNS="/run/netns/$c" \
            CNI_IFNAME=eth0 CNI_PATH="$PLUGINS:$REF" "$REF/bridge")
        RC=$?
        set -e
        expect_eq "$v reference bridge ADD via our ipam ($c)" 0 "$RC"
        [ "$RC" -eq 0 ] || { echo "$OUT" >&2; continue; }
        ADDR[$c]=$(jq -r '.ips[0].address' <<<"$OUT" | cut -d/ -f1)
        expect_eq "$v address from our pool" "10.213.5$n" "$(cut -d. -f1-3 <<<"${ADDR[$c]}")"
        expect_eq "$v address is on eth0 in the container" 1 "$(ip -n "$c" -j addr show dev eth0 | jq "[.[0].addr_info[] | select(.local == \"${ADDR[$c]}\")] | length")"
        if [ "$v" != 0.3.1 ]; then
            set +e
            CK=$(printf '%s' "$(jq -c ". + {prevResult: $OUT}" <<<"$conf")" | ip netns exec "$HOST" env CNI_COMMAND=CHECK \
                CNI_CONTAINERID="id-$c" CNI_NETNS="/run/netns/$c" CNI_IFNAME=eth0 CNI_PATH="$PLUGINS:$REF" "$REF/bridge")
            RC=$?
            set -e
            expect_eq "$v CHECK through the reference bridge ($c) [$CK]" 0 "$RC"
        fi
    done
    expect_eq "$v distinct addresses" 2 "$(printf '%s\n' "${ADDR[@]}" | sort -u | wc -l)"
    if ip netns exec "$C1" ping -c 1 -W 2 "${ADDR[$C2]}" >/dev/null; then pass "$v ping c1 → c2"; CHECKS=$((CHECKS+1)); else fail "$v ping c1 → c2"; fi
    if ip netns exec "$C2" ping -c 1 -W 2 "${ADDR[$C1]}" >/dev/null; then pass "$v ping c2 → c1"; CHECKS=$((CHECKS+1)); else fail "$v ping c2 → c1"; fi
    for c in "$C1" "$C2"; do
        for round in 1 2; do
            set +e
            printf '%s' "$conf" | ip netns exec "$HOST" env CNI_COMMAND=DEL CNI_CONTAINERID="id-$c" CNI_NETNS="/run/netns/$c" \
                CNI_IFNAME=eth0 CNI_PATH="$PLUGINS:$REF" "$REF/bridge" >/dev/null
            RC=$?
            set -e
            expect_eq "$v DEL #$round ($c)" 0 "$RC"
        done
        expect_eq "$v container link gone ($c)" "" "$(ip -n "$c" -o link show dev eth0 2>/dev/null || true)"
    done
    expect_eq "$v no lease left" 0 "$(lease_count)"
    expect_eq "$v no endpoint left" 0 "$(ls "$CNM_STATE_DIR/networks/refbr$n/endpoints" | wc -l)"
    unset ADDR
done
finish
