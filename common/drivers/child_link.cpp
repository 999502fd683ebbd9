// macvlan and ipvlan: a child link of a parent ("master") interface placed straight into the
// sandbox. The two kinds differ in their modes, in the MAC (an ipvlan child shares the master's,
// so a custom one is refused), in the neighbour notifications and in chaining (ipvlan may take its
// master and addresses from prevResult); everything else — IPAM, rollback, DEL, CHECK, STATUS, GC,
// crash points — is one code path.
#include "drivers/ipvlan.hpp"
#include "drivers/macvlan.hpp"

#include "cnm/options.hpp"
#include "cnm/state.hpp"
#include "drivers/common.hpp"
#include "util/fault.hpp"
#include "util/guard.hpp"

#include <algorithm>
#include <array>
#include <vector>
#include <linux/if_link.h>

namespace cnm::drivers {

namespace {

using netlink::Mac;
using netlink::Socket;

struct Kind {
    std::string_view name;
    const Json& (*defaults)();
    std::vector<std::pair<std::string_view, uint32_t>> modes; // the first is the default
    bool custom_mac;  // macvlan: yes; ipvlan children share the master's MAC
    bool notify;      // arp_notify/ndisc_notify on the new interface (macvlan, as the reference)
    bool chained;     // ipvlan: master and addresses may come from prevResult
};

const Kind macvlan_kind { "macvlan", macvlan_network_defaults,
    { { "bridge", MACVLAN_MODE_BRIDGE }, { "private", MACVLAN_MODE_PRIVATE }, { "vepa", MACVLAN_MODE_VEPA }, { "passthru", MACVLAN_MODE_PASSTHRU } },
    true, true, false };
const Kind ipvlan_kind { "ipvlan", ipvlan_network_defaults, { { "l2", IPVLAN_MODE_L2 }, { "l3", IPVLAN_MODE_L3 }, { "l3s", IPVLAN_MODE_L3S } }, false, false, true };

struct ChildConf {
    std::string master; // empty: the interface of the default route, found at ADD
    std::string mode;
    uint32_t mode_value = 0;
    std::optional<int> mtu;
    std::optional<Mac> mac;
    IpamPlan ipam;
    bool addresses_from_prev = false; // chained ipvlan without IPAM: prevResult's addresses
    uint16_t ipvlan_flags = 0;
};

/// The conf with the keys it omits taken from an existing network of the same name (code 7 when
/// they disagree), and whether that network exists.
struct Effective {
    Json raw;
    bool network_exists = false;
};
Result<Effective> effective_conf(const Kind& kind, const cni::Context& ctx, Registry& registry)
{
    auto stored = TRY(registry.load_network(ctx.conf.name));
    if (stored.absent())
        return Effective { ctx.conf.raw, false };
    if (!stored.ok())
        return Effective { ctx.conf.raw, true };
    Json raw = TRY(adopt_network_options(ctx.conf.name, stored.record.options, ctx.conf.raw, kind.defaults(), "this config"));
    return Effective { std::move(raw), true };
}

/// `raw` is the conf with the keys it omits taken from an existing network of the same name.
Result<ChildConf> parse_conf(const Kind& kind, const cni::Context& ctx, const Json& raw, bool need_ipam)
{
    ChildConf c;
    c.mode = std::string(kind.modes.front().first);
    c.mode_value = kind.modes.front().second;
    c.master = TRY(json_string(raw, "master", "")).value_or("");
    if (!c.master.empty() && !cni::validate_ifname(c.master))
        return invalid("\"master\" = \"" + c.master + "\" is not a usable interface name");
    if (auto mode = TRY(json_string(raw, "mode", "")); mode && !mode->empty()) {
        auto it = std::find_if(kind.modes.begin(), kind.modes.end(), [&](auto& m) { return m.first == *mode; });
        if (it == kind.modes.end()) {
            std::string known;
            for (auto& m : kind.modes)
                known += (known.empty() ? "" : ", ") + std::string(m.first);
            return invalid("unknown " + std::string(kind.name) + " mode \"" + *mode + "\" (" + known + ")");
        }
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
    if (kind.name == "ipvlan") {
        // Docker's ipvlan_flag (the reference CNI ipvlan has no such key; ours takes "flag").
        if (auto flag = TRY(json_string(raw, "flag", "")); flag && *flag != "bridge") {
            if (*flag != "private" && *flag != "vepa")
                return invalid("\"flag\" = \"" + *flag + "\" is not an ipvlan flag (bridge, private or vepa)");
            c.ipvlan_flags = *flag == "private" ? IPVLAN_F_PRIVATE : IPVLAN_F_VEPA;
        }
    }
    if (c.mac && !kind.custom_mac)
        return invalid(std::string(kind.name) + " interfaces share their master's MAC address: a custom MAC (" + netlink::mac_str(*c.mac)
            + ") cannot be set");
    c.ipam = TRY(plan_ipam(ctx, need_ipam));
    if (kind.chained) {
        // Chained after a plugin that made one interface: that is the master (the reference's rule).
        const auto& prev = ctx.conf.prev_result;
        if (c.master.empty() && prev && prev->interfaces.size() == 1 && !prev->interfaces[0].name.empty())
            c.master = prev->interfaces[0].name;
        if (c.ipam.type.empty()) {
            if (prev && !prev->ips.empty())
                c.addresses_from_prev = true;
            else if (need_ipam && ctx.env.command == cni::Command::Add)
                return invalid("\"ipam\" must be given unless the plugin is chained after one whose prevResult has addresses");
        }
    }
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

ipam::Request child_request(const Kind& kind, const cni::Context& ctx, const std::string& master)
{
    return request_of(ctx, std::string(kind.name), Json { { "master", master } });
}

/// Deletes the sandbox's interface — under its final name, or under the temporary name the record
/// kept if a crash came before the rename — if the sandbox still exists (its links die with it).
Result<void> remove_link(const Kind& kind, const std::string& netns_path, const std::string& ifname, const EndpointRecord* record)
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
        if (auto link = TRY(netlink::get_link(*inside, name)); link && link->kind == kind.name)
            TRY(netlink::delete_link(*inside, link->index));
    return {};
}

/// After a failed first ADD: the network record (and pool users) it created go too, so a kernel
/// without the link type leaves the state as it was.
void drop_network_if_unused(Registry& registry, const std::string& network)
{
    auto lock = registry.lock_network(network);
    auto endpoints = registry.list_endpoints(network);
    auto stored = registry.load_network(network);
    if (!lock || !endpoints || !endpoints->empty() || !stored || !stored->ok())
        return;
    ipam::Pools pools(registry.store());
    for (auto& s : stored->record.subnets)
        if (auto net = IpNet::parse(s))
            (void)pools.remove_user({ stored->record.address_space, *net }, network);
    (void)registry.store().remove(Registry::network_key(network));
    (void)registry.store().remove_dir(Registry::endpoints_dir(network));
}

Result<cni::CniResult> cmd_add(const Kind& kind, const cni::Context& ctx)
{
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    Effective effective = TRY(effective_conf(kind, ctx, registry));
    ChildConf c = TRY(parse_conf(kind, ctx, effective.raw, true));
    auto host = TRY(Socket::open());
    auto netns = Netns::open(ctx.env.netns);
    if (!netns)
        return make_error(Code::InvalidEnv, "failed to open netns \"" + ctx.env.netns + "\"", netns.error().msg);
    auto inside = TRY(socket_in(*netns));
    auto master = TRY(find_master(*host, c.master));
    if (c.mtu && *c.mtu > master.mtu)
        return invalid("\"mtu\" " + std::to_string(*c.mtu) + " is larger than the master's (" + std::to_string(master.mtu) + ")");

    auto request = child_request(kind, ctx, master.name);
    std::string temp_name = "cnm" + random_hex(4);
    std::string point = std::string(kind.name);
    bool new_network = !effective.network_exists;
    EndpointRecord record = TRY(ipam::begin(registry, c.ipam.conf ? &*c.ipam.conf : nullptr, request,
        Json { { "master", master.name }, { "mode", c.mode }, { "tempName", temp_name } },
        [&](const EndpointRecord& stale) { return remove_link(kind, ctx.env.netns, ctx.env.ifname, &stale); }));
    fault_point((point + "-after-intent").c_str());
    bool have_ipam = false, have_link = false;
    ArmedGuard undo([&] {
        if (have_link) {
            for (const std::string& name : { temp_name, ctx.env.ifname })
                if (auto link = netlink::get_link(*inside, name); link && *link && (*link)->kind == kind.name)
                    (void)netlink::delete_link(*inside, (*link)->index);
        }
        if (have_ipam)
            (void)ipam_del(ctx, c.ipam, registry, &record, request);
        (void)ipam::abandon(registry, record);
        if (new_network)
            drop_network_if_unused(registry, ctx.conf.name);
        (void)state.store->sync();
    });
    cni::CniResult ipam_result;
    if (c.addresses_from_prev) {
        for (auto ip : ctx.conf.prev_result->ips) {
            ip.interface.reset();
            ipam_result.ips.push_back(ip);
        }
        ipam_result.routes = ctx.conf.prev_result->routes;
        ipam_result.dns = ctx.conf.prev_result->dns;
    } else {
        ipam_result = TRY(ipam_add(ctx, c.ipam, registry, record, request));
        have_ipam = true;
    }
    fault_point((point + "-after-ipam").c_str());
    if (kind.name == "ipvlan")
        TRY(netlink::create_ipvlan(*host, { temp_name, master.index, netns->fd(), c.mode_value, c.mtu, std::nullopt, c.ipvlan_flags }));
    else
        TRY(netlink::create_macvlan(*host, { temp_name, master.index, netns->fd(), c.mode_value, c.mtu, c.mac }));
    have_link = true;
    fault_point((point + "-after-link").c_str());
    auto link = TRY(configure_container(*inside, {}, temp_name, ctx.env.ifname, ipam_result));
    if (kind.notify) {
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
    fault_point((point + "-after-commit").c_str());
    return result;
}

Result<void> cmd_del(const Kind& kind, const cni::Context& ctx)
{
    auto parsed = parse_conf(kind, ctx, ctx.conf.raw, false);
    ChildConf c = parsed ? parsed.release_value() : ChildConf {};
    if (!parsed)
        c.ipam = plan_ipam(ctx, false).release_value();
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    std::string key = endpoint_key(ctx.env.container_id, ctx.env.ifname);
    auto stored = TRY(registry.load_endpoint(ctx.conf.name, key));
    const EndpointRecord* record = stored.ok() ? &stored.record : nullptr;
    std::string master = record ? record->driver_state.value("master", c.master) : c.master;
    auto request = child_request(kind, ctx, master);
    std::string point = std::string(kind.name);
    {
        auto lock = TRY(registry.lock_network(ctx.conf.name));
        // IPAM first, then the link, as the reference plugins do.
        TRY(ipam_del(ctx, c.ipam, registry, record, request));
        fault_point((point + "-del-after-ipam").c_str());
    }
    TRY(remove_link(kind, ctx.env.netns, ctx.env.ifname, record));
    fault_point((point + "-del-after-link").c_str());
    if (!stored.absent()) {
        auto lock = TRY(registry.lock_network(ctx.conf.name));
        std::string sandbox = record && !record->sandbox.empty() ? record->sandbox : ctx.env.container_id;
        TRY(registry.sandbox_leave(sandbox, { ctx.conf.name, key }));
        TRY(registry.remove_endpoint(ctx.conf.name, key));
    }
    return state.store->sync();
}

Result<void> cmd_check(const Kind& kind, const cni::Context& ctx)
{
    auto state = TRY(State::open(ctx.conf));
    Effective effective = TRY(effective_conf(kind, ctx, *state.registry));
    ChildConf c = TRY(parse_conf(kind, ctx, effective.raw, true));
    auto checked = TRY(check_container(ctx, *state.registry, std::string(kind.name)));
    if (c.ipam.conf)
        return ipam::check(*state.registry, *c.ipam.conf, child_request(kind, ctx, checked.record.driver_state.value("master", "")),
            *ctx.conf.prev_result);
    return delegate_ipam(ctx, c.ipam, cni::Command::Check);
}

Result<void> cmd_status(const Kind& kind, const cni::Context& ctx)
{
    ChildConf c = TRY(parse_conf(kind, ctx, ctx.conf.raw, true));
    return ipam_status(ctx, c.ipam);
}

Result<void> cmd_gc(const Kind& kind, const cni::Context& ctx)
{
    // The links of stale attachments died with their netns (GC may assume it is gone); what is
    // left is leases and records — the IPAM GC's job.
    auto parsed = parse_conf(kind, ctx, ctx.conf.raw, true);
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

const Json& macvlan_network_defaults()
{
    static const Json defaults = { { "master", "" }, { "mode", "bridge" }, { "mtu", 0 } };
    return defaults;
}

const Json& ipvlan_network_defaults()
{
    static const Json defaults = { { "master", "" }, { "mode", "l2" }, { "mtu", 0 }, { "flag", "bridge" } };
    return defaults;
}

namespace {

cni::Plugin child_plugin(const Kind& kind)
{
    return cni::Plugin {
        .name = std::string(kind.name),
        .known_args = { "IP", "MAC" },
        .add = [&kind](const cni::Context& ctx) { return cmd_add(kind, ctx); },
        .del = [&kind](const cni::Context& ctx) { return cmd_del(kind, ctx); },
        .check = [&kind](const cni::Context& ctx) { return cmd_check(kind, ctx); },
        .status = [&kind](const cni::Context& ctx) { return cmd_status(kind, ctx); },
        .gc = [&kind](const cni::Context& ctx) { return cmd_gc(kind, ctx); },
    };
}

} // namespace

cni::Plugin macvlan_plugin()
{
    return child_plugin(macvlan_kind);
}

cni::Plugin ipvlan_plugin()
{
    return child_plugin(ipvlan_kind);
}

} // namespace cnm::drivers
