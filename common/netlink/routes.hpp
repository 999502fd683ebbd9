#pragma once
// Routes in the main table (or a given one): add (exclusive), replace (create or overwrite, the
// reconciler's verb), delete (absent is success), list — optionally those through one device.
// `onlink` (RTNH_F_ONLINK) lets the gateway be off every connected subnet: flannel's
// `route <remote block> via <remote .0> dev vxlan onlink`.

#include "net/ip.hpp"
#include "netlink/socket.hpp"

#include <optional>
#include <vector>

namespace cnm::netlink {

struct RouteSpec {
    IpNet dst;
    std::optional<IpAddr> gw;
    int oif = 0;
    std::optional<int> mtu;
    std::optional<int> priority;
    std::optional<int> table;
    std::optional<int> scope; // RT_SCOPE_*; default: link without gw, universe with gw
    bool onlink = false;      // RTNH_F_ONLINK: the gateway is on the link, whatever its subnet
};
Request build_route_add(const RouteSpec& route);
Request build_route_replace(const RouteSpec& route);
Request build_route_delete(const RouteSpec& route);
Result<void> add_route(Socket& socket, const RouteSpec& route);
/// NLM_F_CREATE | NLM_F_REPLACE: the route to `dst` (same table, priority) becomes this one.
Result<void> replace_route(Socket& socket, const RouteSpec& route);
/// Deletes the route to `dst`; `gw`, `oif`, `priority` and `table`, when set, narrow the match.
/// An absent route (ESRCH) or device (ENODEV) is success.
Result<void> delete_route(Socket& socket, const RouteSpec& route);
/// Unicast routes of the main table (dst, gw, oif, priority, scope, onlink, mtu); with oif > 0,
/// only those through that device.
Result<std::vector<RouteSpec>> list_routes(Socket& socket, int family, int oif = 0);

} // namespace cnm::netlink
