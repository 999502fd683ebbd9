#include "cni/ipam_conf.hpp"

#include "cni/version.hpp"
#include "util/file.hpp"


namespace cnm::ipam {

namespace {

Error invalid(const std::string& msg)
{
    return make_error(Code::InvalidConfig, "invalid IPAM config: " + msg);
}

Result<std::optional<IpAddr>> addr_key(const Json& obj, const char* key, const std::string& where)
{
    auto text = TRY(json_string(obj, key, where));
    if (!text || text->empty())
        return std::optional<IpAddr> {};
    auto a = IpAddr::parse(*text);
    if (!a)
        return invalid("\"" + where + "." + key + "\" = \"" + *text + "\" is not an IP address");
    return std::optional<IpAddr>(*a);
}

Result<Range> parse_range(const Json& obj, const std::string& where)
{
    if (!obj.is_object())
        return invalid("each entry of \"" + where + "\" must be an object");
    auto subnet_text = TRY(json_string(obj, "subnet", where));
    if (!subnet_text || subnet_text->empty())
        return invalid("\"" + where + ".subnet\" is required");
    auto subnet = IpNet::parse(*subnet_text);
    if (!subnet)
        return invalid("\"" + where + ".subnet\" = \"" + *subnet_text + "\" is not a CIDR");
    if (!subnet->is_network())
        return invalid("\"" + where + ".subnet\" = \"" + *subnet_text + "\" has host bits set; the network address is "
            + subnet->network().str() + "/" + std::to_string(subnet->prefix));
    if (subnet->prefix > subnet->addr.bits() - 2)
        return invalid("\"" + where + ".subnet\" = \"" + *subnet_text + "\" is too small to allocate from");
    Range r;
    r.subnet = *subnet;
    auto gw = TRY(addr_key(obj, "gateway", where));
    auto start = TRY(addr_key(obj, "rangeStart", where));
    auto end = TRY(addr_key(obj, "rangeEnd", where));
    r.gateway = gw.value_or(subnet->network().next());
    r.start = start.value_or(subnet->network().next());
    IpAddr last = subnet->last();
    r.end = end.value_or(subnet->addr.family == 4 ? IpAddr { 4, last.value - 1 } : last);
    for (auto [name, a] : { std::pair { "rangeStart", r.start }, { "rangeEnd", r.end }, { "gateway", r.gateway } })
        if (!subnet->contains(a))
            return invalid("\"" + where + "." + name + "\" = " + a.str() + " is not in " + subnet->str());
    if (r.start > r.end)
        return invalid("\"" + where + "\": rangeStart " + r.start.str() + " is after rangeEnd " + r.end.str());
    return r;
}

Result<RangeSet> parse_range_set(const Json& list, const std::string& where)
{
    if (!list.is_array())
        return invalid("\"" + where + "\" must be a list of ranges");
    if (list.empty())
        return invalid("\"" + where + "\" is an empty range set");
    RangeSet set;
    for (auto& item : list)
        set.push_back(TRY(parse_range(item, where)));
    for (size_t i = 0; i < set.size(); ++i) {
        if (set[i].subnet.addr.family != set[0].subnet.addr.family)
            return invalid("\"" + where + "\" mixes address families");
        for (size_t j = 0; j < i; ++j)
            if (set[i].start <= set[j].end && set[j].start <= set[i].end)
                return invalid("ranges " + set[j].subnet.str() + " and " + set[i].subnet.str() + " in \"" + where + "\" overlap");
    }
    return set;
}

Result<void> append_requested(const Json& list, const std::string& where, std::vector<IpAddr>& out)
{
    if (list.is_null())
        return {};
    if (!list.is_array())
        return invalid("\"" + where + "\" must be a list of IP addresses");
    for (auto& item : list) {
        if (!item.is_string())
            return invalid("\"" + where + "\" must be a list of IP addresses");
        auto a = parse_ip_maybe_cidr(item.get<std::string>());
        if (!a)
            return invalid("\"" + where + "\" holds \"" + item.get<std::string>() + "\", which is not an IP address");
        out.push_back(*a);
    }
    return {};
}

} // namespace

cni::Dns parse_resolv_conf(std::string_view text)
{
    // Split by hand, not with <sstream>: streams would link libstdc++'s locale machinery into every
    // plugin (its static initializers and ~2 000 relocated vtable pointers run on each exec).
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; };
    cni::Dns dns;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view {} : text.substr(end + 1);
        std::vector<std::string> words;
        for (size_t i = 0; i < line.size();) {
            while (i < line.size() && space(line[i]))
                ++i;
            size_t start = i;
            while (i < line.size() && !space(line[i]))
                ++i;
            if (i > start)
                words.emplace_back(line.substr(start, i - start));
        }
        if (words.empty() || words[0][0] == '#' || words[0][0] == ';')
            continue;
        const std::string& key = words[0];
        std::vector<std::string> values(words.begin() + 1, words.end());
        if (key == "nameserver" && !values.empty())
            dns.nameservers.push_back(values[0]);
        else if (key == "domain" && !values.empty())
            dns.domain = values[0];
        else if (key == "search")
            dns.search = values;
        else if (key == "options")
            dns.options.insert(dns.options.end(), values.begin(), values.end());
    }
    return dns;
}

Result<IpamConf> parse_ipam_conf(const cni::NetConf& conf, const cni::CniArgs& args)
{
    if (conf.ipam.is_null())
        return invalid("the \"ipam\" section is missing");
    const Json& ipam = conf.ipam;
    IpamConf out;
    out.type = TRY(json_string(ipam, "type", "ipam")).value_or("");
    (void)TRY(json_string(ipam, "dataDir", "ipam"));
    if (auto space = TRY(json_string(ipam, "addressSpace", "ipam"))) {
        if (space->empty() || space->find('/') != std::string::npos || (*space)[0] == '.' || space->size() > 64)
            return invalid("\"ipam.addressSpace\" = \"" + *space + "\" is not a usable name");
        out.address_space = *space;
        out.shared_space = true;
    }

    // runtimeConfig.ipRanges come first, then the legacy top-level range, then "ranges".
    if (conf.runtime_config.is_object()) {
        auto ip_ranges = TRY(json_array(conf.runtime_config, "ipRanges", "runtimeConfig"));
        for (auto& set : ip_ranges)
            out.range_sets.push_back(TRY(parse_range_set(set, "runtimeConfig.ipRanges")));
    }
    if (ipam.contains("subnet"))
        out.range_sets.push_back(TRY(parse_range_set(Json::array({ ipam }), "ipam")));
    auto ranges = TRY(json_array(ipam, "ranges", "ipam"));
    for (auto& set : ranges)
        out.range_sets.push_back(TRY(parse_range_set(set, "ipam.ranges")));
    if (out.range_sets.empty())
        return invalid("no IP ranges specified (\"ipam.ranges\" or \"ipam.subnet\")");

    for (size_t i = 0; i < out.range_sets.size(); ++i)
        for (size_t j = 0; j < i; ++j)
            for (auto& a : out.range_sets[i])
                for (auto& b : out.range_sets[j])
                    if (a.start.family == b.start.family && a.start <= b.end && b.start <= a.end)
                        return invalid("range sets overlap: " + b.start.str() + "-" + b.end.str() + " and "
                            + a.start.str() + "-" + a.end.str());

    if (!cni::at_least(conf.cni_version, "0.3.0")) {
        int v4 = 0, v6 = 0;
        for (auto& set : out.range_sets)
            (set[0].subnet.addr.family == 4 ? v4 : v6)++;
        if (v4 > 1 || v6 > 1)
            return invalid("cniVersion " + conf.cni_version + " allows one address per family, but the config has more range sets");
    }

    auto routes = TRY(json_array(ipam, "routes", "ipam"));
    for (auto& r : routes)
        out.routes.push_back(TRY(cni::route_from_json(r, "ipam.routes")));

    if (auto path = TRY(json_string(ipam, "resolvConf", "ipam")); path && !path->empty()) {
        // A regular file of at most 64 KiB: a FIFO would hang the plugin, /dev/zero fill memory.
        auto body = read_regular_file(*path, conf_file_limit, "ipam.resolvConf");
        if (!body)
            return invalid(body.error().msg);
        out.dns = parse_resolv_conf(*body);
    }

    // Requested addresses: every source is used, as host-local does.
    if (auto ip = args.get("IP")) {
        std::string_view rest = *ip;
        while (!rest.empty()) {
            auto comma = rest.find(',');
            auto piece = rest.substr(0, comma);
            auto a = parse_ip_maybe_cidr(piece);
            if (!a)
                return make_error(Code::InvalidEnv, "CNI_ARGS: IP=\"" + std::string(piece) + "\" is not an IP address");
            out.requested.push_back(*a);
            rest = comma == std::string_view::npos ? std::string_view {} : rest.substr(comma + 1);
        }
    }
    if (conf.args.is_object() && conf.args.contains("cni")) {
        auto cni = TRY(json_object(conf.args, "cni", "args"));
        if (!cni.is_null())
            TRY(append_requested(cni.value("ips", Json()), "args.cni.ips", out.requested));
    }
    if (conf.runtime_config.is_object())
        TRY(append_requested(conf.runtime_config.value("ips", Json()), "runtimeConfig.ips", out.requested));
    return out;
}

} // namespace cnm::ipam
