#pragma once
// The id of the running boot, for stamping per-boot records (DESIGN.md §3): a record whose boot id
// differs from this one describes a boot that has ended, so what it holds is free again.

#include "util/result.hpp"

#include <string>

namespace cnm {

inline constexpr const char* boot_id_env = "CNM_BOOT_ID";
inline constexpr const char* boot_id_path = "/proc/sys/kernel/random/boot_id";

/// $CNM_BOOT_ID when set and not empty (tests fake a reboot with it; read on every call), else
/// the kernel's boot id, read once per process: 36 characters, a UUID. An unreadable or malformed
/// file is a Code::Io error; nothing is cached then.
Result<std::string> boot_id();

} // namespace cnm
