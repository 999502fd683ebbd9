#include "netlink/attr.hpp"

#include <sys/socket.h>

namespace cnm::netlink::detail {

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
    if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16) || (family != AF_INET && family != AF_INET6))
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

int family_of(int af)
{
    return af == AF_INET ? 4 : af == AF_INET6 ? 6 : 0;
}

} // namespace cnm::netlink::detail
