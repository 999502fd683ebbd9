#!/usr/bin/env bash
# Installs every Debian package the build, the demo and the tests use (as root, on Debian 12).
# Quick when everything is already there: apt runs only for what is missing.
set -euo pipefail
packages=(
    # build
    meson ninja-build g++ pkg-config nlohmann-json3-dev libmnl-dev libnftables-dev libnftables1 libcli11-dev doctest-dev
    # cnm-shim's HTTP server on a Unix socket
    libcpp-httplib-dev
    # tests and demo: the reference plugins for interop, netns tooling, JSON assertions
    containernetworking-plugins iproute2 iputils-ping iptables nftables jq util-linux procps coreutils findutils
    # slow and idle HTTP clients for tests/e2e/shim-bounds.sh
    python3-minimal
    # a real CNI client (libcni): podman with runc, and a busybox for its offline image
    podman runc busybox-static
    # a real go-cni client: containerd's CRI plugin, driven by a Python CRI client (tests/e2e/cri/)
    containerd protobuf-compiler python3-grpcio python3-protobuf
    # systemd-analyze, to verify the systemd units the README installs (tests/e2e/readme-paths.sh)
    systemd
    # a real CNM client for cnm-shim: Docker 20.10 (dockerd is started by the tests themselves)
    docker.io curl
    # the cluster store for multi-host networks (tests start their own etcd on loopback)
    etcd-server
    # TCP throughput through the vxlan overlay (tests/bench/vxlan.sh)
    iperf3
    # `cnm-shim cluster dot` is validated by Graphviz itself (tests/unit/cluster_dot_test.cpp, e2e vxlan-ipv6)
    graphviz
    # fuzzing: libFuzzer with ASan/UBSan
    clang libclang-rt-14-dev
    # the VM tier (tests/vm): qemu, and xz/cpio to unpack the kernel and pack the initramfs
    qemu-system-x86 xz-utils cpio
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
