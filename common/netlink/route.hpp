#pragma once
// rtnetlink verbs over a Socket: links (veth, bridge), bridge-port attributes and VLANs,
// addresses and routes. Each is one request; "not found" is reported as std::nullopt or as a
// kernel errno the caller can match (ENODEV, EEXIST), never as a crash.

#include "net/ip.hpp"
#include "netlink/socket.hpp"

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace cnm::netlink {

using Mac = std::array<uint8_t, 6>;
std::optional<Mac> parse_mac(std::string_view text);
std::string mac_str(const Mac& mac);

struct Link {
    int index = 0;
    std::string name;
    std::string kind;      // "bridge", "veth", … (empty for a kind-less device such as lo)
    Mac mac {};
    int mtu = 0;
    int master = 0;        // index of the bridge this is a port of
    unsigned flags = 0;    // IFF_*
    int peer_index = 0;    // IFLA_LINK: a veth's peer (in its own namespace)
    int peer_netnsid = -1; // IFLA_LINK_NETNSID
    bool promisc() const;
    bool up() const;
};

Result<std::optional<Link>> get_link(Socket& socket, const std::string& name);
Result<std::optional<Link>> get_link(Socket& socket, int index);
Result<std::vector<Link>> list_links(Socket& socket);

struct BridgeSpec {
    std::string name;
    std::optional<int> mtu;
    bool vlan_filtering = false;
};
/// Creates the bridge; returns false when a link of that name already existed (EEXIST is not an
/// error: parallel ADDs race to create it).
Result<bool> create_bridge(Socket& socket, const BridgeSpec& spec);
Result<void> set_bridge_vlan_filtering(Socket& socket, int index, bool on);

struct VethSpec {
    std::string name;      // host end, created in the socket's namespace
    std::string peer_name; // container end
    int peer_netns_fd = -1;// the container end is created directly in this namespace
    std::optional<int> mtu;
    std::optional<Mac> peer_mac;
};
Result<void> create_veth(Socket& socket, const VethSpec& spec);

struct MacvlanSpec {
    std::string name;      // created directly in the target namespace under this (temporary) name
    int master = 0;        // index of the parent, in the socket's namespace
    int netns_fd = -1;
    uint32_t mode = 0;     // MACVLAN_MODE_*
    std::optional<int> mtu;
    std::optional<Mac> mac;
    uint16_t ipvlan_flags = 0; // IPVLAN_F_PRIVATE / IPVLAN_F_VEPA (ipvlan only)
};
Result<void> create_macvlan(Socket& socket, const MacvlanSpec& spec);
/// The same for ipvlan (`mode` is IPVLAN_MODE_*, `mac` must be unset: children share the master's).
Result<void> create_ipvlan(Socket& socket, const MacvlanSpec& spec);
/// An 802.1Q sub-interface `name` of `parent` with `vid`, in the socket's namespace, set up.
Result<void> create_vlan(Socket& socket, const std::string& name, int parent, uint16_t vid);

/// Deletes a link; an absent one (ENODEV) is success.
Result<void> delete_link(Socket& socket, int index);
Result<void> delete_link(Socket& socket, const std::string& name);

struct LinkChange {
    std::optional<bool> up;
    std::optional<int> master;
    std::optional<int> mtu;
    std::optional<std::string> name;
    std::optional<Mac> mac;
    std::optional<bool> promisc;
};
Result<void> set_link(Socket& socket, int index, const LinkChange& change);

/// Bridge-port flags on a port (AF_BRIDGE RTM_SETLINK with IFLA_PROTINFO).
struct PortChange {
    std::optional<bool> hairpin;
    std::optional<bool> isolated;
};
Result<void> set_bridge_port(Socket& socket, int index, const PortChange& change);
/// VLAN membership of a bridge port (or of the bridge itself with `self`).
Result<void> add_bridge_vlan(Socket& socket, int index, uint16_t vid, bool pvid_untagged, bool self);
Result<void> del_bridge_vlan(Socket& socket, int index, uint16_t vid, bool self);

struct Address {
    int index = 0;
    IpNet address;
};
/// Adds an address; IPv6 addresses are added with IFA_F_NODAD unless `dad`.
Result<void> add_address(Socket& socket, int index, const IpNet& address, bool dad = false);
Result<void> del_address(Socket& socket, int index, const IpNet& address);
/// Global-scope addresses of one link (index > 0) or of all links.
Result<std::vector<Address>> list_addresses(Socket& socket, int index, int family = 0);

struct RouteSpec {
    IpNet dst;
    std::optional<IpAddr> gw;
    int oif = 0;
    std::optional<int> mtu;
    std::optional<int> priority;
    std::optional<int> table;
    std::optional<int> scope; // RT_SCOPE_*; default: link without gw, universe with gw
};
Result<void> add_route(Socket& socket, const RouteSpec& route);
/// Main-table unicast routes (dst, gw, oif).
Result<std::vector<RouteSpec>> list_routes(Socket& socket, int family);

} // namespace cnm::netlink
