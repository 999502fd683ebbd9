#include "dataplane.hpp"

#include "netlink/route.hpp"
#include "netlink/socket.hpp"

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
