#pragma once
// The cluster's global records in etcd, for vxlan networks. Under a prefix P (default "/cnm"):
//
//   P/networks/<name>                 {"vni","subnet","subnet6"?,"blockSize","blockSize6"?,"port","mtu"}
//                                     written once, by the first ADD anywhere (create-if-absent);
//                                     every later ADD must agree with it (code 7 naming the key and
//                                     both values) and adopts what its conf leaves out.
//   P/hosts/<node>                    {"vtep","mac"}: the host's underlay address and VTEP MAC. The
//                                     agent (cnm-shim) keeps it on a lease as its membership; the
//                                     plugin writes it without one, only when absent or different.
//   P/blocks/<network>/<cidr as a_b>  {"node","vtep","mac"}: the block 10.213.232.64/26 is the key
//                                     ".../10.213.232.64_26". Claimed with ONE compare-and-swap
//                                     (create if version == 0), no lease: a block stays with its
//                                     host until an admin releases it (release_blocks), so a host
//                                     cut off from etcd keeps its addresses and stays routable.
//
// The records are reached through the Store interface (store/store.hpp), keys relative to P
// (["networks", name], ["hosts", node], ["blocks", network, a_b]), over an EtcdStore made from the
// ClusterConfig when first needed; a document's version is its key's mod_revision, and each
// create-if-absent / compare-and-swap below is one etcd txn whose loser reads the winner in the
// same round trip. Nothing here names an etcd type: a Cluster over another Store (a test's
// FileStore) behaves alike.
//
// Routes follow blocks: every host routes each remote block to the block's VTEP. An agent lists
// P/blocks/ and P/hosts/ at a revision and watches from there; the plugin alone only reads the
// blocks when it claims one (cluster_ipam.hpp), and programs what it read.
//
// Claims. The host's blocks are cached in its state dir, so an ADD with room needs no etcd. When
// they are full, claim() reads P/blocks/<network>/ once: a block etcd already gives this node but
// the cache lacks (a plugin killed between the CAS and the cache write) is adopted; otherwise the
// first free block is created with version == 0, and a lost race moves on to the next free one.
// Freed addresses never give a block back: no flapping between hosts.

#include "cnm/blocks.hpp"
#include "etcd/transport.hpp"
#include "store/store.hpp"

#include <memory>
#include <set>
#include <string>
#include <vector>

namespace cnm {

inline constexpr const char* default_cluster_file = "/etc/cnm/cluster.json";
inline constexpr const char* cluster_file_env = "CNM_CLUSTER_FILE";
inline constexpr const char* node_env = "CNM_NODE";

struct ClusterConfig {
    std::vector<std::string> etcd;  // endpoints
    std::string prefix = "/cnm";
    std::string node;               // this host's name
    std::string underlay;           // this host's underlay (interface or address), if the file says
    int timeout_ms = 2000;          // per etcd call
};

/// The conf's "cluster" object when it has one, else the host's cluster file ($CNM_CLUSTER_FILE,
/// else /etc/cnm/cluster.json): {"etcd":[urls],"prefix","node","underlay","timeoutMs"}. The node
/// is cluster.node, else $CNM_NODE, else the hostname. Code 7 naming what is wrong.
Result<ClusterConfig> load_cluster_config(const Json& conf);

class Cluster {
public:
    /// Makes no connection (nor a client) until a call needs etcd. `transport` for tests.
    explicit Cluster(ClusterConfig config, std::unique_ptr<etcd::Transport> transport = nullptr);
    /// Over a store of the caller's (keys relative to the cluster prefix); config.etcd unused.
    Cluster(ClusterConfig config, std::unique_ptr<Store> store);
    ~Cluster();
    const ClusterConfig& config() const { return m_config; }
    const std::string& node() const { return m_config.node; }

    /// The records' etcd keys ("<prefix>/networks/<name>", …), for messages and the agent.
    std::string network_key(const std::string& network) const;
    std::string host_key(const std::string& node) const;
    std::string blocks_prefix(const std::string& network) const;
    std::string block_path(const std::string& network, const IpNet& block) const;
    /// The same records as Store keys.
    static Key network_doc(const std::string& network) { return { "networks", network }; }
    static Key host_doc(const std::string& node) { return { "hosts", node }; }
    static Key blocks_dir(const std::string& network) { return { "blocks", network }; }

    /// The network's facts; written from `first` when the network is new (one create-if-absent:
    /// the loser reads the winner's).
    Result<NetworkFacts> ensure_network(const std::string& network, const NetworkFacts& first);
    /// The network's facts, or nullopt when the cluster has no such network (one read).
    Result<std::optional<NetworkFacts>> network(const std::string& network);
    /// This host's record, written when absent or different.
    Result<void> ensure_host(const IpAddr& vtep, const Mac& mac);
    /// Every block of the network (one range read).
    Result<std::vector<BlockOwner>> blocks(const std::string& network);

    struct Claim {
        std::vector<BlockOwner> mine;   // blocks now this host's that `cached` lacked (adopted or claimed)
        std::vector<BlockOwner> others; // every other host's block seen on the way (to program)
    };
    /// One more block (of `subnet`'s family) for this node: adopts those etcd already gives it
    /// that `cached` lacks, else claims the first free one. Code 102 when the subnet has no free
    /// block; etcd unreachable is code 11.
    Result<Claim> claim(const std::string& network, const IpNet& subnet, int block_prefix, const std::set<IpNet>& cached,
        const IpAddr& vtep, const Mac& mac);
    /// Admin / agent: gives back every block `node` holds in `network` (each deleted only if it
    /// is unchanged since it was read). Returns how many went. The host must forget them too
    /// (its state dir's cluster/<network>/blocks.json) before it claims again.
    Result<size_t> release_blocks(const std::string& network, const std::string& node);

private:
    Result<Store*> store();
    /// "etcd key <prefix>/a/b" (or "cluster key a/b" over another store), for messages.
    std::string where(const Key& key) const;
    /// The key as it is after a lost compare-and-swap: what the store read with it, else a get.
    Result<Loaded> winner(Store& store, const Key& key, const Cas& cas);

    ClusterConfig m_config;
    std::unique_ptr<etcd::Transport> m_transport;
    std::unique_ptr<Store> m_store;
    bool m_etcd = true; // m_store is (or will be) the EtcdStore of m_config
};

} // namespace cnm
