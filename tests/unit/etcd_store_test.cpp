// EtcdStore without a server: the Store interface over etcd's kv, lease and watch API kept in
// memory behind the client's Transport seam, answering in the gateway's recorded JSON (int64 as
// strings, zero fields omitted: see etcd_test.cpp). Versions and compare-and-swap, lost races,
// scan, txn, watch (with a compacted start), locks (contention, fencing, re-entry), etcd down;
// and one cluster scenario run over a FileStore and an EtcdStore alike.

#include "cnm/cluster.hpp"
#include "etcd/codec.hpp"
#include "helpers.hpp"
#include "store/etcd_store.hpp"
#include "store/file_store.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace cnm;
using namespace cnm::etcd;

namespace {

/// etcd in memory: range, put (lease, ignore_lease), deleterange, txn (VERSION/MOD/CREATE/LEASE
/// compares), lease grant/keepalive/revoke, compaction and a watch that replays history.
class MemoryEtcd final : public Transport {
public:
    struct Entry {
        std::string value;
        int64_t create = 0, mod = 0, version = 0, lease = 0;
    };
    struct Event {
        int64_t revision;
        bool removed;
        std::string key;
        Entry entry;
    };
    std::recursive_mutex mutex;
    std::map<std::string, Entry> kv;
    std::map<int64_t, int64_t> leases; // id → ttl
    std::vector<Event> history;
    int64_t revision = 1;
    int64_t compacted = 0;
    int64_t next_lease = 7000;
    bool down = false;
    int posts = 0, txns = 0, keepalives = 0, revokes = 0;
    std::vector<std::string> paths;
    std::function<void()> before_txn; // runs once, just before the next txn is applied

    void put(const std::string& key, const std::string& value, int64_t lease = 0)
    {
        std::lock_guard g(mutex);
        auto& e = kv[key];
        bump();
        if (e.version == 0)
            e.create = revision;
        e.mod = revision;
        ++e.version;
        e.value = value;
        e.lease = lease;
        history.push_back({ revision, false, key, e });
    }
    size_t erase(const std::string& key)
    {
        std::lock_guard g(mutex);
        if (!kv.erase(key))
            return 0;
        bump();
        history.push_back({ revision, true, key, {} });
        return 1;
    }

    HttpReply post(const HttpRequest& request) override
    {
        std::lock_guard g(mutex);
        ++posts;
        paths.push_back(request.path);
        if (down)
            return { HttpReply::Outcome::NotSent, 0, {}, "Connection refused" };
        Json body = Json::parse(request.body);
        Json out;
        if (request.path == "/v3/kv/range")
            out = range(body);
        else if (request.path == "/v3/kv/put")
            out = do_put(body);
        else if (request.path == "/v3/kv/deleterange")
            out = del(body);
        else if (request.path == "/v3/kv/txn")
            out = txn(body);
        else if (request.path == "/v3/lease/grant") {
            int64_t id = next_lease++;
            leases[id] = std::stoll(body["TTL"].get<std::string>());
            out = header();
            out["ID"] = std::to_string(id);
            out["TTL"] = std::to_string(leases[id]);
        } else if (request.path == "/v3/lease/keepalive") {
            ++keepalives;
            int64_t id = std::stoll(body["ID"].get<std::string>());
            Json result = header();
            result["ID"] = std::to_string(id);
            if (leases.count(id))
                result["TTL"] = std::to_string(leases[id]);
            out = { { "result", result } };
        } else if (request.path == "/v3/lease/revoke") {
            ++revokes;
            expire(std::stoll(body["ID"].get<std::string>()));
            out = header();
        } else
            return { HttpReply::Outcome::Ok, 404, R"({"error":"not found","message":"not found","code":5})", {} };
        return { HttpReply::Outcome::Ok, 200, out.dump(), {} };
    }

    /// The lease ends (revoked or expired): its keys go.
    void expire(int64_t id)
    {
        std::lock_guard g(mutex);
        leases.erase(id);
        std::vector<std::string> gone;
        for (auto& [k, e] : kv)
            if (e.lease == id)
                gone.push_back(k);
        for (auto& k : gone)
            erase(k);
    }

    HttpReply stream(const HttpRequest& request, const OnData& on_data, std::stop_token stop) override
    {
        std::vector<std::string> lines;
        {
            std::lock_guard g(mutex);
            if (down)
                return { HttpReply::Outcome::NotSent, 0, {}, "Connection refused" };
            Json req = Json::parse(request.body)["create_request"];
            std::string key = *base64_decode(req["key"].get<std::string>());
            std::string end = *base64_decode(req["range_end"].get<std::string>());
            int64_t start = req.contains("start_revision") ? std::stoll(req["start_revision"].get<std::string>()) : revision + 1;
            if (start <= compacted) {
                // As recorded: no revision in the header, the oldest revision kept.
                lines.push_back(R"({"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":")"
                    + std::to_string(compacted + 1) + "\"}}");
            } else {
                lines.push_back(Json { { "result", { { "header", { { "revision", std::to_string(revision) } } }, { "created", true } } } }.dump());
                for (auto& ev : history) {
                    if (ev.revision < start || ev.key < key || ev.key >= end)
                        continue;
                    Json e = { { "kv", ev.removed ? Json { { "key", base64_encode(ev.key) }, { "mod_revision", std::to_string(ev.revision) } }
                                                   : kv_json(ev.key, ev.entry) } };
                    if (ev.removed)
                        e["type"] = "DELETE";
                    lines.push_back(Json { { "result", { { "header", { { "revision", std::to_string(ev.revision) } } }, { "events", Json::array({ e }) } } } }.dump());
                }
            }
        }
        for (auto& line : lines)
            if (stop.stop_requested() || !on_data(line + "\n"))
                return { HttpReply::Outcome::Canceled, 0, {}, "canceled" };
        if (lines.size() == 1 && lines[0].find("canceled") != std::string::npos)
            return { HttpReply::Outcome::Ok, 200, {}, {} };
        return { HttpReply::Outcome::Broken, 0, {}, "end of the recorded stream" };
    }

private:
    int64_t pinned = 0; // inside a txn: every write gets the one revision of the txn
    void bump() { revision = pinned ? pinned : revision + 1; }
    static std::string key_of(const Json& body) { return *base64_decode(body["key"].get<std::string>()); }
    Json header() const { return { { "header", { { "cluster_id", "1" }, { "member_id", "2" }, { "revision", std::to_string(revision) }, { "raft_term", "2" } } } }; }
    static Json kv_json(const std::string& k, const Entry& e)
    {
        Json out = { { "key", base64_encode(k) }, { "create_revision", std::to_string(e.create) }, { "mod_revision", std::to_string(e.mod) },
            { "version", std::to_string(e.version) } };
        if (!e.value.empty())
            out["value"] = base64_encode(e.value);
        if (e.lease)
            out["lease"] = std::to_string(e.lease);
        return out;
    }
    Json range(const Json& body)
    {
        std::string key = key_of(body);
        std::string end = body.contains("range_end") ? *base64_decode(body["range_end"].get<std::string>()) : "";
        Json out = header();
        Json kvs = Json::array();
        for (auto& [k, e] : kv)
            if (end.empty() ? k == key : (k >= key && k < end))
                kvs.push_back(kv_json(k, e));
        if (!kvs.empty()) {
            out["kvs"] = kvs;
            out["count"] = std::to_string(kvs.size());
        }
        return out;
    }
    Json do_put(const Json& body)
    {
        std::string key = key_of(body);
        int64_t lease = body.contains("lease") ? std::stoll(body["lease"].get<std::string>()) : 0;
        if (body.value("ignore_lease", false))
            lease = kv.at(key).lease; // etcd refuses ignore_lease on an absent key; a test would throw
        put(key, *base64_decode(body["value"].get<std::string>()), lease);
        return header();
    }
    Json del(const Json& body)
    {
        size_t n = erase(key_of(body));
        Json out = header();
        if (n)
            out["deleted"] = std::to_string(n);
        return out;
    }
    Json txn(const Json& body)
    {
        ++txns;
        if (before_txn) {
            auto hook = std::move(before_txn);
            before_txn = nullptr;
            hook();
        }
        bool ok = true;
        for (auto& c : body.value("compare", Json::array())) {
            auto it = kv.find(key_of(c));
            Entry e = it == kv.end() ? Entry {} : it->second;
            std::string target = c["target"];
            std::map<std::string, std::pair<int64_t, const char*>> fields = { { "VERSION", { e.version, "version" } }, { "MOD", { e.mod, "mod_revision" } },
                { "CREATE", { e.create, "create_revision" } }, { "LEASE", { e.lease, "lease" } } };
            auto [have, field] = fields.at(target);
            REQUIRE(c.value("result", std::string("EQUAL")) == "EQUAL");
            ok = ok && have == std::stoll(c.value(field, std::string("0")));
        }
        Json responses = Json::array();
        pinned = revision + 1;
        for (auto& op : body.value(ok ? "success" : "failure", Json::array())) {
            if (op.contains("request_put")) {
                do_put(op["request_put"]);
                responses.push_back({ { "response_put", header() } });
            } else if (op.contains("request_range")) {
                responses.push_back({ { "response_range", range(op["request_range"]) } });
            } else if (op.contains("request_delete_range")) {
                responses.push_back({ { "response_delete_range", del(op["request_delete_range"]) } });
            }
        }
        pinned = 0;
        Json out = header();
        if (ok)
            out["succeeded"] = true;
        out["responses"] = responses;
        return out;
    }
};

/// A transport onto a MemoryEtcd the test keeps (the client owns its transport).
struct Forward final : public Transport {
    MemoryEtcd& to;
    explicit Forward(MemoryEtcd& t) : to(t) { }
    HttpReply post(const HttpRequest& r) override { return to.post(r); }
    HttpReply stream(const HttpRequest& r, const OnData& d, std::stop_token s) override { return to.stream(r, d, s); }
};

std::unique_ptr<EtcdStore> open_store(MemoryEtcd& etcd, std::chrono::milliseconds timeout = std::chrono::milliseconds(300))
{
    Options o;
    o.endpoints = { "http://etcd:1" };
    o.timeout = timeout;
    o.connect_timeout = timeout;
    auto store = EtcdStore::open(o, "/cnm", std::make_unique<Forward>(etcd));
    REQUIRE(store.ok());
    return store.release_value();
}

Json doc(int n)
{
    return Json { { "n", n } };
}

} // namespace

TEST_CASE("etcd store: keys under the prefix, versions are mod_revisions, compare-and-swap")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    Key key { "networks", "net" };
    auto absent = store->get(key);
    REQUIRE(absent.ok());
    CHECK(absent->status == Loaded::Status::Absent);
    CHECK(absent->version == 0);

    REQUIRE(store->put(key, doc(1)).ok());
    REQUIRE(etcd.kv.count("/cnm/networks/net") == 1);
    CHECK(etcd.kv["/cnm/networks/net"].value == R"({"n":1})");
    auto first = store->get(key);
    REQUIRE(first.ok());
    REQUIRE(first->ok());
    CHECK(first->doc == doc(1));
    CHECK(first->version == static_cast<Version>(etcd.kv["/cnm/networks/net"].mod));

    // A write elsewhere moves the store's revision but not this key's version.
    REQUIRE(store->put({ "networks", "other" }, doc(9)).ok());
    CHECK(store->get(key)->version == first->version);

    // put_if at the version read wins and gives a larger version; at a stale one it loses, says
    // who won, and writes nothing.
    auto won = store->put_if(key, doc(2), first->version);
    REQUIRE(won.ok());
    CHECK(won->done);
    CHECK(won->version > first->version);
    CHECK(won->version == static_cast<Version>(etcd.kv["/cnm/networks/net"].mod));
    auto lost = store->put_if(key, doc(3), first->version);
    REQUIRE(lost.ok());
    CHECK_FALSE(lost->done);
    CHECK(lost->version == won->version);
    REQUIRE(lost->current);
    CHECK(lost->current->doc == doc(2));
    CHECK(store->get(key)->doc == doc(2));

    // create is put_if at 0: false when present.
    CHECK_FALSE(*store->create(key, doc(4)));
    CHECK(*store->create({ "networks", "new" }, doc(4)));

    // remove_if: stale loses, current wins; a re-created key's version is above every earlier one.
    CHECK_FALSE(store->remove_if(key, first->version)->done);
    CHECK_FALSE(store->remove_if(key, 0)->done);
    CHECK(store->get(key)->ok());
    auto removed = store->remove_if(key, won->version);
    REQUIRE(removed.ok());
    CHECK(removed->done);
    CHECK(removed->version == 0);
    CHECK_FALSE(*store->exists(key));
    REQUIRE(store->put(key, doc(5)).ok());
    CHECK(store->get(key)->version > won->version);

    // A value that is not JSON is Corrupt with its version (replaceable by put_if), not an error.
    etcd.put("/cnm/networks/bad", "{not json");
    auto bad = store->get({ "networks", "bad" });
    REQUIRE(bad.ok());
    CHECK(bad->status == Loaded::Status::Corrupt);
    CHECK(bad->version == static_cast<Version>(etcd.kv["/cnm/networks/bad"].mod));
    CHECK(store->put_if({ "networks", "bad" }, doc(6), bad->version)->done);

    // Bad names are refused before anything is sent.
    int posts = etcd.posts;
    CHECK(store->get({ "networks", ".lock" }).error().code == Code::InvalidConfig);
    CHECK(store->put({ "a/b" }, doc(1)).error().code == Code::InvalidConfig);
    CHECK(store->list({ ".." }).error().code == Code::InvalidConfig);
    CHECK(etcd.posts == posts);
}

TEST_CASE("etcd store: a lost race is an answer; each CAS is one txn that reads the winner")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    Key key { "blocks", "net", "10.213.237.0_26" };
    // Another host creates the key between our decision and our write.
    etcd.before_txn = [&] { etcd.put("/cnm/blocks/net/10.213.237.0_26", R"({"node":"b"})"); };
    int txns = etcd.txns, posts = etcd.posts;
    auto cas = store->put_if(key, Json { { "node", "a" } }, 0);
    REQUIRE(cas.ok());
    CHECK_FALSE(cas->done);
    CHECK(etcd.txns - txns == 1);
    CHECK(etcd.posts - posts == 1); // the loser learned the winner in the same round trip
    REQUIRE(cas->current);
    CHECK(cas->current->doc["node"] == "b");
    CHECK(cas->version == static_cast<Version>(etcd.kv["/cnm/blocks/net/10.213.237.0_26"].mod));
    CHECK(etcd.kv["/cnm/blocks/net/10.213.237.0_26"].value == R"({"node":"b"})");
}

TEST_CASE("etcd store: put_if onto an existing key keeps its lease; put and create write without one")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    etcd.leases[42] = 30;
    etcd.put("/cnm/hosts/a", R"({"vtep":"10.213.236.1"})", 42);
    auto have = store->get({ "hosts", "a" });
    REQUIRE(store->put_if({ "hosts", "a" }, Json { { "vtep", "10.213.236.9" } }, have->version)->done);
    CHECK(etcd.kv["/cnm/hosts/a"].lease == 42);
    REQUIRE(store->put({ "hosts", "a" }, Json { { "vtep", "10.213.236.8" } }).ok());
    CHECK(etcd.kv["/cnm/hosts/a"].lease == 0);
}

TEST_CASE("etcd store: list, scan and empty_dir from one range read; locks and holds stay out of sight")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    etcd.put("/cnm/blocks/net/10.213.237.0_26", R"({"node":"a"})");
    etcd.put("/cnm/blocks/net/10.213.237.64_26", "");
    etcd.put("/cnm/blocks/net/deeper/x", "{}");
    etcd.put("/cnm/blocks/net/.lock", "{}");
    etcd.put("/cnm/blocks/net/.10.213.237.0_26.held", "{}");
    etcd.put("/cnm/blocks/netx/10.213.238.0_26", "{}"); // a sibling whose name extends "net"
    etcd.put("/cnm/blocks/only/.lock", "{}");

    int posts = etcd.posts;
    auto names = store->list({ "blocks", "net" });
    REQUIRE(names.ok());
    CHECK(etcd.posts - posts == 1);
    std::set<std::string> got(names->begin(), names->end());
    CHECK(got == std::set<std::string> { "10.213.237.0_26", "10.213.237.64_26", "deeper" });
    auto top = store->list({ "blocks" });
    CHECK(std::set<std::string>(top->begin(), top->end()) == std::set<std::string> { "net", "netx" });

    posts = etcd.posts;
    auto scan = store->scan({ "blocks", "net" });
    REQUIRE(scan.ok());
    CHECK(etcd.posts - posts == 1);
    CHECK(scan->at == static_cast<Version>(etcd.revision));
    REQUIRE(scan->docs.size() == 2); // documents directly under the dir only
    std::map<std::string, Loaded> by_name;
    for (auto& d : scan->docs)
        by_name[d.name] = d.doc;
    CHECK(by_name["10.213.237.0_26"].doc["node"] == "a");
    CHECK(by_name["10.213.237.0_26"].version == static_cast<Version>(etcd.kv["/cnm/blocks/net/10.213.237.0_26"].mod));
    CHECK(by_name["10.213.237.64_26"].status == Loaded::Status::Corrupt);

    CHECK_FALSE(*store->empty_dir({ "blocks", "net" }));
    CHECK(*store->empty_dir({ "blocks", "only" })); // only a lock
    CHECK(*store->empty_dir({ "blocks", "none" }));
    CHECK(store->list({ "blocks", "none" })->empty());
    CHECK(store->sync().ok());
    CHECK(store->remove_dir({ "blocks", "none" }).ok());
}

TEST_CASE("etcd store: txn writes several keys all or none; a lost one reports every checked key")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    REQUIRE(store->put({ "a" }, doc(1)).ok());
    Version va = store->get({ "a" })->version;
    auto done = store->txn({ { { "a" }, va }, { { "b" }, 0 } }, { { { "a" }, doc(2) }, { { "b" }, doc(3) }, { { "c" }, std::nullopt } });
    REQUIRE(done.ok());
    CHECK(done->done);
    CHECK(done->version == static_cast<Version>(etcd.revision));
    CHECK(store->get({ "a" })->doc == doc(2));
    CHECK(store->get({ "b" })->doc == doc(3));
    CHECK(store->get({ "a" })->version == done->version);
    CHECK(store->get({ "b" })->version == done->version);

    int64_t rev = etcd.revision;
    auto lost = store->txn({ { { "a" }, va }, { { "b" }, done->version } }, { { { "a" }, doc(9) }, { { "d" }, doc(9) } });
    REQUIRE(lost.ok());
    CHECK_FALSE(lost->done);
    CHECK(lost->current == std::vector<Version> { done->version, done->version });
    CHECK(etcd.revision == rev); // nothing written
    CHECK_FALSE(*store->exists({ "d" }));
    CHECK(store->txn({}, { { { "a" }, doc(1) }, { { "a" }, doc(2) } }).error().code == Code::Internal);
}

TEST_CASE("etcd store: watch a subtree from a scan's position; a compacted start says re-scan")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    REQUIRE(store->put({ "blocks", "net", "x" }, doc(1)).ok());
    auto scan = store->scan({ "blocks", "net" });
    REQUIRE(scan.ok());
    REQUIRE(store->put({ "blocks", "net", "y" }, doc(2)).ok());
    REQUIRE(store->put({ "blocks", "other", "z" }, doc(3)).ok()); // outside the watched dir
    REQUIRE(store->put({ "blocks", "net", "deep", "w" }, doc(4)).ok());
    etcd.put("/cnm/blocks/net/.lock", "{}"); // ours: never reported
    REQUIRE(store->remove({ "blocks", "net", "x" }).ok());

    std::vector<Change> seen;
    Version at = 0;
    auto end = store->watch({ "blocks", "net" }, scan->at + 1, [&](const Changes& c) {
        for (auto& ch : c.changes)
            seen.push_back(ch);
        at = c.at;
        return seen.size() < 3;
    }, {});
    REQUIRE(end.ok());
    CHECK(end->end == Watched::End::Stopped);
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].key == Key { "blocks", "net", "y" });
    CHECK(seen[0].doc.doc == doc(2));
    CHECK(seen[1].key == Key { "blocks", "net", "deep", "w" });
    CHECK(seen[2].key == Key { "blocks", "net", "x" });
    CHECK(seen[2].doc.status == Loaded::Status::Absent);
    CHECK(seen[2].doc.version == static_cast<Version>(etcd.revision));
    CHECK(end->resume == at + 1);

    // History before revision 4 is gone: the watch from the old scan ends Compacted.
    etcd.compacted = 4;
    bool called = false;
    auto compacted = store->watch({ "blocks", "net" }, scan->at + 1, [&](const Changes&) { return called = true; }, {});
    REQUIRE(compacted.ok());
    CHECK(compacted->end == Watched::End::Compacted);
    CHECK(compacted->resume == 5);
    CHECK_FALSE(called);

    // FileStore cannot watch, nor run a multi-key txn: a clear error, not an approximation.
    test::TempDir dir;
    auto files = FileStore::open(dir.path() + "/s");
    REQUIRE(files.ok());
    auto no_watch = (*files)->watch({ "a" }, 0, [](const Changes&) { return true; }, {});
    REQUIRE_FALSE(no_watch.ok());
    CHECK(no_watch.error().msg.find("cannot watch") != std::string::npos);
    CHECK((*files)->txn({}, { { { "a" }, doc(1) } }).error().msg.find("no multi-key") != std::string::npos);
    CHECK_FALSE(*(*files)->exists({ "a" }));
}

TEST_CASE("etcd store: a lock is a key on a lease; a second holder waits and gives up; release revokes")
{
    MemoryEtcd etcd;
    auto a = open_store(etcd, std::chrono::milliseconds(200));
    auto b = open_store(etcd, std::chrono::milliseconds(200));
    auto held = a->lock({ "pools" });
    REQUIRE(held.ok());
    REQUIRE(etcd.kv.count("/cnm/pools/.lock") == 1);
    int64_t lease = etcd.kv["/cnm/pools/.lock"].lease;
    CHECK(lease != 0);
    CHECK(etcd.leases.count(lease) == 1);

    // Re-entry in the same process is free (as FileStore's).
    int posts = etcd.posts;
    auto again = a->lock({ "pools" });
    REQUIRE(again.ok());
    CHECK(etcd.posts == posts);
    again->reset();

    // Another process waits within its timeout, then TryAgainLater, and leaves no lease behind.
    auto start = std::chrono::steady_clock::now();
    auto contended = b->lock({ "pools" });
    auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(contended.ok());
    CHECK(contended.error().code == Code::TryAgainLater);
    CHECK(contended.error().msg.find("/cnm/pools/.lock") != std::string::npos);
    CHECK(waited >= std::chrono::milliseconds(100));
    CHECK(waited < std::chrono::milliseconds(1000));
    CHECK(etcd.leases.size() == 1);
    CHECK(etcd.kv["/cnm/pools/.lock"].lease == lease);

    // Writes under the lock carry the fence; a compare that fails under a live fence is a lost
    // race (with the winner read), not a lost lock. Once released, b gets the lock.
    REQUIRE(a->put({ "pools", "p" }, doc(1)).ok());
    auto stale = a->put_if({ "pools", "p" }, doc(2), 1);
    REQUIRE(stale.ok());
    CHECK_FALSE(stale->done);
    REQUIRE(stale->current);
    CHECK(stale->current->doc == doc(1));
    CHECK(stale->version == a->get({ "pools", "p" })->version);
    auto fenced_txn = a->txn({ { { "pools", "p" }, stale->version } }, { { { "pools", "q" }, doc(3) } });
    REQUIRE(fenced_txn.ok());
    CHECK(fenced_txn->done);
    held->reset();
    CHECK(etcd.kv.count("/cnm/pools/.lock") == 0);
    CHECK(etcd.leases.empty());
    auto taken = b->lock({ "pools" });
    REQUIRE(taken.ok());
    CHECK(etcd.kv.count("/cnm/pools/.lock") == 1);
}

TEST_CASE("etcd store: a holder whose lease expired cannot write under the lock")
{
    MemoryEtcd etcd;
    auto a = open_store(etcd);
    auto held = a->lock({ "pools" });
    REQUIRE(held.ok());
    REQUIRE(a->put({ "pools", "p" }, doc(1)).ok());
    Version v = a->get({ "pools", "p" })->version;
    // Cut off for a TTL: the lease expires, another host takes the lock.
    etcd.expire(etcd.kv["/cnm/pools/.lock"].lease);
    etcd.leases[99] = 10;
    etcd.put("/cnm/pools/.lock", "{}", 99);
    int64_t rev = etcd.revision;
    auto put = a->put({ "pools", "p" }, doc(2));
    REQUIRE_FALSE(put.ok());
    CHECK(put.error().code == Code::TryAgainLater);
    CHECK(put.error().msg.find("lock on /cnm/pools/ was lost") != std::string::npos);
    CHECK_FALSE(a->put_if({ "pools", "p" }, doc(2), v).ok());
    CHECK_FALSE(a->remove({ "pools", "p" }).ok());
    CHECK(etcd.revision == rev);
    CHECK(a->get({ "pools", "p" })->doc == doc(1));
    CHECK(a->txn({}, { { { "pools", "q" }, doc(2) } }).error().code == Code::TryAgainLater);
    // Outside the lock's directory writes are not fenced.
    CHECK(a->put({ "other" }, doc(3)).ok());
    held->reset();
}

TEST_CASE("etcd store: hold and held are a key on a lease")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    Key key { "endpoints", "c1" };
    CHECK_FALSE(*store->held(key));
    auto hold = store->hold(key);
    REQUIRE(hold.ok());
    CHECK(*store->held(key));
    CHECK(etcd.kv.count("/cnm/endpoints/.c1.held") == 1);
    CHECK(store->list({ "endpoints" })->empty());
    CHECK_FALSE(*store->exists(key));
    hold->reset();
    CHECK_FALSE(*store->held(key));
}

TEST_CASE("etcd store: etcd unreachable is TryAgainLater, and nothing is written")
{
    MemoryEtcd etcd;
    auto store = open_store(etcd);
    etcd.down = true;
    CHECK(store->get({ "a" }).error().code == Code::TryAgainLater);
    CHECK(store->put({ "a" }, doc(1)).error().code == Code::TryAgainLater);
    CHECK(store->put_if({ "a" }, doc(1), 0).error().code == Code::TryAgainLater);
    CHECK(store->create({ "a" }, doc(1)).error().code == Code::TryAgainLater);
    CHECK(store->remove_if({ "a" }, 5).error().code == Code::TryAgainLater);
    CHECK(store->scan({}).error().code == Code::TryAgainLater);
    CHECK(store->txn({}, { { { "a" }, doc(1) } }).error().code == Code::TryAgainLater);
    CHECK(store->lock({ "a" }).error().code == Code::TryAgainLater);
    CHECK(store->watch({ "a" }, 0, [](const Changes&) { return true; }, {}).error().code == Code::TryAgainLater);
    etcd.down = false;
    CHECK(etcd.kv.empty());
    CHECK(etcd.leases.empty());
}

TEST_CASE("etcd store: the lock's lease is kept alive while held")
{
    MemoryEtcd etcd;
    Options o;
    o.endpoints = { "http://etcd:1" };
    auto store = EtcdStore::open(o, "/cnm", std::make_unique<Forward>(etcd), 1); // TTL 1 s: renewed every 333 ms
    REQUIRE(store.ok());
    auto held = (*store)->lock({ "x" });
    REQUIRE(held.ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    {
        std::lock_guard g(etcd.mutex);
        CHECK(etcd.keepalives >= 2);
    }
    held->reset();
    CHECK(etcd.revokes == 1);
}

// The claim "callers do not see which backend they hold": the same cluster scenario (a network
// created once, a host record, block claims with a lost race and adoption, exhaustion, release)
// over a FileStore and over an EtcdStore gives the same answers.
TEST_CASE("store backends: one cluster scenario over a FileStore and an EtcdStore")
{
    test::TempDir dir;
    MemoryEtcd etcd;
    auto run = [&](std::function<std::unique_ptr<Store>()> make) {
        std::vector<std::string> trace;
        ClusterConfig ca, cb;
        ca.node = "node-a";
        cb.node = "node-b";
        Cluster a(ca, make()), b(cb, make()); // two hosts on one backend
        auto vtep_a = *IpAddr::parse("10.213.236.1"), vtep_b = *IpAddr::parse("10.213.236.2");
        Mac ma = vtep_mac(vtep_a), mb = vtep_mac(vtep_b);
        IpNet subnet = *IpNet::parse("10.213.237.0/24");
        NetworkFacts facts;
        facts.vni = 42;
        facts.subnet = subnet;
        facts.mtu = 1450;
        auto first = a.ensure_network("net", facts);
        REQUIRE(first.ok());
        NetworkFacts other = facts;
        other.vni = 43;
        auto second = b.ensure_network("net", other); // the loser adopts the winner's
        REQUIRE(second.ok());
        trace.push_back("vni " + std::to_string(second->vni));
        auto claim = [&](Cluster& c, const std::set<IpNet>& cached, const IpAddr& vtep, const Mac& mac) {
            auto got = c.claim("net", subnet, 26, cached, vtep, mac);
            if (!got.ok())
                return "error " + std::to_string(static_cast<int>(got.error().code));
            std::string out = "mine";
            for (auto& m : got->mine)
                out += " " + m.block.str() + "@" + m.node;
            out += " others";
            std::set<std::string> others;
            for (auto& o : got->others)
                others.insert(o.block.str() + "@" + o.node);
            for (auto& o : others)
                out += " " + o;
            return out;
        };
        trace.push_back(claim(a, {}, vtep_a, ma));
        trace.push_back(claim(b, {}, vtep_b, mb));
        // Adoption: a's claim of .0 is not in its cache.
        trace.push_back(claim(a, {}, vtep_a, ma));
        trace.push_back(claim(a, { *IpNet::parse("10.213.237.0/26") }, vtep_a, ma));
        trace.push_back(claim(b, { *IpNet::parse("10.213.237.64/26") }, vtep_b, mb));
        trace.push_back(claim(b, { *IpNet::parse("10.213.237.64/26"), *IpNet::parse("10.213.237.192/26") }, vtep_b, mb));
        auto blocks = a.blocks("net");
        REQUIRE(blocks.ok());
        trace.push_back("blocks " + std::to_string(blocks->size()));
        auto released = b.release_blocks("net", "node-a");
        REQUIRE(released.ok());
        trace.push_back("released " + std::to_string(*released));
        trace.push_back(claim(b, { *IpNet::parse("10.213.237.64/26"), *IpNet::parse("10.213.237.192/26") }, vtep_b, mb));
        return trace;
    };
    auto on_files = run([&]() -> std::unique_ptr<Store> {
        auto s = FileStore::open(dir.path() + "/cluster");
        REQUIRE(s.ok());
        return s.release_value();
    });
    auto on_etcd = run([&]() -> std::unique_ptr<Store> { return open_store(etcd); });
    std::vector<std::string> expected = {
        "vni 42",
        "mine 10.213.237.0/26@node-a others",
        "mine 10.213.237.64/26@node-b others 10.213.237.0/26@node-a",
        "mine 10.213.237.0/26@node-a others 10.213.237.64/26@node-b",
        "mine 10.213.237.128/26@node-a others 10.213.237.64/26@node-b",
        "mine 10.213.237.192/26@node-b others 10.213.237.0/26@node-a 10.213.237.128/26@node-a",
        "error 102",
        "blocks 4",
        "released 2",
        "mine 10.213.237.0/26@node-b others",
    };
    CHECK(on_files == expected);
    CHECK(on_etcd == expected);
    CHECK(etcd.kv.count("/cnm/hosts/node-a") == 1);
    CHECK(etcd.kv.count("/cnm/blocks/net/10.213.237.0_26") == 1);
}
