// The `ipam` plugin's verbs: the endpoint lifecycle with no driver and no kernel — an attachment
// that only holds addresses, as host-local's are.
#include "cni/frontend.hpp"

#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/state.hpp"

namespace cnm::cni {

namespace {

NetworkSpec network_of(const Context& ctx)
{
    return { ctx.conf.name, ctx.conf.type, Frontend::Cni, network_options(ctx.conf) };
}

} // namespace

Result<void> address_status(const Context& ctx, AddressSource& source)
{
    auto state = FileStore::open(state_dir(ctx.conf));
    if (!state)
        return make_error(Code::NotAvailable, "state directory unavailable: " + state.error().msg, state.error().details);
    if (auto writable = (*state)->check_writable(); !writable)
        return make_error(Code::NotAvailable, "not ready: " + writable.error().msg, writable.error().details);
    Registry registry(**state);
    return Endpoints(registry, nullptr, nullptr).status(ctx.conf.name, source);
}

Result<CniResult> finish_add(State& state, Result<Added> added, const std::optional<Dns>& dns)
{
    auto synced = state.store->sync();
    if (!added)
        return added.release_error();
    TRY(std::move(synced));
    CniResult result = added->attached.setup;
    if (dns)
        result.dns = *dns;
    return result;
}

Plugin ipam_plugin()
{
    Plugin p;
    p.name = "ipam";
    p.known_args = { "IP" };
    p.add = [](const Context& ctx) -> Result<CniResult> {
        PoolAddresses source(TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args)));
        auto state = TRY(State::open(ctx.conf));
        Endpoints endpoints(*state.registry, nullptr, nullptr);
        return finish_add(state, endpoints.add({ network_of(ctx), ctx.env.container_id, ctx.env.ifname, ctx.env.netns,
                                                   Target::in_netns(ctx.env.netns, ctx.env.ifname), "" },
                                     source),
            std::nullopt);
    };
    p.del = [](const Context& ctx) -> Result<void> {
        // DEL must not fail because the conf's IPAM section no longer parses: the records suffice.
        auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
        PoolAddresses source(conf ? conf.release_value() : ipam::IpamConf {});
        auto state = TRY(State::open(ctx.conf));
        Endpoints endpoints(*state.registry, nullptr, nullptr);
        TRY(endpoints.del(network_of(ctx), ctx.env.container_id, ctx.env.ifname, ctx.env.netns, source));
        return state.store->sync();
    };
    p.check = [](const Context& ctx) -> Result<void> {
        PoolAddresses source(TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args)));
        auto state = TRY(State::open(ctx.conf));
        Endpoints endpoints(*state.registry, nullptr, nullptr);
        return endpoints.check(network_of(ctx), ctx.env.container_id, ctx.env.ifname, ctx.env.netns,
            ctx.conf.prev_result.value_or(NetSetup {}), source);
    };
    p.status = [](const Context& ctx) -> Result<void> {
        PoolAddresses source(TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args)));
        return address_status(ctx, source);
    };
    p.gc = [](const Context& ctx) -> Result<void> {
        auto valid = TRY(valid_attachments(ctx.conf));
        auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
        PoolAddresses source(conf ? conf.release_value() : ipam::IpamConf {});
        auto state = TRY(State::open(ctx.conf));
        Endpoints endpoints(*state.registry, nullptr, nullptr);
        auto done = endpoints.gc(network_of(ctx), valid ? *valid : no_attachments, source);
        TRY(state.store->sync()); // what GC did free is made durable even when some of it failed
        return done;
    };
    return p;
}

} // namespace cnm::cni
