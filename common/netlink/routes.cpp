#include "netlink/routes.hpp"

#include "netlink/attr.hpp"

#include <cerrno>
#include <linux/rtnetlink.h>

namespace cnm::netlink {

using detail::af_of;
using detail::get_ip;
using detail::put_ip;

namespace {

Request build_route(uint16_t type, uint16_t flags, const RouteSpec& route)
{
    bool del = type == RTM_DELROUTE;
    Request r(type, flags, sizeof(rtmsg));
    auto* rtm = r.family<rtmsg>();
    rtm->rtm_family = static_cast<uint8_t>(af_of(route.dst.addr.family));
    rtm->rtm_dst_len = static_cast<uint8_t>(route.dst.prefix);
    rtm->rtm_table = RT_TABLE_MAIN;
    if (del) {
        // Zero protocol and type match any; RT_SCOPE_NOWHERE matches any scope.
        rtm->rtm_scope = RT_SCOPE_NOWHERE;
    }
    else {
        rtm->rtm_protocol = RTPROT_BOOT;
        rtm->rtm_type = RTN_UNICAST;
        rtm->rtm_scope = static_cast<uint8_t>(route.scope.value_or(route.gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK));
    }
    if (route.onlink)
        rtm->rtm_flags |= RTNH_F_ONLINK;
    if (route.dst.prefix > 0)
        put_ip(r, RTA_DST, route.dst.network());
    if (route.gw)
        put_ip(r, RTA_GATEWAY, *route.gw);
    if (route.oif)
        r.put_u32(RTA_OIF, static_cast<uint32_t>(route.oif));
    if (route.priority)
        r.put_u32(RTA_PRIORITY, static_cast<uint32_t>(*route.priority));
    if (route.table) {
        rtm->rtm_table = RT_TABLE_UNSPEC;
        r.put_u32(RTA_TABLE, static_cast<uint32_t>(*route.table));
    }
    if (route.mtu && !del) {
        auto metrics = r.nest(RTA_METRICS);
        r.put_u32(RTAX_MTU, static_cast<uint32_t>(*route.mtu));
    }
    return r;
}

} // namespace

Request build_route_add(const RouteSpec& route)
{
    return build_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route);
}

Request build_route_replace(const RouteSpec& route)
{
    return build_route(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, route);
}

Request build_route_delete(const RouteSpec& route)
{
    return build_route(RTM_DELROUTE, 0, route);
}

Result<void> add_route(Socket& socket, const RouteSpec& route)
{
    auto r = build_route_add(route);
    return socket.transact(r, "adding route to " + route.dst.str());
}

Result<void> replace_route(Socket& socket, const RouteSpec& route)
{
    auto r = build_route_replace(route);
    return socket.transact(r, "replacing route to " + route.dst.str());
}

Result<void> delete_route(Socket& socket, const RouteSpec& route)
{
    auto r = build_route_delete(route);
    auto done = socket.transact(r, "deleting route to " + route.dst.str());
    if (!done && (done.error().sys_errno == ESRCH || done.error().sys_errno == ENODEV))
        return {};
    return done;
}

Result<std::vector<RouteSpec>> list_routes(Socket& socket, int family, int oif)
{
    Request r(RTM_GETROUTE, NLM_F_DUMP, sizeof(rtmsg));
    r.family<rtmsg>()->rtm_family = static_cast<uint8_t>(af_of(family));
    std::vector<RouteSpec> out;
    TRY(socket.query(r, "listing routes", [&](const nlmsghdr* nlh) {
        if (nlh->nlmsg_type != RTM_NEWROUTE)
            return;
        auto* rtm = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(nlh));
        if (rtm->rtm_table != RT_TABLE_MAIN || rtm->rtm_type != RTN_UNICAST)
            return;
        struct Found {
            const rtmsg* rtm;
            RouteSpec route;
        } found { rtm, {} };
        found.route.dst = IpNet { IpAddr { rtm->rtm_family == AF_INET ? 4 : 6, 0 }, rtm->rtm_dst_len };
        found.route.scope = rtm->rtm_scope;
        found.route.onlink = rtm->rtm_flags & RTNH_F_ONLINK;
        mnl_attr_parse(nlh, sizeof(*rtm), [](const nlattr* attr, void* data) -> int {
            auto* f = static_cast<Found*>(data);
            switch (mnl_attr_get_type(attr)) {
            case RTA_DST:
                if (auto a = get_ip(attr, f->rtm->rtm_family))
                    f->route.dst.addr = *a;
                break;
            case RTA_GATEWAY:
                f->route.gw = get_ip(attr, f->rtm->rtm_family);
                break;
            case RTA_OIF:
                if (mnl_attr_get_payload_len(attr) == 4)
                    f->route.oif = static_cast<int>(mnl_attr_get_u32(attr));
                break;
            case RTA_PRIORITY:
                if (mnl_attr_get_payload_len(attr) == 4)
                    f->route.priority = static_cast<int>(mnl_attr_get_u32(attr));
                break;
            case RTA_METRICS:
                mnl_attr_parse_nested(attr, [](const nlattr* m, void* d) -> int {
                    if (mnl_attr_get_type(m) == RTAX_MTU && mnl_attr_get_payload_len(m) == 4)
                        static_cast<RouteSpec*>(d)->mtu = static_cast<int>(mnl_attr_get_u32(m));
                    return MNL_CB_OK;
                }, &f->route);
                break;
            }
            return MNL_CB_OK;
        }, &found);
        if (oif > 0 && found.route.oif != oif)
            return;
        out.push_back(found.route);
    }));
    return out;
}

} // namespace cnm::netlink
