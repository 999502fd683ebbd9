#pragma once
// What every driver's plugin shares: the MAC the runtime asked for, the IPAM plan (in-process or
// delegated), and configuring the container end of a link once it is in the sandbox.

#include "cni/skel.hpp"
#include "cnm/registry.hpp"
#include "ipam/ipam.hpp"
#include "netlink/route.hpp"
#include "netns/netns.hpp"

#include <memory>
#include <optional>
#include <string>

namespace cnm::drivers {

Error invalid(const std::string& msg);
std::string random_hex(size_t bytes);
/// A socket inside `netns`; the guard has returned before this returns.
Result<std::unique_ptr<netlink::Socket>> socket_in(const Netns& netns);

/// MAC for the container interface: runtimeConfig.mac wins over args.cni.mac over CNI_ARGS MAC.
Result<std::optional<netlink::Mac>> requested_mac(const cni::Context& ctx);

struct IpamPlan {
    std::string type;                    // empty: L2 only
    std::optional<ipam::IpamConf> conf;  // set when our ipam runs in-process
};
/// `parse` false: DEL/GC must work even when the IPAM section no longer parses.
Result<IpamPlan> plan_ipam(const cni::Context& ctx, bool parse);

ipam::Request request_of(const cni::Context& ctx, const std::string& driver, const Json& identity);

Result<void> delegate_ipam(const cni::Context& ctx, const IpamPlan& plan, cni::Command command);
/// ADD: in-process (leases recorded in `record.addresses`) or delegated.
Result<cni::CniResult> ipam_add(const cni::Context& ctx, const IpamPlan& plan, Registry& registry, EndpointRecord& record,
    const ipam::Request& request);
Result<void> ipam_del(const cni::Context& ctx, const IpamPlan& plan, Registry& registry, const EndpointRecord* record,
    const ipam::Request& request);

struct ContainerSetup {
    bool up = true;
    bool dad = false;
    bool default_gateway = false; // add a default route via the gateway when IPAM gave none
};
/// Renames `temp_name` to `ifname` inside the sandbox, brings it up, adds the addresses and routes
/// of `result` (appending a default route when asked). Returns the link as it is then.
Result<netlink::Link> configure_container(netlink::Socket& inside, const ContainerSetup& setup, const std::string& temp_name,
    const std::string& ifname, cni::CniResult& result);

/// The part of CHECK every driver shares: the attachment has a ready endpoint record, and the
/// sandbox holds `ifname` as a link of `kind` with the MAC, addresses and routes prevResult lists.
struct CheckedContainer {
    EndpointRecord record;
    netlink::Link link;
};
Result<CheckedContainer> check_container(const cni::Context& ctx, Registry& registry, const std::string& kind);

/// STATUS: the in-process pool has a free address, or the delegated IPAM plugin says it is ready.
Result<void> ipam_status(const cni::Context& ctx, const IpamPlan& plan);

} // namespace cnm::drivers
