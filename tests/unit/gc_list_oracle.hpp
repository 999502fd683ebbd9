#pragma once
// The GC list as the plugins took it from the whole document before parse_conf read it straight
// from the text: the oracle that conf_skel_test and the fuzz target hold the streaming read to.

#include "util/json.hpp"

#include <string>
#include <utility>
#include <vector>

namespace cnm::test {

inline Result<std::vector<std::pair<std::string, std::string>>> list_from_document(const Json& doc)
{
    const char* key = doc.contains("cni.dev/valid-attachments") ? "cni.dev/valid-attachments" : "cni.dev/attachments";
    std::vector<std::pair<std::string, std::string>> out;
    const Json* list = TRY(json_array_in(doc, key, ""));
    if (!list)
        return out;
    for (auto& item : *list) {
        if (!item.is_object())
            return make_error(Code::InvalidConfig, std::string("invalid config: each of \"") + key + "\" must be an object");
        auto cid = TRY(json_string(item, "containerID", key)).value_or("");
        auto ifname = TRY(json_string(item, "ifname", key)).value_or("");
        out.emplace_back(cid, ifname);
    }
    return out;
}

/// The document as NetConf::raw holds it: without the top-level lists that are arrays.
inline Json without_gc_lists(Json doc)
{
    for (const char* key : { "cni.dev/valid-attachments", "cni.dev/attachments" })
        if (doc.contains(key) && doc[key].is_array())
            doc.erase(key);
    return doc;
}

} // namespace cnm::test
