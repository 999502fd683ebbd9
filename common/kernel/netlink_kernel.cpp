// The Kernel seam over libmnl, /proc/sys and libnftables: one netlink socket per namespace,
// opened when first used and kept for the process.
#include "kernel/kernel.hpp"

#include "firewall/nft.hpp"
#include "netns/netns.hpp"

#include <cerrno>
#include <map>

namespace cnm {

namespace {

using netlink::Socket;

class NetlinkKernel final : public Kernel {
public:
    explicit NetlinkKernel(std::unique_ptr<Socket> host) { m_sockets[host_ns] = std::move(host); }

    Result<std::optional<NsId>> open_netns(const std::string& path) override
    {
        auto ns = Netns::open(path);
        if (!ns) {
            if (ns.error().code == Code::UnknownContainer)
                return std::optional<NsId> {};
            return ns.release_error();
        }
        NsId id = static_cast<NsId>(m_netns.size()) + 1;
        m_netns.emplace(id, ns.release_value());
        return std::optional<NsId>(id);
    }

    Result<std::optional<Link>> get_link(NsId ns, const std::string& name) override { return netlink::get_link(*TRY(socket(ns)), name); }
    Result<std::optional<Link>> get_link(NsId ns, int index) override { return netlink::get_link(*TRY(socket(ns)), index); }

    Result<std::optional<Link>> default_route_link(NsId ns) override
    {
        auto& s = *TRY(socket(ns));
        for (int family : { 4, 6 })
            for (auto& r : TRY(netlink::list_routes(s, family)))
                if (r.dst.prefix == 0 && r.oif > 0)
                    if (auto link = TRY(netlink::get_link(s, r.oif)))
                        return link;
        return std::optional<Link> {};
    }

    Result<bool> create_bridge(NsId ns, const std::string& name, std::optional<int> mtu, bool vlan_filtering) override
    {
        return netlink::create_bridge(*TRY(socket(ns)), { name, mtu, vlan_filtering });
    }
    Result<void> set_vlan_filtering(NsId ns, int index, bool on) override
    {
        return netlink::set_bridge_vlan_filtering(*TRY(socket(ns)), index, on);
    }

    Result<std::optional<Link>> create_veth(const VethSpec& spec) override
    {
        auto& s = *TRY(socket(spec.ns));
        int peer_fd = spec.peer_ns == spec.ns ? -1 : TRY(netns_fd(spec.peer_ns));
        return netlink::create_veth(s, { spec.name, spec.peer_name, peer_fd, spec.mtu, spec.peer_mac });
    }

    Result<void> create_child(const ChildSpec& spec) override
    {
        auto& s = *TRY(socket(host_ns));
        int fd = spec.ns == host_ns ? -1 : TRY(netns_fd(spec.ns));
        netlink::MacvlanSpec m { spec.name, spec.master, fd, spec.mode, spec.mtu, spec.mac, spec.ipvlan_flags };
        if (spec.kind == "ipvlan") {
            m.mac.reset();
            return netlink::create_ipvlan(s, m);
        }
        return netlink::create_macvlan(s, m);
    }

    Result<void> create_vlan(NsId ns, const std::string& name, int parent, uint16_t vid) override
    {
        return netlink::create_vlan(*TRY(socket(ns)), name, parent, vid);
    }
    Result<void> delete_link(NsId ns, int index) override { return netlink::delete_link(*TRY(socket(ns)), index); }
    Result<void> set_link(NsId ns, int index, const netlink::LinkChange& change) override
    {
        return netlink::set_link(*TRY(socket(ns)), index, change);
    }
    Result<void> set_bridge_port(NsId ns, int index, const netlink::PortChange& change) override
    {
        return netlink::set_bridge_port(*TRY(socket(ns)), index, change);
    }
    Result<void> add_bridge_vlan(NsId ns, int index, uint16_t vid, bool pvid_untagged) override
    {
        return netlink::add_bridge_vlan(*TRY(socket(ns)), index, vid, pvid_untagged, false);
    }
    Result<void> del_bridge_vlan(NsId ns, int index, uint16_t vid) override
    {
        return netlink::del_bridge_vlan(*TRY(socket(ns)), index, vid, false);
    }

    Result<void> add_address(NsId ns, int index, const IpNet& address, bool dad) override
    {
        auto& s = *TRY(socket(ns));
        auto added = netlink::add_address(s, index, address, dad);
        if (!added && added.error().sys_errno == EEXIST)
            return {};
        return added;
    }
    Result<void> del_address(NsId ns, int index, const IpNet& address) override
    {
        auto& s = *TRY(socket(ns));
        auto done = netlink::del_address(s, index, address);
        if (!done && (done.error().sys_errno == EADDRNOTAVAIL || done.error().sys_errno == ENODEV))
            return {};
        return done;
    }
    Result<std::vector<IpNet>> addresses(NsId ns, int index) override
    {
        std::vector<IpNet> out;
        for (auto& a : TRY(netlink::list_addresses(*TRY(socket(ns)), index)))
            out.push_back(a.address);
        return out;
    }
    Result<void> add_route(NsId ns, const netlink::RouteSpec& route) override
    {
        auto& s = *TRY(socket(ns));
        auto added = netlink::add_route(s, route);
        if (!added && added.error().sys_errno == EEXIST)
            return {};
        return added;
    }
    Result<std::vector<netlink::RouteSpec>> routes(NsId ns, int family) override { return netlink::list_routes(*TRY(socket(ns)), family); }

    Result<void> create_vxlan(NsId ns, const netlink::VxlanSpec& spec) override { return netlink::create_vxlan(*TRY(socket(ns)), spec); }
    Result<void> replace_neighbour(NsId ns, int index, const IpAddr& dst, const Mac& lladdr) override
    {
        return netlink::replace_neighbour(*TRY(socket(ns)), index, dst, lladdr);
    }
    Result<void> delete_neighbour(NsId ns, int index, const IpAddr& dst) override { return netlink::delete_neighbour(*TRY(socket(ns)), index, dst); }
    Result<std::vector<netlink::Neighbour>> neighbours(NsId ns, int index) override { return netlink::list_neighbours(*TRY(socket(ns)), index); }
    Result<void> replace_fdb(NsId ns, int index, const Mac& mac, const IpAddr& dst) override
    {
        return netlink::replace_fdb(*TRY(socket(ns)), index, mac, dst);
    }
    Result<void> delete_fdb(NsId ns, int index, const Mac& mac, const std::optional<IpAddr>& dst) override
    {
        return netlink::delete_fdb(*TRY(socket(ns)), index, mac, dst);
    }
    Result<std::vector<netlink::FdbEntry>> fdb(NsId ns, int index) override
    {
        std::vector<netlink::FdbEntry> out;
        for (auto& e : TRY(netlink::list_fdb(*TRY(socket(ns)), index)))
            if (e.dst)
                out.push_back(e);
        return out;
    }
    Result<void> replace_route(NsId ns, const netlink::RouteSpec& route) override { return netlink::replace_route(*TRY(socket(ns)), route); }
    Result<void> delete_route(NsId ns, const netlink::RouteSpec& route) override { return netlink::delete_route(*TRY(socket(ns)), route); }

    Result<std::string> read_sysctl(NsId ns, const std::string& key) override
    {
        if (ns == host_ns)
            return cnm::read_sysctl(key);
        auto guard = TRY(enter(m_netns.at(ns)));
        return cnm::read_sysctl(key);
    }
    Result<void> write_sysctl(NsId ns, const std::string& key, const std::string& value) override
    {
        return write_sysctls(ns, { { key, value } });
    }
    Result<void> write_sysctls(NsId ns, const std::vector<SysctlWrite>& writes) override
    {
        std::optional<NetnsGuard> guard;
        if (ns != host_ns) {
            auto entered = TRY(enter(m_netns.at(ns)));
            guard.emplace(std::move(entered));
        }
        for (auto& w : writes)
            if (auto done = cnm::write_sysctl(w.key, w.value); !done && !w.optional)
                return done;
        return {};
    }

    Result<void> add_masquerade(const std::string& network, const IpNet& address) override { return firewall::add_masquerade(network, address); }
    Result<void> del_masquerade(const IpNet& address) override { return firewall::del_masquerade(address); }
    Result<bool> has_masquerade(const IpNet& address) override { return firewall::has_masquerade(address); }
    Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac) override { return firewall::add_mac_guard(host_ifname, mac); }
    Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac) override { return firewall::del_mac_guard(host_ifname, mac); }
    Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac) override { return firewall::has_mac_guard(host_ifname, mac); }
    Result<void> remove_network_firewall(const std::string& network) override { return firewall::remove_network(network); }
    Result<void> add_ports(const std::vector<firewall::PortMap>& ports) override { return firewall::add_port_maps(ports); }
    Result<void> del_ports(const std::vector<firewall::PortMap>& ports) override { return firewall::del_port_maps(ports); }

private:
    // Enters `target`, returning to the host's namespace: the host socket's, asked once
    // (SIOCGSKNS) instead of opening /proc/thread-self/ns/net at each entry (~25 µs in a fresh
    // process). Every entry starts in the host's namespace: no method returns inside another.
    Result<NetnsGuard> enter(const Netns& target)
    {
        if (!m_host_asked) {
            m_host_asked = true;
            if (auto own = Netns::of_socket(m_sockets.at(host_ns)->fd()))
                m_host.emplace(own.release_value());
        }
        return m_host ? NetnsGuard::enter(target, *m_host) : NetnsGuard::enter(target);
    }

    Result<Socket*> socket(NsId ns)
    {
        if (auto it = m_sockets.find(ns); it != m_sockets.end())
            return it->second.get();
        auto netns = m_netns.find(ns);
        if (netns == m_netns.end())
            return make_error(Code::Internal, "no such namespace handle " + std::to_string(ns));
        std::unique_ptr<Socket> s;
        {
            auto guard = TRY(enter(netns->second));
            s = TRY(Socket::open());
        }
        auto* raw = s.get();
        m_sockets.emplace(ns, std::move(s));
        return raw;
    }
    Result<int> netns_fd(NsId ns)
    {
        auto it = m_netns.find(ns);
        if (it == m_netns.end())
            return make_error(Code::Internal, "no such namespace handle " + std::to_string(ns));
        return it->second.fd();
    }

    std::map<NsId, std::unique_ptr<Socket>> m_sockets;
    std::map<NsId, Netns> m_netns;
    std::optional<Netns> m_host; // the host's namespace, from its socket (none: the kernel refused)
    bool m_host_asked = false;
};

} // namespace

Result<std::unique_ptr<Kernel>> netlink_kernel()
{
    auto host = TRY(Socket::open());
    return std::unique_ptr<Kernel>(new NetlinkKernel(std::move(host)));
}

} // namespace cnm
