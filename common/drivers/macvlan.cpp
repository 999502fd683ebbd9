#include "drivers/macvlan.hpp"

#include "cnm/state.hpp"
#include "drivers/common.hpp"
#include "util/fault.hpp"
#include "util/guard.hpp"

#include <algorithm>
#include <array>
#include <linux/if_link.h>

namespace cnm::drivers {

namespace {

using netlink::Mac;
using netlink::Socket;

constexpr std::array<std::pair<std::string_view, uint32_t>, 4> mode_table { {
    { "bridge", MACVLAN_MODE_BRIDGE },
    { "private", MACVLAN_MODE_PRIVATE },
    { "vepa", MACVLAN_MODE_VEPA },
    { "passthru", MACVLAN_MODE_PASSTHRU },
} };

struct MacvlanConf {
    std::string master; // empty: the interface of the default route, found at ADD
    std::string mode = "bridge";
    uint32_t mode_value = MACVLAN_MODE_BRIDGE;
    std::optional<int> mtu;
    std::optional<Mac> mac;
    IpamPlan ipam;
};

Result<MacvlanConf> parse_conf(const cni::Context& ctx, bool need_ipam)
{
    const Json& raw = ctx.conf.raw;
    MacvlanConf c;
    c.master = TRY(json_string(raw, "master", "")).value_or("");
    if (!c.master.empty() && !cni::validate_ifname(c.master))
        return invalid("\"master\" = \"" + c.master + "\" is not a usable interface name");
    if (auto mode = TRY(json_string(raw, "mode", "")); mode && !mode->empty()) {
        auto it = std::find_if(mode_table.begin(), mode_table.end(), [&](auto& m) { return m.first == *mode; });
        if (it == mode_table.end())
            return invalid("unknown macvlan mode \"" + *mode + "\" (bridge, private, vepa or passthru)");
        c.mode = *mode;
        c.mode_value = it->second;
    }
    if (auto mtu = TRY(json_int(raw, "mtu", "", 0, 65535)); mtu && *mtu > 0)
        c.mtu = static_cast<int>(*mtu);
    if (auto text = TRY(json_string(raw, "mac", "")); text && !text->empty()) {
        c.mac = netlink::parse_mac(*text);
        if (!c.mac)
            return invalid("\"mac\" = \"" + *text + "\" is not a MAC address");
    }
    if (auto asked = TRY(requested_mac(ctx)))
        c.mac = asked;
    c.ipam = TRY(plan_ipam(ctx, need_ipam));
    return c;
}

Result<netlink::Link> find_master(Socket& host, const std::string& name)
{
    std::string wanted = name;
    if (wanted.empty()) {
        for (int family : { 4, 6 }) {
            for (auto& r : TRY(netlink::list_routes(host, family)))
                if (r.dst.prefix == 0 && r.oif > 0)
                    if (auto link = TRY(netlink::get_link(host, r.oif)))
                        return *link;
        }
        return invalid("no \"master\" given and no default route to take it from");
    }
    auto link = TRY(netlink::get_link(host, wanted));
    if (!link)
        return invalid("master interface \"" + wanted + "\" not found");
    return *link;
}

ipam::Request macvlan_request(const cni::Context& ctx, const std::string& master)
{
    return request_of(ctx, "macvlan", Json { { "master", master } });
}

/// Deletes the sandbox's interface — under its final name, or under the temporary name the record
/// kept if a crash came before the rename — if the sandbox still exists (its links die with it).
Result<void> remove_link(const std::string& netns_path, const std::string& ifname, const EndpointRecord* record)
{
    if (netns_path.empty())
        return {};
    auto netns = Netns::open(netns_path);
    if (!netns)
        return {};
    auto inside = TRY(socket_in(*netns));
    std::vector<std::string> names { ifname };
    if (record && record->driver_state.contains("tempName") && record->driver_state["tempName"].is_string())
        names.push_back(record->driver_state["tempName"].get<std::string>());
    for (auto& name : names)
        if (auto link = TRY(netlink::get_link(*inside, name)); link && link->kind == "macvlan")
            TRY(netlink::delete_link(*inside, link->index));
    return {};
}

Result<cni::CniResult> cmd_add(const cni::Context& ctx)
{
    MacvlanConf c = TRY(parse_conf(ctx, true));
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    auto host = TRY(Socket::open());
    auto netns = Netns::open(ctx.env.netns);
    if (!netns)
        return make_error(Code::InvalidEnv, "failed to open netns \"" + ctx.env.netns + "\"", netns.error().msg);
    auto inside = TRY(socket_in(*netns));
    auto master = TRY(find_master(*host, c.master));
    if (c.mtu && *c.mtu > master.mtu)
        return invalid("\"mtu\" " + std::to_string(*c.mtu) + " is larger than the master's (" + std::to_string(master.mtu) + ")");

    auto request = macvlan_request(ctx, master.name);
    std::string temp_name = "cnm" + random_hex(4);
    EndpointRecord record = TRY(ipam::begin(registry, c.ipam.conf ? &*c.ipam.conf : nullptr, request,
        Json { { "master", master.name }, { "mode", c.mode }, { "tempName", temp_name } },
        [&](const EndpointRecord& stale) { return remove_link(ctx.env.netns, ctx.env.ifname, &stale); }));
    fault_point("macvlan-after-intent");
    bool have_ipam = false, have_link = false;
    ArmedGuard undo([&] {
        if (have_link) {
            for (const std::string& name : { temp_name, ctx.env.ifname })
                if (auto link = netlink::get_link(*inside, name); link && *link && (*link)->kind == "macvlan")
                    (void)netlink::delete_link(*inside, (*link)->index);
        }
        if (have_ipam)
            (void)ipam_del(ctx, c.ipam, registry, &record, request);
        (void)ipam::abandon(registry, record);
        (void)state.store->sync();
    });
    cni::CniResult ipam_result = TRY(ipam_add(ctx, c.ipam, registry, record, request));
    have_ipam = true;
    fault_point("macvlan-after-ipam");
    TRY(netlink::create_macvlan(*host, { temp_name, master.index, netns->fd(), c.mode_value, c.mtu, c.mac }));
    have_link = true;
    fault_point("macvlan-after-link");
    auto link = TRY(configure_container(*inside, {}, temp_name, ctx.env.ifname, ipam_result));
    {
        // Announce the new MAC at once (gratuitous ARP / unsolicited NA), as the reference does.
        auto guard = TRY(NetnsGuard::enter(*netns));
        TRY(write_sysctl("net/ipv4/conf/" + ctx.env.ifname + "/arp_notify", "1"));
        (void)write_sysctl("net/ipv6/conf/" + ctx.env.ifname + "/ndisc_notify", "1"); // absent without IPv6
    }
    cni::CniResult result;
    result.interfaces.push_back({ ctx.env.ifname, netlink::mac_str(link.mac), {}, ctx.env.netns, "", "" });
    for (auto ip : ipam_result.ips) {
        ip.interface = 0;
        result.ips.push_back(ip);
    }
    result.routes = ipam_result.routes;
    result.dns = ctx.conf.dns ? *ctx.conf.dns : ipam_result.dns;
    record.mac = netlink::mac_str(link.mac);
    if (!c.ipam.conf)
        for (auto& ip : ipam_result.ips)
            record.addresses.push_back({ ip.address, ip.gateway, "" });
    TRY(ipam::commit(registry, record));
    TRY(state.store->sync());
    undo.disarm();
    fault_point("macvlan-after-commit");
    return result;
}

Result<void> cmd_del(const cni::Context& ctx)
{
    auto parsed = parse_conf(ctx, false);
    MacvlanConf c = parsed ? parsed.release_value() : MacvlanConf {};
    if (!parsed)
        c.ipam = plan_ipam(ctx, false).release_value();
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    std::string key = endpoint_key(ctx.env.container_id, ctx.env.ifname);
    auto stored = TRY(registry.load_endpoint(ctx.conf.name, key));
    const EndpointRecord* record = stored.ok() ? &stored.record : nullptr;
    std::string master = record ? record->driver_state.value("master", c.master) : c.master;
    auto request = macvlan_request(ctx, master);
    {
        auto lock = TRY(registry.lock_network(ctx.conf.name));
        // IPAM first, then the link, as the reference macvlan plugin does.
        TRY(ipam_del(ctx, c.ipam, registry, record, request));
        fault_point("macvlan-del-after-ipam");
    }
    TRY(remove_link(ctx.env.netns, ctx.env.ifname, record));
    fault_point("macvlan-del-after-link");
    if (!stored.absent()) {
        auto lock = TRY(registry.lock_network(ctx.conf.name));
        std::string sandbox = record && !record->sandbox.empty() ? record->sandbox : ctx.env.container_id;
        TRY(registry.sandbox_leave(sandbox, { ctx.conf.name, key }));
        TRY(registry.remove_endpoint(ctx.conf.name, key));
    }
    return state.store->sync();
}

Result<void> cmd_check(const cni::Context& ctx)
{
    MacvlanConf c = TRY(parse_conf(ctx, true));
    auto state = TRY(State::open(ctx.conf));
    auto checked = TRY(check_container(ctx, *state.registry, "macvlan"));
    if (c.ipam.conf)
        return ipam::check(*state.registry, *c.ipam.conf, macvlan_request(ctx, checked.record.driver_state.value("master", "")),
            *ctx.conf.prev_result);
    return delegate_ipam(ctx, c.ipam, cni::Command::Check);
}

Result<void> cmd_status(const cni::Context& ctx)
{
    MacvlanConf c = TRY(parse_conf(ctx, true));
    return ipam_status(ctx, c.ipam);
}

Result<void> cmd_gc(const cni::Context& ctx)
{
    // The links of stale attachments died with their netns (GC may assume it is gone); what is
    // left is leases and records — the IPAM GC's job.
    auto parsed = parse_conf(ctx, true);
    IpamPlan plan = parsed ? parsed->ipam : plan_ipam(ctx, false).release_value();
    auto valid = TRY(cni::valid_attachments(ctx.conf)).value_or(std::vector<cni::Attachment> {});
    auto state = TRY(State::open(ctx.conf));
    auto done = ipam::gc(*state.registry, plan.conf ? &*plan.conf : nullptr, ctx.conf.name, valid);
    if (done && !plan.conf)
        done = delegate_ipam(ctx, plan, cni::Command::Gc);
    TRY(state.store->sync());
    return done;
}

} // namespace

cni::Plugin macvlan_plugin()
{
    return cni::Plugin {
        .name = "macvlan",
        .known_args = { "IP", "MAC" },
        .add = cmd_add,
        .del = cmd_del,
        .check = cmd_check,
        .status = cmd_status,
        .gc = cmd_gc,
    };
}

} // namespace cnm::drivers
