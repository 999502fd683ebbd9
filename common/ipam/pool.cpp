#include "ipam/pool.hpp"

#include "util/fault.hpp"

#include <algorithm>

namespace cnm::ipam {

namespace {

// Bound on the addresses one allocation probes, so a nearly full IPv6 range cannot spin forever.
constexpr u128 max_probes = 1u << 20;

// A CNI lease is a per-boot fact (stamped with the boot, written without a flush): after a reboot
// it is void, and the address is allocatable at once. Docker's leases are durable: Docker
// restores its endpoints after a restart and releases the stale ones itself.
bool per_boot(const Owner& o)
{
    return o.frontend == Frontend::Cni;
}

Json owner_json(const Owner& o)
{
    Members doc;
    doc.add("network", o.network).add("containerID", o.container_id).add("ifname", o.ifname).add("frontend", frontend_name(o.frontend));
    if (per_boot(o) && !current_boot().empty())
        doc.add("bootId", current_boot());
    return doc.done();
}

/// A lease of another boot (its holder ended with that boot).
bool stale_lease(const Json& doc)
{
    auto it = doc.find("bootId");
    return it != doc.end() && it->is_string() && stale_boot(it->get<std::string>());
}

std::optional<Owner> owner_from(const Json& doc)
{
    try {
        Owner o;
        o.network = doc.at("network").get<std::string>();
        o.container_id = doc.at("containerID").get<std::string>();
        o.ifname = doc.at("ifname").get<std::string>();
        o.frontend = parse_frontend(doc.value("frontend", "cni")).value_or(Frontend::Cni);
        return o;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

// pool.json, checked field by field: a wrong type is a corrupt record, not an exception.
Result<Json> load_pool_doc(Store& store, const PoolId& pool)
{
    Loaded loaded = TRY(store.get(pool.doc()));
    auto corrupt = [&](const std::string& why) {
        return make_error(Code::StateCorrupt, "pool record " + key_str(pool.doc()) + " is corrupt (" + why + ")",
            "remove the file; the leases beside it stay valid");
    };
    if (loaded.status == Loaded::Status::Corrupt)
        return corrupt(loaded.reason);
    if (!loaded.ok())
        return Json { { "space", pool.space }, { "subnet", pool.subnet.str() }, { "users", Json::array() } };
    auto users = loaded.doc.find("users");
    if (users != loaded.doc.end() && (!users->is_array() || !std::all_of(users->begin(), users->end(), [](const Json& u) { return u.is_string(); })))
        return corrupt("users must be a list of names");
    for (const char* key : { "last", "gateway" }) {
        auto field = loaded.doc.find(key);
        if (field != loaded.doc.end() && (!field->is_string() || !IpAddr::parse(field->get<std::string>())))
            return corrupt(std::string(key) + " must be an address");
    }
    auto refs = loaded.doc.find("dockerRefs");
    if (refs != loaded.doc.end() && !refs->is_number_unsigned())
        return corrupt("dockerRefs must be a count");
    return loaded.doc;
}

std::vector<std::string> users_of(const Json& doc)
{
    return doc.contains("users") ? doc["users"].get<std::vector<std::string>>() : std::vector<std::string> {};
}

uint64_t docker_refs(const Json& doc)
{
    return doc.value("dockerRefs", uint64_t(0));
}

std::optional<IpAddr> gateway_of(const Json& doc)
{
    return doc.contains("gateway") ? IpAddr::parse(doc["gateway"].get<std::string>()) : std::nullopt;
}

} // namespace

IpAddr first_host(const IpNet& subnet)
{
    IpAddr first = subnet.network();
    return first < subnet.last() ? first.next() : first;
}

std::string PoolId::str() const
{
    return space + "/" + subnet.str();
}

std::optional<PoolId> PoolId::parse(std::string_view text)
{
    auto slash = text.find('/');
    if (slash == std::string_view::npos || slash == 0)
        return std::nullopt;
    auto net = IpNet::parse(text.substr(slash + 1));
    if (!net)
        return std::nullopt;
    return PoolId { std::string(text.substr(0, slash)), *net };
}

Key PoolId::dir() const
{
    return { "ipam", space, subnet.network().str() + "_" + std::to_string(subnet.prefix) };
}

Key PoolId::doc() const
{
    auto k = dir();
    k.push_back("pool.json");
    return k;
}

Key PoolId::cursor() const
{
    auto k = dir();
    k.push_back("cursor");
    return k;
}

Key PoolId::leases_dir() const
{
    auto k = dir();
    k.push_back("leases");
    return k;
}

Key PoolId::lease(const IpAddr& a) const
{
    auto k = leases_dir();
    k.push_back(a.str());
    return k;
}

Result<void> Pools::add_user(const PoolId& pool, const std::string& network, std::optional<IpAddr> gateway)
{
    auto lock = TRY(m_store.lock(pool.dir()));
    Json doc = TRY(load_pool_doc(m_store, pool));
    auto users = users_of(doc);
    bool known = std::find(users.begin(), users.end(), network) != users.end();
    if (known && (!gateway || doc.contains("gateway")))
        return {};
    if (!known)
        users.push_back(network);
    doc["users"] = users;
    if (gateway && !doc.contains("gateway"))
        doc["gateway"] = gateway->str();
    return m_store.put(pool.doc(), doc);
}

Result<std::optional<IpAddr>> Pools::docker_retain(const PoolId& pool)
{
    auto lock = TRY(m_store.lock(pool.dir()));
    Json doc = TRY(load_pool_doc(m_store, pool));
    doc["dockerRefs"] = docker_refs(doc) + 1;
    // A pool no network uses yet gets the first host as its gateway in this same write:
    // RequestPool names it to Docker, which then asks for no gateway, and a --gateway may still
    // replace it while this is the pool's only holder (ensure_gateway). Recorded, it is kept out
    // of every allocation, CNI's included, like any gateway. None for a /32 (/128), nor for a pool
    // a network uses without a gateway.
    if (!doc.contains("gateway") && users_of(doc).empty() && pool.subnet.network() < pool.subnet.last())
        doc["gateway"] = first_host(pool.subnet).str();
    TRY(m_store.put(pool.doc(), doc));
    return gateway_of(doc);
}

Result<void> Pools::docker_release(const PoolId& pool)
{
    if (!TRY(m_store.exists(pool.doc())))
        return {}; // unknown: no lock file is created for it either
    auto lock = TRY(m_store.lock(pool.dir()));
    Loaded loaded = TRY(m_store.get(pool.doc()));
    if (!loaded.ok())
        return {};
    Json doc = TRY(load_pool_doc(m_store, pool));
    uint64_t refs = docker_refs(doc);
    if (refs > 1)
        doc["dockerRefs"] = refs - 1;
    else
        doc.erase("dockerRefs");
    if (!doc.contains("dockerRefs")) {
        // Docker's last reference: every lease Docker took goes with it (a shim killed between
        // RequestAddress and CreateEndpoint leaves one that no ReleaseAddress will name), and so
        // does the gateway Docker reserved, unless a CNI network uses the pool.
        for (auto& name : TRY(m_store.list(pool.leases_dir()))) {
            auto address = IpAddr::parse(name);
            if (!address)
                continue;
            Loaded lease = TRY(m_store.get(pool.lease(*address)));
            auto holder = lease.ok() ? owner_from(lease.doc) : std::nullopt;
            if (holder && holder->frontend == Frontend::Docker)
                TRY(m_store.remove(pool.lease(*address)));
        }
        if (users_of(doc).empty())
            doc.erase("gateway");
    }
    if (users_of(doc).empty() && !doc.contains("dockerRefs") && TRY(m_store.list(pool.leases_dir())).empty()) {
        // The cursor stays: a network made again on this subnet (an edited conf) goes on where
        // the round-robin was, so a just-freed address is not handed out again at once.
        TRY(m_store.remove(pool.doc()));
        TRY(m_store.remove_dir(pool.leases_dir()));
        return m_store.remove_dir(pool.dir());
    }
    return m_store.put(pool.doc(), doc);
}

Result<bool> Pools::exists(const PoolId& pool)
{
    return m_store.exists(pool.doc());
}

Result<std::vector<PoolId>> Pools::list(const std::string& space)
{
    std::vector<PoolId> out;
    if (!valid_segment(space))
        return out;
    for (auto& name : TRY(m_store.list({ "ipam", space }))) {
        auto sep = name.rfind('_');
        if (sep == std::string::npos)
            continue;
        if (auto net = IpNet::parse(name.substr(0, sep) + "/" + name.substr(sep + 1)))
            out.push_back({ space, *net });
    }
    return out;
}

Result<IpAddr> Pools::ensure_gateway(const PoolId& pool, std::optional<IpAddr> wanted)
{
    auto lock = TRY(m_store.lock(pool.dir()));
    Json doc = TRY(load_pool_doc(m_store, pool));
    auto have = gateway_of(doc);
    // A --gateway replaces the recorded one only while the Docker network being made is the pool's
    // one holder and no network uses it: the gateway is then the one RequestPool named for it
    // (Docker asks for the gateway once per create, after that RequestPool), so nobody else can be
    // using it. Any other holder, or a network, keeps it.
    bool sole_holder = docker_refs(doc) == 1 && users_of(doc).empty();
    bool replace = have && wanted && *wanted != *have && sole_holder;
    if (have && !replace) {
        if (wanted && *wanted != *have)
            return make_error(Code::InvalidConfig, "pool " + pool.str() + " has gateway " + have->str() + ", not " + wanted->str());
        return *have;
    }
    IpAddr gw = wanted ? *wanted : first_host(pool.subnet);
    if (!pool.subnet.contains(gw))
        return make_error(Code::InvalidConfig, "gateway " + gw.str() + " is outside pool " + pool.str());
    if (TRY(m_store.exists(pool.lease(gw))))
        return make_error(Code::AddressUnavailable, "gateway " + gw.str() + " of pool " + pool.str() + " is already allocated");
    doc["gateway"] = gw.str();
    TRY(m_store.put(pool.doc(), doc));
    return gw;
}

Result<std::optional<IpAddr>> Pools::gateway(const PoolId& pool)
{
    Json doc = TRY(load_pool_doc(m_store, pool));
    return gateway_of(doc);
}

Result<size_t> Pools::remove_user(const PoolId& pool, const std::string& network)
{
    auto lock = TRY(m_store.lock(pool.dir()));
    auto loaded = load_pool_doc(m_store, pool);
    Json doc = loaded ? loaded.release_value() : Json { { "space", pool.space }, { "subnet", pool.subnet.str() } };
    std::vector<std::string> users = users_of(doc);
    users.erase(std::remove(users.begin(), users.end(), network), users.end());
    if (users.empty() && docker_refs(doc) == 0 && TRY(m_store.list(pool.leases_dir())).empty()) {
        // The cursor stays: a network made again on this subnet (an edited conf) goes on where
        // the round-robin was, so a just-freed address is not handed out again at once.
        TRY(m_store.remove(pool.doc()));
        TRY(m_store.remove_dir(pool.leases_dir()));
        TRY(m_store.remove_dir(pool.dir()));
        return size_t(0);
    }
    doc["users"] = users;
    TRY(m_store.put(pool.doc(), doc));
    return users.size();
}

Result<EndpointAddress> Pools::take(const PoolId& pool, const Range& range, const IpAddr& address, const Owner& owner, bool& taken)
{
    Durability d = per_boot(owner) ? Durability::PerBoot : Durability::Sync;
    Version version = 0;
    taken = !TRY(m_store.create_versioned(pool.lease(address), owner_json(owner), d, version));
    if (taken) {
        // Held by an attachment of an earlier boot: void, so it is reclaimed (the caller holds the
        // pool's lock, so no other allocator races this).
        Loaded existing = TRY(m_store.get(pool.lease(address)));
        if (existing.ok() && stale_lease(existing.doc)) {
            TRY(m_store.remove(pool.lease(address), Durability::PerBoot));
            taken = !TRY(m_store.create_versioned(pool.lease(address), owner_json(owner), d, version));
        }
    }
    return EndpointAddress { IpNet { address, range.subnet.prefix }, range.gateway, pool.str(), version };
}

Result<EndpointAddress> Pools::allocate(const std::string& space, const RangeSet& set, const Owner& owner,
    std::optional<IpAddr> requested)
{
    if (requested) {
        auto range = std::find_if(set.begin(), set.end(), [&](const Range& r) { return r.contains(*requested); });
        if (range == set.end())
            return make_error(Code::AddressUnavailable, "requested IP " + requested->str() + " is not in range set " + range_set_str(set));
        if (!range->usable(*requested))
            return make_error(Code::AddressUnavailable, "requested IP " + requested->str() + " is the gateway, network or broadcast address of "
                    + range->subnet.str());
        PoolId pool { space, range->subnet };
        auto lock = TRY(m_store.lock(pool.dir()));
        if (gateway_of(TRY(load_pool_doc(m_store, pool))) == *requested)
            return make_error(Code::AddressUnavailable, "requested IP " + requested->str() + " is the gateway of " + range->subnet.str());
        bool taken = false;
        auto address = TRY(take(pool, *range, *requested, owner, taken));
        if (taken)
            return make_error(Code::AddressUnavailable, "requested IP " + requested->str() + " is already allocated");
        return address;
    }
    for (auto& range : set) {
        PoolId pool { space, range.subnet };
        auto lock = TRY(m_store.lock(pool.dir()));
        Json doc = TRY(load_pool_doc(m_store, pool));
        IpAddr cursor = range.end;
        // The cursor file; "last" in pool.json is where earlier versions kept it.
        Loaded hint = TRY(m_store.get(pool.cursor()));
        std::string last_text = hint.ok() && hint.doc.is_object() && hint.doc.contains("last") && hint.doc["last"].is_string()
            ? hint.doc["last"].get<std::string>()
            : doc.value("last", "");
        if (auto last = IpAddr::parse(last_text); last && range.contains(*last))
            cursor = *last;
        u128 span = range.end.value - range.start.value + 1;
        IpAddr candidate = cursor;
        auto pool_gateway = gateway_of(doc);
        for (u128 probe = 0; probe < span && probe < max_probes; ++probe) {
            candidate = candidate >= range.end ? range.start : candidate.next();
            if (!range.usable(candidate) || candidate == pool_gateway)
                continue;
            bool taken = false;
            auto address = TRY(take(pool, range, candidate, owner, taken));
            if (taken)
                continue;
            fault_point("ipam-after-lease");
            // A cursor that cannot be written (ENOSPC) must not leave the fresh lease behind.
            if (auto moved = m_store.put(pool.cursor(), Json { { "last", candidate.str() } }, Durability::Hint); !moved) {
                (void)m_store.remove(pool.lease(candidate));
                return moved.release_error();
            }
            return address;
        }
    }
    return make_error(Code::AddressUnavailable, "no IP addresses available in range set: " + range_set_str(set));
}

Result<void> Pools::release(const PoolId& pool, const IpAddr& address, const Owner& owner)
{
    Loaded loaded = TRY(m_store.get(pool.lease(address)));
    if (loaded.status == Loaded::Status::Absent)
        return {};
    if (loaded.ok()) {
        auto holder = owner_from(loaded.doc);
        if (holder && !holder->same(owner))
            return {}; // someone else's now: never free a lease we do not hold
    }
    return m_store.remove(pool.lease(address), per_boot(owner) ? Durability::PerBoot : Durability::Sync);
}

Result<std::optional<Owner>> Pools::owner_of(const PoolId& pool, const IpAddr& address)
{
    Loaded loaded = TRY(m_store.get(pool.lease(address)));
    if (!loaded.ok())
        return std::optional<Owner> {};
    return owner_from(loaded.doc);
}

Result<bool> Pools::held_by(const PoolId& pool, const IpAddr& address, const Owner& owner, Version created)
{
    if (created != 0)
        if (auto now = TRY(m_store.peek_version(pool.lease(address))); now && *now == created)
            return true;
    auto holder = TRY(owner_of(pool, address));
    return holder && holder->same(owner);
}

Result<std::vector<Lease>> Pools::leases(const PoolId& pool)
{
    return leases(pool, [](const IpAddr&) { return true; });
}

Result<std::vector<Lease>> Pools::leases(const PoolId& pool, const std::function<bool(const IpAddr&)>& wanted)
{
    std::vector<Lease> out;
    for (auto& name : TRY(m_store.list(pool.leases_dir()))) {
        auto address = IpAddr::parse(name);
        if (!address || !wanted(*address))
            continue;
        Loaded loaded = TRY(m_store.get(pool.lease(*address)));
        Lease lease { *address, {} };
        if (loaded.ok())
            if (auto o = owner_from(loaded.doc))
                lease.owner = *o;
        out.push_back(lease);
    }
    return out;
}

Result<bool> Pools::has_free(const std::string& space, const RangeSet& set)
{
    for (auto& range : set) {
        PoolId pool { space, range.subnet };
        // First where the next allocation looks: the addresses after the cursor. Two usable ones
        // without a lease file there mean a free address (at most one of them can be the pool's
        // gateway, which has no lease but is never handed out), so a pool that is not nearly full
        // answers from a few probes, however many leases it has. Else every lease is counted.
        Loaded hint = TRY(m_store.get(pool.cursor()));
        IpAddr candidate = range.end;
        if (hint.ok() && hint.doc.contains("last") && hint.doc["last"].is_string())
            if (auto last = IpAddr::parse(hint.doc["last"].get<std::string>()); last && range.contains(*last))
                candidate = *last;
        u128 span = range.end.value - range.start.value + 1;
        int unleased = 0;
        for (u128 probe = 0; probe < span && probe < 64 && unleased < 2; ++probe) {
            candidate = candidate >= range.end ? range.start : candidate.next();
            if (range.usable(candidate) && !TRY(m_store.exists(pool.lease(candidate))))
                ++unleased;
        }
        if (unleased >= 2)
            return true;
        u128 usable = range.end.value - range.start.value + 1;
        for (IpAddr special : { range.gateway, range.subnet.network(), range.subnet.last() })
            if (range.contains(special) && !range.usable(special) && usable > 0)
                --usable;
        u128 leased = 0;
        for (auto& name : TRY(m_store.list(pool.leases_dir())))
            if (auto a = IpAddr::parse(name); a && range.contains(*a))
                ++leased;
        if (leased < usable)
            return true;
    }
    return false;
}

} // namespace cnm::ipam
