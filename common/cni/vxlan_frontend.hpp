#pragma once
// The `vxlan` CNI plugin's verbs: the link plugin's translation (cni/frontend.hpp) with the
// cluster in it — the network's facts from etcd (cached per host), addresses from the cluster
// IPAM (cnm/cluster_ipam.hpp), and, after an ADD that claimed a block, the remote blocks it
// learned programmed into the kernel (drivers/vxlan.hpp). Links the etcd client; the other
// plugins do not.

#include "cni/skel.hpp"

namespace cnm::cni {

Plugin vxlan_plugin();

} // namespace cnm::cni
