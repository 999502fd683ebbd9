#include "cni/conf.hpp"

#include "cni/env.hpp"
#include "cni/version.hpp"
#include "store/file_store.hpp"
#include "util/utf8.hpp"

#include <cstdlib>

namespace cnm::cni {

namespace {

constexpr const char* gc_keys[2] = { "cni.dev/valid-attachments", "cni.dev/attachments" };

int gc_key(const std::string& key)
{
    return key == gc_keys[0] ? 0 : key == gc_keys[1] ? 1 : -1;
}

// Builds the conf's document from the parser's events as nlohmann's own builder does (a key given
// twice: its last value wins), except for a top-level GC list that is an array: its items become
// NetConf::gc_lists' pairs as they are read, with the same checks valid_attachments() made on the
// document (an item not an object; a containerID, then an ifname, not a string), the first
// fault kept.
class ConfBuilder {
public:
    explicit ConfBuilder(NetConf& conf) : m_conf(conf) { }
    Json root;

    bool null() { return scalar(Json(), true); }
    bool boolean(bool v) { return scalar(Json(v)); }
    bool number_integer(Json::number_integer_t v) { return scalar(Json(v)); }
    bool number_unsigned(Json::number_unsigned_t v) { return scalar(Json(v)); }
    bool number_float(Json::number_float_t v, const Json::string_t&) { return scalar(Json(v)); }
    bool binary(Json::binary_t& v) { return scalar(Json::binary(std::move(v))); } // never from text
    bool string(Json::string_t& v)
    {
        if (!m_list) {
            place(Json(std::move(v)));
        } else if (m_level == 1) {
            item_fault();
        } else if (m_level == 2 && m_field >= 0) {
            m_item[m_field].value = std::move(v);
            m_item[m_field].wrong = nullptr;
        }
        return true;
    }
    bool start_object(std::size_t) { return open(true); }
    bool start_array(std::size_t) { return open(false); }
    bool end_object() { return close(); }
    bool end_array() { return close(); }
    bool key(Json::string_t& k)
    {
        if (m_list) {
            if (m_level == 2)
                m_field = k == "containerID" ? 0 : k == "ifname" ? 1 : -1;
            return true;
        }
        m_pending = m_stack.size() == 1 ? gc_key(k) : -1;
        m_slot = &(*m_stack.back())[std::move(k)];
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

private:
    struct Field {
        std::string value;           // absent or null: ""
        const char* wrong = nullptr; // the type it has instead of a string
    };

    Json* place(Json v)
    {
        if (m_stack.empty()) {
            root = std::move(v);
            return &root;
        }
        Json& top = *m_stack.back();
        if (top.is_array()) {
            top.push_back(std::move(v));
            return &top.back();
        }
        if (m_pending >= 0) // a GC key whose (last) value is not an array: raw holds it, as before
            m_conf.gc_lists[m_pending].reset();
        m_pending = -1;
        *m_slot = std::move(v);
        return m_slot;
    }
    bool scalar(Json v, bool null = false)
    {
        if (!m_list)
            place(std::move(v));
        else if (m_level == 1)
            item_fault();
        else if (m_level == 2 && m_field >= 0)
            m_item[m_field] = { {}, null ? nullptr : v.type_name() };
        return true;
    }
    bool open(bool object)
    {
        if (++m_depth > max_json_depth)
            return false; // parse_conf reports it
        if (!m_list && !object && m_pending >= 0) {
            // The GC list: out of the document, into pairs.
            root.erase(gc_keys[m_pending]);
            m_list = &m_conf.gc_lists[m_pending].emplace();
            m_list_key = m_pending;
            m_pending = -1;
            m_level = 1;
            return true;
        }
        if (!m_list) {
            m_stack.push_back(place(object ? Json::object() : Json::array()));
            return true;
        }
        if (m_level == 1) {
            if (object)
                m_item[0] = m_item[1] = {};
            else
                item_fault();
            m_in_item = object;
            m_field = -1;
        } else if (m_level == 2 && m_field >= 0) {
            m_item[m_field] = { {}, object ? "object" : "array" };
        }
        ++m_level;
        return true;
    }
    bool close()
    {
        --m_depth;
        if (!m_list) {
            m_stack.pop_back();
            return true;
        }
        if (--m_level == 0) {
            m_list = nullptr;
        } else if (m_level == 1 && m_in_item) {
            m_in_item = false;
            if (m_list->fault)
                return true;
            for (int f = 0; f < 2; ++f)
                if (m_item[f].wrong) {
                    m_list->fault = make_error(Code::InvalidConfig, std::string("invalid config: \"") + gc_keys[m_list_key] + "."
                            + (f == 0 ? "containerID" : "ifname") + "\" must be a string, not " + m_item[f].wrong);
                    return true;
                }
            m_list->items.emplace_back(std::move(m_item[0].value), std::move(m_item[1].value));
        }
        return true;
    }
    void item_fault()
    {
        if (!m_list->fault)
            m_list->fault = make_error(Code::InvalidConfig, std::string("invalid config: each of \"") + gc_keys[m_list_key] + "\" must be an object");
    }

    NetConf& m_conf;
    std::vector<Json*> m_stack; // the open objects and arrays
    Json* m_slot = nullptr;     // where the value of the last key goes
    int m_pending = -1;         // that key is a GC key (its index)
    NetConf::GcList* m_list = nullptr; // inside a GC list, at m_level (1: its items)
    int m_list_key = 0;
    int m_level = 0;
    size_t m_depth = 0; // of the whole document, against max_json_depth (no separate pass)
    bool m_in_item = false;
    int m_field = -1; // the item's key being read: 0 containerID, 1 ifname
    Field m_item[2];
};

} // namespace

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
    NetConf conf;
    ConfBuilder built(conf);
    if (!Json::sax_parse(text, &built)) {
        // The parser's own message (or "nested deeper"), from a parse that fails the same way.
        (void)TRY(parse_json(text, Code::Decode, "network config"));
        return make_error(Code::Decode, "error decoding network config");
    }
    Json doc = std::move(built.root);
    if (!doc.is_object())
        return make_error(Code::Decode, "error decoding network config: it must be a JSON object, not "
                + std::string(doc.type_name()));
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
    if (conf.gc_lists[0] || conf.gc_lists[1])
        conf.text = std::string(text);
    return conf;
}

Result<const std::vector<std::pair<std::string, std::string>>*> valid_attachments(const NetConf& conf)
{
    int at = conf.gc_lists[0] || conf.raw.contains(gc_keys[0]) ? 0 : 1;
    if (auto& list = conf.gc_lists[at]) {
        if (list->fault)
            return *list->fault;
        return &list->items;
    }
    // Absent, null, or not a list (arrays never stay in raw).
    TRY(json_array_in(conf.raw, gc_keys[at], ""));
    return static_cast<const std::vector<std::pair<std::string, std::string>>*>(nullptr);
}

std::string delegate_input(const NetConf& conf)
{
    return conf.text.empty() ? conf.raw.dump() : conf.text;
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
