#pragma once
// An etcd v3 client over the JSON gateway (POST http://host:port/v3/…), for the cluster's
// global records (vxlan networks, hosts, blocks). Debian 12 packages no C/C++ etcd client; the
// gateway needs only HTTP/1.1 and JSON, so this is one keep-alive connection and codec.hpp.
//
// The model. etcd is one ordered key space with a global revision that every write bumps; every
// key carries create_revision, mod_revision (the revision of its last write), version (writes
// since created; 0 = absent) and the lease it is attached to. So:
//  * optimistic concurrency is compare-and-swap on mod_revision: read, decide, write "only if
//    the key is still at the revision I read" (put_if_mod_revision); create-if-absent is the
//    same with "version == 0" (create). A lost race is not an error: the answer says who won.
//  * liveness is a lease: keys put with a lease go when it expires or is revoked; the holder
//    renews it with keepalive calls.
//  * list-then-watch: range(prefix) returns the keys and the revision R they were read at;
//    watch(prefix, R + 1) then sees every later change, in order, none missed. If R + 1 was
//    compacted away, the watch says so (WatchEnd::Compacted) and the caller lists again.
//
// Cost: every call except watch is exactly one HTTP round trip on a pooled connection (0.4–0.9
// ms over loopback; a txn costs the same as a put, win or lose) — none reads before writing.
// watch is one long-lived stream per call.
//
// Endpoints and failures. Calls go to the endpoint that last worked and move to the next one when
// a connection cannot be made (and, for reads, when a member answers "unavailable"). Each call
// has one total budget (Options::timeout) shared by every endpoint it tries, and returns within
// it whatever the servers do. When no endpoint answers the error is Code::TryAgainLater (CNI
// code 11) naming the endpoints. A write whose request went out but whose answer did not come
// back is not retried elsewhere (it may have been applied; retrying a create would then report
// our own write as a lost race): it is TryAgainLater saying the outcome is unknown. etcd's own
// refusals carry its message and gRPC code (see grpc_code()).
//
// Thread-safety: one Client may be used from many threads at once, watch() included.

#include "etcd/codec.hpp"
#include "etcd/transport.hpp"
#include "util/result.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace cnm::etcd {

struct Options {
    /// "http://host:port" or "host:port"; at least one.
    std::vector<std::string> endpoints;
    /// Total per call, across every endpoint tried.
    std::chrono::milliseconds timeout { 2000 };
    /// Per endpoint attempt (≤ what is left of timeout): a black-holed member costs this much
    /// before the next one is tried.
    std::chrono::milliseconds connect_timeout { 500 };
};

/// Splits "http://a:2379,b:2379" (commas or whitespace) into endpoints.
std::vector<std::string> split_endpoints(std::string_view list);

/// The outcome of a conditional write. Losing is a normal answer, not an error.
struct CasResult {
    bool succeeded = false;
    int64_t revision = 0;            // store revision after the txn: a won put's new mod_revision
    std::optional<KeyValue> current; // when lost: the key as it is now (nullopt: absent)
};

struct WatchOptions {
    bool prev_kv = false;
    /// A stream silent this long is reported broken (the caller re-lists and watches again,
    /// which also moves to another endpoint). 0: no limit; TCP keepalive still finds a vanished
    /// peer. Useful with etcd's --experimental-watch-progress-notify-interval, since the watch
    /// asks for progress notifications.
    std::chrono::milliseconds idle_timeout { 0 };
};

struct WatchEnd {
    enum class Reason { Stopped, Compacted };
    Reason reason = Reason::Stopped;
    int64_t compact_revision = 0; // Compacted: the oldest revision still available
    int64_t last_revision = 0;    // highest header revision seen: resume from last_revision + 1
};

/// Called on watch()'s own thread for each batch of events (one etcd revision or more);
/// false stops the watch.
using WatchCallback = std::function<bool(const WatchMessage&)>;

/// The gRPC code of an error etcd itself returned (11: compacted, 5: not found, …), if it was one.
std::optional<int> grpc_code(const Error& error);

class Client {
public:
    /// Checks the endpoints; makes no connection. Without a transport, cpp-httplib's.
    static Result<std::unique_ptr<Client>> create(Options options, std::unique_ptr<Transport> transport = nullptr);

    /// The key, or nullopt when absent.
    Result<std::optional<KeyValue>> get(const std::string& key);
    /// Every key under `prefix`, in key order, and the revision they were read at.
    Result<RangeResult> range_prefix(const std::string& prefix);
    /// [key, range_end) at `revision` (0: latest). An empty range_end means the key alone.
    Result<RangeResult> range(const std::string& key, const std::string& range_end, int64_t revision = 0);
    /// Writes unconditionally; returns the new revision.
    Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease = 0);
    /// Deletes the key (absent is fine); returns how many were deleted.
    Result<int64_t> del(const std::string& key);
    Result<int64_t> del_prefix(const std::string& prefix);

    /// Puts only if the key is absent (version == 0). When lost, `current` is the winner's kv.
    Result<CasResult> create(const std::string& key, const std::string& value, int64_t lease = 0);
    /// Puts only if the key's mod_revision is still `mod_revision` (0: only if absent).
    Result<CasResult> put_if_mod_revision(const std::string& key, const std::string& value, int64_t mod_revision, int64_t lease = 0);
    /// Deletes only if the key's mod_revision is still `mod_revision`.
    Result<CasResult> delete_if_mod_revision(const std::string& key, int64_t mod_revision);
    /// The general transaction: if every compare holds run `success`, else `failure`.
    Result<TxnResult> txn(const std::vector<Compare>& compares, const std::vector<Op>& success, const std::vector<Op>& failure);

    Result<Lease> lease_grant(int64_t ttl_seconds);
    /// Renews once; returns the remaining TTL, or 0 when the lease no longer exists (expired or
    /// revoked: its keys are gone, the caller grants a new one and writes them again).
    Result<int64_t> lease_keepalive(int64_t id);
    /// Revokes and deletes its keys; an unknown lease is fine.
    Result<void> lease_revoke(int64_t id);

    /// Drops history before `revision` (operators and tests; watches from before it compact).
    Result<void> compact(int64_t revision);

    /// Streams changes under `prefix` from `from_revision` (0: from now), calling `callback` per
    /// batch, until `stop` is requested or the callback returns false (Reason::Stopped), or the
    /// start revision was compacted (Reason::Compacted: re-list). A broken stream, or a watch
    /// etcd cancels for another reason, is an error (TryAgainLater when worth retrying).
    Result<WatchEnd> watch(const std::string& prefix, int64_t from_revision, const WatchCallback& callback,
        std::stop_token stop, WatchOptions options = {});

    /// The endpoint the next call tries first.
    const std::string& current_endpoint() const { return m_options.endpoints[m_current.load()]; }

private:
    enum class Kind { Read, Write };
    Client(Options options, std::unique_ptr<Transport> transport);
    Result<Json> call(const char* path, const Json& body, Kind kind);
    Result<CasResult> conditional(const std::string& key, const Compare& compare, Op on_success);
    std::string endpoint_list() const;

    Options m_options;
    std::unique_ptr<Transport> m_transport;
    std::atomic<size_t> m_current { 0 };
};

} // namespace cnm::etcd
