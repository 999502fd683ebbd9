#pragma once
// Bridge ports: their flags (hairpin, isolation) and their VLAN membership, both AF_BRIDGE
// requests on the port's index.

#include "netlink/socket.hpp"

#include <optional>

namespace cnm::netlink {

/// Bridge-port flags on a port (AF_BRIDGE RTM_SETLINK with IFLA_PROTINFO).
struct PortChange {
    std::optional<bool> hairpin;
    std::optional<bool> isolated;
};
Result<void> set_bridge_port(Socket& socket, int index, const PortChange& change);
/// VLAN membership of a bridge port (or of the bridge itself with `self`).
Result<void> add_bridge_vlan(Socket& socket, int index, uint16_t vid, bool pvid_untagged, bool self);
Result<void> del_bridge_vlan(Socket& socket, int index, uint16_t vid, bool self);

} // namespace cnm::netlink
