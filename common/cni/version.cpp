#include "cni/version.hpp"

#include <algorithm>
#include <charconv>

namespace cnm::cni {

namespace {

std::array<int, 3> split(std::string_view v)
{
    std::array<int, 3> parts {};
    for (int& part : parts) {
        auto dot = v.find('.');
        auto piece = v.substr(0, dot);
        std::from_chars(piece.data(), piece.data() + piece.size(), part);
        if (dot == std::string_view::npos)
            break;
        v.remove_prefix(dot + 1);
    }
    return parts;
}

} // namespace

bool is_supported(std::string_view version)
{
    return std::find(supported_versions.begin(), supported_versions.end(), version) != supported_versions.end();
}

int compare_versions(std::string_view a, std::string_view b)
{
    auto x = split(a), y = split(b);
    return x < y ? -1 : (x > y ? 1 : 0);
}

std::string supported_list()
{
    std::string out;
    for (auto v : supported_versions) {
        if (!out.empty())
            out += ", ";
        out += v;
    }
    return out;
}

} // namespace cnm::cni
