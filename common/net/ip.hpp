#pragma once
// IPv4/IPv6 addresses and prefixes as 128-bit integers, so that ranges can be walked and compared
// with plain arithmetic. IPv4 addresses keep family 4 and use the low 32 bits.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cnm {

__extension__ typedef unsigned __int128 u128;

struct IpAddr {
    int family = 0; // 4 or 6; 0 = unset
    u128 value = 0;

    static std::optional<IpAddr> parse(std::string_view text);
    std::string str() const;
    int bits() const { return family == 4 ? 32 : 128; }
    bool valid() const { return family != 0; }
    IpAddr next() const { return { family, value + 1 }; }
    auto operator<=>(const IpAddr&) const = default;
};

struct IpNet {
    IpAddr addr; // may carry host bits (an interface address); see network()
    int prefix = 0;

    /// Parses "a.b.c.d/n" or "x::y/n".
    static std::optional<IpNet> parse(std::string_view text);
    std::string str() const;
    IpAddr network() const;
    IpAddr last() const; // highest address of the prefix (the broadcast for IPv4)
    bool contains(const IpAddr& a) const;
    bool overlaps(const IpNet& other) const;
    bool is_network() const { return addr == network(); }
    u128 size() const;
    auto operator<=>(const IpNet&) const = default;
};

/// Parses "10.1.2.3" or "10.1.2.3/24" (the prefix is dropped): the forms CNI_ARGS IP= and
/// args.cni.ips take.
std::optional<IpAddr> parse_ip_maybe_cidr(std::string_view text);

} // namespace cnm
