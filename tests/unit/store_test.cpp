#include "cnm/model.hpp"
#include "store/file_store.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <fcntl.h>
#include <ctime>
#include <fstream>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace cnm;
namespace fs = std::filesystem;

namespace {

mode_t mode_of(const std::string& path)
{
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return st.st_mode & 07777;
}

size_t entries(const std::string& dir)
{
    size_t n = 0;
    for (auto& e : fs::directory_iterator(dir)) {
        (void)e;
        ++n;
    }
    return n;
}

} // namespace

TEST_CASE("put replaces atomically and leaves no temp files; modes are 0600/0700")
{
    test::TempDir tmp;
    std::string root = tmp.path() + "/state/root";
    auto store = FileStore::open(root);
    REQUIRE(store.ok());
    Key key { "networks", "n1", "network.json" };
    REQUIRE((*store)->put(key, Json { { "v", 1 } }).ok());
    REQUIRE((*store)->put(key, Json { { "v", 2 } }).ok());
    auto loaded = (*store)->get(key);
    REQUIRE(loaded.ok());
    CHECK(loaded->ok());
    CHECK(loaded->doc["v"] == 2);
    CHECK(entries(root + "/networks/n1") == 1);
    CHECK(mode_of(root + "/networks/n1/network.json") == 0600);
    CHECK(mode_of(root + "/networks/n1") == 0700);
    CHECK(mode_of(root) == 0700);
    CHECK(std::ifstream(root + "/networks/n1/network.json").peek() == '{'); // human-readable JSON
}

TEST_CASE("create is exclusive")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    Key key { "ipam", "local", "p", "leases", "10.0.0.2" };
    CHECK((*store)->create(key, Json { { "owner", "a" } }).value() == true);
    CHECK((*store)->create(key, Json { { "owner", "b" } }).value() == false);
    CHECK((*store)->get(key)->doc["owner"] == "a");
    CHECK(entries(tmp.path() + "/ipam/local/p/leases") == 1);
}

TEST_CASE("empty, truncated and non-JSON documents are reported corrupt, never thrown")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    REQUIRE((*store)->put({ "d", "x.json" }, Json { { "a", 1 } }).ok());
    for (std::string body : { std::string(), std::string("{\"a\": 1"), std::string("\x00\x01\x02", 3), std::string("[1,2]"), std::string("null") }) {
        std::ofstream(tmp.path() + "/d/x.json", std::ios::trunc) << body;
        auto loaded = (*store)->get({ "d", "x.json" });
        REQUIRE(loaded.ok());
        CHECK(loaded->status == Loaded::Status::Corrupt);
        CHECK_FALSE(loaded->reason.empty());
    }
    auto absent = (*store)->get({ "d", "missing.json" });
    REQUIRE(absent.ok());
    CHECK(absent->status == Loaded::Status::Absent);
    auto absent_dir = (*store)->get({ "nodir", "missing.json" });
    REQUIRE(absent_dir.ok());
    CHECK(absent_dir->status == Loaded::Status::Absent);
}

TEST_CASE("symlinks inside the state tree are refused, not followed")
{
    test::TempDir tmp;
    std::string outside = tmp.path() + "/outside";
    fs::create_directories(outside);
    std::ofstream(outside + "/secret.json") << "{\"x\":1}";
    std::string root = tmp.path() + "/root";
    auto store = FileStore::open(root);
    REQUIRE(store.ok());
    fs::create_directory_symlink(outside, root + "/networks");
    auto put = (*store)->put({ "networks", "n", "network.json" }, Json::object());
    CHECK_FALSE(put.ok());
    CHECK_FALSE(fs::exists(outside + "/n"));
    fs::remove(root + "/networks");
    fs::create_directories(root + "/d");
    fs::create_symlink(outside + "/secret.json", root + "/d/link.json");
    auto got = (*store)->get({ "d", "link.json" });
    REQUIRE(got.ok());
    CHECK(got->status == Loaded::Status::Corrupt);
    REQUIRE((*store)->put({ "d", "link.json" }, Json { { "y", 2 } }).ok()); // replaces the link itself
    CHECK(fs::is_regular_file(fs::symlink_status(root + "/d/link.json")));
    CHECK(std::ifstream(outside + "/secret.json").get() == '{');
}

TEST_CASE("a Hint document is rewritten in place (no new inode), padded so no truncate is needed; links are replaced, never written through")
{
    test::TempDir tmp;
    std::string root = tmp.path() + "/root";
    auto store = FileStore::open(root);
    REQUIRE(store.ok());
    Key key { "p", "cursor" };
    std::string path = root + "/p/cursor";
    REQUIRE((*store)->put(key, Json { { "last", "10.213.0.100" } }, Durability::Hint).ok());
    struct stat first {};
    REQUIRE(::stat(path.c_str(), &first) == 0);
    CHECK(mode_of(path) == 0600);
    REQUIRE((*store)->put(key, Json { { "last", "10.213.0.9" } }, Durability::Hint).ok()); // shorter
    struct stat second {};
    REQUIRE(::stat(path.c_str(), &second) == 0);
    CHECK(second.st_ino == first.st_ino); // the atomic path would have renamed a new inode over it
    CHECK(second.st_size == first.st_size);
    auto loaded = (*store)->get(key);
    REQUIRE(loaded.ok());
    REQUIRE(loaded->ok());
    CHECK(loaded->doc == Json { { "last", "10.213.0.9" } });
    CHECK(entries(root + "/p") == 1);

    // A symlink or a second hard link at the name: replaced by the atomic path, the target untouched.
    std::string outside = tmp.path() + "/outside.json";
    std::ofstream(outside) << "{\"keep\":1}";
    fs::remove(path);
    fs::create_symlink(outside, path);
    REQUIRE((*store)->put(key, Json { { "last", "a" } }, Durability::Hint).ok());
    CHECK(fs::is_regular_file(fs::symlink_status(path)));
    fs::remove(path);
    fs::create_hard_link(outside, path);
    REQUIRE((*store)->put(key, Json { { "last", "b" } }, Durability::Hint).ok());
    CHECK(fs::hard_link_count(outside) == 1);
    std::string kept;
    std::getline(std::ifstream(outside), kept);
    CHECK(kept == "{\"keep\":1}");
    CHECK((*store)->get(key)->doc == Json { { "last", "b" } });
}

TEST_CASE("path components from input are validated")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    for (const char* bad : { "..", ".", "", "a/b", ".hidden" }) {
        CHECK_FALSE((*store)->put({ "networks", bad, "x.json" }, Json::object()).ok());
        CHECK_FALSE((*store)->put({ "networks", bad }, Json::object()).ok());
    }
    CHECK_FALSE((*store)->put({ "n", std::string(256, 'a') }, Json::object()).ok());
    CHECK(entries(tmp.path()) == 0);
    CHECK_FALSE(FileStore::open("relative/dir").ok());
}

TEST_CASE("list skips lock and temp files; remove tolerates absence; locks exclude")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    {
        auto lock = (*store)->lock({ "n" });
        REQUIRE(lock.ok());
        REQUIRE((*store)->put({ "n", "a.json" }, Json::object()).ok());
        std::ofstream(tmp.path() + "/n/.tmp-1-1") << "x";
        auto names = (*store)->list({ "n" });
        REQUIRE(names.ok());
        CHECK(*names == std::vector<std::string> { "a.json" });
        // A second, independent lock on the same prefix must not be granted while held.
        int fd = ::open((tmp.path() + "/n/.lock").c_str(), O_RDWR);
        CHECK(::flock(fd, LOCK_EX | LOCK_NB) == -1);
        ::close(fd);
    }
    int fd = ::open((tmp.path() + "/n/.lock").c_str(), O_RDWR);
    CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    ::close(fd);
    CHECK((*store)->remove({ "n", "a.json" }).ok());
    CHECK((*store)->remove({ "n", "a.json" }).ok());
    CHECK((*store)->list({ "absent" })->empty());
}

TEST_CASE("a lock this process already holds is granted again (no self-deadlock), and released with the last holder")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    {
        auto outer = (*store)->lock({ "n" });
        REQUIRE(outer.ok());
        {
            auto inner = (*store)->lock({ "n" }); // would block forever with a second flock
            REQUIRE(inner.ok());
        }
        int fd = ::open((tmp.path() + "/n/.lock").c_str(), O_RDWR);
        CHECK(::flock(fd, LOCK_EX | LOCK_NB) == -1); // still held by `outer`
        ::close(fd);
    }
    int fd = ::open((tmp.path() + "/n/.lock").c_str(), O_RDWR);
    CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
    ::close(fd);
}

TEST_CASE("store: a lock timeout bounds the wait (cnm-shim's handlers)")
{
    test::TempDir tmp;
    auto a = FileStore::open(tmp.path());
    auto b = FileStore::open(tmp.path());
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    (*b)->set_lock_timeout(std::chrono::milliseconds(60));
    auto held = (*a)->lock({ "networks", "n1" });
    REQUIRE(held.ok());
    auto start = std::chrono::steady_clock::now();
    auto blocked = (*b)->lock({ "networks", "n1" });
    auto waited = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(blocked.ok());
    CHECK(blocked.error().code == Code::TryAgainLater);
    CHECK(waited >= std::chrono::milliseconds(60));
    CHECK(waited < std::chrono::seconds(2));
    held.value().reset();
    CHECK((*b)->lock({ "networks", "n1" }).ok());
}

namespace {

// True once some process waits in flock() for the file with inode `ino` (/proc/locks lists a
// blocked waiter as "N: -> FLOCK ... <dev>:<ino> ...").
bool flock_waited_for(ino_t ino)
{
    std::ifstream locks("/proc/locks");
    std::string line, tail = ":" + std::to_string(ino) + " ";
    while (std::getline(locks, line))
        if (line.find("->") != std::string::npos && line.find(tail) != std::string::npos)
            return true;
    return false;
}

} // namespace

TEST_CASE("store: a lock whose holder removed the directory is taken on the directory made again (a network's last DEL and an ADD)")
{
    test::TempDir tmp;
    auto a = FileStore::open(tmp.path());
    auto b = FileStore::open(tmp.path());
    auto c = FileStore::open(tmp.path());
    REQUIRE((a.ok() && b.ok() && c.ok()));
    (*c)->set_lock_timeout(std::chrono::milliseconds(50));
    const Key dir { "networks", "n" }, doc { "networks", "n", "network.json" };

    SUBCASE("a waiter")
    {
        auto held = (*a)->lock(dir);
        REQUIRE(held.ok());
        REQUIRE((*a)->put(doc, Json { { "v", 1 } }).ok());
        struct stat st {};
        REQUIRE(::stat((tmp.path() + "/networks/n/.lock").c_str(), &st) == 0);
        bool locked = false, wrote = false, excluded = false;
        std::thread waiter([&] {
            auto lock = (*b)->lock(dir); // waits for `held`, whose holder removes the directory
            locked = lock.ok();
            wrote = (*b)->put(doc, Json { { "v", 2 } }).ok();
            auto other = (*c)->lock(dir); // a third process, as the next ADD
            excluded = !other.ok() && other.error().code == Code::TryAgainLater;
        });
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!flock_waited_for(st.st_ino) && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        CHECK(flock_waited_for(st.st_ino));
        // The last DEL: the record and then the directory go under the lock.
        REQUIRE((*a)->remove(doc).ok());
        REQUIRE((*a)->remove_dir(dir).ok());
        REQUIRE_FALSE(fs::exists(tmp.path() + "/networks/n"));
        held.value().reset();
        waiter.join();
        CHECK(locked);
        CHECK(wrote); // not into the removed directory
        CHECK(excluded); // the lock it holds is the one a newcomer takes
        std::ifstream in(tmp.path() + "/networks/n/network.json");
        CHECK(Json::parse(in, nullptr, false) == Json { { "v", 2 } });
    }
    SUBCASE("a directory removed after this process opened it")
    {
        REQUIRE((*b)->put(doc, Json { { "v", 1 } }).ok()); // b now keeps the directory open
        REQUIRE((*a)->remove(doc).ok());
        REQUIRE((*a)->remove_dir(dir).ok());
        auto lock = (*b)->lock(dir);
        REQUIRE(lock.ok());
        CHECK((*b)->put(doc, Json { { "v", 2 } }).ok());
        CHECK(fs::exists(tmp.path() + "/networks/n/network.json"));
        CHECK_FALSE((*c)->lock(dir).ok());
    }
}

TEST_CASE("record timestamps are RFC 3339 in UTC")
{
    std::time_t before = std::time(nullptr);
    std::string stamp = cnm::now_rfc3339();
    std::time_t after = std::time(nullptr);
    REQUIRE(stamp.size() == 20);
    std::tm tm {};
    const char* end = ::strptime(stamp.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    REQUIRE(end != nullptr);
    CHECK(*end == '\0');
    std::time_t parsed = ::timegm(&tm);
    CHECK(parsed >= before);
    CHECK(parsed <= after);
}

// ---- issue 12: state you can trust --------------------------------------------------------------

namespace {

// Runs `body` in a child process and waits at most `limit` for it: the exit status, or -1 when it
// had to be killed (it hung). A store call that waits forever fails the test instead of hanging it.
int in_child(std::chrono::milliseconds limit, const std::function<int()>& body)
{
    pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(body());
    auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return -1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::vector<std::string> dot_entries(const std::string& dir)
{
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(dir))
        if (auto name = e.path().filename().string(); name[0] == '.')
            out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

TEST_CASE("store: temp files of dead writers never block a writer with the same PID, and are swept")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    REQUIRE((*store)->put({ "d", "seed" }, Json::object()).ok());
    std::string d = tmp.path() + "/d/";
    // Watch which temp names writes use, then leave, under the names the next writes of this
    // process would use if names came from the PID and a counter, what a killed writer that had
    // our PID would have left (PIDs wrap; in a PID namespace every plugin is PID 1).
    int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    REQUIRE(watch >= 0);
    REQUIRE(::inotify_add_watch(watch, d.c_str(), IN_CREATE) >= 0);
    REQUIRE((*store)->put({ "d", "doc" }, Json::object()).ok());
    REQUIRE((*store)->put({ "d", "doc" }, Json::object(), Durability::PerBoot).ok());
    std::vector<std::string> temps;
    alignas(struct inotify_event) char events[4096];
    for (ssize_t n = ::read(watch, events, sizeof events), off = 0; n > 0 && off < n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(events + off);
        if (ev->len)
            temps.emplace_back(ev->name);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
    }
    ::close(watch);
    REQUIRE(temps.size() == 2);
    CHECK(temps[0] != temps[1]);
    std::string pid = std::to_string(::getpid());
    for (auto& t : temps)
        CHECK(t.find(pid) == std::string::npos);
    std::vector<std::string> planted;
    for (int n = 0; n < 16; ++n)
        planted.push_back(".tmp-" + pid + "-" + std::to_string(n));
    if (auto prefix = ".tmp-" + pid + "-"; temps[1].rfind(prefix, 0) == 0) { // today's names
        long next = std::stol(temps[1].substr(prefix.size())) + 1;
        for (long n = next; n < next + 64; ++n)
            planted.push_back(prefix + std::to_string(n));
    }
    for (auto& name : planted)
        std::ofstream(d + name) << "{";
    for (int i = 0; i < 8; ++i) {
        CAPTURE(i);
        REQUIRE((*store)->put({ "d", "doc" }, Json { { "i", i } }).ok());
        REQUIRE((*store)->put({ "d", "cursor" }, Json { { "i", i } }, Durability::PerBoot).ok());
        REQUIRE((*store)->create({ "d", "lease" + std::to_string(i) }, Json { { "i", i } }).value());
    }
    CHECK((*store)->get({ "d", "doc" })->doc == Json { { "i", 7 } });

    fs::remove_all(d);
    store = FileStore::open(tmp.path()); // the old one holds the removed directory open
    REQUIRE(store.ok());
    REQUIRE((*store)->put({ "d", "seed" }, Json::object()).ok());
    std::string dead = ".tmp-0123456789abcdef", live = ".tmp-fedcba9876543210";
    std::ofstream(d + dead) << "{\"half\":";
    std::ofstream(d + live) << "{\"half\":";
    std::ofstream(d + ".tmp-7-1") << "{"; // an old binary's, fresh: its writer may be alive (it took no flock)
    std::ofstream(d + ".tmp-8-1") << "{"; // an old binary's, two minutes old
    struct timespec old_times[2] = { { ::time(nullptr) - 120, 0 }, { ::time(nullptr) - 120, 0 } };
    REQUIRE(::utimensat(AT_FDCWD, (d + ".tmp-8-1").c_str(), old_times, 0) == 0);
    std::ofstream(d + ".tmp-x.held") << ""; // not a temp name (another part's marker): never touched
    int live_fd = ::open((d + live).c_str(), O_RDONLY);
    REQUIRE(::flock(live_fd, LOCK_EX | LOCK_NB) == 0); // a writer in the middle of its write
    auto names = (*store)->list({ "d" });
    REQUIRE(names.ok());
    CHECK(*names == std::vector<std::string> { "seed" });
    CHECK(dot_entries(d) == std::vector<std::string> { ".tmp-7-1", ".tmp-fedcba9876543210", ".tmp-x.held" });
    ::close(live_fd); // the writer died
    std::ofstream(d + dead) << "{";
    // lock() sweeps a small directory too (a pool's or a network's, never listed).
    {
        auto fresh = FileStore::open(tmp.path());
        REQUIRE(fresh.ok());
        auto lock = (*fresh)->lock({ "d" });
        REQUIRE(lock.ok());
    }
    CHECK(dot_entries(d) == std::vector<std::string> { ".lock", ".tmp-7-1", ".tmp-x.held" });
}

TEST_CASE("store: lock() sweeps a small tmpfs directory to its end, past what one read returns")
{
    // tmpfs counts 20 bytes per entry in a directory's size, so ~200 entries are "small", but
    // their names can take more than one getdents64 buffer. A dead temp made first and one made
    // last: whichever order tmpfs lists them in (by creation, or newest first), one comes after
    // what the first read returns, and both must be swept.
    struct statfs fs {};
    if (::statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC)
        return; // no tmpfs here: the case does not arise
    test::TempDir tmp("/dev/shm");
    std::string d = tmp.path() + "/d/";
    fs::create_directories(d);
    std::string first = ".tmp-0123456789abcdef", dead = ".tmp-fedcba9876543210";
    std::ofstream(d + first) << "{\"half\":";
    for (int i = 0; i < 190; ++i)
        std::ofstream(d + std::string(100, 'a') + std::to_string(i)) << "{}";
    std::ofstream(d + dead) << "{\"half\":";
    struct stat st {};
    REQUIRE(::stat(d.c_str(), &st) == 0);
    REQUIRE(st.st_size <= 4096); // small by its size…
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    {
        auto lock = (*store)->lock({ "d" });
        REQUIRE(lock.ok());
    }
    CHECK_FALSE(fs::exists(d + first)); // …and swept to the end
    CHECK_FALSE(fs::exists(d + dead));
    CHECK(fs::exists(d + std::string(100, 'a') + "189"));
}

TEST_CASE("store: a writer racing a sweeper never loses its write")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    REQUIRE((*store)->put({ "d", "doc" }, Json { { "i", 0 } }).ok());
    // A child sweeps the directory as fast as it can while we write; every write must succeed.
    pid_t sweeper = ::fork();
    if (sweeper == 0) {
        auto other = FileStore::open(tmp.path());
        for (;;)
            (void)(*other)->list({ "d" });
    }
    int failures = 0;
    for (int i = 1; i <= 300; ++i) {
        auto put = (*store)->put({ "d", "doc" }, Json { { "i", i } }, Durability::PerBoot);
        if (!put.ok() && failures++ == 0)
            MESSAGE(std::string(put.error().msg + ": " + put.error().details));
    }
    ::kill(sweeper, SIGKILL);
    ::waitpid(sweeper, nullptr, 0);
    CHECK(failures == 0);
    CHECK((*store)->get({ "d", "doc" })->doc == Json { { "i", 300 } });
}

TEST_CASE("store: a FIFO, a directory, a device, a socket or an empty file at a document key is corrupt at once, and removable")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    std::string d = tmp.path() + "/leases/";
    REQUIRE((*store)->put({ "leases", "seed" }, Json::object()).ok());
    REQUIRE(::mkfifo((d + "fifo").c_str(), 0600) == 0);
    fs::create_directories(d + "dir/sub/deeper");
    std::ofstream(d + "dir/sub/file") << "x";
    fs::create_symlink("/etc/passwd", d + "dir/sub/link");
    std::ofstream(d + "empty");
    bool have_device = ::mknod((d + "device").c_str(), S_IFCHR | 0600, ::makedev(1, 3)) == 0; // /dev/null
    std::vector<std::string> keys { "fifo", "dir", "empty" };
    if (have_device)
        keys.push_back("device");
    for (auto& name : keys) {
        CAPTURE(name);
        // In a child, bounded: today's open of the FIFO waits for a writer forever.
        int rc = in_child(std::chrono::seconds(5), [&] {
            auto got = (*store)->get({ "leases", name });
            return got.ok() && got->status == Loaded::Status::Corrupt && !got->reason.empty() && got->version != 0 ? 0 : 1;
        });
        CHECK(rc == 0);
    }
    auto fifo = (*store)->get({ "leases", "fifo" });
    REQUIRE(fifo.ok());
    CHECK(fifo->reason == "it is a FIFO");
    CHECK((*store)->get({ "leases", "dir" })->reason == "it is a directory");
    CHECK((*store)->get({ "leases", "empty" })->reason == "it is empty");
    // Not documents, so not created over; GC removes them like any corrupt document.
    CHECK((*store)->create({ "leases", "fifo" }, Json::object()).value() == false);
    for (auto& name : keys) {
        CAPTURE(name);
        CHECK((*store)->remove({ "leases", name }).ok());
        CHECK_FALSE(fs::exists(fs::symlink_status(d + name)));
    }
    CHECK(fs::exists("/etc/passwd")); // the link inside the directory was removed, not followed
    CHECK(*(*store)->list({ "leases" }) == std::vector<std::string> { "seed" });
    // A FIFO can be replaced by put (rename over it), and remove_if reclaims a corrupt key by version.
    REQUIRE(::mkfifo((d + "fifo").c_str(), 0600) == 0);
    REQUIRE((*store)->put({ "leases", "fifo" }, Json { { "ok", true } }).ok());
    CHECK((*store)->get({ "leases", "fifo" })->ok());
    fs::create_directories(d + "dir2/x");
    auto dir2 = (*store)->get({ "leases", "dir2" });
    REQUIRE(dir2.ok());
    auto removed = (*store)->remove_if({ "leases", "dir2" }, dir2->version);
    REQUIRE(removed.ok());
    CHECK(removed->done);
    CHECK_FALSE(fs::exists(d + "dir2"));
}

TEST_CASE("store: a state tree writable by others or owned by another user is refused, naming the directory")
{
    test::TempDir tmp;
    std::string root = tmp.path() + "/root";
    REQUIRE(FileStore::open(root).ok()); // 0700, ours
    ::chmod(tmp.path().c_str(), 0777);   // the root's ancestors are not checked (a dataDir under /tmp)
    CHECK(FileStore::open(root).ok());

    ::chmod(root.c_str(), 0777);
    auto open = FileStore::open(root);
    REQUIRE_FALSE(open.ok());
    CHECK(open.error().msg.find(root) != std::string::npos);
    CHECK(open.error().msg.find("writable by others (mode 0777)") != std::string::npos);
    ::chmod(root.c_str(), 0770);
    REQUIRE_FALSE(FileStore::open(root).ok());
    CHECK(FileStore::open(root).error().msg.find("writable by its group") != std::string::npos);
    ::chmod(root.c_str(), 0755); // readable by others is fine (ssh's rule too)
    REQUIRE(FileStore::open(root).ok());
    ::chmod(root.c_str(), 0700);

    auto store = FileStore::open(root);
    REQUIRE(store.ok());
    REQUIRE((*store)->put({ "networks", "n1", "network.json" }, Json::object()).ok());
    REQUIRE((*store)->put({ "networks", "n2", "network.json" }, Json::object()).ok());
    std::string n1 = root + "/networks/n1", n2 = root + "/networks/n2";
    REQUIRE(::chown(n1.c_str(), 65534, 65534) == 0); // nobody
    ::chmod(n2.c_str(), 0722);
    auto fresh = FileStore::open(root);
    REQUIRE(fresh.ok());
    auto got = (*fresh)->get({ "networks", "n1", "network.json" });
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().msg.find(n1) != std::string::npos);
    CHECK(got.error().msg.find("owned by uid 65534") != std::string::npos);
    CHECK_FALSE((*fresh)->put({ "networks", "n1", "endpoints", "e" }, Json::object()).ok());
    CHECK_FALSE(fs::exists(n1 + "/endpoints"));
    auto put = (*fresh)->put({ "networks", "n2", "network.json" }, Json { { "x", 1 } });
    REQUIRE_FALSE(put.ok());
    CHECK(put.error().msg.find(n2) != std::string::npos);
    CHECK((*fresh)->get({ "networks", "n2", "network.json" }).ok() == false);
    CHECK((*fresh)->list({ "networks" }).ok()); // the directories above are fine
    REQUIRE(::chown(n1.c_str(), 0, 0) == 0);
    ::chmod(n2.c_str(), 0700);
    auto again = FileStore::open(root);
    CHECK((*again)->get({ "networks", "n1", "network.json" })->ok());
    CHECK((*again)->get({ "networks", "n2", "network.json" })->ok());
}

TEST_CASE("store: versions and compare-and-swap")
{
    test::TempDir tmp;
    auto a = FileStore::open(tmp.path());
    auto b = FileStore::open(tmp.path()); // another writer
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    Key key { "pools", "p1" };
    CHECK((*a)->get(key)->version == 0);

    auto made = (*a)->put_if(key, Json { { "v", 1 } }, 0);
    REQUIRE(made.ok());
    REQUIRE(made->done);
    Version v1 = made->version;
    CHECK(v1 != 0);
    CHECK((*b)->get(key)->version == v1);
    auto again = (*a)->put_if(key, Json { { "v", 9 } }, 0); // create-only: it exists
    REQUIRE(again.ok());
    CHECK_FALSE(again->done);
    CHECK(again->version == v1);

    auto swapped = (*a)->put_if(key, Json { { "v", 2 } }, v1);
    REQUIRE(swapped.ok());
    REQUIRE(swapped->done);
    Version v2 = swapped->version;
    CHECK(v2 > v1);
    auto stale = (*a)->put_if(key, Json { { "v", 3 } }, v1);
    REQUIRE(stale.ok());
    CHECK_FALSE(stale->done);
    CHECK(stale->version == v2);
    CHECK((*a)->get(key)->doc == Json { { "v", 2 } });

    REQUIRE((*b)->put(key, Json { { "v", 4 } }).ok()); // another writer's plain put moves it
    Version v3 = (*a)->get(key)->version;
    CHECK(v3 > v2);
    auto lost = (*a)->put_if(key, Json { { "v", 5 } }, v2);
    REQUIRE(lost.ok());
    CHECK_FALSE(lost->done);
    CHECK(lost->version == v3);
    CHECK((*a)->get(key)->doc == Json { { "v", 4 } });

    REQUIRE((*b)->put(key, Json { { "v", 6 } }, Durability::Hint).ok()); // in place: a new version too
    Version v4 = (*a)->get(key)->version;
    CHECK(v4 > v3);
    std::ofstream(tmp.path() + "/pools/p1", std::ios::trunc) << "{\"v\":7}"; // an edit from outside
    CHECK((*a)->get(key)->version != v4);
    CHECK_FALSE((*a)->put_if(key, Json { { "v", 8 } }, v4)->done);

    // Versions of one key strictly increase, however fast the writes.
    Version last = (*a)->get(key)->version;
    for (int i = 0; i < 100; ++i) {
        auto w = (*a)->put_if(key, Json { { "i", i } }, last, i % 2 ? Durability::PerBoot : Durability::Hint);
        REQUIRE(w.ok());
        REQUIRE(w->done);
        REQUIRE(w->version > last);
        last = w->version;
    }

    auto not_removed = (*a)->remove_if(key, v1);
    REQUIRE(not_removed.ok());
    CHECK_FALSE(not_removed->done);
    CHECK((*a)->exists(key).value());
    auto removed = (*a)->remove_if(key, last);
    REQUIRE(removed.ok());
    CHECK(removed->done);
    CHECK_FALSE((*a)->exists(key).value());
    CHECK_FALSE((*a)->remove_if(key, last)->done);

    // create() is unchanged: exclusive, and it gives a version.
    CHECK((*a)->create(key, Json { { "owner", "a" } }).value());
    CHECK_FALSE((*b)->create(key, Json { { "owner", "b" } }).value());
    CHECK((*a)->get(key)->doc == Json { { "owner", "a" } });
    CHECK((*a)->get(key)->version != 0);
}

TEST_CASE("store: create_versioned gives the version peek_version then sees, until the document changes")
{
    test::TempDir tmp;
    auto a = FileStore::open(tmp.path());
    auto b = FileStore::open(tmp.path());
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    for (Durability d : { Durability::Sync, Durability::PerBoot }) {
        CAPTURE(static_cast<int>(d));
        Key key { "pools", d == Durability::Sync ? "sync" : "perboot", "lease" };
        Version made = 7;
        REQUIRE((*a)->create_versioned(key, Json { { "owner", "a" } }, d, made).value());
        CHECK(made != 0);
        CHECK((*b)->peek_version(key).value() == std::optional<Version>(made));
        CHECK((*b)->get(key)->version == made);
        Version again = 7;
        CHECK_FALSE((*b)->create_versioned(key, Json { { "owner", "b" } }, d, again).value());
        CHECK(again == 0); // nothing made
        // Freed and made again by another writer (a per-boot one may reuse the freed inode as a spare).
        REQUIRE((*b)->remove(key, d).ok());
        CHECK((*a)->peek_version(key).value() == std::optional<Version>(0));
        Version other = 0;
        REQUIRE((*b)->create_versioned(key, Json { { "owner", "b" } }, d, other).value());
        CHECK(other != made);
        CHECK((*a)->peek_version(key).value() == std::optional<Version>(other));
        REQUIRE((*b)->put(key, Json { { "owner", "b" } }, d).ok());
        CHECK((*a)->peek_version(key).value() != std::optional<Version>(other));
    }
}

TEST_CASE("store: compare-and-swap from several processes loses no update")
{
    test::TempDir tmp;
    {
        auto store = FileStore::open(tmp.path());
        REQUIRE((*store)->put({ "c", "counter" }, Json { { "n", 0 } }).ok());
    }
    constexpr int workers = 4, each = 50;
    std::vector<pid_t> pids;
    for (int w = 0; w < workers; ++w) {
        pid_t pid = ::fork();
        if (pid == 0) {
            auto store = FileStore::open(tmp.path());
            for (int i = 0; i < each;) {
                auto got = (*store)->get({ "c", "counter" });
                if (!got.ok() || !got->ok()) {
                    std::fprintf(stderr, "get: %s\n", got.ok() ? got->reason.c_str() : got.error().msg.c_str());
                    ::_exit(2);
                }
                auto cas = (*store)->put_if({ "c", "counter" }, Json { { "n", got->doc["n"].get<int>() + 1 } }, got->version,
                    Durability::PerBoot);
                if (!cas.ok()) {
                    std::fprintf(stderr, "put_if: %s: %s\n", cas.error().msg.c_str(), cas.error().details.c_str());
                    ::_exit(3);
                }
                i += cas->done;
            }
            ::_exit(0);
        }
        pids.push_back(pid);
    }
    for (pid_t pid : pids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
        CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    auto store = FileStore::open(tmp.path());
    CHECK((*store)->get({ "c", "counter" })->doc["n"] == workers * each);
}

TEST_CASE("store: a PerBoot write is atomic (kill -9 mid-loop leaves the old or the new document) and is not flushed")
{
    test::TempDir tmp;
    Key key { "sandboxes", "s1" };
    auto doc_for = [](int i) { // large enough that a torn write would show
        return Json { { "i", i }, { "pad", std::string(48 << 10, static_cast<char>('a' + i % 26)) } };
    };
    {
        auto store = FileStore::open(tmp.path());
        REQUIRE((*store)->put(key, doc_for(0), Durability::PerBoot).ok());
    }
    for (int round = 0; round < 12; ++round) {
        pid_t child = ::fork();
        if (child == 0) {
            auto store = FileStore::open(tmp.path());
            for (int i = 1;; ++i)
                (void)(*store)->put(key, doc_for(i), Durability::PerBoot);
        }
        auto reader = FileStore::open(tmp.path());
        for (int i = 0; i < 30; ++i) { // read while it writes: never torn
            auto got = (*reader)->get(key);
            REQUIRE(got.ok());
            REQUIRE(got->ok());
            REQUIRE(got->doc == doc_for(got->doc["i"].get<int>()));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(3 + round));
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        auto got = (*reader)->get(key);
        REQUIRE(got.ok());
        REQUIRE(got->ok());
        CHECK(got->doc == doc_for(got->doc["i"].get<int>()));
    }
    // A new inode each time (atomic rename, not Hint's rewrite in place), and no temp left once swept.
    auto store = FileStore::open(tmp.path());
    struct stat before {}, after {};
    ::stat((tmp.path() + "/sandboxes/s1").c_str(), &before);
    REQUIRE((*store)->put(key, doc_for(1), Durability::PerBoot).ok());
    ::stat((tmp.path() + "/sandboxes/s1").c_str(), &after);
    CHECK(before.st_ino != after.st_ino);
    // Nothing queued for sync(): a Sync write keeps its file open until sync() flushes it, a PerBoot one does not.
    auto open_fds = [] { return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator {}); };
    auto fds = open_fds();
    REQUIRE((*store)->put(key, doc_for(2), Durability::PerBoot).ok());
    REQUIRE((*store)->put({ "sandboxes", "s2" }, doc_for(2), Durability::PerBoot).ok());
    CHECK(open_fds() == fds);
    REQUIRE((*store)->put({ "sandboxes", "s3" }, doc_for(3)).ok());
    CHECK(open_fds() == fds + 1);
    REQUIRE((*store)->sync().ok());
    CHECK(open_fds() == fds);
    (void)(*store)->list({ "sandboxes" });
    CHECK(dot_entries(tmp.path() + "/sandboxes").empty());
}

namespace {

ino_t inode_of(const std::string& path)
{
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

} // namespace

TEST_CASE("store: a per-boot document removed or replaced leaves its inode as a spare for the next per-boot write; Sync ones never")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path()).release_value();
    std::string d = tmp.path() + "/eps";
    Json long_doc = { { "id", "a" }, { "pad", std::string(300, 'x') } };
    REQUIRE(store->put({ "eps", "a" }, long_doc, Durability::PerBoot).ok());
    ino_t a = inode_of(d + "/a");
    REQUIRE(store->remove({ "eps", "a" }, Durability::PerBoot).ok());
    CHECK_FALSE(fs::exists(d + "/a"));
    CHECK(dot_entries(d) == std::vector<std::string> { ".spare-0" });
    CHECK(inode_of(d + "/.spare-0") == a);

    // The next per-boot write takes it: same inode, exactly the new (shorter) document, padded.
    Json short_doc = { { "id", "b" } };
    REQUIRE(store->put({ "eps", "b" }, short_doc, Durability::PerBoot).ok());
    CHECK(inode_of(d + "/b") == a);
    CHECK_FALSE(fs::exists(d + "/.spare-0"));
    CHECK(fs::file_size(d + "/b") >= long_doc.dump(2).size());
    auto got = store->get({ "eps", "b" });
    REQUIRE(got.ok());
    REQUIRE(got->ok());
    CHECK(got->doc == short_doc);

    // Replacing it swaps the old inode out into a spare (RENAME_EXCHANGE), and versions still grow.
    Version v1 = got->version;
    REQUIRE(store->put({ "eps", "b" }, Json { { "id", "b" }, { "n", 2 } }, Durability::PerBoot).ok());
    CHECK(inode_of(d + "/.spare-0") == a);
    CHECK(inode_of(d + "/b") != a);
    CHECK(store->get({ "eps", "b" })->version > v1);
    CHECK(store->get({ "eps", "b" })->doc["n"] == 2);

    // A Sync document gets a new inode and, removed, is unlinked: no spare holds a durable one.
    REQUIRE(store->put({ "eps", "c" }, Json { { "id", "c" } }).ok());
    CHECK(inode_of(d + "/c") != a);
    CHECK(inode_of(d + "/.spare-0") == a);
    REQUIRE(store->sync().ok());
    REQUIRE(store->remove({ "eps", "c" }).ok());
    CHECK_FALSE(fs::exists(d + "/.spare-1"));

    // At most four spares; the rest are unlinked.
    for (int i = 0; i < 6; ++i)
        REQUIRE(store->put({ "eps", "m" + std::to_string(i) }, Json { { "i", i } }, Durability::PerBoot).ok());
    for (int i = 0; i < 6; ++i)
        REQUIRE(store->remove({ "eps", "m" + std::to_string(i) }, Durability::PerBoot).ok());
    std::vector<std::string> spares;
    for (auto& name : dot_entries(d))
        if (name.starts_with(".spare-"))
            spares.push_back(name);
    CHECK(spares == std::vector<std::string> { ".spare-0", ".spare-1", ".spare-2", ".spare-3" });
    CHECK(store->list({ "eps" })->size() == 1); // b: spares are never listed
    CHECK_FALSE(store->empty_dir({ "eps" }).value());

    // A document too large to be a spare (over one block) is unlinked.
    REQUIRE(store->remove({ "eps", "b" }, Durability::PerBoot).ok()); // slots full: unlinked
    REQUIRE(store->put({ "eps", "big" }, Json { { "pad", std::string(8000, 'y') } }, Durability::PerBoot).ok());
    ino_t big = inode_of(d + "/big");
    REQUIRE(store->remove({ "eps", "big" }, Durability::PerBoot).ok());
    for (int slot = 0; slot < 4; ++slot)
        CHECK(inode_of(d + "/.spare-" + std::to_string(slot)) != big);

    // A directory whose documents are gone is removed with its spares.
    CHECK(store->empty_dir({ "eps" }).value());
    REQUIRE(store->remove_dir({ "eps" }).ok());
    CHECK_FALSE(fs::exists(d));
}

TEST_CASE("store: a spare slot holding something no writer of ours put there is removed, never written through")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path()).release_value();
    std::string d = tmp.path() + "/eps";
    REQUIRE(store->put({ "eps", "x" }, Json { { "id", "x" } }, Durability::PerBoot).ok());
    std::string outside = tmp.path() + "/outside.json";
    std::ofstream(outside) << "{\"keep\":1}";
    fs::create_directory(d + "/.spare-0");
    std::ofstream(d + "/.spare-0/inner") << "x";
    fs::create_symlink(outside, d + "/.spare-1");
    fs::create_hard_link(outside, d + "/.spare-2");
    REQUIRE(::mkfifo((d + "/.spare-3").c_str(), 0600) == 0);
    store = FileStore::open(tmp.path()).release_value(); // a new process: this one found no spares here
    for (int i = 0; i < 3; ++i) {
        REQUIRE(store->put({ "eps", "n" + std::to_string(i) }, Json { { "i", i } }, Durability::PerBoot).ok());
        auto got = store->get({ "eps", "n" + std::to_string(i) });
        REQUIRE(got.ok());
        REQUIRE(got->ok());
        CHECK(got->doc == Json { { "i", i } });
    }
    std::string kept;
    std::getline(std::ifstream(outside), kept);
    CHECK(kept == "{\"keep\":1}");
    CHECK(fs::hard_link_count(outside) == 1);
    for (auto& name : dot_entries(d))
        CHECK_MESSAGE((name == ".lock" || name == ".holds"), name << " is left");
}

TEST_CASE("store: per-boot writes through spares are atomic too (kill -9 mid-loop leaves the old or the new document)")
{
    // Documents under one block, of changing lengths, so every write takes a spare of another length.
    test::TempDir tmp;
    auto doc_for = [](int i) {
        return Json { { "i", i }, { "pad", std::string(static_cast<size_t>(200 + (i * 977) % 3000), static_cast<char>('a' + i % 26)) } };
    };
    {
        auto store = FileStore::open(tmp.path());
        for (int k = 0; k < 4; ++k)
            REQUIRE((*store)->put({ "eps", "k" + std::to_string(k) }, doc_for(k), Durability::PerBoot).ok());
    }
    for (int round = 0; round < 12; ++round) {
        pid_t child = ::fork();
        if (child == 0) {
            auto store = FileStore::open(tmp.path());
            for (int i = 1;; ++i) { // replace, remove and re-create: spares go round
                Key key { "eps", "k" + std::to_string(i % 4) };
                (void)(*store)->put(key, doc_for(i), Durability::PerBoot);
                if (i % 3 == 0) {
                    (void)(*store)->remove({ "eps", "k" + std::to_string((i + 1) % 4) }, Durability::PerBoot);
                    (void)(*store)->put({ "eps", "k" + std::to_string((i + 1) % 4) }, doc_for(i + 1), Durability::Hint);
                }
            }
        }
        auto reader = FileStore::open(tmp.path());
        for (int i = 0; i < 60; ++i) {
            auto got = (*reader)->get({ "eps", "k" + std::to_string(i % 4) });
            REQUIRE(got.ok());
            if ((got->status == Loaded::Status::Absent))
                continue; // between its remove and its re-create
            REQUIRE_MESSAGE(got->ok(), got->reason);
            REQUIRE(got->doc == doc_for(got->doc["i"].get<int>()));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(3 + round));
        ::kill(child, SIGKILL);
        ::waitpid(child, nullptr, 0);
        for (int k = 0; k < 4; ++k) {
            auto got = (*reader)->get({ "eps", "k" + std::to_string(k) });
            REQUIRE(got.ok());
            if (got->ok())
                CHECK(got->doc == doc_for(got->doc["i"].get<int>()));
            else
                CHECK((got->status == Loaded::Status::Absent));
        }
    }
    auto store = FileStore::open(tmp.path());
    (void)(*store)->list({ "eps" }); // sweeps the dead writer's temp
    for (auto& name : dot_entries(tmp.path() + "/eps"))
        CHECK_MESSAGE((name == ".lock" || name == ".holds" || name.starts_with(".spare-")), name << " is left");
}

TEST_CASE("store: writers racing for the same spares never get each other's document")
{
    // Four processes replace, remove and re-create their own keys in one directory: every write
    // claims one of the four spares the others keep filling. A spare claimed twice would put one
    // writer's bytes under another's key, or fail its rename.
    test::TempDir tmp;
    std::vector<pid_t> children;
    for (int w = 0; w < 4; ++w) {
        pid_t child = ::fork();
        if (child == 0) {
            auto store = FileStore::open(tmp.path()).release_value();
            for (int n = 0; n < 300; ++n) {
                Key key { "eps", "w" + std::to_string(w) + "-" + std::to_string(n % 3) };
                Json doc = { { "w", w }, { "n", n }, { "pad", std::string(static_cast<size_t>((n * 37 + w * 101) % 700), 'p') } };
                if (!store->put(key, doc, n % 2 ? Durability::PerBoot : Durability::Hint))
                    ::_exit(2);
                auto got = store->get(key);
                if (!got || !got->ok() || got->doc != doc)
                    ::_exit(3);
                if (n % 4 == 3 && !store->remove(key, Durability::PerBoot))
                    ::_exit(4);
            }
            ::_exit(0);
        }
        children.push_back(child);
    }
    for (pid_t child : children) {
        int status = -1;
        ::waitpid(child, &status, 0);
        CHECK_MESSAGE(WIFEXITED(status), "writer killed");
        CHECK_MESSAGE(WEXITSTATUS(status) == 0, "writer failed at step " << WEXITSTATUS(status));
    }
    auto store = FileStore::open(tmp.path()).release_value();
    auto names = store->list({ "eps" }).value();
    CHECK_FALSE(names.empty());
    for (auto& name : names) {
        auto got = store->get({ "eps", name });
        REQUIRE(got.ok());
        REQUIRE(got->ok());
        CHECK(name.starts_with("w" + std::to_string(got->doc["w"].get<int>()) + "-"));
    }
    for (auto& name : dot_entries(tmp.path() + "/eps"))
        CHECK_MESSAGE((name.starts_with(".spare-") || name == ".lock" || name == ".holds"), name << " is left");
}

TEST_CASE("store: a hold is seen by held() while it lives (also in a child), per key, from no file of its own; a dead holder's is not")
{
    test::TempDir tmp;
    auto store = FileStore::open(tmp.path());
    REQUIRE(store.ok());
    Key a { "networks", "n1", "endpoints", "a@eth0" }, b { "networks", "n1", "endpoints", "b@eth0" };
    std::string dir = tmp.path() + "/networks/n1/endpoints";
    CHECK(!(*store)->held(a).value());
    {
        auto hold = (*store)->hold(a);
        REQUIRE(hold.ok());
        CHECK((*store)->held(a).value());
        CHECK(!(*store)->held(b).value()); // another attachment of the same directory
        CHECK(dot_entries(dir) == std::vector<std::string> { ".holds" });
        pid_t child = ::fork(); // another process probes it too
        if (child == 0) {
            auto other = FileStore::open(tmp.path());
            auto ha = other.ok() ? (*other)->held(a) : Result<bool>(false);
            auto hb = other.ok() ? (*other)->held(b) : Result<bool>(true);
            ::_exit(ha.ok() && *ha && hb.ok() && !*hb ? 0 : 1);
        }
        int status = 0;
        ::waitpid(child, &status, 0);
        CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
    }
    CHECK(!(*store)->held(a).value()); // released with the Lock, and no file per hold left behind
    CHECK(dot_entries(dir) == std::vector<std::string> { ".holds" });
    // A holder killed mid-ADD: the kernel drops its lock.
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    pid_t holder = ::fork();
    if (holder == 0) {
        auto other = FileStore::open(tmp.path());
        auto hold = (*other)->hold(b);
        char c = hold.ok() ? 'y' : 'n';
        (void)!::write(ready[1], &c, 1);
        ::pause();
        ::_exit(0);
    }
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    CHECK(c == 'y');
    CHECK((*store)->held(b).value());
    ::kill(holder, SIGKILL);
    ::waitpid(holder, nullptr, 0);
    CHECK(!(*store)->held(b).value());
    ::close(ready[0]);
    ::close(ready[1]);
    // An earlier binary's hold file: flocked is held; unlocked (its holder died) is not, and goes.
    std::string legacy = dir + "/.c@eth0.held";
    int fd = ::open(legacy.c_str(), O_RDWR | O_CREAT, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    CHECK((*store)->held({ "networks", "n1", "endpoints", "c@eth0" }).value());
    ::close(fd);
    CHECK(!(*store)->held({ "networks", "n1", "endpoints", "c@eth0" }).value());
    CHECK(!fs::exists(legacy));
    // The holds file does not keep an otherwise empty directory alive.
    REQUIRE((*store)->remove_dir({ "networks", "n1", "endpoints" }).ok());
    CHECK(!fs::exists(dir));
}
