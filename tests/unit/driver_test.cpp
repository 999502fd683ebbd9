// The drivers (bridge, macvlan, ipvlan) through the endpoint lifecycle (cnm/endpoint.hpp), over
// the in-memory FakeKernel and a FileStore in a temp dir: CNI ADD/CHECK/DEL/GC into a sandbox,
// Docker's create → join → leave → detach → remove in the host, and rollback — a failure injected
// at every kernel call of a successful ADD (or Join, or DEL) leaves nothing behind but a bridge.
#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/state.hpp"
#include "fake_kernel.hpp"
#include "helpers.hpp"
#include "ipam/pool.hpp"
#include "store/file_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>

using namespace cnm;
using test::FakeKernel;
using test::FakeLink;

namespace {


struct Conf {
    std::string kind;
    NetworkSpec spec;
    ipam::IpamConf ipam;
};

/// A CNI conf of `kind` with the driver keys `keys` (a JSON fragment) and our in-process IPAM.
Conf cni_conf(const std::string& kind, const std::string& keys, const std::string& name = "net1",
    const std::string& ipam = R"({"type":"ipam","subnet":"10.213.40.0/24"})")
{
    std::string text = R"({"cniVersion":"1.0.0","name":")" + name + R"(","type":")" + kind + "\"" + (keys.empty() ? "" : "," + keys)
        + R"(,"ipam":)" + ipam + "}";
    auto conf = cni::parse_conf(text);
    REQUIRE_MESSAGE(conf.ok(), text);
    auto args = cni::parse_cni_args("");
    REQUIRE(args.ok());
    auto parsed = ipam::parse_ipam_conf(*conf, *args);
    REQUIRE_MESSAGE(parsed.ok(), text);
    return { kind, NetworkSpec { conf->name, kind, Frontend::Cni, network_options(*conf) }, parsed.release_value() };
}

// Every feature of the bridge that adds a kernel step: gateway (and default route), masquerade,
// MAC spoof check, VLAN, port isolation, hairpin, MTU, an IPAM route.
const char* full_bridge = R"("bridge":"cnmbr0","isGateway":true,"isDefaultGateway":true,"ipMasq":true,"vlan":40,"portIsolation":true,)"
                          R"("macspoofchk":true,"hairpinMode":true,"mtu":1400)";
const char* routed_ipam = R"({"type":"ipam","subnet":"10.213.40.0/24","routes":[{"dst":"10.213.99.0/24"}]})";

Conf bridge_conf() { return cni_conf("bridge", full_bridge, "net1", routed_ipam); }
Conf macvlan_conf() { return cni_conf("macvlan", R"("master":"dum0","mode":"bridge")", "net1", routed_ipam); }
Conf ipvlan_conf() { return cni_conf("ipvlan", R"("master":"dum0","mode":"l2")", "net1", routed_ipam); }

const char* pool_dir = "10.213.40.0_24";

std::string netns_of(const std::string& id)
{
    return "/var/run/netns/" + id;
}

struct Rig {
    test::TempDir tmp;
    std::unique_ptr<FileStore> store = FileStore::open(tmp.path()).release_value();
    Registry registry { *store };
    FakeKernel kernel;
    int master = kernel.add_link(host_ns, "dum0");

    Endpoints endpoints(const std::string& kind) { return Endpoints(registry, &kernel, find_driver(kind)); }

    Result<Added> add(const Conf& c, const std::string& id, const std::string& ifname = "eth0", const std::string& mac = "")
    {
        kernel.add_netns(netns_of(id));
        PoolAddresses source(c.ipam);
        return endpoints(c.kind).add({ c.spec, id, ifname, netns_of(id), Target::in_netns(netns_of(id), ifname), mac }, source);
    }
    Result<void> del(const Conf& c, const std::string& id, const std::string& ifname = "eth0")
    {
        PoolAddresses source(c.ipam);
        return endpoints(c.kind).del(c.spec, id, ifname, netns_of(id), source);
    }
    Result<void> check(const Conf& c, const std::string& id, const NetSetup& prev, const std::string& ifname = "eth0")
    {
        PoolAddresses source(c.ipam);
        return endpoints(c.kind).check(c.spec, id, ifname, netns_of(id), prev, source);
    }
    Result<void> gc(const Conf& c, const std::vector<std::pair<std::string, std::string>>& valid)
    {
        PoolAddresses source(c.ipam);
        return endpoints(c.kind).gc(c.spec, valid, source);
    }

    /// Leases of the subnet `dir`, in whichever address space (a conf that names none gets its
    /// network's own).
    size_t leases(const std::string& dir = pool_dir)
    {
        size_t n = 0;
        auto spaces = store->list({ "ipam" });
        if (!spaces)
            return 999;
        for (auto& space : *spaces) {
            auto names = store->list({ "ipam", space, dir, "leases" });
            n += names.ok() ? names->size() : 999;
        }
        return n;
    }
    /// What the store still holds for `network`: "" when nothing (the network record too, unless
    /// `network_stays`).
    std::string leftovers(const std::string& network, bool network_stays = false)
    {
        std::string out;
        auto add = [&](const std::string& s) { out += (out.empty() ? "" : "; ") + s; };
        auto eps = registry.list_endpoints(network);
        if (!eps)
            add("listing endpoints: " + eps.error().msg);
        else
            for (auto& e : *eps)
                add("endpoint " + e);
        auto net = registry.load_network(network);
        if (!net || net->ok() != network_stays)
            add(network_stays ? "no network record" : "network record");
        if (std::filesystem::exists(tmp.path() + "/sandboxes"))
            add("a sandboxes directory"); // a sandbox is the endpoint records that name it
        if (size_t n = leases(); n)
            add(std::to_string(n) + " lease(s)");
        for (auto& e : std::filesystem::recursive_directory_iterator(tmp.path()))
            if (e.path().filename().string().ends_with(".held"))
                add("hold file " + e.path().string());
        return out;
    }

    std::string kernel_leftovers()
    {
        std::string links, fw;
        kernel.empty_except_bridges(&links);
        kernel.firewall_empty(&fw);
        return links + (links.empty() || fw.empty() ? "" : "; ") + fw;
    }
};

std::string host_veth(const EndpointRecord& r)
{
    return r.driver_state.value("hostVeth", "");
}

/// A kernel call whose failure the lifecycle tolerates on purpose (ADD then succeeds).
bool tolerated(const std::string& step)
{
    return (step.starts_with("write_sysctl net/ipv6/conf/") && (step.ends_with("/ndisc_notify") || step.ends_with("/disable_ipv6"))) // absent without IPv6
        || step.starts_with("read_sysctl");                                                       // read before write
}

bool mentions(const Error& e, const std::string& what)
{
    return e.msg.find(what) != std::string::npos || e.details.find(what) != std::string::npos;
}

/// The sandbox of `id` holds only lo.
bool sandbox_empty(const FakeKernel& k, const std::string& id)
{
    auto ns = k.ns_of(netns_of(id));
    return ns && k.links(*ns).size() == 1;
}

/// An ADD into a sandbox whose eth0 is taken — by a dummy, or by a link of the driver's own kind
/// (another plugin's) — fails with code 7, and its rollback leaves that eth0 and nothing else.
void name_taken_is_left(const std::function<Conf()>& make, const char* own_kind)
{
    for (const char* kind : { "dummy", own_kind }) {
        INFO(kind);
        Rig r;
        Conf c = make();
        NsId sb = r.kernel.add_netns(netns_of("ctr1"));
        r.kernel.add_link(sb, "eth0", kind);
        std::string baseline = r.kernel_leftovers();
        auto added = r.add(c, "ctr1");
        REQUIRE_FALSE(added.ok());
        CHECK(added.error().code == Code::InvalidConfig);
        CHECK(mentions(added.error(), "container already has an interface named eth0"));
        REQUIRE(r.kernel.links(sb).size() == 2); // lo and the planted eth0
        CHECK(r.kernel.find(sb, "eth0")->link.kind == kind);
        CHECK_MESSAGE(r.kernel_leftovers() == baseline, r.kernel.dump());
        CHECK(r.leftovers("net1") == "");
        CHECK(r.leases() == 0);
    }
}

/// Runs one successful ADD of ctr1 to count the kernel calls (of the kind `count` reads), then
/// for each k fails the k-th and checks the rollback left nothing, and that a clean ADD and DEL
/// work afterwards. `before` runs on each fresh rig first (another attachment, say) and is
/// checked to be intact afterwards by `intact`.
void rollback_every_step(const std::function<Conf()>& make, bool every_call, const std::function<void(Rig&, const Conf&)>& before = {},
    const std::function<void(Rig&)>& intact = {})
{
    auto count = [&](FakeKernel& k) { return every_call ? k.total_calls() : k.mutations(); };
    int n = 0;
    {
        Rig r;
        Conf c = make();
        if (before)
            before(r, c);
        int start = count(r.kernel);
        REQUIRE(r.add(c, "ctr1").ok());
        n = count(r.kernel) - start;
    }
    REQUIRE(n >= 3);
    int failed = 0;
    for (int k = 1; k <= n; ++k) {
        Rig r;
        Conf c = make();
        if (before)
            before(r, c);
        bool second = static_cast<bool>(before);
        std::string baseline = r.leftovers(c.spec.name, second);
        std::string kernel_baseline = r.kernel_leftovers();
        int start = count(r.kernel);
        every_call ? r.kernel.fail_call(k) : r.kernel.fail_mutation(k);
        auto added = r.add(c, "ctr1");
        const auto& log = every_call ? r.kernel.call_log() : r.kernel.mutation_log();
        REQUIRE(static_cast<int>(log.size()) >= start + k);
        std::string step = log[static_cast<size_t>(start + k - 1)];
        INFO(c.kind << ": kernel call " << k << " of " << n << " (" << step << ") fails");
        if (added.ok()) {
            CHECK_MESSAGE(tolerated(step), "ADD succeeded although " << step << " failed");
            CHECK(r.del(c, "ctr1").ok());
        } else {
            ++failed;
            CHECK(mentions(added.error(), "injected"));
            CHECK_MESSAGE(added.error().details.find("undoing") == std::string::npos, added.error().details);
        }
        CHECK_MESSAGE(r.kernel_leftovers() == kernel_baseline, r.kernel.dump());
        CHECK(sandbox_empty(r.kernel, "ctr1"));
        CHECK(r.leftovers(c.spec.name, second) == baseline);
        if (!second)
            CHECK(r.kernel.network_chains().empty()); // the network went, its chain with it
        if (second) {
            CHECK(r.registry.load_endpoint(c.spec.name, endpoint_key("ctr1", "eth0"))->absent());
            CHECK(r.leases() == 1);
        }
        if (intact)
            intact(r);
        r.kernel.clear_failures();
        auto again = r.add(c, "ctr1");
        REQUIRE_MESSAGE(again.ok(), again.error().msg);
        CHECK(r.registry.load_endpoint(c.spec.name, endpoint_key("ctr1", "eth0"))->record.phase == EndpointRecord::Phase::Ready);
        CHECK(r.kernel.find(*r.kernel.ns_of(netns_of("ctr1")), "eth0") != nullptr);
        CHECK(r.del(c, "ctr1").ok());
        CHECK(sandbox_empty(r.kernel, "ctr1"));
    }
    CHECK(failed > 0);
}

} // namespace

// ---- bridge, CNI -------------------------------------------------------------------------------

TEST_CASE("bridge ADD into a sandbox: veth, port VLAN/isolation/hairpin, gateway, routes, firewall; DEL removes it all but the bridge")
{
    Rig r;
    Conf c = bridge_conf();
    auto added = r.add(c, "ctr1");
    REQUIRE_MESSAGE(added.ok(), added.error().msg);
    NsId sb = *r.kernel.ns_of(netns_of("ctr1"));

    auto* br = r.kernel.find(host_ns, "cnmbr0");
    REQUIRE(br);
    CHECK(br->link.kind == "bridge");
    CHECK(br->up());
    CHECK(br->vlan_filtering);
    CHECK(br->addresses == std::vector<IpNet> { *IpNet::parse("10.213.40.1/24") });
    CHECK(r.kernel.sysctl(host_ns, "net/ipv4/ip_forward") == "1");

    std::string veth = host_veth(added->endpoint);
    auto* hv = r.kernel.find(host_ns, veth);
    REQUIRE(hv);
    CHECK(hv->link.kind == "veth");
    CHECK(hv->up());
    CHECK(hv->link.master == br->link.index);
    CHECK(hv->link.mtu == 1400);
    CHECK(hv->vlans == std::map<uint16_t, bool> { { 40, true } }); // VLAN 1 replaced by 40 as PVID untagged
    CHECK(hv->isolated);
    CHECK(hv->hairpin);
    // The port's own IPv6 is off, and was before it went up (no link-local, DAD or MLD of its own).
    CHECK(r.kernel.sysctl(host_ns, "net/ipv6/conf/" + veth + "/disable_ipv6") == "1");
    {
        const auto& log = r.kernel.mutation_log();
        auto off = std::find(log.begin(), log.end(), "write_sysctl net/ipv6/conf/" + veth + "/disable_ipv6");
        auto create = std::find_if(log.begin(), log.end(), [](const std::string& call) { return call.starts_with("create_veth"); });
        REQUIRE(off != log.end());
        REQUIRE(create != log.end());
        CHECK(create < off);
        CHECK(std::find(create, off, "set_link") == off); // the port's set_link (master, up) comes after it
    }

    auto* eth0 = r.kernel.find(sb, "eth0");
    REQUIRE(eth0);
    CHECK(eth0->link.kind == "veth");
    CHECK(eth0->up());
    CHECK(eth0->peer_ns == host_ns);
    CHECK(eth0->link.peer_index == hv->link.index);
    CHECK(eth0->addresses == std::vector<IpNet> { *IpNet::parse("10.213.40.2/24") });
    auto routes = r.kernel.route_table(sb);
    REQUIRE(routes.size() == 2);
    CHECK(routes[0].dst.str() == "10.213.99.0/24");
    CHECK(routes[0].gw->str() == "10.213.40.1"); // a route without gw goes through the gateway
    CHECK(routes[1].dst.str() == "0.0.0.0/0");    // isDefaultGateway
    CHECK(routes[1].gw->str() == "10.213.40.1");

    CHECK(added->endpoint.mac == netlink::mac_str(eth0->link.mac));
    CHECK(r.kernel.masquerades().count(*IpAddr::parse("10.213.40.2")) == 1);
    CHECK(r.kernel.mac_guards().count({ veth, added->endpoint.mac }) == 1);

    auto& setup = added->attached.setup;
    REQUIRE(setup.interfaces.size() == 3);
    CHECK(setup.interfaces[0].name == "cnmbr0");
    CHECK(setup.interfaces[1].name == veth);
    CHECK(setup.interfaces[2].name == "eth0");
    CHECK(setup.interfaces[2].sandbox == netns_of("ctr1"));
    REQUIRE(setup.ips.size() == 1);
    CHECK(setup.ips[0].interface == 2);
    CHECK(setup.routes.size() == 2);

    auto stored = r.registry.load_endpoint("net1", endpoint_key("ctr1", "eth0"));
    REQUIRE(stored->ok());
    CHECK(stored->record.phase == EndpointRecord::Phase::Ready);
    CHECK(stored->record.driver_state["ipMasq"] == true);
    CHECK(stored->record.driver_state["macGuard"] == added->endpoint.mac);
    CHECK(stored->record.sandbox == "ctr1");
    CHECK(r.leases() == 1);

    CHECK(r.check(c, "ctr1", setup).ok());

    CHECK(r.kernel.network_chains() == std::set<std::string> { "net1" });
    REQUIRE(r.del(c, "ctr1").ok());
    CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    CHECK(sandbox_empty(r.kernel, "ctr1"));
    CHECK(r.kernel.network_chains().empty());           // the network's chain goes with its record
    CHECK(r.kernel.find(host_ns, "cnmbr0") != nullptr); // the network's bridge stays
    CHECK(r.leftovers("net1") == "");
    // DEL again, and DEL of an attachment never added, are success and change nothing
    CHECK(r.del(c, "ctr1").ok());
    CHECK(r.del(c, "never").ok());
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("bridge ADD takes the host end from the kernel's echo, and looks it up on a kernel that sends none")
{
    for (bool echo : { true, false }) {
        INFO("echo " << echo);
        Rig r;
        r.kernel.set_echo(echo);
        Conf c = bridge_conf();
        auto added = r.add(c, "ctr1");
        REQUIRE_MESSAGE(added.ok(), added.error().msg);
        std::string veth = host_veth(added->endpoint);
        const auto& log = r.kernel.call_log();
        auto made = std::find(log.begin(), log.end(), "create_veth " + veth);
        REQUIRE(made != log.end());
        bool looked_up = std::find(made, log.end(), "get_link " + veth) != log.end();
        CHECK(looked_up == !echo);
        // The container end is made under the runtime's name: nothing is renamed.
        CHECK(std::none_of(log.begin(), log.end(), [](const std::string& call) { return call.starts_with("set_link rename"); }));
        auto* hv = r.kernel.find(host_ns, veth);
        REQUIRE(hv);
        CHECK(hv->up());
        CHECK(hv->link.master == r.kernel.find(host_ns, "cnmbr0")->link.index);
        CHECK(added->attached.setup.interfaces[1].mac == netlink::mac_str(hv->link.mac));
        CHECK(r.del(c, "ctr1").ok());
    }
}

TEST_CASE("bridge ADD into a sandbox that already has the interface name is code 7, and its rollback leaves that interface")
{
    // The container end is created under the runtime's name: the kernel answers EEXIST and nothing
    // is made; the ADD rolls back, and its rollback leaves the interface that was there — also a
    // veth (another plugin's), which a search of the sandbox by name would have found. (A DEL the
    // runtime sends afterwards finds no record and, as the reference's does, removes the name.)
    name_taken_is_left(bridge_conf, "veth");
}

TEST_CASE("bridge CHECK fails when a firewall element, the sandbox address or the port is gone")
{
    Rig r;
    Conf c = bridge_conf();
    auto added = r.add(c, "ctr1");
    REQUIRE(added.ok());
    auto& prev = added->attached.setup;
    REQUIRE(r.check(c, "ctr1", prev).ok());
    NsId sb = *r.kernel.ns_of(netns_of("ctr1"));

    SUBCASE("masquerade")
    {
        REQUIRE(r.kernel.del_masquerade(*IpNet::parse("10.213.40.2/24")).ok());
        auto checked = r.check(c, "ctr1", prev);
        REQUIRE_FALSE(checked.ok());
        CHECK(checked.error().code == Code::CheckFailed);
    }
    SUBCASE("mac guard")
    {
        REQUIRE(r.kernel.del_mac_guard(host_veth(added->endpoint), added->endpoint.mac).ok());
        CHECK(r.check(c, "ctr1", prev).error().code == Code::CheckFailed);
    }
    SUBCASE("address")
    {
        REQUIRE(r.kernel.del_address(sb, r.kernel.find(sb, "eth0")->link.index, *IpNet::parse("10.213.40.2/24")).ok());
        CHECK(r.check(c, "ctr1", prev).error().code == Code::CheckFailed);
    }
    SUBCASE("port")
    {
        netlink::LinkChange out;
        out.master = 0;
        REQUIRE(r.kernel.set_link(host_ns, r.kernel.find(host_ns, host_veth(added->endpoint))->link.index, out).ok());
        CHECK(r.check(c, "ctr1", prev).error().code == Code::CheckFailed);
    }
    SUBCASE("not attached")
    {
        CHECK(r.check(c, "other", prev).error().code == Code::CheckFailed);
    }
}

TEST_CASE("bridge ADD rolls back at every failing kernel step (first ADD: the network record goes too)")
{
    rollback_every_step(bridge_conf, false);
}

TEST_CASE("bridge ADD rolls back at every failing kernel call, lookups included")
{
    rollback_every_step(bridge_conf, true);
}

TEST_CASE("bridge ADD of a second attachment rolls back without touching the first")
{
    std::string first_veth;
    rollback_every_step(
        bridge_conf, false,
        [&](Rig& r, const Conf& c) {
            auto a = r.add(c, "ctrA");
            REQUIRE(a.ok());
            first_veth = host_veth(a->endpoint);
        },
        [&](Rig& r) {
            NsId sb = *r.kernel.ns_of(netns_of("ctrA"));
            auto* eth0 = r.kernel.find(sb, "eth0");
            REQUIRE(eth0);
            CHECK(eth0->addresses.size() == 1);
            auto* hv = r.kernel.find(host_ns, first_veth);
            REQUIRE(hv);
            CHECK(hv->vlans.count(40) == 1);
            CHECK(r.kernel.masquerades().size() == 1);
            CHECK(r.kernel.masquerades().count(*IpAddr::parse("10.213.40.2")) == 1);
            CHECK(r.kernel.mac_guards().size() == 1);
            CHECK(r.registry.load_endpoint("net1", endpoint_key("ctrA", "eth0"))->ok());
            CHECK(r.registry.load_endpoint("net1", endpoint_key("ctrA", "eth0"))->record.sandbox == "ctrA");
        });
}

TEST_CASE("a DEL that fails part-way is retried to completion")
{
    test::NoGcGrace grace;
    int n = 0;
    {
        Rig r;
        Conf c = bridge_conf();
        REQUIRE(r.add(c, "ctr1").ok());
        int start = r.kernel.mutations();
        REQUIRE(r.del(c, "ctr1").ok());
        n = r.kernel.mutations() - start;
    }
    REQUIRE(n >= 2);
    for (int k = 1; k <= n; ++k) {
        Rig r;
        Conf c = bridge_conf();
        REQUIRE(r.add(c, "ctr1").ok());
        int start = r.kernel.mutations();
        r.kernel.fail_mutation(k);
        CHECK_FALSE(r.del(c, "ctr1").ok());
        std::string step = r.kernel.mutation_log()[static_cast<size_t>(start + k - 1)];
        INFO("DEL kernel step " << k << " of " << n << " (" << step << ") fails");
        bool network_step = step.starts_with("remove_network_firewall");
        // The endpoint record stays while anything it names may remain; the network record
        // while its chain may.
        if (!network_step)
            CHECK(r.registry.load_endpoint("net1", endpoint_key("ctr1", "eth0"))->ok());
        CHECK(r.registry.load_network("net1")->ok());
        REQUIRE(r.del(c, "ctr1").ok());
        CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
        if (network_step) {
            // The endpoint record is gone, so a DEL of it again returns before the network's
            // cleanup (Endpoints::del: stored.absent() && recorded()); the next GC finishes it.
            CHECK(r.leftovers("net1") == "network record");
            REQUIRE(r.gc(c, {}).ok());
        }
        CHECK(r.leftovers("net1") == "");
        CHECK(r.kernel.network_chains().empty());
    }
}

TEST_CASE("DEL after the netns is gone removes the host side, the firewall elements and the records")
{
    Rig r;
    Conf c = bridge_conf();
    auto added = r.add(c, "ctr1");
    REQUIRE(added.ok());
    REQUIRE(r.kernel.find(host_ns, host_veth(added->endpoint)));
    r.kernel.remove_netns(netns_of("ctr1"));
    CHECK(r.kernel.find(host_ns, host_veth(added->endpoint)) == nullptr); // went with its peer
    CHECK_FALSE(r.kernel.firewall_empty());                             // but nftables elements do not
    REQUIRE(r.del(c, "ctr1").ok());
    CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    CHECK(r.leftovers("net1") == "");
    CHECK(r.del(c, "ctr1").ok());
    // The lifecycle's detach is idempotent from the record alone.
    auto e = r.endpoints("bridge");
    CHECK(e.detach(added->endpoint).ok());
    CHECK(e.detach(added->endpoint).ok());
}

TEST_CASE("GC removes the endpoints not in the valid list, with their links, leases and firewall elements")
{
    test::NoGcGrace grace;
    Rig r;
    Conf c = bridge_conf();
    std::map<std::string, EndpointRecord> made;
    for (auto id : { "a", "b", "c" }) {
        auto added = r.add(c, id);
        REQUIRE(added.ok());
        made[id] = added->endpoint;
    }
    REQUIRE(r.kernel.mac_guards().size() == 3);
    REQUIRE(r.gc(c, { { "b", "eth0" } }).ok());
    for (auto id : { "a", "c" }) {
        CHECK(r.kernel.find(host_ns, host_veth(made[id])) == nullptr);
        CHECK(sandbox_empty(r.kernel, id));
        CHECK(r.kernel.mac_guards().count({ host_veth(made[id]), made[id].mac }) == 0);
        CHECK(r.registry.load_endpoint("net1", endpoint_key(id, "eth0"))->absent());
    }
    CHECK(r.kernel.mac_guards() == std::set<std::pair<std::string, std::string>> { { host_veth(made["b"]), made["b"].mac } });
    CHECK(r.kernel.masquerades().size() == 1);
    CHECK(r.kernel.find(host_ns, host_veth(made["b"])) != nullptr);
    CHECK(r.registry.load_endpoint("net1", endpoint_key("b", "eth0"))->ok());
    CHECK(r.leases() == 1);
    REQUIRE(r.gc(c, {}).ok());
    CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("GC does not free an attachment whose ADD is in flight, and frees it once the ADD is gone")
{
    test::NoGcGrace grace;
    Rig r;
    Conf c = bridge_conf();
    REQUIRE(r.add(c, "a").ok());
    // An ADD of b in flight: its intent record, its lease and its links exist, and it holds the
    // attachment as Endpoints::add does — the phase "creating" alone is what a crashed ADD leaves.
    std::string key = endpoint_key("b", "eth0");
    auto hold = r.store->hold({ "networks", "net1", "endpoints", key });
    REQUIRE(hold.ok());
    Driver* driver = find_driver("bridge");
    Target target = Target::in_netns(netns_of("b"), "eth0");
    r.kernel.add_netns(netns_of("b"));
    EndpointRecord rec;
    rec.network = "net1";
    rec.container_id = "b";
    rec.ifname = "eth0";
    rec.sandbox = "b";
    rec.netns = netns_of("b");
    rec.phase = EndpointRecord::Phase::Creating;
    rec.driver_state = driver->plan(c.spec.options, rec, target);
    REQUIRE(r.registry.save_endpoint(rec).ok());
    PoolAddresses source(c.ipam);
    source.scope("net1"); // as every lifecycle verb does first
    auto ipam = source.acquire(r.registry, rec);
    REQUIRE(ipam.ok());
    REQUIRE(driver->attach(r.kernel, c.spec.options, rec, target, *ipam).ok());
    REQUIRE(r.registry.save_endpoint(rec).ok());
    REQUIRE(r.leases() == 2);

    REQUIRE(r.gc(c, {}).ok());
    CHECK(r.registry.load_endpoint("net1", endpoint_key("a", "eth0"))->absent()); // a was not valid
    CHECK(r.registry.load_endpoint("net1", key)->ok());                           // b is in flight
    CHECK(r.leases() == 1);
    CHECK(r.kernel.find(host_ns, host_veth(rec)) != nullptr);
    CHECK(r.registry.load_network("net1")->ok());

    hold->reset(); // the ADD died: now it is a crashed ADD's intent, GC's to clean
    REQUIRE(r.gc(c, {}).ok());
    CHECK(r.registry.load_endpoint("net1", key)->absent());
    CHECK(r.kernel.find(host_ns, host_veth(rec)) == nullptr);
    CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("an ADD whose lease is freed or taken over while it runs fails retryably and leaves nothing of its own; one rewritten for it still counts")
{
    Rig r;
    Conf c = bridge_conf();
    REQUIRE(r.add(c, "a").ok());
    // The key of the lease whose document names `id` (the commit check compares the lease's
    // version first and reads it only when that moved: each case moves it a different way).
    auto lease_of = [&](const std::string& id) -> Key {
        auto spaces = r.store->list({ "ipam" }).value();
        for (auto& space : spaces) {
            auto names = r.store->list({ "ipam", space, pool_dir, "leases" }).value();
            for (auto& name : names) {
                Key key { "ipam", space, pool_dir, "leases", name };
                auto got = r.store->get(key);
                if (got.ok() && got->ok() && got->doc.value("containerID", "") == id)
                    return key;
            }
        }
        FAIL("no lease names " << id);
        return {};
    };
    SUBCASE("freed")
    {
        r.kernel.on_call("create_veth", [&] { REQUIRE(r.store->remove(lease_of("b")).ok()); });
        auto added = r.add(c, "b");
        REQUIRE_FALSE(added.ok());
        CHECK(added.error().code == Code::TryAgainLater);
        CHECK(r.leases() == 1);
    }
    SUBCASE("taken over by another attachment")
    {
        Key taken;
        r.kernel.on_call("create_veth", [&] {
            taken = lease_of("b");
            Json doc = r.store->get(taken)->doc;
            doc["containerID"] = "x";
            REQUIRE(r.store->remove(taken).ok());
            REQUIRE(r.store->create(taken, doc).value());
        });
        auto added = r.add(c, "b");
        REQUIRE_FALSE(added.ok());
        CHECK(added.error().code == Code::TryAgainLater);
        CHECK(r.leases() == 2); // a's, and x's, which b's rollback must not free
        CHECK(r.store->get(taken)->doc.value("containerID", "") == "x");
    }
    SUBCASE("rewritten, still naming it")
    {
        r.kernel.on_call("create_veth", [&] {
            Key key = lease_of("b");
            Json doc = r.store->get(key)->doc;
            REQUIRE(r.store->put(key, doc).ok()); // a new version of the same document
        });
        auto added = r.add(c, "b");
        REQUIRE_MESSAGE(added.ok(), added.error().msg);
        CHECK(r.leases() == 2);
    }
    CHECK(r.registry.load_endpoint("net1", endpoint_key("a", "eth0"))->ok());
    CHECK(r.kernel.find(host_ns, host_veth(r.registry.load_endpoint("net1", endpoint_key("a", "eth0"))->record)) != nullptr);
}

TEST_CASE("an ADD after a crashed one (its intent left behind) cleans it up and succeeds")
{
    Rig r;
    Conf c = bridge_conf();
    Driver* driver = find_driver("bridge");
    Target target = Target::in_netns(netns_of("ctr1"), "eth0");
    r.kernel.add_netns(netns_of("ctr1"));
    EndpointRecord rec;
    rec.network = "net1";
    rec.container_id = "ctr1";
    rec.ifname = "eth0";
    rec.sandbox = "ctr1";
    rec.netns = netns_of("ctr1");
    rec.phase = EndpointRecord::Phase::Creating;
    rec.driver_state = driver->plan(c.spec.options, rec, target);
    // The network record and bridge, as the crashed ADD (or another attachment) made them.
    {
        auto first = r.add(c, "other");
        REQUIRE(first.ok());
    }
    REQUIRE(r.registry.save_endpoint(rec).ok());
    PoolAddresses source(c.ipam);
    source.scope("net1"); // as every lifecycle verb does first
    auto ipam = source.acquire(r.registry, rec);
    REQUIRE(ipam.ok());
    REQUIRE(driver->attach(r.kernel, c.spec.options, rec, target, *ipam).ok());
    REQUIRE(r.leases() == 2);
    auto added = r.add(c, "ctr1");
    REQUIRE_MESSAGE(added.ok(), added.error().msg);
    CHECK(r.kernel.find(host_ns, host_veth(rec)) == nullptr); // the crashed ADD's veth
    CHECK(r.kernel.find(host_ns, host_veth(added->endpoint)) != nullptr);
    CHECK(r.leases() == 2);
}

// ---- bridge, Docker ----------------------------------------------------------------------------

namespace {

const char* docker_bridge = R"({"bridge":"cnmbr1","isGateway":true,"ipMasq":true,"vlan":40,"portIsolation":true,"macspoofchk":true,"hairpinMode":true})";

struct DockerRig : Rig {
    Endpoints e = endpoints("bridge");
    NetworkSpec spec { "dnet", "bridge", Frontend::Docker, Json::parse(docker_bridge) };

    void create_network()
    {
        auto net = e.create_network(spec, "local", { { *IpNet::parse("10.213.41.0/24"), IpAddr::parse("10.213.41.1") } }, "dockernet1");
        REQUIRE_MESSAGE(net.ok(), net.error().msg);
    }
    EndpointRecord create_endpoint(const std::string& id = "ep1")
    {
        auto ep = e.create("dnet", id, { { *IpNet::parse("10.213.41.5/24"), IpAddr::parse("10.213.41.1"), "" } }, "");
        REQUIRE(ep.ok());
        return *ep;
    }
    Result<Attached> join(EndpointRecord& ep, const std::string& name = "cnmc0")
    {
        auto lock = registry.lock_network("dnet");
        REQUIRE(lock.ok());
        return e.join(ep, Target::in_host(name), "sb1", "/var/run/docker/netns/sb1");
    }
};

} // namespace

TEST_CASE("Docker: create_network → create → join → publish → leave → detach → remove → delete_network")
{
    DockerRig r;
    r.create_network();
    auto* br = r.kernel.find(host_ns, "cnmbr1");
    REQUIRE(br);
    CHECK(br->vlan_filtering);
    CHECK(br->addresses == std::vector<IpNet> { *IpNet::parse("10.213.41.1/24") });

    EndpointRecord ep = r.create_endpoint();
    auto joined = r.join(ep);
    REQUIRE_MESSAGE(joined.ok(), joined.error().msg);
    CHECK(joined->announce_gateway);
    CHECK(joined->setup.ips.size() == 1);

    auto* container_end = r.kernel.find(host_ns, "cnmc0");
    REQUIRE(container_end); // left in the host, for Docker to move
    CHECK(container_end->link.kind == "veth");
    auto* hv = r.kernel.find(host_ns, host_veth(ep));
    REQUIRE(hv);
    CHECK(hv->link.master == br->link.index);
    CHECK(hv->up());
    CHECK(container_end->link.peer_index == hv->link.index);
    CHECK(ep.mac == netlink::mac_str(container_end->link.mac));
    CHECK(r.kernel.mac_guards().count({ host_veth(ep), ep.mac }) == 1);
    CHECK(r.kernel.masquerades().count(*IpAddr::parse("10.213.41.5")) == 1);
    auto stored = r.registry.load_endpoint("dnet", endpoint_key("ep1", "docker"));
    REQUIRE(stored->ok());
    CHECK(stored->record.driver_state["macGuard"] == ep.mac);
    CHECK(stored->record.sandbox == "sb1");

    firewall::PortMap web { 6, std::nullopt, 8080, *IpAddr::parse("10.213.41.5"), 80 };
    REQUIRE(r.e.publish(ep, { web }).ok());
    CHECK(r.kernel.ports() == std::vector<firewall::PortMap> { web });
    CHECK(r.registry.load_endpoint("dnet", endpoint_key("ep1", "docker"))->record.driver_state["ports"].size() == 1);

    REQUIRE(r.e.leave(ep).ok());
    CHECK_MESSAGE(r.kernel.firewall_empty(), r.kernel.dump());
    CHECK(r.registry.load_endpoint("dnet", endpoint_key("ep1", "docker"))->record.sandbox.empty());
    CHECK(r.kernel.find(host_ns, host_veth(ep)) != nullptr); // the links stay for DeleteEndpoint

    REQUIRE(r.e.detach(ep).ok());
    CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    CHECK(r.e.detach(ep).ok()); // idempotent
    REQUIRE(r.e.remove("dnet", endpoint_key("ep1", "docker")).ok());
    CHECK(r.registry.list_endpoints("dnet")->empty());
    CHECK(r.registry.load_network("dnet")->ok()); // Docker's network stays until DeleteNetwork

    CHECK(r.kernel.network_chains() == std::set<std::string> { "dnet" });
    REQUIRE(r.e.delete_network("dnet", "dockernet1").ok());
    CHECK(r.registry.load_network("dnet")->absent());
    CHECK(r.kernel.find(host_ns, "cnmbr1") == nullptr);
    CHECK(r.kernel.network_chains().empty());
}

TEST_CASE("a Docker join on a vlan/portIsolation network configures its bridge port exactly as a CNI ADD does")
{
    DockerRig r;
    r.create_network();
    EndpointRecord ep = r.create_endpoint();
    REQUIRE(r.join(ep).ok());
    Conf c = cni_conf("bridge", R"("bridge":"cnmbr0","vlan":40,"portIsolation":true,"hairpinMode":true,"macspoofchk":true,"ipMasq":true)");
    auto added = r.add(c, "ctr1");
    REQUIRE(added.ok());

    auto* docker_port = r.kernel.find(host_ns, host_veth(ep));
    auto* cni_port = r.kernel.find(host_ns, host_veth(added->endpoint));
    REQUIRE(docker_port);
    REQUIRE(cni_port);
    CHECK(docker_port->vlans == std::map<uint16_t, bool> { { 40, true } });
    CHECK(docker_port->vlans == cni_port->vlans);
    CHECK(docker_port->pvid() == std::optional<uint16_t>(40));
    CHECK(docker_port->isolated);
    CHECK(docker_port->isolated == cni_port->isolated);
    CHECK(docker_port->hairpin == cni_port->hairpin);
    CHECK(r.kernel.find(host_ns, "cnmbr1")->vlan_filtering == r.kernel.find(host_ns, "cnmbr0")->vlan_filtering);
    CHECK(r.kernel.mac_guards().size() == 2);
}

TEST_CASE("a Docker join rolls back at every failing kernel step; a retried join works")
{
    int n = 0;
    {
        DockerRig r;
        r.create_network();
        EndpointRecord ep = r.create_endpoint();
        int start = r.kernel.mutations();
        REQUIRE(r.join(ep).ok());
        n = r.kernel.mutations() - start;
    }
    REQUIRE(n >= 4);
    for (int k = 1; k <= n; ++k) {
        DockerRig r;
        r.create_network();
        EndpointRecord ep = r.create_endpoint();
        int start = r.kernel.mutations();
        r.kernel.fail_mutation(k);
        auto joined = r.join(ep);
        std::string step = r.kernel.mutation_log()[static_cast<size_t>(start + k - 1)];
        INFO("join kernel step " << k << " of " << n << " (" << step << ") fails");
        if (joined.ok()) {
            CHECK_MESSAGE(tolerated(step), "join succeeded although " << step << " failed");
            continue;
        }
        CHECK(mentions(joined.error(), "injected"));
        CHECK_MESSAGE(joined.error().details.find("undoing") == std::string::npos, joined.error().details);
        CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
        auto stored = r.registry.load_endpoint("dnet", endpoint_key("ep1", "docker"));
        REQUIRE(stored->ok()); // CreateEndpoint's record is Docker's to delete
        CHECK(stored->record.sandbox.empty()); // a failed Join names no sandbox
        r.kernel.clear_failures();
        REQUIRE(r.join(ep).ok());
        CHECK(r.kernel.find(host_ns, "cnmc0") != nullptr);
        CHECK(r.kernel.mac_guards().size() == 1);
        REQUIRE(r.e.leave(ep).ok());
        REQUIRE(r.e.detach(ep).ok());
        CHECK_MESSAGE(r.kernel_leftovers() == "", r.kernel.dump());
    }
}

// ---- macvlan and ipvlan ------------------------------------------------------------------------

TEST_CASE("an endpoint records the mount namespace it was added from only where no host link tells its sandbox is gone")
{
    Rig r;
    // A bridge endpoint has a veth, whose host end lives as long as the sandbox: no mountNs.
    Conf b = bridge_conf();
    REQUIRE(r.add(b, "a").ok());
    auto bridged = r.registry.load_endpoint("net1", endpoint_key("a", "eth0"));
    REQUIRE(bridged->ok());
    CHECK_FALSE(host_veth(bridged->record).empty());
    CHECK(bridged->record.mount_ns == 0);
    // A macvlan one has none: its record says which mount namespace saw the netns path.
    Conf m = cni_conf("macvlan", R"("master":"dum0","mode":"bridge")", "net2", R"({"type":"ipam","subnet":"10.213.41.0/24"})");
    REQUIRE(r.add(m, "c").ok());
    auto child = r.registry.load_endpoint("net2", endpoint_key("c", "eth0"));
    REQUIRE(child->ok());
    CHECK(current_mount_ns() != 0);
    CHECK(child->record.mount_ns == current_mount_ns());
}

TEST_CASE("macvlan ADD: a child of the master in the sandbox under its name, addressed, announced; DEL removes it")
{
    Rig r;
    Conf c = macvlan_conf();
    auto added = r.add(c, "ctr1", "eth0", "02:00:00:21:30:01");
    REQUIRE_MESSAGE(added.ok(), added.error().msg);
    NsId sb = *r.kernel.ns_of(netns_of("ctr1"));
    auto* eth0 = r.kernel.find(sb, "eth0");
    REQUIRE(eth0);
    CHECK(eth0->link.kind == "macvlan");
    CHECK(eth0->parent == r.master);
    CHECK(eth0->mode == 4u); // MACVLAN_MODE_BRIDGE
    CHECK(eth0->up());
    CHECK(netlink::mac_str(eth0->link.mac) == "02:00:00:21:30:01");
    CHECK(added->endpoint.mac == "02:00:00:21:30:01");
    CHECK(eth0->addresses == std::vector<IpNet> { *IpNet::parse("10.213.40.2/24") });
    CHECK(r.kernel.sysctl(sb, "net/ipv4/conf/eth0/arp_notify") == "1");
    CHECK(r.kernel.links(host_ns).size() == 2); // lo and the master: nothing on the host side
    const auto& log = r.kernel.call_log();
    CHECK(std::find(log.begin(), log.end(), "create_child eth0") != log.end()); // under its name: nothing renamed
    CHECK(std::none_of(log.begin(), log.end(), [](const std::string& call) { return call.starts_with("set_link rename"); }));
    CHECK(std::count(log.begin(), log.end(), "get_link dum0") == 1); // ensure_network's lookup of the master serves attach
    REQUIRE(added->attached.setup.interfaces.size() == 1);
    CHECK(added->attached.setup.ips[0].interface == 0);
    CHECK(r.check(c, "ctr1", added->attached.setup).ok());
    REQUIRE(r.kernel.del_address(sb, eth0->link.index, *IpNet::parse("10.213.40.2/24")).ok());
    CHECK(r.check(c, "ctr1", added->attached.setup).error().code == Code::CheckFailed);

    REQUIRE(r.del(c, "ctr1").ok());
    CHECK(sandbox_empty(r.kernel, "ctr1"));
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("macvlan ADD into a sandbox that already has the interface name is code 7, and its rollback leaves that interface")
{
    name_taken_is_left(macvlan_conf, "macvlan");
}

TEST_CASE("macvlan without a master takes the interface of the default route")
{
    Rig r;
    int eth = r.kernel.add_link(host_ns, "uplink0");
    r.kernel.add_default_route(host_ns, eth);
    Conf c = cni_conf("macvlan", R"("mode":"private")");
    auto added = r.add(c, "ctr1");
    REQUIRE_MESSAGE(added.ok(), added.error().msg);
    auto* eth0 = r.kernel.find(*r.kernel.ns_of(netns_of("ctr1")), "eth0");
    REQUIRE(eth0);
    CHECK(eth0->parent == eth);
    CHECK(added->endpoint.driver_state["master"] == "uplink0");
    REQUIRE(r.del(c, "ctr1").ok());
    CHECK(sandbox_empty(r.kernel, "ctr1"));
}

TEST_CASE("macvlan: a missing master is code 7 and changes nothing")
{
    Rig r;
    Conf c = cni_conf("macvlan", R"("master":"nosuch0")");
    auto added = r.add(c, "ctr1");
    REQUIRE_FALSE(added.ok());
    CHECK(added.error().code == Code::InvalidConfig);
    CHECK(added.error().msg.find("nosuch0") != std::string::npos);
    CHECK(r.kernel.mutations() == 0);
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("macvlan ADD rolls back at every failing kernel step")
{
    rollback_every_step(macvlan_conf, false);
}

TEST_CASE("macvlan ADD rolls back at every failing kernel call, lookups included")
{
    rollback_every_step(macvlan_conf, true);
}

TEST_CASE("macvlan DEL after the netns is gone, and after the master is gone")
{
    Rig r;
    Conf c = macvlan_conf();
    REQUIRE(r.add(c, "ctr1").ok());
    REQUIRE(r.add(c, "ctr2").ok());
    r.kernel.remove_netns(netns_of("ctr1"));
    REQUIRE(r.del(c, "ctr1").ok());
    REQUIRE(r.kernel.delete_link(host_ns, r.master).ok()); // its children go with it
    CHECK(sandbox_empty(r.kernel, "ctr2"));
    REQUIRE(r.del(c, "ctr2").ok());
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("macvlan Docker join leaves the child in the host under Docker's name; detach removes it")
{
    Rig r;
    Endpoints e = r.endpoints("macvlan");
    NetworkSpec spec { "dmac", "macvlan", Frontend::Docker, Json { { "master", "dum0" }, { "mode", "bridge" } } };
    REQUIRE(e.create_network(spec, "local", { { *IpNet::parse("10.213.42.0/24"), IpAddr::parse("10.213.42.1") } }, "d1").ok());
    auto ep = e.create("dmac", "ep1", { { *IpNet::parse("10.213.42.5/24"), IpAddr::parse("10.213.42.1"), "" } }, "02:00:00:21:30:02");
    REQUIRE(ep.ok());
    Result<Attached> joined = make_error(Code::Internal, "not run");
    {
        auto lock = r.registry.lock_network("dmac");
        joined = e.join(*ep, Target::in_host("cnmm0"), "sb1", "/var/run/docker/netns/sb1");
    }
    REQUIRE_MESSAGE(joined.ok(), joined.error().msg);
    CHECK(joined->announce_gateway);
    auto* child = r.kernel.find(host_ns, "cnmm0");
    REQUIRE(child);
    CHECK(child->link.kind == "macvlan");
    CHECK(child->parent == r.master);
    CHECK(netlink::mac_str(child->link.mac) == "02:00:00:21:30:02");
    REQUIRE(e.leave(*ep).ok());
    REQUIRE(e.detach(*ep).ok());
    CHECK(r.kernel.find(host_ns, "cnmm0") == nullptr);
    CHECK(e.detach(*ep).ok());
    REQUIRE(e.remove("dmac", endpoint_key("ep1", "docker")).ok());
    REQUIRE(e.delete_network("dmac", "d1").ok());
    CHECK(r.registry.load_network("dmac")->absent());
    CHECK(r.kernel.find(host_ns, "dum0") != nullptr); // the master is not the network's to remove
}

TEST_CASE("ipvlan ADD: a child sharing the master's MAC; a custom MAC is code 7 and leaves nothing")
{
    Rig r;
    Conf c = ipvlan_conf();
    auto added = r.add(c, "ctr1");
    REQUIRE_MESSAGE(added.ok(), added.error().msg);
    NsId sb = *r.kernel.ns_of(netns_of("ctr1"));
    auto* eth0 = r.kernel.find(sb, "eth0");
    REQUIRE(eth0);
    CHECK(eth0->link.kind == "ipvlan");
    CHECK(eth0->parent == r.master);
    CHECK(eth0->link.mac == r.kernel.find(host_ns, r.master)->link.mac);
    CHECK(eth0->addresses == std::vector<IpNet> { *IpNet::parse("10.213.40.2/24") });
    CHECK_FALSE(r.kernel.sysctl(sb, "net/ipv4/conf/eth0/arp_notify")); // macvlan only
    CHECK(r.check(c, "ctr1", added->attached.setup).ok());
    REQUIRE(r.del(c, "ctr1").ok());
    CHECK(sandbox_empty(r.kernel, "ctr1"));

    auto custom = r.add(c, "ctr2", "eth0", "02:00:00:21:30:03");
    REQUIRE_FALSE(custom.ok());
    CHECK(custom.error().code == Code::InvalidConfig);
    CHECK(sandbox_empty(r.kernel, "ctr2"));
    CHECK(r.leftovers("net1") == "");
}

TEST_CASE("ipvlan l3: Docker gets no gateway but a connected default route")
{
    Rig r;
    Endpoints e = r.endpoints("ipvlan");
    NetworkSpec spec { "dipv", "ipvlan", Frontend::Docker, Json { { "master", "dum0" }, { "mode", "l3" } } };
    REQUIRE(e.create_network(spec, "local", { { *IpNet::parse("10.213.43.0/24"), std::nullopt } }, "d1").ok());
    auto ep = e.create("dipv", "ep1", { { *IpNet::parse("10.213.43.5/24"), std::nullopt, "" } }, "");
    REQUIRE(ep.ok());
    auto joined = e.join(*ep, Target::in_host("cnmi0"), "sb1", "/var/run/docker/netns/sb1");
    REQUIRE_MESSAGE(joined.ok(), joined.error().msg);
    CHECK_FALSE(joined->announce_gateway);
    REQUIRE(joined->static_routes.size() == 1);
    CHECK(joined->static_routes[0].dst.str() == "0.0.0.0/0");
    CHECK_FALSE(joined->static_routes[0].gw);
    auto* child = r.kernel.find(host_ns, "cnmi0");
    REQUIRE(child);
    CHECK(child->mode == 1u); // IPVLAN_MODE_L3
    REQUIRE(e.detach(*ep).ok());
    CHECK(r.kernel.find(host_ns, "cnmi0") == nullptr);
}

TEST_CASE("ipvlan ADD rolls back at every failing kernel step")
{
    rollback_every_step(ipvlan_conf, false);
}

// ---- the fake itself ---------------------------------------------------------------------------

TEST_CASE("FakeKernel keeps the seam's semantics")
{
    FakeKernel k;
    NsId sb = k.add_netns("/run/netns/x");
    CHECK(k.open_netns("/run/netns/x").value() == std::optional<NsId>(sb));
    CHECK_FALSE(k.open_netns("/run/netns/none").value());
    CHECK(k.create_bridge(host_ns, "br0", std::nullopt, false).value());
    CHECK_FALSE(k.create_bridge(host_ns, "br0", std::nullopt, false).value()); // exists: false, not an error
    REQUIRE(k.create_veth({ "v0", "c0", host_ns, sb, std::nullopt, std::nullopt }).ok());
    auto again = k.create_veth({ "v0", "c1", host_ns, sb, std::nullopt, std::nullopt });
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().msg.find("exists") != std::string::npos);
    CHECK_FALSE(k.create_veth({ "averyveryverylongname", "c1", host_ns, sb, std::nullopt, std::nullopt }).ok());
    int v0 = k.find(host_ns, "v0")->link.index;
    int c0 = k.find(sb, "c0")->link.index;
    // a bridge-port call on a link that is not a port is an error, as in the kernel
    CHECK_FALSE(k.add_bridge_vlan(host_ns, v0, 10, true).ok());
    netlink::LinkChange join;
    join.master = k.find(host_ns, "br0")->link.index;
    REQUIRE(k.set_link(host_ns, v0, join).ok());
    CHECK(k.find(host_ns, "v0")->vlans == std::map<uint16_t, bool> { { 1, true } }); // default_pvid
    // a route via a gateway needs an up device that reaches it
    CHECK_FALSE(k.add_route(sb, { *IpNet::parse("0.0.0.0/0"), IpAddr::parse("10.213.0.1"), c0, {}, {}, {}, {} }).ok());
    netlink::LinkChange up;
    up.up = true;
    REQUIRE(k.set_link(sb, c0, up).ok());
    REQUIRE(k.add_address(sb, c0, *IpNet::parse("10.213.0.2/24"), false).ok());
    REQUIRE(k.add_address(sb, c0, *IpNet::parse("10.213.0.2/24"), false).ok()); // present: success
    CHECK(k.find(sb, c0)->addresses.size() == 1);
    REQUIRE(k.add_route(sb, { *IpNet::parse("0.0.0.0/0"), IpAddr::parse("10.213.0.1"), c0, {}, {}, {}, {} }).ok());
    REQUIRE(k.add_route(sb, { *IpNet::parse("0.0.0.0/0"), IpAddr::parse("10.213.0.1"), c0, {}, {}, {}, {} }).ok());
    CHECK(k.routes(sb, 4)->size() == 2); // the prefix route and the default
    // failure injection: one-shot, counted from now, before any effect
    k.fail_at("delete_link", 2);
    CHECK(k.delete_link(host_ns, 999).ok()); // absent: success
    auto injected = k.delete_link(host_ns, v0);
    REQUIRE_FALSE(injected.ok());
    CHECK(injected.error().msg == "injected");
    CHECK(injected.error().code == Code::Kernel);
    CHECK(k.find(host_ns, "v0") != nullptr);
    REQUIRE(k.delete_link(host_ns, v0).ok());
    CHECK(k.find(sb, "c0") == nullptr); // the peer went with it
    CHECK(k.empty_except_bridges());
    // removing a namespace takes the host ends of its veths
    REQUIRE(k.create_veth({ "v1", "c1", host_ns, sb, std::nullopt, std::nullopt }).ok());
    k.remove_netns("/run/netns/x");
    CHECK(k.find(host_ns, "v1") == nullptr);
    CHECK_FALSE(k.open_netns("/run/netns/x").value());
    CHECK_FALSE(k.get_link(sb, "lo").ok()); // a handle on a removed namespace
    int before = k.mutations();
    k.fail_mutation(1);
    CHECK_FALSE(k.add_masquerade("n", *IpNet::parse("10.213.0.2/24")).ok());
    CHECK(k.firewall_empty());
    CHECK(k.mutations() == before + 1);
    REQUIRE(k.add_ports({ { 6, std::nullopt, 80, *IpAddr::parse("10.213.0.2"), 80 } }).ok());
    CHECK_FALSE(k.add_ports({ { 6, std::nullopt, 81, *IpAddr::parse("10.213.0.3"), 80 }, { 6, std::nullopt, 80, *IpAddr::parse("10.213.0.3"), 80 } }).ok());
    CHECK(k.ports().size() == 1); // all or none
}
