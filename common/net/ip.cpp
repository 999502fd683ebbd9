#include "net/ip.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>

namespace cnm {

namespace {

u128 mask_of(int bits, int prefix)
{
    if (prefix <= 0)
        return 0;
    u128 all = bits == 32 ? u128(0xffffffffu) : ~u128(0);
    return (all << (bits - prefix)) & all;
}

} // namespace

std::optional<IpAddr> IpAddr::parse(std::string_view text)
{
    if (text.empty() || text.size() > INET6_ADDRSTRLEN)
        return std::nullopt;
    char buf[INET6_ADDRSTRLEN + 1];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    unsigned char raw[16];
    if (::inet_pton(AF_INET, buf, raw) == 1) {
        u128 v = 0;
        for (int i = 0; i < 4; ++i)
            v = (v << 8) | raw[i];
        return IpAddr { 4, v };
    }
    if (::inet_pton(AF_INET6, buf, raw) == 1) {
        u128 v = 0;
        for (int i = 0; i < 16; ++i)
            v = (v << 8) | raw[i];
        return IpAddr { 6, v };
    }
    return std::nullopt;
}

std::string IpAddr::str() const
{
    unsigned char raw[16];
    char out[INET6_ADDRSTRLEN];
    if (family == 4) {
        // By hand: glibc's inet_ntop formats IPv4 through sprintf, ~1 500 instructions a call, and
        // an ADD formats a few dozen addresses.
        char* p = out;
        for (int i = 0; i < 4; ++i) {
            unsigned octet = static_cast<unsigned>(value >> (8 * (3 - i))) & 0xff;
            if (octet >= 100)
                *p++ = static_cast<char>('0' + octet / 100);
            if (octet >= 10)
                *p++ = static_cast<char>('0' + octet / 10 % 10);
            *p++ = static_cast<char>('0' + octet % 10);
            if (i < 3)
                *p++ = '.';
        }
        return std::string(out, p);
    }
    if (family == 6) {
        for (int i = 0; i < 16; ++i)
            raw[i] = static_cast<unsigned char>(value >> (8 * (15 - i)));
        return ::inet_ntop(AF_INET6, raw, out, sizeof out) ? out : "";
    }
    return "";
}

std::optional<IpNet> IpNet::parse(std::string_view text)
{
    auto slash = text.find('/');
    if (slash == std::string_view::npos)
        return std::nullopt;
    auto addr = IpAddr::parse(text.substr(0, slash));
    if (!addr)
        return std::nullopt;
    auto digits = text.substr(slash + 1);
    int prefix = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty())
        return std::nullopt;
    if (prefix < 0 || prefix > addr->bits())
        return std::nullopt;
    return IpNet { *addr, prefix };
}

std::string IpNet::str() const
{
    return addr.str() + "/" + std::to_string(prefix);
}

IpAddr IpNet::network() const
{
    return { addr.family, addr.value & mask_of(addr.bits(), prefix) };
}

IpAddr IpNet::last() const
{
    u128 all = addr.bits() == 32 ? u128(0xffffffffu) : ~u128(0);
    return { addr.family, network().value | (~mask_of(addr.bits(), prefix) & all) };
}

bool IpNet::contains(const IpAddr& a) const
{
    return a.family == addr.family && (a.value & mask_of(addr.bits(), prefix)) == network().value;
}

bool IpNet::overlaps(const IpNet& other) const
{
    return contains(other.network()) || other.contains(network());
}

u128 IpNet::size() const
{
    return last().value - network().value + 1;
}

std::optional<IpAddr> parse_ip_maybe_cidr(std::string_view text)
{
    if (text.find('/') != std::string_view::npos) {
        auto net = IpNet::parse(text);
        if (!net)
            return std::nullopt;
        return net->addr;
    }
    return IpAddr::parse(text);
}

} // namespace cnm

#include "net/config.hpp"

namespace cnm {

bool valid_ifname(std::string_view name)
{
    if (name.empty() || name.size() > 15 || name == "." || name == "..")
        return false;
    for (char c : name) {
        auto u = static_cast<unsigned char>(c);
        // Stricter than the kernel: names are stored in JSON records, which must round-trip.
        if (c == '/' || c == ':' || u <= 0x20 || u >= 0x7f)
            return false;
    }
    return true;
}

} // namespace cnm
