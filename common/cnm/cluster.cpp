#include "cnm/cluster.hpp"

#include "store/etcd_store.hpp"
#include "util/fault.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm {

namespace {

constexpr size_t max_cluster_file = 64 * 1024;
// Claims tried per call: each lost race means another host took that block at that moment.
constexpr int max_claim_attempts = 64;

Error bad(const std::string& msg, const std::string& details = {})
{
    return make_error(Code::InvalidConfig, "invalid config: " + msg, details);
}

Result<Json> read_cluster_file(const std::string& path)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int err = errno;
        return bad("no \"cluster\" in the conf and the cluster file " + path + " cannot be read (" + std::strerror(err) + ")",
            "give \"cluster\": {\"etcd\": [urls], \"node\": NAME} or write " + path);
    }
    struct stat st {};
    std::string text;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && static_cast<size_t>(st.st_size) <= max_cluster_file) {
        text.resize(static_cast<size_t>(st.st_size));
        ssize_t n = ::read(fd, text.data(), text.size());
        text.resize(n > 0 ? static_cast<size_t>(n) : 0);
    } else {
        ::close(fd);
        return bad("the cluster file " + path + " is not a regular file of at most 64 KiB");
    }
    ::close(fd);
    auto doc = parse_json(text, Code::InvalidConfig, "cluster file " + path);
    if (!doc)
        return doc.release_error();
    if (!doc->is_object())
        return bad("the cluster file " + path + " is not a JSON object");
    return doc.release_value();
}

std::string hostname()
{
    char buf[256] {};
    if (::gethostname(buf, sizeof buf - 1) != 0)
        return "";
    return buf;
}

Result<ClusterConfig> parse_cluster(const Json& doc, const std::string& where)
{
    ClusterConfig c;
    auto etcd = TRY(json_strings(doc, "etcd", where));
    for (auto& e : etcd)
        for (auto& one : etcd::split_endpoints(e))
            c.etcd.push_back(one);
    if (c.etcd.empty())
        return bad("\"" + where + ".etcd\" must list at least one etcd endpoint (\"http://host:port\")");
    if (auto prefix = TRY(json_string(doc, "prefix", where)))
        c.prefix = *prefix;
    while (c.prefix.size() > 1 && c.prefix.back() == '/')
        c.prefix.pop_back();
    if (c.prefix.empty() || c.prefix[0] != '/')
        return bad("\"" + where + ".prefix\" = \"" + c.prefix + "\" must start with '/'");
    c.node = TRY(json_string(doc, "node", where)).value_or("");
    c.underlay = TRY(json_string(doc, "underlay", where)).value_or("");
    c.timeout_ms = static_cast<int>(TRY(json_int(doc, "timeoutMs", where, 50, 60000)).value_or(2000));
    return c;
}

} // namespace

Result<ClusterConfig> load_cluster_config(const Json& conf)
{
    ClusterConfig c;
    auto given = TRY(json_object(conf, "cluster", ""));
    if (!given.is_null()) {
        c = TRY(parse_cluster(given, "cluster"));
    } else {
        const char* env = std::getenv(cluster_file_env);
        std::string path = env && *env ? env : default_cluster_file;
        c = TRY(parse_cluster(TRY(read_cluster_file(path)), path));
    }
    if (c.node.empty())
        if (const char* env = std::getenv(node_env); env && *env)
            c.node = env;
    if (c.node.empty())
        c.node = hostname();
    if (!valid_node_name(c.node))
        return bad("node name \"" + c.node + "\" is not usable (1-253 characters of A-Z a-z 0-9 . _ -)",
            "set \"cluster.node\" or CNM_NODE");
    return c;
}

Cluster::Cluster(ClusterConfig config, std::unique_ptr<etcd::Transport> transport)
    : m_config(std::move(config)), m_transport(std::move(transport))
{
}

Cluster::Cluster(ClusterConfig config, std::unique_ptr<Store> store)
    : m_config(std::move(config)), m_store(std::move(store)), m_etcd(false)
{
}

Cluster::~Cluster() = default;

Result<Store*> Cluster::store()
{
    if (!m_store) {
        etcd::Options options;
        options.endpoints = m_config.etcd;
        options.timeout = std::chrono::milliseconds(m_config.timeout_ms);
        options.connect_timeout = std::chrono::milliseconds(std::min(500, m_config.timeout_ms));
        m_store = TRY(EtcdStore::open(options, m_config.prefix, std::move(m_transport)));
    }
    return m_store.get();
}

std::string Cluster::where(const Key& key) const
{
    return m_etcd ? "etcd key " + m_config.prefix + "/" + key_str(key) : "cluster key " + key_str(key);
}

Result<Loaded> Cluster::winner(Store& store, const Key& key, const Cas& cas)
{
    if (cas.current)
        return *cas.current;
    return store.get(key);
}

std::string Cluster::network_key(const std::string& network) const
{
    return m_config.prefix + "/networks/" + network;
}

std::string Cluster::host_key(const std::string& node) const
{
    return m_config.prefix + "/hosts/" + node;
}

std::string Cluster::blocks_prefix(const std::string& network) const
{
    return m_config.prefix + "/blocks/" + network + "/";
}

std::string Cluster::block_path(const std::string& network, const IpNet& block) const
{
    return blocks_prefix(network) + block_key(block);
}

namespace {

std::string string_field(const Json& doc, const char* name)
{
    if (!doc.is_object())
        return "";
    auto it = doc.find(name);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : "";
}

} // namespace

Result<NetworkFacts> Cluster::ensure_network(const std::string& network, const NetworkFacts& first)
{
    Store& s = *TRY(store());
    Key key = network_doc(network);
    auto cas = TRY(s.put_if(key, first.to_json(), 0));
    if (cas.done)
        return first;
    Loaded have = TRY(winner(s, key, cas));
    if (have.status == Loaded::Status::Absent)
        return make_error(Code::TryAgainLater, where(key) + " was neither created nor readable", "retry the ADD");
    if (!have.ok())
        return make_error(Code::StateCorrupt, where(key) + " is corrupt: " + have.reason);
    return NetworkFacts::from_json(have.doc, where(key));
}

Result<std::optional<NetworkFacts>> Cluster::network(const std::string& network)
{
    Store& s = *TRY(store());
    Key key = network_doc(network);
    Loaded have = TRY(s.get(key));
    if (have.status == Loaded::Status::Absent)
        return std::optional<NetworkFacts> {};
    if (!have.ok())
        return make_error(Code::StateCorrupt, where(key) + " is corrupt: " + have.reason);
    return std::optional<NetworkFacts>(TRY(NetworkFacts::from_json(have.doc, where(key))));
}

Result<void> Cluster::ensure_host(const IpAddr& vtep, const Mac& mac)
{
    Store& s = *TRY(store());
    Key key = host_doc(node());
    Json want = { { "vtep", vtep.str() }, { "mac", netlink::mac_str(mac) } };
    auto cas = TRY(s.put_if(key, want, 0));
    if (cas.done)
        return {};
    Loaded have = TRY(winner(s, key, cas));
    if (have.status == Loaded::Status::Absent)
        return {};
    if (have.ok() && string_field(have.doc, "vtep") == vtep.str() && string_field(have.doc, "mac") == netlink::mac_str(mac))
        return {};
    // Our own record says otherwise (a new underlay address): ours is the truth. The agent's
    // lease, if any, is kept (EtcdStore's put_if onto an existing key keeps its lease).
    TRY(s.put_if(key, want, have.version));
    return {};
}

Result<std::vector<BlockOwner>> Cluster::blocks(const std::string& network)
{
    Store& s = *TRY(store());
    auto scan = TRY(s.scan(blocks_dir(network)));
    std::vector<BlockOwner> out;
    for (auto& doc : scan.docs) {
        auto block = parse_block_key(doc.name);
        if (!block)
            continue;
        // A block whose value is unreadable is still taken: never hand it out again.
        BlockOwner owner { *block, "", {}, {} };
        if (doc.doc.ok())
            if (auto parsed = BlockOwner::from_json(*block, doc.doc.doc))
                owner = *parsed;
        out.push_back(owner);
    }
    return out;
}

Result<Cluster::Claim> Cluster::claim(const std::string& network, const IpNet& subnet, int block_prefix, const std::set<IpNet>& cached,
    const IpAddr& vtep, const Mac& mac)
{
    Store& s = *TRY(store());
    TRY(ensure_host(vtep, mac));
    Claim out;
    std::set<IpNet> taken;
    for (auto& b : TRY(blocks(network))) {
        taken.insert(b.block);
        bool ours = b.node == node();
        bool in_subnet = b.block.addr.family == subnet.addr.family && subnet.contains(b.block.addr) && b.block.prefix == block_prefix;
        if (ours && in_subnet && !cached.count(b.block))
            out.mine.push_back(b); // a claim a killed plugin never cached: adopt it
        else if (!ours && !b.node.empty())
            out.others.push_back(b);
    }
    if (!out.mine.empty())
        return out;
    BlockOwner mine { {}, node(), vtep, mac };
    for (int attempt = 0; attempt < max_claim_attempts; ++attempt) {
        auto free = first_free_block(subnet, block_prefix, taken);
        if (!free)
            return make_error(Code::AddressUnavailable, "the cluster subnet " + subnet.str() + " of network \"" + network
                    + "\" has no free block (/" + std::to_string(block_prefix) + ")",
                std::to_string(taken.size()) + " blocks are held; an admin can release a gone host's blocks");
        mine.block = *free;
        fault_point("vxlan-claim-before-cas");
        Key key = blocks_dir(network);
        key.push_back(block_key(*free));
        auto cas = TRY(s.put_if(key, mine.to_json(), 0));
        if (cas.done) {
            fault_point("vxlan-claim-after-cas");
            out.mine.push_back(mine);
            return out;
        }
        // Lost to another host: its block is one more to route to.
        taken.insert(*free);
        Loaded have = TRY(winner(s, key, cas));
        if (have.ok())
            if (auto winner = BlockOwner::from_json(*free, have.doc)) {
                if (winner->node == node()) {
                    out.mine.push_back(*winner);
                    return out;
                }
                out.others.push_back(*winner);
            }
    }
    return make_error(Code::TryAgainLater, "lost " + std::to_string(max_claim_attempts) + " block claims in a row on network \"" + network + "\"",
        "retry the ADD");
}

Result<size_t> Cluster::release_blocks(const std::string& network, const std::string& node_name)
{
    Store& s = *TRY(store());
    Key dir = blocks_dir(network);
    auto scan = TRY(s.scan(dir));
    size_t released = 0;
    for (auto& doc : scan.docs) {
        if (!doc.doc.ok() || string_field(doc.doc.doc, "node") != node_name)
            continue;
        Key key = dir;
        key.push_back(doc.name);
        auto cas = TRY(s.remove_if(key, doc.doc.version));
        if (cas.done)
            ++released;
    }
    return released;
}

} // namespace cnm
