#include "cnm/options.hpp"

namespace cnm {

namespace {

// 1400 and 1400.0 are one MTU; otherwise JSON equality.
bool same_value(const Json& a, const Json& b)
{
    if (a.is_number() && b.is_number())
        return a.get<double>() == b.get<double>();
    return a == b;
}

} // namespace

Result<Json> adopt_network_options(const std::string& network, const Json& existing, const Json& given, const Json& defaults,
    const std::string& who)
{
    Json merged = given;
    for (auto& [key, fallback] : defaults.items()) {
        bool recorded = existing.is_object() && existing.contains(key);
        const Json& current = recorded ? existing[key] : fallback;
        if (given.contains(key)) {
            if (!same_value(given[key], current))
                return make_error(Code::InvalidConfig, "network \"" + network + "\" has \"" + key + "\" = " + current.dump()
                        + (recorded ? "" : " (the default)") + ", but " + who + " asks for " + given[key].dump(),
                    "omit the key to use the network's value");
        } else if (recorded) {
            merged[key] = current;
        }
    }
    return merged;
}

} // namespace cnm
