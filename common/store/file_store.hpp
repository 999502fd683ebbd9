#pragma once
// FileStore: one file per document under a root directory (default /var/lib/cni/cnm).
// Files are 0600 and directories 0700; below the root every component is opened with
// O_NOFOLLOW, so a symlink planted in the state tree is refused, never followed.

#include "store/store.hpp"

#include <map>
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
    Result<void> put(const Key& key, const Json& doc) override;
    Result<bool> create(const Key& key, const Json& doc) override;
    Result<void> remove(const Key& key) override;
    Result<void> remove_dir(const Key& key) override;
    Result<std::vector<std::string>> list(const Key& dir) override;
    Result<bool> exists(const Key& key) override;
    Result<std::unique_ptr<Lock>> lock(const Key& dir) override;

    const std::string& root() const { return m_root; }

private:
    FileStore(std::string root, int fd) : m_root(std::move(root)), m_root_fd(fd) { }
    enum class Create { No, Yes };
    /// fd of the directory `dir` (cached); -1 with errno ENOENT when absent and Create::No.
    Result<int> dir_fd(const Key& dir, Create create);
    Result<std::string> write_temp(int dfd, const Key& key, const Json& doc);
    Error io_error(const std::string& what, const Key& key, int err) const;

    std::string m_root;
    int m_root_fd = -1;
    std::map<Key, int> m_dirs;
};

} // namespace cnm
