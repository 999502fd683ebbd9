#include "store/file_store.hpp"

#include <chrono>
#include <thread>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <map>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm {

namespace {

constexpr mode_t file_mode = 0600;
constexpr mode_t dir_mode = 0700;

// flock() locks belong to the open file, so a second open of the same lock file in this process
// would wait for the first forever. Locks are therefore shared per process and counted: taking a
// lock this process already holds (DEL of a driver calling the IPAM DEL) is free.
struct HeldLock {
    int fd = -1;
    int count = 0;
};
std::map<std::pair<int, Key>, HeldLock>& held_locks()
{
    static std::map<std::pair<int, Key>, HeldLock> locks;
    return locks;
}

class FileLock final : public Lock {
public:
    explicit FileLock(std::pair<int, Key> id) : m_id(std::move(id)) { }
    ~FileLock() override
    {
        auto& locks = held_locks();
        auto it = locks.find(m_id);
        if (it != locks.end() && --it->second.count == 0) {
            ::close(it->second.fd); // closing drops the flock
            locks.erase(it);
        }
    }

private:
    std::pair<int, Key> m_id;
};

Result<void> write_all(int fd, std::string_view bytes)
{
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(Code::Io, "write failed", std::strerror(errno));
        }
        bytes.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

// A Hint document (written on every ADD: the cursor, a sandbox record) is rewritten in place: no
// temp inode, no rename over the old one (which on ext4 starts the new file's writeback at once,
// ~0.3-0.9 ms here). One pwrite, padded with spaces to the old length so no truncate is needed:
// a kill -9 leaves the old or the new document (trailing spaces are valid JSON); a power failure
// may leave a mix, which readers treat as corrupt, as a Hint allows. False when the name is not a
// plain file with one link (a symlink, FIFO or hard link is replaced by the atomic path instead).
bool rewrite_in_place(int dfd, const std::string& name, const Json& doc)
{
    int fd = ::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, file_mode);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
    if (ok) {
        std::string text = doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
        if (text.size() < static_cast<size_t>(st.st_size))
            text.append(static_cast<size_t>(st.st_size) - text.size(), ' ');
        ok = ::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size());
    }
    ::close(fd);
    return ok;
}

std::string temp_name()
{
    static unsigned counter = 0;
    char buf[64];
    std::snprintf(buf, sizeof buf, ".tmp-%d-%u", ::getpid(), counter++);
    return buf;
}

} // namespace

std::string key_str(const Key& key)
{
    std::string out;
    for (auto& s : key)
        out += out.empty() ? s : "/" + s;
    return out;
}

bool valid_segment(std::string_view segment)
{
    if (segment.empty() || segment.size() > 255 || segment[0] == '.')
        return false;
    return segment.find('/') == std::string_view::npos && segment.find('\0') == std::string_view::npos;
}

Error FileStore::io_error(const std::string& what, const Key& key, int err) const
{
    std::string path = m_root + "/" + key_str(key);
    if (err == EROFS || err == EACCES || err == EPERM)
        return make_error(Code::Io, what + " " + path + ": the state directory is not writable", std::strerror(err));
    if (err == ELOOP || err == ENOTDIR)
        return make_error(Code::Io, what + " " + path + ": refusing a symlink or non-directory inside the state directory", std::strerror(err));
    return make_error(Code::Io, what + " " + path, std::strerror(err));
}

Result<std::unique_ptr<FileStore>> FileStore::open(const std::string& root)
{
    if (root.empty() || root[0] != '/')
        return make_error(Code::InvalidConfig, "invalid config: state directory \"" + root + "\" must be an absolute path");
    if (root.find('\0') != std::string::npos || root.size() > 1024)
        return make_error(Code::InvalidConfig, "invalid config: state directory is not a usable path");
    // mkdir -p: parents get 0755, the root itself 0700.
    for (size_t pos = 1; pos <= root.size(); ++pos) {
        if (pos != root.size() && root[pos] != '/')
            continue;
        std::string prefix = root.substr(0, pos);
        if (::mkdir(prefix.c_str(), pos == root.size() ? dir_mode : 0755) < 0 && errno != EEXIST) {
            int err = errno;
            return make_error(Code::Io, "cannot create state directory " + prefix
                    + (err == EROFS || err == EACCES ? ": the state directory is not writable" : ""),
                std::strerror(err));
        }
    }
    int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return make_error(Code::Io, "cannot open state directory " + root, std::strerror(errno));
    return std::unique_ptr<FileStore>(new FileStore(root, fd));
}

Result<void> FileStore::check_writable() const
{
    if (::faccessat(m_root_fd, ".", W_OK, AT_EACCESS) != 0)
        return make_error(Code::Io, "the state directory " + m_root + " cannot be written", std::strerror(errno));
    return {};
}

FileStore::~FileStore()
{
    (void)sync();
    for (auto& [key, fd] : m_dirs)
        ::close(fd);
    ::close(m_root_fd);
}

Result<int> FileStore::dir_fd(const Key& dir, Create create)
{
    if (dir.empty())
        return m_root_fd;
    if (auto it = m_dirs.find(dir); it != m_dirs.end())
        return it->second;
    for (auto& s : dir)
        if (!valid_segment(s))
            return make_error(Code::InvalidConfig, "invalid name \"" + s + "\" for the state directory");
    Key parent(dir.begin(), dir.end() - 1);
    int pfd = TRY(dir_fd(parent, create));
    if (pfd < 0)
        return -1;
    const char* name = dir.back().c_str();
    int fd = ::openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create == Create::Yes) {
        if (::mkdirat(pfd, name, dir_mode) < 0 && errno != EEXIST)
            return io_error("cannot create", dir, errno);
        fd = ::openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        if (errno == ENOENT && create == Create::No)
            return -1;
        return io_error("cannot open", dir, errno);
    }
    m_dirs.emplace(dir, fd);
    return fd;
}

Result<Loaded> FileStore::get(const Key& key)
{
    Key dir(key.begin(), key.end() - 1);
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(dir, Create::No));
    Loaded out;
    if (dfd < 0)
        return out;
    int fd = ::openat(dfd, key.back().c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return out;
        if (errno == ELOOP) {
            out.status = Loaded::Status::Corrupt;
            out.reason = "it is a symlink";
            return out;
        }
        return io_error("cannot read", key, errno);
    }
    std::string text;
    char buf[16384];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            if (err == EISDIR) {
                out.status = Loaded::Status::Corrupt;
                out.reason = "it is a directory";
                return out;
            }
            return io_error("cannot read", key, err);
        }
        if (n == 0)
            break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > (64u << 20))
            break;
    }
    ::close(fd);
    out.doc = json_depth_ok(text) ? Json::parse(text, nullptr, false) : Json(Json::value_t::discarded);
    if (text.empty() || out.doc.is_discarded() || !out.doc.is_object()) {
        out.status = Loaded::Status::Corrupt;
        out.reason = text.empty() ? "it is empty" : "it is not a JSON object";
        out.doc = Json();
        return out;
    }
    out.status = Loaded::Status::Ok;
    return out;
}

Result<std::string> FileStore::write_temp(int dfd, const Key& key, const Json& doc, int& fd)
{
    std::string name = temp_name();
    fd = ::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, file_mode);
    if (fd < 0)
        return io_error("cannot write", key, errno);
    auto written = write_all(fd, doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n");
    if (!written) {
        int err = errno;
        ::close(fd);
        fd = -1;
        ::unlinkat(dfd, name.c_str(), 0);
        return io_error("cannot write", key, err);
    }
    return name;
}

void FileStore::dirty_dir(int dfd)
{
    if (std::find(m_unsynced_dirs.begin(), m_unsynced_dirs.end(), dfd) == m_unsynced_dirs.end())
        m_unsynced_dirs.push_back(dfd);
}

Result<void> FileStore::sync()
{
    // File data first, then the directory entries that name the files. On a journalling file
    // system the first fsync commits the whole transaction and the rest return at once.
    int failed = 0;
    for (int fd : m_unsynced_files) {
        if (::fsync(fd) < 0 && !failed)
            failed = errno;
        ::close(fd);
    }
    m_unsynced_files.clear();
    m_unsynced_paths.clear();
    for (int dfd : m_unsynced_dirs)
        if (::fsync(dfd) < 0 && !failed)
            failed = errno;
    m_unsynced_dirs.clear();
    if (failed)
        return make_error(Code::Io, "cannot sync the state directory " + m_root, std::strerror(failed));
    return {};
}

Result<void> FileStore::put(const Key& key, const Json& doc, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::Yes));
    if (durability == Durability::Hint && rewrite_in_place(dfd, key.back(), doc))
        return {};
    int fd = -1;
    std::string temp = TRY(write_temp(dfd, key, doc, fd));
    if (::renameat(dfd, temp.c_str(), dfd, key.back().c_str()) < 0) {
        int err = errno;
        ::close(fd);
        ::unlinkat(dfd, temp.c_str(), 0);
        return io_error("cannot replace", key, err);
    }
    if (durability == Durability::Hint) {
        ::close(fd);
        return {};
    }
    // A document replaced again before the sync needs no flush of its earlier version.
    std::string path = key_str(key);
    if (auto it = m_unsynced_paths.find(path); it != m_unsynced_paths.end()) {
        auto old = std::find(m_unsynced_files.begin(), m_unsynced_files.end(), it->second);
        if (old != m_unsynced_files.end()) {
            ::close(*old);
            m_unsynced_files.erase(old);
        }
    }
    m_unsynced_paths[path] = fd;
    m_unsynced_files.push_back(fd);
    dirty_dir(dfd);
    return {};
}

Result<bool> FileStore::create(const Key& key, const Json& doc)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::Yes));
    // Cheap pre-check: most callers probe taken names (allocation walks past leases).
    struct stat st;
    if (::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return false;
    int fd = -1;
    std::string temp = TRY(write_temp(dfd, key, doc, fd));
    // RENAME_NOREPLACE makes "create with complete content" one atomic, exclusive step.
    if (::renameat2(dfd, temp.c_str(), dfd, key.back().c_str(), RENAME_NOREPLACE) < 0) {
        int err = errno;
        ::close(fd);
        ::unlinkat(dfd, temp.c_str(), 0);
        if (err == EEXIST)
            return false;
        return io_error("cannot create", key, err);
    }
    m_unsynced_files.push_back(fd);
    dirty_dir(dfd);
    return true;
}

Result<void> FileStore::remove(const Key& key, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return {};
    if (::unlinkat(dfd, key.back().c_str(), 0) < 0) {
        if (errno == ENOENT)
            return {};
        if (errno == EISDIR)
            return remove_dir(key);
        return io_error("cannot remove", key, errno);
    }
    if (durability == Durability::Sync)
        dirty_dir(dfd);
    return {};
}

Result<void> FileStore::remove_dir(const Key& key)
{
    int pfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (pfd < 0)
        return {};
    if (auto it = m_dirs.find(key); it != m_dirs.end()) {
        TRY(sync()); // its fd may be queued for an fsync
        ::close(it->second);
        m_dirs.erase(it);
    }
    // A lock file is all an otherwise empty directory may hold.
    if (int fd = ::openat(pfd, key.back().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); fd >= 0) {
        ::unlinkat(fd, ".lock", 0);
        ::close(fd);
    }
    if (::unlinkat(pfd, key.back().c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST)
        return io_error("cannot remove", key, errno);
    return {};
}

Result<std::vector<std::string>> FileStore::list(const Key& dir)
{
    std::vector<std::string> out;
    int dfd = TRY(dir_fd(dir, Create::No));
    if (dfd < 0)
        return out;
    int fd = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error("cannot list", dir, errno);
    DIR* d = ::fdopendir(fd);
    if (!d) {
        ::close(fd);
        return io_error("cannot list", dir, errno);
    }
    while (auto* entry = ::readdir(d)) {
        if (entry->d_name[0] == '.')
            continue;
        out.emplace_back(entry->d_name);
    }
    ::closedir(d);
    return out;
}

Result<bool> FileStore::exists(const Key& key)
{
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return false;
    struct stat st;
    return ::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<std::unique_ptr<Lock>> FileStore::lock(const Key& dir)
{
    int dfd = TRY(dir_fd(dir, Create::Yes));
    std::pair<int, Key> id { m_root_fd, dir };
    auto& locks = held_locks();
    if (auto it = locks.find(id); it != locks.end()) {
        ++it->second.count;
        return std::unique_ptr<Lock>(new FileLock(id));
    }
    int fd = ::openat(dfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, file_mode);
    if (fd < 0)
        return io_error("cannot open lock in", dir, errno);
    if (m_lock_timeout.count() <= 0) {
        while (::flock(fd, LOCK_EX) < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            ::close(fd);
            return io_error("cannot lock", dir, err);
        }
    } else {
        // Bounded wait (a long-lived server must answer): poll, backing off from 1 to 20 ms.
        auto deadline = std::chrono::steady_clock::now() + m_lock_timeout;
        auto pause = std::chrono::milliseconds(1);
        while (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err != EWOULDBLOCK || std::chrono::steady_clock::now() >= deadline) {
                ::close(fd);
                if (err == EWOULDBLOCK)
                    return make_error(Code::TryAgainLater, "state " + key_str(dir) + " is locked by another process for more than "
                            + std::to_string(m_lock_timeout.count()) + " ms", "try again");
                return io_error("cannot lock", dir, err);
            }
            std::this_thread::sleep_for(pause);
            pause = std::min(pause * 2, std::chrono::milliseconds(20));
        }
    }
    locks[id] = { fd, 1 };
    return std::unique_ptr<Lock>(new FileLock(id));
}

// ---- holds ---------------------------------------------------------------------------------------
// A hold is a flocked file ".<name>.held" beside where the document <name> would be (the leading
// dot keeps it out of list()). The holder unlinks it before closing; a prober that opened the old
// inode meanwhile finds it unlocked, which is right: the holder is done.

namespace {

class HoldLock final : public Lock {
public:
    HoldLock(int dfd, std::string name, int fd) : m_dfd(dfd), m_name(std::move(name)), m_fd(fd) { }
    ~HoldLock() override
    {
        ::unlinkat(m_dfd, m_name.c_str(), 0);
        ::close(m_fd);
        ::close(m_dfd);
    }

private:
    int m_dfd;
    std::string m_name;
    int m_fd;
};

std::string hold_name(const Key& key)
{
    return "." + key.back() + ".held";
}

} // namespace

Result<std::unique_ptr<Lock>> FileStore::hold(const Key& key)
{
    if (key.empty() || !valid_segment(key.back()))
        return make_error(Code::Internal, "invalid hold key " + key_str(key));
    Key dir(key.begin(), key.end() - 1);
    int dfd = TRY(dir_fd(dir, Create::Yes));
    std::string name = hold_name(key);
    int fd = ::openat(dfd, name.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, file_mode);
    if (fd < 0)
        return io_error("cannot open hold", key, errno);
    while (::flock(fd, LOCK_EX) < 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        ::close(fd);
        return io_error("cannot hold", key, err);
    }
    // Its own handle on the directory: the cached one may be closed by a remove_dir meanwhile.
    int own = ::fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        int err = errno;
        ::close(fd);
        return io_error("cannot hold", key, err);
    }
    return std::unique_ptr<Lock>(new HoldLock(own, name, fd));
}

Result<bool> FileStore::held(const Key& key)
{
    if (key.empty() || !valid_segment(key.back()))
        return false;
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return false;
    std::string name = hold_name(key);
    int fd = ::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return false;
        return io_error("cannot probe hold", key, errno);
    }
    bool busy = false;
    while (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EINTR)
            continue;
        busy = errno == EWOULDBLOCK;
        break;
    }
    if (!busy)
        ::unlinkat(dfd, name.c_str(), 0); // a crashed holder's: nobody else will remove it
    ::close(fd);
    return busy;
}

Result<bool> FileStore::empty_dir(const Key& dir)
{
    int dfd = TRY(dir_fd(dir, Create::No));
    if (dfd < 0)
        return true;
    int fd = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return io_error("cannot list", dir, errno);
    DIR* d = ::fdopendir(fd);
    if (!d) {
        int err = errno;
        ::close(fd);
        return io_error("cannot list", dir, err);
    }
    bool empty = true;
    while (auto* entry = ::readdir(d))
        if (entry->d_name[0] != '.') {
            empty = false;
            break;
        }
    ::closedir(d);
    return empty;
}

} // namespace cnm
