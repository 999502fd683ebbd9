#include "cni/env.hpp"

#include <algorithm>
#include <array>
#include <cctype>

namespace cnm::cni {

namespace {

constexpr std::array<std::pair<std::string_view, Command>, 6> command_table { {
    { "ADD", Command::Add },
    { "DEL", Command::Del },
    { "CHECK", Command::Check },
    { "STATUS", Command::Status },
    { "GC", Command::Gc },
    { "VERSION", Command::Version },
} };

// The spec's regex for container ids and network names: ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$
bool matches_id_regex(std::string_view s)
{
    if (s.empty() || !std::isalnum(static_cast<unsigned char>(s[0])))
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
}

} // namespace

std::optional<Command> parse_command(std::string_view text)
{
    for (auto& [name, command] : command_table)
        if (name == text)
            return command;
    return std::nullopt;
}

std::string_view command_name(Command command)
{
    for (auto& [name, c] : command_table)
        if (c == command)
            return name;
    return "?";
}

std::optional<std::string> CniArgs::get(std::string_view key) const
{
    for (auto& [k, v] : pairs)
        if (k == key)
            return v;
    return std::nullopt;
}

Result<void> CniArgs::check_known(const std::vector<std::string_view>& known) const
{
    if (ignore_unknown)
        return {};
    std::string unknown;
    for (auto& [k, v] : pairs) {
        if (k == "IgnoreUnknown" || k.starts_with("K8S_"))
            continue;
        if (std::find(known.begin(), known.end(), k) != known.end())
            continue;
        unknown += unknown.empty() ? k : ", " + k;
    }
    if (!unknown.empty())
        return make_error(Code::InvalidEnv, "CNI_ARGS: unknown args [" + unknown + "]",
            "set IgnoreUnknown=1 to ignore keys this plugin does not know");
    return {};
}

Result<CniArgs> parse_cni_args(std::string_view text)
{
    CniArgs args;
    while (!text.empty()) {
        auto semi = text.find(';');
        auto pair = text.substr(0, semi);
        text = semi == std::string_view::npos ? std::string_view {} : text.substr(semi + 1);
        if (pair.empty())
            continue;
        auto eq = pair.find('=');
        if (eq == std::string_view::npos || eq == 0)
            return make_error(Code::InvalidEnv, "CNI_ARGS: invalid pair \"" + std::string(pair) + "\"",
                "CNI_ARGS must be K=V pairs separated by ';'");
        args.pairs.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
    }
    if (auto ignore = args.get("IgnoreUnknown")) {
        std::string v = *ignore;
        std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
        if (v == "1" || v == "true")
            args.ignore_unknown = true;
        else if (v != "0" && v != "false")
            return make_error(Code::InvalidEnv, "CNI_ARGS: IgnoreUnknown must be 1, true, 0 or false, not \"" + *ignore + "\"");
    }
    return args;
}

bool valid_container_id(std::string_view id)
{
    return matches_id_regex(id);
}

bool valid_network_name(std::string_view name)
{
    return matches_id_regex(name);
}

Result<void> validate_ifname(std::string_view name)
{
    if (name.empty())
        return make_error(Code::InvalidEnv, "CNI_IFNAME is empty");
    if (name.size() > 15)
        return make_error(Code::InvalidEnv, "CNI_IFNAME \"" + std::string(name) + "\" is longer than 15 characters");
    if (name == "." || name == "..")
        return make_error(Code::InvalidEnv, "CNI_IFNAME must not be \".\" or \"..\"");
    for (char c : name) {
        if (c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)) || c == '\0')
            return make_error(Code::InvalidEnv, "CNI_IFNAME \"" + std::string(name) + "\" contains '/', ':' or whitespace");
        // Stricter than the kernel: names are stored in JSON records, which must round-trip.
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return make_error(Code::InvalidEnv, "CNI_IFNAME must be printable ASCII");
    }
    return {};
}

Result<Env> parse_env(const Getenv& getenv)
{
    auto read = [&](const char* name) -> std::optional<std::string> {
        const char* v = getenv(name);
        if (!v)
            return std::nullopt;
        return std::string(v);
    };
    Env env;
    auto command_text = read("CNI_COMMAND");
    if (!command_text || command_text->empty())
        return make_error(Code::InvalidEnv, "required env variable CNI_COMMAND is missing");
    auto command = parse_command(*command_text);
    if (!command)
        return make_error(Code::InvalidEnv, "unknown CNI_COMMAND \"" + *command_text + "\"",
            "expected one of ADD, DEL, CHECK, STATUS, GC, VERSION");
    env.command = *command;
    if (env.command == Command::Version)
        return env;

    env.path = read("CNI_PATH").value_or("");
    bool attachment = env.command == Command::Add || env.command == Command::Del || env.command == Command::Check;
    if (attachment) {
        env.container_id = read("CNI_CONTAINERID").value_or("");
        env.netns = read("CNI_NETNS").value_or("");
        env.ifname = read("CNI_IFNAME").value_or("");
        if (env.container_id.empty())
            return make_error(Code::UnknownContainer, "missing containerID (CNI_CONTAINERID)");
        if (!valid_container_id(env.container_id))
            return make_error(Code::InvalidEnv, "invalid characters in CNI_CONTAINERID",
                "it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");
        if (env.container_id.size() > 1024)
            return make_error(Code::InvalidEnv, "CNI_CONTAINERID is longer than 1024 characters");
        if (env.command != Command::Del && env.netns.empty())
            return make_error(Code::InvalidEnv, "required env variable CNI_NETNS is missing");
        if (env.netns.size() > 4096 || env.netns.find('\0') != std::string::npos)
            return make_error(Code::InvalidEnv, "CNI_NETNS is not a usable path");
        TRY(validate_ifname(env.ifname));
    }
    env.args = TRY(parse_cni_args(read("CNI_ARGS").value_or("")));
    return env;
}

} // namespace cnm::cni
