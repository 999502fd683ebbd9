#pragma once
// Docker's remote NetworkDriver and IpamDriver (reference/cnm.md §1) over the CNM model.
//
// One call is one function from (method, JSON body) to (HTTP status, JSON body); nothing lives
// in memory between calls — every fact is in the state directory the CNI plugins share — so a
// shim restart loses nothing, and the handlers are tested without a socket.
//
// Mapping (DESIGN.md §5):
//   RequestPool/ReleasePool     a Docker reference on the pool (space, subnet) — the same pool a
//                               CNI conf with that subnet uses. PoolID is "local/<subnet>".
//   RequestAddress              a lease owned by "docker" (Docker names no endpoint here); the
//                               gateway request returns the pool's gateway, which nobody leases.
//   CreateNetwork               binds the Docker network id to the Network named by -o cnm.network
//                               (created if absent, checked against its subnets and keys if not).
//   CreateEndpoint              an Endpoint record "<EndpointID>@docker" with the addresses.
//   Join                        a veth pair in the shim's netns: the host end on the bridge, the
//                               other returned as SrcName for Docker to move into the sandbox.
//   Program/RevokeExternal…     DNAT of the published ports (nftables maps).
//   Leave/DeleteEndpoint/…      undo; unknown ids are success (Docker repeats them after restarts).

#include "dataplane.hpp"

#include "cnm/registry.hpp"
#include "store/store.hpp"
#include "util/json.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace cnm::shim {

inline constexpr const char* docker_ifname = "docker"; // the ifname part of a Docker endpoint's key
inline constexpr const char* docker_space = "local";

struct Reply {
    int status = 200;
    Json body = Json::object();
};

/// HTTP 500 with {"Err","Error"}: NetworkDriver replies are read for Err, IpamDriver ones for Error.
Reply error_reply(const Error& error);

class Driver {
public:
    Driver(Store& store, Dataplane& dataplane) : m_store(store), m_registry(store), m_dataplane(dataplane) { }

    /// `method` is the path without its slash ("NetworkDriver.Join"); an empty body is {}.
    Reply handle(std::string_view method, std::string_view body);

    /// The network a Docker network id is bound to, if any.
    Result<std::optional<std::string>> bound_network(const std::string& docker_id);

private:
    Result<Json> create_network(const Json& req);
    Result<Json> delete_network(const Json& req);
    Result<Json> create_endpoint(const Json& req);
    Result<Json> delete_endpoint(const Json& req);
    Result<Json> endpoint_info(const Json& req);
    Result<Json> join(const Json& req);
    Result<Json> join_child(const NetworkRecord& network, EndpointRecord& record, const std::string& sandbox_key);
    Result<Json> leave(const Json& req);
    Result<Json> program_external(const Json& req);
    Result<Json> revoke_external(const Json& req);

    Result<Json> request_pool(const Json& req);
    Result<Json> release_pool(const Json& req);
    Result<Json> request_address(const Json& req);
    Result<Json> release_address(const Json& req);

    Result<void> remove_firewall(const EndpointRecord& record);

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
    Dataplane& m_dataplane;
};

} // namespace cnm::shim
