#include "fake_kernel.hpp"

#include <cerrno>

#include <algorithm>
#include <net/if.h>

namespace cnm::test {

namespace {

Error kernel_error(std::string msg)
{
    return make_error(Code::Kernel, std::move(msg));
}

// A create or rename onto a name that is taken: EEXIST, as the kernel's RTM_NEWLINK answers.
Error name_exists(const std::string& name)
{
    Error e = kernel_error("a link named " + name + " exists");
    e.sys_errno = EEXIST;
    return e;
}

Error no_device(NsId ns, int index)
{
    return kernel_error("no such device: index " + std::to_string(index) + " in namespace " + std::to_string(ns));
}

Result<void> check_name(const std::string& name)
{
    if (name.empty() || name.size() >= IFNAMSIZ || name.find('/') != std::string::npos)
        return kernel_error("invalid interface name \"" + name + "\"");
    return {};
}

bool same_dst(const netlink::RouteSpec& a, const netlink::RouteSpec& b)
{
    return a.dst.network() == b.dst.network() && a.dst.prefix == b.dst.prefix && a.dst.addr.family == b.dst.addr.family
        && a.table.value_or(254) == b.table.value_or(254) && a.priority.value_or(0) == b.priority.value_or(0);
}

bool link_local6(const IpAddr& a)
{
    return a.family == 6 && (a.value >> 118) == (u128(0xfe80) >> 6);
}

} // namespace

std::optional<uint16_t> FakeLink::pvid() const
{
    for (auto& [vid, pvid] : vlans)
        if (pvid)
            return vid;
    return std::nullopt;
}

FakeKernel::FakeKernel()
{
    auto& host = m_ns[host_ns];
    make_link(host, "lo", "", 65536).fixture = true;
    host.links.begin()->second.link.flags |= IFF_UP;
}

// ---- setup -------------------------------------------------------------------------------------

NsId FakeKernel::add_netns(const std::string& path)
{
    if (auto existing = ns_of(path))
        return *existing;
    NsId id = m_next_ns++;
    auto& n = m_ns[id];
    n.path = path;
    auto& lo = make_link(n, "lo", "", 65536);
    lo.fixture = true;
    lo.link.flags |= IFF_UP;
    return id;
}

void FakeKernel::remove_netns(const std::string& path)
{
    auto id = ns_of(path);
    if (!id)
        return;
    std::vector<int> indexes;
    for (auto& [index, l] : m_ns[*id].links)
        indexes.push_back(index);
    for (int index : indexes)
        erase_link(*id, index);
    m_ns.erase(*id);
}

int FakeKernel::add_link(NsId ns, const std::string& name, const std::string& kind, int mtu)
{
    auto& l = make_link(m_ns.at(ns), name, kind, mtu);
    l.fixture = true;
    l.link.flags |= IFF_UP;
    return l.link.index;
}

void FakeKernel::add_default_route(NsId ns, int index, const std::optional<IpAddr>& gw)
{
    int family = gw ? gw->family : 4;
    m_ns.at(ns).routes.push_back({ IpNet { IpAddr { family, 0 }, 0 }, gw, index, {}, {}, {}, {} });
}

// ---- failure injection -------------------------------------------------------------------------

void FakeKernel::fail_at(std::string method, int nth)
{
    m_fail_method[std::move(method)] = nth;
}

void FakeKernel::fail_mutation(int k)
{
    m_fail_mutation = k;
}

void FakeKernel::fail_call(int k)
{
    m_fail_call = k;
}

void FakeKernel::clear_failures()
{
    m_fail_method.clear();
    m_fail_mutation = 0;
    m_fail_call = 0;
}

int FakeKernel::calls(const std::string& method) const
{
    auto it = m_calls.find(method);
    return it == m_calls.end() ? 0 : it->second;
}

Result<void> FakeKernel::enter(const char* method, bool mutating, const std::string& detail)
{
    ++m_calls[method];
    if (auto hook = m_hooks.find(method); hook != m_hooks.end()) {
        auto run = std::move(hook->second);
        m_hooks.erase(hook);
        run();
    }
    std::string what = detail.empty() ? std::string(method) : std::string(method) + " " + detail;
    m_call_log.push_back(what);
    bool fail = m_fail_call > 0 && --m_fail_call == 0;
    if (auto it = m_fail_method.find(method); it != m_fail_method.end()) {
        if (--it->second <= 0) {
            fail = true;
            m_fail_method.erase(it);
        }
    }
    if (mutating) {
        m_log.push_back(what);
        if (m_fail_mutation > 0 && --m_fail_mutation == 0)
            fail = true;
    }
    if (fail)
        return make_error(Code::Kernel, "injected", "the fake kernel failed " + what + " on purpose");
    return {};
}

// ---- internals ---------------------------------------------------------------------------------

Result<FakeKernel::Namespace*> FakeKernel::space(NsId ns)
{
    auto it = m_ns.find(ns);
    if (it == m_ns.end())
        return make_error(Code::Internal, "no such namespace handle " + std::to_string(ns));
    return &it->second;
}

FakeLink* FakeKernel::link_in(Namespace& n, const std::string& name)
{
    for (auto& [index, l] : n.links)
        if (l.link.name == name)
            return &l;
    return nullptr;
}

FakeLink* FakeKernel::link_in(Namespace& n, int index)
{
    auto it = n.links.find(index);
    return it == n.links.end() ? nullptr : &it->second;
}

FakeLink& FakeKernel::make_link(Namespace& n, const std::string& name, const std::string& kind, int mtu)
{
    FakeLink l;
    l.link.index = n.next_index++;
    l.link.name = name;
    l.link.kind = kind;
    l.link.mtu = mtu;
    uint32_t seq = m_mac_seq++;
    l.link.mac = { 0x02, 0xfa, 0x4b, static_cast<uint8_t>(seq >> 16), static_cast<uint8_t>(seq >> 8), static_cast<uint8_t>(seq) };
    auto& slot = n.links[l.link.index];
    slot = std::move(l);
    return slot;
}

void FakeKernel::erase_link(NsId ns, int index)
{
    auto nit = m_ns.find(ns);
    if (nit == m_ns.end())
        return;
    auto& n = nit->second;
    auto it = n.links.find(index);
    if (it == n.links.end())
        return;
    FakeLink gone = std::move(it->second);
    n.links.erase(it);
    std::erase_if(n.routes, [&](const netlink::RouteSpec& r) { return r.oif == index; });
    if (gone.link.kind == "veth" && gone.peer_ns >= 0)
        erase_link(gone.peer_ns, gone.link.peer_index);
    if (gone.link.kind == "bridge")
        for (auto& [i, l] : n.links)
            if (l.link.master == index) {
                l.link.master = 0;
                l.vlans.clear();
                l.hairpin = l.isolated = false;
            }
    // Children go with their parent: a macvlan/ipvlan (parent in host_ns) wherever it is, an
    // 802.1Q link in its own namespace.
    std::vector<std::pair<NsId, int>> children;
    for (auto& [id, other] : m_ns)
        for (auto& [i, l] : other.links)
            if (l.parent == index && (l.link.kind == "vlan" ? id == ns : ns == host_ns))
                children.push_back({ id, i });
    for (auto& [id, i] : children)
        erase_link(id, i);
}

// ---- observation -------------------------------------------------------------------------------

std::optional<NsId> FakeKernel::ns_of(const std::string& path) const
{
    for (auto& [id, n] : m_ns)
        if (id != host_ns && n.path == path)
            return id;
    return std::nullopt;
}

std::vector<FakeLink> FakeKernel::links(NsId ns) const
{
    std::vector<FakeLink> out;
    if (auto it = m_ns.find(ns); it != m_ns.end())
        for (auto& [i, l] : it->second.links)
            out.push_back(l);
    return out;
}

const FakeLink* FakeKernel::find(NsId ns, const std::string& name) const
{
    return const_cast<FakeKernel*>(this)->link_in(const_cast<Namespace&>(m_ns.at(ns)), name);
}

const FakeLink* FakeKernel::find(NsId ns, int index) const
{
    return const_cast<FakeKernel*>(this)->link_in(const_cast<Namespace&>(m_ns.at(ns)), index);
}

std::vector<netlink::RouteSpec> FakeKernel::route_table(NsId ns) const
{
    return m_ns.at(ns).routes;
}

std::optional<std::string> FakeKernel::sysctl(NsId ns, const std::string& key) const
{
    auto& s = m_ns.at(ns).sysctls;
    if (auto it = s.find(key); it != s.end())
        return it->second;
    return std::nullopt;
}

bool FakeKernel::empty_except_bridges(std::string* why) const
{
    std::string left;
    for (auto& [id, n] : m_ns)
        for (auto& [i, l] : n.links)
            if (!l.fixture && l.link.kind != "bridge")
                left += (left.empty() ? "" : ", ") + l.link.kind + " " + l.link.name + " in ns " + std::to_string(id);
    if (why)
        *why = left;
    return left.empty();
}

bool FakeKernel::firewall_empty(std::string* why) const
{
    std::string left;
    for (auto& [a, net] : m_masq)
        left += (left.empty() ? "" : ", ") + std::string("masquerade ") + a.str();
    for (auto& [ifname, mac] : m_guards)
        left += (left.empty() ? "" : ", ") + std::string("mac guard ") + ifname + " " + mac;
    for (auto& p : m_ports)
        left += (left.empty() ? "" : ", ") + std::string("port ") + p.str();
    if (why)
        *why = left;
    return left.empty();
}

std::string FakeKernel::dump() const
{
    std::string out;
    for (auto& [id, n] : m_ns) {
        out += "ns " + std::to_string(id) + (n.path.empty() ? "" : " (" + n.path + ")") + ":\n";
        for (auto& [i, l] : n.links) {
            out += "  " + std::to_string(i) + " " + l.link.name + " kind=" + l.link.kind + " mac=" + netlink::mac_str(l.link.mac)
                + " mtu=" + std::to_string(l.link.mtu) + (l.up() ? " up" : " down");
            if (l.link.master)
                out += " master=" + std::to_string(l.link.master);
            if (l.peer_ns >= 0)
                out += " peer=" + std::to_string(l.peer_ns) + "/" + std::to_string(l.link.peer_index);
            for (auto& [vid, pvid] : l.vlans)
                out += " vlan=" + std::to_string(vid) + (pvid ? "(pvid)" : "");
            if (l.isolated)
                out += " isolated";
            if (l.hairpin)
                out += " hairpin";
            for (auto& a : l.addresses)
                out += " " + a.str();
            out += "\n";
        }
        for (auto& r : n.routes)
            out += "  route " + r.dst.str() + (r.gw ? " via " + r.gw->str() : "") + " dev " + std::to_string(r.oif) + "\n";
    }
    std::string fw;
    firewall_empty(&fw);
    for (auto& net : m_chains)
        fw += (fw.empty() ? "" : ", ") + std::string("chain n-") + net;
    out += "firewall: " + fw + "\n";
    return out;
}

// ---- Kernel: namespaces and links --------------------------------------------------------------

Result<std::optional<NsId>> FakeKernel::open_netns(const std::string& path)
{
    TRY(enter("open_netns", false, path));
    return ns_of(path);
}

Result<std::optional<Link>> FakeKernel::get_link(NsId ns, const std::string& name)
{
    TRY(enter("get_link", false, name));
    auto* n = TRY(space(ns));
    if (auto* l = link_in(*n, name))
        return std::optional<Link>(l->link);
    return std::optional<Link> {};
}

Result<std::optional<Link>> FakeKernel::get_link(NsId ns, int index)
{
    TRY(enter("get_link", false));
    auto* n = TRY(space(ns));
    if (auto* l = link_in(*n, index))
        return std::optional<Link>(l->link);
    return std::optional<Link> {};
}

Result<std::optional<Link>> FakeKernel::default_route_link(NsId ns)
{
    TRY(enter("default_route_link", false));
    auto* n = TRY(space(ns));
    for (int family : { 4, 6 })
        for (auto& r : n->routes)
            if (r.dst.addr.family == family && r.dst.prefix == 0 && r.oif > 0)
                if (auto* l = link_in(*n, r.oif))
                    return std::optional<Link>(l->link);
    return std::optional<Link> {};
}

Result<bool> FakeKernel::create_bridge(NsId ns, const std::string& name, std::optional<int> mtu, bool vlan_filtering)
{
    TRY(enter("create_bridge", true, name));
    auto* n = TRY(space(ns));
    TRY(check_name(name));
    if (link_in(*n, name))
        return false;
    auto& l = make_link(*n, name, "bridge", mtu.value_or(1500));
    l.vlan_filtering = vlan_filtering;
    return true;
}

Result<void> FakeKernel::set_vlan_filtering(NsId ns, int index, bool on)
{
    TRY(enter("set_vlan_filtering", true));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (l->link.kind != "bridge")
        return kernel_error(l->link.name + " is not a bridge");
    l->vlan_filtering = on;
    return {};
}

Result<std::optional<Link>> FakeKernel::create_veth(const VethSpec& spec)
{
    TRY(enter("create_veth", true, spec.name));
    auto* n = TRY(space(spec.ns));
    auto* p = TRY(space(spec.peer_ns));
    TRY(check_name(spec.name));
    TRY(check_name(spec.peer_name));
    if (link_in(*n, spec.name))
        return name_exists(spec.name);
    if (link_in(*p, spec.peer_name) || (spec.ns == spec.peer_ns && spec.name == spec.peer_name))
        return name_exists(spec.peer_name);
    int mtu = spec.mtu.value_or(1500);
    auto& a = make_link(*n, spec.name, "veth", mtu);
    int a_index = a.link.index;
    auto& b = make_link(*p, spec.peer_name, "veth", mtu);
    if (spec.peer_mac)
        b.link.mac = *spec.peer_mac;
    b.peer_ns = spec.ns;
    b.link.peer_index = a_index;
    b.link.peer_netnsid = spec.ns == spec.peer_ns ? -1 : spec.ns;
    int b_index = b.link.index;
    auto& a2 = *link_in(*n, a_index);
    a2.peer_ns = spec.peer_ns;
    a2.link.peer_index = b_index;
    a2.link.peer_netnsid = spec.ns == spec.peer_ns ? -1 : spec.peer_ns;
    return m_echo ? std::optional<Link>(a2.link) : std::nullopt;
}

Result<void> FakeKernel::create_child(const ChildSpec& spec)
{
    TRY(enter("create_child", true, spec.name));
    if (spec.kind != "macvlan" && spec.kind != "ipvlan")
        return kernel_error("unknown child kind \"" + spec.kind + "\"");
    auto* host = TRY(space(host_ns));
    auto* n = TRY(space(spec.ns));
    TRY(check_name(spec.name));
    auto* master = link_in(*host, spec.master);
    if (!master)
        return no_device(host_ns, spec.master);
    if (link_in(*n, spec.name))
        return name_exists(spec.name);
    if (spec.kind == "ipvlan" && spec.mac)
        return kernel_error("an ipvlan link cannot have a MAC of its own");
    int mtu = spec.mtu.value_or(master->link.mtu);
    if (mtu > master->link.mtu)
        return kernel_error("mtu " + std::to_string(mtu) + " is larger than the master's");
    Mac master_mac = master->link.mac;
    int master_index = master->link.index;
    auto& l = make_link(*n, spec.name, spec.kind, mtu);
    l.parent = master_index;
    l.mode = spec.mode;
    l.ipvlan_flags = spec.ipvlan_flags;
    if (spec.kind == "ipvlan")
        l.link.mac = master_mac;
    else if (spec.mac)
        l.link.mac = *spec.mac;
    return {};
}

Result<void> FakeKernel::create_vlan(NsId ns, const std::string& name, int parent, uint16_t vid)
{
    TRY(enter("create_vlan", true, name));
    auto* n = TRY(space(ns));
    TRY(check_name(name));
    auto* p = link_in(*n, parent);
    if (!p)
        return no_device(ns, parent);
    if (link_in(*n, name))
        return name_exists(name);
    if (vid == 0 || vid > 4094)
        return kernel_error("VLAN id " + std::to_string(vid) + " is out of range");
    int mtu = p->link.mtu;
    Mac mac = p->link.mac;
    auto& l = make_link(*n, name, "vlan", mtu);
    l.parent = parent;
    l.vid = vid;
    l.link.mac = mac;
    l.link.flags |= IFF_UP;
    return {};
}

Result<void> FakeKernel::delete_link(NsId ns, int index)
{
    TRY(enter("delete_link", true));
    TRY(space(ns));
    erase_link(ns, index);
    return {};
}

Result<void> FakeKernel::set_link(NsId ns, int index, const netlink::LinkChange& change)
{
    TRY(enter("set_link", true, change.name ? "rename " + *change.name : ""));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    // Validate everything before changing anything: one RTM_NEWLINK is applied whole or not at all.
    if (change.name && *change.name != l->link.name) {
        TRY(check_name(*change.name));
        if (link_in(*n, *change.name))
            return name_exists(*change.name);
    }
    FakeLink* bridge = nullptr;
    if (change.master && *change.master != 0) {
        bridge = link_in(*n, *change.master);
        if (!bridge)
            return no_device(ns, *change.master);
        if (bridge->link.kind != "bridge" || bridge->link.index == index)
            return kernel_error(bridge->link.name + " is not a bridge");
    }
    if (change.mtu && (*change.mtu < 68 || *change.mtu > 65535))
        return kernel_error("invalid mtu " + std::to_string(*change.mtu));
    if (change.name)
        l->link.name = *change.name;
    if (change.mtu)
        l->link.mtu = *change.mtu;
    if (change.mac)
        l->link.mac = *change.mac;
    if (change.up)
        l->link.flags = *change.up ? (l->link.flags | IFF_UP) : (l->link.flags & ~unsigned(IFF_UP));
    if (change.promisc)
        l->link.flags = *change.promisc ? (l->link.flags | IFF_PROMISC) : (l->link.flags & ~unsigned(IFF_PROMISC));
    if (change.master && *change.master != l->link.master) {
        l->link.master = *change.master;
        l->vlans.clear();
        l->hairpin = l->isolated = false;
        if (bridge)
            l->vlans[1] = true; // the bridge's default_pvid
    }
    return {};
}

Result<void> FakeKernel::set_bridge_port(NsId ns, int index, const netlink::PortChange& change)
{
    TRY(enter("set_bridge_port", true));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (!l->link.master)
        return kernel_error(l->link.name + " is not a bridge port");
    if (change.hairpin)
        l->hairpin = *change.hairpin;
    if (change.isolated)
        l->isolated = *change.isolated;
    return {};
}

Result<void> FakeKernel::add_bridge_vlan(NsId ns, int index, uint16_t vid, bool pvid_untagged)
{
    TRY(enter("add_bridge_vlan", true));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (!l->link.master)
        return kernel_error(l->link.name + " is not a bridge port");
    if (vid == 0 || vid > 4094)
        return kernel_error("VLAN id " + std::to_string(vid) + " is out of range");
    if (pvid_untagged)
        for (auto& [v, p] : l->vlans)
            p = false; // one PVID per port
    l->vlans[vid] = pvid_untagged;
    return {};
}

Result<void> FakeKernel::del_bridge_vlan(NsId ns, int index, uint16_t vid)
{
    TRY(enter("del_bridge_vlan", true));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (!l->link.master)
        return kernel_error(l->link.name + " is not a bridge port");
    l->vlans.erase(vid);
    return {};
}

// ---- Kernel: addresses, routes, sysctls --------------------------------------------------------

Result<void> FakeKernel::add_address(NsId ns, int index, const IpNet& address, bool)
{
    TRY(enter("add_address", true));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (std::find(l->addresses.begin(), l->addresses.end(), address) == l->addresses.end())
        l->addresses.push_back(address);
    return {};
}

Result<void> FakeKernel::del_address(NsId ns, int index, const IpNet& address)
{
    TRY(enter("del_address", true));
    auto* n = TRY(space(ns));
    if (auto* l = link_in(*n, index))
        std::erase(l->addresses, address);
    return {};
}

Result<std::vector<IpNet>> FakeKernel::addresses(NsId ns, int index)
{
    TRY(enter("addresses", false));
    auto* n = TRY(space(ns));
    if (auto* l = link_in(*n, index))
        return l->addresses;
    return std::vector<IpNet> {};
}

Result<void> FakeKernel::add_route(NsId ns, const netlink::RouteSpec& route)
{
    TRY(enter("add_route", true));
    auto* n = TRY(space(ns));
    FakeLink* dev = nullptr;
    if (route.oif > 0) {
        dev = link_in(*n, route.oif);
        if (!dev)
            return no_device(ns, route.oif);
    }
    for (auto& r : n->routes)
        if (same_dst(r, route))
            return {};
    if (route.gw) {
        if (!dev)
            return kernel_error("a route via " + route.gw->str() + " needs a device");
        if (!dev->up())
            return kernel_error("Nexthop device is not up (" + dev->link.name + ")");
        bool reachable = link_local6(*route.gw);
        for (auto& a : dev->addresses)
            reachable |= a.addr.family == route.gw->family && a.contains(*route.gw);
        for (auto& r : n->routes)
            reachable |= r.oif == route.oif && !r.gw && r.dst.addr.family == route.gw->family && r.dst.contains(*route.gw);
        if (!reachable)
            return kernel_error("Nexthop has invalid gateway (" + route.gw->str() + " is not reachable on " + dev->link.name + ")");
    }
    n->routes.push_back(route);
    return {};
}

Result<std::vector<netlink::RouteSpec>> FakeKernel::routes(NsId ns, int family)
{
    TRY(enter("routes", false));
    auto* n = TRY(space(ns));
    std::vector<netlink::RouteSpec> out;
    // The prefix routes the kernel adds for the addresses of up links, then the added ones.
    for (auto& [i, l] : n->links)
        if (l.up())
            for (auto& a : l.addresses)
                if (a.addr.family == family && a.prefix < a.addr.bits())
                    out.push_back({ IpNet { a.network(), a.prefix }, std::nullopt, i, {}, {}, {}, {} });
    for (auto& r : n->routes)
        if (r.dst.addr.family == family && r.table.value_or(254) == 254)
            out.push_back(r);
    return out;
}

Result<std::string> FakeKernel::read_sysctl(NsId ns, const std::string& key)
{
    TRY(enter("read_sysctl", false, key));
    auto* n = TRY(space(ns));
    if (auto it = n->sysctls.find(key); it != n->sysctls.end())
        return it->second;
    return std::string("0");
}

Result<void> FakeKernel::write_sysctl(NsId ns, const std::string& key, const std::string& value)
{
    TRY(enter("write_sysctl", true, key));
    auto* n = TRY(space(ns));
    // net/ipv4/conf/<ifname>/… exists only while that interface does.
    for (const char* prefix : { "net/ipv4/conf/", "net/ipv6/conf/", "net/ipv4/neigh/", "net/ipv6/neigh/" }) {
        std::string p = prefix;
        if (key.rfind(p, 0) != 0)
            continue;
        std::string ifname = key.substr(p.size(), key.find('/', p.size()) - p.size());
        if (ifname != "all" && ifname != "default" && !link_in(*n, ifname))
            return make_error(Code::Io, "writing /proc/sys/" + key + ": No such file or directory");
    }
    n->sysctls[key] = value;
    return {};
}

// ---- Kernel: firewall --------------------------------------------------------------------------

Result<void> FakeKernel::add_masquerade(const std::string& network, const IpNet& address)
{
    TRY(enter("add_masquerade", true));
    m_masq[address.addr] = network;
    m_chains.insert(network);
    return {};
}

Result<void> FakeKernel::del_masquerade(const IpNet& address)
{
    TRY(enter("del_masquerade", true));
    m_masq.erase(address.addr);
    return {};
}

Result<bool> FakeKernel::has_masquerade(const IpNet& address)
{
    TRY(enter("has_masquerade", false));
    return m_masq.count(address.addr) > 0;
}

Result<void> FakeKernel::remove_network_firewall(const std::string& network)
{
    TRY(enter("remove_network_firewall", true, network));
    // Still in use (an element jumps to it) is fine: it stays.
    for (auto& [a, net] : m_masq)
        if (net == network)
            return {};
    m_chains.erase(network);
    return {};
}

Result<void> FakeKernel::add_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    TRY(enter("add_mac_guard", true));
    if (host_ifname.empty() || !netlink::parse_mac(mac))
        return kernel_error("bad MAC guard element (" + host_ifname + ", " + mac + ")");
    m_guards.insert({ host_ifname, mac });
    return {};
}

Result<void> FakeKernel::del_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    TRY(enter("del_mac_guard", true));
    m_guards.erase({ host_ifname, mac });
    return {};
}

Result<bool> FakeKernel::has_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    TRY(enter("has_mac_guard", false));
    return m_guards.count({ host_ifname, mac }) > 0;
}

Result<void> FakeKernel::add_ports(const std::vector<firewall::PortMap>& ports)
{
    TRY(enter("add_ports", true));
    auto clash = [](const firewall::PortMap& a, const firewall::PortMap& b) {
        return a.proto == b.proto && a.host_port == b.host_port && a.container.family == b.container.family
            && (!a.host_ip || !b.host_ip || *a.host_ip == *b.host_ip);
    };
    for (size_t i = 0; i < ports.size(); ++i) {
        for (auto& have : m_ports)
            if (clash(ports[i], have))
                return kernel_error("host port " + std::to_string(ports[i].host_port) + " is already published");
        for (size_t j = 0; j < i; ++j)
            if (clash(ports[i], ports[j]))
                return kernel_error("host port " + std::to_string(ports[i].host_port) + " is listed twice");
    }
    m_ports.insert(m_ports.end(), ports.begin(), ports.end());
    return {};
}

Result<void> FakeKernel::del_ports(const std::vector<firewall::PortMap>& ports)
{
    TRY(enter("del_ports", true));
    for (auto& p : ports)
        std::erase(m_ports, p);
    return {};
}

// ---- vxlan: the device, neighbours, FDB, replaced routes --------------------------------------
// Entries of a device that is gone are not listed (indexes are never reused).

Result<void> FakeKernel::create_vxlan(NsId ns, const netlink::VxlanSpec& spec)
{
    TRY(enter("create_vxlan", true, spec.name));
    auto* n = TRY(space(ns));
    TRY(check_name(spec.name));
    if (link_in(*n, spec.name))
        return kernel_error("vxlan device " + spec.name + " exists");
    for (auto& [i, l] : n->links)
        if (l.link.vxlan && l.link.vxlan->vni == spec.vni && l.link.vxlan->port == spec.port)
            return kernel_error("A VXLAN device with the specified VNI already exists");
    auto& l = make_link(*n, spec.name, "vxlan", spec.mtu.value_or(1500));
    if (spec.mac)
        l.link.mac = *spec.mac;
    netlink::VxlanInfo info;
    info.vni = spec.vni;
    info.port = spec.port;
    info.learning = spec.learning;
    info.proxy = spec.proxy;
    info.underlay = spec.underlay;
    info.local = spec.local;
    l.link.vxlan = info;
    return {};
}

Result<void> FakeKernel::replace_neighbour(NsId ns, int index, const IpAddr& dst, const Mac& lladdr)
{
    TRY(enter("replace_neighbour", true, dst.str()));
    auto* n = TRY(space(ns));
    if (!link_in(*n, index))
        return no_device(ns, index);
    n->neighbours[{ index, dst }] = lladdr;
    return {};
}

Result<void> FakeKernel::delete_neighbour(NsId ns, int index, const IpAddr& dst)
{
    TRY(enter("delete_neighbour", true, dst.str()));
    auto* n = TRY(space(ns));
    n->neighbours.erase({ index, dst });
    return {};
}

Result<std::vector<netlink::Neighbour>> FakeKernel::neighbours(NsId ns, int index)
{
    TRY(enter("neighbours", false));
    auto* n = TRY(space(ns));
    std::vector<netlink::Neighbour> out;
    for (auto& [key, mac] : n->neighbours)
        if ((index == 0 || key.first == index) && link_in(*n, key.first))
            out.push_back({ key.first, key.second, mac, NUD_PERMANENT, 0 });
    return out;
}

Result<void> FakeKernel::replace_fdb(NsId ns, int index, const Mac& mac, const IpAddr& dst)
{
    TRY(enter("replace_fdb", true, netlink::mac_str(mac)));
    auto* n = TRY(space(ns));
    auto* l = link_in(*n, index);
    if (!l)
        return no_device(ns, index);
    if (l->link.kind != "vxlan")
        return kernel_error("an FDB entry with a destination needs a vxlan device, not " + l->link.name);
    n->fdb[{ index, mac }] = dst;
    return {};
}

Result<void> FakeKernel::delete_fdb(NsId ns, int index, const Mac& mac, const std::optional<IpAddr>& dst)
{
    TRY(enter("delete_fdb", true, netlink::mac_str(mac)));
    auto* n = TRY(space(ns));
    auto it = n->fdb.find({ index, mac });
    if (it != n->fdb.end() && (!dst || it->second == *dst))
        n->fdb.erase(it);
    return {};
}

Result<std::vector<netlink::FdbEntry>> FakeKernel::fdb(NsId ns, int index)
{
    TRY(enter("fdb", false));
    auto* n = TRY(space(ns));
    std::vector<netlink::FdbEntry> out;
    for (auto& [key, dst] : n->fdb)
        if ((index == 0 || key.first == index) && link_in(*n, key.first))
            out.push_back({ key.first, key.second, dst, 0, NUD_PERMANENT, NTF_SELF });
    return out;
}

Result<void> FakeKernel::replace_route(NsId ns, const netlink::RouteSpec& route)
{
    TRY(enter("replace_route", true, route.dst.str()));
    auto* n = TRY(space(ns));
    FakeLink* dev = route.oif > 0 ? link_in(*n, route.oif) : nullptr;
    if (route.oif > 0 && !dev)
        return no_device(ns, route.oif);
    if (route.gw && !route.onlink) {
        bool reachable = false;
        if (dev)
            for (auto& a : dev->addresses)
                reachable |= a.addr.family == route.gw->family && a.contains(*route.gw);
        if (!reachable)
            return kernel_error("Nexthop has invalid gateway (" + route.gw->str() + ", and the route is not onlink)");
    }
    if (route.gw && dev && !dev->up())
        return kernel_error("Nexthop device is not up (" + dev->link.name + ")");
    n->routes.erase(std::remove_if(n->routes.begin(), n->routes.end(), [&](const netlink::RouteSpec& r) { return same_dst(r, route); }),
        n->routes.end());
    n->routes.push_back(route);
    return {};
}

Result<void> FakeKernel::delete_route(NsId ns, const netlink::RouteSpec& route)
{
    TRY(enter("delete_route", true, route.dst.str()));
    auto* n = TRY(space(ns));
    n->routes.erase(std::remove_if(n->routes.begin(), n->routes.end(),
                        [&](const netlink::RouteSpec& r) {
                            return same_dst(r, route) && (!route.gw || r.gw == route.gw) && (route.oif == 0 || r.oif == route.oif);
                        }),
        n->routes.end());
    return {};
}

} // namespace cnm::test
