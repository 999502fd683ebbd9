// The vxlan driver: a multi-host L3 overlay, flannel's vxlan backend in shape.
//
// Per network per host: a bridge holding the gateway of each of the host's blocks (a block's
// first address, with the block's prefix, so the block is a connected route), one vxlan device
// "cnmvx<vni>" (VNI, UDP port, learning off, local = the underlay address, MAC derived from that
// address: 02:<its 4 bytes>:00, cnm/blocks.hpp), and a veth per endpoint as the bridge driver
// makes it. Per remote block three entries, all replaced, never added (EEXIST cannot happen):
//   neighbour  <block gateway> lladdr <remote VTEP MAC> dev cnmvx<vni> nud permanent
//   fdb        <remote VTEP MAC> dev cnmvx<vni> dst <remote underlay address> self permanent
//   route      <block> via <block gateway> dev cnmvx<vni> onlink       (last: usable once it exists)
// The remote gateway is the next hop: the neighbour entry turns it into the remote VTEP's MAC,
// the FDB entry that MAC into the underlay address to encapsulate to. No l2miss/l3miss, no
// learning: what is programmed is all there is, O(blocks) entries, not O(containers).
//
// The container gets its address with the block's prefix and a route for the whole cluster
// subnet via the block gateway (flannel + bridge users know it so): traffic to other blocks,
// local or remote, goes through the host, which routes it. A Docker container (cnm-shim) has its
// address with the cluster subnet's prefix, Docker's pool: it ARPs for remote addresses, and the
// bridge answers them (proxy ARP, ensure_proxy_arp).
//
// MTU: the conf's "mtu", else the network's (etcd), else the underlay's − 50 (VXLAN over IPv4
// costs 50 bytes), on the vxlan device, the bridge and both veth ends — so an oversized packet
// is refused with "message too long" in the container, never dropped silently on the way.
//
// Flags of a vxlan device (learning, port, local, VNI) cannot be changed once it exists: a
// device that differs is deleted and made again, which drops its entries; the next ADD that
// claims a block (or the agent) programs them again.
//
// ipMasq: a masquerade element per container address whose exempt subnet is the cluster's
// (traffic to other blocks is not masqueraded). It is added and removed here, not through the
// lifecycle's per-address elements, which would exempt only the block.
#include "drivers/vxlan.hpp"

#include "drivers/common.hpp"
#include "util/fault.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <set>
#include <utility>

namespace cnm::drivers {

namespace {

struct VxlanKeys {
    uint32_t vni = 0;
    int port = default_vxlan_port;
    std::optional<int> mtu;
    std::string bridge;
    bool ip_masq = false;
    bool is_default_gateway = false;
    std::optional<IpNet> subnet;
    std::optional<IpNet> subnet6;
};

Result<VxlanKeys> parse_keys(const Json& raw)
{
    VxlanKeys k;
    auto facts = TRY(FactsWanted::parse(raw));
    if (raw.contains("ipam"))
        return invalid("\"ipam\" cannot be used with vxlan: its addresses come from the cluster's blocks (\"subnet\", \"blockSize\")");
    k.vni = facts.vni.value_or(0);
    k.port = facts.port.value_or(default_vxlan_port);
    k.mtu = facts.mtu;
    k.subnet = facts.subnet;
    k.subnet6 = facts.subnet6;
    k.bridge = TRY(json_string(raw, "bridge", "")).value_or("");
    if (k.bridge.empty())
        k.bridge = "vxb-" + std::to_string(k.vni);
    if (!valid_ifname(k.bridge))
        return invalid("\"bridge\" = \"" + k.bridge + "\" is not a usable interface name");
    k.ip_masq = TRY(json_bool(raw, "ipMasq", "")).value_or(false);
    k.is_default_gateway = TRY(json_bool(raw, "isDefaultGateway", "")).value_or(false);
    TRY(json_string(raw, "underlay", ""));
    TRY(json_object(raw, "cluster", ""));
    return k;
}

Result<Link> ensure_link_up(Kernel& kernel, Link link, std::optional<int> mtu)
{
    netlink::LinkChange change;
    if (mtu && link.mtu != *mtu)
        change.mtu = mtu;
    if (!link.up())
        change.up = true;
    if (change.mtu || change.up)
        TRY(kernel.set_link(host_ns, link.index, change));
    return link;
}

bool same_device(const Link& link, const netlink::VxlanSpec& want)
{
    if (link.kind != "vxlan" || !link.vxlan)
        return false;
    const auto& v = *link.vxlan;
    return v.vni == want.vni && v.port == want.port && !v.learning && v.local == want.local && (want.underlay == 0 || v.underlay == want.underlay);
}

Result<Link> ensure_vxlan(Kernel& kernel, const VxlanKeys& k, const Underlay& underlay, int mtu)
{
    netlink::VxlanSpec want;
    want.name = vxlan_device_name(k.vni);
    want.vni = k.vni;
    want.port = static_cast<uint16_t>(k.port);
    want.local = underlay.address;
    want.underlay = underlay.index;
    want.learning = false;
    want.mac = vtep_mac(underlay.address);
    want.mtu = mtu;
    auto link = TRY(kernel.get_link(host_ns, want.name));
    if (link && !same_device(*link, want)) {
        // Immutable attributes differ (another underlay address, port or VNI): make it again.
        TRY(kernel.delete_link(host_ns, link->index));
        link.reset();
    }
    if (!link) {
        auto made = kernel.create_vxlan(host_ns, want);
        // A parallel first ADD may have made it a moment ago.
        if (!made && made.error().sys_errno != EEXIST)
            return made.release_error();
        link = TRY(kernel.get_link(host_ns, want.name));
        if (!link)
            return make_error(Code::Kernel, "vxlan device " + want.name + " vanished right after it was created");
        if (!same_device(*link, want))
            return make_error(Code::Kernel, "vxlan device " + want.name + " exists with other attributes (a parallel ADD with another conf?)");
    }
    if (link->mac != *want.mac) {
        netlink::LinkChange mac;
        mac.mac = want.mac;
        TRY(kernel.set_link(host_ns, link->index, mac));
    }
    return ensure_link_up(kernel, *link, mtu);
}

Result<Link> ensure_bridge(Kernel& kernel, const std::string& name, int mtu)
{
    auto link = TRY(kernel.get_link(host_ns, name));
    if (!link) {
        TRY(kernel.create_bridge(host_ns, name, mtu, false));
        link = TRY(kernel.get_link(host_ns, name));
    }
    if (!link)
        return make_error(Code::Kernel, "bridge " + name + " vanished right after it was created");
    if (link->kind != "bridge")
        return invalid("\"" + name + "\" exists and is not a bridge (it is a " + (link->kind.empty() ? "device" : link->kind) + ")");
    return ensure_link_up(kernel, *link, mtu);
}

/// Docker's containers have their address with the cluster subnet's prefix (the prefix of
/// Docker's pool), so they ARP for the addresses of other hosts' blocks instead of sending to
/// their gateway. The bridge answers those requests with its own MAC — proxy ARP answers for an
/// address whose route leaves through another device (the vxlan device), never for an address
/// on the bridge itself — at once, not after the random proxy_delay. CNI containers (the block's
/// prefix and a route via the gateway) never ask. Read before written: an ADD on a set-up host
/// writes nothing.
Result<void> ensure_proxy_arp(Kernel& kernel, const std::string& bridge)
{
    const std::pair<std::string, const char*> wanted[] = {
        { "net/ipv4/conf/" + bridge + "/proxy_arp", "1" },
        { "net/ipv4/neigh/" + bridge + "/proxy_delay", "0" },
    };
    for (auto& [key, value] : wanted)
        if (auto now = kernel.read_sysctl(host_ns, key); !now || now.value() != value)
            TRY(kernel.write_sysctl(host_ns, key, value));
    return {};
}

Result<int> effective_mtu(Kernel& kernel, const VxlanKeys& k, const Json& options)
{
    if (k.mtu)
        return *k.mtu;
    auto underlay = TRY(vxlan_underlay(kernel, options));
    return underlay.mtu - 50;
}

std::optional<IpNet> cluster_subnet_of(const VxlanKeys& k, int family)
{
    return family == 4 ? k.subnet : k.subnet6;
}

class VxlanDriver final : public Driver {
public:
    std::string_view kind() const override { return "vxlan"; }

    const Json& network_defaults() const override
    {
        static const Json defaults = {
            { "vni", 0 }, { "subnet", "" }, { "blockSize", default_block_size4 }, { "port", default_vxlan_port }, { "mtu", 0 },
            { "bridge", "" }, { "underlay", "" }, { "ipMasq", false }, { "isDefaultGateway", false },
        };
        return defaults;
    }
    /// None: the MTU is the network's (the same on every host), not one attachment's.
    const Json& attachment_defaults() const override
    {
        static const Json none = Json::object();
        return none;
    }
    Json identity(const Json& options) const override
    {
        auto k = parse_keys(options);
        return Json { { "bridge", k ? k->bridge : "" }, { "vni", k ? k->vni : 0 } };
    }
    bool own_mac() const override { return true; }

    Result<void> validate(const Json& options) const override
    {
        auto k = TRY(parse_keys(options));
        if (k.vni == 0)
            return invalid("\"vni\" is required (1-16777215)");
        return {};
    }

    Result<void> ensure_network(Kernel& kernel, const Json& options, const std::vector<IpNet>& gateways) override
    {
        auto k = TRY(parse_keys(options));
        auto underlay = TRY(vxlan_underlay(kernel, options));
        int mtu = k.mtu.value_or(underlay.mtu - 50);
        TRY(ensure_vxlan(kernel, k, underlay, mtu));
        fault_point("vxlan-after-device");
        auto bridge = TRY(ensure_bridge(kernel, k.bridge, mtu));
        TRY(ensure_proxy_arp(kernel, k.bridge));
        auto present = TRY(kernel.addresses(host_ns, bridge.index));
        for (auto& gw : gateways) {
            if (std::find(present.begin(), present.end(), gw) == present.end())
                TRY(kernel.add_address(host_ns, bridge.index, gw, false));
            // Read before writing: writing ip_forward resets every interface's forwarding setting.
            const char* key = gw.addr.family == 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding";
            if (auto now = kernel.read_sysctl(host_ns, key); !now || now.value() != "1")
                TRY(kernel.write_sysctl(host_ns, key, "1"));
        }
        return {};
    }

    Result<void> remove_network(Kernel& kernel, const Json& options) override
    {
        auto k = TRY(parse_keys(options));
        TRY(delete_host_link(kernel, k.bridge, "bridge"));
        return delete_host_link(kernel, vxlan_device_name(k.vni), "vxlan");
    }

    Json plan(const Json& options, const EndpointRecord&, const Target& target) override
    {
        auto k = parse_keys(options);
        Json state = { { "bridge", k ? k->bridge : "" }, { "hostVeth", "veth" + random_hex(4) } };
        if (target.host())
            state["containerVeth"] = target.ifname;
        // Recorded before the element exists, so DEL removes it after a crash.
        if (k && k->ip_masq)
            state["vxMasq"] = true;
        return state;
    }

    Result<Attached> attach(Kernel& kernel, const Json& options, EndpointRecord& endpoint, const Target& target, const NetSetup& ipam) override
    {
        auto k = TRY(parse_keys(options));
        int mtu = TRY(effective_mtu(kernel, k, options));
        auto bridge = TRY(kernel.get_link(host_ns, k.bridge));
        if (!bridge)
            return make_error(Code::Kernel, "bridge " + k.bridge + " is missing");
        auto veth = TRY(add_bridge_veth(kernel, *bridge, endpoint, target, mtu));
        const Link& hv = veth.host;
        fault_point("vxlan-after-veth");

        Attached out;
        out.setup = ipam;
        out.announce_gateway = true;
        Mac container_mac = TRY(finish_container_end(kernel, veth, target, { true, false, k.is_default_gateway }, out.setup));
        endpoint.mac = netlink::mac_str(container_mac);
        if (k.ip_masq)
            for (auto& a : endpoint.addresses)
                if (auto subnet = cluster_subnet_of(k, a.address.addr.family))
                    TRY(kernel.add_masquerade(endpoint.network, IpNet { a.address.addr, subnet->prefix }));

        auto bridge_now = TRY(kernel.get_link(host_ns, bridge->index));
        out.setup.interfaces.clear();
        out.setup.interfaces.push_back({ k.bridge, netlink::mac_str(bridge_now ? bridge_now->mac : bridge->mac), {}, "", "", "" });
        out.setup.interfaces.push_back({ hv.name, netlink::mac_str(hv.mac), {}, "", "", "" });
        if (!target.host())
            out.setup.interfaces.push_back({ target.ifname, endpoint.mac, mtu, target.netns, "", "" });
        for (auto& ip : out.setup.ips)
            ip.interface = target.host() ? std::nullopt : std::optional(2);
        return out;
    }

    FirewallState firewall(const Json&, const EndpointRecord&) const override { return {}; }

    Result<void> detach(Kernel& kernel, const EndpointRecord& endpoint) override
    {
        const Json& d = endpoint.driver_state;
        if (d.is_object() && d.contains("vxMasq"))
            for (auto& a : endpoint.addresses)
                TRY(kernel.del_masquerade(a.address));
        return delete_veth_endpoint(kernel, endpoint);
    }

    Result<void> check(Kernel& kernel, const Json& options, const EndpointRecord& endpoint, const NetSetup& prev) override
    {
        auto k = TRY(parse_keys(options));
        TRY(check_veth_endpoint(kernel, endpoint, k.bridge, prev));
        auto vx = TRY(kernel.get_link(host_ns, vxlan_device_name(k.vni)));
        if (!vx || vx->kind != "vxlan" || !vx->up())
            return make_error(Code::CheckFailed, "vxlan device " + vxlan_device_name(k.vni) + " is missing or down");
        return {};
    }
};

} // namespace

std::string vxlan_device_name(uint32_t vni)
{
    return "cnmvx" + std::to_string(vni);
}

std::string default_vxlan_bridge(const std::string& network)
{
    std::string name = "vxb-" + network;
    if (valid_ifname(name))
        return name;
    uint32_t h = 2166136261u; // FNV-1a
    for (unsigned char c : network)
        h = (h ^ c) * 16777619u;
    std::string head;
    for (char c : network) {
        if (head.size() == 5)
            break;
        if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')
            head += c;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "%06x", h & 0xffffffu);
    return "vxb-" + head + hex;
}

Result<Underlay> vxlan_underlay(Kernel& kernel, const Json& options)
{
    std::string given = TRY(json_string(options, "underlay", "")).value_or("");
    Underlay u;
    if (!given.empty())
        if (auto addr = IpAddr::parse(given)) {
            u.address = *addr;
            // Its device's MTU is not known from the address alone: the default route's, if any.
            if (auto link = TRY(kernel.default_route_link(host_ns)))
                u.mtu = link->mtu;
            return u;
        }
    std::optional<Link> link;
    if (given.empty()) {
        link = TRY(kernel.default_route_link(host_ns));
        if (!link)
            return make_error(Code::InvalidConfig, "invalid config: no \"underlay\" given and this host has no default route to take it from",
                "set \"underlay\" to the interface (or address) other hosts reach this one on");
    } else {
        if (!valid_ifname(given))
            return invalid("\"underlay\" = \"" + given + "\" is neither an address nor an interface name");
        link = TRY(kernel.get_link(host_ns, given));
        if (!link)
            return invalid("\"underlay\" = \"" + given + "\": no such interface on this host");
    }
    u.name = link->name;
    u.index = link->index;
    u.mtu = link->mtu;
    auto addrs = TRY(kernel.addresses(host_ns, link->index));
    for (int family : { 4, 6 })
        for (auto& a : addrs)
            if (a.addr.family == family && !u.address.valid())
                u.address = a.addr;
    if (!u.address.valid())
        return invalid("the underlay " + link->name + " has no address to be the VTEP");
    return u;
}

namespace {

/// The network's vxlan device and this host's VTEP address: what programming remote blocks needs.
struct RemoteDevice {
    int index = 0;
    IpAddr self;
};

Result<RemoteDevice> remote_device(Kernel& kernel, const Json& options)
{
    auto k = TRY(parse_keys(options));
    auto underlay = TRY(vxlan_underlay(kernel, options));
    std::string name = vxlan_device_name(k.vni);
    auto dev = TRY(kernel.get_link(host_ns, name));
    if (!dev)
        return make_error(Code::Kernel, "vxlan device " + name + " is missing");
    return RemoteDevice { dev->index, underlay.address };
}

/// Per block not at `dev.self`: its gateway's permanent neighbour (the holder's VTEP MAC), the FDB
/// entry to the VTEP, the route via the gateway onlink — each replaced, never EEXIST.
Result<void> program_blocks(Kernel& kernel, const RemoteDevice& dev, const std::vector<BlockOwner>& blocks)
{
    for (auto& b : blocks) {
        if (b.vtep == dev.self)
            continue;
        IpAddr gw = b.gateway();
        TRY(kernel.replace_neighbour(host_ns, dev.index, gw, b.mac));
        TRY(kernel.replace_fdb(host_ns, dev.index, b.mac, b.vtep));
        netlink::RouteSpec route;
        route.dst = b.block;
        route.gw = gw;
        route.oif = dev.index;
        route.onlink = true;
        TRY(kernel.replace_route(host_ns, route));
    }
    return {};
}

} // namespace

Result<void> program_remote_blocks(Kernel& kernel, const Json& options, const std::vector<BlockOwner>& blocks)
{
    if (blocks.empty())
        return {};
    return program_blocks(kernel, TRY(remote_device(kernel, options)), blocks);
}

Result<size_t> reconcile_remote_blocks(Kernel& kernel, const Json& options, const std::vector<BlockOwner>& blocks)
{
    auto dev = TRY(remote_device(kernel, options));
    std::vector<BlockOwner> remote;
    std::set<IpNet> dsts;
    std::set<IpAddr> gateways;
    std::set<Mac> macs;
    for (auto& b : blocks) {
        if (b.vtep == dev.self)
            continue;
        remote.push_back(b);
        dsts.insert(b.block);
        gateways.insert(b.gateway());
        macs.insert(b.mac);
    }
    TRY(program_blocks(kernel, dev, remote));
    size_t removed = 0;
    for (int family : { 4, 6 }) {
        for (auto& r : TRY(kernel.routes(host_ns, family))) {
            if (r.oif != dev.index || !r.gw || dsts.count(r.dst))
                continue;
            netlink::RouteSpec del;
            del.dst = r.dst;
            del.gw = r.gw;
            del.oif = dev.index;
            TRY(kernel.delete_route(host_ns, del));
            ++removed;
        }
    }
    for (auto& n : TRY(kernel.neighbours(host_ns, dev.index))) {
        if (n.index != dev.index || !n.permanent() || gateways.count(n.dst))
            continue;
        TRY(kernel.delete_neighbour(host_ns, dev.index, n.dst));
        ++removed;
    }
    for (auto& f : TRY(kernel.fdb(host_ns, dev.index))) {
        if (f.index != dev.index || !f.dst || f.master || macs.count(f.mac))
            continue;
        TRY(kernel.delete_fdb(host_ns, dev.index, f.mac, f.dst));
        ++removed;
    }
    return removed;
}

Result<void> remove_remote_block(Kernel& kernel, const Json& options, const BlockOwner& block)
{
    auto k = TRY(parse_keys(options));
    auto dev = TRY(kernel.get_link(host_ns, vxlan_device_name(k.vni)));
    if (!dev)
        return {};
    netlink::RouteSpec route;
    route.dst = block.block;
    route.oif = dev->index;
    TRY(kernel.delete_route(host_ns, route));
    return kernel.delete_neighbour(host_ns, dev->index, block.gateway());
}

Driver& vxlan_driver()
{
    static VxlanDriver driver;
    return driver;
}

} // namespace cnm::drivers
