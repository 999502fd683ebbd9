#pragma once
// The rtnetlink verbs over a Socket, one header per kind of object; this umbrella includes them
// all, so `#include "netlink/route.hpp"` gives the whole layer. Each verb is one request;
// "not found" is reported as std::nullopt, as success (deletes), or as a kernel errno in
// Error::sys_errno the caller can match (ENODEV, EEXIST), never as a crash.
//   link.hpp         links: get, list, create (veth, bridge, macvlan, ipvlan, vlan, vxlan), set, delete
//   bridge_port.hpp  bridge-port flags and VLANs
//   address.hpp      interface addresses
//   routes.hpp       routes: add, replace (onlink), delete, list
//   neigh.hpp        neighbours (ARP/NDP) and FDB entries, with replace semantics

#include "netlink/address.hpp"
#include "netlink/bridge_port.hpp"
#include "netlink/link.hpp"
#include "netlink/neigh.hpp"
#include "netlink/routes.hpp"
