#pragma once
// FileStore: one file per document under a root directory (default /var/lib/cni/cnm).
// Files are 0600 and directories 0700; below the root every component is opened with
// O_NOFOLLOW, so a symlink planted in the state tree is refused, never followed. The root and
// every directory below it that the store opens must be owned by this user (or root) and not
// writable by group or others, as ssh demands of a home: otherwise another user could forge a
// record that a later GC acts on. The root's ancestors are not checked (/tmp/x is fine).
//
// Writes go to a temp file ".tmp-<16 hex>" renamed over the key (a document that is not flushed:
// exchanged with it, RENAME_EXCHANGE, and the old one unlinked). Its writer holds an
// flock on it from creation to rename, so a temp whose flock can be taken belongs to a writer that
// died: list() removes those in the directory it reads, and lock() in a small directory (pool
// and network directories; never one that grows with the number of leases). A dead writer's temp
// therefore never blocks a later one, whatever PID it gets.
//
// Spares: a per-boot document (PerBoot, Hint) that is removed or swapped out is renamed to one of
// ".spare-0".."3" in its directory instead of unlinked, and the next per-boot write there claims
// one (flock), writes it and renames it onto the key instead of creating an inode (0.1-0.2 ms
// each on ext4 under churn; file_store.cpp has the protocol). After a
// power failure such a key may show an older per-boot document of its directory: void with its
// boot, like the empty file it would otherwise be. Sync documents always get new inodes.
//
// Holds (hold/held) are write locks on one byte each of a directory's ".holds" file (open file
// description locks: released by the kernel when the holder closes or dies); no file per hold.
//
// Versions: a document's version is its mtime in nanoseconds, which every write through the store
// sets to max(now, previous + 1) before the rename (or after an in-place Hint rewrite); it is read
// back until the file system has shown it keeps nanoseconds (one that keeps whole seconds gets the
// next whole second). Guarantee: while the key exists, each write through the store gives it a
// strictly larger version, and an edit from outside (an editor, cp) gives it the edit time, which
// differs unless it lands in the same nanosecond. Across a remove, a re-created key starts again
// at "now": a version from before the remove comes back only if the clock stepped back to that
// very nanosecond. put_if/remove_if compare and write under lock(dir of key), so they exclude each
// other and every writer holding that lock; a plain put() by a process not holding it is not
// excluded (its write may land between the compare and the rename and be replaced). put_if never
// rewrites in place (Hint is taken as PerBoot): a kill -9 between an in-place rewrite and its
// stamp would leave the kernel's coarse time, possibly below the previous version.

#include "store/store.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <vector>
#include <string>

namespace cnm {

inline constexpr const char* default_state_dir = "/var/lib/cni/cnm";
inline constexpr const char* state_dir_env = "CNM_STATE_DIR";

class FileStore final : public Store {
public:
    /// Opens (creating, like mkdir -p) the root. The root path itself may contain symlinks
    /// (/var/run → /run); nothing below it may.
    static Result<std::unique_ptr<FileStore>> open(const std::string& root);
    ~FileStore() override;

    Result<Loaded> get(const Key& key) override;
    Result<void> put(const Key& key, const Json& doc, Durability durability = Durability::Sync) override;
    Result<bool> create(const Key& key, const Json& doc, Durability durability = Durability::Sync) override;
    Result<bool> create_versioned(const Key& key, const Json& doc, Durability durability, Version& version) override;
    /// Atomic under lock(dir of key) (taken here; free when this process holds it already).
    Result<Cas> put_if(const Key& key, const Json& doc, Version expected, Durability durability = Durability::Sync) override;
    Result<Cas> remove_if(const Key& key, Version expected, Durability durability = Durability::Sync) override;
    Result<void> remove(const Key& key, Durability durability = Durability::Sync) override;
    Result<void> remove_dir(const Key& key) override;
    Result<std::vector<std::string>> list(const Key& dir) override;
    Result<bool> exists(const Key& key) override;
    Result<std::optional<Version>> peek_version(const Key& key) override;
    Result<bool> empty_dir(const Key& dir) override;
    Result<std::unique_ptr<Lock>> lock(const Key& dir) override;
    Result<std::unique_ptr<Lock>> hold(const Key& key) override;
    Result<bool> held(const Key& key) override;
    Result<void> sync() override;
    void forget_open_dirs() override { forget_dirs({}); }

    const std::string& root() const { return m_root; }
    /// STATUS: an error naming the root when it cannot be written (a read-only mount).
    Result<void> check_writable() const;
    /// Zero (the default, for the plugins): lock() waits as long as it takes. Otherwise lock()
    /// gives up with TryAgainLater after this long — cnm-shim's bound on a handler's time.
    void set_lock_timeout(std::chrono::milliseconds timeout) { m_lock_timeout = timeout; }

private:
    FileStore(std::string root, int fd) : m_root(std::move(root)), m_root_fd(fd) { }
    enum class Create { No, Yes };
    /// fd of the directory `dir` (cached); -1 with errno ENOENT when absent and Create::No.
    Result<int> dir_fd(const Key& dir, Create create);
    /// Writes a temp file in `dfd` stamped with a version above `previous` (set in `version`): a
    /// spare inode of that directory for a document that is not flushed, else a new one. Its fd
    /// stays open until sync() so the data can be flushed after the rename (one flush for the
    /// whole verb, not two per document).
    Result<std::string> write_temp(int dfd, const Key& key, const Json& doc, Durability durability, int& fd, Version previous,
        Version& version);
    /// put() once the directory is open and the key's current version known.
    Result<Version> write_doc(int dfd, const Key& key, const Json& doc, Durability durability, std::optional<Version> previous);
    /// create() likewise: false when the key exists.
    Result<bool> create_doc(int dfd, const Key& key, const Json& doc, Durability durability, Version& version);
    /// Removes whatever is at `key` in `dfd` (a directory with all it holds).
    Result<void> remove_entry(int dfd, const Key& key, Durability durability);
    /// One flock of `dir`'s lock file (waiting as set_lock_timeout says): its fd, which may be of a
    /// file its holder unlinked meanwhile (lock() checks).
    Result<int> lock_once(const Key& dir);
    /// Forgets the cached fds of `dir` and every directory below it.
    void forget_dirs(const Key& dir);
    /// Removes the temp files in `dfd` whose writers are gone.
    void sweep_temps(int dfd);
    void dirty_dir(int dfd);
    /// `dfd` may hold spares again (this process kept one there, or forgets the directory).
    void kept_spare(int dfd);
    Error io_error(const std::string& what, const Key& key, int err) const;

    std::string m_root;
    int m_root_fd = -1;
    std::map<Key, int> m_dirs;
    std::vector<int> m_unsynced_files;
    std::map<std::string, int> m_unsynced_paths; // key → fd in m_unsynced_files
    std::vector<int> m_unsynced_dirs;
    std::chrono::milliseconds m_lock_timeout { 0 };
    bool m_exact_times = false;     // the file system kept a version exactly: no more read-backs
    std::vector<int> m_swept;       // directories lock() has swept of dead writers' temps
    std::vector<int> m_small;       // directories of at most sweep_limit bytes when opened
    /// The largest directory lock() sweeps (sweep_temps).
    static constexpr long sweep_limit = 4096;
    std::vector<int> m_spareless;   // directories where a per-boot write found no spare
};

} // namespace cnm
