#pragma once
// The values of a cluster network (vxlan), with no I/O: its facts (VNI, cluster subnets, block
// size, port, MTU), the blocks the cluster subnet is cut into and who holds them, the VTEP MAC a
// host's underlay address gives, and the block allocator as pure functions. cnm/cluster.hpp keeps
// them in etcd, cnm/cluster_ipam.hpp hands out addresses inside a host's blocks, and
// drivers/vxlan.cpp turns remote blocks into kernel entries.

#include "net/ip.hpp"
#include "netlink/link.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cnm {

using netlink::Mac;

inline constexpr int default_block_size4 = 26;
inline constexpr int default_block_size6 = 122;
inline constexpr int default_vxlan_port = 4789;

/// A network's cluster-wide facts, as P/networks/<name> holds them.
struct NetworkFacts {
    uint32_t vni = 0;
    IpNet subnet;                 // IPv4 cluster subnet
    std::optional<IpNet> subnet6; // IPv6 cluster subnet, if any
    int block_size = default_block_size4;
    int block_size6 = default_block_size6;
    int port = default_vxlan_port;
    int mtu = 0;

    Json to_json() const;
    static Result<NetworkFacts> from_json(const Json& doc, const std::string& where);
    bool operator==(const NetworkFacts&) const = default;
};

/// What a conf says of those facts: the keys it sets (the rest come from the network).
struct FactsWanted {
    std::optional<uint32_t> vni;
    std::optional<IpNet> subnet;
    std::optional<IpNet> subnet6;
    std::optional<int> block_size;
    std::optional<int> block_size6;
    std::optional<int> port;
    std::optional<int> mtu;

    /// The conf keys "vni", "subnet", "subnet6", "blockSize", "blockSize6", "port", "mtu", checked
    /// (code 7 naming the key): subnets as network addresses, block sizes within their subnet.
    static Result<FactsWanted> parse(const Json& conf);
    /// The facts a first host writes: the conf's, with defaults (mtu: `default_mtu`). vni and
    /// subnet are required then.
    Result<NetworkFacts> complete(int default_mtu) const;
    /// Code 7 naming the key and both values when the conf sets one the network has otherwise.
    Result<void> agree(const std::string& network, const NetworkFacts& stored) const;
};

/// One block and the host that holds it.
struct BlockOwner {
    IpNet block;
    std::string node;
    IpAddr vtep;
    Mac mac {};

    /// The block's gateway: its first address (on the holder's bridge; the next hop of the
    /// route other hosts have to it).
    IpAddr gateway() const;
    Json to_json() const; // {"node","vtep","mac"}: the block itself is in the key
    static std::optional<BlockOwner> from_json(const IpNet& block, const Json& doc);
};

/// The locally administered MAC a VTEP address gives: 02:<the 4 bytes of the IPv4>:00 (for an
/// IPv6 VTEP, its last 4 bytes and 06). Deterministic, so a reboot or a re-created device keeps
/// it and no peer holds a stale one.
Mac vtep_mac(const IpAddr& vtep);

/// "10.213.232.64/26" → "10.213.232.64_26" (one etcd key segment) and back.
std::string block_key(const IpNet& block);
std::optional<IpNet> parse_block_key(std::string_view key);

/// How many blocks of `block_prefix` the subnet holds (saturates at 2^64).
u128 block_count(const IpNet& subnet, int block_prefix);
/// The n-th block (0-based) of the subnet.
IpNet nth_block(const IpNet& subnet, int block_prefix, u128 n);
/// The first block of the subnet not in `taken`, in address order; nullopt when every block is
/// taken. Walks at most taken.size() + 1 blocks, so a huge IPv6 subnet costs nothing.
std::optional<IpNet> first_free_block(const IpNet& subnet, int block_prefix, const std::set<IpNet>& taken);

/// A node name as one key segment: 1-253 bytes of [A-Za-z0-9._-], not starting with '.'.
bool valid_node_name(std::string_view name);

} // namespace cnm
