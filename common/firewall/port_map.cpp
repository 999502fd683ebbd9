// Published ports as values and as the JSON endpoint records keep them: no libnftables here, so
// the model (and the static ipam plugin that links it) can read and write them.
#include "firewall/nft.hpp"

namespace cnm::firewall {

std::optional<std::string> proto_name(int proto)
{
    switch (proto) {
    case 6:
        return "tcp";
    case 17:
        return "udp";
    case 132:
        return "sctp";
    default:
        return std::nullopt;
    }
}

Json port_map_json(const PortMap& m)
{
    Json doc = { { "proto", m.proto }, { "hostPort", m.host_port }, { "container", m.container.str() }, { "port", m.port } };
    if (m.host_ip)
        doc["hostIP"] = m.host_ip->str();
    return doc;
}

std::optional<PortMap> port_map_from_json(const Json& doc)
{
    try {
        PortMap m;
        m.proto = doc.at("proto").get<int>();
        m.host_port = doc.at("hostPort").get<uint16_t>();
        m.port = doc.at("port").get<uint16_t>();
        auto container = IpAddr::parse(doc.at("container").get<std::string>());
        if (!container)
            return std::nullopt;
        m.container = *container;
        if (doc.contains("hostIP")) {
            m.host_ip = IpAddr::parse(doc["hostIP"].get<std::string>());
            if (!m.host_ip)
                return std::nullopt;
        }
        return m;
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::string PortMap::str() const
{
    std::string host = host_ip ? (host_ip->family == 6 ? "[" + host_ip->str() + "]" : host_ip->str()) : "*";
    std::string to = container.family == 6 ? "[" + container.str() + "]" : container.str();
    return proto_name(proto).value_or("?") + " " + host + ":" + std::to_string(host_port) + " -> " + to + ":" + std::to_string(port);
}

} // namespace cnm::firewall
