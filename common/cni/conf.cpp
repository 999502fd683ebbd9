#include "cni/conf.hpp"

#include "cni/env.hpp"
#include "cni/version.hpp"
#include "store/file_store.hpp"
#include "util/utf8.hpp"

#include <cstdlib>

namespace cnm::cni {

Result<NetConf> parse_conf(std::string_view text)
{
    if (text.size() > (16u << 20))
        return make_error(Code::Decode, "error decoding network config: larger than 16 MiB");
    // Invalid UTF-8 inside strings is decoded as the reference decodes it (each bad byte, and each
    // lone surrogate escape, becomes U+FFFD), so a conf the reference accepts is accepted, and a
    // key the replacement makes invalid (the network name) is refused by name.
    auto fixed = json_replace_invalid_utf8(text);
    if (fixed)
        text = *fixed;
    auto doc = TRY(parse_json(text, Code::Decode, "network config"));
    if (!doc.is_object())
        return make_error(Code::Decode, "error decoding network config: it must be a JSON object, not "
                + std::string(doc.type_name()));
    NetConf conf;
    // The reference library reads a missing cniVersion as 0.1.0.
    conf.cni_version = TRY(json_string(doc, "cniVersion", "")).value_or("0.1.0");
    conf.cni_versions = TRY(json_strings(doc, "cniVersions", ""));
    if (!is_supported(conf.cni_version))
        return make_error(Code::IncompatibleVersion, "incompatible CNI versions",
            "config is \"" + conf.cni_version + "\", plugin supports [" + supported_list() + "]");
    conf.name = TRY(json_string(doc, "name", "")).value_or("");
    if (!conf.name.empty() && !valid_network_name(conf.name))
        return make_error(Code::InvalidConfig, "invalid characters found in network name \"" + conf.name + "\"",
            "a name must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");
    if (conf.name.size() > 200)
        return make_error(Code::InvalidConfig, "network name is longer than 200 characters");
    conf.type = TRY(json_string(doc, "type", "")).value_or("");
    conf.ipam = TRY(json_object(doc, "ipam", ""));
    if (!conf.ipam.is_null())
        (void)TRY(json_string(conf.ipam, "type", "ipam"));
    auto dns = TRY(json_object(doc, "dns", ""));
    if (!dns.is_null())
        conf.dns = TRY(dns_from_json(dns, "dns"));
    conf.runtime_config = TRY(json_object(doc, "runtimeConfig", ""));
    conf.args = TRY(json_object(doc, "args", ""));
    auto prev = TRY(json_object(doc, "prevResult", ""));
    if (!prev.is_null())
        conf.prev_result = TRY(result_from_json(prev));
    conf.data_dir = TRY(json_string(doc, "dataDir", "")).value_or("");
    (void)TRY(json_bool(doc, "disableCheck", ""));
    (void)TRY(json_bool(doc, "disableGC", ""));
    (void)TRY(json_bool(doc, "ipMasq", ""));
    (void)TRY(json_object_in(doc, "capabilities", ""));
    conf.raw = std::move(doc);
    return conf;
}

Result<std::optional<std::vector<Attachment>>> valid_attachments(const NetConf& conf)
{
    const char* key = conf.raw.contains("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments";
    // Read in place, not copied: the list may hold 10 000 attachments.
    const Json* list = TRY(json_array_in(conf.raw, key, ""));
    if (!list)
        return std::optional<std::vector<Attachment>> {};
    std::vector<Attachment> out;
    out.reserve(list->size());
    for (auto& item : *list) {
        if (!item.is_object())
            return make_error(Code::InvalidConfig, std::string("invalid config: each of \"") + key + "\" must be an object");
        Attachment a;
        a.container_id = TRY(json_string(item, "containerID", key)).value_or("");
        a.ifname = TRY(json_string(item, "ifname", key)).value_or("");
        out.push_back(std::move(a));
    }
    return std::optional<std::vector<Attachment>>(std::move(out));
}

std::vector<std::pair<std::string, std::string>> keep_list(std::optional<std::vector<Attachment>>&& valid)
{
    std::vector<std::pair<std::string, std::string>> out;
    if (!valid)
        return out;
    out.reserve(valid->size());
    for (auto& a : *valid)
        out.emplace_back(std::move(a.container_id), std::move(a.ifname));
    return out;
}

std::string state_dir(const NetConf& conf)
{
    if (!conf.data_dir.empty())
        return conf.data_dir;
    if (conf.ipam.is_object()) {
        auto it = conf.ipam.find("dataDir");
        if (it != conf.ipam.end() && it->is_string() && !it->get<std::string>().empty())
            return it->get<std::string>();
    }
    if (const char* env = std::getenv(state_dir_env); env && *env)
        return env;
    return default_state_dir;
}

} // namespace cnm::cni
