#include "server.hpp"

#include "docker_api.hpp"
#include "kernel/kernel.hpp"
#include "store/file_store.hpp"

#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace cnm::shim {

namespace {

constexpr const char* mime = "application/vnd.docker.plugins.v1.2+json";

void log_line(const std::string& line)
{
    std::fprintf(stderr, "cnm-shim: %s\n", line.c_str());
}

/// A socket file left by a shim that died is removed; a live one means another shim serves there.
bool clear_stale_socket(const std::string& path)
{
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0)
        return errno == ENOENT || (log_line("cannot inspect " + path + ": " + std::strerror(errno)), false);
    if (!S_ISSOCK(st.st_mode)) {
        log_line(path + " exists and is not a socket; refusing to replace it");
        return false;
    }
    sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    if (fd >= 0)
        ::close(fd);
    if (live) {
        log_line("another process is serving on " + path);
        return false;
    }
    log_line("removing the stale socket " + path);
    return ::unlink(path.c_str()) == 0 || errno == ENOENT;
}

void json_reply(httplib::Response& res, int status, const Json& body)
{
    res.status = status;
    res.set_content(body.dump() + "\n", mime);
}

} // namespace

int serve(const ServeOptions& options)
{
    if (options.socket.size() >= sizeof(sockaddr_un::sun_path)) {
        log_line("socket path is too long: " + options.socket);
        return 1;
    }
    // Signals go to one waiting thread, which stops the server; block them before any thread starts.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    auto store = FileStore::open(options.state_dir);
    if (!store) {
        log_line("cannot open the state directory " + options.state_dir + ": " + store.error().msg + " " + store.error().details);
        return 1;
    }
    auto kernel = netlink_kernel();
    if (!kernel) {
        log_line("netlink is unavailable: " + kernel.error().msg);
        return 1;
    }
    (*store)->set_lock_timeout(options.lock_timeout);
    DockerApi api(**store, **kernel);
    std::timed_mutex busy;

    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(options.socket).parent_path(), ec);
    if (!clear_stale_socket(options.socket))
        return 1;

    httplib::Server server;
    server.set_address_family(AF_UNIX);
    server.set_payload_max_length(options.max_body);
    server.set_read_timeout(options.io_timeout.count(), 0);
    server.set_write_timeout(options.io_timeout.count(), 0);
    server.set_keep_alive_timeout(options.io_timeout.count());
    server.Post(".*", [&](const httplib::Request& req, httplib::Response& res) {
        std::string method = req.path.size() > 1 ? req.path.substr(1) : "";
        auto start = std::chrono::steady_clock::now();
        std::unique_lock lock(busy, std::defer_lock);
        if (!lock.try_lock_for(options.busy_timeout)) {
            std::string msg = "cnm-shim is busy with another call; try again";
            json_reply(res, 503, { { "Err", msg }, { "Error", msg } });
            log_line(method + " -> 503 (busy)");
            return;
        }
        Reply reply = api.handle(method, req.body);
        lock.unlock();
        json_reply(res, reply.status, reply.body);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
        std::string line = method + " -> " + std::to_string(reply.status) + " in " + std::to_string(ms) + " ms";
        if (reply.status != 200)
            line += ": " + reply.body.value("Err", "");
        log_line(line);
    });
    // Errors the library produces itself (413 too large, 400 malformed, 404 for non-POST) get
    // the same JSON shape as ours.
    server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty())
            return;
        std::string msg = "cnm-shim: HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
        if (res.status == 413)
            msg = "cnm-shim: request body too large";
        json_reply(res, res.status, { { "Err", msg }, { "Error", msg } });
    });
    server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        std::string msg = "cnm-shim: internal error in " + req.path + ": " + what;
        json_reply(res, 500, { { "Err", msg }, { "Error", msg } });
    });

    if (!server.bind_to_port(options.socket, 80)) {
        log_line("cannot listen on " + options.socket + ": " + std::strerror(errno));
        return 1;
    }
    struct stat ours {};
    ::chmod(options.socket.c_str(), 0600);
    ::stat(options.socket.c_str(), &ours);

    std::thread waiter([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        log_line(std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        server.stop();
    });
    waiter.detach();

    log_line("serving NetworkDriver and IpamDriver on " + options.socket + " (state in " + options.state_dir + ")");
    server.listen_after_bind();
    // Busy calls finish before the store goes: take the lock once more.
    std::lock_guard last(busy);
    struct stat now {};
    if (::stat(options.socket.c_str(), &now) == 0 && now.st_ino == ours.st_ino && now.st_dev == ours.st_dev)
        ::unlink(options.socket.c_str());
    log_line("stopped");
    return 0;
}

Result<CallReply> call(const std::string& socket, const std::string& method, const std::string& body)
{
    httplib::Client client(socket);
    client.set_address_family(AF_UNIX);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(30, 0);
    httplib::Headers headers = { { "Accept", "application/vnd.docker.plugins.v1.2+json" } };
    auto res = client.Post("/" + method, headers, body, "application/json");
    if (!res)
        return make_error(Code::Io, "cannot reach the shim on " + socket, httplib::to_string(res.error()));
    CallReply reply;
    reply.status = res->status;
    auto parsed = parse_json(res->body, Code::Decode, "the shim's reply");
    reply.body = parsed ? parsed.release_value() : Json(res->body);
    return reply;
}

} // namespace cnm::shim
