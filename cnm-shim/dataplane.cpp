#include "dataplane.hpp"

#include "drivers/common.hpp"
#include "netlink/route.hpp"
#include "netlink/socket.hpp"

#include <algorithm>
#include <linux/if_link.h>
#include <map>

namespace cnm::shim {

namespace {

class KernelDataplane final : public Dataplane {
public:
    explicit KernelDataplane(std::unique_ptr<netlink::Socket> socket) : m_socket(std::move(socket)) { }

    Result<void> ensure_bridge(const drivers::BridgeKeys& keys, const std::vector<IpNet>& gateways) override
    {
        auto bridge = TRY(drivers::ensure_bridge(*m_socket, keys));
        std::vector<cni::IpConfig> ips;
        for (auto& gw : gateways)
            ips.push_back({ gw, gw.addr, std::nullopt });
        return drivers::ensure_gateway(*m_socket, bridge, ips, keys.force_address);
    }

    Result<void> delete_bridge(const std::string& name) override
    {
        auto link = TRY(netlink::get_link(*m_socket, name));
        if (link && link->kind == "bridge")
            TRY(netlink::delete_link(*m_socket, link->index));
        return {};
    }

    Result<void> create_veth(const VethPlan& plan) override
    {
        auto bridge = TRY(netlink::get_link(*m_socket, plan.bridge));
        if (!bridge)
            return make_error(Code::Kernel, "bridge " + plan.bridge + " is missing");
        std::optional<netlink::Mac> mac;
        if (!plan.mac.empty()) {
            mac = netlink::parse_mac(plan.mac);
            if (!mac)
                return make_error(Code::InvalidConfig, "invalid MAC address \"" + plan.mac + "\"");
        }
        TRY(netlink::create_veth(*m_socket, { plan.host, plan.container, -1, plan.mtu, mac }));
        auto host = TRY(netlink::get_link(*m_socket, plan.host));
        if (!host)
            return make_error(Code::Kernel, "host end of the veth (" + plan.host + ") is missing");
        netlink::LinkChange join;
        join.up = true;
        join.master = bridge->index;
        TRY(netlink::set_link(*m_socket, host->index, join));
        if (plan.hairpin)
            TRY(netlink::set_bridge_port(*m_socket, host->index, { true, std::nullopt }));
        return {};
    }

    Result<void> create_child(const ChildPlan& plan) override
    {
        static const std::map<std::string, uint32_t> modes = {
            { "bridge", MACVLAN_MODE_BRIDGE }, { "private", MACVLAN_MODE_PRIVATE }, { "vepa", MACVLAN_MODE_VEPA },
            { "passthru", MACVLAN_MODE_PASSTHRU }, { "l2", IPVLAN_MODE_L2 }, { "l3", IPVLAN_MODE_L3 }, { "l3s", IPVLAN_MODE_L3S },
        };
        auto master = TRY(netlink::get_link(*m_socket, plan.master));
        if (!master)
            return make_error(Code::InvalidConfig, "parent interface " + plan.master + " is missing");
        auto mode = modes.find(plan.mode);
        if (mode == modes.end())
            return make_error(Code::InvalidConfig, "unknown " + plan.kind + " mode \"" + plan.mode + "\"");
        netlink::MacvlanSpec spec { plan.name, master->index, -1, mode->second, plan.mtu, std::nullopt, 0 };
        if (plan.kind == "ipvlan") {
            spec.ipvlan_flags = plan.flag == "private" ? IPVLAN_F_PRIVATE : plan.flag == "vepa" ? IPVLAN_F_VEPA : 0;
            return netlink::create_ipvlan(*m_socket, spec);
        }
        if (!plan.mac.empty())
            spec.mac = netlink::parse_mac(plan.mac);
        return netlink::create_macvlan(*m_socket, spec);
    }

    Result<void> probe_child(const std::string& kind, const std::string& master) override
    {
        std::string name = "cnp" + drivers::random_hex(4);
        TRY(create_child({ kind, name, master, kind == "ipvlan" ? "l2" : "bridge", "bridge", std::nullopt, "" }));
        return delete_link(name);
    }

    Result<bool> ensure_parent(const std::string& name) override
    {
        if (TRY(netlink::get_link(*m_socket, name)))
            return false;
        auto dot = name.rfind('.');
        std::string base = dot == std::string::npos ? "" : name.substr(0, dot);
        std::string vid = dot == std::string::npos ? "" : name.substr(dot + 1);
        bool numeric = !vid.empty() && vid.size() <= 4 && std::all_of(vid.begin(), vid.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (base.empty() || !numeric)
            return make_error(Code::InvalidConfig, "parent interface " + name + " does not exist");
        int id = std::stoi(vid);
        if (id < 1 || id > 4094)
            return make_error(Code::InvalidConfig, "VLAN id " + vid + " of parent " + name + " is outside 1-4094");
        auto link = TRY(netlink::get_link(*m_socket, base));
        if (!link)
            return make_error(Code::InvalidConfig, "interface " + base + " (the parent of " + name + ") does not exist");
        TRY(netlink::create_vlan(*m_socket, name, link->index, static_cast<uint16_t>(id)));
        return true;
    }

    Result<void> delete_link(const std::string& name) override
    {
        auto link = TRY(netlink::get_link(*m_socket, name));
        if (link)
            TRY(netlink::delete_link(*m_socket, link->index));
        return {};
    }

    Result<void> add_masquerade(const std::string& network, const IpNet& address) override
    {
        return firewall::add_masquerade(network, address);
    }
    Result<void> del_masquerade(const IpNet& address) override { return firewall::del_masquerade(address); }
    Result<void> add_ports(const std::vector<firewall::PortMap>& ports) override { return firewall::add_port_maps(ports); }
    Result<void> del_ports(const std::vector<firewall::PortMap>& ports) override { return firewall::del_port_maps(ports); }

private:
    std::unique_ptr<netlink::Socket> m_socket;
};

} // namespace

Result<std::unique_ptr<Dataplane>> kernel_dataplane()
{
    auto socket = TRY(netlink::Socket::open());
    return std::unique_ptr<Dataplane>(new KernelDataplane(std::move(socket)));
}

} // namespace cnm::shim
