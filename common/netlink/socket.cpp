#include "netlink/socket.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <linux/netlink.h>

namespace cnm::netlink {

namespace {

struct AckInfo {
    std::string message;
};

int parse_ext_ack(const nlattr* attr, void* data)
{
    auto* info = static_cast<AckInfo*>(data);
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0)
        info->message = mnl_attr_get_str(attr);
    return MNL_CB_OK;
}

// The kernel's extended-ack sentence, if it sent one.
std::string ext_ack_message(const nlmsghdr* nlh)
{
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
        return {};
    auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    size_t offset = sizeof(*err);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
        offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
    if (mnl_nlmsg_get_payload_len(nlh) <= offset)
        return {};
    AckInfo info;
    mnl_attr_parse(nlh, static_cast<unsigned>(offset), parse_ext_ack, &info);
    return info.message;
}

} // namespace

Result<std::unique_ptr<Socket>> Socket::open()
{
    mnl_socket* socket = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!socket) {
        int err = errno;
        return errno_error(Code::Kernel, err, "cannot open a netlink socket", std::strerror(err));
    }
    if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
        int err = errno;
        mnl_socket_close(socket);
        return errno_error(Code::Kernel, err, "cannot bind a netlink socket", std::strerror(err));
    }
    int one = 1;
    mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &one, sizeof one);
    mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &one, sizeof one);
    return std::unique_ptr<Socket>(new Socket(socket));
}

void Socket::set_strict(bool on)
{
    int value = on ? 1 : 0;
    mnl_socket_setsockopt(m_socket, NETLINK_GET_STRICT_CHK, &value, sizeof value);
}

int Socket::fd() const
{
    return mnl_socket_get_fd(m_socket);
}

Socket::Socket(mnl_socket* socket)
    : m_socket(socket)
    , m_port(mnl_socket_get_portid(socket))
    , m_seq(static_cast<uint32_t>(std::time(nullptr)))
    , m_buffer(new char[buffer_size])
{
}

Socket::~Socket()
{
    mnl_socket_close(m_socket);
}

Result<void> Socket::run(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>* on_message, bool& interrupted)
{
    interrupted = false;
    if (!request.complete())
        return errno_error(Code::Internal, EMSGSIZE, what + ": netlink request too large");
    nlmsghdr* nlh = request.header();
    nlh->nlmsg_seq = ++m_seq;
    nlh->nlmsg_flags |= NLM_F_ACK;
    if (mnl_socket_sendto(m_socket, nlh, nlh->nlmsg_len) < 0) {
        int e = errno;
        return errno_error(Code::Kernel, e, what + ": " + std::strerror(e));
    }
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(m_socket, m_buffer.get(), buffer_size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return errno_error(Code::Kernel, e, what + ": " + std::strerror(e));
        }
        auto* msg = reinterpret_cast<const nlmsghdr*>(m_buffer.get());
        size_t len = static_cast<size_t>(n);
        for (; mnl_nlmsg_ok(msg, static_cast<int>(len)); msg = mnl_nlmsg_next(msg, reinterpret_cast<int*>(&len))) {
            if (msg->nlmsg_seq != m_seq || msg->nlmsg_pid != m_port)
                continue; // a stale reply to an earlier request
            if (msg->nlmsg_flags & NLM_F_DUMP_INTR)
                interrupted = true;
            if (msg->nlmsg_type == NLMSG_ERROR) {
                auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(msg));
                if (err->error == 0)
                    return {};
                int e = -err->error;
                std::string reason = ext_ack_message(msg);
                return errno_error(Code::Kernel, e, what + ": " + std::strerror(e), reason);
            }
            if (msg->nlmsg_type == NLMSG_DONE)
                return {};
            if (on_message)
                (*on_message)(msg);
        }
    }
}

Result<void> Socket::transact(Request& request, const std::string& what)
{
    bool interrupted = false;
    return run(request, what, nullptr, interrupted);
}

Result<void> Socket::transact(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>& on_message)
{
    bool interrupted = false;
    return run(request, what, &on_message, interrupted);
}

Result<void> Socket::query(Request& request, const std::string& what, const std::function<void(const nlmsghdr*)>& on_message)
{
    for (int attempt = 0; attempt < 5; ++attempt) {
        bool interrupted = false;
        std::vector<std::vector<char>> replies;
        auto collect = std::function<void(const nlmsghdr*)>([&](const nlmsghdr* msg) {
            auto* bytes = reinterpret_cast<const char*>(msg);
            replies.emplace_back(bytes, bytes + msg->nlmsg_len);
        });
        TRY(run(request, what, &collect, interrupted));
        if (!interrupted) {
            for (auto& r : replies)
                on_message(reinterpret_cast<const nlmsghdr*>(r.data()));
            return {};
        }
    }
    return errno_error(Code::TryAgainLater, EINTR, what + ": the dump kept changing under us", "NLM_F_DUMP_INTR 5 times");
}

} // namespace cnm::netlink
