#pragma once
// Network namespaces: a move-only handle on a netns file, and a guard that enters one and always
// returns. If returning fails the process aborts: carrying on in the wrong namespace would
// configure the host as if it were the container (the lesson of the CNI plugins' ns.Do).

#include "util/result.hpp"

#include <optional>
#include <string>

namespace cnm {

class Netns {
public:
    enum class Status { Ok, Missing };
    /// Opens a netns path (/var/run/netns/x, /proc/<pid>/ns/net). A path that does not exist is
    /// Code::UnknownContainer with missing() true, so DEL can treat it as "already gone".
    static Result<Netns> open(const std::string& path);
    /// The namespace this thread is in now.
    static Result<Netns> current();
    /// The namespace `socket_fd` was made in (SIOCGSKNS, which needs CAP_NET_ADMIN there). No
    /// /proc path walk: opening /proc/thread-self/ns/net costs ~25 µs in a fresh process, the
    /// ioctl ~4 µs. Fails (ENOTTY, EPERM) where the kernel or the caps do not allow it.
    static Result<Netns> of_socket(int socket_fd);

    Netns(Netns&& other) noexcept : m_fd(other.m_fd) { other.m_fd = -1; }
    Netns& operator=(Netns&& other) noexcept;
    Netns(const Netns&) = delete;
    Netns& operator=(const Netns&) = delete;
    ~Netns();

    int fd() const { return m_fd; }
    /// Same namespace as `other` (compares the nsfs inode).
    bool same_as(const Netns& other) const;

private:
    explicit Netns(int fd) : m_fd(fd) { }
    int m_fd = -1;
};

/// Enters `target` for its lifetime and returns to the namespace it came from.
class NetnsGuard {
public:
    static Result<NetnsGuard> enter(const Netns& target);
    /// The same, returning to `origin`, which the caller is in now and which outlives the guard
    /// (a handle kept for many entries, instead of one opened at each).
    static Result<NetnsGuard> enter(const Netns& target, const Netns& origin);
    NetnsGuard(NetnsGuard&& other) noexcept
        : m_owned(std::move(other.m_owned)), m_origin_fd(other.m_origin_fd), m_active(other.m_active)
    {
        other.m_active = false;
    }
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;
    ~NetnsGuard();

private:
    explicit NetnsGuard(int origin_fd) : m_origin_fd(origin_fd) { }
    std::optional<Netns> m_owned; // the origin, when this guard opened it
    int m_origin_fd;
    bool m_active = true;
};

/// Writes a sysctl through /proc/sys in the current namespace, e.g. ("net/ipv6/conf/eth0/accept_dad", "0").
/// A missing file (IPv6 disabled, no such interface) is Code::Kernel with details.
Result<void> write_sysctl(const std::string& key, const std::string& value);
Result<std::string> read_sysctl(const std::string& key);

} // namespace cnm
