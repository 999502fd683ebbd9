#include "netns/netns.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sched.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm {

Result<Netns> Netns::open(const std::string& path)
{
    if (path.empty())
        return make_error(Code::UnknownContainer, "no network namespace given");
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return make_error(Code::UnknownContainer, "network namespace " + path + " does not exist");
        return make_error(Code::InvalidEnv, "cannot open network namespace " + path, std::strerror(err));
    }
    return Netns(fd);
}

Result<Netns> Netns::current()
{
    return open("/proc/thread-self/ns/net");
}

Result<Netns> Netns::of_socket(int socket_fd)
{
    int fd = ::ioctl(socket_fd, SIOCGSKNS);
    if (fd < 0)
        return make_error(Code::Kernel, "cannot get the network namespace of a socket", std::strerror(errno));
    return Netns(fd);
}

Netns& Netns::operator=(Netns&& other) noexcept
{
    if (this != &other) {
        if (m_fd >= 0)
            ::close(m_fd);
        m_fd = other.m_fd;
        other.m_fd = -1;
    }
    return *this;
}

Netns::~Netns()
{
    if (m_fd >= 0)
        ::close(m_fd);
}

bool Netns::same_as(const Netns& other) const
{
    struct stat a {}, b {};
    return ::fstat(m_fd, &a) == 0 && ::fstat(other.m_fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

Result<NetnsGuard> NetnsGuard::enter(const Netns& target)
{
    Netns origin = TRY(Netns::current());
    NetnsGuard guard = TRY(enter(target, origin));
    guard.m_owned.emplace(std::move(origin)); // the descriptor the guard returns to, now its own
    return guard;
}

Result<NetnsGuard> NetnsGuard::enter(const Netns& target, const Netns& origin)
{
    if (::setns(target.fd(), CLONE_NEWNET) < 0)
        return make_error(Code::Kernel, "cannot enter the network namespace", std::strerror(errno));
    return NetnsGuard(origin.fd());
}

NetnsGuard::~NetnsGuard()
{
    if (!m_active)
        return;
    if (::setns(m_origin_fd, CLONE_NEWNET) < 0) {
        std::fprintf(stderr, "cnm: cannot return to the original network namespace: %s\n", std::strerror(errno));
        std::abort();
    }
}

Result<void> write_sysctl(const std::string& key, const std::string& value)
{
    std::string path = "/proc/sys/" + key;
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return make_error(Code::Kernel, "cannot set sysctl " + key, std::strerror(errno));
    ssize_t n = ::write(fd, value.data(), value.size());
    int err = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(value.size()))
        return make_error(Code::Kernel, "cannot set sysctl " + key, std::strerror(err));
    return {};
}

Result<std::string> read_sysctl(const std::string& key)
{
    std::string path = "/proc/sys/" + key;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return make_error(Code::Kernel, "cannot read sysctl " + key, std::strerror(errno));
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n < 0)
        return make_error(Code::Kernel, "cannot read sysctl " + key, std::strerror(errno));
    std::string out(buf, static_cast<size_t>(n));
    while (!out.empty() && (out.back() == '\n' || out.back() == ' '))
        out.pop_back();
    return out;
}

} // namespace cnm
