#include "cnm/blocks.hpp"

#include <cctype>
#include <type_traits>

namespace cnm {

namespace {

Error bad(const std::string& msg)
{
    return make_error(Code::InvalidConfig, "invalid config: " + msg);
}

Result<std::optional<IpNet>> subnet_key(const Json& conf, const char* key, int family)
{
    auto text = TRY(json_string(conf, key, ""));
    if (!text)
        return std::optional<IpNet> {};
    auto net = IpNet::parse(*text);
    if (!net || net->addr.family != family)
        return bad("\"" + std::string(key) + "\" = \"" + *text + "\" is not an IPv" + std::to_string(family) + " subnet");
    if (!net->is_network())
        return bad("\"" + std::string(key) + "\" = \"" + *text + "\" has host bits set (the subnet is " + IpNet { net->network(), net->prefix }.str() + ")");
    return net;
}

template<typename T>
std::string show(const T& v)
{
    if constexpr (std::is_same_v<T, IpNet>)
        return "\"" + v.str() + "\"";
    else
        return std::to_string(v);
}

} // namespace

Json NetworkFacts::to_json() const
{
    Json j = { { "vni", vni }, { "subnet", subnet.str() }, { "blockSize", block_size }, { "port", port }, { "mtu", mtu } };
    if (subnet6) {
        j["subnet6"] = subnet6->str();
        j["blockSize6"] = block_size6;
    }
    return j;
}

Result<NetworkFacts> NetworkFacts::from_json(const Json& doc, const std::string& where)
{
    auto corrupt = [&](const std::string& why) { return make_error(Code::StateCorrupt, where + " is not a network document (" + why + ")"); };
    if (!doc.is_object())
        return corrupt("not an object");
    auto wanted = FactsWanted::parse(doc);
    if (!wanted)
        return corrupt(wanted.error().msg);
    if (!wanted->vni || !wanted->subnet || !wanted->mtu)
        return corrupt("vni, subnet and mtu are required");
    NetworkFacts f;
    f.vni = *wanted->vni;
    f.subnet = *wanted->subnet;
    f.subnet6 = wanted->subnet6;
    f.block_size = wanted->block_size.value_or(default_block_size4);
    f.block_size6 = wanted->block_size6.value_or(default_block_size6);
    f.port = wanted->port.value_or(default_vxlan_port);
    f.mtu = *wanted->mtu;
    return f;
}

Result<FactsWanted> FactsWanted::parse(const Json& conf)
{
    FactsWanted w;
    if (auto vni = TRY(json_int(conf, "vni", "", 1, (1 << 24) - 1)))
        w.vni = static_cast<uint32_t>(*vni);
    w.subnet = TRY(subnet_key(conf, "subnet", 4));
    w.subnet6 = TRY(subnet_key(conf, "subnet6", 6));
    if (auto b = TRY(json_int(conf, "blockSize", "", 1, 32)))
        w.block_size = static_cast<int>(*b);
    if (auto b = TRY(json_int(conf, "blockSize6", "", 1, 128)))
        w.block_size6 = static_cast<int>(*b);
    if (auto p = TRY(json_int(conf, "port", "", 1, 65535)))
        w.port = static_cast<int>(*p);
    if (auto m = TRY(json_int(conf, "mtu", "", 68, 65535)))
        w.mtu = static_cast<int>(*m);
    // A block needs room for its gateway and one address besides the network and broadcast.
    if (w.block_size && *w.block_size > 30)
        return bad("\"blockSize\" " + std::to_string(*w.block_size) + " leaves no address for a container (at most 30)");
    if (w.block_size6 && *w.block_size6 > 126)
        return bad("\"blockSize6\" " + std::to_string(*w.block_size6) + " leaves no address for a container (at most 126)");
    if (w.subnet && w.block_size && *w.block_size < w.subnet->prefix)
        return bad("\"blockSize\" /" + std::to_string(*w.block_size) + " is larger than \"subnet\" " + w.subnet->str());
    if (w.subnet && !w.block_size && default_block_size4 < w.subnet->prefix)
        return bad("\"subnet\" " + w.subnet->str() + " is smaller than a block (/" + std::to_string(default_block_size4)
            + "): set \"blockSize\"");
    if (w.subnet6 && w.block_size6.value_or(default_block_size6) < w.subnet6->prefix)
        return bad("\"blockSize6\" is larger than \"subnet6\" " + w.subnet6->str());
    return w;
}

Result<NetworkFacts> FactsWanted::complete(int default_mtu) const
{
    if (!vni)
        return bad("\"vni\" is required (the network's VXLAN id, 1-16777215)");
    if (!subnet)
        return bad("\"subnet\" is required (the cluster's IPv4 subnet, cut into blocks per host)");
    NetworkFacts f;
    f.vni = *vni;
    f.subnet = *subnet;
    f.subnet6 = subnet6;
    f.block_size = block_size.value_or(default_block_size4);
    f.block_size6 = block_size6.value_or(default_block_size6);
    f.port = port.value_or(default_vxlan_port);
    f.mtu = mtu.value_or(default_mtu);
    return f;
}

Result<void> FactsWanted::agree(const std::string& network, const NetworkFacts& stored) const
{
    auto differ = [&](const char* key, const std::string& have, const std::string& want) {
        return bad("network \"" + network + "\" exists in the cluster with \"" + key + "\" = " + have + ", but this config asks for " + want);
    };
    if (vni && *vni != stored.vni)
        return differ("vni", show(stored.vni), show(*vni));
    if (subnet && *subnet != stored.subnet)
        return differ("subnet", show(stored.subnet), show(*subnet));
    if (subnet6 && (!stored.subnet6 || *subnet6 != *stored.subnet6))
        return differ("subnet6", stored.subnet6 ? show(*stored.subnet6) : "none", show(*subnet6));
    if (block_size && *block_size != stored.block_size)
        return differ("blockSize", show(stored.block_size), show(*block_size));
    if (block_size6 && stored.subnet6 && *block_size6 != stored.block_size6)
        return differ("blockSize6", show(stored.block_size6), show(*block_size6));
    if (port && *port != stored.port)
        return differ("port", show(stored.port), show(*port));
    if (mtu && *mtu != stored.mtu)
        return differ("mtu", show(stored.mtu), show(*mtu));
    return {};
}

IpAddr BlockOwner::gateway() const
{
    return block.network().next();
}

Json BlockOwner::to_json() const
{
    return { { "node", node }, { "vtep", vtep.str() }, { "mac", netlink::mac_str(mac) } };
}

std::optional<BlockOwner> BlockOwner::from_json(const IpNet& block, const Json& doc)
{
    if (!doc.is_object())
        return std::nullopt;
    auto str = [&](const char* key) { return doc.contains(key) && doc[key].is_string() ? doc[key].get<std::string>() : std::string(); };
    BlockOwner b;
    b.block = block;
    b.node = str("node");
    auto vtep = IpAddr::parse(str("vtep"));
    auto mac = netlink::parse_mac(str("mac"));
    if (b.node.empty() || !vtep || !mac)
        return std::nullopt;
    b.vtep = *vtep;
    b.mac = *mac;
    return b;
}

Mac vtep_mac(const IpAddr& vtep)
{
    auto v = static_cast<uint32_t>(vtep.value & 0xffffffffu);
    return { 0x02, uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v), uint8_t(vtep.family == 4 ? 0x00 : 0x06) };
}

std::string block_key(const IpNet& block)
{
    return block.network().str() + "_" + std::to_string(block.prefix);
}

std::optional<IpNet> parse_block_key(std::string_view key)
{
    auto sep = key.rfind('_');
    if (sep == std::string_view::npos)
        return std::nullopt;
    auto net = IpNet::parse(std::string(key.substr(0, sep)) + "/" + std::string(key.substr(sep + 1)));
    if (!net || !net->is_network())
        return std::nullopt;
    return net;
}

u128 block_count(const IpNet& subnet, int block_prefix)
{
    int bits = block_prefix - subnet.prefix;
    if (bits < 0)
        return 0;
    return bits >= 64 ? (u128(1) << 64) : (u128(1) << bits);
}

IpNet nth_block(const IpNet& subnet, int block_prefix, u128 n)
{
    int host_bits = subnet.addr.bits() - block_prefix;
    return { IpAddr { subnet.addr.family, subnet.network().value + (n << host_bits) }, block_prefix };
}

std::optional<IpNet> first_free_block(const IpNet& subnet, int block_prefix, const std::set<IpNet>& taken)
{
    u128 count = block_count(subnet, block_prefix);
    for (u128 n = 0; n < count && n <= taken.size(); ++n) {
        IpNet block = nth_block(subnet, block_prefix, n);
        if (!taken.count(block))
            return block;
    }
    return std::nullopt;
}

bool valid_node_name(std::string_view name)
{
    if (name.empty() || name.size() > 253 || name[0] == '.')
        return false;
    for (char c : name)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'))
            return false;
    return true;
}

} // namespace cnm
