#pragma once
// The Kernel seam: every effect a driver or the endpoint lifecycle asks of the kernel — links,
// bridge ports and VLANs, addresses, routes, sysctls through netlink and /proc/sys, and the
// per-endpoint firewall elements through nftables — as one interface. The real one
// (netlink_kernel.cpp) opens one netlink socket per namespace, once; tests use a fake
// (tests/unit/fake_kernel.hpp) that keeps the same facts in memory and can fail any call, so
// every driver's attach, detach and check runs in-process, without root.
//
// Namespaces are handles: `host` is the namespace the caller runs in (the runtime's host netns,
// or the one dockerd runs in); `open_netns` gives a handle on a sandbox's netns, or nullopt when
// its path is gone (DEL then knows the links went with it).
//
// The semantics are the ones drivers need, so they are the same in both implementations: a
// create of something that exists reports it (never an error for parallel creators), a delete of
// something absent is success, an address or route that is already there is success.

#include "firewall/nft.hpp"
#include "net/ip.hpp"
#include "netlink/route.hpp"
#include "util/result.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cnm {

using netlink::Link;
using netlink::Mac;

/// A namespace handle: host_ns, or one open_netns gave.
using NsId = int;
inline constexpr NsId host_ns = 0;

struct VethSpec {
    std::string name;       // end in `ns`
    std::string peer_name;  // end in `peer_ns`
    NsId ns = host_ns;
    NsId peer_ns = host_ns;
    std::optional<int> mtu;
    std::optional<Mac> peer_mac;
};

/// A macvlan or ipvlan child of `master` (an index in host_ns), created directly in `ns`.
struct ChildSpec {
    std::string kind;       // "macvlan" or "ipvlan"
    std::string name;
    int master = 0;
    NsId ns = host_ns;
    uint32_t mode = 0;      // MACVLAN_MODE_* / IPVLAN_MODE_*
    uint16_t ipvlan_flags = 0;
    std::optional<int> mtu;
    std::optional<Mac> mac; // macvlan only
};

class Kernel {
public:
    virtual ~Kernel() = default;

    /// nullopt when the path does not exist or is no longer a namespace.
    virtual Result<std::optional<NsId>> open_netns(const std::string& path) = 0;

    virtual Result<std::optional<Link>> get_link(NsId ns, const std::string& name) = 0;
    virtual Result<std::optional<Link>> get_link(NsId ns, int index) = 0;
    /// The interface of the first default route (IPv4, then IPv6), if any.
    virtual Result<std::optional<Link>> default_route_link(NsId ns) = 0;

    /// Returns false when a link of that name already existed.
    virtual Result<bool> create_bridge(NsId ns, const std::string& name, std::optional<int> mtu, bool vlan_filtering) = 0;
    virtual Result<void> set_vlan_filtering(NsId ns, int index, bool on) = 0;
    /// The end in spec.ns when the kernel said what it made (else nullopt: look it up).
    virtual Result<std::optional<Link>> create_veth(const VethSpec& spec) = 0;
    virtual Result<void> create_child(const ChildSpec& spec) = 0;
    /// An 802.1Q sub-interface of `parent`, up.
    virtual Result<void> create_vlan(NsId ns, const std::string& name, int parent, uint16_t vid) = 0;
    /// Absent is success.
    virtual Result<void> delete_link(NsId ns, int index) = 0;
    virtual Result<void> set_link(NsId ns, int index, const netlink::LinkChange& change) = 0;
    virtual Result<void> set_bridge_port(NsId ns, int index, const netlink::PortChange& change) = 0;
    virtual Result<void> add_bridge_vlan(NsId ns, int index, uint16_t vid, bool pvid_untagged) = 0;
    virtual Result<void> del_bridge_vlan(NsId ns, int index, uint16_t vid) = 0;

    /// Present is success. IPv6 addresses get IFA_F_NODAD unless `dad`.
    virtual Result<void> add_address(NsId ns, int index, const IpNet& address, bool dad) = 0;
    virtual Result<void> del_address(NsId ns, int index, const IpNet& address) = 0;
    virtual Result<std::vector<IpNet>> addresses(NsId ns, int index) = 0;
    /// Present is success.
    virtual Result<void> add_route(NsId ns, const netlink::RouteSpec& route) = 0;
    virtual Result<std::vector<netlink::RouteSpec>> routes(NsId ns, int family) = 0;

    // The overlay's per-peer entries (drivers/vxlan.cpp), with replace semantics: programming an
    // entry twice, or over one whose MAC, VTEP or gateway changed, is success; deleting an absent
    // one is success.
    /// A vxlan device (netlink::VxlanSpec), down; a name that exists is an error.
    virtual Result<void> create_vxlan(NsId ns, const netlink::VxlanSpec& spec) = 0;
    /// `dst` → `lladdr` on device `index`, permanent.
    virtual Result<void> replace_neighbour(NsId ns, int index, const IpAddr& dst, const Mac& lladdr) = 0;
    virtual Result<void> delete_neighbour(NsId ns, int index, const IpAddr& dst) = 0;
    virtual Result<std::vector<netlink::Neighbour>> neighbours(NsId ns, int index) = 0;
    /// `mac` → remote VTEP `dst` in the device's own FDB, permanent.
    virtual Result<void> replace_fdb(NsId ns, int index, const Mac& mac, const IpAddr& dst) = 0;
    virtual Result<void> delete_fdb(NsId ns, int index, const Mac& mac, const std::optional<IpAddr>& dst) = 0;
    /// The entries with a destination (what was programmed; not the device's own addresses).
    virtual Result<std::vector<netlink::FdbEntry>> fdb(NsId ns, int index) = 0;
    /// NLM_F_REPLACE: the route to `route.dst` becomes this one (`onlink` honoured).
    virtual Result<void> replace_route(NsId ns, const netlink::RouteSpec& route) = 0;
    /// Absent is success; `gw`/`oif` narrow the match when set.
    virtual Result<void> delete_route(NsId ns, const netlink::RouteSpec& route) = 0;

    /// Through /proc/sys of `ns`: "net/ipv4/ip_forward".
    virtual Result<std::string> read_sysctl(NsId ns, const std::string& key) = 0;
    virtual Result<void> write_sysctl(NsId ns, const std::string& key, const std::string& value) = 0;
    struct SysctlWrite {
        std::string key;
        std::string value;
        bool optional = false; // its failure is ignored (an IPv6 key on a host without IPv6)
    };
    /// In order, stopping at the first failure that is not optional; a kernel may make them all
    /// in one visit to `ns` (each visit is two setns calls and a look at the thread's own netns).
    virtual Result<void> write_sysctls(NsId ns, const std::vector<SysctlWrite>& writes)
    {
        for (auto& w : writes)
            if (auto done = write_sysctl(ns, w.key, w.value); !done && !w.optional)
                return done;
        return {};
    }

    // Firewall elements, in the host namespace (firewall/nft.hpp). Removing an absent one is
    // success; any other failure is an error.
    virtual Result<void> add_masquerade(const std::string& network, const IpNet& address) = 0;
    virtual Result<void> del_masquerade(const IpNet& address) = 0;
    virtual Result<bool> has_masquerade(const IpNet& address) = 0;
    virtual Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac) = 0;
    virtual Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac) = 0;
    virtual Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac) = 0;
    /// The network's own firewall objects (its masquerade chain), once its last endpoint is gone.
    virtual Result<void> remove_network_firewall(const std::string& network) = 0;
    /// All or none.
    virtual Result<void> add_ports(const std::vector<firewall::PortMap>& ports) = 0;
    virtual Result<void> del_ports(const std::vector<firewall::PortMap>& ports) = 0;
};

/// Netlink, /proc/sys and nftables, from the namespace the process is in now.
Result<std::unique_ptr<Kernel>> netlink_kernel();

} // namespace cnm
