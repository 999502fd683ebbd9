#include "store/file_store.hpp"

#include "util/file.hpp"

#include <chrono>
#include <ctime>
#include <thread>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <map>
#include <optional>
#include <vector>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm {

namespace {

constexpr mode_t file_mode = 0600;
constexpr mode_t dir_mode = 0700;
constexpr const char* holds_file = ".holds"; // see hold()

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

// Documents larger than this are corrupt (ours are a few hundred bytes; a pool doc with many
// Docker references a few KiB).
constexpr size_t document_limit = 64u << 20;

Version version_of(const struct stat& st)
{
    if (st.st_mtim.tv_sec < 0)
        return 1;
    return static_cast<Version>(st.st_mtim.tv_sec) * 1000000000u + static_cast<Version>(st.st_mtim.tv_nsec);
}

Version now_ns()
{
    struct timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec < 0 ? 1 : static_cast<Version>(ts.tv_sec) * 1000000000u + static_cast<Version>(ts.tv_nsec);
}

// Gives the file `fd` a version above `previous`: its mtime set to max(now, previous + 1), read
// back until the file system has once kept a time exactly (`exact`, per store). A file system that
// keeps coarser times (whole seconds) gets the next whole second instead. 0, with errno set, when
// neither sticks.
Version stamp(int fd, Version previous, bool& exact)
{
    Version want = std::max(now_ns(), previous + 1);
    for (int attempt = 0; attempt < 2; ++attempt) {
        struct timespec times[2] = { { 0, UTIME_OMIT },
            { static_cast<time_t>(want / 1000000000u), static_cast<long>(want % 1000000000u) } };
        if (::futimens(fd, times) < 0)
            return 0;
        if (exact)
            return want;
        struct stat st;
        if (::fstat(fd, &st) < 0)
            return 0;
        Version got = version_of(st);
        exact = got == want;
        if (got > previous)
            return got;
        want = (previous / 1000000000u + 1) * 1000000000u;
    }
    errno = ERANGE;
    return 0;
}

// A Hint document (written on every ADD: the cursor) is rewritten in place: no
// temp inode, no rename over the old one (which on ext4 starts the new file's writeback at once,
// ~0.3-0.9 ms here). One pwrite, padded with spaces to the old length so no truncate is needed:
// a kill -9 leaves the old or the new document (trailing spaces are valid JSON); a power failure
// may leave a mix, which readers treat as corrupt, as a Hint allows. 0 when the name is not a
// plain file with one link (a symlink, FIFO or hard link is replaced by the atomic path instead);
// else the new version.
Version rewrite_in_place(int dfd, const std::string& name, const Json& doc, bool& exact)
{
    // No O_CREAT: a new document goes the atomic way, into a spare inode when there is one.
    int fd = ::openat(dfd, name.c_str(), O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    Version version = 0;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1) {
        std::string text = doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
        if (text.size() < static_cast<size_t>(st.st_size))
            text.append(static_cast<size_t>(st.st_size) - text.size(), ' ');
        if (::pwrite(fd, text.data(), text.size(), 0) == static_cast<ssize_t>(text.size())) {
            version = stamp(fd, version_of(st), exact);
            struct stat after;
            if (version == 0 && ::fstat(fd, &after) == 0) // written, but the stamp did not stick
                version = std::max<Version>(version_of(after), 1);
        }
    }
    ::close(fd);
    return version;
}

// ".tmp-" and 16 hex digits: a per-process random seed (one getrandom for the whole verb, which
// writes up to five documents) stepped and mixed per name (splitmix64), so unique whatever the
// PID (PIDs wrap, and a plugin in a PID namespace may always be PID 1). O_EXCL and a retry cover
// the rare clash.
std::string temp_name()
{
    static std::uint64_t state = [] {
        std::uint64_t seed = 0;
        if (::getrandom(&seed, sizeof seed, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof seed)) // no entropy yet (early boot)
            seed = now_ns() ^ (static_cast<std::uint64_t>(::getpid()) << 40);
        return seed;
    }();
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    static const char hex[] = "0123456789abcdef";
    std::string name = ".tmp-";
    for (int shift = 60; shift >= 0; shift -= 4)
        name += hex[(z >> shift) & 15];
    return name;
}

enum class TempKind { None, Ours, Legacy };

// Ours: ".tmp-" + 16 hex digits. Legacy: ".tmp-<pid>-<counter>", from binaries before the random
// names, whose writers took no flock (so they are reclaimed only once old).
TempKind temp_kind(std::string_view name)
{
    if (name.substr(0, 5) != ".tmp-")
        return TempKind::None;
    std::string_view rest = name.substr(5);
    auto all = [](std::string_view s, auto pred) {
        return !s.empty() && std::all_of(s.begin(), s.end(), pred);
    };
    if (rest.size() == 16 && all(rest, [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }))
        return TempKind::Ours;
    auto dash = rest.find('-');
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (dash != std::string_view::npos && all(rest.substr(0, dash), digit) && all(rest.substr(dash + 1), digit))
        return TempKind::Legacy;
    return TempKind::None;
}

// Calls fn(name) for each entry of the directory `dfd`, "." and ".." left out, until fn returns
// false. Reads through an fd of its own (a caller's fn may read the directory too) with
// getdents64 into a buffer on the stack: no DIR and its 32 KiB heap buffer (pages a plugin would
// fault in), and none of opendir's fstat/fcntl calls. 0 or errno. `chunk`: the bytes asked of
// each getdents64. The kernel fills as much as it is given, and an indexed ext4 directory reads
// (and sorts) the blocks that takes, so a caller that stops early asks for little.
template <class Fn>
int for_each_entry(int dfd, Fn&& fn, size_t chunk = 32768)
{
    int fd = ::openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno; // removed since its fd was cached: empty
    alignas(struct dirent64) char buf[32768];
    // At least one entry of the longest name (19 + 256 bytes, 8-aligned), or getdents64 says EINVAL.
    chunk = std::clamp(chunk, size_t(512), sizeof buf);
    int err = 0;
    for (bool more = true; more;) {
        ssize_t n = ::getdents64(fd, buf, chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            // ENOENT: the directory was removed (by another process, after its last entry went)
            // since its fd was cached; it is empty, as readdir() reported it.
            err = n < 0 && errno != ENOENT ? errno : 0;
            break;
        }
        for (ssize_t pos = 0; pos < n && more;) {
            const auto* entry = reinterpret_cast<const struct dirent64*>(buf + pos);
            pos += entry->d_reclen;
            const char* name = entry->d_name;
            if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
                continue;
            more = fn(name);
        }
    }
    ::close(fd);
    return err;
}

// Removes the temp `name` in `dfd` if its writer is gone: its flock can be taken (the kernel drops
// a dead process's locks). The writer takes the flock right after creating the file and checks it
// still has a name, so taking the flock in between and removing the name only sends it to another
// name. Errors (a read-only state dir) are ignored: the temp blocks nothing.
void reclaim_temp(int dfd, const char* name, TempKind kind)
{
    int fd = ::openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ELOOP)
            ::unlinkat(dfd, name, 0); // a symlink under a temp name: no writer of ours made it
        return;
    }
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::flock(fd, LOCK_EX | LOCK_NB) == 0) {
        bool old_enough = kind == TempKind::Ours || now_ns() - std::min(now_ns(), version_of(st)) > 60ull * 1000000000u;
        struct stat named;
        if (old_enough && ::fstatat(dfd, name, &named, AT_SYMLINK_NOFOLLOW) == 0 && named.st_ino == st.st_ino
            && named.st_dev == st.st_dev)
            ::unlinkat(dfd, name, 0);
    }
    ::close(fd);
}

// Removes the directory `name` in `pfd` and everything in it, following no symlink. 0 or errno.
int remove_tree(int pfd, const char* name, int depth)
{
    int fd = ::openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : errno;
    DIR* d = ::fdopendir(fd);
    if (!d) {
        int err = errno;
        ::close(fd);
        return err;
    }
    std::vector<std::string> names;
    while (auto* entry = ::readdir(d))
        if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0)
            names.emplace_back(entry->d_name);
    int err = 0;
    for (auto& n : names) {
        if (::unlinkat(fd, n.c_str(), 0) == 0 || errno == ENOENT)
            continue;
        if (errno == EISDIR && depth < 32) {
            if (int e = remove_tree(fd, n.c_str(), depth + 1); e && !err)
                err = e;
        } else if (!err) {
            err = errno;
        }
    }
    ::closedir(d);
    if (err)
        return err;
    if (::unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return errno;
    return 0;
}

// ---- spares ---------------------------------------------------------------------------------------
// A per-boot document that is removed, or swapped out by a newer one, is not unlinked but kept as
// a spare, ".spare-0" to ".spare-3" in its directory, and the next write of a per-boot document
// there writes into a spare instead of creating an inode. On an ext4 without a journal (the root
// file system of the machines this was measured on) a new inode costs 0.1-0.2 ms under churn: the
// allocator skips every inode freed in the last minutes (find_inode_bit's recently_deleted check,
// made only when there is no journal); an ADD made 4.
// A writer claims a spare where it lies: it opens the slot, takes an flock on it and checks that
// the name still is that inode (a writer that took it before has renamed it away); writes it,
// padded with spaces to the spare's length (trailing spaces are valid JSON, and no truncate is
// needed); and renames the slot onto the key (or exchanges them, RENAME_EXCHANGE, which leaves
// the old document in the slot: a spare again, with no rename of its own). Nothing renames a slot
// away but its claimant, and a document is put into a slot only while the slot is empty
// (RENAME_NOREPLACE), so a claimed slot stays the claimant's until its rename. A kill -9 mid-write
// leaves a torn spare, which is never read. Only per-boot documents (PerBoot, Hint) are recycled,
// in both directions: a spare's old bytes are always a per-boot document, of this boot or an
// older one. Its overwrite is not flushed, so after a power failure the key may show an older
// per-boot document of the same directory instead of an empty file; either is void with that
// boot. Within a boot the page cache is coherent and the key gets the spare only once it is fully
// written. Sync documents (network and pool records, Docker's leases) keep new inodes. A Hint's
// rewrite in place writes into the key's inode, which a concurrent remove could make a spare of:
// Hint documents are written under the lock that every writer of their directory holds (a
// cursor under its pool's lock).

constexpr int spare_slots = 4;
constexpr off_t spare_limit = 4096; // one block: a larger file is unlinked, not kept

const char* spare_name(int slot)
{
    static const char* const names[spare_slots] = { ".spare-0", ".spare-1", ".spare-2", ".spare-3" };
    return names[slot];
}

bool is_spare_name(const std::string& name)
{
    return name.size() == 8 && name.compare(0, 7, ".spare-") == 0;
}

// A per-boot document that a writer of ours could have made: a plain file with one name, small.
bool spare_worthy(const struct stat& st)
{
    return S_ISREG(st.st_mode) && st.st_nlink == 1 && st.st_size <= spare_limit;
}

// A spare of `dfd`, claimed: its fd (flocked), its slot's name in `name` and its length in `size`;
// -1 when there is none (or no usable one), with `none` set when every slot was empty.
int take_spare(int dfd, std::string& name, off_t& size, bool& none)
{
    none = false;
    int empty = 0;
    for (int slot = 0; slot < spare_slots; ++slot) {
        const char* spare = spare_name(slot);
        int fd = ::openat(dfd, spare, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat st, named;
        if (fd < 0) {
            if (errno == ENOENT) {
                none = ++empty == spare_slots;
                continue;
            }
            // ELOOP, EISDIR, ENXIO: a symlink, a directory or a FIFO no writer of ours put there.
            if (::fstatat(dfd, spare, &named, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(named.st_mode)
                && ::unlinkat(dfd, spare, 0) < 0 && errno == EISDIR)
                (void)remove_tree(dfd, spare, 0);
            continue;
        }
        if (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
            ::close(fd);
            if (errno == EWOULDBLOCK)
                continue; // another writer's
            return -1;    // no flock here: no claim is safe, so make new files
        }
        bool still = ::fstat(fd, &st) == 0 && ::fstatat(dfd, spare, &named, AT_SYMLINK_NOFOLLOW) == 0 && named.st_ino == st.st_ino
            && named.st_dev == st.st_dev;
        if (still && spare_worthy(st)) {
            name = spare;
            size = st.st_size;
            return fd;
        }
        if (still) // a second hard link or an oversized file at the slot: not a spare
            ::unlinkat(dfd, spare, 0);
        ::close(fd); // else renamed away by its claimant meanwhile
    }
    return -1;
}

// Removes the temp `name` of a write that did not happen; a spare stays one (torn, never read).
void drop_temp(int dfd, const std::string& name)
{
    if (!is_spare_name(name))
        ::unlinkat(dfd, name.c_str(), 0);
}

// Keeps the regular file `name` of `dfd` (a per-boot document being retired) as a spare: true
// when it was renamed into a free slot, or is gone already; false when every slot is taken.
bool keep_spare(int dfd, const char* name)
{
    for (int slot = 0; slot < spare_slots; ++slot) {
        if (::renameat2(dfd, name, dfd, spare_name(slot), RENAME_NOREPLACE) == 0)
            return true;
        if (errno != EEXIST)
            return errno == ENOENT;
    }
    return false;
}

// The state tree must be ours: owned by this user (or root) and writable by nobody else. Else
// another user could swap in a forged record (an endpoint naming somebody's veth) that root acts on.
std::optional<std::string> untrusted(const struct stat& st)
{
    static const uid_t me = ::geteuid(); // once per process: a plugin opens ten directories per verb
    if (st.st_uid != me && st.st_uid != 0)
        return "it is owned by uid " + std::to_string(st.st_uid) + ", not by uid " + std::to_string(me)
            + " (the user running this) or root";
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return std::string("it is writable by ") + ((st.st_mode & S_IWOTH) ? "others" : "its group") + " (mode " + mode
            + "); chmod go-w it";
    }
    return std::nullopt;
}

Error untrusted_error(const std::string& path, const std::string& why)
{
    return make_error(Code::Io, "refusing state directory " + path + ": " + why,
        "another user could forge the records in it");
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
    // mkdir -p when it is missing (parents get 0755, the root itself 0700); it is there on every
    // call but the first, so it is opened first: no walk of the path per component.
    int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool missing = fd < 0 && errno == ENOENT;
    for (size_t pos = 1; missing && pos <= root.size(); ++pos) {
        if (pos != root.size() && root[pos] != '/')
            continue;
        std::string prefix = root.substr(0, pos);
        if (::mkdir(prefix.c_str(), pos == root.size() ? dir_mode : 0755) < 0 && errno != EEXIST) {
            int err = errno;
            return make_error(Code::Io, "cannot create state directory " + prefix
                    + (err == EROFS || err == EACCES ? ": the state directory is not writable" : ""),
                std::strerror(err));
        }
        if (pos == root.size())
            fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0) {
        int err = errno;
        return make_error(Code::Io, "cannot open state directory " + root
                + (err == EROFS || err == EACCES || err == EPERM ? ": the state directory is not writable" : ""),
            std::strerror(err));
    }
    struct stat st;
    if (::fstat(fd, &st) < 0) {
        int err = errno;
        ::close(fd);
        return make_error(Code::Io, "cannot open state directory " + root, std::strerror(err));
    }
    if (auto why = untrusted(st)) {
        ::close(fd);
        return untrusted_error(root, *why);
    }
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
    struct stat st;
    if (::fstat(fd, &st) < 0) {
        int err = errno;
        ::close(fd);
        return io_error("cannot open", dir, err);
    }
    if (auto why = untrusted(st)) {
        ::close(fd);
        return untrusted_error(m_root + "/" + key_str(dir), *why);
    }
    m_dirs.emplace(dir, fd);
    if (st.st_size <= sweep_limit)
        m_small.push_back(fd);
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
    auto corrupt = [&](std::string reason, const struct stat& st) {
        out.status = Loaded::Status::Corrupt;
        out.reason = std::move(reason);
        out.version = std::max<Version>(version_of(st), 1);
        return out;
    };
    // O_NONBLOCK: a FIFO at the key opens at once instead of waiting for a writer; it and every
    // other non-regular file is then refused by type, never read.
    int fd = ::openat(dfd, key.back().c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return out;
        struct stat st;
        if (::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
            return corrupt(std::string("it is ") + file_kind(st.st_mode), st); // a symlink, a socket, a device
        return io_error("cannot read", key, err);
    }
    struct stat st;
    if (::fstat(fd, &st) < 0) {
        int err = errno;
        ::close(fd);
        return io_error("cannot read", key, err);
    }
    if (!S_ISREG(st.st_mode) || st.st_size == 0 || static_cast<unsigned long long>(st.st_size) > document_limit) {
        ::close(fd);
        if (!S_ISREG(st.st_mode))
            return corrupt(std::string("it is ") + file_kind(st.st_mode), st);
        return corrupt(st.st_size == 0 ? "it is empty" : "it is larger than 64 MiB", st);
    }
    // One read of the size fstat gave plus a byte: getting exactly that size means the end was
    // reached (a regular file reads short only at its end), so no second read for the EOF. A file
    // that changed size meanwhile is read on to its end as before.
    std::string text;
    bool too_large = false;
    int err = 0;
    size_t size = static_cast<size_t>(st.st_size);
    text.resize(size + 1);
    ssize_t n;
    while ((n = ::read(fd, text.data(), size + 1)) < 0 && errno == EINTR) { }
    if (n < 0) {
        err = errno;
    } else if (static_cast<size_t>(n) == size) {
        text.resize(size);
    } else {
        text.resize(static_cast<size_t>(n));
        err = read_bounded(fd, document_limit, text, too_large);
    }
    ::close(fd);
    if (err)
        return io_error("cannot read", key, err);
    if (too_large)
        return corrupt("it is larger than 64 MiB", st);
    out.doc = json_depth_ok(text) ? Json::parse(text, nullptr, false) : Json(Json::value_t::discarded);
    if (text.empty() || out.doc.is_discarded() || !out.doc.is_object()) {
        out.doc = Json();
        return corrupt(text.empty() ? "it is empty" : "it is not a JSON object", st);
    }
    out.status = Loaded::Status::Ok;
    out.version = std::max<Version>(version_of(st), 1);
    return out;
}

Result<std::string> FileStore::write_temp(int dfd, const Key& key, const Json& doc, Durability durability, int& fd, Version previous,
    Version& version)
{
    std::string name;
    off_t spare_size = 0;
    // A directory found without spares is not asked again by this process (four failed renames
    // per write in a new network's directories) until it keeps one there itself.
    bool none = false;
    bool ask = durability != Durability::Sync && std::find(m_spareless.begin(), m_spareless.end(), dfd) == m_spareless.end();
    fd = ask ? take_spare(dfd, name, spare_size, none) : -1;
    if (none)
        m_spareless.push_back(dfd);
    for (int attempt = 0; fd < 0; ++attempt) {
        name = temp_name();
        fd = ::openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, file_mode);
        if (fd < 0) {
            if (errno == EEXIST && attempt < 16)
                continue;
            return io_error("cannot write", key, errno);
        }
        // Claim it (see reclaim_temp): a sweeper that took the flock first has removed the name,
        // so go to another. A file system without flock: no claim, and no sweeper can reclaim it.
        struct stat st;
        int claimed = ::flock(fd, LOCK_EX | LOCK_NB);
        if (claimed < 0 && errno != EWOULDBLOCK)
            break;
        if (claimed == 0 && ::fstat(fd, &st) == 0 && st.st_nlink > 0)
            break;
        ::close(fd);
        fd = -1;
        if (attempt >= 16)
            return io_error("cannot write", key, EBUSY);
    }
    std::string text = doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
    if (text.size() < static_cast<size_t>(spare_size))
        text.append(static_cast<size_t>(spare_size) - text.size(), ' ');
    auto written = write_all(fd, text);
    int err = written ? 0 : errno;
    if (written && (version = stamp(fd, previous, m_exact_times)) == 0)
        err = errno;
    if (err) {
        ::close(fd);
        fd = -1;
        drop_temp(dfd, name);
        return io_error("cannot write", key, err);
    }
    return name;
}

void FileStore::kept_spare(int dfd)
{
    m_spareless.erase(std::remove(m_spareless.begin(), m_spareless.end(), dfd), m_spareless.end());
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

namespace {

// The version of whatever is at `name` (any file type), 0 when absent; -1 with errno on error.
long long current_version(int dfd, const std::string& name)
{
    struct stat st;
    if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return static_cast<long long>(std::max<Version>(version_of(st), 1));
    return errno == ENOENT ? 0 : -1;
}

} // namespace

Result<Version> FileStore::write_doc(int dfd, const Key& key, const Json& doc, Durability durability, std::optional<Version> previous)
{
    if (durability == Durability::Hint)
        if (Version v = rewrite_in_place(dfd, key.back(), doc, m_exact_times))
            return v;
    // Whether a regular file is being replaced: for a document that is not flushed, it is swapped
    // out (RENAME_EXCHANGE) and then unlinked instead of renamed over. Either way the key names the
    // old document or the new one, never a mix, also after a kill -9 (the old one is then left
    // under the temp name, unlocked, and the next sweep reclaims it). ext4 flushes the new file at
    // once when a rename replaces another (auto_da_alloc, a write submitted in the middle of the
    // verb, ~0.2 ms here); an exchange does not. A Sync document is flushed by sync() anyway.
    bool swap = false;
    struct stat st;
    if (!previous) {
        if (::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            previous = std::max<Version>(version_of(st), 1);
            swap = S_ISREG(st.st_mode);
        } else if (errno == ENOENT) {
            previous = 0;
        } else {
            return io_error("cannot write", key, errno);
        }
    } else if (*previous != 0 && durability != Durability::Sync) {
        swap = ::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    }
    swap = swap && durability != Durability::Sync;
    int fd = -1;
    Version version = 0;
    std::string temp = TRY(write_temp(dfd, key, doc, durability, fd, *previous, version));
    if (swap && ::renameat2(dfd, temp.c_str(), dfd, key.back().c_str(), RENAME_EXCHANGE) == 0) {
        // The old document, now under the temp's name: in a spare's slot it is that spare now;
        // under a temp name it is kept as a spare, or unlinked (a failure of both leaves a temp
        // for the sweeps).
        if (!spare_worthy(st))
            ::unlinkat(dfd, temp.c_str(), 0);
        else if (is_spare_name(temp) || keep_spare(dfd, temp.c_str()))
            kept_spare(dfd);
        else
            ::unlinkat(dfd, temp.c_str(), 0);
        ::close(fd);
        return version;
    }
    if (::renameat(dfd, temp.c_str(), dfd, key.back().c_str()) < 0) {
        int err = errno;
        ::close(fd);
        drop_temp(dfd, temp);
        return io_error("cannot replace", key, err);
    }
    if (durability != Durability::Sync) {
        ::close(fd);
        return version;
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
    return version;
}

Result<void> FileStore::put(const Key& key, const Json& doc, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::Yes));
    TRY(write_doc(dfd, key, doc, durability, std::nullopt));
    return {};
}

Result<bool> FileStore::create_doc(int dfd, const Key& key, const Json& doc, Durability durability, Version& version)
{
    // Cheap pre-check: most callers probe taken names (allocation walks past leases).
    struct stat st;
    if (::fstatat(dfd, key.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0)
        return false;
    int fd = -1;
    std::string temp = TRY(write_temp(dfd, key, doc, durability, fd, 0, version));
    // RENAME_NOREPLACE makes "create with complete content" one atomic, exclusive step.
    if (::renameat2(dfd, temp.c_str(), dfd, key.back().c_str(), RENAME_NOREPLACE) < 0) {
        int err = errno;
        ::close(fd);
        drop_temp(dfd, temp);
        if (err == EEXIST)
            return false;
        return io_error("cannot create", key, err);
    }
    if (durability != Durability::Sync) {
        ::close(fd);
        return true;
    }
    m_unsynced_files.push_back(fd);
    dirty_dir(dfd);
    return true;
}

Result<bool> FileStore::create(const Key& key, const Json& doc, Durability durability)
{
    Version version = 0;
    return create_versioned(key, doc, durability, version);
}

Result<bool> FileStore::create_versioned(const Key& key, const Json& doc, Durability durability, Version& version)
{
    version = 0;
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::Yes));
    bool created = TRY(create_doc(dfd, key, doc, durability == Durability::Hint ? Durability::PerBoot : durability, version));
    if (!created)
        version = 0;
    return created;
}

Result<Cas> FileStore::put_if(const Key& key, const Json& doc, Version expected, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    Key dir(key.begin(), key.end() - 1);
    auto held = TRY(lock(dir));
    int dfd = TRY(dir_fd(dir, Create::Yes));
    long long current = current_version(dfd, key.back());
    if (current < 0)
        return io_error("cannot write", key, errno);
    if (static_cast<Version>(current) != expected)
        return Cas { false, static_cast<Version>(current), std::nullopt };
    // Never in place under CAS: a kill -9 between the rewrite and its stamp could leave an old version.
    if (durability == Durability::Hint)
        durability = Durability::PerBoot;
    if (expected == 0) {
        Version version = 0;
        if (!TRY(create_doc(dfd, key, doc, durability, version))) { // made by a writer that ignores the lock
            long long now = current_version(dfd, key.back());
            return Cas { false, now < 0 ? 0 : static_cast<Version>(now), std::nullopt };
        }
        return Cas { true, version, std::nullopt };
    }
    return Cas { true, TRY(write_doc(dfd, key, doc, durability, expected)), std::nullopt };
}

Result<Cas> FileStore::remove_if(const Key& key, Version expected, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    Key dir(key.begin(), key.end() - 1);
    int dfd = TRY(dir_fd(dir, Create::No));
    if (dfd < 0)
        return Cas { false, 0, std::nullopt };
    auto held = TRY(lock(dir));
    long long current = current_version(dfd, key.back());
    if (current < 0)
        return io_error("cannot remove", key, errno);
    if (expected == 0 || static_cast<Version>(current) != expected)
        return Cas { false, static_cast<Version>(current), std::nullopt };
    TRY(remove_entry(dfd, key, durability));
    return Cas { true, 0, std::nullopt };
}

void FileStore::forget_dirs(const Key& dir)
{
    for (auto it = m_dirs.lower_bound(dir); it != m_dirs.end() && it->first.size() >= dir.size()
         && std::equal(dir.begin(), dir.end(), it->first.begin());) {
        m_unsynced_dirs.erase(std::remove(m_unsynced_dirs.begin(), m_unsynced_dirs.end(), it->second), m_unsynced_dirs.end());
        m_swept.erase(std::remove(m_swept.begin(), m_swept.end(), it->second), m_swept.end());
        m_small.erase(std::remove(m_small.begin(), m_small.end(), it->second), m_small.end());
        kept_spare(it->second);
        ::close(it->second);
        it = m_dirs.erase(it);
    }
}

Result<void> FileStore::remove_entry(int dfd, const Key& key, Durability durability)
{
    const char* name = key.back().c_str();
    if (durability != Durability::Sync) { // a per-boot document: kept as a spare when a slot is free
        struct stat st;
        int seen = ::fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
        if (seen < 0 && errno == ENOENT)
            return {};
        if (seen == 0 && spare_worthy(st) && keep_spare(dfd, name)) {
            kept_spare(dfd);
            return {};
        }
    }
    if (::unlinkat(dfd, name, 0) < 0) {
        if (errno == ENOENT)
            return {};
        if (errno != EISDIR)
            return io_error("cannot remove", key, errno);
        // A directory where a document belongs: a corrupt document, removed with all it holds.
        forget_dirs(key);
        if (int err = remove_tree(dfd, name, 0))
            return io_error("cannot remove", key, err);
    }
    if (durability == Durability::Sync)
        dirty_dir(dfd);
    return {};
}

Result<void> FileStore::remove(const Key& key, Durability durability)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return {};
    return remove_entry(dfd, key, durability);
}

Result<void> FileStore::remove_dir(const Key& key)
{
    int pfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (pfd < 0)
        return {};
    if (auto it = m_dirs.find(key); it != m_dirs.end()) {
        TRY(sync()); // its fd may be queued for an fsync
        m_swept.erase(std::remove(m_swept.begin(), m_swept.end(), it->second), m_swept.end());
        m_small.erase(std::remove(m_small.begin(), m_small.end(), it->second), m_small.end());
        kept_spare(it->second);
        ::close(it->second);
        m_dirs.erase(it);
    }
    // A lock file, the holds file and spares are all an otherwise empty directory may hold. (No
    // hold is taken in a directory being removed: the endpoints directory goes, under the network
    // lock, only when it holds no record, and an ADD writes its record in the same locked step as
    // it takes its hold.)
    if (int fd = ::openat(pfd, key.back().c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); fd >= 0) {
        ::unlinkat(fd, ".lock", 0);
        ::unlinkat(fd, holds_file, 0);
        for (int slot = 0; slot < spare_slots; ++slot)
            ::unlinkat(fd, spare_name(slot), 0);
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
    std::vector<std::pair<std::string, TempKind>> temps;
    int err = for_each_entry(dfd, [&](const char* name) {
        if (name[0] == '.') {
            if (auto kind = temp_kind(name); kind != TempKind::None)
                temps.emplace_back(name, kind);
        } else {
            out.emplace_back(name);
        }
        return true;
    });
    if (err)
        return io_error("cannot list", dir, err);
    for (auto& [name, kind] : temps)
        reclaim_temp(dfd, name.c_str(), kind);
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

Result<std::optional<Version>> FileStore::peek_version(const Key& key)
{
    if (!valid_segment(key.back()))
        return make_error(Code::InvalidConfig, "invalid name \"" + key.back() + "\" for the state directory");
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return std::optional<Version>(0);
    long long v = current_version(dfd, key.back());
    if (v < 0)
        return io_error("cannot read", key, errno);
    return std::optional<Version>(static_cast<Version>(v));
}

void FileStore::sweep_temps(int dfd)
{
    // Once per directory and store (a verb locks one directory several times), and only a small
    // directory (one block on ext4/xfs, ~200 entries on tmpfs): a lock stays cheap however many
    // leases or endpoints there are; list() sweeps the large ones.
    if (std::find(m_swept.begin(), m_swept.end(), dfd) != m_swept.end())
        return;
    m_swept.push_back(dfd);
    // Small when dir_fd opened it (its fstat is this one's), or by a look now.
    if (std::find(m_small.begin(), m_small.end(), dfd) == m_small.end()) {
        struct stat st;
        if (::fstat(dfd, &st) < 0 || st.st_size > sweep_limit)
            return;
    }
    // Through the cached fd from offset 0, not for_each_entry's fd of its own (2 syscalls, not
    // 5). The kernel fills the buffer while the next entry fits, so a read that left room for the
    // largest entry reached the end: one read for a directory of one ext4 block; tmpfs's ~200
    // entries of long names may take a second.
    alignas(struct dirent64) char buf[16384];
    constexpr ssize_t largest_entry = 280; // a dirent64 with a 255-byte name
    std::vector<std::pair<std::string, TempKind>> temps;
    ssize_t n = ::lseek(dfd, 0, SEEK_SET) == 0 ? static_cast<ssize_t>(sizeof buf) : 0;
    while (n > static_cast<ssize_t>(sizeof buf) - largest_entry && (n = ::getdents64(dfd, buf, sizeof buf)) > 0) {
        for (ssize_t pos = 0; pos < n;) {
            const auto* entry = reinterpret_cast<const struct dirent64*>(buf + pos);
            pos += entry->d_reclen;
            if (auto kind = temp_kind(entry->d_name); kind != TempKind::None)
                temps.emplace_back(entry->d_name, kind);
        }
    }
    for (auto& [name, kind] : temps)
        reclaim_temp(dfd, name.c_str(), kind);
}

Result<std::unique_ptr<Lock>> FileStore::lock(const Key& dir)
{
    std::pair<int, Key> id { m_root_fd, dir };
    auto& locks = held_locks();
    if (auto it = locks.find(id); it != locks.end()) {
        ++it->second.count;
        return std::unique_ptr<Lock>(new FileLock(id));
    }
    // The holder we wait for may remove the directory (a network's last DEL): its lock file is
    // then unlinked, and a flock granted on it excludes nobody, as the next process makes a new
    // one. So a lock is taken again, from a fresh open of the path, until the file it holds is
    // still linked. Each turn needs another process to remove the directory once more.
    for (int turn = 0;; ++turn) {
        int fd = TRY(lock_once(dir));
        struct stat st;
        if (::fstat(fd, &st) < 0) {
            int err = errno;
            ::close(fd);
            return io_error("cannot lock", dir, err);
        }
        if (st.st_nlink > 0) {
            locks[id] = { fd, 1 };
            return std::unique_ptr<Lock>(new FileLock(id));
        }
        ::close(fd);
        forget_dirs(dir);
        if (turn == 100)
            return make_error(Code::TryAgainLater, "state " + key_str(dir) + " is removed and made again by other processes as it is locked",
                "try again");
    }
}

Result<int> FileStore::lock_once(const Key& dir)
{
    int dfd = TRY(dir_fd(dir, Create::Yes));
    sweep_temps(dfd);
    int fd = ::openat(dfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, file_mode);
    if (fd < 0 && errno == ENOENT) { // the directory was removed after it was opened: open its path again
        forget_dirs(dir);
        dfd = TRY(dir_fd(dir, Create::Yes));
        fd = ::openat(dfd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, file_mode);
    }
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
    return fd;
}

// ---- holds ---------------------------------------------------------------------------------------
// A hold is a write lock (an open file description lock, F_OFD_SETLKW) on one byte of the file
// ".holds" in the directory of <key>, at an offset hashed from the key's name (62 bits, so two
// names share a byte only by a collision that makes a GC skip one more attachment for as long as
// the other's ADD is in flight). The kernel drops it when the holder's fd closes or the holder
// dies, as it drops a flock, and the file stays: no inode is created or removed per hold (on ext4
// under churn a new inode costs 0.1-0.2 ms here). Releasing is closing.
// Binaries before this one held ".<name>.held" files (flocked; unlinked by the holder): held()
// still answers for those too, and removes one whose holder died.

namespace {

off_t hold_offset(const std::string& name)
{
    std::uint64_t h = 14695981039346656037ull; // FNV-1a
    for (unsigned char c : name)
        h = (h ^ c) * 1099511628211ull;
    return static_cast<off_t>(h >> 2);
}

class HoldLock final : public Lock {
public:
    explicit HoldLock(int fd) : m_fd(fd) { }
    ~HoldLock() override { ::close(m_fd); } // drops the lock

private:
    int m_fd;
};

std::string legacy_hold_name(const Key& key)
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
    int fd = ::openat(dfd, holds_file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, file_mode);
    if (fd < 0)
        return io_error("cannot open hold", key, errno);
    struct stat st {};
    if (int err = ::fstat(fd, &st) < 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL) {
        ::close(fd);
        return io_error("cannot hold", key, err);
    }
    struct flock range {};
    range.l_type = F_WRLCK;
    range.l_whence = SEEK_SET;
    range.l_start = hold_offset(key.back());
    range.l_len = 1;
    while (::fcntl(fd, F_OFD_SETLKW, &range) < 0) {
        if (errno == EINTR)
            continue;
        int err = errno;
        ::close(fd);
        return io_error("cannot hold", key, err);
    }
    return std::unique_ptr<Lock>(new HoldLock(fd));
}

Result<bool> FileStore::held(const Key& key)
{
    if (key.empty() || !valid_segment(key.back()))
        return false;
    int dfd = TRY(dir_fd(Key(key.begin(), key.end() - 1), Create::No));
    if (dfd < 0)
        return false;
    // A hold of an earlier binary: a flocked file of its own.
    std::string name = legacy_hold_name(key);
    int fd = ::openat(dfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
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
        if (busy)
            return true;
    } else if (errno != ENOENT) {
        return io_error("cannot probe hold", key, errno);
    }
    fd = ::openat(dfd, holds_file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return false;
        return io_error("cannot probe hold", key, errno);
    }
    struct flock range {};
    range.l_type = F_WRLCK;
    range.l_whence = SEEK_SET;
    range.l_start = hold_offset(key.back());
    range.l_len = 1;
    int rc = ::fcntl(fd, F_OFD_GETLK, &range);
    int err = errno;
    ::close(fd);
    if (rc < 0)
        return io_error("cannot probe hold", key, err);
    return range.l_type != F_UNLCK;
}

Result<bool> FileStore::empty_dir(const Key& dir)
{
    int dfd = TRY(dir_fd(dir, Create::No));
    if (dfd < 0)
        return true;
    bool empty = true;
    // 1 KiB: the store's own dot files and a name or two. A whole buffer's worth was the whole
    // directory: 820 endpoints' names, 0.15-0.2 ms, in the DEL of a network with 1 000.
    int err = for_each_entry(
        dfd,
        [&](const char* name) {
            empty = name[0] == '.';
            return empty;
        },
        1024);
    if (err)
        return io_error("cannot list", dir, err);
    return empty;
}

} // namespace cnm
