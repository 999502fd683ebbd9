// The CNI front-end: each verb of a link plugin (bridge, macvlan, ipvlan) and of the ipam plugin
// is a translation of CNI_* and the conf into the endpoint lifecycle (cnm/endpoint.hpp).
#include "cni/frontend.hpp"

#include "cni/exec.hpp"
#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/state.hpp"

namespace cnm::cni {

namespace {

/// Delegated IPAM: another plugin found in CNI_PATH (host-local, static, dhcp), run with the
/// same environment and the whole conf, exactly as the reference plugins do.
class DelegatedAddresses final : public AddressSource {
public:
    DelegatedAddresses(const Context& ctx, std::string type) : m_ctx(ctx), m_type(std::move(type)) { }
    Result<NetSetup> acquire(Registry&, EndpointRecord& endpoint) override
    {
        auto out = TRY(exec_add(m_type, m_ctx.env, delegate_input(m_ctx.conf)));
        for (auto& ip : out.ips) {
            ip.interface.reset();
            endpoint.addresses.push_back({ ip.address, ip.gateway, "" }); // for CHECK and for people: no pool of ours
        }
        out.interfaces.clear();
        return out;
    }
    Result<void> release(Registry&, const EndpointRecord&) override { return run(Command::Del); }
    Result<void> collect(Registry&, const std::string&, const std::vector<std::pair<std::string, std::string>>&) override { return run(Command::Gc); }
    Result<void> ready(Registry&) override { return run(Command::Status); }
    Result<void> check(Registry&, const EndpointRecord&, const NetSetup&) override { return run(Command::Check); }

private:
    Result<void> run(Command command)
    {
        Env env = m_ctx.env;
        env.command = command;
        auto out = exec_plugin(m_type, command, env, delegate_input(m_ctx.conf));
        if (!out)
            return out.release_error();
        return {};
    }
    const Context& m_ctx;
    std::string m_type;
};

std::string ipam_type(const Context& ctx)
{
    if (ctx.conf.ipam.is_object())
        if (auto type = ctx.conf.ipam.find("type"); type != ctx.conf.ipam.end() && type->is_string())
            return type->get<std::string>();
    return "";
}

/// `strict` false (DEL, GC): an IPAM section that no longer parses still gives a source that
/// frees what the records name.
Result<std::unique_ptr<AddressSource>> address_source(const Context& ctx, bool strict)
{
    std::string type = ipam_type(ctx);
    if (type == "ipam") {
        auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
        if (!conf && strict)
            return conf.release_error();
        return std::unique_ptr<AddressSource>(new PoolAddresses(conf ? conf.release_value() : ipam::IpamConf {}));
    }
    if (!type.empty())
        return std::unique_ptr<AddressSource>(new DelegatedAddresses(ctx, type));
    // No IPAM: L2 only, or (chained ipvlan) the addresses of prevResult.
    if (ctx.conf.type == "ipvlan" && ctx.conf.prev_result && !ctx.conf.prev_result->ips.empty()) {
        NetSetup given;
        given.ips = ctx.conf.prev_result->ips;
        given.routes = ctx.conf.prev_result->routes;
        given.dns = ctx.conf.prev_result->dns;
        return std::unique_ptr<AddressSource>(new GivenAddresses(given));
    }
    if (ctx.conf.type == "ipvlan" && strict && ctx.env.command == Command::Add)
        return make_error(Code::InvalidConfig, "invalid config: \"ipam\" must be given unless the plugin is chained after one whose prevResult has addresses");
    return std::unique_ptr<AddressSource>(new GivenAddresses());
}

NetworkSpec network_of(const Context& ctx, const std::string& kind)
{
    NetworkSpec spec { ctx.conf.name, kind, Frontend::Cni, network_options(ctx.conf) };
    // Chained after a plugin that made one interface, ipvlan takes that as its master (the
    // reference's rule).
    const auto& prev = ctx.conf.prev_result;
    if (kind == "ipvlan" && !spec.options.contains("master") && prev && prev->interfaces.size() == 1 && !prev->interfaces[0].name.empty())
        spec.options["master"] = prev->interfaces[0].name;
    return spec;
}

Result<std::optional<std::string>> mac_from(const Json& obj, const char* key, const std::string& where)
{
    auto text = TRY(json_string(obj, key, where));
    if (!text || text->empty())
        return std::optional<std::string> {};
    if (!netlink::parse_mac(*text))
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "." + key + "\" = \"" + *text + "\" is not a MAC address");
    return text;
}

/// MAC for the container interface: runtimeConfig.mac wins over args.cni.mac over CNI_ARGS MAC.
Result<std::string> requested_mac(const Context& ctx)
{
    std::string mac;
    if (auto m = ctx.env.args.get("MAC")) {
        if (!netlink::parse_mac(*m))
            return make_error(Code::InvalidEnv, "CNI_ARGS: MAC=\"" + *m + "\" is not a MAC address");
        mac = *m;
    }
    if (ctx.conf.args.is_object()) {
        auto cni = TRY(json_object(ctx.conf.args, "cni", "args"));
        if (!cni.is_null())
            if (auto m = TRY(mac_from(cni, "mac", "args.cni")))
                mac = *m;
    }
    if (ctx.conf.runtime_config.is_object())
        if (auto m = TRY(mac_from(ctx.conf.runtime_config, "mac", "runtimeConfig")))
            mac = *m;
    if (mac.empty())
        return mac;
    auto parsed = *netlink::parse_mac(mac);
    if (parsed[0] & 1)
        return make_error(Code::InvalidConfig, "invalid config: MAC " + mac + " is a multicast address", "a container interface needs a unicast MAC");
    return netlink::mac_str(parsed);
}

struct Session {
    State state;
    std::unique_ptr<Kernel> kernel;
    Driver* driver = nullptr;
};

Result<Session> open(const Context& ctx, const std::string& kind)
{
    Session s;
    s.driver = find_driver(kind);
    if (!s.driver)
        return make_error(Code::Internal, "no driver of kind \"" + kind + "\"");
    s.state = TRY(State::open(ctx.conf));
    s.kernel = TRY(netlink_kernel());
    return s;
}

} // namespace

Result<std::string> runtime_mac(const Context& ctx)
{
    return requested_mac(ctx);
}

Plugin link_plugin(const std::string& kind)
{
    Plugin p;
    p.name = kind;
    p.known_args = { "IP", "MAC" };
    p.add = [kind](const Context& ctx) -> Result<CniResult> {
        auto s = TRY(open(ctx, kind));
        auto source = TRY(address_source(ctx, true));
        std::string mac = TRY(requested_mac(ctx));
        if (!mac.empty() && !s.driver->own_mac())
            return make_error(Code::InvalidConfig, "invalid config: " + kind + " interfaces share their master's MAC address: a custom MAC ("
                    + mac + ") cannot be set");
        Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
        AddRequest request { network_of(ctx, kind), ctx.env.container_id, ctx.env.ifname, ctx.env.netns,
            Target::in_netns(ctx.env.netns, ctx.env.ifname), mac };
        return finish_add(s.state, endpoints.add(request, *source), ctx.conf.dns);
    };
    p.del = [kind](const Context& ctx) -> Result<void> {
        auto s = TRY(open(ctx, kind));
        auto source = TRY(address_source(ctx, false));
        Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
        TRY(endpoints.del(network_of(ctx, kind), ctx.env.container_id, ctx.env.ifname, ctx.env.netns, *source));
        return s.state.store->sync();
    };
    p.check = [kind](const Context& ctx) -> Result<void> {
        if (!ctx.conf.prev_result)
            return make_error(Code::InvalidConfig, "invalid config: CHECK needs \"prevResult\"");
        auto s = TRY(open(ctx, kind));
        auto source = TRY(address_source(ctx, true));
        Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
        return endpoints.check(network_of(ctx, kind), ctx.env.container_id, ctx.env.ifname, ctx.env.netns, *ctx.conf.prev_result, *source);
    };
    p.status = [kind](const Context& ctx) -> Result<void> {
        Driver* driver = find_driver(kind);
        TRY(driver->validate(network_options(ctx.conf)));
        auto source = TRY(address_source(ctx, true));
        auto kernel = netlink_kernel();
        if (!kernel)
            return make_error(Code::NotAvailable, "netlink is unavailable", kernel.error().msg);
        return address_status(ctx, *source);
    };
    p.gc = [kind](const Context& ctx) -> Result<void> {
        auto valid = TRY(valid_attachments(ctx.conf));
        auto s = TRY(open(ctx, kind));
        auto source = TRY(address_source(ctx, false));
        Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
        auto done = endpoints.gc(network_of(ctx, kind), valid ? *valid : no_attachments, *source);
        TRY(s.state.store->sync()); // what GC did free is made durable even when some of it failed
        return done;
    };
    return p;
}

} // namespace cnm::cni
