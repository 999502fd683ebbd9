#include "netlink/request.hpp"
#include "netlink/route.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <map>
#include <string>

using namespace cnm;
using namespace cnm::netlink;

TEST_CASE("request builder: header, family header, attributes and nests in libmnl's layout")
{
    Request r(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, sizeof(ifinfomsg));
    r.family<ifinfomsg>()->ifi_index = 7;
    r.put_str(IFLA_IFNAME, "br0");
    r.put_u32(IFLA_MTU, 1400);
    {
        auto info = r.nest(IFLA_LINKINFO);
        r.put_str(IFLA_INFO_KIND, "bridge");
    }
    REQUIRE(r.complete());
    nlmsghdr* h = r.header();
    CHECK(h->nlmsg_type == RTM_NEWLINK);
    CHECK((h->nlmsg_flags & (NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL)) == (NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL));
    CHECK(static_cast<ifinfomsg*>(mnl_nlmsg_get_payload(h))->ifi_index == 7);
    // 16 header + 16 ifinfomsg + 8 "br0\0" + 8 mtu + (4 nest + 12 "bridge\0" padded) = 64
    CHECK(h->nlmsg_len == 64);
    std::map<int, std::string> seen;
    mnl_attr_parse(h, sizeof(ifinfomsg), [](const nlattr* a, void* data) -> int {
        auto& m = *static_cast<std::map<int, std::string>*>(data);
        int type = mnl_attr_get_type(a);
        if (type == IFLA_IFNAME)
            m[type] = mnl_attr_get_str(a);
        else if (type == IFLA_MTU)
            m[type] = std::to_string(mnl_attr_get_u32(a));
        else if (type == IFLA_LINKINFO)
            mnl_attr_parse_nested(a, [](const nlattr* n, void* d) -> int {
                (*static_cast<std::map<int, std::string>*>(d))[1000 + mnl_attr_get_type(n)] = mnl_attr_get_str(n);
                return MNL_CB_OK;
            }, data);
        return MNL_CB_OK;
    }, &seen);
    CHECK(seen[IFLA_IFNAME] == "br0");
    CHECK(seen[IFLA_MTU] == "1400");
    CHECK(seen[1000 + IFLA_INFO_KIND] == "bridge");
}

TEST_CASE("request builder: an attribute that does not fit marks the request incomplete instead of overflowing")
{
    Request r(RTM_NEWLINK, 0, sizeof(ifinfomsg));
    std::string big(MNL_SOCKET_BUFFER_SIZE, 'x');
    r.put_bytes(IFLA_IFALIAS, big.data(), big.size());
    CHECK_FALSE(r.complete());
    CHECK(r.header()->nlmsg_len <= MNL_SOCKET_BUFFER_SIZE);
}

TEST_CASE("MAC addresses parse strictly")
{
    CHECK(mac_str(*parse_mac("02:13:AB:cd:00:ff")) == "02:13:ab:cd:00:ff");
    for (const char* bad : { "", "02:13:ab:cd:00", "02:13:ab:cd:00:ff:", "0213abcd00ff", "zz:13:ab:cd:00:ff", "02-13-ab-cd-00-ff" })
        CHECK_FALSE(parse_mac(bad));
}

TEST_CASE("Error carries the errno as its last member; aggregate order code, msg, details still holds")
{
    Error plain { Code::Kernel, "m", "d" };
    CHECK(plain.sys_errno == 0);
    auto e = errno_error(Code::Kernel, EEXIST, "adding x", "File exists");
    CHECK(e.sys_errno == EEXIST);
    auto wrapped = std::move(e).context("creating network n");
    CHECK(wrapped.sys_errno == EEXIST);
    CHECK(wrapped.msg == "creating network n: adding x");
    CHECK(make_error(Code::Io, "x").sys_errno == 0);
}
