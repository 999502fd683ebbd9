#include "netlink/request.hpp"

#include <cstring>

namespace cnm::netlink {

Request::Request(uint16_t type, uint16_t flags, size_t family_header_size)
    : m_buffer(MNL_SOCKET_BUFFER_SIZE, 0)
{
    m_header = mnl_nlmsg_put_header(m_buffer.data());
    m_header->nlmsg_type = type;
    m_header->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | flags);
    mnl_nlmsg_put_extra_header(m_header, family_header_size);
}

Request::Request(Request&& other) noexcept
    : m_buffer(std::move(other.m_buffer))
    , m_header(other.m_header)
    , m_overflow(other.m_overflow)
{
    other.m_header = nullptr;
    other.m_overflow = true; // a moved-from request is never sent
}

void Request::put_u8(uint16_t type, uint8_t v)
{
    m_overflow |= !mnl_attr_put_u8_check(m_header, room(), type, v);
}

void Request::put_u16(uint16_t type, uint16_t v)
{
    m_overflow |= !mnl_attr_put_u16_check(m_header, room(), type, v);
}

void Request::put_u32(uint16_t type, uint32_t v)
{
    m_overflow |= !mnl_attr_put_u32_check(m_header, room(), type, v);
}

void Request::put_str(uint16_t type, std::string_view v)
{
    std::string copy(v);
    m_overflow |= !mnl_attr_put_strz_check(m_header, room(), type, copy.c_str());
}

void Request::put_bytes(uint16_t type, const void* data, size_t len)
{
    m_overflow |= !mnl_attr_put_check(m_header, room(), type, len, data);
}

Request::Nest::Nest(Request& request, uint16_t type)
    : m_request(request)
    , m_nest(mnl_attr_nest_start_check(request.m_header, request.room(), type))
{
    request.m_overflow |= m_nest == nullptr;
}

Request::Nest::~Nest()
{
    if (m_nest)
        mnl_attr_nest_end(m_request.m_header, m_nest);
}

} // namespace cnm::netlink
