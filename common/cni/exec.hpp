#pragma once
// Delegation to another CNI plugin (an IPAM plugin such as host-local, static or dhcp): found by
// its type in CNI_PATH, run with the same CNI_* environment and the whole conf on stdin, exactly
// as the reference plugins' invoke package does. Its error object is passed through unchanged.

#include "cni/env.hpp"
#include "cni/types.hpp"
#include "util/json.hpp"

#include <string>

namespace cnm::cni {

/// Runs `type` for `command` with `conf` (a document) on stdin. Returns its stdout on success.
Result<std::string> exec_plugin(const std::string& type, Command command, const Env& env, const std::string& conf);

/// ADD through a delegated plugin, its result read in whichever version it printed.
Result<CniResult> exec_add(const std::string& type, const Env& env, const std::string& conf);

} // namespace cnm::cni
