#!/usr/bin/env bash
# The main job: install what is needed, build everything, and run a demo on the built-in file
# store — the built `ipam` plugin called exactly as a runtime calls it (CNI_* env, conf on stdin),
# printing each CNI result and the state documents it leaves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh >/dev/null
echo "== built: $(ls build/plugins | grep -v '\.p$' | tr '\n' ' ')"

export CNM_STATE_DIR=$(mktemp -d /tmp/cnm-demo-state-XXXXXX)
trap 'rm -rf "$CNM_STATE_DIR"' EXIT
CONF=conf/manual/cnm-ipam.conf
IPAM=build/plugins/ipam
cni() { # <command> <container id> [extra env…]
    local cmd=$1 id=$2
    shift 2
    env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="/run/netns/$id" CNI_IFNAME=eth0 CNI_PATH=build/plugins "$@" "$IPAM"
}
echo "== state directory: $CNM_STATE_DIR, conf: $CONF"
for id in web-1 web-2 db-1; do
    echo "== ADD $id"
    cni ADD "$id" <"$CONF" | jq -c '{ips: [.ips[].address], gateway: .ips[0].gateway, routes}'
done
echo "== ADD web-1 again (the runtime must DEL first):"
cni ADD web-1 <"$CONF" | jq -c '{code, msg}' || true
echo "== CHECK web-1 against its result"
prev=$(jq -n --argjson conf "$(cat $CONF)" --argjson r "$(cni DEL web-1 <"$CONF"; cni ADD web-1 <"$CONF")" '$conf + {prevResult: $r}')
echo "$prev" | cni CHECK web-1 && echo "   ok"
echo "== DEL web-2, then ADD cache-1: round-robin, the freed address is not reused at once"
cni DEL web-2 <"$CONF"
cni ADD cache-1 <"$CONF" | jq -c '{ips: [.ips[].address]}'
echo "== ADD with a requested address (CNI_ARGS IP=10.213.10.77)"
cni ADD pinned <"$CONF" CNI_ARGS="IgnoreUnknown=1;IP=10.213.10.77;K8S_POD_NAME=pinned" | jq -c '{ips: [.ips[].address]}'
echo "== the state, as files a person can read"
(cd "$CNM_STATE_DIR" && find . -type f ! -name '.lock' | sort | sed 's/^/   /')
echo "-- networks/cnm-demo/network.json"; jq -c . "$CNM_STATE_DIR/networks/cnm-demo/network.json"
echo "-- networks/cnm-demo/endpoints/web-1@eth0.json"; jq -c . "$CNM_STATE_DIR/networks/cnm-demo/endpoints/web-1@eth0.json"
echo "-- sandboxes/web-1.json"; jq -c . "$CNM_STATE_DIR/sandboxes/web-1.json"
echo "-- ipam/local/10.213.10.0_24/pool.json"; jq -c . "$CNM_STATE_DIR/ipam/local/10.213.10.0_24/pool.json"
echo "== STATUS (1.1.0)"
jq '.cniVersion = "1.1.0"' "$CONF" | env CNI_COMMAND=STATUS "$IPAM" && echo "   ready"
echo "== GC (1.1.0): only web-1 and pinned are still valid"
jq '.cniVersion = "1.1.0" | .["cni.dev/valid-attachments"] = [{"containerID":"web-1","ifname":"eth0"},{"containerID":"pinned","ifname":"eth0"}]' "$CONF" \
    | env CNI_COMMAND=GC "$IPAM"
echo "   leases left: $(find "$CNM_STATE_DIR/ipam" -path '*/leases/*' -type f -printf '%f ' )"
echo "== DEL the rest (twice: DEL is idempotent)"
for id in web-1 pinned web-1; do cni DEL "$id" <"$CONF"; done
echo "   leases left: $(find "$CNM_STATE_DIR/ipam" -path '*/leases/*' -type f | wc -l), endpoints left: $(ls "$CNM_STATE_DIR/networks/cnm-demo/endpoints" | wc -l)"
echo "== demo done"
