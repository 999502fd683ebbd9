// The cpp-httplib transport. Two things httplib does not do by itself:
//  * a total deadline. Its timeouts are per connect and per read, so a server that accepts and
//    then drips (or is SIGSTOPped after the kernel accepted the connection) could hold a call for
//    a read timeout per byte. A watchdog thread calls Client::stop() on every call still running
//    at its deadline (again every few ms until the call returns: a stop() that lands while the
//    socket is still connecting has nothing to shut down yet). It is started on first use.
//  * cancelling a stream from another thread: the stop token asks the same watchdog.
// Keep-alive clients are pooled per endpoint (httplib checks a pooled socket is still alive
// before reusing it), so a busy caller pays one TCP connect, not one per call.

#include "etcd/transport.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <condition_variable>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <sys/socket.h>
#include <thread>
#include <vector>

namespace cnm::etcd {

namespace {

constexpr size_t max_reply_bytes = 64u << 20;
constexpr auto restop_interval = std::chrono::milliseconds(5);
constexpr size_t max_idle_per_endpoint = 4;

class Watchdog {
public:
    ~Watchdog()
    {
        if (m_thread.joinable()) {
            m_thread.request_stop();
            m_cv.notify_all();
        }
    }

    uint64_t arm(Clock::time_point deadline, httplib::Client* client)
    {
        std::lock_guard lock(m_mutex);
        if (!m_thread.joinable())
            m_thread = std::jthread([this](std::stop_token st) { run(st); });
        uint64_t id = m_next_id++;
        m_entries.emplace(id, Entry { deadline, client, false });
        m_changed = true;
        m_cv.notify_all();
        return id;
    }

    /// Removes the entry; after this, `client` is never stopped on its behalf. True if it fired.
    bool disarm(uint64_t id)
    {
        std::lock_guard lock(m_mutex);
        auto it = m_entries.find(id);
        if (it == m_entries.end())
            return false;
        bool fired = it->second.fired;
        m_entries.erase(it);
        return fired;
    }

private:
    struct Entry {
        Clock::time_point deadline;
        httplib::Client* client;
        bool fired;
    };

    void run(std::stop_token st)
    {
        std::unique_lock lock(m_mutex);
        while (!st.stop_requested()) {
            auto now = Clock::now();
            auto next = Clock::time_point::max();
            for (auto& [id, e] : m_entries) {
                if (e.deadline <= now) {
                    e.fired = true;
                    e.client->stop();
                    e.deadline = now + restop_interval;
                }
                next = std::min(next, e.deadline);
            }
            m_changed = false;
            if (next == Clock::time_point::max())
                m_cv.wait(lock, st, [&] { return m_changed; });
            else
                m_cv.wait_until(lock, st, next, [&] { return m_changed; });
        }
    }

    std::mutex m_mutex;
    std::condition_variable_any m_cv;
    std::map<uint64_t, Entry> m_entries;
    uint64_t m_next_id = 1;
    bool m_changed = false;
    std::jthread m_thread; // last: joined before the members it uses go
};

template<typename Duration>
void set_timeouts(httplib::Client& c, std::chrono::microseconds connect, Duration read)
{
    auto us = [](auto d) { return std::max<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 1000); };
    int64_t c_us = us(connect), r_us = us(read);
    c.set_connection_timeout(time_t(c_us / 1000000), time_t(c_us % 1000000));
    c.set_read_timeout(time_t(r_us / 1000000), time_t(r_us % 1000000));
    c.set_write_timeout(time_t(r_us / 1000000), time_t(r_us % 1000000));
}

std::string describe(httplib::Error e)
{
    switch (e) {
    case httplib::Error::Connection: return "cannot connect";
    case httplib::Error::ConnectionTimeout: return "connect timed out";
    case httplib::Error::Read: return "no complete answer (connection closed, reset or cut off)";
    case httplib::Error::Write: return "cannot send the request";
    default: return httplib::to_string(e);
    }
}

HttpReply::Outcome outcome_of(httplib::Error e)
{
    switch (e) {
    case httplib::Error::Connection:
    case httplib::Error::ConnectionTimeout:
    case httplib::Error::BindIPAddress:
    case httplib::Error::SSLConnection:
    // A failed write means the server has no complete request, so it cannot have acted on it.
    case httplib::Error::Write:
        return HttpReply::Outcome::NotSent;
    default:
        return HttpReply::Outcome::Broken;
    }
}

class HttpTransport final : public Transport {
public:
    HttpReply post(const HttpRequest& r) override
    {
        auto now = Clock::now();
        if (r.deadline <= now)
            return { HttpReply::Outcome::NotSent, 0, {}, "no time left" };
        auto remaining = std::chrono::duration_cast<std::chrono::microseconds>(r.deadline - now);
        auto client = take(r.endpoint);
        set_timeouts(*client, std::min<std::chrono::microseconds>(r.connect_timeout, remaining), remaining);

        HttpReply reply;
        httplib::Request req;
        req.method = "POST";
        req.path = r.path;
        req.body = r.body;
        req.set_header("Content-Type", "application/json");
        bool too_big = false;
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
            if (reply.body.size() + n > max_reply_bytes) {
                too_big = true;
                return false;
            }
            reply.body.append(data, n);
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        uint64_t id = m_watchdog.arm(r.deadline, client.get());
        bool ok = client->send(req, res, err);
        bool fired = m_watchdog.disarm(id);
        if (ok) {
            reply.outcome = HttpReply::Outcome::Ok;
            reply.status = res.status;
            give(r.endpoint, std::move(client));
            return reply;
        }
        if (err == httplib::Error::Read && res.status > 0 && !reply.body.empty() && nlohmann::json::accept(reply.body)) {
            // etcd's gateway ends its error replies (HTTP 400/404/…, chunked) with a trailer
            // (Grpc-Trailer-Content-Type), and cpp-httplib 0.11 fails on any trailer after the
            // last chunk. By then the body has arrived whole (it parses), so it is the answer;
            // the connection is dropped, not pooled.
            reply.outcome = HttpReply::Outcome::Ok;
            reply.status = res.status;
            return reply;
        }
        reply.body.clear();
        if (too_big) {
            reply.outcome = HttpReply::Outcome::Broken;
            reply.detail = "reply larger than " + std::to_string(max_reply_bytes >> 20) + " MiB";
        } else if (fired || Clock::now() >= r.deadline) {
            // A connect cut off by the deadline never reached the server: still NotSent.
            reply.outcome = outcome_of(err) == HttpReply::Outcome::NotSent ? HttpReply::Outcome::NotSent : HttpReply::Outcome::Timeout;
            reply.detail = "no answer in time (" + describe(err) + ")";
        } else {
            reply.outcome = outcome_of(err);
            reply.detail = describe(err);
        }
        return reply;
    }

    HttpReply stream(const HttpRequest& r, const OnData& on_data, std::stop_token stop) override
    {
        auto client = make_client(r.endpoint);
        // 24 h stands for "no idle limit": httplib turns the timeout into poll()'s int milliseconds.
        auto idle = r.idle_timeout.count() > 0 ? std::chrono::microseconds(r.idle_timeout) : std::chrono::microseconds(std::chrono::hours(24));
        set_timeouts(*client, r.connect_timeout, idle);
        // A peer that vanishes without a FIN (host down, partition) is found by TCP keepalive in
        // about 25 s; a live but silent etcd is what idle_timeout is for.
        client->set_socket_options([](socket_t sock) {
            int on = 1, idle_s = 10, intvl = 5, cnt = 3;
            ::setsockopt(sock, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
            ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
            ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
            ::setsockopt(sock, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
            ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
        });

        HttpReply reply;
        httplib::Request req;
        req.method = "POST";
        req.path = r.path;
        req.body = r.body;
        req.set_header("Content-Type", "application/json");
        bool receiver_stopped = false;
        req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
            if (stop.stop_requested() || !on_data(std::string_view(data, n))) {
                receiver_stopped = true;
                return false;
            }
            return true;
        };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        bool ok;
        std::optional<uint64_t> armed;
        {
            std::stop_callback on_stop(stop, [&] { armed = m_watchdog.arm(Clock::now(), client.get()); });
            ok = client->send(req, res, err);
        } // the callback has finished or will never run: `armed` is ours to read
        if (armed)
            m_watchdog.disarm(*armed);
        reply.status = ok ? res.status : 0;
        if (stop.stop_requested() || receiver_stopped) {
            reply.outcome = HttpReply::Outcome::Canceled;
        } else if (ok) {
            reply.outcome = HttpReply::Outcome::Broken;
            reply.detail = "etcd closed the stream";
        } else {
            reply.outcome = outcome_of(err);
            reply.detail = err == httplib::Error::Read ? "the stream broke (read failed or idle too long)" : describe(err);
        }
        return reply;
    }

private:
    static std::unique_ptr<httplib::Client> make_client(const std::string& endpoint)
    {
        auto c = std::make_unique<httplib::Client>(endpoint);
        c->set_keep_alive(true);
        c->set_tcp_nodelay(true); // headers and body are two writes: Nagle + delayed ACK = 40 ms
        return c;
    }

    std::unique_ptr<httplib::Client> take(const std::string& endpoint)
    {
        {
            std::lock_guard lock(m_pool_mutex);
            auto it = m_idle.find(endpoint);
            if (it != m_idle.end() && !it->second.empty()) {
                auto c = std::move(it->second.back());
                it->second.pop_back();
                return c;
            }
        }
        return make_client(endpoint);
    }

    void give(const std::string& endpoint, std::unique_ptr<httplib::Client> client)
    {
        std::lock_guard lock(m_pool_mutex);
        auto& idle = m_idle[endpoint];
        if (idle.size() < max_idle_per_endpoint)
            idle.push_back(std::move(client));
    }

    std::mutex m_pool_mutex;
    std::map<std::string, std::vector<std::unique_ptr<httplib::Client>>> m_idle;
    Watchdog m_watchdog; // destroyed first: its thread stops before the pooled clients go
};

} // namespace

std::unique_ptr<Transport> make_http_transport()
{
    return std::make_unique<HttpTransport>();
}

} // namespace cnm::etcd

// The entry point of cnm-etcd-http.so (this file built as a module, for the vxlan plugin; see
// http_module.cpp). The module is built with hidden visibility: this is its only exported symbol.
extern "C" __attribute__((visibility("default"))) const cnm::etcd::HttpModule* cnm_etcd_http_module()
{
    static const cnm::etcd::HttpModule table = [] {
        auto t = cnm::etcd::http_module_expected();
        t.create = []() -> cnm::etcd::Transport* {
            try {
                return new cnm::etcd::HttpTransport();
            } catch (...) {
                return nullptr;
            }
        };
        return t;
    }();
    return &table;
}
