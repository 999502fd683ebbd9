// Docker's endpoint calls over the lifecycle's Docker phases: CreateEndpoint → Endpoints::create,
// Join → join, Leave → leave, DeleteEndpoint → detach + remove, Program/RevokeExternalConnectivity
// → publish. The addresses were reserved by Docker's RequestAddress and stay leased until its
// ReleaseAddress.
#include "docker_api.hpp"

#include "request.hpp"

#include "ipam/pool.hpp"

#include <algorithm>

namespace cnm::shim {

namespace {

using ipam::PoolId;
using ipam::Pools;

Json route_json(const IpNet& dst, const std::optional<IpAddr>& via)
{
    IpNet net { dst.network(), dst.prefix };
    if (via)
        return { { "Destination", net.str() }, { "RouteType", 0 }, { "NextHop", via->str() } };
    return { { "Destination", net.str() }, { "RouteType", 1 } }; // connected
}

/// Routes a CNI conf of this network lists in its IPAM section apply to Docker's containers too:
/// a route without "gw" goes through the gateway of its family, as a CNI ADD configures it.
void add_ipam_routes(const Json& options, const std::optional<IpAddr>& gw4, const std::optional<IpAddr>& gw6, Json& routes)
{
    if (!options.contains("ipam") || !options["ipam"].is_object())
        return;
    auto list = options["ipam"].value("routes", Json::array());
    if (!list.is_array())
        return;
    for (auto& r : list) {
        if (!r.is_object() || !r.contains("dst") || !r["dst"].is_string())
            continue;
        auto dst = IpNet::parse(r["dst"].get<std::string>());
        if (!dst || dst->prefix == 0) // the default route is Docker's, from Gateway
            continue;
        std::optional<IpAddr> via;
        if (r.contains("gw") && r["gw"].is_string())
            via = IpAddr::parse(r["gw"].get<std::string>());
        if (!via)
            via = dst->addr.family == 4 ? gw4 : gw6;
        routes.push_back(route_json(*dst, via));
    }
}

Error unknown_network(const Json& req)
{
    std::string nid = req.contains("NetworkID") && req["NetworkID"].is_string() ? req["NetworkID"].get<std::string>() : "";
    return make_error(Code::InvalidConfig, "network " + nid + " is not a cnm network (unknown id)");
}

} // namespace

Result<Json> DockerApi::create_endpoint(const Json& req)
{
    std::string nid = TRY(id_field(req, "NetworkID", "CreateEndpoint"));
    std::string eid = TRY(id_field(req, "EndpointID", "CreateEndpoint"));
    Json iface = TRY(json_object(req, "Interface", "CreateEndpoint"));
    if (iface.is_null())
        iface = Json::object();
    (void)TRY(json_object(req, "Options", "CreateEndpoint"));
    std::string addr4 = TRY(json_string(iface, "Address", "Interface")).value_or("");
    std::string addr6 = TRY(json_string(iface, "AddressIPv6", "Interface")).value_or("");
    std::string mac = TRY(json_string(iface, "MacAddress", "Interface")).value_or("");
    if (!mac.empty() && !netlink::parse_mac(mac))
        return make_error(Code::InvalidConfig, "\"" + mac + "\" is not a MAC address");

    auto name = TRY(bound_network(nid));
    if (!name)
        return unknown_network(req);
    auto lock = TRY(m_registry.lock_network(*name));
    auto network = TRY(m_registry.load_network(*name));
    if (!network.ok())
        return make_error(Code::StateCorrupt, "network \"" + *name + "\" has no usable record", network.reason);
    Driver* driver = find_driver(network.record.driver);
    if (!driver)
        return make_error(Code::StateCorrupt, "network \"" + *name + "\" has driver \"" + network.record.driver + "\", which this cnm does not have");
    bool own_mac = driver->own_mac();
    if (!own_mac && !mac.empty())
        return make_error(Code::InvalidConfig, network.record.driver + " interfaces share their parent's MAC address: --mac-address cannot be used");
    // Docker refuses a reply that sets a field it had set.
    auto reply = [&](const std::string& ours) {
        return Json { { "Interface", mac.empty() && own_mac ? Json { { "MacAddress", ours } } : Json::object() } };
    };
    auto existing = TRY(m_registry.load_endpoint(*name, endpoint_key_of(eid)));
    if (existing.ok()) { // a retry
        note_holders(existing.record, endpoint_key_of(eid));
        return reply(existing.record.mac);
    }

    Pools pools(m_store);
    std::vector<EndpointAddress> addresses;
    // A cluster network's addresses are in this host's blocks: recorded with the block's prefix,
    // gateway and pool, as a CNI pod's are (Docker gives the container the pool's prefix).
    std::optional<LocalBlocks> blocks;
    if (cluster_space_network(network.record.address_space))
        blocks = TRY(load_local_blocks(m_store, *name));
    for (auto& text : { addr4, addr6 }) {
        if (text.empty())
            continue;
        auto address = IpNet::parse(text);
        if (!address)
            return make_error(Code::InvalidConfig, "\"" + text + "\" is not an address/prefix");
        if (blocks) {
            auto block = std::find_if(blocks->blocks.begin(), blocks->blocks.end(), [&](const BlockOwner& b) { return b.block.contains(address->addr); });
            if (block == blocks->blocks.end())
                return make_error(Code::InvalidConfig, address->addr.str() + " is in none of this host's blocks of cluster network \"" + *name + "\"");
            PoolId pool { network.record.address_space, block->block };
            auto holder = TRY(pools.owner_of(pool, address->addr));
            if (!holder || holder->frontend != Frontend::Docker)
                return make_error(Code::AddressUnavailable, address->addr.str() + (holder ? " is held by CNI attachment " + holder->container_id + "/" + holder->ifname
                                                                                           : std::string(" was not allocated by cnm's IPAM")));
            addresses.push_back({ IpNet { address->addr, block->block.prefix }, block->gateway(), pool.str() });
            continue;
        }
        auto subnet = std::find_if(network.record.subnets.begin(), network.record.subnets.end(), [&](const std::string& s) {
            auto net = IpNet::parse(s);
            return net && net->prefix == address->prefix && net->contains(address->addr);
        });
        if (subnet == network.record.subnets.end())
            return make_error(Code::InvalidConfig, address->str() + " is in none of network \"" + *name + "\"'s subnets " + join_list(network.record.subnets));
        PoolId pool { network.record.address_space, *IpNet::parse(*subnet) };
        // The address must be a Docker lease: never one a CNI attachment holds.
        auto holder = TRY(pools.owner_of(pool, address->addr));
        if (holder && holder->frontend != Frontend::Docker)
            return make_error(Code::AddressUnavailable, address->addr.str() + " is held by CNI attachment " + holder->container_id + "/" + holder->ifname);
        if (!holder)
            return make_error(Code::AddressUnavailable, address->addr.str() + " was not allocated by cnm's IPAM");
        auto gateway = TRY(pools.gateway(pool));
        addresses.push_back({ *address, gateway, pool.str() });
    }
    std::string ours = own_mac ? (mac.empty() ? random_mac() : mac) : "";
    auto record = TRY(endpoints(network.record.driver).create(*name, eid, addresses, ours));
    note_holders(record, endpoint_key_of(eid));
    return reply(record.mac);
}

Result<Json> DockerApi::join(const Json& req)
{
    std::string sandbox_key = TRY(json_string(req, "SandboxKey", "Join")).value_or("");
    if (sandbox_key.empty() || sandbox_key[0] != '/')
        return bad_request("Join", "\"SandboxKey\" must be an absolute path");
    std::string sandbox = sandbox_key.substr(sandbox_key.rfind('/') + 1);
    if (sandbox.empty())
        return bad_request("Join", "\"SandboxKey\" names no sandbox");
    auto call = TRY(open_endpoint(req, "Join"));
    if (!call)
        return unknown_network(req);
    if (!call->stored.ok())
        return make_error(Code::InvalidConfig, "endpoint " + call->endpoint_id + " is not known (no CreateEndpoint for it)");
    auto network = TRY(m_registry.load_network(call->network));
    if (!network.ok())
        return make_error(Code::StateCorrupt, "network \"" + call->network + "\" has no usable record", network.reason);
    if (!find_driver(network.record.driver))
        return make_error(Code::StateCorrupt, "network \"" + call->network + "\" has driver \"" + network.record.driver + "\", which this cnm does not have");
    // A VLAN parent the shim made is gone after a reboot (the definition stays): made again.
    if (std::string parent = network.record.options.value("master", ""); !parent.empty() && TRY(m_store.exists(parent_key(parent))))
        TRY(ensure_parent(m_kernel, parent));
    EndpointRecord record = call->stored.record;
    std::string link = container_link_name(call->endpoint_id);
    Attached attached = TRY(endpoints(network.record.driver).join(record, Target::in_host(link), sandbox, sandbox_key));

    Json reply = { { "InterfaceName", { { "SrcName", link }, { "DstPrefix", "eth" } } } };
    std::optional<IpAddr> gw4, gw6;
    for (auto& a : record.addresses)
        if (a.gateway)
            (a.gateway->family == 4 ? gw4 : gw6) = *a.gateway;
    bool announced = false;
    if (attached.announce_gateway) {
        if (gw4)
            reply["Gateway"] = gw4->str();
        if (gw6)
            reply["GatewayIPv6"] = gw6->str();
        announced = gw4 || gw6;
    }
    // No gateway here: without this Docker would add a second interface on docker_gwbridge.
    if (attached.disable_gateway_service || !announced)
        reply["DisableGatewayService"] = true;
    Json routes = Json::array();
    for (auto& r : attached.static_routes)
        routes.push_back(route_json(r.dst, r.gw));
    add_ipam_routes(network.record.options, gw4, gw6, routes);
    if (!routes.empty())
        reply["StaticRoutes"] = routes;
    return reply;
}

Result<Json> DockerApi::leave(const Json& req)
{
    auto call = TRY(open_endpoint(req, "Leave"));
    if (!call || !call->stored.ok())
        return Json::object();
    auto network = TRY(m_registry.load_network(call->network));
    EndpointRecord record = call->stored.record;
    TRY(endpoints(network.ok() ? network.record.driver : "").leave(record));
    return Json::object();
}

Result<Json> DockerApi::delete_endpoint(const Json& req)
{
    auto call = TRY(open_endpoint(req, "DeleteEndpoint"));
    if (!call || call->stored.absent())
        return Json::object();
    if (call->stored.corrupt()) {
        TRY(m_registry.remove_endpoint(call->network, call->key));
        return Json::object();
    }
    auto network = TRY(m_registry.load_network(call->network));
    auto lifecycle = endpoints(network.ok() ? network.record.driver : "");
    const EndpointRecord& record = call->stored.record;
    // Docker has moved the container end back to the host by now (or the sandbox died and took
    // it along): the firewall elements and every link the record names go. The addresses stay
    // leased until Docker's ReleaseAddress, which always follows.
    TRY(lifecycle.detach(record));
    TRY(lifecycle.remove(call->network, call->key));
    drop_holders(record, call->key);
    return Json::object();
}

Result<Json> DockerApi::endpoint_info(const Json& req)
{
    auto call = TRY(open_endpoint(req, "EndpointOperInfo"));
    if (!call || !call->stored.ok())
        return Json { { "Value", Json::object() } };
    auto& r = call->stored.record;
    Json value = { { "cnm.network", call->network }, { "cnm.mac", r.mac } };
    if (r.driver_state.is_object())
        for (auto& [k, v] : r.driver_state.items())
            value["cnm." + k] = v;
    return Json { { "Value", value } };
}

Result<Json> DockerApi::program_external(const Json& req)
{
    Json options = TRY(json_object(req, "Options", "ProgramExternalConnectivity"));
    auto call = TRY(open_endpoint(req, "ProgramExternalConnectivity"));
    if (!call)
        return unknown_network(req);
    if (!call->stored.ok())
        return make_error(Code::InvalidConfig, "endpoint " + call->endpoint_id + " is not known (no CreateEndpoint for it)");
    EndpointRecord record = call->stored.record;
    auto ports = TRY(parse_port_maps(options, record));
    auto network = TRY(m_registry.load_network(call->network));
    std::string kind = network.ok() ? network.record.driver : "";
    if (!ports.empty() && kind != "bridge")
        return make_error(Code::InvalidConfig, "published ports (-p) are not supported on " + (kind.empty() ? std::string("this") : kind)
                + " networks: the container is reachable on its own address");
    // Programming again replaces what an earlier call published.
    TRY(endpoints(kind).publish(record, ports));
    return Json::object();
}

Result<Json> DockerApi::revoke_external(const Json& req)
{
    auto call = TRY(open_endpoint(req, "RevokeExternalConnectivity"));
    if (!call || !call->stored.ok())
        return Json::object();
    auto network = TRY(m_registry.load_network(call->network));
    EndpointRecord record = call->stored.record;
    TRY(endpoints(network.ok() ? network.record.driver : "").publish(record, {}));
    return Json::object();
}

} // namespace cnm::shim
