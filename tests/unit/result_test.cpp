#include "cni/types.hpp"
#include "cni/version.hpp"
#include "cnm/model.hpp"
#include "util/text.hpp"

#include <ctime>

#include <doctest/doctest.h>

using namespace cnm;
using namespace cnm::cni;

namespace {

CniResult sample()
{
    CniResult r;
    r.interfaces.push_back({ "cni0", "aa:bb:cc:dd:ee:01", 1500, "", "", "" });
    r.interfaces.push_back({ "eth0", "aa:bb:cc:dd:ee:02", 1500, "/var/run/netns/x", "/sock", "0000:00:01.0" });
    r.ips.push_back({ *IpNet::parse("10.213.0.5/24"), IpAddr::parse("10.213.0.1"), 1 });
    r.ips.push_back({ *IpNet::parse("fd00:213::5/64"), IpAddr::parse("fd00:213::1"), 1 });
    Route def;
    def.dst = *IpNet::parse("0.0.0.0/0");
    def.gw = IpAddr::parse("10.213.0.1");
    def.mtu = 1400;
    def.table = 100;
    r.routes.push_back(def);
    Route v6;
    v6.dst = *IpNet::parse("::/0");
    v6.gw = IpAddr::parse("fd00:213::1");
    r.routes.push_back(v6);
    r.dns.nameservers = { "10.213.0.1" };
    r.dns.search = { "example.org" };
    return r;
}

} // namespace

TEST_CASE("0.1.0 and 0.2.0 print ip4/ip6")
{
    for (const char* v : { "0.1.0", "0.2.0" }) {
        auto r = sample();
        r.ips[0].interface.reset();
        auto j = result_to_json(r, v);
        REQUIRE(j.ok());
        CHECK((*j)["cniVersion"] == v);
        CHECK((*j)["ip4"]["ip"] == "10.213.0.5/24");
        CHECK((*j)["ip4"]["gateway"] == "10.213.0.1");
        CHECK((*j)["ip4"]["routes"].size() == 1);
        CHECK((*j)["ip4"]["routes"][0]["dst"] == "0.0.0.0/0");
        CHECK_FALSE((*j)["ip4"]["routes"][0].contains("mtu"));
        CHECK((*j)["ip6"]["ip"] == "fd00:213::5/64");
        CHECK((*j)["ip6"]["routes"][0]["dst"] == "::/0");
        CHECK_FALSE(j->contains("ips"));
        CHECK_FALSE(j->contains("interfaces"));
        CHECK((*j)["dns"]["nameservers"][0] == "10.213.0.1");
    }
}

TEST_CASE("legacy versions cannot hold two addresses of one family")
{
    auto r = sample();
    r.ips.push_back({ *IpNet::parse("10.213.0.6/24"), std::nullopt, std::nullopt });
    auto j = result_to_json(r, "0.2.0");
    REQUIRE_FALSE(j.ok());
    CHECK(j.error().code == Code::IncompatibleVersion);
}

TEST_CASE("0.3.x and 0.4.0 carry ips[].version; 0.3.0 spells the list ip")
{
    for (const char* v : { "0.3.0", "0.3.1", "0.4.0" }) {
        auto j = result_to_json(sample(), v);
        REQUIRE(j.ok());
        const char* list = std::string(v) == "0.3.0" ? "ip" : "ips";
        REQUIRE(j->contains(list));
        CHECK((*j)[list][0]["version"] == "4");
        CHECK((*j)[list][1]["version"] == "6");
        CHECK((*j)[list][0]["interface"] == 1);
        CHECK((*j)["interfaces"][1]["sandbox"] == "/var/run/netns/x");
        CHECK_FALSE((*j)["interfaces"][1].contains("mtu"));
        CHECK_FALSE((*j)["routes"][0].contains("mtu"));
    }
}

TEST_CASE("1.0.0 drops ips[].version; 1.1.0 adds interface and route fields")
{
    auto j100 = result_to_json(sample(), "1.0.0");
    REQUIRE(j100.ok());
    CHECK_FALSE((*j100)["ips"][0].contains("version"));
    CHECK_FALSE((*j100)["interfaces"][1].contains("socketPath"));
    CHECK_FALSE((*j100)["routes"][0].contains("table"));

    auto j110 = result_to_json(sample(), "1.1.0");
    REQUIRE(j110.ok());
    CHECK_FALSE((*j110)["ips"][0].contains("version"));
    CHECK((*j110)["interfaces"][1]["mtu"] == 1500);
    CHECK((*j110)["interfaces"][1]["socketPath"] == "/sock");
    CHECK((*j110)["interfaces"][1]["pciID"] == "0000:00:01.0");
    CHECK((*j110)["routes"][0]["mtu"] == 1400);
    CHECK((*j110)["routes"][0]["table"] == 100);
}

TEST_CASE("every version converts to every other and back")
{
    for (auto from : supported_versions) {
        auto r = sample();
        if (!at_least(from, "0.3.0"))
            r.interfaces.clear(), r.ips[0].interface.reset(), r.ips[1].interface.reset();
        auto j = result_to_json(r, from);
        REQUIRE(j.ok());
        auto back = result_from_json(*j);
        REQUIRE(back.ok());
        CHECK(back->ips.size() == 2);
        CHECK(back->ips[0].address.str() == "10.213.0.5/24");
        CHECK(back->ips[1].gateway->str() == "fd00:213::1");
        CHECK(back->routes.size() == 2);
        CHECK(back->dns.search == std::vector<std::string> { "example.org" });
        for (auto to : supported_versions) {
            auto again = result_to_json(*back, to);
            REQUIRE(again.ok());
            auto reread = result_from_json(*again);
            REQUIRE(reread.ok());
            CHECK(reread->ips.size() == 2);
        }
    }
}

TEST_CASE("a malformed prevResult is code 7, naming the field")
{
    auto bad_ip = result_from_json(Json::parse(R"({"ips":[{"address":"nope"}]})"));
    REQUIRE_FALSE(bad_ip.ok());
    CHECK(bad_ip.error().code == Code::InvalidConfig);
    CHECK(bad_ip.error().msg.find("prevResult.ips.address") != std::string::npos);
    CHECK(result_from_json(Json::parse(R"({"ips":[{"address":"10.0.0.1/24","interface":3}]})")).error().code == Code::InvalidConfig);
    CHECK(result_from_json(Json::parse(R"({"ips":[{"address":"10.0.0.1/24","version":"6"}]})")).error().code == Code::InvalidConfig);
    CHECK(result_from_json(Json::parse(R"({"interfaces":"x"})")).error().code == Code::InvalidConfig);
    CHECK(result_from_json(Json::parse(R"([1])")).error().code == Code::InvalidConfig);
    CHECK(result_from_json(Json::parse(R"({"routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]})")).error().code == Code::InvalidConfig);
}

TEST_CASE("text: fixed-width hex and decimal, and the record stamp they make")
{
    std::string s;
    append_hex(s, 0xab, 2);
    append_hex(s, 0x5, 2);
    append_hex(s, 0xdeadbeef, 8);
    CHECK(s == "ab05deadbeef");
    s.clear();
    append_dec(s, 7, 2);
    append_dec(s, 0, 2);
    append_dec(s, 2026, 4);
    append_dec(s, 123, 2); // wider than asked: all of it
    append_dec(s, 18446744073709551615ull, 1);
    CHECK(s == "0700202612318446744073709551615");
    std::string stamp = now_rfc3339(); // 2026-12-01T16:02:17Z
    REQUIRE(stamp.size() == 20);
    for (size_t i : { 4u, 7u })
        CHECK(stamp[i] == '-');
    CHECK(stamp[10] == 'T');
    CHECK(stamp[13] == ':');
    CHECK(stamp[16] == ':');
    CHECK(stamp[19] == 'Z');
    std::time_t now = std::time(nullptr);
    std::tm utc {};
    ::gmtime_r(&now, &utc);
    char want[8];
    std::strftime(want, sizeof want, "%Y-%m", &utc);
    CHECK(stamp.substr(0, 7) == want);
}
