// vxlan without etcd or root: the block allocator (cutting, picking, adoption, lost races,
// exhaustion) over an in-memory etcd behind the client's Transport seam, the cluster IPAM over a
// FileStore in a temp dir (no etcd round trip while a block has room), and the vxlan driver's
// attach/detach and remote-block entries against the FakeKernel.

#include "cnm/cluster_ipam.hpp"
#include "drivers/vxlan.hpp"
#include "etcd/codec.hpp"
#include "fake_kernel.hpp"
#include "helpers.hpp"
#include "store/file_store.hpp"

#include "memory_etcd.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>

using namespace cnm;
using namespace cnm::etcd;

namespace {

using test::MemoryEtcd;

ClusterConfig config_for(const std::string& node)
{
    ClusterConfig c;
    c.etcd = { "http://etcd:1" };
    c.node = node;
    return c;
}

/// A Cluster over a MemoryEtcd kept by the test (the transport is owned by the cluster's client).
struct Host {
    MemoryEtcd* etcd;
    std::shared_ptr<Cluster> cluster;
    Host(const std::string& node, MemoryEtcd& shared)
    {
        etcd = &shared;
        cluster = std::make_shared<Cluster>(config_for(node), std::make_unique<test::Forward>(shared));
    }
};

IpNet net(const char* text)
{
    return *IpNet::parse(text);
}
IpAddr ip(const char* text)
{
    return *IpAddr::parse(text);
}

NetworkFacts facts_22()
{
    NetworkFacts f;
    f.vni = 42;
    f.subnet = net("10.213.232.0/22");
    f.mtu = 1450;
    return f;
}

} // namespace

TEST_CASE("blocks: a subnet cut into blocks, the first free one picked")
{
    IpNet subnet = net("10.213.232.0/22");
    CHECK(block_count(subnet, 26) == 16);
    CHECK(nth_block(subnet, 26, 0) == net("10.213.232.0/26"));
    CHECK(nth_block(subnet, 26, 5) == net("10.213.233.64/26"));
    CHECK(nth_block(subnet, 26, 15) == net("10.213.235.192/26"));
    std::set<IpNet> taken = { net("10.213.232.0/26"), net("10.213.232.128/26") };
    CHECK(first_free_block(subnet, 26, taken) == net("10.213.232.64/26"));
    taken.insert(net("10.213.232.64/26"));
    CHECK(first_free_block(subnet, 26, taken) == net("10.213.232.192/26"));
    std::set<IpNet> all;
    for (u128 n = 0; n < 16; ++n)
        all.insert(nth_block(subnet, 26, n));
    CHECK_FALSE(first_free_block(subnet, 26, all));
    // IPv6: 2^66 blocks, and picking one walks only past the taken ones.
    IpNet v6 = net("fd00:213:232::/56");
    CHECK(first_free_block(v6, 122, {}) == net("fd00:213:232::/122"));
    CHECK(first_free_block(v6, 122, { net("fd00:213:232::/122") }) == net("fd00:213:232::40/122"));
    CHECK(block_key(net("10.213.232.64/26")) == "10.213.232.64_26");
    CHECK(parse_block_key("10.213.232.64_26") == net("10.213.232.64/26"));
    CHECK_FALSE(parse_block_key("10.213.232.65_26")); // host bits
    CHECK_FALSE(parse_block_key("junk"));
    CHECK(netlink::mac_str(vtep_mac(ip("10.213.230.1"))) == "02:0a:d5:e6:01:00");
    auto ranges = block_ranges({ { net("10.213.232.64/26"), "h", ip("10.213.230.1"), {} } }, 4);
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0].gateway == ip("10.213.232.65"));
    CHECK(ranges[0].start == ip("10.213.232.66"));
    CHECK(ranges[0].end == ip("10.213.232.126"));
}

TEST_CASE("blocks: a conf that disagrees with the network names the key and both values")
{
    auto wanted = FactsWanted::parse(Json { { "vni", 43 }, { "subnet", "10.213.232.0/22" } });
    REQUIRE(wanted.ok());
    auto agreed = wanted->agree("net", facts_22());
    REQUIRE_FALSE(agreed.ok());
    CHECK(agreed.error().code == Code::InvalidConfig);
    CHECK(agreed.error().msg.find("\"vni\" = 42") != std::string::npos);
    CHECK(agreed.error().msg.find("43") != std::string::npos);
    CHECK(FactsWanted::parse(Json { { "subnet", "10.213.232.1/22" } }).error().code == Code::InvalidConfig);
    CHECK(FactsWanted::parse(Json { { "subnet", "10.213.232.0/22" }, { "blockSize", 20 } }).error().code == Code::InvalidConfig);
    CHECK(FactsWanted::parse(Json { { "vni", 0 } }).error().code == Code::InvalidConfig);
    CHECK_FALSE(FactsWanted::parse(Json { { "subnet", "10.213.232.0/22" } })->complete(1450).ok()); // vni required
}

TEST_CASE("cluster: claims, lost races, adoption, exhaustion, etcd down")
{
    MemoryEtcd etcd;
    Host a("node-a", etcd), b("node-b", etcd);
    IpNet subnet = net("10.213.232.0/24"); // 4 blocks of /26
    Mac ma = vtep_mac(ip("10.213.230.1")), mb = vtep_mac(ip("10.213.230.2"));

    auto first = a.cluster->claim("net", subnet, 26, {}, ip("10.213.230.1"), ma);
    REQUIRE(first.ok());
    REQUIRE(first->mine.size() == 1);
    CHECK(first->mine[0].block == net("10.213.232.0/26"));
    CHECK(etcd.kv.count("/cnm/blocks/net/10.213.232.0_26") == 1);
    CHECK(etcd.kv.count("/cnm/hosts/node-a") == 1);

    // node-b sees node-a's block, claims the next and reports a's as one to route to.
    auto second = b.cluster->claim("net", subnet, 26, {}, ip("10.213.230.2"), mb);
    REQUIRE(second.ok());
    CHECK(second->mine.at(0).block == net("10.213.232.64/26"));
    REQUIRE(second->others.size() == 1);
    CHECK(second->others[0].node == "node-a");
    CHECK(second->others[0].vtep == ip("10.213.230.1"));

    // A lost race: node-b takes .128 between node-a's read and its CAS; node-a gets .192.
    etcd.before_txn_on = "/blocks/";
    etcd.before_txn = [&] {
        etcd.put("/cnm/blocks/net/10.213.232.128_26", BlockOwner { net("10.213.232.128/26"), "node-b", ip("10.213.230.2"), mb }.to_json().dump());
    };
    int txns = etcd.txns;
    auto raced = a.cluster->claim("net", subnet, 26, { net("10.213.232.0/26") }, ip("10.213.230.1"), ma);
    REQUIRE(raced.ok());
    CHECK(raced->mine.at(0).block == net("10.213.232.192/26"));
    CHECK(etcd.txns - txns == 3); // host record, the lost CAS, the won CAS
    bool learned_winner = false;
    for (auto& o : raced->others)
        learned_winner |= o.block == net("10.213.232.128/26") && o.node == "node-b";
    CHECK(learned_winner);

    // Adoption: etcd gives node-a .192 but its cache lacks it (killed between CAS and cache).
    txns = etcd.txns;
    auto adopted = a.cluster->claim("net", subnet, 26, { net("10.213.232.0/26") }, ip("10.213.230.1"), ma);
    REQUIRE(adopted.ok());
    REQUIRE(adopted->mine.size() == 1);
    CHECK(adopted->mine[0].block == net("10.213.232.192/26"));
    CHECK(etcd.txns - txns == 1); // only the host record: no new block was created
    CHECK(etcd.kv.size() == 2 + 4);

    // Exhausted: every block held.
    auto none = b.cluster->claim("net", subnet, 26, { net("10.213.232.64/26"), net("10.213.232.128/26") }, ip("10.213.230.2"), mb);
    REQUIRE_FALSE(none.ok());
    CHECK(none.error().code == Code::AddressUnavailable);
    CHECK(none.error().msg.find("no free block") != std::string::npos);

    // Released by an admin: node-a's two blocks go, node-b's stay; b can claim again.
    auto released = a.cluster->release_blocks("net", "node-a");
    REQUIRE(released.ok());
    CHECK(*released == 2);
    auto again = b.cluster->claim("net", subnet, 26, { net("10.213.232.64/26"), net("10.213.232.128/26") }, ip("10.213.230.2"), mb);
    REQUIRE(again.ok());
    CHECK(again->mine.at(0).block == net("10.213.232.0/26"));

    etcd.down = true;
    auto down = a.cluster->claim("net", subnet, 26, {}, ip("10.213.230.1"), ma);
    REQUIRE_FALSE(down.ok());
    CHECK(down.error().code == Code::TryAgainLater);
}

TEST_CASE("cluster IPAM: no etcd while a block has room; a new block when full; etcd down")
{
    test::TempDir dir;
    auto store = FileStore::open(dir.path() + "/state");
    REQUIRE(store.ok());
    Registry registry(**store);
    MemoryEtcd etcd;
    Host a("node-a", etcd);
    // Blocks of /28: 16 addresses less the network, broadcast and gateway → 13 per block.
    auto resolved = resolve_network_facts(**store, *a.cluster, "net", *FactsWanted::parse(Json { { "vni", 42 }, { "subnet", "10.213.232.0/22" }, { "blockSize", 28 } }), 1450);
    REQUIRE(resolved.ok());
    CHECK(resolved->mtu == 1450);
    ClusterAddresses source(a.cluster, *resolved, [] { return Result<Vtep>(Vtep { ip("10.213.230.1"), vtep_mac(ip("10.213.230.1")) }); });
    source.scope("net");
    auto record = [](int i) {
        EndpointRecord r;
        r.network = "net";
        r.container_id = "c" + std::to_string(i);
        r.ifname = "eth0";
        return r;
    };
    std::set<IpAddr> seen;
    int posts_after_first = 0;
    for (int i = 0; i < 13; ++i) {
        auto r = record(i);
        auto got = source.acquire(registry, r);
        REQUIRE(got.ok());
        REQUIRE(got->ips.size() == 1);
        CHECK(got->ips[0].address.prefix == 28);
        CHECK(got->ips[0].gateway == ip("10.213.232.1"));
        CHECK(got->routes.at(0).dst == net("10.213.232.0/22"));
        CHECK(seen.insert(got->ips[0].address.addr).second);
        if (i == 0)
            posts_after_first = etcd.posts;
    }
    CHECK(posts_after_first > 0);
    CHECK(etcd.posts == posts_after_first); // 12 ADDs with room: not one etcd call
    CHECK_FALSE(seen.count(ip("10.213.232.1")));

    // Full: the 14th claims the next block.
    auto r13 = record(13);
    auto next = source.acquire(registry, r13);
    REQUIRE(next.ok());
    CHECK(next->ips[0].address.addr == ip("10.213.232.18"));
    CHECK(source.claimed());
    CHECK(etcd.kv.count("/cnm/blocks/net/10.213.232.16_28") == 1);
    auto local = load_local_blocks(**store, "net");
    REQUIRE(local.ok());
    CHECK(local->blocks.size() == 2);

    // A freed address does not give the block back, and is handed out again without etcd.
    auto r0 = record(0);
    r0.addresses = {};
    REQUIRE(source.release(registry, r0).ok()); // by owner scan (no recorded addresses)
    etcd.down = true;
    int posts = etcd.posts;
    for (int i = 14; i < 27; ++i) {
        auto r = record(i);
        REQUIRE(source.acquire(registry, r).ok()); // 12 left in block 2 + the freed one
    }
    CHECK(etcd.posts == posts);
    CHECK(etcd.kv.count("/cnm/blocks/net/10.213.232.0_28") == 1);
    // Both blocks full and etcd down: code 11, and no lease taken.
    ipam::Pools pools(**store);
    auto leases_before = pools.leases({ "cluster:net", net("10.213.232.16/28") })->size();
    auto r26 = record(27);
    auto failed = source.acquire(registry, r26);
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().code == Code::TryAgainLater);
    CHECK(pools.leases({ "cluster:net", net("10.213.232.16/28") })->size() == leases_before);
    CHECK(source.ready(registry).error().code == Code::NotAvailable);
    etcd.down = false;
    CHECK(source.ready(registry).ok());
    REQUIRE(source.acquire(registry, r26).ok());
}

TEST_CASE("vxlan driver: attach, remote blocks by replace, detach against the FakeKernel")
{
    test::TempDir dir;
    auto store = FileStore::open(dir.path() + "/state");
    REQUIRE(store.ok());
    Registry registry(**store);
    test::FakeKernel kernel;
    int eth = kernel.add_link(host_ns, "eth0");
    REQUIRE(kernel.add_address(host_ns, eth, *IpNet::parse("10.213.230.1/24"), false).ok());
    kernel.add_default_route(host_ns, eth);
    NsId sandbox = kernel.add_netns("/run/netns/c1");
    MemoryEtcd etcd;
    Host a("node-a", etcd);
    // Another host already holds a block.
    etcd.put("/cnm/blocks/net/10.213.232.0_26", BlockOwner { net("10.213.232.0/26"), "node-b", ip("10.213.230.2"), vtep_mac(ip("10.213.230.2")) }.to_json().dump());

    Driver* driver = find_driver("vxlan");
    REQUIRE(driver);
    Json options = { { "vni", 42 }, { "subnet", "10.213.232.0/22" }, { "bridge", "vxb-net" } };
    auto underlay = drivers::vxlan_underlay(kernel, options);
    REQUIRE(underlay.ok());
    CHECK(underlay->address == ip("10.213.230.1"));
    auto facts = resolve_network_facts(**store, *a.cluster, "net", *FactsWanted::parse(options), underlay->mtu - 50);
    REQUIRE(facts.ok());
    options["mtu"] = facts->mtu;
    options["port"] = facts->port;
    options["blockSize"] = facts->block_size;
    ClusterAddresses source(a.cluster, *facts, [&] { return Result<Vtep>(Vtep { underlay->address, vtep_mac(underlay->address) }); });
    Endpoints endpoints(registry, &kernel, driver);
    AddRequest request { { "net", "vxlan", Frontend::Cni, options }, "c1", "eth0", "/run/netns/c1", Target::in_netns("/run/netns/c1", "eth0"), "" };
    auto added = endpoints.add(request, source);
    REQUIRE_MESSAGE(added.ok(), (added.ok() ? "" : added.error().msg + " " + added.error().details), kernel.dump());
    CHECK(added->endpoint.addresses.at(0).address == *IpNet::parse("10.213.232.66/26")); // node-b holds .0/26

    auto* vx = kernel.find(host_ns, "cnmvx42");
    REQUIRE(vx);
    REQUIRE(vx->link.vxlan);
    CHECK(vx->link.vxlan->vni == 42);
    CHECK(vx->link.vxlan->port == 4789);
    CHECK_FALSE(vx->link.vxlan->learning);
    CHECK(vx->link.vxlan->local == ip("10.213.230.1"));
    CHECK(netlink::mac_str(vx->link.mac) == "02:0a:d5:e6:01:00");
    CHECK(vx->link.mtu == 1450);
    CHECK(vx->up());
    auto* br = kernel.find(host_ns, "vxb-net");
    REQUIRE(br);
    CHECK(br->link.mtu == 1450);
    CHECK(std::count(br->addresses.begin(), br->addresses.end(), *IpNet::parse("10.213.232.65/26")) == 1);
    CHECK(kernel.sysctl(host_ns, "net/ipv4/ip_forward") == "1");
    auto* c = kernel.find(sandbox, "eth0");
    REQUIRE(c);
    CHECK(c->link.mtu == 1450);
    bool cluster_route = false;
    for (auto& r : kernel.route_table(sandbox))
        cluster_route |= r.dst == net("10.213.232.0/22") && r.gw == ip("10.213.232.65");
    CHECK(cluster_route);

    // The remote block the claim read, programmed twice: one entry of each kind.
    REQUIRE(source.claimed());
    REQUIRE(source.learned().size() == 1);
    for (int i = 0; i < 2; ++i)
        REQUIRE(drivers::program_remote_blocks(kernel, options, source.learned()).ok());
    auto neigh = kernel.neighbours(host_ns, vx->link.index);
    REQUIRE(neigh.ok());
    REQUIRE(neigh->size() == 1);
    CHECK(neigh->at(0).dst == ip("10.213.232.1"));
    CHECK(netlink::mac_str(*neigh->at(0).lladdr) == "02:0a:d5:e6:02:00");
    auto fdb = kernel.fdb(host_ns, vx->link.index);
    REQUIRE(fdb->size() == 1);
    CHECK(fdb->at(0).dst == ip("10.213.230.2"));
    int routes = 0;
    for (auto& r : kernel.route_table(host_ns))
        if (r.dst == net("10.213.232.0/26")) {
            ++routes;
            CHECK(r.onlink);
            CHECK(r.gw == ip("10.213.232.1"));
            CHECK(r.oif == vx->link.index);
        }
    CHECK(routes == 1);

    // DEL, twice, the second with the netns gone: no veth, no lease; the block and device stay.
    REQUIRE(endpoints.del(request.network, "c1", "eth0", "/run/netns/c1", source).ok());
    kernel.remove_netns("/run/netns/c1");
    REQUIRE(endpoints.del(request.network, "c1", "eth0", "/run/netns/c1", source).ok());
    for (auto& l : kernel.links(host_ns))
        CHECK_MESSAGE(l.link.kind != "veth", l.link.name);
    ipam::Pools pools(**store);
    CHECK(pools.leases({ "cluster:net", net("10.213.232.64/26") })->empty());
    CHECK(load_local_blocks(**store, "net")->blocks.size() == 1);
    CHECK(kernel.find(host_ns, "cnmvx42"));

    // A failed attach (the veth cannot be made) leaves no lease and no endpoint record.
    kernel.add_netns("/run/netns/c2");
    kernel.fail_at("create_veth", 1);
    AddRequest second { { "net", "vxlan", Frontend::Cni, options }, "c2", "eth0", "/run/netns/c2", Target::in_netns("/run/netns/c2", "eth0"), "" };
    CHECK_FALSE(endpoints.add(second, source).ok());
    CHECK(pools.leases({ "cluster:net", net("10.213.232.64/26") })->empty());
    CHECK(registry.list_endpoints("net")->empty());
}
