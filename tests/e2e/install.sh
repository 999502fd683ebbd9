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
prefix=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name == "prefix") | .value')
sbindir=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name == "sbindir") | .value')
expect_eq "cnm-shim installed in sbin" yes "$([ -x "$WORK/dest$prefix/$sbindir/cnm-shim" ] && echo yes || echo no)"
expect_eq "…and its help lists serve, list, inspect, gc, call, dot" "6" "$("$WORK/dest$prefix/$sbindir/cnm-shim" --help | grep -cE '^  (serve|list|inspect|gc|call|dot) ')"
finish
