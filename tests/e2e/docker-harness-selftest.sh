#!/usr/bin/env bash
# Self-test of docker-lib.sh (not a meson test): a private dockerd in a throwaway netns runs a
# busybox container, survives a restart with its state, is stopped and leaves nothing behind —
# also after dockerd is SIGKILLed with a container running.
#   sudo BUILD=build bash tests/e2e/docker-harness-selftest.sh
: "${BUILD:=$(cd "$(dirname "$0")/../.." && pwd)/build}"
export BUILD
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker-lib.sh"

ms() { echo $(($(date +%s%N) / 1000000)); }
took() { echo "time: $1 $(($(ms) - $2)) ms"; }

# What must look the same at the end.
host_links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')
sysdirs_before=$(for d in "${DOCKER_SYSTEM_DIRS[@]}" /etc/docker/key.json; do if [ -e "$d" ]; then echo "$d"; fi; done | tr '\n' ' ')

# Everything one dockerd instance leaves that must be gone after docker_stop: checked by
# expect_gone with the values remembered by remember.
remember() {
    R_DIR=$DOCKER_DIR R_NETNS=$DOCKER_NETNS R_CGROUP=$DOCKER_CGROUP
    R_PIDS="$R_PIDS $DOCKER_PID $(_dk_our_pids | tr '\n' ' ')"
}
R_PIDS=""
expect_gone() {
    local what=$1 p alive="" procs
    for p in $R_PIDS; do _dk_alive "$p" && alive="$alive $p"; done
    expect_eq "$what: no dockerd/containerd/shim pid alive" "" "$alive"
    # (the pattern comes from a file, so that grep's own command line does not match)
    procs=$({ grep -lFf <(echo "$R_DIR/") /proc/[0-9]*/cmdline 2>/dev/null || true; } | wc -l)
    expect_eq "$what: no process mentions $R_DIR" 0 "$procs"
    expect_eq "$what: no mount under $R_DIR" 0 "$(grep -cF -- " $R_DIR" /proc/self/mountinfo || true)"
    expect_eq "$what: dir removed" no "$([ -e "$R_DIR" ] && echo yes || echo no)"
    expect_eq "$what: netns deleted" "" "$(ip netns list | awk '{print $1}' | grep -x -- "$R_NETNS" || true)"
    expect_eq "$what: no cgroup dirs" "" "$(ls -d /sys/fs/cgroup/*/"$R_CGROUP" 2>/dev/null || true)"
    expect_eq "$what: system dirs as before" "$sysdirs_before" \
        "$(for d in "${DOCKER_SYSTEM_DIRS[@]}" /etc/docker/key.json; do if [ -e "$d" ]; then echo "$d"; fi; done | tr '\n' ' ')"
    expect_eq "$what: host netns links unchanged" "$host_links_before" "$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')"
}

t=$(ms); docker_start; took "docker_start ($DOCKER_STORAGE_DRIVER)" "$t"
expect_eq "dockerd runs in netns $DOCKER_NETNS" "$DOCKER_NETNS" "$(ip netns identify "$DOCKER_PID")"
expect_eq "…and in our mount namespace" "$(readlink /proc/self/ns/mnt)" "$(readlink "/proc/$DOCKER_PID/ns/mnt")"
expect_eq "…with the key in its dir, not /etc/docker" yes "$([ -s "$DOCKER_DIR/key.json" ] && echo yes || echo no)"
remember
t=$(ms); docker_image; took "docker_image (import)" "$t"
t=$(ms); dk run --rm --network none cnm-bb:1 true; took "docker run --rm --network none cnm-bb:1 true" "$t"
pass "docker run --network none"

cid=$(dk run -d --network none cnm-bb:1 sleep 300)
key=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' "$cid")
expect_eq "SandboxKey is under exec-root" "$DOCKER_DIR/exec/netns/" "$(dirname "$key")/"
expect_eq "…and is a netns mount we can see" 1 "$(grep -cF -- " $key " /proc/self/mountinfo || true)"
expect_eq "the container has only lo" lo "$(nsenter --net="$key" ip -o link show | awk -F': ' '{print $2}' | tr '\n' ' ' | xargs)"
expect_eq "dockerd's netns has only lo" lo "$(ip -n "$DOCKER_NETNS" -o link show | awk -F': ' '{print $2}' | tr '\n' ' ' | xargs)"
dk rm -f "$cid" >/dev/null
dk create --name keep cnm-bb:1 true >/dev/null
remember

old_pid=$DOCKER_PID
t=$(ms); docker_restart; took docker_restart "$t"
expect_eq "a new dockerd" yes "$([ "$DOCKER_PID" != "$old_pid" ] && echo yes || echo no)"
expect_eq "…in the same netns" "$R_NETNS" "$(ip netns identify "$DOCKER_PID")"
expect_eq "the image survived the restart" cnm-bb:1 "$(dk image ls --format '{{.Repository}}:{{.Tag}}' cnm-bb:1)"
expect_eq "the container survived the restart" keep "$(dk ps -a --filter name=keep --format '{{.Names}}')"
remember
t=$(ms); dk run --rm --network none cnm-bb:1 true; took "docker run after restart" "$t"
pass "docker run after restart"

t=$(ms); docker_stop; took docker_stop "$t"
expect_gone "after docker_stop"
expect_eq "DOCKER_DIR reset" "" "$DOCKER_DIR"

# A crashed dockerd: SIGKILL with a container running; docker_stop (here through the cleanup
# path) must remove containerd, the shim, the container, the mounts and the cgroup.
R_PIDS=""
docker_start
docker_image
cid=$(dk run -d --network none cnm-bb:1 sleep 300)
cpid=$(dk inspect -f '{{.State.Pid}}' "$cid")
remember
R_PIDS="$R_PIDS $cpid"
kill -KILL "$DOCKER_PID"
t=$(ms); docker_cleanup; took "docker_cleanup after SIGKILL" "$t"
expect_gone "after a SIGKILLed dockerd"
finish
