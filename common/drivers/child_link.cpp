// macvlan and ipvlan: a child link of a parent ("master") interface, placed straight into the
// sandbox (CNI) or left in the host for Docker to move. The two kinds differ in their modes, in
// the MAC (an ipvlan child shares the master's, so a custom one is refused), in the neighbour
// notifications and in Docker's gateway; everything else is this one class.
//
// macvlan modes: "bridge" (children of one master reach each other inside the kernel), "private"
// (they never do), "vepa" (their traffic hairpins through the external switch), "passthru" (one
// child takes over the master). ipvlan modes: "l2" (the default), "l3" and "l3s" (the master
// routes between its children; no ARP or broadcast). A child cannot talk to its master's own
// addresses — a kernel property. The link is created with IFLA_NET_NS_FD under the runtime's
// name, in the sandbox at once (a rename would wait for an RCU grace period under the rtnl lock;
// names need only be unique there). Mode and parent cannot change after creation. On a kernel
// without CONFIG_IPVLAN the kernel's refusal becomes code 105 "ipvlan is not supported by this
// kernel".
#include "drivers/common.hpp"

#include "util/fault.hpp"

#include <algorithm>
#include <linux/if_link.h>
#include <utility>

namespace cnm::drivers {

namespace {

struct Kind {
    std::string_view name;
    Json defaults;
    std::vector<std::pair<std::string, uint32_t>> modes; // the first is the default
    bool custom_mac;  // macvlan: yes; ipvlan children share the master's MAC
    bool notify;      // arp_notify/ndisc_notify on the new interface (macvlan, as the reference)
};

struct ChildKeys {
    std::string master; // empty: the interface of the default route
    std::string mode;
    uint32_t mode_value = 0;
    std::optional<int> mtu;
    std::optional<Mac> mac;
    uint16_t ipvlan_flags = 0;
};

class ChildDriver final : public Driver {
public:
    explicit ChildDriver(Kind kind) : m_kind(std::move(kind))
    {
        std::vector<std::string> modes;
        for (auto& m : m_kind.modes)
            modes.push_back(m.first);
        m_choices["mode"] = modes;
        if (m_kind.name == "ipvlan")
            m_choices["flag"] = { "bridge", "private", "vepa" };
    }

    std::string_view kind() const override { return m_kind.name; }
    const Json& network_defaults() const override { return m_kind.defaults; }
    const Json& attachment_defaults() const override
    {
        static const Json defaults = { { "mtu", 0 } };
        return defaults;
    }
    const std::map<std::string, std::vector<std::string>>& choices() const override { return m_choices; }
    Json identity(const Json& options) const override
    {
        auto c = parse_keys(options);
        return Json { { "master", c ? c->master : "" } };
    }
    bool own_mac() const override { return m_kind.custom_mac; }

    Result<void> validate(const Json& options) const override
    {
        TRY(parse_keys(options));
        return {};
    }

    Result<void> ensure_network(Kernel& kernel, const Json& options, const std::vector<IpNet>&) override
    {
        t_checked.reset();
        auto c = TRY(parse_keys(options));
        Link master = TRY(find_master(kernel, c.master));
        t_checked = CheckedMaster { &kernel, c.master, std::move(master) };
        return {};
    }

    Result<void> probe(Kernel& kernel, const Json& options) override
    {
        auto c = TRY(parse_keys(options));
        auto master = TRY(find_master(kernel, c.master));
        std::string name = "cnp" + random_hex(4);
        TRY(kernel.create_child({ std::string(m_kind.name), name, master.index, host_ns, c.mode_value, c.ipvlan_flags, std::nullopt, std::nullopt }));
        return delete_host_link(kernel, name);
    }

    Result<void> remove_network(Kernel&, const Json&) override { return {}; }

    Json plan(const Json& options, const EndpointRecord&, const Target& target) override
    {
        auto c = parse_keys(options);
        Json state = { { "master", c ? c->master : "" }, { "mode", c ? c->mode : m_kind.modes.front().first } };
        if (target.host())
            state["childLink"] = target.ifname;
        return state;
    }

    Result<Attached> attach(Kernel& kernel, const Json& options, EndpointRecord& endpoint, const Target& target, const NetSetup& ipam) override
    {
        auto c = TRY(parse_keys(options));
        // The lifecycle calls ensure_network just before, on this thread: its lookup is this one.
        std::optional<CheckedMaster> checked = std::exchange(t_checked, std::nullopt);
        Link master;
        if (checked && checked->kernel == &kernel && checked->given == c.master)
            master = std::move(checked->link);
        else
            master = TRY(find_master(kernel, c.master));
        endpoint.driver_state["master"] = master.name;
        if (c.mtu && *c.mtu > master.mtu)
            return invalid("\"mtu\" " + std::to_string(*c.mtu) + " is larger than the master's (" + std::to_string(master.mtu) + ")");
        std::optional<Mac> mac = c.mac;
        if (!endpoint.mac.empty())
            mac = netlink::parse_mac(endpoint.mac);
        if (mac && !m_kind.custom_mac)
            return invalid(std::string(m_kind.name) + " interfaces share their master's MAC address: a custom MAC (" + netlink::mac_str(*mac)
                + ") cannot be set");
        // Made under the runtime's name, in the sandbox at once: a rename waits for an RCU grace
        // period under the rtnl lock.
        NsId ns = host_ns;
        std::string name = target.ifname;
        if (!target.host())
            ns = TRY(open_sandbox(kernel, target));
        if (auto made = kernel.create_child({ std::string(m_kind.name), name, master.index, ns, c.mode_value, c.ipvlan_flags, c.mtu, mac });
            !made) {
            if (!target.host() && TRY(name_taken(kernel, ns, name, made.error()))) {
                // Not ours: the rollback's detach must leave it (this mark lives only in memory,
                // with the intent the rollback removes).
                endpoint.driver_state["nameTaken"] = true;
                return name_taken_error(name);
            }
            return made.release_error();
        }
        fault_point((std::string(m_kind.name) + "-after-link").c_str());

        Attached out;
        out.setup = ipam;
        out.disable_gateway_service = true;
        // As Docker's own drivers: the subnet's gateway is the router outside, except in ipvlan
        // l3/l3s, where the parent routes and the default route is "connected".
        bool routed = m_kind.name == "ipvlan" && c.mode != "l2";
        out.announce_gateway = !routed;
        if (routed)
            for (auto& ip : ipam.ips)
                out.static_routes.push_back({ IpNet { IpAddr { ip.address.addr.family, 0 }, 0 }, std::nullopt, {}, {}, {}, {}, {} });
        Link link;
        if (target.host()) {
            auto made = TRY(kernel.get_link(host_ns, name));
            if (!made)
                return make_error(Code::Kernel, "the " + std::string(m_kind.name) + " link " + name + " is missing");
            link = *made;
        } else {
            link = TRY(configure_container(kernel, ns, {}, target.ifname, out.setup));
            if (m_kind.notify) {
                // Announce the new MAC at once (gratuitous ARP / unsolicited NA), as the reference does.
                TRY(kernel.write_sysctls(ns, { { "net/ipv4/conf/" + target.ifname + "/arp_notify", "1" },
                                                 { "net/ipv6/conf/" + target.ifname + "/ndisc_notify", "1", true } })); // absent without IPv6
            }
        }
        if (m_kind.custom_mac)
            endpoint.mac = netlink::mac_str(link.mac);
        out.setup.interfaces.clear();
        if (!target.host())
            out.setup.interfaces.push_back({ target.ifname, netlink::mac_str(link.mac), {}, target.netns, "", "" });
        for (auto& ip : out.setup.ips)
            ip.interface = target.host() ? std::nullopt : std::optional(0);
        return out;
    }

    FirewallState firewall(const Json&, const EndpointRecord&) const override { return {}; }

    Result<void> detach(Kernel& kernel, const EndpointRecord& endpoint) override
    {
        const Json& d = endpoint.driver_state;
        TRY(delete_host_link(kernel, state_string(d, "childLink"), std::string(m_kind.name)));
        if (endpoint.frontend == Frontend::Docker || d.contains("nameTaken"))
            return {};
        // Under its final name (or, in a record of an older build, the temporary one, if a crash
        // came before the rename).
        return delete_in_sandbox(kernel, endpoint.netns, { endpoint.ifname, state_string(d, "tempName") }, std::string(m_kind.name));
    }

    Result<void> check(Kernel& kernel, const Json&, const EndpointRecord& endpoint, const NetSetup& prev) override
    {
        TRY(check_container(kernel, endpoint, std::string(m_kind.name), prev));
        return {};
    }

private:
    Result<ChildKeys> parse_keys(const Json& raw) const
    {
        ChildKeys c;
        c.mode = m_kind.modes.front().first;
        c.mode_value = m_kind.modes.front().second;
        c.master = TRY(json_string(raw, "master", "")).value_or("");
        if (!c.master.empty() && !valid_ifname(c.master))
            return invalid("\"master\" = \"" + c.master + "\" is not a usable interface name");
        if (auto mode = TRY(json_string(raw, "mode", "")); mode && !mode->empty()) {
            auto it = std::find_if(m_kind.modes.begin(), m_kind.modes.end(), [&](auto& m) { return m.first == *mode; });
            if (it == m_kind.modes.end()) {
                std::string known;
                for (auto& m : m_kind.modes)
                    known += (known.empty() ? "" : ", ") + m.first;
                return invalid("unknown " + std::string(m_kind.name) + " mode \"" + *mode + "\" (" + known + ")");
            }
            c.mode = *mode;
            c.mode_value = it->second;
        }
        c.mtu = TRY(positive_int(raw, "mtu", 65535));
        c.mac = TRY(mac_key(raw, "mac"));
        if (m_kind.name == "ipvlan") {
            // Docker's ipvlan_flag (the reference CNI ipvlan has no such key; ours takes "flag").
            if (auto flag = TRY(json_string(raw, "flag", "")); flag && *flag != "bridge") {
                if (*flag != "private" && *flag != "vepa")
                    return invalid("\"flag\" = \"" + *flag + "\" is not an ipvlan flag (bridge, private or vepa)");
                c.ipvlan_flags = *flag == "private" ? IPVLAN_F_PRIVATE : IPVLAN_F_VEPA;
            }
        }
        if (c.mac && !m_kind.custom_mac)
            return invalid(std::string(m_kind.name) + " interfaces share their master's MAC address: a custom MAC (" + netlink::mac_str(*c.mac)
                + ") cannot be set");
        return c;
    }

    static Result<Link> find_master(Kernel& kernel, const std::string& name)
    {
        if (name.empty()) {
            if (auto link = TRY(kernel.default_route_link(host_ns)))
                return *link;
            return invalid("no \"master\" given and no default route to take it from");
        }
        auto link = TRY(kernel.get_link(host_ns, name));
        if (!link)
            return invalid("master interface \"" + name + "\" not found");
        return *link;
    }

    Kind m_kind;
    std::map<std::string, std::vector<std::string>> m_choices;
    // The master the last ensure_network of this thread found, taken by the attach that follows
    // it: Endpoints::add and Endpoints::join call the two back to back, with no kernel call
    // between (cnm-shim serves calls on several threads, hence per thread). Every ensure_network
    // clears it first, so a failed one leaves nothing, and Docker's CreateNetwork, which calls
    // ensure_network alone, leaves an entry the next ensure_network replaces before any attach.
    struct CheckedMaster {
        const Kernel* kernel;
        std::string given; // "master" as configured ("" is the default route's interface)
        Link link;
    };
    static thread_local std::optional<CheckedMaster> t_checked;
};

thread_local std::optional<ChildDriver::CheckedMaster> ChildDriver::t_checked;

} // namespace

Driver& macvlan_driver()
{
    static ChildDriver driver({ "macvlan", { { "master", "" }, { "mode", "bridge" } },
        { { "bridge", MACVLAN_MODE_BRIDGE }, { "private", MACVLAN_MODE_PRIVATE }, { "vepa", MACVLAN_MODE_VEPA }, { "passthru", MACVLAN_MODE_PASSTHRU } },
        true, true });
    return driver;
}

Driver& ipvlan_driver()
{
    static ChildDriver driver({ "ipvlan", { { "master", "" }, { "mode", "l2" }, { "flag", "bridge" } },
        { { "l2", IPVLAN_MODE_L2 }, { "l3", IPVLAN_MODE_L3 }, { "l3s", IPVLAN_MODE_L3S } }, false, false });
    return driver;
}

} // namespace cnm::drivers
