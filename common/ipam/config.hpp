#pragma once
// host-local's configuration, read as host-local reads it (reference/cni.md §2.5): range sets in
// "ranges" (plus runtimeConfig.ipRanges before them and the legacy top-level subnet/rangeStart/
// rangeEnd/gateway as the first set), "routes", "resolvConf", and the requested addresses from
// CNI_ARGS IP=, args.cni.ips and runtimeConfig.ips.

#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/types.hpp"
#include "net/ip.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm::ipam {

struct Range {
    IpNet subnet;   // network address / prefix
    IpAddr start;   // first address handed out
    IpAddr end;     // last address handed out
    IpAddr gateway; // never handed out

    /// In [start, end], and neither the network nor the IPv4 broadcast address.
    bool usable(const IpAddr& a) const;
    bool contains(const IpAddr& a) const { return subnet.contains(a) && a >= start && a <= end; }
};

using RangeSet = std::vector<Range>;

/// "10.0.0.2-10.0.0.254,…" for messages.
std::string range_set_str(const RangeSet& set);

struct IpamConf {
    std::string type;
    std::string address_space = "local";
    std::vector<RangeSet> range_sets;
    std::vector<cni::Route> routes;
    cni::Dns dns;                  // from resolvConf
    std::vector<IpAddr> requested; // in the order given
};

/// Parses and validates; every problem is code 7 naming the key (or 4 for CNI_ARGS).
Result<IpamConf> parse_ipam_conf(const cni::NetConf& conf, const cni::CniArgs& args);

/// Parses a resolv.conf body into CNI dns.
cni::Dns parse_resolv_conf(std::string_view text);

} // namespace cnm::ipam
