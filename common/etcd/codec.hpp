#pragma once
// The etcd v3 JSON gateway's wire format, as pure functions: request bodies out, replies in.
// No I/O here, so every quirk is unit-tested against recorded bodies (tests/unit/etcd_test.cpp).
//
// The gateway is protobuf's JSON mapping (grpc-gateway v1 in etcd 3.4), which means:
//  * keys and values (`bytes`) are standard base64 with padding, both ways;
//  * int64 fields (revisions, versions, lease ids, counts, TTLs) come back as JSON *strings*;
//    requests may send either, we send strings too;
//  * a field equal to its zero value is left out: no `kvs` for an empty range, no `count` when
//    0, no `succeeded` when a txn's compares failed, no `type` on a PUT event (DELETE is
//    explicit), no `TTL` when a keepalive hit an expired lease, no `create_revision` on a
//    DELETE event's kv. Absent means zero/false/empty here, always;
//  * an error is `{"error": s, "message": s, "code": gRPC code}` with an HTTP status
//    (3 bad base64 → 400, 5 not found → 404, 11 compacted → 400, 14 unavailable → 503); inside a
//    watch stream it arrives as one line of the same shape (some versions nest it as
//    `{"error": {"grpc_code", "http_code", "message"}}`; both are read).

#include "util/json.hpp"
#include "util/result.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cnm::etcd {

std::string base64_encode(std::string_view bytes);
/// Strict standard base64 (padding required, no whitespace); nullopt on anything else.
std::optional<std::string> base64_decode(std::string_view text);

/// The range_end that makes [prefix, end) exactly the keys starting with `prefix`: the prefix with
/// its last byte incremented, trailing 0xff bytes dropped first. An empty prefix, or one of only
/// 0xff bytes, gives "\0", which etcd reads as "every key from key on".
std::string prefix_end(std::string_view prefix);

/// One key as etcd stores it. `lease` is 0 when none is attached.
struct KeyValue {
    std::string key;
    std::string value;
    int64_t create_revision = 0;
    int64_t mod_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
    bool operator==(const KeyValue&) const = default;
};

struct RangeResult {
    std::vector<KeyValue> kvs;
    int64_t revision = 0; // the store's revision when the range was read: watch from revision + 1
    int64_t count = 0;    // keys in the range (may exceed kvs.size() with a limit)
    bool more = false;
};

/// One compare of a txn: `target(key) op number` (or `value(key) op value`).
struct Compare {
    enum class Target { Version, Create, Mod, Value, Lease };
    enum class Op { Equal, NotEqual, Greater, Less };
    std::string key;
    Target target = Target::Version;
    Op op = Op::Equal;
    int64_t number = 0;
    std::string value;

    static Compare version(std::string key, Op op, int64_t n) { return { std::move(key), Target::Version, op, n, {} }; }
    static Compare create_revision(std::string key, Op op, int64_t n) { return { std::move(key), Target::Create, op, n, {} }; }
    static Compare mod_revision(std::string key, Op op, int64_t n) { return { std::move(key), Target::Mod, op, n, {} }; }
    static Compare lease(std::string key, Op op, int64_t n) { return { std::move(key), Target::Lease, op, n, {} }; }
    static Compare value_is(std::string key, Op op, std::string v) { return { std::move(key), Target::Value, op, 0, std::move(v) }; }
};

/// One operation of a txn's success or failure branch.
struct Op {
    enum class Kind { Range, Put, Delete };
    Kind kind = Kind::Range;
    std::string key;
    std::string range_end; // Range/Delete: empty means the single key
    std::string value;     // Put
    int64_t lease = 0;     // Put
    bool prev_kv = false;  // Put/Delete: return the previous kv
    bool ignore_lease = false; // Put: keep the lease the key has (etcd refuses it on an absent key)

    static Op get(std::string key) { return { Kind::Range, std::move(key), {}, {}, 0, false }; }
    static Op get_prefix(const std::string& prefix) { return { Kind::Range, prefix, prefix_end(prefix), {}, 0, false }; }
    static Op put(std::string key, std::string value, int64_t lease = 0) { return { Kind::Put, std::move(key), {}, std::move(value), lease, false }; }
    static Op del(std::string key) { return { Kind::Delete, std::move(key), {}, {}, 0, false }; }
    static Op del_prefix(const std::string& prefix) { return { Kind::Delete, prefix, prefix_end(prefix), {}, 0, false }; }
};

/// The answer to one Op, in the same order as the branch that ran.
struct OpResult {
    Op::Kind kind = Op::Kind::Range;
    RangeResult range;               // Range
    int64_t deleted = 0;             // Delete
    std::vector<KeyValue> prev_kvs;  // Put/Delete with prev_kv (Put: at most one)
};

struct TxnResult {
    bool succeeded = false; // the compares held and the success branch ran
    int64_t revision = 0;
    std::vector<OpResult> responses;
};

struct Lease {
    int64_t id = 0;
    int64_t ttl = 0; // seconds
};

struct WatchEvent {
    enum class Type { Put, Delete };
    Type type = Type::Put;
    KeyValue kv;                     // Delete: only key and mod_revision are set
    std::optional<KeyValue> prev_kv; // when the watch asked for it and there was one
};

/// One line of a watch stream.
struct WatchMessage {
    int64_t revision = 0;       // header revision
    bool created = false;
    bool canceled = false;
    int64_t compact_revision = 0; // > 0: the start revision was compacted; re-list
    std::string cancel_reason;
    std::vector<WatchEvent> events;
};

// --- request bodies ------------------------------------------------------------------------

Json encode_range(std::string_view key, std::string_view range_end, int64_t revision = 0, bool count_only = false);
Json encode_put(std::string_view key, std::string_view value, int64_t lease = 0);
Json encode_delete(std::string_view key, std::string_view range_end = {}, bool prev_kv = false);
Json encode_compare(const Compare& compare);
Json encode_op(const Op& op);
Json encode_txn(const std::vector<Compare>& compares, const std::vector<Op>& success, const std::vector<Op>& failure);
Json encode_watch_create(std::string_view key, std::string_view range_end, int64_t start_revision, bool prev_kv);

// --- replies -------------------------------------------------------------------------------

/// A gateway error object, if `doc` is one (top-level or nested form).
struct GatewayError {
    int code = 0; // gRPC status code
    std::string message;
};
std::optional<GatewayError> gateway_error(const Json& doc);

/// The gRPC code's name ("Unavailable", "OutOfRange", …) for messages.
const char* grpc_code_name(int code);
/// "gRPC code 14 (Unavailable)": the details of an error etcd answered with (read back by
/// etcd::grpc_code).
std::string grpc_details(int code);

/// Whether etcd's refusal with this gRPC code passes with time (so TryAgainLater, not Io), for
/// unary calls and watches alike: Unavailable (no leader, a member shutting down),
/// DeadlineExceeded (etcd's own request timeout), ResourceExhausted (too many requests), and
/// Canceled, which over the gateway is its own connection to etcd closing (etcd going away says
/// "grpc: the client connection is closing"; our client never cancels a call, it closes).
bool grpc_transient(int code);

/// An int64 field that may be a string or a number; absent or null is 0.
Result<int64_t> json_int64(const Json& obj, const char* key, const std::string& where);

Result<KeyValue> decode_kv(const Json& doc);
Result<RangeResult> decode_range(const Json& doc);
Result<int64_t> decode_header_revision(const Json& doc);
Result<int64_t> decode_deleted(const Json& doc);
Result<TxnResult> decode_txn(const Json& doc);
Result<Lease> decode_lease_grant(const Json& doc);
/// The remaining TTL after a keepalive; 0 when the lease is gone (etcd then omits TTL).
Result<int64_t> decode_keepalive(const Json& doc);
/// One watch stream line (`{"result": …}` or an error object, which becomes an Error).
Result<WatchMessage> decode_watch_line(std::string_view line);

} // namespace cnm::etcd
