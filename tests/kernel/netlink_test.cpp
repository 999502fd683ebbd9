// Kernel tier: the netlink layer and the netns guard against the real kernel. Every test case
// runs in a network namespace of its own (unshare), so nothing touches the machine's interfaces.
// Needs root. Observations go through our own dump calls and, where we have no getter, `ip -j`.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "netlink/route.hpp"
#include "netns/netns.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <linux/if.h>
#include <sched.h>
#include <sys/utsname.h>
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

nlohmann::json tool_json(const std::string& command)
{
    std::string out;
    FILE* p = ::popen(command.c_str(), "r");
    REQUIRE(p);
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    ::pclose(p);
    return nlohmann::json::parse(out, nullptr, false);
}

nlohmann::json ip_json(const std::string& args)
{
    return tool_json("ip -j " + args);
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
    auto made = create_veth(*ns.socket, { "vhost0", "tmp1234", container.fd(), 1300, mac });
    REQUIRE(made.ok());
    CHECK_FALSE(get_link(*ns.socket, "tmp1234").value()); // not in the host
    // The kernel's echo of the host end (6.3+) is what a lookup of it says.
    struct utsname u {};
    ::uname(&u);
    int major = 0, minor = 0;
    std::sscanf(u.release, "%d.%d", &major, &minor);
    if (major > 6 || (major == 6 && minor >= 3)) {
        REQUIRE(made.value());
        auto looked = get_link(*ns.socket, "vhost0").value();
        REQUIRE(looked);
        CHECK(made.value()->index == looked->index);
        CHECK(made.value()->mac == looked->mac);
        CHECK(made.value()->name == "vhost0");
        CHECK(made.value()->mtu == 1300);
    }
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
    REQUIRE_FALSE(clash.ok());
    CHECK(clash.error().sys_errno == EEXIST);
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
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().sys_errno == EEXIST);
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
    CHECK(r.error().sys_errno == EINVAL);
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

// --- the vxlan overlay's kernel side (flannel-style: cluster.md §2) ------------------------------

namespace {

/// A host as the overlay sees it: an underlay veth with 10.213.150.1/24, and a vxlan device
/// `kvx43` (VNI 43, port 8472, learning off) on it, up.
struct OverlayHost : FreshNetns {
    OverlayHost()
    {
        REQUIRE(create_veth(*socket, { "u1", "u1peer", -1, {}, {} }).ok());
        auto u1 = get_link(*socket, "u1").value();
        REQUIRE(u1);
        underlay = u1->index;
        REQUIRE(set_link(*socket, underlay, up()).ok());
        REQUIRE(set_link(*socket, get_link(*socket, "u1peer").value()->index, up()).ok());
        REQUIRE(add_address(*socket, underlay, *IpNet::parse("10.213.150.1/24")).ok());
        VxlanSpec spec;
        spec.name = "kvx43";
        spec.vni = 43;
        spec.port = 8472;
        spec.local = IpAddr::parse("10.213.150.1");
        spec.underlay = underlay;
        spec.ttl = 64;
        spec.mac = parse_mac("02:13:96:00:00:01");
        spec.mtu = 1450;
        auto made = create_vxlan(*socket, spec);
        REQUIRE_MESSAGE(made.ok(), made.error().msg, " / ", made.error().details);
        auto link = get_link(*socket, "kvx43").value();
        REQUIRE(link);
        vxlan = link->index;
        REQUIRE(set_link(*socket, vxlan, up()).ok());
    }
    int underlay = 0;
    int vxlan = 0;
};

IpAddr ip(const char* text)
{
    return *IpAddr::parse(text);
}

} // namespace

TEST_CASE("vxlan: created by the new fill, read back by us and by iproute2 (VNI, port, local, underlay, learning off, TTL, MAC, MTU)")
{
    OverlayHost host;
    auto link = get_link(*host.socket, host.vxlan).value();
    REQUIRE(link);
    CHECK(link->kind == "vxlan");
    CHECK(link->mtu == 1450);
    CHECK(mac_str(link->mac) == "02:13:96:00:00:01");
    REQUIRE(link->vxlan);
    CHECK(link->vxlan->vni == 43);
    CHECK(link->vxlan->port == 8472);
    CHECK_FALSE(link->vxlan->learning);
    CHECK_FALSE(link->vxlan->proxy);
    CHECK(link->vxlan->ttl == 64);
    CHECK(link->vxlan->underlay == host.underlay);
    REQUIRE(link->vxlan->local);
    CHECK(link->vxlan->local->str() == "10.213.150.1");

    auto shown = ip_json("-d link show kvx43");
    REQUIRE(shown.is_array());
    auto data = shown[0]["linkinfo"]["info_data"];
    CHECK(data["id"] == 43);
    CHECK(data["port"] == 8472);
    CHECK(data["learning"] == false);
    CHECK(data["local"] == "10.213.150.1");
    CHECK(data["link"] == "u1");
    CHECK(data["ttl"] == 64);

    // Another link of that name: EEXIST in the error itself.
    VxlanSpec again;
    again.name = "kvx43";
    again.vni = 44;
    auto twice = create_vxlan(*host.socket, again);
    REQUIRE_FALSE(twice.ok());
    CHECK(twice.error().sys_errno == EEXIST);
    // The same VNI and port under another name: the kernel refuses and says why.
    again.name = "kvx43b";
    again.vni = 43;
    again.port = 8472;
    auto same_vni = create_vxlan(*host.socket, again);
    REQUIRE_FALSE(same_vni.ok());
    CHECK(same_vni.error().sys_errno == EEXIST);
    CHECK_MESSAGE(same_vni.error().details.find("VNI") != std::string::npos, same_vni.error().details);
    CHECK_FALSE(get_link(*host.socket, "kvx43b").value());
    // Bad input is refused before the kernel sees it, and nothing is created.
    again.vni = 1u << 24;
    auto bad = create_vxlan(*host.socket, again);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == Code::InvalidConfig);
    CHECK_FALSE(get_link(*host.socket, "kvx43b").value());

    // Learning on by request; port 0 means the kernel's default 8472 on another VNI.
    VxlanSpec learning;
    learning.name = "kvx7";
    learning.vni = 7;
    learning.learning = true;
    learning.proxy = true;
    REQUIRE(create_vxlan(*host.socket, learning).ok());
    auto l = get_link(*host.socket, "kvx7").value();
    REQUIRE((l && l->vxlan));
    CHECK(l->vxlan->learning);
    CHECK(l->vxlan->proxy);
    CHECK(l->vxlan->port == 8472);
    CHECK_FALSE(l->vxlan->local);
    REQUIRE(delete_link(*host.socket, l->index).ok());
    CHECK_FALSE(get_link(*host.socket, "kvx7").value());
}

TEST_CASE("vxlan: an IPv6 local address is accepted and read back")
{
    FreshNetns ns;
    VxlanSpec spec;
    spec.name = "kvx6";
    spec.vni = 60;
    spec.local = IpAddr::parse("::1");
    auto made = create_vxlan(*ns.socket, spec);
    REQUIRE_MESSAGE(made.ok(), made.error().msg, " / ", made.error().details);
    auto link = get_link(*ns.socket, "kvx6").value();
    REQUIRE((link && link->vxlan && link->vxlan->local));
    CHECK(link->vxlan->local->str() == "::1");
    CHECK(ip_json("-d link show kvx6")[0]["linkinfo"]["info_data"]["local6"] == "::1");
}

TEST_CASE("neighbours: replace twice is not EEXIST, replace overwrites the MAC, delete twice is success, list diffs")
{
    OverlayHost host;
    auto m2 = *parse_mac("02:13:96:00:00:02");
    auto m3 = *parse_mac("02:13:96:00:00:03");
    auto peer = ip("10.213.150.64");
    for (int i = 0; i < 2; ++i) {
        auto done = replace_neighbour(*host.socket, host.vxlan, peer, m2);
        REQUIRE_MESSAGE(done.ok(), done.error().msg, " / ", done.error().details);
    }
    auto listed = list_neighbours(*host.socket, host.vxlan, 4).value();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].dst == peer);
    CHECK(listed[0].index == host.vxlan);
    REQUIRE(listed[0].lladdr);
    CHECK(mac_str(*listed[0].lladdr) == "02:13:96:00:00:02");
    CHECK(listed[0].permanent());
    auto shown = ip_json("-4 neigh show dev kvx43");
    REQUIRE(shown.size() == 1);
    CHECK(shown[0]["dst"] == "10.213.150.64");
    CHECK(shown[0]["lladdr"] == "02:13:96:00:00:02");
    CHECK(shown[0]["state"][0] == "PERMANENT");
    // Another device's entries are not listed for this one.
    REQUIRE(replace_neighbour(*host.socket, host.underlay, ip("10.213.150.2"), m3).ok());
    CHECK(list_neighbours(*host.socket, host.vxlan, 4).value().size() == 1);
    CHECK(list_neighbours(*host.socket, host.underlay, 4).value().size() == 1);
    // (IPv6 neighbour discovery may add entries of its own on an interface that is up: only
    // permanent ones are ours.)
    for (auto& n : list_neighbours(*host.socket, host.underlay, 6).value())
        CHECK_FALSE(n.permanent());

    REQUIRE(replace_neighbour(*host.socket, host.vxlan, peer, m3).ok());
    listed = list_neighbours(*host.socket, host.vxlan, 4).value();
    REQUIRE(listed.size() == 1);
    CHECK(mac_str(*listed[0].lladdr) == "02:13:96:00:00:03");

    REQUIRE(delete_neighbour(*host.socket, host.vxlan, peer).ok());
    CHECK(list_neighbours(*host.socket, host.vxlan, 4).value().empty());
    CHECK(ip_json("-4 neigh show dev kvx43").empty());
    CHECK(delete_neighbour(*host.socket, host.vxlan, peer).ok()); // absent: success
    auto bad = replace_neighbour(*host.socket, 0, peer, m2);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == Code::InvalidConfig);
}

TEST_CASE("FDB on a vxlan device: replace twice, replace moves the MAC to another VTEP, append builds a flood list, delete one remote or all")
{
    OverlayHost host;
    auto m2 = *parse_mac("02:13:96:00:00:02");
    auto zero = *parse_mac("00:00:00:00:00:00");
    auto remotes = [&](const Mac& mac) {
        std::vector<std::string> out;
        auto entries = list_fdb(*host.socket, host.vxlan).value(); // a copy: the Result is a temporary
        for (auto& e : entries)
            if (e.mac == mac && e.dst)
                out.push_back(e.dst->str());
        std::sort(out.begin(), out.end());
        return out;
    };
    for (int i = 0; i < 2; ++i) {
        auto done = replace_fdb(*host.socket, host.vxlan, m2, ip("10.213.150.2"));
        REQUIRE_MESSAGE(done.ok(), done.error().msg, " / ", done.error().details);
    }
    CHECK(remotes(m2) == std::vector<std::string> { "10.213.150.2" });
    auto entries = list_fdb(*host.socket, host.vxlan).value();
    CHECK_FALSE(entries.empty());
    for (auto& e : entries) {
        CHECK(e.index == host.vxlan);
        if (e.mac == m2) {
            CHECK(e.permanent());
            CHECK((e.flags & NTF_SELF));
        }
    }
    auto shown = tool_json("bridge -j fdb show dev kvx43");
    bool seen = false;
    for (auto& e : shown)
        seen |= e.value("mac", "") == "02:13:96:00:00:02" && e.value("dst", "") == "10.213.150.2" && e.value("state", "") == "permanent";
    CHECK_MESSAGE(seen, shown.dump());

    REQUIRE(replace_fdb(*host.socket, host.vxlan, m2, ip("10.213.150.3")).ok());
    CHECK(remotes(m2) == std::vector<std::string> { "10.213.150.3" });

    REQUIRE(append_fdb(*host.socket, host.vxlan, zero, ip("10.213.150.2")).ok());
    REQUIRE(append_fdb(*host.socket, host.vxlan, zero, ip("10.213.150.3")).ok());
    CHECK(remotes(zero) == std::vector<std::string> { "10.213.150.2", "10.213.150.3" });
    REQUIRE(delete_fdb(*host.socket, host.vxlan, zero, ip("10.213.150.2")).ok());
    CHECK(remotes(zero) == std::vector<std::string> { "10.213.150.3" });
    CHECK(delete_fdb(*host.socket, host.vxlan, zero, ip("10.213.150.2")).ok()); // that remote is gone: success

    REQUIRE(delete_fdb(*host.socket, host.vxlan, m2).ok());
    CHECK(remotes(m2).empty());
    CHECK(delete_fdb(*host.socket, host.vxlan, m2).ok()); // absent: success
    // The underlay lists only its own addresses (no dst), none of the vxlan device's entries.
    auto underlay_entries = list_fdb(*host.socket, host.underlay).value();
    for (auto& e : underlay_entries) {
        CHECK(e.index == host.underlay);
        CHECK_FALSE(e.dst);
    }
    auto bad = replace_fdb(*host.socket, host.vxlan, m2, IpAddr {});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == Code::InvalidConfig);
}

TEST_CASE("routes: replace onlink twice, replace changes the gateway, list by device, delete twice")
{
    OverlayHost host;
    REQUIRE(add_address(*host.socket, host.vxlan, *IpNet::parse("10.213.150.128/32")).ok());
    RouteSpec route;
    route.dst = *IpNet::parse("10.213.150.192/26");
    route.gw = ip("10.213.150.192");
    route.oif = host.vxlan;
    // Without onlink the gateway is on no connected subnet of kvx43: the kernel refuses.
    auto refused = add_route(*host.socket, route);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().sys_errno == ENETUNREACH);
    route.onlink = true;
    for (int i = 0; i < 2; ++i) {
        auto done = replace_route(*host.socket, route);
        REQUIRE_MESSAGE(done.ok(), done.error().msg, " / ", done.error().details);
    }
    auto listed = list_routes(*host.socket, 4, host.vxlan).value();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].dst.str() == "10.213.150.192/26");
    CHECK(listed[0].gw == ip("10.213.150.192"));
    CHECK(listed[0].onlink);
    CHECK(listed[0].oif == host.vxlan);
    auto shown = ip_json("route show 10.213.150.192/26");
    REQUIRE(shown.size() == 1);
    CHECK(shown[0]["gateway"] == "10.213.150.192");
    CHECK(shown[0]["dev"] == "kvx43");
    CHECK(std::find(shown[0]["flags"].begin(), shown[0]["flags"].end(), "onlink") != shown[0]["flags"].end());
    // Routes of other devices are not listed for this one (the underlay has its connected /24).
    auto underlay_routes = list_routes(*host.socket, 4, host.underlay).value();
    CHECK(underlay_routes.size() == 1); // its connected 10.213.150.0/24
    for (auto& r : underlay_routes)
        CHECK(r.oif == host.underlay);

    route.gw = ip("10.213.150.193");
    REQUIRE(replace_route(*host.socket, route).ok());
    listed = list_routes(*host.socket, 4, host.vxlan).value();
    REQUIRE(listed.size() == 1);
    CHECK(listed[0].gw == ip("10.213.150.193"));

    RouteSpec gone;
    gone.dst = route.dst;
    gone.oif = host.vxlan;
    REQUIRE(delete_route(*host.socket, gone).ok());
    CHECK(list_routes(*host.socket, 4, host.vxlan).value().empty());
    CHECK(ip_json("route show 10.213.150.192/26").empty());
    CHECK(delete_route(*host.socket, gone).ok()); // absent (ESRCH): success
}
