#include "cni/types.hpp"

#include "cni/version.hpp"

namespace cnm::cni {

namespace {

Json route_json(const Route& r, bool rich)
{
    Json j = { { "dst", r.dst.str() } };
    if (r.gw)
        j["gw"] = r.gw->str();
    if (rich) {
        if (r.mtu)
            j["mtu"] = *r.mtu;
        if (r.advmss)
            j["advmss"] = *r.advmss;
        if (r.priority)
            j["priority"] = *r.priority;
        if (r.table)
            j["table"] = *r.table;
        if (r.scope)
            j["scope"] = *r.scope;
    }
    return j;
}

Result<Json> legacy_json(const CniResult& result, std::string_view version)
{
    Json out = { { "cniVersion", std::string(version) } };
    for (int family : { 4, 6 }) {
        const IpConfig* found = nullptr;
        for (auto& ip : result.ips) {
            if (ip.address.addr.family != family)
                continue;
            if (found)
                return make_error(Code::IncompatibleVersion,
                    "cannot convert result to version " + std::string(version) + ": more than one IPv"
                        + std::to_string(family) + " address");
            found = &ip;
        }
        if (!found)
            continue;
        Json ipj = { { "ip", found->address.str() } };
        if (found->gateway)
            ipj["gateway"] = found->gateway->str();
        Json routes = Json::array();
        for (auto& r : result.routes)
            if (r.dst.addr.family == family)
                routes.push_back(route_json(r, false));
        if (!routes.empty())
            ipj["routes"] = routes;
        out[family == 4 ? "ip4" : "ip6"] = ipj;
    }
    out["dns"] = dns_to_json(result.dns);
    return out;
}

Result<IpAddr> parse_addr_field(const Json& obj, const char* key, const std::string& where)
{
    auto text = TRY(json_string(obj, key, where));
    if (!text)
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "." + key + "\" is missing");
    auto a = IpAddr::parse(*text);
    if (!a)
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "." + key + "\" = \"" + *text + "\" is not an IP address");
    return *a;
}

Result<IpNet> parse_net_field(const Json& obj, const char* key, const std::string& where)
{
    auto text = TRY(json_string(obj, key, where));
    if (!text)
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "." + key + "\" is missing");
    auto n = IpNet::parse(*text);
    if (!n)
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "." + key + "\" = \"" + *text + "\" is not a CIDR");
    return *n;
}

Result<std::optional<int>> opt_int(const Json& obj, const char* key, const std::string& where)
{
    auto v = TRY(json_int(obj, key, where, -(1LL << 31), (1LL << 31) - 1));
    if (!v)
        return std::optional<int> {};
    return std::optional<int>(static_cast<int>(*v));
}

Result<void> legacy_ip_from_json(const Json& ipj, const std::string& where, CniResult& out)
{
    if (!ipj.is_object())
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "\" must be an object");
    IpConfig ip;
    ip.address = TRY(parse_net_field(ipj, "ip", where));
    if (ipj.contains("gateway"))
        ip.gateway = TRY(parse_addr_field(ipj, "gateway", where));
    out.ips.push_back(ip);
    auto routes = TRY(json_array(ipj, "routes", where));
    for (auto& r : routes)
        out.routes.push_back(TRY(route_from_json(r, where + ".routes")));
    return {};
}

} // namespace

Json dns_to_json(const Dns& dns)
{
    Json j = Json::object();
    if (!dns.nameservers.empty())
        j["nameservers"] = dns.nameservers;
    if (!dns.domain.empty())
        j["domain"] = dns.domain;
    if (!dns.search.empty())
        j["search"] = dns.search;
    if (!dns.options.empty())
        j["options"] = dns.options;
    return j;
}

Result<Dns> dns_from_json(const Json& obj, const std::string& where)
{
    Dns dns;
    if (obj.is_null())
        return dns;
    if (!obj.is_object())
        return make_error(Code::InvalidConfig, "invalid config: \"" + where + "\" must be an object");
    dns.nameservers = TRY(json_strings(obj, "nameservers", where));
    dns.domain = TRY(json_string(obj, "domain", where)).value_or("");
    dns.search = TRY(json_strings(obj, "search", where));
    dns.options = TRY(json_strings(obj, "options", where));
    return dns;
}

Result<Route> route_from_json(const Json& obj, const std::string& where)
{
    if (!obj.is_object())
        return make_error(Code::InvalidConfig, "invalid config: each of \"" + where + "\" must be an object");
    Route r;
    r.dst = TRY(parse_net_field(obj, "dst", where));
    if (obj.contains("gw") && !obj["gw"].is_null())
        r.gw = TRY(parse_addr_field(obj, "gw", where));
    if (r.gw && r.gw->family != r.dst.addr.family)
        return make_error(Code::InvalidConfig, "invalid config: route to " + r.dst.str() + " has a gateway of the other family");
    r.mtu = TRY(opt_int(obj, "mtu", where));
    r.advmss = TRY(opt_int(obj, "advmss", where));
    r.priority = TRY(opt_int(obj, "priority", where));
    r.table = TRY(opt_int(obj, "table", where));
    r.scope = TRY(opt_int(obj, "scope", where));
    return r;
}

Result<Json> result_to_json(const CniResult& result, std::string_view version)
{
    if (!at_least(version, "0.3.0"))
        return legacy_json(result, version);
    bool with_ip_version = !at_least(version, "1.0.0");
    bool rich = at_least(version, "1.1.0");
    Json out = { { "cniVersion", std::string(version) } };
    if (!result.interfaces.empty()) {
        Json list = Json::array();
        for (auto& i : result.interfaces) {
            Json j = { { "name", i.name } };
            if (!i.mac.empty())
                j["mac"] = i.mac;
            if (rich && i.mtu)
                j["mtu"] = *i.mtu;
            if (!i.sandbox.empty())
                j["sandbox"] = i.sandbox;
            if (rich && !i.socket_path.empty())
                j["socketPath"] = i.socket_path;
            if (rich && !i.pci_id.empty())
                j["pciID"] = i.pci_id;
            list.push_back(j);
        }
        out["interfaces"] = list;
    }
    if (!result.ips.empty()) {
        Json list = Json::array();
        for (auto& ip : result.ips) {
            Json j = Json::object();
            if (with_ip_version)
                j["version"] = ip.address.addr.family == 4 ? "4" : "6";
            if (ip.interface)
                j["interface"] = *ip.interface;
            j["address"] = ip.address.str();
            if (ip.gateway)
                j["gateway"] = ip.gateway->str();
            list.push_back(j);
        }
        out[version == "0.3.0" ? "ip" : "ips"] = list;
    }
    if (!result.routes.empty()) {
        Json list = Json::array();
        for (auto& r : result.routes)
            list.push_back(route_json(r, rich));
        out["routes"] = list;
    }
    out["dns"] = dns_to_json(result.dns);
    return out;
}

Result<CniResult> result_from_json(const Json& doc)
{
    if (!doc.is_object())
        return make_error(Code::InvalidConfig, "invalid config: \"prevResult\" must be an object");
    CniResult out;
    const std::string where = "prevResult";
    if (doc.contains("ip4") || doc.contains("ip6")) {
        if (doc.contains("ip4"))
            TRY(legacy_ip_from_json(doc["ip4"], where + ".ip4", out));
        if (doc.contains("ip6"))
            TRY(legacy_ip_from_json(doc["ip6"], where + ".ip6", out));
        out.dns = TRY(dns_from_json(doc.value("dns", Json()), where + ".dns"));
        return out;
    }
    auto interfaces = TRY(json_array(doc, "interfaces", where));
    for (auto& j : interfaces) {
        if (!j.is_object())
            return make_error(Code::InvalidConfig, "invalid config: each of \"prevResult.interfaces\" must be an object");
        Interface i;
        const std::string w = where + ".interfaces";
        i.name = TRY(json_string(j, "name", w)).value_or("");
        i.mac = TRY(json_string(j, "mac", w)).value_or("");
        i.mtu = TRY(opt_int(j, "mtu", w));
        i.sandbox = TRY(json_string(j, "sandbox", w)).value_or("");
        i.socket_path = TRY(json_string(j, "socketPath", w)).value_or("");
        i.pci_id = TRY(json_string(j, "pciID", w)).value_or("");
        out.interfaces.push_back(i);
    }
    // 0.3.0's text called the list "ip"; accept both spellings.
    auto ips = TRY(json_array(doc, doc.contains("ips") ? "ips" : "ip", where));
    for (auto& j : ips) {
        if (!j.is_object())
            return make_error(Code::InvalidConfig, "invalid config: each of \"prevResult.ips\" must be an object");
        IpConfig ip;
        const std::string w = where + ".ips";
        ip.address = TRY(parse_net_field(j, "address", w));
        if (j.contains("gateway") && !j["gateway"].is_null())
            ip.gateway = TRY(parse_addr_field(j, "gateway", w));
        ip.interface = TRY(opt_int(j, "interface", w));
        if (ip.interface && (*ip.interface < 0 || *ip.interface >= static_cast<int>(out.interfaces.size())))
            return make_error(Code::InvalidConfig, "invalid config: \"prevResult.ips[].interface\" = "
                    + std::to_string(*ip.interface) + " does not name an interface");
        auto v = TRY(json_string(j, "version", w));
        if (v && *v != (ip.address.addr.family == 4 ? "4" : "6"))
            return make_error(Code::InvalidConfig, "invalid config: \"prevResult.ips[].version\" = \"" + *v
                    + "\" does not match " + ip.address.str());
        out.ips.push_back(ip);
    }
    auto routes = TRY(json_array(doc, "routes", where));
    for (auto& r : routes)
        out.routes.push_back(TRY(route_from_json(r, where + ".routes")));
    out.dns = TRY(dns_from_json(doc.value("dns", Json()), where + ".dns"));
    return out;
}

} // namespace cnm::cni
