#pragma once
// Who holds a lock, as /proc/locks tells it: the pid named in the state directory's "in use" error.

#include <istream>
#include <string>
#include <sys/types.h>

namespace cnm::shim {

/// The pid that `locks` (/proc/locks, read line by line) names as holding an flock on (dev, ino), or ""
/// (a holder in another pid namespace shows as -1 or not at all). Where no line names st_dev
/// (btrfs subvolumes, overlayfs: /proc/locks names the superblock's device), the one flock on
/// that inode number is taken; several give "".
std::string flock_holder(std::istream& locks, dev_t dev, ino_t ino);

} // namespace cnm::shim
