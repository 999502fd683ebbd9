#!/usr/bin/env bash
# Every example under conf/ works as documented: the conflists through a libcni-style chain run,
# the single confs directly; two containers get addresses, ping each other, pass CHECK, and DEL
# leaves nothing behind. (State goes to a throwaway dir: CNM_STATE_DIR, as no example sets dataDir.)
source "$(dirname "$0")/lib.sh"
CONF_DIR="$(cd "$(dirname "$0")/../.." && pwd)/conf"
HOST=$(new_netns host)
# The macvlan example's master (a veth end: this kernel has no dummy).
ip -n "$HOST" link add cnm-mv0 type veth peer name cnm-mv0p
ip -n "$HOST" link set cnm-mv0 up
ip -n "$HOST" link set cnm-mv0p up
n=0
for list in "$CONF_DIR"/kubelet/*.conflist "$CONF_DIR"/podman/*.conflist; do
    # A vxlan conflist needs the host's cluster file and an etcd: cri.sh's vxlan hook runs it.
    if jq -e '.plugins[] | select(.type == "vxlan")' "$list" >/dev/null; then echo "skip: $(basename "$list") (needs a cluster)"; continue; fi
    n=$((n + 1)); what=${list#"$CONF_DIR"/}
    A=$(new_netns "a$n"); B=$(new_netns "b$n")
    run_conflist "$list" ADD "a$n" "/run/netns/$A" "$HOST" '{"portMappings":[{"hostPort":18081,"containerPort":80,"protocol":"tcp"}]}'
    expect_eq "$what: ADD a" 0 "$RC"
    run_conflist "$list" ADD "b$n" "/run/netns/$B" "$HOST"
    expect_eq "$what: ADD b" 0 "$RC"
    addr_b=$(jq -r '.ips[0].address' "$WORK/cache-b$n" | cut -d/ -f1)
    if ip netns exec "$A" ping -c 1 -W 2 "$addr_b" >/dev/null; then pass "$what: ping a → b"; CHECKS=$((CHECKS+1)); else fail "$what: ping a → b"; fi
    run_conflist "$list" CHECK "b$n" "/run/netns/$B" "$HOST"
    expect_eq "$what: CHECK b" 0 "$RC"
    for c in "a$n:$A" "b$n:$B"; do
        run_conflist "$list" DEL "${c%%:*}" "/run/netns/${c#*:}" "$HOST" '{"portMappings":[{"hostPort":18081,"containerPort":80,"protocol":"tcp"}]}'
        expect_eq "$what: DEL ${c%%:*}" 0 "$RC"
    done
    expect_eq "$what: no lease left" 0 "$(lease_count)"
done
for conf in "$CONF_DIR"/manual/*.conf; do
    # A vxlan conf needs a cluster (an etcd): readme-paths.sh runs it, with one.
    if [ "$(jq -r .type "$conf")" == vxlan ]; then echo "skip: $(basename "$conf") (needs a cluster)"; continue; fi
    n=$((n + 1)); what=${conf#"$CONF_DIR"/}
    type=$(jq -r .type "$conf"); bin=$PLUGINS/$type; [ "$type" == bridge ] && [[ $conf == *ipam* ]] && bin=$REF/bridge
    A=$(new_netns "a$n"); B=$(new_netns "b$n")
    declare -A addr=()
    for c in "$A" "$B"; do
        set +e
        OUT=$(ip netns exec "$HOST" env CNI_COMMAND=ADD CNI_CONTAINERID="$c" CNI_NETNS="/run/netns/$c" CNI_IFNAME=eth0 \
            CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$bin" <"$conf")
        RC=$?
        set -e
        expect_eq "$what: ADD ($(basename "$bin"))" 0 "$RC"
        addr[$c]=$(jq -r '.ips[0].address' <<<"$OUT" | cut -d/ -f1)
    done
    if ip netns exec "$A" ping -c 1 -W 2 "${addr[$B]}" >/dev/null; then pass "$what: ping"; CHECKS=$((CHECKS+1)); else fail "$what: ping"; fi
    for c in "$A" "$B"; do
        set +e
        ip netns exec "$HOST" env CNI_COMMAND=DEL CNI_CONTAINERID="$c" CNI_NETNS="/run/netns/$c" CNI_IFNAME=eth0 \
            CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$bin" <"$conf"
        RC=$?
        set -e
        expect_eq "$what: DEL" 0 "$RC"
    done
    expect_eq "$what: no lease left" 0 "$(lease_count)"
    unset addr
done
finish
