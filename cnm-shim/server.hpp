#pragma once
// The HTTP side of cnm-shim: cpp-httplib on a Unix socket (with the connection bounds of
// http_server.hpp), every request handed to DockerApi under one lock (the store and netlink socket
// are per-process), replies in Docker's plugin MIME type.

#include <chrono>
#include <cstddef>
#include <string>

#include "util/json.hpp"
#include "util/result.hpp"

namespace cnm::shim {

inline constexpr const char* default_socket = "/run/docker/plugins/cnm.sock";

struct ServeOptions {
    std::string socket = default_socket;
    std::string state_dir;
    size_t max_body = 1 << 20;                      // larger requests get 413
    std::chrono::seconds request_timeout { 5 };     // a request's headers and body arrive within this, or it is dropped
    std::chrono::seconds idle_timeout { 5 };        // a kept-alive connection with no request is closed after this
    std::chrono::seconds write_timeout { 5 };       // a reply the client does not take within this is dropped
    size_t max_connections = 128;                   // more displace the idlest (see http_server.hpp)
    std::chrono::seconds busy_timeout { 10 };       // waiting for another call to finish → 503
    std::chrono::milliseconds lock_timeout { 5000 }; // waiting for a plugin's lock on the state → 500
};

/// One serving shim per state directory: an flock on the directory itself (no file in it), held
/// until the returned fd is closed (the kernel drops it when the process dies, so a crashed shim
/// never blocks its restart). The shim's address hint (docker_api.hpp) knows only the Docker
/// endpoints its own process made; a second shim on the same directory could make endpoints
/// behind its back. The TryAgainLater error names the holder's pid when /proc/locks shows it.
Result<int> claim_state_dir(const std::string& state_dir);

/// Serves until SIGTERM or SIGINT; returns the exit status. The socket is removed on the way out.
int serve(const ServeOptions& options);

struct CallReply {
    int status = 0;
    Json body;
};
/// One POST /<method> to a shim's socket, the way Docker makes it (for tests and people).
Result<CallReply> call(const std::string& socket, const std::string& method, const std::string& body);

} // namespace cnm::shim
