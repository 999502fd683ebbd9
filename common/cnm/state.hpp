#pragma once
// The state a plugin invocation works on: the file store at the conf's state root and the
// registry of model records over it. One per process.

#include "cni/conf.hpp"
#include "cnm/registry.hpp"
#include "store/file_store.hpp"

#include <algorithm>
#include <iterator>
#include <memory>
#include <string_view>

namespace cnm {

struct State {
    std::unique_ptr<FileStore> store;
    std::unique_ptr<Registry> registry;

    static Result<State> open(const cni::NetConf& conf)
    {
        State s;
        s.store = TRY(FileStore::open(cni::state_dir(conf)));
        s.registry = std::make_unique<Registry>(*s.store);
        return s;
    }
};

/// The conf as a network record keeps it: without the keys the runtime injects per call. Those
/// are never copied (a GC's list may hold 10 000 attachments, a CHECK's prevResult many).
inline Json network_options(const cni::NetConf& conf)
{
    static constexpr std::string_view runtime_keys[] = { "cniVersion", "cniVersions", "name", "prevResult", "runtimeConfig", "args",
        "cni.dev/valid-attachments", "cni.dev/attachments" };
    Json options = Json::object();
    for (auto& [key, value] : conf.raw.items())
        if (std::find(std::begin(runtime_keys), std::end(runtime_keys), key) == std::end(runtime_keys))
            options.emplace(key, value);
    return options;
}

} // namespace cnm
