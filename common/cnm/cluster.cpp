#include "cnm/cluster.hpp"

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

Result<etcd::Client*> Cluster::client()
{
    if (!m_client) {
        etcd::Options options;
        options.endpoints = m_config.etcd;
        options.timeout = std::chrono::milliseconds(m_config.timeout_ms);
        options.connect_timeout = std::chrono::milliseconds(std::min(500, m_config.timeout_ms));
        m_client = TRY(etcd::Client::create(options, std::move(m_transport)));
    }
    return m_client.get();
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

Result<NetworkFacts> Cluster::ensure_network(const std::string& network, const NetworkFacts& first)
{
    auto* c = TRY(client());
    std::string key = network_key(network);
    auto cas = TRY(c->create(key, first.to_json().dump()));
    if (cas.succeeded)
        return first;
    if (!cas.current)
        return make_error(Code::TryAgainLater, "etcd: " + key + " was neither created nor readable", "retry the ADD");
    auto doc = parse_json(cas.current->value, Code::StateCorrupt, "etcd key " + key);
    if (!doc)
        return doc.release_error();
    return NetworkFacts::from_json(*doc, "etcd key " + key);
}

Result<void> Cluster::ensure_host(const IpAddr& vtep, const Mac& mac)
{
    auto* c = TRY(client());
    std::string key = host_key(node());
    Json want = { { "vtep", vtep.str() }, { "mac", netlink::mac_str(mac) } };
    auto cas = TRY(c->create(key, want.dump()));
    if (cas.succeeded || !cas.current)
        return {};
    auto have = parse_json(cas.current->value, Code::StateCorrupt, "etcd key " + key);
    if (have && have->is_object() && have->value("vtep", "") == vtep.str() && have->value("mac", "") == netlink::mac_str(mac))
        return {};
    // Our own record says otherwise (a new underlay address): ours is the truth. The agent's
    // lease, if any, is kept.
    TRY(c->put_if_mod_revision(key, want.dump(), cas.current->mod_revision, cas.current->lease));
    return {};
}

Result<std::vector<BlockOwner>> Cluster::blocks(const std::string& network)
{
    auto* c = TRY(client());
    std::string prefix = blocks_prefix(network);
    auto range = TRY(c->range_prefix(prefix));
    std::vector<BlockOwner> out;
    for (auto& kv : range.kvs) {
        auto block = parse_block_key(std::string_view(kv.key).substr(prefix.size()));
        if (!block)
            continue;
        auto doc = parse_json(kv.value, Code::StateCorrupt, "etcd key " + kv.key);
        // A block whose value is unreadable is still taken: never hand it out again.
        BlockOwner owner { *block, "", {}, {} };
        if (doc)
            if (auto parsed = BlockOwner::from_json(*block, *doc))
                owner = *parsed;
        out.push_back(owner);
    }
    return out;
}

Result<Cluster::Claim> Cluster::claim(const std::string& network, const IpNet& subnet, int block_prefix, const std::set<IpNet>& cached,
    const IpAddr& vtep, const Mac& mac)
{
    auto* c = TRY(client());
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
        auto cas = TRY(c->create(block_path(network, *free), mine.to_json().dump()));
        if (cas.succeeded) {
            fault_point("vxlan-claim-after-cas");
            out.mine.push_back(mine);
            return out;
        }
        // Lost to another host: its block is one more to route to.
        taken.insert(*free);
        if (cas.current)
            if (auto doc = parse_json(cas.current->value, Code::StateCorrupt, "block"); doc)
                if (auto winner = BlockOwner::from_json(*free, *doc)) {
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
    auto* c = TRY(client());
    std::string prefix = blocks_prefix(network);
    auto range = TRY(c->range_prefix(prefix));
    size_t released = 0;
    for (auto& kv : range.kvs) {
        auto doc = parse_json(kv.value, Code::StateCorrupt, "etcd key " + kv.key);
        if (!doc || !doc->is_object() || doc->value("node", "") != node_name)
            continue;
        auto cas = TRY(c->delete_if_mod_revision(kv.key, kv.mod_revision));
        if (cas.succeeded)
            ++released;
    }
    return released;
}

} // namespace cnm
