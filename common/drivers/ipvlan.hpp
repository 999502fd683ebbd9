#pragma once
// The ipvlan driver: each endpoint is an ipvlan child of a master interface, placed straight into
// the sandbox (shared code with macvlan: drivers/child_link.cpp).
//
// Modes: "l2" (the default; children and master share one L2 segment and the master's MAC), "l3"
// and "l3s" (the master routes between its children; no ARP or broadcast). A custom MAC is
// refused — ipvlan children have none of their own. Chained after a plugin that made one interface,
// that interface is the master when none is given, and without an "ipam" section the addresses of
// prevResult are used (the reference's behaviour, reference/cni.md §2.3). On a kernel without
// CONFIG_IPVLAN, ADD fails with code 105 "ipvlan is not supported by this kernel" and leaves the
// state as it was.

#include "cni/skel.hpp"

namespace cnm::drivers {

cni::Plugin ipvlan_plugin();
/// Network-level keys (shared with cnm-shim's -o options): master, mode, mtu, flag.
const Json& ipvlan_network_defaults();

} // namespace cnm::drivers
