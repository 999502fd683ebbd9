// Docker's CreateNetwork and DeleteNetwork over Endpoints::create_network / delete_network.
//
// What is Docker's alone stays here: the binding of a Docker network id to a Network, the
// defaults of a network Docker makes (bridge "br-<id12>", routed through the bridge), and the
// "<if>.<vid>" parents Docker's own macvlan and ipvlan drivers create on first use and remove
// with the last network on them.
#include "docker_api.hpp"

#include "request.hpp"

#include "cnm/cluster_ipam.hpp"
#include "drivers/vxlan.hpp"
#include "ipam/pool.hpp"

#include <algorithm>

namespace cnm::shim {

namespace {

Result<void> delete_parent(Kernel& kernel, const std::string& name)
{
    if (auto link = TRY(kernel.get_link(host_ns, name)))
        TRY(kernel.delete_link(host_ns, link->index));
    return {};
}

} // namespace

/// Makes an absent "<if>.<vid>" parent as an 802.1Q sub-interface of <if>; true when it did. Any
/// other absent name is an error.
Result<bool> ensure_parent(Kernel& kernel, const std::string& name)
{
    if (TRY(kernel.get_link(host_ns, name)))
        return false;
    auto dot = name.rfind('.');
    std::string base = dot == std::string::npos ? "" : name.substr(0, dot);
    std::string vid = dot == std::string::npos ? "" : name.substr(dot + 1);
    bool numeric = !vid.empty() && vid.size() <= 4 && std::all_of(vid.begin(), vid.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (base.empty() || !numeric)
        return make_error(Code::InvalidConfig, "parent interface " + name + " does not exist");
    int id = std::stoi(vid);
    if (id < 1 || id > 4094)
        return make_error(Code::InvalidConfig, "VLAN id " + vid + " of parent " + name + " is outside 1-4094");
    auto link = TRY(kernel.get_link(host_ns, base));
    if (!link)
        return make_error(Code::InvalidConfig, "interface " + base + " (the parent of " + name + ") does not exist");
    TRY(kernel.create_vlan(host_ns, name, link->index, static_cast<uint16_t>(id)));
    return true;
}


Result<Json> DockerApi::create_network(const Json& req)
{
    std::string id = TRY(id_field(req, "NetworkID", "CreateNetwork"));
    Json options = TRY(json_object(req, "Options", "CreateNetwork"));
    if (options.is_null())
        options = Json::object();
    if (options.contains("com.docker.network.internal") && options["com.docker.network.internal"] == true)
        return make_error(Code::InvalidConfig, "--internal networks are not supported by cnm");
    NetworkOptions opts = TRY(parse_network_options(options.contains("com.docker.network.generic") ? options["com.docker.network.generic"] : Json()));
    Driver* driver = find_driver(opts.driver);
    auto pools_data = TRY(parse_ipam_data(req));

    if (auto bound = TRY(bound_network(id)))
        return Json::object(); // Docker retried: already done
    if (opts.driver == "vxlan") {
        std::vector<IpNet> subnets;
        for (auto& p : pools_data)
            subnets.push_back(p.pool.subnet);
        return create_vxlan_network(id, opts.keys, *opts.name, subnets);
    }
    std::string name = opts.name.value_or(id);
    std::vector<std::pair<IpNet, std::optional<IpAddr>>> subnets;
    for (auto& p : pools_data)
        subnets.push_back({ p.pool.subnet, p.gateway ? std::optional(p.gateway->addr) : std::nullopt });

    auto lock = TRY(m_registry.lock_network(name));
    auto stored = TRY(m_registry.load_network(name));
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record of \"" + name + "\" is corrupt (" + stored.reason + ")");
    NetworkSpec spec { name, opts.driver, Frontend::Docker, opts.keys };
    if (stored.absent()) {
        spec.options["type"] = opts.driver;
        if (opts.driver == "bridge") {
            if (!spec.options.contains("bridge"))
                spec.options["bridge"] = "br-" + id.substr(0, 12);
            if (!spec.options.contains("isGateway"))
                spec.options["isGateway"] = true; // Docker's bridge networks route through the bridge
        }
    }
    // The options the network will have: its own when it exists (create_network checks ours
    // against them), else ours.
    const Json& effective = stored.ok() ? stored.record.options : spec.options;
    if (stored.ok() && !stored.record.driver.empty() && stored.record.driver != opts.driver)
        return make_error(Code::InvalidConfig, "network \"" + name + "\" exists with driver \"" + stored.record.driver + "\", not \"" + opts.driver + "\"");
    TRY(driver->validate(effective));

    // A driver with a parent interface: it must be named, and a "<if>.<vid>" that does not exist
    // yet is made here, and goes with the last network that uses it (as Docker's own macvlan and
    // ipvlan drivers do).
    std::string parent;
    bool made = false;
    if (driver->network_defaults().contains("master")) {
        parent = string_of(effective, "master");
        if (parent.empty())
            return make_error(Code::InvalidConfig, opts.driver + " networks need a parent interface: -o parent=<interface>[.<vlan-id>]");
        made = TRY(ensure_parent(m_kernel, parent));
    }
    auto undo_parent = [&](Error e) -> Error {
        if (made)
            if (auto gone = delete_parent(m_kernel, parent); !gone)
                e.details += (e.details.empty() ? "" : "; ") + std::string("removing the parent ") + parent + ": " + gone.error().msg;
        return e;
    };
    // "This kernel cannot" is said at network create, not at the first container.
    if (auto probed = driver->probe(m_kernel, effective); !probed)
        return undo_parent(probed.release_error());
    // The space of the pools Docker holds: the network's own when it exists; else the pool
    // RequestPool gave for the first subnet (a CNI network's, when --ipam-opt named this one).
    std::string space = docker_space;
    if (stored.ok())
        space = stored.record.address_space;
    else if (!subnets.empty() && TRY(ipam::Pools(m_store).exists({ "cni:" + name, subnets.front().first })))
        space = "cni:" + name;
    auto created = endpoints(opts.driver).create_network(spec, space, subnets, id);
    if (!created)
        return undo_parent(created.release_error());
    if (made)
        TRY(m_store.put(parent_key(parent), Json { { "parent", parent }, { "createdFor", name } }));
    // The binding of the Docker id to the network, unless the network is named by it: then its
    // record, which lists the Docker ids it serves, is the binding (one flushed file less).
    if (name != id)
        TRY(m_store.put(binding_key(id), Json { { "id", id }, { "network", name }, { "created", now_rfc3339() } }));
    return Json::object();
}

// A Docker network bound to cluster network `name` on this host. RequestPool learned the
// network (its facts are in the host's cache) and gave the cluster subnet as the pool; the
// network record is the one a CNI vxlan ADD on this host makes or finds — space "cluster:NAME",
// no subnets of its own (the blocks' pools are the host's), the cluster's facts as its options,
// the bridge a CNI conf that names none gets — so CNI pods and Docker containers share it.
Result<Json> DockerApi::create_vxlan_network(const std::string& id, const Json& keys, const std::string& name, const std::vector<IpNet>& subnets)
{
    ClusterConfig config = TRY(host_cluster_config());
    auto local = TRY(load_local_blocks(m_store, name));
    if (!local.facts)
        return make_error(Code::InvalidConfig, "cluster network \"" + name + "\" is not known on this host (its pool is not a cluster pool)",
            "create the Docker network with --ipam-opt cnm.network=" + name + "; a network new to the cluster also needs --ipam-opt cnm.driver=vxlan --ipam-opt vni=N");
    const NetworkFacts& facts = *local.facts;
    bool v4 = false;
    for (auto& s : subnets) {
        const std::optional<IpNet> theirs = s.addr.family == 4 ? std::optional<IpNet>(facts.subnet) : facts.subnet6;
        if (!theirs || !(*theirs == s))
            return make_error(Code::InvalidConfig, "cluster network \"" + name + "\" has subnet " + facts.subnet.str()
                    + (facts.subnet6 ? " and " + facts.subnet6->str() : std::string()) + ", but docker network create asks for " + s.str());
        v4 |= s.addr.family == 4;
    }
    if (!v4)
        return make_error(Code::InvalidConfig, "cluster network \"" + name + "\" needs its IPv4 subnet: --subnet " + facts.subnet.str());
    TRY(TRY(FactsWanted::parse(keys)).agree(name, facts));

    auto lock = TRY(m_registry.lock_network(name));
    auto stored = TRY(m_registry.load_network(name));
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record of \"" + name + "\" is corrupt (" + stored.reason + ")");
    if (stored.ok() && stored.record.driver != "vxlan")
        return make_error(Code::InvalidConfig, "network \"" + name + "\" exists with driver \"" + stored.record.driver + "\", not \"vxlan\"");
    NetworkSpec spec { name, "vxlan", Frontend::Docker, keys };
    if (stored.absent()) {
        spec.options["type"] = "vxlan";
        if (!spec.options.contains("bridge"))
            spec.options["bridge"] = drivers::default_vxlan_bridge(name);
        if (!spec.options.contains("underlay") && !config.underlay.empty())
            spec.options["underlay"] = config.underlay;
    }
    complete_vxlan_options(spec.options, facts);
    Driver* driver = find_driver("vxlan");
    TRY(driver->validate(stored.ok() ? stored.record.options : spec.options));
    auto record = TRY(endpoints("vxlan").create_network(spec, cluster_space(name), {}, id));
    // The bridge holds this host's block gateways (a CNI ADD or a Join adds those of later blocks).
    std::vector<IpNet> gateways;
    for (auto& b : local.blocks)
        gateways.push_back({ b.gateway(), b.block.prefix });
    TRY(driver->ensure_network(m_kernel, record.options, gateways));
    // The other hosts' blocks, at once (the agent keeps them right from then on); an etcd that
    // does not answer leaves that to the agent.
    Cluster cluster(config);
    if (auto blocks = cluster.blocks(name))
        TRY(drivers::program_remote_blocks(m_kernel, record.options, *blocks));
    TRY(m_store.put(binding_key(id), Json { { "id", id }, { "network", name }, { "created", now_rfc3339() } }));
    return Json::object();
}

Result<Json> DockerApi::delete_network(const Json& req)
{
    std::string id = TRY(id_field(req, "NetworkID", "DeleteNetwork"));
    auto name = TRY(bound_network(id));
    if (!name)
        return Json::object();
    auto lock = TRY(m_registry.lock_network(*name));
    auto stored = TRY(m_registry.load_network(*name));
    if (stored.ok()) {
        const NetworkRecord& record = stored.record;
        TRY(endpoints(record.driver).delete_network(*name, id));
        bool gone = TRY(m_registry.load_network(*name)).absent();
        // A VLAN parent the shim made goes with the last network on it.
        std::string parent = string_of(record.options, "master");
        if (gone && !parent.empty() && TRY(m_store.exists(parent_key(parent)))) {
            bool used = false;
            for (auto& other : TRY(m_registry.list_networks())) {
                auto o = TRY(m_registry.load_network(other));
                used |= o.ok() && o.record.name != *name && string_of(o.record.options, "master") == parent;
            }
            if (!used) {
                TRY(delete_parent(m_kernel, parent));
                TRY(m_store.remove(parent_key(parent)));
            }
        }
    }
    TRY(m_store.remove(binding_key(id)));
    return Json::object();
}

} // namespace cnm::shim
