#pragma once
// Decoding Docker's requests into the model's terms: the id fields, `docker network create -o`
// options as a driver's CNI keys, IPAMData, port maps, pool ids, and the names the shim derives
// from Docker's ids. Pure: nothing here touches the store or the kernel.

#include "cnm/driver.hpp"
#include "ipam/pool.hpp"
#include "store/store.hpp"
#include "util/json.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cnm::shim {

inline constexpr const char* docker_ifname = "docker"; // the ifname part of a Docker endpoint's key
inline constexpr const char* docker_space = "local";

Error bad_request(const std::string& method, const std::string& msg);

/// A Docker id field: required, 1–128 of [A-Za-z0-9_.-], not starting with '.'.
Result<std::string> id_field(const Json& req, const char* key, const std::string& method);

/// The string at `key`, or `fallback` when absent or not a string.
std::string string_of(const Json& o, const char* key, const std::string& fallback = "");
std::string join_list(const std::vector<std::string>& items);

/// The -o options of `docker network create` (com.docker.network.generic): the network's name,
/// the driver kind and the driver's CNI keys with their JSON types.
struct NetworkOptions {
    std::optional<std::string> name;
    std::string driver = "bridge";
    Json keys = Json::object();
};

/// Each key is the CNI conf's (one of the driver's network_defaults() or attachment_defaults(),
/// typed like its default and checked against its choices()) or Docker's spelling of one
/// (com.docker.network.bridge.name → bridge, parent → master, …).
Result<NetworkOptions> parse_network_options(const Json& generic);

/// The space of a cluster (vxlan) network's Docker pool: "cluster:<name>", the space of its
/// blocks' pools. Its PoolID is "cluster:<name>/<cluster subnet>"; the addresses live in the
/// pools of this host's blocks.
std::string cluster_space(const std::string& network);
/// The network a "cluster:<name>" space is of, or nullopt for any other space.
std::optional<std::string> cluster_space_network(const std::string& space);

/// The --ipam-opt of `docker network create` (RequestPool's Options): cnm.network=NAME names the
/// network; cnm.driver=vxlan says it is a cluster network (needed only when the cluster does not
/// know NAME yet), and then vni, blockSize, port and mtu are its facts, which the first host of
/// the network writes to the cluster (the same keys a CNI vxlan conf has).
struct PoolOptions {
    std::optional<std::string> network;
    std::optional<std::string> driver;
    Json facts = Json::object(); // typed as the vxlan driver's keys
};
Result<PoolOptions> parse_pool_options(const Json& options);

/// The key `docker_key` means for driver `kind`, or nullopt when it is not one of Docker's spellings.
std::optional<std::string> docker_spelling(std::string_view kind, const std::string& docker_key);

/// One entry of IPv4Data / IPv6Data.
struct PoolData {
    ipam::PoolId pool;
    std::optional<IpNet> gateway;
};
/// IPv4Data / IPv6Data: [{"AddressSpace","Pool","Gateway","AuxAddresses"}]; at least one.
Result<std::vector<PoolData>> parse_ipam_data(const Json& req);

/// "PoolID": "local/<subnet>".
Result<ipam::PoolId> pool_field(const Json& req, const std::string& method);

/// com.docker.network.portmap: [{"Proto","IP","Port","HostIP","HostPort","HostPortEnd"}], mapped
/// onto the endpoint's addresses.
Result<std::vector<firewall::PortMap>> parse_port_maps(const Json& options, const EndpointRecord& record);

/// A random unicast, locally administered MAC.
std::string random_mac();

/// The name of the link Join leaves in the host for Docker to move into the sandbox: "cnc" and 11
/// hex digits of a 64-bit FNV-1a hash of the whole endpoint id — deterministic (a retried Join
/// finds it), and ids that share a prefix get different names.
std::string container_link_name(std::string_view endpoint_id);

/// Where the binding of a Docker network id to a Network is kept.
Key binding_key(const std::string& docker_id);
/// Parents (VLAN sub-interfaces) the shim created, so the last network on one removes it.
Key parent_key(const std::string& parent);
/// The endpoint record's key of a Docker endpoint.
std::string endpoint_key_of(const std::string& endpoint_id);

} // namespace cnm::shim
