// cnm-shim's handlers without a socket or a kernel: the requests are the ones Docker 20.10 sent in
// the recorded trace (reference/cnm.md, appendix), the kernel is the FakeKernel (fake_kernel.hpp)
// that the drivers work on through the lifecycle, the state is a real FileStore in a temp dir.

#include "admin.hpp"
#include "docker_api.hpp"
#include "request.hpp"
#include "proc_locks.hpp"

#include "cni/conf.hpp"
#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/options.hpp"
#include "cnm/state.hpp"
#include "fake_kernel.hpp"
#include "helpers.hpp"
#include "store/file_store.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <sys/sysmacros.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <linux/if_link.h>
#include <map>
#include <set>
#include <tuple>
#include <sstream>

using namespace cnm;
using namespace cnm::shim;
using cnm::test::FakeKernel;
using cnm::test::FakeLink;

namespace {

const std::string nid = "da2dbabbc001fd752c86181098ea3dc70422a5011b62c10d17e1fb2c57492dbe";
const std::string eid1 = "8884321cade15f0924ee4c083e31319122cba09f7aed9a41fc5dfc1b44e00fac";
const std::string eid2 = "3c18b07afd0bfcffe1626a97a8593e54fe11cb3e65f09ee10a98d2f8b4e8fe7c";

/// Every document under the state dir, by path (lock files left out): "no state change" is
/// this being equal before and after.
std::map<std::string, std::string> snapshot(const std::string& root)
{
    std::map<std::string, std::string> out;
    for (auto& entry : std::filesystem::recursive_directory_iterator(root)) {
        // The store's own files: lock files, and spares (at most four per directory, file_store.hpp).
        if (!entry.is_regular_file() || entry.path().filename() == ".lock" || entry.path().filename().string().starts_with(".spare-"))
            continue;
        std::ifstream in(entry.path());
        std::stringstream body;
        body << in.rdbuf();
        out[entry.path().string()] = body.str();
    }
    return out;
}

bool has_address(const FakeLink* link, const std::string& address)
{
    auto want = IpNet::parse(address);
    return link && want && std::find(link->addresses.begin(), link->addresses.end(), *want) != link->addresses.end();
}

/// The store, counting the documents and directories read through it (what a call costs as the
/// state grows), and failing the writes of the keys `fail_write` names (a full disk).
class CountingStore final : public Store {
public:
    explicit CountingStore(Store& inner) : m_inner(inner) { }
    int reads = 0; // documents read, directories listed, and keys stat'ed (exists, peek_version, empty_dir, held)
    std::function<bool(const Key&)> fail_write;
    std::function<void(const Key&)> after_get; // another process's step, between a read and what follows it

    Result<Loaded> get(const Key& key) override
    {
        ++reads;
        auto loaded = m_inner.get(key);
        if (after_get)
            after_get(key);
        return loaded;
    }
    Result<std::vector<std::string>> list(const Key& dir) override { return ++reads, m_inner.list(dir); }
    Result<void> put(const Key& key, const Json& doc, Durability d) override { return TRY(refuse(key)), m_inner.put(key, doc, d); }
    Result<bool> create(const Key& key, const Json& doc, Durability d) override { return TRY(refuse(key)), m_inner.create(key, doc, d); }
    Result<bool> create_versioned(const Key& key, const Json& doc, Durability d, Version& v) override
    {
        return TRY(refuse(key)), m_inner.create_versioned(key, doc, d, v);
    }
    Result<Cas> put_if(const Key& key, const Json& doc, Version expected, Durability d) override { return TRY(refuse(key)), m_inner.put_if(key, doc, expected, d); }
    Result<Cas> remove_if(const Key& key, Version expected, Durability d) override { return m_inner.remove_if(key, expected, d); }
    Result<void> remove(const Key& key, Durability d) override { return m_inner.remove(key, d); }
    Result<void> remove_dir(const Key& key) override { return m_inner.remove_dir(key); }
    Result<bool> empty_dir(const Key& dir) override { return ++reads, m_inner.empty_dir(dir); }
    Result<bool> exists(const Key& key) override { return ++reads, m_inner.exists(key); }
    Result<std::optional<Version>> peek_version(const Key& key) override { return ++reads, m_inner.peek_version(key); }
    Result<std::unique_ptr<Lock>> lock(const Key& dir) override { return m_inner.lock(dir); }
    Result<std::unique_ptr<Lock>> hold(const Key& key) override { return m_inner.hold(key); }
    Result<bool> held(const Key& key) override { return ++reads, m_inner.held(key); }
    Result<void> sync() override { return m_inner.sync(); }
    void forget_open_dirs() override { m_inner.forget_open_dirs(); }

private:
    Result<void> refuse(const Key& key)
    {
        if (fail_write && fail_write(key))
            return make_error(Code::Io, "cannot write " + key_str(key), "No space left on device (a test's fault)");
        return {};
    }
    Store& m_inner;
};

struct Fixture {
    test::TempDir tmp;
    std::unique_ptr<FileStore> store = FileStore::open(tmp.path()).release_value();
    Registry registry { *store };
    FakeKernel kernel;
    CountingStore counting { *store };
    DockerApi api { counting, kernel };

    Reply call(const std::string& method, const std::string& body = "")
    {
        return api.handle(method, body);
    }
    Json ok(const std::string& method, const std::string& body = "")
    {
        auto r = call(method, body);
        INFO(method << " " << body << " -> " << r.body.dump());
        CHECK(r.status == 200);
        return r.body;
    }
    std::string err(const std::string& method, const std::string& body)
    {
        auto r = call(method, body);
        INFO(method << " " << body << " -> " << r.body.dump());
        CHECK(r.status == 500);
        CHECK(r.body.contains("Err"));
        CHECK(r.body.value("Err", "") == r.body.value("Error", "x"));
        return r.body.value("Err", "");
    }

    // `docker network create -d cnm --ipam-driver cnm --subnet S [--gateway G] [-o k=v…]`, as
    // Docker sequences it (libnetwork's ipamAllocateVersion): the gateway RequestPool names, and
    // a gateway RequestAddress only for a --gateway or when RequestPool named none.
    void create_network(const std::string& id, const std::string& subnet, const Json& generic, const std::string& gateway = "")
    {
        auto pool = ok("IpamDriver.RequestPool", Json { { "AddressSpace", "local" }, { "Pool", subnet }, { "SubPool", "" }, { "Options", Json::object() }, { "V6", false } }.dump());
        std::string gw = pool["Data"].value("com.docker.network.gateway", "");
        if (!gateway.empty() || gw.empty())
            gw = ok("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", gateway }, { "Options", { { "RequestAddressType", "com.docker.network.gateway" } } } }.dump())["Address"];
        ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", id },
            { "Options", { { "com.docker.network.enable_ipv6", false }, { "com.docker.network.generic", generic } } },
            { "IPv4Data", { { { "AddressSpace", "local" }, { "Gateway", gw }, { "Pool", subnet } } } }, { "IPv6Data", Json::array() } }.dump());
    }

    /// A Docker endpoint: an address from the pool, CreateEndpoint, Join. Returns the Join reply.
    Json run(const std::string& network_id, const std::string& endpoint_id, const std::string& pool, const std::string& sandbox)
    {
        auto a = ok("IpamDriver.RequestAddress", Json { { "PoolID", "local/" + pool }, { "Address", "" } }.dump());
        ok("NetworkDriver.CreateEndpoint", Json { { "NetworkID", network_id }, { "EndpointID", endpoint_id },
            { "Interface", { { "Address", a["Address"] }, { "AddressIPv6", "" }, { "MacAddress", "" } } } }.dump());
        return ok("NetworkDriver.Join", Json { { "NetworkID", network_id }, { "EndpointID", endpoint_id }, { "SandboxKey", "/run/docker/netns/" + sandbox } }.dump());
    }

    /// The record of a Docker endpoint.
    EndpointRecord docker_endpoint(const std::string& network, const std::string& endpoint_id)
    {
        auto stored = registry.load_endpoint(network, endpoint_key_of(endpoint_id));
        REQUIRE(stored.ok());
        REQUIRE(stored->ok());
        return stored->record;
    }

    /// A CNI ADD through the lifecycle, with the in-process IPAM of the conf, into a sandbox the
    /// fake kernel has at `netns`; through `as` (a registry on a store of its own, as a plugin
    /// process has) instead of the shim's when given.
    Result<Added> cni_add(const std::string& conf_text, const std::string& container_id, const std::string& netns, const std::string& ifname = "eth0",
        Registry* as = nullptr)
    {
        Registry& r = as ? *as : registry;
        auto conf = TRY(cni::parse_conf(conf_text));
        PoolAddresses source(TRY(ipam::parse_ipam_conf(conf, cni::CniArgs {})));
        kernel.add_netns(netns);
        Endpoints endpoints(r, &kernel, find_driver(conf.type));
        AddRequest request { { conf.name, conf.type, Frontend::Cni, network_options(conf) }, container_id, ifname, netns,
            Target::in_netns(netns, ifname), "" };
        auto added = endpoints.add(request, source);
        TRY(r.store().sync());
        return added;
    }
    Result<void> cni_del(const std::string& conf_text, const std::string& container_id, const std::string& netns, const std::string& ifname = "eth0",
        Registry* as = nullptr)
    {
        Registry& r = as ? *as : registry;
        auto conf = TRY(cni::parse_conf(conf_text));
        PoolAddresses source(TRY(ipam::parse_ipam_conf(conf, cni::CniArgs {})));
        Endpoints endpoints(r, &kernel, find_driver(conf.type));
        TRY(endpoints.del({ conf.name, conf.type, Frontend::Cni, network_options(conf) }, container_id, ifname, netns, source));
        return r.store().sync();
    }

    /// The links a driver made in the host namespace, of `kind`.
    std::vector<FakeLink> host_links(const std::string& kind)
    {
        std::vector<FakeLink> out;
        for (auto& l : kernel.links(host_ns))
            if (!l.fixture && l.link.kind == kind)
                out.push_back(l);
        return out;
    }
    const FakeLink* host(const std::string& name) { return kernel.find(host_ns, name); }
};

std::string ep_body(const std::string& net, const std::string& ep, const std::string& addr, const std::string& mac = "", const Json& options = Json::object())
{
    return Json { { "NetworkID", net }, { "EndpointID", ep }, { "Interface", { { "Address", addr }, { "AddressIPv6", "" }, { "MacAddress", mac } } },
        { "Options", options } }.dump();
}

std::string ids(const std::string& net, const std::string& ep)
{
    return Json { { "NetworkID", net }, { "EndpointID", ep } }.dump();
}

} // namespace

TEST_CASE("shim: activation and capabilities take Docker's empty bodies")
{
    Fixture f;
    CHECK(f.ok("Plugin.Activate") == Json::parse(R"({"Implements":["NetworkDriver","IpamDriver"]})"));
    CHECK(f.ok("NetworkDriver.GetCapabilities") == Json::parse(R"({"Scope":"local","ConnectivityScope":"local"})"));
    CHECK(f.ok("IpamDriver.GetCapabilities") == Json::parse(R"({"RequiresMACAddress":false,"RequiresRequestReplay":false})"));
    CHECK(f.ok("IpamDriver.GetDefaultAddressSpaces", "{}\n")["LocalDefaultAddressSpace"] == "local");
    CHECK(f.ok("NetworkDriver.DiscoverNew", R"({"DiscoveryType":1,"DiscoveryData":{"Address":"10.213.0.1","Self":true}})") == Json::object());
    CHECK(f.ok("NetworkDriver.AllocateNetwork", R"({"NetworkID":"x","Options":{}})").contains("Options"));
    auto r = f.call("NetworkDriver.NoSuchMethod", "{}");
    CHECK(r.status == 404);
    CHECK(r.body.value("Err", "").find("unknown method") != std::string::npos);
    CHECK(f.kernel.mutations() == 0);
}

TEST_CASE("shim: the recorded Docker 20.10 trace, end to end")
{
    Fixture f;
    // 5–7: network create with -o cnm.network=n2
    auto pool = f.ok("IpamDriver.RequestPool", R"({"AddressSpace": "local", "Pool": "10.213.32.0/24", "SubPool": "", "Options": {}, "V6": false})");
    CHECK(pool["PoolID"] == "local/10.213.32.0/24");
    CHECK(pool["Pool"] == "10.213.32.0/24");
    // (Named here, the gateway needs no RequestAddress: Docker now skips the one it made in the trace.)
    CHECK(pool["Data"] == Json { { "com.docker.network.gateway", "10.213.32.1/24" } });
    auto gw = f.ok("IpamDriver.RequestAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "", "Options": {"RequestAddressType": "com.docker.network.gateway"}})");
    CHECK(gw["Address"] == "10.213.32.1/24");
    f.ok("NetworkDriver.CreateNetwork", R"({"NetworkID": ")" + nid + R"(", "Options": {"com.docker.network.enable_ipv6": false, "com.docker.network.generic": {"cnm.network": "n2"}}, "IPv4Data": [{"AddressSpace": "local", "Gateway": "10.213.32.1/24", "Pool": "10.213.32.0/24"}], "IPv6Data": []})");
    // Docker's default bridge name, routed through the bridge: the gateway on it, forwarding on
    const FakeLink* bridge = f.host("br-da2dbabbc001");
    REQUIRE(bridge);
    CHECK(bridge->link.kind == "bridge");
    CHECK(bridge->up());
    CHECK(bridge->addresses == std::vector<IpNet> { *IpNet::parse("10.213.32.1/24") });
    CHECK(f.kernel.sysctl(host_ns, "net/ipv4/ip_forward") == std::optional<std::string>("1"));
    int bridge_index = bridge->link.index;
    auto bound = f.api.bound_network(nid);
    REQUIRE(bound.ok());
    CHECK(bound.value() == std::optional<std::string>("n2"));

    // 8–15: docker run --rm (no MAC given: we return one; the gateway is never handed out)
    auto a1 = f.ok("IpamDriver.RequestAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "", "Options": null})");
    CHECK(a1["Address"] == "10.213.32.2/24");
    auto ce = f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, "10.213.32.2/24", "", Json::parse(R"({"com.docker.network.endpoint.exposedports": [], "com.docker.network.portmap": []})")));
    std::string mac = ce["Interface"].value("MacAddress", "");
    CHECK(mac.size() == 17);
    auto join = f.ok("NetworkDriver.Join", R"({"NetworkID": ")" + nid + R"(", "EndpointID": ")" + eid1 + R"(", "SandboxKey": "/tmp/rc/docker/exec/netns/5f0b87bfe0aa", "Options": {}})");
    CHECK(join["InterfaceName"]["DstPrefix"] == "eth");
    std::string src = join["InterfaceName"]["SrcName"];
    CHECK(src.size() <= 15);
    CHECK(src == container_link_name(eid1));
    CHECK(join["Gateway"] == "10.213.32.1");
    CHECK_FALSE(join.contains("DisableGatewayService"));
    // one veth pair, both ends in the shim's netns: SrcName with the MAC, its peer a port of the bridge
    REQUIRE(f.host_links("veth").size() == 2);
    const FakeLink* container = f.host(src);
    REQUIRE(container);
    CHECK(container->link.kind == "veth");
    CHECK(netlink::mac_str(container->link.mac) == mac);
    const FakeLink* port = f.kernel.find(host_ns, container->link.peer_index);
    REQUIRE(port);
    CHECK(port->link.master == bridge_index);
    CHECK(port->up());
    auto info = f.ok("NetworkDriver.EndpointOperInfo", ids(nid, eid1));
    CHECK(info["Value"]["cnm.network"] == "n2");
    CHECK(info["Value"]["cnm.hostVeth"] == port->link.name);
    f.ok("NetworkDriver.Leave", ids(nid, eid1));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid1));
    CHECK(f.host_links("veth").empty());
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.2"})");

    // 16–20: --ip 10.213.32.77 --mac-address …: the MAC Docker set is not echoed
    auto a2 = f.ok("IpamDriver.RequestAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.77", "Options": null})");
    CHECK(a2["Address"] == "10.213.32.77/24");
    auto dup = f.err("IpamDriver.RequestAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.77", "Options": null})");
    CHECK(dup.find("already allocated") != std::string::npos);
    auto ce2 = f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid2, "10.213.32.77/24", "02:42:0a:d5:20:4d"));
    CHECK(ce2["Interface"] == Json::object());
    auto join2 = f.ok("NetworkDriver.Join", R"({"NetworkID": ")" + nid + R"(", "EndpointID": ")" + eid2 + R"(", "SandboxKey": "/tmp/rc/docker/exec/netns/17e9eb4338d1", "Options": {}})");
    const FakeLink* container2 = f.host(join2["InterfaceName"]["SrcName"].get<std::string>());
    REQUIRE(container2);
    CHECK(netlink::mac_str(container2->link.mac) == "02:42:0a:d5:20:4d");
    // the gateway cannot be requested as an endpoint address
    f.err("IpamDriver.RequestAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.1", "Options": null})");

    // 29–34: rm -f, then network rm (gateway first, then pool, then network)
    f.ok("NetworkDriver.Leave", ids(nid, eid2));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid2));
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.77"})");
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID": "local/10.213.32.0/24", "Address": "10.213.32.1"})");
    f.ok("IpamDriver.ReleasePool", R"({"PoolID": "local/10.213.32.0/24"})");
    CHECK(f.host("br-da2dbabbc001"));
    f.ok("NetworkDriver.DeleteNetwork", R"({"NetworkID": ")" + nid + R"("})");
    CHECK_FALSE(f.host("br-da2dbabbc001"));
    std::string why;
    CHECK_MESSAGE(f.kernel.empty_except_bridges(&why), why);
    CHECK_MESSAGE(f.kernel.firewall_empty(&why), why);
    // Nothing is left but the pool's round-robin cursor, which outlives the pool on purpose (a
    // pool made again on the subnet goes on where it was).
    auto left = snapshot(f.tmp.path());
    CHECK(left.size() == 1);
    CHECK(left.begin()->first == f.tmp.path() + "/ipam/local/10.213.32.0_24/cursor");
}

TEST_CASE("shim: calls for unknown ids after a restart succeed where Docker needs them to")
{
    Fixture f;
    auto before = snapshot(f.tmp.path());
    f.ok("NetworkDriver.Leave", ids("abc", "def"));
    f.ok("NetworkDriver.DeleteEndpoint", ids("abc", "def"));
    f.ok("NetworkDriver.RevokeExternalConnectivity", ids("abc", "def"));
    f.ok("NetworkDriver.DeleteNetwork", R"({"NetworkID":"abc"})");
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID":"local/10.213.9.0/24","Address":"10.213.9.9"})");
    f.ok("IpamDriver.ReleasePool", R"({"PoolID":"local/10.213.9.0/24"})");
    CHECK(f.ok("NetworkDriver.EndpointOperInfo", ids("abc", "def"))["Value"] == Json::object());
    // …but creating on an unknown network is an error
    CHECK(f.err("NetworkDriver.CreateEndpoint", ep_body("abc", "def", "10.213.9.2/24")).find("unknown id") != std::string::npos);
    f.err("NetworkDriver.Join", R"({"NetworkID":"abc","EndpointID":"def","SandboxKey":"/x/y"})");
    f.err("NetworkDriver.ProgramExternalConnectivity", R"({"NetworkID":"abc","EndpointID":"def","Options":{}})");
    f.err("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.9.0/24","Address":"","Options":null})");
    CHECK(snapshot(f.tmp.path()) == before);
    CHECK(f.kernel.mutations() == 0);
}

TEST_CASE("shim: hostile requests are clear errors and change nothing")
{
    Fixture f;
    f.create_network(nid, "10.213.33.0/24", { { "cnm.network", "h1" } });
    auto before = snapshot(f.tmp.path());
    auto mutations = f.kernel.mutations();
    for (auto& [method, body] : std::vector<std::pair<std::string, std::string>> {
             { "NetworkDriver.CreateNetwork", "{" },
             { "NetworkDriver.CreateNetwork", "[1,2]" },
             { "NetworkDriver.CreateNetwork", "\"x\"" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": 7})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "../../etc"})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "IPv4Data": "x"})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "IPv4Data": [{"AddressSpace":"LocalDefault","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.1/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "IPv4Data": []})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "Options": {"com.docker.network.generic": {"cnm.network": "bad/name"}}, "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "Options": {"com.docker.network.generic": {"mtu": "lots"}}, "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "Options": {"com.docker.network.generic": {"frobnicate": "1"}}, "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "Options": {"com.docker.network.generic": {"cnm.driver": "ipvlan"}}, "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateNetwork", R"({"NetworkID": "n9", "Options": {"com.docker.network.internal": true}, "IPv4Data": [{"AddressSpace":"local","Pool":"10.213.34.0/24"}]})" },
             { "NetworkDriver.CreateEndpoint", ep_body(nid, "e1", "10.213.33.50/24") }, // never allocated by our IPAM
             { "NetworkDriver.CreateEndpoint", ep_body(nid, "e1", "10.213.99.5/24") },  // outside the network
             { "NetworkDriver.CreateEndpoint", ep_body(nid, "e1", "not-an-ip") },
             { "NetworkDriver.CreateEndpoint", ep_body(nid, "e1", "", "zz:zz") },
             { "NetworkDriver.CreateEndpoint", R"({"NetworkID":")" + nid + R"(","EndpointID":"e1","Interface":5})" },
             { "NetworkDriver.Join", R"({"NetworkID":")" + nid + R"(","EndpointID":"e1","SandboxKey":"relative"})" },
             { "NetworkDriver.Join", R"({"NetworkID":")" + nid + R"(","EndpointID":"nope","SandboxKey":"/x/y"})" },
             { "IpamDriver.RequestPool", R"({"AddressSpace":"global","Pool":"10.213.35.0/24"})" },
             { "IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":""})" },
             { "IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.33.128/25"})" }, // overlaps
             { "IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.35.0/24","V6":true})" },
             { "IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.35.0/24","SubPool":"10.213.35.0/25"})" },
             { "IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.35.0/24","Options":{"x":"y"}})" },
             { "IpamDriver.RequestAddress", R"({"PoolID":"garbage","Address":""})" },
             { "IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.33.0/24","Address":"10.213.34.5"})" },
             { "IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.33.0/24","Address":5})" },
             { "IpamDriver.ReleaseAddress", R"({"PoolID":"local/10.213.33.0/24","Address":"nonsense"})" },
         }) {
        f.err(method, body);
    }
    CHECK(snapshot(f.tmp.path()) == before);
    CHECK(f.kernel.mutations() == mutations);
    // a 200 000-deep document is refused before parsing
    f.err("NetworkDriver.CreateNetwork", std::string(200000, '[') + std::string(200000, ']'));
    CHECK(snapshot(f.tmp.path()) == before);
}


TEST_CASE("shim: a Docker network joins a CNI network: one pool, one gateway, checked keys")
{
    Fixture f;
    // The CNI side first: a bridge ADD with the in-process IPAM, in the address space Docker's
    // pools are in (a conf that names none allocates in its network's own).
    const std::string conf = R"({"cniVersion":"1.0.0","name":"shared","type":"bridge","bridge":"cnmsh0","isGateway":true,
        "ipam":{"type":"ipam","addressSpace":"local","subnet":"10.213.40.0/24","routes":[{"dst":"10.213.41.0/24"}]}})";
    auto cni_added = f.cni_add(conf, "pod1", "/run/netns/pod1");
    REQUIRE_MESSAGE(cni_added.ok(), (cni_added.ok() ? "" : cni_added.error().msg));
    CHECK(cni_added->endpoint.addresses.front().address.str() == "10.213.40.2/24");
    Registry& registry = f.registry;

    // Docker asks for the same subnet: the same pool, the CNI network's gateway.
    auto pool = f.ok("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.40.0/24","V6":false})");
    auto gw = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.40.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}})");
    CHECK(gw["Address"] == "10.213.40.1/24");
    // A disagreeing key is refused, naming both values…
    auto bad = f.err("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
        { "Options", { { "com.docker.network.generic", { { "cnm.network", "shared" }, { "com.docker.network.bridge.name", "other0" } } } } },
        { "IPv4Data", { { { "AddressSpace", "local" }, { "Gateway", "10.213.40.1/24" }, { "Pool", "10.213.40.0/24" } } } } }.dump());
    CHECK(bad.find("\"cnmsh0\"") != std::string::npos);
    CHECK(bad.find("\"other0\"") != std::string::npos);
    // …so is another subnet…
    f.ok("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.42.0/24","V6":false})");
    auto bad_subnet = f.err("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
        { "Options", { { "com.docker.network.generic", { { "cnm.network", "shared" } } } } },
        { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.42.0/24" } } } } }.dump());
    CHECK(bad_subnet.find("10.213.40.0/24") != std::string::npos);
    CHECK(bad_subnet.find("10.213.42.0/24") != std::string::npos);
    CHECK_FALSE(f.host("other0"));
    // …an agreeing one, or none, is fine: the network keeps its bridge, and CreateNetwork puts
    // the gateway on it (taken away here to see it come back).
    const FakeLink* bridge = f.host("cnmsh0");
    REQUIRE(bridge);
    REQUIRE(f.kernel.del_address(host_ns, bridge->link.index, *IpNet::parse("10.213.40.1/24")).ok());
    REQUIRE_FALSE(has_address(f.host("cnmsh0"), "10.213.40.1/24"));
    f.ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
        { "Options", { { "com.docker.network.generic", { { "cnm.network", "shared" }, { "bridge", "cnmsh0" } } } } },
        { "IPv4Data", { { { "AddressSpace", "local" }, { "Gateway", "10.213.40.1/24" }, { "Pool", "10.213.40.0/24" } } } } }.dump());
    CHECK(has_address(f.host("cnmsh0"), "10.213.40.1/24"));
    CHECK(f.host_links("bridge").size() == 1);

    // Docker's addresses never collide with the CNI lease, nor with the gateway.
    CHECK(f.err("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.40.0/24","Address":"10.213.40.2"})").find("already allocated") != std::string::npos);
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.40.0/24","Address":""})");
    CHECK(a["Address"] == "10.213.40.3/24");
    // An endpoint may not claim the CNI attachment's address.
    CHECK(f.err("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, "10.213.40.2/24")).find("CNI attachment pod1/eth0") != std::string::npos);
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, "10.213.40.3/24"));
    auto join = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/abc" } }.dump());
    CHECK(join["Gateway"] == "10.213.40.1");
    // the Docker container's veth is a port of the CNI network's bridge
    const FakeLink* container = f.host(join["InterfaceName"]["SrcName"].get<std::string>());
    REQUIRE(container);
    const FakeLink* port = f.kernel.find(host_ns, container->link.peer_index);
    REQUIRE(port);
    CHECK(port->link.master == f.host("cnmsh0")->link.index);
    // the conf's route reaches Docker's container, via the gateway
    REQUIRE(join.contains("StaticRoutes"));
    CHECK(join["StaticRoutes"][0] == Json::parse(R"({"Destination":"10.213.41.0/24","RouteType":0,"NextHop":"10.213.40.1"})"));
    // A Docker ReleaseAddress never frees the CNI lease.
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID":"local/10.213.40.0/24","Address":"10.213.40.2"})");
    auto holder = ipam::Pools(*f.store).owner_of(ipam::PoolId { "local", *IpNet::parse("10.213.40.0/24") }, *IpAddr::parse("10.213.40.2"));
    REQUIRE(holder.ok());
    REQUIRE(holder->has_value());
    CHECK((*holder)->container_id == "pod1");

    // Docker leaves; the CNI network and its lease stay, the bridge too.
    f.ok("NetworkDriver.Leave", ids(nid, eid1));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid1));
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID":"local/10.213.40.0/24","Address":"10.213.40.3"})");
    f.ok("IpamDriver.ReleasePool", R"({"PoolID":"local/10.213.40.0/24"})");
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid } }.dump());
    CHECK(f.host("cnmsh0"));
    CHECK(f.kernel.find(*f.kernel.ns_of("/run/netns/pod1"), "eth0"));
    auto net = registry.load_network("shared");
    REQUIRE(net.ok());
    CHECK(net->ok());
    CHECK(net->record.docker_ids.empty());
    CHECK(f.cni_del(conf, "pod1", "/run/netns/pod1").ok());
}

TEST_CASE("shim: a network named by its Docker id is bound by its own record; one named by cnm.network has a binding")
{
    Fixture f;
    const std::string named = "c0c0c0c0c0c0" + nid.substr(12);
    f.create_network(nid, "10.213.45.0/24", Json::object());
    f.create_network(named, "10.213.46.0/24", { { "cnm.network", "byname" } });
    // No binding document for the first (its record lists the id); the second's names the network.
    CHECK_FALSE(f.store->exists(binding_key(nid)).value());
    REQUIRE(f.store->exists(binding_key(named)).value());
    CHECK(f.store->get(binding_key(named))->doc["network"] == "byname");
    auto record = f.registry.load_network(nid);
    REQUIRE(record.ok());
    REQUIRE(record->ok());
    CHECK(record->record.docker_ids == std::vector<std::string> { nid });
    // Both serve every later call; a retried CreateNetwork is done already.
    f.create_network(nid, "10.213.45.0/24", Json::object());
    for (auto& [id, subnet, sandbox] : { std::tuple { nid, "10.213.45.0/24", "fb1" }, std::tuple { named, "10.213.46.0/24", "fb2" } }) {
        auto join = f.run(id, eid1, subnet, sandbox);
        CHECK(f.host(join["InterfaceName"]["SrcName"].get<std::string>()));
        f.ok("NetworkDriver.Leave", ids(id, eid1));
        f.ok("NetworkDriver.DeleteEndpoint", ids(id, eid1));
        f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", id } }.dump());
    }
    CHECK(f.registry.load_network(nid)->absent());
    CHECK(f.registry.load_network("byname")->absent());
    CHECK_FALSE(f.store->exists(binding_key(named)).value());
    // A network whose record does not list the id is not bound to it.
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid } }.dump());
    CHECK(f.err("NetworkDriver.CreateEndpoint", Json { { "NetworkID", nid }, { "EndpointID", eid1 },
                  { "Interface", { { "Address", "10.213.45.9/24" }, { "AddressIPv6", "" }, { "MacAddress", "" } } } }.dump())
              .size() > 0);
}

TEST_CASE("shim: a network Docker creates is joined by a later CNI conf with its keys")
{
    Fixture f;
    f.create_network(nid, "10.213.44.0/24", { { "cnm.network", "fromdocker" }, { "com.docker.network.driver.mtu", "1400" }, { "ipMasq", "true" } });
    Registry registry(*f.store);
    auto net = registry.load_network("fromdocker");
    REQUIRE(net.ok());
    REQUIRE(net->ok());
    CHECK(net->record.frontend == Frontend::Docker);
    CHECK(net->record.options["mtu"] == 1400);
    CHECK(net->record.options["ipMasq"] == true);
    CHECK(net->record.options["bridge"] == "br-da2dbabbc001");
    const Json& defaults = find_driver("bridge")->network_defaults();
    // What the bridge plugin does with a conf that omits the bridge: it is the network's, and so
    // is ipMasq; the MTU is one attachment's key, which each conf says for itself.
    auto merged = adopt_network_options("fromdocker", net->record.options, Json { { "type", "bridge" } }, defaults, "this config");
    REQUIRE(merged.ok());
    CHECK((*merged)["bridge"] == "br-da2dbabbc001");
    CHECK((*merged)["ipMasq"] == true);
    CHECK_FALSE(merged->contains("mtu"));
    auto clash = adopt_network_options("fromdocker", net->record.options, Json { { "bridge", "other0" } }, defaults, "this config");
    REQUIRE_FALSE(clash.ok());
    CHECK(clash.error().code == Code::InvalidConfig);
    CHECK(clash.error().msg.find("br-da2dbabbc001") != std::string::npos);
    CHECK(clash.error().msg.find("other0") != std::string::npos);
    CHECK(adopt_network_options("fromdocker", net->record.options, Json { { "mtu", 9000 } }, defaults, "this config").ok());
    // the bridge has the MTU, a Docker container's veth too, and its address is masqueraded
    CHECK(f.host("br-da2dbabbc001")->link.mtu == 1400);
    auto join = f.run(nid, eid1, "10.213.44.0/24", "fd1");
    CHECK(f.host(join["InterfaceName"]["SrcName"].get<std::string>())->link.mtu == 1400);
    CHECK(f.kernel.masquerades().count(*IpAddr::parse("10.213.44.2")) == 1);
    f.ok("NetworkDriver.Leave", ids(nid, eid1));
    CHECK(f.kernel.masquerades().empty());
}

TEST_CASE("shim: published ports are programmed, replaced, revoked — never silently dropped")
{
    Fixture f;
    f.create_network(nid, "10.213.45.0/24", { { "cnm.network", "ports" } });
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.45.0/24","Address":""})");
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a["Address"]));
    f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/abc" } }.dump());
    auto program = [&](const std::string& portmap) {
        return Json { { "NetworkID", nid }, { "EndpointID", eid1 },
            { "Options", { { "com.docker.network.portmap", Json::parse(portmap) }, { "com.docker.network.endpoint.exposedports", Json::array() } } } }.dump();
    };
    auto before = snapshot(f.tmp.path());
    CHECK(f.err("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":0,"HostPortEnd":0}])")).find("explicit host port") != std::string::npos);
    CHECK(f.err("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"127.0.0.1","HostPort":18080,"HostPortEnd":18080}])")).find("loopback") != std::string::npos);
    f.err("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":1,"IP":"","Port":80,"HostIP":"","HostPort":18080}])"));
    f.err("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"fd00:213::1","HostPort":18080}])"));
    CHECK(snapshot(f.tmp.path()) == before);
    CHECK(f.kernel.ports().empty());

    f.ok("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080,"HostPortEnd":18080},
        {"Proto":17,"IP":"","Port":53,"HostIP":"10.213.45.250","HostPort":5353,"HostPortEnd":5353}])"));
    REQUIRE(f.kernel.ports().size() == 2);
    CHECK(f.kernel.ports()[0].str() == "tcp *:18080 -> 10.213.45.2:80");
    CHECK(f.kernel.ports()[1].str() == "udp 10.213.45.250:5353 -> 10.213.45.2:53");
    // again, with one port: replaces
    f.ok("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":8080,"HostIP":"","HostPort":18081}])"));
    REQUIRE(f.kernel.ports().size() == 1);
    CHECK(f.kernel.ports()[0].str() == "tcp *:18081 -> 10.213.45.2:8080");
    f.ok("NetworkDriver.RevokeExternalConnectivity", ids(nid, eid1));
    CHECK(f.kernel.ports().empty());
    // DeleteEndpoint removes ports a missing Revoke left
    f.ok("NetworkDriver.ProgramExternalConnectivity", program(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080}])"));
    CHECK(f.kernel.ports().size() == 1);
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid1));
    CHECK(f.kernel.ports().empty());
    CHECK(f.host_links("veth").empty());
}

TEST_CASE("shim: a failed Join leaves no link and no sandbox; a retry works")
{
    Fixture f;
    f.create_network(nid, "10.213.46.0/24", { { "cnm.network", "retry" } });
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.46.0/24","Address":""})");
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a["Address"]));
    std::string join = Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/abc" } }.dump();
    // The endpoint record names its sandbox once the Join succeeded (no document of its own).
    auto sandbox = [&] { return f.registry.load_endpoint("retry", endpoint_key(eid1, "docker"))->record.sandbox; };
    f.kernel.fail_at("create_veth", 1);
    CHECK(f.err("NetworkDriver.Join", join).find("injected") != std::string::npos);
    CHECK(f.host_links("veth").empty());
    CHECK(sandbox().empty());
    // a failure after the veth exists (enslaving it) is undone too
    f.kernel.fail_at("set_link", 1);
    CHECK(f.err("NetworkDriver.Join", join).find("injected") != std::string::npos);
    CHECK(f.host_links("veth").empty());
    CHECK(sandbox().empty());
    f.kernel.clear_failures();
    auto reply = f.ok("NetworkDriver.Join", join);
    CHECK(reply["InterfaceName"]["SrcName"] == container_link_name(eid1)); // the same name every time
    CHECK(f.host_links("veth").size() == 2);
    CHECK(sandbox() == "abc");
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/sandboxes"));
}

TEST_CASE("shim: macvlan and ipvlan networks, VLAN parents made on first use and removed with the last network")
{
    Fixture f;
    int eth9 = f.kernel.add_link(host_ns, "eth9");
    f.create_network(nid, "10.213.47.0/24", { { "cnm.driver", "macvlan" }, { "parent", "eth9.10" }, { "macvlan_mode", "private" }, { "cnm.network", "mv" } });
    const FakeLink* vlan = f.host("eth9.10");
    REQUIRE(vlan);
    CHECK(vlan->link.kind == "vlan");
    CHECK(vlan->vid == 10);
    CHECK(vlan->parent == eth9);
    int vlan_index = vlan->link.index;
    CHECK(f.kernel.calls("create_child") == 1); // the probe…
    CHECK(f.host_links("macvlan").empty());     // …which left nothing
    Registry registry(*f.store);
    auto net = registry.load_network("mv");
    REQUIRE(net.ok());
    REQUIRE(net->ok());
    CHECK(net->record.driver == "macvlan");
    CHECK(net->record.options["master"] == "eth9.10");
    CHECK(net->record.options["mode"] == "private");
    CHECK(std::filesystem::exists(f.tmp.path() + "/docker/parents/eth9.10.json"));
    // a second network on the same VLAN parent
    const std::string nid2 = "b0b0b0b0b0b0" + nid.substr(12);
    f.create_network(nid2, "10.213.48.0/24", { { "cnm.driver", "macvlan" }, { "parent", "eth9.10" } });
    CHECK(f.kernel.calls("create_vlan") == 1);

    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.47.0/24","Address":""})");
    auto ce = f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a["Address"]));
    std::string mac = ce["Interface"].value("MacAddress", "");
    CHECK(mac.size() == 17);
    auto join = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/mv1" } }.dump());
    CHECK(join["InterfaceName"]["DstPrefix"] == "eth");
    CHECK(join["Gateway"] == "10.213.47.1");
    CHECK(join["DisableGatewayService"] == true);
    const FakeLink* child = f.host(join["InterfaceName"]["SrcName"].get<std::string>());
    REQUIRE(child);
    CHECK(child->link.kind == "macvlan");
    CHECK(child->parent == vlan_index);
    CHECK(child->mode == MACVLAN_MODE_PRIVATE);
    CHECK(netlink::mac_str(child->link.mac) == mac);
    auto ports = Json { { "NetworkID", nid }, { "EndpointID", eid1 },
        { "Options", { { "com.docker.network.portmap", Json::parse(R"([{"Proto":6,"Port":80,"HostPort":8080}])") } } } }.dump();
    CHECK(f.err("NetworkDriver.ProgramExternalConnectivity", ports).find("not supported on macvlan") != std::string::npos);
    CHECK(f.kernel.ports().empty());
    f.ok("NetworkDriver.Leave", ids(nid, eid1));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid1));
    CHECK(f.host_links("macvlan").empty());
    f.ok("IpamDriver.ReleaseAddress", R"({"PoolID":"local/10.213.47.0/24","Address":")" + IpNet::parse(a["Address"].get<std::string>())->addr.str() + R"("})");

    // the parent stays while another network uses it, and goes with the last one
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid } }.dump());
    CHECK(f.host("eth9.10"));
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid2 } }.dump());
    CHECK_FALSE(f.host("eth9.10"));
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/docker/parents/eth9.10.json"));
    // a parent that existed before is never removed
    CHECK(f.host("eth9"));

    // ipvlan l3: no MAC of its own, a connected default route instead of a gateway
    const std::string nid3 = "c0c0c0c0c0c0" + nid.substr(12);
    f.create_network(nid3, "10.213.49.0/24", { { "cnm.driver", "ipvlan" }, { "parent", "eth9" }, { "ipvlan_mode", "l3" } });
    auto b = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.49.0/24","Address":""})");
    CHECK(f.err("NetworkDriver.CreateEndpoint", ep_body(nid3, eid2, b["Address"], "02:42:0a:d5:20:4d")).find("MAC") != std::string::npos);
    auto ce3 = f.ok("NetworkDriver.CreateEndpoint", ep_body(nid3, eid2, b["Address"]));
    CHECK(ce3["Interface"] == Json::object());
    auto join3 = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid3 }, { "EndpointID", eid2 }, { "SandboxKey", "/run/docker/netns/iv1" } }.dump());
    CHECK_FALSE(join3.contains("Gateway"));
    CHECK(join3["StaticRoutes"] == Json::parse(R"([{"Destination":"0.0.0.0/0","RouteType":1}])"));
    const FakeLink* ipvlan = f.host(join3["InterfaceName"]["SrcName"].get<std::string>());
    REQUIRE(ipvlan);
    CHECK(ipvlan->link.kind == "ipvlan");
    CHECK(ipvlan->parent == eth9);
    CHECK(ipvlan->mode == IPVLAN_MODE_L3);

    // refused, naming why: no parent, an unknown mode, a missing non-VLAN parent, an unknown driver
    auto before = snapshot(f.tmp.path());
    auto mutations = f.kernel.mutations();
    auto create = [&](const Json& generic) {
        return Json { { "NetworkID", "d0d0" }, { "Options", { { "com.docker.network.generic", generic } } },
            { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.49.0/24" } } } } }.dump();
    };
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "macvlan" } })).find("-o parent=") != std::string::npos);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "ipvlan" }, { "parent", "eth9" }, { "ipvlan_mode", "l4" } })).find("l2, l3, l3s") != std::string::npos);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "macvlan" }, { "parent", "nosuch0" } })).find("does not exist") != std::string::npos);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "vxlan" } })).find("-o cnm.network=NAME") != std::string::npos);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "macvlan" }, { "parent", "eth9" }, { "bridge", "x" } })).find("unknown macvlan network option") != std::string::npos);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "ipvlan" }, { "parent", "eth9" }, { "macvlan_mode", "l2" } })).find("unknown ipvlan network option") != std::string::npos);
    CHECK(snapshot(f.tmp.path()) == before);
    CHECK(f.kernel.mutations() == mutations);
    // a VLAN parent made for a network whose create then fails goes again
    f.kernel.fail_at("create_child", 1);
    CHECK(f.err("NetworkDriver.CreateNetwork", create({ { "cnm.driver", "macvlan" }, { "parent", "eth9.20" } })).find("injected") != std::string::npos);
    CHECK_FALSE(f.host("eth9.20"));
    CHECK(snapshot(f.tmp.path()) == before);
}

TEST_CASE("shim admin: list shows both front-ends, gc removes endpoints whose sandbox is gone, dot draws the graph")
{
    Fixture f;
    f.create_network(nid, "10.213.50.0/24", { { "cnm.network", "adm" }, { "ipMasq", "true" } });
    // a Docker endpoint whose sandbox path does not exist (the container died with dockerd)
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.50.0/24","Address":""})");
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a["Address"]));
    f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", f.tmp.path() + "/no-such-netns" } }.dump());
    std::string docker_veth = f.docker_endpoint("adm", eid1).driver_state.value("hostVeth", "");
    REQUIRE(f.host(docker_veth));
    REQUIRE(f.host(container_link_name(eid1)));
    // a CNI endpoint in a live sandbox (this process's own netns)
    const std::string conf = R"({"cniVersion":"1.0.0","name":"adm","type":"bridge","ipam":{"type":"ipam","subnet":"10.213.50.0/24"}})";
    REQUIRE(f.cni_add(conf, "pod1", "/proc/self/ns/net").ok());
    // and a CNI endpoint whose netns is gone, with a MAC spoof check on its host veth
    const std::string guarded = R"({"cniVersion":"1.0.0","name":"adm","type":"bridge","macspoofchk":true,"ipam":{"type":"ipam","subnet":"10.213.50.0/24"}})";
    auto gone = f.cni_add(guarded, "pod2", f.tmp.path() + "/gone-netns");
    REQUIRE(gone.ok());
    std::string pod2_veth = gone->endpoint.driver_state.value("hostVeth", "");
    CHECK(f.kernel.mac_guards() == std::set<std::pair<std::string, std::string>> { { pod2_veth, gone->endpoint.mac } });
    CHECK(f.kernel.masquerades().size() == 3);
    f.kernel.remove_netns(f.tmp.path() + "/gone-netns"); // the kernel takes the veth along, not the firewall elements

    auto listing = list_state(*f.store);
    REQUIRE(listing.ok());
    auto table = list_table(*listing);
    CHECK(table.find("adm") != std::string::npos);
    CHECK(table.find("docker  8884321cade1") != std::string::npos);
    CHECK(table.find("cni     pod1") != std::string::npos);
    auto graph = dot(*listing);
    CHECK(graph.find("\"net:adm\" -> \"ep:adm/pod1@eth0\"") != std::string::npos);
    CHECK(graph.find("-> \"sb:no-such-netns\"") != std::string::npos);

    auto mutations = f.kernel.mutations();
    auto dry = gc(*f.store, &f.kernel, true);
    REQUIRE(dry.ok());
    CHECK((*dry)["removed"].size() == 2);
    CHECK(list_state(*f.store).value()["networks"][0]["endpoints"].size() == 3); // dry run: nothing gone
    CHECK(f.kernel.mutations() == mutations);
    auto done = gc(*f.store, &f.kernel, false);
    REQUIRE_MESSAGE(done.ok(), (done.ok() ? "" : done.error().msg + " " + done.error().details));
    std::set<std::string> removed;
    for (auto& r : (*done)["removed"])
        removed.insert(r["endpoint"].get<std::string>());
    CHECK(removed == std::set<std::string> { eid1, "pod2" });
    auto after = list_state(*f.store).value()["networks"][0]["endpoints"];
    REQUIRE(after.size() == 1);
    CHECK(after[0]["containerID"] == "pod1");
    // the Docker endpoint's links went; pod1's stay
    CHECK_FALSE(f.host(docker_veth));
    CHECK_FALSE(f.host(container_link_name(eid1)));
    CHECK(f.kernel.find(*f.kernel.ns_of("/proc/self/ns/net"), "eth0"));
    // every firewall element of the dead endpoints went: pod2's MAC spoof check too
    CHECK(f.kernel.mac_guards().empty());
    CHECK(f.kernel.masquerades().size() == 1);
    CHECK(f.kernel.masquerades().count(*IpAddr::parse("10.213.50.3")) == 1); // pod1's
    // pod2's lease went with it; Docker's stays for Docker's ReleaseAddress
    ipam::Pools pools(*f.store);
    auto leases = pools.leases(ipam::PoolId { "local", *IpNet::parse("10.213.50.0/24") });
    REQUIRE(leases.ok());
    std::set<std::string> holders;
    for (auto& l : *leases)
        holders.insert(l.owner.container_id);
    CHECK(holders == std::set<std::string> { "docker", "pod1" });
}

TEST_CASE("shim: a dual-stack network (docker network create --ipv6)")
{
    Fixture f;
    auto p4 = f.ok("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.51.0/24","V6":false})");
    auto p6 = f.ok("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"fd00:213:51::/64","V6":true})");
    CHECK(p6["PoolID"] == "local/fd00:213:51::/64");
    auto g4 = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.51.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}})");
    auto g6 = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/fd00:213:51::/64","Options":{"RequestAddressType":"com.docker.network.gateway"}})");
    CHECK(g6["Address"] == "fd00:213:51::1/64");
    f.ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
        { "Options", { { "com.docker.network.enable_ipv6", true }, { "com.docker.network.generic", { { "cnm.network", "ds" } } } } },
        { "IPv4Data", { { { "AddressSpace", "local" }, { "Gateway", g4["Address"] }, { "Pool", "10.213.51.0/24" } } } },
        { "IPv6Data", { { { "AddressSpace", "local" }, { "Gateway", g6["Address"] }, { "Pool", "fd00:213:51::/64" } } } } }.dump());
    const FakeLink* bridge = f.host("br-da2dbabbc001");
    REQUIRE(bridge);
    CHECK(has_address(bridge, "10.213.51.1/24"));
    CHECK(has_address(bridge, "fd00:213:51::1/64"));
    CHECK(f.kernel.sysctl(host_ns, "net/ipv6/conf/all/forwarding") == std::optional<std::string>("1"));
    auto a4 = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.51.0/24"})");
    auto a6 = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/fd00:213:51::/64"})");
    CHECK(a6["Address"] == "fd00:213:51::2/64");
    f.ok("NetworkDriver.CreateEndpoint", Json { { "NetworkID", nid }, { "EndpointID", eid1 },
        { "Interface", { { "Address", a4["Address"] }, { "AddressIPv6", a6["Address"] }, { "MacAddress", "" } } } }.dump());
    auto join = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/ds" } }.dump());
    CHECK(join["Gateway"] == "10.213.51.1");
    CHECK(join["GatewayIPv6"] == "fd00:213:51::1");

    // ReleaseAddress of the running container's IPv6 address (dockerd after a restart) keeps its
    // lease, in this shim and in a new one whose hint is read from the records; once the endpoint
    // is gone it frees it.
    ipam::Pools pools(*f.store);
    auto id6 = *ipam::PoolId::parse("local/fd00:213:51::/64");
    auto a6ip = *IpAddr::parse("fd00:213:51::2");
    const std::string release6 = R"({"PoolID":"local/fd00:213:51::/64","Address":"fd00:213:51::2"})";
    f.ok("IpamDriver.ReleaseAddress", release6);
    CHECK(pools.owner_of(id6, a6ip).value());
    DockerApi restarted { f.counting, f.kernel };
    CHECK(restarted.handle("IpamDriver.ReleaseAddress", release6).status == 200);
    CHECK(pools.owner_of(id6, a6ip).value());
    CHECK(restarted.handle("NetworkDriver.Leave", Json { { "NetworkID", nid }, { "EndpointID", eid1 } }.dump()).status == 200);
    CHECK(restarted.handle("NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", eid1 } }.dump()).status == 200);
    CHECK(restarted.handle("IpamDriver.ReleaseAddress", release6).status == 200);
    CHECK_FALSE(pools.owner_of(id6, a6ip).value());
}

TEST_CASE("shim: a Join on a bridge network with a VLAN and port isolation configures the port exactly as a CNI ADD does")
{
    Fixture f;
    f.create_network(nid, "10.213.55.0/24", { { "cnm.network", "vl" }, { "vlan", "10" }, { "portIsolation", "true" } });
    auto net = f.registry.load_network("vl");
    REQUIRE(net.ok());
    REQUIRE(net->ok());
    CHECK(net->record.options["vlan"] == 10);
    CHECK(net->record.options["portIsolation"] == true);
    const FakeLink* bridge = f.host("br-da2dbabbc001");
    REQUIRE(bridge);
    CHECK(bridge->vlan_filtering);
    int bridge_index = bridge->link.index;

    f.run(nid, eid1, "10.213.55.0/24", "vl1");
    const FakeLink* docker_port = f.host(f.docker_endpoint("vl", eid1).driver_state.value("hostVeth", ""));
    REQUIRE(docker_port);
    CHECK(docker_port->link.master == bridge_index);
    CHECK(docker_port->vlans == std::map<uint16_t, bool> { { 10, true } }); // PVID 10 untagged, VLAN 1 gone
    CHECK(docker_port->pvid() == std::optional<uint16_t>(10));
    CHECK(docker_port->isolated);
    CHECK_FALSE(docker_port->hairpin);

    // a CNI ADD on the same network (its conf names neither key: they are the network's)
    auto cni = f.cni_add(R"({"cniVersion":"1.0.0","name":"vl","type":"bridge","ipam":{"type":"ipam","subnet":"10.213.55.0/24"}})", "pod1", "/run/netns/vl-pod1");
    REQUIRE_MESSAGE(cni.ok(), (cni.ok() ? "" : cni.error().msg));
    const FakeLink* cni_port = f.host(cni->endpoint.driver_state.value("hostVeth", ""));
    REQUIRE(cni_port);
    CHECK(cni_port->link.master == bridge_index);
    CHECK(cni_port->vlans == docker_port->vlans);
    CHECK(cni_port->isolated == docker_port->isolated);
    CHECK(cni_port->hairpin == docker_port->hairpin);
    CHECK(cni_port->up() == docker_port->up());
}

TEST_CASE("shim: endpoint ids that share a prefix get their own links; deleting one leaves the other's")
{
    Fixture f;
    const std::string a = "0123456789a" + std::string(53, '1');
    const std::string b = "0123456789a" + std::string(53, '2');
    CHECK(container_link_name(a) != container_link_name(b));
    CHECK(container_link_name(a) == container_link_name(std::string(a))); // deterministic
    CHECK(container_link_name(a).size() == 14);
    CHECK(container_link_name(a).starts_with("cnc"));
    f.create_network(nid, "10.213.56.0/24", { { "cnm.network", "pfx" } });
    auto ja = f.run(nid, a, "10.213.56.0/24", "sa");
    auto jb = f.run(nid, b, "10.213.56.0/24", "sb");
    std::string link_a = ja["InterfaceName"]["SrcName"], link_b = jb["InterfaceName"]["SrcName"];
    CHECK(link_a != link_b);
    std::string veth_b = f.docker_endpoint("pfx", b).driver_state.value("hostVeth", "");
    REQUIRE(f.host(link_a));
    REQUIRE(f.host(link_b));
    CHECK(f.host_links("veth").size() == 4);

    f.ok("NetworkDriver.Leave", ids(nid, a));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, a));
    CHECK_FALSE(f.host(link_a));
    const FakeLink* still = f.host(link_b);
    REQUIRE(still);
    CHECK(still->link.peer_index == f.host(veth_b)->link.index);
    CHECK(f.host(veth_b)->link.master == f.host("br-da2dbabbc001")->link.index);
    CHECK(f.host_links("veth").size() == 2);
    auto info = f.ok("NetworkDriver.EndpointOperInfo", ids(nid, b));
    CHECK(info["Value"]["cnm.containerVeth"] == link_b);
}

TEST_CASE("shim: every field of every recorded request, given every wrong type, is a clear error or a success — never a crash")
{
    Fixture f;
    f.create_network(nid, "10.213.52.0/24", { { "cnm.network", "types" } });
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.52.0/24","Address":""})");
    // One well-formed request per method, as Docker sends them (the trace's shapes).
    std::vector<std::pair<std::string, Json>> requests = {
        { "IpamDriver.RequestPool", Json::parse(R"({"AddressSpace":"local","Pool":"10.213.53.0/24","SubPool":"","Options":{},"V6":false})") },
        { "IpamDriver.RequestAddress", Json::parse(R"({"PoolID":"local/10.213.52.0/24","Address":"","Options":{"RequestAddressType":"com.docker.network.gateway"}})") },
        { "IpamDriver.ReleaseAddress", Json::parse(R"({"PoolID":"local/10.213.52.0/24","Address":"10.213.52.9"})") },
        { "IpamDriver.ReleasePool", Json::parse(R"({"PoolID":"local/10.213.59.0/24"})") },
        { "NetworkDriver.CreateNetwork", Json::parse(R"({"NetworkID":"feedbeef","Options":{"com.docker.network.enable_ipv6":false,"com.docker.network.generic":{"cnm.network":"types2","mtu":"1400"}},"IPv4Data":[{"AddressSpace":"local","Gateway":"10.213.54.1/24","Pool":"10.213.54.0/24"}],"IPv6Data":[]})") },
        { "NetworkDriver.CreateEndpoint", Json { { "NetworkID", nid }, { "EndpointID", "e9" }, { "Interface", { { "Address", a["Address"] }, { "AddressIPv6", "" }, { "MacAddress", "" } } },
                                                 { "Options", { { "com.docker.network.portmap", Json::array() } } } } },
        { "NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", "e9" }, { "SandboxKey", "/run/docker/netns/t1" }, { "Options", Json::object() } } },
        { "NetworkDriver.ProgramExternalConnectivity", Json { { "NetworkID", nid }, { "EndpointID", "e9" },
                                                              { "Options", { { "com.docker.network.portmap", Json::parse(R"([{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":18080,"HostPortEnd":18080}])") } } } } },
        { "NetworkDriver.EndpointOperInfo", Json { { "NetworkID", nid }, { "EndpointID", "e9" } } },
        { "NetworkDriver.RevokeExternalConnectivity", Json { { "NetworkID", nid }, { "EndpointID", "e9" } } },
        { "NetworkDriver.Leave", Json { { "NetworkID", nid }, { "EndpointID", "e9" } } },
        { "NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", "e9" } } },
        { "NetworkDriver.DeleteNetwork", Json { { "NetworkID", "feedbeef" } } },
    };
    const std::vector<Json> wrong = { nullptr, 7, -1, 3.5, true, Json::array(), Json::object(), "", std::string(5000, 'x'), "../../etc", Json::array({ 1, "a" }) };
    size_t calls = 0;
    // Every leaf path of a request (objects are walked, arrays by index), replaced in turn.
    std::function<void(const std::string&, const Json&, const Json::json_pointer&)> walk = [&](const std::string& method, const Json& whole, const Json::json_pointer& at) {
        const Json& here = whole.at(at);
        for (auto& w : wrong) {
            Json mutated = whole;
            mutated[at] = w;
            Reply r;
            try {
                r = f.api.handle(method, mutated.dump());
            } catch (const std::exception& e) {
                FAIL_CHECK(method << " " << at.to_string() << " = " << w.dump().substr(0, 40) << " threw " << e.what());
                continue;
            }
            ++calls;
            INFO(method << " " << at.to_string() << " = " << w.dump().substr(0, 40) << " -> " << r.body.dump().substr(0, 200));
            CHECK((r.status == 200 || r.status == 500));
            if (r.status == 500)
                CHECK_FALSE(r.body.value("Err", "").empty());
        }
        if (here.is_object())
            for (auto& [k, v] : here.items())
                walk(method, whole, at / k);
        else if (here.is_array())
            for (size_t i = 0; i < here.size(); ++i)
                walk(method, whole, at / i);
    };
    for (auto& [method, body] : requests) {
        walk(method, body, Json::json_pointer(""));
        // and the well-formed request still behaves after all that
        Reply r = f.api.handle(method, body.dump());
        CHECK((r.status == 200 || r.status == 500));
    }
    CHECK(calls > 500);
}

TEST_CASE("shim: Docker leases — the last ReleasePool frees them and the gateway, gc reclaims those nothing refers to, ReleaseAddress keeps a live endpoint's")
{
    Fixture f;
    const std::string pool_body = Json { { "AddressSpace", "local" }, { "Pool", "10.213.52.0/24" }, { "Options", Json::object() }, { "V6", false } }.dump();
    auto pool = f.ok("IpamDriver.RequestPool", pool_body)["PoolID"].get<std::string>();
    auto gw = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", "" }, { "Options", { { "RequestAddressType", "com.docker.network.gateway" } } } }.dump());
    // A shim killed between RequestAddress and CreateEndpoint: a lease nothing refers to.
    auto orphan = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", "" } }.dump())["Address"].get<std::string>();
    std::string orphan_ip = orphan.substr(0, orphan.find('/'));
    ipam::Pools pools(*f.store);
    auto id = *ipam::PoolId::parse(pool);
    REQUIRE(pools.owner_of(id, *IpAddr::parse(orphan_ip)).value());

    // Young: gc leaves it (a CreateEndpoint may still come); past the grace, --dry-run lists it, gc frees it.
    auto young = gc(*f.store, &f.kernel, false, 600);
    REQUIRE(young.ok());
    CHECK((*young)["dockerLeases"].empty());
    auto dry = gc(*f.store, &f.kernel, true, 0);
    REQUIRE(dry.ok());
    REQUIRE((*dry)["dockerLeases"].size() == 1);
    CHECK((*dry)["dockerLeases"][0]["address"] == orphan_ip);
    CHECK(pools.owner_of(id, *IpAddr::parse(orphan_ip)).value()); // dry run: still there
    auto done = gc(*f.store, &f.kernel, false, 0);
    REQUIRE(done.ok());
    CHECK((*done)["dockerLeases"].size() == 1);
    CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(orphan_ip)).value());
    CHECK(pools.gateway(id).value()); // the gateway is no orphan

    // A live endpoint's address survives a ReleaseAddress (dockerd releasing a stale endpoint's
    // after a restart); once the endpoint is gone, ReleaseAddress frees it.
    f.ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid }, { "Options", { { "com.docker.network.generic", Json::object() } } },
                                               { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.52.0/24" }, { "Gateway", gw["Address"] } } } } }.dump());
    auto a = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", "" } }.dump())["Address"].get<std::string>();
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a));
    std::string ip = a.substr(0, a.find('/'));
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool }, { "Address", ip } }.dump());
    CHECK(pools.owner_of(id, *IpAddr::parse(ip)).value());
    auto none = gc(*f.store, &f.kernel, false, 0);
    REQUIRE(none.ok());
    CHECK((*none)["dockerLeases"].empty()); // referred to by the endpoint
    f.ok("NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", eid1 } }.dump());
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool }, { "Address", ip } }.dump());
    CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(ip)).value());

    // Docker's last ReleasePool frees every Docker lease of the pool and its gateway reservation.
    auto left = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", "" } }.dump())["Address"].get<std::string>();
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid } }.dump());
    f.ok("IpamDriver.ReleasePool", Json { { "PoolID", pool } }.dump());
    CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(left.substr(0, left.find('/')))).value());
    CHECK_FALSE(pools.exists(id).value());
}

TEST_CASE("shim: ReleaseAddress reads one record, however many endpoints the pool has, and still keeps only a live endpoint's address")
{
    Fixture f;
    const std::string subnet = "10.213.57.0/24";
    const std::string pool = "local/" + subnet;
    f.create_network(nid, subnet, Json::object());
    auto network = f.api.bound_network(nid).value();
    REQUIRE(network);
    ipam::Pools pools(*f.store);
    auto id = *ipam::PoolId::parse(pool);
    auto call = [&](DockerApi& api, const std::string& method, const std::string& body) {
        Reply r = api.handle(method, body);
        INFO(method << " " << body << " -> " << r.body.dump());
        CHECK(r.status == 200);
        return r.body;
    };
    int next = 0;
    // A container started (its address, its endpoint); returns (endpoint id, address).
    auto start = [&](DockerApi& api) {
        char eid[65];
        std::snprintf(eid, sizeof eid, "%060d%04x", 0, next++);
        std::string a = call(api, "IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", "" } }.dump())["Address"];
        call(api, "NetworkDriver.CreateEndpoint", ep_body(nid, eid, a));
        return std::pair { std::string(eid), a.substr(0, a.find('/')) };
    };
    auto release = [&](DockerApi& api, const std::string& ip) {
        f.counting.reads = 0;
        call(api, "IpamDriver.ReleaseAddress", Json { { "PoolID", pool }, { "Address", ip } }.dump());
        return f.counting.reads;
    };
    // A container stopped, as Docker does it: DeleteEndpoint, then ReleaseAddress. Returns the
    // reads the ReleaseAddress made.
    auto stop = [&](const std::pair<std::string, std::string>& c) {
        f.ok("NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", c.first } }.dump());
        int reads = release(f.api, c.second);
        CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(c.second)).value());
        return reads;
    };

    auto live = start(f.api);
    stop(start(f.api)); // the first ReleaseAddress of a shim process reads the records once
    int few = stop(start(f.api));
    for (int i = 0; i < 40; ++i)
        start(f.api);
    int many = stop(start(f.api));
    INFO("reads of a ReleaseAddress with 2 endpoints: " << few << ", with 42: " << many);
    CHECK(many == few);
    CHECK(many <= 3);

    // A live endpoint's address stays (dockerd releasing a stale endpoint's after a restart): in
    // this shim, and in a shim started afresh, which has to read the records for it.
    CHECK(release(f.api, live.second) <= 3);
    CHECK(pools.owner_of(id, *IpAddr::parse(live.second)).value());
    DockerApi restarted { f.counting, f.kernel };
    CHECK(release(restarted, live.second) > 40);
    CHECK(pools.owner_of(id, *IpAddr::parse(live.second)).value());
    // An endpoint created after the restart is known without reading the records again.
    auto later = start(restarted);
    CHECK(release(restarted, later.second) <= 3);
    CHECK(pools.owner_of(id, *IpAddr::parse(later.second)).value());
    // An endpoint gone behind the shim's back (its record removed, as gc does): its address is freed.
    REQUIRE(f.registry.remove_endpoint(*network, endpoint_key_of(live.first)));
    CHECK(release(restarted, live.second) <= 3);
    CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(live.second)).value());

    // Two endpoints given one address (Docker never asks that, the shim does not refuse it): the
    // address stays leased until neither holds it, whichever goes first.
    auto shared = start(restarted);
    std::string twin = std::string(60, '0') + "beef";
    call(restarted, "NetworkDriver.CreateEndpoint", ep_body(nid, twin, shared.second + "/24"));
    call(restarted, "NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", twin } }.dump());
    release(restarted, shared.second);
    CHECK(pools.owner_of(id, *IpAddr::parse(shared.second)).value());
    call(restarted, "NetworkDriver.DeleteEndpoint", Json { { "NetworkID", nid }, { "EndpointID", shared.first } }.dump());
    release(restarted, shared.second);
    CHECK_FALSE(pools.owner_of(id, *IpAddr::parse(shared.second)).value());
}

TEST_CASE("shim: RequestPool finds the CNI network of a subnet through the subnet index, whatever the networks on the host, and rebuilds the index once per process")
{
    Fixture f;
    auto conf = [](int i) {
        return Json { { "cniVersion", "1.0.0" }, { "name", "ix" + std::to_string(i) }, { "type", "bridge" },
            { "bridge", "cnmix" + std::to_string(i) }, { "ipam", { { "type", "ipam" }, { "subnet", "10.213." + std::to_string(100 + i) + ".0/24" } } } }
            .dump();
    };
    auto add = [&](int i) {
        auto added = f.cni_add(conf(i), "pod" + std::to_string(i), "/run/netns/ix" + std::to_string(i));
        REQUIRE(added.ok());
    };
    // RequestPool and ReleasePool for a subnet; returns the pool and the reads RequestPool made.
    auto request = [&](DockerApi& api, const std::string& subnet) {
        f.counting.reads = 0;
        Reply r = api.handle("IpamDriver.RequestPool", Json { { "AddressSpace", "local" }, { "Pool", subnet }, { "V6", false } }.dump());
        int reads = f.counting.reads;
        INFO(subnet << " -> " << r.body.dump());
        CHECK(r.status == 200);
        std::string pool = r.body.value("PoolID", "");
        CHECK(api.handle("IpamDriver.ReleasePool", Json { { "PoolID", pool } }.dump()).status == 200);
        return std::pair { pool, reads };
    };
    add(0);
    add(1);
    auto [first, first_reads] = request(f.api, "10.213.101.0/24"); // builds the index: reads every record
    CHECK(first == "cni:ix1/10.213.101.0/24");
    int few = request(f.api, "10.213.101.0/24").second;
    for (int i = 2; i < 40; ++i)
        add(i);
    auto [later, many] = request(f.api, "10.213.139.0/24"); // made after the index was built: no rescan
    CHECK(later == "cni:ix39/10.213.139.0/24");
    INFO("reads of a RequestPool with 2 CNI networks: " << few << ", with 40: " << many);
    CHECK(many == few);
    CHECK(many <= 8);
    CHECK(request(f.api, "10.213.99.0/24").first == "local/10.213.99.0/24"); // nobody's subnet

    // A record without its entry (a power failure, a network an earlier build made): a new shim
    // process rebuilds the entry from the records, reading them all once.
    REQUIRE(f.store->remove({ "subnets", "10.213.120.0_24", "ix20" }));
    REQUIRE(f.store->remove_dir({ "subnets", "10.213.120.0_24" }));
    DockerApi restarted { f.counting, f.kernel };
    auto [rebuilt, rebuild_reads] = request(restarted, "10.213.120.0/24");
    CHECK(rebuilt == "cni:ix20/10.213.120.0/24");
    CHECK(rebuild_reads > 40);
    CHECK(f.store->exists({ "subnets", "10.213.120.0_24", "ix20" }).value());
    CHECK(request(restarted, "10.213.120.0/24").second == few);

    // A stale entry (its network gone, the entry left by a crash) is only a candidate: the record
    // decides.
    REQUIRE(f.store->create({ "subnets", "10.213.98.0_24", "gone" }, Json { { "network", "gone" } }, Durability::PerBoot));
    CHECK(request(restarted, "10.213.98.0/24").first == "local/10.213.98.0/24");

    // The last DEL of a CNI network removes its entry and the subnet's directory with it.
    REQUIRE(f.cni_del(conf(5), "pod5", "/run/netns/ix5"));
    REQUIRE(f.store->sync());
    CHECK(f.registry.load_network("ix5").value().absent());
    CHECK_FALSE(f.store->exists({ "subnets", "10.213.105.0_24" }).value());
    CHECK(request(restarted, "10.213.105.0/24").first == "local/10.213.105.0/24");
    // Two CNI networks on one subnet: an error naming both, as before the index.
    auto twin = f.cni_add(Json { { "cniVersion", "1.0.0" }, { "name", "ixtwin" }, { "type", "bridge" }, { "bridge", "cnmixtwin" },
                              { "ipam", { { "type", "ipam" }, { "subnet", "10.213.106.0/24" } } } }
                              .dump(),
        "podtwin", "/run/netns/ixtwin");
    REQUIRE(twin.ok());
    Reply both = restarted.handle("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.106.0/24","V6":false})");
    CHECK(both.status == 500);
    CHECK(both.body.value("Err", "").find("several CNI networks (") != std::string::npos);
    CHECK(both.body.value("Err", "").find("ix6") != std::string::npos);
    CHECK(both.body.value("Err", "").find("ixtwin") != std::string::npos);
}

TEST_CASE("shim: a directory another process removes and makes again is read afresh at the next call")
{
    Fixture f;
    // The plugins: another process, with a store of its own on the same state directory.
    auto other = FileStore::open(f.tmp.path()).release_value();
    Registry other_registry { *other };
    auto conf = [](const std::string& name) {
        return Json { { "cniVersion", "1.0.0" }, { "name", name }, { "type", "bridge" }, { "bridge", "cnm" + name },
            { "ipam", { { "type", "ipam" }, { "subnet", "10.213.97.0/24" } } } }
            .dump();
    };
    auto run = [&](const std::string& command, const std::string& name) {
        std::string netns = "/run/netns/" + name;
        if (command == "ADD") {
            auto added = f.cni_add(conf(name), "pod-" + name, netns, "eth0", &other_registry);
            REQUIRE_MESSAGE(added.ok(), (added.ok() ? "" : added.error().msg));
        } else {
            auto gone = f.cni_del(conf(name), "pod-" + name, netns, "eth0", &other_registry);
            REQUIRE_MESSAGE(gone.ok(), (gone.ok() ? "" : gone.error().msg));
        }
    };
    auto pool = [&]() {
        Reply r = f.api.handle("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.97.0/24","V6":false})");
        INFO(r.body.dump());
        CHECK(r.status == 200);
        std::string id = r.body.value("PoolID", "");
        CHECK(f.api.handle("IpamDriver.ReleasePool", Json { { "PoolID", id } }.dump()).status == 200);
        return id;
    };
    run("ADD", "first");
    CHECK(pool() == "cni:first/10.213.97.0/24");
    // The network goes with its last DEL (its directory and the subnet's index directory too),
    // and another CNI network is made on the same subnet: new directories.
    run("DEL", "first");
    CHECK(pool() == "local/10.213.97.0/24");
    run("ADD", "second");
    CHECK(pool() == "cni:second/10.213.97.0/24");
    run("DEL", "second");
    run("ADD", "first");
    CHECK(pool() == "cni:first/10.213.97.0/24");
}

TEST_CASE("shim: the subnet index's rebuild writes a network's entries under its lock, so a last DEL between its reads leaves none")
{
    Fixture f;
    auto other = FileStore::open(f.tmp.path()).release_value(); // the plugins' process
    Registry other_registry { *other };
    std::string conf = Json { { "cniVersion", "1.0.0" }, { "name", "late" }, { "type", "bridge" }, { "bridge", "cnmlate" },
        { "ipam", { { "type", "ipam" }, { "subnet", "10.213.96.0/24" } } } }
                           .dump();
    REQUIRE(f.cni_add(conf, "pod-late", "/run/netns/late", "eth0", &other_registry).ok());
    const Key entry { "subnets", "10.213.96.0_24", "late" };
    REQUIRE(f.store->exists(entry).value());
    // As after a power failure: the record without its entry, so the shim's rebuild writes it.
    REQUIRE(f.store->remove(entry));
    REQUIRE(f.store->remove_dir({ "subnets", "10.213.96.0_24" }));
    // The network's last DEL runs right after the shim's first read of its record.
    bool deleted = false;
    f.counting.after_get = [&](const Key& key) {
        if (!deleted && key == Key { "networks", "late", "network.json" }) {
            deleted = true;
            auto gone = f.cni_del(conf, "pod-late", "/run/netns/late", "eth0", &other_registry);
            REQUIRE_MESSAGE(gone.ok(), (gone.ok() ? "" : gone.error().msg));
        }
    };
    Reply r = f.api.handle("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.96.0/24","V6":false})");
    INFO(r.body.dump());
    CHECK(r.status == 200);
    CHECK(deleted);
    CHECK(r.body.value("PoolID", "") == "local/10.213.96.0/24");
    CHECK_FALSE(f.store->exists(entry).value()); // written from the first read, it named a network gone
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/subnets/10.213.96.0_24"));
    CHECK_FALSE(std::filesystem::exists(f.tmp.path() + "/networks/late")); // nor left the directory its lock made
    f.counting.after_get = nullptr;
    CHECK(f.api.handle("IpamDriver.ReleasePool", Json { { "PoolID", "local/10.213.96.0/24" } }.dump()).status == 200);
}

TEST_CASE("a CNI network's first ADD that cannot write its record leaves no pool user and no index entry, so Docker gets the pool")
{
    Fixture f;
    // Dual-stack: two pools, the IPv4 one joined first.
    std::string conf = R"({"cniVersion":"1.0.0","name":"full","type":"bridge","bridge":"cnmfull","ipam":{"type":"ipam",)"
                       R"("ranges":[[{"subnet":"10.213.98.0/24"}],[{"subnet":"fd00:213:98::/64"}]]}})";
    ipam::PoolId pool4 { "cni:full", *IpNet::parse("10.213.98.0/24") }, pool6 { "cni:full", *IpNet::parse("fd00:213:98::/64") };
    Registry faulty { f.counting };
    // Each write the first ADD makes before its record: the pools' users (the second pool's with
    // the first one's joined), the subnets' entries (the second with the first one's written),
    // the record.
    std::pair<std::string, std::function<bool(const Key&)>> faults[] = {
        { "the first pool", [](const Key& k) { return k.back() == "pool.json" && k[2].starts_with("10.213"); } },
        { "the second pool", [](const Key& k) { return k.back() == "pool.json" && k[2].starts_with("fd00"); } },
        { "the first index entry", [](const Key& k) { return k.front() == "subnets"; } },
        { "the second index entry", [](const Key& k) { return k.front() == "subnets" && k[1].starts_with("fd00"); } },
        { "the record", [](const Key& k) { return k.back() == "network.json"; } },
    };
    for (auto& [what, fault] : faults) {
        INFO("failing write: " << what);
        f.counting.fail_write = fault;
        auto added = f.cni_add(conf, "pod1", "/run/netns/full1", "eth0", &faulty);
        REQUIRE_FALSE(added.ok());
        CHECK(added.error().details.find("a test's fault") != std::string::npos);
        f.counting.fail_write = nullptr;
        CHECK_FALSE(f.store->exists(Registry::network_key("full")).value());
        CHECK_FALSE(f.store->exists(pool4.doc()).value());
        CHECK_FALSE(f.store->exists(pool6.doc()).value());
        CHECK(f.registry.networks_with_subnet("10.213.98.0/24").value().empty());
        CHECK(f.registry.networks_with_subnet("fd00:213:98::/64").value().empty());
        // Docker's network on that subnet gets a pool of its own, not an error naming "full".
        Reply r = f.api.handle("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.98.0/24","V6":false})");
        INFO(r.body.dump());
        REQUIRE(r.status == 200);
        CHECK(r.body.value("PoolID", "") == "local/10.213.98.0/24");
        REQUIRE(f.api.handle("IpamDriver.ReleasePool", Json { { "PoolID", r.body["PoolID"] } }.dump()).status == 200);
    }
    // Without the fault the same ADD works, and the shim finds the network through the index.
    auto added = f.cni_add(conf, "pod1", "/run/netns/full1", "eth0", &faulty);
    REQUIRE_MESSAGE(added.ok(), (added.ok() ? "" : added.error().msg));
    Reply r = f.api.handle("IpamDriver.RequestPool", R"({"AddressSpace":"local","Pool":"10.213.98.0/24","V6":false})");
    CHECK(r.body.value("PoolID", "") == "cni:full/10.213.98.0/24");
}

TEST_CASE("shim: RequestPool names the gateway, so Docker makes no gateway RequestAddress; a --gateway still gets its own")
{
    Fixture f;
    ipam::Pools pools(*f.store);
    auto request_pool = [&](const std::string& subnet) {
        return f.ok("IpamDriver.RequestPool", Json { { "AddressSpace", "local" }, { "Pool", subnet }, { "Options", Json::object() }, { "V6", false } }.dump());
    };
    auto request = [&](const std::string& pool, const std::string& address) {
        return f.call("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", address } }.dump());
    };
    auto gateway_request = [&](const std::string& pool, const std::string& address) {
        return f.call("IpamDriver.RequestAddress", Json { { "PoolID", pool }, { "Address", address }, { "Options", { { "RequestAddressType", "com.docker.network.gateway" } } } }.dump());
    };

    // A new pool: the first host is named, and recorded in the same write…
    auto pool = request_pool("10.213.53.0/24");
    CHECK(pool["Data"] == Json { { "com.docker.network.gateway", "10.213.53.1/24" } });
    auto id = *ipam::PoolId::parse(pool["PoolID"].get<std::string>());
    CHECK(pools.gateway(id).value() == IpAddr::parse("10.213.53.1"));
    // …so no endpoint gets it before the network is made (nor ever, on a network of Docker's own
    // driver with only our IPAM, which makes no CreateNetwork here): refused, and .2 comes first.
    CHECK(request(pool["PoolID"], "10.213.53.1").status == 500);
    auto a = request(pool["PoolID"], "");
    CHECK(a.status == 200);
    CHECK(a.body["Address"] == "10.213.53.2/24");
    // The CreateNetwork Docker then sends carries the gateway: the bridge gets it, it stays.
    f.ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid }, { "Options", { { "com.docker.network.generic", Json::object() } } },
                                               { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.53.0/24" }, { "Gateway", "10.213.53.1/24" } } } } }.dump());
    CHECK(pools.gateway(id).value() == IpAddr::parse("10.213.53.1"));
    CHECK(has_address(f.host("br-da2dbabbc001"), "10.213.53.1/24"));
    CHECK(gateway_request(pool["PoolID"], "10.213.53.254").status == 500); // a network uses it now
    // Held again (a second network on the subnet), it names the recorded gateway.
    CHECK(request_pool("10.213.53.0/24")["Data"] == Json { { "com.docker.network.gateway", "10.213.53.1/24" } });

    // --gateway: Docker asks for it although RequestPool named the first host; it becomes the
    // pool's, and the first host is an address like any other.
    const std::string other = "c0ffee0000000000000000000000000000000000000000000000000000000001";
    f.create_network(other, "10.213.54.0/24", Json::object(), "10.213.54.254");
    auto id54 = *ipam::PoolId::parse("local/10.213.54.0/24");
    CHECK(pools.gateway(id54).value() == IpAddr::parse("10.213.54.254"));
    CHECK(has_address(f.host("br-c0ffee000000"), "10.213.54.254/24"));
    CHECK(request("local/10.213.54.0/24", "10.213.54.1").body["Address"] == "10.213.54.1/24");
    CHECK(request("local/10.213.54.0/24", "10.213.54.254").status == 500);

    // A pool Docker already holds for a network of Docker's own driver (no CreateNetwork here)
    // gave that network the first host: a second network cannot take another.
    request_pool("10.213.55.0/24");
    CHECK(request_pool("10.213.55.0/24")["Data"] == Json { { "com.docker.network.gateway", "10.213.55.1/24" } });
    auto refused = gateway_request("local/10.213.55.0/24", "10.213.55.254");
    CHECK(refused.status == 500);
    CHECK(refused.body.value("Err", "").find("has gateway 10.213.55.1") != std::string::npos);
    CHECK(gateway_request("local/10.213.55.0/24", "").body["Address"] == "10.213.55.1/24");

    // A /32 has no host to name: Docker's RequestAddress decides, as before.
    CHECK(request_pool("10.213.56.7/32")["Data"] == Json::object());

    // A CNI network that joins such a pool later with a gateway of its own (in Docker's address
    // space) does not free the first host, which that Docker network's bridge has: neither the
    // CNI ADDs nor Docker's requests ever get it.
    auto held = *ipam::PoolId::parse(request_pool("10.213.57.0/24")["PoolID"].get<std::string>());
    const std::string conf = R"({"cniVersion":"1.0.0","name":"late","type":"bridge","bridge":"cnmlate0",
        "ipam":{"type":"ipam","addressSpace":"local","ranges":[[{"subnet":"10.213.57.0/24","gateway":"10.213.57.254"}]]}})";
    for (int i = 0; i < 3; ++i) {
        auto added = f.cni_add(conf, "late" + std::to_string(i), "/run/netns/late" + std::to_string(i));
        REQUIRE_MESSAGE(added.ok(), (added.ok() ? "" : added.error().msg));
        CHECK(added->endpoint.addresses.front().address.addr != *IpAddr::parse("10.213.57.1"));
    }
    CHECK(pools.gateway(held).value() == IpAddr::parse("10.213.57.1"));
    CHECK(request("local/10.213.57.0/24", "10.213.57.1").status == 500);
    CHECK(request("local/10.213.57.0/24", "").body["Address"] != "10.213.57.1/24");
}

TEST_CASE("shim: a VLAN parent the shim made is gone after a reboot; the next Join makes it again")
{
    Fixture f;
    f.kernel.add_link(host_ns, "eth9");
    f.create_network(nid, "10.213.53.0/24", { { "cnm.driver", "macvlan" }, { "parent", "eth9.11" }, { "cnm.network", "rb" } });
    REQUIRE(f.host("eth9.11"));
    auto a = f.ok("IpamDriver.RequestAddress", R"({"PoolID":"local/10.213.53.0/24","Address":""})");
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a["Address"]));
    // The reboot: the kernel's links are gone, the state dir is kept.
    REQUIRE(f.kernel.delete_link(host_ns, f.host("eth9.11")->link.index).ok());
    REQUIRE_FALSE(f.host("eth9.11"));
    auto join = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/rb1" } }.dump());
    const FakeLink* vlan = f.host("eth9.11");
    REQUIRE(vlan);
    CHECK(vlan->vid == 11);
    CHECK(f.host(join["InterfaceName"]["SrcName"].get<std::string>()));
}

TEST_CASE("shim: vxlan options of docker network create (-o) are decoded, or refused naming why")
{
    auto ok = parse_network_options({ { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "vni", "42" }, { "com.docker.network.bridge.name", "vxb0" },
        { "ipMasq", "true" }, { "com.docker.network.driver.mtu", "1400" }, { "underlay", "u0" } });
    REQUIRE(ok.ok());
    CHECK(ok->driver == "vxlan");
    CHECK(ok->name == std::optional<std::string>("dkvx"));
    CHECK(ok->keys == Json { { "vni", 42 }, { "bridge", "vxb0" }, { "ipMasq", true }, { "mtu", 1400 }, { "underlay", "u0" } });

    auto refused = [](const Json& generic) {
        auto r = parse_network_options(generic);
        REQUIRE(!r.ok());
        CHECK(r.error().code == Code::InvalidConfig);
        return r.error().msg + " " + r.error().details;
    };
    CHECK(refused({ { "cnm.driver", "vxlan" } }).find("-o cnm.network=NAME") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "subnet", "10.213.184.0/22" } }).find("--subnet") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "parent", "eth0" } }).find("unknown vxlan network option \"parent\"") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "vni", "forty" } }).find("not a non-negative integer") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "ipMasq", "maybe" } }).find("not a boolean") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "vxlan" }, { "cnm.network", "-bad" } }).find("not a valid network name") != std::string::npos);
    CHECK(refused({ { "cnm.driver", "geneve" } }).find("bridge, macvlan, ipvlan or vxlan") != std::string::npos);
}

TEST_CASE("shim: --ipam-opt of a cluster pool are decoded, or refused naming why")
{
    auto plain = parse_pool_options({ { "cnm.network", "shared" } });
    REQUIRE(plain.ok());
    CHECK(plain->network == std::optional<std::string>("shared"));
    CHECK(!plain->driver);
    CHECK(plain->facts.empty());
    CHECK(parse_pool_options(Json()).ok());

    auto vx = parse_pool_options({ { "cnm.network", "dkvx" }, { "cnm.driver", "vxlan" }, { "vni", "4184" }, { "blockSize", "28" }, { "port", "8472" }, { "mtu", "1400" } });
    REQUIRE(vx.ok());
    CHECK(vx->driver == std::optional<std::string>("vxlan"));
    CHECK(vx->facts == Json { { "vni", 4184 }, { "blockSize", 28 }, { "port", 8472 }, { "mtu", 1400 } });
    // A fact alone says vxlan.
    auto implied = parse_pool_options({ { "cnm.network", "dkvx" }, { "vni", "7" } });
    REQUIRE(implied.ok());
    CHECK(implied->driver == std::optional<std::string>("vxlan"));

    auto refused = [](const Json& options) {
        auto r = parse_pool_options(options);
        REQUIRE(!r.ok());
        CHECK(r.error().code == Code::InvalidConfig);
        return r.error().msg + " " + r.error().details;
    };
    CHECK(refused({ { "cnm.driver", "vxlan" } }).find("--ipam-opt cnm.network=NAME") != std::string::npos);
    CHECK(refused({ { "vni", "7" } }).find("--ipam-opt cnm.network=NAME") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "cnm.driver", "bridge" }, { "vni", "7" } }).find("vni is a vxlan option") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "cnm.driver", "geneve" } }).find("not a driver") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "subnet", "10.213.184.0/22" } }).find("unknown IPAM option \"subnet\"") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "vni", "0" } }).find("vni") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "vni", "x" } }).find("not a non-negative integer") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "blockSize", "31" } }).find("leaves no address") != std::string::npos);
    CHECK(refused({ { "cnm.network", "n" }, { "vni", 7 } }).find("must be a string") != std::string::npos);
    CHECK(refused({ { "cnm.network", "a b" } }).find("must name a network") != std::string::npos);
    CHECK(refused(Json::array()).find("must be an object") != std::string::npos);

    // The cluster pool's id.
    CHECK(cluster_space("dkvx") == "cluster:dkvx");
    CHECK(cluster_space_network("cluster:dkvx") == std::optional<std::string>("dkvx"));
    CHECK(!cluster_space_network("cluster:"));
    CHECK(!cluster_space_network("cni:dkvx"));
    auto pool = pool_field(Json { { "PoolID", "cluster:dkvx/10.213.184.0/22" } }, "RequestAddress");
    REQUIRE(pool.ok());
    CHECK(pool->space == "cluster:dkvx");
    CHECK(pool->subnet.str() == "10.213.184.0/22");
    CHECK(!pool_field(Json { { "PoolID", "global/10.213.184.0/22" } }, "RequestAddress").ok());
}

namespace {

/// A host whose cluster file names an etcd that refuses connections, and whose cache already
/// holds the network's facts and one block: the whole Docker path runs without etcd.
struct ClusterHost : Fixture {
    std::string saved_env;
    bool had_env = false;
    ClusterHost(bool with_file = true)
    {
        if (const char* env = std::getenv(cluster_file_env)) {
            had_env = true;
            saved_env = env;
        }
        std::string file = tmp.path() + "/cluster.json";
        if (with_file) {
            std::ofstream(file) << R"({"etcd":["http://127.0.0.1:1"],"node":"node-a","underlay":"u0","timeoutMs":200})";
        }
        ::setenv(cluster_file_env, file.c_str(), 1);
        int u0 = kernel.add_link(host_ns, "u0");
        REQUIRE(kernel.add_address(host_ns, u0, *IpNet::parse("10.213.182.1/24"), false).ok());
    }
    ~ClusterHost()
    {
        if (had_env)
            ::setenv(cluster_file_env, saved_env.c_str(), 1);
        else
            ::unsetenv(cluster_file_env);
    }
    void seed(const std::string& network)
    {
        LocalBlocks local;
        local.node = "node-a";
        NetworkFacts facts;
        facts.vni = 4184;
        facts.subnet = *IpNet::parse("10.213.184.0/22");
        facts.block_size = 26;
        facts.mtu = 1450;
        local.facts = facts;
        IpAddr vtep = *IpAddr::parse("10.213.182.1");
        local.blocks.push_back({ *IpNet::parse("10.213.184.64/26"), "node-a", vtep, vtep_mac(vtep) });
        REQUIRE(save_local_blocks(*store, network, local).ok());
        REQUIRE(ipam::Pools(*store).add_user({ "cluster:" + network, *IpNet::parse("10.213.184.64/26") }, network, *IpAddr::parse("10.213.184.65")).ok());
    }
    Json pool_request(const Json& options)
    {
        return Json { { "AddressSpace", "local" }, { "Pool", "10.213.184.0/22" }, { "SubPool", "" }, { "Options", options }, { "V6", false } };
    }
};

} // namespace

TEST_CASE("shim: a vxlan network through Docker — the cluster pool, the block gateway, addresses of the host's block, nothing left but the block")
{
    ClusterHost f;
    f.seed("dkvx");
    auto pool = f.ok("IpamDriver.RequestPool", f.pool_request({ { "cnm.network", "dkvx" } }).dump());
    CHECK(pool["PoolID"] == "cluster:dkvx/10.213.184.0/22");
    CHECK(pool["Pool"] == "10.213.184.0/22");
    auto gw = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "" }, { "Options", { { "RequestAddressType", "com.docker.network.gateway" } } } }.dump());
    CHECK(gw["Address"] == "10.213.184.65/22"); // the block's gateway, with the pool's prefix
    f.ok("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
        { "Options", { { "com.docker.network.generic", { { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" } } } } },
        { "IPv4Data", { { { "AddressSpace", "local" }, { "Gateway", gw["Address"] }, { "Pool", "10.213.184.0/22" } } } } }.dump());
    auto network = f.registry.load_network("dkvx");
    REQUIRE(network.ok());
    REQUIRE(network->ok());
    CHECK(network->record.driver == "vxlan");
    CHECK(network->record.address_space == "cluster:dkvx");
    CHECK(network->record.subnets.empty()); // as a CNI vxlan ADD records it
    CHECK(network->record.options["vni"] == 4184);
    CHECK(network->record.options["bridge"] == "vxb-dkvx");
    CHECK(network->record.options["underlay"] == "u0");
    auto* bridge = f.host("vxb-dkvx");
    REQUIRE(bridge);
    CHECK(has_address(bridge, "10.213.184.65/26"));
    CHECK(f.kernel.sysctl(host_ns, "net/ipv4/conf/vxb-dkvx/proxy_arp") == std::optional<std::string>("1"));
    // (proxy_delay: the fake reads an unset sysctl as 0; e2e shim-docker-vxlan checks the kernel writes it.)
    CHECK(f.host("cnmvx4184"));

    // Two containers: addresses of the block, the pool's prefix; the Join's gateway is the block's.
    auto a1 = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "" } }.dump());
    auto a2 = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "" } }.dump());
    CHECK(a1["Address"] == "10.213.184.66/22");
    CHECK(a2["Address"] == "10.213.184.67/22");
    auto wanted = f.ok("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.184.100" } }.dump());
    CHECK(wanted["Address"] == "10.213.184.100/22");
    CHECK(f.err("IpamDriver.RequestAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.185.9" } }.dump()).find("not in this host's blocks") != std::string::npos);
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.184.100" } }.dump());
    f.ok("NetworkDriver.CreateEndpoint", ep_body(nid, eid1, a1["Address"]));
    auto join = f.ok("NetworkDriver.Join", Json { { "NetworkID", nid }, { "EndpointID", eid1 }, { "SandboxKey", "/run/docker/netns/sb1" } }.dump());
    CHECK(join["Gateway"] == "10.213.184.65");
    CHECK(f.host(join["InterfaceName"]["SrcName"].get<std::string>()));
    auto record = f.docker_endpoint("dkvx", eid1);
    REQUIRE(record.addresses.size() == 1);
    CHECK(record.addresses[0].address.str() == "10.213.184.66/26");
    CHECK(record.addresses[0].pool == "cluster:dkvx/10.213.184.64/26");

    // Leave, delete, release: the leases go, the block and its pool stay.
    ipam::Pools pools(*f.store);
    ipam::PoolId block { "cluster:dkvx", *IpNet::parse("10.213.184.64/26") };
    CHECK(pools.leases(block)->size() == 2);
    f.ok("NetworkDriver.Leave", ids(nid, eid1));
    f.ok("NetworkDriver.DeleteEndpoint", ids(nid, eid1));
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.184.66" } }.dump());
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.184.67" } }.dump());
    f.ok("IpamDriver.ReleaseAddress", Json { { "PoolID", pool["PoolID"] }, { "Address", "10.213.184.65" } }.dump());
    f.ok("IpamDriver.ReleasePool", Json { { "PoolID", pool["PoolID"] } }.dump());
    f.ok("NetworkDriver.DeleteNetwork", Json { { "NetworkID", nid } }.dump());
    CHECK(pools.leases(block)->empty());
    CHECK(f.registry.load_network("dkvx")->absent());
    CHECK(!f.host("vxb-dkvx"));
    auto local = load_local_blocks(*f.store, "dkvx");
    REQUIRE(local.ok());
    REQUIRE(local->blocks.size() == 1);
    CHECK(local->blocks[0].block.str() == "10.213.184.64/26");
    CHECK(pools.gateway(block)->value() == *IpAddr::parse("10.213.184.65"));
}

TEST_CASE("shim: a vxlan network through Docker is refused with clear errors that change nothing")
{
    SUBCASE("no cluster file")
    {
        ClusterHost f(false);
        auto before = snapshot(f.tmp.path());
        CHECK(f.err("IpamDriver.RequestPool", f.pool_request({ { "cnm.network", "dkvx" }, { "cnm.driver", "vxlan" } }).dump()).find("cluster file") != std::string::npos);
        CHECK(f.err("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
            { "Options", { { "com.docker.network.generic", { { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" } } } } },
            { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.184.0/22" } } } } }.dump()).find("cluster file") != std::string::npos);
        // Without the hint, a name the host does not know is a local network, as before.
        auto pool = f.ok("IpamDriver.RequestPool", f.pool_request({ { "cnm.network", "dkvx" } }).dump());
        CHECK(pool["PoolID"] == "cni:dkvx/10.213.184.0/22");
        f.ok("IpamDriver.ReleasePool", Json { { "PoolID", pool["PoolID"] } }.dump());
        CHECK(snapshot(f.tmp.path()) == before);
    }
    SUBCASE("a cluster network the host knows, asked for with another subnet, or unknown to the host")
    {
        ClusterHost f;
        f.seed("dkvx");
        auto before = snapshot(f.tmp.path());
        auto other = f.pool_request({ { "cnm.network", "dkvx" } });
        other["Pool"] = "10.213.188.0/22";
        CHECK(f.err("IpamDriver.RequestPool", other.dump()).find("has subnet 10.213.184.0/22, but docker network create asks for --subnet 10.213.188.0/22") != std::string::npos);
        CHECK(f.err("IpamDriver.RequestPool", f.pool_request({ { "cnm.network", "dkvx" }, { "vni", "99" } }).dump()).find("vni") != std::string::npos);
        auto v6 = f.pool_request({ { "cnm.network", "dkvx" } });
        v6["Pool"] = "fd00:213:184::/64";
        v6["V6"] = true;
        CHECK(f.err("IpamDriver.RequestPool", v6.dump()).find("IPv6 (--ipv6) is not supported on cluster network") != std::string::npos);
        // A name the host does not know, hinted vxlan: etcd must say whether it exists; unreachable here: a clear error that leaves nothing.
        CHECK(f.err("IpamDriver.RequestPool", f.pool_request({ { "cnm.network", "fresh" }, { "cnm.driver", "vxlan" } }).dump()).find("etcd") != std::string::npos);
        CHECK(f.err("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
            { "Options", { { "com.docker.network.generic", { { "cnm.driver", "vxlan" }, { "cnm.network", "fresh" } } } } },
            { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.184.0/22" } } } } }.dump()).find("not known on this host") != std::string::npos);
        CHECK(f.err("NetworkDriver.CreateNetwork", Json { { "NetworkID", nid },
            { "Options", { { "com.docker.network.generic", { { "cnm.driver", "vxlan" }, { "cnm.network", "dkvx" }, { "vni", "99" } } } } },
            { "IPv4Data", { { { "AddressSpace", "local" }, { "Pool", "10.213.184.0/22" } } } } }.dump()).find("vni") != std::string::npos);
        CHECK(snapshot(f.tmp.path()) == before);
        CHECK(!f.host("vxb-dkvx"));
    }
}

TEST_CASE("cnm-shim gc removes the sandbox documents an earlier build left; --dry-run leaves them")
{
    Fixture f;
    REQUIRE(f.store->put({ "sandboxes", "sb1.json" }, Json::parse(R"({"id":"sb1","netns":"/run/docker/netns/sb1","frontend":"docker",
        "endpoints":[],"bootId":"","schema":2})"), Durability::Hint).ok());
    REQUIRE(gc(*f.store, &f.kernel, true).ok());
    CHECK(f.store->list({ "sandboxes" })->size() == 1);
    REQUIRE(gc(*f.store, &f.kernel, false).ok());
    CHECK(f.store->list({ "sandboxes" })->empty());
}

TEST_CASE("shim: the holder of the state directory's flock is read off /proc/locks, also where it names another device")
{
    auto flock_holder = [](const std::string& text, dev_t dev, ino_t ino) {
        std::istringstream locks(text);
        return cnm::shim::flock_holder(locks, dev, ino);
    };
    dev_t dev = makedev(0x08, 0x01);
    std::string locks = "1: POSIX  ADVISORY  WRITE 111 08:01:4242 0 EOF\n"
                        "2: FLOCK  ADVISORY  WRITE 222 08:01:99 0 EOF\n"
                        "3: FLOCK  ADVISORY  WRITE 333 08:01:4242 0 EOF\n"
                        "3: -> FLOCK  ADVISORY  WRITE 444 08:01:4242 0 EOF\n";
    CHECK(flock_holder(locks, dev, 4242) == "333"); // the flock, not the POSIX lock or the waiter
    CHECK(flock_holder(locks, dev, 7).empty());
    // btrfs (a subvolume's st_dev is not its superblock's) and overlayfs: the one flock on the inode.
    std::string other_dev = "1: FLOCK  ADVISORY  WRITE 555 00:2d:4242 0 EOF\n"
                            "2: FLOCK  ADVISORY  WRITE 666 00:2d:14242 0 EOF\n";
    CHECK(flock_holder(other_dev, makedev(0, 0x31), 4242) == "555");
    // Two such flocks: no guess.
    CHECK(flock_holder(other_dev + "3: FLOCK  ADVISORY  WRITE 777 00:30:4242 0 EOF\n", makedev(0, 0x31), 4242).empty());
    // Another pid namespace's holder.
    CHECK(flock_holder("1: FLOCK  ADVISORY  WRITE -1 08:01:4242 0 EOF\n", dev, 4242).empty());
}
