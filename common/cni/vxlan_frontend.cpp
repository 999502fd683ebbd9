// The vxlan plugin: CNI input → the endpoint lifecycle, with the cluster's facts and blocks.
//
// ADD: the cluster config (conf "cluster", else the host's cluster file), the underlay (the VTEP),
// the network's facts (the host's cache, else etcd), which complete the conf's options — so the
// driver, the network record and every later ADD see the network's VNI, port, MTU, subnet — then
// the lifecycle with the cluster IPAM, then the remote blocks an ADD that claimed a block read.
// DEL, GC and CHECK need no etcd: the leases, links and records are all local.
#include "cni/vxlan_frontend.hpp"

#include "cni/frontend.hpp"
#include "cnm/cluster_ipam.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/state.hpp"
#include "drivers/vxlan.hpp"

namespace cnm::cni {

namespace {

struct Session {
    State state;
    std::unique_ptr<Kernel> kernel;
    Driver* driver = nullptr;
    Json options;
};

Result<Session> open(const Context& ctx)
{
    Session s;
    s.driver = find_driver("vxlan");
    if (!s.driver)
        return make_error(Code::Internal, "no driver of kind \"vxlan\"");
    s.options = network_options(ctx.conf);
    if (!s.options.contains("bridge"))
        s.options["bridge"] = drivers::default_vxlan_bridge(ctx.conf.name);
    s.state = TRY(State::open(ctx.conf));
    s.kernel = TRY(netlink_kernel());
    return s;
}

/// A source for the verbs that never claim (DEL, GC, CHECK): the cached facts, no cluster call.
std::unique_ptr<ClusterAddresses> local_source(Session& s, const Context& ctx)
{
    auto config = load_cluster_config(ctx.conf.raw);
    auto cluster = std::make_shared<Cluster>(config ? config.release_value() : ClusterConfig {});
    auto local = load_local_blocks(*s.state.store, ctx.conf.name);
    NetworkFacts facts = local && local->facts ? *local->facts : NetworkFacts {};
    return std::make_unique<ClusterAddresses>(cluster, facts, []() -> Result<Vtep> {
        return make_error(Code::Internal, "no block is claimed outside ADD");
    });
}

NetworkSpec spec_of(const Context& ctx, const Json& options)
{
    return { ctx.conf.name, "vxlan", Frontend::Cni, options };
}

Result<CniResult> add(const Context& ctx)
{
    auto s = TRY(open(ctx));
    auto config = TRY(load_cluster_config(ctx.conf.raw));
    if (!s.options.contains("underlay") && !config.underlay.empty())
        s.options["underlay"] = config.underlay;
    auto wanted = TRY(FactsWanted::parse(s.options));
    auto underlay = TRY(drivers::vxlan_underlay(*s.kernel, s.options));
    auto cluster = std::make_shared<Cluster>(config);
    auto facts = TRY(resolve_network_facts(*s.state.store, *cluster, ctx.conf.name, wanted, underlay.mtu - 50));
    complete_vxlan_options(s.options, facts);
    TRY(s.driver->validate(s.options));
    Vtep vtep { underlay.address, vtep_mac(underlay.address) };
    ClusterAddresses source(cluster, facts, [vtep]() -> Result<Vtep> { return vtep; });
    std::string mac = TRY(runtime_mac(ctx));
    Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
    AddRequest request { spec_of(ctx, s.options), ctx.env.container_id, ctx.env.ifname, ctx.env.netns,
        Target::in_netns(ctx.env.netns, ctx.env.ifname), mac };
    auto added = endpoints.add(request, source);
    if (added && source.claimed()) {
        // What this ADD read from etcd: the other hosts' blocks, routed through the vxlan device.
        if (auto programmed = drivers::program_remote_blocks(*s.kernel, s.options, source.learned()); !programmed) {
            Error e = programmed.release_error();
            if (auto undone = endpoints.del(request.network, ctx.env.container_id, ctx.env.ifname, ctx.env.netns, source); !undone)
                e.details += (e.details.empty() ? "" : "; ") + std::string("undoing the ADD: ") + undone.error().msg;
            (void)s.state.store->sync();
            return std::move(e).context("programming the routes to other hosts' blocks");
        }
    }
    return finish_add(s.state, std::move(added), ctx.conf.dns);
}

Result<void> del(const Context& ctx)
{
    auto s = TRY(open(ctx));
    auto source = local_source(s, ctx);
    Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
    TRY(endpoints.del(spec_of(ctx, s.options), ctx.env.container_id, ctx.env.ifname, ctx.env.netns, *source));
    return s.state.store->sync();
}

Result<void> check(const Context& ctx)
{
    if (!ctx.conf.prev_result)
        return make_error(Code::InvalidConfig, "invalid config: CHECK needs \"prevResult\"");
    auto s = TRY(open(ctx));
    auto source = local_source(s, ctx);
    Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
    return endpoints.check(spec_of(ctx, s.options), ctx.env.container_id, ctx.env.ifname, ctx.env.netns, *ctx.conf.prev_result, *source);
}

Result<void> status(const Context& ctx)
{
    auto config = TRY(load_cluster_config(ctx.conf.raw));
    Json options = network_options(ctx.conf);
    TRY(FactsWanted::parse(options));
    auto store = FileStore::open(state_dir(ctx.conf));
    if (!store)
        return make_error(Code::NotAvailable, "state directory unavailable: " + store.error().msg, store.error().details);
    if (auto writable = (*store)->check_writable(); !writable)
        return make_error(Code::NotAvailable, "not ready: " + writable.error().msg, writable.error().details);
    auto local = load_local_blocks(**store, ctx.conf.name);
    NetworkFacts facts = local && local->facts ? *local->facts : NetworkFacts {};
    ClusterAddresses source(std::make_shared<Cluster>(config), facts, []() -> Result<Vtep> {
        return make_error(Code::Internal, "STATUS claims nothing");
    });
    Registry registry(**store);
    return Endpoints(registry, nullptr, nullptr).status(ctx.conf.name, source);
}

Result<void> gc(const Context& ctx)
{
    auto valid = TRY(valid_attachments(ctx.conf));
    auto s = TRY(open(ctx));
    auto source = local_source(s, ctx);
    Endpoints endpoints(*s.state.registry, s.kernel.get(), s.driver);
    auto done = endpoints.gc(spec_of(ctx, s.options), valid ? *valid : no_attachments, *source);
    TRY(s.state.store->sync());
    return done;
}

} // namespace

Plugin vxlan_plugin()
{
    Plugin p;
    p.name = "vxlan";
    p.known_args = { "MAC" };
    p.add = add;
    p.del = del;
    p.check = check;
    p.status = status;
    p.gc = gc;
    return p;
}

} // namespace cnm::cni
