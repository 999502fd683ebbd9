#pragma once
// The endpoint lifecycle: the one place where a Network record is made and removed, where an
// endpoint goes from intent to ready and back, and where rollback happens. The CNI plugins and
// cnm-shim are translations onto these functions; the drivers (cnm/driver.hpp) do the kernel work.
//
// Phases, each with its own entry point (Docker calls them one by one, CNI's ADD and DEL run
// them in a row):
//
//   addresses reserved   AddressSource::acquire — in-process pools, a delegated IPAM plugin,
//                        Docker's RequestAddress (reserved before the endpoint exists), prevResult
//   endpoint created     create(): the record, phase "creating" (CNI: before any address or link,
//                        the intent a crashed ADD leaves for DEL/GC)
//   attached             attach(): driver.attach into the Target, then the firewall elements,
//                        recorded before they are added; then commit: under the network lock the
//                        leases are checked to be still ours, phase "ready" (the record names its
//                        sandbox and netns: a sandbox is the endpoints that name it)
//   detached             detach(): firewall elements, then driver.detach — idempotent, from the
//                        record alone; what CNI DEL, CNI GC, Docker's Leave/DeleteEndpoint and
//                        `cnm-shim gc` all call
//   endpoint removed     remove(): the record; a CNI-made network whose last
//                        endpoint this was goes too
//   addresses released   AddressSource::release — never for Docker's reserved addresses, which
//                        only Docker's ReleaseAddress frees
//
// Rollback: every step of add() that succeeded pushes its undo onto one Undo list; a failure runs
// them in reverse and collects the failures of undo steps into the returned error's details.
//
// Locks: the network lock guards the network record, the endpoint records and the commit. The
// kernel work and the address allocation run outside it (parallel ADDs overlap), but an ADD in
// flight holds its attachment's own lock, and GC never frees what a held attachment owns.

#include "cnm/driver.hpp"
#include "cnm/registry.hpp"
#include "ipam/config.hpp"
#include "ipam/pool.hpp"
#include "net/config.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace cnm {

/// Undo steps, run in reverse unless dismissed; failures are collected.
class Undo {
public:
    Undo() = default;
    Undo(const Undo&) = delete;
    Undo& operator=(const Undo&) = delete;
    ~Undo() { (void)run(); }
    void push(std::string what, std::function<Result<void>()> step) { m_steps.push_back({ std::move(what), std::move(step) }); }
    void dismiss()
    {
        m_steps.clear();
        m_first = nullptr;
    }
    /// Runs before the steps (to let go of a hold, so the steps can remove its directory).
    void first(std::function<void()> step) { m_first = std::move(step); }
    /// Runs every step (latest first); returns "<step>: <error>; …" for those that failed.
    std::string run();
    /// Runs the steps and returns `error` with their failures appended to its details.
    Error fail(Error error);

private:
    struct Step {
        std::string what;
        std::function<Result<void>()> step;
    };
    std::vector<Step> m_steps;
    std::function<void()> m_first;
};

/// The lease owner an endpoint record stands for.
ipam::Owner lease_owner(const EndpointRecord& record);
/// Gives back an endpoint's leases: those its ready record names; else (a crashed ADD's record has
/// no addresses yet, or the record is corrupt) every lease it owns in the pools `scan` returns
/// (asked only then), found by owner. For AddressSource::release.
Result<void> release_endpoint_leases(Store& store, const EndpointRecord& endpoint,
    const std::function<Result<std::vector<ipam::PoolId>>()>& scan);

/// Where an endpoint's addresses come from.
class AddressSource {
public:
    virtual ~AddressSource() = default;
    /// Fills `endpoint.addresses` (with their pool when a pool of ours holds them) and returns the
    /// addresses with the IPAM's routes and dns. May be called with no lock held.
    virtual Result<NetSetup> acquire(Registry& registry, EndpointRecord& endpoint) = 0;
    /// Frees what acquire took for this attachment; idempotent, and must work from a "creating"
    /// record without addresses (a crashed ADD) or from no record at all.
    virtual Result<void> release(Registry& registry, const EndpointRecord& endpoint) = 0;
    /// GC: frees what the source holds for attachments of `network` not in `keep` (in-process
    /// pools do it by lease owner; a delegated plugin gets the GC call).
    virtual Result<void> collect(Registry& registry, const std::string& network, const std::vector<std::pair<std::string, std::string>>& keep) = 0;
    /// GC tells the source each attachment it keeps before collect(), so what a kept record names
    /// need not be read again.
    virtual void note_kept(const EndpointRecord& endpoint) { (void)endpoint; }
    /// STATUS: ready to hand out an address.
    virtual Result<void> ready(Registry& registry) = 0;
    /// CHECK of the addresses against the source.
    virtual Result<void> check(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev) = 0;
    /// The subnets a network record keeps (empty: not ours to know) and their gateways.
    virtual std::vector<std::pair<IpNet, std::optional<IpAddr>>> pools() const { return {}; }
    virtual std::string address_space() const { return "local"; }
    /// The network the source allocates for (called first by every lifecycle verb): a conf that
    /// names no address space gets the network's own pools.
    virtual void scope(const std::string& network) { (void)network; }
    /// An existing network keeps the space its record names (records written before pools were
    /// per network live in "local").
    virtual void adopt_space(const std::string& space) { (void)space; }
    /// True when everything the source holds for an attachment is named by its record (written
    /// before any address is taken): DEL of an attachment without a record then has nothing to
    /// free and touches no state (it succeeds on a read-only state dir).
    virtual bool recorded() const { return false; }
};

/// CHECK of an endpoint's leases in our pools: each still held by the endpoint and listed in
/// prevResult. Shared by every source whose addresses live in our pools.
Result<void> check_leases(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev);

/// No addresses (L2 only), or ones given from outside that need no release (prevResult,
/// Docker's RequestAddress).
class GivenAddresses final : public AddressSource {
public:
    GivenAddresses() = default;
    explicit GivenAddresses(NetSetup given) : m_given(std::move(given)) { }
    Result<NetSetup> acquire(Registry&, EndpointRecord& endpoint) override;
    Result<void> release(Registry&, const EndpointRecord&) override { return {}; }
    Result<void> collect(Registry&, const std::string&, const std::vector<std::pair<std::string, std::string>>&) override { return {}; }
    Result<void> ready(Registry&) override { return {}; }
    Result<void> check(Registry&, const EndpointRecord&, const NetSetup&) override { return {}; }
    bool recorded() const override { return true; }

private:
    NetSetup m_given;
};

/// In-process IPAM over our pools (the `ipam` plugin's conf, without a second exec).
class PoolAddresses final : public AddressSource {
public:
    explicit PoolAddresses(ipam::IpamConf conf) : m_conf(std::move(conf)) { }
    Result<NetSetup> acquire(Registry& registry, EndpointRecord& endpoint) override;
    Result<void> release(Registry& registry, const EndpointRecord& endpoint) override;
    Result<void> collect(Registry& registry, const std::string& network, const std::vector<std::pair<std::string, std::string>>& keep) override;
    void note_kept(const EndpointRecord& endpoint) override;
    Result<void> ready(Registry& registry) override;
    Result<void> check(Registry& registry, const EndpointRecord& endpoint, const NetSetup& prev) override;
    std::vector<std::pair<IpNet, std::optional<IpAddr>>> pools() const override;
    std::string address_space() const override { return m_conf.address_space; }
    bool recorded() const override { return true; }
    void scope(const std::string& network) override
    {
        if (!m_conf.shared_space)
            m_conf.address_space = "cni:" + network;
    }
    void adopt_space(const std::string& space) override
    {
        if (!m_conf.shared_space)
            m_conf.address_space = space;
    }
    const ipam::IpamConf& conf() const { return m_conf; }

private:
    ipam::IpamConf m_conf;
    std::set<std::pair<std::string, std::string>> m_kept_leases; // (pool, address) a kept record names
};

/// What a front-end knows of the network an attachment is on.
struct NetworkSpec {
    std::string name;
    std::string driver;           // kind; empty for the ipam plugin
    Frontend frontend = Frontend::Cni;
    Json options = Json::object(); // the conf's keys as a network record keeps them
};

/// One CNI ADD (or its equivalent).
struct AddRequest {
    NetworkSpec network;
    std::string container_id;
    std::string ifname;
    std::string netns;
    Target target;
    std::string mac; // the runtime's, "aa:bb:…", or empty
};

struct Added {
    EndpointRecord endpoint;
    Attached attached;
};

class Endpoints {
public:
    /// `kernel` and `driver` are null for the ipam plugin (addresses only).
    Endpoints(Registry& registry, Kernel* kernel, Driver* driver) : m_registry(registry), m_kernel(kernel), m_driver(driver) { }

    /// The options a conf ends up with: its keys, and those it omits taken from the network it
    /// names, if that exists (code 7 when a network-level key disagrees).
    Result<Json> effective_options(const NetworkSpec& network);

    // ---- CNI: the whole ADD, DEL, CHECK and GC -----------------------------------------------
    Result<Added> add(const AddRequest& request, AddressSource& addresses);
    /// Idempotent: an unknown attachment, a corrupt record, a gone netns are success.
    Result<void> del(const NetworkSpec& network, const std::string& container_id, const std::string& ifname,
        const std::string& netns, AddressSource& addresses);
    Result<void> check(const NetworkSpec& network, const std::string& container_id, const std::string& ifname,
        const std::string& netns, const NetSetup& prev, AddressSource& addresses);
    /// STATUS: the network's source can hand out an address.
    Result<void> status(const std::string& network, AddressSource& addresses);
    /// Removes every CNI endpoint of the network not in `valid` (and not in flight), its links,
    /// firewall elements and leases. `valid` (up to 10 000 names) is searched through a sorted
    /// index of pointers into it: its strings are neither copied nor moved.
    Result<void> gc(const NetworkSpec& network, const std::vector<std::pair<std::string, std::string>>& valid, AddressSource& addresses);

    // ---- Docker: the phases one by one -------------------------------------------------------
    /// CreateNetwork: creates the record (or checks and joins an existing one) and the network's
    /// kernel objects. `subnets` are Docker's pools.
    Result<NetworkRecord> create_network(const NetworkSpec& network, const std::string& address_space,
        const std::vector<std::pair<IpNet, std::optional<IpAddr>>>& subnets, const std::string& docker_id);
    /// DeleteNetwork: drops the binding; a Docker-made network goes with its last binding and
    /// last endpoint, with its kernel objects.
    Result<void> delete_network(const std::string& name, const std::string& docker_id);
    /// CreateEndpoint: a ready record with the addresses Docker reserved, not yet attached.
    Result<EndpointRecord> create(const std::string& network, const std::string& endpoint_id, const std::vector<EndpointAddress>& addresses,
        const std::string& mac);
    /// Join: driver.attach into the Target, firewall; the record names the sandbox. Call with the
    /// network lock held.
    Result<Attached> join(EndpointRecord& endpoint, const Target& target, const std::string& sandbox, const std::string& netns);
    /// Leave: the firewall elements, and the record no longer names the sandbox; the links stay for Docker to
    /// move back (DeleteEndpoint removes them).
    Result<void> leave(EndpointRecord& endpoint);

    // ---- shared by every front-end -------------------------------------------------------------
    /// Firewall elements, then the driver's links. Idempotent.
    Result<void> detach(const EndpointRecord& endpoint);
    /// The record; then the network if it was CNI-made and this was its last endpoint. Call with
    /// the network lock held.
    Result<void> remove(const std::string& network, const std::string& key);
    /// Removes what an endpoint recorded (detach, then remove) — for `cnm-shim gc`.
    Result<void> forget(const EndpointRecord& endpoint, AddressSource* addresses);

    /// Adds the ports to the endpoint's firewall state (recorded first) — Docker's
    /// ProgramExternalConnectivity; an empty list removes them.
    Result<void> publish(EndpointRecord& endpoint, const std::vector<firewall::PortMap>& ports);

private:
    Result<NetworkRecord> ensure_network(const NetworkSpec& network, AddressSource& addresses, bool& created);
    Result<void> drop_network_if_unused(const std::string& name);
    /// Removes every element the record names, each tried even when another fails.
    std::vector<Error> remove_firewall(const EndpointRecord& endpoint);
    Result<void> add_firewall(const FirewallState& state, const std::string& network, const EndpointRecord& endpoint);

    Registry& m_registry;
    Kernel* m_kernel;
    Driver* m_driver;
};

} // namespace cnm
