#pragma once
// Neighbours (ARP / NDP entries) and forwarding-database entries, the two per-peer tables of an
// overlay. Both are RTM_NEWNEIGH: a neighbour is AF_INET/AF_INET6 with NDA_DST = the IP and
// NDA_LLADDR = the MAC; an FDB entry is AF_BRIDGE with NDA_LLADDR = the MAC and, on a vxlan
// device, NDA_DST = the remote VTEP's underlay address; NTF_SELF puts it in the device's own table
// (the vxlan FDB) rather than in a bridge master's. Entries are written with replace semantics
// (NLM_F_CREATE | NLM_F_REPLACE), permanent: programming the same peer twice is not an error,
// and a peer whose MAC or VTEP changed is overwritten. Deleting an absent entry is success.

#include "net/ip.hpp"
#include "netlink/link.hpp"
#include "netlink/socket.hpp"

#include <linux/neighbour.h>
#include <optional>
#include <vector>

namespace cnm::netlink {

struct Neighbour {
    int index = 0;               // the device
    IpAddr dst;                  // NDA_DST
    std::optional<Mac> lladdr;   // NDA_LLADDR (absent on an incomplete entry)
    uint16_t state = 0;          // NUD_*
    uint8_t flags = 0;           // NTF_*
    bool permanent() const { return state & NUD_PERMANENT; }
};
Request build_neighbour_replace(int index, const IpAddr& dst, const Mac& lladdr);
Request build_neighbour_delete(int index, const IpAddr& dst);
/// `dst` → `lladdr` on device `index`, NUD_PERMANENT, created or overwritten.
Result<void> replace_neighbour(Socket& socket, int index, const IpAddr& dst, const Mac& lladdr);
/// Absent (ENOENT) or on a device that is gone (ENODEV): success.
Result<void> delete_neighbour(Socket& socket, int index, const IpAddr& dst);
/// The IPv4 and IPv6 (family 4 / 6 / 0 for both) neighbours of device `index` (all devices with 0),
/// every state, so a reconciler can diff them against what it wants.
Result<std::vector<Neighbour>> list_neighbours(Socket& socket, int index, int family = 0);

struct FdbEntry {
    int index = 0;               // the device (ndm_ifindex)
    Mac mac {};                  // NDA_LLADDR
    std::optional<IpAddr> dst;   // NDA_DST: the remote VTEP (vxlan only)
    int master = 0;              // NDA_MASTER: set on entries of a bridge's table
    uint16_t state = 0;          // NUD_*
    uint8_t flags = 0;           // NTF_* (NTF_SELF: the device's own table)
    bool permanent() const { return state & NUD_PERMANENT; }
};
/// `mac` → `dst` in the device's own FDB (NTF_SELF), NUD_PERMANENT, created or overwritten.
Request build_fdb_replace(int index, const Mac& mac, const IpAddr& dst);
/// NLM_F_APPEND instead of NLM_F_REPLACE: one more destination for `mac` (the all-zero MAC's
/// flood list, `bridge fdb append 00:00:00:00:00:00 dev vx dst IP`).
Request build_fdb_append(int index, const Mac& mac, const IpAddr& dst);
/// With `dst`, only that destination of `mac` goes; without, the whole entry.
Request build_fdb_delete(int index, const Mac& mac, const std::optional<IpAddr>& dst);
Result<void> replace_fdb(Socket& socket, int index, const Mac& mac, const IpAddr& dst);
Result<void> append_fdb(Socket& socket, int index, const Mac& mac, const IpAddr& dst);
/// Absent (ENOENT) or on a device that is gone (ENODEV): success.
Result<void> delete_fdb(Socket& socket, int index, const Mac& mac, const std::optional<IpAddr>& dst = std::nullopt);
/// FDB entries of device `index`, one per (MAC, destination): a vxlan entry with two remotes is
/// two entries. Besides what was programmed, a device lists its own unicast/multicast addresses
/// (NTF_SELF, permanent, no dst): a reconciler should diff only the entries with a dst.
Result<std::vector<FdbEntry>> list_fdb(Socket& socket, int index);

} // namespace cnm::netlink
