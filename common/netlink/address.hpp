#pragma once
// Interface addresses: add (IPv6 without DAD unless asked), remove, list.

#include "net/ip.hpp"
#include "netlink/socket.hpp"

#include <vector>

namespace cnm::netlink {

struct Address {
    int index = 0;
    IpNet address;
};
/// Adds an address; IPv6 addresses are added with IFA_F_NODAD unless `dad`.
Result<void> add_address(Socket& socket, int index, const IpNet& address, bool dad = false);
Result<void> del_address(Socket& socket, int index, const IpNet& address);
/// Global-scope addresses of one link (index > 0) or of all links.
Result<std::vector<Address>> list_addresses(Socket& socket, int index, int family = 0);

} // namespace cnm::netlink
