#pragma once
// The bridge driver: a Linux bridge per network, a veth pair per endpoint.
//
// Keys mean what they mean to the reference bridge plugin (reference/cni.md §2.1). The container
// end of the veth is created directly in the sandbox's netns under a temporary name and renamed
// there, so a name taken on the host never collides; the host end gets a random "veth" name that
// the endpoint record keeps, which is what lets DEL and GC remove it when the netns is gone.
//
// Differences from the reference, on purpose: nothing polls or sleeps (no port-state wait, no
// IPv6 DAD wait unless "enabledad"); a failed ADD removes the veth too (the reference leaks it on
// IPAM exhaustion); CHECK ignores the bridge's MAC, which changes whenever a port joins.
//
// A conf whose "name" is an existing network (made by another conf or by cnm-shim) inherits the
// network-level keys it omits and must agree on those it sets (cnm/options.hpp).
//
// The network-level parts are shared with cnm-shim, whose Docker endpoints join the same bridges.

#include "cni/skel.hpp"
#include "cni/types.hpp"
#include "cnm/model.hpp"
#include "netlink/route.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm::drivers {

cni::Plugin bridge_plugin();

struct BridgeKeys {
    std::string bridge = "cni0";
    bool is_gateway = false;
    bool is_default_gateway = false;
    bool force_address = false;
    bool hairpin = false;
    bool promisc = false;
    bool enabledad = false;
    bool port_isolation = false;
    bool disable_container_interface = false;
    bool ip_masq = false;
    bool macspoofchk = false;
    std::optional<int> mtu;
    std::optional<int> vlan;
};

/// The network-level keys and what their absence means.
const Json& bridge_network_defaults();
Result<BridgeKeys> parse_bridge_keys(const Json& raw);
/// Creates the bridge if needed (EEXIST from a parallel creator is fine), brings it up.
Result<netlink::Link> ensure_bridge(netlink::Socket& host, const BridgeKeys& keys);
/// Puts each gateway of `ips` on the bridge and turns on forwarding for its family.
Result<void> ensure_gateway(netlink::Socket& host, const netlink::Link& bridge, const std::vector<cni::IpConfig>& ips, bool force);
/// Removes the firewall state an endpoint record says it has (masquerade, MAC guard, published
/// ports); absent state is fine.
Result<void> remove_firewall(const EndpointRecord& record);

} // namespace cnm::drivers
