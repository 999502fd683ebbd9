#pragma once
// The state store: JSON documents under keys made of validated path segments, written atomically,
// with exclusive creation, per-document versions and compare-and-swap, and exclusive locks on a
// key prefix. Two backends: FileStore (file_store.hpp: one file per document, the per-host state of
// every plugin) and EtcdStore (etcd_store.hpp: the cluster's records in etcd, where a version is
// the key's mod_revision, lock() a lease and create() a compare-and-swap). Callers do not see
// which one they hold: what both do honestly is the interface proper; what only one can do
// (multi-key txn(), watch()) is an optional capability whose default answers "this backend cannot"
// (Code::Internal), never a silent approximation. Neither keeps a store-wide counter: writes to
// different keys never wait on each other.

#include "util/json.hpp"
#include "util/result.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>
#include <vector>

namespace cnm {

using Key = std::vector<std::string>;

std::string key_str(const Key& key);

/// True when `segment` may become one path component: 1–255 bytes, no '/', no NUL, and not
/// starting with '.' (that rules out "." and "..", and keeps our temp and lock files apart).
bool valid_segment(std::string_view segment);

/// A document's version: 0 when the key is absent; every write through the store gives the key a
/// new, larger one, so a version read earlier tells whether anything wrote the key since (compare
/// and swap: put_if, remove_if). Comparable only between versions of one key. In FileStore it is
/// the file's mtime in nanoseconds, which every write sets to max(now, previous + 1) and reads
/// back (see file_store.hpp for what that guarantees).
using Version = std::uint64_t;

struct Loaded {
    enum class Status { Absent, Ok, Corrupt };
    Status status = Status::Absent;
    Json doc;            // when Ok
    std::string reason;  // when Corrupt
    Version version = 0; // when Ok or Corrupt (a corrupt document can be replaced by put_if)
    bool ok() const { return status == Status::Ok; }
};

/// The outcome of a compare-and-swap.
struct Cas {
    bool done = false;   // false: the key was not at the expected version, and nothing was written
    Version version = 0; // done: the key's new version (0 after a remove); else its current one
    /// Lost: the winner's document, when the backend read it in the same step (EtcdStore always,
    /// from the failed txn; FileStore never: call get()).
    std::optional<Loaded> current;
};

/// One document directly under a directory, as scan() read it.
struct Scanned {
    std::string name;
    Loaded doc; // Ok or Corrupt (with its version), never Absent
};
struct Scan {
    std::vector<Scanned> docs; // unsorted
    /// A store position: watch(dir, at + 1) reports every change after this read, none missed.
    /// 0 when the backend cannot watch.
    Version at = 0;
};

/// txn(): the key must be at `version` (0: absent) for the writes to happen.
struct TxnCheck {
    Key key;
    Version version = 0;
};
/// txn(): a put of `doc`, or (nullopt) a remove.
struct TxnWrite {
    Key key;
    std::optional<Json> doc;
};
struct TxnOutcome {
    bool done = false;            // false: some check failed and nothing was written
    Version version = 0;          // done: the version every key put now has
    std::vector<Version> current; // lost: each check's key's version now (0: absent), in order
};

/// watch(): one change. doc.status Absent: the key was removed; doc.version is the position of
/// the change (a put's new version).
struct Change {
    Key key;
    Loaded doc;
};
struct Changes {
    std::vector<Change> changes; // in order, never empty
    Version at = 0;              // the store position these bring the watcher to
};
struct Watched {
    enum class End { Stopped, Compacted };
    End end = End::Stopped;
    /// Stopped: watch from here to continue. Compacted: the start position is gone from the
    /// backend's history; scan() again and watch from its `at` + 1.
    Version resume = 0;
};
/// Called for each batch of changes; false stops the watch.
using WatchCallback = std::function<bool(const Changes&)>;

/// Whether sync() makes a write durable.
/// Sync: flushed by the next sync() (temp, rename, fsync of the file and of its directory) — for
///   durable definitions: networks, pools, Docker bindings.
/// Hint: not flushed, and (in FileStore) rewritten in place, so a kill -9 leaves the old or the new
///   document but a power failure may leave a mix, read as corrupt — for what may be lost without
///   harm: a round-robin cursor.
/// PerBoot: atomic (temp, rename: a reader or a kill -9 sees the old or the new document, never a
///   mix) but never flushed, neither the file nor its directory — for per-boot facts (endpoints
///   and leases stamped with boot_id()): a power failure ends the boot they describe.
enum class Durability { Sync, Hint, PerBoot };

/// An exclusive lock, released when destroyed.
class Lock {
public:
    virtual ~Lock() = default;
};

class Store {
public:
    virtual ~Store() = default;
    /// Reads a document. Absent, empty, truncated or non-JSON documents are reported in the
    /// status, not as errors: DEL and GC treat them as absent, ADD refuses them. So is anything at
    /// the key that is not a regular file (a directory, a FIFO, a device): never read, never waited on.
    virtual Result<Loaded> get(const Key& key) = 0;
    /// Writes atomically: a temp file renamed over the key, so a reader (or a crash) sees the old
    /// document or the new one, never a mix. Durable after the next sync().
    virtual Result<void> put(const Key& key, const Json& doc, Durability durability = Durability::Sync) = 0;
    /// Writes only if the key is absent; returns false when it exists.
    virtual Result<bool> create(const Key& key, const Json& doc, Durability durability = Durability::Sync) = 0;
    /// create(), with the new document's version in `version` when the store has it at no extra
    /// cost (0 when it does not, or nothing was created): with peek_version() later, a caller can
    /// tell that the document is still the one it wrote without reading it back.
    virtual Result<bool> create_versioned(const Key& key, const Json& doc, Durability durability, Version& version)
    {
        version = 0;
        return create(key, doc, durability);
    }
    /// Compare and swap: writes `doc` only if the key is at version `expected` (0: only if absent),
    /// atomically with respect to every other put_if/remove_if of the key. A store without
    /// versions answers with an error.
    virtual Result<Cas> put_if(const Key& key, const Json& doc, Version expected, Durability durability = Durability::Sync)
    {
        (void)key, (void)doc, (void)expected, (void)durability;
        return make_error(Code::Internal, "this state store has no compare-and-swap");
    }
    /// Removes the key only if it is at version `expected` (not 0).
    virtual Result<Cas> remove_if(const Key& key, Version expected, Durability durability = Durability::Sync)
    {
        (void)key, (void)expected, (void)durability;
        return make_error(Code::Internal, "this state store has no compare-and-swap");
    }
    /// Removes a document; absent is fine. Whatever is at a document key goes, also what is not a
    /// document (a FIFO, a device, an empty file, a directory and all it holds), so DEL and GC can
    /// reclaim a key they found corrupt.
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
    /// The version the key has now (0 when absent) when the store can tell without reading it, at
    /// the cost of a stat; nullopt when it cannot (a remote store: it would be a round trip).
    virtual Result<std::optional<Version>> peek_version(const Key&) { return std::optional<Version> {}; }
    /// Takes an exclusive lock on the prefix `dir`, creating it if needed. (EtcdStore: a key on a
    /// lease, waited for within the client's timeout, which fences the holder's writes under dir.)
    virtual Result<std::unique_ptr<Lock>> lock(const Key& dir) = 0;
    /// A marker lock on one key, held for the life of the Lock and removed with it: an ADD in
    /// flight holds its attachment's, so a GC can tell it from a crashed one. Not a document:
    /// list() and get() never see it.
    virtual Result<std::unique_ptr<Lock>> hold(const Key& key) = 0;
    /// True while some process holds `key` (a crashed holder's hold is released by the kernel;
    /// in EtcdStore by its lease's expiry).
    virtual Result<bool> held(const Key& key) = 0;
    /// Every document directly under `dir` (not what subdirectories hold) with its version, and
    /// the position it was read at. EtcdStore: one range read, one snapshot. Default (FileStore):
    /// list() then get() of each name — not one snapshot, a document removed in between is left
    /// out, and a subdirectory reads as Corrupt; `at` is 0 (files cannot be watched).
    virtual Result<Scan> scan(const Key& dir)
    {
        Scan out;
        for (auto& name : TRY(list(dir))) {
            Key key = dir;
            key.push_back(name);
            Loaded doc = TRY(get(key));
            if (doc.status != Loaded::Status::Absent)
                out.docs.push_back({ name, std::move(doc) });
        }
        return out;
    }
    /// Writes every one of `writes` only if every check holds, atomically (all or none, also
    /// across a crash). EtcdStore: one etcd txn over any keys. FileStore cannot (several renames
    /// are never one atomic step) and answers an error; a caller needing it on files takes the
    /// directory's lock and uses put_if.
    virtual Result<TxnOutcome> txn(const std::vector<TxnCheck>& checks, const std::vector<TxnWrite>& writes)
    {
        (void)checks, (void)writes;
        return make_error(Code::Internal, "this state store has no multi-key transactions");
    }
    /// Reports every change under `dir` (its whole subtree) from the position `from` (0: from
    /// now) until `stop` or the callback returns false (End::Stopped), or until `from` is older
    /// than the backend's history (End::Compacted: scan again). A broken connection is an error
    /// (TryAgainLater). FileStore cannot watch and answers an error.
    virtual Result<Watched> watch(const Key& dir, Version from, const WatchCallback& callback, std::stop_token stop)
    {
        (void)dir, (void)from, (void)callback, (void)stop;
        return make_error(Code::Internal, "this state store cannot watch");
    }
    /// Makes every write since the last sync durable (fsync of each file written, then of each
    /// directory changed). A verb calls it once, before it reports success.
    virtual Result<void> sync() = 0;
    /// Lets go of what the store keeps open between calls (FileStore: the directories it has
    /// opened). A long-lived process calls it: cnm-shim after each call's sync(), its cluster
    /// agent before each reconciliation. Another process may remove a directory and make it
    /// again, and an fd kept open on the old one would show it empty.
    virtual void forget_open_dirs() { }
};

} // namespace cnm
