// Docker's IpamDriver over the pools the CNI plugins share (ipam/pool.hpp).
#include "docker_api.hpp"

#include "request.hpp"

#include "ipam/pool.hpp"
#include "cni/env.hpp"
#include "drivers/vxlan.hpp"

#include <algorithm>

namespace cnm::shim {

namespace {

using ipam::Owner;
using ipam::PoolId;
using ipam::Pools;

// Docker's IPAM requests name no endpoint, so every lease it takes has this one owner; Docker
// releases by address. CNI's GC only ever frees leases of its own network, never these.
const Owner docker_owner { "", "docker", "", Frontend::Docker };

} // namespace

// Which pool Docker gets for a subnet (Docker asks for it before CreateNetwork, knowing only the
// subnet and the --ipam-opt): the pool of the CNI network --ipam-opt cnm.network names; else the
// pool of the one CNI network that has this subnet (the Docker + CNI flagship); with several,
// an error naming them; with none, a pool of Docker's own ("local").
Result<std::string> DockerApi::pool_space(const IpNet& subnet, const std::optional<std::string>& named)
{
    if (named) {
        auto stored = TRY(m_registry.load_network(*named));
        return stored.ok() ? stored.record.address_space : "cni:" + *named;
    }
    if (!m_subnets_indexed) {
        // Once per shim process: the subnet index from the records (registry.hpp), for the CNI
        // networks an earlier build made or whose entries a power failure lost. Then the index
        // names the candidates, and their records decide.
        for (auto& name : TRY(m_registry.list_networks())) {
            auto stored = TRY(m_registry.load_network(name));
            if (!stored.ok() || stored.record.frontend != Frontend::Cni)
                continue;
            // Written under the network's lock, as its first ADD and last DEL write and remove
            // them, from the record read again under it: a last DEL between the two reads leaves
            // no entry behind (nor the directory the lock made again).
            auto lock = TRY(m_registry.lock_network(name));
            stored = TRY(m_registry.load_network(name));
            if (stored.ok() && stored.record.frontend == Frontend::Cni)
                TRY(m_registry.index_subnets(name, stored.record.subnets));
            else if (stored.absent())
                TRY(m_registry.store().remove_dir(Registry::network_dir(name)));
        }
        m_subnets_indexed = true;
    }
    std::vector<std::string> owners;
    std::string space;
    for (auto& name : TRY(m_registry.networks_with_subnet(subnet.str()))) {
        auto stored = TRY(m_registry.load_network(name));
        if (!stored.ok() || stored.record.frontend != Frontend::Cni)
            continue;
        if (std::find(stored.record.subnets.begin(), stored.record.subnets.end(), subnet.str()) == stored.record.subnets.end())
            continue;
        owners.push_back(name);
        space = stored.record.address_space;
    }
    if (owners.size() > 1) {
        std::string list;
        for (auto& o : owners)
            list += (list.empty() ? "" : ", ") + o;
        return make_error(Code::InvalidConfig, "subnet " + subnet.str() + " belongs to several CNI networks (" + list + ")",
            "name one: --ipam-opt cnm.network=NAME (and -o cnm.network=NAME)");
    }
    return owners.empty() ? std::string(docker_space) : space;
}

Result<Json> DockerApi::request_pool(const Json& req)
{
    std::string space = TRY(json_string(req, "AddressSpace", "RequestPool")).value_or(docker_space);
    std::string pool_text = TRY(json_string(req, "Pool", "RequestPool")).value_or("");
    std::string sub_pool = TRY(json_string(req, "SubPool", "RequestPool")).value_or("");
    bool v6 = TRY(json_bool(req, "V6", "RequestPool")).value_or(false);
    Json options = TRY(json_object(req, "Options", "RequestPool"));
    if (space != docker_space)
        return make_error(Code::InvalidConfig, "address space \"" + space + "\" is not supported (cnm has \"local\" only)");
    if (pool_text.empty())
        return make_error(Code::InvalidConfig, "cnm does not choose subnets: give one with --subnet");
    auto subnet = IpNet::parse(pool_text);
    if (!subnet || !subnet->is_network())
        return make_error(Code::InvalidConfig, "\"" + pool_text + "\" is not a subnet (network address/prefix)");
    if ((subnet->addr.family == 6) != v6)
        return make_error(Code::InvalidConfig, "pool " + pool_text + (v6 ? " is not IPv6" : " is not IPv4"));
    if (!sub_pool.empty() && sub_pool != pool_text)
        return make_error(Code::InvalidConfig, "--ip-range is not supported by cnm's IPAM (the whole subnet is the range)");
    PoolOptions opts = TRY(parse_pool_options(options));
    std::optional<std::string> named = opts.network;
    if (named) {
        // A cluster network's pool is the cluster subnet, its addresses this host's blocks.
        auto facts = TRY(cluster_pool(*named, *subnet, opts.facts, opts.driver == "vxlan"));
        if (facts)
            return Json { { "PoolID", PoolId { cluster_space(*named), *subnet }.str() }, { "Pool", subnet->str() }, { "Data", Json::object() } };
    }
    PoolId pool { TRY(pool_space(*subnet, named)), *subnet };
    Pools pools(m_store);
    for (auto& other : TRY(pools.list(pool.space)))
        if (!(other == pool) && (other.subnet.contains(subnet->addr) || subnet->contains(other.subnet.addr)))
            return make_error(Code::InvalidConfig, "pool " + pool_text + " overlaps pool " + other.subnet.str() + " in use");
    // Docker takes a gateway named here and skips its gateway RequestAddress (it still makes one
    // for a --gateway): one call and one durable write fewer per network create.
    auto gateway = TRY(pools.docker_retain(pool));
    Json data = Json::object();
    if (gateway)
        data["com.docker.network.gateway"] = IpNet { *gateway, subnet->prefix }.str();
    return Json { { "PoolID", pool.str() }, { "Pool", subnet->str() }, { "Data", data } };
}

// Whether `network` is a cluster network, and then its facts (cached on this host): a vxlan
// network record here, the host's block cache, etcd's record of the network, or — `hinted` by
// --ipam-opt cnm.driver=vxlan — a network new to the cluster whose facts this host writes first.
// Not hinted, a host without a cluster file, or whose etcd cannot answer, has no cluster network
// of that name (CreateNetwork -o cnm.driver=vxlan then says why).
Result<std::optional<NetworkFacts>> DockerApi::cluster_pool(const std::string& network, const IpNet& subnet, const Json& facts_given, bool hinted)
{
    using None = std::optional<NetworkFacts>;
    auto stored = TRY(m_registry.load_network(network));
    if (stored.ok() && stored.record.driver != "vxlan") {
        if (hinted)
            return make_error(Code::InvalidConfig, "network \"" + network + "\" exists with driver \"" + stored.record.driver + "\", not \"vxlan\"");
        return None {};
    }
    auto loaded = load_cluster_config(Json::object());
    if (!loaded && !hinted && !stored.ok())
        return None {};
    ClusterConfig config = TRY(host_cluster_config());
    Cluster cluster(config);
    auto known = known_network_facts(m_store, cluster, network);
    if (!known && !hinted && !stored.ok())
        return None {};
    std::optional<NetworkFacts> facts = TRY(std::move(known));
    auto wanted = TRY(FactsWanted::parse(facts_given));
    if (!facts) {
        if (!hinted)
            return None {};
        // New to the cluster: this host writes its facts (one create-if-absent in etcd).
        if (subnet.addr.family != 4)
            return make_error(Code::InvalidConfig, "cluster network \"" + network + "\" is new: its first pool must be its IPv4 cluster subnet");
        if (!wanted.vni)
            return make_error(Code::InvalidConfig, "cluster network \"" + network + "\" is new to the cluster: give its VNI with --ipam-opt vni=N",
                "the first host of a cluster network writes its facts: vni, and optionally blockSize, port, mtu (--ipam-opt)");
        wanted.subnet = subnet;
        Json underlay = Json::object();
        if (!config.underlay.empty())
            underlay["underlay"] = config.underlay;
        auto link = TRY(drivers::vxlan_underlay(m_kernel, underlay));
        facts = TRY(resolve_network_facts(m_store, cluster, network, wanted, link.mtu - 50));
    }
    TRY(wanted.agree(network, *facts));
    // Docker's containers ask for remote addresses by ARP (answered by the bridge's proxy ARP);
    // the same for IPv6 would need NDP proxying, which cnm does not set up.
    if (subnet.addr.family == 6)
        return make_error(Code::InvalidConfig, "IPv6 (--ipv6) is not supported on cluster network \"" + network + "\" through Docker",
            "CNI pods of the network get IPv6 from its subnet6; Docker containers are IPv4-only there");
    const std::optional<IpNet> theirs = subnet.addr.family == 4 ? std::optional<IpNet>(facts->subnet) : facts->subnet6;
    if (!theirs || !(*theirs == subnet))
        return make_error(Code::InvalidConfig, "cluster network \"" + network + "\" has " + (subnet.addr.family == 4 ? "subnet " : "IPv6 subnet ")
                + (theirs ? theirs->str() : std::string("none")) + ", but docker network create asks for --subnet " + subnet.str());
    // Accepted: the host keeps the facts (the gateway request and CreateNetwork read them).
    TRY(cache_network_facts(m_store, cluster, network, *facts));
    return facts;
}

Result<Json> DockerApi::request_cluster_address(const PoolId& pool, const std::string& network, std::optional<IpAddr> wanted, bool gateway)
{
    auto stored = TRY(m_registry.load_network(network));
    std::string underlay = stored.ok() ? string_of(stored.record.options, "underlay") : "";
    auto source = TRY(cluster_source(m_store, m_kernel, network, underlay));
    int family = pool.subnet.addr.family;
    auto facts = TRY(load_local_blocks(m_store, network)).facts;
    const std::optional<IpNet> theirs = family == 4 ? std::optional<IpNet>(facts->subnet) : facts->subnet6;
    if (!theirs || !(*theirs == pool.subnet))
        return make_error(Code::InvalidConfig, "pool " + pool.str() + " is not cluster network \"" + network + "\"'s subnet");
    IpAddr address;
    if (gateway) {
        auto blocks = TRY(source->host_blocks(m_registry, family));
        if (blocks.empty())
            return make_error(Code::Internal, "no block of network \"" + network + "\" after a claim");
        address = blocks.front().gateway();
        if (wanted && std::none_of(blocks.begin(), blocks.end(), [&](const BlockOwner& b) { return b.gateway() == *wanted; }))
            return make_error(Code::InvalidConfig, "--gateway " + wanted->str() + " cannot be used on cluster network \"" + network
                    + "\": the gateway is this host's block's (" + address.str() + ")");
        if (wanted)
            address = *wanted;
    } else {
        auto leased = TRY(source->take(m_registry, family, docker_owner, wanted));
        address = leased.address.addr;
    }
    // A block claimed on the way: the other hosts' blocks learned meanwhile go into the kernel
    // now when the network is up here (the agent programs them too, and every later change).
    if (source->claimed() && stored.ok()) {
        Json options = stored.record.options;
        if (auto dev = TRY(m_kernel.get_link(host_ns, drivers::vxlan_device_name(options.value("vni", 0u)))); dev)
            TRY(drivers::program_remote_blocks(m_kernel, options, source->learned()));
    }
    return Json { { "Address", IpNet { address, pool.subnet.prefix }.str() }, { "Data", Json::object() } };
}

Result<Json> DockerApi::release_cluster_address(const PoolId& pool, const std::string& network, const IpAddr& ip)
{
    // The lease is in the pool of the host's block that holds the address; a block gateway is
    // no lease, and the block stays with the host.
    auto local = TRY(load_local_blocks(m_store, network));
    for (auto& b : local.blocks)
        if (b.block.contains(ip) && !(b.gateway() == ip))
            TRY(Pools(m_store).release(PoolId { pool.space, b.block }, ip, docker_owner));
    return Json::object();
}

namespace {

bool live_docker(const Stored<EndpointRecord>& ep)
{
    return ep.ok() && ep.record.frontend == Frontend::Docker && !stale_boot(ep.record.boot_id);
}

} // namespace

void DockerApi::add_holders(std::map<HolderKey, std::vector<Holder>>& holders, const std::string& network,
    const EndpointRecord& record, const std::string& key)
{
    for (auto& a : record.addresses)
        if (auto pool = PoolId::parse(a.pool)) {
            auto& of = holders[{ pool->space, a.address.addr }];
            if (std::none_of(of.begin(), of.end(), [&](const Holder& h) { return h.network == network && h.key == key; }))
                of.push_back({ network, key });
        }
}

void DockerApi::note_holders(const EndpointRecord& record, const std::string& key)
{
    if (m_holders) // else read from the records when first needed
        add_holders(*m_holders, record.network, record, key);
}

void DockerApi::drop_holders(const EndpointRecord& record, const std::string& key)
{
    if (!m_holders)
        return;
    for (auto& a : record.addresses)
        if (auto pool = PoolId::parse(a.pool)) {
            auto at = m_holders->find({ pool->space, a.address.addr });
            if (at == m_holders->end())
                continue;
            std::erase_if(at->second, [&](const Holder& h) { return h.network == record.network && h.key == key; });
            if (at->second.empty())
                m_holders->erase(at);
        }
}

Result<bool> DockerApi::held_by_live_endpoint(const PoolId& pool, const IpAddr& ip)
{
    if (!m_holders) {
        // Once per shim process: every Docker endpoint of this boot in the records. Docker's are
        // "<EndpointID>@docker" (endpoint_key_of): a CNI endpoint's record is not read.
        std::map<HolderKey, std::vector<Holder>> found;
        for (auto& name : TRY(m_registry.list_networks()))
            for (auto& key : TRY(m_registry.list_endpoints(name))) {
                if (!key.ends_with("@docker"))
                    continue;
                auto ep = TRY(m_registry.load_endpoint(name, key));
                if (live_docker(ep))
                    add_holders(found, name, ep.record, key);
            }
        m_holders = std::move(found);
    }
    auto at = m_holders->find({ pool.space, ip });
    if (at == m_holders->end())
        return false;
    // The records decide: an endpoint may have gone behind the shim's back (gc, a corrupt record).
    // A cluster network's addresses are recorded with their block's pool, in the cluster's space;
    // any other with the pool Docker names.
    bool cluster = cluster_space_network(pool.space).has_value();
    bool held = false;
    std::vector<Holder> kept;
    for (auto& h : at->second) {
        auto ep = TRY(m_registry.load_endpoint(h.network, h.key));
        bool holds = live_docker(ep) && std::any_of(ep.record.addresses.begin(), ep.record.addresses.end(), [&](const EndpointAddress& a) {
            auto p = PoolId::parse(a.pool);
            return p && a.address.addr == ip && (cluster ? p->space == pool.space : *p == pool);
        });
        if (holds)
            kept.push_back(h);
        held |= holds;
    }
    if (kept.empty())
        m_holders->erase(at);
    else
        at->second = std::move(kept);
    return held;
}

Result<Json> DockerApi::release_pool(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "ReleasePool"));
    if (cluster_space_network(pool.space))
        return Json::object(); // no pool document: the blocks' pools are the host's, and stay
    TRY(Pools(m_store).docker_release(pool));
    return Json::object();
}

Result<Json> DockerApi::request_address(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "RequestAddress"));
    std::string address = TRY(json_string(req, "Address", "RequestAddress")).value_or("");
    Json options = TRY(json_object(req, "Options", "RequestAddress"));
    std::optional<IpAddr> wanted;
    if (!address.empty()) {
        wanted = IpAddr::parse(address);
        if (!wanted || !pool.subnet.contains(*wanted))
            return make_error(Code::InvalidConfig, "\"" + address + "\" is not an address of pool " + pool.subnet.str());
    }
    bool gateway = string_of(options, "RequestAddressType") == "com.docker.network.gateway";
    if (auto network = cluster_space_network(pool.space))
        return request_cluster_address(pool, *network, wanted, gateway);
    Pools pools(m_store);
    if (!TRY(pools.exists(pool)))
        return make_error(Code::InvalidConfig, "pool " + pool.str() + " is not known to cnm (no RequestPool for it)");
    if (gateway) {
        IpAddr gw = TRY(pools.ensure_gateway(pool, wanted));
        return Json { { "Address", IpNet { gw, pool.subnet.prefix }.str() }, { "Data", Json::object() } };
    }
    // The whole subnet is the range; the network, broadcast and the pool's gateway are never given.
    IpAddr first = ipam::first_host(pool.subnet);
    IpAddr last = pool.subnet.last();
    auto recorded_gw = TRY(pools.gateway(pool));
    ipam::Range range { pool.subnet, first, last, recorded_gw.value_or(first) };
    if (pool.subnet.addr.family == 4 && pool.subnet.prefix < 31)
        range.end = IpAddr { 4, last.value - 1 };
    auto leased = TRY(pools.allocate(pool.space, { range }, docker_owner, wanted));
    return Json { { "Address", leased.address.str() }, { "Data", Json::object() } };
}

Result<Json> DockerApi::release_address(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "ReleaseAddress"));
    std::string address = TRY(json_string(req, "Address", "ReleaseAddress")).value_or("");
    auto ip = IpAddr::parse(address);
    if (!ip) // Docker sends the bare address; accept a CIDR too
        if (auto net = IpNet::parse(address))
            ip = net->addr;
    if (!ip)
        return make_error(Code::InvalidConfig, "\"" + address + "\" is not an IP address");
    // After a restart dockerd releases the addresses of its stale endpoints: a lease a live
    // endpoint (of this boot) holds is not one of those, and stays, on every kind of pool.
    if (TRY(held_by_live_endpoint(pool, *ip)))
        return Json::object();
    if (auto network = cluster_space_network(pool.space))
        return release_cluster_address(pool, *network, *ip);
    // The gateway is the pool's, not a lease; it goes with the pool. Someone else's lease (a CNI
    // attachment's) is never freed through Docker.
    TRY(Pools(m_store).release(pool, *ip, docker_owner));
    return Json::object();
}

} // namespace cnm::shim
