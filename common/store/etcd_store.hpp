#pragma once
// EtcdStore: the Store interface over etcd (etcd/client.hpp), for the cluster's records. The key
// [a, b, c] is the etcd key "<prefix>/a/b/c"; a document is its JSON text as the value.
//
// Versions. A document's version is its key's mod_revision: every write to the key gives it the
// store revision of that write, which only grows, so the Version contract (a new, larger version
// per write, 0 when absent) holds per key — and across a remove too, since revisions never come
// back. put_if/remove_if/create are one etcd txn each (compare mod_revision, or version == 0 for
// "absent"), which also reads the key when it loses, so Cas::current is always filled. put_if
// onto an existing key keeps the lease the key is attached to (the agent's membership record
// stays on the agent's lease when a plugin corrects it); put() and create() write without one.
//
// One round trip per call: get, put, create, put_if, remove_if, remove, exists are one request
// each; list, empty_dir and scan one range read of the directory's whole subtree (the client has
// no limit option, so empty_dir's cost grows with what the directory holds — no caller walks big
// directories on etcd). Durability is ignored: an answered write is committed by raft, so sync()
// has nothing to do. remove_dir() has nothing to do either: etcd has no directories, a directory
// exists while a key is under it.
//
// Locks and holds are keys on a lease, under names valid_segment() never gives a document
// ("<dir>/.lock", "<dir>/.<name>.held"), which list/scan/empty_dir/watch skip. lock(dir) grants a
// lease and creates the lock key on it if absent, retrying (10–100 ms apart) until the client's
// timeout (a grant and a create, more while it waits), then TryAgainLater naming the directory; the
// Lock keeps the lease alive from a thread of its own (every TTL/3) and revokes it when destroyed
// (a crashed holder's lock goes when the TTL runs out). It is honest the way an etcd lock can be:
// while held, every write this store makes under dir (put, create, put_if, remove_if, remove, txn)
// carries the compare "the lock key is still on my lease", so a holder whose lease expired (cut off
// from etcd for a TTL) gets an error (TryAgainLater) instead of writing beside a new holder. Writes
// from other processes that do not take the lock are not excluded, as with FileStore. A lock this
// process holds already is taken again for free (as FileStore's). hold(key) is a key on a lease,
// kept alive likewise (a second hold of the key waits within the timeout, then TryAgainLater);
// held(key) reads whether it exists.
//
// Capabilities beyond FileStore: txn() over any keys (one etcd txn) and watch() of a subtree
// (etcd's prefix watch from a revision; a compacted start ends with Watched::End::Compacted).
// Thread-safety: as the client; one EtcdStore may be shared by threads.

#include "etcd/client.hpp"
#include "store/store.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace cnm {

struct EtcdLeaseTable;

class EtcdStore final : public Store {
public:
    /// Checks the options; makes no connection. `prefix` starts with '/' ("/cnm"). Without a
    /// transport, the client's HTTP one. `lease_ttl` (seconds) is the lifetime of a lock or hold
    /// whose holder stopped renewing it.
    static Result<std::unique_ptr<EtcdStore>> open(etcd::Options options, std::string prefix,
        std::unique_ptr<etcd::Transport> transport = nullptr, int64_t lease_ttl = 10);
    ~EtcdStore() override;

    Result<Loaded> get(const Key& key) override;
    Result<void> put(const Key& key, const Json& doc, Durability durability = Durability::Sync) override;
    Result<bool> create(const Key& key, const Json& doc, Durability durability = Durability::Sync) override;
    Result<Cas> put_if(const Key& key, const Json& doc, Version expected, Durability durability = Durability::Sync) override;
    Result<Cas> remove_if(const Key& key, Version expected, Durability durability = Durability::Sync) override;
    Result<void> remove(const Key& key, Durability durability = Durability::Sync) override;
    Result<void> remove_dir(const Key& key) override;
    Result<std::vector<std::string>> list(const Key& dir) override;
    Result<bool> empty_dir(const Key& dir) override;
    Result<bool> exists(const Key& key) override;
    Result<std::unique_ptr<Lock>> lock(const Key& dir) override;
    Result<std::unique_ptr<Lock>> hold(const Key& key) override;
    Result<bool> held(const Key& key) override;
    Result<void> sync() override;
    Result<Scan> scan(const Key& dir) override;
    Result<TxnOutcome> txn(const std::vector<TxnCheck>& checks, const std::vector<TxnWrite>& writes) override;
    Result<Watched> watch(const Key& dir, Version from, const WatchCallback& callback, std::stop_token stop) override;

    /// The etcd key of `key` ("<prefix>/a/b"), for messages and for callers that speak etcd.
    std::string path(const Key& key) const;
    const std::string& prefix() const { return m_prefix; }

private:
    EtcdStore(std::shared_ptr<etcd::Client> client, std::string prefix, std::chrono::milliseconds timeout, int64_t lease_ttl);
    /// The etcd key of a document key, after checking every segment; `what` names the call.
    Result<std::string> doc_path(const Key& key) const;
    /// "<prefix>/a/b/" for the directory [a, b] ("<prefix>/" for the root), segments checked.
    Result<std::string> dir_path(const Key& dir) const;
    /// The compares that fence a write to `keys` with the locks this store holds above them.
    std::vector<etcd::Compare> fences(const std::vector<std::string>& keys);
    /// One txn of the caller's compares and branches, fenced: a fence that fails is an error
    /// (TryAgainLater, nothing written); otherwise the answer is as if unfenced.
    Result<etcd::TxnResult> run(const std::vector<std::string>& keys, std::vector<etcd::Compare> compares, std::vector<etcd::Op> success,
        std::vector<etcd::Op> failure);
    /// Creates `key` on a new lease (waiting for it to be absent within the timeout), renewed
    /// until the Lock goes. With `fence_dir`, a lock on that directory (re-entrant in-process).
    Result<std::unique_ptr<Lock>> leased_key(const std::string& key, const std::string& fence_dir);
    Loaded loaded(const etcd::KeyValue& kv) const;

    std::shared_ptr<etcd::Client> m_client;
    std::string m_prefix;
    std::chrono::milliseconds m_timeout;
    int64_t m_lease_ttl;
    std::shared_ptr<EtcdLeaseTable> m_table; // the locks this store holds, for the fences
};

} // namespace cnm
