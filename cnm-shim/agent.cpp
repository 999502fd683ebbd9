#include "agent.hpp"

#include "cnm/cluster_ipam.hpp"
#include "cnm/registry.hpp"
#include "etcd/client.hpp"
#include "drivers/vxlan.hpp"
#include "kernel/kernel.hpp"
#include "store/file_store.hpp"

#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <pthread.h>
#include <set>
#include <sstream>
#include <thread>

namespace cnm::shim {

namespace {

void log(const std::string& line)
{
    std::fprintf(stderr, "cnm-shim agent: %s\n", line.c_str());
}

std::string why(const Error& e)
{
    return e.msg + (e.details.empty() ? "" : ": " + e.details);
}

Result<std::unique_ptr<etcd::Client>> make_client(const ClusterConfig& c)
{
    etcd::Options o;
    o.endpoints = c.etcd;
    o.timeout = std::chrono::milliseconds(c.timeout_ms);
    return etcd::Client::create(o);
}

struct Remote {
    std::string network;
    BlockOwner owner;
};

/// P/blocks/<network>/<a_b> → (network, block owner); nullopt when the key or value is not one.
std::optional<Remote> parse_block(const std::string& prefix, const std::string& key, const std::string& value)
{
    std::string base = prefix + "/blocks/";
    if (key.rfind(base, 0) != 0)
        return std::nullopt;
    std::string rest = key.substr(base.size());
    auto slash = rest.find('/');
    if (slash == std::string::npos)
        return std::nullopt;
    auto block = parse_block_key(rest.substr(slash + 1));
    if (!block)
        return std::nullopt;
    auto doc = parse_json(value, Code::StateCorrupt, key);
    if (!doc || !doc->is_object())
        return std::nullopt;
    auto owner = BlockOwner::from_json(*block, *doc);
    if (!owner)
        return std::nullopt;
    return Remote { rest.substr(0, slash), *owner };
}

/// A vxlan network of this host: its driver options (completed from the cached facts and the
/// cluster file) and its vxlan device.
struct LocalNet {
    std::string name;
    Json options;
    int dev = 0;
    std::string dev_name;
};

Result<std::vector<LocalNet>> local_networks(Store& store, Kernel& kernel, const ClusterConfig& config)
{
    Registry registry(store);
    std::vector<LocalNet> out;
    for (auto& name : TRY(registry.list_networks())) {
        auto rec = registry.load_network(name);
        if (!rec || !rec->ok() || rec->record.driver != "vxlan")
            continue;
        Json options = rec->record.options.is_object() ? rec->record.options : Json::object();
        auto local = load_local_blocks(store, name);
        if (local && local->facts) {
            if (!options.contains("vni"))
                options["vni"] = local->facts->vni;
            if (!options.contains("subnet"))
                options["subnet"] = local->facts->subnet.str();
            if (!options.contains("port"))
                options["port"] = local->facts->port;
        }
        if (!options.contains("underlay") && !config.underlay.empty())
            options["underlay"] = config.underlay;
        if (!options.contains("vni"))
            continue;
        std::string dev_name = drivers::vxlan_device_name(options["vni"].get<uint32_t>());
        auto dev = TRY(kernel.get_link(host_ns, dev_name));
        if (!dev)
            continue;
        out.push_back({ name, options, dev->index, dev_name });
    }
    return out;
}

class Agent {
public:
    Agent(const AgentOptions& o, std::unique_ptr<Store> store, std::unique_ptr<Kernel> kernel, std::unique_ptr<etcd::Client> client)
        : m_o(o), m_store(std::move(store)), m_kernel(std::move(kernel)), m_client(std::move(client)), m_cluster(o.cluster)
    {
    }

    int run(std::stop_token stop)
    {
        std::jthread lease([this, stop](std::stop_token) { lease_loop(stop); });
        std::jthread watcher([this, stop](std::stop_token) { watch_loop(stop); });
        std::stop_callback wake(stop, [this] { m_cv.notify_all(); });
        reconcile();
        while (!stop.stop_requested()) {
            {
                std::unique_lock lock(m_mutex);
                m_cv.wait_for(lock, m_o.resync, [&] { return m_dirty || stop.stop_requested(); });
                m_dirty = false;
            }
            if (stop.stop_requested())
                break;
            reconcile();
        }
        lease.join();
        watcher.join();
        if (m_lease)
            (void)m_client->lease_revoke(m_lease);
        if (m_o.release)
            return release_own();
        return 0;
    }

private:
    void reconcile()
    {
        std::map<std::string, std::vector<BlockOwner>> by_net;
        bool listed;
        {
            std::lock_guard lock(m_mutex);
            listed = m_listed;
            for (auto& [key, r] : m_blocks)
                by_net[r.network].push_back(r.owner);
        }
        if (!listed)
            return; // nothing known yet: removing everything would be wrong
        // The plugins remove a network's directory at its last DEL and make it again at the next
        // ADD: an fd kept from the last pass would show the new one as missing.
        m_store->forget_open_dirs();
        auto nets = local_networks(*m_store, *m_kernel, m_o.cluster);
        if (!nets) {
            log("cannot read the local networks: " + why(nets.error()));
            return;
        }
        for (auto& net : *nets) {
            auto done = drivers::reconcile_remote_blocks(*m_kernel, net.options, by_net[net.name]);
            if (!done)
                log("network " + net.name + ": " + why(done.error()));
            else if (*done)
                log("network " + net.name + ": removed " + std::to_string(*done) + " stale entries");
        }
    }

    void lease_loop(std::stop_token stop)
    {
        auto wait = [&](std::chrono::milliseconds d) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock l(m);
            cv.wait_for(l, stop, d, [] { return false; });
        };
        std::chrono::milliseconds backoff { 200 };
        while (!stop.stop_requested()) {
            if (!m_lease) {
                auto ok = register_host();
                if (!ok) {
                    log("cannot register the host: " + why(ok.error()));
                    wait(backoff);
                    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
                    continue;
                }
                backoff = std::chrono::milliseconds(200);
            }
            wait(std::chrono::milliseconds(m_o.lease_ttl * 1000 / 3));
            if (stop.stop_requested())
                break;
            auto ttl = m_client->lease_keepalive(m_lease);
            if (!ttl) {
                log("lease keepalive: " + why(ttl.error()));
                continue; // keep the id: it may still be alive when etcd answers again
            }
            if (*ttl == 0) {
                log("lease expired: registering again");
                m_lease = 0;
            }
        }
    }

    Result<void> register_host()
    {
        Json options = Json::object();
        if (!m_o.cluster.underlay.empty())
            options["underlay"] = m_o.cluster.underlay;
        auto underlay = TRY(drivers::vxlan_underlay(*m_kernel, options));
        auto lease = TRY(m_client->lease_grant(m_o.lease_ttl));
        Json doc { { "vtep", underlay.address.str() }, { "mac", netlink::mac_str(vtep_mac(underlay.address)) } };
        TRY(m_client->put(m_cluster.host_key(m_o.cluster.node), doc.dump(), lease.id));
        m_lease = lease.id;
        log("registered " + m_o.cluster.node + " (" + underlay.address.str() + ") on lease " + std::to_string(lease.id));
        return {};
    }

    void watch_loop(std::stop_token stop)
    {
        std::string prefix = m_o.cluster.prefix + "/blocks/";
        std::chrono::milliseconds backoff { 200 };
        auto wait = [&](std::chrono::milliseconds d) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock l(m);
            cv.wait_for(l, stop, d, [] { return false; });
        };
        while (!stop.stop_requested()) {
            auto range = m_client->range_prefix(prefix);
            if (!range) {
                log("cannot list the blocks: " + why(range.error()));
                wait(backoff);
                backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
                continue;
            }
            {
                std::lock_guard lock(m_mutex);
                m_blocks.clear();
                for (auto& kv : range->kvs)
                    if (auto r = parse_block(m_o.cluster.prefix, kv.key, kv.value))
                        m_blocks[kv.key] = *r;
                m_listed = true;
                m_dirty = true;
            }
            m_cv.notify_all();
            auto end = m_client->watch(prefix, range->revision + 1, [&](const etcd::WatchMessage& msg) {
                backoff = std::chrono::milliseconds(200);
                if (msg.events.empty())
                    return true;
                {
                    std::lock_guard lock(m_mutex);
                    for (auto& ev : msg.events) {
                        if (ev.type == etcd::WatchEvent::Type::Delete)
                            m_blocks.erase(ev.kv.key);
                        else if (auto r = parse_block(m_o.cluster.prefix, ev.kv.key, ev.kv.value))
                            m_blocks[ev.kv.key] = *r;
                    }
                    m_dirty = true;
                }
                m_cv.notify_all();
                return true;
            }, stop, etcd::WatchOptions { .prev_kv = false, .idle_timeout = std::chrono::milliseconds(0) });
            if (stop.stop_requested())
                break;
            if (!end) {
                log("watch broke: " + why(end.error()) + "; listing again");
                wait(backoff);
                backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
            } else if (end->reason == etcd::WatchEnd::Reason::Compacted) {
                log("watch start compacted: listing again");
            }
        }
    }

    int release_own()
    {
        auto n = cluster_release(m_o.cluster, m_o.cluster.node);
        if (!n) {
            log("--release: " + why(n.error()));
            return 1;
        }
        // Forget them locally too, so a later ADD claims again instead of using released blocks.
        m_store->forget_open_dirs();
        Registry registry(*m_store);
        if (auto names = registry.list_networks())
            for (auto& name : *names) {
                auto lock = m_store->lock(Key { "cluster", name });
                auto local = load_local_blocks(*m_store, name);
                if (local && !local->blocks.empty()) {
                    local->blocks.clear();
                    (void)save_local_blocks(*m_store, name, *local);
                }
            }
        log("released " + std::to_string(*n) + " blocks of " + m_o.cluster.node);
        return 0;
    }

    const AgentOptions& m_o;
    std::unique_ptr<Store> m_store;
    std::unique_ptr<Kernel> m_kernel;
    std::unique_ptr<etcd::Client> m_client;
    Cluster m_cluster;
    std::atomic<int64_t> m_lease { 0 };
    std::mutex m_mutex;
    std::condition_variable m_cv;
    bool m_dirty = false;
    bool m_listed = false;
    std::map<std::string, Remote> m_blocks;
};

} // namespace

int run_agent(const AgentOptions& options, std::stop_token stop)
{
    auto store = FileStore::open(options.state_dir);
    if (!store) {
        log(why(store.error()));
        return 1;
    }
    auto kernel = netlink_kernel();
    if (!kernel) {
        log(why(kernel.error()));
        return 1;
    }
    auto client = make_client(options.cluster);
    if (!client) {
        log(why(client.error()));
        return 1;
    }
    Agent agent(options, store.release_value(), kernel.release_value(), client.release_value());
    return agent.run(stop);
}

int run_agent_until_signal(const AgentOptions& options)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    std::stop_source source;
    std::jthread waiter([&] {
        int sig = 0;
        sigwait(&set, &sig);
        source.request_stop();
    });
    int rc = run_agent(options, source.get_token());
    if (!source.stop_requested()) {
        source.request_stop();
        pthread_kill(waiter.native_handle(), SIGTERM);
    }
    return rc;
}

Result<Json> cluster_networks(const ClusterConfig& config, const std::string&)
{
    auto client = TRY(make_client(config));
    std::string prefix = config.prefix + "/networks/";
    auto nets = TRY(client->range_prefix(prefix));
    auto blocks = TRY(client->range_prefix(config.prefix + "/blocks/"));
    std::map<std::string, std::pair<int64_t, int64_t>> count; // network → (blocks, of them this host's)
    for (auto& kv : blocks.kvs)
        if (auto r = parse_block(config.prefix, kv.key, kv.value)) {
            auto& c = count[r->network];
            ++c.first;
            c.second += r->owner.node == config.node;
        }
    Json out = Json::array();
    for (auto& kv : nets.kvs) {
        std::string name = kv.key.substr(prefix.size());
        Json row { { "network", name }, { "vni", nullptr }, { "subnet", nullptr }, { "subnet6", nullptr }, { "blockSize", nullptr },
            { "port", nullptr }, { "mtu", nullptr }, { "blocks", count[name].first }, { "mine", count[name].second } };
        auto doc = parse_json(kv.value, Code::StateCorrupt, kv.key);
        auto facts = doc ? NetworkFacts::from_json(*doc, kv.key) : Result<NetworkFacts>(doc.error());
        if (facts) {
            row["vni"] = facts->vni;
            row["subnet"] = facts->subnet.str();
            if (facts->subnet6)
                row["subnet6"] = facts->subnet6->str();
            row["blockSize"] = facts->block_size;
            row["port"] = facts->port;
            row["mtu"] = facts->mtu;
        } else {
            row["error"] = facts.error().msg;
        }
        out.push_back(row);
    }
    return out;
}

Result<Json> cluster_hosts(const ClusterConfig& config, const std::string&)
{
    auto client = TRY(make_client(config));
    std::string prefix = config.prefix + "/hosts/";
    auto hosts = TRY(client->range_prefix(prefix));
    auto blocks = TRY(client->range_prefix(config.prefix + "/blocks/"));
    std::map<std::string, Json> rows;
    for (auto& kv : hosts.kvs) {
        std::string node = kv.key.substr(prefix.size());
        auto doc = parse_json(kv.value, Code::StateCorrupt, kv.key);
        Json row { { "node", node }, { "vtep", "" }, { "mac", "" }, { "lease", kv.lease ? "alive" : "none (written by a plugin)" },
            { "blocks", 0 } };
        if (doc && doc->is_object()) {
            row["vtep"] = doc->value("vtep", "");
            row["mac"] = doc->value("mac", "");
        }
        rows[node] = row;
    }
    for (auto& kv : blocks.kvs) {
        auto r = parse_block(config.prefix, kv.key, kv.value);
        if (!r)
            continue;
        auto it = rows.find(r->owner.node);
        if (it == rows.end())
            it = rows.emplace(r->owner.node, Json { { "node", r->owner.node }, { "vtep", r->owner.vtep.str() },
                                                    { "mac", netlink::mac_str(r->owner.mac) }, { "lease", "expired" }, { "blocks", 0 } })
                     .first;
        it->second["blocks"] = it->second["blocks"].get<int>() + 1;
    }
    Json out = Json::array();
    for (auto& [_, row] : rows)
        out.push_back(row);
    return out;
}

Result<Json> cluster_blocks(const ClusterConfig& config, const std::string& state_dir)
{
    auto client = TRY(make_client(config));
    auto blocks = TRY(client->range_prefix(config.prefix + "/blocks/"));
    std::unique_ptr<Store> store;
    if (auto s = FileStore::open(state_dir))
        store = s.release_value();
    std::map<std::string, std::vector<IpAddr>> used; // network → its endpoints' addresses (this host)
    if (store) {
        Registry registry(*store);
        if (auto names = registry.list_networks())
            for (auto& n : *names)
                if (auto eps = registry.list_endpoints(n))
                    for (auto& e : *eps)
                        if (auto rec = registry.load_endpoint(n, e); rec && rec->ok())
                            for (auto& a : rec->record.addresses)
                                used[n].push_back(a.address.addr);
    }
    Json out = Json::array();
    for (auto& kv : blocks.kvs) {
        auto r = parse_block(config.prefix, kv.key, kv.value);
        if (!r)
            continue;
        Json row { { "network", r->network }, { "block", r->owner.block.str() }, { "node", r->owner.node },
            { "vtep", r->owner.vtep.str() }, { "used", nullptr }, { "free", nullptr } };
        if (r->owner.node == config.node && store) {
            int64_t n = 0;
            for (auto& a : used[r->network])
                if (r->owner.block.contains(a))
                    ++n;
            // Usable: every address but the network address, the gateway and (IPv4) the broadcast.
            int64_t size = r->owner.block.size() > u128(1) << 62 ? int64_t(1) << 62 : int64_t(r->owner.block.size());
            int64_t usable = size - (r->owner.block.addr.family == 4 ? 3 : 2);
            row["used"] = n;
            row["free"] = std::max<int64_t>(0, usable - n);
        }
        out.push_back(row);
    }
    return out;
}

Result<Json> cluster_tunnels(const ClusterConfig& config, const std::string& state_dir)
{
    auto store = TRY(FileStore::open(state_dir));
    auto kernel = TRY(netlink_kernel());
    Json out = Json::array();
    for (auto& net : TRY(local_networks(*store, *kernel, config))) {
        std::map<IpAddr, Mac> neigh;
        for (auto& n : TRY(kernel->neighbours(host_ns, net.dev)))
            if (n.lladdr)
                neigh[n.dst] = *n.lladdr;
        std::map<Mac, IpAddr> fdb;
        for (auto& f : TRY(kernel->fdb(host_ns, net.dev)))
            if (f.dst)
                fdb[f.mac] = *f.dst;
        for (int family : { 4, 6 })
            for (auto& r : TRY(kernel->routes(host_ns, family))) {
                if (r.oif != net.dev || !r.gw)
                    continue; // (a route without a gateway is the kernel's, fe80::/64, not a tunnel)
                Json row { { "network", net.name }, { "device", net.dev_name }, { "block", r.dst.str() },
                    { "via", r.gw ? r.gw->str() : "" }, { "mac", "" }, { "vtep", "" } };
                if (r.gw && neigh.count(*r.gw)) {
                    row["mac"] = netlink::mac_str(neigh[*r.gw]);
                    if (fdb.count(neigh[*r.gw]))
                        row["vtep"] = fdb[neigh[*r.gw]].str();
                }
                out.push_back(row);
            }
    }
    return out;
}

std::string cluster_table(const Json& rows)
{
    if (rows.empty())
        return "(none)\n";
    std::vector<std::string> cols;
    for (auto& [k, _] : rows[0].items())
        cols.push_back(k);
    auto cell = [](const Json& v) { return v.is_string() ? v.get<std::string>() : v.is_null() ? std::string("-") : v.dump(); };
    std::vector<size_t> width;
    for (auto& c : cols) {
        size_t w = c.size();
        for (auto& r : rows)
            w = std::max(w, cell(r.value(c, Json())).size());
        width.push_back(w);
    }
    std::ostringstream os;
    auto line = [&](auto get) {
        for (size_t i = 0; i < cols.size(); ++i) {
            std::string s = get(i);
            os << s << (i + 1 < cols.size() ? std::string(width[i] - s.size() + 2, ' ') : "");
        }
        os << "\n";
    };
    line([&](size_t i) {
        std::string s = cols[i];
        for (auto& ch : s)
            ch = char(std::toupper(static_cast<unsigned char>(ch)));
        return s;
    });
    for (auto& r : rows)
        line([&](size_t i) { return cell(r.value(cols[i], Json())); });
    return os.str();
}

Result<size_t> cluster_release(const ClusterConfig& config, const std::string& node)
{
    if (!valid_node_name(node))
        return make_error(Code::InvalidConfig, "node name \"" + node + "\" is not usable");
    auto client = TRY(make_client(config));
    std::string base = config.prefix + "/blocks/";
    auto blocks = TRY(client->range_prefix(base));
    std::set<std::string> networks;
    for (auto& kv : blocks.kvs)
        if (auto r = parse_block(config.prefix, kv.key, kv.value))
            networks.insert(r->network);
    Cluster cluster(config);
    size_t n = 0;
    for (auto& net : networks)
        n += TRY(cluster.release_blocks(net, node));
    return n;
}

} // namespace cnm::shim
