#pragma once
// FakeKernel: the Kernel seam (kernel/kernel.hpp) kept in memory, so a driver's attach, detach and
// check and the whole endpoint lifecycle run in-process, without root, and any call can fail.
//
// What it keeps, per namespace (host_ns, plus the netns paths a test registers with add_netns):
// links (index, name, kind, MAC, MTU, master, IFF_UP/IFF_PROMISC, a veth's peer, a child's
// parent, bridge-port VLANs and hairpin/isolated flags, a bridge's vlan_filtering, addresses),
// routes and sysctls; and, for the host, the firewall elements (masquerade by address, MAC guards
// by (ifname, MAC), published ports, the per-network masquerade chains).
//
// The semantics are kernel.hpp's, and as strict as the kernel where a driver could get it wrong:
//   - create_bridge of an existing name returns false; create_veth/create_child/create_vlan or a
//     rename onto an existing name is an error whose message says "exists"; names over 15 bytes
//     are refused;
//   - delete_link of an absent index is success; deleting a veth removes its peer (in whatever
//     namespace), deleting a bridge releases its ports, deleting a parent removes its children;
//   - add_address/add_route of something present is success; a route needs its device and, with
//     a gateway, an up device and an address (or on-link route) that reaches the gateway;
//   - joining a bridge gives the port VLAN 1 as PVID untagged, as the kernel's default_pvid does;
//     bridge-port calls on a link that is not a port are errors;
//   - remove_netns(path) drops the namespace with its links, and with them the host ends of their
//     veths; open_netns of an unregistered (or removed) path is nullopt, and a handle on a removed
//     namespace is an error.
//
// Failure injection: fail_at("create_veth", 2) makes the 2nd create_veth from now fail with
// code 105 "injected" (one-shot, before any effect); fail_mutation(k) does that for the k-th
// mutating call of any method, fail_call(k) for the k-th call of any kind (lookups too).
// mutations() and total_calls() count the calls so far, so a test can run a successful ADD once,
// read the count N, and then loop "fail at k" for k = 1..N; mutation_log() names each mutating
// call ("write_sysctl net/ipv4/ip_forward"), call_log() every call.

#include "kernel/kernel.hpp"

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cnm::test {

struct FakeLink {
    Link link;                          // index, name, kind, mac, mtu, master, flags, peer_index
    NsId peer_ns = -1;                  // a veth's peer: (peer_ns, link.peer_index)
    int parent = 0;                     // macvlan/ipvlan/vlan: the parent's index in host_ns
    uint32_t mode = 0;                  // macvlan/ipvlan mode
    uint16_t ipvlan_flags = 0;
    uint16_t vid = 0;                   // an 802.1Q link's VLAN id
    bool vlan_filtering = false;        // a bridge's
    bool hairpin = false;               // bridge-port flags
    bool isolated = false;
    std::map<uint16_t, bool> vlans;     // bridge-port VLANs: vid → pvid+untagged
    std::vector<IpNet> addresses;
    bool fixture = false;               // made by the test (add_link), not by a driver

    bool up() const { return link.up(); }
    bool promisc() const { return link.promisc(); }
    std::optional<uint16_t> pvid() const;
};

class FakeKernel final : public Kernel {
public:
    FakeKernel();

    // ---- test setup (not counted, never fails) --------------------------------------------------
    /// Registers a sandbox namespace at `path` (with a "lo"); returns its handle.
    NsId add_netns(const std::string& path);
    /// Drops it, with its links and the peers of its veths; the path no longer opens.
    void remove_netns(const std::string& path);
    /// A link of the test's own (a master "eth0", a dummy), up, in `ns`; returns its index.
    int add_link(NsId ns, const std::string& name, const std::string& kind = "dummy", int mtu = 1500);
    /// A default route through `index` in `ns` (what default_route_link finds).
    void add_default_route(NsId ns, int index, const std::optional<IpAddr>& gw = std::nullopt);
    /// Whether create_veth reports the end it made, as a kernel with NLM_F_ECHO does (6.3+; on).
    void set_echo(bool on) { m_echo = on; }

    // ---- failure injection ----------------------------------------------------------------------
    /// The nth call (1 = the next) of `method` from now fails with Code::Kernel "injected".
    void fail_at(std::string method, int nth);
    /// The k-th mutating call (1 = the next) from now fails, whichever method it is.
    void fail_mutation(int k);
    /// The k-th call of any method (1 = the next) from now fails.
    void fail_call(int k);
    /// Disarms all three.
    void clear_failures();
    /// Runs `hook` once, at the next call of `method`, before it takes effect (what another
    /// process does meanwhile).
    void on_call(std::string method, std::function<void()> hook) { m_hooks[std::move(method)] = std::move(hook); }
    /// Mutating calls so far (injected failures included), and what each was: "method" or
    /// "method detail" (a sysctl key, a link name).
    int mutations() const { return static_cast<int>(m_log.size()); }
    const std::vector<std::string>& mutation_log() const { return m_log; }
    int total_calls() const { return static_cast<int>(m_call_log.size()); }
    const std::vector<std::string>& call_log() const { return m_call_log; }
    /// Calls of one method so far (mutating or not).
    int calls(const std::string& method) const;

    // ---- observation ----------------------------------------------------------------------------
    std::optional<NsId> ns_of(const std::string& path) const;
    std::vector<FakeLink> links(NsId ns) const;
    const FakeLink* find(NsId ns, const std::string& name) const;
    const FakeLink* find(NsId ns, int index) const;
    std::vector<netlink::RouteSpec> route_table(NsId ns) const;
    std::optional<std::string> sysctl(NsId ns, const std::string& key) const;
    /// No link a driver made anywhere, other than bridges (a network's, which may outlive its
    /// endpoints); when not, `why` (if given) says what is left.
    bool empty_except_bridges(std::string* why = nullptr) const;
    /// No per-endpoint firewall element (the networks' chains are not counted: see network_chains).
    bool firewall_empty(std::string* why = nullptr) const;
    const std::map<IpAddr, std::string>& masquerades() const { return m_masq; }
    /// Networks whose own masquerade chain exists (made by their first add_masquerade).
    const std::set<std::string>& network_chains() const { return m_chains; }
    const std::set<std::pair<std::string, std::string>>& mac_guards() const { return m_guards; }
    const std::vector<firewall::PortMap>& ports() const { return m_ports; }
    /// Everything, for a failure message.
    std::string dump() const;

    // ---- Kernel ---------------------------------------------------------------------------------
    Result<std::optional<NsId>> open_netns(const std::string& path) override;
    Result<std::optional<Link>> get_link(NsId ns, const std::string& name) override;
    Result<std::optional<Link>> get_link(NsId ns, int index) override;
    Result<std::optional<Link>> default_route_link(NsId ns) override;
    Result<bool> create_bridge(NsId ns, const std::string& name, std::optional<int> mtu, bool vlan_filtering) override;
    Result<void> set_vlan_filtering(NsId ns, int index, bool on) override;
    Result<std::optional<Link>> create_veth(const VethSpec& spec) override;
    Result<void> create_child(const ChildSpec& spec) override;
    Result<void> create_vlan(NsId ns, const std::string& name, int parent, uint16_t vid) override;
    Result<void> delete_link(NsId ns, int index) override;
    Result<void> set_link(NsId ns, int index, const netlink::LinkChange& change) override;
    Result<void> set_bridge_port(NsId ns, int index, const netlink::PortChange& change) override;
    Result<void> add_bridge_vlan(NsId ns, int index, uint16_t vid, bool pvid_untagged) override;
    Result<void> del_bridge_vlan(NsId ns, int index, uint16_t vid) override;
    Result<void> add_address(NsId ns, int index, const IpNet& address, bool dad) override;
    Result<void> del_address(NsId ns, int index, const IpNet& address) override;
    Result<std::vector<IpNet>> addresses(NsId ns, int index) override;
    Result<void> add_route(NsId ns, const netlink::RouteSpec& route) override;
    Result<std::vector<netlink::RouteSpec>> routes(NsId ns, int family) override;
    Result<void> create_vxlan(NsId ns, const netlink::VxlanSpec& spec) override;
    Result<void> replace_neighbour(NsId ns, int index, const IpAddr& dst, const Mac& lladdr) override;
    Result<void> delete_neighbour(NsId ns, int index, const IpAddr& dst) override;
    Result<std::vector<netlink::Neighbour>> neighbours(NsId ns, int index) override;
    Result<void> replace_fdb(NsId ns, int index, const Mac& mac, const IpAddr& dst) override;
    Result<void> delete_fdb(NsId ns, int index, const Mac& mac, const std::optional<IpAddr>& dst) override;
    Result<std::vector<netlink::FdbEntry>> fdb(NsId ns, int index) override;
    Result<void> replace_route(NsId ns, const netlink::RouteSpec& route) override;
    Result<void> delete_route(NsId ns, const netlink::RouteSpec& route) override;
    Result<std::string> read_sysctl(NsId ns, const std::string& key) override;
    Result<void> write_sysctl(NsId ns, const std::string& key, const std::string& value) override;
    Result<void> add_masquerade(const std::string& network, const IpNet& address) override;
    Result<void> del_masquerade(const IpNet& address) override;
    Result<bool> has_masquerade(const IpNet& address) override;
    Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac) override;
    Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac) override;
    Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac) override;
    Result<void> remove_network_firewall(const std::string& network) override;
    Result<void> add_ports(const std::vector<firewall::PortMap>& ports) override;
    Result<void> del_ports(const std::vector<firewall::PortMap>& ports) override;

private:
    struct Namespace {
        std::string path; // empty for host_ns
        int next_index = 1;
        std::map<int, FakeLink> links;
        std::vector<netlink::RouteSpec> routes;
        std::map<std::string, std::string> sysctls;
        std::map<std::pair<int, IpAddr>, Mac> neighbours; // (device, dst) → lladdr
        std::map<std::pair<int, Mac>, IpAddr> fdb;         // (device, MAC) → remote VTEP
    };

    /// Counts the call; the injected failure when one is due.
    Result<void> enter(const char* method, bool mutating, const std::string& detail = "");
    Result<Namespace*> space(NsId ns);
    FakeLink* link_in(Namespace& n, const std::string& name);
    FakeLink* link_in(Namespace& n, int index);
    FakeLink& make_link(Namespace& n, const std::string& name, const std::string& kind, int mtu);
    void erase_link(NsId ns, int index);

    std::map<NsId, Namespace> m_ns;
    NsId m_next_ns = 1;
    uint32_t m_mac_seq = 1;

    std::map<std::string, int> m_calls;
    std::vector<std::string> m_log;
    std::vector<std::string> m_call_log;
    std::map<std::string, int> m_fail_method; // method → calls still to go (1 = the next fails)
    std::map<std::string, std::function<void()>> m_hooks; // method → run once at its next call
    int m_fail_mutation = 0;                  // 0: disarmed
    int m_fail_call = 0;
    bool m_echo = true;

    std::map<IpAddr, std::string> m_masq; // address → network
    std::set<std::string> m_chains;       // networks with their chain
    std::set<std::pair<std::string, std::string>> m_guards;
    std::vector<firewall::PortMap> m_ports;
};

} // namespace cnm::test
