#include "netlink/neigh.hpp"

#include "netlink/attr.hpp"

#include <cerrno>
#include <cstring>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

namespace cnm::netlink {

using detail::af_of;
using detail::get_ip;
using detail::put_ip;

namespace {

Request neigh_request(uint16_t type, uint16_t flags, int af, int index, uint16_t state, uint8_t ntf)
{
    Request r(type, flags, sizeof(ndmsg));
    auto* ndm = r.family<ndmsg>();
    ndm->ndm_family = static_cast<uint8_t>(af);
    ndm->ndm_ifindex = index;
    ndm->ndm_state = state;
    ndm->ndm_flags = ntf;
    return r;
}

Result<void> check_index(int index, const char* what)
{
    if (index <= 0)
        return make_error(Code::InvalidConfig, std::string(what) + " needs a device (index " + std::to_string(index) + ")");
    return {};
}

bool absent(const Result<void>& done)
{
    return !done && (done.error().sys_errno == ENOENT || done.error().sys_errno == ENODEV);
}

// One dump of RTM_GETNEIGH in `af`, each reply handed to `each` with its ndmsg.
Result<void> dump(Socket& socket, int af, const std::string& what, const std::function<void(const nlmsghdr*, const ndmsg*)>& each)
{
    // A bare ndmsg: for AF_BRIDGE the kernel then takes the legacy (unfiltered) dump path; the
    // device is filtered here, as for the neighbour tables.
    Request r(RTM_GETNEIGH, NLM_F_DUMP, sizeof(ndmsg));
    r.family<ndmsg>()->ndm_family = static_cast<uint8_t>(af);
    return socket.query(r, what, [&](const nlmsghdr* nlh) {
        if (nlh->nlmsg_type == RTM_NEWNEIGH && mnl_nlmsg_get_payload_len(nlh) >= sizeof(ndmsg))
            each(nlh, static_cast<const ndmsg*>(mnl_nlmsg_get_payload(nlh)));
    });
}

std::optional<Mac> get_mac(const nlattr* attr)
{
    if (mnl_attr_get_payload_len(attr) != 6)
        return std::nullopt;
    Mac mac;
    std::memcpy(mac.data(), mnl_attr_get_payload(attr), 6);
    return mac;
}

} // namespace

// --- neighbours ------------------------------------------------------------------------------

Request build_neighbour_replace(int index, const IpAddr& dst, const Mac& lladdr)
{
    auto r = neigh_request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, af_of(dst.family), index, NUD_PERMANENT, 0);
    put_ip(r, NDA_DST, dst);
    r.put_bytes(NDA_LLADDR, lladdr.data(), lladdr.size());
    return r;
}

Request build_neighbour_delete(int index, const IpAddr& dst)
{
    auto r = neigh_request(RTM_DELNEIGH, 0, af_of(dst.family), index, 0, 0);
    put_ip(r, NDA_DST, dst);
    return r;
}

Result<void> replace_neighbour(Socket& socket, int index, const IpAddr& dst, const Mac& lladdr)
{
    TRY(check_index(index, "a neighbour entry"));
    if (!dst.valid())
        return make_error(Code::InvalidConfig, "a neighbour entry needs an IP address");
    auto r = build_neighbour_replace(index, dst, lladdr);
    return socket.transact(r, "replacing neighbour " + dst.str() + " lladdr " + mac_str(lladdr));
}

Result<void> delete_neighbour(Socket& socket, int index, const IpAddr& dst)
{
    TRY(check_index(index, "a neighbour entry"));
    if (!dst.valid())
        return make_error(Code::InvalidConfig, "a neighbour entry needs an IP address");
    auto r = build_neighbour_delete(index, dst);
    auto done = socket.transact(r, "deleting neighbour " + dst.str());
    if (absent(done))
        return {};
    return done;
}

Result<std::vector<Neighbour>> list_neighbours(Socket& socket, int index, int family)
{
    std::vector<Neighbour> out;
    TRY(dump(socket, af_of(family), "listing neighbours", [&](const nlmsghdr* nlh, const ndmsg* ndm) {
        if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6)
            return;
        if (index > 0 && ndm->ndm_ifindex != index)
            return;
        struct Found {
            const ndmsg* ndm;
            Neighbour n;
        } found { ndm, {} };
        found.n.index = ndm->ndm_ifindex;
        found.n.state = ndm->ndm_state;
        found.n.flags = ndm->ndm_flags;
        mnl_attr_parse(nlh, sizeof(*ndm), [](const nlattr* attr, void* data) -> int {
            auto* f = static_cast<Found*>(data);
            if (mnl_attr_get_type(attr) == NDA_DST) {
                if (auto a = get_ip(attr, f->ndm->ndm_family))
                    f->n.dst = *a;
            }
            else if (mnl_attr_get_type(attr) == NDA_LLADDR)
                f->n.lladdr = get_mac(attr);
            return MNL_CB_OK;
        }, &found);
        if (found.n.dst.valid())
            out.push_back(found.n);
    }));
    return out;
}

// --- FDB -------------------------------------------------------------------------------------

namespace {

Request fdb_new(uint16_t flags, int index, const Mac& mac, const IpAddr& dst)
{
    auto r = neigh_request(RTM_NEWNEIGH, flags, AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF);
    r.put_bytes(NDA_LLADDR, mac.data(), mac.size());
    put_ip(r, NDA_DST, dst);
    return r;
}

Result<void> check_fdb_dst(const IpAddr& dst)
{
    if (dst.family != 4 && dst.family != 6)
        return make_error(Code::InvalidConfig, "an FDB entry needs the remote's IPv4 or IPv6 address");
    return {};
}

} // namespace

Request build_fdb_replace(int index, const Mac& mac, const IpAddr& dst)
{
    return fdb_new(NLM_F_CREATE | NLM_F_REPLACE, index, mac, dst);
}

Request build_fdb_append(int index, const Mac& mac, const IpAddr& dst)
{
    return fdb_new(NLM_F_CREATE | NLM_F_APPEND, index, mac, dst);
}

Request build_fdb_delete(int index, const Mac& mac, const std::optional<IpAddr>& dst)
{
    auto r = neigh_request(RTM_DELNEIGH, 0, AF_BRIDGE, index, 0, NTF_SELF);
    r.put_bytes(NDA_LLADDR, mac.data(), mac.size());
    if (dst)
        put_ip(r, NDA_DST, *dst);
    return r;
}

Result<void> replace_fdb(Socket& socket, int index, const Mac& mac, const IpAddr& dst)
{
    TRY(check_index(index, "an FDB entry"));
    TRY(check_fdb_dst(dst));
    auto r = build_fdb_replace(index, mac, dst);
    return socket.transact(r, "replacing FDB entry " + mac_str(mac) + " dst " + dst.str());
}

Result<void> append_fdb(Socket& socket, int index, const Mac& mac, const IpAddr& dst)
{
    TRY(check_index(index, "an FDB entry"));
    TRY(check_fdb_dst(dst));
    auto r = build_fdb_append(index, mac, dst);
    return socket.transact(r, "appending FDB entry " + mac_str(mac) + " dst " + dst.str());
}

Result<void> delete_fdb(Socket& socket, int index, const Mac& mac, const std::optional<IpAddr>& dst)
{
    TRY(check_index(index, "an FDB entry"));
    if (dst)
        TRY(check_fdb_dst(*dst));
    auto r = build_fdb_delete(index, mac, dst);
    auto done = socket.transact(r, "deleting FDB entry " + mac_str(mac) + (dst ? " dst " + dst->str() : ""));
    if (absent(done))
        return {};
    return done;
}

Result<std::vector<FdbEntry>> list_fdb(Socket& socket, int index)
{
    std::vector<FdbEntry> out;
    TRY(dump(socket, AF_BRIDGE, "listing FDB entries", [&](const nlmsghdr* nlh, const ndmsg* ndm) {
        if (ndm->ndm_family != AF_BRIDGE || (index > 0 && ndm->ndm_ifindex != index))
            return;
        struct Found {
            FdbEntry e;
            bool have_mac = false;
        } found;
        found.e.index = ndm->ndm_ifindex;
        found.e.state = ndm->ndm_state;
        found.e.flags = ndm->ndm_flags;
        mnl_attr_parse(nlh, sizeof(*ndm), [](const nlattr* attr, void* data) -> int {
            auto* f = static_cast<Found*>(data);
            switch (mnl_attr_get_type(attr)) {
            case NDA_LLADDR:
                if (auto m = get_mac(attr)) {
                    f->e.mac = *m;
                    f->have_mac = true;
                }
                break;
            case NDA_DST:
                // The family of a vxlan remote is told only by its length.
                f->e.dst = get_ip(attr, mnl_attr_get_payload_len(attr) == 4 ? AF_INET : AF_INET6);
                break;
            case NDA_MASTER:
                if (mnl_attr_get_payload_len(attr) == 4)
                    f->e.master = static_cast<int>(mnl_attr_get_u32(attr));
                break;
            }
            return MNL_CB_OK;
        }, &found);
        if (found.have_mac)
            out.push_back(found.e);
    }));
    return out;
}

} // namespace cnm::netlink
