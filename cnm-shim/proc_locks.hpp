#pragma once
// Who holds a lock, as /proc/locks tells it: the pid named in the state directory's "in use" error.

#include <string>
#include <sys/types.h>

namespace cnm::shim {

/// The pid that `locks` (the text of /proc/locks) names as holding an flock on (dev, ino), or ""
/// (a holder in another pid namespace shows as -1 or not at all). Where no line names st_dev
/// (btrfs subvolumes, overlayfs: /proc/locks names the superblock's device), the one flock on
/// that inode number is taken; several give "".
std::string flock_holder(const std::string& locks, dev_t dev, ino_t ino);

} // namespace cnm::shim
