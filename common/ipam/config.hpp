#pragma once
// An IPAM configuration as values: range sets, routes, dns, requested addresses. Read from a CNI
// conf by cni/ipam_conf.hpp; the pools (ipam/pool.hpp) allocate from it.

#include "net/config.hpp"
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
    /// False when the conf names no address space: then each network allocates on its own
    /// (host-local's rule), in the space "cni:<network>". A space the conf names is shared by
    /// every network that names it.
    bool shared_space = false;
    std::vector<RangeSet> range_sets;
    std::vector<Route> routes;
    Dns dns;                     // from resolvConf
    std::vector<IpAddr> requested; // in the order given
};

} // namespace cnm::ipam
