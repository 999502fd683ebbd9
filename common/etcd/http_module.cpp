// The vxlan plugin's etcd transport: http_transport.cpp built as a module (cnm-etcd-http.so) and
// loaded on the first etcd call, not linked. Linked, cpp-httplib brings libssl, libcrypto, zlib
// and brotli, about 4 ms of loader relocations and OpenSSL start-up on every exec of the plugin,
// and an ADD on a host whose block has room, like every DEL, CHECK and GC, makes no etcd call.
//
// The module lies beside the executable (http_module_dir) and is trusted no less than it: the
// same owners, nothing others can write, no symlink (open_trusted_module). A missing or refused
// module fails only the calls that need etcd, each as a request that could not be sent: the
// client then reports etcd unreachable, the module's path and fault in the details (an ADD that
// needs a block: code 11, as for any etcd out of reach, and a retry once the module is in place
// succeeds; STATUS: 50, not ready). Nothing else changes: DEL, CHECK, GC, an ADD with room work.

#include "etcd/http_module.hpp"

#include "util/file.hpp"

#include <cerrno>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm::etcd {

namespace {

std::string errno_text(int e)
{
    return std::strerror(e);
}

/// Neither group nor others may write; the owner must be root or `owner`.
std::string untrusted(const struct stat& st, uid_t owner)
{
    if (st.st_uid != 0 && st.st_uid != owner)
        return "owned by uid " + std::to_string(st.st_uid) + ", not by root or the program's owner (uid " + std::to_string(owner) + ")";
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return std::string("writable by ") + ((st.st_mode & S_IWOTH) ? "others" : "its group");
    return {};
}

Error refused(const std::string& path, const std::string& why, std::string details = {})
{
    return make_error(Code::Io, "the etcd HTTP module " + path + " is " + why, std::move(details));
}

} // namespace

Result<std::string> http_module_dir()
{
    char buf[4096];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
    if (n < 0)
        return make_error(Code::Io, "cannot find the etcd HTTP module: reading /proc/self/exe failed", errno_text(errno));
    if (static_cast<size_t>(n) >= sizeof buf)
        return make_error(Code::Io, "cannot find the etcd HTTP module: the program's path is too long");
    std::string exe(buf, static_cast<size_t>(n));
    constexpr std::string_view deleted = " (deleted)";
    if (exe.size() > deleted.size() && exe.compare(exe.size() - deleted.size(), deleted.size(), deleted) == 0)
        return make_error(Code::Io, "cannot find the etcd HTTP module: the program's file (" + exe + ") was replaced or removed while it ran");
    auto slash = exe.rfind('/');
    if (exe.empty() || exe[0] != '/' || slash == std::string::npos)
        return make_error(Code::Io, "cannot find the etcd HTTP module: /proc/self/exe is \"" + exe + "\"");
    return slash == 0 ? std::string("/") : exe.substr(0, slash);
}

Result<int> open_trusted_module(const std::string& dir, const std::string& name, uid_t owner)
{
    const std::string path = (dir.ends_with('/') ? dir : dir + "/") + name;
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        return make_error(Code::Internal, "the etcd HTTP module's name \"" + name + "\" is not a file name");
    int dfd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return refused(path, "not loadable: its directory cannot be opened (" + errno_text(errno) + ")");
    struct stat st {};
    if (::fstat(dfd, &st) != 0) {
        int e = errno;
        ::close(dfd);
        return refused(path, "not loadable: its directory cannot be read (" + errno_text(e) + ")");
    }
    if (auto why = untrusted(st, owner); !why.empty()) {
        ::close(dfd);
        return refused(path, "not trusted: its directory is " + why);
    }
    int fd = ::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    int open_errno = errno;
    ::close(dfd);
    if (fd < 0) {
        if (open_errno == ENOENT)
            return refused(path, "not installed (install it beside the plugin: meson install does)");
        if (open_errno == ELOOP)
            return refused(path, "not trusted: it is a symbolic link");
        return refused(path, "not loadable: " + errno_text(open_errno));
    }
    if (::fstat(fd, &st) != 0) {
        int e = errno;
        ::close(fd);
        return refused(path, "not loadable: " + errno_text(e));
    }
    std::string why;
    if (!S_ISREG(st.st_mode))
        why = std::string("not trusted: it is ") + file_kind(st.st_mode) + ", not a regular file";
    else if (auto u = untrusted(st, owner); !u.empty())
        why = "not trusted: it is " + u;
    if (!why.empty()) {
        ::close(fd);
        return refused(path, why);
    }
    return fd;
}

Result<std::unique_ptr<Transport>> load_http_module(const std::string& dir, const std::string& name, uid_t owner)
{
    const std::string path = (dir.ends_with('/') ? dir : dir + "/") + name;
    int fd = TRY(open_trusted_module(dir, name, owner));
    // The checked file itself, not its path again: /proc/self/fd/N names the open file. The
    // loader knows objects by name first, so a name an earlier load used (the same N, another
    // file) would give back that object: then the fd moves to another number.
    std::string by_fd;
    for (int tries = 0;; ++tries) {
        by_fd = "/proc/self/fd/" + std::to_string(fd);
        void* earlier = ::dlopen(by_fd.c_str(), RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
        if (!earlier)
            break;
        ::dlclose(earlier);
        int moved = tries < 8 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 64 + 16 * tries) : -1;
        ::close(fd);
        if (moved < 0)
            return refused(path, "not loadable: " + by_fd + " already names a loaded object");
        fd = moved;
    }
    void* handle = ::dlopen(by_fd.c_str(), RTLD_NOW | RTLD_LOCAL);
    const char* dl_error = handle ? nullptr : ::dlerror();
    std::string load_error = dl_error ? dl_error : "";
    ::close(fd);
    if (!handle)
        return refused(path, "not loadable", load_error);
    using Entry = const HttpModule* (*)();
    auto entry = reinterpret_cast<Entry>(::dlsym(handle, http_module_symbol));
    if (!entry)
        return refused(path, std::string("not a cnm etcd HTTP module (no ") + http_module_symbol + ")");
    const HttpModule* table = entry();
    const HttpModule want = http_module_expected();
    if (!table || table->abi != want.abi)
        return refused(path, "from another version of cnm (module interface " + std::to_string(table ? table->abi : 0)
                + ", this program's " + std::to_string(want.abi) + "): install the module built with this plugin");
    if (table->table_size != want.table_size || table->request_size != want.request_size || table->reply_size != want.reply_size
        || table->string_size != want.string_size || !table->compiler || std::strcmp(table->compiler, want.compiler) != 0 || !table->create)
        return refused(path, "from another build (compiler \"" + std::string(table->compiler ? table->compiler : "?") + "\", this program's \""
                + want.compiler + "\"): install the module built with this plugin");
    Transport* t = table->create();
    if (!t)
        return refused(path, "loaded, but it could not create a transport (out of memory)");
    return std::unique_ptr<Transport>(t);
}

namespace {

// Stands in for the module's transport until the first call, which loads it (once, for every
// thread). A module that cannot be used turns each call into NotSent with the reason.
class ModuleTransport final : public Transport {
public:
    HttpReply post(const HttpRequest& request) override
    {
        if (Transport* t = real())
            return t->post(request);
        return unavailable();
    }

    HttpReply stream(const HttpRequest& request, const OnData& on_data, std::stop_token stop) override
    {
        if (Transport* t = real())
            return t->stream(request, on_data, stop);
        return unavailable();
    }

private:
    Transport* real()
    {
        std::call_once(m_once, [this] {
            auto loaded = [&]() -> Result<std::unique_ptr<Transport>> {
                auto dir = TRY(http_module_dir());
                struct stat exe {};
                if (::stat("/proc/self/exe", &exe) != 0)
                    return make_error(Code::Io, "cannot find the etcd HTTP module: /proc/self/exe", errno_text(errno));
                return load_http_module(dir, http_module_file, exe.st_uid);
            }();
            if (loaded)
                m_real = loaded.release_value();
            else
                m_failure = loaded.error().msg + (loaded.error().details.empty() ? "" : ": " + loaded.error().details);
        });
        return m_real.get();
    }

    HttpReply unavailable() const
    {
        return { HttpReply::Outcome::NotSent, 0, {}, "not asked: " + m_failure };
    }

    std::once_flag m_once;
    std::unique_ptr<Transport> m_real;
    std::string m_failure;
};

} // namespace

std::unique_ptr<Transport> make_http_transport()
{
    return std::make_unique<ModuleTransport>();
}

} // namespace cnm::etcd
