#pragma once
// The HTTP side of cnm-shim: cpp-httplib on a Unix socket, every request handed to DockerApi under
// one lock (the store and netlink socket are per-process), replies in Docker's plugin MIME type.

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
    std::chrono::seconds io_timeout { 5 };          // a client that stalls mid-request is dropped
    std::chrono::seconds busy_timeout { 10 };       // waiting for another call to finish → 503
    std::chrono::milliseconds lock_timeout { 5000 }; // waiting for a plugin's lock on the state → 500
};

/// Serves until SIGTERM or SIGINT; returns the exit status. The socket is removed on the way out.
int serve(const ServeOptions& options);

struct CallReply {
    int status = 0;
    Json body;
};
/// One POST /<method> to a shim's socket, the way Docker makes it (for tests and people).
Result<CallReply> call(const std::string& socket, const std::string& method, const std::string& body);

} // namespace cnm::shim
