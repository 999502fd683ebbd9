#pragma once
// A netlink request that owns its buffer: the header, the family header and the attributes are
// appended through libmnl's bounds-checked (_check) calls, so no write can pass the buffer's end.
// Nests are RAII objects that close themselves; a request that ran out of room reports it once,
// at send time, instead of being sent truncated.

#include "util/result.hpp"

#include <libmnl/libmnl.h>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace cnm::netlink {

class Request {
public:
    /// `type` (RTM_NEWLINK, …), `flags` (NLM_F_REQUEST is always added), and the size of the
    /// family header that follows (ifinfomsg, ifaddrmsg, rtmsg …), zeroed.
    Request(uint16_t type, uint16_t flags, size_t family_header_size);
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    /// Movable, so that a verb's request can be built by a function (and compared byte for byte
    /// in the unit tests) and sent by another. The header stays where the buffer's storage is.
    Request(Request&& other) noexcept;
    Request& operator=(Request&&) = delete;

    nlmsghdr* header() { return m_header; }
    template<typename T>
    T* family() { return static_cast<T*>(mnl_nlmsg_get_payload(m_header)); }

    void put_u8(uint16_t type, uint8_t v);
    void put_u16(uint16_t type, uint16_t v);
    void put_u32(uint16_t type, uint32_t v);
    void put_s32(uint16_t type, int32_t v) { put_u32(type, static_cast<uint32_t>(v)); }
    void put_str(uint16_t type, std::string_view v); // NUL-terminated
    void put_bytes(uint16_t type, const void* data, size_t len);

    class Nest {
    public:
        Nest(Request& request, uint16_t type);
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;
        ~Nest();

    private:
        Request& m_request;
        nlattr* m_nest;
    };
    Nest nest(uint16_t type) { return Nest(*this, type); }

    /// False when an attribute did not fit (the request must not be sent).
    bool complete() const { return !m_overflow; }

    /// The message as it stands (nlmsg_len bytes; sequence number and NLM_F_ACK are set only when
    /// a Socket sends it).
    std::span<const uint8_t> bytes() const
    {
        return { reinterpret_cast<const uint8_t*>(m_header), m_header->nlmsg_len };
    }

private:
    size_t room() const { return m_buffer.size(); }
    std::vector<char> m_buffer;
    nlmsghdr* m_header;
    bool m_overflow = false;
};

} // namespace cnm::netlink
