#include "driver.hpp"

#include "cni/env.hpp"
#include "cnm/options.hpp"
#include "drivers/ipvlan.hpp"
#include "drivers/macvlan.hpp"
#include "ipam/pool.hpp"
#include "util/guard.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <sys/random.h>

namespace cnm::shim {

namespace {

using ipam::Owner;
using ipam::PoolId;
using ipam::Pools;

// Docker's IPAM requests name no endpoint, so every lease it takes has this one owner; Docker
// releases by address. CNI's GC only ever frees leases of its own network, never these.
const Owner docker_owner { "", "docker", "", Frontend::Docker };

Error bad_request(const std::string& method, const std::string& msg)
{
    return make_error(Code::InvalidConfig, method + ": " + msg);
}

bool id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/// A Docker id field: required, 1–128 of [A-Za-z0-9_.-], not starting with '.'.
Result<std::string> id_field(const Json& req, const char* key, const std::string& method)
{
    auto value = TRY(json_string(req, key, method));
    if (!value || value->empty())
        return bad_request(method, std::string("\"") + key + "\" is required");
    if (value->size() > 128 || (*value)[0] == '.' || !std::all_of(value->begin(), value->end(), id_char))
        return bad_request(method, std::string("\"") + key + "\" is not a valid id");
    return *value;
}

Key binding_key(const std::string& docker_id)
{
    return { "docker", "networks", docker_id + ".json" };
}

/// Parents (VLAN sub-interfaces) the shim created, so the last network on one removes it.
Key parent_key(const std::string& parent)
{
    return { "docker", "parents", id_key(parent) + ".json" };
}

std::string endpoint_key_of(const std::string& endpoint_id)
{
    return endpoint_key(endpoint_id, docker_ifname);
}

/// The -o options of `docker network create`, as the CNI conf's keys with their JSON types.
struct NetworkOptions {
    std::optional<std::string> name;
    std::string driver = "bridge";
    Json keys = Json::object();
};

/// What `-o` takes for each driver: the CNI conf's network-level keys (with their defaults, which
/// also give each value's JSON type) and Docker's own spellings of some of them.
struct DriverOptions {
    const Json& defaults;
    std::map<std::string, std::string> spellings;
    std::map<std::string, std::vector<std::string>> choices;
};

Result<const DriverOptions*> driver_options(const std::string& driver)
{
    static const DriverOptions bridge { drivers::bridge_network_defaults(),
        { { "com.docker.network.bridge.name", "bridge" }, { "com.docker.network.driver.mtu", "mtu" },
            { "com.docker.network.bridge.enable_ip_masquerade", "ipMasq" } },
        {} };
    static const DriverOptions macvlan { drivers::macvlan_network_defaults(),
        { { "parent", "master" }, { "macvlan_mode", "mode" }, { "com.docker.network.driver.mtu", "mtu" } },
        { { "mode", { "bridge", "private", "vepa", "passthru" } } } };
    static const DriverOptions ipvlan { drivers::ipvlan_network_defaults(),
        { { "parent", "master" }, { "ipvlan_mode", "mode" }, { "ipvlan_flag", "flag" }, { "com.docker.network.driver.mtu", "mtu" } },
        { { "mode", { "l2", "l3", "l3s" } }, { "flag", { "bridge", "private", "vepa" } } } };
    if (driver == "bridge")
        return &bridge;
    if (driver == "macvlan")
        return &macvlan;
    if (driver == "ipvlan")
        return &ipvlan;
    return make_error(Code::InvalidConfig, "cnm.driver = \"" + driver + "\" is not supported through Docker (bridge, macvlan or ipvlan)");
}

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
    const DriverOptions& table = *TRY(driver_options(out.driver));
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
        std::string cni_key = key;
        if (auto it = table.spellings.find(key); it != table.spellings.end())
            cni_key = it->second;
        if (!table.defaults.contains(cni_key)) {
            std::string known = "cnm.network, cnm.driver";
            for (auto& [k, v] : table.defaults.items())
                known += ", " + k;
            for (auto& [k, v] : table.spellings)
                known += ", " + k;
            return make_error(Code::InvalidConfig, "unknown " + out.driver + " network option \"" + key + "\"", "known options: " + known);
        }
        if (out.keys.contains(cni_key))
            return make_error(Code::InvalidConfig, "option \"" + cni_key + "\" is given twice (under two spellings)");
        Json typed = TRY(typed_option(key, value, table.defaults[cni_key]));
        if (auto choices = table.choices.find(cni_key); choices != table.choices.end()
            && std::find(choices->second.begin(), choices->second.end(), text) == choices->second.end()) {
            std::string known;
            for (auto& c : choices->second)
                known += (known.empty() ? "" : ", ") + c;
            return make_error(Code::InvalidConfig, "option \"" + key + "\" = \"" + text + "\" is not one of " + known);
        }
        if (cni_key == "master" && !cni::validate_ifname(text))
            return make_error(Code::InvalidConfig, "parent \"" + text + "\" is not a usable interface name");
        out.keys[cni_key] = typed;
    }
    return out;
}

struct PoolData {
    PoolId pool;
    std::optional<IpNet> gateway;
};

/// IPv4Data / IPv6Data: [{"AddressSpace","Pool","Gateway","AuxAddresses"}].
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

std::string join_list(const std::vector<std::string>& items)
{
    std::string out;
    for (auto& s : items)
        out += (out.empty() ? "" : ", ") + s;
    return "[" + out + "]";
}

Result<PoolId> pool_field(const Json& req, const std::string& method)
{
    auto text = TRY(json_string(req, "PoolID", method)).value_or("");
    auto pool = PoolId::parse(text);
    if (!pool || pool->space != docker_space || !pool->subnet.is_network())
        return bad_request(method, "\"" + text + "\" is not a cnm pool id");
    return *pool;
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

/// Interface names for an endpoint, from its id: a re-Join after a crash finds the same links.
std::string host_veth_of(const std::string& endpoint_id)
{
    return "cnh" + endpoint_id.substr(0, 11);
}
std::string container_veth_of(const std::string& endpoint_id)
{
    return "cnc" + endpoint_id.substr(0, 11);
}

std::string string_of(const Json& o, const char* key, const std::string& fallback = "")
{
    return o.is_object() && o.contains(key) && o[key].is_string() ? o[key].get<std::string>() : fallback;
}

bool flag_of(const Json& o, const char* key)
{
    return o.is_object() && o.contains(key) && o[key].is_boolean() && o[key].get<bool>();
}

std::vector<firewall::PortMap> recorded_ports(const EndpointRecord& record)
{
    std::vector<firewall::PortMap> out;
    auto it = record.driver_state.find("ports");
    if (it != record.driver_state.end() && it->is_array())
        for (auto& p : *it)
            if (auto m = firewall::port_map_from_json(p))
                out.push_back(*m);
    return out;
}

/// com.docker.network.portmap: [{"Proto","IP","Port","HostIP","HostPort","HostPortEnd"}].
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

Json ports_json(const std::vector<firewall::PortMap>& ports)
{
    Json out = Json::array();
    for (auto& p : ports)
        out.push_back(firewall::port_map_json(p));
    return out;
}

} // namespace

Reply error_reply(const Error& error)
{
    std::string text = error.msg + (error.details.empty() ? "" : " (" + error.details + ")");
    return { 500, Json { { "Err", text }, { "Error", text } } };
}

Result<std::optional<std::string>> Driver::bound_network(const std::string& docker_id)
{
    Loaded loaded = TRY(m_store.get(binding_key(docker_id)));
    if (!loaded.ok() || !loaded.doc.is_object() || !loaded.doc.contains("network") || !loaded.doc["network"].is_string())
        return std::optional<std::string> {};
    return std::optional<std::string>(loaded.doc["network"].get<std::string>());
}

Reply Driver::handle(std::string_view method, std::string_view body)
{
    using Handler = Result<Json> (Driver::*)(const Json&);
    static const std::map<std::string_view, Handler> handlers = {
        { "NetworkDriver.CreateNetwork", &Driver::create_network },
        { "NetworkDriver.DeleteNetwork", &Driver::delete_network },
        { "NetworkDriver.CreateEndpoint", &Driver::create_endpoint },
        { "NetworkDriver.DeleteEndpoint", &Driver::delete_endpoint },
        { "NetworkDriver.EndpointOperInfo", &Driver::endpoint_info },
        { "NetworkDriver.Join", &Driver::join },
        { "NetworkDriver.Leave", &Driver::leave },
        { "NetworkDriver.ProgramExternalConnectivity", &Driver::program_external },
        { "NetworkDriver.RevokeExternalConnectivity", &Driver::revoke_external },
        { "IpamDriver.RequestPool", &Driver::request_pool },
        { "IpamDriver.ReleasePool", &Driver::release_pool },
        { "IpamDriver.RequestAddress", &Driver::request_address },
        { "IpamDriver.ReleaseAddress", &Driver::release_address },
    };
    static const std::map<std::string_view, Json> constants = {
        { "Plugin.Activate", { { "Implements", { "NetworkDriver", "IpamDriver" } } } },
        { "NetworkDriver.GetCapabilities", { { "Scope", "local" }, { "ConnectivityScope", "local" } } },
        { "IpamDriver.GetCapabilities", { { "RequiresMACAddress", false }, { "RequiresRequestReplay", false } } },
        { "IpamDriver.GetDefaultAddressSpaces", { { "LocalDefaultAddressSpace", docker_space }, { "GlobalDefaultAddressSpace", "global" } } },
        // Swarm and cluster discovery: a local-scope driver has nothing to do.
        { "NetworkDriver.DiscoverNew", Json::object() },
        { "NetworkDriver.DiscoverDelete", Json::object() },
        { "NetworkDriver.AllocateNetwork", { { "Options", Json::object() } } },
        { "NetworkDriver.FreeNetwork", Json::object() },
    };
    auto handler = handlers.find(method);
    auto constant = constants.find(method);
    if (handler == handlers.end() && constant == constants.end())
        return { 404, Json { { "Err", "cnm: unknown method " + std::string(method) }, { "Error", "cnm: unknown method " + std::string(method) } } };

    // Docker sends no body for the calls without arguments.
    bool blank = std::all_of(body.begin(), body.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; });
    Json req = Json::object();
    if (!blank) {
        auto parsed = parse_json(body, Code::Decode, std::string(method) + " request");
        if (!parsed)
            return error_reply(parsed.error());
        req = parsed.release_value();
        if (req.is_null())
            req = Json::object();
        if (!req.is_object())
            return error_reply(bad_request(std::string(method), "the request body must be a JSON object"));
    }
    if (constant != constants.end())
        return { 200, constant->second };
    auto out = (this->*handler->second)(req);
    // One durability barrier per call, like the plugins' one per verb; also after a failure,
    // whose undo wrote too.
    auto synced = m_store.sync();
    if (!out)
        return error_reply(out.error());
    if (!synced)
        return error_reply(synced.error());
    return { 200, out.release_value() };
}

// ---- IpamDriver ---------------------------------------------------------------------------

Result<Json> Driver::request_pool(const Json& req)
{
    std::string space = TRY(json_string(req, "AddressSpace", "RequestPool")).value_or(docker_space);
    std::string pool_text = TRY(json_string(req, "Pool", "RequestPool")).value_or("");
    std::string sub_pool = TRY(json_string(req, "SubPool", "RequestPool")).value_or("");
    bool v6 = TRY(json_bool(req, "V6", "RequestPool")).value_or(false);
    Json options = TRY(json_object(req, "Options", "RequestPool"));
    if (space != docker_space)
        return make_error(Code::InvalidConfig, "address space \"" + space + "\" is not supported (cnm has \"local\" only)");
    if (pool_text.empty())
        return make_error(Code::InvalidConfig, "cnm does not choose subnets: give one with --subnet");
    auto subnet = IpNet::parse(pool_text);
    if (!subnet || !subnet->is_network())
        return make_error(Code::InvalidConfig, "\"" + pool_text + "\" is not a subnet (network address/prefix)");
    if ((subnet->addr.family == 6) != v6)
        return make_error(Code::InvalidConfig, "pool " + pool_text + (v6 ? " is not IPv6" : " is not IPv4"));
    if (!sub_pool.empty() && sub_pool != pool_text)
        return make_error(Code::InvalidConfig, "--ip-range is not supported by cnm's IPAM (the whole subnet is the range)");
    if (options.is_object() && !options.empty())
        return make_error(Code::InvalidConfig, "unknown IPAM option \"" + options.begin().key() + "\" (cnm takes none)");
    PoolId pool { docker_space, *subnet };
    Pools pools(m_store);
    for (auto& other : TRY(pools.list(docker_space)))
        if (!(other == pool) && (other.subnet.contains(subnet->addr) || subnet->contains(other.subnet.addr)))
            return make_error(Code::InvalidConfig, "pool " + pool_text + " overlaps pool " + other.subnet.str() + " in use");
    TRY(pools.docker_retain(pool));
    return Json { { "PoolID", pool.str() }, { "Pool", subnet->str() }, { "Data", Json::object() } };
}

Result<Json> Driver::release_pool(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "ReleasePool"));
    TRY(Pools(m_store).docker_release(pool));
    return Json::object();
}

Result<Json> Driver::request_address(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "RequestAddress"));
    std::string address = TRY(json_string(req, "Address", "RequestAddress")).value_or("");
    Json options = TRY(json_object(req, "Options", "RequestAddress"));
    std::optional<IpAddr> wanted;
    if (!address.empty()) {
        wanted = IpAddr::parse(address);
        if (!wanted || !pool.subnet.contains(*wanted))
            return make_error(Code::InvalidConfig, "\"" + address + "\" is not an address of pool " + pool.subnet.str());
    }
    Pools pools(m_store);
    if (!TRY(pools.exists(pool)))
        return make_error(Code::InvalidConfig, "pool " + pool.str() + " is not known to cnm (no RequestPool for it)");
    bool gateway = string_of(options, "RequestAddressType") == "com.docker.network.gateway";
    if (gateway) {
        IpAddr gw = TRY(pools.ensure_gateway(pool, wanted));
        return Json { { "Address", IpNet { gw, pool.subnet.prefix }.str() }, { "Data", Json::object() } };
    }
    // The whole subnet is the range; the network, broadcast and the pool's gateway are never given.
    IpAddr first = pool.subnet.network();
    IpAddr last = pool.subnet.last();
    auto recorded_gw = TRY(pools.gateway(pool));
    ipam::Range range { pool.subnet, first < last ? first.next() : first, last, recorded_gw.value_or(first < last ? first.next() : first) };
    if (pool.subnet.addr.family == 4 && pool.subnet.prefix < 31)
        range.end = IpAddr { 4, last.value - 1 };
    auto leased = TRY(pools.allocate(docker_space, { range }, docker_owner, wanted));
    return Json { { "Address", leased.address.str() }, { "Data", Json::object() } };
}

Result<Json> Driver::release_address(const Json& req)
{
    PoolId pool = TRY(pool_field(req, "ReleaseAddress"));
    std::string address = TRY(json_string(req, "Address", "ReleaseAddress")).value_or("");
    auto ip = IpAddr::parse(address);
    if (!ip) // Docker sends the bare address; accept a CIDR too
        if (auto net = IpNet::parse(address))
            ip = net->addr;
    if (!ip)
        return make_error(Code::InvalidConfig, "\"" + address + "\" is not an IP address");
    // The gateway is the pool's, not a lease; it goes with the pool. Someone else's lease (a CNI
    // attachment's) is never freed through Docker.
    TRY(Pools(m_store).release(pool, *ip, docker_owner));
    return Json::object();
}

// ---- NetworkDriver ------------------------------------------------------------------------

Result<Json> Driver::create_network(const Json& req)
{
    std::string id = TRY(id_field(req, "NetworkID", "CreateNetwork"));
    Json options = TRY(json_object(req, "Options", "CreateNetwork"));
    if (options.is_null())
        options = Json::object();
    if (options.contains("com.docker.network.internal") && options["com.docker.network.internal"] == true)
        return make_error(Code::InvalidConfig, "--internal networks are not supported by cnm");
    NetworkOptions opts = TRY(parse_network_options(options.contains("com.docker.network.generic") ? options["com.docker.network.generic"] : Json()));
    const DriverOptions& table = *TRY(driver_options(opts.driver));
    auto pools_data = TRY(parse_ipam_data(req));

    if (auto bound = TRY(bound_network(id)))
        return Json::object(); // Docker retried: already done
    std::string name = opts.name.value_or(id);
    std::vector<std::string> subnets;
    for (auto& p : pools_data)
        subnets.push_back(p.pool.subnet.str());
    std::sort(subnets.begin(), subnets.end());

    auto lock = TRY(m_registry.lock_network(name));
    auto stored = TRY(m_registry.load_network(name));
    if (stored.corrupt())
        return make_error(Code::StateCorrupt, "network record of \"" + name + "\" is corrupt (" + stored.reason + ")");
    NetworkRecord record;
    bool created = false;
    if (stored.ok()) {
        record = stored.record;
        if (!record.driver.empty() && record.driver != opts.driver)
            return make_error(Code::InvalidConfig, "network \"" + name + "\" exists with driver \"" + record.driver + "\", not \"" + opts.driver + "\"");
        if (record.address_space != docker_space)
            return make_error(Code::InvalidConfig, "network \"" + name + "\" is in address space \"" + record.address_space + "\", not \"local\"");
        for (auto& s : subnets)
            if (std::find(record.subnets.begin(), record.subnets.end(), s) == record.subnets.end())
                return make_error(Code::InvalidConfig, "network \"" + name + "\" has subnets " + join_list(record.subnets)
                        + ", but docker network create asks for " + join_list(subnets));
        // Checks the -o keys against the network's; the network keeps its own.
        (void)TRY(adopt_network_options(name, record.options, opts.keys, table.defaults, "docker network create -o"));
    } else {
        created = true;
        record.name = name;
        record.driver = opts.driver;
        record.frontend = Frontend::Docker;
        record.address_space = docker_space;
        record.subnets = subnets;
        record.created = now_rfc3339();
        record.options = opts.keys;
        record.options["type"] = opts.driver;
        if (opts.driver == "bridge") {
            if (!record.options.contains("bridge"))
                record.options["bridge"] = "br-" + id.substr(0, 12);
            if (!record.options.contains("isGateway"))
                record.options["isGateway"] = true; // Docker's bridge networks route through the bridge
        }
    }

    Pools pools(m_store);
    if (opts.driver == "bridge") {
        auto keys = TRY(drivers::parse_bridge_keys(record.options));
        // Gateways on the bridge, from the pools (Docker's IPAMData carries the same).
        std::vector<IpNet> gateways;
        for (auto& p : pools_data) {
            auto gw = TRY(pools.gateway(p.pool));
            if (!gw && p.gateway)
                gw = p.gateway->addr;
            if (gw)
                gateways.push_back({ *gw, p.pool.subnet.prefix });
        }
        TRY(m_dataplane.ensure_bridge(keys, keys.is_gateway ? gateways : std::vector<IpNet> {}));
    } else {
        std::string parent = string_of(record.options, "master");
        if (parent.empty())
            return make_error(Code::InvalidConfig, opts.driver + " networks need a parent interface: -o parent=<interface>[.<vlan-id>]");
        // A "<if>.<vid>" parent that does not exist yet is made here, and goes with the last
        // network that uses it (as Docker's own macvlan and ipvlan drivers do).
        bool made = TRY(m_dataplane.ensure_parent(parent));
        auto probed = m_dataplane.probe_child(opts.driver, parent);
        if (!probed) {
            if (made)
                (void)m_dataplane.delete_link(parent);
            return probed.release_error();
        }
        if (made)
            TRY(m_store.put(parent_key(parent), Json { { "parent", parent }, { "createdFor", name } }));
    }
    if (created)
        for (auto& p : pools_data)
            TRY(pools.add_user(p.pool, name, p.gateway ? std::optional(p.gateway->addr) : std::nullopt));
    if (std::find(record.docker_ids.begin(), record.docker_ids.end(), id) == record.docker_ids.end())
        record.docker_ids.push_back(id);
    TRY(m_registry.save_network(record));
    TRY(m_store.put(binding_key(id), Json { { "id", id }, { "network", name }, { "created", now_rfc3339() } }));
    return Json::object();
}

Result<Json> Driver::delete_network(const Json& req)
{
    std::string id = TRY(id_field(req, "NetworkID", "DeleteNetwork"));
    auto name = TRY(bound_network(id));
    if (!name)
        return Json::object();
    auto lock = TRY(m_registry.lock_network(*name));
    auto stored = TRY(m_registry.load_network(*name));
    if (stored.ok()) {
        auto& record = stored.record;
        record.docker_ids.erase(std::remove(record.docker_ids.begin(), record.docker_ids.end(), id), record.docker_ids.end());
        // A network Docker made goes with its last Docker binding and last endpoint (CNI ones
        // included); one a CNI conf made stays for CNI.
        bool last = record.frontend == Frontend::Docker && record.docker_ids.empty()
            && TRY(m_registry.list_endpoints(*name)).empty();
        if (last) {
            Pools pools(m_store);
            for (auto& s : record.subnets)
                if (auto net = IpNet::parse(s))
                    TRY(pools.remove_user(PoolId { record.address_space, *net }, *name));
            TRY(m_store.remove(Registry::network_key(*name)));
            TRY(m_store.remove_dir(Registry::endpoints_dir(*name)));
            TRY(m_store.remove_dir(Registry::network_dir(*name)));
            if (record.driver == "bridge") {
                if (auto keys = drivers::parse_bridge_keys(record.options))
                    TRY(m_dataplane.delete_bridge(keys->bridge));
            } else if (std::string parent = string_of(record.options, "master"); !parent.empty() && TRY(m_store.exists(parent_key(parent)))) {
                // A VLAN parent the shim made goes with the last network on it.
                bool used = false;
                for (auto& other : TRY(m_registry.list_networks())) {
                    auto o = TRY(m_registry.load_network(other));
                    used |= o.ok() && o.record.name != *name && string_of(o.record.options, "master") == parent;
                }
                if (!used) {
                    TRY(m_dataplane.delete_link(parent));
                    TRY(m_store.remove(parent_key(parent)));
                }
            }
        } else {
            TRY(m_registry.save_network(record));
        }
    }
    TRY(m_store.remove(binding_key(id)));
    return Json::object();
}

Result<Json> Driver::create_endpoint(const Json& req)
{
    std::string nid = TRY(id_field(req, "NetworkID", "CreateEndpoint"));
    std::string eid = TRY(id_field(req, "EndpointID", "CreateEndpoint"));
    Json iface = TRY(json_object(req, "Interface", "CreateEndpoint"));
    if (iface.is_null())
        iface = Json::object();
    Json options = TRY(json_object(req, "Options", "CreateEndpoint"));
    std::string addr4 = TRY(json_string(iface, "Address", "Interface")).value_or("");
    std::string addr6 = TRY(json_string(iface, "AddressIPv6", "Interface")).value_or("");
    std::string mac = TRY(json_string(iface, "MacAddress", "Interface")).value_or("");
    if (!mac.empty() && !netlink::parse_mac(mac))
        return make_error(Code::InvalidConfig, "\"" + mac + "\" is not a MAC address");

    auto name = TRY(bound_network(nid));
    if (!name)
        return make_error(Code::InvalidConfig, "network " + nid + " is not a cnm network (unknown id)");
    auto lock = TRY(m_registry.lock_network(*name));
    auto network = TRY(m_registry.load_network(*name));
    if (!network.ok())
        return make_error(Code::StateCorrupt, "network \"" + *name + "\" has no usable record", network.reason);
    std::string key = endpoint_key_of(eid);
    auto existing = TRY(m_registry.load_endpoint(*name, key));
    bool own_mac = network.record.driver != "ipvlan";
    if (!own_mac && !mac.empty())
        return make_error(Code::InvalidConfig, "ipvlan interfaces share their parent's MAC address: --mac-address cannot be used");
    if (existing.ok()) // a retry
        return Json { { "Interface", mac.empty() && own_mac ? Json { { "MacAddress", existing.record.mac } } : Json::object() } };

    EndpointRecord record;
    record.network = *name;
    record.container_id = eid;
    record.ifname = docker_ifname;
    record.frontend = Frontend::Docker;
    record.phase = EndpointRecord::Phase::Ready;
    record.created = now_rfc3339();
    if (own_mac)
        record.mac = mac.empty() ? random_mac() : mac;
    Pools pools(m_store);
    for (auto& text : { addr4, addr6 }) {
        if (text.empty())
            continue;
        auto address = IpNet::parse(text);
        if (!address)
            return make_error(Code::InvalidConfig, "\"" + text + "\" is not an address/prefix");
        auto subnet = std::find_if(network.record.subnets.begin(), network.record.subnets.end(), [&](const std::string& s) {
            auto net = IpNet::parse(s);
            return net && net->prefix == address->prefix && net->contains(address->addr);
        });
        if (subnet == network.record.subnets.end())
            return make_error(Code::InvalidConfig, address->str() + " is in none of network \"" + *name + "\"'s subnets " + join_list(network.record.subnets));
        PoolId pool { network.record.address_space, *IpNet::parse(*subnet) };
        // The address must be a Docker lease: never one a CNI attachment holds.
        auto holder = TRY(pools.owner_of(pool, address->addr));
        if (holder && holder->frontend != Frontend::Docker)
            return make_error(Code::AddressUnavailable, address->addr.str() + " is held by CNI attachment " + holder->container_id + "/" + holder->ifname);
        if (!holder)
            return make_error(Code::AddressUnavailable, address->addr.str() + " was not allocated by cnm's IPAM");
        auto gateway = TRY(pools.gateway(pool));
        record.addresses.push_back({ *address, gateway, pool.str() });
    }
    if (network.record.driver == "bridge") {
        auto keys = TRY(drivers::parse_bridge_keys(network.record.options));
        record.driver_state = { { "bridge", keys.bridge }, { "hostVeth", host_veth_of(eid) }, { "containerVeth", container_veth_of(eid) } };
    } else {
        record.driver_state = { { "kind", network.record.driver }, { "master", string_of(network.record.options, "master") },
            { "childLink", container_veth_of(eid) } };
    }
    TRY(m_registry.save_endpoint(record));
    // Docker refuses a reply that sets a field it had set.
    return Json { { "Interface", mac.empty() && own_mac ? Json { { "MacAddress", record.mac } } : Json::object() } };
}

Result<std::optional<Driver::EndpointCall>> Driver::open_endpoint(const Json& req, const std::string& method)
{
    std::string nid = TRY(id_field(req, "NetworkID", method));
    EndpointCall call;
    call.endpoint_id = TRY(id_field(req, "EndpointID", method));
    auto name = TRY(bound_network(nid));
    if (!name)
        return std::optional<EndpointCall> {};
    call.network = *name;
    call.lock = TRY(m_registry.lock_network(call.network));
    call.key = endpoint_key_of(call.endpoint_id);
    call.stored = TRY(m_registry.load_endpoint(call.network, call.key));
    return std::optional<EndpointCall>(std::move(call));
}

Result<Json> Driver::join(const Json& req)
{
    std::string sandbox_key = TRY(json_string(req, "SandboxKey", "Join")).value_or("");
    if (sandbox_key.empty() || sandbox_key[0] != '/')
        return bad_request("Join", "\"SandboxKey\" must be an absolute path");
    auto call = TRY(open_endpoint(req, "Join"));
    if (!call)
        return make_error(Code::InvalidConfig, "network " + req.value("NetworkID", "") + " is not a cnm network (unknown id)");
    if (!call->stored.ok())
        return make_error(Code::InvalidConfig, "endpoint " + call->endpoint_id + " is not known (no CreateEndpoint for it)");
    const std::string* name = &call->network;
    const std::string& key = call->key;
    const std::string& eid = call->endpoint_id;
    auto network = TRY(m_registry.load_network(*name));
    if (!network.ok())
        return make_error(Code::StateCorrupt, "network \"" + *name + "\" has no usable record", network.reason);
    EndpointRecord record = call->stored.record;
    if (network.record.driver != "bridge")
        return join_child(network.record, record, sandbox_key);
    auto keys = TRY(drivers::parse_bridge_keys(network.record.options));

    std::vector<IpNet> gateways;
    std::optional<IpAddr> gw4, gw6;
    for (auto& a : record.addresses)
        if (a.gateway) {
            gateways.push_back({ *a.gateway, a.address.prefix });
            (a.gateway->family == 4 ? gw4 : gw6) = *a.gateway;
        }
    TRY(m_dataplane.ensure_bridge(keys, keys.is_gateway ? gateways : std::vector<IpNet> {}));
    std::string host = string_of(record.driver_state, "hostVeth", host_veth_of(eid));
    std::string container = string_of(record.driver_state, "containerVeth", container_veth_of(eid));
    // A Join that follows a failed one finds its links: start over.
    TRY(m_dataplane.delete_link(host));
    TRY(m_dataplane.delete_link(container));
    TRY(m_dataplane.create_veth({ host, container, keys.bridge, keys.mtu, record.mac, keys.hairpin }));
    bool masq = false;
    ArmedGuard undo([&] {
        if (masq)
            for (auto& a : record.addresses)
                (void)m_dataplane.del_masquerade(a.address);
        (void)m_dataplane.delete_link(host);
    });
    if (keys.ip_masq) {
        record.driver_state["ipMasq"] = true;
        TRY(m_registry.save_endpoint(record));
        masq = true;
        for (auto& a : record.addresses)
            TRY(m_dataplane.add_masquerade(*name, a.address));
    }
    std::string sandbox = sandbox_key.substr(sandbox_key.rfind('/') + 1);
    if (sandbox.empty())
        return bad_request("Join", "\"SandboxKey\" names no sandbox");
    TRY(m_registry.sandbox_join(sandbox, sandbox_key, Frontend::Docker, { *name, key }));
    record.sandbox = sandbox;
    record.netns = sandbox_key;
    auto saved = m_registry.save_endpoint(record);
    if (!saved) {
        (void)m_registry.sandbox_leave(sandbox, { *name, key });
        return saved.release_error();
    }
    undo.disarm();

    Json reply = { { "InterfaceName", { { "SrcName", container }, { "DstPrefix", "eth" } } } };
    if (keys.is_gateway && (gw4 || gw6)) {
        if (gw4)
            reply["Gateway"] = gw4->str();
        if (gw6)
            reply["GatewayIPv6"] = gw6->str();
    } else {
        // No gateway here: without this Docker would add a second interface on docker_gwbridge.
        reply["DisableGatewayService"] = true;
    }
    // Routes a CNI conf of this network lists in its IPAM section apply to Docker's containers too.
    Json routes = Json::array();
    if (network.record.options.contains("ipam") && network.record.options["ipam"].is_object()) {
        auto list = network.record.options["ipam"].value("routes", Json::array());
        if (list.is_array())
            for (auto& r : list) {
                if (!r.is_object() || !r.contains("dst") || !r["dst"].is_string())
                    continue;
                auto dst = IpNet::parse(r["dst"].get<std::string>());
                if (!dst || dst->prefix == 0) // the default route is Docker's, from Gateway
                    continue;
                std::optional<IpAddr> via;
                if (r.contains("gw") && r["gw"].is_string())
                    via = IpAddr::parse(r["gw"].get<std::string>());
                if (!via)
                    via = dst->addr.family == 4 ? gw4 : gw6;
                if (via)
                    routes.push_back({ { "Destination", IpNet { dst->network(), dst->prefix }.str() }, { "RouteType", 0 }, { "NextHop", via->str() } });
                else
                    routes.push_back({ { "Destination", IpNet { dst->network(), dst->prefix }.str() }, { "RouteType", 1 } });
            }
    }
    if (!routes.empty())
        reply["StaticRoutes"] = routes;
    return reply;
}

Result<void> Driver::remove_firewall(const EndpointRecord& record)
{
    if (flag_of(record.driver_state, "ipMasq"))
        for (auto& a : record.addresses)
            TRY(m_dataplane.del_masquerade(a.address));
    return m_dataplane.del_ports(recorded_ports(record));
}

Result<Json> Driver::join_child(const NetworkRecord& network, EndpointRecord& record, const std::string& sandbox_key)
{
    const Json& o = network.options;
    std::string link = string_of(record.driver_state, "childLink", container_veth_of(record.container_id));
    std::string mode = string_of(o, "mode", network.driver == "ipvlan" ? "l2" : "bridge");
    std::optional<int> mtu;
    if (o.contains("mtu") && o["mtu"].is_number_integer() && o["mtu"].get<int>() > 0)
        mtu = o["mtu"].get<int>();
    TRY(m_dataplane.delete_link(link)); // left by a failed Join
    TRY(m_dataplane.create_child({ network.driver, link, string_of(o, "master"), mode, string_of(o, "flag", "bridge"), mtu, record.mac }));
    ArmedGuard undo([&] { (void)m_dataplane.delete_link(link); });
    std::string key = endpoint_key_of(record.container_id);
    std::string sandbox = sandbox_key.substr(sandbox_key.rfind('/') + 1);
    if (sandbox.empty())
        return bad_request("Join", "\"SandboxKey\" names no sandbox");
    TRY(m_registry.sandbox_join(sandbox, sandbox_key, Frontend::Docker, { network.name, key }));
    record.sandbox = sandbox;
    record.netns = sandbox_key;
    auto saved = m_registry.save_endpoint(record);
    if (!saved) {
        (void)m_registry.sandbox_leave(sandbox, { network.name, key });
        return saved.release_error();
    }
    undo.disarm();
    // As Docker's own drivers: no docker_gwbridge; the subnet's gateway is the router outside,
    // except in ipvlan l3/l3s, where the parent routes and the default route is "connected".
    Json reply = { { "InterfaceName", { { "SrcName", link }, { "DstPrefix", "eth" } } }, { "DisableGatewayService", true } };
    if (network.driver == "ipvlan" && mode != "l2") {
        Json routes = Json::array();
        for (auto& a : record.addresses)
            routes.push_back({ { "Destination", a.address.addr.family == 4 ? "0.0.0.0/0" : "::/0" }, { "RouteType", 1 } });
        reply["StaticRoutes"] = routes;
        return reply;
    }
    for (auto& a : record.addresses)
        if (a.gateway)
            reply[a.gateway->family == 4 ? "Gateway" : "GatewayIPv6"] = a.gateway->str();
    return reply;
}

Result<Json> Driver::leave(const Json& req)
{
    auto call = TRY(open_endpoint(req, "Leave"));
    if (!call || !call->stored.ok())
        return Json::object();
    EndpointRecord record = call->stored.record;
    const std::string* name = &call->network;
    const std::string& key = call->key;
    TRY(remove_firewall(record));
    record.driver_state.erase("ipMasq");
    record.driver_state.erase("ports");
    if (!record.sandbox.empty())
        TRY(m_registry.sandbox_leave(record.sandbox, { *name, key }));
    record.sandbox.clear();
    record.netns.clear();
    TRY(m_registry.save_endpoint(record));
    return Json::object();
}

Result<Json> Driver::delete_endpoint(const Json& req)
{
    auto call = TRY(open_endpoint(req, "DeleteEndpoint"));
    if (!call || call->stored.absent())
        return Json::object();
    if (call->stored.ok()) {
        auto& record = call->stored.record;
        TRY(remove_firewall(record));
        // Docker has moved the container end back to the host by now (or the sandbox died and
        // took the pair with it).
        for (const char* link : { "hostVeth", "containerVeth", "childLink" })
            if (auto link_name = string_of(record.driver_state, link); !link_name.empty())
                TRY(m_dataplane.delete_link(link_name));
        if (!record.sandbox.empty())
            TRY(m_registry.sandbox_leave(record.sandbox, { call->network, call->key }));
    }
    // The addresses stay leased until Docker's ReleaseAddress, which always follows.
    TRY(m_registry.remove_endpoint(call->network, call->key));
    return Json::object();
}

Result<Json> Driver::endpoint_info(const Json& req)
{
    auto call = TRY(open_endpoint(req, "EndpointOperInfo"));
    if (!call || !call->stored.ok())
        return Json { { "Value", Json::object() } };
    auto& r = call->stored.record;
    Json value = { { "cnm.network", call->network }, { "cnm.mac", r.mac } };
    for (auto& [k, v] : r.driver_state.items())
        value["cnm." + k] = v;
    return Json { { "Value", value } };
}

Result<Json> Driver::program_external(const Json& req)
{
    Json options = TRY(json_object(req, "Options", "ProgramExternalConnectivity"));
    auto call = TRY(open_endpoint(req, "ProgramExternalConnectivity"));
    if (!call)
        return make_error(Code::InvalidConfig, "network " + req.value("NetworkID", "") + " is not a cnm network (unknown id)");
    if (!call->stored.ok())
        return make_error(Code::InvalidConfig, "endpoint " + call->endpoint_id + " is not known (no CreateEndpoint for it)");
    EndpointRecord record = call->stored.record;
    auto ports = TRY(parse_port_maps(options, record));
    if (!ports.empty() && record.driver_state.contains("kind"))
        return make_error(Code::InvalidConfig, "published ports (-p) are not supported on " + string_of(record.driver_state, "kind")
                + " networks: the container is reachable on its own address");
    // Programming again replaces what an earlier call published.
    TRY(m_dataplane.del_ports(recorded_ports(record)));
    record.driver_state.erase("ports");
    if (!ports.empty()) {
        // Recorded before the rules exist, so DeleteEndpoint or GC can remove them after a crash.
        record.driver_state["ports"] = ports_json(ports);
        TRY(m_registry.save_endpoint(record));
        auto added = m_dataplane.add_ports(ports);
        if (!added) {
            record.driver_state.erase("ports");
            (void)m_registry.save_endpoint(record);
            return added.release_error();
        }
    } else {
        TRY(m_registry.save_endpoint(record));
    }
    return Json::object();
}

Result<Json> Driver::revoke_external(const Json& req)
{
    auto call = TRY(open_endpoint(req, "RevokeExternalConnectivity"));
    if (!call || !call->stored.ok())
        return Json::object();
    EndpointRecord record = call->stored.record;
    TRY(m_dataplane.del_ports(recorded_ports(record)));
    record.driver_state.erase("ports");
    TRY(m_registry.save_endpoint(record));
    return Json::object();
}

} // namespace cnm::shim
