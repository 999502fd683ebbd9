#!/usr/bin/env bash
# `meson install` puts the plugins in the configured CNI bin dir (default /opt/cni/bin).
source "$(dirname "$0")/lib.sh"
bindir=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name == "cni_bin_dir") | .value')
expect_eq "default bin dir" /opt/cni/bin "$bindir"
meson install -C "$BUILD" --destdir "$WORK/dest" --no-rebuild >/dev/null
expect_eq "ipam installed and executable" yes "$([ -x "$WORK/dest$bindir/ipam" ] && echo yes || echo no)"
set +e
version=$(echo '' | CNI_COMMAND=VERSION "$WORK/dest$bindir/ipam" | jq -r '.supportedVersions | join(",")')
set -e
expect_eq "installed ipam answers VERSION" "0.1.0,0.2.0,0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" "$version"
for p in bridge macvlan ipvlan; do
    expect_eq "$p installed in the CNI bin dir" yes "$([ -x "$WORK/dest$bindir/$p" ] && echo yes || echo no)"
done

# vxlan: cpp-httplib (with libssl, libcrypto) is not linked; its etcd transport, cnm-etcd-http.so,
# is installed beside it and loaded only for a call that needs etcd.
VXI=$WORK/dest$bindir/vxlan
MOD=$WORK/dest$bindir/cnm-etcd-http.so
expect_eq "vxlan installed in the CNI bin dir" yes "$([ -x "$VXI" ] && echo yes || echo no)"
expect_eq "its etcd module installed beside it, written by no group or other" yes \
    "$([ -f "$MOD" ] && [ ! -L "$MOD" ] && [ -z "$(find "$MOD" -perm /022)" ] && echo yes || echo no)"
expect_eq "ldd of the installed vxlan: no libcpp-httplib, libssl, libcrypto" 0 "$(ldd "$VXI" | grep -cE 'httplib|libssl|libcrypto' || true)"
expect_eq "ldd of the module: it is what links libcpp-httplib" 1 "$(ldd "$MOD" | grep -c 'libcpp-httplib' || true)"
# An etcd on loopback in a netns of this test (client 23890, peer 23891, metrics 23892).
ETCD_BIN=/usr/bin/etcd
if [ -x "$ETCD_BIN" ]; then
    NS=hlz-install-$$
    echo "$NS" >>"$WORK/netns"
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    URL=http://127.0.0.1:23890
    ip netns exec "$NS" "$ETCD_BIN" --name inst --data-dir "$WORK/etcd" --listen-client-urls $URL --advertise-client-urls $URL \
        --listen-peer-urls http://127.0.0.1:23891 --initial-advertise-peer-urls http://127.0.0.1:23891 \
        --initial-cluster inst=http://127.0.0.1:23891 --listen-metrics-urls http://127.0.0.1:23892 \
        --heartbeat-interval 10 --election-timeout 100 --log-level error >"$WORK/etcd.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do ip netns exec "$NS" curl -sf $URL/health >/dev/null 2>&1 && break; sleep 0.1; done
    # STATUS on a host with no block asks etcd for the network's blocks: it needs the module.
    VCONF=$(jq -nc --arg u $URL '{cniVersion: "1.1.0", name: "hlz-inst", type: "vxlan", vni: 4242, subnet: "10.213.217.0/24",
        cluster: {etcd: [$u], node: "hlz-node", timeoutMs: 3000}}')
    vx_status() { # vx_status <plugin>: STATUS in the etcd's netns; sets RC, OUT
        set +e
        OUT=$(printf '%s' "$VCONF" | ip netns exec "$NS" env CNI_COMMAND=STATUS "$@" 2>"$WORK/status.err")
        RC=$?
        set -e
    }
    vx_status LD_DEBUG=files "$VXI"
    expect_eq "installed vxlan STATUS (asks etcd through the module) succeeds" "0" "$RC${OUT:+: $OUT}"
    expect_eq "…and that STATUS loaded the module and libssl (LD_DEBUG)" yes \
        "$(grep -q 'cnm-etcd-http.so\|/proc/self/fd/' "$WORK/status.err" && grep -q 'libssl' "$WORK/status.err" && echo yes || echo no)"
    set +e
    echo '' | CNI_COMMAND=VERSION LD_DEBUG=files "$VXI" >/dev/null 2>"$WORK/version.err"
    set -e
    expect_eq "VERSION (no etcd call) loads neither the module nor libssl" 0 "$(grep -cE 'libssl|libcpp-httplib|/proc/self/fd/' "$WORK/version.err" || true)"
    # The same binary without its module beside it, then with a module others may write.
    mkdir -p "$WORK/alone" && cp "$VXI" "$WORK/alone/vxlan"
    vx_status "$WORK/alone/vxlan"
    expect_eq "vxlan without its module: STATUS says not ready (50), naming the module" "1 50 yes" \
        "$RC $(jq -r .code <<<"$OUT") $(jq -r '.msg + " " + .details' <<<"$OUT" | grep -q "cnm-etcd-http.so is not installed" && echo yes || echo no)"
    cp "$MOD" "$WORK/alone/cnm-etcd-http.so" && chmod 0666 "$WORK/alone/cnm-etcd-http.so"
    vx_status "$WORK/alone/vxlan"
    expect_eq "…with a world-writable module: refused, not loaded" "1 50 yes" \
        "$RC $(jq -r .code <<<"$OUT") $(jq -r '.msg + " " + .details' <<<"$OUT" | grep -q "not trusted: it is writable by others" && echo yes || echo no)"
    chmod 0644 "$WORK/alone/cnm-etcd-http.so"
    vx_status "$WORK/alone/vxlan"
    expect_eq "…the same module made 0644: STATUS succeeds" "0" "$RC${OUT:+: $OUT}"
else
    echo "skip (vxlan module load): no $ETCD_BIN"
fi
prefix=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
sbindir=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name == "sbindir") | .value')
expect_eq "cnm-shim installed in sbin" yes "$([ -x "$WORK/dest$prefix/$sbindir/cnm-shim" ] && echo yes || echo no)"
expect_eq "…and its help lists serve, list, inspect, gc, call, dot" "6" "$("$WORK/dest$prefix/$sbindir/cnm-shim" --help | grep -cE '^  (serve|list|inspect|gc|call|dot) ')"
finish
