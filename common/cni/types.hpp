#pragma once
// One internal model of a CNI result (the 1.1.0 superset), printed in whichever cniVersion the conf
// asks for and read from any version (a prevResult may differ from the conf's version).

#include "net/ip.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm::cni {

struct Interface {
    std::string name;
    std::string mac;
    std::optional<int> mtu;       // 1.1.0
    std::string sandbox;
    std::string socket_path;      // 1.1.0
    std::string pci_id;           // 1.1.0
};

struct IpConfig {
    IpNet address;                // interface address with its prefix
    std::optional<IpAddr> gateway;
    std::optional<int> interface; // index into interfaces; absent in IPAM results
};

struct Route {
    IpNet dst;
    std::optional<IpAddr> gw;
    std::optional<int> mtu, advmss, priority, table, scope; // 1.1.0
};

struct Dns {
    std::vector<std::string> nameservers;
    std::string domain;
    std::vector<std::string> search;
    std::vector<std::string> options;
    bool empty() const { return nameservers.empty() && domain.empty() && search.empty() && options.empty(); }
};

struct CniResult {
    std::vector<Interface> interfaces;
    std::vector<IpConfig> ips;
    std::vector<Route> routes;
    Dns dns;
};

/// Prints `result` in the shape of `version`. Fails (code 1) when the shape cannot hold it, e.g.
/// two IPv4 addresses in a 0.2.0 result.
Result<Json> result_to_json(const CniResult& result, std::string_view version);

/// Reads a result of any supported version (ip4/ip6 or interfaces/ips).
Result<CniResult> result_from_json(const Json& doc);

Result<Dns> dns_from_json(const Json& obj, const std::string& where);
Json dns_to_json(const Dns& dns);
Result<Route> route_from_json(const Json& obj, const std::string& where);

} // namespace cnm::cni
