#pragma once
// The vxlan driver's kernel effects that are not one endpoint's: the host's underlay, and the
// entries for other hosts' blocks. The plugin programs what an ADD learned from etcd; the agent
// (cnm-shim) will program what it watches — both through these functions.

#include "cnm/blocks.hpp"
#include "kernel/kernel.hpp"
#include "util/json.hpp"

#include <string>
#include <vector>

namespace cnm::drivers {

struct Underlay {
    std::string name;  // empty when given as an address
    int index = 0;     // 0 when given as an address
    IpAddr address;    // the VTEP address
    int mtu = 1500;
};

/// The underlay `options["underlay"]` names — an interface (its first IPv4 address, else IPv6)
/// or one of the host's addresses — or, by default, the interface of the default route.
Result<Underlay> vxlan_underlay(Kernel& kernel, const Json& options);

/// "cnmvx<vni>": one device per network per host (flannel's flannel.<vni>).
std::string vxlan_device_name(uint32_t vni);
/// The bridge of a network whose conf names none: "vxb-<name>" when that fits in 15 bytes, else
/// "vxb-" + its first 5 characters + a 6-hex hash of the whole name.
std::string default_vxlan_bridge(const std::string& network);

/// For every block: a permanent neighbour (its gateway → its VTEP MAC), an FDB entry (VTEP MAC →
/// VTEP address) and `route <block> via <gateway> dev <vxlan> onlink`, route last, all with
/// replace semantics. Blocks at this host's own VTEP are skipped.
Result<void> program_remote_blocks(Kernel& kernel, const Json& options, const std::vector<BlockOwner>& blocks);
/// The full diff of one network's vxlan device against the cluster's blocks (the agent's
/// reconcile): program_remote_blocks for every block not at this host's VTEP (missing entries
/// added, differing ones replaced), then, on that device only, removes what no such block
/// justifies — routes with a gateway (the kind program_remote_blocks makes) to any other
/// destination, permanent neighbours of any other address, FDB entries with a destination for any
/// other MAC. Routes without a gateway (the kernel's prefix routes, fe80::/64) and entries of other
/// devices are left alone. A failing kernel call ends it with that error; what was done stays, and
/// the next run converges. Returns how many entries were removed. Code 5 when the device is missing.
Result<size_t> reconcile_remote_blocks(Kernel& kernel, const Json& options, const std::vector<BlockOwner>& blocks);
/// The route and neighbour of one block (a released one); the FDB entry stays while another block
/// of that host may use it.
Result<void> remove_remote_block(Kernel& kernel, const Json& options, const BlockOwner& block);

} // namespace cnm::drivers
