#pragma once
// The per-host agent of cluster (vxlan) networks, and the `cnm-shim cluster …` admin commands.
//
// The agent: registers this host's VTEP under P/hosts/<node> on a lease and keeps it alive;
// lists P/blocks/ at a revision and watches from there (re-listing after compaction or a broken
// stream, with backoff while etcd is away); and reconciles the kernel of every vxlan network that
// has its vxlan device on this host against the cluster's blocks: a full diff at start, after
// every watched change and every `resync` — missing entries are added, differing ones replaced
// (drivers::reconcile_remote_blocks), and routes, neighbours and FDB entries on the vxlan device
// that no remote block justifies are removed. Routes follow blocks, not leases: a host whose
// lease expired keeps its routes until its blocks are released.

#include "cnm/cluster.hpp"
#include "util/json.hpp"

#include <chrono>
#include <stop_token>
#include <string>

namespace cnm::shim {

struct AgentOptions {
    ClusterConfig cluster;
    std::string state_dir;
    bool release = false;                    // release this node's blocks on shutdown
    std::chrono::seconds resync { 10 };
    int lease_ttl = 10;                      // seconds
};

/// Runs until `stop` is requested. Returns 0, or 1 after printing why it could not start.
int run_agent(const AgentOptions& options, std::stop_token stop);
/// The same, stopping on SIGTERM or SIGINT (blocks them in every thread).
int run_agent_until_signal(const AgentOptions& options);

/// `cnm-shim cluster networks|hosts|blocks|tunnels` as JSON, and its table.
/// `cnm-shim cluster networks`: every cluster network's facts, its block count and how many are this host's.
Result<Json> cluster_networks(const ClusterConfig& config, const std::string& state_dir);
Result<Json> cluster_hosts(const ClusterConfig& config, const std::string& state_dir);
Result<Json> cluster_blocks(const ClusterConfig& config, const std::string& state_dir);
Result<Json> cluster_tunnels(const ClusterConfig& config, const std::string& state_dir);
std::string cluster_table(const Json& rows);
/// Releases every block `node` holds, in every network; returns how many went.
Result<size_t> cluster_release(const ClusterConfig& config, const std::string& node);

} // namespace cnm::shim
