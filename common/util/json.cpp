#include "util/json.hpp"

namespace cnm {

namespace {

std::string field(const std::string& where, const char* key)
{
    return where.empty() ? std::string(key) : where + "." + key;
}

Error wrong_type(const std::string& where, const char* key, const char* expected, const Json& got)
{
    return make_error(Code::InvalidConfig,
        "invalid config: \"" + field(where, key) + "\" must be " + expected + ", not " + got.type_name());
}

} // namespace

Result<std::optional<std::string>> json_string(const Json& obj, const char* key, const std::string& where)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return std::optional<std::string> {};
    if (!it->is_string())
        return wrong_type(where, key, "a string", *it);
    return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<bool>> json_bool(const Json& obj, const char* key, const std::string& where)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return std::optional<bool> {};
    if (!it->is_boolean())
        return wrong_type(where, key, "a boolean", *it);
    return std::optional<bool>(it->get<bool>());
}

Result<std::optional<long long>> json_int(const Json& obj, const char* key, const std::string& where,
    long long min, long long max)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return std::optional<long long> {};
    if (!it->is_number_integer())
        return wrong_type(where, key, "an integer", *it);
    auto out_of_range = [&](const std::string& shown) {
        return make_error(Code::InvalidConfig, "invalid config: \"" + field(where, key) + "\" = " + shown
                + " is outside [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    };
    if (it->is_number_unsigned()) {
        auto u = it->get<unsigned long long>();
        if (u > static_cast<unsigned long long>(max) || static_cast<long long>(u) < min)
            return out_of_range(std::to_string(u));
        return std::optional<long long>(static_cast<long long>(u));
    }
    long long v = it->get<long long>();
    if (v < min || v > max)
        return out_of_range(std::to_string(v));
    return std::optional<long long>(v);
}

Result<std::vector<std::string>> json_strings(const Json& obj, const char* key, const std::string& where)
{
    std::vector<std::string> out;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return out;
    if (!it->is_array())
        return wrong_type(where, key, "a list of strings", *it);
    for (auto& item : *it) {
        if (!item.is_string())
            return wrong_type(where, key, "a list of strings", *it);
        out.push_back(item.get<std::string>());
    }
    return out;
}

Result<const Json*> json_object_in(const Json& obj, const char* key, const std::string& where)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return static_cast<const Json*>(nullptr);
    if (!it->is_object())
        return wrong_type(where, key, "an object", *it);
    return &*it;
}

Result<const Json*> json_array_in(const Json& obj, const char* key, const std::string& where)
{
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
        return static_cast<const Json*>(nullptr);
    if (!it->is_array())
        return wrong_type(where, key, "a list", *it);
    return &*it;
}

Result<Json> json_object(const Json& obj, const char* key, const std::string& where)
{
    const Json* found = TRY(json_object_in(obj, key, where));
    return found ? *found : Json();
}

Result<Json> json_array(const Json& obj, const char* key, const std::string& where)
{
    const Json* found = TRY(json_array_in(obj, key, where));
    return found ? *found : Json();
}

bool json_depth_ok(std::string_view text)
{
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_json_depth)
                return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

Result<Json> parse_json(std::string_view text, Code code, const std::string& what)
{
    if (!json_depth_ok(text))
        return make_error(code, "error decoding " + what, "nested deeper than " + std::to_string(max_json_depth) + " levels");
    Json doc = Json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
        // Re-parse with exceptions only on the error path, for the parser's own message.
        std::string why;
        try {
            [[maybe_unused]] auto unused = Json::parse(text);
        } catch (const std::exception& e) {
            why = e.what();
        }
        return make_error(code, "error decoding " + what, why);
    }
    return doc;
}

} // namespace cnm
