#include "util/file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm {

const char* file_kind(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFDIR: return "a directory";
    case S_IFIFO: return "a FIFO";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFSOCK: return "a socket";
    case S_IFLNK: return "a symlink";
    default: return "not a regular file";
    }
}

int read_bounded(int fd, size_t max, std::string& out, bool& too_large)
{
    too_large = false;
    char buf[16384];
    for (;;) {
        // One byte past the bound tells "exactly max" from "more than max".
        size_t want = std::min(sizeof buf, max + 1 - out.size());
        ssize_t n = ::read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0)
            return 0;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > max) {
            out.resize(max);
            too_large = true;
            return 0;
        }
    }
}

Result<std::string> read_regular_file(const std::string& path, size_t max, const std::string& what)
{
    auto refuse = [&](const std::string& why, const std::string& details = {}) {
        return make_error(Code::InvalidConfig, "cannot read \"" + what + "\" file " + path + ": " + why, details);
    };
    if (path.find('\0') != std::string::npos)
        return refuse("the path contains a NUL byte");
    int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return refuse(std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) < 0) {
        int err = errno;
        ::close(fd);
        return refuse(std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return refuse(std::string("it is ") + file_kind(st.st_mode) + ", not a regular file");
    }
    if (static_cast<unsigned long long>(st.st_size) > max) {
        ::close(fd);
        return refuse("it is larger than " + std::to_string(max) + " bytes (" + std::to_string(st.st_size) + ")");
    }
    std::string out;
    bool too_large = false;
    int err = read_bounded(fd, max, out, too_large);
    ::close(fd);
    if (err)
        return refuse(std::strerror(err));
    if (too_large) // grew since the fstat, or a file system that reports no size (procfs)
        return refuse("it is larger than " + std::to_string(max) + " bytes");
    return out;
}

} // namespace cnm
