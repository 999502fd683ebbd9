#pragma once
// The macvlan driver: each endpoint is a macvlan child of a parent ("master") interface, with its
// own MAC, placed straight into the sandbox.
//
// Modes: "bridge" (children of one master reach each other inside the kernel), "private" (they
// never do), "vepa" (their traffic hairpins through the external switch), "passthru" (one child
// takes over the master). A child cannot talk to its master's own addresses — a kernel property,
// not a bug. The link is created with IFLA_NET_NS_FD under a temporary name and renamed inside the
// sandbox: names need only be unique there, and a name taken on the host never collides. Mode and
// parent cannot change after creation. Keys and result follow the reference macvlan plugin
// (reference/cni.md §2.2): one interface, in the sandbox; IPAM DEL before the link on DEL.

#include "cni/skel.hpp"

namespace cnm::drivers {

cni::Plugin macvlan_plugin();
/// Network-level keys (shared with cnm-shim's -o options): master, mode, mtu.
const Json& macvlan_network_defaults();

} // namespace cnm::drivers
