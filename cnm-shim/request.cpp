#include "request.hpp"

#include "cni/env.hpp"
#include "cnm/blocks.hpp"
#include "cnm/registry.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <sys/random.h>

namespace cnm::shim {

namespace {

bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/// Docker's names for some of the drivers' keys. `kind` empty: every driver that has the key.
struct Spelling {
    std::string_view docker;
    std::string_view key;
    std::string_view kind;
};
constexpr Spelling spellings[] = {
    { "com.docker.network.bridge.name", "bridge", "bridge" },
    { "com.docker.network.bridge.name", "bridge", "vxlan" },
    { "com.docker.network.bridge.enable_ip_masquerade", "ipMasq", "bridge" },
    { "com.docker.network.driver.mtu", "mtu", "" },
    { "parent", "master", "" },
    { "macvlan_mode", "mode", "macvlan" },
    { "ipvlan_mode", "mode", "ipvlan" },
    { "ipvlan_flag", "flag", "ipvlan" },
};

Result<Json> typed_option(const std::string& key, const Json& value, const Json& like)
{
    std::string text = value.is_string() ? value.get<std::string>() : value.dump();
    auto wrong = [&](const char* what) {
        return make_error(Code::InvalidConfig, "option \"" + key + "\" = \"" + text + "\" is not " + what);
    };
    if (like.is_boolean()) {
        if (text == "true" || text == "1")
            return Json(true);
        if (text == "false" || text == "0")
            return Json(false);
        return wrong("a boolean (true or false)");
    }
    if (like.is_number()) {
        if (text.empty() || text.size() > 9 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
            return wrong("a non-negative integer");
        return Json(std::stol(text));
    }
    if (text.empty())
        return wrong("a name");
    return Json(text);
}

} // namespace

Error bad_request(const std::string& method, const std::string& msg)
{
    return make_error(Code::InvalidConfig, method + ": " + msg);
}

Result<std::string> id_field(const Json& req, const char* key, const std::string& method)
{
    auto value = TRY(json_string(req, key, method));
    if (!value || value->empty())
        return bad_request(method, std::string("\"") + key + "\" is required");
    if (value->size() > 128 || (*value)[0] == '.' || !std::all_of(value->begin(), value->end(), id_char))
        return bad_request(method, std::string("\"") + key + "\" is not a valid id");
    return *value;
}

std::string string_of(const Json& o, const char* key, const std::string& fallback)
{
    return o.is_object() && o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : fallback;
}

std::string join_list(const std::vector<std::string>& items)
{
    std::string out;
    for (auto& s : items)
        out += (out.empty() ? "" : ", ") + s;
    return "[" + out + "]";
}

std::optional<std::string> docker_spelling(std::string_view kind, const std::string& docker_key)
{
    for (auto& s : spellings)
        if (s.docker == docker_key && (s.kind.empty() || s.kind == kind))
            return std::string(s.key);
    return std::nullopt;
}

Result<NetworkOptions> parse_network_options(const Json& generic)
{
    NetworkOptions out;
    if (generic.is_null())
        return out;
    if (!generic.is_object())
        return make_error(Code::InvalidConfig, "com.docker.network.generic must be an object of options");
    for (auto& [key, value] : generic.items())
        if (!value.is_string() && !value.is_boolean() && !value.is_number())
            return make_error(Code::InvalidConfig, "option \"" + key + "\" must be a string");
    auto text_of = [](const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    if (generic.contains("cnm.driver"))
        out.driver = text_of(generic["cnm.driver"]);
    const Driver* driver = find_driver(out.driver);
    if (!driver)
        return make_error(Code::InvalidConfig, "cnm.driver = \"" + out.driver + "\" is not supported through Docker (bridge, macvlan, ipvlan or vxlan)");
    // The network's keys, and those of one attachment (mtu, hairpinMode), which Docker's -o sets
    // for every Docker endpoint of the network.
    Json defaults = driver->network_defaults();
    for (auto& [k, v] : driver->attachment_defaults().items())
        defaults[k] = v;
    const auto& choices = driver->choices();
    for (auto& [key, value] : generic.items()) {
        std::string text = text_of(value);
        if (key == "cnm.driver")
            continue;
        if (key == "cnm.network") {
            if (!cni::valid_network_name(text) || text.size() > 200)
                return make_error(Code::InvalidConfig, "cnm.network = \"" + text + "\" is not a valid network name",
                    "a name must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");
            out.name = text;
            continue;
        }
        std::string cni_key = docker_spelling(out.driver, key).value_or(key);
        if (!defaults.contains(cni_key)) {
            std::string known = "cnm.network, cnm.driver";
            for (auto& [k, v] : defaults.items())
                known += ", " + k;
            for (auto& s : spellings)
                if ((s.kind.empty() || s.kind == out.driver) && defaults.contains(std::string(s.key)))
                    known += ", " + std::string(s.docker);
            return make_error(Code::InvalidConfig, "unknown " + out.driver + " network option \"" + key + "\"", "known options: " + known);
        }
        if (out.keys.contains(cni_key))
            return make_error(Code::InvalidConfig, "option \"" + cni_key + "\" is given twice (under two spellings)");
        Json typed = TRY(typed_option(key, value, defaults[cni_key]));
        if (auto allowed = choices.find(cni_key); allowed != choices.end()
            && std::find(allowed->second.begin(), allowed->second.end(), text) == allowed->second.end()) {
            std::string known;
            for (auto& c : allowed->second)
                known += (known.empty() ? "" : ", ") + c;
            return make_error(Code::InvalidConfig, "option \"" + key + "\" = \"" + text + "\" is not one of " + known);
        }
        if (cni_key == "master" && !valid_ifname(text))
            return make_error(Code::InvalidConfig, "parent \"" + text + "\" is not a usable interface name");
        out.keys[cni_key] = typed;
    }
    // A cluster network has one name on every host (Docker's ids are per host), and the cluster
    // subnet is Docker's --subnet.
    if (out.driver == "vxlan") {
        if (!out.name)
            return make_error(Code::InvalidConfig, "a vxlan network must name its cluster network: -o cnm.network=NAME (and --ipam-opt cnm.network=NAME)",
                "the name is what binds the Docker networks of every host and the CNI confs to one cluster network");
        for (const char* key : { "subnet", "subnet6", "blockSize6" })
            if (out.keys.contains(key))
                return make_error(Code::InvalidConfig, std::string("option \"") + key + "\" cannot be given with -o: the cluster subnet is docker network create's --subnet");
    }
    return out;
}

std::string cluster_space(const std::string& network)
{
    return "cluster:" + network;
}

std::optional<std::string> cluster_space_network(const std::string& space)
{
    if (!space.starts_with("cluster:") || space.size() == 8)
        return std::nullopt;
    return space.substr(8);
}

Result<PoolOptions> parse_pool_options(const Json& options)
{
    PoolOptions out;
    if (options.is_null())
        return out;
    if (!options.is_object())
        return make_error(Code::InvalidConfig, "RequestPool: \"Options\" must be an object");
    static const char* const fact_keys[] = { "vni", "blockSize", "port", "mtu" };
    auto is_fact = [](const std::string& key) {
        return std::any_of(std::begin(fact_keys), std::end(fact_keys), [&](const char* k) { return key == k; });
    };
    for (auto& [key, value] : options.items()) {
        if (!value.is_string())
            return make_error(Code::InvalidConfig, "--ipam-opt " + key + " must be a string");
        std::string text = value.get<std::string>();
        if (key == "cnm.network") {
            if (!cni::valid_network_name(text) || text.size() > 200)
                return make_error(Code::InvalidConfig, "--ipam-opt cnm.network must name a network (^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$)");
            out.network = text;
        } else if (key == "cnm.driver") {
            if (!find_driver(text))
                return make_error(Code::InvalidConfig, "--ipam-opt cnm.driver = \"" + text + "\" is not a driver (bridge, macvlan, ipvlan or vxlan)");
            out.driver = text;
        } else if (is_fact(key)) {
            out.facts[key] = TRY(typed_option(key, value, Json(0)));
        } else {
            return make_error(Code::InvalidConfig, "unknown IPAM option \"" + key + "\"",
                "cnm takes cnm.network=NAME; for a cluster network new to the cluster also cnm.driver=vxlan, vni, blockSize, port, mtu");
        }
    }
    if (!out.facts.empty() && out.driver.value_or("vxlan") != "vxlan")
        return make_error(Code::InvalidConfig, "--ipam-opt " + out.facts.begin().key() + " is a vxlan option, but cnm.driver is \"" + *out.driver + "\"");
    if (!out.facts.empty() && !out.driver)
        out.driver = "vxlan";
    if (out.driver == "vxlan" && !out.network)
        return make_error(Code::InvalidConfig, "a cluster (vxlan) pool needs --ipam-opt cnm.network=NAME, the cluster network's name");
    if (!out.facts.empty())
        TRY(FactsWanted::parse(out.facts));
    return out;
}

Result<std::vector<PoolData>> parse_ipam_data(const Json& req)
{
    std::vector<PoolData> out;
    for (const char* key : { "IPv4Data", "IPv6Data" }) {
        Json list = TRY(json_array(req, key, "CreateNetwork"));
        if (list.is_null())
            continue;
        for (auto& item : list) {
            if (!item.is_object())
                return bad_request("CreateNetwork", std::string(key) + " entries must be objects");
            std::string space = TRY(json_string(item, "AddressSpace", key)).value_or("");
            std::string pool = TRY(json_string(item, "Pool", key)).value_or("");
            if (space != docker_space)
                return make_error(Code::InvalidConfig, "pool " + pool + " comes from address space \"" + space
                        + "\", not cnm's: create the network with --ipam-driver cnm");
            auto net = IpNet::parse(pool);
            if (!net || !net->is_network())
                return bad_request("CreateNetwork", std::string(key) + " pool \"" + pool + "\" is not a subnet");
            PoolData data { { space, *net }, std::nullopt };
            if (auto gw = TRY(json_string(item, "Gateway", key)); gw && !gw->empty()) {
                data.gateway = IpNet::parse(*gw);
                if (!data.gateway || !net->contains(data.gateway->addr))
                    return bad_request("CreateNetwork", "gateway \"" + *gw + "\" is not an address of " + pool);
            }
            out.push_back(data);
        }
    }
    if (out.empty())
        return make_error(Code::InvalidConfig, "the network has no subnet: create it with --ipam-driver cnm --subnet <cidr>");
    return out;
}

Result<ipam::PoolId> pool_field(const Json& req, const std::string& method)
{
    auto text = TRY(json_string(req, "PoolID", method)).value_or("");
    auto pool = ipam::PoolId::parse(text);
    if (!pool || (pool->space != docker_space && !pool->space.starts_with("cni:") && !cluster_space_network(pool->space))
        || !pool->subnet.is_network())
        return bad_request(method, "\"" + text + "\" is not a cnm pool id");
    return *pool;
}

Result<std::vector<firewall::PortMap>> parse_port_maps(const Json& options, const EndpointRecord& record)
{
    std::vector<firewall::PortMap> out;
    if (!options.is_object() || !options.contains("com.docker.network.portmap") || options["com.docker.network.portmap"].is_null())
        return out;
    const Json& list = options["com.docker.network.portmap"];
    if (!list.is_array())
        return make_error(Code::InvalidConfig, "com.docker.network.portmap must be a list");
    for (auto& p : list) {
        if (!p.is_object())
            return make_error(Code::InvalidConfig, "com.docker.network.portmap entries must be objects");
        auto proto = TRY(json_int(p, "Proto", "portmap", 0, 255)).value_or(6);
        auto port = TRY(json_int(p, "Port", "portmap", 1, 65535));
        auto host_port = TRY(json_int(p, "HostPort", "portmap", 0, 65535)).value_or(0);
        std::string host_ip = TRY(json_string(p, "HostIP", "portmap")).value_or("");
        std::string ip = TRY(json_string(p, "IP", "portmap")).value_or("");
        if (!firewall::proto_name(static_cast<int>(proto)))
            return make_error(Code::InvalidConfig, "cannot publish protocol " + std::to_string(proto) + " (tcp, udp or sctp only)");
        if (!port)
            return make_error(Code::InvalidConfig, "a published port has no container port");
        if (host_port == 0)
            return make_error(Code::InvalidConfig, "cnm publishes only explicit host ports: use -p HOSTPORT:" + std::to_string(*port),
                "Docker leaves choosing a free host port to the driver, and cnm does not pick one");
        firewall::PortMap base;
        base.proto = static_cast<int>(proto);
        base.port = static_cast<uint16_t>(*port);
        base.host_port = static_cast<uint16_t>(host_port);
        if (!host_ip.empty() && host_ip != "0.0.0.0" && host_ip != "::") {
            auto addr = IpAddr::parse(host_ip);
            if (!addr)
                return make_error(Code::InvalidConfig, "published host address \"" + host_ip + "\" is not an IP address");
            bool loopback = addr->family == 4 ? (addr->value >> 24) == 127 : addr->str() == "::1";
            if (loopback)
                return make_error(Code::InvalidConfig, "cannot publish on the loopback address " + host_ip,
                    "DNAT from loopback needs route_localnet and a hairpin SNAT, which cnm does not set up; publish on another address");
            base.host_ip = addr;
        }
        // The container side: the endpoint's address of the family (both families for "any").
        bool mapped = false;
        for (auto& a : record.addresses) {
            if (base.host_ip && base.host_ip->family != a.address.addr.family)
                continue;
            if (!ip.empty() && ip != a.address.addr.str())
                continue;
            if (host_ip.empty() || host_ip == "0.0.0.0" || host_ip == "::")
                if ((host_ip == "0.0.0.0" && a.address.addr.family != 4) || (host_ip == "::" && a.address.addr.family != 6))
                    continue;
            auto m = base;
            m.container = a.address.addr;
            out.push_back(m);
            mapped = true;
        }
        if (!mapped)
            return make_error(Code::InvalidConfig, "cannot publish port " + std::to_string(*port) + ": the endpoint has no address of that family");
    }
    return out;
}

std::string random_mac()
{
    unsigned char b[6] {};
    if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b))
        for (auto& x : b)
            x = static_cast<unsigned char>(std::rand());
    b[0] = static_cast<unsigned char>((b[0] & 0xfe) | 0x02); // unicast, locally administered
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return buf;
}

std::string container_link_name(std::string_view endpoint_id)
{
    uint64_t hash = 14695981039346656037ull; // FNV-1a, 64 bits
    for (unsigned char c : endpoint_id) {
        hash ^= c;
        hash *= 1099511628211ull;
    }
    char buf[16];
    std::snprintf(buf, sizeof buf, "cnc%011llx", static_cast<unsigned long long>(hash & ((1ull << 44) - 1)));
    return buf;
}

Key binding_key(const std::string& docker_id)
{
    return { "docker", "networks", docker_id + ".json" };
}

Key parent_key(const std::string& parent)
{
    return { "docker", "parents", id_key(parent) + ".json" };
}

std::string endpoint_key_of(const std::string& endpoint_id)
{
    return endpoint_key(endpoint_id, docker_ifname);
}

} // namespace cnm::shim
