#include "cnm/model.hpp"
#include "store/file_store.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <ctime>
#include <fstream>
#include <sys/file.h>
#include <sys/stat.h>
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
