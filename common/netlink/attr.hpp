#pragma once
// Shared by the rtnetlink verbs (link, bridge_port, address, routes, neigh): IP addresses as
// attributes, in network byte order, and our family numbers (4, 6) as AF_*. Not a public API.

#include "net/ip.hpp"
#include "netlink/request.hpp"

#include <optional>

namespace cnm::netlink::detail {

/// 4 bytes for IPv4, 16 for IPv6, most significant first.
void put_ip(Request& r, uint16_t type, const IpAddr& a);
/// The address in `attr`, if its length fits `family` (AF_INET / AF_INET6).
std::optional<IpAddr> get_ip(const nlattr* attr, int family);
/// 4 → AF_INET, 6 → AF_INET6, anything else → AF_UNSPEC.
int af_of(int family);
/// AF_INET → 4, AF_INET6 → 6, else 0.
int family_of(int af);

} // namespace cnm::netlink::detail
