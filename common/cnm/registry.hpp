#pragma once
// Registry: where each model record lives in the Store, and typed load/save over it.
//
//   networks/<name>/network.json              NetworkRecord      (lock: networks/<name>)
//   networks/<name>/endpoints/<endpoint>.json EndpointRecord
//   ipam/<space>/<subnet>/pool.json, leases/  see ipam/pool.hpp
//   subnets/<subnet>/<network>                 a CNI network that has the subnet (an index)
//
// The subnet index answers "which CNI networks have this subnet?" (Docker's RequestPool without
// cnm.network) by reading those networks' records, not every network's. Its entries are per-boot
// hints: written before a CNI network's record and removed after it, both under the network's
// lock, so no record of a live network lacks its entry except after a power failure or an earlier
// build (which wrote none). cnm-shim, the only reader, rebuilds them from the records once per
// process, and a reader checks each record it names. A name is all an entry says.
//
// A sandbox has no document of its own: each endpoint record names its sandbox and netns, and the
// listings group them.
//
// Names from the input only become path components through the functions here.

#include "cnm/model.hpp"
#include "store/store.hpp"

#include <map>
#include <memory>

namespace cnm {

/// "<containerID>@<ifname>", with ifname bytes outside [A-Za-z0-9_.-] percent-encoded; ids too long
/// for one path component are shortened with a hash (the record holds the full id).
std::string endpoint_key(std::string_view container_id, std::string_view ifname);
/// A sandbox or other id as one safe path component.
std::string id_key(std::string_view id);

template<typename Record>
struct Stored {
    Loaded::Status status = Loaded::Status::Absent;
    Record record;
    std::string reason; // why it is corrupt
    Version version = 0; // the store's version of it (when ok or corrupt)
    bool ok() const { return status == Loaded::Status::Ok; }
    bool absent() const { return status == Loaded::Status::Absent; }
    bool corrupt() const { return status == Loaded::Status::Corrupt; }
};

class Registry {
public:
    explicit Registry(Store& store) : m_store(store) { }
    Store& store() { return m_store; }

    static Key network_dir(const std::string& name) { return { "networks", name }; }
    static Key network_key(const std::string& name) { return { "networks", name, "network.json" }; }
    static Key endpoints_dir(const std::string& network) { return { "networks", network, "endpoints" }; }
    static Key endpoint_doc(const std::string& network, const std::string& key) { return { "networks", network, "endpoints", key + ".json" }; }
    /// Where builds before 2026-12 kept a document per sandbox: an index of the endpoint records
    /// (each names its sandbox and netns) that nothing read. Nothing writes there now.
    static Key legacy_sandboxes_dir() { return { "sandboxes" }; }

    /// "10.213.5.0/24" → subnets/10.213.5.0_24
    static Key subnet_dir(const std::string& subnet);

    Result<std::unique_ptr<Lock>> lock_network(const std::string& name) { return m_store.lock(network_dir(name)); }

    Result<Stored<NetworkRecord>> load_network(const std::string& name);
    Result<void> save_network(const NetworkRecord& record);
    Result<std::vector<std::string>> list_networks();
    /// The subnet index (above): an entry for each of `subnets` naming `network` (one stat each
    /// when it is there), and their removal.
    Result<void> index_subnets(const std::string& network, const std::vector<std::string>& subnets);
    Result<void> unindex_subnets(const std::string& network, const std::vector<std::string>& subnets);
    /// The networks the index names for `subnet`: candidates, whose records decide.
    Result<std::vector<std::string>> networks_with_subnet(const std::string& subnet);

    Result<Stored<EndpointRecord>> load_endpoint(const std::string& network, const std::string& key);
    Result<void> save_endpoint(const EndpointRecord& record);
    Result<void> remove_endpoint(const std::string& network, const std::string& key);
    /// Endpoint keys of a network (file names without ".json").
    Result<std::vector<std::string>> list_endpoints(const std::string& network);

    /// Removes the sandbox documents an earlier build left (GC calls it; one failed open when
    /// there are none).
    Result<void> drop_legacy_sandboxes();

private:
    template<typename Record>
    Result<Stored<Record>> load(const Key& key);

    Store& m_store;
    // The network records this registry read, with their versions: an ADD reads its network's
    // twice (its options, then under the lock), and the second is a stat when it is unchanged.
    std::map<std::string, std::pair<Version, NetworkRecord>> m_networks;
};

} // namespace cnm
