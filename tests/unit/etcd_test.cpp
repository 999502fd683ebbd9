// The etcd client without a server: the codec against bodies recorded from etcd 3.4.23's
// gateway, and the client's failover, budgets and watch parsing over a scripted transport.

#include "etcd/client.hpp"

#include <doctest/doctest.h>

#include <deque>
#include <thread>

using namespace cnm;
using namespace cnm::etcd;

namespace {

// Recorded from etcd 3.4.23 (Debian 12), `curl -d … http://127.0.0.1:23790/v3/…`.
constexpr const char* header = R"("header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"2","raft_term":"2"})";
const std::string range_one = std::string("{") + header
    + R"(,"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"})";
const std::string range_none = std::string("{") + header + "}";
const std::string txn_lost = std::string("{") + header
    + R"(,"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}}]})";
const std::string txn_won = R"({"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"3"}}}]})";
const std::string bad_base64 = R"({"error":"illegal base64 data at input byte 0","message":"illegal base64 data at input byte 0","code":3})";
const std::string lease_not_found = R"({"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5})";
const std::string compacted_range = R"({"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11})";
const std::string no_leader = R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})";
const std::string keepalive_expired = R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"ID":"12345"}})";
const std::string keepalive_ok = R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"ID":"12345","TTL":"30"}})";
const std::string lease_granted = R"({"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"ID":"2324035737809578508","TTL":"5"})";
const std::string watch_created = R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"4","raft_term":"2"},"created":true}})";
const std::string watch_put = R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"5","raft_term":"2"},"events":[{"kv":{"key":"cC94","create_revision":"5","mod_revision":"5","version":"1","value":"MQ=="}}]}})";
const std::string watch_delete = R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"cC94","mod_revision":"7"},"prev_kv":{"key":"cC94","create_revision":"5","mod_revision":"6","version":"2","value":"Mg=="}}]}})";
const std::string watch_compacted = R"({"result":{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},"canceled":true,"compact_revision":"3"}})";
const std::string watch_error = R"({"error":"illegal base64 data at input byte 0","message":"illegal base64 data at input byte 0","code":2})";

HttpReply ok(std::string body, int status = 200)
{
    return { HttpReply::Outcome::Ok, status, std::move(body), {} };
}
HttpReply failed(HttpReply::Outcome outcome, std::string detail = "Connection")
{
    return { outcome, 0, {}, std::move(detail) };
}

struct Scripted {
    HttpReply reply;
    std::vector<std::string> chunks; // stream(): handed to on_data first
};

/// Answers calls from a script, in order, and records what was asked.
class FakeTransport final : public Transport {
public:
    std::deque<Scripted> script;
    std::vector<HttpRequest> seen;
    std::function<void(const HttpRequest&)> on_post; // e.g. sleep to play a black hole

    HttpReply post(const HttpRequest& request) override
    {
        seen.push_back(request);
        if (on_post)
            on_post(request);
        REQUIRE_FALSE(script.empty());
        auto s = std::move(script.front());
        script.pop_front();
        return s.reply;
    }

    HttpReply stream(const HttpRequest& request, const OnData& on_data, std::stop_token stop) override
    {
        seen.push_back(request);
        REQUIRE_FALSE(script.empty());
        auto s = std::move(script.front());
        script.pop_front();
        for (const auto& c : s.chunks)
            if (stop.stop_requested() || !on_data(c))
                return failed(HttpReply::Outcome::Canceled, "canceled");
        return s.reply;
    }
};

struct Fixture {
    FakeTransport* fake = nullptr;
    std::unique_ptr<Client> client;

    explicit Fixture(std::vector<std::string> endpoints = { "http://e1:1", "http://e2:2" }, std::chrono::milliseconds timeout = std::chrono::milliseconds(2000),
        std::chrono::milliseconds connect = std::chrono::milliseconds(500))
    {
        auto t = std::make_unique<FakeTransport>();
        fake = t.get();
        auto c = Client::create({ std::move(endpoints), timeout, connect }, std::move(t));
        REQUIRE(c.ok());
        client = c.release_value();
    }
    void then(HttpReply r, std::vector<std::string> chunks = {}) { fake->script.push_back({ std::move(r), std::move(chunks) }); }
    Json body(size_t i) const { return Json::parse(fake->seen.at(i).body); }
};

} // namespace

TEST_CASE("etcd codec: base64 both ways, strictly")
{
    std::string all;
    for (int i = 0; i < 256; ++i)
        all += char(i);
    for (size_t n = 0; n <= 7; ++n) {
        auto s = all.substr(250 - n, n);
        auto back = base64_decode(base64_encode(s));
        REQUIRE(back);
        CHECK(*back == s);
    }
    CHECK(base64_encode("a") == "YQ==");
    CHECK(base64_encode("p/x") == "cC94");
    CHECK(base64_decode("YQ==") == std::optional<std::string>("a"));
    CHECK_FALSE(base64_decode("YQ="));    // length
    CHECK_FALSE(base64_decode("!!!!"));   // alphabet
    CHECK_FALSE(base64_decode("YQ==YQ==")); // padding in the middle
    CHECK_FALSE(base64_decode("Y=Q="));   // data after padding
    CHECK_FALSE(base64_decode("cC9 "));   // whitespace
}

TEST_CASE("etcd codec: prefix_end")
{
    CHECK(prefix_end("cnm/hosts/") == "cnm/hosts0");
    CHECK(prefix_end(std::string("a\xff", 2)) == "b");
    CHECK(prefix_end(std::string("\xff\xff", 2)) == std::string(1, '\0'));
    CHECK(prefix_end("") == std::string(1, '\0'));
}

TEST_CASE("etcd codec: int64 fields as strings, numbers or absent")
{
    Json j = { { "s", "9223372036854775807" }, { "n", 42 }, { "bad", "12x" }, { "neg", "-3" }, { "big", 18446744073709551615ull }, { "f", 1.5 } };
    CHECK(json_int64(j, "s", "t").value() == INT64_MAX);
    CHECK(json_int64(j, "n", "t").value() == 42);
    CHECK(json_int64(j, "neg", "t").value() == -3);
    CHECK(json_int64(j, "absent", "t").value() == 0);
    CHECK_FALSE(json_int64(j, "bad", "t").ok());
    CHECK_FALSE(json_int64(j, "big", "t").ok());
    CHECK_FALSE(json_int64(j, "f", "t").ok());
    CHECK(json_int64(j, "bad", "t").error().code == Code::Io);
}

TEST_CASE("etcd codec: ranges with and without kvs")
{
    auto one = decode_range(Json::parse(range_one));
    REQUIRE(one.ok());
    CHECK(one->revision == 2);
    CHECK(one->count == 1);
    REQUIRE(one->kvs.size() == 1);
    CHECK(one->kvs[0] == KeyValue { "a", "1", 2, 2, 1, 0 });

    auto none = decode_range(Json::parse(range_none)); // no kvs, no count: empty, not an error
    REQUIRE(none.ok());
    CHECK(none->kvs.empty());
    CHECK(none->count == 0);
    CHECK(none->revision == 2);

    CHECK_FALSE(decode_range(Json::parse(R"({"kvs":[]})")).ok()); // no header
    CHECK_FALSE(decode_range(Json::parse(std::string("{") + header + R"(,"kvs":[{"key":"!!"}]})")).ok());
}

TEST_CASE("etcd codec: a txn that lost has no succeeded field and carries the winner")
{
    auto t = decode_txn(Json::parse(txn_lost));
    REQUIRE(t.ok());
    CHECK_FALSE(t->succeeded);
    CHECK(t->revision == 2);
    REQUIRE(t->responses.size() == 1);
    CHECK(t->responses[0].kind == Op::Kind::Range);
    REQUIRE(t->responses[0].range.kvs.size() == 1);
    CHECK(t->responses[0].range.kvs[0].value == "1");
    CHECK(t->responses[0].range.revision == 2);

    auto w = decode_txn(Json::parse(txn_won));
    REQUIRE(w.ok());
    CHECK(w->succeeded);
    CHECK(w->revision == 3);
    REQUIRE(w->responses.size() == 1);
    CHECK(w->responses[0].kind == Op::Kind::Put);
}

TEST_CASE("etcd codec: error objects, both shapes")
{
    auto e = gateway_error(Json::parse(bad_base64));
    REQUIRE(e);
    CHECK(e->code == 3);
    CHECK(e->message == "illegal base64 data at input byte 0");
    auto nested = gateway_error(Json::parse(R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}})"));
    REQUIRE(nested);
    CHECK(nested->code == 14);
    CHECK(nested->message == "etcdserver: no leader");
    CHECK_FALSE(gateway_error(Json::parse(range_one)));
    // A lease grant answer has an "error" string field of its own, empty when all is well.
    CHECK_FALSE(gateway_error(Json::parse(R"({"ID":"1","TTL":"5","error":null})")));
}

TEST_CASE("etcd codec: leases")
{
    auto g = decode_lease_grant(Json::parse(lease_granted));
    REQUIRE(g.ok());
    CHECK(g->id == 2324035737809578508);
    CHECK(g->ttl == 5);
    CHECK(decode_keepalive(Json::parse(keepalive_ok)).value() == 30);
    CHECK(decode_keepalive(Json::parse(keepalive_expired)).value() == 0); // TTL omitted: gone
}

TEST_CASE("etcd codec: watch lines")
{
    auto c = decode_watch_line(watch_created);
    REQUIRE(c.ok());
    CHECK(c->created);
    CHECK(c->events.empty());

    auto p = decode_watch_line(watch_put);
    REQUIRE(p.ok());
    REQUIRE(p->events.size() == 1);
    CHECK(p->events[0].type == WatchEvent::Type::Put); // PUT has no "type"
    CHECK(p->events[0].kv.key == "p/x");
    CHECK(p->events[0].kv.value == "1");
    CHECK_FALSE(p->events[0].prev_kv);
    CHECK(p->revision == 5);

    auto d = decode_watch_line(watch_delete);
    REQUIRE(d.ok());
    REQUIRE(d->events.size() == 1);
    CHECK(d->events[0].type == WatchEvent::Type::Delete);
    CHECK(d->events[0].kv.mod_revision == 7);
    CHECK(d->events[0].kv.create_revision == 0);
    REQUIRE(d->events[0].prev_kv);
    CHECK(d->events[0].prev_kv->value == "2");

    auto k = decode_watch_line(watch_compacted);
    REQUIRE(k.ok());
    CHECK(k->canceled);
    CHECK(k->compact_revision == 3);

    auto e = decode_watch_line(watch_error);
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().msg.find("illegal base64") != std::string::npos);
    CHECK(e.error().code == Code::Io);
    // etcd going away mid-watch (SIGTERM): the gateway's Canceled, like Unavailable, is a retry;
    // so are the other codes that pass with time, as for a unary call.
    for (int code : { 1, 4, 8, 14 }) {
        auto gone = decode_watch_line(R"({"error":"grpc: the client connection is closing","code":)" + std::to_string(code) + "}");
        REQUIRE_FALSE(gone.ok());
        CHECK(gone.error().code == Code::TryAgainLater);
    }
    for (int code : { 2, 3, 5, 7, 9, 11, 13 }) {
        auto refused = decode_watch_line(R"({"error":"x","code":)" + std::to_string(code) + "}");
        REQUIRE_FALSE(refused.ok());
        CHECK(refused.error().code == Code::Io);
    }
    CHECK_FALSE(decode_watch_line("{\"result\":").ok());
    CHECK_FALSE(decode_watch_line(R"({"result":{"events":[{"type":"BOGUS","kv":{}}]}})").ok());
}

TEST_CASE("etcd codec: request bodies")
{
    Json t = encode_txn({ Compare::version("k", Compare::Op::Equal, 0) }, { Op::put("k", "v", 7) }, { Op::get("k") });
    CHECK(t["compare"][0] == Json::parse(R"({"key":"aw==","target":"VERSION","result":"EQUAL","version":"0"})"));
    CHECK(t["success"][0] == Json::parse(R"({"request_put":{"key":"aw==","value":"dg==","lease":"7"}})"));
    CHECK(t["failure"][0] == Json::parse(R"({"request_range":{"key":"aw=="}})"));
    Json m = encode_compare(Compare::mod_revision("k", Compare::Op::Less, 12));
    CHECK(m["target"] == "MOD");
    CHECK(m["result"] == "LESS");
    CHECK(m["mod_revision"] == "12");
    Json d = encode_op(Op::del_prefix("a/"));
    CHECK(d == Json::parse(R"({"request_delete_range":{"key":"YS8=","range_end":"YTA="}})"));
    Json w = encode_watch_create("p/", "p0", 5, true);
    CHECK(w == Json::parse(R"({"create_request":{"key":"cC8=","range_end":"cDA=","start_revision":"5","prev_kv":true}})"));
    CHECK(encode_put("k", "", 0) == Json::parse(R"({"key":"aw==","value":""})"));
}

TEST_CASE("etcd client: endpoints are checked")
{
    auto bad = [](std::vector<std::string> eps) { return Client::create({ std::move(eps) }, std::make_unique<FakeTransport>()); };
    CHECK(bad({}).error().code == Code::InvalidConfig);
    CHECK(bad({ "https://a:1" }).error().msg.find("only http://") != std::string::npos);
    CHECK(bad({ "unix://a" }).error().code == Code::InvalidConfig);
    CHECK(bad({ "http://a" }).error().code == Code::InvalidConfig);
    CHECK(bad({ "http://a:99999" }).error().code == Code::InvalidConfig);
    CHECK(bad({ "http://a:1/v3" }).error().code == Code::InvalidConfig);
    auto good = bad({ "127.0.0.1:2379", "http://h:2/" });
    REQUIRE(good.ok());
    CHECK((*good)->current_endpoint() == "http://127.0.0.1:2379");
    CHECK(split_endpoints("http://a:1, b:2,,c:3\n") == std::vector<std::string> { "http://a:1", "b:2", "c:3" });
}

TEST_CASE("etcd client: get, absent and present")
{
    Fixture f;
    f.then(ok(range_none));
    f.then(ok(range_one));
    auto absent = f.client->get("a");
    REQUIRE(absent.ok());
    CHECK_FALSE(absent->has_value());
    auto present = f.client->get("a");
    REQUIRE(present.ok());
    REQUIRE(present->has_value());
    CHECK((*present)->value == "1");
    CHECK((*present)->mod_revision == 2);
    CHECK(f.fake->seen[0].path == "/v3/kv/range");
    CHECK(f.body(0) == Json::parse(R"({"key":"YQ=="})"));
}

TEST_CASE("etcd client: fails over on a connection failure and remembers the endpoint that worked")
{
    Fixture f({ "http://e1:1", "http://e2:2", "http://e3:3" });
    f.then(failed(HttpReply::Outcome::NotSent, "Connection refused"));
    f.then(ok(range_one));
    f.then(ok(range_one));
    REQUIRE(f.client->get("a").ok());
    CHECK(f.fake->seen[0].endpoint == "http://e1:1");
    CHECK(f.fake->seen[1].endpoint == "http://e2:2");
    CHECK(f.client->current_endpoint() == "http://e2:2");
    REQUIRE(f.client->get("a").ok());
    CHECK(f.fake->seen[2].endpoint == "http://e2:2"); // not e1 again
    // Every attempt shares one deadline; connect is bounded per attempt.
    CHECK(f.fake->seen[0].deadline == f.fake->seen[1].deadline);
    CHECK(f.fake->seen[0].connect_timeout <= std::chrono::milliseconds(500));
}

TEST_CASE("etcd client: unreachable is TryAgainLater naming every endpoint")
{
    Fixture f;
    f.then(failed(HttpReply::Outcome::NotSent, "Connection refused"));
    f.then(failed(HttpReply::Outcome::NotSent, "Connection timed out"));
    auto r = f.client->put("k", "v");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::TryAgainLater);
    CHECK(int(r.error().code) == 11);
    CHECK(r.error().msg == "etcd is unreachable at http://e1:1, http://e2:2");
    CHECK(r.error().details == "http://e1:1: Connection refused; http://e2:2: Connection timed out");
}

TEST_CASE("etcd client: the budget is shared by every endpoint tried")
{
    using namespace std::chrono;
    // Three black holes: each connect takes all it is allowed.
    Fixture f({ "http://e1:1", "http://e2:2", "http://e3:3" }, milliseconds(300), milliseconds(200));
    f.fake->on_post = [](const HttpRequest& r) { std::this_thread::sleep_for(std::min<Clock::duration>(r.connect_timeout, r.deadline - Clock::now())); };
    for (int i = 0; i < 3; ++i)
        f.then(failed(HttpReply::Outcome::NotSent, "Connection timed out"));
    auto start = Clock::now();
    auto r = f.client->get("a");
    auto took = Clock::now() - start;
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::TryAgainLater);
    CHECK(took >= milliseconds(290));
    CHECK(took < milliseconds(400));
    CHECK(f.fake->seen.size() == 2);
    CHECK(f.fake->seen[1].connect_timeout <= milliseconds(100));
    CHECK(r.error().msg.find("tried 2 of 3 within 300 ms") != std::string::npos);
}

TEST_CASE("etcd client: a write that timed out or broke is not retried elsewhere")
{
    Fixture f;
    f.then(failed(HttpReply::Outcome::Timeout, "no answer in time"));
    auto r = f.client->create("k", "v");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::TryAgainLater);
    CHECK(r.error().msg.find("may or may not have been applied") != std::string::npos);
    CHECK(r.error().msg.find("http://e1:1") != std::string::npos);
    CHECK(f.fake->seen.size() == 1);

    f.then(failed(HttpReply::Outcome::Broken, "Read"));
    auto b = f.client->put("k", "v");
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().code == Code::TryAgainLater);
    CHECK(f.fake->seen.size() == 2);
}

TEST_CASE("etcd client: a read retries elsewhere on a broken connection or an unavailable member")
{
    Fixture f({ "http://e1:1", "http://e2:2", "http://e3:3" });
    f.then(failed(HttpReply::Outcome::Broken, "Read"));
    f.then(ok(no_leader, 503));
    f.then(ok(range_one));
    auto r = f.client->range_prefix("a");
    REQUIRE(r.ok());
    CHECK(r->kvs.size() == 1);
    CHECK(f.client->current_endpoint() == "http://e3:3");
    CHECK(f.body(0) == Json::parse(R"({"key":"YQ==","range_end":"Yg=="})"));

    // A write answered "no leader" is etcd's refusal: it comes back, with no second try.
    f.then(ok(no_leader, 503));
    auto w = f.client->put("k", "v");
    REQUIRE_FALSE(w.ok());
    CHECK(w.error().code == Code::TryAgainLater);
    CHECK(grpc_code(w.error()) == 14);
    CHECK(f.fake->seen.size() == 4);
}

TEST_CASE("etcd client: etcd's refusals carry its message and code")
{
    Fixture f;
    f.then(ok(bad_base64, 400));
    auto r = f.client->put("k", "v");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::Io);
    CHECK(r.error().msg == "etcd at http://e1:1 refused /v3/kv/put: illegal base64 data at input byte 0");
    CHECK(grpc_code(r.error()) == 3);

    f.then(ok(compacted_range, 400));
    auto c = f.client->range("a", "", 2);
    REQUIRE_FALSE(c.ok());
    CHECK(grpc_code(c.error()) == 11);
    CHECK(f.body(1)["revision"] == "2");

    f.then(ok("<html>bad gateway</html>", 502));
    auto h = f.client->get("a");
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().msg == "etcd at http://e1:1 answered /v3/kv/range with HTTP 502");
    CHECK_FALSE(grpc_code(h.error()));

    f.then(ok("{\"header\":", 200));
    CHECK(f.client->get("a").error().code == Code::Io);

    // The codes that pass with time are TryAgainLater, as for a watch; Canceled included (the
    // gateway's connection to etcd closing, as etcd stops). A write that ended Canceled or
    // DeadlineExceeded may have gone through, and says so.
    size_t seen = f.fake->seen.size();
    for (int code : { 1, 4, 8, 14 }) {
        f.then(ok(R"({"error":"x","message":"x","code":)" + std::to_string(code) + "}", 503));
        auto t = f.client->put("k", "v");
        REQUIRE_FALSE(t.ok());
        CHECK(t.error().code == Code::TryAgainLater);
        CHECK(grpc_code(t.error()) == code);
        bool unsettled = t.error().msg.find("may or may not have been applied") != std::string::npos;
        CHECK(unsettled == (code == 1 || code == 4));
    }
    CHECK(f.fake->seen.size() == seen + 4); // a write is never sent twice
}

TEST_CASE("etcd client: a read answered with a code that passes goes to the next member")
{
    for (int code : { 1, 4, 8 }) {
        Fixture f({ "http://e1:1", "http://e2:2" });
        f.then(ok(R"({"error":"grpc: the client connection is closing","message":"x","code":)" + std::to_string(code) + "}", 503));
        f.then(ok(range_one));
        auto r = f.client->range_prefix("a");
        REQUIRE(r.ok());
        CHECK(r->kvs.size() == 1);
        CHECK(f.client->current_endpoint() == "http://e2:2");
    }
}

TEST_CASE("etcd client: compare-and-swap helpers")
{
    Fixture f;
    f.then(ok(txn_won));
    auto won = f.client->create("k", "v", 9);
    REQUIRE(won.ok());
    CHECK(won->succeeded);
    CHECK(won->revision == 3);
    CHECK_FALSE(won->current);
    CHECK(f.fake->seen[0].path == "/v3/kv/txn");
    CHECK(f.body(0)["compare"][0]["version"] == "0");
    CHECK(f.body(0)["success"][0]["request_put"]["lease"] == "9");

    f.then(ok(txn_lost));
    auto lost = f.client->create("a", "2");
    REQUIRE(lost.ok());
    CHECK_FALSE(lost->succeeded);
    REQUIRE(lost->current);
    CHECK(lost->current->value == "1"); // the winner's value, same round trip
    CHECK(f.fake->seen.size() == 2);

    f.then(ok(txn_lost));
    auto cas = f.client->put_if_mod_revision("a", "3", 1);
    REQUIRE(cas.ok());
    CHECK_FALSE(cas->succeeded);
    CHECK(cas->current->mod_revision == 2);
    CHECK(f.body(2)["compare"][0] == Json::parse(R"({"key":"YQ==","target":"MOD","result":"EQUAL","mod_revision":"1"})"));

    f.then(ok(R"({"header":{"revision":"4"},"succeeded":true,"responses":[{"response_delete_range":{"header":{"revision":"4"},"deleted":"1"}}]})"));
    auto del = f.client->delete_if_mod_revision("a", 2);
    REQUIRE(del.ok());
    CHECK(del->succeeded);
    CHECK(f.body(3)["success"][0].contains("request_delete_range"));
}

TEST_CASE("etcd client: leases")
{
    Fixture f;
    f.then(ok(lease_granted));
    auto g = f.client->lease_grant(5);
    REQUIRE(g.ok());
    CHECK(g->id == 2324035737809578508);
    CHECK(f.body(0) == Json::parse(R"({"TTL":"5"})"));
    CHECK(f.client->lease_grant(0).error().code == Code::InvalidConfig);

    f.then(ok(keepalive_expired));
    CHECK(f.client->lease_keepalive(12345).value() == 0);
    CHECK(f.body(1) == Json::parse(R"({"ID":"12345"})"));

    f.then(ok(lease_not_found, 404)); // revoking what is gone is fine
    CHECK(f.client->lease_revoke(12345).ok());
    f.then(ok(bad_base64, 400));
    CHECK_FALSE(f.client->lease_revoke(1).ok());
}

TEST_CASE("etcd client: watch delivers events split across chunks, in order")
{
    Fixture f;
    std::string all = watch_created + "\n" + watch_put + "\n" + watch_delete + "\n";
    // Cut the stream mid-line, mid-escape, anywhere.
    std::vector<std::string> chunks;
    for (size_t i = 0; i < all.size(); i += 37)
        chunks.push_back(all.substr(i, 37));
    f.then(failed(HttpReply::Outcome::Canceled, "stopped"), chunks);
    std::vector<WatchEvent> events;
    std::stop_source stop;
    auto r = f.client->watch("p/", 5, [&](const WatchMessage& m) {
        events.insert(events.end(), m.events.begin(), m.events.end());
        return events.size() < 2;
    }, stop.get_token());
    REQUIRE(r.ok());
    CHECK(r->reason == WatchEnd::Reason::Stopped);
    CHECK(r->last_revision == 7);
    REQUIRE(events.size() == 2);
    CHECK(events[0].kv.value == "1");
    CHECK(events[1].type == WatchEvent::Type::Delete);
    CHECK(f.fake->seen[0].path == "/v3/watch");
    Json req = f.body(0)["create_request"];
    CHECK(req["key"] == "cC8=");
    CHECK(req["range_end"] == "cDA=");
    CHECK(req["start_revision"] == "5");
}

TEST_CASE("etcd client: watch from a compacted revision says so")
{
    Fixture f;
    f.then(failed(HttpReply::Outcome::Canceled, "stopped"), { watch_created + "\n" + watch_compacted + "\n" });
    std::stop_source stop;
    int calls = 0;
    auto r = f.client->watch("p/", 1, [&](const WatchMessage&) { return ++calls > 0; }, stop.get_token());
    REQUIRE(r.ok());
    CHECK(r->reason == WatchEnd::Reason::Compacted);
    CHECK(r->compact_revision == 3);
    CHECK(calls == 0);
}

TEST_CASE("etcd client: a broken watch stream is an error, not an end")
{
    Fixture f;
    f.then(failed(HttpReply::Outcome::Broken, "Read"), { watch_created + "\n" + watch_put + "\n" });
    std::stop_source stop;
    auto r = f.client->watch("p/", 0, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::TryAgainLater);
    CHECK(r.error().msg.find("broke after revision 5") != std::string::npos);
    CHECK(f.fake->seen.size() == 1); // events were seen: the caller re-lists, we do not hide it

    // A stream etcd closes cleanly is broken too: a watch never ends by itself.
    f.then(failed(HttpReply::Outcome::Broken, "etcd closed the stream"), { watch_created + "\n" });
    CHECK(f.client->watch("p/", 0, [](const WatchMessage&) { return true; }, stop.get_token()).error().code == Code::TryAgainLater);
}

TEST_CASE("etcd client: watch errors and failover")
{
    Fixture f;
    // An error object without a final newline, at HTTP 500.
    f.then({ HttpReply::Outcome::Ok, 500, {}, {} }, { watch_error });
    std::stop_source stop;
    auto e = f.client->watch("p/", 0, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().msg.find("illegal base64") != std::string::npos);
    CHECK(e.error().code == Code::Io);
    // etcd stopped mid-watch (SIGTERM): the gateway may first send its own Canceled, "the client
    // connection is closing". Like Unavailable, that is a broken stream, to list again after.
    f.then({ HttpReply::Outcome::Ok, 200, {}, {} },
        { watch_created + "\n" + R"({"error":{"grpc_code":1,"http_code":408,"message":"grpc: the client connection is closing","http_status":"Request Timeout"}})" + "\n" });
    auto gone = f.client->watch("p/", 0, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().code == Code::TryAgainLater);
    CHECK(gone.error().msg.find("broke after revision") != std::string::npos);
    CHECK(gone.error().details.find("gRPC code 1 (Canceled)") != std::string::npos);

    // First endpoint refuses the connection: the watch opens on the second.
    f.then(failed(HttpReply::Outcome::NotSent, "Connection refused"));
    f.then(failed(HttpReply::Outcome::Canceled, "stopped"), { watch_created + "\n" + watch_compacted + "\n" });
    auto w = f.client->watch("p/", 1, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE(w.ok());
    CHECK(w->reason == WatchEnd::Reason::Compacted);
    CHECK(f.fake->seen.back().endpoint == "http://e2:2");
    CHECK(f.client->current_endpoint() == "http://e2:2");

    // A stop requested before the call returns at once.
    stop.request_stop();
    size_t before = f.fake->seen.size();
    auto s = f.client->watch("p/", 0, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE(s.ok());
    CHECK(s->reason == WatchEnd::Reason::Stopped);
    CHECK(f.fake->seen.size() == before);
}
