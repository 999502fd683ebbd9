#pragma once
// Address pools in the store, keyed by (address space, subnet) so the CNI plugins and cnm-shim's
// IpamDriver share one pool for one subnet.
//
//   ipam/<space>/<subnet>/pool.json        {"space","subnet","users":[network…],"gateway":"<ip>",
//                                           "dockerRefs":n}
//   ipam/<space>/<subnet>/cursor           {"last":"<ip>"}: round-robin position, a Durability::Hint
//                                           (losing it to a power failure only restarts the
//                                           round-robin; it costs no flush per ADD)
//   ipam/<space>/<subnet>/leases/<ip>      {"network","containerID","ifname","frontend"}
//
// A lease is one file named by its address, created with an atomic exclusive rename, so two
// allocators can never hand out one address. "last" is host-local's round-robin cursor: the next
// allocation starts after it, so a freed address is not reused at once. Allocation and release
// touch only the files of the addresses involved — their cost does not grow with the number of
// leases; only the recovery scans (owner lookup after a crash, GC, STATUS) read the whole pool.

#include "cnm/model.hpp"
#include "ipam/config.hpp"
#include "store/store.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace cnm::ipam {

/// The first address a host may have: network + 1 (the subnet itself for a /32 or /128); the
/// gateway a pool gets when nobody names one.
IpAddr first_host(const IpNet& subnet);

struct PoolId {
    std::string space;
    IpNet subnet;

    /// "local/10.213.0.0/24"
    std::string str() const;
    static std::optional<PoolId> parse(std::string_view text);
    Key dir() const;
    Key doc() const;
    Key cursor() const;
    Key leases_dir() const;
    Key lease(const IpAddr& a) const;
    bool operator==(const PoolId&) const = default;
};

struct Owner {
    std::string network;
    std::string container_id;
    std::string ifname;
    Frontend frontend = Frontend::Cni;
    bool same(const Owner& o) const { return network == o.network && container_id == o.container_id && ifname == o.ifname; }
};

struct Lease {
    IpAddr address;
    Owner owner;
};

class Pools {
public:
    explicit Pools(Store& store) : m_store(store) { }

    /// Records `network` as a user of the pool (the refcount), creating the pool; the first
    /// gateway given becomes the pool's, which no allocation hands out.
    Result<void> add_user(const PoolId& pool, const std::string& network, std::optional<IpAddr> gateway = std::nullopt);
    /// Drops a user; returns the number of users left. The pool goes with its last user, its last
    /// Docker reference and its last lease.
    Result<size_t> remove_user(const PoolId& pool, const std::string& network);

    // Docker's IPAM driver holds pools by reference count (RequestPool/ReleasePool), apart from
    // the networks that use them. Gives the pool's gateway, to name to Docker: the recorded one,
    // or, on a pool no network uses yet, the first host, recorded in the same write (pool.cpp).
    Result<std::optional<IpAddr>> docker_retain(const PoolId& pool);
    /// Unknown pools and a zero count are success (Docker releases again after restarts).
    Result<void> docker_release(const PoolId& pool);
    /// True when the pool has a record (some user or Docker reference).
    Result<bool> exists(const PoolId& pool);
    /// Every pool of an address space.
    Result<std::vector<PoolId>> list(const std::string& space);
    /// The pool's gateway; when it has none yet, `wanted` (or the first host address) becomes it.
    /// A `wanted` that differs from the recorded one is an error, unless the Docker network being
    /// made is the pool's only holder and no network uses it (then `wanted` replaces it).
    Result<IpAddr> ensure_gateway(const PoolId& pool, std::optional<IpAddr> wanted);
    Result<std::optional<IpAddr>> gateway(const PoolId& pool);

    /// One address for `owner` from the range set: `requested` if given, else the next free one
    /// after the cursor.
    Result<EndpointAddress> allocate(const std::string& space, const RangeSet& set, const Owner& owner,
        std::optional<IpAddr> requested);
    /// Frees the lease if `owner` holds it; a missing or foreign lease is left alone.
    Result<void> release(const PoolId& pool, const IpAddr& address, const Owner& owner);
    /// Owner of one address, if leased (a corrupt lease counts as leased to nobody).
    Result<std::optional<Owner>> owner_of(const PoolId& pool, const IpAddr& address);
    /// Whether `owner` still holds the lease of `address`. `created`: the version the lease had
    /// when this process created it (EndpointAddress::lease_version, 0: unknown); while the lease
    /// is still at it, the document is the one written then, so a stat answers without a read.
    Result<bool> held_by(const PoolId& pool, const IpAddr& address, const Owner& owner, Version created = 0);
    /// Every lease of the pool (a full scan: recovery and GC only).
    Result<std::vector<Lease>> leases(const PoolId& pool);
    /// The same, reading only the leases `wanted` picks by address (the others are not opened).
    Result<std::vector<Lease>> leases(const PoolId& pool, const std::function<bool(const IpAddr&)>& wanted);
    /// True when at least one usable address of the range set is free.
    Result<bool> has_free(const std::string& space, const RangeSet& set);

private:
    Result<EndpointAddress> take(const PoolId& pool, const Range& range, const IpAddr& address, const Owner& owner, bool& taken);
    Store& m_store;
};

} // namespace cnm::ipam
