#pragma once
// Typed access to optional JSON fields: a present field of the wrong type is an error naming the
// field (CNI code 7), an absent one is std::nullopt.

#include "util/result.hpp"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cnm {

using Json = nlohmann::json;

Result<std::optional<std::string>> json_string(const Json& obj, const char* key, const std::string& where);
Result<std::optional<bool>> json_bool(const Json& obj, const char* key, const std::string& where);
Result<std::optional<long long>> json_int(const Json& obj, const char* key, const std::string& where,
    long long min, long long max);
Result<std::vector<std::string>> json_strings(const Json& obj, const char* key, const std::string& where);
/// The object at `key`, or null when absent; another type is an error.
Result<Json> json_object(const Json& obj, const char* key, const std::string& where);
Result<Json> json_array(const Json& obj, const char* key, const std::string& where);
/// The same checks without the copy: the value in place, nullptr when absent or null.
Result<const Json*> json_object_in(const Json& obj, const char* key, const std::string& where);
Result<const Json*> json_array_in(const Json& obj, const char* key, const std::string& where);

/// Deepest nesting any document we read may have. nlohmann's recursive destructor and printer
/// would overflow the stack on hostile input nested a few hundred thousand levels deep.
inline constexpr size_t max_json_depth = 256;

/// False when `text` nests arrays/objects deeper than max_json_depth (strings are skipped).
bool json_depth_ok(std::string_view text);

/// Builds an object by emplacing each member: none of the intermediate [key, value] arrays, and
/// none of the copies, that a braced initializer list makes nlohmann build (twice the instructions
/// for a record, of which an ADD writes several). The output is the same: members are sorted.
class Members {
public:
    template<typename V>
    Members& add(const char* key, V&& value)
    {
        m_doc.get_ref<Json::object_t&>().emplace(key, std::forward<V>(value));
        return *this;
    }
    Json done() { return std::move(m_doc); }

private:
    Json m_doc = Json::object();
};

/// Parses text, mapping a syntax error to `code` with the parser's message in details.
Result<Json> parse_json(std::string_view text, Code code, const std::string& what);

} // namespace cnm
