#pragma once
// Docker's remote NetworkDriver and IpamDriver (reference/cnm.md §1) as a translation layer over
// the endpoint lifecycle (cnm/endpoint.hpp): every call is decoded (request.hpp), mapped onto one
// of the lifecycle's Docker phases with the Driver of the network's kind (cnm/driver.hpp), and its
// result encoded as Docker's reply. No kernel work happens here; it is all the drivers', through
// the Kernel seam.
//
// One call is one function from (method, JSON body) to (HTTP status, JSON body); nothing lives
// in memory between calls — every fact is in the state directory the CNI plugins share — so a
// shim restart loses nothing, and the handlers are tested without a socket or a kernel.
//
// Mapping (DESIGN.md §5), by file:
//   ipam_api.cpp
//     RequestPool/ReleasePool     a Docker reference on the pool (space, subnet) — the same pool a
//                                 CNI conf with that subnet uses. PoolID is "local/<subnet>".
//     RequestAddress              a lease owned by "docker" (Docker names no endpoint here); the
//                                 gateway request returns the pool's gateway, which nobody leases.
//   network_api.cpp
//     CreateNetwork               Endpoints::create_network: binds the Docker network id to the
//                                 Network named by -o cnm.network (created if absent, checked
//                                 against its subnets and keys if not); Driver::probe first.
//     DeleteNetwork               Endpoints::delete_network.
//   endpoint_api.cpp
//     CreateEndpoint              Endpoints::create: the record "<EndpointID>@docker" with the
//                                 addresses Docker reserved.
//     Join                        Endpoints::join into Target::in_host(<link name>): the driver
//                                 leaves the sandbox's link in the shim's netns, returned as
//                                 SrcName for Docker to move.
//     Program/RevokeExternal…     Endpoints::publish (DNAT of the published ports).
//     Leave / DeleteEndpoint      Endpoints::leave / detach + remove; unknown ids are success
//                                 (Docker repeats them after restarts).

#include "cnm/endpoint.hpp"
#include "cnm/registry.hpp"
#include "kernel/kernel.hpp"
#include "store/store.hpp"
#include "util/json.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cnm::shim {

struct Reply {
    int status = 200;
    Json body = Json::object();
};

/// HTTP 500 with {"Err","Error"}: NetworkDriver replies are read for Err, IpamDriver ones for Error.
Reply error_reply(const Error& error);

/// Makes an absent "<if>.<vid>" parent as an 802.1Q sub-interface of <if>; true when it did. Any
/// other absent name is an error.
Result<bool> ensure_parent(Kernel& kernel, const std::string& name);

class DockerApi {
public:
    DockerApi(Store& store, Kernel& kernel) : m_store(store), m_registry(store), m_kernel(kernel) { }

    /// `method` is the path without its slash ("NetworkDriver.Join"); an empty body is {}.
    /// One durability barrier (store sync) per call.
    Reply handle(std::string_view method, std::string_view body);

    /// The network a Docker network id is bound to, if any.
    Result<std::optional<std::string>> bound_network(const std::string& docker_id);

private:
    // network_api.cpp
    Result<Json> create_network(const Json& req);
    Result<Json> delete_network(const Json& req);
    // endpoint_api.cpp
    Result<Json> create_endpoint(const Json& req);
    Result<Json> delete_endpoint(const Json& req);
    Result<Json> endpoint_info(const Json& req);
    Result<Json> join(const Json& req);
    Result<Json> leave(const Json& req);
    Result<Json> program_external(const Json& req);
    Result<Json> revoke_external(const Json& req);
    // ipam_api.cpp
    Result<std::string> pool_space(const IpNet& subnet, const std::optional<std::string>& named);
    Result<Json> request_pool(const Json& req);
    Result<Json> release_pool(const Json& req);
    Result<Json> request_address(const Json& req);
    Result<Json> release_address(const Json& req);

    /// The lifecycle for a network of driver kind `kind` (null driver for an unknown kind).
    Endpoints endpoints(const std::string& kind) { return Endpoints(m_registry, &m_kernel, find_driver(kind)); }

    /// The common start of the endpoint calls: the ids, the Network the Docker network is bound to
    /// (locked) and the endpoint's record. Empty when the network id is unknown.
    struct EndpointCall {
        std::string network;
        std::string endpoint_id;
        std::string key;
        std::unique_ptr<Lock> lock;
        Stored<EndpointRecord> stored;
    };
    Result<std::optional<EndpointCall>> open_endpoint(const Json& req, const std::string& method);

    Store& m_store;
    Registry m_registry;
    Kernel& m_kernel;
};

} // namespace cnm::shim
