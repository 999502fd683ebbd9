#include "ipam/ipam.hpp"

#include "util/fault.hpp"
#include "util/guard.hpp"

#include <functional>

#include <algorithm>
#include <set>

namespace cnm::ipam {

namespace {

std::string join(const std::vector<std::string>& items)
{
    std::string out;
    for (auto& s : items)
        out += (out.empty() ? "" : ", ") + s;
    return "[" + out + "]";
}

Owner owner_of(const Request& r)
{
    return { r.network, r.container_id, r.ifname, r.frontend };
}

/// Creates the network record, or checks the conf against the existing one (code 7 on conflict).
Result<void> ensure_network(Registry& registry, const IpamConf* conf, const Request& request)
{
    auto stored = TRY(registry.load_network(request.network));
    auto subnets = conf ? subnets_of(*conf) : std::vector<std::string> {};
    std::string space = conf ? conf->address_space : "local";
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record " + key_str(Registry::network_key(request.network))
                + " is corrupt (" + stored.reason + ")", "remove the file; it is rebuilt from the next conf");
    if (stored.ok()) {
        auto& record = stored.record;
        if (conf && record.subnets != subnets)
            return make_error(Code::InvalidConfig, "network \"" + request.network + "\" exists with subnets "
                    + join(record.subnets) + ", but this config asks for " + join(subnets));
        if (!record.driver.empty() && !request.driver.empty() && record.driver != request.driver)
            return make_error(Code::InvalidConfig, "network \"" + request.network + "\" exists with driver \""
                    + record.driver + "\", but this config asks for \"" + request.driver + "\"");
        if (record.address_space != space)
            return make_error(Code::InvalidConfig, "network \"" + request.network + "\" exists in address space \""
                    + record.address_space + "\", but this config asks for \"" + space + "\"");
        for (auto& [key, value] : request.identity.items())
            if (record.options.contains(key) && record.options[key] != value)
                return make_error(Code::InvalidConfig, "network \"" + request.network + "\" exists with \"" + key + "\" = "
                        + record.options[key].dump() + ", but this config asks for " + value.dump());
        return {};
    }
    NetworkRecord record;
    record.name = request.network;
    record.driver = request.driver;
    record.frontend = request.frontend;
    record.address_space = space;
    record.subnets = subnets;
    record.options = request.options;
    record.created = now_rfc3339();
    Pools pools(registry.store());
    for (auto& s : subnets) {
        std::optional<IpAddr> gateway;
        for (auto& set : conf->range_sets)
            for (auto& r : set)
                if (!gateway && r.subnet.str() == s)
                    gateway = r.gateway;
        TRY(pools.add_user(PoolId { space, *IpNet::parse(s) }, request.network, gateway));
    }
    return registry.save_network(record);
}

/// Every pool the network's addresses may live in: from the record, else from the conf.
std::vector<PoolId> network_pools(Registry& registry, const IpamConf* conf, const std::string& network)
{
    std::vector<PoolId> pools;
    auto stored = registry.load_network(network);
    if (stored && stored->ok()) {
        for (auto& s : stored->record.subnets)
            if (auto net = IpNet::parse(s))
                pools.push_back({ stored->record.address_space, *net });
    } else if (conf) {
        for (auto& s : subnets_of(*conf))
            pools.push_back({ conf->address_space, *IpNet::parse(s) });
    }
    return pools;
}

/// Recovery path: the attachment's record is missing its addresses (a crash during ADD, or a
/// corrupt record), so look its leases up by owner in every pool of the network.
Result<void> release_by_scan(Registry& registry, const std::vector<PoolId>& pools, const Owner& owner)
{
    Pools store_pools(registry.store());
    for (auto& pool : pools)
        for (auto& lease : TRY(store_pools.leases(pool)))
            if (lease.owner.same(owner))
                TRY(store_pools.release(pool, lease.address, owner));
    return {};
}

/// Frees an endpoint's leases — by its record when it is ready, else by scanning the pools
/// `pools()` names (computed only then: the normal DEL path reads no network record) — and drops
/// its sandbox membership and record.
Result<void> release_endpoint(Registry& registry, const std::function<std::vector<PoolId>()>& pools, const Stored<EndpointRecord>& stored,
    const Owner& owner, const std::string& key)
{
    Pools store_pools(registry.store());
    if (stored.ok() && stored.record.phase == EndpointRecord::Phase::Ready) {
        for (auto& a : stored.record.addresses)
            if (auto pool = PoolId::parse(a.pool))
                TRY(store_pools.release(*pool, a.address.addr, owner));
    } else {
        TRY(release_by_scan(registry, pools(), owner));
    }
    fault_point("ipam-del-after-release");
    // The endpoint record goes last: it is what a repeated DEL finds to finish the job.
    std::string sandbox = stored.ok() && !stored.record.sandbox.empty() ? stored.record.sandbox : owner.container_id;
    TRY(registry.sandbox_leave(sandbox, { owner.network, key }));
    fault_point("ipam-del-after-sandbox");
    return registry.remove_endpoint(owner.network, key);
}

Result<void> prune_sandboxes(Registry& registry, const std::string& network)
{
    for (auto& name : TRY(registry.list_sandboxes())) {
        if (!name.ends_with(".json"))
            continue;
        Loaded loaded = TRY(registry.store().get({ "sandboxes", name }));
        if (!loaded.ok())
            continue;
        auto record = SandboxRecord::from_json(loaded.doc);
        if (!record)
            continue;
        for (auto& m : record->endpoints)
            if (m.network == network && TRY(registry.load_endpoint(network, m.endpoint)).absent())
                TRY(registry.sandbox_leave(record->id, m));
    }
    return {};
}

} // namespace

std::vector<std::string> subnets_of(const IpamConf& conf)
{
    std::set<std::string> unique;
    for (auto& set : conf.range_sets)
        for (auto& r : set)
            unique.insert(r.subnet.str());
    return { unique.begin(), unique.end() };
}

cni::CniResult to_result(const IpamConf& conf, const std::vector<EndpointAddress>& addresses)
{
    cni::CniResult result;
    for (auto& a : addresses)
        result.ips.push_back({ a.address, a.gateway, std::nullopt });
    result.routes = conf.routes;
    result.dns = conf.dns;
    return result;
}

Result<EndpointRecord> begin(Registry& registry, const IpamConf* conf, const Request& request, const Json& driver_state,
    const std::function<Result<void>(const EndpointRecord&)>& clean_stale)
{
    auto lock = TRY(registry.lock_network(request.network));
    TRY(ensure_network(registry, conf, request));

    std::string key = endpoint_key(request.container_id, request.ifname);
    auto existing = TRY(registry.load_endpoint(request.network, key));
    if (existing.corrupt())
        return make_error(Code::StateCorrupt, "endpoint record " + key_str(Registry::endpoint_doc(request.network, key))
                + " is corrupt (" + existing.reason + ")", "run DEL for this attachment to clear it");
    if (existing.ok()) {
        if (existing.record.phase == EndpointRecord::Phase::Ready)
            return make_error(Code::AlreadyAttached, request.container_id + "/" + request.ifname + " is already attached to network \""
                    + request.network + "\"; duplicate allocation is not allowed", "run DEL before adding it again");
        // A crashed ADD left its intent: undo what it did, then start over.
        if (clean_stale)
            TRY(clean_stale(existing.record));
        TRY(release_by_scan(registry, network_pools(registry, conf, request.network), owner_of(request)));
    }
    EndpointRecord record;
    record.network = request.network;
    record.container_id = request.container_id;
    record.ifname = request.ifname;
    record.sandbox = request.container_id;
    record.netns = request.netns;
    record.frontend = request.frontend;
    record.created = now_rfc3339();
    record.phase = EndpointRecord::Phase::Creating;
    record.driver_state = driver_state;
    TRY(registry.save_endpoint(record));
    return record;
}

Result<std::vector<EndpointAddress>> allocate(Registry& registry, const IpamConf& conf, const Request& request)
{
    // Requested addresses go to the range set that holds them; two in one set is an error.
    std::vector<std::optional<IpAddr>> wanted(conf.range_sets.size());
    for (auto& ip : conf.requested) {
        auto it = std::find_if(conf.range_sets.begin(), conf.range_sets.end(), [&](const RangeSet& set) {
            return std::any_of(set.begin(), set.end(), [&](const Range& r) { return r.contains(ip); });
        });
        if (it == conf.range_sets.end())
            return make_error(Code::AddressUnavailable, "requested IP " + ip.str() + " is in none of the configured ranges");
        auto& slot = wanted[static_cast<size_t>(it - conf.range_sets.begin())];
        if (slot)
            return make_error(Code::InvalidConfig, "requested IPs " + slot->str() + " and " + ip.str() + " fall in the same range set");
        slot = ip;
    }
    Pools pools(registry.store());
    Owner owner = owner_of(request);
    std::vector<EndpointAddress> taken;
    ArmedGuard undo([&] { (void)release(registry, taken, request); });
    for (size_t i = 0; i < conf.range_sets.size(); ++i)
        taken.push_back(TRY(pools.allocate(conf.address_space, conf.range_sets[i], owner, wanted[i])));
    undo.disarm();
    return taken;
}

Result<void> release(Registry& registry, const std::vector<EndpointAddress>& addresses, const Request& request)
{
    Pools pools(registry.store());
    for (auto& a : addresses)
        if (auto pool = PoolId::parse(a.pool))
            TRY(pools.release(*pool, a.address.addr, owner_of(request)));
    return {};
}

Result<void> commit(Registry& registry, EndpointRecord& record)
{
    std::string key = endpoint_key(record.container_id, record.ifname);
    TRY(registry.sandbox_join(record.sandbox, record.netns, record.frontend, { record.network, key }));
    fault_point("ipam-after-sandbox");
    record.phase = EndpointRecord::Phase::Ready;
    auto saved = registry.save_endpoint(record);
    if (!saved)
        (void)registry.sandbox_leave(record.sandbox, { record.network, key });
    return saved;
}

Result<void> abandon(Registry& registry, const EndpointRecord& record)
{
    std::string key = endpoint_key(record.container_id, record.ifname);
    auto lock = TRY(registry.lock_network(record.network));
    return registry.remove_endpoint(record.network, key);
}

Result<std::vector<EndpointAddress>> add(Registry& registry, const IpamConf& conf, const Request& request)
{
    EndpointRecord record = TRY(begin(registry, &conf, request, Json::object(), nullptr));
    fault_point("ipam-after-intent");
    ArmedGuard forget([&] { (void)abandon(registry, record); });
    record.addresses = TRY(allocate(registry, conf, request));
    ArmedGuard free_leases([&] { (void)release(registry, record.addresses, request); });
    fault_point("ipam-after-allocate");
    TRY(commit(registry, record));
    free_leases.disarm();
    forget.disarm();
    fault_point("ipam-after-commit");
    return record.addresses;
}

Result<void> del(Registry& registry, const IpamConf* conf, const Request& request)
{
    auto lock = TRY(registry.lock_network(request.network));
    std::string key = endpoint_key(request.container_id, request.ifname);
    auto stored = TRY(registry.load_endpoint(request.network, key));
    if (stored.absent())
        return {};
    if (stored.ok() && (stored.record.container_id != request.container_id || stored.record.ifname != request.ifname))
        return {}; // a hashed key that belongs to another attachment
    return release_endpoint(registry, [&] { return network_pools(registry, conf, request.network); }, stored, owner_of(request), key);
}

Result<void> check(Registry& registry, const IpamConf& conf, const Request& request,
    const std::optional<cni::CniResult>& prev_result)
{
    auto network = TRY(registry.load_network(request.network));
    if (!network.ok())
        return make_error(Code::CheckFailed, "network \"" + request.network + "\" has no record in the state directory");
    if (network.record.subnets != subnets_of(conf))
        return make_error(Code::InvalidConfig, "network \"" + request.network + "\" has subnets " + join(network.record.subnets)
                + ", but this config asks for " + join(subnets_of(conf)));
    std::string key = endpoint_key(request.container_id, request.ifname);
    auto stored = TRY(registry.load_endpoint(request.network, key));
    std::string who = request.container_id + "/" + request.ifname;
    if (!stored.ok() || stored.record.phase != EndpointRecord::Phase::Ready)
        return make_error(Code::CheckFailed, who + " holds no addresses on network \"" + request.network + "\"");
    Pools pools(registry.store());
    Owner owner = owner_of(request);
    for (auto& a : stored.record.addresses) {
        auto pool = PoolId::parse(a.pool);
        auto holder = pool ? TRY(pools.owner_of(*pool, a.address.addr)) : std::nullopt;
        if (!holder || !holder->same(owner))
            return make_error(Code::CheckFailed, "the lease of " + a.address.addr.str() + " for " + who + " is missing");
        if (prev_result) {
            bool listed = std::any_of(prev_result->ips.begin(), prev_result->ips.end(),
                [&](const cni::IpConfig& ip) { return ip.address == a.address; });
            if (!listed)
                return make_error(Code::CheckFailed, who + " holds " + a.address.str() + ", which prevResult does not list");
        }
    }
    if (prev_result) {
        for (auto& ip : prev_result->ips) {
            bool ours = std::any_of(stored.record.addresses.begin(), stored.record.addresses.end(),
                [&](const EndpointAddress& a) { return a.address == ip.address; });
            bool in_our_ranges = std::any_of(conf.range_sets.begin(), conf.range_sets.end(), [&](const RangeSet& set) {
                return std::any_of(set.begin(), set.end(), [&](const Range& r) { return r.subnet.contains(ip.address.addr); });
            });
            if (in_our_ranges && !ours)
                return make_error(Code::CheckFailed, "prevResult lists " + ip.address.str() + ", but " + who + " holds no lease for it");
        }
    }
    return {};
}

Result<void> status(Registry& registry, const IpamConf& conf)
{
    Pools pools(registry.store());
    for (auto& set : conf.range_sets) {
        if (!TRY(pools.has_free(conf.address_space, set))) {
            return make_error(Code::NotAvailable, "no free addresses in range set " + range_set_str(set));
        }
    }
    return {};
}

Result<void> gc(Registry& registry, const IpamConf* conf, const std::string& network,
    const std::vector<cni::Attachment>& valid)
{
    auto lock = TRY(registry.lock_network(network));
    auto is_valid = [&](const std::string& cid, const std::string& ifname) {
        return std::find(valid.begin(), valid.end(), cni::Attachment { cid, ifname }) != valid.end();
    };
    auto pools = network_pools(registry, conf, network);
    std::vector<Error> errors;
    std::set<std::pair<std::string, std::string>> kept;
    for (auto& key : TRY(registry.list_endpoints(network))) {
        auto stored = registry.load_endpoint(network, key);
        if (!stored) {
            errors.push_back(stored.release_error());
            continue;
        }
        if (stored->ok()) {
            auto& r = stored->record;
            if (r.frontend != Frontend::Cni)
                continue; // Docker's endpoints are Docker's to remove
            if (is_valid(r.container_id, r.ifname)) {
                kept.insert({ r.container_id, r.ifname });
                continue;
            }
            if (auto done = release_endpoint(registry, [&] { return pools; }, *stored, { network, r.container_id, r.ifname, r.frontend }, key); !done)
                errors.push_back(done.release_error());
        } else if (auto removed = registry.remove_endpoint(network, key); !removed) {
            errors.push_back(removed.release_error()); // corrupt: its leases are caught below
        }
    }
    // Leases whose endpoint record is gone (a crash, a corrupt record): free those of this network
    // that no valid attachment holds.
    Pools store_pools(registry.store());
    for (auto& pool : pools) {
        auto leases = store_pools.leases(pool);
        if (!leases) {
            errors.push_back(leases.release_error());
            continue;
        }
        for (auto& lease : *leases) {
            if (lease.owner.network != network || lease.owner.frontend != Frontend::Cni)
                continue;
            if (kept.count({ lease.owner.container_id, lease.owner.ifname }) || is_valid(lease.owner.container_id, lease.owner.ifname))
                continue;
            if (auto done = store_pools.release(pool, lease.address, lease.owner); !done)
                errors.push_back(done.release_error());
        }
    }
    // Sandbox memberships in this network whose endpoint record is gone (it was corrupt, or a
    // crash came between the two removals).
    if (auto dropped = prune_sandboxes(registry, network); !dropped)
        errors.push_back(dropped.release_error());
    if (errors.empty())
        return {};
    std::string details;
    for (auto& e : errors)
        details += (details.empty() ? "" : "; ") + e.msg;
    return make_error(errors.front().code, "GC finished with " + std::to_string(errors.size()) + " error(s)", details);
}

} // namespace cnm::ipam
