# shellcheck shell=bash
# Helpers for end-to-end tests that drive a real dockerd (docker.io 20.10). Source it after lib.sh:
#
#     source "$(dirname "$0")/lib.sh"
#     source "$(dirname "$0")/docker-lib.sh"
#     docker_start                 # private dockerd in a throwaway netns; exports DOCKER_HOST
#     docker_image                 # cnm-bb:1, made offline from busybox-static
#     dk run --rm --network none cnm-bb:1 true
#     docker_restart               # same data/exec roots: images, containers, networks persist
#     docker_stop                  # everything gone: processes, mounts, dirs, netns
#
# Nothing else is needed for cleanup: sourcing this file wraps lib.sh's `cleanup` so that every EXIT
# trap that calls `cleanup` (lib.sh's own, or a test's `trap 'x; cleanup' EXIT`) first runs
# `docker_cleanup`. A failing test therefore still stops dockerd and unmounts its overlays before
# lib.sh removes $WORK and the netns. Caveat: the EXIT trap runs under `set -e`, so anything a test
# runs in its trap before `cleanup` must not fail (`|| true`), or `cleanup` never runs.
#
# Variables set by docker_start (call it in the test's own shell, not in $(…)):
#   DOCKER_NETNS   name of the netns dockerd runs in (/run/netns/$DOCKER_NETNS)
#   DOCKER_DIR     its directory: data/ (data-root), exec/ (exec-root), dockerd.log, docker.sock …
#   DOCKER_PID     dockerd's pid
#   DOCKER_HOST    unix://$DOCKER_DIR/docker.sock (exported)
#   DOCKER_STORAGE_DRIVER  the storage driver that worked (overlay2, else vfs)
# Knobs (environment, before docker_start):
#   DOCKER_NETNS=<name>            use this existing netns instead of creating one (the test owns it)
#   DOCKER_STORAGE_DRIVERS="overlay2 vfs"   candidates, tried in order by docker_start
#                                  (set it to "vfs" to force vfs); docker_restart reuses the winner
#   DOCKER_LOG_LEVEL=info          dockerd --log-level
#   docker_start [extra dockerd args…]      the extra args are kept for docker_restart
# Other helpers: `dk …` runs /usr/bin/docker (the 20.10 CLI, not the 28.x one in /usr/local/bin);
# `docker_nsexec cmd…` runs a command in dockerd's netns; `docker_nsspawn log cmd…` starts one in
# the background there — e.g. a remote network plugin, which must create its links there (below).
#
# Why `nsenter --net` and not `ip netns exec`: `ip netns exec` also unshares the mount namespace
# and mounts a fresh sysfs on /sys, which hides /sys/fs/cgroup/*; dockerd then dies with
# "failed to start daemon: Devices cgroup isn't mounted" (tried here). A private mount namespace
# would also hide from the test the overlay mounts and the SandboxKey netns bind mounts
# (<exec-root>/netns/<id>) dockerd makes, so they could neither be inspected nor cleaned up when
# dockerd dies. `nsenter --net=/run/netns/<ns>` changes only the network namespace: every bridge,
# veth or route dockerd (or a plugin started with docker_nsspawn) creates lives in that netns,
# while mounts and cgroups are the machine's — which is why docker_stop unmounts what is left.
#
# Facts this relies on (docker.io 20.10.24, containerd 1.6.20, runc 1.1.5, measured on this VM):
# - A remote network plugin that runs in dockerd's netns, creates a veth pair in Join and returns
#   the peer as SrcName works: the prestart hook `libnetwork-setkey` finds the link and moves it into
#   the container. Run from another netns, the container fails to start with "failed to add
#   interface … to sandbox: failed to get link by name …: Link not found".
# - dockerd writes /etc/docker/key.json unless the config file sets "deprecated-key-path" (there is
#   no command-line flag for it), so we always pass our own --config-file.
# - dockerd creates /run/docker/plugins (the plugin discovery dir — plugin sockets go there), the
#   runc shim creates /run/containerd/s, and containerd creates /opt/containerd/{bin,lib}, whatever
#   the exec/data roots are. They are removed on the final stop if they did not exist before the
#   first docker_start and are empty by then.
# - Containers go under a cgroup parent of our own (cgroupfs), so a SIGKILLed dockerd's leftover
#   container processes can be found and the cgroup dirs removed; the default "/docker" would be
#   left behind in every hierarchy.
# - dockerd bind-mounts data-root onto itself (shared propagation, "unmount-on-shutdown"); a
#   graceful stop undoes that, a SIGKILL does not.

DOCKER_BIN=/usr/bin/docker
DOCKERD_BIN=/usr/sbin/dockerd
DOCKER_IMAGE_TAR=/tmp/cnm-busybox-rootfs.tar
DOCKER_START_TIMEOUT=30
DOCKER_STOP_TIMEOUT=20
DOCKER_PID=""
DOCKER_DIR=""
DOCKER_OWN_NETNS=0
DOCKER_EXTRA_ARGS=()
DOCKER_SYSTEM_DIRS=(/etc/docker /run/docker/plugins /run/docker /run/containerd/s /run/containerd
    /opt/containerd/bin /opt/containerd/lib /opt/containerd)
DOCKER_CREATED_SYSTEM_DIRS=()
: "${DOCKER_NETNS:=}"
: "${DOCKER_STORAGE_DRIVERS:=overlay2 vfs}"
DOCKER_STORAGE_DRIVER=""
: "${DOCKER_LOG_LEVEL:=info}"

dk() { "$DOCKER_BIN" "$@"; }
# docker_nsexec cmd…: run a command in dockerd's netns, in the foreground.
docker_nsexec() { nsenter --net="/run/netns/$DOCKER_NETNS" "$@"; }
# docker_nsspawn <logfile> cmd…: start a long-running command (e.g. a network plugin) in dockerd's
# netns in the background. Its pid is DOCKER_SPAWNED_PID and is added to lib.sh's PIDS, so the
# EXIT trap kills it. Call it in the test's own shell, not in $(…). (Not `docker_nsexec … &`: that
# backgrounds a subshell, and killing $! would leave the command itself running.)
docker_nsspawn() {
    local log=$1
    shift
    nsenter --net="/run/netns/$DOCKER_NETNS" "$@" >"$log" 2>&1 </dev/null &
    DOCKER_SPAWNED_PID=$!
    PIDS+=("$DOCKER_SPAWNED_PID")
}

# True while <pid> exists and is not a zombie (dockerd is our child: after exit it stays a zombie
# until reaped, and `kill -0` would still succeed).
_dk_alive() {
    local st
    st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# Pids of dockerd/containerd/containerd-shim processes whose command line mentions our (unique)
# dir: the containerd and runc shims that our dockerd spawned (--config/-address under $DOCKER_DIR).
_dk_our_pids() {
    local f pid comm
    [ -n "$DOCKER_DIR" ] || return 0
    for f in /proc/[0-9]*/cmdline; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        comm=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
        case "$comm" in dockerd | containerd*) ;; *) continue ;; esac
        if tr '\0' '\n' <"$f" 2>/dev/null | grep -F -- "$DOCKER_DIR/" >/dev/null; then echo "$pid"; fi
    done
    return 0
}

# Pids in our cgroup parent (container processes), from every hierarchy.
_dk_cgroup_pids() {
    [ -n "${DOCKER_CGROUP:-}" ] || return 0
    { find /sys/fs/cgroup/*/"$DOCKER_CGROUP" -name cgroup.procs -exec cat {} + 2>/dev/null || true; } | sort -u
}

# _dk_wait_gone <timeout-s> <pid…>: true when all are gone (reaps our own children).
_dk_wait_gone() {
    local timeout=$1 deadline p left
    shift
    deadline=$((SECONDS + timeout))
    while :; do
        left=""
        for p in "$@"; do _dk_alive "$p" && left="$left $p"; done
        [ -z "$left" ] && break
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
    for p in "$@"; do { wait "$p"; } 2>/dev/null || true; done
    return 0
}

# _dk_kill <timeout-s> <pid…>: SIGTERM, wait, SIGKILL what is left.
_dk_kill() {
    local timeout=$1
    shift
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null || true
    if ! _dk_wait_gone "$timeout" "$@"; then
        echo "docker-lib: SIGKILL after ${timeout}s: $*" >&2
        kill -KILL "$@" 2>/dev/null || true
        _dk_wait_gone 5 "$@" || echo "docker-lib: still alive: $*" >&2
    fi
}

# Mount points under $DOCKER_DIR, deepest first.
_dk_mounts() {
    [ -n "$DOCKER_DIR" ] || return 0
    awk -v d="$DOCKER_DIR" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo |
        sort -rn | cut -d' ' -f2- | awk '!seen[$0]++'
}

_dk_unmount_all() {
    local m
    for _ in 1 2 3 4 5; do
        [ -n "$(_dk_mounts)" ] || return 0
        while read -r m; do
            [ -n "$m" ] || continue
            umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        done < <(_dk_mounts)
    done
    [ -z "$(_dk_mounts)" ] || { echo "docker-lib: mounts left: $(_dk_mounts | tr '\n' ' ')" >&2; return 1; }
}

# Stop dockerd and everything it started; unmount. Keeps the dirs and the netns (for restart).
_dk_daemon_stop() {
    local pids
    if [ -n "$DOCKER_PID" ]; then
        _dk_kill "$DOCKER_STOP_TIMEOUT" "$DOCKER_PID"
        DOCKER_PID=""
    fi
    # containerd normally exits with dockerd; after a SIGKILL it (and the shims) would linger.
    pids=$(_dk_our_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        echo "docker-lib: stopping leftover containerd/shim processes: $pids" >&2
        # shellcheck disable=SC2086
        _dk_kill 5 $pids
    fi
    pids=$(_dk_cgroup_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
        echo "docker-lib: killing leftover container processes: $pids" >&2
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        # shellcheck disable=SC2086
        _dk_wait_gone 5 $pids || true
    fi
    if [ -n "${DOCKER_CGROUP:-}" ]; then
        find /sys/fs/cgroup/*/"$DOCKER_CGROUP" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    fi
    _dk_unmount_all
}

# Start dockerd on the existing dirs with one storage driver; 0 when `docker info` answers.
_dk_daemon_start() {
    local driver=$1 deadline
    jq -n --arg k "$DOCKER_DIR/key.json" '{"deprecated-key-path": $k}' >"$DOCKER_DIR/daemon.json"
    echo "=== docker-lib: starting dockerd ($driver) in netns $DOCKER_NETNS at $(date +%T.%N)" >>"$DOCKER_DIR/dockerd.log"
    # nsenter execs dockerd (no --fork), so $! is dockerd itself. TMPDIR: the containerd it runs
    # writes a stack dump there when dockerd finds it unhealthy (SIGUSR1 before the kill), in /tmp
    # otherwise, where nothing would remove it.
    mkdir -p "$DOCKER_DIR/tmp"
    TMPDIR="$DOCKER_DIR/tmp" nsenter --net="/run/netns/$DOCKER_NETNS" "$DOCKERD_BIN" \
        --config-file "$DOCKER_DIR/daemon.json" \
        --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" \
        --pidfile "$DOCKER_DIR/dockerd.pid" -H "unix://$DOCKER_DIR/docker.sock" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false --bridge=none \
        --userland-proxy=false --storage-driver="$driver" --cgroup-parent="/$DOCKER_CGROUP" \
        --log-level="$DOCKER_LOG_LEVEL" "${DOCKER_EXTRA_ARGS[@]}" >>"$DOCKER_DIR/dockerd.log" 2>&1 </dev/null &
    DOCKER_PID=$!
    deadline=$((SECONDS + DOCKER_START_TIMEOUT))
    while :; do
        if timeout 5 "$DOCKER_BIN" info >/dev/null 2>&1; then return 0; fi
        if ! _dk_alive "$DOCKER_PID"; then
            { wait "$DOCKER_PID"; } 2>/dev/null || true
            echo "docker-lib: dockerd ($driver) exited during startup" >&2
            DOCKER_PID=""
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "docker-lib: dockerd ($driver) not answering after ${DOCKER_START_TIMEOUT}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

_dk_fail_start() {
    echo "docker-lib: dockerd failed to start; last lines of $DOCKER_DIR/dockerd.log:" >&2
    grep -v 'module=grpc' "$DOCKER_DIR/dockerd.log" | tail -n 30 >&2 || true
    _dk_daemon_stop || true
    return 1
}

# docker_start [extra dockerd args…]
docker_start() {
    local d driver
    if [ -n "$DOCKER_PID" ] && _dk_alive "$DOCKER_PID"; then
        echo "docker-lib: dockerd already running (pid $DOCKER_PID)" >&2
        return 1
    fi
    if ! [ -x "$DOCKERD_BIN" ] || ! [ -x "$DOCKER_BIN" ]; then
        echo "docker.io missing (apt-get install docker.io)" >&2
        return 1
    fi
    DOCKER_EXTRA_ARGS=("$@")
    # Remember which system dirs dockerd/containerd will create, to remove only those.
    DOCKER_CREATED_SYSTEM_DIRS=()
    for d in "${DOCKER_SYSTEM_DIRS[@]}"; do [ -e "$d" ] || DOCKER_CREATED_SYSTEM_DIRS+=("$d"); done
    if [ -n "$DOCKER_NETNS" ] && [ -e "/run/netns/$DOCKER_NETNS" ]; then
        DOCKER_OWN_NETNS=0
    else
        DOCKER_NETNS=$(new_netns docker)
        DOCKER_OWN_NETNS=1
    fi
    DOCKER_CGROUP="cnm-e2e-docker-$$"
    # Unix socket paths are limited to 108 bytes (exec/containerd/containerd.sock.ttrpc is the
    # longest one under our dir): fall back to a short dir of our own if $WORK is too long.
    DOCKER_DIR="$WORK/docker"
    [ "${#DOCKER_DIR}" -le 56 ] || DOCKER_DIR=$(mktemp -d /tmp/cnm-dk-XXXXXX)
    mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec" "$DOCKER_DIR/cli"
    export DOCKER_HOST="unix://$DOCKER_DIR/docker.sock"
    # The CLI's own config (contexts, auth) stays out of ~/.docker.
    export DOCKER_CONFIG="$DOCKER_DIR/cli"
    DOCKER_STORAGE_DRIVER=""
    for driver in $DOCKER_STORAGE_DRIVERS; do
        if _dk_daemon_start "$driver"; then
            DOCKER_STORAGE_DRIVER=$driver
            return 0
        fi
        echo "docker-lib: storage driver $driver did not work; log tail:" >&2
        grep -v 'module=grpc' "$DOCKER_DIR/dockerd.log" | tail -n 5 >&2 || true
        _dk_daemon_stop || true
    done
    _dk_fail_start
}

# docker_restart: stop dockerd and start it again on the same data/exec roots and netns.
docker_restart() {
    [ -n "$DOCKER_DIR" ] || { echo "docker-lib: docker_restart before docker_start" >&2; return 1; }
    _dk_daemon_stop || true
    _dk_daemon_start "$DOCKER_STORAGE_DRIVER" || _dk_fail_start
}

# docker_stop: stop dockerd, containerd, shims and containers; unmount; remove the dirs, the netns
# (if we created it) and the system dirs dockerd created. Idempotent; fails only if mounts are left.
docker_stop() {
    local rc=0 d
    [ -n "$DOCKER_DIR" ] || return 0
    _dk_daemon_stop || rc=1
    if [ "$rc" -eq 0 ]; then
        rm -rf "$DOCKER_DIR"
    else
        echo "docker-lib: keeping $DOCKER_DIR because mounts are left under it" >&2
    fi
    if [ "$DOCKER_OWN_NETNS" -eq 1 ] && [ -n "$DOCKER_NETNS" ]; then
        ip netns del "$DOCKER_NETNS" 2>/dev/null || true
        DOCKER_NETNS=""
        DOCKER_OWN_NETNS=0
    fi
    # In list order: children before parents; rmdir leaves anything that is not empty.
    for d in "${DOCKER_SYSTEM_DIRS[@]}"; do
        if [[ " ${DOCKER_CREATED_SYSTEM_DIRS[*]} " == *" $d "* ]]; then rmdir "$d" 2>/dev/null || true; fi
    done
    DOCKER_CREATED_SYSTEM_DIRS=()
    DOCKER_DIR=""
    DOCKER_STORAGE_DRIVER=""
    return "$rc"
}

# For EXIT traps: never fails, never stops the rest of the cleanup (even under set -e).
docker_cleanup() {
    local had_e=0
    [[ $- == *e* ]] && had_e=1
    set +e
    docker_stop
    [ "$had_e" -eq 1 ] && set -e
    return 0
}

# docker_image [ref]: import a busybox-static image (default cnm-bb:1) unless it is there already.
# The rootfs tarball is cached at $DOCKER_IMAGE_TAR.
docker_image() {
    local ref=${1:-cnm-bb:1} r l tmp
    if dk image inspect "$ref" >/dev/null 2>&1; then return 0; fi
    if ! [ -s "$DOCKER_IMAGE_TAR" ] || [ /bin/busybox -nt "$DOCKER_IMAGE_TAR" ] ||
        ! tar -tf "$DOCKER_IMAGE_TAR" ./bin/busybox >/dev/null 2>&1; then
        [ -x /bin/busybox ] || { echo "busybox-static missing: scripts/deps.sh installs it" >&2; return 1; }
        r=$(mktemp -d /tmp/cnm-bb-rootfs-XXXXXX)
        mkdir -p "$r"/{bin,etc,proc,sys,dev,root,tmp}
        chmod 1777 "$r/tmp"
        cp /bin/busybox "$r/bin/busybox"
        /bin/busybox --install -s "$r/bin"
        # --install -s links to busybox's absolute path on the host (/usr/bin/busybox): make them
        # relative so they resolve inside the image.
        for l in "$r"/bin/*; do [ -L "$l" ] && ln -sfn busybox "$l"; done
        tmp="$DOCKER_IMAGE_TAR.$$"
        tar --numeric-owner -C "$r" -cf "$tmp" .
        mv -f "$tmp" "$DOCKER_IMAGE_TAR"
        rm -rf "$r"
    fi
    dk import -c 'CMD ["/bin/sh"]' "$DOCKER_IMAGE_TAR" "$ref" >/dev/null
}

# Run docker_cleanup from lib.sh's cleanup, before it removes $WORK and the netns.
if ! declare -F _dk_lib_cleanup >/dev/null; then
    eval "_dk_lib_cleanup() $(declare -f cleanup | tail -n +2)"
    cleanup() { docker_cleanup; _dk_lib_cleanup; }
fi
