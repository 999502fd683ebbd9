#pragma once
// The CNI dispatcher: reads CNI_* and stdin, validates them, gates verbs by version, calls the
// plugin's handler and prints the result or the error. It is the only code that writes stdout.

#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/types.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace cnm::cni {

struct Context {
    Env env;
    NetConf conf;
};

struct Plugin {
    std::string name;
    std::vector<std::string_view> known_args; // CNI_ARGS keys the plugin understands
    std::function<Result<CniResult>(const Context&)> add;
    std::function<Result<void>(const Context&)> del;
    std::function<Result<void>(const Context&)> check;
    std::function<Result<void>(const Context&)> status;
    std::function<Result<void>(const Context&)> gc;
};

struct Outcome {
    int exit_code = 0;
    std::string stdout_text;
};

/// Runs one CNI invocation; pure apart from what the handlers do. Tests call it directly.
Outcome dispatch(const Plugin& plugin, const Getenv& getenv, std::string_view stdin_text);

/// main() for a plugin executable: dispatch() over the real environment, stdin and stdout.
int plugin_main(const Plugin& plugin, int argc, char** argv);

/// The error document {"cniVersion","code","msg","details"}.
std::string error_json(const Error& error, std::string_view version);

} // namespace cnm::cni
