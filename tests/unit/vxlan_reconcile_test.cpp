// The agent's reconcile diff (drivers::reconcile_remote_blocks) against the FakeKernel: one host
// ("node-a", VTEP 10.213.196.1) with its vxlan device, the cluster's blocks given as the agent
// would have them from etcd, and the device's routes, neighbours and FDB entries compared, whole,
// with what those blocks justify — after adds, a moved block, stale entries, a release, IPv6
// blocks behind an IPv4 VTEP, and a kernel call failing at every step of a run.

#include "cnm/driver.hpp"
#include "drivers/vxlan.hpp"
#include "fake_kernel.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <set>

using namespace cnm;

namespace {

IpAddr ip(const char* s)
{
    return *IpAddr::parse(s);
}
IpNet net(const char* s)
{
    return *IpNet::parse(s);
}
BlockOwner owner(const char* block, const char* node, const char* vtep)
{
    return { net(block), node, ip(vtep), vtep_mac(ip(vtep)) };
}

const Json options = { { "vni", 4219 }, { "subnet", "10.213.198.0/23" }, { "subnet6", "fd00:213:198::/64" }, { "bridge", "vxb-rec" } };
const char* device = "cnmvx4219";

struct Host {
    test::FakeKernel kernel;
    int eth = 0;
    int vx = 0;
    int other = 0; // another network's vxlan device, whose entries are not this one's business
};

std::unique_ptr<Host> make_host()
{
    auto h = std::make_unique<Host>();
    auto& k = h->kernel;
    h->eth = k.add_link(host_ns, "eth0");
    REQUIRE(k.add_address(host_ns, h->eth, net("10.213.196.1/24"), false).ok());
    k.add_default_route(host_ns, h->eth, ip("10.213.196.254"));
    Driver* driver = find_driver("vxlan");
    REQUIRE(driver);
    // This host's own blocks, on its bridge.
    REQUIRE(driver->ensure_network(k, options, { net("10.213.198.1/26"), net("fd00:213:198::1/122") }).ok());
    auto* vx = k.find(host_ns, device);
    REQUIRE(vx);
    h->vx = vx->link.index;
    // The link-local address the kernel gives every IPv6-capable device, with its prefix route.
    REQUIRE(k.add_address(host_ns, h->vx, net("fe80::ff:fe00:1/64"), false).ok());
    Json other_opts = options;
    other_opts["vni"] = 99;
    other_opts["bridge"] = "vxb-other";
    REQUIRE(driver->ensure_network(k, other_opts, {}).ok());
    h->other = k.find(host_ns, "cnmvx99")->link.index;
    REQUIRE(drivers::program_remote_blocks(k, other_opts, { owner("10.213.199.0/26", "node-z", "10.213.196.9") }).ok());
    // A route of the host's own on eth0, via a gateway.
    netlink::RouteSpec mine;
    mine.dst = net("10.213.197.0/24");
    mine.gw = ip("10.213.196.254");
    mine.oif = h->eth;
    REQUIRE(k.add_route(host_ns, mine).ok());
    return h;
}

/// Every route (of the main table, the kernel's prefix routes too), permanent neighbour and FDB
/// entry of device `index`, one line each.
std::set<std::string> entries(test::FakeKernel& k, int index)
{
    std::set<std::string> out;
    // (Each list held in a local: a range-for over *k.routes(…) would outlive its Result.)
    for (int family : { 4, 6 }) {
        auto routes = k.routes(host_ns, family);
        REQUIRE(routes.ok());
        for (auto& r : *routes)
            if (r.oif == index)
                out.insert("route " + r.dst.str() + (r.gw ? " via " + r.gw->str() : "") + (r.onlink ? " onlink" : ""));
    }
    auto neigh = k.neighbours(host_ns, index);
    REQUIRE(neigh.ok());
    for (auto& n : *neigh)
        if (n.index == index)
            out.insert("neigh " + n.dst.str() + " lladdr " + netlink::mac_str(*n.lladdr) + (n.permanent() ? " permanent" : ""));
    auto fdb = k.fdb(host_ns, index);
    REQUIRE(fdb.ok());
    for (auto& f : *fdb)
        if (f.index == index)
            out.insert("fdb " + netlink::mac_str(f.mac) + " dst " + f.dst->str());
    return out;
}

template <class T>
std::string why(const Result<T>& r)
{
    return r.ok() ? std::string() : r.error().msg + " " + r.error().details;
}

std::string str(const std::set<std::string>& s)
{
    std::string out;
    for (auto& e : s)
        out += e + "\n";
    return out;
}

/// What the device must hold for `remote` blocks: the kernel's fe80::/64 prefix route, and per
/// block a route onlink via its gateway, the gateway's permanent neighbour, its VTEP's FDB entry.
std::set<std::string> justified(const std::vector<BlockOwner>& remote)
{
    std::set<std::string> out { "route fe80::/64" };
    for (auto& b : remote) {
        out.insert("route " + b.block.str() + " via " + b.gateway().str() + " onlink");
        out.insert("neigh " + b.gateway().str() + " lladdr " + netlink::mac_str(b.mac) + " permanent");
        out.insert("fdb " + netlink::mac_str(b.mac) + " dst " + b.vtep.str());
    }
    return out;
}

const std::vector<BlockOwner> own = { owner("10.213.198.0/26", "node-a", "10.213.196.1"), owner("fd00:213:198::/122", "node-a", "10.213.196.1") };
const BlockOwner b4 = owner("10.213.198.64/26", "node-b", "10.213.196.2");
const BlockOwner b6 = owner("fd00:213:198::40/122", "node-b", "10.213.196.2");
const BlockOwner c4 = owner("10.213.198.128/26", "node-c", "10.213.196.3");

std::vector<BlockOwner> with_own(std::vector<BlockOwner> remote)
{
    remote.insert(remote.end(), own.begin(), own.end());
    return remote;
}

} // namespace

TEST_CASE("vxlan reconcile: adds what is missing, for IPv4 and IPv6 blocks, and skips this host's own")
{
    auto h = make_host();
    auto& k = h->kernel;
    auto other_before = entries(k, h->other);
    auto eth_before = entries(k, h->eth);
    auto blocks = with_own({ b4, b6, c4 });

    auto n = drivers::reconcile_remote_blocks(k, options, blocks);
    REQUIRE_MESSAGE(n.ok(), why(n), k.dump());
    CHECK(*n == 0);
    auto want = justified({ b4, b6, c4 });
    CHECK_MESSAGE(entries(k, h->vx) == want, "have:\n", str(entries(k, h->vx)), "want:\n", str(want));
    // Spelled out once: the IPv6 block is routed via its IPv6 gateway, which resolves to the
    // IPv4 VTEP's MAC, which the FDB sends to that VTEP.
    CHECK(entries(k, h->vx).count("route fd00:213:198::40/122 via fd00:213:198::41 onlink"));
    CHECK(entries(k, h->vx).count("neigh fd00:213:198::41 lladdr 02:0a:d5:c4:02:00 permanent"));
    CHECK(entries(k, h->vx).count("fdb 02:0a:d5:c4:02:00 dst 10.213.196.2"));
    CHECK(entries(k, h->other) == other_before);
    CHECK(entries(k, h->eth) == eth_before);

    // Again: nothing changes, nothing is removed.
    n = drivers::reconcile_remote_blocks(k, options, blocks);
    REQUIRE(n.ok());
    CHECK(*n == 0);
    CHECK(entries(k, h->vx) == want);
}

TEST_CASE("vxlan reconcile: a block that moved to another VTEP is replaced; the old VTEP's FDB entry goes")
{
    auto h = make_host();
    auto& k = h->kernel;
    REQUIRE(drivers::reconcile_remote_blocks(k, options, with_own({ b4, b6, c4 })).ok());
    BlockOwner moved = owner("10.213.198.128/26", "node-d", "10.213.196.4");
    auto n = drivers::reconcile_remote_blocks(k, options, with_own({ b4, b6, moved }));
    REQUIRE(n.ok());
    CHECK(*n == 1); // node-c's FDB entry: no block is at 10.213.196.3 any more
    auto want = justified({ b4, b6, moved });
    CHECK_MESSAGE(entries(k, h->vx) == want, "have:\n", str(entries(k, h->vx)), "want:\n", str(want));

    // A gateway's neighbour with a wrong MAC and an FDB entry with a wrong VTEP are replaced.
    REQUIRE(k.replace_neighbour(host_ns, h->vx, b4.gateway(), vtep_mac(ip("10.213.196.77"))).ok());
    REQUIRE(k.replace_fdb(host_ns, h->vx, b4.mac, ip("10.213.196.78")).ok());
    n = drivers::reconcile_remote_blocks(k, options, with_own({ b4, b6, moved }));
    REQUIRE(n.ok());
    CHECK(entries(k, h->vx) == want);
}

TEST_CASE("vxlan reconcile: removes what no block justifies on its device, and only there")
{
    auto h = make_host();
    auto& k = h->kernel;
    auto blocks = with_own({ b4, b6 });
    REQUIRE(drivers::reconcile_remote_blocks(k, options, blocks).ok());
    auto other_before = entries(k, h->other);
    auto eth_before = entries(k, h->eth);
    // Stale: a route to a block nobody holds, a route to this host's own block (it was remote
    // once), an IPv6 one, their neighbours, an FDB entry of a host that is gone.
    for (auto [dst, gw] : { std::pair { "10.213.199.128/28", "10.213.199.129" }, std::pair { "10.213.198.0/26", "10.213.198.1" },
             std::pair { "fd00:213:199::/122", "fd00:213:199::1" } }) {
        netlink::RouteSpec r;
        r.dst = net(dst);
        r.gw = ip(gw);
        r.oif = h->vx;
        r.onlink = true;
        REQUIRE(k.replace_route(host_ns, r).ok());
        REQUIRE(k.replace_neighbour(host_ns, h->vx, ip(gw), vtep_mac(ip("10.213.196.5"))).ok());
    }
    REQUIRE(k.replace_fdb(host_ns, h->vx, vtep_mac(ip("10.213.196.5")), ip("10.213.196.5")).ok());
    REQUIRE(k.replace_fdb(host_ns, h->vx, Mac {}, ip("10.213.196.6")).ok()); // an all-zero flood entry
    REQUIRE(entries(k, h->vx).size() == justified({ b4, b6 }).size() + 8);

    auto n = drivers::reconcile_remote_blocks(k, options, blocks);
    REQUIRE(n.ok());
    CHECK(*n == 8);
    auto want = justified({ b4, b6 });
    CHECK_MESSAGE(entries(k, h->vx) == want, "have:\n", str(entries(k, h->vx)), "want:\n", str(want));
    CHECK_MESSAGE(entries(k, h->other) == other_before, str(entries(k, h->other)));
    CHECK(entries(k, h->eth) == eth_before);
    CHECK(entries(k, h->eth).count("route 10.213.197.0/24 via 10.213.196.254"));

    // node-b's blocks released: its routes, neighbours and FDB entry go; no block left, only the
    // kernel's own route stays.
    n = drivers::reconcile_remote_blocks(k, options, own);
    REQUIRE(n.ok());
    CHECK(*n == 5);
    CHECK_MESSAGE(entries(k, h->vx) == justified({}), str(entries(k, h->vx)));
    CHECK(entries(k, h->other) == other_before);
    // And with no block at all (an empty list, as when the network has none yet).
    n = drivers::reconcile_remote_blocks(k, options, {});
    REQUIRE(n.ok());
    CHECK(*n == 0);
    CHECK(entries(k, h->other) == other_before);
}

TEST_CASE("vxlan reconcile: a kernel call failing midway is an error; the next run converges")
{
    // From a state with something to add, replace and remove, fail the k-th kernel call of the
    // run, for every k the run makes.
    BlockOwner moved = owner("10.213.198.128/26", "node-d", "10.213.196.4");
    auto before = with_own({ b4, c4 });
    auto after = with_own({ b6, moved });
    auto prepare = [&] {
        auto h = make_host();
        REQUIRE(drivers::reconcile_remote_blocks(h->kernel, options, before).ok());
        return h;
    };
    int calls;
    {
        auto h = prepare();
        int start = h->kernel.total_calls();
        REQUIRE(drivers::reconcile_remote_blocks(h->kernel, options, after).ok());
        calls = h->kernel.total_calls() - start;
    }
    REQUIRE(calls > 10);
    auto want = justified({ b6, moved });
    for (int at = 1; at <= calls; ++at) {
        CAPTURE(at);
        auto h = prepare();
        auto& k = h->kernel;
        auto other_before = entries(k, h->other);
        k.fail_call(at);
        auto failed = drivers::reconcile_remote_blocks(k, options, after);
        REQUIRE_FALSE(failed.ok());
        CHECK(failed.error().msg.find("injected") != std::string::npos);
        k.clear_failures();
        auto again = drivers::reconcile_remote_blocks(k, options, after);
        REQUIRE_MESSAGE(again.ok(), why(again));
        CHECK_MESSAGE(entries(k, h->vx) == want, "have:\n", str(entries(k, h->vx)), "want:\n", str(want));
        CHECK(entries(k, h->other) == other_before);
    }
}

TEST_CASE("vxlan reconcile: no vxlan device or a bad conf is an error and changes nothing")
{
    test::FakeKernel k;
    int eth = k.add_link(host_ns, "eth0");
    REQUIRE(k.add_address(host_ns, eth, net("10.213.196.1/24"), false).ok());
    k.add_default_route(host_ns, eth);
    int before = k.mutations();
    auto n = drivers::reconcile_remote_blocks(k, options, { b4 });
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().msg.find(device) != std::string::npos);
    Json bad = options;
    bad["vni"] = "x";
    CHECK_FALSE(drivers::reconcile_remote_blocks(k, bad, { b4 }).ok());
    CHECK(k.mutations() == before);
}
