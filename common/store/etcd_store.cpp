#include "store/etcd_store.hpp"

#include <algorithm>
#include <condition_variable>
#include <set>
#include <thread>

namespace cnm {

using etcd::Compare;
using etcd::Op;

namespace {

Error bad_name(const std::string& segment)
{
    return make_error(Code::InvalidConfig, "invalid name \"" + segment + "\" for the state store");
}

/// True when a key below the directory is one of ours (a lock or a hold): some segment of it
/// starts with '.', which valid_segment() never allows a document.
bool internal(std::string_view rest)
{
    if (rest.empty() || rest[0] == '.')
        return true;
    return rest.find("/.") != std::string_view::npos;
}

} // namespace

class EtcdLease;
struct EtcdLeaseTable {
    std::mutex mutex;
    std::map<std::string, std::weak_ptr<EtcdLease>> locks; // dir path → its lock's lease
};

/// One key on a lease of its own, renewed from a thread until the last owner lets go; then the
/// lease is revoked, which deletes the key.
class EtcdLease {
public:
    EtcdLease(std::shared_ptr<etcd::Client> client, int64_t id, int64_t ttl, std::string dir, std::shared_ptr<EtcdLeaseTable> table)
        : m_client(std::move(client)), m_id(id), m_dir(std::move(dir)), m_table(std::move(table))
    {
        auto every = std::chrono::milliseconds(std::max<int64_t>(ttl * 1000 / 3, 100));
        m_keepalive = std::jthread([client = m_client, id, every](std::stop_token stop) {
            std::mutex m;
            std::condition_variable_any cv;
            std::unique_lock lock(m);
            while (!cv.wait_for(lock, stop, every, [] { return false; }) && !stop.stop_requested())
                (void)client->lease_keepalive(id); // a miss is caught by the fences, or the next try
        });
    }
    ~EtcdLease()
    {
        m_keepalive.request_stop();
        m_keepalive.join();
        if (m_table) {
            std::lock_guard guard(m_table->mutex);
            if (auto it = m_table->locks.find(m_dir); it != m_table->locks.end() && !it->second.lock())
                m_table->locks.erase(it);
        }
        (void)m_client->lease_revoke(m_id); // on failure the TTL ends it
    }
    int64_t id() const { return m_id; }

private:
    std::shared_ptr<etcd::Client> m_client;
    int64_t m_id;
    std::string m_dir;
    std::shared_ptr<EtcdLeaseTable> m_table;
    std::jthread m_keepalive;
};

namespace {

class LeaseLock final : public Lock {
public:
    explicit LeaseLock(std::shared_ptr<EtcdLease> lease) : m_lease(std::move(lease)) { }

private:
    std::shared_ptr<EtcdLease> m_lease;
};

} // namespace

Result<std::unique_ptr<EtcdStore>> EtcdStore::open(etcd::Options options, std::string prefix, std::unique_ptr<etcd::Transport> transport,
    int64_t lease_ttl)
{
    if (prefix.empty() || prefix[0] != '/')
        return make_error(Code::InvalidConfig, "the etcd key prefix \"" + prefix + "\" must start with '/'");
    if (lease_ttl <= 0)
        return make_error(Code::InvalidConfig, "a lock's lease TTL must be positive");
    auto timeout = options.timeout;
    auto client = TRY(etcd::Client::create(std::move(options), std::move(transport)));
    return std::unique_ptr<EtcdStore>(new EtcdStore(std::shared_ptr<etcd::Client>(std::move(client)), std::move(prefix), timeout, lease_ttl));
}

EtcdStore::EtcdStore(std::shared_ptr<etcd::Client> client, std::string prefix, std::chrono::milliseconds timeout, int64_t lease_ttl)
    : m_client(std::move(client)), m_prefix(std::move(prefix)), m_timeout(timeout), m_lease_ttl(lease_ttl),
      m_table(std::make_shared<EtcdLeaseTable>())
{
}

EtcdStore::~EtcdStore() = default;

std::string EtcdStore::path(const Key& key) const
{
    return m_prefix + "/" + key_str(key);
}

Result<std::string> EtcdStore::doc_path(const Key& key) const
{
    if (key.empty())
        return make_error(Code::InvalidConfig, "an empty key names no document");
    for (auto& s : key)
        if (!valid_segment(s))
            return bad_name(s);
    return path(key);
}

Result<std::string> EtcdStore::dir_path(const Key& dir) const
{
    for (auto& s : dir)
        if (!valid_segment(s))
            return bad_name(s);
    return dir.empty() ? m_prefix + "/" : path(dir) + "/";
}

Loaded EtcdStore::loaded(const etcd::KeyValue& kv) const
{
    Loaded out;
    out.version = static_cast<Version>(kv.mod_revision);
    Json doc = Json::parse(kv.value, nullptr, false);
    if (kv.value.empty() || doc.is_discarded()) {
        out.status = Loaded::Status::Corrupt;
        out.reason = kv.value.empty() ? "empty document" : "not JSON";
        return out;
    }
    out.status = Loaded::Status::Ok;
    out.doc = std::move(doc);
    return out;
}

std::vector<Compare> EtcdStore::fences(const std::vector<std::string>& keys)
{
    std::vector<Compare> out;
    std::lock_guard guard(m_table->mutex);
    for (auto& [dir, weak] : m_table->locks) {
        auto lease = weak.lock();
        if (!lease)
            continue;
        bool under = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) { return k.rfind(dir, 0) == 0; });
        if (under)
            out.push_back(Compare::lease(dir + ".lock", Compare::Op::Equal, lease->id()));
    }
    return out;
}

Result<etcd::TxnResult> EtcdStore::run(const std::vector<std::string>& keys, std::vector<Compare> compares, std::vector<Op> success,
    std::vector<Op> failure)
{
    auto fenced = fences(keys);
    if (fenced.empty())
        return m_client->txn(compares, success, failure);
    // The fences first, and a read of each lock key first in the failure branch, to tell "the
    // lock was lost" from the caller's own compare failing.
    std::vector<Op> reads;
    for (auto& f : fenced)
        reads.push_back(Op::get(f.key));
    compares.insert(compares.begin(), fenced.begin(), fenced.end());
    failure.insert(failure.begin(), reads.begin(), reads.end());
    auto t = TRY(m_client->txn(compares, success, failure));
    if (t.succeeded)
        return t;
    for (size_t i = 0; i < fenced.size(); ++i) {
        bool held = i < t.responses.size() && !t.responses[i].range.kvs.empty() && t.responses[i].range.kvs.front().lease == fenced[i].number;
        if (!held) {
            std::string dir = fenced[i].key.substr(0, fenced[i].key.size() - 5);
            return make_error(Code::TryAgainLater, "the lock on " + dir + " was lost (its lease expired) before this write; nothing was written",
                "retry");
        }
    }
    t.responses.erase(t.responses.begin(), t.responses.begin() + static_cast<std::ptrdiff_t>(std::min(fenced.size(), t.responses.size())));
    return t;
}

Result<Loaded> EtcdStore::get(const Key& key)
{
    auto kv = TRY(m_client->get(TRY(doc_path(key))));
    if (!kv)
        return Loaded {};
    return loaded(*kv);
}

Result<bool> EtcdStore::exists(const Key& key)
{
    return TRY(m_client->get(TRY(doc_path(key)))).has_value();
}

Result<void> EtcdStore::put(const Key& key, const Json& doc, Durability)
{
    std::string k = TRY(doc_path(key));
    if (fences({ k }).empty()) {
        TRY(m_client->put(k, doc.dump()));
        return {};
    }
    TRY(run({ k }, {}, { Op::put(k, doc.dump()) }, {}));
    return {};
}

Result<bool> EtcdStore::create(const Key& key, const Json& doc, Durability durability)
{
    return TRY(put_if(key, doc, 0, durability)).done;
}

Result<Cas> EtcdStore::put_if(const Key& key, const Json& doc, Version expected, Durability)
{
    std::string k = TRY(doc_path(key));
    Op write = Op::put(k, doc.dump());
    Compare compare = Compare::version(k, Compare::Op::Equal, 0);
    if (expected != 0) {
        compare = Compare::mod_revision(k, Compare::Op::Equal, static_cast<int64_t>(expected));
        write.ignore_lease = true; // the key exists (its mod_revision is `expected`): keep its lease
    }
    auto t = TRY(run({ k }, { compare }, { write }, { Op::get(k) }));
    Cas out;
    out.done = t.succeeded;
    if (t.succeeded) {
        out.version = static_cast<Version>(t.revision);
        return out;
    }
    out.current = Loaded {};
    if (!t.responses.empty() && !t.responses.front().range.kvs.empty())
        out.current = loaded(t.responses.front().range.kvs.front());
    out.version = out.current->version;
    return out;
}

Result<Cas> EtcdStore::remove_if(const Key& key, Version expected, Durability)
{
    std::string k = TRY(doc_path(key));
    if (expected == 0) { // "only if absent" removes nothing: report what is there
        Loaded now = TRY(get(key));
        return Cas { false, now.version, now };
    }
    auto t = TRY(run({ k }, { Compare::mod_revision(k, Compare::Op::Equal, static_cast<int64_t>(expected)) }, { Op::del(k) }, { Op::get(k) }));
    if (t.succeeded)
        return Cas { true, 0, std::nullopt };
    Cas out;
    out.current = Loaded {};
    if (!t.responses.empty() && !t.responses.front().range.kvs.empty())
        out.current = loaded(t.responses.front().range.kvs.front());
    out.version = out.current->version;
    return out;
}

Result<void> EtcdStore::remove(const Key& key, Durability)
{
    std::string k = TRY(doc_path(key));
    if (fences({ k }).empty()) {
        TRY(m_client->del(k));
        return {};
    }
    TRY(run({ k }, {}, { Op::del(k) }, {}));
    return {};
}

Result<void> EtcdStore::remove_dir(const Key& key)
{
    TRY(dir_path(key));
    return {}; // etcd has no directories
}

Result<std::vector<std::string>> EtcdStore::list(const Key& dir)
{
    std::string dp = TRY(dir_path(dir));
    auto range = TRY(m_client->range_prefix(dp));
    std::set<std::string> names;
    for (auto& kv : range.kvs) {
        std::string_view rest = std::string_view(kv.key).substr(dp.size());
        if (internal(rest))
            continue;
        std::string name(rest.substr(0, rest.find('/')));
        if (valid_segment(name))
            names.insert(std::move(name));
    }
    return std::vector<std::string>(names.begin(), names.end());
}

Result<bool> EtcdStore::empty_dir(const Key& dir)
{
    std::string dp = TRY(dir_path(dir));
    auto range = TRY(m_client->range_prefix(dp));
    for (auto& kv : range.kvs)
        if (!internal(std::string_view(kv.key).substr(dp.size())))
            return false;
    return true;
}

Result<Scan> EtcdStore::scan(const Key& dir)
{
    std::string dp = TRY(dir_path(dir));
    auto range = TRY(m_client->range_prefix(dp));
    Scan out;
    out.at = static_cast<Version>(range.revision);
    for (auto& kv : range.kvs) {
        std::string_view rest = std::string_view(kv.key).substr(dp.size());
        if (internal(rest) || rest.find('/') != std::string_view::npos || !valid_segment(rest))
            continue;
        out.docs.push_back({ std::string(rest), loaded(kv) });
    }
    return out;
}

Result<TxnOutcome> EtcdStore::txn(const std::vector<TxnCheck>& checks, const std::vector<TxnWrite>& writes)
{
    std::vector<Compare> compares;
    std::vector<Op> success, failure;
    std::vector<std::string> written;
    for (auto& c : checks) {
        std::string k = TRY(doc_path(c.key));
        compares.push_back(c.version == 0 ? Compare::version(k, Compare::Op::Equal, 0)
                                          : Compare::mod_revision(k, Compare::Op::Equal, static_cast<int64_t>(c.version)));
        failure.push_back(Op::get(k));
    }
    for (auto& w : writes) {
        std::string k = TRY(doc_path(w.key));
        if (std::find(written.begin(), written.end(), k) != written.end())
            return make_error(Code::Internal, "a transaction writes " + k + " twice");
        written.push_back(k);
        success.push_back(w.doc ? Op::put(k, w.doc->dump()) : Op::del(k));
    }
    auto t = TRY(run(written, compares, success, failure));
    TxnOutcome out;
    out.done = t.succeeded;
    if (t.succeeded) {
        out.version = static_cast<Version>(t.revision);
        return out;
    }
    for (size_t i = 0; i < checks.size(); ++i) {
        Version v = 0;
        if (i < t.responses.size() && !t.responses[i].range.kvs.empty())
            v = static_cast<Version>(t.responses[i].range.kvs.front().mod_revision);
        out.current.push_back(v);
    }
    return out;
}

Result<Watched> EtcdStore::watch(const Key& dir, Version from, const WatchCallback& callback, std::stop_token stop)
{
    std::string dp = TRY(dir_path(dir));
    size_t base = m_prefix.size() + 1;
    auto end = TRY(m_client->watch(dp, static_cast<int64_t>(from), [&](const etcd::WatchMessage& msg) {
        Changes changes;
        changes.at = static_cast<Version>(msg.revision);
        for (auto& ev : msg.events) {
            if (ev.kv.key.size() <= dp.size() || internal(std::string_view(ev.kv.key).substr(dp.size())))
                continue;
            Change c;
            std::string_view rest = std::string_view(ev.kv.key).substr(base);
            for (size_t i = 0; i <= rest.size();) {
                size_t j = std::min(rest.find('/', i), rest.size());
                c.key.emplace_back(rest.substr(i, j - i));
                i = j + 1;
            }
            if (ev.type == etcd::WatchEvent::Type::Delete)
                c.doc.version = static_cast<Version>(ev.kv.mod_revision);
            else
                c.doc = loaded(ev.kv);
            changes.changes.push_back(std::move(c));
        }
        return changes.changes.empty() || callback(changes); // only our locks and holds changed: nothing to say
    }, stop));
    Watched out;
    if (end.reason == etcd::WatchEnd::Reason::Compacted) {
        out.end = Watched::End::Compacted;
        out.resume = static_cast<Version>(end.compact_revision);
    } else {
        out.resume = static_cast<Version>(end.last_revision + 1);
    }
    return out;
}

Result<std::unique_ptr<Lock>> EtcdStore::leased_key(const std::string& key, const std::string& fence_dir)
{
    if (!fence_dir.empty()) {
        std::lock_guard guard(m_table->mutex);
        if (auto it = m_table->locks.find(fence_dir); it != m_table->locks.end())
            if (auto held = it->second.lock())
                return std::unique_ptr<Lock>(new LeaseLock(std::move(held))); // this process holds it: free, as in FileStore
    }
    auto deadline = std::chrono::steady_clock::now() + m_timeout;
    auto grant = TRY(m_client->lease_grant(m_lease_ttl));
    // From here the lease is owned: revoked when `lease` goes, on every failure path too.
    auto lease = std::make_shared<EtcdLease>(m_client, grant.id, m_lease_ttl, fence_dir, fence_dir.empty() ? nullptr : m_table);
    std::chrono::milliseconds delay { 10 };
    for (;;) {
        auto cas = TRY(m_client->create(key, "{}", grant.id));
        if (cas.succeeded)
            break;
        if (std::chrono::steady_clock::now() + delay >= deadline)
            return make_error(Code::TryAgainLater, "etcd: " + key + " is held by another process for more than "
                    + std::to_string(m_timeout.count()) + " ms", "retry");
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(100));
    }
    if (!fence_dir.empty()) {
        std::lock_guard guard(m_table->mutex);
        m_table->locks[fence_dir] = lease;
    }
    return std::unique_ptr<Lock>(new LeaseLock(std::move(lease)));
}

Result<std::unique_ptr<Lock>> EtcdStore::lock(const Key& dir)
{
    std::string dp = TRY(dir_path(dir));
    return leased_key(dp + ".lock", dp);
}

Result<std::unique_ptr<Lock>> EtcdStore::hold(const Key& key)
{
    TRY(doc_path(key));
    std::string dp = TRY(dir_path(Key(key.begin(), key.end() - 1)));
    return leased_key(dp + "." + key.back() + ".held", "");
}

Result<bool> EtcdStore::held(const Key& key)
{
    TRY(doc_path(key));
    std::string dp = TRY(dir_path(Key(key.begin(), key.end() - 1)));
    return TRY(m_client->get(dp + "." + key.back() + ".held")).has_value();
}

Result<void> EtcdStore::sync()
{
    return {}; // an answered write is committed by raft
}

} // namespace cnm
