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
/// watchdog that cuts a call off at its deadline.
std::unique_ptr<Transport> make_http_transport();

} // namespace cnm::etcd
