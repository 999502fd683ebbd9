#include "util/boot_id.hpp"

#include "util/file.hpp"

#include <cstdlib>

namespace cnm {

namespace {

bool looks_like_uuid(const std::string& s)
{
    if (s.size() != 36)
        return false;
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

} // namespace

Result<std::string> boot_id()
{
    if (const char* env = std::getenv(boot_id_env); env && *env)
        return std::string(env);
    static std::string cached;
    if (!cached.empty())
        return cached;
    auto text = read_regular_file(boot_id_path, 64, "boot id");
    if (!text)
        return make_error(Code::Io, "cannot read the boot id", text.error().msg);
    std::string id = *text;
    while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
        id.pop_back();
    if (!looks_like_uuid(id))
        return make_error(Code::Io, std::string("cannot read the boot id: ") + boot_id_path + " does not hold a UUID");
    cached = id;
    return cached;
}

} // namespace cnm
