#pragma once
// Firewall rules through libnftables (no exec of nft or iptables). Every per-endpoint change is
// an element added to or deleted from a set or map, inside tables of our own, so that ADD and DEL
// never need rule handles and never touch anyone else's rules:
//
//   table ip cnm / ip6 cnm (nat)
//     map masq     { addr : verdict }          one element per masqueraded container address
//     chain postrouting (nat hook)             ip saddr vmap @masq
//     chain "n-<network>"                      accept to the network's subnet and multicast, masquerade the rest
//   table bridge cnm (filter)
//     set guarded  { ifname }                  host veths with MAC spoof checking
//     set allowed  { ifname . ether_addr }     the one MAC each may send from
//     chain prerouting (filter hook)           iifname @guarded iifname . ether saddr != @allowed drop
//
// The shared objects are (re)declared idempotently in the same transaction as the element, so
// parallel ADDs are safe: nftables applies each batch atomically.

#include "net/ip.hpp"
#include "util/result.hpp"

#include <string>

namespace cnm::firewall {

Result<void> add_masquerade(const std::string& network, const IpNet& address);
/// Removes the element; an absent element, table or map is success.
Result<void> del_masquerade(const IpNet& address);
Result<bool> has_masquerade(const IpNet& address);

Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac);
Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac);
Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac);

} // namespace cnm::firewall
