// The bridge driver: a Linux bridge per network, a veth pair per endpoint.
//
// Keys mean what they mean to the reference bridge plugin (reference/cni.md §2.1). For a sandbox
// target the container end of the veth is created directly in the sandbox's netns under a
// temporary name and renamed there, so a name taken on the host never collides; the host end gets
// a random "veth" name that the endpoint record keeps, which is what lets DEL and GC remove it when
// the netns is gone. For a host target (Docker's Join) both ends stay in the host netns and the
// container end keeps the name Docker is told.
//
// Differences from the reference, on purpose: nothing polls or sleeps (no port-state wait, no
// IPv6 DAD wait unless "enabledad"); a failed ADD removes the veth too (the reference leaks it on
// IPAM exhaustion); CHECK ignores the bridge's MAC, which changes whenever a port joins.
#include "drivers/common.hpp"

#include "cnm/driver.hpp"
#include "util/fault.hpp"

namespace cnm::drivers {

namespace {

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
    std::optional<Mac> mac;
    bool has_ipam = false;
};

Result<BridgeKeys> parse_keys(const Json& raw)
{
    BridgeKeys c;
    if (auto name = TRY(json_string(raw, "bridge", "")); name && !name->empty())
        c.bridge = *name;
    if (!valid_ifname(c.bridge))
        return invalid("\"bridge\" = \"" + c.bridge + "\" is not a usable interface name");
    auto flag = [&](const char* key, bool& out) -> Result<void> {
        out = TRY(json_bool(raw, key, "")).value_or(false);
        return {};
    };
    TRY(flag("isGateway", c.is_gateway));
    TRY(flag("isDefaultGateway", c.is_default_gateway));
    TRY(flag("forceAddress", c.force_address));
    TRY(flag("hairpinMode", c.hairpin));
    TRY(flag("promiscMode", c.promisc));
    TRY(flag("enabledad", c.enabledad));
    TRY(flag("portIsolation", c.port_isolation));
    TRY(flag("disableContainerInterface", c.disable_container_interface));
    if (c.is_default_gateway)
        c.is_gateway = true;
    TRY(flag("ipMasq", c.ip_masq));
    TRY(flag("macspoofchk", c.macspoofchk));
    c.mtu = TRY(positive_int(raw, "mtu", 65535));
    if (c.mtu && *c.mtu < 68)
        return invalid("\"mtu\" " + std::to_string(*c.mtu) + " is below the smallest the kernel takes (68)");
    c.vlan = TRY(positive_int(raw, "vlan", 4094));
    if (c.hairpin && c.promisc)
        return invalid("\"hairpinMode\" and \"promiscMode\" cannot both be true");
    c.has_ipam = raw.contains("ipam") && raw["ipam"].is_object() && raw["ipam"].contains("type");
    if (c.disable_container_interface && c.has_ipam)
        return invalid("\"disableContainerInterface\" cannot be used with IPAM");
    return c;
}

class BridgeDriver final : public Driver {
public:
    std::string_view kind() const override { return "bridge"; }

    const Json& network_defaults() const override
    {
        // The bridge, its VLAN and isolation of its ports, what it routes and masquerades: one
        // value per network, which all its users must agree on.
        static const Json defaults = {
            { "bridge", "cni0" }, { "ipMasq", false }, { "isGateway", false }, { "isDefaultGateway", false },
            { "promiscMode", false }, { "vlan", 0 }, { "portIsolation", false },
        };
        return defaults;
    }
    const Json& attachment_defaults() const override
    {
        static const Json defaults = { { "mtu", 0 }, { "hairpinMode", false }, { "macspoofchk", false } };
        return defaults;
    }
    Json identity(const Json& options) const override
    {
        auto keys = parse_keys(options);
        return Json { { "bridge", keys ? keys->bridge : "cni0" } };
    }
    bool own_mac() const override { return true; }

    Result<void> validate(const Json& options) const override
    {
        TRY(parse_keys(options));
        return {};
    }

    Result<void> ensure_network(Kernel& kernel, const Json& options, const std::vector<IpNet>& gateways) override
    {
        auto c = TRY(parse_keys(options));
        auto bridge = TRY(ensure_bridge(kernel, c));
        fault_point("bridge-after-bridge");
        if (c.is_gateway)
            TRY(ensure_gateway(kernel, bridge, gateways, c.force_address));
        m_ensured = bridge; // attach, which comes next, need not look it up again
        return {};
    }

    Result<void> remove_network(Kernel& kernel, const Json& options) override
    {
        auto c = TRY(parse_keys(options));
        return delete_host_link(kernel, c.bridge, "bridge");
    }

    Json plan(const Json& options, const EndpointRecord&, const Target& target) override
    {
        auto c = parse_keys(options);
        Json state = { { "bridge", c ? c->bridge : "cni0" }, { "hostVeth", "veth" + random_hex(4) } };
        if (target.host())
            state["containerVeth"] = target.ifname;
        return state;
    }

    Result<Attached> attach(Kernel& kernel, const Json& options, EndpointRecord& endpoint, const Target& target, const NetSetup& ipam) override
    {
        auto c = TRY(parse_keys(options));
        std::optional<Link> bridge;
        if (m_ensured && m_ensured->name == c.bridge)
            bridge = m_ensured;
        else
            bridge = TRY(kernel.get_link(host_ns, c.bridge));
        m_ensured.reset();
        if (!bridge)
            return make_error(Code::Kernel, "bridge " + c.bridge + " is missing");
        auto veth = TRY(add_bridge_veth(kernel, *bridge, endpoint, target, c.mtu));
        const Link& hv = veth.host;
        fault_point("bridge-after-veth");
        if (c.hairpin || c.port_isolation)
            TRY(kernel.set_bridge_port(host_ns, hv.index, { c.hairpin ? std::optional(true) : std::nullopt,
                                                                c.port_isolation ? std::optional(true) : std::nullopt }));
        if (c.vlan) {
            TRY(kernel.del_bridge_vlan(host_ns, hv.index, 1));
            TRY(kernel.add_bridge_vlan(host_ns, hv.index, static_cast<uint16_t>(*c.vlan), true));
        }

        Attached out;
        out.setup = ipam;
        out.announce_gateway = c.is_gateway;
        out.disable_gateway_service = !c.is_gateway;
        Mac container_mac = TRY(finish_container_end(kernel, veth, target,
            { !c.disable_container_interface, c.enabledad, c.is_default_gateway }, out.setup));
        fault_point("bridge-after-configure");
        endpoint.mac = netlink::mac_str(container_mac);

        auto bridge_now = TRY(kernel.get_link(host_ns, bridge->index));
        out.setup.interfaces.clear();
        out.setup.interfaces.push_back({ c.bridge, netlink::mac_str(bridge_now ? bridge_now->mac : bridge->mac), {}, "", "", "" });
        out.setup.interfaces.push_back({ hv.name, netlink::mac_str(hv.mac), {}, "", "", "" });
        if (!target.host())
            out.setup.interfaces.push_back({ target.ifname, endpoint.mac, {}, target.netns, "", "" });
        for (auto& ip : out.setup.ips)
            ip.interface = target.host() ? std::nullopt : std::optional(2);
        return out;
    }

    FirewallState firewall(const Json& options, const EndpointRecord& endpoint) const override
    {
        FirewallState fw;
        auto c = parse_keys(options);
        if (!c)
            return fw;
        fw.masquerade = c->ip_masq;
        if (c->macspoofchk && !endpoint.mac.empty()) {
            fw.guard_ifname = state_string(endpoint.driver_state, "hostVeth");
            fw.guard_mac = endpoint.mac;
        }
        return fw;
    }

    Result<void> detach(Kernel& kernel, const EndpointRecord& endpoint) override { return delete_veth_endpoint(kernel, endpoint); }

    Result<void> check(Kernel& kernel, const Json& options, const EndpointRecord& endpoint, const NetSetup& prev) override
    {
        auto c = TRY(parse_keys(options));
        TRY(check_veth_endpoint(kernel, endpoint, c.bridge, prev));
        return {};
    }

private:
    std::optional<Link> m_ensured; // the bridge ensure_network just made sure of, for attach

    static Result<Link> ensure_bridge(Kernel& kernel, const BridgeKeys& c)
    {
        // Look first: after the first ADD the bridge exists, and a create would only come back
        // EEXIST (after taking the kernel's rtnl lock). Parallel first ADDs race; that is fine.
        auto link = TRY(kernel.get_link(host_ns, c.bridge));
        if (!link) {
            TRY(kernel.create_bridge(host_ns, c.bridge, c.mtu, c.vlan.has_value()));
            link = TRY(kernel.get_link(host_ns, c.bridge));
        }
        if (!link)
            return make_error(Code::Kernel, "bridge " + c.bridge + " vanished right after it was created");
        if (link->kind != "bridge")
            return invalid("\"" + c.bridge + "\" exists and is not a bridge (it is a " + (link->kind.empty() ? "device" : link->kind) + ")");
        if (c.vlan)
            TRY(kernel.set_vlan_filtering(host_ns, link->index, true));
        netlink::LinkChange change;
        if (!link->up())
            change.up = true;
        if (c.promisc && !link->promisc())
            change.promisc = true;
        if (change.up || change.promisc)
            TRY(kernel.set_link(host_ns, link->index, change));
        return *link;
    }

    /// Gateway addresses on the bridge. A different address in the same subnet is an error
    /// unless forceAddress, which replaces it.
    static Result<void> ensure_gateway(Kernel& kernel, const Link& bridge, const std::vector<IpNet>& gateways, bool force)
    {
        if (gateways.empty())
            return {};
        auto present = TRY(kernel.addresses(host_ns, bridge.index));
        for (auto& gw : gateways) {
            bool have = false;
            for (auto& a : present) {
                if (a.addr == gw.addr) {
                    have = true;
                    continue;
                }
                if (a.addr.family == gw.addr.family && a.contains(gw.addr)) {
                    if (!force)
                        return make_error(Code::InvalidConfig, "\"" + bridge.name + "\" already has an IP address different from " + gw.str(),
                            "it has " + a.str() + "; set \"forceAddress\": true to replace it");
                    TRY(kernel.del_address(host_ns, bridge.index, a));
                }
            }
            if (!have)
                TRY(kernel.add_address(host_ns, bridge.index, gw, false));
            // Read before writing: writing ip_forward resets every interface's forwarding setting.
            const char* key = gw.addr.family == 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding";
            if (auto now = kernel.read_sysctl(host_ns, key); !now || now.value() != "1")
                TRY(kernel.write_sysctl(host_ns, key, "1"));
        }
        return {};
    }
};

} // namespace

Driver& bridge_driver()
{
    static BridgeDriver driver;
    return driver;
}

} // namespace cnm::drivers
