#include "docker_api.hpp"

#include "request.hpp"

#include "drivers/vxlan.hpp"

#include <algorithm>
#include <map>

namespace cnm::shim {

Reply error_reply(const Error& error)
{
    std::string text = error.text();
    return { 500, Json { { "Err", text }, { "Error", text } } };
}

Result<ClusterConfig> host_cluster_config()
{
    auto config = load_cluster_config(Json::object());
    if (!config)
        return make_error(Code::InvalidConfig, "vxlan networks need this host's cluster file: " + config.error().msg,
            "the cluster file names etcd, this host's node name and its underlay; cnm-shim serve runs the agent when it exists");
    return config;
}

Result<std::unique_ptr<ClusterAddresses>> cluster_source(Store& store, Kernel& kernel, const std::string& network, const std::string& underlay)
{
    auto config = TRY(host_cluster_config());
    auto local = TRY(load_local_blocks(store, network));
    if (!local.facts)
        return make_error(Code::InvalidConfig, "cluster network \"" + network + "\" is not known on this host",
            "create the Docker network with --ipam-opt cnm.network=" + network + " (its RequestPool learns the network from the cluster)");
    Json options = Json::object();
    if (!underlay.empty())
        options["underlay"] = underlay;
    else if (!config.underlay.empty())
        options["underlay"] = config.underlay;
    auto vtep = [&kernel, options]() -> Result<Vtep> {
        auto u = TRY(drivers::vxlan_underlay(kernel, options));
        return Vtep { u.address, vtep_mac(u.address) };
    };
    auto source = std::make_unique<ClusterAddresses>(std::make_shared<Cluster>(config), *local.facts, vtep);
    source->scope(network);
    return source;
}

Result<std::optional<std::string>> DockerApi::bound_network(const std::string& docker_id)
{
    Loaded loaded = TRY(m_store.get(binding_key(docker_id)));
    if (loaded.ok() && loaded.doc.is_object() && loaded.doc.contains("network") && loaded.doc["network"].is_string())
        return std::optional<std::string>(loaded.doc["network"].get<std::string>());
    // A network named by its Docker id has no binding: its record says it is Docker's.
    auto stored = TRY(m_registry.load_network(docker_id));
    auto& ids = stored.record.docker_ids;
    if (stored.ok() && std::find(ids.begin(), ids.end(), docker_id) != ids.end())
        return std::optional<std::string>(docker_id);
    return std::optional<std::string> {};
}

Result<std::optional<DockerApi::EndpointCall>> DockerApi::open_endpoint(const Json& req, const std::string& method)
{
    std::string nid = TRY(id_field(req, "NetworkID", method));
    EndpointCall call;
    call.endpoint_id = TRY(id_field(req, "EndpointID", method));
    auto name = TRY(bound_network(nid));
    if (!name)
        return std::optional<EndpointCall> {};
    call.network = *name;
    call.lock = TRY(m_registry.lock_network(call.network));
    call.key = endpoint_key_of(call.endpoint_id);
    call.stored = TRY(m_registry.load_endpoint(call.network, call.key));
    return std::optional<EndpointCall>(std::move(call));
}

Reply DockerApi::handle(std::string_view method, std::string_view body)
{
    using Handler = Result<Json> (DockerApi::*)(const Json&);
    static const std::map<std::string_view, Handler> handlers = {
        { "NetworkDriver.CreateNetwork", &DockerApi::create_network },
        { "NetworkDriver.DeleteNetwork", &DockerApi::delete_network },
        { "NetworkDriver.CreateEndpoint", &DockerApi::create_endpoint },
        { "NetworkDriver.DeleteEndpoint", &DockerApi::delete_endpoint },
        { "NetworkDriver.EndpointOperInfo", &DockerApi::endpoint_info },
        { "NetworkDriver.Join", &DockerApi::join },
        { "NetworkDriver.Leave", &DockerApi::leave },
        { "NetworkDriver.ProgramExternalConnectivity", &DockerApi::program_external },
        { "NetworkDriver.RevokeExternalConnectivity", &DockerApi::revoke_external },
        { "IpamDriver.RequestPool", &DockerApi::request_pool },
        { "IpamDriver.ReleasePool", &DockerApi::release_pool },
        { "IpamDriver.RequestAddress", &DockerApi::request_address },
        { "IpamDriver.ReleaseAddress", &DockerApi::release_address },
    };
    static const std::map<std::string_view, Json> constants = {
        { "Plugin.Activate", { { "Implements", { "NetworkDriver", "IpamDriver" } } } },
        { "NetworkDriver.GetCapabilities", { { "Scope", "local" }, { "ConnectivityScope", "local" } } },
        { "IpamDriver.GetCapabilities", { { "RequiresMACAddress", false }, { "RequiresRequestReplay", false } } },
        { "IpamDriver.GetDefaultAddressSpaces", { { "LocalDefaultAddressSpace", docker_space }, { "GlobalDefaultAddressSpace", "global" } } },
        // Swarm and cluster discovery: a local-scope driver has nothing to do.
        { "NetworkDriver.DiscoverNew", Json::object() },
        { "NetworkDriver.DiscoverDelete", Json::object() },
        { "NetworkDriver.AllocateNetwork", { { "Options", Json::object() } } },
        { "NetworkDriver.FreeNetwork", Json::object() },
    };
    auto handler = handlers.find(method);
    auto constant = constants.find(method);
    if (handler == handlers.end() && constant == constants.end())
        return { 404, Json { { "Err", "cnm: unknown method " + std::string(method) }, { "Error", "cnm: unknown method " + std::string(method) } } };

    // Docker sends no body for the calls without arguments.
    bool blank = std::all_of(body.begin(), body.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
    Json req = Json::object();
    if (!blank) {
        auto parsed = parse_json(body, Code::Decode, std::string(method) + " request");
        if (!parsed)
            return error_reply(parsed.error());
        req = parsed.release_value();
        if (req.is_null())
            req = Json::object();
        if (!req.is_object())
            return error_reply(bad_request(std::string(method), "the request body must be a JSON object"));
    }
    if (constant != constants.end())
        return { 200, constant->second };
    auto out = (this->*handler->second)(req);
    // One durability barrier per call, like the plugins' one per verb; also after a failure,
    // whose undo wrote too.
    auto synced = m_store.sync();
    m_store.forget_open_dirs(); // the plugins remove and re-make directories between calls
    if (!out)
        return error_reply(out.error());
    if (!synced)
        return error_reply(synced.error());
    return { 200, out.release_value() };
}

} // namespace cnm::shim
