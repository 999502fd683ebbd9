#pragma once
// What an attachment gives a container, as plain values: its interfaces, addresses, routes and
// DNS. Neither CNI nor Docker: the CNI layer prints it in a cniVersion (cni/types.hpp), the shim
// turns it into a Join reply, the drivers and the IPAM fill it in.

#include "net/ip.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm {

struct Interface {
    std::string name;
    std::string mac;
    std::optional<int> mtu;       // CNI 1.1.0
    std::string sandbox;          // the netns path; empty for a host interface
    std::string socket_path;      // CNI 1.1.0
    std::string pci_id;           // CNI 1.1.0
};

struct IpConfig {
    IpNet address;                // interface address with its prefix
    std::optional<IpAddr> gateway;
    std::optional<int> interface; // index into interfaces; absent in IPAM results
};

struct Route {
    IpNet dst;
    std::optional<IpAddr> gw;
    std::optional<int> mtu, advmss, priority, table, scope; // CNI 1.1.0
};

struct Dns {
    std::vector<std::string> nameservers;
    std::string domain;
    std::vector<std::string> search;
    std::vector<std::string> options;
    bool empty() const { return nameservers.empty() && domain.empty() && search.empty() && options.empty(); }
};

/// The whole of it: the CNI result's model (the 1.1.0 superset).
struct NetSetup {
    std::vector<Interface> interfaces;
    std::vector<IpConfig> ips;
    std::vector<Route> routes;
    Dns dns;
};

/// An interface name the kernel accepts and that is safe as a path component: 1-15 bytes, no
/// '/', ':', whitespace or NUL, not "." or "..".
bool valid_ifname(std::string_view name);

} // namespace cnm
