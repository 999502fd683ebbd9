#include "etcd/client.hpp"

#include <charconv>

namespace cnm::etcd {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr size_t max_watch_line = 64u << 20;

std::string ms_str(milliseconds d)
{
    return std::to_string(d.count()) + " ms";
}

// `unknown`: said of a write whose answer does not settle whether etcd applied it (Canceled,
// DeadlineExceeded: the call may have gone through before it ended).
Error etcd_refused(const std::string& endpoint, const std::string& path, const GatewayError& e, const char* unknown)
{
    bool unsettled = e.code == 1 || e.code == 4;
    return make_error(grpc_transient(e.code) ? Code::TryAgainLater : Code::Io,
        "etcd at " + endpoint + " refused " + path + ": " + e.message + (unsettled ? unknown : ""),
        grpc_details(e.code));
}

Result<std::string> normalize_endpoint(std::string ep)
{
    while (!ep.empty() && ep.back() == '/')
        ep.pop_back();
    if (ep.rfind("https://", 0) == 0)
        return make_error(Code::InvalidConfig, "etcd endpoint " + ep + ": only http:// endpoints are supported");
    if (ep.rfind("http://", 0) != 0) {
        if (ep.find("://") != std::string::npos)
            return make_error(Code::InvalidConfig, "etcd endpoint " + ep + ": only http:// endpoints are supported");
        ep = "http://" + ep;
    }
    std::string_view rest = std::string_view(ep).substr(7);
    auto colon = rest.rfind(':');
    bool bad = rest.empty() || rest.find('/') != std::string_view::npos || rest.find_first_of(" \t@?#") != std::string_view::npos
        || colon == std::string_view::npos || colon == 0;
    if (!bad) {
        unsigned port = 0;
        auto p = rest.substr(colon + 1);
        auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
        bad = ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535;
    }
    if (bad)
        return make_error(Code::InvalidConfig, "etcd endpoint \"" + ep + "\" is not http://host:port");
    return ep;
}

} // namespace

std::vector<std::string> split_endpoints(std::string_view list)
{
    std::vector<std::string> out;
    size_t i = 0;
    while (i < list.size()) {
        size_t j = list.find_first_of(", \t\n", i);
        if (j == std::string_view::npos)
            j = list.size();
        if (j > i)
            out.emplace_back(list.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

std::optional<int> grpc_code(const Error& error)
{
    constexpr std::string_view prefix = "gRPC code "; // as grpc_details writes it
    if (error.details.rfind(prefix, 0) != 0)
        return std::nullopt;
    int code = 0;
    const char* p = error.details.data() + prefix.size();
    auto [end, ec] = std::from_chars(p, error.details.data() + error.details.size(), code);
    if (ec != std::errc() || end == p)
        return std::nullopt;
    return code;
}

Result<std::unique_ptr<Client>> Client::create(Options options, std::unique_ptr<Transport> transport)
{
    if (options.endpoints.empty())
        return make_error(Code::InvalidConfig, "no etcd endpoint given");
    for (auto& ep : options.endpoints)
        ep = TRY(normalize_endpoint(ep));
    if (options.timeout.count() <= 0 || options.connect_timeout.count() <= 0)
        return make_error(Code::InvalidConfig, "etcd timeouts must be positive");
    if (!transport)
        transport = make_http_transport();
    return std::unique_ptr<Client>(new Client(std::move(options), std::move(transport)));
}

Client::Client(Options options, std::unique_ptr<Transport> transport)
    : m_options(std::move(options))
    , m_transport(std::move(transport))
{
}

std::string Client::endpoint_list() const
{
    std::string out;
    for (const auto& ep : m_options.endpoints)
        out += (out.empty() ? "" : ", ") + ep;
    return out;
}

Result<Json> Client::call(const char* path, const Json& body, Kind kind)
{
    const auto deadline = Clock::now() + m_options.timeout;
    const std::string text = body.dump();
    const size_t n = m_options.endpoints.size();
    const size_t start = m_current.load();
    std::string failures;
    size_t tried = 0;
    for (size_t i = 0; i < n; ++i) {
        const size_t idx = (start + i) % n;
        const std::string& ep = m_options.endpoints[idx];
        auto left = duration_cast<milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) // less than a millisecond is no time to connect in
            break;
        ++tried;
        HttpReply reply = m_transport->post({ ep, path, text, deadline, std::min(m_options.connect_timeout, left) });
        auto note = [&](const std::string& why) { failures += (failures.empty() ? "" : "; ") + ep + ": " + why; };
        const char* unknown = kind == Kind::Write ? "; the change may or may not have been applied" : "";
        switch (reply.outcome) {
        case HttpReply::Outcome::NotSent:
            note(reply.detail);
            continue;
        case HttpReply::Outcome::Timeout:
            return make_error(Code::TryAgainLater,
                "etcd at " + ep + " did not answer " + path + " within " + ms_str(m_options.timeout) + unknown, reply.detail);
        case HttpReply::Outcome::Broken:
        case HttpReply::Outcome::Canceled:
            if (kind == Kind::Read) {
                note(reply.detail);
                continue;
            }
            return make_error(Code::TryAgainLater, "the connection to etcd at " + ep + " broke during " + path + unknown, reply.detail);
        case HttpReply::Outcome::Ok:
            break;
        }
        auto doc = parse_json(reply.body, Code::Io, "the answer of etcd at " + ep + " to " + path);
        if (!doc) {
            if (reply.status != 200)
                return make_error(Code::Io, "etcd at " + ep + " answered " + path + " with HTTP " + std::to_string(reply.status),
                    reply.body.substr(0, 200));
            return doc.release_error();
        }
        if (auto e = gateway_error(*doc)) {
            if (grpc_transient(e->code) && kind == Kind::Read) { // this member cannot serve now; another may
                note(e->message);
                continue;
            }
            return etcd_refused(ep, path, *e, unknown);
        }
        if (reply.status != 200)
            return make_error(Code::Io, "etcd at " + ep + " answered " + path + " with HTTP " + std::to_string(reply.status),
                reply.body.substr(0, 200));
        m_current.store(idx);
        return doc.release_value();
    }
    std::string msg = "etcd is unreachable at " + endpoint_list();
    if (tried < n)
        msg += " (tried " + std::to_string(tried) + " of " + std::to_string(n) + " within " + ms_str(m_options.timeout) + ")";
    return make_error(Code::TryAgainLater, msg, failures);
}

Result<std::optional<KeyValue>> Client::get(const std::string& key)
{
    auto r = TRY(range(key, {}));
    if (r.kvs.empty())
        return std::optional<KeyValue>();
    return std::optional<KeyValue>(std::move(r.kvs.front()));
}

Result<RangeResult> Client::range_prefix(const std::string& prefix)
{
    return range(prefix, prefix_end(prefix));
}

Result<RangeResult> Client::range(const std::string& key, const std::string& range_end, int64_t revision)
{
    Json doc = TRY(call("/v3/kv/range", encode_range(key, range_end, revision), Kind::Read));
    return decode_range(doc);
}

Result<int64_t> Client::put(const std::string& key, const std::string& value, int64_t lease)
{
    Json doc = TRY(call("/v3/kv/put", encode_put(key, value, lease), Kind::Write));
    return decode_header_revision(doc);
}

Result<int64_t> Client::del(const std::string& key)
{
    Json doc = TRY(call("/v3/kv/deleterange", encode_delete(key), Kind::Write));
    return decode_deleted(doc);
}

Result<int64_t> Client::del_prefix(const std::string& prefix)
{
    Json doc = TRY(call("/v3/kv/deleterange", encode_delete(prefix, prefix_end(prefix)), Kind::Write));
    return decode_deleted(doc);
}

Result<TxnResult> Client::txn(const std::vector<Compare>& compares, const std::vector<Op>& success, const std::vector<Op>& failure)
{
    Json doc = TRY(call("/v3/kv/txn", encode_txn(compares, success, failure), Kind::Write));
    return decode_txn(doc);
}

Result<CasResult> Client::conditional(const std::string& key, const Compare& compare, Op on_success)
{
    // The failure branch reads the key, so a loser learns the winner's kv in the same round trip.
    TxnResult t = TRY(txn({ compare }, { std::move(on_success) }, { Op::get(key) }));
    CasResult r;
    r.succeeded = t.succeeded;
    r.revision = t.revision;
    if (!t.succeeded && !t.responses.empty() && !t.responses.front().range.kvs.empty())
        r.current = t.responses.front().range.kvs.front();
    return r;
}

Result<CasResult> Client::create(const std::string& key, const std::string& value, int64_t lease)
{
    return conditional(key, Compare::version(key, Compare::Op::Equal, 0), Op::put(key, value, lease));
}

Result<CasResult> Client::put_if_mod_revision(const std::string& key, const std::string& value, int64_t mod_revision, int64_t lease)
{
    return conditional(key, Compare::mod_revision(key, Compare::Op::Equal, mod_revision), Op::put(key, value, lease));
}

Result<CasResult> Client::delete_if_mod_revision(const std::string& key, int64_t mod_revision)
{
    return conditional(key, Compare::mod_revision(key, Compare::Op::Equal, mod_revision), Op::del(key));
}

Result<Lease> Client::lease_grant(int64_t ttl_seconds)
{
    if (ttl_seconds <= 0)
        return make_error(Code::InvalidConfig, "a lease TTL must be positive, not " + std::to_string(ttl_seconds));
    Json doc = TRY(call("/v3/lease/grant", Json { { "TTL", std::to_string(ttl_seconds) } }, Kind::Write));
    return decode_lease_grant(doc);
}

Result<int64_t> Client::lease_keepalive(int64_t id)
{
    // Renewing twice is harmless, so a keepalive may be retried on another member.
    Json doc = TRY(call("/v3/lease/keepalive", Json { { "ID", std::to_string(id) } }, Kind::Read));
    return decode_keepalive(doc);
}

Result<void> Client::lease_revoke(int64_t id)
{
    auto doc = call("/v3/lease/revoke", Json { { "ID", std::to_string(id) } }, Kind::Read);
    if (!doc && grpc_code(doc.error()) == 5) // not found: already expired or revoked
        return {};
    if (!doc)
        return doc.release_error();
    return {};
}

Result<void> Client::compact(int64_t revision)
{
    (void)TRY(call("/v3/kv/compaction", Json { { "revision", std::to_string(revision) }, { "physical", true } }, Kind::Write));
    return {};
}

Result<WatchEnd> Client::watch(const std::string& prefix, int64_t from_revision, const WatchCallback& callback,
    std::stop_token stop, WatchOptions options)
{
    Json body = encode_watch_create(prefix, prefix_end(prefix), from_revision, options.prev_kv);
    body["create_request"]["progress_notify"] = true;
    const std::string text = body.dump();

    WatchEnd end;
    end.last_revision = from_revision > 0 ? from_revision - 1 : 0;
    std::optional<Error> failure;
    bool finished = false; // compacted, or the callback asked to stop
    bool received = false;
    std::string buffer;

    auto handle_line = [&](std::string_view line) {
        if (line.find_first_not_of(" \t\r") == std::string_view::npos)
            return true;
        auto m = decode_watch_line(line);
        if (!m) {
            failure = m.release_error();
            return false;
        }
        if (m->canceled) {
            if (m->compact_revision > 0) {
                end.reason = WatchEnd::Reason::Compacted;
                end.compact_revision = m->compact_revision;
                finished = true;
            } else {
                failure = make_error(Code::Io, "etcd canceled the watch on \"" + prefix + "\"",
                    m->cancel_reason.empty() ? "no reason given" : m->cancel_reason);
            }
            return false;
        }
        // The created answer's header is the store's revision *now*, before the backlog from
        // from_revision arrives; only event batches and progress notifications say "delivered".
        if (m->created)
            return true;
        end.last_revision = std::max(end.last_revision, m->revision);
        if (!m->events.empty() && !callback(*m)) {
            finished = true;
            return false;
        }
        return true;
    };
    OnData on_data = [&](std::string_view chunk) {
        received = true;
        buffer.append(chunk);
        size_t pos;
        while ((pos = buffer.find('\n')) != std::string::npos) {
            std::string line = buffer.substr(0, pos);
            buffer.erase(0, pos + 1);
            if (!handle_line(line))
                return false;
        }
        if (buffer.size() > max_watch_line) {
            failure = make_error(Code::Io, "etcd sent a watch message larger than " + std::to_string(max_watch_line >> 20) + " MiB");
            return false;
        }
        return true;
    };

    const size_t n = m_options.endpoints.size();
    const size_t start = m_current.load();
    std::string failures;
    for (size_t i = 0; i < n; ++i) {
        if (stop.stop_requested())
            return end;
        const size_t idx = (start + i) % n;
        const std::string& ep = m_options.endpoints[idx];
        HttpRequest request { ep, "/v3/watch", text, Clock::now() + m_options.connect_timeout, m_options.connect_timeout, options.idle_timeout };
        HttpReply reply = m_transport->stream(request, on_data, stop);
        // An error body may come without a final newline.
        if (!finished && !failure && !buffer.empty() && reply.outcome != HttpReply::Outcome::Canceled) {
            std::string rest = std::move(buffer);
            buffer.clear();
            (void)handle_line(rest);
        }
        if (finished) {
            m_current.store(idx);
            return end;
        }
        if (failure && failure->code == Code::TryAgainLater) // etcd ended the stream with a code that passes (grpc_transient)
            return make_error(Code::TryAgainLater,
                "the watch stream from etcd at " + ep + " broke after revision " + std::to_string(end.last_revision)
                    + "; list again and watch from there",
                failure->msg + " (" + failure->details + ")");
        if (failure)
            return std::move(*failure).context("watching \"" + prefix + "\" on " + ep);
        if (reply.outcome == HttpReply::Outcome::Canceled)
            return end;
        if (!received && (reply.outcome == HttpReply::Outcome::NotSent || reply.outcome == HttpReply::Outcome::Broken)) {
            failures += (failures.empty() ? "" : "; ") + ep + ": " + reply.detail;
            continue;
        }
        return make_error(Code::TryAgainLater,
            "the watch stream from etcd at " + ep + " broke after revision " + std::to_string(end.last_revision)
                + "; list again and watch from there",
            reply.detail);
    }
    return make_error(Code::TryAgainLater, "etcd is unreachable at " + endpoint_list(), failures);
}

} // namespace cnm::etcd
