#pragma once
// The CNI front-end: a plugin executable's verbs as translations of CNI input into the endpoint
// lifecycle (cnm/endpoint.hpp). A plugin's main() is one call of plugin_main with one of these.

#include "cni/skel.hpp"

#include <string>

namespace cnm {
class AddressSource;
struct Added;
struct State;
}

namespace cnm::cni {

/// STATUS of the addresses (every plugin's): the state dir can be opened and written, and the
/// source can hand out an address (codes 50).
Result<void> address_status(const Context& ctx, AddressSource& source);

/// How every ADD ends: the state flushed whether the ADD went through or was undone (what an undone
/// ADD freed is made durable too), then the ADD's error, else the sync's, else its result, with
/// the conf's DNS when given (the link plugins'; the ipam plugin's result has only its own).
Result<CniResult> finish_add(State& state, Result<Added> added, const std::optional<Dns>& dns);

/// A link plugin of a driver kind in the table (cnm/driver.hpp): "bridge", "macvlan", "ipvlan".
Plugin link_plugin(const std::string& kind);
/// The MAC the runtime asks for (runtimeConfig.mac, args.cni.mac, CNI_ARGS MAC), "" if none.
Result<std::string> runtime_mac(const Context& ctx);
/// The `ipam` plugin: addresses only, no kernel work (links statically, without libmnl).
Plugin ipam_plugin();

} // namespace cnm::cni
