#pragma once
// etcd in memory behind the etcd client's Transport seam, answering in the gateway's recorded JSON
// (int64 as strings, zero fields omitted: see etcd_test.cpp), for the tests of EtcdStore
// (etcd_store_test.cpp) and of the cluster IPAM (vxlan_test.cpp).

#include "etcd/codec.hpp"
#include "etcd/transport.hpp"
#include "util/json.hpp"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace cnm::test {

using etcd::base64_decode;
using etcd::base64_encode;
using etcd::HttpReply;
using etcd::HttpRequest;
using etcd::OnData;
using etcd::Transport;

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
    std::string before_txn_on;        // …whose first compare's key contains this (empty: any txn)

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
        auto compares = body.value("compare", Json::array());
        bool hooked = before_txn_on.empty() || (!compares.empty() && key_of(compares[0]).find(before_txn_on) != std::string::npos);
        if (before_txn && hooked) {
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

} // namespace cnm::test
