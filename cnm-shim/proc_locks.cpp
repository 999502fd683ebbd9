#include "proc_locks.hpp"

#include <cstdio>
#include <cstring>
#include <sys/sysmacros.h>

namespace cnm::shim {

std::string flock_holder(std::istream& locks, dev_t dev, ino_t ino)
{
    std::string on_inode; // the holder of an flock on this inode number under another device
    int others = 0;
    for (std::string line; std::getline(locks, line);) {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:4242 0 EOF"; a waiter's line reads "1: -> FLOCK …".
        char kind[16];
        long holder = 0;
        unsigned maj = 0, min = 0;
        unsigned long long inode = 0;
        if (std::sscanf(line.c_str(), "%*s %15s %*s %*s %ld %x:%x:%llu", kind, &holder, &maj, &min, &inode) != 5
            || std::strcmp(kind, "FLOCK") != 0 || holder <= 0 || inode != static_cast<unsigned long long>(ino))
            continue;
        if (maj == major(dev) && min == minor(dev))
            return std::to_string(holder);
        on_inode = std::to_string(holder);
        ++others;
    }
    // /proc/locks names the superblock's device, which is not st_dev on btrfs subvolumes or
    // overlayfs: then the one flock on this inode is taken for it, and several for none.
    return others == 1 ? on_inode : "";
}

} // namespace cnm::shim
