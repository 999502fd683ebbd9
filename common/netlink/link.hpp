#pragma once
// Links: look-up, listing, creation, change and deletion. Every creation is one RTM_NEWLINK
// envelope (name, parent, target namespace, MTU, MAC, up) around IFLA_LINKINFO, whose
// IFLA_INFO_DATA the kind fills (veth, bridge, macvlan, ipvlan, vlan, vxlan). The build_*
// functions make the request without sending it (the unit tests compare their bytes); the
// create_* functions send it and turn the kernel's errno into a sentence.

#include "net/ip.hpp"
#include "netlink/socket.hpp"

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cnm::netlink {

using Mac = std::array<uint8_t, 6>;
std::optional<Mac> parse_mac(std::string_view text);
std::string mac_str(const Mac& mac);

/// What a vxlan device reports of its IFLA_INFO_DATA (the fields we create it with).
struct VxlanInfo {
    uint32_t vni = 0;
    uint16_t port = 0;          // host order
    bool learning = true;
    bool proxy = false;
    uint8_t ttl = 0;            // 0: inherit
    int underlay = 0;           // IFLA_VXLAN_LINK
    std::optional<IpAddr> local;
};

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
    std::optional<VxlanInfo> vxlan; // set for kind "vxlan"
    bool promisc() const;
    bool up() const;
};

Result<std::optional<Link>> get_link(Socket& socket, const std::string& name);
Result<std::optional<Link>> get_link(Socket& socket, int index);
Result<std::vector<Link>> list_links(Socket& socket);

/// The part of RTM_NEWLINK every kind shares, in the order it is written: IFLA_IFNAME,
/// IFLA_LINK (parent), IFLA_NET_NS_FD, IFLA_MTU, IFLA_ADDRESS, then IFLA_LINKINFO.
struct NewLink {
    std::string name;
    int parent = 0;        // IFLA_LINK when > 0
    int netns_fd = -1;     // IFLA_NET_NS_FD when >= 0: created directly in that namespace
    std::optional<int> mtu;
    std::optional<Mac> mac;
    bool up = false;       // IFF_UP in the ifinfomsg
    bool one_queue = false; // IFLA_NUM_TX_QUEUES and IFLA_NUM_RX_QUEUES 1
};
/// Writes the kind's attributes; IFLA_INFO_DATA is open when it is called.
using KindFill = std::function<void(Request&)>;
/// RTM_NEWLINK with NLM_F_CREATE | NLM_F_EXCL: the envelope, IFLA_INFO_KIND = `kind`, and
/// IFLA_INFO_DATA written by `fill` (an empty nest without one).
Request build_new_link(const NewLink& envelope, std::string_view kind, const KindFill& fill);

struct BridgeSpec {
    std::string name;
    std::optional<int> mtu;
    bool vlan_filtering = false;
};
Request build_bridge(const BridgeSpec& spec);
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
Request build_veth(const VethSpec& spec);
/// The host end as the kernel echoes it (NLM_F_ECHO, Linux 6.3+); nullopt from an older kernel,
/// which creates the pair but sends no copy.
Result<std::optional<Link>> create_veth(Socket& socket, const VethSpec& spec);

struct MacvlanSpec {
    std::string name;      // created directly in the target namespace under this (temporary) name
    int master = 0;        // index of the parent, in the socket's namespace
    int netns_fd = -1;
    uint32_t mode = 0;     // MACVLAN_MODE_*
    std::optional<int> mtu;
    std::optional<Mac> mac;
    uint16_t ipvlan_flags = 0; // IPVLAN_F_PRIVATE / IPVLAN_F_VEPA (ipvlan only)
};
Request build_macvlan(const MacvlanSpec& spec);
Request build_ipvlan(const MacvlanSpec& spec);
Result<void> create_macvlan(Socket& socket, const MacvlanSpec& spec);
/// The same for ipvlan (`mode` is IPVLAN_MODE_*, `mac` must be unset: children share the master's).
Result<void> create_ipvlan(Socket& socket, const MacvlanSpec& spec);

Request build_vlan(const std::string& name, int parent, uint16_t vid);
/// An 802.1Q sub-interface `name` of `parent` with `vid`, in the socket's namespace, set up.
Result<void> create_vlan(Socket& socket, const std::string& name, int parent, uint16_t vid);

/// A VXLAN tunnel endpoint, as flannel's backend makes it (`ip link add NAME type vxlan id VNI
/// local IP dev UNDERLAY dstport PORT nolearning`). Flags such as learning and proxy cannot be
/// changed after creation: a different spec means deleting and creating the device again.
struct VxlanSpec {
    std::string name;
    uint32_t vni = 0;             // 0 … 2^24-1 (IFLA_VXLAN_ID)
    uint16_t port = 0;            // UDP destination port (IFLA_VXLAN_PORT); 0: the kernel's 8472
    std::optional<IpAddr> local;  // underlay source address (IFLA_VXLAN_LOCAL / IFLA_VXLAN_LOCAL6)
    int underlay = 0;             // underlay device index (IFLA_VXLAN_LINK) when > 0
    bool learning = false;        // IFLA_VXLAN_LEARNING, always sent: off unless asked
    bool proxy = false;           // IFLA_VXLAN_PROXY (ARP/ND answered from the neighbour table)
    std::optional<uint8_t> ttl;   // IFLA_VXLAN_TTL; unset: inherit
    std::optional<Mac> mac;
    std::optional<int> mtu;
};
/// Bad input (VNI out of range, an unset or odd local address family, an MTU below 68) as an
/// InvalidConfig error, before anything is sent.
Result<void> check_vxlan(const VxlanSpec& spec);
Request build_vxlan(const VxlanSpec& spec);
Result<void> create_vxlan(Socket& socket, const VxlanSpec& spec);

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

} // namespace cnm::netlink
