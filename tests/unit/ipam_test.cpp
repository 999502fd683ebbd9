#include "cni/conf.hpp"
#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "ipam/pool.hpp"
#include "store/file_store.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

using namespace cnm;
using namespace cnm::ipam;

namespace {

Result<IpamConf> conf_of(const std::string& ipam_json, const std::string& cni_args = "", const std::string& extra = "",
    const std::string& version = "1.0.0")
{
    auto conf = cni::parse_conf(R"({"cniVersion":")" + version + R"(","name":"net1","type":"bridge","ipam":)" + ipam_json + extra + "}");
    if (!conf)
        return conf.release_error();
    auto args = cni::parse_cni_args(cni_args);
    return parse_ipam_conf(*conf, *args);
}


/// The ipam plugin's lifecycle (cni/ipam_frontend.cpp): Endpoints with no kernel and no driver,
/// addresses from PoolAddresses.
struct Fixture {
    test::TempDir tmp;
    std::unique_ptr<FileStore> store = FileStore::open(tmp.path()).release_value();
    Registry registry { *store };
    Endpoints endpoints { registry, nullptr, nullptr };
    NetworkSpec network { "net1", "bridge", Frontend::Cni, Json::object() };

    static std::string netns(const std::string& id) { return "/var/run/netns/" + id; }

    Result<Added> add_full(const IpamConf& conf, const std::string& id, const std::string& ifname = "eth0")
    {
        PoolAddresses source(conf);
        return endpoints.add({ network, id, ifname, netns(id), Target::in_netns(netns(id), ifname), "" }, source);
    }
    /// The addresses ADD recorded (and checks that the result reports the same ones).
    Result<std::vector<EndpointAddress>> add(const IpamConf& conf, const std::string& id, const std::string& ifname = "eth0")
    {
        auto added = add_full(conf, id, ifname);
        if (!added)
            return added.release_error();
        auto& ips = added->attached.setup.ips;
        REQUIRE(ips.size() == added->endpoint.addresses.size());
        for (size_t i = 0; i < ips.size(); ++i) {
            CHECK(ips[i].address == added->endpoint.addresses[i].address);
            CHECK(ips[i].gateway == added->endpoint.addresses[i].gateway);
            CHECK_FALSE(ips[i].interface); // an IPAM result names no interface
        }
        return added->endpoint.addresses;
    }
    /// `conf` null: the conf's IPAM section no longer parses (DEL and GC must still free).
    Result<void> del(const IpamConf* conf, const std::string& id, const std::string& ifname = "eth0")
    {
        PoolAddresses source(conf ? *conf : IpamConf {});
        return endpoints.del(network, id, ifname, netns(id), source);
    }
    Result<void> check(const IpamConf& conf, const std::string& id, const NetSetup& prev, const std::string& ifname = "eth0")
    {
        PoolAddresses source(conf);
        return endpoints.check(network, id, ifname, netns(id), prev, source);
    }
    Result<void> status(const IpamConf& conf)
    {
        PoolAddresses source(conf);
        return endpoints.status(network.name, source);
    }
    Result<void> gc(const IpamConf* conf, const std::vector<std::pair<std::string, std::string>>& valid)
    {
        PoolAddresses source(conf ? *conf : IpamConf {});
        return endpoints.gc(network, valid, source);
    }
    std::string add_one(const IpamConf& conf, const std::string& id)
    {
        auto got = add(conf, id);
        if (!got.ok())
            FAIL(got.error().msg);
        return got->front().address.addr.str();
    }
    /// The pool directory of a subnet ("10.213.0.0_24"), in whichever address space holds it (a
    /// conf that names none gets its network's own).
    Key pool(const std::string& subnet_dir)
    {
        auto spaces = store->list({ "ipam" });
        for (auto& space : spaces.value())
            if (store->exists({ "ipam", space, subnet_dir, "pool.json" }).value() || store->exists({ "ipam", space, subnet_dir, "leases" }).value())
                return { "ipam", space, subnet_dir };
        return { "ipam", "cni:net1", subnet_dir };
    }
    Key in_pool(const std::string& subnet_dir, const std::string& name)
    {
        Key k = pool(subnet_dir);
        k.push_back(name);
        return k;
    }
    size_t leases(const std::string& subnet_dir)
    {
        auto names = store->list(in_pool(subnet_dir, "leases"));
        return names->size();
    }
};

} // namespace

TEST_CASE("host-local config: defaults, legacy keys, routes")
{
    auto c = conf_of(R"({"type":"ipam","subnet":"10.213.0.0/24","routes":[{"dst":"0.0.0.0/0","gw":"10.213.0.254"}]})");
    REQUIRE(c.ok());
    REQUIRE(c->range_sets.size() == 1);
    auto& r = c->range_sets[0][0];
    CHECK(r.start.str() == "10.213.0.1");
    CHECK(r.end.str() == "10.213.0.254");
    CHECK(r.gateway.str() == "10.213.0.1");
    CHECK_FALSE(r.usable(r.gateway));
    CHECK(c->routes[0].gw->str() == "10.213.0.254");

    auto both = conf_of(R"({"subnet":"10.213.9.0/24","ranges":[[{"subnet":"10.213.0.0/24","rangeStart":"10.213.0.10","rangeEnd":"10.213.0.20","gateway":"10.213.0.254"}],
        [{"subnet":"fd00:213::/64"}]]})");
    REQUIRE(both.ok());
    REQUIRE(both->range_sets.size() == 3);
    CHECK(both->range_sets[0][0].subnet.str() == "10.213.9.0/24"); // legacy range set comes first
    CHECK(both->range_sets[1][0].start.str() == "10.213.0.10");
    CHECK(both->range_sets[2][0].end.str() == "fd00:213::ffff:ffff:ffff:ffff"); // IPv6 keeps the last address
}

TEST_CASE("host-local config: invalid ranges are code 7")
{
    for (const char* bad : {
             R"({"ranges":[[{"subnet":"10.213.0.1/24"}]]})",                      // host bits
             R"({"ranges":[[{"subnet":"10.213.0.0/31"}]]})",                      // too small
             R"({"ranges":[[{"subnet":"10.213.0.0/24","rangeStart":"10.213.1.5"}]]})",
             R"({"ranges":[[{"subnet":"10.213.0.0/24","rangeStart":"10.213.0.50","rangeEnd":"10.213.0.40"}]]})",
             R"({"ranges":[[{"subnet":"10.213.0.0/24"}],[{"subnet":"10.213.0.0/25"}]]})", // overlapping sets
             R"({"ranges":[[{"subnet":"10.213.0.0/24"},{"subnet":"fd00:213::/64"}]]})",   // mixed families
             R"({"ranges":[[]]})", R"({"ranges":"x"})", R"({"ranges":[[{"subnet":5}]]})", R"({"ranges":[[{"subnet":"bogus"}]]})",
             R"({"ranges":[["x"]]})", R"({"type":"ipam"})", R"({"subnet":"10.213.0.0/24","gateway":"1.2.3.4"})",
             R"({"subnet":"10.213.0.0/24","routes":[{"dst":"x"}]})", R"({"subnet":"10.213.0.0/24","resolvConf":"/nonexistent/resolv.conf"})" }) {
        auto c = conf_of(bad);
        REQUIRE_FALSE_MESSAGE(c.ok(), bad);
        CHECK_MESSAGE(c.error().code == Code::InvalidConfig, bad);
    }
    auto two_v4_legacy = conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}],[{"subnet":"10.213.1.0/24"}]]})", "", "", "0.2.0");
    CHECK(two_v4_legacy.error().code == Code::InvalidConfig);
}

TEST_CASE("requested addresses from CNI_ARGS, args.cni.ips and runtimeConfig.ips")
{
    auto c = conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}],[{"subnet":"fd00:213::/64"}]]})", "IP=10.213.0.9",
        R"(,"args":{"cni":{"ips":["fd00:213::9/64"]}},"runtimeConfig":{"ips":["10.213.0.10"]})");
    REQUIRE(c.ok());
    REQUIRE(c->requested.size() == 3);
    CHECK(c->requested[0].str() == "10.213.0.9");
    CHECK(c->requested[1].str() == "fd00:213::9");
    CHECK(c->requested[2].str() == "10.213.0.10");
    CHECK(conf_of(R"({"subnet":"10.213.0.0/24"})", "IP=nope").error().code == Code::InvalidEnv);
    CHECK(conf_of(R"({"subnet":"10.213.0.0/24"})", "", R"(,"args":{"cni":{"ips":[5]}})").error().code == Code::InvalidConfig);
}

TEST_CASE("resolvConf is parsed into dns")
{
    test::TempDir tmp;
    std::ofstream(tmp.path() + "/resolv.conf") << "# c\nnameserver 10.213.0.53\nnameserver 10.213.0.54\ndomain ex.org\nsearch a.org b.org\noptions ndots:2 edns0\n";
    auto c = conf_of(R"({"subnet":"10.213.0.0/24","resolvConf":")" + tmp.path() + R"(/resolv.conf"})");
    REQUIRE(c.ok());
    CHECK(c->dns.nameservers == std::vector<std::string> { "10.213.0.53", "10.213.0.54" });
    CHECK(c->dns.domain == "ex.org");
    CHECK(c->dns.search == std::vector<std::string> { "a.org", "b.org" });
    CHECK(c->dns.options == std::vector<std::string> { "ndots:2", "edns0" });

    // Tabs, CRLF, leading blanks, ';' comments, blank lines, repeated options, no final newline.
    std::ofstream(tmp.path() + "/resolv.conf", std::ios::trunc)
        << "; c\r\n\n   nameserver\t10.213.0.55  \r\n#nameserver 10.213.0.99\nsearch\tc.org\t d.org\r\ndomain\noptions a\noptions  b:1\tc";
    c = conf_of(R"({"subnet":"10.213.0.0/24","resolvConf":")" + tmp.path() + R"(/resolv.conf"})");
    REQUIRE(c.ok());
    CHECK(c->dns.nameservers == std::vector<std::string> { "10.213.0.55" });
    CHECK(c->dns.domain == ""); // "domain" without a value is ignored
    CHECK(c->dns.search == std::vector<std::string> { "c.org", "d.org" });
    CHECK(c->dns.options == std::vector<std::string> { "a", "b:1", "c" });
}

TEST_CASE("allocation is round-robin: a freed address is not handed out again at once")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/29"}]]})"); // .2 … .6 usable
    CHECK(f.add_one(c, "a") == "10.213.0.2");
    CHECK(f.add_one(c, "b") == "10.213.0.3");
    REQUIRE(f.del(&c, "a").ok());
    CHECK(f.add_one(c, "c") == "10.213.0.4");
    CHECK(f.add_one(c, "d") == "10.213.0.5");
    CHECK(f.add_one(c, "e") == "10.213.0.6");
    CHECK(f.add_one(c, "g") == "10.213.0.2"); // wrapped, skipping network .0, gateway .1, broadcast .7
    auto full = f.add(c, "h");
    REQUIRE_FALSE(full.ok());
    CHECK(full.error().code == Code::AddressUnavailable);
    CHECK(full.error().msg.find("no IP addresses available") != std::string::npos);
    CHECK(f.leases("10.213.0.0_29") == 5);
    // The failed ADD left no endpoint record.
    CHECK_FALSE(f.registry.load_endpoint("net1", endpoint_key("h", "eth0"))->ok());
}

TEST_CASE("several ranges in one set, and one address per set (IPv4 + IPv6)")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/30"},{"subnet":"10.213.1.0/24","rangeStart":"10.213.1.100","rangeEnd":"10.213.1.101"}],
        [{"subnet":"fd00:213::/64","rangeStart":"fd00:213::100"}]]})");
    auto first = f.add(c, "a");
    REQUIRE(first.ok());
    REQUIRE(first->size() == 2);
    CHECK((*first)[0].address.str() == "10.213.0.2/30");
    CHECK((*first)[1].address.str() == "fd00:213::100/64");
    CHECK((*first)[1].gateway->str() == "fd00:213::1");
    CHECK(f.add_one(c, "b") == "10.213.1.100"); // /30 has one usable address; the next range takes over
    CHECK(f.add_one(c, "c") == "10.213.1.101");
    CHECK(f.add(c, "d").error().code == Code::AddressUnavailable);
}

TEST_CASE("requested addresses: granted, refused when taken, gateway or outside")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})", "IP=10.213.0.77");
    auto got = f.add(c, "a");
    REQUIRE(got.ok());
    CHECK(got->front().address.str() == "10.213.0.77/24");
    auto taken = f.add(c, "b");
    REQUIRE_FALSE(taken.ok());
    CHECK(taken.error().msg.find("already allocated") != std::string::npos);
    CHECK_FALSE(f.add(*conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})", "IP=10.213.0.1"), "c").ok());
    CHECK_FALSE(f.add(*conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})", "IP=10.213.5.1"), "c").ok());
    CHECK(f.leases("10.213.0.0_24") == 1);
}

TEST_CASE("ADD twice for one attachment is refused; DEL is idempotent and frees")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})");
    f.add_one(c, "a");
    auto again = f.add(c, "a");
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().code == Code::AlreadyAttached);
    CHECK(f.add_one(c, "a2") == "10.213.0.3"); // same container, other id
    auto other_if = f.add(c, "a", "net1");
    REQUIRE(other_if.ok()); // (containerID, ifname) is the identity
    CHECK(f.del(&c, "a").ok());
    CHECK(f.del(&c, "a").ok());
    CHECK(f.del(&c, "never-added").ok());
    CHECK(f.del(nullptr, "a", "net1").ok());
    CHECK(f.leases("10.213.0.0_24") == 1);
    // a sandbox is the endpoint records that name it: no document of its own
    CHECK(f.registry.load_endpoint("net1", endpoint_key("a2", "eth0"))->record.sandbox == "a2");
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/sandboxes"));
}

TEST_CASE("a network's subnet cannot change under it (code 7 naming both)")
{
    Fixture f;
    f.add_one(*conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})"), "a");
    auto other = f.add(*conf_of(R"({"ranges":[[{"subnet":"10.213.7.0/24"}]]})"), "b");
    REQUIRE_FALSE(other.ok());
    CHECK(other.error().code == Code::InvalidConfig);
    CHECK(other.error().msg.find("10.213.0.0/24") != std::string::npos);
    CHECK(other.error().msg.find("10.213.7.0/24") != std::string::npos);
}

TEST_CASE("CHECK compares the lease with prevResult")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})");
    f.add_one(c, "a");
    cni::CniResult prev;
    prev.ips.push_back({ *IpNet::parse("10.213.0.2/24"), std::nullopt, std::nullopt });
    CHECK(f.check(c, "a", prev).ok());
    cni::CniResult wrong;
    wrong.ips.push_back({ *IpNet::parse("10.213.0.9/24"), std::nullopt, std::nullopt });
    CHECK(f.check(c, "a", wrong).error().code == Code::CheckFailed);
    CHECK(f.check(c, "b", prev).error().code == Code::CheckFailed);
    Key lease = f.in_pool("10.213.0.0_24", "leases");
    lease.push_back("10.213.0.2");
    REQUIRE(f.store->exists(lease).value());
    REQUIRE(f.store->remove(lease).ok());
    CHECK(f.check(c, "a", prev).error().code == Code::CheckFailed);
}

TEST_CASE("STATUS reports 50 when a range set is full")
{
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/30"}]]})");
    CHECK(f.status(c).ok());
    f.add_one(c, "a");
    CHECK(f.status(c).error().code == Code::NotAvailable);
}

TEST_CASE("GC frees every attachment not in the valid list; an empty list frees all")
{
    test::NoGcGrace grace;
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})");
    for (auto id : { "a", "b", "c" })
        f.add_one(c, id);
    REQUIRE(f.gc(&c, { { "b", "eth0" } }).ok());
    CHECK(f.leases("10.213.0.0_24") == 1);
    CHECK(f.registry.load_endpoint("net1", endpoint_key("b", "eth0"))->ok());
    CHECK(f.registry.load_endpoint("net1", endpoint_key("a", "eth0"))->absent());
    REQUIRE(f.gc(&c, {}).ok());
    CHECK(f.leases("10.213.0.0_24") == 0);
    CHECK(f.registry.list_endpoints("net1")->empty());
}

TEST_CASE("corrupt endpoint records: ADD refuses, DEL and GC clean up by owner")
{
    test::NoGcGrace grace;
    Fixture f;
    auto c = *conf_of(R"({"ranges":[[{"subnet":"10.213.0.0/24"}]]})");
    f.add_one(c, "a");
    f.add_one(c, "b");
    std::string dir = f.tmp.path() + "/networks/net1/endpoints/";
    std::ofstream(dir + "a@eth0.json", std::ios::trunc) << "";
    std::ofstream(dir + "b@eth0.json", std::ios::trunc) << "{\"network\":";
    auto add_again = f.add(c, "a");
    REQUIRE_FALSE(add_again.ok());
    CHECK(add_again.error().code == Code::StateCorrupt);
    CHECK(f.del(&c, "a").ok());
    CHECK(f.leases("10.213.0.0_24") == 1);
    CHECK(f.gc(&c, {}).ok());
    CHECK(f.leases("10.213.0.0_24") == 0);
    CHECK(f.add_one(c, "a") == "10.213.0.4");
}

TEST_CASE("a pool is shared and refcounted by (address space, subnet)")
{
    Fixture f;
    Pools pools(*f.store);
    PoolId id { "local", *IpNet::parse("10.213.0.0/24") };
    REQUIRE(pools.add_user(id, "net1").ok());
    REQUIRE(pools.add_user(id, "docker-net").ok());
    REQUIRE(pools.add_user(id, "net1").ok());
    CHECK(pools.remove_user(id, "net1").value() == 1);
    CHECK(pools.remove_user(id, "docker-net").value() == 0);
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/ipam/local/10.213.0.0_24"));
}

TEST_CASE("the round-robin cursor is a hint: kept in its own file, a lost or corrupt one only restarts the round")
{
    Fixture f;
    auto c = conf_of(R"({"type":"ipam","subnet":"10.213.0.0/29"})");
    REQUIRE(c.ok());
    CHECK(f.add_one(*c, "a") == "10.213.0.2");
    CHECK(f.add_one(*c, "b") == "10.213.0.3");
    auto cursor = f.store->get(f.in_pool("10.213.0.0_29", "cursor"));
    REQUIRE(cursor.ok());
    REQUIRE(cursor->ok());
    CHECK(cursor->doc["last"] == "10.213.0.3");
    auto pool = f.store->get(f.in_pool("10.213.0.0_29", "pool.json"));
    CHECK_FALSE(pool->doc.contains("last")); // pool.json (durable) is not rewritten per ADD
    // a power failure may leave the hint empty: allocation goes on from the start of the range
    Key cursor_key = f.in_pool("10.213.0.0_29", "cursor");
    std::ofstream(f.tmp.path() + "/" + key_str(cursor_key), std::ios::trunc).flush();
    CHECK(f.add_one(*c, "c") == "10.213.0.4");
}

TEST_CASE("upgrade: the sandbox documents an earlier build wrote are ignored by ADD and DEL, and GC removes them")
{
    test::NoGcGrace grace;
    Fixture f;
    auto c = conf_of(R"({"type":"ipam","subnet":"10.213.0.0/24"})");
    REQUIRE(c.ok());
    f.add_one(*c, "pod");
    // What a build before 2026-12 kept beside the endpoint record, one of them corrupt.
    REQUIRE(f.store->put({ "sandboxes", "pod.json" }, Json::parse(R"({"id":"pod","netns":"/x","frontend":"cni",
        "endpoints":[{"network":"net1","endpoint":"pod@eth0"}],"bootId":"","schema":2})"), Durability::Hint).ok());
    std::ofstream(f.tmp.path() + "/sandboxes/old.json", std::ios::trunc) << "{not json";
    REQUIRE(f.add(*c, "pod", "eth1").ok());
    REQUIRE(f.del(&*c, "pod", "eth1").ok());
    CHECK(f.store->list({ "sandboxes" })->size() == 2); // ADD and DEL leave them alone
    REQUIRE(f.gc(&*c, { { "pod", "eth0" } }).ok());
    CHECK(f.store->list({ "sandboxes" })->empty());
    // Unlinked, not kept as spare inodes: nothing writes there again. Only the lock file stays.
    std::vector<std::string> left;
    for (auto& e : std::filesystem::directory_iterator(f.tmp.path() + "/sandboxes"))
        left.push_back(e.path().filename().string());
    CHECK(left == std::vector<std::string> { ".lock" });
    CHECK(f.registry.load_endpoint("net1", endpoint_key("pod", "eth0"))->ok());
}

TEST_CASE("upgrade: records the landed version wrote (pools in space local, no schema or boot id) still load and free")
{
    Fixture f;
    // Exactly what 9b4b79c wrote for one ready attachment of network "net1" on 10.213.54.0/24.
    auto put = [&](const Key& key, const Json& doc) { REQUIRE(f.store->put(key, doc).ok()); };
    put({ "networks", "net1", "network.json" }, Json::parse(R"({"name":"net1","driver":"bridge","frontend":"cni","addressSpace":"local",
        "subnets":["10.213.54.0/24"],"options":{"type":"bridge","ipam":{"type":"ipam","subnet":"10.213.54.0/24"}},"dockerIDs":[],
        "created":"2026-11-28T10:00:00Z"})"));
    put({ "ipam", "local", "10.213.54.0_24", "pool.json" }, Json::parse(R"({"space":"local","subnet":"10.213.54.0/24","users":["net1"],"gateway":"10.213.54.1"})"));
    put({ "ipam", "local", "10.213.54.0_24", "leases", "10.213.54.2" }, Json::parse(R"({"network":"net1","containerID":"old","ifname":"eth0","frontend":"cni"})"));
    put({ "networks", "net1", "endpoints", "old@eth0.json" }, Json::parse(R"({"network":"net1","containerID":"old","ifname":"eth0","sandbox":"old",
        "netns":"/var/run/netns/old","frontend":"cni","phase":"ready","addresses":[{"address":"10.213.54.2/24","pool":"local/10.213.54.0/24",
        "gateway":"10.213.54.1"}],"mac":"","created":"2026-11-28T10:00:00Z","driver":{}})"));
    auto conf = conf_of(R"({"type":"ipam","subnet":"10.213.54.0/24"})");
    REQUIRE(conf.ok());
    // A new ADD on the network: the pool the record names ("local"), never the live old address.
    PoolAddresses source(*conf);
    auto added = f.endpoints.add({ f.network, "new", "eth0", Fixture::netns("new"), Target::in_netns(Fixture::netns("new"), "eth0"), "" }, source);
    REQUIRE_MESSAGE(added.ok(), (added.ok() ? "" : added.error().msg));
    CHECK(added->endpoint.addresses[0].pool == "local/10.213.54.0/24");
    CHECK(added->endpoint.addresses[0].address.str() != "10.213.54.2/24");
    // The old record is not stale (no boot id): GC with both listed keeps both.
    test::NoGcGrace grace;
    PoolAddresses gc_source(*conf);
    REQUIRE(f.endpoints.gc(f.network, { { "old", "eth0" }, { "new", "eth0" } }, gc_source).ok());
    CHECK(f.store->exists({ "ipam", "local", "10.213.54.0_24", "leases", "10.213.54.2" }).value());
    // DEL of the old attachment frees its lease by its record.
    PoolAddresses del_source(*conf);
    REQUIRE(f.endpoints.del(f.network, "old", "eth0", Fixture::netns("old"), del_source).ok());
    CHECK_FALSE(f.store->exists({ "ipam", "local", "10.213.54.0_24", "leases", "10.213.54.2" }).value());
    CHECK_FALSE(f.store->exists({ "networks", "net1", "endpoints", "old@eth0.json" }).value());
}
