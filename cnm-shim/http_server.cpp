#include "http_server.hpp"

#include <algorithm>
#include <cerrno>
#include <memory>
#include <optional>
#include <poll.h>
#include <system_error>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace cnm::shim {

namespace {

using Clock = std::chrono::steady_clock;

enum class Wait { Ready, TimedOut, Failed };

/// Waits until fd has `events` or the deadline passes; Failed on a hang-up with nothing to read
/// or an error.
Wait wait_until(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0)
            return Wait::TimedOut;
        pollfd p { fd, events, 0 };
        int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
        if (n < 0 && errno != EINTR)
            return Wait::Failed;
        if (n > 0)
            return (p.revents & (events | POLLHUP | POLLERR)) != 0 ? Wait::Ready : Wait::Failed;
    }
}

bool wait_for(int fd, short events, Clock::time_point deadline)
{
    return wait_until(fd, events, deadline) == Wait::Ready;
}

/// The connection as the library's parser sees it: reads give up at the request's deadline (set
/// when its first byte is there), writes at the reply's (set at its first write), never per call.
class DeadlineStream final : public httplib::Stream {
public:
    DeadlineStream(int fd, std::chrono::milliseconds write_timeout)
        : m_fd(fd)
        , m_write_timeout(write_timeout)
    {
    }
    void start_request(Clock::time_point deadline)
    {
        m_read_deadline = deadline;
        m_write_deadline.reset();
    }
    bool timed_out() const { return m_timed_out; }
    bool has_buffered() const { return m_pos < m_len; }

    bool is_readable() const override { return has_buffered() || readable(); }
    bool is_writable() const override { return wait_for(m_fd, POLLOUT, write_deadline()); }

    ssize_t read(char* ptr, size_t size) override
    {
        if (!has_buffered()) {
            m_pos = m_len = 0;
            for (;;) {
                if (!readable())
                    return -1;
                ssize_t n = ::recv(m_fd, m_buf, sizeof m_buf, MSG_DONTWAIT);
                if (n >= 0) {
                    if (n == 0)
                        return 0;
                    m_len = static_cast<size_t>(n);
                    break;
                }
                if (errno != EAGAIN && errno != EINTR)
                    return -1;
            }
        }
        size_t n = std::min(size, m_len - m_pos);
        std::copy(m_buf + m_pos, m_buf + m_pos + n, ptr);
        m_pos += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override
    {
        for (;;) {
            if (!wait_for(m_fd, POLLOUT, write_deadline()))
                return -1;
            ssize_t n = ::send(m_fd, ptr, size, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0 || (errno != EAGAIN && errno != EINTR))
                return n;
        }
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override
    {
        ip.clear();
        port = 0;
    }
    void get_local_ip_and_port(std::string& ip, int& port) const override
    {
        ip.clear();
        port = 0;
    }
    socket_t socket() const override { return m_fd; }

private:
    bool readable() const
    {
        Wait w = wait_until(m_fd, POLLIN, m_read_deadline);
        if (w == Wait::TimedOut)
            m_timed_out = true;
        return w == Wait::Ready;
    }
    Clock::time_point write_deadline() const
    {
        if (!m_write_deadline)
            m_write_deadline = Clock::now() + m_write_timeout;
        return *m_write_deadline;
    }

    int m_fd;
    std::chrono::milliseconds m_write_timeout;
    Clock::time_point m_read_deadline {};
    mutable std::optional<Clock::time_point> m_write_deadline;
    mutable bool m_timed_out = false;
    char m_buf[4096];
    size_t m_pos = 0;
    size_t m_len = 0;
};

/// A thread per connection; shutdown() (the library's, when listen returns) waits for them all.
class ThreadPerConnection final : public httplib::TaskQueue {
public:
    void enqueue(std::function<void()> fn) override
    {
        {
            std::lock_guard lock(m_count->mutex);
            ++m_count->running;
        }
        auto run = [count = m_count, fn = std::move(fn)] {
            fn();
            std::lock_guard lock(count->mutex);
            if (--count->running == 0)
                count->done.notify_all();
        };
        try {
            std::thread(run).detach();
        } catch (const std::system_error&) {
            // No thread to be had (a process or memory limit): serve it on the accepting thread,
            // which the connection's own bounds release within seconds, rather than die.
            run();
        }
    }
    void shutdown() override
    {
        std::unique_lock lock(m_count->mutex);
        m_count->done.wait(lock, [&] { return m_count->running == 0; });
    }

private:
    struct Count {
        std::mutex mutex;
        std::condition_variable done;
        size_t running = 0;
    };
    std::shared_ptr<Count> m_count = std::make_shared<Count>();
};

/// The connection this thread serves, for post()'s handlers to mark and the error handler to ask.
thread_local std::function<void(bool)>* current_handling = nullptr;
thread_local const DeadlineStream* current_stream = nullptr;

} // namespace

BoundedServer::BoundedServer(HttpBounds bounds, Log log)
    : m_bounds(bounds)
    , m_log(std::move(log))
{
    new_task_queue = [] { return new ThreadPerConnection; };
}

BoundedServer::~BoundedServer() = default;

BoundedServer& BoundedServer::post(const std::string& pattern, Handler handler)
{
    Post(pattern, [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
        if (current_handling)
            (*current_handling)(true);
        handler(req, res);
        if (current_handling)
            (*current_handling)(false);
    });
    return *this;
}

bool BoundedServer::request_timed_out()
{
    return current_stream && current_stream->timed_out();
}

void BoundedServer::close_connections()
{
    std::lock_guard lock(m_mutex);
    m_closing = true;
    for (auto& c : m_connections) {
        if (!c.shut && (c.state == State::Idle || c.state == State::Reading)) {
            ::shutdown(c.fd, SHUT_RDWR);
            c.shut = true;
            --m_live;
        }
    }
}

bool BoundedServer::admit(int fd, Iter& self)
{
    std::lock_guard lock(m_mutex);
    if (m_closing)
        return false;
    if (m_live >= m_bounds.max_connections) {
        auto victim = m_connections.end();
        for (auto it = m_connections.begin(); it != m_connections.end(); ++it) {
            if (it->shut || it->state == State::Handling || it->state == State::Writing)
                continue;
            bool better = victim == m_connections.end()
                || (it->state == State::Idle && victim->state == State::Reading)
                || (it->state == victim->state && it->since < victim->since);
            if (better)
                victim = it;
        }
        if (victim == m_connections.end()) {
            m_log("refusing a connection: all " + std::to_string(m_bounds.max_connections) + " connections are busy with calls");
            return false;
        }
        ::shutdown(victim->fd, SHUT_RDWR);
        victim->shut = true;
        --m_live;
    }
    self = m_connections.insert(m_connections.end(), Connection { fd, State::Idle, Clock::now() });
    ++m_live;
    return true;
}

bool BoundedServer::set_state(Iter self, State state)
{
    std::lock_guard lock(m_mutex);
    if (self->shut || (m_closing && (state == State::Idle || state == State::Reading)))
        return false;
    self->state = state;
    self->since = Clock::now();
    return true;
}

bool BoundedServer::process_and_close_socket(socket_t sock)
{
    Iter self;
    if (admit(sock, self)) {
        serve_connection(sock, self);
        std::lock_guard lock(m_mutex);
        if (!self->shut)
            --m_live;
        m_connections.erase(self);
    }
    // Closed only once out of the list: a displacing thread never shuts a reused descriptor.
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return true;
}

void BoundedServer::serve_connection(int fd, Iter self)
{
    DeadlineStream stream(fd, m_bounds.write_timeout);
    std::function<void(bool)> handling = [&](bool on) { set_state(self, on ? State::Handling : State::Writing); };
    current_handling = &handling;
    current_stream = &stream;
    for (;;) {
        // Idle: wait for the next request's first byte (a pipelined one may be buffered already).
        if (!stream.has_buffered() && !wait_for(fd, POLLIN, Clock::now() + m_bounds.idle_timeout))
            break;
        if (!set_state(self, State::Reading))
            break;
        stream.start_request(Clock::now() + m_bounds.request_timeout);
        bool closed = false;
        bool ok = process_request(stream, false, closed, nullptr);
        if (stream.timed_out()) {
            m_log("dropped a connection whose request did not arrive within "
                + std::to_string(m_bounds.request_timeout.count()) + " ms");
            break;
        }
        if (!ok || closed || !set_state(self, State::Idle))
            break;
    }
    current_handling = nullptr;
    current_stream = nullptr;
}

} // namespace cnm::shim
