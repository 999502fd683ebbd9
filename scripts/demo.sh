#!/usr/bin/env bash
# The main job: install what is needed, build everything, and run a demo on the built-in file
# store. Two sandboxes (network namespaces) are connected through the built `bridge` plugin with
# its in-process `ipam`, using conf/manual/cnm-bridge.conf, exactly as a runtime calls them
# (CNI_* env, conf on stdin). The "host" side lives in its own namespace too, so nothing on this
# machine's own network changes. Everything is torn down at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh >/dev/null
echo "== built: $(find build/plugins -maxdepth 1 -type f -executable -printf '%f ') cnm-shim"

CONF=conf/manual/cnm-bridge.conf
export CNM_STATE_DIR=$(mktemp -d /tmp/cnm-demo-state-XXXXXX)
HOST=cnm-demo-host-$$
SANDBOXES=(cnm-demo-web-$$ cnm-demo-db-$$)
cleanup() {
    for ns in "${SANDBOXES[@]}" "$HOST"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$CNM_STATE_DIR"
}
trap cleanup EXIT
ip netns add "$HOST"
for ns in "${SANDBOXES[@]}"; do ip netns add "$ns"; done

cni() { # <command> <sandbox> [conf on stdin]
    ip netns exec "$HOST" env CNI_COMMAND="$1" CNI_CONTAINERID="$2" CNI_NETNS="/run/netns/$2" CNI_IFNAME=eth0 \
        CNI_PATH="$PWD/build/plugins" CNM_STATE_DIR="$CNM_STATE_DIR" build/plugins/bridge
}

echo "== conf ($CONF)"; jq -c . "$CONF"
declare -A RESULT
for sb in "${SANDBOXES[@]}"; do
    echo "== ADD $sb"
    RESULT[$sb]=$(cni ADD "$sb" <"$CONF")
    jq -c . <<<"${RESULT[$sb]}"
done
web=${SANDBOXES[0]}; db=${SANDBOXES[1]}
db_v4=$(jq -r '.ips[0].address' <<<"${RESULT[$db]}" | cut -d/ -f1)
db_v6=$(jq -r '.ips[1].address' <<<"${RESULT[$db]}" | cut -d/ -f1)
echo "== in $web: $(ip -n "$web" -br addr show eth0 | tr -s ' ')"
echo "== ping $db over IPv4 and IPv6"
ip netns exec "$web" ping -c 2 -W 2 "$db_v4" | tail -2
ip netns exec "$web" ping -6 -c 2 -W 2 "$db_v6" | tail -2
echo "== CHECK $web against its result"
jq -c --argjson r "${RESULT[$web]}" '. + {prevResult: $r}' "$CONF" | cni CHECK "$web" && echo "   ok"
echo "== the host side: bridge, ports, masquerading (nftables, in the demo's host namespace)"
ip -n "$HOST" -br link show master cnm-man0 | sed 's/^/   /'
ip netns exec "$HOST" nft list map ip cnm masq | sed 's/^/   /'
echo "== the state, as files a person can read ($CNM_STATE_DIR)"
(cd "$CNM_STATE_DIR" && find . -type f ! -name '.lock' | sort | sed 's/^/   /')
echo "-- network";  jq -c . "$CNM_STATE_DIR/networks/cnm-manual/network.json"
echo "-- endpoint"; jq -c . "$CNM_STATE_DIR/networks/cnm-manual/endpoints/$web@eth0.json"
echo "-- its sandbox (a sandbox is the endpoint records that name it)"; jq -c '{sandbox, netns}' "$CNM_STATE_DIR/networks/cnm-manual/endpoints/$web@eth0.json"
echo "== the same state through cnm-shim's admin commands (Docker endpoints would be listed here too)"
build/cnm-shim/cnm-shim list --state-dir "$CNM_STATE_DIR" | sed 's/^/   /'
build/cnm-shim/cnm-shim dot --state-dir "$CNM_STATE_DIR" | sed 's/^/   /'
echo "== STATUS"; cni STATUS "" <"$CONF" && echo "   ready"
echo "== DEL $web; then delete $db's netns first and DEL it anyway (the runtime's crash case)"
cni DEL "$web" <"$CONF"
ip netns del "$db"
cni DEL "$db" <"$CONF"
cni DEL "$db" <"$CONF" # DEL is idempotent
echo "   ports left on the bridge: $(ip -n "$HOST" -o link show master cnm-man0 | wc -l)," \
     "leases left: $(find "$CNM_STATE_DIR/ipam" -path '*/leases/*' -type f | wc -l)," \
     "endpoints left: $(ls "$CNM_STATE_DIR/networks/cnm-manual/endpoints" | wc -l)," \
     "masquerade elements left: $(ip netns exec "$HOST" nft -j list map ip cnm masq | jq '[.nftables[] | select(.map) | .map.elem // [] | .[]] | length')"
echo "== demo done"
