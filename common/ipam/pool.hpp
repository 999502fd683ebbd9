#pragma once
// Address pools in the store, keyed by (address space, subnet) so the CNI plugins and cnm-shim's
// IpamDriver share one pool for one subnet.
//
//   ipam/<space>/<subnet>/pool.json        {"space","subnet","users":[network…],"last":"<ip>"}
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

#include <optional>
#include <string>
#include <vector>

namespace cnm::ipam {

struct PoolId {
    std::string space;
    IpNet subnet;

    /// "local/10.213.0.0/24"
    std::string str() const;
    static std::optional<PoolId> parse(std::string_view text);
    Key dir() const;
    Key doc() const;
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

    /// Records `network` as a user of the pool (the refcount), creating the pool.
    Result<void> add_user(const PoolId& pool, const std::string& network);
    /// Drops a user; returns the number of users left. The pool goes with its last user and lease.
    Result<size_t> remove_user(const PoolId& pool, const std::string& network);

    /// One address for `owner` from the range set: `requested` if given, else the next free one
    /// after the cursor.
    Result<EndpointAddress> allocate(const std::string& space, const RangeSet& set, const Owner& owner,
        std::optional<IpAddr> requested);
    /// Frees the lease if `owner` holds it; a missing or foreign lease is left alone.
    Result<void> release(const PoolId& pool, const IpAddr& address, const Owner& owner);
    /// Owner of one address, if leased (a corrupt lease counts as leased to nobody).
    Result<std::optional<Owner>> owner_of(const PoolId& pool, const IpAddr& address);
    /// Every lease of the pool (a full scan: recovery and GC only).
    Result<std::vector<Lease>> leases(const PoolId& pool);
    /// True when at least one usable address of the range set is free.
    Result<bool> has_free(const std::string& space, const RangeSet& set);

private:
    Result<EndpointAddress> take(const PoolId& pool, const Range& range, const IpAddr& address, const Owner& owner, bool& taken);
    Store& m_store;
};

} // namespace cnm::ipam
