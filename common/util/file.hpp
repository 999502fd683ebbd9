#pragma once
// Bounded reads of files we do not own: a file a conf names (ipam.resolvConf), the boot id. A
// FIFO, device, socket or directory is refused before any read (opened O_NONBLOCK, so opening a
// FIFO never waits for a writer), and no read goes past the bound: /dev/zero cannot grow memory.

#include "util/result.hpp"

#include <string>
#include <sys/types.h>

namespace cnm {

/// host-local reads resolv.conf through a 64 KiB scanner; a real one is well under 1 KiB.
inline constexpr size_t conf_file_limit = 64 << 10;

/// What kind of file a mode describes, for messages: "a directory", "a FIFO", "a character device"...
const char* file_kind(mode_t mode);

/// Reads at most `max` bytes of the open file `fd` into `out`. Returns 0, or an errno; sets
/// `too_large` (and stops) when the file has more than `max` bytes. EINTR is retried.
int read_bounded(int fd, size_t max, std::string& out, bool& too_large);

/// Reads the regular file `path` (symlinks are followed: a conf may name /etc/resolv.conf, often
/// a link), refusing anything that is not a regular file and anything larger than `max`, with an
/// InvalidConfig error that names `what` (e.g. "ipam.resolvConf") and the path.
Result<std::string> read_regular_file(const std::string& path, size_t max, const std::string& what);

} // namespace cnm
