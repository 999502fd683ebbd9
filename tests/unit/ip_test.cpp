#include "net/ip.hpp"

#include <doctest/doctest.h>

using namespace cnm;

TEST_CASE("addresses and prefixes parse, print and compare")
{
    auto a = IpAddr::parse("10.213.0.255");
    REQUIRE(a);
    CHECK(a->family == 4);
    CHECK(a->next().str() == "10.213.1.0");
    CHECK(IpAddr::parse("fd00:213::1")->str() == "fd00:213::1");
    CHECK(IpAddr::parse("FD00:0213:0::0001")->str() == "fd00:213::1");
    CHECK_FALSE(IpAddr::parse("10.0.0.256"));
    CHECK_FALSE(IpAddr::parse(""));
    CHECK_FALSE(IpAddr::parse("10.0.0.1/24"));
    CHECK_FALSE(IpAddr::parse(std::string(100, '1')));

    auto n = IpNet::parse("10.213.0.7/24");
    REQUIRE(n);
    CHECK(n->network().str() == "10.213.0.0");
    CHECK(n->last().str() == "10.213.0.255");
    CHECK_FALSE(n->is_network());
    CHECK(n->contains(*IpAddr::parse("10.213.0.200")));
    CHECK_FALSE(n->contains(*IpAddr::parse("10.213.1.1")));
    CHECK_FALSE(n->contains(*IpAddr::parse("fd00::1")));
    CHECK(n->size() == 256);
    CHECK(IpNet::parse("fd00:213::/48")->last().str() == "fd00:213:0:ffff:ffff:ffff:ffff:ffff");
    CHECK(IpNet::parse("10.0.0.0/8")->overlaps(*IpNet::parse("10.213.0.0/16")));
    CHECK_FALSE(IpNet::parse("10.213.0.0/24")->overlaps(*IpNet::parse("10.213.1.0/24")));
    for (const char* bad : { "10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "fd00::/129", "10.0.0.0/2x" })
        CHECK_FALSE(IpNet::parse(bad));
    CHECK(parse_ip_maybe_cidr("10.0.0.3/24")->str() == "10.0.0.3");
    CHECK(parse_ip_maybe_cidr("10.0.0.3")->str() == "10.0.0.3");
}
