#include "netlink/route.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if_arp.h>
#include <sys/socket.h>

namespace cnm::netlink {

namespace {

void put_ip(Request& r, uint16_t type, const IpAddr& a)
{
    unsigned char raw[16];
    int len = a.family == 4 ? 4 : 16;
    for (int i = 0; i < len; ++i)
        raw[i] = static_cast<unsigned char>(a.value >> (8 * (len - 1 - i)));
    r.put_bytes(type, raw, static_cast<size_t>(len));
}

std::optional<IpAddr> get_ip(const nlattr* attr, int family)
{
    size_t len = mnl_attr_get_payload_len(attr);
    if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16))
        return std::nullopt;
    auto* raw = static_cast<const unsigned char*>(mnl_attr_get_payload(attr));
    u128 v = 0;
    for (size_t i = 0; i < len; ++i)
        v = (v << 8) | raw[i];
    return IpAddr { family == AF_INET ? 4 : 6, v };
}

int af_of(int family)
{
    return family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
}

Link parse_link(const nlmsghdr* nlh)
{
    Link link;
    auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
    link.index = ifi->ifi_index;
    link.flags = ifi->ifi_flags;
    mnl_attr_parse(nlh, sizeof(*ifi), [](const nlattr* attr, void* data) -> int {
        auto* l = static_cast<Link*>(data);
        switch (mnl_attr_get_type(attr)) {
        case IFLA_IFNAME:
            l->name = mnl_attr_get_str(attr);
            break;
        case IFLA_MTU:
            l->mtu = static_cast<int>(mnl_attr_get_u32(attr));
            break;
        case IFLA_MASTER:
            l->master = static_cast<int>(mnl_attr_get_u32(attr));
            break;
        case IFLA_LINK:
            l->peer_index = static_cast<int>(mnl_attr_get_u32(attr));
            break;
        case IFLA_LINK_NETNSID:
            l->peer_netnsid = static_cast<int>(mnl_attr_get_u32(attr));
            break;
        case IFLA_ADDRESS:
            if (mnl_attr_get_payload_len(attr) == 6)
                std::memcpy(l->mac.data(), mnl_attr_get_payload(attr), 6);
            break;
        case IFLA_LINKINFO: {
            mnl_attr_parse_nested(attr, [](const nlattr* a, void* d) -> int {
                if (mnl_attr_get_type(a) == IFLA_INFO_KIND)
                    static_cast<Link*>(d)->kind = mnl_attr_get_str(a);
                return MNL_CB_OK;
            }, l);
            break;
        }
        }
        return MNL_CB_OK;
    }, &link);
    return link;
}

Result<std::optional<Link>> get_link_by(Socket& socket, int index, const std::string& name)
{
    Request r(RTM_GETLINK, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_family = AF_UNSPEC;
    r.family<ifinfomsg>()->ifi_index = index;
    if (!name.empty())
        r.put_str(IFLA_IFNAME, name);
    r.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    std::optional<Link> found;
    auto done = socket.query(r, "looking up link " + (name.empty() ? std::to_string(index) : name),
        [&](const nlmsghdr* nlh) {
            if (nlh->nlmsg_type == RTM_NEWLINK)
                found = parse_link(nlh);
        });
    if (!done) {
        if (socket.last_errno() == ENODEV)
            return std::optional<Link> {};
        return done.release_error();
    }
    return found;
}

} // namespace

std::optional<Mac> parse_mac(std::string_view text)
{
    Mac mac {};
    unsigned v[6];
    char tail;
    std::string copy(text);
    if (text.size() != 17 || std::sscanf(copy.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return std::nullopt;
    for (int i = 0; i < 6; ++i)
        mac[static_cast<size_t>(i)] = static_cast<uint8_t>(v[i]);
    return mac;
}

std::string mac_str(const Mac& mac)
{
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return buf;
}

bool Link::promisc() const
{
    return flags & IFF_PROMISC;
}

bool Link::up() const
{
    return flags & IFF_UP;
}

Result<std::optional<Link>> get_link(Socket& socket, const std::string& name)
{
    return get_link_by(socket, 0, name);
}

Result<std::optional<Link>> get_link(Socket& socket, int index)
{
    return get_link_by(socket, index, "");
}

Result<std::vector<Link>> list_links(Socket& socket)
{
    Request r(RTM_GETLINK, NLM_F_DUMP, sizeof(ifinfomsg));
    std::vector<Link> out;
    TRY(socket.query(r, "listing links", [&](const nlmsghdr* nlh) {
        if (nlh->nlmsg_type == RTM_NEWLINK)
            out.push_back(parse_link(nlh));
    }));
    return out;
}

Result<bool> create_bridge(Socket& socket, const BridgeSpec& spec)
{
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    r.put_str(IFLA_IFNAME, spec.name);
    if (spec.mtu)
        r.put_u32(IFLA_MTU, static_cast<uint32_t>(*spec.mtu));
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, "bridge");
        auto data = r.nest(IFLA_INFO_DATA);
        if (spec.vlan_filtering)
            r.put_u8(IFLA_BR_VLAN_FILTERING, 1);
    }
    auto done = socket.transact(r, "creating bridge " + spec.name);
    if (!done) {
        if (socket.last_errno() == EEXIST)
            return false;
        if (socket.last_errno() == EOPNOTSUPP && spec.vlan_filtering)
            return make_error(Code::Kernel, "bridge VLAN filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)",
                done.error().details);
        if (socket.last_errno() == EOPNOTSUPP)
            return make_error(Code::Kernel, "the kernel does not support bridge devices (CONFIG_BRIDGE)", done.error().details);
        return done.release_error();
    }
    return true;
}

Result<void> set_bridge_vlan_filtering(Socket& socket, int index, bool on)
{
    Request r(RTM_NEWLINK, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_index = index;
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, "bridge");
        auto data = r.nest(IFLA_INFO_DATA);
        r.put_u8(IFLA_BR_VLAN_FILTERING, on ? 1 : 0);
    }
    auto done = socket.transact(r, "setting vlan_filtering on the bridge");
    if (!done && socket.last_errno() == EOPNOTSUPP)
        return make_error(Code::Kernel, "bridge VLAN filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)",
            done.error().details);
    return done;
}

Result<void> create_veth(Socket& socket, const VethSpec& spec)
{
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    r.put_str(IFLA_IFNAME, spec.name);
    if (spec.mtu)
        r.put_u32(IFLA_MTU, static_cast<uint32_t>(*spec.mtu));
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, "veth");
        auto data = r.nest(IFLA_INFO_DATA);
        auto peer = r.nest(VETH_INFO_PEER);
        // The peer's attributes follow its own ifinfomsg inside the nest.
        ifinfomsg peer_header {};
        mnl_nlmsg_put_extra_header(r.header(), sizeof(peer_header));
        r.put_str(IFLA_IFNAME, spec.peer_name);
        if (spec.peer_netns_fd >= 0)
            r.put_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(spec.peer_netns_fd));
        if (spec.mtu)
            r.put_u32(IFLA_MTU, static_cast<uint32_t>(*spec.mtu));
        if (spec.peer_mac)
            r.put_bytes(IFLA_ADDRESS, spec.peer_mac->data(), 6);
    }
    auto done = socket.transact(r, "creating veth pair " + spec.name + "/" + spec.peer_name);
    if (!done && socket.last_errno() == EOPNOTSUPP)
        return make_error(Code::Kernel, "the kernel does not support veth devices (CONFIG_VETH)", done.error().details);
    return done;
}

namespace {

Result<void> create_child(Socket& socket, const MacvlanSpec& spec, const char* kind)
{
    bool ipvlan = std::string_view(kind) == "ipvlan";
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    r.put_str(IFLA_IFNAME, spec.name);
    r.put_u32(IFLA_LINK, static_cast<uint32_t>(spec.master));
    if (spec.netns_fd >= 0)
        r.put_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(spec.netns_fd));
    if (spec.mtu)
        r.put_u32(IFLA_MTU, static_cast<uint32_t>(*spec.mtu));
    if (spec.mac)
        r.put_bytes(IFLA_ADDRESS, spec.mac->data(), 6);
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, kind);
        auto data = r.nest(IFLA_INFO_DATA);
        if (ipvlan) {
            r.put_u16(IFLA_IPVLAN_MODE, static_cast<uint16_t>(spec.mode));
            if (spec.ipvlan_flags)
                r.put_u16(IFLA_IPVLAN_FLAGS, spec.ipvlan_flags);
        }
        else
            r.put_u32(IFLA_MACVLAN_MODE, spec.mode);
    }
    auto done = socket.transact(r, std::string("creating ") + kind + " " + spec.name);
    if (!done && socket.last_errno() == EOPNOTSUPP)
        return make_error(Code::Kernel, std::string(kind) + " is not supported by this kernel (CONFIG_" + (ipvlan ? "IPVLAN" : "MACVLAN") + ")",
            done.error().details);
    return done;
}

} // namespace

Result<void> create_macvlan(Socket& socket, const MacvlanSpec& spec)
{
    return create_child(socket, spec, "macvlan");
}

Result<void> create_ipvlan(Socket& socket, const MacvlanSpec& spec)
{
    return create_child(socket, spec, "ipvlan");
}

Result<void> create_vlan(Socket& socket, const std::string& name, int parent, uint16_t vid)
{
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_flags = IFF_UP;
    r.family<ifinfomsg>()->ifi_change = IFF_UP;
    r.put_str(IFLA_IFNAME, name);
    r.put_u32(IFLA_LINK, static_cast<uint32_t>(parent));
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, "vlan");
        auto data = r.nest(IFLA_INFO_DATA);
        r.put_u16(IFLA_VLAN_ID, vid);
    }
    auto done = socket.transact(r, "creating VLAN " + name);
    if (!done && socket.last_errno() == EOPNOTSUPP)
        return make_error(Code::Kernel, "802.1Q VLAN sub-interfaces are not supported by this kernel (CONFIG_VLAN_8021Q)", done.error().details);
    return done;
}

Result<void> delete_link(Socket& socket, int index)
{
    Request r(RTM_DELLINK, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_index = index;
    auto done = socket.transact(r, "deleting link " + std::to_string(index));
    if (!done && socket.last_errno() == ENODEV)
        return {};
    return done;
}

Result<void> delete_link(Socket& socket, const std::string& name)
{
    Request r(RTM_DELLINK, 0, sizeof(ifinfomsg));
    r.put_str(IFLA_IFNAME, name);
    auto done = socket.transact(r, "deleting link " + name);
    if (!done && socket.last_errno() == ENODEV)
        return {};
    return done;
}

Result<void> set_link(Socket& socket, int index, const LinkChange& change)
{
    Request r(RTM_NEWLINK, 0, sizeof(ifinfomsg));
    auto* ifi = r.family<ifinfomsg>();
    ifi->ifi_index = index;
    if (change.up) {
        ifi->ifi_change |= IFF_UP;
        ifi->ifi_flags |= *change.up ? IFF_UP : 0;
    }
    if (change.promisc) {
        ifi->ifi_change |= IFF_PROMISC;
        ifi->ifi_flags |= *change.promisc ? IFF_PROMISC : 0;
    }
    if (change.master)
        r.put_u32(IFLA_MASTER, static_cast<uint32_t>(*change.master));
    if (change.mtu)
        r.put_u32(IFLA_MTU, static_cast<uint32_t>(*change.mtu));
    if (change.name)
        r.put_str(IFLA_IFNAME, *change.name);
    if (change.mac)
        r.put_bytes(IFLA_ADDRESS, change.mac->data(), 6);
    return socket.transact(r, "configuring link " + (change.name ? *change.name : std::to_string(index)));
}

Result<void> set_bridge_port(Socket& socket, int index, const PortChange& change)
{
    // RTM_SETLINK, not NEWLINK: only SETLINK with AF_BRIDGE reaches the bridge's port handler.
    Request r(RTM_SETLINK, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_family = AF_BRIDGE;
    r.family<ifinfomsg>()->ifi_index = index;
    {
        auto protinfo = r.nest(IFLA_PROTINFO | NLA_F_NESTED);
        if (change.hairpin)
            r.put_u8(IFLA_BRPORT_MODE, *change.hairpin ? 1 : 0);
        if (change.isolated)
            r.put_u8(IFLA_BRPORT_ISOLATED, *change.isolated ? 1 : 0);
    }
    return socket.transact(r, "setting bridge-port flags");
}

static Result<void> bridge_vlan(Socket& socket, uint16_t type, int index, uint16_t vid, bool pvid_untagged, bool self)
{
    Request r(type, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_family = AF_BRIDGE;
    r.family<ifinfomsg>()->ifi_index = index;
    {
        auto spec = r.nest(IFLA_AF_SPEC);
        if (self)
            r.put_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF);
        bridge_vlan_info info {};
        info.vid = vid;
        if (pvid_untagged)
            info.flags = BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED;
        r.put_bytes(IFLA_BRIDGE_VLAN_INFO, &info, sizeof info);
    }
    return socket.transact(r, (type == RTM_SETLINK ? "adding VLAN " : "removing VLAN ") + std::to_string(vid));
}

Result<void> add_bridge_vlan(Socket& socket, int index, uint16_t vid, bool pvid_untagged, bool self)
{
    return bridge_vlan(socket, RTM_SETLINK, index, vid, pvid_untagged, self);
}

Result<void> del_bridge_vlan(Socket& socket, int index, uint16_t vid, bool self)
{
    return bridge_vlan(socket, RTM_DELLINK, index, vid, false, self);
}

Result<void> add_address(Socket& socket, int index, const IpNet& address, bool dad)
{
    Request r(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifaddrmsg));
    auto* ifa = r.family<ifaddrmsg>();
    ifa->ifa_family = static_cast<uint8_t>(af_of(address.addr.family));
    ifa->ifa_prefixlen = static_cast<uint8_t>(address.prefix);
    ifa->ifa_index = static_cast<uint32_t>(index);
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    put_ip(r, IFA_LOCAL, address.addr);
    put_ip(r, IFA_ADDRESS, address.addr);
    if (address.addr.family == 4 && address.prefix < 31)
        put_ip(r, IFA_BROADCAST, address.last());
    if (address.addr.family == 6 && !dad)
        r.put_u32(IFA_FLAGS, IFA_F_NODAD);
    return socket.transact(r, "adding address " + address.str());
}

Result<void> del_address(Socket& socket, int index, const IpNet& address)
{
    Request r(RTM_DELADDR, 0, sizeof(ifaddrmsg));
    auto* ifa = r.family<ifaddrmsg>();
    ifa->ifa_family = static_cast<uint8_t>(af_of(address.addr.family));
    ifa->ifa_prefixlen = static_cast<uint8_t>(address.prefix);
    ifa->ifa_index = static_cast<uint32_t>(index);
    put_ip(r, IFA_LOCAL, address.addr);
    return socket.transact(r, "removing address " + address.str());
}

Result<std::vector<Address>> list_addresses(Socket& socket, int index, int family)
{
    Request r(RTM_GETADDR, NLM_F_DUMP, sizeof(ifaddrmsg));
    r.family<ifaddrmsg>()->ifa_family = static_cast<uint8_t>(af_of(family));
    std::vector<Address> out;
    TRY(socket.query(r, "listing addresses", [&](const nlmsghdr* nlh) {
        if (nlh->nlmsg_type != RTM_NEWADDR)
            return;
        auto* ifa = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(nlh));
        if ((index > 0 && static_cast<int>(ifa->ifa_index) != index) || ifa->ifa_scope != RT_SCOPE_UNIVERSE)
            return;
        struct Found {
            const ifaddrmsg* ifa;
            std::optional<IpAddr> local, address;
        } found { ifa, {}, {} };
        mnl_attr_parse(nlh, sizeof(*ifa), [](const nlattr* attr, void* data) -> int {
            auto* f = static_cast<Found*>(data);
            if (mnl_attr_get_type(attr) == IFA_LOCAL)
                f->local = get_ip(attr, f->ifa->ifa_family);
            if (mnl_attr_get_type(attr) == IFA_ADDRESS)
                f->address = get_ip(attr, f->ifa->ifa_family);
            return MNL_CB_OK;
        }, &found);
        auto a = found.local ? found.local : found.address;
        if (a)
            out.push_back({ static_cast<int>(ifa->ifa_index), IpNet { *a, ifa->ifa_prefixlen } });
    }));
    return out;
}

Result<void> add_route(Socket& socket, const RouteSpec& route)
{
    Request r(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(rtmsg));
    auto* rtm = r.family<rtmsg>();
    rtm->rtm_family = static_cast<uint8_t>(af_of(route.dst.addr.family));
    rtm->rtm_dst_len = static_cast<uint8_t>(route.dst.prefix);
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_BOOT;
    rtm->rtm_type = RTN_UNICAST;
    rtm->rtm_scope = static_cast<uint8_t>(route.scope.value_or(route.gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK));
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
    if (route.mtu) {
        auto metrics = r.nest(RTA_METRICS);
        r.put_u32(RTAX_MTU, static_cast<uint32_t>(*route.mtu));
    }
    return socket.transact(r, "adding route to " + route.dst.str());
}

Result<std::vector<RouteSpec>> list_routes(Socket& socket, int family)
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
                f->route.oif = static_cast<int>(mnl_attr_get_u32(attr));
                break;
            }
            return MNL_CB_OK;
        }, &found);
        out.push_back(found.route);
    }));
    return out;
}

} // namespace cnm::netlink
