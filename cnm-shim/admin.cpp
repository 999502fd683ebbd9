#include "admin.hpp"

#include "ipam/pool.hpp"

#include "cnm/endpoint.hpp"
#include "cnm/registry.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <cctype>
#include <linux/magic.h>
#include <set>
#include <sstream>
#include <sys/vfs.h>

namespace cnm::shim {

namespace {

Json endpoint_json(const EndpointRecord& r, const std::string& key)
{
    Json doc = r.to_json();
    doc["key"] = key;
    // A record of an earlier boot is void: what it held is free again, the next sweep removes it.
    doc["stale"] = stale_boot(r.boot_id);
    return doc;
}

/// A sandbox exists while its path is a mounted network namespace (nsfs). Docker leaves the
/// path unmounted or removes it when a sandbox dies; /proc/<pid>/ns/net vanishes with the pid.
bool netns_alive(const std::string& path)
{
    struct statfs fs {};
    if (path.empty() || ::statfs(path.c_str(), &fs) != 0)
        return false;
    return static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC || static_cast<unsigned long>(fs.f_type) == PROC_SUPER_MAGIC;
}

std::string pad(const std::string& s, size_t width)
{
    return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' ');
}

std::string table(const std::vector<std::vector<std::string>>& rows)
{
    std::vector<size_t> widths;
    for (auto& row : rows)
        for (size_t i = 0; i < row.size(); ++i) {
            if (widths.size() <= i)
                widths.push_back(0);
            widths[i] = std::max(widths[i], row[i].size() + 2);
        }
    std::string out;
    for (auto& row : rows) {
        std::string line;
        for (size_t i = 0; i < row.size(); ++i)
            line += i + 1 == row.size() ? row[i] : pad(row[i], widths[i]);
        out += line + "\n";
    }
    return out;
}

/// Appends `item` to a comma-separated list (append(), not operator+: GCC 12 warns falsely on the latter).
void add_item(std::string& list, const std::string& item)
{
    if (!list.empty())
        list.append(",");
    list.append(item);
}

/// Docker's 64-hex ids as Docker shows them (12); other ids (CNI container ids) up to 32.
std::string short_id(const std::string& id)
{
    bool hex = !id.empty() && std::all_of(id.begin(), id.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
    size_t keep = hex ? 12 : 32;
    return id.size() > keep ? id.substr(0, keep) : id;
}

/// Text from the state for a DOT string: quotes, backslashes and control bytes dropped, so the
/// only escapes in a label are the "\n" line breaks we put there.
std::string dot_text(const std::string& s)
{
    std::string out;
    for (char c : s)
        if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20)
            out += c;
    return out;
}

std::string dot_quote(const std::string& s)
{
    return "\"" + s + "\"";
}

/// A DOT quoted string (an ID or a label) holding `s` exactly: `"` and `\` escaped (graphviz
/// shows "\\" in a label as one backslash), control and non-ASCII bytes as the text \xNN.
/// Injective, so distinct names stay distinct nodes.
std::string dot_string(const std::string& s)
{
    std::string out = "\"";
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20 || c >= 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\\\x%02x", c);
            out += hex;
        } else {
            out += ch;
        }
    }
    return out + "\"";
}

/// Lines of a label, each escaped, joined by DOT's "\n".
std::string dot_label(const std::vector<std::string>& lines)
{
    std::string body;
    for (auto& l : lines) {
        std::string one = dot_string(l);
        if (!body.empty())
            body += "\\n";
        body += one.substr(1, one.size() - 2);
    }
    return "\"" + body + "\"";
}

/// A row's field as text: strings as they are, numbers printed, anything else empty.
std::string field(const Json& row, const char* key)
{
    if (!row.is_object() || !row.contains(key))
        return "";
    const Json& v = row[key];
    if (v.is_string())
        return v.get<std::string>();
    if (v.is_number())
        return v.dump();
    return "";
}

const Json& rows_of(const Json& j)
{
    static const Json none = Json::array();
    return j.is_array() ? j : none;
}

} // namespace

Result<Json> list_state(Store& store)
{
    Registry registry(store);
    Json networks = Json::array();
    auto names = TRY(registry.list_networks());
    std::sort(names.begin(), names.end());
    for (auto& name : names) {
        auto stored = TRY(registry.load_network(name));
        if (stored.absent())
            continue;
        Json net = stored.ok() ? stored.record.to_json() : Json { { "name", name }, { "corrupt", stored.reason } };
        Json endpoints = Json::array();
        auto keys = TRY(registry.list_endpoints(name));
        std::sort(keys.begin(), keys.end());
        for (auto& key : keys) {
            auto ep = TRY(registry.load_endpoint(name, key));
            if (ep.ok())
                endpoints.push_back(endpoint_json(ep.record, key));
            else if (ep.corrupt())
                endpoints.push_back({ { "key", key }, { "corrupt", ep.reason } });
        }
        net["endpoints"] = endpoints;
        networks.push_back(net);
    }
    return Json { { "networks", networks } };
}

std::string list_table(const Json& listing)
{
    std::vector<std::vector<std::string>> nets = { { "NETWORK", "DRIVER", "FROM", "SUBNETS", "BRIDGE", "DOCKER-IDS", "CNI", "DOCKER" } };
    std::vector<std::vector<std::string>> eps = { { "NETWORK", "FROM", "ENDPOINT", "IFNAME", "ADDRESSES", "SANDBOX", "PHASE" } };
    for (auto& n : listing["networks"]) {
        std::string subnets, ids;
        for (auto& s : n.value("subnets", Json::array()))
            add_item(subnets, s.get<std::string>());
        for (auto& d : n.value("dockerIDs", Json::array()))
            add_item(ids, short_id(d.get<std::string>()));
        int cni = 0, docker = 0;
        for (auto& e : n["endpoints"]) {
            std::string from = e.value("frontend", "?");
            (from == "docker" ? docker : cni)++;
            std::string addrs;
            for (auto& a : e.value("addresses", Json::array()))
                add_item(addrs, a.value("address", ""));
            eps.push_back({ n.value("name", "?"), from, short_id(e.value("containerID", e.value("key", "?"))), e.value("ifname", ""),
                addrs.empty() ? "-" : addrs, e.value("sandbox", "").empty() ? "-" : short_id(e.value("sandbox", "")),
                e.value("stale", false) ? "stale (earlier boot)" : e.value("phase", "corrupt") });
        }
        // options are the creator's keys as given (a conf may hold anything under its own keys)
        std::string bridge = n.contains("options") && n["options"].is_object() && n["options"].contains("bridge") && n["options"]["bridge"].is_string()
            ? n["options"]["bridge"].get<std::string>()
            : "-";
        nets.push_back({ n.value("name", "?"), n.value("driver", "?"), n.value("frontend", "?"), subnets.empty() ? "-" : subnets, bridge,
            ids.empty() ? "-" : ids, std::to_string(cni), std::to_string(docker) });
    }
    return table(nets) + "\n" + table(eps);
}

Result<Json> inspect(Store& store, const std::string& network, const std::string& endpoint)
{
    auto listing = TRY(list_state(store));
    for (auto& n : listing["networks"]) {
        if (n.value("name", "") != network)
            continue;
        if (endpoint.empty())
            return n;
        std::vector<Json> matches;
        for (auto& e : n["endpoints"])
            if (e.value("containerID", "").starts_with(endpoint) || e.value("key", "") == endpoint)
                matches.push_back(e);
        if (matches.size() == 1)
            return matches.front();
        if (matches.empty())
            return make_error(Code::UnknownContainer, "network \"" + network + "\" has no endpoint " + endpoint);
        return make_error(Code::InvalidConfig, "\"" + endpoint + "\" matches " + std::to_string(matches.size()) + " endpoints; give more of the id");
    }
    return make_error(Code::InvalidConfig, "no network \"" + network + "\" in the state directory");
}

Result<Json> gc(Store& store, Kernel* kernel, bool dry_run, int64_t lease_grace_s)
{
    Registry registry(store);
    Json removed = Json::array();
    Json left = Json::array();
    std::vector<std::string> errors;
    for (auto& name : TRY(registry.list_networks())) {
        auto network = TRY(registry.load_network(name));
        std::vector<EndpointRecord> dead;
        for (auto& key : TRY(registry.list_endpoints(name))) {
            auto ep = TRY(registry.load_endpoint(name, key));
            if (!ep.ok())
                continue; // a corrupt record is the plugins' GC's (it frees leases by owner)
            auto& r = ep.record;
            // Docker endpoints between CreateEndpoint and Join have no sandbox yet.
            if (r.netns.empty() || netns_alive(r.netns))
                continue;
            // Gone only when gc can know. A veth's host end lives exactly as long as its peer's
            // netns, whatever mount namespace gc runs in. Without one, a path that is not a netns
            // here may still be one in the mount namespace the ADD ran in: left, saying why.
            std::string veth = r.driver_state.value("hostVeth", "");
            std::string container = r.driver_state.value("containerVeth", "");
            // (A container end still in the host never reached a sandbox: then the path decides.)
            bool peer_in_host = kernel && !container.empty() && TRY(kernel->get_link(host_ns, container));
            if (!veth.empty() && kernel && !peer_in_host) {
                if (TRY(kernel->get_link(host_ns, veth)))
                    continue;
            } else if (veth.empty() && r.mount_ns != 0 && r.mount_ns != current_mount_ns()) {
                left.push_back({ { "network", name }, { "endpoint", r.container_id }, { "ifname", r.ifname },
                    { "netns", r.netns },
                    { "why", "its netns path is not a netns from this mount namespace, and the endpoint was added from another, where it may be; run gc there" } });
                continue;
            }
            dead.push_back(r);
        }
        // The lifecycle's one way to remove what an endpoint recorded: its firewall elements
        // (masquerade, MAC spoof check, ports), its links and its record.
        // CNI endpoints give back their leases by the record; Docker's are Docker's to release.
        Endpoints endpoints(registry, kernel, network.ok() ? find_driver(network.record.driver) : nullptr);
        PoolAddresses leases { ipam::IpamConf {} };
        for (auto& r : dead) {
            removed.push_back({ { "network", name }, { "endpoint", r.container_id }, { "ifname", r.ifname },
                { "frontend", frontend_name(r.frontend) }, { "netns", r.netns } });
            if (dry_run)
                continue;
            if (auto done = endpoints.forget(r, r.frontend == Frontend::Cni ? &leases : nullptr); !done)
                errors.push_back(r.container_id + ": " + done.error().text());
        }
    }
    // Docker leases nothing refers to: not an endpoint's address (any network, any boot: Docker
    // releases a stale endpoint's itself), not a pool's gateway, and older than the grace period
    // (a RequestAddress whose CreateEndpoint is still to come is young).
    Json orphans = Json::array();
    std::set<std::pair<std::string, std::string>> referred;
    std::set<std::string> spaces { "local" };
    for (auto& name : TRY(registry.list_networks())) {
        auto network = TRY(registry.load_network(name));
        if (network.ok())
            spaces.insert(network.record.address_space);
        for (auto& key : TRY(registry.list_endpoints(name)))
            if (auto ep = TRY(registry.load_endpoint(name, key)); ep.ok())
                for (auto& a : ep.record.addresses)
                    referred.insert({ a.pool, a.address.addr.str() });
    }
    for (auto& space : TRY(store.list({ "ipam" })))
        spaces.insert(space);
    ipam::Pools pools(store);
    int64_t now_ns = now_ms() * 1000000;
    for (auto& space : spaces) {
        for (auto& pool : TRY(pools.list(space))) {
            auto gateway = TRY(pools.gateway(pool));
            for (auto& lease : TRY(pools.leases(pool))) {
                if (lease.owner.frontend != Frontend::Docker || referred.count({ pool.str(), lease.address.str() }) || (gateway && *gateway == lease.address))
                    continue;
                Loaded doc = TRY(store.get(pool.lease(lease.address)));
                int64_t age_s = doc.version ? (now_ns - static_cast<int64_t>(doc.version)) / 1000000000 : 0;
                if (age_s < lease_grace_s)
                    continue;
                orphans.push_back({ { "pool", pool.str() }, { "address", lease.address.str() }, { "ageSeconds", age_s } });
                if (!dry_run)
                    if (auto done = pools.release(pool, lease.address, lease.owner); !done)
                        errors.push_back("lease " + lease.address.str() + ": " + done.error().msg);
            }
        }
    }
    // The sandbox documents a build before 2026-12 left (an index nothing reads).
    if (!dry_run)
        if (auto done = registry.drop_legacy_sandboxes(); !done)
            errors.push_back("sandbox documents of an earlier build: " + done.error().msg);
    TRY(store.sync());
    if (!errors.empty()) {
        std::string details;
        for (auto& e : errors)
            details += (details.empty() ? "" : "; ") + e;
        return make_error(Code::Internal, "gc finished with " + std::to_string(errors.size()) + " error(s)", details);
    }
    return Json { { "removed", removed }, { "left", left }, { "dockerLeases", orphans }, { "dryRun", dry_run } };
}

std::string dot(const Json& listing)
{
    std::ostringstream out;
    out << "digraph cnm {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n";
    std::set<std::string> sandboxes;
    for (auto& n : listing["networks"]) {
        std::string name = dot_text(n.value("name", "?"));
        std::string subnets;
        for (auto& s : n.value("subnets", Json::array()))
            subnets.append("\\n").append(dot_text(s.get<std::string>()));
        out << "  " << dot_quote("net:" + name) << " [shape=box, label=" << dot_quote(name + " (" + dot_text(n.value("driver", "?")) + ")" + subnets) << "];\n";
        for (auto& e : n["endpoints"]) {
            std::string id = "ep:" + name + "/" + dot_text(e.value("key", "?"));
            bool docker = e.value("frontend", "") == "docker";
            std::string addrs;
            for (auto& a : e.value("addresses", Json::array()))
                addrs.append("\\n").append(dot_text(a.value("address", "")));
            out << "  " << dot_quote(id) << " [shape=ellipse, color=" << (docker ? "blue" : "darkgreen") << ", label="
                << dot_quote(std::string(docker ? "docker " : "cni ") + dot_text(short_id(e.value("containerID", "?"))) + "/" + dot_text(e.value("ifname", "")) + addrs) << "];\n";
            out << "  " << dot_quote("net:" + name) << " -> " << dot_quote(id) << ";\n";
            std::string sandbox = dot_text(e.value("sandbox", ""));
            if (!sandbox.empty()) {
                if (sandboxes.insert(sandbox).second)
                    out << "  " << dot_quote("sb:" + sandbox) << " [shape=hexagon, label=" << dot_quote("sandbox " + short_id(sandbox)) << "];\n";
                out << "  " << dot_quote(id) << " -> " << dot_quote("sb:" + sandbox) << ";\n";
            }
        }
    }
    out << "}\n";
    return out.str();
}

std::string cluster_dot(const Json& hosts, const Json& blocks, const Json& tunnels, const std::string& self)
{
    std::ostringstream out;
    out << "digraph cnm_cluster {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n";
    std::set<std::string> drawn;                // host nodes
    std::map<std::string, std::string> by_vtep; // VTEP address → node
    auto host = [&](const std::string& node, const std::string& vtep, const std::string& lease) {
        if (!drawn.insert(node).second)
            return;
        bool alive = lease == "alive";
        std::vector<std::string> label { node };
        if (!vtep.empty())
            label.push_back("vtep " + vtep);
        label.push_back("lease " + (lease.empty() ? std::string("?") : lease));
        out << "  " << dot_string("host:" + node) << " [shape=box, label=" << dot_label(label)
            << (alive ? "" : ", style=dashed, color=gray40") << (node == self ? ", penwidth=2" : "") << "];\n";
    };
    for (auto& h : rows_of(hosts)) {
        std::string node = field(h, "node");
        if (node.empty())
            continue;
        host(node, field(h, "vtep"), field(h, "lease"));
        if (!field(h, "vtep").empty())
            by_vtep.emplace(field(h, "vtep"), node);
    }
    for (auto& b : rows_of(blocks)) {
        std::string node = field(b, "node"), cidr = field(b, "block"), network = field(b, "network");
        if (node.empty() || cidr.empty())
            continue;
        host(node, field(b, "vtep"), "expired"); // a block's holder that has no host record
        if (!field(b, "vtep").empty())
            by_vtep.emplace(field(b, "vtep"), node);
        std::vector<std::string> label { cidr, "network " + network };
        if (!field(b, "used").empty())
            label.push_back("used " + field(b, "used") + ", free " + field(b, "free"));
        std::string id = "block:" + network + "/" + cidr;
        out << "  " << dot_string(id) << " [shape=ellipse, label=" << dot_label(label) << "];\n";
        out << "  " << dot_string("host:" + node) << " -> " << dot_string(id) << ";\n";
    }
    // (network, remote VTEP) → the blocks routed through that tunnel
    std::map<std::pair<std::string, std::string>, std::vector<std::string>> tunnel;
    for (auto& t : rows_of(tunnels)) {
        std::string vtep = field(t, "vtep"), block = field(t, "block");
        if (vtep.empty() || block.empty())
            continue;
        tunnel[{ field(t, "network"), vtep }].push_back(block);
    }
    if (!tunnel.empty() && !self.empty())
        host(self, "", "");
    for (auto& [key, routed] : tunnel) {
        auto& [network, vtep] = key;
        std::string to;
        if (auto it = by_vtep.find(vtep); it != by_vtep.end()) {
            to = "host:" + it->second;
        } else {
            to = "vtep:" + vtep; // a VTEP no host or block names (a stale tunnel)
            if (drawn.insert(to).second)
                out << "  " << dot_string(to) << " [shape=box, style=dotted, label=" << dot_label({ "unknown", "vtep " + vtep }) << "];\n";
        }
        std::vector<std::string> label { "tunnel " + network + " to " + vtep };
        label.insert(label.end(), routed.begin(), routed.end());
        out << "  " << dot_string("host:" + self) << " -> " << dot_string(to) << " [style=bold, color=blue, label=" << dot_label(label) << "];\n";
    }
    out << "}\n";
    return out.str();
}

} // namespace cnm::shim
