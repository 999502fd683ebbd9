#pragma once
// FileStore: one file per document under a root directory (default /var/lib/cni/cnm).
// Files are 0600 and directories 0700; below the root every component is opened with
// O_NOFOLLOW, so a symlink planted in the state tree is refused, never followed.

#include "store/store.hpp"

#include <chrono>
#include <map>
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
    Result<bool> create(const Key& key, const Json& doc) override;
    Result<void> remove(const Key& key, Durability durability = Durability::Sync) override;
    Result<void> remove_dir(const Key& key) override;
    Result<std::vector<std::string>> list(const Key& dir) override;
    Result<bool> exists(const Key& key) override;
    Result<bool> empty_dir(const Key& dir) override;
    Result<std::unique_ptr<Lock>> lock(const Key& dir) override;
    Result<std::unique_ptr<Lock>> hold(const Key& key) override;
    Result<bool> held(const Key& key) override;
    Result<void> sync() override;

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
    /// Writes a temp file in `dfd`; its fd stays open until sync() so the data can be flushed
    /// after the rename (one flush for the whole verb, not two per document).
    Result<std::string> write_temp(int dfd, const Key& key, const Json& doc, int& fd);
    void dirty_dir(int dfd);
    Error io_error(const std::string& what, const Key& key, int err) const;

    std::string m_root;
    int m_root_fd = -1;
    std::map<Key, int> m_dirs;
    std::vector<int> m_unsynced_files;
    std::map<std::string, int> m_unsynced_paths; // key → fd in m_unsynced_files
    std::vector<int> m_unsynced_dirs;
    std::chrono::milliseconds m_lock_timeout { 0 };
};

} // namespace cnm
