#include "netlink/address.hpp"

#include "netlink/attr.hpp"

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

namespace cnm::netlink {

using detail::af_of;
using detail::get_ip;
using detail::put_ip;

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

} // namespace cnm::netlink
