#include "cnm/registry.hpp"

#include <algorithm>
#include <cstdio>

namespace cnm {

namespace {

bool plain(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

std::string encode(std::string_view s)
{
    std::string out;
    for (char c : s) {
        if (plain(c)) {
            out += c;
        } else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
            out += buf;
        }
    }
    return out;
}

std::string fnv1a_hex(std::string_view s)
{
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string shorten(std::string s)
{
    // Leaves room for ".json" and temp-file prefixes within NAME_MAX.
    if (s.size() <= 200)
        return s;
    return s.substr(0, 160) + "~" + fnv1a_hex(s);
}

} // namespace

std::string endpoint_key(std::string_view container_id, std::string_view ifname)
{
    std::string key = encode(container_id) + "@" + encode(ifname);
    if (key.empty() || key[0] == '.')
        key = "_" + key;
    return shorten(key);
}

std::string id_key(std::string_view id)
{
    std::string key = encode(id);
    if (key.empty() || key[0] == '.')
        key = "_" + key;
    return shorten(key);
}

template<typename Record>
Result<Stored<Record>> Registry::load(const Key& key)
{
    Loaded loaded = TRY(m_store.get(key));
    Stored<Record> out;
    out.status = loaded.status;
    out.reason = loaded.reason;
    out.version = loaded.version;
    if (loaded.ok()) {
        auto record = Record::from_json(loaded.doc);
        if (!record) {
            out.status = Loaded::Status::Corrupt;
            out.reason = record.error().msg + ": " + record.error().details;
        } else {
            out.record = record.release_value();
        }
    }
    return out;
}

Result<Stored<NetworkRecord>> Registry::load_network(const std::string& name)
{
    Key key = network_key(name);
    if (auto it = m_networks.find(name); it != m_networks.end()) {
        // Versions only grow while a key exists, and a re-created key starts at "now": the same
        // version is the same document (store.hpp).
        if (auto now = TRY(m_store.peek_version(key)); now && *now == it->second.first) {
            Stored<NetworkRecord> out;
            out.status = Loaded::Status::Ok;
            out.record = it->second.second;
            out.version = it->second.first;
            return out;
        }
        m_networks.erase(it);
    }
    auto out = TRY(load<NetworkRecord>(key));
    if (out.ok() && out.version != 0)
        m_networks[name] = { out.version, out.record };
    return out;
}

Result<void> Registry::save_network(const NetworkRecord& record)
{
    return m_store.put(network_key(record.name), record.to_json());
}

Result<std::vector<std::string>> Registry::list_networks()
{
    return m_store.list({ "networks" });
}

Key Registry::subnet_dir(const std::string& subnet)
{
    std::string name = subnet;
    std::replace(name.begin(), name.end(), '/', '_');
    return { "subnets", name };
}

Result<void> Registry::index_subnets(const std::string& network, const std::vector<std::string>& subnets)
{
    for (auto& subnet : subnets) {
        Key key = subnet_dir(subnet);
        key.push_back(network);
        // create() stats first: an entry that is there costs one stat. Another network's last DEL
        // may remove the shared directory under this write: once more, from a fresh open.
        if (!m_store.create(key, Json { { "network", network } }, Durability::PerBoot)) {
            m_store.forget_open_dirs();
            TRY(m_store.create(key, Json { { "network", network } }, Durability::PerBoot));
        }
    }
    return {};
}

Result<void> Registry::unindex_subnets(const std::string& network, const std::vector<std::string>& subnets)
{
    for (auto& subnet : subnets) {
        Key key = subnet_dir(subnet);
        key.push_back(network);
        // Best effort: the record is gone already, and a stale entry is only a candidate.
        if (m_store.remove(key, Durability::PerBoot))
            (void)m_store.remove_dir(subnet_dir(subnet)); // when no other network has it
    }
    return {};
}

Result<std::vector<std::string>> Registry::networks_with_subnet(const std::string& subnet)
{
    return m_store.list(subnet_dir(subnet));
}

Result<Stored<EndpointRecord>> Registry::load_endpoint(const std::string& network, const std::string& key)
{
    return load<EndpointRecord>(endpoint_doc(network, key));
}

Result<void> Registry::save_endpoint(const EndpointRecord& record)
{
    // A per-boot fact: atomic, never flushed (a power failure ends the boot it describes).
    return m_store.put(endpoint_doc(record.network, endpoint_key(record.container_id, record.ifname)), record.to_json(), Durability::PerBoot);
}

Result<void> Registry::remove_endpoint(const std::string& network, const std::string& key)
{
    return m_store.remove(endpoint_doc(network, key), Durability::PerBoot);
}

Result<std::vector<std::string>> Registry::list_endpoints(const std::string& network)
{
    auto names = TRY(m_store.list(endpoints_dir(network)));
    std::vector<std::string> keys;
    for (auto& n : names)
        if (n.ends_with(".json"))
            keys.push_back(n.substr(0, n.size() - 5));
    return keys;
}

Result<void> Registry::drop_legacy_sandboxes()
{
    auto names = TRY(m_store.list(legacy_sandboxes_dir()));
    if (names.empty())
        return {};
    auto lock = TRY(m_store.lock(legacy_sandboxes_dir()));
    for (auto& name : names) {
        Key doc = legacy_sandboxes_dir();
        doc.push_back(name);
        TRY(m_store.remove(doc, Durability::Sync)); // unlinked, not kept as a spare: nothing writes there now
    }
    return {};
}

} // namespace cnm
