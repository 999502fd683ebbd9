#pragma once
// Cluster IPAM: the address source of vxlan networks. The cluster subnet is cut into blocks
// (cnm/blocks.hpp); a host holds some (claimed in etcd, cnm/cluster.hpp) and hands out the
// addresses inside them itself, with the ordinary pools (ipam/pool.hpp: one pool per block, its
// first address the gateway, in the address space "cluster:<network>"). So:
//
//   - an ADD on a host whose blocks have room makes no etcd round trip, and builds no client;
//   - when they are full, one process at a time (the lock cluster/<network>) claims another:
//     it reads the cache again (a parallel ADD may just have claimed one), then asks etcd;
//   - etcd unreachable then is code 11 and nothing is left behind; an exhausted cluster subnet is
//     code 102;
//   - freed addresses never give the block back.
//
// The host's blocks are cached in its state dir, written atomically:
//
//   cluster/<network>/blocks.json   {"node","network":{facts},"blocks":[{"block","node","vtep","mac"}…]}
//
// The network's facts are cached there too, so an ADD with room checks its conf against them
// without etcd.

#include "cnm/cluster.hpp"
#include "cnm/endpoint.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace cnm {

struct LocalBlocks {
    std::string node;
    std::optional<NetworkFacts> facts;
    std::vector<BlockOwner> blocks;
};

Key local_blocks_key(const std::string& network);
/// Absent: empty. Corrupt: code 101 naming the file.
Result<LocalBlocks> load_local_blocks(Store& store, const std::string& network);
Result<void> save_local_blocks(Store& store, const std::string& network, const LocalBlocks& local);

/// The network's facts for this ADD: from the host's cache when it has them (no etcd), else
/// from etcd — written from the conf when the network is new there — and then cached. The conf
/// must agree with them (code 7). `default_mtu` is the underlay's MTU − 50.
Result<NetworkFacts> resolve_network_facts(Store& store, Cluster& cluster, const std::string& network, const FactsWanted& wanted,
    int default_mtu);

/// The facts of `network` if the cluster has such a network: the host's cache, else etcd's
/// P/networks/<network> (read, never written). nullopt when etcd has no such network. Docker's
/// RequestPool asks, to tell a cluster network from a local one by its name.
Result<std::optional<NetworkFacts>> known_network_facts(Store& store, Cluster& cluster, const std::string& network);
/// Caches facts read from etcd in the host's block cache (unless it has them).
Result<void> cache_network_facts(Store& store, Cluster& cluster, const std::string& network, const NetworkFacts& facts);

/// A vxlan network's options completed with its facts (vni, subnet, blockSize, port, mtu and the
/// IPv6 ones), as the network record, the driver and the agent read them.
void complete_vxlan_options(Json& options, const NetworkFacts& facts);

/// The host's VTEP: its underlay address and MAC, resolved only when a block must be claimed.
struct Vtep {
    IpAddr address;
    Mac mac {};
};

class ClusterAddresses final : public AddressSource {
public:
    ClusterAddresses(std::shared_ptr<Cluster> cluster, NetworkFacts facts, std::function<Result<Vtep>()> vtep)
        : m_cluster(std::move(cluster)), m_facts(std::move(facts)), m_vtep(std::move(vtep))
    {
    }

    Result<NetSetup> acquire(Registry& registry, EndpointRecord& endpoint) override;
    Result<void> release(Registry& registry, const EndpointRecord& endpoint) override;
    Result<void> collect(Registry& registry, const std::string& network, const std::vector<std::pair<std::string, std::string>>& keep) override;
    Result<void> ready(Registry& registry) override;
    Result<void> check(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev) override;
    std::string address_space() const override { return "cluster:" + m_network; }
    void scope(const std::string& network) override { m_network = network; }
    bool recorded() const override { return true; }

    // Docker's IpamDriver (cnm-shim): addresses are requested one at a time, by family, before
    // the endpoint exists; the lease owner is Docker's.
    /// This host's blocks of `family`, claiming one when it holds none (the gateway request).
    Result<std::vector<BlockOwner>> host_blocks(Registry& registry, int family);
    /// One address from this host's blocks (`wanted`: exactly that one, which must be in one of
    /// them), claiming a block when they are full. The address has its block's prefix.
    Result<EndpointAddress> take(Registry& registry, int family, const ipam::Owner& owner, std::optional<IpAddr> wanted);

    /// Whether this process claimed (or adopted) a block, and every other host's block it read
    /// from etcd meanwhile: what the ADD programs into the kernel.
    bool claimed() const { return m_claimed; }
    const std::vector<BlockOwner>& learned() const { return m_learned; }

private:
    Result<EndpointAddress> allocate(Registry& registry, int family, const IpNet& subnet, int block_prefix, const ipam::Owner& owner,
        std::optional<IpAddr> wanted = std::nullopt);
    Result<bool> claim_more(Registry& registry, const IpNet& subnet, int block_prefix);
    std::vector<ipam::PoolId> block_pools(Store& store);

    std::shared_ptr<Cluster> m_cluster;
    NetworkFacts m_facts;
    std::function<Result<Vtep>()> m_vtep;
    std::string m_network;
    bool m_claimed = false;
    std::vector<BlockOwner> m_learned;
};

/// The ranges of a host's blocks of one family: each block's addresses after its gateway.
ipam::RangeSet block_ranges(const std::vector<BlockOwner>& blocks, int family);

} // namespace cnm
