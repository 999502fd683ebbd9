// Issue 12 ("State you can trust"): bounded reads of files a conf names, the boot id, and invalid
// UTF-8 in a conf decoded the way the reference decodes it.
#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/ipam_conf.hpp"
#include "util/boot_id.hpp"
#include "util/file.hpp"
#include "util/utf8.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace cnm;

namespace {

// The exit status of `body` run in a child, or -1 when it did not finish within `limit`.
int bounded(std::chrono::milliseconds limit, int (*body)(const char*), const char* arg)
{
    pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(body(arg));
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

Result<ipam::IpamConf> ipam_with_resolv(const std::string& path)
{
    auto conf = cni::parse_conf(R"({"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"ipam",)"
        R"("ranges":[[{"subnet":"10.213.210.0/24"}]],"resolvConf":")" + path + R"("}})");
    if (!conf)
        return conf.release_error();
    auto args = cni::parse_cni_args("");
    return ipam::parse_ipam_conf(*conf, *args);
}

// 0: refused with a message naming the key, the path and why. Run in a child, bounded: today's
// read of a FIFO waits for a writer forever, and of /dev/zero fills memory.
int refused(const char* path)
{
    auto got = ipam_with_resolv(path);
    if (got.ok())
        return 1;
    auto& msg = got.error().msg;
    if (got.error().code != Code::InvalidConfig || msg.find("ipam.resolvConf") == std::string::npos
        || msg.find(path) == std::string::npos)
        return 2;
    return 0;
}

} // namespace

TEST_CASE("trust: a file a conf names is read only if it is a regular file of at most 64 KiB")
{
    test::TempDir tmp;
    std::string fifo = tmp.path() + "/fifo", big = tmp.path() + "/big", ok = tmp.path() + "/resolv.conf",
                edge = tmp.path() + "/edge", link = tmp.path() + "/link";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    std::ofstream(big) << std::string(1 << 20, '#');
    std::ofstream(edge) << "nameserver 10.213.210.53\n" << std::string(conf_file_limit - 25, '#');
    std::ofstream(ok) << "nameserver 10.213.210.53\nsearch example.test\n";
    std::filesystem::create_symlink(ok, link); // /etc/resolv.conf is often a link: followed
    for (const char* path : { "/dev/zero", fifo.c_str(), big.c_str(), tmp.path().c_str(), "/nonexistent/resolv.conf" }) {
        CAPTURE(path);
        CHECK(bounded(std::chrono::seconds(5), refused, path) == 0);
    }
    CHECK(ipam_with_resolv("/dev/zero").error().msg.find("it is a character device, not a regular file") != std::string::npos);
    CHECK(ipam_with_resolv(fifo).error().msg.find("it is a FIFO") != std::string::npos);
    CHECK(ipam_with_resolv(big).error().msg.find("larger than 65536 bytes") != std::string::npos);
    for (auto& path : { ok, link, edge }) {
        CAPTURE(path);
        auto got = ipam_with_resolv(path);
        REQUIRE(got.ok());
        REQUIRE(got->dns.nameservers.size() == 1);
        CHECK(got->dns.nameservers[0] == "10.213.210.53");
    }

    // The reader on its own: procfs files (size 0) are read, and the bound holds.
    auto boot = read_regular_file("/proc/sys/kernel/random/boot_id", 64, "boot id");
    REQUIRE(boot.ok());
    CHECK(boot->size() == 37);
    CHECK_FALSE(read_regular_file("/proc/self/maps", 16, "maps").ok());
}

TEST_CASE("trust: boot_id() is the kernel's, read once, and a test can fake another boot")
{
    ::unsetenv(boot_id_env);
    auto real = boot_id();
    REQUIRE(real.ok());
    std::string file;
    std::getline(std::ifstream(boot_id_path), file);
    CHECK(*real == file);
    CHECK(real->size() == 36);
    ::setenv(boot_id_env, "00000000-0000-4000-8000-000000000001", 1);
    CHECK(boot_id().value() == "00000000-0000-4000-8000-000000000001");
    ::setenv(boot_id_env, "", 1); // empty: not set
    CHECK(boot_id().value() == file);
    ::unsetenv(boot_id_env);
    CHECK(boot_id().value() == file);
}

TEST_CASE("trust: invalid UTF-8 becomes U+FFFD, as Go's encoding/json decodes it")
{
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK_FALSE(json_replace_invalid_utf8(R"({"a":"plain","b":"\u00e9\ud83d\ude00"})").has_value());
    CHECK_FALSE(json_replace_invalid_utf8("{\"a\":\"caf\xC3\xA9 \xF0\x9F\x98\x80\"}").has_value()); // valid UTF-8
    CHECK(json_replace_invalid_utf8("{\"a\":\"n\xFF\"}").value() == "{\"a\":\"n" + fffd + "\"}");
    // One U+FFFD per byte that starts no valid sequence: truncated, overlong, surrogate, > U+10FFFF.
    CHECK(json_replace_invalid_utf8("\"\xE2\x82\"").value() == "\"" + fffd + fffd + "\"");
    CHECK(json_replace_invalid_utf8("\"\xC0\xAF\"").value() == "\"" + fffd + fffd + "\"");
    CHECK(json_replace_invalid_utf8("\"\xED\xA0\x80\"").value() == "\"" + fffd + fffd + fffd + "\"");
    CHECK(json_replace_invalid_utf8("\"\xF4\x90\x80\x80\"").value() == "\"" + fffd + fffd + fffd + fffd + "\"");
    // Lone surrogate escapes; a pair stays; an escaped quote or backslash does not end the string.
    CHECK(json_replace_invalid_utf8(R"(["\ud800x","\udc00","\ud83d\ude00","\"\ud800"])").value()
        == R"(["\ufffdx","\ufffd","\ud83d\ude00","\"\ufffd"])");
    CHECK(json_replace_invalid_utf8(R"(["\\ud800"])") == std::nullopt); // an escaped backslash, then text
    CHECK(valid_utf8("caf\xC3\xA9"));
    CHECK_FALSE(valid_utf8("caf\xC3"));
}

TEST_CASE("trust: a conf with invalid UTF-8 in a string is decoded like the reference's; a key it makes invalid is named")
{
    const std::string base = R"("cniVersion":"1.0.0","type":"bridge","ipam":{"type":"ipam","ranges":[[{"subnet":"10.213.210.0/24"}]]})";
    // The reference refuses this one with code 7 "invalid characters found in network name" (the
    // name decoded to "n\uFFFD"); nlohmann alone failed with code 6 and a column number.
    auto bad_name = cni::parse_conf("{\"name\":\"n\xFF\"," + base + "}");
    REQUIRE_FALSE(bad_name.ok());
    CHECK(bad_name.error().code == Code::InvalidConfig);
    CHECK(bad_name.error().msg.find("network name \"n\xEF\xBF\xBD\"") != std::string::npos);
    // A free-form key keeps U+FFFD and the conf is accepted, as the reference accepts it.
    auto label = cni::parse_conf("{\"name\":\"n\",\"label\":\"a\xFF" "b\",\"lab\xFE\":1,\"s\":\"\\ud800\"," + base + "}");
    REQUIRE(label.ok());
    CHECK(label->raw["label"] == "a\xEF\xBF\xBD" "b");
    CHECK(label->raw["lab\xEF\xBF\xBD"] == 1);
    CHECK(label->raw["s"] == "\xEF\xBF\xBD");
    CHECK(label->raw.dump() .find('\xFF') == std::string::npos);
    // Outside a string it is still a syntax error.
    CHECK(cni::parse_conf("{\"name\":\"n\"," + base + ",\"x\":\xFF}").error().code == Code::Decode);
    auto ipam_key = cni::parse_conf("{\"name\":\"n\",\"cniVersion\":\"1.0.0\",\"type\":\"bridge\",\"ipam\":{\"type\":\"ipam\",\"ranges\":[[{\"subnet\":\"10.213.210.0/24\xFF\"}]]}}");
    REQUIRE(ipam_key.ok());
    auto args = cni::parse_cni_args("");
    auto ipam = ipam::parse_ipam_conf(*ipam_key, *args);
    REQUIRE_FALSE(ipam.ok());
    CHECK(ipam.error().msg.find("subnet") != std::string::npos);
}
