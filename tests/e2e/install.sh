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
finish
