// The vxlan plugin's loader of cnm-etcd-http.so (etcd/http_module.cpp): a module it cannot trust
// as much as the plugin itself is refused before dlopen — a symlink, a FIFO, a directory, a file
// others or its group may write, a file or directory of another owner — and a trusted file that
// is not our module (not ELF, another interface version) is refused after. The real module,
// built beside the vxlan plugin, loads and its transport answers; the stand-in of
// make_http_transport() in a binary with no module beside it says so in a NotSent reply.

#include "etcd/http_module.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace cnm;
using namespace cnm::etcd;

namespace {

constexpr const char* name = "cnm-etcd-http.so";

void write_file(const std::string& path, mode_t mode, const std::string& text = "not ELF\n")
{
    std::ofstream(path) << text;
    REQUIRE(::chmod(path.c_str(), mode) == 0);
}

std::string refusal(const std::string& dir, uid_t owner = ::geteuid())
{
    auto fd = open_trusted_module(dir, name, owner);
    if (fd) {
        ::close(*fd);
        return "accepted";
    }
    return fd.error().msg;
}

bool contains(const std::string& text, const std::string& part)
{
    return text.find(part) != std::string::npos;
}

HttpRequest to_closed_port()
{
    // Loopback, a port of this test's range with nothing listening: refused at once.
    return { "http://127.0.0.1:23891", "/v3/kv/range", "{}", Clock::now() + std::chrono::seconds(2), std::chrono::milliseconds(500) };
}

} // namespace

TEST_CASE("http module: a regular file of the program's owner, written by no one else, is accepted")
{
    test::TempDir tmp;
    write_file(tmp.path() + "/" + name, 0755);
    CHECK(refusal(tmp.path()) == "accepted");
    write_file(tmp.path() + "/" + name, 0600);
    CHECK(refusal(tmp.path()) == "accepted");
}

TEST_CASE("http module: missing, symlink, FIFO, directory are refused with the reason")
{
    test::TempDir tmp;
    const std::string path = tmp.path() + "/" + name;
    CHECK(contains(refusal(tmp.path()), "not installed"));
    CHECK(contains(refusal(tmp.path()), path));

    write_file(tmp.path() + "/real.so", 0755);
    REQUIRE(::symlink("real.so", path.c_str()) == 0);
    CHECK(contains(refusal(tmp.path()), "symbolic link"));
    REQUIRE(::unlink(path.c_str()) == 0);
    // A symlink to a trusted file is refused all the same, and so is an absolute one.
    REQUIRE(::symlink((tmp.path() + "/real.so").c_str(), path.c_str()) == 0);
    CHECK(contains(refusal(tmp.path()), "symbolic link"));
    REQUIRE(::unlink(path.c_str()) == 0);

    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    CHECK(contains(refusal(tmp.path()), "a FIFO")); // and returns: O_NONBLOCK
    REQUIRE(::unlink(path.c_str()) == 0);

    REQUIRE(::mkdir(path.c_str(), 0755) == 0);
    CHECK(contains(refusal(tmp.path()), "not a regular file"));
    REQUIRE(::rmdir(path.c_str()) == 0);

    CHECK(contains(open_trusted_module(tmp.path(), "../x.so", ::geteuid()).error().msg, "not a file name"));
}

TEST_CASE("http module: writable by others or the group, in a directory so writable: refused")
{
    test::TempDir tmp;
    const std::string path = tmp.path() + "/" + name;
    write_file(path, 0757);
    CHECK(contains(refusal(tmp.path()), "writable by others"));
    write_file(path, 0775);
    CHECK(contains(refusal(tmp.path()), "writable by its group"));
    write_file(path, 0755);
    REQUIRE(::chmod(tmp.path().c_str(), 0777) == 0);
    CHECK(contains(refusal(tmp.path()), "its directory is writable by others"));
    REQUIRE(::chmod(tmp.path().c_str(), 01777) == 0); // sticky does not make it trusted
    CHECK(contains(refusal(tmp.path()), "its directory is writable by others"));
    REQUIRE(::chmod(tmp.path().c_str(), 0770) == 0);
    CHECK(contains(refusal(tmp.path()), "its directory is writable by its group"));
    REQUIRE(::chmod(tmp.path().c_str(), 0700) == 0);
    CHECK(refusal(tmp.path()) == "accepted");
}

TEST_CASE("http module: a file or directory of another owner is refused; root's and the program owner's are not")
{
    if (::geteuid() != 0) {
        MESSAGE("skipped: needs root to chown");
        return;
    }
    test::TempDir tmp;
    const std::string path = tmp.path() + "/" + name;
    write_file(path, 0755);
    const uid_t nobody = 65534, owner = 1234;
    REQUIRE(::chown(path.c_str(), nobody, 0) == 0);
    CHECK(contains(refusal(tmp.path(), owner), "owned by uid 65534"));
    // The program's owner (here: nobody) may own it; the directory is root's, which is always fine.
    CHECK(refusal(tmp.path(), nobody) == "accepted");
    REQUIRE(::chown(path.c_str(), 0, 0) == 0);
    CHECK(refusal(tmp.path(), owner) == "accepted");
    REQUIRE(::chown(tmp.path().c_str(), nobody, 0) == 0);
    CHECK(contains(refusal(tmp.path(), owner), "its directory is owned by uid 65534"));
    CHECK(refusal(tmp.path(), nobody) == "accepted");
}

TEST_CASE("http module: a trusted file that is not our module is refused after dlopen, without a crash")
{
    test::TempDir tmp;
    write_file(tmp.path() + "/" + name, 0755);
    auto loaded = load_http_module(tmp.path(), name, ::geteuid());
    REQUIRE(!loaded);
    CHECK(contains(loaded.error().msg, "not loadable"));
    CHECK(!loaded.error().details.empty()); // dlerror's words

    // Our entry point, another interface version: refused before create() (which traps).
    auto bad = load_http_module(CNM_TEST_MODULE_DIR, "cnm-etcd-http-bad.so", ::geteuid());
    REQUIRE(!bad);
    CHECK(contains(bad.error().msg, "another version of cnm"));
}

TEST_CASE("http module: the real one, beside the vxlan plugin, loads and its transport works")
{
    struct stat st {};
    REQUIRE(::stat(CNM_PLUGIN_DIR "/cnm-etcd-http.so", &st) == 0);
    auto loaded = load_http_module(CNM_PLUGIN_DIR, name, st.st_uid);
    REQUIRE_MESSAGE(loaded, (loaded ? "" : loaded.error().msg + ": " + loaded.error().details));
    HttpReply reply = (*loaded)->post(to_closed_port());
    CHECK(reply.outcome == HttpReply::Outcome::NotSent);
    CHECK(contains(reply.detail, "cannot connect")); // httplib's failure, as http_transport.cpp words it
}

TEST_CASE("http module: make_http_transport() here (no module beside this binary) fails each call as not sent")
{
    auto t = make_http_transport();
    for (int i = 0; i < 2; ++i) {
        HttpReply reply = t->post(to_closed_port());
        CHECK(reply.outcome == HttpReply::Outcome::NotSent);
        CHECK(contains(reply.detail, "cnm-etcd-http.so is not installed"));
    }
    HttpReply s = t->stream(to_closed_port(), [](std::string_view) { return true; }, {});
    CHECK(s.outcome == HttpReply::Outcome::NotSent);
}
