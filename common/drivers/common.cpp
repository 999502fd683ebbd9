#include "drivers/common.hpp"

#include "cni/exec.hpp"
#include "cnm/state.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sys/random.h>

namespace cnm::drivers {

using netlink::Mac;
using netlink::Socket;

namespace {

Result<std::optional<Mac>> mac_from(const Json& obj, const char* key, const std::string& where)
{
    auto text = TRY(json_string(obj, key, where));
    if (!text || text->empty())
        return std::optional<Mac> {};
    auto mac = netlink::parse_mac(*text);
    if (!mac)
        return invalid("\"" + where + "." + key + "\" = \"" + *text + "\" is not a MAC address");
    return mac;
}

} // namespace

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
    char buf[3];
    for (size_t i = 0; i < bytes; ++i) {
        std::snprintf(buf, sizeof buf, "%02x", raw[i]);
        out += buf;
    }
    return out;
}

Result<std::unique_ptr<Socket>> socket_in(const Netns& netns)
{
    auto guard = TRY(NetnsGuard::enter(netns));
    return Socket::open();
}

Result<std::optional<Mac>> requested_mac(const cni::Context& ctx)
{
    std::optional<Mac> mac;
    if (auto m = ctx.env.args.get("MAC")) {
        mac = netlink::parse_mac(*m);
        if (!mac)
            return make_error(Code::InvalidEnv, "CNI_ARGS: MAC=\"" + *m + "\" is not a MAC address");
    }
    if (ctx.conf.args.is_object()) {
        auto cni = TRY(json_object(ctx.conf.args, "cni", "args"));
        if (!cni.is_null())
            if (auto m = TRY(mac_from(cni, "mac", "args.cni")))
                mac = m;
    }
    if (ctx.conf.runtime_config.is_object())
        if (auto m = TRY(mac_from(ctx.conf.runtime_config, "mac", "runtimeConfig")))
            mac = m;
    return mac;
}

Result<IpamPlan> plan_ipam(const cni::Context& ctx, bool parse)
{
    IpamPlan plan;
    if (ctx.conf.ipam.is_object()) {
        auto type = ctx.conf.ipam.find("type");
        if (type != ctx.conf.ipam.end() && type->is_string())
            plan.type = type->get<std::string>();
    }
    if (plan.type == "ipam" && parse)
        plan.conf = TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args));
    return plan;
}

ipam::Request request_of(const cni::Context& ctx, const std::string& driver, const Json& identity)
{
    ipam::Request r { ctx.conf.name, driver, Frontend::Cni, ctx.env.container_id, ctx.env.ifname, ctx.env.netns, network_options(ctx.conf) };
    r.identity = identity;
    return r;
}

Result<void> delegate_ipam(const cni::Context& ctx, const IpamPlan& plan, cni::Command command)
{
    if (plan.type.empty())
        return {};
    auto out = cni::exec_plugin(plan.type, command, ctx.env, ctx.conf.raw);
    if (!out)
        return out.release_error();
    return {};
}

Result<cni::CniResult> ipam_add(const cni::Context& ctx, const IpamPlan& plan, Registry& registry, EndpointRecord& record,
    const ipam::Request& request)
{
    if (plan.conf) {
        record.addresses = TRY(ipam::allocate(registry, *plan.conf, request));
        return ipam::to_result(*plan.conf, record.addresses);
    }
    if (plan.type.empty())
        return cni::CniResult {};
    return cni::exec_add(plan.type, ctx.env, ctx.conf.raw);
}

Result<void> ipam_del(const cni::Context& ctx, const IpamPlan& plan, Registry& registry, const EndpointRecord* record,
    const ipam::Request& request)
{
    if (plan.type == "ipam") {
        // The records name the leases; the conf may have changed since.
        if (record && record->phase == EndpointRecord::Phase::Ready)
            return ipam::release(registry, record->addresses, request);
        auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
        return ipam::del(registry, conf ? &conf.value() : nullptr, request);
    }
    return delegate_ipam(ctx, plan, cni::Command::Del);
}

Result<netlink::Link> configure_container(Socket& inside, const ContainerSetup& setup, const std::string& temp_name,
    const std::string& ifname, cni::CniResult& result)
{
    auto link = TRY(netlink::get_link(inside, temp_name));
    if (!link)
        return make_error(Code::Kernel, "the container end of the link (" + temp_name + ") is missing");
    if (TRY(netlink::get_link(inside, ifname)))
        return make_error(Code::InvalidConfig, "container already has an interface named " + ifname);
    netlink::LinkChange rename;
    rename.name = ifname;
    TRY(netlink::set_link(inside, link->index, rename));
    link->name = ifname;
    if (!setup.up)
        return *link;
    netlink::LinkChange up;
    up.up = true;
    TRY(netlink::set_link(inside, link->index, up));
    for (auto& ip : result.ips)
        TRY(netlink::add_address(inside, link->index, ip.address, setup.dad));
    std::vector<netlink::RouteSpec> routes;
    bool v4_default = false, v6_default = false;
    for (auto& r : result.routes) {
        netlink::RouteSpec spec { r.dst, r.gw, link->index, r.mtu, r.priority, r.table, std::nullopt };
        if (!spec.gw) {
            // A route without "gw" goes through the gateway of that family's address, as the
            // reference's ipam.ConfigureIface does (on-link only when there is no gateway).
            for (auto& ip : result.ips)
                if (ip.gateway && ip.gateway->family == r.dst.addr.family)
                    spec.gw = ip.gateway;
        }
        (r.dst.addr.family == 4 ? v4_default : v6_default) |= r.dst.prefix == 0;
        routes.push_back(spec);
    }
    if (setup.default_gateway) {
        for (auto& ip : result.ips) {
            bool& have = ip.address.addr.family == 4 ? v4_default : v6_default;
            if (have || !ip.gateway)
                continue;
            IpNet any { IpAddr { ip.address.addr.family, 0 }, 0 };
            routes.push_back({ any, ip.gateway, link->index, {}, {}, {}, {} });
            cni::Route added;
            added.dst = any;
            added.gw = ip.gateway;
            result.routes.push_back(added);
            have = true;
        }
    }
    for (auto& r : routes) {
        auto done = netlink::add_route(inside, r);
        if (!done && inside.last_errno() != EEXIST)
            return done.release_error();
    }
    return *link;
}

Result<CheckedContainer> check_container(const cni::Context& ctx, Registry& registry, const std::string& kind)
{
    if (!ctx.conf.prev_result)
        return invalid("CHECK needs \"prevResult\"");
    const auto& prev = *ctx.conf.prev_result;
    auto stored = TRY(registry.load_endpoint(ctx.conf.name, endpoint_key(ctx.env.container_id, ctx.env.ifname)));
    if (!stored.ok() || stored.record.phase != EndpointRecord::Phase::Ready)
        return make_error(Code::CheckFailed, ctx.env.container_id + "/" + ctx.env.ifname + " is not attached to network \"" + ctx.conf.name + "\"");
    auto netns = Netns::open(ctx.env.netns);
    if (!netns)
        return make_error(Code::CheckFailed, "failed to open netns \"" + ctx.env.netns + "\"", netns.error().msg);
    auto inside = TRY(socket_in(*netns));
    auto link = TRY(netlink::get_link(*inside, ctx.env.ifname));
    if (!link || link->kind != kind)
        return make_error(Code::CheckFailed, "container interface " + ctx.env.ifname + " is missing or not a " + kind);
    // Only the sandbox's interface is compared (a bridge's MAC changes whenever a port joins).
    for (auto& i : prev.interfaces)
        if (i.name == ctx.env.ifname && !i.sandbox.empty() && !i.mac.empty() && i.mac != netlink::mac_str(link->mac))
            return make_error(Code::CheckFailed, ctx.env.ifname + " has MAC " + netlink::mac_str(link->mac) + ", prevResult says " + i.mac);
    auto addrs = TRY(netlink::list_addresses(*inside, link->index));
    for (auto& ip : prev.ips)
        if (std::none_of(addrs.begin(), addrs.end(), [&](const netlink::Address& a) { return a.address == ip.address; }))
            return make_error(Code::CheckFailed, ctx.env.ifname + " lacks the address " + ip.address.str());
    for (int family : { 4, 6 }) {
        auto routes = TRY(netlink::list_routes(*inside, family));
        for (auto& r : prev.routes) {
            if (r.dst.addr.family != family)
                continue;
            bool found = std::any_of(routes.begin(), routes.end(), [&](const netlink::RouteSpec& k) {
                return k.dst.network() == r.dst.network() && k.dst.prefix == r.dst.prefix && (!r.gw || k.gw == r.gw);
            });
            if (!found)
                return make_error(Code::CheckFailed, ctx.env.ifname + " lacks the route to " + r.dst.str());
        }
    }
    return CheckedContainer { std::move(stored.record), *link };
}

Result<void> ipam_status(const cni::Context& ctx, const IpamPlan& plan)
{
    if (!plan.conf)
        return delegate_ipam(ctx, plan, cni::Command::Status);
    auto state = FileStore::open(cni::state_dir(ctx.conf));
    if (!state)
        return make_error(Code::NotAvailable, "state directory unavailable: " + state.error().msg);
    Registry registry(**state);
    return ipam::status(registry, *plan.conf);
}

} // namespace cnm::drivers
