// Docker's IpamDriver over the pools the CNI plugins share (ipam/pool.hpp).
#include "docker_api.hpp"

#include "request.hpp"

#include "ipam/pool.hpp"
#include "cni/env.hpp"

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
    std::vector<std::string> owners;
    std::string space;
    for (auto& name : TRY(m_registry.list_networks())) {
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
    std::optional<std::string> named;
    if (options.is_object())
        for (auto& [key, value] : options.items()) {
            if (key != "cnm.network")
                return make_error(Code::InvalidConfig, "unknown IPAM option \"" + key + "\" (cnm takes cnm.network=NAME)");
            if (!value.is_string() || !cni::valid_network_name(value.get<std::string>()))
                return make_error(Code::InvalidConfig, "--ipam-opt cnm.network must name a network (^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$)");
            named = value.get<std::string>();
        }
    PoolId pool { TRY(pool_space(*subnet, named)), *subnet };
    Pools pools(m_store);
    for (auto& other : TRY(pools.list(pool.space)))
        if (!(other == pool) && (other.subnet.contains(subnet->addr) || subnet->contains(other.subnet.addr)))
            return make_error(Code::InvalidConfig, "pool " + pool_text + " overlaps pool " + other.subnet.str() + " in use");
    TRY(pools.docker_retain(pool));
    return Json { { "PoolID", pool.str() }, { "Pool", subnet->str() }, { "Data", Json::object() } };
}

Result<Json> DockerApi::release_pool(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "ReleasePool"));
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
    Pools pools(m_store);
    if (!TRY(pools.exists(pool)))
        return make_error(Code::InvalidConfig, "pool " + pool.str() + " is not known to cnm (no RequestPool for it)");
    bool gateway = string_of(options, "RequestAddressType") == "com.docker.network.gateway";
    if (gateway) {
        IpAddr gw = TRY(pools.ensure_gateway(pool, wanted));
        return Json { { "Address", IpNet { gw, pool.subnet.prefix }.str() }, { "Data", Json::object() } };
    }
    // The whole subnet is the range; the network, broadcast and the pool's gateway are never given.
    IpAddr first = pool.subnet.network();
    IpAddr last = pool.subnet.last();
    auto recorded_gw = TRY(pools.gateway(pool));
    ipam::Range range { pool.subnet, first < last ? first.next() : first, last, recorded_gw.value_or(first < last ? first.next() : first) };
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
    // endpoint (of this boot) holds is not one of those, and stays.
    for (auto& name : TRY(m_registry.list_networks())) {
        auto network = TRY(m_registry.load_network(name));
        if (!network.ok() || network.record.address_space != pool.space
            || std::find(network.record.subnets.begin(), network.record.subnets.end(), pool.subnet.str()) == network.record.subnets.end())
            continue;
        for (auto& key : TRY(m_registry.list_endpoints(name))) {
            auto ep = TRY(m_registry.load_endpoint(name, key));
            if (!ep.ok() || ep.record.frontend != Frontend::Docker || stale_boot(ep.record.boot_id))
                continue;
            for (auto& a : ep.record.addresses)
                if (a.address.addr == *ip && a.pool == pool.str())
                    return Json::object();
        }
    }
    // The gateway is the pool's, not a lease; it goes with the pool. Someone else's lease (a CNI
    // attachment's) is never freed through Docker.
    TRY(Pools(m_store).release(pool, *ip, docker_owner));
    return Json::object();
}

} // namespace cnm::shim
