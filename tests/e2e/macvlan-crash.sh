#!/usr/bin/env bash
# Crash safety of `macvlan`: killed at every step of ADD and DEL, then DEL (or GC for the lease
# and records) leaves no lease, record or link in the sandbox, and a new ADD works.
source "$(dirname "$0")/lib.sh"
HOST=$(new_netns host)
ip -n "$HOST" link add cnmmvc0 type veth peer name cnmmvc0peer
ip -n "$HOST" link set cnmmvc0 up
C=$(new_netns victim)
conf='{"cniVersion":"1.1.0","name":"mvcrash","type":"macvlan","master":"cnmmvc0","ipam":{"type":"ipam","subnet":"10.213.180.0/24"}}'
mv() { # <cmd> [env…]: the plugin in the host netns (lib.sh's cni); sets OUT, RC
    local cmd=$1
    shift
    cni "$PLUGINS/macvlan" "$cmd" victim "/run/netns/$C" eth0 "$conf" "$@" ip netns exec "$HOST"
}
leftovers() {
    echo "leases=$(lease_count) endpoints=$(ls "$CNM_STATE_DIR/networks/mvcrash/endpoints" 2>/dev/null | wc -l)" \
        "container-links=$(($(ip -n "$C" -o link | wc -l) - 1))"
}
clean="leases=0 endpoints=0 container-links=0"
for point in macvlan-after-intent ipam-after-lease macvlan-after-ipam macvlan-after-link ipam-after-check macvlan-after-commit; do
    mv ADD CNM_FAULT=$point
    expect_eq "$point: ADD was killed" 137 "$RC"
    mv DEL
    expect_eq "$point: DEL after the crash" 0 "$RC"
    expect_eq "$point: DEL leaves nothing" "$clean" "$(leftovers)"
    mv ADD
    expect_eq "$point: a new ADD works" 0 "$RC"
    mv DEL
done
for point in macvlan-del-after-ipam macvlan-del-after-link; do
    mv ADD
    mv DEL CNM_FAULT=$point
    expect_eq "$point: DEL was killed" 137 "$RC"
    mv DEL
    expect_eq "$point: DEL after the crash" 0 "$RC"
    expect_eq "$point: DEL leaves nothing" "$clean" "$(leftovers)"
done
# A crashed ADD directly followed by another ADD cleans its own leftovers (the temp-named link).
mv ADD CNM_FAULT=macvlan-after-link
mv ADD
expect_eq "ADD after a crashed ADD" 0 "$RC"
expect_eq "…one link, one lease" "leases=1 endpoints=1 container-links=1" "$(leftovers)"
mv DEL
expect_eq "…and DEL cleans it" "$clean" "$(leftovers)"
finish
