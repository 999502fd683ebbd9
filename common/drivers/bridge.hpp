#pragma once
// The bridge driver: a Linux bridge per network, a veth pair per endpoint.
//
// Keys mean what they mean to the reference bridge plugin (reference/cni.md §2.1). The container
// end of the veth is created directly in the sandbox's netns under a temporary name and renamed
// there, so a name taken on the host never collides; the host end gets a random "veth" name that
// the endpoint record keeps, which is what lets DEL and GC remove it when the netns is gone.
//
// Differences from the reference, on purpose: nothing polls or sleeps (no port-state wait, no
// IPv6 DAD wait unless "enabledad"); a failed ADD removes the veth too (the reference leaks it on
// IPAM exhaustion); CHECK ignores the bridge's MAC, which changes whenever a port joins.

#include "cni/skel.hpp"

namespace cnm::drivers {

cni::Plugin bridge_plugin();

} // namespace cnm::drivers
