# shellcheck shell=bash
# Helpers for end-to-end tests that drive Debian's containerd (1.6, its CRI plugin) the way kubelet
# does: over CRI, with tests/e2e/cri/cri.py as the client. Source it after lib.sh:
#
#     source "$(dirname "$0")/lib.sh"
#     source "$(dirname "$0")/cri-lib.sh"
#     H=$(cri_netns host)                         # the node's network namespace
#     cri_bin_dir "$WORK/bin"                     # our plugins + the reference loopback and portmap
#     cri_config "$WORK/bin" "$WORK/net.d"        # containerd's config.toml, everything under $CRI_DIR
#     cri_start "$H"; cri_pause_image
#     crictl run --cgroup-parent "$CRI_CGROUP" pod1 pod2 pod3
#
# containerd runs as an ordinary process of the test, in the netns given to cri_start (so the
# bridge, its addresses and portmap's iptables rules are made there, never in the machine's own
# netns): root, state, the gRPC socket, runc's root and containerd's opt dir under $CRI_DIR; pod
# netns under the state dir (netns_mounts_under_state_dir); pods under a cgroup parent of this test.
# Settings this machine needs (../shared/reference/real-clients.md §4, §4b):
# restrict_oom_score_adj (root cannot lower oom_score_adj here), runc v2, cgroupfs.
#
# Cleanup: sourcing this file wraps lib.sh's `cleanup`: containerd, its shims and the pause
# processes are stopped, mounts under $CRI_DIR undone, our cgroups and go-cni's cache files for our
# pods removed — then lib.sh removes $WORK and the netns — and then cri_leak_check looks for anything
# left (a process, a mount, a netns, a cgroup, a cache file, our bridge or rules in the machine's own
# netns) and makes the test fail if it finds one. Also when the test itself failed.
#
# Variables: CRI_DIR, CRI_SOCK, CRI_PID (containerd), CRI_NETNS (where it runs), CRI_CGROUP (the
# cgroup parent to give pods), CRI_LOG. `crictl …` runs the client against CRI_SOCK.

CRI_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CRI_PY=/usr/bin/python3                       # Debian's python: python3-grpcio, python3-protobuf
CRI_DIR="$WORK/ctd"
CRI_SOCK="$CRI_DIR/containerd.sock"
CRI_LOG="$CRI_DIR/containerd.log"
CRI_PID=""
CRI_NETNS=""
CRI_CGROUP="cnm-e2e-cri-$$"
CRI_PAUSE=docker.io/library/cnm-pause:1
CRI_START_TIMEOUT=30
CRI_IDS=()                                    # every sandbox id seen (for the go-cni cache check)
# System paths containerd or its shims create whatever the config says; removed at the end if
# they did not exist before and are empty by then.
CRI_SYSTEM_DIRS=(/run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni)
CRI_CREATED_SYSTEM_DIRS=()
CRI_HAD_CNM_STATE=$([ -e /var/lib/cni/cnm ] && echo yes || echo no)   # the plugins' default state dir
for _d in "${CRI_SYSTEM_DIRS[@]}"; do [ -e "$_d" ] || CRI_CREATED_SYSTEM_DIRS+=("$_d"); done
unset _d
# What the machine's own netns looks like before the test (it must look the same after).
CRI_ROOT_BEFORE=$( { ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(cnm0|cnmcri)' || true
    nft list tables 2>/dev/null | grep -E ' cnm$' || true
    iptables -t nat -S 2>/dev/null | grep -c CNI- || true; } | sort)
mkdir -p "$CRI_DIR"
export CRI_GEN="$WORK/cri-gen"

crictl() { CRI_GEN="$CRI_GEN" "$CRI_PY" "$CRI_HERE/cri/cri.py" -s "$CRI_SOCK" "$@"; }
ctr_() { ctr -a "$CRI_SOCK" -n k8s.io "$@"; }

# cri_netns <suffix>: a netns named cnmcri-<pid>-<suffix>, removed by lib.sh's cleanup.
cri_netns() {
    local name="cnmcri-$$-$1"
    echo "$name" >>"$WORK/netns"
    ip netns add "$name"
    ip -n "$name" link set lo up
    echo "$name"
}

# cri_bin_dir <dir>: the node's /opt/cni/bin as a test makes it: our built plugins (`bridge` behind
# a logging wrapper, below) and the reference `loopback` (go-cni's own call for `lo`) and `portmap`.
# The wrapper appends one line per call to <dir>/calls.log:
#   <COMMAND> <containerid> <ifname> netns=<CNI_NETNS> prev=<yes|no>
# and, while <dir>/hold-add exists, an ADD writes its pid to <dir>/add-started and waits for
# <dir>/add-go before running the plugin (so a test can kill containerd in the middle of an ADD).
cri_bin_dir() {
    local dir=$1 p
    mkdir -p "$dir"
    install -m 755 "$PLUGINS/bridge" "$dir/cnm-bridge-real"
    install -m 755 "$PLUGINS/ipam" "$dir/ipam"
    for p in loopback portmap; do install -m 755 "$REF/$p" "$dir/$p"; done
    cat >"$dir/bridge" <<EOF
#!/bin/bash
d=$dir
conf=\$(cat)
prev=no; case "\$conf" in *'"prevResult"'*) prev=yes ;; esac
echo "\$CNI_COMMAND \$CNI_CONTAINERID \$CNI_IFNAME netns=\$CNI_NETNS prev=\$prev" >>"\$d/calls.log"
if [ "\$CNI_COMMAND" = ADD ] && [ -e "\$d/hold-add" ]; then
    echo \$\$ >"\$d/add-started"
    for _ in \$(seq 300); do [ -e "\$d/add-go" ] && break; sleep 0.1; done
    printf '%s' "\$conf" | "\$d/cnm-bridge-real"
    rc=\$?
    echo \$rc >"\$d/add-done"
    exit \$rc
fi
printf '%s' "\$conf" | exec "\$d/cnm-bridge-real"
EOF
    chmod 755 "$dir/bridge"
}

# cri_config <cni-bin-dir> <cni-conf-dir>: $CRI_DIR/config.toml (containerd config version 2;
# every key not set here keeps containerd's default).
cri_config() {
    local bin=$1 conf=$2
    mkdir -p "$CRI_DIR"/{root,state,runc,opt} "$conf"
    cat >"$CRI_DIR/config.toml" <<EOF
version = 2
root = "$CRI_DIR/root"
state = "$CRI_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CRI_SOCK"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$CRI_PAUSE"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$bin"
      conf_dir = "$conf"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = "$CRI_DIR/runc"
          SystemdCgroup = false
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CRI_DIR/opt"
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "$CRI_DIR/runc-v1"
EOF
}

_cri_alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# cri_start [netns]: start containerd (in the netns of the last call if none is given) and wait
# until its CRI answers.
cri_start() {
    local deadline
    [ -z "${1:-}" ] || CRI_NETNS=$1
    [ -n "$CRI_NETNS" ] || { echo "cri-lib: cri_start needs a netns" >&2; return 1; }
    command -v containerd >/dev/null || { echo "containerd missing: scripts/deps.sh installs it" >&2; return 1; }
    echo "=== cri-lib: starting containerd in $CRI_NETNS at $(date +%T.%N)" >>"$CRI_LOG"
    # nsenter --net, not ip netns exec: the latter remounts /sys and hides the cgroup mounts.
    # (Under a test's own environment: CNM_STATE_DIR reaches the plugins through containerd.)
    # TMPDIR: where containerd writes a stack dump on SIGUSR1 (/tmp otherwise, left behind).
    mkdir -p "$CRI_DIR/tmp"
    TMPDIR="$CRI_DIR/tmp" nsenter --net="/run/netns/$CRI_NETNS" containerd --config "$CRI_DIR/config.toml" >>"$CRI_LOG" 2>&1 </dev/null &
    CRI_PID=$!
    deadline=$((SECONDS + CRI_START_TIMEOUT))
    until [ -S "$CRI_SOCK" ] && crictl version >/dev/null 2>&1; do
        if ! _cri_alive "$CRI_PID"; then
            echo "cri-lib: containerd exited during start; log tail:" >&2; tail -n 20 "$CRI_LOG" >&2
            CRI_PID=""; return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "cri-lib: containerd not answering after ${CRI_START_TIMEOUT}s" >&2; tail -n 20 "$CRI_LOG" >&2
            return 1
        fi
        sleep 0.1
    done
}

# _cri_wait_gone <timeout-s> <pid…>
_cri_wait_gone() {
    local deadline=$((SECONDS + $1)) p left
    shift
    while :; do
        left=""
        for p in "$@"; do _cri_alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    for p in "$@"; do { wait "$p"; } 2>/dev/null || true; done
    return 0
}

# cri_stop [SIGNAL]: stop containerd (SIGTERM and wait; SIGKILL: at once). Its shims and pods live on.
cri_stop() {
    local sig=${1:-TERM}
    [ -n "$CRI_PID" ] || return 0
    kill "-$sig" "$CRI_PID" 2>/dev/null || true
    if ! _cri_wait_gone 20 "$CRI_PID"; then
        echo "cri-lib: containerd ignored SIG$sig for 20 s, SIGKILL" >&2
        kill -KILL "$CRI_PID" 2>/dev/null || true
        _cri_wait_gone 5 "$CRI_PID" || true
    fi
    echo "=== cri-lib: containerd stopped (SIG$sig) at $(date +%T.%N)" >>"$CRI_LOG"
    CRI_PID=""
}

cri_restart() { cri_stop "${1:-TERM}"; cri_start; }

# cri_pause_image: the sandbox image, made offline from busybox-static, imported into k8s.io.
cri_pause_image() {
    "$CRI_PY" "$CRI_HERE/cri/pause-image.py" "$CRI_DIR/pause.tar" "$CRI_PAUSE"
    ctr_ images import "$CRI_DIR/pause.tar" >/dev/null
}

# Processes whose command line names <dir>/ (read with builtins only, so the search does not find
# itself).
_cri_pids_naming() {
    local f pid args
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        [ "$pid" != $$ ] && [ "$pid" != "$BASHPID" ] || continue
        mapfile -d '' args 2>/dev/null <"$f" || continue
        if [[ " ${args[*]} " == *"$1/"* ]]; then echo "$pid"; fi
    done
}
# Processes of ours that outlive containerd: its shims (their command line names our socket), a
# plugin or the bridge wrapper it left running (cri.sh keeps its bin dir under $CRI_DIR), and the
# pause processes in our cgroup parent.
_cri_our_pids() {
    _cri_pids_naming "$CRI_DIR"
    { find /sys/fs/cgroup/*/"$CRI_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u
}

_cri_mounts() {
    awk -v d="$WORK" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | awk '!seen[$0]++'
}

# go-cni's result cache (libcni's /var/lib/cni/results) for our sandboxes.
_cri_cache_files() {
    local id
    for id in "${CRI_IDS[@]:-}"; do
        [ -n "$id" ] || continue
        find /var/lib/cni/results -maxdepth 1 -name "*-$id-*" 2>/dev/null || true
    done
}

# cri_track <json from crictl run>: remember the sandbox ids it names.
cri_track() {
    local id
    for id in $(jq -r '.[] | .id // empty' <<<"$1" 2>/dev/null); do CRI_IDS+=("$id"); done
}

cri_cleanup() {
    local pids m d
    if [ "${FAILS:-0}" -gt 0 ] && [ -f "$CRI_LOG" ]; then
        echo "--- containerd log (tail)" >&2; grep -v 'level=info' "$CRI_LOG" | tail -n 30 >&2 || true
    fi
    # Pods first, through containerd, as kubelet would (this is what also calls the plugins' DEL).
    if [ -n "$CRI_PID" ] && _cri_alive "$CRI_PID"; then
        for id in $(crictl list 2>/dev/null | jq -r '.[].id' 2>/dev/null); do
            CRI_IDS+=("$id")
            crictl stop "$id" >/dev/null 2>&1 || true
            crictl rm "$id" >/dev/null 2>&1 || true
        done
    fi
    cri_stop TERM
    pids=$(_cri_our_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        # shellcheck disable=SC2086
        _cri_wait_gone 5 $pids || true
    fi
    find /sys/fs/cgroup/*/"$CRI_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    for _ in 1 2 3; do
        while read -r m; do
            [ -n "$m" ] || continue
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done < <(_cri_mounts)
    done
    _cri_cache_files | xargs -r rm -f
    for d in "${CRI_SYSTEM_DIRS[@]}"; do
        if [[ " ${CRI_CREATED_SYSTEM_DIRS[*]} " == *" $d "* ]]; then rmdir "$d" 2>/dev/null || true; fi
    done
}

# After everything is removed: anything of ours still there fails the test.
cri_leak_check() {
    local left="" n after
    # (by now every process of the test is gone: containerd, shims, pods, plugins, dockerd, servers)
    [ -z "$(_cri_our_pids; _cri_pids_naming "$WORK")" ] || left="$left processes:$( { _cri_our_pids; _cri_pids_naming "$WORK"; } | sort -u | tr '\n' ,)"
    [ -z "$(_cri_mounts)" ] || left="$left mounts:$(_cri_mounts | tr '\n' ,)"
    n=$(ls /run/netns 2>/dev/null | grep -c "^cnmcri-$$-" || true)
    [ "$n" -eq 0 ] || left="$left netns:$n"
    # shellcheck disable=SC2012
    [ -z "$(ls -d /sys/fs/cgroup/*/"$CRI_CGROUP" 2>/dev/null)" ] || left="$left cgroups"
    [ -z "$(_cri_cache_files)" ] || left="$left go-cni-cache:$(_cri_cache_files | tr '\n' ,)"
    [ ! -e "$WORK" ] || left="$left workdir"
    [ "$CRI_HAD_CNM_STATE" == yes ] || [ ! -e /var/lib/cni/cnm ] || left="$left /var/lib/cni/cnm(a plugin missed the test's state dir)"
    after=$( { ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(cnm0|cnmcri)' || true
        nft list tables 2>/dev/null | grep -E ' cnm$' || true
        iptables -t nat -S 2>/dev/null | grep -c CNI- || true; } | sort)
    [ "$after" == "$CRI_ROOT_BEFORE" ] || left="$left root-netns-changed:[$(diff <(echo "$CRI_ROOT_BEFORE") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')]"
    if [ -n "$left" ]; then
        echo "FAIL: left behind after cleanup:$left" >&2
        return 1
    fi
    echo "ok: nothing left behind (processes, mounts, netns, cgroups, go-cni cache, machine netns)"
}

# A signal (meson's timeout sends SIGTERM; a closed pipe, SIGPIPE) would end bash without its EXIT
# trap: turn each into an exit, so the cleanup above runs.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE
if ! declare -F _cri_lib_cleanup >/dev/null; then
    eval "_cri_lib_cleanup() $(declare -f cleanup | tail -n +2)"
    cleanup() {
        local rc=$?
        set +e
        trap '' PIPE INT TERM HUP           # nothing interrupts the cleanup itself
        cri_cleanup
        _cri_lib_cleanup
        cri_leak_check || rc=1
        exit "$rc"
    }
fi
