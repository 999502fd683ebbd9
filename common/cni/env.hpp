#pragma once
// The CNI_* environment: what the runtime tells a plugin besides the conf on stdin.

#include "util/result.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cnm::cni {

enum class Command { Add, Del, Check, Status, Gc, Version };

std::optional<Command> parse_command(std::string_view text);
std::string_view command_name(Command command);

/// CNI_ARGS: "K=V;K2=V2". Keys are case-sensitive, as in the reference plugins.
struct CniArgs {
    std::vector<std::pair<std::string, std::string>> pairs;
    bool ignore_unknown = false;

    std::optional<std::string> get(std::string_view key) const;
    /// Rejects keys outside `known` (K8S_* and IgnoreUnknown always pass) unless IgnoreUnknown.
    Result<void> check_known(const std::vector<std::string_view>& known) const;
};

Result<CniArgs> parse_cni_args(std::string_view text);

struct Env {
    Command command = Command::Version;
    std::string container_id;
    std::string netns;
    std::string ifname;
    std::string path;
    CniArgs args;
};

using Getenv = std::function<const char*(const char*)>;

/// Reads and validates the environment for the command CNI_COMMAND names: missing or malformed
/// variables give code 4 (code 3 for an empty CNI_CONTAINERID).
Result<Env> parse_env(const Getenv& getenv);

bool valid_container_id(std::string_view id);
bool valid_network_name(std::string_view name);
Result<void> validate_ifname(std::string_view name);

} // namespace cnm::cni
