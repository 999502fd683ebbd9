#pragma once
// The Driver interface: the data plane of one network kind, front-end-neutral. The CNI plugins
// and cnm-shim both reach it only through the endpoint lifecycle (cnm/endpoint.hpp), which calls:
//
//   validate(options)                pure, before any kernel work: every key the driver reads
//   ensure_network(kernel, …)        the network's kernel objects (a bridge and its gateways; a
//                                    parent interface that must exist)
//   plan(options, endpoint, target)  the names detach will need (a random host veth name, a
//                                    temporary name), recorded in the intent before any kernel work
//   attach(kernel, …, target)        the endpoint's interface, configured in a sandbox (CNI) or
//                                    left in the host namespace under a name (Docker's Join)
//   firewall(options, endpoint)      the per-endpoint firewall elements it needs (the lifecycle
//                                    records and adds them: one code path for every driver)
//   detach(kernel, endpoint)         idempotent; works from the record alone, with the netns gone
//   check(kernel, …)                 CHECK against the kernel
//
// `options` is always the effective conf: the network's keys merged with this attachment's
// (cnm/options.hpp). Drivers are picked from one static table by kind (find_driver); a new kind
// is one file under common/drivers/ plus one line in that table.

#include "cnm/model.hpp"
#include "firewall/nft.hpp"
#include "kernel/kernel.hpp"
#include "net/config.hpp"
#include "util/json.hpp"
#include "util/result.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cnm {

/// Where an endpoint's interface goes.
struct Target {
    enum class Kind { Netns, Host };
    Kind kind = Kind::Netns;
    std::string netns;  // Netns: the sandbox's netns path
    std::string ifname; // Netns: the name inside the sandbox; Host: the name it is left under

    static Target in_netns(std::string path, std::string ifname) { return { Kind::Netns, std::move(path), std::move(ifname) }; }
    static Target in_host(std::string name) { return { Kind::Host, {}, std::move(name) }; }
    bool host() const { return kind == Kind::Host; }
};

/// What attach made, for the front-end to report.
struct Attached {
    /// CNI: interfaces in the reference plugins' order, the addresses (with the index of the
    /// sandbox interface), routes (the IPAM's, plus a default route the driver added).
    NetSetup setup;
    /// Docker: the gateway to announce (none → DisableGatewayService) and extra routes
    /// (a route without gw is "connected").
    bool announce_gateway = false;
    bool disable_gateway_service = false;
    std::vector<Route> static_routes;
};

/// The per-endpoint firewall elements, recorded in the endpoint before they exist (so DEL, GC
/// and `cnm-shim gc` remove them after a crash) — in the record's driver state under the keys
/// the records of earlier versions used ("ipMasq", "macGuard" + "hostVeth", "ports").
struct FirewallState {
    bool masquerade = false;
    std::string guard_ifname; // MAC spoof check on this host interface…
    std::string guard_mac;    // …allowing only this source MAC
    std::vector<firewall::PortMap> ports;

    bool empty() const { return !masquerade && guard_mac.empty() && ports.empty(); }
    static FirewallState from(const EndpointRecord& record);
    void store(EndpointRecord& record) const;
};

class Driver {
public:
    virtual ~Driver() = default;
    virtual std::string_view kind() const = 0;
    /// The network-level keys and the value a missing key means; shared by CNI confs and
    /// `docker network create -o`. Also gives each key's JSON type.
    virtual const Json& network_defaults() const = 0;
    /// Keys that describe one attachment (the MTU of its link, hairpin mode): each ADD's conf
    /// says them, as the reference plugins read them, and a network never imposes them. Docker's
    /// `-o` may set them for the network's Docker endpoints. With the value their absence means.
    virtual const Json& attachment_defaults() const = 0;
    /// Allowed values of the keys that take one of a few (modes).
    virtual const std::map<std::string, std::vector<std::string>>& choices() const
    {
        static const std::map<std::string, std::vector<std::string>> none;
        return none;
    }
    /// Keys that identify the network's kernel objects and must agree between all its users
    /// (the bridge name, the master).
    virtual Json identity(const Json& options) const = 0;
    /// Whether the driver's endpoints may carry a MAC of their own (ipvlan: no).
    virtual bool own_mac() const = 0;

    virtual Result<void> validate(const Json& options) const = 0;
    /// `gateways` are the pools' gateways with their subnet's prefix.
    virtual Result<void> ensure_network(Kernel& kernel, const Json& options, const std::vector<IpNet>& gateways) = 0;
    /// Docker's CreateNetwork: fails when this kernel cannot make the driver's links at all, so
    /// that is said at network create, not at the first container. CNI never calls it.
    virtual Result<void> probe(Kernel& kernel, const Json& options) { (void)kernel; (void)options; return {}; }
    /// A network that goes away (Docker's DeleteNetwork of a network it made): its kernel objects.
    virtual Result<void> remove_network(Kernel& kernel, const Json& options) = 0;
    virtual Json plan(const Json& options, const EndpointRecord& endpoint, const Target& target) = 0;
    /// `ipam` holds the endpoint's addresses (and the IPAM's routes and dns). On failure the
    /// lifecycle calls detach, which must remove whatever part was made.
    virtual Result<Attached> attach(Kernel& kernel, const Json& options, EndpointRecord& endpoint, const Target& target,
        const NetSetup& ipam) = 0;
    virtual FirewallState firewall(const Json& options, const EndpointRecord& endpoint) const = 0;
    virtual Result<void> detach(Kernel& kernel, const EndpointRecord& endpoint) = 0;
    /// `prev` is the result the runtime kept (CNI CHECK).
    virtual Result<void> check(Kernel& kernel, const Json& options, const EndpointRecord& endpoint, const NetSetup& prev) = 0;
};

/// The one table: "bridge", "macvlan", "ipvlan". nullptr for an unknown kind.
Driver* find_driver(std::string_view kind);
/// The kinds in the table, for messages.
std::string driver_kinds();

} // namespace cnm
