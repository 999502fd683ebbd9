#pragma once
// host-local's configuration, read as host-local reads it (reference/cni.md §2.5): range sets in
// "ranges" (plus runtimeConfig.ipRanges before them and the legacy top-level subnet/rangeStart/
// rangeEnd/gateway as the first set), "routes", "resolvConf", and the requested addresses from
// CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips. The CNI side of the IPAM: ipam/ knows no CNI.

#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/types.hpp"
#include "ipam/config.hpp"

namespace cnm::ipam {

/// Parses and validates; every problem is code 7 naming the key (or 4 for CNI_ARGS).
Result<IpamConf> parse_ipam_conf(const cni::NetConf& conf, const cni::CniArgs& args);

/// Parses a resolv.conf body into CNI dns.
Dns parse_resolv_conf(std::string_view text);

} // namespace cnm::ipam
