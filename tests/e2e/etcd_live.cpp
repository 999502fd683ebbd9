// The etcd client against a real etcd (Debian's etcd-server), started on loopback by
// tests/e2e/etcd-client.sh, which passes ETCD_ENDPOINT, ETCD_DEAD (a port nothing listens on)
// and ETCD_PID (so the timeout case can SIGSTOP it).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "etcd/client.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>
#include <unistd.h>

using namespace cnm;
using namespace cnm::etcd;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

std::string env(const char* name)
{
    const char* v = std::getenv(name);
    REQUIRE_MESSAGE(v, name << " is not set (run tests/e2e/etcd-client.sh)");
    return v;
}

/// A key prefix of its own per test case and run.
std::string prefix(const std::string& name)
{
    return "/cnm-live/" + std::to_string(::getpid()) + "/" + name + "/";
}

std::unique_ptr<Client> client(std::vector<std::string> endpoints = {}, milliseconds timeout = 2000ms, milliseconds connect = 500ms)
{
    if (endpoints.empty())
        endpoints = { env("ETCD_ENDPOINT") };
    auto c = Client::create({ std::move(endpoints), timeout, connect });
    REQUIRE(c.ok());
    return c.release_value();
}

/// True when every thread of `pid` is stopped (state T in /proc/<pid>/task/*/stat).
bool all_threads_stopped(pid_t pid)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream in(task.path() / "stat");
        std::string line;
        std::getline(in, line);
        auto paren = line.rfind(')'); // the name may hold spaces; the state follows ") "
        if (paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] != 'T')
            return false;
    }
    return !ec;
}

/// SIGSTOPs etcd for its lifetime; SIGCONT also when an assertion throws. kill() returns before
/// the stop takes effect (a thread running on the other core finishes what it is doing), so
/// wait until every thread is stopped, or a request sent right after may still be served.
class Frozen {
public:
    Frozen() : m_pid(std::stoi(env("ETCD_PID")))
    {
        REQUIRE(::kill(m_pid, SIGSTOP) == 0);
        for (int i = 0; i < 200 && !all_threads_stopped(m_pid); ++i)
            std::this_thread::sleep_for(5ms);
        REQUIRE(all_threads_stopped(m_pid));
    }
    ~Frozen() { ::kill(m_pid, SIGCONT); }

private:
    pid_t m_pid;
};

template<typename F>
milliseconds timed(F&& f)
{
    auto start = steady_clock::now();
    f();
    return duration_cast<milliseconds>(steady_clock::now() - start);
}

} // namespace

TEST_CASE("live: create-if-absent twice, the second loses and sees the winner")
{
    auto c = client();
    auto key = prefix("create") + "block-10.213.1.0";
    auto first = c->create(key, "host-a");
    REQUIRE(first.ok());
    CHECK(first->succeeded);
    auto second = c->create(key, "host-b");
    REQUIRE(second.ok());
    CHECK_FALSE(second->succeeded);
    REQUIRE(second->current);
    CHECK(second->current->value == "host-a");
    CHECK(second->current->mod_revision == first->revision);
    auto now = c->get(key);
    REQUIRE(now.ok());
    REQUIRE(now->has_value());
    CHECK((*now)->value == "host-a");
    CHECK((*now)->version == 1);
}

TEST_CASE("live: one client, many threads racing for one key: exactly one wins")
{
    auto c = client();
    auto key = prefix("race") + "block";
    std::atomic<int> wins { 0 }, losses { 0 }, errors { 0 };
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i)
        threads.emplace_back([&, i] {
            auto r = c->create(key, "host-" + std::to_string(i));
            if (!r.ok())
                ++errors;
            else if (r->succeeded)
                ++wins;
            else if (r->current && r->current->value.rfind("host-", 0) == 0)
                ++losses;
        });
    for (auto& t : threads)
        t.join();
    CHECK(wins == 1);
    CHECK(losses == 7);
    CHECK(errors == 0);
    CHECK(c->get(key)->value().version == 1);
}

TEST_CASE("live: compare-and-swap on mod_revision")
{
    auto c = client();
    auto key = prefix("cas") + "k";
    auto rev = c->put(key, "v1");
    REQUIRE(rev.ok());
    auto stale = c->put_if_mod_revision(key, "v2", *rev - 1);
    REQUIRE(stale.ok());
    CHECK_FALSE(stale->succeeded);
    CHECK(stale->current->value == "v1");
    auto fresh = c->put_if_mod_revision(key, "v2", *rev);
    REQUIRE(fresh.ok());
    CHECK(fresh->succeeded);
    auto stale_del = c->delete_if_mod_revision(key, *rev);
    REQUIRE(stale_del.ok());
    CHECK_FALSE(stale_del->succeeded);
    CHECK(stale_del->current->value == "v2");
    auto del = c->delete_if_mod_revision(key, fresh->revision);
    REQUIRE(del.ok());
    CHECK(del->succeeded);
    CHECK_FALSE(c->get(key)->has_value());
    // mod_revision 0 means "absent": the same call creates.
    auto again = c->put_if_mod_revision(key, "v3", 0);
    REQUIRE(again.ok());
    CHECK(again->succeeded);

    // Binary keys and values survive base64 both ways; ranges see only their prefix.
    std::string bin("\0\xff\n\"x", 5);
    REQUIRE(c->put(prefix("cas") + bin, bin).ok());
    REQUIRE(c->put(prefix("cas0") + "outside", "no").ok());
    auto all = c->range_prefix(prefix("cas"));
    REQUIRE(all.ok());
    REQUIRE(all->kvs.size() == 2);
    CHECK(all->kvs[0].key == prefix("cas") + bin); // key order: \0 sorts first
    CHECK(all->kvs[0].value == bin);
    CHECK(all->count == 2);
    CHECK(all->revision >= again->revision);
    CHECK(c->del_prefix(prefix("cas")).value() == 2);
    CHECK(c->range_prefix(prefix("cas"))->kvs.empty());
}

TEST_CASE("live: a general txn runs one branch")
{
    auto c = client();
    auto p = prefix("txn");
    auto t = c->txn({ Compare::version(p + "a", Compare::Op::Equal, 0), Compare::version(p + "b", Compare::Op::Equal, 0) },
        { Op::put(p + "a", "1"), Op::put(p + "b", "2"), Op::get_prefix(p) }, { Op::get_prefix(p) });
    REQUIRE(t.ok());
    CHECK(t->succeeded);
    REQUIRE(t->responses.size() == 3);
    CHECK(t->responses[2].range.kvs.size() == 2);
    auto t2 = c->txn({ Compare::value_is(p + "a", Compare::Op::Equal, "nope") }, { Op::del_prefix(p) }, { Op::get(p + "b") });
    REQUIRE(t2.ok());
    CHECK_FALSE(t2->succeeded);
    REQUIRE(t2->responses.size() == 1);
    CHECK(t2->responses[0].range.kvs.at(0).value == "2");
}

TEST_CASE("live: a lease's keys go when it is revoked")
{
    auto c = client();
    auto key = prefix("lease") + "host-a";
    auto lease = c->lease_grant(30);
    REQUIRE(lease.ok());
    CHECK(lease->ttl == 30);
    auto made = c->create(key, "alive", lease->id);
    REQUIRE(made.ok());
    CHECK(made->succeeded);
    auto kv = c->get(key);
    REQUIRE(kv.ok());
    REQUIRE(kv->has_value());
    CHECK((*kv)->lease == lease->id);
    auto ttl = c->lease_keepalive(lease->id);
    REQUIRE(ttl.ok());
    CHECK(*ttl > 0);
    CHECK(*ttl <= 30);
    REQUIRE(c->lease_revoke(lease->id).ok());
    CHECK_FALSE(c->get(key)->has_value());
    CHECK(c->lease_keepalive(lease->id).value() == 0); // gone: TTL omitted
    CHECK(c->lease_revoke(lease->id).ok());            // twice is fine
    auto bad = c->put(key, "x", lease->id);            // a dead lease is etcd's refusal
    REQUIRE_FALSE(bad.ok());
    CHECK(grpc_code(bad.error()) == 5);
}

TEST_CASE("live: a watch sees a put, and a stop ends an idle watch at once")
{
    auto c = client();
    auto p = prefix("watch");
    auto listed = c->range_prefix(p);
    REQUIRE(listed.ok());
    std::stop_source stop;
    std::promise<WatchEvent> seen;
    auto watcher = std::async(std::launch::async, [&] {
        return c->watch(p, listed->revision + 1, [&](const WatchMessage& m) {
            seen.set_value(m.events.at(0));
            return false;
        }, stop.get_token(), { true, 0ms });
    });
    std::this_thread::sleep_for(50ms); // not needed for correctness: the watch starts at a revision
    auto rev = c->put(p + "host-b", "10.213.208.2");
    REQUIRE(rev.ok());
    auto f = seen.get_future();
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    auto ev = f.get();
    CHECK(ev.type == WatchEvent::Type::Put);
    CHECK(ev.kv.key == p + "host-b");
    CHECK(ev.kv.value == "10.213.208.2");
    CHECK(ev.kv.mod_revision == *rev);
    auto end = watcher.get();
    REQUIRE(end.ok());
    CHECK(end->reason == WatchEnd::Reason::Stopped);
    CHECK(end->last_revision == *rev);

    // Idle watch, then a stop from another thread: it returns promptly.
    auto idle = std::async(std::launch::async, [&] { return c->watch(p + "nothing/", 0, [](const WatchMessage&) { return true; }, stop.get_token()); });
    std::this_thread::sleep_for(200ms);
    auto took = timed([&] {
        stop.request_stop();
        REQUIRE(idle.wait_for(2s) == std::future_status::ready);
    });
    auto r = idle.get();
    REQUIRE(r.ok());
    CHECK(r->reason == WatchEnd::Reason::Stopped);
    CHECK(took < 500ms);
}

TEST_CASE("live: a watch from a compacted revision reports compaction")
{
    auto c = client();
    auto p = prefix("compact");
    auto first = c->put(p + "k", "1");
    REQUIRE(first.ok());
    auto last = c->put(p + "k", "2");
    REQUIRE(last.ok());
    REQUIRE(c->compact(*last).ok());
    std::stop_source stop;
    auto r = c->watch(p, *first, [](const WatchMessage&) { return true; }, stop.get_token());
    REQUIRE(r.ok());
    CHECK(r->reason == WatchEnd::Reason::Compacted);
    CHECK(r->compact_revision == *last);
    auto old = c->range(p + "k", "", *first);
    REQUIRE_FALSE(old.ok());
    CHECK(grpc_code(old.error()) == 11);
    // The re-list the caller then does works, and a watch from its revision is live.
    auto relist = c->range_prefix(p);
    REQUIRE(relist.ok());
    CHECK(relist->kvs.at(0).value == "2");
}

TEST_CASE("live: the first endpoint dead, the second answers; unreachable names both")
{
    auto dead = env("ETCD_DEAD"), live = env("ETCD_ENDPOINT");
    auto c = client({ dead, live });
    auto r = c->put(prefix("failover") + "k", "v");
    REQUIRE(r.ok());
    CHECK(c->current_endpoint() == live);
    auto took = timed([&] { REQUIRE(c->get(prefix("failover") + "k").ok()); });
    CHECK(took < 250ms);
    std::stop_source stop;
    auto w = client({ dead, live })->watch(prefix("failover"), *r, [](const WatchMessage&) { return false; }, stop.get_token());
    REQUIRE(w.ok());

    auto none = client({ dead, dead + "/" });
    auto e = none->get("k");
    REQUIRE_FALSE(e.ok());
    CHECK(e.error().code == Code::TryAgainLater);
    CHECK(e.error().msg == "etcd is unreachable at " + dead + ", " + dead);
}

TEST_CASE("live: a SIGSTOPped etcd costs one timeout, no more")
{
    auto warm = client({ env("ETCD_ENDPOINT") }, 300ms, 200ms);
    REQUIRE(warm->get("k").ok()); // a pooled keep-alive connection, reused below
    {
        Frozen frozen;
        Result<std::optional<KeyValue>> got = std::optional<KeyValue>();
        auto took = timed([&] { got = warm->get("k"); });
        REQUIRE_FALSE(got.ok());
        CHECK(got.error().code == Code::TryAgainLater);
        CHECK(took >= 280ms);
        CHECK(took < 600ms);

        // A fresh connection: the kernel still accepts it, then nothing answers.
        auto fresh = client({ env("ETCD_ENDPOINT") }, 300ms, 200ms);
        Result<int64_t> put = int64_t(0);
        took = timed([&] { put = fresh->put(prefix("frozen") + "k", "v"); });
        REQUIRE_FALSE(put.ok());
        CHECK(put.error().code == Code::TryAgainLater);
        CHECK(put.error().msg.find("may or may not have been applied") != std::string::npos);
        CHECK(took < 600ms);

        // A watch on a frozen etcd with an idle limit is reported broken, within that limit.
        std::stop_source stop;
        Result<WatchEnd> w = WatchEnd {};
        took = timed([&] { w = fresh->watch(prefix("frozen"), 0, [](const WatchMessage&) { return true; }, stop.get_token(), { false, 300ms }); });
        REQUIRE_FALSE(w.ok());
        CHECK(w.error().code == Code::TryAgainLater);
        CHECK(took < 1000ms);
    }
    // Thawed: the same client works again.
    Result<std::optional<KeyValue>> again = std::optional<KeyValue>();
    for (int i = 0; i < 20 && !(again = warm->get("k")).ok(); ++i)
        std::this_thread::sleep_for(50ms);
    CHECK(again.ok());
}

// Run last and alone (the script does): it ends etcd.
TEST_CASE("live-exit: a watch whose etcd goes away reports a broken stream" * doctest::skip(std::getenv("ETCD_EXIT_CASE") == nullptr))
{
    auto c = client();
    auto p = prefix("exit");
    auto listed = c->range_prefix(p);
    REQUIRE(listed.ok());
    std::stop_source stop;
    std::promise<void> created;
    auto watcher = std::async(std::launch::async, [&] {
        return c->watch(p, listed->revision + 1, [&](const WatchMessage&) {
            created.set_value();
            return true;
        }, stop.get_token());
    });
    REQUIRE(c->put(p + "k", "v").ok());
    REQUIRE(created.get_future().wait_for(5s) == std::future_status::ready);
    REQUIRE(::kill(std::stoi(env("ETCD_PID")), SIGTERM) == 0);
    REQUIRE(watcher.wait_for(5s) == std::future_status::ready);
    auto r = watcher.get();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::TryAgainLater);
    CHECK(r.error().msg.find("broke after revision") != std::string::npos);
    MESSAGE(r.error().msg << " / " << r.error().details);
}

TEST_CASE("live: a server that drips its answer is cut off at the deadline")
{
    // Not etcd: a loopback listener that answers one byte every 20 ms, headers included, so
    // every single read succeeds and only a total deadline can end the call (about 5 s else).
    int port = std::stoi(env("ETCD_DRIP_PORT"));
    int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(ls >= 0);
    int on = 1;
    ::setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(ls, 4) == 0);
    std::atomic<bool> done { false };
    std::thread server([&] {
        int fd = ::accept(ls, nullptr, nullptr);
        if (fd < 0)
            return;
        char buf[4096];
        (void)::recv(fd, buf, sizeof buf, 0);
        std::string body = R"({"header":{"revision":"1"}})";
        std::string reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
        for (char ch : reply) {
            if (done || ::send(fd, &ch, 1, MSG_NOSIGNAL) != 1)
                break;
            std::this_thread::sleep_for(20ms);
        }
        ::close(fd);
    });
    auto c = client({ "http://127.0.0.1:" + std::to_string(port) }, 300ms, 200ms);
    Result<std::optional<KeyValue>> got = std::optional<KeyValue>();
    auto took = timed([&] { got = c->get("k"); });
    done = true;
    ::shutdown(ls, SHUT_RDWR);
    server.join();
    ::close(ls);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().code == Code::TryAgainLater);
    CHECK(took >= 280ms);
    CHECK(took < 600ms);
}
