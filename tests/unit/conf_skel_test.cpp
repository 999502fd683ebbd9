#include "cni/conf.hpp"
#include "cni/skel.hpp"
#include "cnm/state.hpp"
#include "gc_list_oracle.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

using namespace cnm;
using namespace cnm::cni;

namespace {

int code_of(const Outcome& o)
{
    auto j = Json::parse(o.stdout_text);
    return j["code"].get<int>();
}

Plugin recording_plugin(int& calls)
{
    Plugin p;
    p.name = "test";
    p.known_args = { "IP" };
    p.add = [&](const Context&) -> Result<CniResult> {
        ++calls;
        CniResult r;
        r.ips.push_back({ *IpNet::parse("10.213.0.2/24"), IpAddr::parse("10.213.0.1"), std::nullopt });
        return r;
    };
    p.del = [&](const Context&) -> Result<void> { ++calls; return {}; };
    p.check = p.del;
    p.status = p.del;
    p.gc = p.del;
    return p;
}

std::string conf(const std::string& version)
{
    return R"({"cniVersion":")" + version + R"(","name":"net1","type":"test"})";
}

} // namespace

TEST_CASE("config decoding: code 6 for bad JSON, 7 for wrong types and names, 1 for versions")
{
    CHECK(parse_conf("{not json").error().code == Code::Decode);
    CHECK(parse_conf("").error().code == Code::Decode);
    CHECK(parse_conf("[1,2]").error().code == Code::Decode);
    CHECK(parse_conf("\"str\"").error().code == Code::Decode);
    auto wrong = parse_conf(R"({"cniVersion":"1.0.0","name":5})");
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().code == Code::InvalidConfig);
    CHECK(wrong.error().msg.find("\"name\"") != std::string::npos);
    for (const char* bad : { R"({"cniVersion":1})", R"({"cniVersion":"1.0.0","ipam":[]})", R"({"cniVersion":"1.0.0","ipam":{"type":3}})",
             R"({"cniVersion":"1.0.0","dns":{"nameservers":"x"}})", R"({"cniVersion":"1.0.0","runtimeConfig":1})",
             R"({"cniVersion":"1.0.0","args":"x"})", R"({"cniVersion":"1.0.0","cniVersions":"1.0.0"})",
             R"({"cniVersion":"1.0.0","prevResult":{"ips":5}})", R"({"cniVersion":"1.0.0","dataDir":false})",
             R"({"cniVersion":"1.0.0","name":"../etc"})", R"({"cniVersion":"1.0.0","name":"a b"})" }) {
        auto r = parse_conf(bad);
        REQUIRE_FALSE(r.ok());
        CHECK_MESSAGE(r.error().code == Code::InvalidConfig, bad);
    }
    auto unsupported = parse_conf(R"({"cniVersion":"9.9.9","name":"x"})");
    REQUIRE_FALSE(unsupported.ok());
    CHECK(unsupported.error().code == Code::IncompatibleVersion);
    CHECK(unsupported.error().details.find("1.1.0") != std::string::npos);
}

TEST_CASE("config keeps unknown keys and reads every spec field")
{
    auto c = parse_conf(R"({"cniVersion":"1.1.0","cniVersions":["1.0.0","1.1.0"],"name":"n","type":"bridge",
        "custom":{"deep":[1,2]},"dns":{"nameservers":["1.1.1.1"]},"runtimeConfig":{"mac":"x"},"args":{"cni":{}},
        "prevResult":{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"}]}})");
    REQUIRE(c.ok());
    CHECK(c->cni_versions.size() == 2);
    CHECK(c->raw["custom"]["deep"][1] == 2);
    CHECK(c->dns->nameservers[0] == "1.1.1.1");
    REQUIRE(c->prev_result);
    CHECK(c->prev_result->ips[0].address.str() == "10.0.0.2/24");
    auto missing = parse_conf(R"({"name":"n"})");
    REQUIRE(missing.ok());
    CHECK(missing->cni_version == "0.1.0");
}

TEST_CASE("GC attachments come from either key")
{
    for (const char* key : { "cni.dev/valid-attachments", "cni.dev/attachments" }) {
        Json doc = { { "cniVersion", "1.1.0" }, { "name", "n" }, { key, { { { "containerID", "a" }, { "ifname", "eth0" } } } } };
        auto c = parse_conf(doc.dump());
        REQUIRE(c.ok());
        auto list = valid_attachments(*c);
        REQUIRE(list.ok());
        REQUIRE(*list != nullptr);
        CHECK((**list)[0] == std::pair<std::string, std::string> { "a", "eth0" });
    }
    auto none = parse_conf(R"({"cniVersion":"1.1.0","name":"n"})");
    CHECK(*valid_attachments(*none) == nullptr);
    auto bad = parse_conf(R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[1]})");
    CHECK(valid_attachments(*bad).error().code == Code::InvalidConfig);
    auto not_list = parse_conf(R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":{"containerID":"a"}})");
    auto refused = valid_attachments(*not_list);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == Code::InvalidConfig);
    CHECK(refused.error().msg.find("cni.dev/valid-attachments") != std::string::npos);
}

TEST_CASE("a GC list read from the text is what the whole document held, faults and all; the rest of the conf is the document")
{
    const char* head = R"({"cniVersion":"1.1.0","name":"n","type":"bridge","ipam":{"type":"ipam","x":{"cni.dev/attachments":[1]}},)";
    const char* lists[] = {
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"ifname":"eth1","containerID":"b","extra":{"k":[1,{"containerID":5}]}}])",
        R"("cni.dev/attachments":[{"containerID":"a"},{"ifname":"eth0"},{},{"containerID":null,"ifname":null}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","containerID":"b","ifname":"eth0"}])",
        R"("cni.dev/valid-attachments":[{"containerID":5,"ifname":"eth0"}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":true}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":{"x":1}}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":[1]}])",
        R"("cni.dev/valid-attachments":[{"ifname":1.5,"containerID":[]}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},7,{"containerID":1}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":1},7])",
        R"("cni.dev/valid-attachments":["a"])",
        R"("cni.dev/valid-attachments":[null])",
        R"("cni.dev/valid-attachments":[[{"containerID":"a"}]])",
        R"("cni.dev/valid-attachments":[])",
        R"("cni.dev/valid-attachments":null)",
        R"("cni.dev/valid-attachments":{"containerID":"a"})",
        R"("cni.dev/valid-attachments":"a")",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/valid-attachments":[{"containerID":"b","ifname":"eth1"}])",
        R"("cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/valid-attachments":null)",
        R"("cni.dev/valid-attachments":{"x":1},"cni.dev/valid-attachments":[{"containerID":"b","ifname":"eth1"}])",
        R"("cni.dev/valid-attachments":null,"cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}])",
        R"("cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}],"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}])",
        R"("cni.dev/attachments":[1],"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}])",
        R"("cni.dev/attachments":[{"containerID":"b","ifname":"eth1"}])",
        R"("other":[{"containerID":"b","ifname":"eth1"}])",
    };
    for (const char* list : lists) {
        std::string text = std::string(head) + list + "}";
        CAPTURE(text);
        Json doc = Json::parse(text);
        auto c = parse_conf(text);
        REQUIRE(c.ok());
        auto want = test::list_from_document(doc);
        auto got = valid_attachments(*c);
        REQUIRE(got.ok() == want.ok());
        if (want.ok()) {
            auto none = std::vector<std::pair<std::string, std::string>> {};
            CHECK((*got ? **got : none) == *want);
        } else {
            CHECK(got.error().code == want.error().code);
            CHECK(got.error().msg == want.error().msg);
        }
        // The rest of the conf is the document without the top-level lists that are arrays (a
        // nested key of either spelling stays), and a delegated plugin gets the whole document.
        CHECK(c->raw == test::without_gc_lists(doc));
        CHECK(Json::parse(delegate_input(*c)) == doc);
    }
}

TEST_CASE("a conf that is not JSON after its GC list, or nested too deep inside it, is refused as before")
{
    auto cut = parse_conf(R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"a")");
    REQUIRE_FALSE(cut.ok());
    CHECK(cut.error().code == Code::Decode);
    CHECK(cut.error().details.find("parse error") != std::string::npos);
    std::string deep = R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"x":)" + std::string(300, '[') + std::string(300, ']') + "}]}";
    auto refused = parse_conf(deep);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code == Code::Decode);
    CHECK(refused.error().details.find("nested deeper") != std::string::npos);
    auto root = parse_conf(R"([{"cni.dev/valid-attachments":[1]}])");
    REQUIRE_FALSE(root.ok());
    CHECK(root.error().msg.find("must be a JSON object, not array") != std::string::npos);
}

TEST_CASE("a network record keeps the driver's keys of the conf, none of those the runtime injects per call")
{
    auto c = parse_conf(R"({"cniVersion":"1.1.0","name":"n","type":"bridge","bridge":"br9","ipMasq":true,"ipam":{"type":"ipam"},
        "runtimeConfig":{"mac":"02:00:00:00:00:01"},"args":{"cni":{}},"prevResult":{"cniVersion":"1.1.0"},
        "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],"cni.dev/attachments":[],"cniVersions":["1.1.0"]})");
    REQUIRE(c.ok());
    CHECK(network_options(*c) == Json::parse(R"({"type":"bridge","bridge":"br9","ipMasq":true,"ipam":{"type":"ipam"}})"));
}

TEST_CASE("dispatcher: version gating")
{
    int calls = 0;
    auto plugin = recording_plugin(calls);
    for (const char* v : { "0.1.0", "0.2.0", "0.3.0", "0.3.1" }) {
        auto o = dispatch(plugin, test::attachment_env("CHECK").getenv(), conf(v));
        CHECK(o.exit_code == 1);
        CHECK(code_of(o) == 1);
    }
    for (const char* cmd : { "STATUS", "GC" })
        for (const char* v : { "0.4.0", "1.0.0" }) {
            test::FakeEnv env { { { "CNI_COMMAND", cmd } } };
            auto o = dispatch(plugin, env.getenv(), conf(v));
            CHECK(code_of(o) == 1);
        }
    CHECK(calls == 0);
    auto check_ok = dispatch(plugin, test::attachment_env("CHECK").getenv(), conf("0.4.0"));
    CHECK(check_ok.exit_code == 0);
    CHECK(check_ok.stdout_text.empty());
    test::FakeEnv status { { { "CNI_COMMAND", "STATUS" } } };
    CHECK(dispatch(plugin, status.getenv(), conf("1.1.0")).exit_code == 0);
    CHECK(calls == 2);
}

TEST_CASE("dispatcher: VERSION works with empty stdin")
{
    int calls = 0;
    auto plugin = recording_plugin(calls);
    test::FakeEnv env { { { "CNI_COMMAND", "VERSION" } } };
    auto o = dispatch(plugin, env.getenv(), "");
    REQUIRE(o.exit_code == 0);
    auto j = Json::parse(o.stdout_text);
    CHECK(j["supportedVersions"].size() == 7);
    CHECK(j["supportedVersions"][0] == "0.1.0");
    CHECK(j["supportedVersions"][6] == "1.1.0");
    auto echo = dispatch(plugin, env.getenv(), conf("0.4.0"));
    CHECK(Json::parse(echo.stdout_text)["cniVersion"] == "0.4.0");
}

TEST_CASE("dispatcher: errors are one JSON object on stdout with exit 1")
{
    int calls = 0;
    auto plugin = recording_plugin(calls);
    auto o = dispatch(plugin, test::attachment_env("ADD").getenv(), "garbage");
    CHECK(o.exit_code == 1);
    auto j = Json::parse(o.stdout_text);
    CHECK(j["code"] == 6);
    CHECK(j.contains("msg"));
    CHECK(j.contains("cniVersion"));
    auto env = test::attachment_env("ADD");
    env.vars["CNI_ARGS"] = "FOO=1";
    CHECK(code_of(dispatch(plugin, env.getenv(), conf("1.0.0"))) == 4);
    env.vars["CNI_ARGS"] = "FOO=1;IgnoreUnknown=1;IP=10.0.0.1";
    CHECK(dispatch(plugin, env.getenv(), conf("1.0.0")).exit_code == 0);
    CHECK(code_of(dispatch(plugin, test::attachment_env("ADD").getenv(), R"({"cniVersion":"1.0.0"})")) == 7);
    CHECK(calls == 1);
}

TEST_CASE("dispatcher: ADD prints the result in the conf's version")
{
    int calls = 0;
    auto plugin = recording_plugin(calls);
    auto o = dispatch(plugin, test::attachment_env("ADD").getenv(), conf("0.4.0"));
    REQUIRE(o.exit_code == 0);
    auto j = Json::parse(o.stdout_text);
    CHECK(j["cniVersion"] == "0.4.0");
    CHECK(j["ips"][0]["version"] == "4");
    auto legacy = Json::parse(dispatch(plugin, test::attachment_env("ADD").getenv(), conf("0.2.0")).stdout_text);
    CHECK(legacy["ip4"]["ip"] == "10.213.0.2/24");
}

TEST_CASE("hostile nesting is refused before it can exhaust the stack")
{
    std::string deep = R"({"cniVersion":"1.0.0","name":"n","x":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
    auto r = parse_conf(deep);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Code::Decode);
    std::string fine = R"({"cniVersion":"1.0.0","name":"n","x":)" + std::string(100, '[') + std::string(100, ']') + "}";
    CHECK(parse_conf(fine).ok());
    std::string in_string = R"({"cniVersion":"1.0.0","name":"n","x":")" + std::string(1000, '[') + "\"}";
    CHECK(parse_conf(in_string).ok());
}
