#pragma once
// The admin commands of cnm-shim, over the same state directory: list, inspect, gc, dot.
// Plain tables for people, JSON (--json) for scripts.

#include "kernel/kernel.hpp"
#include "store/store.hpp"
#include "util/json.hpp"

#include <string>

namespace cnm::shim {

/// {"networks":[{…record…, "endpoints":[…]}]}
Result<Json> list_state(Store& store);
std::string list_table(const Json& listing);
/// One network (with its endpoints and Docker ids), or one of its endpoints (an id prefix).
Result<Json> inspect(Store& store, const std::string& network, const std::string& endpoint);
/// Removes endpoints whose sandbox (netns) no longer exists through the lifecycle's one
/// detach/remove (Endpoints::forget): their firewall elements, links and record; CNI
/// endpoints also give back their leases (Docker releases its own addresses through
/// ReleaseAddress). `kernel` null: records only. Returns what was (or, with dry_run, would be)
/// removed.
/// Endpoints whose sandbox is gone (see admin.cpp for when gc can know), and Docker leases that no
/// endpoint and no gateway refers to and that are older than `lease_grace_s` (a shim killed
/// between RequestAddress and CreateEndpoint leaves one that no ReleaseAddress will name).
Result<Json> gc(Store& store, Kernel* kernel, bool dry_run, int64_t lease_grace_s = 600);
/// Graphviz DOT: networks → endpoints → sandboxes.
std::string dot(const Json& listing);
/// Graphviz DOT of a cluster, from the rows `cnm-shim cluster hosts|blocks|tunnels --json` print:
/// a node per host (VTEP, lease alive/expired; `self` drawn bold), a node per block (CIDR,
/// network, used/free where known) with an edge host → block, and per remote VTEP this host has
/// tunnels to an edge `self` → that host, labelled with the blocks routed through it. Every name
/// is escaped (quotes, backslashes, control and non-ASCII bytes), so hostile keys in etcd cannot
/// break the graph or merge two nodes; rows of the wrong shape are skipped.
std::string cluster_dot(const Json& hosts, const Json& blocks, const Json& tunnels, const std::string& self);

} // namespace cnm::shim
