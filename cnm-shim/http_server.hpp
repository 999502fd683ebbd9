#pragma once
// cpp-httplib's Server with bounds that hold however many clients are slow or idle.
//
// The library as shipped (0.11) serves connections on a pool of 8 threads, waits up to the
// keep-alive timeout for each idle connection's next request, and times out each read on its own:
// 8 clients that send a byte a second hold every thread for ever, and 16 idle ones delay a call by
// two keep-alive timeouts. Here each connection has a thread of its own (up to a cap), and the
// time limits are per request, not per read:
//   - a kept-alive connection with no request is closed after `idle_timeout`;
//   - a request's headers and body must all arrive within `request_timeout` of its first byte;
//   - a reply must be taken by the client within `write_timeout`;
//   - at `max_connections`, a new connection displaces the one idle the longest, else the one
//     whose request has been arriving the longest; a call being handled or answered is never
//     displaced (if every connection is, the new one is closed).
// The HTTP parsing stays the library's: only the connection loop (`process_and_close_socket`,
// which the library lets a subclass replace) and the Stream it reads through are ours.

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <list>
#include <mutex>
#include <string>

namespace cnm::shim {

struct HttpBounds {
    std::chrono::milliseconds request_timeout { 5000 };
    std::chrono::milliseconds idle_timeout { 5000 };
    std::chrono::milliseconds write_timeout { 5000 };
    size_t max_connections = 128;
};

class BoundedServer : public httplib::Server {
public:
    using Log = std::function<void(const std::string&)>;
    BoundedServer(HttpBounds bounds, Log log);
    ~BoundedServer() override;

    /// Post(), with the connection marked as being handled (never displaced) while the handler runs.
    BoundedServer& post(const std::string& pattern, Handler handler);
    /// Closes every connection that is not being handled or answered and makes the rest close after
    /// their reply; call before stop() so that stopping does not wait for idle clients.
    void close_connections();
    /// In an error handler: the request failed because it did not all arrive within request_timeout.
    static bool request_timed_out();

private:
    enum class State { Idle, Reading, Handling, Writing };
    struct Connection {
        int fd;
        State state;
        std::chrono::steady_clock::time_point since;
        bool shut = false; // displaced or closed by close_connections(): its thread is on its way out
    };
    using Iter = std::list<Connection>::iterator;

    bool process_and_close_socket(socket_t sock) override;
    bool admit(int fd, Iter& self);
    bool set_state(Iter self, State state);
    void serve_connection(int fd, Iter self);

    HttpBounds m_bounds;
    Log m_log;
    std::mutex m_mutex;
    std::list<Connection> m_connections;
    size_t m_live = 0; // connections not shut
    bool m_closing = false;
};

} // namespace cnm::shim
