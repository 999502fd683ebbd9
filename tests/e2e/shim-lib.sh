# shellcheck shell=bash
# cnm-shim for the Docker e2e tests: started in dockerd's netns (Join's links must be where
# dockerd looks for them) on /run/docker/plugins/$P.sock, so Docker finds it as driver $P.
# Source after lib.sh and docker-lib.sh; cleanup stops dockerd first (it may still call the
# shim while stopping containers), then the shim, and removes the socket and the plugin dir if
# this test created it.
SHIM=$BUILD/cnm-shim/cnm-shim
P="cnmt$$"                                   # the driver name Docker sees
SHIM_PID=""
created_plugin_dir=0
[ -d /run/docker/plugins ] || created_plugin_dir=1
created_spec_dirs=()
if [ "${SHIM_SPEC:-0}" -eq 1 ]; then
    # Found through /etc/docker/plugins/$P.spec instead (conf/docker/cnm.spec's way).
    SOCK=$WORK/$P.sock
    SPEC=/etc/docker/plugins/$P.spec
    for d in /etc/docker /etc/docker/plugins; do [ -d "$d" ] || created_spec_dirs=("$d" "${created_spec_dirs[@]}"); done
    mkdir -p /etc/docker/plugins
    echo "unix://$SOCK" >"$SPEC"
else
    SOCK=/run/docker/plugins/$P.sock
fi

shim_start() {
    nsenter --net="/run/netns/$DOCKER_NETNS" "$SHIM" serve --socket "$SOCK" --state-dir "$CNM_STATE_DIR" >>"$WORK/shim.log" 2>&1 &
    SHIM_PID=$!
    PIDS+=("$SHIM_PID")
    # Served, not just present: after a SIGKILL the stale socket is there before the new shim binds.
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && curl -s --max-time 2 --unix-socket "$SOCK" -XPOST -H "Content-Length: 0" http://plugin/Plugin.Activate >/dev/null 2>&1 && return 0
        kill -0 "$SHIM_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "shim did not start:" >&2; tail "$WORK/shim.log" >&2; return 1
}
shim_stop() {
    kill -TERM "$SHIM_PID"
    wait "$SHIM_PID" || true
    SHIM_PID=""
}
shim_cleanup() {
    if [ "$FAILS" -gt 0 ] && [ -f "$WORK/shim.log" ]; then echo "--- shim log (tail)" >&2; tail -n 40 "$WORK/shim.log" >&2; fi
    # dockerd first (it may still call the shim while stopping containers), then the shim.
    docker_cleanup
    if [ -n "$SHIM_PID" ]; then kill -TERM "$SHIM_PID" 2>/dev/null || true; wait "$SHIM_PID" 2>/dev/null || true; fi
    rm -f "$SOCK"
    if [ "$created_plugin_dir" -eq 1 ]; then rmdir /run/docker/plugins /run/docker 2>/dev/null || true; fi
    if [ -n "${SPEC:-}" ]; then rm -f "$SPEC"; fi
    for d in "${created_spec_dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
}
eval "_shim_lib_cleanup() $(declare -f cleanup | tail -n +2)"
cleanup() { shim_cleanup; _shim_lib_cleanup; }

shim() { nsenter --net="/run/netns/$DOCKER_NETNS" "$SHIM" "$@" --state-dir "$CNM_STATE_DIR"; }
call() { # call <Method> [json]: POST to the shim, prints "<status> <body>"
    local body=${2:-}
    { curl -s --max-time 10 --unix-socket "$SOCK" -XPOST "http://plugin/$1" -H "Content-Length: ${#body}" ${body:+--data-binary "$body"} -w ' %{http_code}' || echo " curl-failed"; } | tr -d '\n'
}
ip_of() { dk inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
leases_of() { find "$CNM_STATE_DIR/ipam" -path '*/leases/*' -type f ! -name '.spare-*' -exec grep -l "\"frontend\": *\"$1\"" {} + 2>/dev/null | wc -l; }
docker_leases() { leases_of docker; }
cni_leases() { leases_of cni; }
web_get() { ip netns exec "$CL" curl -s --max-time 3 "$1" 2>&1 || true; }
listing() { shim list --json; }
h() { ip netns exec "$DOCKER_NETNS" "$@"; }
