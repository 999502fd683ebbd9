#include "cni/skel.hpp"
#include "helpers.hpp"
#include "util/log.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace cnm;
using namespace cnm::cni;

namespace {

std::vector<std::string> lines_of(const std::string& path)
{
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

std::string slurp(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Json conf_with(const std::string& path, const std::string& level = "")
{
    Json c = { { "cniVersion", "1.0.0" }, { "name", "net1" }, { "type", "test" }, { "logFile", path } };
    if (!level.empty())
        c["logLevel"] = level;
    return c;
}

const test::FakeEnv no_env;

/// The log is per process: each test starts and ends with it closed, also when a REQUIRE fails.
struct Fresh {
    Fresh() { log::close(); }
    ~Fresh() { log::close(); }
};

Plugin plugin_failing_on(const std::string& bad_id)
{
    Plugin p;
    p.name = "test";
    p.add = [bad_id](const Context& ctx) -> Result<CniResult> {
        if (ctx.env.container_id == bad_id) {
            log::detail("undone: the veth pair");
            return make_error(Code::AddressUnavailable, "no address", "pool\nfull");
        }
        CniResult r;
        r.ips.push_back({ *IpNet::parse("10.213.0.2/24"), IpAddr::parse("10.213.0.1"), std::nullopt });
        return r;
    };
    p.del = [](const Context&) -> Result<void> { return {}; };
    return p;
}

} // namespace

TEST_CASE("log: nothing named, nothing opened")
{
    Fresh fresh;
    REQUIRE(log::open_from(Json { { "name", "x" } }, no_env.getenv()));
    CHECK_FALSE(log::enabled(log::Level::Error));
    log::line(log::Level::Error, "dropped"); // no file, no crash
    log::close();
}

TEST_CASE("log: created 0600, one line per call, the variables before the conf")
{
    Fresh fresh;
    test::TempDir dir;
    std::string path = dir.path() + "/plugin.log";
    std::string other = dir.path() + "/other.log";
    ::umask(022);
    REQUIRE(log::open_from(conf_with(other), test::FakeEnv { { { "CNM_LOG_FILE", path } } }.getenv()));
    log::set_context("bridge ADD ctr1 eth0");
    log::line(log::Level::Info, "first\nsecond");
    log::line(log::Level::Debug, "not at info");
    log::detail("undone: x");
    log::close();
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(::access(other.c_str(), F_OK) != 0);
    auto lines = lines_of(path);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].find(" bridge[" + std::to_string(::getpid()) + "] ADD ctr1 eth0 first\\nsecond") != std::string::npos);
    CHECK(lines[0].size() > 24);
    CHECK(lines[0][4] == '-');
    CHECK(lines[0][23] == 'Z');
    CHECK(lines[1].find("undone: x") != std::string::npos);
}

TEST_CASE("log: a symlink at the path is refused and its target untouched")
{
    Fresh fresh;
    test::TempDir dir;
    std::string target = dir.path() + "/target";
    std::string link = dir.path() + "/plugin.log";
    { std::ofstream(target) << "precious\n"; }
    REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
    auto r = log::open_from(conf_with(link), no_env.getenv());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::Io);
    CHECK(r.error().details == "it is a symbolic link");
    CHECK_FALSE(log::enabled(log::Level::Error));
    log::line(log::Level::Error, "must not land");
    log::close();
    CHECK(slurp(target) == "precious\n");
}

TEST_CASE("log: a FIFO is refused without hanging, with and without a reader")
{
    Fresh fresh;
    test::TempDir dir;
    std::string fifo = dir.path() + "/plugin.log";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto start = std::chrono::steady_clock::now();
    auto r = log::open_from(conf_with(fifo), no_env.getenv());
    CHECK_FALSE(r);
    CHECK_FALSE(log::enabled(log::Level::Error));
    log::close();
    // With a reader the open succeeds; fstat must still refuse it.
    int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
    REQUIRE(reader >= 0);
    r = log::open_from(conf_with(fifo), no_env.getenv());
    REQUIRE_FALSE(r);
    CHECK(r.error().details == "it is not a regular file");
    log::close();
    ::close(reader);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("log: bad values are config errors")
{
    Fresh fresh;
    test::TempDir dir;
    auto r = log::open_from(conf_with(dir.path() + "/l", "verbose"), no_env.getenv());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::InvalidConfig);
    log::close();
    r = log::open_from(conf_with("relative.log"), no_env.getenv());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::InvalidConfig);
    log::close();
    r = log::open_from(Json { { "logFile", 5 } }, no_env.getenv());
    CHECK_FALSE(r);
    log::close();
    r = log::open_from(Json::object(), test::FakeEnv { { { "CNM_LOG_FILE", dir.path() + "/l" }, { "CNM_LOG_LEVEL", "loud" } } }.getenv());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Code::InvalidEnv);
    log::close();
}

TEST_CASE("log: the dispatcher writes a line per verb, stdout unchanged")
{
    Fresh fresh;
    test::TempDir dir;
    std::string path = dir.path() + "/plugin.log";
    Plugin plugin = plugin_failing_on("bad");
    Json plain = conf_with(path);
    plain.erase("logFile");

    auto without = dispatch(plugin, test::attachment_env("ADD", "ctr1").getenv(), plain.dump());
    CHECK(lines_of(path).empty());
    auto ok = dispatch(plugin, test::attachment_env("ADD", "ctr1").getenv(), conf_with(path).dump());
    CHECK(ok.exit_code == 0);
    CHECK(ok.stdout_text == without.stdout_text);
    auto failed = dispatch(plugin, test::attachment_env("ADD", "bad").getenv(), conf_with(path).dump());
    CHECK(failed.exit_code == 1);
    CHECK(dispatch(plugin, test::attachment_env("DEL", "ctr1").getenv(), conf_with(path).dump()).exit_code == 0);
    // A failure before the conf is read (no CNI_IFNAME) still lands, through the conf on stdin.
    auto env = test::attachment_env("ADD", "ctr2");
    env.vars.erase("CNI_IFNAME");
    CHECK(dispatch(plugin, env.getenv(), conf_with(path).dump()).exit_code == 1);
    // At level "error" a verb that worked writes nothing.
    CHECK(dispatch(plugin, test::attachment_env("DEL", "ctr1").getenv(), conf_with(path, "error").dump()).exit_code == 0);

    auto lines = lines_of(path);
    REQUIRE(lines.size() == 5);
    CHECK(lines[0].find("] ADD ctr1 eth0 ok ") != std::string::npos);
    CHECK(lines[0].substr(lines[0].size() - 2) == "ms");
    CHECK(lines[1].find("] ADD bad eth0 undone: the veth pair") != std::string::npos);
    CHECK(lines[2].find("] ADD bad eth0 error 102 ") != std::string::npos);
    CHECK(lines[2].find("ms: no address: pool\\nfull") != std::string::npos);
    CHECK(lines[3].find("] DEL ctr1 eth0 ok ") != std::string::npos);
    CHECK(lines[4].find("] ADD ctr2 - error 4 ") != std::string::npos);
    CHECK_FALSE(log::enabled(log::Level::Error)); // each dispatch closes its log
}

TEST_CASE("log: a log that cannot be opened does not fail the verb")
{
    Fresh fresh;
    test::TempDir dir;
    std::string fifo = dir.path() + "/plugin.log";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto o = dispatch(plugin_failing_on("bad"), test::attachment_env("ADD", "ctr1").getenv(), conf_with(fifo).dump());
    CHECK(o.exit_code == 0);
    auto bad = conf_with(dir.path() + "/l", "loud");
    o = dispatch(plugin_failing_on("bad"), test::attachment_env("ADD", "ctr1").getenv(), bad.dump());
    CHECK(o.exit_code == 1);
    CHECK(Json::parse(o.stdout_text)["code"] == 7);
}
