#pragma once
// Golden-byte comparison for netlink requests: both sides as hex, one 4-byte word per group, so a
// failing CHECK shows where the bytes part. Expected arrays are written by hand from the kernel's
// UAPI layouts (host byte order for netlink's own headers: these tests assume little-endian).

#include "netlink/request.hpp"

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace cnm::test {

inline std::string hex(std::span<const uint8_t> bytes)
{
    std::string out;
    char buf[4];
    for (size_t i = 0; i < bytes.size(); ++i) {
        if (i && i % 4 == 0)
            out += i % 16 == 0 ? "\n" : " ";
        std::snprintf(buf, sizeof buf, "%02x", bytes[i]);
        out += buf;
    }
    return out;
}

inline std::string hex(const std::vector<uint8_t>& bytes)
{
    return hex(std::span<const uint8_t>(bytes));
}

inline std::string hex(const netlink::Request& r)
{
    return hex(r.bytes());
}

} // namespace cnm::test
