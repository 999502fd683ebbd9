#pragma once
// The one seam between the etcd client and the network: POST a body to an endpoint, or stream a
// reply. The real one (http_transport.cpp, cpp-httplib) is the only file that sees HTTP; the unit
// tests give the client a scripted fake instead, so failover and decoding run without a server.

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <string>
#include <string_view>

namespace cnm::etcd {

using Clock = std::chrono::steady_clock;

struct HttpRequest {
    std::string endpoint; // "http://host:port"
    std::string path;     // "/v3/kv/put"
    std::string body;
    Clock::time_point deadline;                 // post(): the whole call returns by then
    std::chrono::milliseconds connect_timeout;  // for this endpoint (≤ what is left of the deadline)
    std::chrono::milliseconds idle_timeout { 0 }; // stream(): a silence this long breaks it; 0: none
};

struct HttpReply {
    enum class Outcome {
        Ok,            // an HTTP answer arrived (any status); body holds it
        NotSent,       // no connection or the request was not written: safe to try elsewhere
        Timeout,       // the deadline passed after the request was sent: its effect is unknown
        Broken,        // the connection failed after the request was sent: its effect is unknown
        Canceled,      // stream(): the stop token, or on_data returned false
    };
    Outcome outcome = Outcome::NotSent;
    int status = 0;
    std::string body;   // post() only; stream() hands the body to on_data
    std::string detail; // the transport's words for a failure
};

/// Receives a streamed reply piece by piece; false ends the stream.
using OnData = std::function<bool(std::string_view)>;

class Transport {
public:
    virtual ~Transport() = default;
    /// One POST; returns by `request.deadline` whatever the server does. Thread-safe.
    virtual HttpReply post(const HttpRequest& request) = 0;
    /// A POST whose reply is a stream (the watch). Returns when the stream ends or breaks,
    /// when on_data returns false, or soon after `stop` is requested. Thread-safe.
    virtual HttpReply stream(const HttpRequest& request, const OnData& on_data, std::stop_token stop) = 0;
};

/// The cpp-httplib transport: keep-alive connections pooled per endpoint, TCP_NODELAY, a
/// watchdog that cuts a call off at its deadline. Client::create uses it when given no transport.
/// Defined twice, and a binary links exactly one (common/meson.build):
///  * http_transport.cpp (libcnm_etcd_dep): httplib linked in; cnm-shim and the tests;
///  * http_module.cpp (libcnm_etcd_module_dep): a stand-in that loads cnm-etcd-http.so, which
///    is http_transport.cpp built as a module, on its first post() or stream(); the vxlan plugin,
///    so that an exec that makes no etcd call never loads httplib, libssl and libcrypto.
std::unique_ptr<Transport> make_http_transport();

// The module's one entry point: an extern "C" function named http_module_symbol returning a
// pointer to this table. The types above cross the boundary as C++ objects, so the plugin and
// the module must agree on their layout: http_module_abi counts the changes of this file (bump
// it with any change to the classes above), and the sizes and the compiler catch a module built
// by another compiler or with other flags.
inline constexpr unsigned http_module_abi = 1;
inline constexpr const char* http_module_symbol = "cnm_etcd_http_module";
inline constexpr const char* http_module_file = "cnm-etcd-http.so";

struct HttpModule {
    unsigned abi;             // http_module_abi of the module's build
    unsigned table_size;      // sizeof(HttpModule)
    unsigned request_size;    // sizeof(HttpRequest)
    unsigned reply_size;      // sizeof(HttpReply)
    unsigned string_size;     // sizeof(std::string)
    const char* compiler;     // __VERSION__
    /// A new transport (delete it through Transport's virtual destructor), or null when out of
    /// memory. Throws nothing.
    Transport* (*create)();
};

/// What this build expects of a module; the loader compares a module's table with it.
inline HttpModule http_module_expected()
{
    return { http_module_abi, sizeof(HttpModule), sizeof(HttpRequest), sizeof(HttpReply), sizeof(std::string), __VERSION__, nullptr };
}

} // namespace cnm::etcd
