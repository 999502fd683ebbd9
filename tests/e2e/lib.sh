# Shared helpers for the end-to-end tests: each test sources this, creates what it needs through
# these functions, and everything is removed by the EXIT trap — also when an assertion fails.
#
# Env from meson: BUILD (the build dir). Plugins are run exactly as a runtime runs them: CNI_* in
# the environment, the conf on stdin, the result or error on stdout.
set -euo pipefail

: "${BUILD:?BUILD must point at the meson build directory}"
PLUGINS="$BUILD/plugins"
REF=/usr/lib/cni
TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/cnm-e2e-$TEST_NAME-XXXXXX")
export CNM_STATE_DIR="$WORK/state"
# Tests of GC free what they just added: no grace (the default keeps a just-added attachment
# from a GC whose list was computed while its ADD was in flight).
export CNM_GC_GRACE_MS=0
PIDS=()
FAILS=0
CHECKS=0

cleanup() {
    local pid ns
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    if [ -f "$WORK/netns" ]; then
        while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$WORK/netns"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# A netns named for this test and process, so parallel or leftover runs never collide. It is
# recorded in a file (callers use $(new_netns …), a subshell) for the EXIT trap to remove.
new_netns() {
    local name="cnm-${TEST_NAME:0:10}-$$-$1"
    echo "$name" >>"$WORK/netns"
    ip netns add "$name"
    ip -n "$name" link set lo up
    echo "$name"
}

fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

# expect_eq <what> <expected> <actual>
expect_eq() {
    CHECKS=$((CHECKS + 1))
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# cni <plugin-path> <COMMAND> <containerid> <netns-path> <ifname> <conf> [extra env…]
# Prints stdout; sets RC.
cni() {
    local plugin=$1 cmd=$2 id=$3 netns=$4 ifname=$5 conf=$6
    shift 6
    set +e
    OUT=$(printf '%s' "$conf" | env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$netns" CNI_IFNAME="$ifname" \
        CNI_PATH="${CNI_PATH_OVERRIDE:-$PLUGINS:$REF}" "$@" "$plugin")
    RC=$?
    set -e
}

# State snapshot: every file under the state dir with its content, for "changed nothing" checks
# (the store's lock files and spare inodes left out: they hold no document).
state_snapshot() {
    if [ -d "$CNM_STATE_DIR" ]; then
        (cd "$CNM_STATE_DIR" && find . -type f ! -name .lock ! -name '.spare-*' -print0 | sort -z | xargs -0r sha1sum)
    fi
}

lease_count() {
    if [ -d "$CNM_STATE_DIR/ipam" ]; then
        find "$CNM_STATE_DIR/ipam" -path '*/leases/*' -type f ! -name '.spare-*' | wc -l
    else
        echo 0
    fi
}

finish() {
    echo "$TEST_NAME: $CHECKS checks, $FAILS failed"
    [ "$CHECKS" -gt 0 ] || { echo "no checks ran" >&2; exit 1; }
    [ "$FAILS" -eq 0 ]
}

# run_conflist <conflist> <ADD|CHECK|DEL> <containerid> <netns-path> <host-netns> [runtimeConfig json]
# Runs every plugin of a conflist the way libcni does: ADD and CHECK in order, DEL in reverse,
# prevResult threaded from the cached ADD result ($WORK/cache-<id>). Sets RC and OUT.
run_conflist() {
    local list=$1 cmd=$2 id=$3 netns=$4 host=$5 rc_json=${6:-'{}'}
    local name version count prev="" i p type bin conf cache="$WORK/cache-$id"
    name=$(jq -r .name "$list"); version=$(jq -r .cniVersion "$list"); count=$(jq '.plugins | length' "$list")
    [ "$cmd" == ADD ] || prev=$(cat "$cache" 2>/dev/null || echo "")
    local order; order=$(seq 0 $((count - 1)))
    [ "$cmd" == DEL ] && order=$(seq $((count - 1)) -1 0)
    for i in $order; do
        p=$(jq -c ".plugins[$i]" "$list")
        type=$(jq -r .type <<<"$p")
        conf=$(jq -c --arg n "$name" --arg v "$version" --argjson prev "${prev:-null}" --argjson rc "$rc_json" \
            'del(.capabilities) + {cniVersion: $v, name: $n} + (if $prev then {prevResult: $prev} else {} end)
             + (if (.type == "portmap" and $rc.portMappings) then {runtimeConfig: {portMappings: $rc.portMappings}} else {} end)' <<<"$p")
        bin=$PLUGINS/$type; [ -x "$bin" ] || bin=$REF/$type
        set +e
        OUT=$(printf '%s' "$conf" | ip netns exec "$host" env CNI_COMMAND="$cmd" CNI_CONTAINERID="$id" CNI_NETNS="$netns" CNI_IFNAME=eth0 \
            CNI_PATH="$PLUGINS:$REF" CNM_STATE_DIR="$CNM_STATE_DIR" "$bin")
        RC=$?
        set -e
        if [ "$RC" -ne 0 ]; then echo "$type $cmd failed: $OUT" >&2; return 0; fi
        [ "$cmd" == ADD ] && prev=$OUT
    done
    [ "$cmd" == ADD ] && echo "$prev" >"$cache"
    [ "$cmd" == DEL ] && rm -f "$cache"
    OUT=${prev:-$OUT}
    return 0
}
