#!/usr/bin/env bash
# Crash safety of `bridge`: killed (SIGKILL via CNM_FAULT) at every step of ADD and DEL, then a
# DEL — or a GC — must leave no lease, link, nftables element or endpoint record, and a new ADD
# must work.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
C=$(new_netns victim)
conf='{"cniVersion":"1.1.0","name":"crashbr","type":"bridge","bridge":"cnmcrash0","isGateway":true,"ipMasq":true,"macspoofchk":true,"ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.140.0/24"}],[{"subnet":"fd00:213:140::/64"}]]}}'
gc_conf=$(jq -c '. + {"cni.dev/valid-attachments": []}' <<<"$conf")
br() { # <cmd> [env…]: the plugin in the host netns (lib.sh's cni); sets OUT, RC
    local cmd=$1
    shift
    cni "$PLUGINS/bridge" "$cmd" victim "/run/netns/$C" eth0 "${STDIN:-$conf}" "$@" ip netns exec "$HOST"
}
leftovers() {
    echo "leases=$(lease_count) endpoints=$(ls "$CNM_STATE_DIR/networks/crashbr/endpoints" 2>/dev/null | wc -l)" \
        "ports=$(ip -n "$HOST" -o link show master cnmcrash0 2>/dev/null | wc -l)" \
        "container-links=$(($(ip -n "$C" -o link | wc -l) - 1)) nft-elements=$(nft_elements)"
}
nft_elements() {
    { ip netns exec "$HOST" nft -j list map ip cnm masq 2>/dev/null; ip netns exec "$HOST" nft -j list map ip6 cnm masq 2>/dev/null
      ip netns exec "$HOST" nft -j list set bridge cnm allowed 2>/dev/null; } | jq -s '[.[].nftables[] | (.map // .set // {}) | .elem // [] | .[]] | length'
}
clean="leases=0 endpoints=0 ports=0 container-links=0 nft-elements=0"
host_veths() { ip -n "$HOST" -o link show type veth | wc -l; }

for cleanup in DEL GC; do
    for point in bridge-after-intent bridge-after-bridge ipam-after-lease bridge-after-ipam bridge-after-veth \
                 bridge-after-configure bridge-after-firewall ipam-after-check bridge-after-commit; do
        br ADD CNM_FAULT=$point
        expect_eq "$point: ADD was killed" 137 "$RC"
        if [ $cleanup == DEL ]; then br DEL; else STDIN=$gc_conf br GC; fi
        expect_eq "$point: $cleanup after the crash" 0 "$RC"
        expect_eq "$point: $cleanup leaves nothing" "$clean" "$(leftovers)"
        expect_eq "$point: no veth on the host" 0 "$(host_veths)"
        br ADD
        expect_eq "$point: a new ADD works" 0 "$RC"
        expect_eq "$point: with its masquerade (v4, v6) and MAC-guard elements" 3 "$(nft_elements)"
        br DEL
        expect_eq "$point: and DEL cleans it" "$clean" "$(leftovers)"
    done
    for point in bridge-del-after-links bridge-del-after-ipam; do
        br ADD
        br DEL CNM_FAULT=$point
        expect_eq "$point: DEL was killed" 137 "$RC"
        if [ $cleanup == DEL ]; then br DEL; else STDIN=$gc_conf br GC; fi
        expect_eq "$point: $cleanup after the crash" 0 "$RC"
        expect_eq "$point: $cleanup leaves nothing" "$clean" "$(leftovers)"
    done
done
finish
