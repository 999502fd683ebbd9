#pragma once
// A network's driver keys are fixed by whoever creates it first (a CNI conf or `docker network
// create -o`). Later users — another conf with the same "name", a Docker network bound to it —
// may repeat a key only with the same value, and inherit every key they leave out.

#include "util/json.hpp"
#include "util/result.hpp"

#include <string>

namespace cnm {

/// `defaults` lists the network-level keys with the value a missing key means. Returns `given`
/// with the keys it omits taken from `existing`; a key `given` sets to a value other than the
/// network's (its recorded value, else the default) is code 7 naming both. `who` says where
/// `given` came from ("this config", "docker network create -o").
Result<Json> adopt_network_options(const std::string& network, const Json& existing, const Json& given, const Json& defaults,
    const std::string& who);

} // namespace cnm
