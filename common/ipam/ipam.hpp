#pragma once
// The IPAM verbs over the model: ADD/DEL/CHECK/STATUS/GC for one attachment of one network.
// The `ipam` plugin calls these with the conf it was given; the main plugins call them
// in-process when "ipam.type" is ours, so there is no second exec.
//
// Order of ADD, for crash safety: the network lock is taken, the network record is created or
// checked against the conf, the endpoint is recorded in phase "creating" (the intent), one lease
// per range set is taken, then the endpoint is rewritten as "ready" with its addresses and joined
// to its sandbox. A crash anywhere leaves either nothing or a "creating" record, which DEL and GC
// resolve by looking the attachment's leases up in the network's pools.

#include "cni/conf.hpp"
#include "cni/types.hpp"
#include "cnm/registry.hpp"
#include "ipam/config.hpp"
#include "ipam/pool.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cnm::ipam {

struct Request {
    std::string network;
    std::string driver;          // the conf's "type"
    Frontend frontend = Frontend::Cni;
    std::string container_id;
    std::string ifname;
    std::string netns;
    Json options = Json::object(); // kept in the network record
    /// Options that must agree with an existing network's (the bridge name, …).
    Json identity = Json::object();
};

/// The whole ADD of the ipam plugin: begin, allocate, commit.
Result<std::vector<EndpointAddress>> add(Registry& registry, const IpamConf& conf, const Request& request);

// The steps of ADD, for drivers that do kernel work between them. `conf` is null when IPAM is
// delegated to another plugin (the network then records no subnets).

/// Under the network lock: creates or checks the network record, refuses a ready endpoint, cleans a
/// stale "creating" one (calling `clean_stale` for the driver's part), and records the intent.
Result<EndpointRecord> begin(Registry& registry, const IpamConf* conf, const Request& request, const Json& driver_state,
    const std::function<Result<void>(const EndpointRecord&)>& clean_stale);
/// One lease per range set, all or none.
Result<std::vector<EndpointAddress>> allocate(Registry& registry, const IpamConf& conf, const Request& request);
Result<void> release(Registry& registry, const std::vector<EndpointAddress>& addresses, const Request& request);
/// Joins the sandbox and marks the endpoint ready.
Result<void> commit(Registry& registry, EndpointRecord& record);
/// Drops an intent record after a failed ADD.
Result<void> abandon(Registry& registry, const EndpointRecord& record);
/// Idempotent: an unknown attachment, a corrupt record or a missing network is success.
/// `conf` may be null when the conf's IPAM section cannot be read; the stored records suffice.
Result<void> del(Registry& registry, const IpamConf* conf, const Request& request);
Result<void> check(Registry& registry, const IpamConf& conf, const Request& request,
    const std::optional<cni::CniResult>& prev_result);
Result<void> status(Registry& registry, const IpamConf& conf);
Result<void> gc(Registry& registry, const IpamConf* conf, const std::string& network,
    const std::vector<cni::Attachment>& valid);

/// The IPAM result: ips (without interface index), the conf's routes and resolv.conf dns.
cni::CniResult to_result(const IpamConf& conf, const std::vector<EndpointAddress>& addresses);

/// Subnets of every range set, canonical and sorted: what a network record stores.
std::vector<std::string> subnets_of(const IpamConf& conf);

} // namespace cnm::ipam
