#!/usr/bin/env bash
# Crash safety: the plugin is killed (SIGKILL, through CNM_FAULT) at every step of ADD and DEL.
# After each crash a DEL — or a GC — must leave no lease or endpoint record, and a new
# ADD for the same attachment must then work.
source "$(dirname "$0")/lib.sh"
IPAM="$PLUGINS/ipam"
conf='{"cniVersion":"1.1.0","name":"crash","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.80.0/24"}],[{"subnet":"fd00:213:80::/64"}]]}}'
gc_conf=$(jq -c '. + {"cni.dev/valid-attachments": []}' <<<"$conf")

leftovers() {
    echo "leases=$(lease_count) endpoints=$(ls "$CNM_STATE_DIR/networks/crash/endpoints" 2>/dev/null | wc -l)"
}
clean="leases=0 endpoints=0"

for cleanup in DEL GC; do
    for point in ipam-after-intent ipam-after-lease ipam-after-allocate ipam-after-check ipam-after-commit; do
        cni "$IPAM" ADD victim /run/netns/v eth0 "$conf" CNM_FAULT=$point
        expect_eq "$point: ADD was killed" 137 "$RC"
        if [ $cleanup == DEL ]; then
            cni "$IPAM" DEL victim "" eth0 "$conf"
        else
            cni "$IPAM" GC "" "" "" "$gc_conf"
        fi
        expect_eq "$point: $cleanup after the crash succeeds" 0 "$RC"
        expect_eq "$point: $cleanup leaves nothing" "$clean" "$(leftovers)"
        cni "$IPAM" ADD victim /run/netns/v eth0 "$conf"
        expect_eq "$point: a new ADD works" 0 "$RC"
        cni "$IPAM" DEL victim "" eth0 "$conf"
        expect_eq "$point: and is removed" "$clean" "$(leftovers)"
    done
    for point in ipam-del-after-release; do
        cni "$IPAM" ADD victim /run/netns/v eth0 "$conf"
        cni "$IPAM" DEL victim "" eth0 "$conf" CNM_FAULT=$point
        expect_eq "$point: DEL was killed" 137 "$RC"
        if [ $cleanup == DEL ]; then
            cni "$IPAM" DEL victim "" eth0 "$conf"
        else
            cni "$IPAM" GC "" "" "" "$gc_conf"
        fi
        expect_eq "$point: $cleanup after the crash succeeds" 0 "$RC"
        expect_eq "$point: $cleanup leaves nothing" "$clean" "$(leftovers)"
    done
done

# A crashed ADD followed directly by ADD again (no DEL in between) reclaims its own leftovers.
cni "$IPAM" ADD victim /run/netns/v eth0 "$conf" CNM_FAULT=ipam-after-allocate
cni "$IPAM" ADD victim /run/netns/v eth0 "$conf"
expect_eq "ADD after a crashed ADD works" 0 "$RC"
expect_eq "…and holds one address per family" "leases=2 endpoints=1" "$(leftovers)"
cni "$IPAM" DEL victim "" eth0 "$conf"
expect_eq "…and DEL frees it" "$clean" "$(leftovers)"
finish
