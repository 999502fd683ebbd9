#pragma once
// The CNI spec versions we speak, and comparisons between them.

#include <array>
#include <string>
#include <string_view>

namespace cnm::cni {

inline constexpr std::array<std::string_view, 7> supported_versions {
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
};
inline constexpr std::string_view latest_version = "1.1.0";

bool is_supported(std::string_view version);

/// Compares two "major.minor.patch" strings numerically; unparsable parts count as 0.
int compare_versions(std::string_view a, std::string_view b);

inline bool at_least(std::string_view version, std::string_view floor)
{
    return compare_versions(version, floor) >= 0;
}

/// "0.1.0, 0.2.0, …" for error details.
std::string supported_list();

} // namespace cnm::cni
