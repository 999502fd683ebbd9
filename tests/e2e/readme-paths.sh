#!/usr/bin/env bash
# The README cannot rot: every "one short path per kind of user" block is taken from README.md
# itself (the fenced ```sh block after each `<!-- path: NAME -->` marker) and run, with only the
# substitutions the README states:
#   - paths under /etc, /opt, /usr/sbin, /var/lib → under a temp root $T (one per path); the
#     plugins' state dir through CNM_STATE_DIR=$T/var/lib/cni/cnm and as dataDir in the copied confs;
#   - the commands run in a netns of the test (nsenter --net), never the machine's own; `ip netns
#     add|del|exec NAME` and /run/netns/NAME get the prefix cnmcri-<pid>-;
#   - the conf/ files a block names are copies whose subnets are moved into this test's range
#     (10.213.200.0/24–10.213.209.0/24);
#   - a `systemctl` line is where the test starts the daemon itself: containerd (cri-lib.sh, with
#     the CNI dirs of $T/etc/containerd/config.toml — a copy of Debian's that the README's own
#     command edits — moved into $T); cnm-shim: systemd-analyze verify of the
#     installed unit (silent and rc 0), then the unit's own ExecStart, substituted;
#   - Docker's driver `cnm` and its socket /run/docker/plugins/cnm.sock get the suffix of this
#     test; `docker` is Debian's /usr/bin/docker against a dockerd of the test (docker-lib.sh);
#   - `busybox` is an image made offline from busybox-static; podman gets this machine's settings
#     (runc, cgroupfs, ulimits, storage under the test dir) in front of the README's drop-in.
# Each path is then checked for its outcome (addresses from the conf's subnet, pods that ping,
# nothing left after teardown). Every unit file under conf/ passes systemd-analyze verify.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/docker-lib.sh"
source "$(dirname "$0")/cri-lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
README=$REPO/README.md
NSP="cnmcri-$$-"
DRV="cnmr$$"
PATHS=(kubelet podman docker cni cluster)

# extract <name>: the ```sh block after <!-- path: name -->
extract() {
    awk -v want="<!-- path: $1 -->" '
        $0 == want { armed = 1; next }
        armed && /^```sh[[:space:]]*$/ { inblock = 1; next }
        inblock && /^```[[:space:]]*$/ { exit }
        inblock { print }' "$README"
}

# substitute <T>: stdin → stdout, the README's substitutions.
substitute() {
    T=$1 NSP=$NSP DRV=$DRV /usr/bin/python3 -c '
import os, re, sys
T, P, D = os.environ["T"], os.environ["NSP"], os.environ["DRV"]
s = sys.stdin.read()
s = s.replace("/run/docker/plugins/cnm.sock", "/run/docker/plugins/%s.sock" % D)
s = re.sub(r"(?<![\w./-])/(etc|opt|usr/sbin|var/lib)(?=[/\s\"\x27]|$)", lambda m: T + m.group(0), s)
s = re.sub(r"(ip netns (?:add|del|delete|exec) )([\w-]+)", lambda m: m.group(1) + P + m.group(2), s)
s = re.sub(r"/run/netns/([\w-]+)", lambda m: "/run/netns/" + P + m.group(1), s)
s = re.sub(r"(-d|--driver|--ipam-driver) cnm(?=\s)", lambda m: m.group(1) + " " + D, s)
s = s.replace("127.0.0.1:2379", "127.0.0.1:23818")
sys.stdout.write(s)'
}

# src_tree <dir> <block> <state-dir>: the blocks' working dir: build → $BUILD, and a copy of every
# conf/ file the block names, its subnets moved into 10.213.202/204–209 (those in 200–209 stay)
# and, for CNI confs, the state dir as dataDir.
src_tree() {
    local dir=$1 block=$2 f
    mkdir -p "$dir"
    ln -sfn "$BUILD" "$dir/build"
    for f in $(grep -o 'conf/[A-Za-z0-9_./-]*' <<<"$block" | sort -u); do
        # (a name that is no file is left to the block's own command to fail on)
        [ ! -f "$REPO/$f" ] || install -D -m 644 "$REPO/$f" "$dir/$f"
    done
    (cd "$dir" && { find conf -type f 2>/dev/null || true; }) | /usr/bin/python3 -c '
import json, re, sys
free = [202, 204, 205, 206, 207, 208, 209]
seen = {}
def new(n):
    if 200 <= n <= 209:
        return n
    if n not in seen:
        seen[n] = free.pop(0)
    return seen[n]
for path in sys.stdin.read().split():
    p = sys.argv[1] + "/" + path
    s = open(p).read()
    s = re.sub(r"10\.213\.(\d+)\.", lambda m: "10.213.%d." % new(int(m.group(1))), s)
    # the examples pair 10.213.N.0/24 with fd00:213:N::/64: the same N moves to the same place
    s = re.sub(r"fd00:213:(\d{1,3})::", lambda m: m.group(0) if m.group(1) == "0" else "fd00:213:0:%d::" % new(int(m.group(1))), s)
    # The state dir rides in the conf as well as in CNM_STATE_DIR: the cleanup process of podman (its
    # conmon exit command, which runs the DEL) does not pass the environment on.
    if p.endswith((".conf", ".conflist")):
        doc = json.loads(s)
        (doc["plugins"][0] if "plugins" in doc else doc)["dataDir"] = sys.argv[2]
        s = json.dumps(doc, indent=4) + "\n"
    open(p, "w").write(s)' "$dir" "$3"
}

# run_segment <netns> <dir> <env-file> <script> <out>: one run of bash in the test's netns.
run_segment() {
    local ns=$1 dir=$2 envf=$3 script=$4 out=$5 rc
    set +e
    (cd "$dir" && set -a && source "$envf" && set +a &&
        nsenter --net="/run/netns/$ns" bash -euo pipefail -c "$script") >>"$out" 2>&1
    rc=$?
    set -e
    return "$rc"
}

# run_path <name> <netns> <T>: the block, substituted, segment by segment; at each `systemctl`
# line the test's on_systemctl_<name> runs instead. Sets PATH_OUT (combined output) and PATH_RC.
run_path() {
    local name=$1 ns=$2 T=$3 block sub seg="" line dir=$WORK/src-$1 envf=$WORK/env-$1 n
    block=$(extract "$name")
    CHECKS=$((CHECKS + 1))
    if [ -z "$block" ]; then fail "README has no block for path '$name'"; PATH_RC=1; return 0; fi
    pass "README has the '$name' path ($(grep -c . <<<"$block") lines)"
    src_tree "$dir" "$block" "$T/var/lib/cni/cnm"
    sub=$(substitute "$T" <<<"$block")
    for n in $(grep -oE "ip netns add [A-Za-z0-9_-]+" <<<"$sub" | awk '{print $4}'); do echo "$n" >>"$WORK/netns"; done
    mkdir -p "$T"
    PATH_OUT=$WORK/out-$name
    : >"$PATH_OUT"
    PATH_RC=0
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ ^[[:space:]]*systemctl[[:space:]] ]]; then
            if [ -n "$seg" ]; then run_segment "$ns" "$dir" "$envf" "$seg" "$PATH_OUT" || { PATH_RC=$?; break; }; fi
            seg=""
            echo "+ [test] $line" >>"$PATH_OUT"
            "on_systemctl_$name" "$line" >>"$PATH_OUT" 2>&1 || { PATH_RC=$?; break; }
        else
            seg+="$line"$'\n'
        fi
    done <<<"$sub"
    if [ "$PATH_RC" -eq 0 ] && [ -n "$seg" ]; then run_segment "$ns" "$dir" "$envf" "$seg" "$PATH_OUT" || PATH_RC=$?; fi
    expect_eq "path $name: the README's commands succeed" 0 "$PATH_RC"
    if [ "$PATH_RC" -ne 0 ]; then echo "--- output of path $name:" >&2; cat "$PATH_OUT" >&2; fi
}

# env_file <name> <T> [extra lines]: the environment the blocks see.
env_file() {
    local name=$1 T=$2
    shift 2
    {
        echo "CNM_STATE_DIR=$T/var/lib/cni/cnm"
        echo "PATH=$WORK/tbin-$name:/usr/bin:/usr/sbin:/bin:/sbin"
        for l in "$@"; do echo "$l"; done
    } >"$WORK/env-$name"
    mkdir -p "$WORK/tbin-$name"
}
leases_in() { find "$1/var/lib/cni/cnm/ipam" -path '*/leases/*' -type f ! -name '.spare-*' 2>/dev/null | wc -l; }
first_v4() { [ -f "$1" ] || { echo none; return 0; }; jq -r '[.. | objects | .subnet? // empty | select(test(":") | not)][0]' "$1" | cut -d. -f1-3; }
in_ns() { local ns=$1; shift; nsenter --net="$ns" "$@"; }
had_var_cnm=$([ -e /var/lib/cni/cnm ] && echo yes || echo no)

# ---- the README has exactly the paths this test knows how to run ----
expect_eq "README's path markers" "${PATHS[*]}" "$(sed -n 's/^<!-- path: \([a-z0-9-]*\) -->$/\1/p' "$README" | paste -sd' ')"

# ---- the systemd units pass systemd-analyze verify ----
UNITROOT=$WORK/unitroot
mkdir -p "$UNITROOT/usr/lib/systemd" "$UNITROOT/etc/systemd/system"
cp -a /usr/lib/systemd/system "$UNITROOT/usr/lib/systemd/"
# verify_unit <root> <unit path inside root>: rc 0 and not a word of complaint.
verify_unit() {
    local out rc
    set +e
    out=$(systemd-analyze --man=no verify --root="$1" "$2" 2>&1)
    rc=$?
    set -e
    echo "rc=$rc${out:+ $out}"
}
for unit in $(cd "$REPO" && find conf -name '*.service' | sort); do
    # The unit's commands must exist where it says: the built binaries, at the unit's paths.
    for exe in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\([^ ]*\).*/\1/p' "$REPO/$unit"); do
        case "$exe" in */cnm-shim) install -D -m 755 "$BUILD/cnm-shim/cnm-shim" "$UNITROOT$exe" ;; esac
    done
    install -m 644 "$REPO/$unit" "$UNITROOT/etc/systemd/system/"
    expect_eq "$unit passes systemd-analyze verify" "rc=0" "$(verify_unit "$UNITROOT" "/etc/systemd/system/$(basename "$unit")")"
done

# ---- kubelet + containerd ----
T=$WORK/root-kubelet
H=$(cri_netns kubelet)
env_file kubelet "$T"
# The node's containerd config as Debian ships it (the README's sed edits the copy).
[ -f /etc/containerd/config.toml ] || { echo "no /etc/containerd/config.toml: is Debian's containerd installed?" >&2; exit 1; }
install -D -m 644 /etc/containerd/config.toml "$T/etc/containerd/config.toml"
on_systemctl_kubelet() {
    local dirs bin conf
    [[ $1 =~ systemctl\ (restart|start|enable\ --now)\ containerd ]] || { echo "unexpected: $1"; return 1; }
    # The CNI dirs containerd would use: its config's, else the CRI plugin's defaults; each path
    # moved into $T like the README's own (the config's text never went through substitute).
    dirs=$(/usr/bin/python3 -c '
import sys, tomllib
cni = tomllib.load(open(sys.argv[1], "rb")).get("plugins", {}).get("io.containerd.grpc.v1.cri", {}).get("cni", {})
print(cni.get("bin_dir", "/opt/cni/bin"), cni.get("conf_dir", "/etc/cni/net.d"))' "$T/etc/containerd/config.toml" | substitute "$T")
    read -r bin conf <<<"$dirs"
    echo "+ [test] containerd with CNI bin_dir $bin, conf_dir $conf"
    CNM_STATE_DIR=$T/var/lib/cni/cnm
    export CNM_STATE_DIR
    cri_config "$bin" "$conf"
    cri_start "$H"
    cri_pause_image
}
run_path kubelet "$H" "$T"
if [ "$PATH_RC" -eq 0 ]; then
    st=$(crictl status)
    expect_eq "path kubelet: NetworkReady" true "$(jq -r .NetworkReady.status <<<"$st")"
    out=$(crictl run --cgroup-parent "/$CRI_CGROUP" readme-a readme-b 2>&1) || true
    cri_track "$out"
    mapfile -t ids < <(jq -r '.[] | .id // empty' <<<"$out" 2>/dev/null)
    expect_eq "path kubelet: 2 pods run" 2 "${#ids[@]}"
    net=$(first_v4 "$T/etc/cni/net.d/10-cnm.conflist")
    if [ "${#ids[@]}" -eq 2 ]; then
        a=$(crictl inspect "${ids[0]}"); b=$(crictl inspect "${ids[1]}")
        expect_eq "path kubelet: both addresses from the conflist's $net.0/24" "$net $net" \
            "$(jq -r .ip <<<"$a" | cut -d. -f1-3) $(jq -r .ip <<<"$b" | cut -d. -f1-3)"
        CHECKS=$((CHECKS + 1))
        if in_ns "$(jq -r .netns <<<"$a")" ping -c 1 -W 2 "$(jq -r .ip <<<"$b")" >/dev/null 2>&1; then
            pass "path kubelet: pod a pings pod b"
        else fail "path kubelet: pod a cannot ping pod b"; fi
    fi
    for id in "${ids[@]}"; do
        if ! { crictl stop "$id" >/dev/null && crictl rm "$id" >/dev/null; }; then fail "path kubelet: teardown of $id"; fi
    done
    expect_eq "path kubelet: no lease after teardown" 0 "$(leases_in "$T")"
fi
cri_stop TERM

# ---- podman ----
T=$WORK/root-podman
HP=$(cri_netns podman)
PW=$WORK/podman
mkdir -p "$PW"/{storage,run,tmp}
env_file podman "$T"
cat >"$PW/machine.conf" <<CONF
# this machine's settings (../shared/reference/real-clients.md §2), in front of the README's drop-in
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$PW/tmp"
CONF
cat >"$PW/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$PW/storage"
runroot = "$PW/run"
CONF
cat >"$WORK/tbin-podman/podman" <<EOF
#!/bin/bash
shopt -s nullglob
cat "$PW/machine.conf" "$T"/etc/containers/containers.conf.d/*.conf >"$PW/containers.conf"
export CONTAINERS_CONF="$PW/containers.conf" CONTAINERS_STORAGE_CONF="$PW/storage.conf" CNM_STATE_DIR="$T/var/lib/cni/cnm"
exec /usr/bin/podman "\$@"
EOF
chmod 755 "$WORK/tbin-podman/podman"
had_containers=$([ -e /var/lib/containers ] && echo yes || echo no)
podman_cleanup() {
    [ -x "$WORK/tbin-podman/podman" ] || return 0
    nsenter --net="/run/netns/$HP" "$WORK/tbin-podman/podman" rm -af -t 0 >/dev/null 2>&1 || true
    nsenter --net="/run/netns/$HP" "$WORK/tbin-podman/podman" system reset -f >/dev/null 2>&1 || true
    [ "$had_containers" == yes ] || rm -rf /var/lib/containers
}
eval "_readme_podman_cleanup() $(declare -f cleanup | tail -n +2)"
# (set +e first: under set -e the `(exit "$rc")` that hands the status on would end the trap)
cleanup() { local rc=$?; set +e; podman_cleanup; (exit "$rc"); _readme_podman_cleanup; }
docker_image_tar() { # the busybox rootfs tarball docker-lib makes, without a dockerd
    [ -s "$DOCKER_IMAGE_TAR" ] && tar -tf "$DOCKER_IMAGE_TAR" ./bin/busybox >/dev/null 2>&1 && return 0
    local r; r=$(mktemp -d "$WORK/bb-XXXXXX")
    mkdir -p "$r"/{bin,etc,proc,sys,dev,root,tmp}; chmod 1777 "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"; /bin/busybox --install -s "$r/bin"
    for l in "$r"/bin/*; do [ -L "$l" ] && ln -sfn busybox "$l"; done
    tar --numeric-owner -C "$r" -cf "$DOCKER_IMAGE_TAR.$$" . && mv -f "$DOCKER_IMAGE_TAR.$$" "$DOCKER_IMAGE_TAR"
    rm -rf "$r"
}
docker_image_tar
nsenter --net="/run/netns/$HP" "$WORK/tbin-podman/podman" import --change 'CMD ["/bin/sh"]' "$DOCKER_IMAGE_TAR" docker.io/library/busybox:latest >/dev/null 2>&1
run_path podman "$HP" "$T"
net=$(first_v4 "$WORK/src-podman/conf/podman/cnm-podman.conflist")
expect_eq "path podman: the container's eth0 has an address from the conflist's $net.0/24" 1 \
    "$(grep -c "inet $net\." "$PATH_OUT" || true)"
expect_eq "path podman: no lease after podman run --rm" 0 "$(leases_in "$T")"
podman_cleanup

# ---- Docker host ----
T=$WORK/root-docker
HD=$(cri_netns docker)
# shellcheck disable=SC2034  # read by docker-lib.sh: dockerd runs in this test netns
DOCKER_NETNS=$HD
docker_start
docker_image
env_file docker "$T" "DOCKER_HOST=$DOCKER_HOST" "DOCKER_CONFIG=$DOCKER_CONFIG"
dk tag cnm-bb:1 busybox:latest
SHIM_PID=""
on_systemctl_docker() {
    local unit exec_line
    [[ $1 =~ systemctl\ enable\ --now\ cnm-shim ]] || { echo "unexpected: $1"; return 1; }
    unit=$T/etc/systemd/system/cnm-shim.service
    mkdir -p "$T/usr/lib/systemd"
    cp -a /usr/lib/systemd/system "$T/usr/lib/systemd/"
    local v; v=$(verify_unit "$T" /etc/systemd/system/cnm-shim.service)
    [ "$v" == rc=0 ] || { echo "systemd-analyze verify: $v"; return 1; }
    exec_line=$(sed -n 's/^ExecStart=//p' "$unit" | substitute "$T")
    echo "+ [test] $exec_line &"
    # shellcheck disable=SC2086
    nsenter --net="/run/netns/$HD" $exec_line >>"$WORK/shim.log" 2>&1 &
    SHIM_PID=$!
    PIDS+=("$SHIM_PID")
    for _ in $(seq 100); do [ -S "/run/docker/plugins/$DRV.sock" ] && return 0; sleep 0.05; done
    echo "cnm-shim did not create its socket"; cat "$WORK/shim.log"; return 1
}
run_path docker "$HD" "$T"
expect_eq "path docker: the container's eth0 has an address from 10.213.203.0/24" 1 "$(grep -c 'inet 10\.213\.203\.' "$PATH_OUT" || true)"
dk network rm cnm-net >/dev/null 2>&1 || true
expect_eq "path docker: no lease after docker network rm" 0 "$(leases_in "$T")"
if [ -n "$SHIM_PID" ]; then kill -TERM "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null || true; fi
expect_eq "path docker: the shim removed its socket on SIGTERM" no "$([ -e "/run/docker/plugins/$DRV.sock" ] && echo yes || echo no)"
docker_stop

# ---- CNI_* by hand ----
T=$WORK/root-cni
HC=$(cri_netns cni)
env_file cni "$T"
run_path cni "$HC" "$T"
net=$(first_v4 "$WORK/src-cni/conf/manual/cnm-bridge.conf")
expect_eq "path cni: eth0 of netns demo has an address from the conf's $net.0/24" 1 "$(grep -c "inet $net\." "$PATH_OUT" || true)"
expect_eq "path cni: no lease after DEL" 0 "$(leases_in "$T")"
expect_eq "path cni: netns demo removed" no "$([ -e "/run/netns/${NSP}demo" ] && echo yes || echo no)"

# ---- a cluster with etcd ----
T=$WORK/root-cluster
HX=$(cri_netns cluster)
UX=$(cri_netns cluster-up)
ip -n "$HX" link add cnmrpu0 type veth peer name cnmrpu1 netns "$UX"
ip -n "$HX" addr add 10.213.201.1/24 dev cnmrpu0
ip -n "$UX" addr add 10.213.201.2/24 dev cnmrpu1
ip -n "$HX" link set cnmrpu0 up
ip -n "$UX" link set cnmrpu1 up
ip -n "$HX" route add default via 10.213.201.2
env_file cluster "$T" "CNM_CLUSTER_FILE=$T/etc/cnm/cluster.json"
ETCD_PID=""
on_systemctl_cluster() {
    [ -x /usr/bin/etcd ] || { echo "no /usr/bin/etcd"; return 1; }
    ip netns exec "$HX" /usr/bin/etcd --name readme --data-dir "$WORK/etcd-readme" \
        --listen-client-urls http://127.0.0.1:23818 --advertise-client-urls http://127.0.0.1:23818 \
        --listen-peer-urls http://127.0.0.1:23819 --initial-advertise-peer-urls http://127.0.0.1:23819 \
        --initial-cluster readme=http://127.0.0.1:23819 --initial-cluster-state new --log-level error >"$WORK/etcd-readme.log" 2>&1 &
    ETCD_PID=$!
    PIDS+=("$ETCD_PID")
    for _ in $(seq 100); do
        ip netns exec "$HX" curl -s --max-time 1 http://127.0.0.1:23818/health 2>/dev/null | grep -q true && return 0
        sleep 0.1
    done
    echo "etcd did not come up"; cat "$WORK/etcd-readme.log"; return 1
}
run_path cluster "$HX" "$T"
expect_eq "path cluster: eth0 of netns demo has an address from the conf's 10.213.207.0/24" 1 "$(grep -c "inet 10\.213\.207\." "$PATH_OUT" || true)"
expect_eq "path cluster: the host claimed its block in etcd" 1 \
    "$(ip netns exec "$HX" curl -s --max-time 2 http://127.0.0.1:23818/v3/kv/range -d "{\"key\":\"$(printf /cnm/blocks/ | base64)\",\"range_end\":\"$(printf /cnm/blocks0 | base64)\",\"count_only\":true}" | jq -r '.count // 0')"
expect_eq "path cluster: no endpoint left after DEL" 0 "$(find "$T/var/lib/cni/cnm/networks" -name '*.json' ! -name network.json 2>/dev/null | wc -l)"
if [ -n "$ETCD_PID" ]; then kill "$ETCD_PID" 2>/dev/null || true; wait "$ETCD_PID" 2>/dev/null || true; fi

expect_eq "nothing was written to the machine's /var/lib/cni/cnm" "$had_var_cnm" "$([ -e /var/lib/cni/cnm ] && echo yes || echo no)"
finish
