#pragma once
// Docker's remote NetworkDriver and IpamDriver (reference/cnm.md §1) as a translation layer over
// the endpoint lifecycle (cnm/endpoint.hpp): every call is decoded (request.hpp), mapped onto one
// of the lifecycle's Docker phases with the Driver of the network's kind (cnm/driver.hpp), and its
// result encoded as Docker's reply. No kernel work happens here; it is all the drivers', through
// the Kernel seam.
//
// One call is one function from (method, JSON body) to (HTTP status, JSON body); every fact is
// in the state directory the CNI plugins share, and what lives in memory between calls is a hint
// read back from it (which endpoint holds an address), so a shim restart loses nothing, and the
// handlers are tested without a socket or a kernel.
//
// Mapping (DESIGN.md §5), by file:
//   ipam_api.cpp
//     RequestPool/ReleasePool     a Docker reference on the pool (space, subnet) — the same pool a
//                                 CNI conf with that subnet uses. PoolID is "local/<subnet>". The
//                                 reply's Data names the pool's gateway, so Docker asks for it only
//                                 for a --gateway (or where none could be named: a /32, a pool a
//                                 network uses without one).
//     RequestAddress              a lease owned by "docker" (Docker names no endpoint here); the
//                                 gateway request returns the pool's gateway, which nobody leases.
//     ReleaseAddress              frees the lease, unless a live endpoint of this boot holds the
//                                 address (dockerd releasing its stale endpoints' addresses after
//                                 a restart): the endpoint records the hint names are read.
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
//
// vxlan (cluster) networks, `-o cnm.driver=vxlan -o cnm.network=NAME --ipam-opt cnm.network=NAME
// --subnet <cluster subnet>` on each host (the cluster — etcd, prefix, node, underlay — is the
// host's cluster file, the one the agent and the CNI plugin read):
//     RequestPool                 NAME is a cluster network (the host's cache, else etcd; or
//                                 --ipam-opt cnm.driver=vxlan and its vni for a new one): PoolID
//                                 "cluster:NAME/<subnet>"; the subnet must be the cluster's.
//     RequestAddress              the gateway: this host's first block's gateway (a block is
//                                 claimed when the host holds none); else an address from this
//                                 host's blocks (ClusterAddresses::take, the CNI pods' allocator
//                                 and pools), a Docker lease; both with the pool's prefix.
//     CreateNetwork               the lifecycle's create_network in space "cluster:NAME" with the
//                                 cluster's facts as the vxlan driver's options; the bridge gets
//                                 this host's block gateways, the vxlan device the remote blocks.
//     CreateEndpoint              the address is recorded with its block (its prefix, gateway
//                                 and pool), as a CNI pod's is.
//     ReleaseAddress              frees the lease in its block's pool; the blocks stay.

#include "cnm/cluster_ipam.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/registry.hpp"
#include "kernel/kernel.hpp"
#include "store/store.hpp"
#include "util/json.hpp"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

/// The host's cluster, for vxlan networks: its cluster file ($CNM_CLUSTER_FILE, else
/// /etc/cnm/cluster.json), the one the agent and the CNI plugin read. Code 7 saying so without one.
Result<ClusterConfig> host_cluster_config();
/// This host's source of a cluster network's addresses, from the facts the host has cached (the
/// VTEP, needed only for a claim, from `underlay`: an interface or address, empty for the default route's).
Result<std::unique_ptr<ClusterAddresses>> cluster_source(Store& store, Kernel& kernel, const std::string& network, const std::string& underlay);

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
    // vxlan (ipam_api.cpp, network_api.cpp)
    Result<std::optional<NetworkFacts>> cluster_pool(const std::string& network, const IpNet& subnet, const Json& facts, bool hinted);
    Result<Json> request_cluster_address(const ipam::PoolId& pool, const std::string& network, std::optional<IpAddr> wanted, bool gateway);
    Result<Json> release_cluster_address(const ipam::PoolId& pool, const std::string& network, const IpAddr& ip);
    Result<Json> create_vxlan_network(const std::string& id, const Json& keys, const std::string& name, const std::vector<IpNet>& subnets);

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

    // Which live Docker endpoints hold an address, so that ReleaseAddress reads their records
    // instead of every endpoint of the pool's networks: (address space, address) → (network,
    // endpoint key)… (one, unless the records disagree). Read from the records by the first
    // ReleaseAddress, then kept by CreateEndpoint and DeleteEndpoint. A hint only: a lease is kept
    // when a record it names, read now, is a live Docker endpoint with that address. Only the
    // shim makes Docker endpoints; calls are serialized (server.cpp), so it needs no lock.
    struct Holder {
        std::string network;
        std::string key;
    };
    using HolderKey = std::pair<std::string, IpAddr>;
    std::optional<std::map<HolderKey, std::vector<Holder>>> m_holders;
    /// Adds `key` (of `network`'s directory) as a holder of each of the record's addresses, once.
    static void add_holders(std::map<HolderKey, std::vector<Holder>>& holders, const std::string& network,
        const EndpointRecord& record, const std::string& key);
    void note_holders(const EndpointRecord& record, const std::string& key);
    void drop_holders(const EndpointRecord& record, const std::string& key);
    Result<bool> held_by_live_endpoint(const ipam::PoolId& pool, const IpAddr& ip);
    // Whether this process has brought the subnet index (registry.hpp) up to date from the
    // records: the first RequestPool without cnm.network does.
    bool m_subnets_indexed = false;

    Store& m_store;
    Registry m_registry;
    Kernel& m_kernel;
};

} // namespace cnm::shim
