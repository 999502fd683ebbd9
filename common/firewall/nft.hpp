#pragma once
// Firewall rules through libnftables (no exec of nft or iptables). Every per-endpoint change is
// an element added to or deleted from a set or map, inside tables of our own, so that ADD and DEL
// never need rule handles and never touch anyone else's rules:
//
//   table ip cnm / ip6 cnm (nat)
//     map masq     { addr : verdict }          one element per masqueraded container address
//     chain postrouting (nat hook)             ip saddr vmap @masq
//     chain "n-<network>"                      accept to the network's subnet and multicast, masquerade the rest
//     map ports    { haddr . proto . port : caddr . port }   published ports on one host address
//     map anyports { proto . port : caddr . port }           published ports on every local address
//     chains prerouting/output (nat hooks)     dnat through both maps (anyports only for local daddr)
//   table bridge cnm (filter)
//     set guarded  { ifname }                  host veths with MAC spoof checking
//     set allowed  { ifname . ether_addr }     the one MAC each may send from
//     chain prerouting (filter hook)           iifname @guarded iifname . ether saddr != @allowed drop
//
// The shared objects are (re)declared idempotently in the same transaction as the element, so
// parallel ADDs are safe: nftables applies each batch atomically.

#include "net/ip.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <optional>
#include <string>
#include <vector>

namespace cnm::firewall {

Result<void> add_masquerade(const std::string& network, const IpNet& address);
/// Removes the element; an absent element, table or map is success.
Result<void> del_masquerade(const IpNet& address);
Result<bool> has_masquerade(const IpNet& address);

/// The network's own chain (n-<network>); absent, or still in use, is fine.
Result<void> remove_network(const std::string& network);

Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac);
Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac);
Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac);

/// One published port: traffic to host_ip:host_port (any local address when host_ip is unset) is
/// sent to container:port. The family of `container` picks the table.
struct PortMap {
    int proto = 6; // IPPROTO_TCP, _UDP or _SCTP
    std::optional<IpAddr> host_ip;
    uint16_t host_port = 0;
    IpAddr container;
    uint16_t port = 0;

    std::string str() const;
    bool operator==(const PortMap&) const = default;
};
std::optional<std::string> proto_name(int proto);
/// {"proto":6,"hostIP":"…","hostPort":8080,"container":"…","port":80}, as endpoint records keep it.
Json port_map_json(const PortMap& map);
std::optional<PortMap> port_map_from_json(const Json& doc);
/// All or none; a host port that is already published (by anyone) is an error.
Result<void> add_port_maps(const std::vector<PortMap>& maps);
/// Absent elements are fine.
Result<void> del_port_maps(const std::vector<PortMap>& maps);
Result<bool> has_port_map(const PortMap& map);

} // namespace cnm::firewall
