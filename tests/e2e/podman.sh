#!/usr/bin/env bash
# A real client: podman 4.3 with its CNI backend (libcni) runs our `bridge` + `ipam` from the
# conflist in conf/podman/, with the reference portmap and tuning after them. Two containers from
# an image made offline from busybox-static get addresses from our pool and ping each other;
# after `podman rm` nothing is left. podman itself runs inside a throwaway "host" netns, so the
# bridge and its rules never touch the machine's own network. Settings this machine needs are from
# ../shared/reference/real-clients.md (runc, ulimits, overlay under the test dir).
source "$(dirname "$0")/lib.sh"
command -v podman >/dev/null || { echo "podman missing: scripts/deps.sh installs it" >&2; exit 1; }
HOST=$(new_netns host)
P="$WORK/podman"
mkdir -p "$P"/{net.d,storage,run,tmp,rootfs/bin}
cp /bin/busybox "$P/rootfs/bin/"
for a in $("$P/rootfs/bin/busybox" --list); do [ -e "$P/rootfs/bin/$a" ] || ln -s busybox "$P/rootfs/bin/$a"; done
tar -C "$P/rootfs" -cf "$P/busybox.tar" .
cat >"$P/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[network]
network_backend = "cni"
cni_plugin_dirs = ["$PLUGINS", "$REF"]
network_config_dir = "$P/net.d"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
tmp_dir = "$P/tmp"
CONF
cat >"$P/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$P/storage"
runroot = "$P/run"
CONF
export CONTAINERS_CONF="$P/containers.conf" CONTAINERS_STORAGE_CONF="$P/storage.conf"
# The example conflist, with the state dir pointed at this test's (podman's cleanup process may
# not inherit our environment).
for c in cnm-podman cnm-macvlan; do
    jq --arg d "$CNM_STATE_DIR" '.plugins[0].dataDir = $d' "$(dirname "$0")/../../conf/podman/$c.conflist" >"$P/net.d/$c.conflist"
done
# The macvlan example's master (a veth end in podman's netns: this kernel has no dummy).
ip -n "$HOST" link add cnm-mv0 type veth peer name cnm-mv0p
ip -n "$HOST" link set cnm-mv0 up
ip -n "$HOST" link set cnm-mv0p up
# nsenter, not ip netns exec: the latter remounts /sys, hiding the cgroup mounts runc needs.
had_cache=$([ -e /var/lib/containers ] && echo yes || echo no)
had_results=$([ -e /var/lib/cni/results ] && echo yes || echo no)
pm() { nsenter --net="/run/netns/$HOST" podman "$@"; }
podman_cleanup() {
    pm rm -af -t 0 >/dev/null 2>&1 || true
    pm system reset -f >/dev/null 2>&1 || true
    # What podman and libcni create outside our dirs, if they were not there before.
    [ "$had_cache" == yes ] || rm -rf /var/lib/containers
    [ "$had_results" == yes ] || rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
}
trap 'podman_cleanup; cleanup' EXIT

pm import --change 'CMD ["/bin/sh"]' "$P/busybox.tar" localhost/cnm-busybox:latest >/dev/null
expect_eq "podman sees our network" cnm-podman "$(pm network ls --format '{{.Name}}' | grep -x cnm-podman || true)"
pm run -d --name web --network cnm-podman localhost/cnm-busybox sleep 120 >/dev/null
ip_web=$(pm inspect web --format '{{(index .NetworkSettings.Networks "cnm-podman").IPAddress}}')
expect_eq "web got an address from our pool" 10.213.30 "$(cut -d. -f1-3 <<<"$ip_web")"
expect_eq "…recorded as a lease" 1 "$(lease_count)"
expect_eq "…and as an endpoint of the network" 1 "$(ls "$CNM_STATE_DIR/networks/cnm-podman/endpoints" | wc -l)"
set +e
out=$(pm run --rm --network cnm-podman localhost/cnm-busybox ping -c 2 -W 2 "$ip_web" 2>&1)
rc=$?
set -e
expect_eq "a second container pings web [$(tail -2 <<<"$out" | head -1)]" 0 "$rc"
pm run -d --name pinned --network cnm-podman --ip 10.213.30.77 --mac-address 02:13:30:00:00:77 localhost/cnm-busybox sleep 120 >/dev/null
expect_eq "--ip reaches our ipam (CNI_ARGS IP=)" 10.213.30.77 "$(pm inspect pinned --format '{{(index .NetworkSettings.Networks "cnm-podman").IPAddress}}')"
expect_eq "--mac-address reaches our bridge (CNI_ARGS MAC=)" 02:13:30:00:00:77 "$(pm inspect pinned --format '{{(index .NetworkSettings.Networks "cnm-podman").MacAddress}}')"
pm rm -f -t 0 web pinned >/dev/null
expect_eq "after podman rm: no lease" 0 "$(lease_count)"
expect_eq "…no endpoint" 0 "$(ls "$CNM_STATE_DIR/networks/cnm-podman/endpoints" | wc -l)"
expect_eq "…no port on the bridge" 0 "$(ip -n "$HOST" -o link show master cnm-podman0 | wc -l)"

# The macvlan example: two containers, children of one master, ping each other.
pm run -d --name mv1 --network cnm-macvlan localhost/cnm-busybox sleep 120 >/dev/null
ip_mv1=$(pm inspect mv1 --format '{{(index .NetworkSettings.Networks "cnm-macvlan").IPAddress}}')
expect_eq "mv1 got an address from the macvlan pool" 10.213.32 "$(cut -d. -f1-3 <<<"$ip_mv1")"
expect_eq "…on a macvlan child of cnm-mv0" "macvlan bridge" "$(nsenter --net="$(pm inspect mv1 --format '{{.NetworkSettings.SandboxKey}}')" ip -j -d link show eth0 | jq -r '.[0].linkinfo | "\(.info_kind) \(.info_data.mode)"')"
set +e
out=$(pm run --rm --network cnm-macvlan localhost/cnm-busybox ping -c 2 -W 2 "$ip_mv1" 2>&1)
rc=$?
set -e
expect_eq "a second macvlan container pings mv1 [$(tail -2 <<<"$out" | head -1)]" 0 "$rc"
pm rm -f -t 0 mv1 >/dev/null
expect_eq "after podman rm: no macvlan lease" 0 "$(lease_count)"
expect_eq "…no macvlan endpoint" 0 "$(ls "$CNM_STATE_DIR/networks/cnm-macvlan/endpoints" | wc -l)"
expect_eq "…no masquerade element" 0 "$(ip netns exec "$HOST" nft -j list map ip cnm masq | jq '[.nftables[] | select(.map) | .map.elem // [] | .[]] | length')"
finish
