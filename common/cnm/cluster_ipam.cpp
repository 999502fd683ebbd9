#include "cnm/cluster_ipam.hpp"

#include "util/fault.hpp"

#include <algorithm>

namespace cnm {

namespace {

using ipam::Owner;
using ipam::PoolId;
using ipam::Pools;

// Rounds of "claim, then allocate" one ADD may need: a block it claims can be filled by
// parallel ADDs before it gets an address from it.
constexpr int max_claim_rounds = 4;

Key claim_lock(const std::string& network)
{
    return { "cluster", network };
}

} // namespace

Key local_blocks_key(const std::string& network)
{
    return { "cluster", network, "blocks.json" };
}

Result<LocalBlocks> load_local_blocks(Store& store, const std::string& network)
{
    Key key = local_blocks_key(network);
    Loaded loaded = TRY(store.get(key));
    LocalBlocks out;
    if (loaded.status == Loaded::Status::Absent)
        return out;
    auto corrupt = [&](const std::string& why) {
        return make_error(Code::StateCorrupt, "the host's block cache " + key_str(key) + " is corrupt (" + why + ")",
            "remove it: the next ADD that needs a block adopts this host's blocks from etcd again");
    };
    if (!loaded.ok())
        return corrupt(loaded.reason);
    const Json& doc = loaded.doc;
    if (!doc.is_object() || !doc.contains("blocks") || !doc["blocks"].is_array())
        return corrupt("no \"blocks\" list");
    out.node = doc.value("node", "");
    if (doc.contains("network")) {
        auto facts = NetworkFacts::from_json(doc["network"], key_str(key));
        if (!facts)
            return corrupt(facts.error().msg);
        out.facts = facts.release_value();
    }
    for (auto& b : doc["blocks"]) {
        auto net = b.is_object() && b.contains("block") && b["block"].is_string() ? IpNet::parse(b["block"].get<std::string>()) : std::nullopt;
        auto owner = net ? BlockOwner::from_json(*net, b) : std::nullopt;
        if (!owner)
            return corrupt("a block entry is not {\"block\",\"node\",\"vtep\",\"mac\"}");
        out.blocks.push_back(*owner);
    }
    return out;
}

Result<void> save_local_blocks(Store& store, const std::string& network, const LocalBlocks& local)
{
    Json blocks = Json::array();
    for (auto& b : local.blocks) {
        Json j = b.to_json();
        j["block"] = b.block.str();
        blocks.push_back(j);
    }
    Json doc = { { "node", local.node }, { "blocks", blocks } };
    if (local.facts)
        doc["network"] = local.facts->to_json();
    return store.put(local_blocks_key(network), doc);
}

Result<NetworkFacts> resolve_network_facts(Store& store, Cluster& cluster, const std::string& network, const FactsWanted& wanted,
    int default_mtu)
{
    auto local = TRY(load_local_blocks(store, network));
    if (!local.node.empty() && local.node != cluster.node())
        return make_error(Code::InvalidConfig, "invalid config: this state dir holds the blocks of node \"" + local.node
                + "\" on network \"" + network + "\", not of \"" + cluster.node() + "\"",
            "keep the node name, or release its blocks and remove " + key_str(local_blocks_key(network)));
    if (local.facts) {
        TRY(wanted.agree(network, *local.facts));
        return *local.facts;
    }
    NetworkFacts first = TRY(wanted.complete(default_mtu));
    auto lock = TRY(store.lock(claim_lock(network)));
    local = TRY(load_local_blocks(store, network));
    if (!local.facts) {
        local.facts = TRY(cluster.ensure_network(network, first));
        local.node = cluster.node();
        TRY(save_local_blocks(store, network, local));
    }
    TRY(wanted.agree(network, *local.facts));
    return *local.facts;
}

Result<std::optional<NetworkFacts>> known_network_facts(Store& store, Cluster& cluster, const std::string& network)
{
    auto local = TRY(load_local_blocks(store, network));
    if (local.facts)
        return local.facts;
    return cluster.network(network);
}

Result<void> cache_network_facts(Store& store, Cluster& cluster, const std::string& network, const NetworkFacts& facts)
{
    auto lock = TRY(store.lock(claim_lock(network)));
    auto local = TRY(load_local_blocks(store, network));
    if (!local.node.empty() && local.node != cluster.node())
        return make_error(Code::InvalidConfig, "invalid config: this state dir holds the blocks of node \"" + local.node
                + "\" on network \"" + network + "\", not of \"" + cluster.node() + "\"");
    if (local.facts)
        return {};
    local.facts = facts;
    local.node = cluster.node();
    return save_local_blocks(store, network, local);
}

void complete_vxlan_options(Json& options, const NetworkFacts& facts)
{
    options["vni"] = facts.vni;
    options["subnet"] = facts.subnet.str();
    options["blockSize"] = facts.block_size;
    options["port"] = facts.port;
    options["mtu"] = facts.mtu;
    if (facts.subnet6) {
        options["subnet6"] = facts.subnet6->str();
        options["blockSize6"] = facts.block_size6;
    }
}

ipam::RangeSet block_ranges(const std::vector<BlockOwner>& blocks, int family)
{
    ipam::RangeSet set;
    for (auto& b : blocks) {
        if (b.block.addr.family != family)
            continue;
        IpAddr gw = b.gateway();
        IpAddr last = b.block.last();
        if (family == 4)
            last = IpAddr { 4, last.value - 1 }; // not the broadcast
        if (gw.next() > last)
            continue;
        set.push_back({ b.block, gw.next(), last, gw });
    }
    return set;
}

Result<EndpointAddress> ClusterAddresses::allocate(Registry& registry, int family, const IpNet& subnet, int block_prefix, const Owner& owner,
    std::optional<IpAddr> wanted)
{
    Store& store = registry.store();
    Pools pools(store);
    auto try_local = [&]() -> Result<std::optional<EndpointAddress>> {
        auto local = TRY(load_local_blocks(store, m_network));
        auto set = block_ranges(local.blocks, family);
        if (set.empty())
            return std::optional<EndpointAddress> {};
        if (wanted && std::none_of(set.begin(), set.end(), [&](const ipam::Range& r) { return r.subnet.contains(*wanted); })) {
            std::string blocks;
            for (auto& r : set)
                blocks += (blocks.empty() ? "" : ", ") + r.subnet.str();
            return make_error(Code::AddressUnavailable, "requested IP " + wanted->str() + " is not in this host's blocks of network \"" + m_network
                    + "\" [" + blocks + "]", "a host hands out addresses of its own blocks only");
        }
        auto got = pools.allocate(address_space(), set, owner, wanted);
        if (!got && wanted)
            return got.release_error();
        if (got)
            return std::optional<EndpointAddress>(got.release_value());
        if (got.error().code != Code::AddressUnavailable)
            return got.release_error();
        return std::optional<EndpointAddress> {};
    };
    if (auto got = TRY(try_local()))
        return *got;
    // Full: one claimer per host at a time, and it looks again first (a parallel ADD may have
    // claimed a block while this one waited).
    auto lock = TRY(store.lock(claim_lock(m_network)));
    for (int round = 0; round < max_claim_rounds; ++round) {
        if (auto got = TRY(try_local()))
            return *got;
        TRY(claim_more(registry, subnet, block_prefix));
    }
    if (auto got = TRY(try_local()))
        return *got;
    return make_error(Code::TryAgainLater, "the blocks claimed for network \"" + m_network + "\" were filled by parallel ADDs", "retry the ADD");
}

Result<bool> ClusterAddresses::claim_more(Registry& registry, const IpNet& subnet, int block_prefix)
{
    Store& store = registry.store();
    auto local = TRY(load_local_blocks(store, m_network));
    std::set<IpNet> cached;
    for (auto& b : local.blocks)
        cached.insert(b.block);
    Vtep vtep = TRY(m_vtep());
    auto claim = TRY(m_cluster->claim(m_network, subnet, block_prefix, cached, vtep.address, vtep.mac));
    // The blocks' pools first (their gateway is never handed out), then the cache that makes
    // them usable. A kill -9 in between leaves a block in etcd the cache lacks: the next claim
    // adopts it.
    Pools pools(store);
    for (auto& b : claim.mine)
        TRY(pools.add_user(PoolId { address_space(), b.block }, m_network, b.gateway()));
    fault_point("vxlan-claim-before-cache");
    for (auto& b : claim.mine)
        if (!cached.count(b.block))
            local.blocks.push_back(b);
    local.node = m_cluster->node();
    if (!local.facts)
        local.facts = m_facts;
    TRY(save_local_blocks(store, m_network, local));
    m_claimed = true;
    for (auto& other : claim.others) {
        auto same = std::find_if(m_learned.begin(), m_learned.end(), [&](const BlockOwner& b) { return b.block == other.block; });
        if (same == m_learned.end())
            m_learned.push_back(other);
        else
            *same = other;
    }
    return true;
}

Result<std::vector<BlockOwner>> ClusterAddresses::host_blocks(Registry& registry, int family)
{
    Store& store = registry.store();
    auto mine = [&](const LocalBlocks& local) {
        std::vector<BlockOwner> out;
        for (auto& b : local.blocks)
            if (b.block.addr.family == family)
                out.push_back(b);
        return out;
    };
    if (auto have = mine(TRY(load_local_blocks(store, m_network))); !have.empty())
        return have;
    if (family == 6 && !m_facts.subnet6)
        return make_error(Code::InvalidConfig, "network \"" + m_network + "\" has no IPv6 cluster subnet");
    auto lock = TRY(store.lock(claim_lock(m_network)));
    if (auto have = mine(TRY(load_local_blocks(store, m_network))); !have.empty())
        return have;
    TRY(claim_more(registry, family == 4 ? m_facts.subnet : *m_facts.subnet6, family == 4 ? m_facts.block_size : m_facts.block_size6));
    return mine(TRY(load_local_blocks(store, m_network)));
}

Result<EndpointAddress> ClusterAddresses::take(Registry& registry, int family, const Owner& owner, std::optional<IpAddr> wanted)
{
    if (family == 6 && !m_facts.subnet6)
        return make_error(Code::InvalidConfig, "network \"" + m_network + "\" has no IPv6 cluster subnet");
    if (wanted) {
        // A wanted address needs no claim: it is in a block this host holds, or it is refused.
        TRY(host_blocks(registry, family));
    }
    return allocate(registry, family, family == 4 ? m_facts.subnet : *m_facts.subnet6, family == 4 ? m_facts.block_size : m_facts.block_size6,
        owner, wanted);
}

Result<NetSetup> ClusterAddresses::acquire(Registry& registry, EndpointRecord& endpoint)
{
    Owner owner = lease_owner(endpoint);
    Pools pools(registry.store());
    std::vector<EndpointAddress> taken;
    struct Family {
        int family;
        IpNet subnet;
        int prefix;
    };
    std::vector<Family> families = { { 4, m_facts.subnet, m_facts.block_size } };
    if (m_facts.subnet6)
        families.push_back({ 6, *m_facts.subnet6, m_facts.block_size6 });
    for (auto& f : families) {
        auto got = allocate(registry, f.family, f.subnet, f.prefix, owner);
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
    for (size_t i = 0; i < taken.size(); ++i) {
        out.ips.push_back({ taken[i].address, taken[i].gateway, std::nullopt });
        Route r;
        r.dst = families[i].subnet;
        r.gw = taken[i].gateway;
        out.routes.push_back(r);
    }
    return out;
}

Result<void> ClusterAddresses::release(Registry& registry, const EndpointRecord& endpoint)
{
    // The recovery path looks in every block of this host.
    return release_endpoint_leases(registry.store(), endpoint, [&] { return Pools(registry.store()).list(address_space()); });
}

Result<void> ClusterAddresses::collect(Registry& registry, const std::string& network, const std::vector<std::pair<std::string, std::string>>& keep)
{
    Pools pools(registry.store());
    for (auto& pool : TRY(pools.list(address_space())))
        for (auto& lease : TRY(pools.leases(pool))) {
            if (lease.owner.network != network || lease.owner.frontend != Frontend::Cni)
                continue;
            if (std::find(keep.begin(), keep.end(), std::pair { lease.owner.container_id, lease.owner.ifname }) != keep.end())
                continue;
            TRY(pools.release(pool, lease.address, lease.owner));
        }
    return {};
}

Result<void> ClusterAddresses::ready(Registry& registry)
{
    auto local = load_local_blocks(registry.store(), m_network);
    if (!local)
        return make_error(Code::NotAvailable, "not ready: " + local.error().msg, local.error().details);
    Pools pools(registry.store());
    bool room = true;
    for (int family : { 4, 6 }) {
        if (family == 6 && !m_facts.subnet6)
            continue;
        auto set = block_ranges(local->blocks, family);
        auto free = set.empty() ? Result<bool>(false) : pools.has_free(address_space(), set);
        room = room && free && *free;
    }
    if (room)
        return {};
    // A block is needed: only etcd can give one.
    auto blocks = m_cluster->blocks(m_network);
    if (!blocks)
        return make_error(Code::NotAvailable, "not ready: this host has no block with room on network \"" + m_network + "\" and etcd cannot give one: "
                + blocks.error().msg, blocks.error().details);
    return {};
}

Result<void> ClusterAddresses::check(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev)
{
    return check_leases(registry, endpoint, prev);
}

} // namespace cnm
