#include "drivers/common.hpp"

#include "util/log.hpp"
#include "util/text.hpp"

#include <cerrno>

#include <algorithm>
#include <cstdlib>
#include <sys/random.h>

namespace cnm::drivers {

Error invalid(const std::string& msg)
{
    return make_error(Code::InvalidConfig, "invalid config: " + msg);
}

std::string random_hex(size_t bytes)
{
    unsigned char raw[16] {};
    if (::getrandom(raw, bytes, 0) != static_cast<ssize_t>(bytes))
        for (size_t i = 0; i < bytes; ++i)
            raw[i] = static_cast<unsigned char>(std::rand());
    std::string out;
    for (size_t i = 0; i < bytes; ++i)
        append_hex(out, raw[i], 2);
    return out;
}

std::string state_string(const Json& state, const char* key)
{
    return state.is_object() && state.contains(key) && state[key].is_string() ? state[key].get<std::string>() : "";
}

Result<NsId> open_sandbox(Kernel& kernel, const Target& target)
{
    auto ns = TRY(kernel.open_netns(target.netns));
    if (!ns)
        return make_error(Code::InvalidEnv, "failed to open netns \"" + target.netns + "\"", "it does not exist");
    return *ns;
}

Result<bool> name_taken(Kernel& kernel, NsId ns, const std::string& ifname, const Error& failure)
{
    return failure.sys_errno == EEXIST && TRY(kernel.get_link(ns, ifname)).has_value();
}

Error name_taken_error(const std::string& ifname)
{
    return make_error(Code::InvalidConfig, "container already has an interface named " + ifname);
}

Result<Link> configure_container(Kernel& kernel, NsId ns, const ContainerSetup& how, const std::string& ifname, NetSetup& setup)
{
    auto link = TRY(kernel.get_link(ns, ifname));
    if (!link)
        return make_error(Code::Kernel, "the container end of the link (" + ifname + ") is missing");
    if (!how.up)
        return *link;
    netlink::LinkChange up;
    up.up = true;
    TRY(kernel.set_link(ns, link->index, up));
    for (auto& ip : setup.ips)
        TRY(kernel.add_address(ns, link->index, ip.address, how.dad));
    std::vector<netlink::RouteSpec> routes;
    bool v4_default = false, v6_default = false;
    for (auto& r : setup.routes) {
        netlink::RouteSpec spec { r.dst, r.gw, link->index, r.mtu, r.priority, r.table, std::nullopt };
        if (!spec.gw) {
            // A route without "gw" goes through the gateway of that family's address, as the
            // reference's ipam.ConfigureIface does (on-link only when there is no gateway).
            for (auto& ip : setup.ips)
                if (ip.gateway && ip.gateway->family == r.dst.addr.family)
                    spec.gw = ip.gateway;
        }
        (r.dst.addr.family == 4 ? v4_default : v6_default) |= r.dst.prefix == 0;
        routes.push_back(spec);
    }
    if (how.default_gateway) {
        for (auto& ip : setup.ips) {
            bool& have = ip.address.addr.family == 4 ? v4_default : v6_default;
            if (have || !ip.gateway)
                continue;
            IpNet any { IpAddr { ip.address.addr.family, 0 }, 0 };
            routes.push_back({ any, ip.gateway, link->index, {}, {}, {}, {} });
            Route added;
            added.dst = any;
            added.gw = ip.gateway;
            setup.routes.push_back(added);
            have = true;
        }
    }
    for (auto& r : routes)
        TRY(kernel.add_route(ns, r));
    return *link;
}

Result<BridgeVeth> add_bridge_veth(Kernel& kernel, const Link& bridge, const EndpointRecord& endpoint, const Target& target,
    std::optional<int> mtu)
{
    std::string host_veth = state_string(endpoint.driver_state, "hostVeth");
    std::optional<Mac> mac;
    if (!endpoint.mac.empty())
        mac = netlink::parse_mac(endpoint.mac);
    BridgeVeth veth;
    veth.ns = host_ns;
    // The container end gets the runtime's name at creation, not a temporary one renamed later: a
    // rename waits for an RCU grace period under the rtnl lock (~150 µs here). The host end's name
    // is in the intent, and the container end goes with it, so no other name is needed to clean up.
    veth.peer = target.ifname;
    if (!target.host())
        veth.ns = TRY(open_sandbox(kernel, target));
    auto made = kernel.create_veth({ host_veth, veth.peer, host_ns, veth.ns, mtu, mac });
    if (!made && !target.host() && TRY(name_taken(kernel, veth.ns, veth.peer, made.error())))
        return name_taken_error(veth.peer);
    auto hv = TRY(std::move(made));
    if (!hv)
        hv = TRY(kernel.get_link(host_ns, host_veth));
    if (!hv)
        return make_error(Code::Kernel, "host end of the veth (" + host_veth + ") is missing");
    // A bridge port has no use for IPv6 of its own: the bridge takes every frame it receives, so
    // its link-local address serves nothing, yet going up would give it one, with its DAD, MLD
    // reports into the container and a route in the host's fe80::/64, which the kernel's workers
    // then walk for every new port (~0.7 ms of each ADD on a host with 500 networks). Set before
    // the port goes up. A failure (no IPv6 in this kernel: no key) leaves the port as the reference
    // leaves it, which works, so the ADD goes on; the plugin log says why.
    if (auto off = kernel.write_sysctl(host_ns, "net/ipv6/conf/" + host_veth + "/disable_ipv6", "1"); !off)
        log::detail("IPv6 left on the port " + host_veth + ": " + off.error().text());
    netlink::LinkChange join;
    join.up = true;
    join.master = bridge.index;
    TRY(kernel.set_link(host_ns, hv->index, join));
    veth.host = *hv;
    return veth;
}

Result<Mac> finish_container_end(Kernel& kernel, const BridgeVeth& veth, const Target& target, const ContainerSetup& how,
    NetSetup& setup)
{
    if (target.host()) {
        auto link = TRY(kernel.get_link(host_ns, veth.peer));
        if (!link)
            return make_error(Code::Kernel, "container end of the veth (" + veth.peer + ") is missing");
        return link->mac;
    }
    auto link = TRY(configure_container(kernel, veth.ns, how, target.ifname, setup));
    return link.mac;
}

Result<void> delete_veth_endpoint(Kernel& kernel, const EndpointRecord& endpoint)
{
    const Json& d = endpoint.driver_state;
    std::string host_end = state_string(d, "hostVeth");
    TRY(delete_host_link(kernel, host_end, "veth"));
    TRY(delete_host_link(kernel, state_string(d, "containerVeth"), "veth"));
    // The container end goes with the host end, so the sandbox is searched only for a record that
    // names no host end: else a rollback would find the interface whose name made the ADD fail
    // (a veth of another plugin's at the runtime's name) and remove it.
    if (endpoint.frontend == Frontend::Docker || !host_end.empty())
        return {};
    return delete_in_sandbox(kernel, endpoint.netns, { endpoint.ifname, state_string(d, "tempName") }, "veth");
}

Result<Link> check_veth_endpoint(Kernel& kernel, const EndpointRecord& endpoint, const std::string& bridge_name, const NetSetup& prev)
{
    auto link = TRY(check_container(kernel, endpoint, "veth", prev));
    auto bridge = TRY(kernel.get_link(host_ns, bridge_name));
    if (!bridge || bridge->kind != "bridge")
        return make_error(Code::CheckFailed, "bridge " + bridge_name + " is missing");
    std::string veth = state_string(endpoint.driver_state, "hostVeth");
    auto hv = TRY(kernel.get_link(host_ns, veth));
    if (!hv || hv->master != bridge->index)
        return make_error(Code::CheckFailed, "host veth " + veth + " is missing or not a port of " + bridge_name);
    return link;
}

Result<Link> check_container(Kernel& kernel, const EndpointRecord& endpoint, const std::string& kind, const NetSetup& prev)
{
    const std::string& ifname = endpoint.ifname;
    auto ns = TRY(kernel.open_netns(endpoint.netns));
    if (!ns)
        return make_error(Code::CheckFailed, "failed to open netns \"" + endpoint.netns + "\"");
    auto link = TRY(kernel.get_link(*ns, ifname));
    if (!link || link->kind != kind)
        return make_error(Code::CheckFailed, "container interface " + ifname + " is missing or not a " + kind);
    // Only the sandbox's interface is compared (a bridge's MAC changes whenever a port joins).
    for (auto& i : prev.interfaces)
        if (i.name == ifname && !i.sandbox.empty() && !i.mac.empty() && i.mac != netlink::mac_str(link->mac))
            return make_error(Code::CheckFailed, ifname + " has MAC " + netlink::mac_str(link->mac) + ", prevResult says " + i.mac);
    auto addrs = TRY(kernel.addresses(*ns, link->index));
    for (auto& ip : prev.ips)
        if (std::find(addrs.begin(), addrs.end(), ip.address) == addrs.end())
            return make_error(Code::CheckFailed, ifname + " lacks the address " + ip.address.str());
    for (int family : { 4, 6 }) {
        bool wanted = std::any_of(prev.routes.begin(), prev.routes.end(), [&](const Route& r) { return r.dst.addr.family == family; });
        if (!wanted)
            continue;
        auto routes = TRY(kernel.routes(*ns, family));
        for (auto& r : prev.routes) {
            if (r.dst.addr.family != family)
                continue;
            bool found = std::any_of(routes.begin(), routes.end(), [&](const netlink::RouteSpec& k) {
                return k.dst.network() == r.dst.network() && k.dst.prefix == r.dst.prefix && (!r.gw || k.gw == r.gw);
            });
            if (!found)
                return make_error(Code::CheckFailed, ifname + " lacks the route to " + r.dst.str());
        }
    }
    return *link;
}

Result<void> delete_in_sandbox(Kernel& kernel, const std::string& netns, const std::vector<std::string>& names, const std::string& kind)
{
    if (netns.empty())
        return {};
    auto ns = TRY(kernel.open_netns(netns));
    if (!ns)
        return {}; // gone: its links went with it
    for (auto& name : names) {
        if (name.empty())
            continue;
        if (auto link = TRY(kernel.get_link(*ns, name)); link && link->kind == kind)
            TRY(kernel.delete_link(*ns, link->index));
    }
    return {};
}

Result<void> delete_host_link(Kernel& kernel, const std::string& name, const std::string& kind)
{
    if (name.empty())
        return {};
    if (auto link = TRY(kernel.get_link(host_ns, name)); link && (kind.empty() || link->kind == kind))
        TRY(kernel.delete_link(host_ns, link->index));
    return {};
}

Result<std::optional<int>> positive_int(const Json& options, const char* key, long long max)
{
    auto v = TRY(json_int(options, key, "", 0, max));
    if (v && *v > 0)
        return std::optional<int>(static_cast<int>(*v));
    return std::optional<int> {};
}

Result<std::optional<Mac>> mac_key(const Json& options, const char* key)
{
    auto text = TRY(json_string(options, key, ""));
    if (!text || text->empty())
        return std::optional<Mac> {};
    auto mac = netlink::parse_mac(*text);
    if (!mac)
        return invalid("\"" + std::string(key) + "\" = \"" + *text + "\" is not a MAC address");
    return mac;
}

} // namespace cnm::drivers
