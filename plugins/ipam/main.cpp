// The `ipam` CNI plugin: a drop-in for host-local that keeps its leases in the CNM model's state
// store, so bridge networks, Docker networks (through cnm-shim) and this plugin share one pool.

#include "cni/skel.hpp"
#include "cnm/state.hpp"
#include "ipam/ipam.hpp"
#include "store/file_store.hpp"

using namespace cnm;

namespace {

ipam::Request request_of(const cni::Context& ctx)
{
    return { ctx.conf.name, ctx.conf.type, Frontend::Cni, ctx.env.container_id, ctx.env.ifname, ctx.env.netns, network_options(ctx.conf) };
}

Result<cni::CniResult> cmd_add(const cni::Context& ctx)
{
    auto conf = TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args));
    auto state = TRY(State::open(ctx.conf));
    auto addresses = TRY(ipam::add(*state.registry, conf, request_of(ctx)));
    TRY(state.store->sync());
    return ipam::to_result(conf, addresses);
}

Result<void> cmd_del(const cni::Context& ctx)
{
    // DEL must not fail because the conf's IPAM section no longer parses: the records suffice.
    auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
    auto state = TRY(State::open(ctx.conf));
    TRY(ipam::del(*state.registry, conf ? &conf.value() : nullptr, request_of(ctx)));
    return state.store->sync();
}

Result<void> cmd_check(const cni::Context& ctx)
{
    auto conf = TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args));
    auto state = TRY(State::open(ctx.conf));
    return ipam::check(*state.registry, conf, request_of(ctx), ctx.conf.prev_result);
}

Result<void> cmd_status(const cni::Context& ctx)
{
    auto conf = TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args));
    auto state = FileStore::open(cni::state_dir(ctx.conf));
    if (!state)
        return make_error(Code::NotAvailable, "state directory unavailable: " + state.error().msg, state.error().details);
    Registry registry(**state);
    return ipam::status(registry, conf);
}

Result<void> cmd_gc(const cni::Context& ctx)
{
    auto valid = TRY(cni::valid_attachments(ctx.conf));
    auto conf = ipam::parse_ipam_conf(ctx.conf, ctx.env.args);
    auto state = TRY(State::open(ctx.conf));
    auto done = ipam::gc(*state.registry, conf ? &conf.value() : nullptr, ctx.conf.name, valid.value_or(std::vector<cni::Attachment> {}));
    TRY(state.store->sync()); // what GC did free is made durable even when some of it failed
    return done;
}

} // namespace

int main(int argc, char** argv)
{
    cni::Plugin plugin {
        .name = "ipam",
        .known_args = { "IP" },
        .add = cmd_add,
        .del = cmd_del,
        .check = cmd_check,
        .status = cmd_status,
        .gc = cmd_gc,
    };
    return cni::plugin_main(plugin, argc, argv);
}
