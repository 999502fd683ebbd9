#pragma once
// One internal model of a CNI result (the 1.1.0 superset), printed in whichever cniVersion the conf
// asks for and read from any version (a prevResult may differ from the conf's version).

#include "net/config.hpp"
#include "net/ip.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm::cni {

using Interface = cnm::Interface;
using IpConfig = cnm::IpConfig;
using Route = cnm::Route;
using Dns = cnm::Dns;
using CniResult = cnm::NetSetup;

/// Prints `result` in the shape of `version`. Fails (code 1) when the shape cannot hold it, e.g.
/// two IPv4 addresses in a 0.2.0 result.
Result<Json> result_to_json(const CniResult& result, std::string_view version);

/// Reads a result of any supported version (ip4/ip6 or interfaces/ips).
Result<CniResult> result_from_json(const Json& doc);

Result<Dns> dns_from_json(const Json& obj, const std::string& where);
Json dns_to_json(const Dns& dns);
Result<Route> route_from_json(const Json& obj, const std::string& where);

} // namespace cnm::cni
