#include "proc_locks.hpp"

#include <cstdio>
#include <cstring>
#include <string_view>
#include <sys/sysmacros.h>

namespace cnm::shim {

std::string flock_holder(const std::string& locks, dev_t dev, ino_t ino)
{
    char exact[64], tail[32];
    std::snprintf(exact, sizeof exact, "%02x:%02x:%llu", major(dev), minor(dev), static_cast<unsigned long long>(ino));
    std::snprintf(tail, sizeof tail, ":%llu", static_cast<unsigned long long>(ino));
    std::string on_inode; // a holder of an flock with this inode on another device number
    int others = 0;
    size_t at = 0;
    while (at < locks.size()) {
        size_t eol = locks.find('\n', at);
        std::string line = locks.substr(at, eol == std::string::npos ? std::string::npos : eol - at);
        at = eol == std::string::npos ? locks.size() : eol + 1;
        char kind[16], mode[16], access[16], id[64];
        long holder = 0;
        if (std::sscanf(line.c_str(), "%*s %15s %15s %15s %ld %63s", kind, mode, access, &holder, id) != 5
            || std::strcmp(kind, "FLOCK") != 0 || holder <= 0)
            continue;
        if (std::strcmp(id, exact) == 0)
            return std::to_string(holder);
        std::string_view name(id);
        if (name.size() > std::strlen(tail) && name.ends_with(tail) && name.find(':') < name.size() - std::strlen(tail)) {
            on_inode = std::to_string(holder);
            ++others;
        }
    }
    // /proc/locks names the superblock's device, which is not st_dev on btrfs subvolumes or
    // overlayfs: then the one flock on this inode is taken for it, and several for none.
    return others == 1 ? on_inode : "";
}

} // namespace cnm::shim
