#pragma once
// What the drivers share: configuring the sandbox end of a link once it is in its namespace,
// checking it against a kept result, names and MACs. Over the Kernel seam only.

#include "cnm/driver.hpp"

#include <optional>
#include <string>

namespace cnm::drivers {

Error invalid(const std::string& msg);
std::string random_hex(size_t bytes);
/// The string at `key` of a record's driver state, or "".
std::string state_string(const Json& state, const char* key);

/// The sandbox of a Netns target, or an error naming the path (code 4: the runtime's CNI_NETNS).
Result<NsId> open_sandbox(Kernel& kernel, const Target& target);

struct ContainerSetup {
    bool up = true;
    bool dad = false;
    bool default_gateway = false; // add a default route via the gateway when IPAM gave none
};
/// Brings `ifname` up inside the sandbox, adds the addresses and routes of `setup` (appending a
/// default route to it when asked). Returns the link as it is then.
Result<Link> configure_container(Kernel& kernel, NsId ns, const ContainerSetup& how, const std::string& ifname, NetSetup& setup);
/// Whether a create under the runtime's name in sandbox `ns` failed with `failure` because the name
/// is taken there (EEXIST, and a link of that name is there; not a host end's name).
Result<bool> name_taken(Kernel& kernel, NsId ns, const std::string& ifname, const Error& failure);
/// Code 7, "container already has an interface named `ifname`".
Error name_taken_error(const std::string& ifname);

/// The veth of a bridge endpoint (bridge, vxlan).
struct BridgeVeth {
    Link host;        // the host end, a port of the bridge and up
    std::string peer; // the container end's name: the target's for Docker's Join, else the record's temp name
    NsId ns;          // where the container end is: the host (Join), else the sandbox
};
/// Makes the endpoint's veth pair: the host end under the name its record keeps ("hostVeth"), made
/// a port of `bridge` and up; the container end in the host under the target's name (Docker moves
/// it) or in the sandbox under the record's temp name, with the record's MAC when it has one. Both
/// ends get `mtu`.
Result<BridgeVeth> add_bridge_veth(Kernel& kernel, const Link& bridge, const EndpointRecord& endpoint, const Target& target,
    std::optional<int> mtu);
/// The container end once the host end is done: configured in the sandbox as `how` says (renamed
/// to the target's name), or, left in the host for Docker, only looked up. Returns its MAC.
Result<Mac> finish_container_end(Kernel& kernel, const BridgeVeth& veth, const Target& target, const ContainerSetup& how,
    NetSetup& setup);

/// Detach of a veth endpoint (bridge, vxlan): the host end by its recorded name (its peer goes with
/// it), the container end while it is still in the host (a Docker endpoint before Docker moved
/// it), and the sandbox's interface by name when the netns still exists.
Result<void> delete_veth_endpoint(Kernel& kernel, const EndpointRecord& endpoint);
/// CHECK of a veth endpoint: the sandbox side as check_container says, and the host end a port of `bridge`.
Result<Link> check_veth_endpoint(Kernel& kernel, const EndpointRecord& endpoint, const std::string& bridge, const NetSetup& prev);

/// The sandbox holds `endpoint.ifname` as a link of `kind` with the MAC, addresses and routes `prev` lists.
Result<Link> check_container(Kernel& kernel, const EndpointRecord& endpoint, const std::string& kind, const NetSetup& prev);

/// Deletes the links named `names` inside the endpoint's sandbox if it still exists (its links
/// die with it otherwise), when they are of `kind`.
Result<void> delete_in_sandbox(Kernel& kernel, const std::string& netns, const std::vector<std::string>& names, const std::string& kind);
/// Deletes a host link by name when it exists (of `kind`, when given).
Result<void> delete_host_link(Kernel& kernel, const std::string& name, const std::string& kind = "");

/// An optional positive int key (mtu), an optional MAC key.
Result<std::optional<int>> positive_int(const Json& options, const char* key, long long max);
Result<std::optional<Mac>> mac_key(const Json& options, const char* key);

} // namespace cnm::drivers
