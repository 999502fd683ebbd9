#include "etcd/codec.hpp"

#include <array>
#include <charconv>

namespace cnm::etcd {

namespace {

constexpr char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

Error malformed(const std::string& where, std::string details)
{
    return make_error(Code::Io, "etcd sent a malformed reply (" + where + ")", std::move(details));
}

Result<std::string> json_b64(const Json& obj, const char* key, const std::string& where)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return std::string();
    if (!it->is_string())
        return malformed(where, std::string("\"") + key + "\" is not a string");
    auto decoded = base64_decode(it->get_ref<const std::string&>());
    if (!decoded)
        return malformed(where, std::string("\"") + key + "\" is not base64");
    return std::move(*decoded);
}

bool json_flag(const Json& obj, const char* key)
{
    auto it = obj.find(key);
    return it != obj.end() && it->is_boolean() && it->get<bool>();
}

const char* compare_target(Compare::Target t)
{
    switch (t) {
    case Compare::Target::Version: return "VERSION";
    case Compare::Target::Create: return "CREATE";
    case Compare::Target::Mod: return "MOD";
    case Compare::Target::Value: return "VALUE";
    case Compare::Target::Lease: return "LEASE";
    }
    return "VERSION";
}

const char* compare_op(Compare::Op op)
{
    switch (op) {
    case Compare::Op::Equal: return "EQUAL";
    case Compare::Op::NotEqual: return "NOT_EQUAL";
    case Compare::Op::Greater: return "GREATER";
    case Compare::Op::Less: return "LESS";
    }
    return "EQUAL";
}

Result<std::vector<KeyValue>> decode_kv_list(const Json& doc, const char* key, const std::string& where)
{
    std::vector<KeyValue> out;
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null())
        return out;
    if (!it->is_array())
        return malformed(where, std::string("\"") + key + "\" is not an array");
    out.reserve(it->size());
    for (const auto& item : *it)
        out.push_back(TRY(decode_kv(item)));
    return out;
}

} // namespace

std::string base64_encode(std::string_view bytes)
{
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
        out += b64_alphabet[(n >> 18) & 63];
        out += b64_alphabet[(n >> 12) & 63];
        out += b64_alphabet[(n >> 6) & 63];
        out += b64_alphabet[n & 63];
    }
    size_t rest = bytes.size() - i;
    if (rest > 0) {
        uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
        if (rest == 2)
            n |= uint32_t(uint8_t(bytes[i + 1])) << 8;
        out += b64_alphabet[(n >> 18) & 63];
        out += b64_alphabet[(n >> 12) & 63];
        out += rest == 2 ? b64_alphabet[(n >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::optional<std::string> base64_decode(std::string_view text)
{
    static const std::array<int8_t, 256> table = [] {
        std::array<int8_t, 256> t {};
        t.fill(-1);
        for (int i = 0; i < 64; ++i)
            t[uint8_t(b64_alphabet[i])] = int8_t(i);
        return t;
    }();
    if (text.size() % 4 != 0)
        return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        bool last = i + 4 == text.size();
        int pad = 0;
        uint32_t n = 0;
        for (size_t j = 0; j < 4; ++j) {
            char c = text[i + j];
            int v;
            if (c == '=' && last && j >= 2) {
                ++pad;
                v = 0;
            } else {
                if (pad > 0) // data after padding
                    return std::nullopt;
                v = table[uint8_t(c)];
                if (v < 0)
                    return std::nullopt;
            }
            n = (n << 6) | uint32_t(v);
        }
        out += char((n >> 16) & 0xff);
        if (pad < 2)
            out += char((n >> 8) & 0xff);
        if (pad < 1)
            out += char(n & 0xff);
    }
    return out;
}

std::string prefix_end(std::string_view prefix)
{
    std::string end(prefix);
    while (!end.empty()) {
        auto last = uint8_t(end.back());
        if (last < 0xff) {
            end.back() = char(last + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');
}

// --- request bodies ------------------------------------------------------------------------

Json encode_range(std::string_view key, std::string_view range_end, int64_t revision, bool count_only)
{
    Json body = { { "key", base64_encode(key) } };
    if (!range_end.empty())
        body["range_end"] = base64_encode(range_end);
    if (revision > 0)
        body["revision"] = std::to_string(revision);
    if (count_only)
        body["count_only"] = true;
    return body;
}

Json encode_put(std::string_view key, std::string_view value, int64_t lease)
{
    Json body = { { "key", base64_encode(key) }, { "value", base64_encode(value) } };
    if (lease != 0)
        body["lease"] = std::to_string(lease);
    return body;
}

Json encode_delete(std::string_view key, std::string_view range_end, bool prev_kv)
{
    Json body = { { "key", base64_encode(key) } };
    if (!range_end.empty())
        body["range_end"] = base64_encode(range_end);
    if (prev_kv)
        body["prev_kv"] = true;
    return body;
}

Json encode_compare(const Compare& c)
{
    Json body = { { "key", base64_encode(c.key) }, { "target", compare_target(c.target) }, { "result", compare_op(c.op) } };
    switch (c.target) {
    case Compare::Target::Version: body["version"] = std::to_string(c.number); break;
    case Compare::Target::Create: body["create_revision"] = std::to_string(c.number); break;
    case Compare::Target::Mod: body["mod_revision"] = std::to_string(c.number); break;
    case Compare::Target::Lease: body["lease"] = std::to_string(c.number); break;
    case Compare::Target::Value: body["value"] = base64_encode(c.value); break;
    }
    return body;
}

Json encode_op(const Op& op)
{
    switch (op.kind) {
    case Op::Kind::Range: return { { "request_range", encode_range(op.key, op.range_end) } };
    case Op::Kind::Put: {
        Json put = encode_put(op.key, op.value, op.lease);
        if (op.prev_kv)
            put["prev_kv"] = true;
        if (op.ignore_lease)
            put["ignore_lease"] = true;
        return { { "request_put", std::move(put) } };
    }
    case Op::Kind::Delete: return { { "request_delete_range", encode_delete(op.key, op.range_end, op.prev_kv) } };
    }
    return Json::object();
}

Json encode_txn(const std::vector<Compare>& compares, const std::vector<Op>& success, const std::vector<Op>& failure)
{
    Json body = Json::object();
    Json& c = body["compare"] = Json::array();
    for (const auto& x : compares)
        c.push_back(encode_compare(x));
    Json& s = body["success"] = Json::array();
    for (const auto& x : success)
        s.push_back(encode_op(x));
    Json& f = body["failure"] = Json::array();
    for (const auto& x : failure)
        f.push_back(encode_op(x));
    return body;
}

Json encode_watch_create(std::string_view key, std::string_view range_end, int64_t start_revision, bool prev_kv)
{
    Json req = { { "key", base64_encode(key) } };
    if (!range_end.empty())
        req["range_end"] = base64_encode(range_end);
    if (start_revision > 0)
        req["start_revision"] = std::to_string(start_revision);
    if (prev_kv)
        req["prev_kv"] = true;
    return { { "create_request", std::move(req) } };
}

// --- replies -------------------------------------------------------------------------------

std::optional<GatewayError> gateway_error(const Json& doc)
{
    if (!doc.is_object())
        return std::nullopt;
    auto it = doc.find("error");
    if (it == doc.end() || it->is_null())
        return std::nullopt;
    GatewayError e;
    if (it->is_object()) { // {"error": {"grpc_code", "http_code", "message", "http_status"}}
        if (auto c = it->find("grpc_code"); c != it->end() && c->is_number_integer())
            e.code = c->get<int>();
        if (auto m = it->find("message"); m != it->end() && m->is_string())
            e.message = m->get<std::string>();
    } else {
        if (auto c = doc.find("code"); c != doc.end() && c->is_number_integer())
            e.code = c->get<int>();
        if (auto m = doc.find("message"); m != doc.end() && m->is_string())
            e.message = m->get<std::string>();
        else if (it->is_string())
            e.message = it->get<std::string>();
    }
    if (e.message.empty())
        e.message = "unspecified error";
    return e;
}

std::string grpc_details(int code)
{
    return "gRPC code " + std::to_string(code) + " (" + grpc_code_name(code) + ")";
}

bool grpc_transient(int code)
{
    return code == 1 || code == 4 || code == 8 || code == 14;
}

const char* grpc_code_name(int code)
{
    static const char* const names[] = { "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
        "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
        "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated" };
    if (code >= 0 && code < int(std::size(names)))
        return names[code];
    return "unknown code";
}

Result<int64_t> json_int64(const Json& obj, const char* key, const std::string& where)
{
    if (!obj.is_object())
        return malformed(where, "not an object");
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return int64_t(0);
    if (it->is_number_integer()) {
        if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX))
            return malformed(where, std::string("\"") + key + "\" is out of range");
        return it->get<int64_t>();
    }
    if (it->is_string()) {
        const auto& s = it->get_ref<const std::string&>();
        int64_t v = 0;
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (ec == std::errc() && end == s.data() + s.size() && !s.empty())
            return v;
    }
    return malformed(where, std::string("\"") + key + "\" is not an int64");
}

Result<KeyValue> decode_kv(const Json& doc)
{
    if (!doc.is_object())
        return malformed("kv", "not an object");
    KeyValue kv;
    kv.key = TRY(json_b64(doc, "key", "kv"));
    kv.value = TRY(json_b64(doc, "value", "kv"));
    kv.create_revision = TRY(json_int64(doc, "create_revision", "kv"));
    kv.mod_revision = TRY(json_int64(doc, "mod_revision", "kv"));
    kv.version = TRY(json_int64(doc, "version", "kv"));
    kv.lease = TRY(json_int64(doc, "lease", "kv"));
    return kv;
}

Result<int64_t> decode_header_revision(const Json& doc)
{
    if (!doc.is_object())
        return malformed("reply", "not an object");
    auto it = doc.find("header");
    if (it == doc.end() || !it->is_object())
        return malformed("reply", "no header");
    return json_int64(*it, "revision", "header");
}

Result<RangeResult> decode_range(const Json& doc)
{
    RangeResult r;
    r.revision = TRY(decode_header_revision(doc));
    r.kvs = TRY(decode_kv_list(doc, "kvs", "range"));
    r.count = TRY(json_int64(doc, "count", "range"));
    r.more = json_flag(doc, "more");
    return r;
}

Result<int64_t> decode_deleted(const Json& doc)
{
    return json_int64(doc, "deleted", "deleterange");
}

Result<TxnResult> decode_txn(const Json& doc)
{
    TxnResult t;
    t.revision = TRY(decode_header_revision(doc));
    t.succeeded = json_flag(doc, "succeeded");
    auto it = doc.find("responses");
    if (it == doc.end() || it->is_null())
        return t;
    if (!it->is_array())
        return malformed("txn", "\"responses\" is not an array");
    for (const auto& item : *it) {
        if (!item.is_object())
            return malformed("txn", "a response is not an object");
        OpResult r;
        // A nested range's header has only a revision; decode_range wants one, so give it the txn's.
        if (auto x = item.find("response_range"); x != item.end() && x->is_object()) {
            r.kind = Op::Kind::Range;
            Json range = *x;
            if (!range.contains("header"))
                range["header"] = { { "revision", std::to_string(t.revision) } };
            r.range = TRY(decode_range(range));
        } else if (auto p = item.find("response_put"); p != item.end() && p->is_object()) {
            r.kind = Op::Kind::Put;
            if (auto prev = p->find("prev_kv"); prev != p->end() && prev->is_object())
                r.prev_kvs.push_back(TRY(decode_kv(*prev)));
        } else if (auto d = item.find("response_delete_range"); d != item.end() && d->is_object()) {
            r.kind = Op::Kind::Delete;
            r.deleted = TRY(decode_deleted(*d));
            r.prev_kvs = TRY(decode_kv_list(*d, "prev_kvs", "txn delete"));
        } else {
            return malformed("txn", "a response of an unknown kind");
        }
        t.responses.push_back(std::move(r));
    }
    return t;
}

Result<Lease> decode_lease_grant(const Json& doc)
{
    Lease l;
    l.id = TRY(json_int64(doc, "ID", "lease grant"));
    l.ttl = TRY(json_int64(doc, "TTL", "lease grant"));
    if (l.id == 0)
        return malformed("lease grant", "no lease ID");
    if (auto e = doc.find("error"); e != doc.end() && e->is_string() && !e->get<std::string>().empty())
        return make_error(Code::Io, "etcd refused the lease: " + e->get<std::string>());
    return l;
}

Result<int64_t> decode_keepalive(const Json& doc)
{
    // The keepalive call is a stream in gRPC; the gateway wraps its one answer in "result".
    const Json* body = &doc;
    if (auto r = doc.find("result"); r != doc.end() && r->is_object())
        body = &*r;
    return json_int64(*body, "TTL", "lease keepalive");
}

Result<WatchMessage> decode_watch_line(std::string_view line)
{
    Json doc = TRY(parse_json(line, Code::Io, "a watch event from etcd"));
    // A code that passes with time (grpc_transient: etcd going away, a timeout, too many
    // requests) is worth a retry, like a stream that breaks. A ResourceExhausted that would come
    // back every time (an oversized message) then loops at the caller's back-off, as an Io did.
    if (auto e = gateway_error(doc))
        return make_error(grpc_transient(e->code) ? Code::TryAgainLater : Code::Io, "etcd ended the watch: " + e->message,
            grpc_details(e->code));
    auto it = doc.find("result");
    if (it == doc.end() || !it->is_object())
        return malformed("watch", "no \"result\"");
    const Json& r = *it;
    WatchMessage m;
    if (auto h = r.find("header"); h != r.end() && h->is_object())
        m.revision = TRY(json_int64(*h, "revision", "watch header"));
    m.created = json_flag(r, "created");
    m.canceled = json_flag(r, "canceled");
    m.compact_revision = TRY(json_int64(r, "compact_revision", "watch"));
    if (auto c = r.find("cancel_reason"); c != r.end() && c->is_string())
        m.cancel_reason = c->get<std::string>();
    if (auto ev = r.find("events"); ev != r.end() && !ev->is_null()) {
        if (!ev->is_array())
            return malformed("watch", "\"events\" is not an array");
        for (const auto& e : *ev) {
            if (!e.is_object())
                return malformed("watch", "an event is not an object");
            WatchEvent w;
            if (auto t = e.find("type"); t != e.end() && !t->is_null()) {
                if (*t == "DELETE")
                    w.type = WatchEvent::Type::Delete;
                else if (*t != "PUT")
                    return malformed("watch", "an event of unknown type " + t->dump());
            }
            auto kv = e.find("kv");
            if (kv == e.end() || !kv->is_object())
                return malformed("watch", "an event without kv");
            w.kv = TRY(decode_kv(*kv));
            if (auto p = e.find("prev_kv"); p != e.end() && p->is_object())
                w.prev_kv = TRY(decode_kv(*p));
            m.events.push_back(std::move(w));
        }
    }
    return m;
}

} // namespace cnm::etcd
