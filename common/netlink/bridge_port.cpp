#include "netlink/bridge_port.hpp"

#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

namespace cnm::netlink {

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

namespace {

Result<void> bridge_vlan(Socket& socket, uint16_t type, int index, uint16_t vid, bool pvid_untagged, bool self)
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

} // namespace

Result<void> add_bridge_vlan(Socket& socket, int index, uint16_t vid, bool pvid_untagged, bool self)
{
    return bridge_vlan(socket, RTM_SETLINK, index, vid, pvid_untagged, self);
}

Result<void> del_bridge_vlan(Socket& socket, int index, uint16_t vid, bool self)
{
    return bridge_vlan(socket, RTM_DELLINK, index, vid, false, self);
}

} // namespace cnm::netlink
