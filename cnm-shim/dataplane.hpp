#pragma once
// The kernel work behind Docker's calls, as one interface: the real one does netlink and
// nftables in the shim's network namespace (the one dockerd runs in), the handler tests use a
// fake that records what was asked.

#include "drivers/bridge.hpp"
#include "firewall/nft.hpp"
#include "net/ip.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cnm::shim {

struct VethPlan {
    std::string host;      // stays on the host, a port of the bridge
    std::string container; // handed to Docker as SrcName; Docker moves it into the sandbox
    std::string bridge;
    std::optional<int> mtu;
    std::string mac;       // of the container end
    bool hairpin = false;
};

/// A macvlan or ipvlan child of `master`, created in the shim's netns for Docker to move.
struct ChildPlan {
    std::string kind;   // "macvlan" or "ipvlan"
    std::string name;
    std::string master;
    std::string mode;   // bridge/private/vepa/passthru, or l2/l3/l3s
    std::string flag;   // ipvlan: bridge/private/vepa
    std::optional<int> mtu;
    std::string mac;    // macvlan only
};

class Dataplane {
public:
    virtual ~Dataplane() = default;
    /// The bridge exists and is up; with `gateways`, those addresses are on it and forwarding is on.
    virtual Result<void> ensure_bridge(const drivers::BridgeKeys& keys, const std::vector<IpNet>& gateways) = 0;
    virtual Result<void> delete_bridge(const std::string& name) = 0;
    virtual Result<void> create_veth(const VethPlan& plan) = 0;
    virtual Result<void> create_child(const ChildPlan& plan) = 0;
    /// The parent exists afterwards: an absent "<if>.<vid>" is created as an 802.1Q sub-interface
    /// of <if> (returns true then); any other absent name is an error.
    virtual Result<bool> ensure_parent(const std::string& name) = 0;
    /// Creates and deletes a throwaway child of `kind` on `master`: "this kernel cannot" is then
    /// said at network create, not at the first container.
    virtual Result<void> probe_child(const std::string& kind, const std::string& master) = 0;
    /// Absent is fine.
    virtual Result<void> delete_link(const std::string& name) = 0;
    virtual Result<void> add_masquerade(const std::string& network, const IpNet& address) = 0;
    virtual Result<void> del_masquerade(const IpNet& address) = 0;
    virtual Result<void> add_ports(const std::vector<firewall::PortMap>& ports) = 0;
    virtual Result<void> del_ports(const std::vector<firewall::PortMap>& ports) = 0;
};

/// Netlink and nftables in the current network namespace.
Result<std::unique_ptr<Dataplane>> kernel_dataplane();

} // namespace cnm::shim
