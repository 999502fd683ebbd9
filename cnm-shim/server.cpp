#include "server.hpp"

#include "docker_api.hpp"
#include "proc_locks.hpp"
#include "http_server.hpp"
#include "kernel/kernel.hpp"
#include "store/file_store.hpp"

#include <httplib.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <fcntl.h>
#include <pthread.h>
#include <string_view>
#include <sys/file.h>
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
    // A string that is not UTF-8 (a name echoed from a request) must not make dump() throw.
    res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n", mime);
}

void error_reply(httplib::Response& res, int status, const std::string& msg)
{
    json_reply(res, status, { { "Err", msg }, { "Error", msg } });
}

/// The offset of the first byte that is not part of well-formed UTF-8 (RFC 3629: no overlong
/// forms, no surrogates, nothing past U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s)
{
    size_t i = 0;
    while (i < s.size()) {
        auto b = static_cast<unsigned char>(s[i]);
        size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
        if (len == 0 || i + len > s.size())
            return i;
        unsigned cp = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
        for (size_t k = 1; k < len; ++k) {
            auto c = static_cast<unsigned char>(s[i + k]);
            if ((c & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (c & 0x3f);
        }
        static constexpr unsigned least[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return std::string_view::npos;
}

} // namespace

Result<int> claim_state_dir(const std::string& state_dir)
{
    auto store = TRY(FileStore::open(state_dir)); // creates the root, and refuses one others can write
    const std::string& root = store->root();
    int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return make_error(Code::Io, "cannot open " + root, std::strerror(errno));
    while (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        struct stat st {};
        std::string pid;
        if (err == EWOULDBLOCK && ::fstat(fd, &st) == 0) {
            std::ifstream locks("/proc/locks");
            pid = flock_holder(locks, st.st_dev, st.st_ino);
        }
        ::close(fd);
        if (err != EWOULDBLOCK)
            return make_error(Code::Io, "cannot lock " + root, std::strerror(err));
        return make_error(Code::TryAgainLater, "another cnm-shim" + (pid.empty() ? "" : " (pid " + pid + ")") + " serves the state directory " + root,
            "one shim per state directory: stop it first, or give this one a --state-dir of its own");
    }
    return fd;
}

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

    HttpBounds bounds { options.request_timeout, options.idle_timeout, options.write_timeout, options.max_connections };
    BoundedServer server(bounds, log_line);
    server.set_address_family(AF_UNIX);
    server.set_payload_max_length(options.max_body);
    server.post(".*", [&](const httplib::Request& req, httplib::Response& res) {
        std::string method = req.path.size() > 1 ? req.path.substr(1) : "";
        // Caught here rather than as the JSON parser's error: a 400 that says what is wrong.
        for (auto [what, text] : { std::pair { "path", std::string_view(req.path) }, std::pair { "body", std::string_view(req.body) } }) {
            if (size_t at = invalid_utf8_at(text); at != std::string_view::npos) {
                error_reply(res, 400, std::string("cnm-shim: the request ") + what + " is not valid UTF-8 (at byte " + std::to_string(at) + ")");
                log_line("a request with a " + std::string(what) + " that is not UTF-8 -> 400");
                return;
            }
        }
        auto start = std::chrono::steady_clock::now();
        std::unique_lock lock(busy, std::defer_lock);
        if (!lock.try_lock_for(options.busy_timeout)) {
            error_reply(res, 503, "cnm-shim is busy with another call; try again");
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
    server.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty())
            return;
        std::string msg = "cnm-shim: HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
        if (res.status == 413)
            msg = "cnm-shim: request body too large";
        if (BoundedServer::request_timed_out())
            msg = "cnm-shim: the request did not arrive within " + std::to_string(options.request_timeout.count()) + " s";
        if (size_t at = invalid_utf8_at(req.path); at != std::string_view::npos)
            msg = "cnm-shim: the request path is not valid UTF-8 (at byte " + std::to_string(at) + ")";
        error_reply(res, res.status, msg);
    });
    server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        error_reply(res, 500, "cnm-shim: internal error in " + req.path + ": " + what);
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
        server.close_connections();
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
