#!/usr/bin/env bash
# The etcd client (common/etcd/) against a real etcd: Debian's etcd-server on loopback, ports in
# 23790–23800, its data under a temp dir; the cases are the doctest binary etcd-live. No netns
# and no root needed. etcd is stopped by its PID in the EXIT trap (SIGCONT first: a failed
# SIGSTOP case must not leave it frozen), and the temp dir removed.
set -euo pipefail

: "${BUILD:?BUILD must point at the meson build directory}"
LIVE="$BUILD/tests/e2e/etcd-live"
ETCD=${ETCD:-/usr/bin/etcd}
[ -x "$ETCD" ] || { echo "SKIP: $ETCD missing (scripts/deps.sh installs etcd-server)"; exit 77; }
[ -x "$LIVE" ] || { echo "FAIL: $LIVE not built" >&2; exit 1; }

WORK=$(mktemp -d /tmp/cnm-e2e-etcd-client-XXXXXX)
ETCD_PID=
cleanup() {
    if [ -n "$ETCD_PID" ]; then
        kill -CONT "$ETCD_PID" 2>/dev/null || true
        kill "$ETCD_PID" 2>/dev/null || true
        wait "$ETCD_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# TCP ports in our range with no listener (TIME_WAIT is no obstacle: etcd and the drip listener
# bind with SO_REUSEADDR).
used=$(ss -Hltn 2>/dev/null | awk '{print $4}')
free_port() {
    local p
    for p in "$@"; do
        if ! grep -qE "[:.]$p\$" <<<"$used" && ! grep -qx "$p" "$WORK/taken" 2>/dev/null; then
            echo "$p" >>"$WORK/taken"
            echo "$p"
            return 0
        fi
    done
    echo "no free port in $*" >&2
    return 1
}
CLIENT=$(free_port $(seq 23790 23799))
PEER=$(free_port 23800 $(seq 23790 23799))
DEAD=$(free_port $(seq 23799 -1 23790))
DRIP=$(free_port $(seq 23799 -1 23790))

start_etcd() {
    "$ETCD" --name cnm-t1 --data-dir "$WORK/data" \
        --listen-client-urls "http://127.0.0.1:$CLIENT" --advertise-client-urls "http://127.0.0.1:$CLIENT" \
        --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
        --initial-cluster "cnm-t1=http://127.0.0.1:$PEER" --initial-cluster-state new \
        --heartbeat-interval 10 --election-timeout 100 --log-level warn >"$WORK/etcd.log" 2>&1 &
    ETCD_PID=$!
    # Up to 20 s: a new member's first fsyncs (its WAL and snapshot) wait on the disk, which a
    # CI run here shared once with the tests before it (not healthy after 5 s; alone, 0.2 s).
    local i start=$SECONDS
    for i in $(seq 400); do
        if curl -sf "http://127.0.0.1:$CLIENT/health" 2>/dev/null | grep -q '"health":"true"'; then
            return 0
        fi
        kill -0 "$ETCD_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "FAIL: etcd did not become healthy in $((SECONDS - start)) s ($(kill -0 "$ETCD_PID" 2>/dev/null && echo running || echo exited)):" \
        "$(curl -s --max-time 2 "http://127.0.0.1:$CLIENT/health" 2>&1 || echo no answer)" >&2
    cat "$WORK/etcd.log" >&2
    return 1
}
start_etcd

export ETCD_ENDPOINT="http://127.0.0.1:$CLIENT" ETCD_DEAD="http://127.0.0.1:$DEAD" ETCD_DRIP_PORT=$DRIP ETCD_PID
rc=0
"$LIVE" --no-intro=true -tce='live-exit*' || rc=1
kill -CONT "$ETCD_PID" 2>/dev/null || true # in case the binary died inside its SIGSTOP case
# Last and alone: this case ends etcd, the trap then only reaps it.
ETCD_EXIT_CASE=1 "$LIVE" --no-intro=true -tc='live-exit*' || rc=1
[ "$rc" = 0 ] || { echo "--- etcd log" >&2; tail -20 "$WORK/etcd.log" >&2; }
exit "$rc"
