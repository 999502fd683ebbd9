#pragma once
// The state store: JSON documents under keys made of validated path segments, written atomically,
// with exclusive creation and advisory locks on a key prefix. FileStore is the only backend today;
// the interface is the seam for a distributed one (etcd) later, where lock() becomes a lease and
// create() a compare-and-swap.

#include "util/json.hpp"
#include "util/result.hpp"

#include <memory>
#include <string>
#include <vector>

namespace cnm {

using Key = std::vector<std::string>;

std::string key_str(const Key& key);

/// True when `segment` may become one path component: 1–255 bytes, no '/', no NUL, and not
/// starting with '.' (that rules out "." and "..", and keeps our temp and lock files apart).
bool valid_segment(std::string_view segment);

struct Loaded {
    enum class Status { Absent, Ok, Corrupt };
    Status status = Status::Absent;
    Json doc;           // when Ok
    std::string reason; // when Corrupt
    bool ok() const { return status == Status::Ok; }
};

/// Whether sync() makes a write durable. Hint: not flushed, and (in FileStore) rewritten in place,
/// so a kill -9 leaves the old or the new document but a power failure may leave a mix, read as
/// corrupt — for what may be lost without harm: a round-robin cursor, an index other documents
/// can rebuild.
enum class Durability { Sync, Hint };

/// An exclusive lock, released when destroyed.
class Lock {
public:
    virtual ~Lock() = default;
};

class Store {
public:
    virtual ~Store() = default;
    /// Reads a document. Absent, empty, truncated or non-JSON documents are reported in the
    /// status, not as errors: DEL and GC treat them as absent, ADD refuses them.
    virtual Result<Loaded> get(const Key& key) = 0;
    /// Writes atomically: a temp file renamed over the key, so a reader (or a crash) sees the old
    /// document or the new one, never a mix. Durable after the next sync().
    virtual Result<void> put(const Key& key, const Json& doc, Durability durability = Durability::Sync) = 0;
    /// Writes only if the key is absent; returns false when it exists.
    virtual Result<bool> create(const Key& key, const Json& doc) = 0;
    /// Removes a document; absent is fine.
    virtual Result<void> remove(const Key& key, Durability durability = Durability::Sync) = 0;
    /// Removes an empty directory; absent or non-empty is fine.
    virtual Result<void> remove_dir(const Key& key) = 0;
    /// Names directly under `dir` (documents and subdirectories), unsorted; absent dir → empty.
    virtual Result<std::vector<std::string>> list(const Key& dir) = 0;
    /// True when `dir` holds no document or subdirectory (absent counts as empty). Stops at the
    /// first entry: the cost does not grow with what the directory holds.
    virtual Result<bool> empty_dir(const Key& dir) = 0;
    /// True when the key exists, without reading it.
    virtual Result<bool> exists(const Key& key) = 0;
    /// Takes an exclusive lock on the prefix `dir`, creating it if needed.
    virtual Result<std::unique_ptr<Lock>> lock(const Key& dir) = 0;
    /// A marker lock on one key, held for the life of the Lock and removed with it: an ADD in
    /// flight holds its attachment's, so a GC can tell it from a crashed one. Not a document:
    /// list() and get() never see it.
    virtual Result<std::unique_ptr<Lock>> hold(const Key& key) = 0;
    /// True while some process holds `key` (a crashed holder's hold is released by the kernel).
    virtual Result<bool> held(const Key& key) = 0;
    /// Makes every write since the last sync durable (fsync of each file written, then of each
    /// directory changed). A verb calls it once, before it reports success.
    virtual Result<void> sync() = 0;
};

} // namespace cnm
