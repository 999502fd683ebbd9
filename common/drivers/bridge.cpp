#include "drivers/bridge.hpp"

#include "drivers/common.hpp"
#include "cnm/options.hpp"
#include "cnm/state.hpp"
#include "firewall/nft.hpp"
#include "ipam/ipam.hpp"
#include "netlink/route.hpp"
#include "netns/netns.hpp"
#include "store/file_store.hpp"
#include "util/fault.hpp"
#include "util/guard.hpp"

#include <algorithm>
#include <cstdio>
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <sys/random.h>

namespace cnm::drivers {

namespace {

using netlink::Mac;
using netlink::Socket;

struct BridgeConf : BridgeKeys {
    std::optional<Mac> mac;
    IpamPlan ipam;
};

ipam::Request bridge_request(const cni::Context& ctx, const BridgeConf& c)
{
    return request_of(ctx, "bridge", Json { { "bridge", c.bridge } });
}

/// `raw` is the conf with the keys it omits taken from an existing network of the same name.
Result<BridgeConf> parse_bridge_conf(const cni::Context& ctx, const Json& raw, bool need_ipam)
{
    BridgeConf c;
    static_cast<BridgeKeys&>(c) = TRY(parse_bridge_keys(raw));
    c.mac = TRY(requested_mac(ctx));
    c.ipam = TRY(plan_ipam(ctx, need_ipam));
    if (c.disable_container_interface && !c.ipam.type.empty())
        return invalid("\"disableContainerInterface\" cannot be used with IPAM");
    return c;
}

/// The conf's keys merged with those of the network it names, when that exists (code 7 when
/// they disagree).
Result<Json> effective_conf(const cni::Context& ctx, Registry& registry)
{
    auto stored = TRY(registry.load_network(ctx.conf.name));
    if (!stored.ok())
        return ctx.conf.raw;
    return adopt_network_options(ctx.conf.name, stored.record.options, ctx.conf.raw, bridge_network_defaults(), "this config");
}

} // namespace

const Json& bridge_network_defaults()
{
    static const Json defaults = {
        { "bridge", "cni0" }, { "mtu", 0 }, { "ipMasq", false }, { "isGateway", false }, { "isDefaultGateway", false },
        { "hairpinMode", false }, { "promiscMode", false }, { "vlan", 0 }, { "portIsolation", false },
    };
    return defaults;
}

Result<BridgeKeys> parse_bridge_keys(const Json& raw)
{
    BridgeKeys c;
    if (auto name = TRY(json_string(raw, "bridge", "")); name && !name->empty())
        c.bridge = *name;
    if (auto bad = cni::validate_ifname(c.bridge); !bad)
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
    if (auto mtu = TRY(json_int(raw, "mtu", "", 0, 65535)); mtu && *mtu > 0)
        c.mtu = static_cast<int>(*mtu);
    if (auto vlan = TRY(json_int(raw, "vlan", "", 0, 4094)); vlan && *vlan > 0)
        c.vlan = static_cast<int>(*vlan);
    if (c.hairpin && c.promisc)
        return invalid("\"hairpinMode\" and \"promiscMode\" cannot both be true");
    return c;
}

Result<netlink::Link> ensure_bridge(Socket& host, const BridgeKeys& c)
{
    // Look first: after the first ADD the bridge exists, and a create would only come back EEXIST
    // (after taking the kernel's rtnl lock). Parallel first ADDs race to create; EEXIST is fine.
    auto link = TRY(netlink::get_link(host, c.bridge));
    if (!link) {
        TRY(netlink::create_bridge(host, { c.bridge, c.mtu, c.vlan.has_value() }));
        link = TRY(netlink::get_link(host, c.bridge));
    }
    if (!link)
        return make_error(Code::Kernel, "bridge " + c.bridge + " vanished right after it was created");
    if (link->kind != "bridge")
        return invalid("\"" + c.bridge + "\" exists and is not a bridge (it is a " + (link->kind.empty() ? "device" : link->kind) + ")");
    if (c.vlan)
        TRY(netlink::set_bridge_vlan_filtering(host, link->index, true));
    netlink::LinkChange change;
    if (!link->up())
        change.up = true;
    if (c.promisc && !link->promisc())
        change.promisc = true;
    if (change.up || change.promisc)
        TRY(netlink::set_link(host, link->index, change));
    return *link;
}

/// Gateway addresses on the bridge; EEXIST from a parallel ADD is fine. A different address in
/// the same subnet is an error unless forceAddress, which replaces it.
Result<void> ensure_gateway(Socket& host, const netlink::Link& bridge, const std::vector<cni::IpConfig>& ips, bool force)
{
    auto present = TRY(netlink::list_addresses(host, bridge.index));
    for (auto& ip : ips) {
        if (!ip.gateway)
            continue;
        IpNet gw { *ip.gateway, ip.address.prefix };
        bool have = false;
        for (auto& a : present) {
            if (a.address.addr == gw.addr) {
                have = true;
                continue;
            }
            if (a.address.addr.family == gw.addr.family && a.address.contains(gw.addr)) {
                if (!force)
                    return make_error(Code::InvalidConfig, "\"" + bridge.name + "\" already has an IP address different from " + gw.str(),
                        "it has " + a.address.str() + "; set \"forceAddress\": true to replace it");
                TRY(netlink::del_address(host, bridge.index, a.address));
            }
        }
        if (!have) {
            auto added = netlink::add_address(host, bridge.index, gw);
            if (!added && host.last_errno() != EEXIST)
                return added.release_error();
        }
        // Read before writing: writing ip_forward resets every interface's forwarding setting.
        const char* key = gw.addr.family == 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding";
        if (auto now = read_sysctl(key); !now || now.value() != "1")
            TRY(write_sysctl(key, "1"));
    }
    return {};
}

/// Firewall state an endpoint record says it has: masquerade elements for its addresses and the
/// MAC guard of its host veth. Absent elements are fine (DEL may repeat).
Result<void> remove_firewall(const EndpointRecord& record)
{
    const Json& d = record.driver_state;
    if (d.value("ipMasq", false))
        for (auto& a : record.addresses)
            TRY(firewall::del_masquerade(a.address));
    if (d.contains("macGuard") && d["macGuard"].is_string() && d.contains("hostVeth") && d["hostVeth"].is_string())
        TRY(firewall::del_mac_guard(d["hostVeth"].get<std::string>(), d["macGuard"].get<std::string>()));
    if (d.contains("ports") && d["ports"].is_array()) {
        std::vector<firewall::PortMap> ports;
        for (auto& p : d["ports"])
            if (auto m = firewall::port_map_from_json(p))
                ports.push_back(*m);
        TRY(firewall::del_port_maps(ports));
    }
    return {};
}

namespace {

/// Removes the endpoint's links: the host veth by its recorded name (its peer goes with it), and
/// the container interface by name when the netns still exists.
Result<void> remove_links(Socket& host, const EndpointRecord* record, const std::string& netns_path, const std::string& ifname)
{
    if (record && record->driver_state.contains("hostVeth") && record->driver_state["hostVeth"].is_string()) {
        std::string veth = record->driver_state["hostVeth"].get<std::string>();
        if (auto link = TRY(netlink::get_link(host, veth)); link && link->kind == "veth")
            TRY(netlink::delete_link(host, link->index));
    }
    if (netns_path.empty())
        return {};
    auto netns = Netns::open(netns_path);
    if (!netns)
        return {}; // gone: its links went with it
    auto inside = TRY(socket_in(*netns));
    if (auto link = TRY(netlink::get_link(*inside, ifname)); link && link->kind == "veth")
        TRY(netlink::delete_link(*inside, link->index));
    return {};
}

Result<cni::CniResult> cmd_add(const cni::Context& ctx)
{
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    Json raw = TRY(effective_conf(ctx, registry));
    BridgeConf c = TRY(parse_bridge_conf(ctx, raw, true));
    auto host = TRY(Socket::open());
    auto netns = Netns::open(ctx.env.netns);
    if (!netns)
        return make_error(Code::InvalidEnv, "failed to open netns \"" + ctx.env.netns + "\"", netns.error().msg);
    auto inside = TRY(socket_in(*netns));

    std::string host_veth = "veth" + random_hex(4);
    std::string temp_name = "cnm" + random_hex(4);
    auto request = bridge_request(ctx, c);
    EndpointRecord record = TRY(ipam::begin(registry, c.ipam.conf ? &*c.ipam.conf : nullptr, request,
        Json { { "bridge", c.bridge }, { "hostVeth", host_veth } },
        [&](const EndpointRecord& stale) -> Result<void> {
            TRY(remove_firewall(stale));
            return remove_links(*host, &stale, "", "");
        }));
    fault_point("bridge-after-intent");

    // Undo in reverse order of creation, whatever fails; a crash instead of a failure leaves the
    // intent record, from which DEL or GC does the same.
    bool have_ipam = false, have_veth = false, have_firewall = false;
    ArmedGuard undo([&] {
        if (have_firewall)
            (void)remove_firewall(record);
        if (have_veth)
            (void)remove_links(*host, &record, "", "");
        if (have_ipam)
            (void)ipam_del(ctx, c.ipam, registry, &record, bridge_request(ctx, c));
        (void)ipam::abandon(registry, record);
        (void)state.store->sync();
    });

    auto bridge = TRY(ensure_bridge(*host, c));
    fault_point("bridge-after-bridge");
    // On failure the in-process allocator has already released what it took; a delegated plugin
    // gets its DEL from the undo guard only once its ADD has succeeded.
    cni::CniResult ipam_result = TRY(ipam_add(ctx, c.ipam, registry, record, bridge_request(ctx, c)));
    have_ipam = true;
    fault_point("bridge-after-ipam");

    TRY(netlink::create_veth(*host, { host_veth, temp_name, netns->fd(), c.mtu, c.mac }));
    have_veth = true;
    fault_point("bridge-after-veth");
    auto hv = TRY(netlink::get_link(*host, host_veth));
    if (!hv)
        return make_error(Code::Kernel, "host end of the veth (" + host_veth + ") is missing");
    netlink::LinkChange join;
    join.up = true;
    join.master = bridge.index;
    TRY(netlink::set_link(*host, hv->index, join));
    if (c.hairpin || c.port_isolation)
        TRY(netlink::set_bridge_port(*host, hv->index, { c.hairpin ? std::optional(true) : std::nullopt,
                                                          c.port_isolation ? std::optional(true) : std::nullopt }));
    if (c.vlan) {
        TRY(netlink::del_bridge_vlan(*host, hv->index, 1, false));
        TRY(netlink::add_bridge_vlan(*host, hv->index, static_cast<uint16_t>(*c.vlan), true, false));
    }

    auto container = TRY(configure_container(*inside, { !c.disable_container_interface, c.enabledad, c.is_default_gateway },
        temp_name, ctx.env.ifname, ipam_result));
    Mac container_mac = container.mac;
    if (c.is_gateway)
        TRY(ensure_gateway(*host, bridge, ipam_result.ips, c.force_address));
    fault_point("bridge-after-configure");

    if (c.ip_masq || c.macspoofchk) {
        // Record what the rules will be before adding them, so DEL and GC can remove them even if
        // this process dies in between.
        if (!c.ipam.conf) // in-process IPAM has put its leases (with their pools) there already
            for (auto& ip : ipam_result.ips)
                record.addresses.push_back({ ip.address, ip.gateway, "" });
        record.driver_state["ipMasq"] = c.ip_masq;
        if (c.macspoofchk)
            record.driver_state["macGuard"] = netlink::mac_str(container_mac);
        TRY(registry.save_endpoint(record));
        have_firewall = true;
        if (c.ip_masq)
            for (auto& ip : ipam_result.ips)
                TRY(firewall::add_masquerade(ctx.conf.name, ip.address));
        if (c.macspoofchk)
            TRY(firewall::add_mac_guard(host_veth, netlink::mac_str(container_mac)));
        fault_point("bridge-after-firewall");
    }

    auto bridge_now = TRY(netlink::get_link(*host, bridge.index));
    cni::CniResult result;
    result.interfaces.push_back({ c.bridge, netlink::mac_str(bridge_now ? bridge_now->mac : bridge.mac), {}, "", "", "" });
    result.interfaces.push_back({ host_veth, netlink::mac_str(hv->mac), {}, "", "", "" });
    result.interfaces.push_back({ ctx.env.ifname, netlink::mac_str(container_mac), {}, ctx.env.netns, "", "" });
    for (auto ip : ipam_result.ips) {
        ip.interface = 2;
        result.ips.push_back(ip);
    }
    result.routes = ipam_result.routes;
    result.dns = ctx.conf.dns ? *ctx.conf.dns : ipam_result.dns;

    record.mac = netlink::mac_str(container_mac);
    if (!c.ipam.conf && !have_firewall) {
        // Delegated IPAM: keep its addresses for CHECK and for people (no pool owns them).
        for (auto& ip : ipam_result.ips)
            record.addresses.push_back({ ip.address, ip.gateway, "" });
    }
    TRY(ipam::commit(registry, record));
    TRY(state.store->sync());
    undo.disarm();
    fault_point("bridge-after-commit");
    return result;
}

Result<void> cmd_del(const cni::Context& ctx)
{
    auto parsed = parse_bridge_conf(ctx, ctx.conf.raw, false);
    BridgeConf c = parsed ? parsed.release_value() : BridgeConf {};
    if (!parsed)
        c.ipam = plan_ipam(ctx, false).release_value(); // never fails without parsing
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    auto host = TRY(Socket::open());
    std::string key = endpoint_key(ctx.env.container_id, ctx.env.ifname);
    // The kernel work (deleting a veth waits for an RCU grace period, ~10 ms) runs outside the
    // network lock, so parallel DELs on one network overlap; the record is this attachment's
    // alone (the runtime never runs two operations on one attachment at once).
    auto stored = TRY(registry.load_endpoint(ctx.conf.name, key));
    const EndpointRecord* record = stored.ok() ? &stored.record : nullptr;
    if (record)
        TRY(remove_firewall(*record));
    TRY(remove_links(*host, record, ctx.env.netns, ctx.env.ifname));
    fault_point("bridge-del-after-links");
    auto lock = TRY(registry.lock_network(ctx.conf.name));
    TRY(ipam_del(ctx, c.ipam, registry, record, bridge_request(ctx, c)));
    fault_point("bridge-del-after-ipam");
    if (!stored.absent()) {
        std::string sandbox = record && !record->sandbox.empty() ? record->sandbox : ctx.env.container_id;
        TRY(registry.sandbox_leave(sandbox, { ctx.conf.name, key }));
        fault_point("bridge-del-after-sandbox");
        TRY(registry.remove_endpoint(ctx.conf.name, key));
    }
    return state.store->sync();
}

Result<void> cmd_check(const cni::Context& ctx)
{
    auto state = TRY(State::open(ctx.conf));
    Json raw = TRY(effective_conf(ctx, *state.registry));
    BridgeConf c = TRY(parse_bridge_conf(ctx, raw, true));
    auto checked = TRY(check_container(ctx, *state.registry, "veth"));
    const auto& prev = *ctx.conf.prev_result;
    auto host = TRY(Socket::open());
    auto bridge = TRY(netlink::get_link(*host, c.bridge));
    if (!bridge || bridge->kind != "bridge")
        return make_error(Code::CheckFailed, "bridge " + c.bridge + " is missing");
    std::string veth = checked.record.driver_state.value("hostVeth", "");
    auto hv = TRY(netlink::get_link(*host, veth));
    if (!hv || hv->master != bridge->index)
        return make_error(Code::CheckFailed, "host veth " + veth + " is missing or not a port of " + c.bridge);
    if (checked.record.driver_state.value("ipMasq", false))
        for (auto& ip : prev.ips)
            if (!TRY(firewall::has_masquerade(ip.address)))
                return make_error(Code::CheckFailed, "the masquerade rule for " + ip.address.addr.str() + " is missing");
    if (c.macspoofchk && !TRY(firewall::has_mac_guard(veth, netlink::mac_str(checked.link.mac))))
        return make_error(Code::CheckFailed, "the MAC spoof check on " + veth + " is missing");
    if (c.ipam.conf)
        return ipam::check(*state.registry, *c.ipam.conf, bridge_request(ctx, c), prev);
    return delegate_ipam(ctx, c.ipam, cni::Command::Check);
}

Result<void> cmd_status(const cni::Context& ctx)
{
    BridgeConf c = TRY(parse_bridge_conf(ctx, ctx.conf.raw, true));
    auto host = Socket::open();
    if (!host)
        return make_error(Code::NotAvailable, "netlink is unavailable", host.error().msg);
    return ipam_status(ctx, c.ipam);
}

Result<void> cmd_gc(const cni::Context& ctx)
{
    auto parsed = parse_bridge_conf(ctx, ctx.conf.raw, true);
    BridgeConf c = parsed ? parsed.release_value() : BridgeConf {};
    auto valid = TRY(cni::valid_attachments(ctx.conf)).value_or(std::vector<cni::Attachment> {});
    auto state = TRY(State::open(ctx.conf));
    auto& registry = *state.registry;
    auto host = TRY(Socket::open());
    std::vector<std::string> errors;
    {
        auto lock = TRY(registry.lock_network(ctx.conf.name));
        for (auto& key : TRY(registry.list_endpoints(ctx.conf.name))) {
            auto stored = registry.load_endpoint(ctx.conf.name, key);
            if (!stored || !stored->ok() || stored->record.frontend != Frontend::Cni)
                continue; // corrupt ones are left to the IPAM GC below (by lease owner)
            auto& r = stored->record;
            if (std::find(valid.begin(), valid.end(), cni::Attachment { r.container_id, r.ifname }) != valid.end())
                continue;
            if (auto done = remove_firewall(r); !done)
                errors.push_back(done.error().msg);
            if (auto done = remove_links(*host, &r, "", ""); !done)
                errors.push_back(done.error().msg);
        }
    }
    // Leases, endpoint and sandbox records: the IPAM GC does exactly that for in-process IPAM.
    if (c.ipam.conf) {
        if (auto done = ipam::gc(registry, &*c.ipam.conf, ctx.conf.name, valid); !done)
            errors.push_back(done.error().msg + (done.error().details.empty() ? "" : ": " + done.error().details));
    } else {
        if (auto done = ipam::gc(registry, nullptr, ctx.conf.name, valid); !done)
            errors.push_back(done.error().msg);
        if (auto done = delegate_ipam(ctx, c.ipam, cni::Command::Gc); !done)
            errors.push_back(done.error().msg);
    }
    TRY(state.store->sync());
    if (!errors.empty()) {
        std::string details;
        for (auto& e : errors)
            details += (details.empty() ? "" : "; ") + e;
        return make_error(Code::Internal, "GC finished with " + std::to_string(errors.size()) + " error(s)", details);
    }
    return {};
}

} // namespace

cni::Plugin bridge_plugin()
{
    return cni::Plugin {
        .name = "bridge",
        .known_args = { "IP", "MAC" },
        .add = cmd_add,
        .del = cmd_del,
        .check = cmd_check,
        .status = cmd_status,
        .gc = cmd_gc,
    };
}

} // namespace cnm::drivers
