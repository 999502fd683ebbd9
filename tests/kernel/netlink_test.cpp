// Kernel tier: the netlink layer and the netns guard against the real kernel. Every test case
// runs in a network namespace of its own (unshare), so nothing touches the machine's interfaces.
// Needs root. Observations go through our own dump calls and, where we have no getter, `ip -j`.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "netlink/route.hpp"
#include "netns/netns.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <linux/if.h>
#include <sched.h>
#include <unistd.h>

using namespace cnm;
using namespace cnm::netlink;

namespace {

/// Moves the process into a new, empty network namespace for one test case; the next one gets
/// another (the previous is freed once nothing holds it).
struct FreshNetns {
    FreshNetns()
    {
        REQUIRE(::unshare(CLONE_NEWNET) == 0);
        socket = Socket::open().release_value();
        auto lo = get_link(*socket, "lo").release_value();
        REQUIRE(lo);
        REQUIRE(set_link(*socket, lo->index, LinkChange { .up = true, .master = {}, .mtu = {}, .name = {}, .mac = {}, .promisc = {} }).ok());
    }
    std::unique_ptr<Socket> socket;
};

nlohmann::json ip_json(const std::string& args)
{
    std::string out;
    FILE* p = ::popen(("ip -j " + args).c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    ::pclose(p);
    return nlohmann::json::parse(out, nullptr, false);
}

LinkChange up()
{
    LinkChange c;
    c.up = true;
    return c;
}

} // namespace

TEST_CASE("bridge: created once, EEXIST on the second create is reported as 'already there'")
{
    FreshNetns ns;
    CHECK(create_bridge(*ns.socket, { "kbr0", 1400, false }).value() == true);
    CHECK(create_bridge(*ns.socket, { "kbr0", 1400, false }).value() == false);
    auto link = get_link(*ns.socket, "kbr0").value();
    REQUIRE(link);
    CHECK(link->kind == "bridge");
    CHECK(link->mtu == 1400);
    CHECK_FALSE(link->up());
    REQUIRE(set_link(*ns.socket, link->index, up()).ok());
    CHECK(get_link(*ns.socket, link->index).value()->up());
    CHECK_FALSE(get_link(*ns.socket, "absent0").value());
}

TEST_CASE("veth: the peer is created directly in another namespace, renamed there, and goes with its host end")
{
    FreshNetns ns;
    auto host = Netns::current().release_value();
    REQUIRE(::unshare(CLONE_NEWNET) == 0); // the "container"
    auto container = Netns::current().release_value();
    auto inside = Socket::open().release_value();
    REQUIRE(::setns(host.fd(), CLONE_NEWNET) == 0);

    auto mac = parse_mac("02:13:00:00:00:07");
    REQUIRE(create_veth(*ns.socket, { "vhost0", "tmp1234", container.fd(), 1300, mac }).ok());
    CHECK_FALSE(get_link(*ns.socket, "tmp1234").value()); // not in the host
    auto peer = get_link(*inside, "tmp1234").value();
    REQUIRE(peer);
    CHECK(peer->kind == "veth");
    CHECK(mac_str(peer->mac) == "02:13:00:00:00:07");
    CHECK(peer->mtu == 1300);
    LinkChange rename;
    rename.name = "eth0";
    REQUIRE(set_link(*inside, peer->index, rename).ok());
    CHECK(get_link(*inside, "eth0").value());
    // A second veth whose peer would take a name already used in the container fails cleanly.
    auto clash = create_veth(*ns.socket, { "vhost1", "eth0", container.fd(), {}, {} });
    CHECK_FALSE(clash.ok());
    CHECK(ns.socket->last_errno() == EEXIST);
    CHECK_FALSE(get_link(*ns.socket, "vhost1").value());

    auto hv = get_link(*ns.socket, "vhost0").value();
    REQUIRE(hv);
    REQUIRE(delete_link(*ns.socket, hv->index).ok());
    CHECK_FALSE(get_link(*inside, "eth0").value());
    CHECK(delete_link(*ns.socket, hv->index).ok()); // ENODEV is success
    CHECK(delete_link(*ns.socket, "never-was").ok());
}

TEST_CASE("ports: master, hairpin and isolation as the kernel reports them")
{
    FreshNetns ns;
    REQUIRE(create_bridge(*ns.socket, { "kbr1", {}, false }).ok());
    REQUIRE(create_veth(*ns.socket, { "p0", "p0peer", -1, {}, {} }).ok());
    auto br = get_link(*ns.socket, "kbr1").value();
    auto port = get_link(*ns.socket, "p0").value();
    LinkChange join;
    join.master = br->index;
    join.up = true;
    REQUIRE(set_link(*ns.socket, port->index, join).ok());
    CHECK(get_link(*ns.socket, "p0").value()->master == br->index);
    REQUIRE(set_bridge_port(*ns.socket, port->index, { true, true }).ok());
    auto info = ip_json("-d link show p0")[0]["linkinfo"]["info_slave_data"];
    CHECK(info["hairpin"] == true);
    CHECK(info["isolated"] == true);
    REQUIRE(set_bridge_port(*ns.socket, port->index, { false, std::nullopt }).ok());
    info = ip_json("-d link show p0")[0]["linkinfo"]["info_slave_data"];
    CHECK(info["hairpin"] == false);
    CHECK(info["isolated"] == true);
}

TEST_CASE("addresses and routes round-trip; IPv6 is added without DAD")
{
    FreshNetns ns;
    REQUIRE(create_veth(*ns.socket, { "a0", "a0peer", -1, {}, {} }).ok());
    auto link = get_link(*ns.socket, "a0").value();
    REQUIRE(set_link(*ns.socket, link->index, up()).ok());
    auto peer = get_link(*ns.socket, "a0peer").value();
    REQUIRE(set_link(*ns.socket, peer->index, up()).ok());
    REQUIRE(add_address(*ns.socket, link->index, *IpNet::parse("10.213.250.2/24")).ok());
    REQUIRE(add_address(*ns.socket, link->index, *IpNet::parse("fd00:213:250::2/64")).ok());
    auto again = add_address(*ns.socket, link->index, *IpNet::parse("10.213.250.2/24"));
    CHECK_FALSE(again.ok());
    CHECK(ns.socket->last_errno() == EEXIST);
    auto addrs = list_addresses(*ns.socket, link->index).value();
    REQUIRE(addrs.size() == 2);
    CHECK(addrs[0].address.str() == "10.213.250.2/24");
    CHECK(addrs[1].address.str() == "fd00:213:250::2/64");
    auto v6 = ip_json("-6 addr show dev a0 scope global")[0]["addr_info"][0];
    CHECK(v6.value("tentative", false) == false);
    CHECK(v6.value("nodad", false) == true);

    RouteSpec def { *IpNet::parse("0.0.0.0/0"), IpAddr::parse("10.213.250.1"), link->index, {}, {}, {}, {} };
    REQUIRE(add_route(*ns.socket, def).ok());
    RouteSpec mtu_route { *IpNet::parse("10.213.99.0/24"), IpAddr::parse("10.213.250.1"), link->index, 1280, 50, {}, {} };
    REQUIRE(add_route(*ns.socket, mtu_route).ok());
    auto routes = list_routes(*ns.socket, 4).value();
    bool found_default = false, found_mtu = false;
    for (auto& r : routes) {
        found_default |= r.dst.prefix == 0 && r.gw && r.gw->str() == "10.213.250.1";
        found_mtu |= r.dst.str() == "10.213.99.0/24";
    }
    CHECK(found_default);
    CHECK(found_mtu);
    CHECK(ip_json("route show 10.213.99.0/24")[0]["metrics"][0]["mtu"] == 1280);
    REQUIRE(del_address(*ns.socket, link->index, *IpNet::parse("10.213.250.2/24")).ok());
    CHECK(list_addresses(*ns.socket, link->index, 4).value().empty());
}

TEST_CASE("kernel errors carry errno and the extended-ack sentence")
{
    FreshNetns ns;
    REQUIRE(create_veth(*ns.socket, { "e0", "e0peer", -1, {}, {} }).ok());
    auto link = get_link(*ns.socket, "e0").value();
    LinkChange huge;
    huge.mtu = 1 << 20;
    auto r = set_link(*ns.socket, link->index, huge);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::Kernel);
    CHECK(ns.socket->last_errno() == EINVAL);
    CHECK_MESSAGE(r.error().details.find("greater than device maximum") != std::string::npos, r.error().details); // the kernel's own words
}

TEST_CASE("the netns guard returns to where it came from; sysctls follow the namespace")
{
    FreshNetns ns;
    auto origin = Netns::current().release_value();
    REQUIRE(::unshare(CLONE_NEWNET) == 0);
    auto other = Netns::current().release_value();
    REQUIRE(::setns(origin.fd(), CLONE_NEWNET) == 0);
    REQUIRE(write_sysctl("net/ipv4/ip_forward", "0").ok());
    {
        auto guard = NetnsGuard::enter(other);
        REQUIRE(guard.ok());
        CHECK(Netns::current().value().same_as(other));
        REQUIRE(write_sysctl("net/ipv4/ip_forward", "1").ok());
        CHECK(read_sysctl("net/ipv4/ip_forward").value() == "1");
    }
    CHECK(Netns::current().value().same_as(origin));
    CHECK(read_sysctl("net/ipv4/ip_forward").value() == "0");
    CHECK(Netns::open("/run/netns/does-not-exist").error().code == Code::UnknownContainer);
    CHECK_FALSE(write_sysctl("net/ipv4/conf/absent0/forwarding", "1").ok());
}
