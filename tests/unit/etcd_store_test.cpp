// EtcdStore without a server: the Store interface over etcd's kv, lease and watch API kept in
// memory behind the client's Transport seam, answering in the gateway's recorded JSON (int64 as
// strings, zero fields omitted: see etcd_test.cpp). Versions and compare-and-swap, lost races,
// scan, txn, watch (with a compacted start), locks (contention, fencing, re-entry), etcd down;
// and one cluster scenario run over a FileStore and an EtcdStore alike.

#include "cnm/cluster.hpp"
#include "etcd/codec.hpp"
#include "helpers.hpp"
#include "memory_etcd.hpp"
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

using test::Forward;
using test::MemoryEtcd;

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
