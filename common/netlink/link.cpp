#include "netlink/link.hpp"

#include "netlink/attr.hpp"
#include "util/text.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>

namespace cnm::netlink {

using detail::get_ip;
using detail::put_ip;

namespace {

VxlanInfo parse_vxlan(const nlattr* data)
{
    VxlanInfo info;
    mnl_attr_parse_nested(data, [](const nlattr* a, void* d) -> int {
        auto* v = static_cast<VxlanInfo*>(d);
        size_t len = mnl_attr_get_payload_len(a);
        switch (mnl_attr_get_type(a)) {
        case IFLA_VXLAN_ID:
            if (len == 4)
                v->vni = mnl_attr_get_u32(a);
            break;
        case IFLA_VXLAN_PORT:
            if (len == 2)
                v->port = ntohs(mnl_attr_get_u16(a));
            break;
        case IFLA_VXLAN_LEARNING:
            if (len == 1)
                v->learning = mnl_attr_get_u8(a) != 0;
            break;
        case IFLA_VXLAN_PROXY:
            if (len == 1)
                v->proxy = mnl_attr_get_u8(a) != 0;
            break;
        case IFLA_VXLAN_TTL:
            if (len == 1)
                v->ttl = mnl_attr_get_u8(a);
            break;
        case IFLA_VXLAN_LINK:
            if (len == 4)
                v->underlay = static_cast<int>(mnl_attr_get_u32(a));
            break;
        case IFLA_VXLAN_LOCAL:
            v->local = get_ip(a, AF_INET);
            break;
        case IFLA_VXLAN_LOCAL6:
            v->local = get_ip(a, AF_INET6);
            break;
        }
        return MNL_CB_OK;
    }, &info);
    return info;
}

Link parse_link(const nlmsghdr* nlh)
{
    struct Parsed {
        Link link;
        const nlattr* info_data = nullptr;
    } parsed;
    auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(nlh));
    parsed.link.index = ifi->ifi_index;
    parsed.link.flags = ifi->ifi_flags;
    mnl_attr_parse(nlh, sizeof(*ifi), [](const nlattr* attr, void* data) -> int {
        auto* p = static_cast<Parsed*>(data);
        auto* l = &p->link;
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
                auto* p = static_cast<Parsed*>(d);
                if (mnl_attr_get_type(a) == IFLA_INFO_KIND)
                    p->link.kind = mnl_attr_get_str(a);
                else if (mnl_attr_get_type(a) == IFLA_INFO_DATA)
                    p->info_data = a;
                return MNL_CB_OK;
            }, p);
            break;
        }
        }
        return MNL_CB_OK;
    }, &parsed);
    if (parsed.link.kind == "vxlan" && parsed.info_data)
        parsed.link.vxlan = parse_vxlan(parsed.info_data);
    return std::move(parsed.link);
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
        if (done.error().sys_errno == ENODEV)
            return std::optional<Link> {};
        return done.release_error();
    }
    return found;
}

// A kernel without the kind answers EOPNOTSUPP ("Unknown device type"): say which option.
Result<void> kind_supported(Result<void> done, const char* missing)
{
    if (!done && done.error().sys_errno == EOPNOTSUPP)
        return errno_error(Code::Kernel, EOPNOTSUPP, missing, done.error().details);
    return done;
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
    std::string out;
    out.reserve(17);
    for (size_t i = 0; i < mac.size(); ++i) {
        if (i)
            out += ':';
        append_hex(out, mac[i], 2);
    }
    return out;
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

Request build_new_link(const NewLink& envelope, std::string_view kind, const KindFill& fill)
{
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    if (envelope.up) {
        r.family<ifinfomsg>()->ifi_flags = IFF_UP;
        r.family<ifinfomsg>()->ifi_change = IFF_UP;
    }
    r.put_str(IFLA_IFNAME, envelope.name);
    if (envelope.parent > 0)
        r.put_u32(IFLA_LINK, static_cast<uint32_t>(envelope.parent));
    if (envelope.netns_fd >= 0)
        r.put_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(envelope.netns_fd));
    if (envelope.mtu)
        r.put_u32(IFLA_MTU, static_cast<uint32_t>(*envelope.mtu));
    if (envelope.mac)
        r.put_bytes(IFLA_ADDRESS, envelope.mac->data(), 6);
    if (envelope.one_queue) {
        r.put_u32(IFLA_NUM_TX_QUEUES, 1);
        r.put_u32(IFLA_NUM_RX_QUEUES, 1);
    }
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, kind);
        auto data = r.nest(IFLA_INFO_DATA);
        if (fill)
            fill(r);
    }
    return r;
}

// --- bridge ----------------------------------------------------------------------------------

Request build_bridge(const BridgeSpec& spec)
{
    return build_new_link({ .name = spec.name, .parent = 0, .netns_fd = -1, .mtu = spec.mtu, .mac = {}, .up = false }, "bridge",
        [&](Request& r) {
            if (spec.vlan_filtering)
                r.put_u8(IFLA_BR_VLAN_FILTERING, 1);
        });
}

Result<bool> create_bridge(Socket& socket, const BridgeSpec& spec)
{
    auto r = build_bridge(spec);
    auto done = socket.transact(r, "creating bridge " + spec.name);
    if (!done) {
        int err = done.error().sys_errno;
        if (err == EEXIST)
            return false;
        if (err == EOPNOTSUPP && spec.vlan_filtering)
            return errno_error(Code::Kernel, err, "bridge VLAN filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)",
                done.error().details);
        if (err == EOPNOTSUPP)
            return errno_error(Code::Kernel, err, "the kernel does not support bridge devices (CONFIG_BRIDGE)", done.error().details);
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
    if (!done && done.error().sys_errno == EOPNOTSUPP)
        return errno_error(Code::Kernel, EOPNOTSUPP, "bridge VLAN filtering is not supported by this kernel (CONFIG_BRIDGE_VLAN_FILTERING)",
            done.error().details);
    return done;
}

// --- veth ------------------------------------------------------------------------------------

// One TX and one RX queue on both ends, said at creation: a veth left to the default gets one per
// CPU and then cuts the real number down to one after registering each end, and each cut waits
// for an RCU grace period under the rtnl lock (~80 µs per pair here, every other ADD waiting).
Request build_veth(const VethSpec& spec)
{
    return build_new_link({ .name = spec.name, .parent = 0, .netns_fd = -1, .mtu = spec.mtu, .mac = {}, .up = false, .one_queue = true }, "veth",
        [&](Request& r) {
            auto peer = r.nest(VETH_INFO_PEER);
            // The peer's attributes follow its own ifinfomsg inside the nest.
            mnl_nlmsg_put_extra_header(r.header(), sizeof(ifinfomsg));
            r.put_str(IFLA_IFNAME, spec.peer_name);
            if (spec.peer_netns_fd >= 0)
                r.put_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(spec.peer_netns_fd));
            if (spec.mtu)
                r.put_u32(IFLA_MTU, static_cast<uint32_t>(*spec.mtu));
            if (spec.peer_mac)
                r.put_bytes(IFLA_ADDRESS, spec.peer_mac->data(), 6);
            r.put_u32(IFLA_NUM_TX_QUEUES, 1);
            r.put_u32(IFLA_NUM_RX_QUEUES, 1);
        });
}

Result<std::optional<Link>> create_veth(Socket& socket, const VethSpec& spec)
{
    auto r = build_veth(spec);
    // The echo saves the lookup of the new link (its index and MAC) that would follow.
    r.header()->nlmsg_flags |= NLM_F_ECHO;
    std::optional<Link> made;
    auto done = socket.transact(r, "creating veth pair " + spec.name + "/" + spec.peer_name, [&](const nlmsghdr* nlh) {
        if (nlh->nlmsg_type == RTM_NEWLINK)
            if (Link l = parse_link(nlh); l.name == spec.name)
                made = std::move(l);
    });
    TRY(kind_supported(std::move(done), "the kernel does not support veth devices (CONFIG_VETH)"));
    return made;
}

// --- macvlan, ipvlan -------------------------------------------------------------------------

namespace {

NewLink child_envelope(const MacvlanSpec& spec)
{
    return { .name = spec.name, .parent = spec.master, .netns_fd = spec.netns_fd, .mtu = spec.mtu, .mac = spec.mac, .up = false };
}

} // namespace

Request build_macvlan(const MacvlanSpec& spec)
{
    return build_new_link(child_envelope(spec), "macvlan", [&](Request& r) {
        r.put_u32(IFLA_MACVLAN_MODE, spec.mode);
    });
}

Request build_ipvlan(const MacvlanSpec& spec)
{
    return build_new_link(child_envelope(spec), "ipvlan", [&](Request& r) {
        r.put_u16(IFLA_IPVLAN_MODE, static_cast<uint16_t>(spec.mode));
        if (spec.ipvlan_flags)
            r.put_u16(IFLA_IPVLAN_FLAGS, spec.ipvlan_flags);
    });
}

Result<void> create_macvlan(Socket& socket, const MacvlanSpec& spec)
{
    auto r = build_macvlan(spec);
    return kind_supported(socket.transact(r, "creating macvlan " + spec.name), "macvlan is not supported by this kernel (CONFIG_MACVLAN)");
}

Result<void> create_ipvlan(Socket& socket, const MacvlanSpec& spec)
{
    auto r = build_ipvlan(spec);
    return kind_supported(socket.transact(r, "creating ipvlan " + spec.name), "ipvlan is not supported by this kernel (CONFIG_IPVLAN)");
}

// --- vlan ------------------------------------------------------------------------------------

Request build_vlan(const std::string& name, int parent, uint16_t vid)
{
    return build_new_link({ .name = name, .parent = parent, .netns_fd = -1, .mtu = {}, .mac = {}, .up = true }, "vlan",
        [&](Request& r) { r.put_u16(IFLA_VLAN_ID, vid); });
}

Result<void> create_vlan(Socket& socket, const std::string& name, int parent, uint16_t vid)
{
    auto r = build_vlan(name, parent, vid);
    return kind_supported(socket.transact(r, "creating VLAN " + name),
        "802.1Q VLAN sub-interfaces are not supported by this kernel (CONFIG_VLAN_8021Q)");
}

// --- vxlan -----------------------------------------------------------------------------------

Result<void> check_vxlan(const VxlanSpec& spec)
{
    auto bad = [&](const std::string& why) { return make_error(Code::InvalidConfig, "vxlan device \"" + spec.name + "\": " + why); };
    if (spec.name.empty() || spec.name.size() >= IFNAMSIZ)
        return bad("the name must have 1 to 15 characters");
    if (spec.vni >= (1u << 24))
        return bad("VNI " + std::to_string(spec.vni) + " is out of range (0 to 16777215)");
    if (spec.local && spec.local->family != 4 && spec.local->family != 6)
        return bad("the local address has no family");
    if (spec.mtu && (*spec.mtu < 68 || *spec.mtu > 65535))
        return bad("MTU " + std::to_string(*spec.mtu) + " is out of range (68 to 65535)");
    if (spec.underlay < 0)
        return bad("negative underlay device index");
    return {};
}

Request build_vxlan(const VxlanSpec& spec)
{
    return build_new_link({ .name = spec.name, .parent = 0, .netns_fd = -1, .mtu = spec.mtu, .mac = spec.mac, .up = false }, "vxlan",
        [&](Request& r) {
            r.put_u32(IFLA_VXLAN_ID, spec.vni);
            if (spec.local)
                put_ip(r, spec.local->family == 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, *spec.local);
            if (spec.underlay > 0)
                r.put_u32(IFLA_VXLAN_LINK, static_cast<uint32_t>(spec.underlay));
            if (spec.port)
                r.put_u16(IFLA_VXLAN_PORT, htons(spec.port)); // __be16
            r.put_u8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0);
            if (spec.proxy)
                r.put_u8(IFLA_VXLAN_PROXY, 1);
            if (spec.ttl)
                r.put_u8(IFLA_VXLAN_TTL, *spec.ttl);
        });
}

Result<void> create_vxlan(Socket& socket, const VxlanSpec& spec)
{
    TRY(check_vxlan(spec));
    auto r = build_vxlan(spec);
    return kind_supported(socket.transact(r, "creating vxlan " + spec.name), "vxlan devices are not supported by this kernel (CONFIG_VXLAN)");
}

// --- delete, change --------------------------------------------------------------------------

Result<void> delete_link(Socket& socket, int index)
{
    Request r(RTM_DELLINK, 0, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_index = index;
    auto done = socket.transact(r, "deleting link " + std::to_string(index));
    if (!done && done.error().sys_errno == ENODEV)
        return {};
    return done;
}

Result<void> delete_link(Socket& socket, const std::string& name)
{
    Request r(RTM_DELLINK, 0, sizeof(ifinfomsg));
    r.put_str(IFLA_IFNAME, name);
    auto done = socket.transact(r, "deleting link " + name);
    if (!done && done.error().sys_errno == ENODEV)
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

} // namespace cnm::netlink
