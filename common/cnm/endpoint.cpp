#include "cnm/endpoint.hpp"

#include "cnm/options.hpp"
#include "util/fault.hpp"
#include "util/log.hpp"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <set>
#include <tuple>

namespace cnm {

namespace {

using ipam::Owner;
using ipam::PoolId;
using ipam::Pools;

using Keep = std::vector<std::pair<std::string, std::string>>;

// Returns early with the undo list run and its failures in the error's details.
#define TRY_OR_UNDO(undo, expression)                   \
    __extension__({                                     \
        auto _r = (expression);                         \
        if (!_r.ok())                                   \
            return (undo).fail(_r.release_error());     \
        _r.release_value();                             \
    })

// The mount namespace an endpoint's netns path was seen from, which only tells whether a sandbox is
// gone where no link of the host does: a veth's host end lives exactly as long as its peer's netns,
// so an endpoint with one records none (0), and the ADD skips reading /proc/self/ns/mnt, ~20 µs of
// a fresh process's first /proc walk.
uint64_t mount_ns_for(const EndpointRecord& endpoint)
{
    const Json& state = endpoint.driver_state;
    bool veth = state.is_object() && state.contains("hostVeth") && state["hostVeth"].is_string() && !state["hostVeth"].get<std::string>().empty();
    return veth ? 0 : current_mount_ns();
}

std::string list_str(const std::vector<std::string>& items)
{
    std::string out;
    for (auto& s : items)
        out += (out.empty() ? "" : ", ") + s;
    return "[" + out + "]";
}

std::string point(Driver* driver, const char* step)
{
    return std::string(driver ? driver->kind() : "ipam") + step;
}

/// An ADD in flight holds this; GC skips attachments whose hold is taken.
Key hold_key(const std::string& network, const std::string& key)
{
    return { "networks", network, "endpoints", key };
}

/// The leases of the attachment, found by owner in the network's pools (the recovery path: a
/// crashed ADD's record has no addresses yet, or the record is corrupt).
Result<void> release_by_scan(Store& store, const std::vector<PoolId>& pools, const Owner& owner)
{
    Pools p(store);
    for (auto& pool : pools)
        for (auto& lease : TRY(p.leases(pool)))
            if (lease.owner.same(owner))
                TRY(p.release(pool, lease.address, owner));
    return {};
}

std::vector<PoolId> pools_of(const NetworkRecord& record)
{
    std::vector<PoolId> out;
    for (auto& s : record.subnets)
        if (auto net = IpNet::parse(s))
            out.push_back({ record.address_space, *net });
    return out;
}

std::string error_details(const std::vector<Error>& errors)
{
    std::string details;
    for (auto& e : errors)
        details += (details.empty() ? "" : "; ") + e.text();
    return details;
}

/// How long after its ADD returned an attachment is safe from a GC that does not list it: the
/// runtime computes its list, then calls GC, and an ADD that was in flight meanwhile is not
/// named. CNM_GC_GRACE_MS overrides the default of 1 s (tests of GC itself set 0).
int64_t gc_grace_ms()
{
    if (const char* env = std::getenv("CNM_GC_GRACE_MS"); env && *env) {
        char* end = nullptr;
        long long v = std::strtoll(env, &end, 10);
        if (end && *end == '\0' && v >= 0)
            return v;
    }
    return 1000;
}

} // namespace

// ---- Undo --------------------------------------------------------------------------------------

std::string Undo::run()
{
    std::string failures;
    if (m_first)
        m_first();
    m_first = nullptr;
    for (auto it = m_steps.rbegin(); it != m_steps.rend(); ++it) {
        // Every undone step goes to the plugin log (when one is configured), its failure too.
        if (auto done = it->step(); !done) {
            failures += (failures.empty() ? "" : "; ") + std::string("undoing ") + it->what + ": " + done.error().msg;
            log::detail("undoing " + it->what + " failed: " + done.error().text());
        } else {
            log::detail("undid " + it->what);
        }
    }
    m_steps.clear();
    return failures;
}

Error Undo::fail(Error error)
{
    std::string failures = run();
    if (!failures.empty())
        error.details += (error.details.empty() ? "" : "; ") + failures;
    return error;
}

// ---- address sources ---------------------------------------------------------------------------

Result<NetSetup> GivenAddresses::acquire(Registry&, EndpointRecord& endpoint)
{
    NetSetup out = m_given;
    for (auto& ip : out.ips) {
        ip.interface.reset();
        endpoint.addresses.push_back({ ip.address, ip.gateway, "" });
    }
    return out;
}

Result<NetSetup> PoolAddresses::acquire(Registry& registry, EndpointRecord& endpoint)
{
    // Requested addresses go to the range set that holds them; two in one set is an error.
    std::vector<std::optional<IpAddr>> wanted(m_conf.range_sets.size());
    for (auto& ip : m_conf.requested) {
        auto it = std::find_if(m_conf.range_sets.begin(), m_conf.range_sets.end(), [&](const ipam::RangeSet& set) {
            return std::any_of(set.begin(), set.end(), [&](const ipam::Range& r) { return r.contains(ip); });
        });
        if (it == m_conf.range_sets.end())
            return make_error(Code::AddressUnavailable, "requested IP " + ip.str() + " is in none of the configured ranges");
        auto& slot = wanted[static_cast<size_t>(it - m_conf.range_sets.begin())];
        if (slot)
            return make_error(Code::InvalidConfig, "requested IPs " + slot->str() + " and " + ip.str() + " fall in the same range set");
        slot = ip;
    }
    Pools pools(registry.store());
    Owner owner = lease_owner(endpoint);
    std::vector<EndpointAddress> taken;
    for (size_t i = 0; i < m_conf.range_sets.size(); ++i) {
        auto got = pools.allocate(m_conf.address_space, m_conf.range_sets[i], owner, wanted[i]);
        if (!got) {
            for (auto& a : taken)
                if (auto pool = PoolId::parse(a.pool))
                    (void)pools.release(*pool, a.address.addr, owner);
            return got.release_error();
        }
        taken.push_back(got.release_value());
    }
    endpoint.addresses = taken;
    NetSetup out;
    for (auto& a : taken)
        out.ips.push_back({ a.address, a.gateway, std::nullopt });
    out.routes = m_conf.routes;
    out.dns = m_conf.dns;
    return out;
}

Owner lease_owner(const EndpointRecord& r)
{
    return { r.network, r.container_id, r.ifname, r.frontend };
}

Result<void> release_endpoint_leases(Store& store, const EndpointRecord& endpoint,
    const std::function<Result<std::vector<PoolId>>()>& scan)
{
    Owner owner = lease_owner(endpoint);
    if (endpoint.phase == EndpointRecord::Phase::Ready && !endpoint.addresses.empty()) {
        Pools pools(store);
        for (auto& a : endpoint.addresses)
            if (auto pool = PoolId::parse(a.pool))
                TRY(pools.release(*pool, a.address.addr, owner));
        return {};
    }
    return release_by_scan(store, TRY(scan()), owner);
}

Result<void> PoolAddresses::release(Registry& registry, const EndpointRecord& endpoint)
{
    // The recovery path looks in the network's pools and in those of this conf.
    return release_endpoint_leases(registry.store(), endpoint, [&]() -> Result<std::vector<PoolId>> {
        std::vector<PoolId> ids;
        auto network = registry.load_network(endpoint.network);
        if (network && network->ok())
            ids = pools_of(network->record);
        for (auto& [net, gw] : this->pools())
            if (std::find(ids.begin(), ids.end(), PoolId { m_conf.address_space, net }) == ids.end())
                ids.push_back({ m_conf.address_space, net });
        return ids;
    });
}

Result<void> PoolAddresses::collect(Registry& registry, const std::string& network, const Keep& keep)
{
    std::vector<PoolId> ids;
    auto stored = registry.load_network(network);
    if (stored && stored->ok())
        ids = pools_of(stored->record);
    else
        for (auto& [net, gw] : pools())
            ids.push_back({ m_conf.address_space, net });
    Pools pools(registry.store());
    std::vector<Error> errors;
    std::set<std::pair<std::string, std::string>> kept(keep.begin(), keep.end());
    for (auto& pool : ids) {
        // Leases a kept record names are not read at all: only the others can be orphans.
        std::string pool_name = pool.str();
        auto leases = pools.leases(pool, [&](const IpAddr& a) { return !m_kept_leases.count({ pool_name, a.str() }); });
        if (!leases) {
            errors.push_back(leases.release_error());
            continue;
        }
        for (auto& lease : *leases) {
            if (lease.owner.network != network || lease.owner.frontend != Frontend::Cni)
                continue;
            if (kept.count({ lease.owner.container_id, lease.owner.ifname }))
                continue;
            if (auto done = pools.release(pool, lease.address, lease.owner); !done)
                errors.push_back(done.release_error());
        }
    }
    if (errors.empty())
        return {};
    return make_error(errors.front().code, "freeing leases: " + std::to_string(errors.size()) + " error(s)", error_details(errors));
}

void PoolAddresses::note_kept(const EndpointRecord& endpoint)
{
    for (auto& a : endpoint.addresses)
        m_kept_leases.insert({ a.pool, a.address.addr.str() });
}

Result<void> PoolAddresses::ready(Registry& registry)
{
    Pools pools(registry.store());
    for (auto& set : m_conf.range_sets)
        if (!TRY(pools.has_free(m_conf.address_space, set)))
            return make_error(Code::NotAvailable, "no free addresses in range set " + ipam::range_set_str(set));
    return {};
}

Result<void> check_leases(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev)
{
    std::string who = endpoint.container_id + "/" + endpoint.ifname;
    Pools pools(registry.store());
    Owner owner = lease_owner(endpoint);
    for (auto& a : endpoint.addresses) {
        auto pool = PoolId::parse(a.pool);
        auto holder = pool ? TRY(pools.owner_of(*pool, a.address.addr)) : std::nullopt;
        if (!holder || !holder->same(owner))
            return make_error(Code::CheckFailed, "the lease of " + a.address.addr.str() + " for " + who + " is missing");
        bool listed = std::any_of(prev.ips.begin(), prev.ips.end(), [&](const IpConfig& ip) { return ip.address == a.address; });
        if (!listed)
            return make_error(Code::CheckFailed, who + " holds " + a.address.str() + ", which prevResult does not list");
    }
    return {};
}

Result<void> PoolAddresses::check(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev)
{
    TRY(check_leases(registry, endpoint, prev));
    std::string who = endpoint.container_id + "/" + endpoint.ifname;
    for (auto& ip : prev.ips) {
        bool ours = std::any_of(endpoint.addresses.begin(), endpoint.addresses.end(), [&](const EndpointAddress& a) { return a.address == ip.address; });
        bool in_our_ranges = std::any_of(m_conf.range_sets.begin(), m_conf.range_sets.end(), [&](const ipam::RangeSet& set) {
            return std::any_of(set.begin(), set.end(), [&](const ipam::Range& r) { return r.subnet.contains(ip.address.addr); });
        });
        if (in_our_ranges && !ours)
            return make_error(Code::CheckFailed, "prevResult lists " + ip.address.str() + ", but " + who + " holds no lease for it");
    }
    return {};
}

std::vector<std::pair<IpNet, std::optional<IpAddr>>> PoolAddresses::pools() const
{
    std::vector<std::pair<IpNet, std::optional<IpAddr>>> out;
    for (auto& set : m_conf.range_sets)
        for (auto& r : set)
            if (std::none_of(out.begin(), out.end(), [&](auto& p) { return p.first == r.subnet; }))
                out.push_back({ r.subnet, r.gateway });
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first.str() < b.first.str(); });
    return out;
}

// ---- networks ----------------------------------------------------------------------------------

Result<Json> Endpoints::effective_options(const NetworkSpec& network)
{
    if (!m_driver)
        return network.options;
    auto stored = TRY(m_registry.load_network(network.name));
    if (!stored.ok())
        return network.options;
    return adopt_network_options(network.name, stored.record.options, network.options, m_driver->network_defaults(), "this config");
}

Result<NetworkRecord> Endpoints::ensure_network(const NetworkSpec& network, AddressSource& addresses, bool& created)
{
    created = false;
    auto stored = TRY(m_registry.load_network(network.name));
    std::vector<std::string> subnets;
    for (auto& [net, gw] : addresses.pools())
        subnets.push_back(net.str());
    std::string space = addresses.address_space();
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record " + key_str(Registry::network_key(network.name)) + " is corrupt ("
                + stored.reason + ")", "remove the file; it is rebuilt from the next conf");
    if (stored.ok()) {
        auto& record = stored.record;
        addresses.adopt_space(record.address_space);
        space = addresses.address_space();
        if (!subnets.empty() && record.subnets != subnets)
            return make_error(Code::InvalidConfig, "network \"" + network.name + "\" exists with subnets " + list_str(record.subnets)
                    + ", but this config asks for " + list_str(subnets));
        if (!record.driver.empty() && !network.driver.empty() && record.driver != network.driver)
            return make_error(Code::InvalidConfig, "network \"" + network.name + "\" exists with driver \"" + record.driver
                    + "\", but this config asks for \"" + network.driver + "\"");
        if (!subnets.empty() && record.address_space != space)
            return make_error(Code::InvalidConfig, "network \"" + network.name + "\" exists in address space \"" + record.address_space
                    + "\", but this config asks for \"" + space + "\"");
        Json identity = m_driver ? m_driver->identity(network.options) : Json::object();
        for (auto& [key, value] : identity.items())
            if (record.options.contains(key) && record.options[key] != value)
                return make_error(Code::InvalidConfig, "network \"" + network.name + "\" exists with \"" + key + "\" = "
                        + record.options[key].dump() + ", but this config asks for " + value.dump());
        return record;
    }
    NetworkRecord record;
    record.name = network.name;
    record.driver = network.driver;
    record.frontend = network.frontend;
    record.address_space = space;
    record.subnets = subnets;
    record.options = network.options;
    record.created = now_rfc3339();
    // A failure part-way (a full disk) leaves no pool user and no index entry naming a network
    // that has no record: the pool could never be freed, nor shared with Docker.
    Undo undo;
    Pools pools(m_registry.store());
    for (auto& [net, gw] : addresses.pools()) {
        PoolId pool { space, net };
        TRY_OR_UNDO(undo, pools.add_user(pool, network.name, gw));
        undo.push("pool user", [&pools, pool, name = network.name]() -> Result<void> {
            TRY(pools.remove_user(pool, name));
            return {};
        });
    }
    if (record.frontend == Frontend::Cni) { // before the record: its entries outlive a crash, not the other way
        // Pushed first: a failure may come after some of the subnets' entries were written.
        undo.push("subnet index", [this, &record]() { return m_registry.unindex_subnets(record.name, record.subnets); });
        TRY_OR_UNDO(undo, m_registry.index_subnets(record.name, record.subnets));
    }
    TRY_OR_UNDO(undo, m_registry.save_network(record));
    undo.dismiss();
    created = true;
    return record;
}

Result<void> Endpoints::drop_network_if_unused(const std::string& name)
{
    // Asked after every DEL: the emptiness test stops at the first endpoint it finds.
    if (!TRY(m_registry.store().empty_dir(Registry::endpoints_dir(name))))
        return {};
    auto stored = TRY(m_registry.load_network(name));
    if (!stored.ok() || !stored.record.docker_ids.empty() || stored.record.frontend != Frontend::Cni)
        return {};
    // Its per-network firewall chain goes too (the bridge stays, as the reference leaves it), so
    // an edited conf takes effect at the next ADD. First, while the record still says so: a
    // failure here is then retried by the next DEL or GC. Only for a driver that masquerades, so
    // macvlan/ipvlan never need nftables.
    if (m_kernel && m_driver && m_driver->firewall(stored.record.options, EndpointRecord {}).masquerade)
        TRY(m_kernel->remove_network_firewall(name));
    Pools pools(m_registry.store());
    for (auto& pool : pools_of(stored.record))
        TRY(pools.remove_user(pool, name));
    TRY(m_registry.store().remove(Registry::network_key(name)));
    TRY(m_registry.unindex_subnets(name, stored.record.subnets));
    TRY(m_registry.store().remove_dir(Registry::endpoints_dir(name)));
    TRY(m_registry.store().remove_dir(Registry::network_dir(name)));
    return {};
}

// ---- firewall ----------------------------------------------------------------------------------

Result<void> Endpoints::add_firewall(const FirewallState& state, const std::string& network, const EndpointRecord& endpoint)
{
    if (state.masquerade)
        for (auto& a : endpoint.addresses)
            TRY(m_kernel->add_masquerade(network, a.address));
    if (!state.guard_mac.empty())
        TRY(m_kernel->add_mac_guard(state.guard_ifname, state.guard_mac));
    if (!state.ports.empty())
        TRY(m_kernel->add_ports(state.ports));
    return {};
}

std::vector<Error> Endpoints::remove_firewall(const EndpointRecord& endpoint)
{
    // Every element is tried even when one fails: one failing step must not leave the others.
    FirewallState fw = FirewallState::from(endpoint);
    std::vector<Error> errors;
    if (fw.masquerade)
        for (auto& a : endpoint.addresses)
            if (auto done = m_kernel->del_masquerade(a.address); !done)
                errors.push_back(done.release_error());
    if (!fw.guard_mac.empty())
        if (auto done = m_kernel->del_mac_guard(fw.guard_ifname, fw.guard_mac); !done)
            errors.push_back(done.release_error());
    if (!fw.ports.empty())
        if (auto done = m_kernel->del_ports(fw.ports); !done)
            errors.push_back(done.release_error());
    return errors;
}

Result<void> Endpoints::detach(const EndpointRecord& endpoint)
{
    if (!m_kernel)
        return {};
    std::vector<Error> errors = remove_firewall(endpoint);
    if (m_driver)
        if (auto done = m_driver->detach(*m_kernel, endpoint); !done)
            errors.push_back(done.release_error());
    if (errors.empty())
        return {};
    Error e = errors.front();
    e.msg = "detaching " + endpoint.container_id + "/" + endpoint.ifname + ": " + e.msg;
    if (errors.size() > 1)
        e.details = error_details(errors);
    return e;
}

// ---- CNI ---------------------------------------------------------------------------------------

Result<Added> Endpoints::add(const AddRequest& request, AddressSource& addresses)
{
    Undo undo;
    const std::string& name = request.network.name;
    addresses.scope(name);
    Json options = TRY(effective_options(request.network));
    if (m_driver)
        TRY(m_driver->validate(options));
    std::string key = endpoint_key(request.container_id, request.ifname);
    EndpointRecord record;
    std::unique_ptr<Lock> hold;
    {
        auto lock = TRY(m_registry.lock_network(name));
        bool created = false;
        // The effective options: a key the conf omits is the network's, also for its identity.
        NetworkSpec effective = request.network;
        effective.options = options;
        TRY(ensure_network(effective, addresses, created));
        if (created) {
            // A failed first ADD leaves the state as it was: also no round-robin position in a
            // pool that had none before.
            std::vector<Key> cursors;
            for (auto& [net, gw] : addresses.pools())
                if (PoolId pool { addresses.address_space(), net }; !TRY_OR_UNDO(undo, m_registry.store().exists(pool.cursor())))
                    cursors.push_back(pool.cursor());
            undo.push("network record", [this, name, cursors]() -> Result<void> {
                auto lock = TRY(m_registry.lock_network(name));
                TRY(drop_network_if_unused(name));
                for (auto& cursor : cursors)
                    TRY(m_registry.store().remove(cursor, Durability::Hint));
                for (auto& cursor : cursors)
                    TRY(m_registry.store().remove_dir(Key(cursor.begin(), cursor.end() - 1)));
                return {};
            });
        }
        auto existing = TRY_OR_UNDO(undo, m_registry.load_endpoint(name, key));
        if (existing.corrupt())
            return undo.fail(make_error(Code::StateCorrupt, "endpoint record " + key_str(Registry::endpoint_doc(name, key))
                    + " is corrupt (" + existing.reason + ")", "run DEL for this attachment to clear it"));
        if (existing.ok()) {
            if (existing.record.phase == EndpointRecord::Phase::Ready && !stale_boot(existing.record.boot_id))
                return undo.fail(make_error(Code::AlreadyAttached, request.container_id + "/" + request.ifname
                        + " is already attached to network \"" + name + "\"; duplicate allocation is not allowed",
                    "run DEL before adding it again"));
            // A crashed ADD left its intent (or a record of an earlier boot is void): undo what it
            // did, then start over.
            TRY_OR_UNDO(undo, detach(existing.record));
            TRY_OR_UNDO(undo, addresses.release(m_registry, existing.record));
        }
        record.network = name;
        record.container_id = request.container_id;
        record.ifname = request.ifname;
        record.sandbox = request.container_id;
        record.netns = request.netns;
        record.frontend = request.network.frontend;
        record.created = now_rfc3339();
        record.boot_id = current_boot();
        record.phase = EndpointRecord::Phase::Creating;
        record.mac = request.mac;
        if (m_driver)
            record.driver_state = m_driver->plan(options, record, request.target);
        record.mount_ns = mount_ns_for(record);
        hold = TRY_OR_UNDO(undo, m_registry.store().hold(hold_key(name, key)));
        undo.first([&hold] { hold.reset(); });
        TRY_OR_UNDO(undo, m_registry.save_endpoint(record));
        undo.push("intent", [this, name, key]() -> Result<void> {
            auto lock = TRY(m_registry.lock_network(name));
            return m_registry.remove_endpoint(name, key);
        });
    }
    fault_point(point(m_driver, "-after-intent").c_str());

    NetSetup ipam = TRY_OR_UNDO(undo, addresses.acquire(m_registry, record));
    undo.push("addresses", [this, &addresses, &record] { return addresses.release(m_registry, record); });
    fault_point(m_driver ? point(m_driver, "-after-ipam").c_str() : "ipam-after-allocate");

    Attached attached;
    attached.setup = ipam;
    if (m_driver) {
        std::vector<IpNet> gateways;
        for (auto& ip : ipam.ips)
            if (ip.gateway)
                gateways.push_back({ *ip.gateway, ip.address.prefix });
        TRY_OR_UNDO(undo, m_driver->ensure_network(*m_kernel, options, gateways));
        undo.push("links", [this, &record] { return m_driver->detach(*m_kernel, record); });
        attached = TRY_OR_UNDO(undo, m_driver->attach(*m_kernel, options, record, request.target, ipam));
        FirewallState fw = m_driver->firewall(options, record);
        if (!fw.empty()) {
            // Recorded before the elements exist, so DEL and GC remove them after a crash.
            fw.store(record);
            TRY_OR_UNDO(undo, m_registry.save_endpoint(record));
            undo.push("firewall", [this, &record] { return detach(record); });
            TRY_OR_UNDO(undo, add_firewall(fw, name, record));
            fault_point(point(m_driver, "-after-firewall").c_str());
        }
    }

    // Commit. The leases must still be ours: nothing may leave us reporting a freed address. (GC,
    // under the network lock, skips an attachment whose hold is taken, and Docker's
    // ReleaseAddress never frees a CNI lease, so this check is the last line, not the lock.)
    {
        Pools pools(m_registry.store());
        for (auto& a : record.addresses) {
            auto pool = PoolId::parse(a.pool);
            if (!pool)
                continue;
            if (!TRY_OR_UNDO(undo, pools.held_by(*pool, a.address.addr, lease_owner(record), a.lease_version)))
                return undo.fail(make_error(Code::TryAgainLater, "the lease of " + a.address.addr.str() + " was freed while "
                        + record.container_id + "/" + record.ifname + " was being added (a concurrent GC or release)", "retry the ADD"));
        }
        fault_point("ipam-after-check");
        record.phase = EndpointRecord::Phase::Ready;
        record.ready_at_ms = now_ms();
        TRY_OR_UNDO(undo, m_registry.save_endpoint(record));
    }
    undo.dismiss();
    hold.reset();
    fault_point(point(m_driver, "-after-commit").c_str());
    return Added { std::move(record), std::move(attached) };
}

Result<void> Endpoints::del(const NetworkSpec& network, const std::string& container_id, const std::string& ifname,
    const std::string& netns, AddressSource& addresses)
{
    addresses.scope(network.name);
    std::string key = endpoint_key(container_id, ifname);
    // The kernel work (a veth delete waits for an RCU grace period, ~10 ms) runs outside the
    // network lock, so parallel DELs on one network overlap; the record is this attachment's alone.
    auto stored = TRY(m_registry.load_endpoint(network.name, key));
    if (stored.ok() && (stored.record.container_id != container_id || stored.record.ifname != ifname))
        return {}; // a hashed key that belongs to another attachment
    EndpointRecord record;
    if (stored.ok()) {
        record = stored.record;
    } else {
        record.network = network.name;
        record.container_id = container_id;
        record.ifname = ifname;
        record.sandbox = container_id;
    }
    if (record.netns.empty())
        record.netns = netns;
    TRY(detach(record));
    fault_point(point(m_driver, "-del-after-links").c_str());
    fault_point(point(m_driver, "-del-after-link").c_str());
    if (stored.absent() && addresses.recorded())
        return {}; // nothing was ever recorded, so nothing is held: no lock, no write
    auto lock = TRY(m_registry.lock_network(network.name));
    TRY(addresses.release(m_registry, record));
    fault_point("ipam-del-after-release");
    fault_point(point(m_driver, "-del-after-ipam").c_str());
    if (stored.absent())
        return drop_network_if_unused(network.name);
    TRY(m_registry.remove_endpoint(network.name, key));
    TRY(m_registry.store().held(hold_key(network.name, key))); // removes a crashed ADD's hold
    return drop_network_if_unused(network.name);
}

Result<void> Endpoints::check(const NetworkSpec& network, const std::string& container_id, const std::string& ifname,
    const std::string& netns, const NetSetup& prev, AddressSource& addresses)
{
    addresses.scope(network.name);
    auto stored_network = TRY(m_registry.load_network(network.name));
    if (!stored_network.ok())
        return make_error(Code::CheckFailed, "network \"" + network.name + "\" has no record in the state directory");
    addresses.adopt_space(stored_network.record.address_space);
    std::vector<std::string> subnets;
    for (auto& [net, gw] : addresses.pools())
        subnets.push_back(net.str());
    if (!subnets.empty() && stored_network.record.subnets != subnets)
        return make_error(Code::InvalidConfig, "network \"" + network.name + "\" has subnets " + list_str(stored_network.record.subnets)
                + ", but this config asks for " + list_str(subnets));
    auto stored = TRY(m_registry.load_endpoint(network.name, endpoint_key(container_id, ifname)));
    if (!stored.ok() || stored.record.phase != EndpointRecord::Phase::Ready)
        return make_error(Code::CheckFailed, container_id + "/" + ifname + (m_driver ? " is not attached to network \"" : " holds no addresses on network \"")
                + network.name + "\"");
    if (m_driver) {
        Json options = TRY(effective_options(network));
        TRY(m_driver->validate(options));
        EndpointRecord record = stored.record;
        record.netns = netns.empty() ? record.netns : netns;
        TRY(m_driver->check(*m_kernel, options, record, prev));
        FirewallState fw = FirewallState::from(record);
        if (fw.masquerade)
            for (auto& a : record.addresses)
                if (!TRY(m_kernel->has_masquerade(a.address)))
                    return make_error(Code::CheckFailed, "the masquerade rule for " + a.address.addr.str() + " is missing");
        if (!fw.guard_mac.empty() && !TRY(m_kernel->has_mac_guard(fw.guard_ifname, fw.guard_mac)))
            return make_error(Code::CheckFailed, "the MAC spoof check on " + fw.guard_ifname + " is missing");
    }
    return addresses.check(m_registry, stored.record, prev);
}

Result<void> Endpoints::status(const std::string& network, AddressSource& addresses)
{
    addresses.scope(network);
    auto stored = TRY(m_registry.load_network(network));
    if (stored.ok())
        addresses.adopt_space(stored.record.address_space);
    return addresses.ready(m_registry);
}

Result<void> Endpoints::gc(const NetworkSpec& network, const Keep& valid, AddressSource& addresses)
{
    addresses.scope(network.name);
    // Indexed before the lock, so that an ADD on the network need not wait for it: each entry's
    // hash beside a pointer to it, sorted by hash (integers: sorting 10 000 pairs of strings took
    // 3 ms of comparisons, and moved or copied each string a dozen times).
    auto hash_of = [](const std::string& cid, const std::string& ifname) {
        size_t h = std::hash<std::string_view> {}(cid);
        return h ^ (std::hash<std::string_view> {}(ifname) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
    };
    std::vector<std::pair<size_t, const Keep::value_type*>> index;
    index.reserve(valid.size());
    for (auto& v : valid)
        index.emplace_back(hash_of(v.first, v.second), &v);
    std::sort(index.begin(), index.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    auto lock = TRY(m_registry.lock_network(network.name));
    auto is_valid = [&](const std::string& cid, const std::string& ifname) {
        size_t h = hash_of(cid, ifname);
        auto at = std::lower_bound(index.begin(), index.end(), h, [](const auto& a, size_t b) { return a.first < b; });
        for (; at != index.end() && at->first == h; ++at)
            if (at->second->first == cid && at->second->second == ifname)
                return true;
        return false;
    };
    std::vector<Error> errors;
    Keep kept;
    int64_t now = now_ms();
    int64_t grace_ms = gc_grace_ms();
    for (auto& key : TRY(m_registry.list_endpoints(network.name))) {
        auto stored = m_registry.load_endpoint(network.name, key);
        if (!stored) {
            errors.push_back(stored.release_error());
            continue;
        }
        if (!stored->ok()) {
            // Corrupt: its leases are freed by owner below, unless an ADD is writing it now.
            if (TRY(m_registry.store().held(hold_key(network.name, key))))
                continue;
            if (auto removed = m_registry.remove_endpoint(network.name, key); !removed)
                errors.push_back(removed.release_error());
            continue;
        }
        auto& r = stored->record;
        if (r.frontend != Frontend::Cni)
            continue; // Docker's endpoints are Docker's to remove
        // In flight (its ADD holds it), or ready so recently that the runtime may have computed
        // its list while the ADD was still in flight: not GC's to free.
        // A record of an earlier boot is void whatever the list says: the sweep removes it.
        bool stale = stale_boot(r.boot_id);
        bool recent = r.phase == EndpointRecord::Phase::Ready && r.ready_at_ms > 0 && now - r.ready_at_ms < grace_ms && now >= r.ready_at_ms;
        if (!stale && (is_valid(r.container_id, r.ifname) || recent || TRY(m_registry.store().held(hold_key(network.name, key))))) {
            kept.push_back({ r.container_id, r.ifname });
            addresses.note_kept(r);
            continue;
        }
        // While a firewall element or link may remain, the record stays: it is what names them.
        if (auto done = detach(r); !done) {
            errors.push_back(done.release_error());
            kept.push_back({ r.container_id, r.ifname });
            continue;
        }
        auto step = [&](Result<void> done) {
            if (!done)
                errors.push_back(done.release_error());
            return done.ok();
        };
        if (step(addresses.release(m_registry, r)))
            step(m_registry.remove_endpoint(network.name, key));
    }
    // Leases whose endpoint record is gone (a crash, a corrupt record).
    if (auto done = addresses.collect(m_registry, network.name, kept); !done)
        errors.push_back(done.release_error());
    // What an earlier build left; its failure is reported, but does not keep the network's own
    // sweep from finishing.
    auto legacy = m_registry.drop_legacy_sandboxes();
    if (errors.empty()) {
        TRY(drop_network_if_unused(network.name));
        return legacy;
    }
    if (!legacy)
        errors.push_back(legacy.release_error());
    return make_error(errors.front().code, "GC finished with " + std::to_string(errors.size()) + " error(s)", error_details(errors));
}

// ---- Docker ------------------------------------------------------------------------------------

Result<NetworkRecord> Endpoints::create_network(const NetworkSpec& network, const std::string& address_space,
    const std::vector<std::pair<IpNet, std::optional<IpAddr>>>& subnets, const std::string& docker_id)
{
    std::vector<std::string> names;
    for (auto& [net, gw] : subnets)
        names.push_back(net.str());
    std::sort(names.begin(), names.end());
    auto stored = TRY(m_registry.load_network(network.name));
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record of \"" + network.name + "\" is corrupt (" + stored.reason + ")");
    NetworkRecord record;
    bool created = false;
    if (stored.ok()) {
        record = stored.record;
        if (!record.driver.empty() && record.driver != network.driver)
            return make_error(Code::InvalidConfig, "network \"" + network.name + "\" exists with driver \"" + record.driver + "\", not \""
                    + network.driver + "\"");
        if (record.address_space != address_space)
            return make_error(Code::InvalidConfig, "network \"" + network.name + "\" is in address space \"" + record.address_space
                    + "\", not \"" + address_space + "\"");
        for (auto& s : names)
            if (std::find(record.subnets.begin(), record.subnets.end(), s) == record.subnets.end())
                return make_error(Code::InvalidConfig, "network \"" + network.name + "\" has subnets " + list_str(record.subnets)
                        + ", but docker network create asks for " + list_str(names));
        // Checks the -o keys against the network's; the network keeps its own.
        (void)TRY(adopt_network_options(network.name, record.options, network.options, m_driver->network_defaults(), "docker network create -o"));
    } else {
        created = true;
        record.name = network.name;
        record.driver = network.driver;
        record.frontend = Frontend::Docker;
        record.address_space = address_space;
        record.subnets = names;
        record.created = now_rfc3339();
        record.options = network.options;
    }
    TRY(m_driver->validate(record.options));
    Pools pools(m_registry.store());
    std::vector<IpNet> gateways;
    for (auto& [net, given] : subnets) {
        auto gw = TRY(pools.gateway({ address_space, net }));
        if (!gw)
            gw = given;
        if (gw)
            gateways.push_back({ *gw, net.prefix });
    }
    TRY(m_driver->ensure_network(*m_kernel, record.options, gateways));
    if (created)
        for (auto& [net, gw] : subnets)
            TRY(pools.add_user({ address_space, net }, network.name, gw));
    if (std::find(record.docker_ids.begin(), record.docker_ids.end(), docker_id) == record.docker_ids.end())
        record.docker_ids.push_back(docker_id);
    TRY(m_registry.save_network(record));
    return record;
}

Result<void> Endpoints::delete_network(const std::string& name, const std::string& docker_id)
{
    auto stored = TRY(m_registry.load_network(name));
    if (!stored.ok())
        return {};
    auto& record = stored.record;
    record.docker_ids.erase(std::remove(record.docker_ids.begin(), record.docker_ids.end(), docker_id), record.docker_ids.end());
    // A network Docker made goes with its last Docker binding and last endpoint (CNI ones
    // included); one a CNI conf made stays for CNI.
    bool last = record.frontend == Frontend::Docker && record.docker_ids.empty() && TRY(m_registry.list_endpoints(name)).empty();
    if (!last)
        return m_registry.save_network(record);
    // The network's masquerade chain, as drop_network_if_unused does for a CNI network.
    if (m_kernel && m_driver && m_driver->firewall(record.options, EndpointRecord {}).masquerade)
        TRY(m_kernel->remove_network_firewall(name));
    Pools pools(m_registry.store());
    for (auto& pool : pools_of(record))
        TRY(pools.remove_user(pool, name));
    TRY(m_registry.store().remove(Registry::network_key(name)));
    TRY(m_registry.store().remove_dir(Registry::endpoints_dir(name)));
    TRY(m_registry.store().remove_dir(Registry::network_dir(name)));
    if (m_driver)
        TRY(m_driver->remove_network(*m_kernel, record.options));
    return {};
}

Result<EndpointRecord> Endpoints::create(const std::string& network, const std::string& endpoint_id,
    const std::vector<EndpointAddress>& addresses, const std::string& mac)
{
    EndpointRecord record;
    record.network = network;
    record.container_id = endpoint_id;
    record.ifname = "docker";
    record.frontend = Frontend::Docker;
    record.phase = EndpointRecord::Phase::Ready;
    record.created = now_rfc3339();
    record.boot_id = current_boot();
    record.mac = mac;
    record.addresses = addresses;
    TRY(m_registry.save_endpoint(record));
    return record;
}

Result<Attached> Endpoints::join(EndpointRecord& endpoint, const Target& target, const std::string& sandbox, const std::string& netns)
{
    auto network = TRY(m_registry.load_network(endpoint.network));
    if (!network.ok())
        return make_error(Code::StateCorrupt, "network \"" + endpoint.network + "\" has no usable record", network.reason);
    const Json& options = network.record.options;
    TRY(m_driver->validate(options));
    Undo undo;
    // A Join that follows a failed one finds its links: start over.
    TRY(detach(endpoint));
    FirewallState none;
    none.store(endpoint);
    endpoint.driver_state = m_driver->plan(options, endpoint, target);
    TRY(m_registry.save_endpoint(endpoint));
    NetSetup given;
    for (auto& a : endpoint.addresses)
        given.ips.push_back({ a.address, a.gateway, std::nullopt });
    std::vector<IpNet> gateways;
    for (auto& a : endpoint.addresses)
        if (a.gateway)
            gateways.push_back({ *a.gateway, a.address.prefix });
    TRY(m_driver->ensure_network(*m_kernel, options, gateways));
    undo.push("links", [this, &endpoint] { return m_driver->detach(*m_kernel, endpoint); });
    Attached attached = TRY_OR_UNDO(undo, m_driver->attach(*m_kernel, options, endpoint, target, given));
    FirewallState fw = m_driver->firewall(options, endpoint);
    if (!fw.empty()) {
        fw.store(endpoint);
        TRY_OR_UNDO(undo, m_registry.save_endpoint(endpoint));
        undo.push("firewall", [this, &endpoint] { return detach(endpoint); });
        TRY_OR_UNDO(undo, add_firewall(fw, endpoint.network, endpoint));
    }
    endpoint.sandbox = sandbox;
    endpoint.netns = netns;
    endpoint.mount_ns = mount_ns_for(endpoint);
    TRY_OR_UNDO(undo, m_registry.save_endpoint(endpoint));
    undo.dismiss();
    return attached;
}

Result<void> Endpoints::leave(EndpointRecord& endpoint)
{
    std::vector<Error> errors = remove_firewall(endpoint);
    if (!errors.empty())
        return make_error(errors.front().code, errors.front().msg, error_details(errors));
    FirewallState none;
    none.store(endpoint);
    endpoint.sandbox.clear();
    endpoint.netns.clear();
    return m_registry.save_endpoint(endpoint);
}

Result<void> Endpoints::publish(EndpointRecord& endpoint, const std::vector<firewall::PortMap>& ports)
{
    FirewallState fw = FirewallState::from(endpoint);
    // Publishing again replaces what an earlier call published.
    TRY(m_kernel->del_ports(fw.ports));
    fw.ports = ports;
    fw.store(endpoint);
    // Recorded before the elements exist, so DeleteEndpoint or GC can remove them after a crash.
    TRY(m_registry.save_endpoint(endpoint));
    if (ports.empty())
        return {};
    auto added = m_kernel->add_ports(ports);
    if (!added) {
        fw.ports.clear();
        fw.store(endpoint);
        (void)m_registry.save_endpoint(endpoint);
        return added.release_error();
    }
    return {};
}

Result<void> Endpoints::remove(const std::string& network, const std::string& key)
{
    TRY(m_registry.remove_endpoint(network, key));
    return drop_network_if_unused(network);
}

Result<void> Endpoints::forget(const EndpointRecord& endpoint, AddressSource* addresses)
{
    TRY(detach(endpoint));
    auto lock = TRY(m_registry.lock_network(endpoint.network));
    if (addresses)
        TRY(addresses->release(m_registry, endpoint));
    return remove(endpoint.network, endpoint_key(endpoint.container_id, endpoint.ifname));
}

// ---- FirewallState -----------------------------------------------------------------------------

FirewallState FirewallState::from(const EndpointRecord& record)
{
    FirewallState s;
    const Json& d = record.driver_state;
    if (!d.is_object())
        return s;
    s.masquerade = d.contains("ipMasq") && d["ipMasq"].is_boolean() && d["ipMasq"].get<bool>();
    if (d.contains("macGuard") && d["macGuard"].is_string() && d.contains("hostVeth") && d["hostVeth"].is_string()) {
        s.guard_mac = d["macGuard"].get<std::string>();
        s.guard_ifname = d["hostVeth"].get<std::string>();
    }
    if (d.contains("ports") && d["ports"].is_array())
        for (auto& p : d["ports"])
            if (auto m = firewall::port_map_from_json(p))
                s.ports.push_back(*m);
    return s;
}

void FirewallState::store(EndpointRecord& record) const
{
    Json& d = record.driver_state;
    if (!d.is_object())
        d = Json::object();
    d.erase("ipMasq");
    d.erase("macGuard");
    d.erase("ports");
    if (masquerade)
        d["ipMasq"] = true;
    if (!guard_mac.empty())
        d["macGuard"] = guard_mac; // the guarded interface is the driver's "hostVeth"
    if (!ports.empty()) {
        Json list = Json::array();
        for (auto& p : ports)
            list.push_back(firewall::port_map_json(p));
        d["ports"] = list;
    }
}

} // namespace cnm
