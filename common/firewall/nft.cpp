#include "firewall/nft.hpp"

#include <nftables/libnftables.h>

#include <cctype>
#include <dlfcn.h>
#include <type_traits>
#include <cstdint>
#include <cstdio>
#include <memory>

namespace cnm::firewall {

namespace {

// libnftables is loaded on first use, not linked: it pulls in five more shared libraries (nftnl,
// xtables, jansson, gmp…), about a millisecond of dynamic loading on every exec of a plugin, and
// most ADDs never touch a firewall rule.
struct Api {
    decltype(&nft_ctx_new) ctx_new = nullptr;
    decltype(&nft_ctx_free) ctx_free = nullptr;
    decltype(&nft_ctx_buffer_output) buffer_output = nullptr;
    decltype(&nft_ctx_buffer_error) buffer_error = nullptr;
    decltype(&nft_ctx_get_output_buffer) get_output = nullptr;
    decltype(&nft_ctx_get_error_buffer) get_error = nullptr;
    decltype(&nft_run_cmd_from_buffer) run_cmd = nullptr;
    std::string failure;
};

const Api& api()
{
    static Api loaded = [] {
        Api a;
        void* lib = ::dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
            a.failure = ::dlerror();
            return a;
        }
        auto sym = [&](auto& slot, const char* name) {
            slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(::dlsym(lib, name));
            if (!slot && a.failure.empty())
                a.failure = std::string("missing symbol ") + name;
        };
        sym(a.ctx_new, "nft_ctx_new");
        sym(a.ctx_free, "nft_ctx_free");
        sym(a.buffer_output, "nft_ctx_buffer_output");
        sym(a.buffer_error, "nft_ctx_buffer_error");
        sym(a.get_output, "nft_ctx_get_output_buffer");
        sym(a.get_error, "nft_ctx_get_error_buffer");
        sym(a.run_cmd, "nft_run_cmd_from_buffer");
        return a;
    }();
    return loaded;
}

struct Context {
    nft_ctx* ctx = nullptr;
    Context()
    {
        if (api().failure.empty())
            ctx = api().ctx_new(NFT_CTX_DEFAULT);
        if (ctx) {
            api().buffer_output(ctx);
            api().buffer_error(ctx);
        }
    }
    ~Context()
    {
        if (ctx)
            api().ctx_free(ctx);
    }
};

struct Outcome {
    bool ok;
    std::string output;
    std::string error;
};

Outcome run(const std::string& commands)
{
    if (!api().failure.empty())
        return { false, "", "libnftables is not available (install libnftables1): " + api().failure };
    Context c;
    if (!c.ctx)
        return { false, "", "cannot create an nftables context" };
    int rc = api().run_cmd(c.ctx, commands.c_str());
    const char* out = api().get_output(c.ctx);
    const char* err = api().get_error(c.ctx);
    return { rc == 0, out ? out : "", err ? err : "" };
}

/// A concurrent ruleset update can interrupt a command (EINTR, EBUSY): run it again, a few times.
Outcome run_retrying(const std::string& commands)
{
    Outcome o;
    for (int attempt = 0; attempt < 8; ++attempt) {
        o = run(commands);
        bool transient = o.error.find("Interrupted system call") != std::string::npos
            || o.error.find("Resource temporarily unavailable") != std::string::npos
            || o.error.find("Device or resource busy") != std::string::npos;
        if (o.ok || !transient)
            break;
    }
    return o;
}

/// The kernel's "no such element / set / table" — the only failure that means "absent".
bool absent(const Outcome& o)
{
    return !o.ok && (o.error.find("No such file or directory") != std::string::npos || o.error.find("does not exist") != std::string::npos);
}

Result<void> fail(const std::string& what, const Outcome& o)
{
    if (o.error.find("Operation not supported") != std::string::npos || o.error.find("Protocol not supported") != std::string::npos)
        return make_error(Code::Kernel, what + ": the kernel lacks nftables support (CONFIG_NF_TABLES and its nat/bridge parts)", o.error);
    return make_error(Code::Kernel, what + " with nftables failed", o.error);
}

/// Deletes one element or object; absent is success, any other failure is an error (never read
/// as "absent"). No check first: a check-then-delete races with a parallel delete.
Result<void> delete_or_absent(const std::string& what, const std::string& command)
{
    auto o = run_retrying(command);
    if (o.ok || absent(o))
        return {};
    return fail(what, o);
}

/// True when present, false when absent, an error for anything else.
Result<bool> present(const std::string& what, const std::string& command)
{
    auto o = run_retrying(command);
    if (o.ok)
        return true;
    if (absent(o))
        return false;
    TRY(fail(what, o));
    return false;
}

Result<void> run_or_fail(const std::string& what, const std::string& commands)
{
    auto o = run_retrying(commands);
    if (o.ok)
        return {};
    if (o.error.find("Operation not supported") != std::string::npos || o.error.find("Protocol not supported") != std::string::npos)
        return make_error(Code::Kernel, what + ": the kernel lacks nftables support (CONFIG_NF_TABLES and its nat/bridge parts)", o.error);
    return make_error(Code::Kernel, what + " with nftables failed", o.error);
}

const char* family(const IpNet& a)
{
    return a.addr.family == 4 ? "ip" : "ip6";
}

// nft identifiers take [a-zA-Z0-9_] (no quoting in nft 1.0.6): the network name with other bytes
// folded to '_', plus a hash of the exact name so that "a-b" and "a_b" stay apart.
std::string chain_of(const std::string& network)
{
    uint32_t h = 2166136261u;
    std::string safe;
    for (unsigned char c : network) {
        h = (h ^ c) * 16777619u;
        if (safe.size() < 48)
            safe += std::isalnum(c) ? static_cast<char>(c) : '_';
    }
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", h);
    return "n_" + safe + "_" + hex;
}

} // namespace

Result<void> add_masquerade(const std::string& network, const IpNet& address)
{
    std::string f = family(address);
    std::string type = address.addr.family == 4 ? "ipv4_addr" : "ipv6_addr";
    std::string multicast = address.addr.family == 4 ? "224.0.0.0/4" : "ff00::/8";
    IpNet subnet { address.network(), address.prefix };
    std::string chain = chain_of(network);
    std::string batch
        = "add table " + f + " cnm\n"
          "add map " + f + " cnm masq { type " + type + " : verdict ; }\n"
          "add chain " + f + " cnm postrouting { type nat hook postrouting priority srcnat ; policy accept ; }\n"
          "flush chain " + f + " cnm postrouting\n"
          "add rule " + f + " cnm postrouting " + f + " saddr vmap @masq\n"
          "add chain " + f + " cnm " + chain + "\n"
          "flush chain " + f + " cnm " + chain + "\n"
          "add rule " + f + " cnm " + chain + " " + f + " daddr " + subnet.str() + " accept\n"
          "add rule " + f + " cnm " + chain + " " + f + " daddr " + multicast + " accept\n"
          "add rule " + f + " cnm " + chain + " masquerade\n"
          "add element " + f + " cnm masq { " + address.addr.str() + " : jump " + chain + " }\n";
    return run_or_fail("setting up masquerading for " + address.addr.str(), batch);
}

Result<void> del_masquerade(const IpNet& address)
{
    return delete_or_absent("removing masquerading for " + address.addr.str(),
        std::string("delete element ") + family(address) + " cnm masq { " + address.addr.str() + " }\n");
}

Result<bool> has_masquerade(const IpNet& address)
{
    return present("looking up masquerading for " + address.addr.str(),
        std::string("get element ") + family(address) + " cnm masq { " + address.addr.str() + " }\n");
}

Result<void> remove_network(const std::string& network)
{
    // The network's chain, once no masquerade element jumps to it (a busy chain stays).
    for (const char* f : { "ip", "ip6" }) {
        auto o = run_retrying(std::string("delete chain ") + f + " cnm " + chain_of(network) + "\n");
        if (!o.ok && !absent(o) && o.error.find("Device or resource busy") == std::string::npos)
            TRY(fail("removing the firewall chain of network " + network, o));
    }
    return {};
}

Result<void> add_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    std::string batch
        = "add table bridge cnm\n"
          "add set bridge cnm guarded { type ifname ; }\n"
          "add set bridge cnm allowed { type ifname . ether_addr ; }\n"
          "add chain bridge cnm prerouting { type filter hook prerouting priority -300 ; policy accept ; }\n"
          "flush chain bridge cnm prerouting\n"
          "add rule bridge cnm prerouting iifname @guarded iifname . ether saddr != @allowed drop\n"
          "add element bridge cnm guarded { \"" + host_ifname + "\" }\n"
          "add element bridge cnm allowed { \"" + host_ifname + "\" . " + mac + " }\n";
    return run_or_fail("setting up MAC spoof checking on " + host_ifname, batch);
}

Result<void> del_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    // Two elements, each removed on its own: one absent must not keep the other.
    auto guarded = delete_or_absent("removing MAC spoof checking on " + host_ifname, "delete element bridge cnm guarded { \"" + host_ifname + "\" }\n");
    auto allowed = delete_or_absent("removing MAC spoof checking on " + host_ifname,
        "delete element bridge cnm allowed { \"" + host_ifname + "\" . " + mac + " }\n");
    if (!guarded)
        return guarded;
    return allowed;
}

Result<bool> has_mac_guard(const std::string& host_ifname, const std::string& mac)
{
    return present("looking up MAC spoof checking on " + host_ifname, "get element bridge cnm allowed { \"" + host_ifname + "\" . " + mac + " }\n");
}

namespace {

const char* family(const IpAddr& a)
{
    return a.family == 4 ? "ip" : "ip6";
}

// The map and key of one element: "ports { 10.0.0.1 . tcp . 8080 }" or "anyports { tcp . 8080 }".
std::string element_key(const PortMap& m)
{
    std::string key = *proto_name(m.proto) + " . " + std::to_string(m.host_port);
    if (m.host_ip)
        return "ports { " + m.host_ip->str() + " . " + key;
    return "anyports { " + key;
}

std::string port_map_setup(const char* f)
{
    std::string addr = std::string(f) == "ip" ? "ipv4_addr" : "ipv6_addr";
    std::string batch = "add table " + std::string(f) + " cnm\n"
        "add map " + f + " cnm ports { type " + addr + " . inet_proto . inet_service : " + addr + " . inet_service ; }\n"
        "add map " + f + " cnm anyports { type inet_proto . inet_service : " + addr + " . inet_service ; }\n";
    for (auto [chain, hook] : { std::pair { "prerouting", "prerouting" }, { "output", "output" } }) {
        batch += "add chain " + std::string(f) + " cnm " + chain + " { type nat hook " + hook + " priority -100 ; policy accept ; }\n"
            "flush chain " + f + " cnm " + chain + "\n"
            "add rule " + f + " cnm " + chain + " dnat " + f + " to " + f + " daddr . meta l4proto . th dport map @ports\n"
            "add rule " + f + " cnm " + chain + " fib daddr type local dnat " + f + " to meta l4proto . th dport map @anyports\n";
    }
    return batch;
}

} // namespace

Result<void> add_port_maps(const std::vector<PortMap>& maps)
{
    if (maps.empty())
        return {};
    std::string batch;
    bool v4 = false, v6 = false;
    for (auto& m : maps) {
        if (!proto_name(m.proto))
            return make_error(Code::InvalidConfig, "protocol " + std::to_string(m.proto) + " cannot be published (tcp, udp or sctp)");
        if (m.host_ip && m.host_ip->family != m.container.family)
            return make_error(Code::InvalidConfig, "cannot publish " + m.str() + ": the host and container addresses are of different families");
        (m.container.family == 4 ? v4 : v6) = true;
    }
    if (v4)
        batch += port_map_setup("ip");
    if (v6)
        batch += port_map_setup("ip6");
    std::string what;
    for (auto& m : maps) {
        std::string to = m.container.str() + " . " + std::to_string(m.port);
        batch += std::string("create element ") + family(m.container) + " cnm " + element_key(m) + " : " + to + " }\n";
        what += (what.empty() ? "" : ", ") + m.str();
    }
    auto o = run(batch);
    if (o.ok)
        return {};
    if (o.error.find("File exists") != std::string::npos)
        return make_error(Code::InvalidConfig, "cannot publish " + what + ": a host port is already published", o.error);
    return run_or_fail("publishing " + what, batch);
}

Result<void> del_port_maps(const std::vector<PortMap>& maps)
{
    std::optional<Error> first;
    for (auto& m : maps) {
        if (!proto_name(m.proto))
            continue;
        auto done = delete_or_absent("unpublishing " + m.str(), std::string("delete element ") + family(m.container) + " cnm " + element_key(m) + " }\n");
        if (!done && !first)
            first = done.release_error();
    }
    if (first)
        return *first;
    return {};
}

Result<bool> has_port_map(const PortMap& m)
{
    if (!proto_name(m.proto))
        return false;
    return present("looking up " + m.str(), std::string("get element ") + family(m.container) + " cnm " + element_key(m) + " }\n");
}

} // namespace cnm::firewall
