#pragma once
// One rtnetlink socket, bound in the namespace that was current when it was opened; every later
// call acts in that namespace, so switching namespaces is needed only to open it (and for
// /proc/sys). Acks are parsed with extended-ack support: the kernel's own sentence ("Unknown
// device type", "Invalid VLAN id") becomes the error's details.

#include "netlink/request.hpp"
#include "util/result.hpp"

#include <functional>
#include <memory>

namespace cnm::netlink {

class Socket {
public:
    static Result<std::unique_ptr<Socket>> open();
    ~Socket();
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    /// Sends a request that expects only an ack. On failure the Error's code is Code::Kernel,
    /// its msg says `what` failed and why, and its sys_errno holds the errno (EEXIST, ENODEV …)
    /// for the caller to match on.
    Result<void> transact(Request& request, const std::string& what);
    /// The same, handing `on_message` what the kernel sends before the ack (NLM_F_ECHO's copy).
    Result<void> transact(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>& on_message);
    /// Sends a request and hands every reply message to `on_message` (dumps included).
    /// NLM_F_DUMP_INTR: the dump is retried up to 5 times (a link changed meanwhile), then the
    /// call fails with EINTR; partial results are never returned.
    Result<void> query(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>& on_message);

    /// NETLINK_GET_STRICT_CHK: the kernel then filters dumps by the header's fields (an address
    /// dump by ifa_index) instead of sending everything. Off by default: strict mode also refuses
    /// dump headers that carry fields it does not filter by.
    void set_strict(bool on);

    /// The socket's descriptor (for SIOCGSKNS: the namespace it was made in).
    int fd() const;

private:
    explicit Socket(mnl_socket* socket);
    Result<void> run(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>* on_message, bool& interrupted);

    mnl_socket* m_socket;
    uint32_t m_port;
    uint32_t m_seq;
    // Not a std::vector: zero-filling 32 KiB touched eight pages per socket on every exec, where a
    // reply is written into the first one or two.
    static constexpr size_t buffer_size = 32768;
    std::unique_ptr<char[]> m_buffer;
};

} // namespace cnm::netlink
