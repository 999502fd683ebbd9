#include "cni/env.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

using namespace cnm;
using namespace cnm::cni;

TEST_CASE("every CNI_COMMAND parses; anything else is code 4")
{
    for (auto [text, cmd] : { std::pair { "ADD", Command::Add }, { "DEL", Command::Del }, { "CHECK", Command::Check },
             { "STATUS", Command::Status }, { "GC", Command::Gc }, { "VERSION", Command::Version } }) {
        auto env = test::attachment_env(text);
        auto parsed = parse_env(env.getenv());
        REQUIRE(parsed.ok());
        CHECK(parsed->command == cmd);
    }
    for (const char* bad : { "add", "FOO", "", "ADD " }) {
        auto env = test::attachment_env(bad);
        auto parsed = parse_env(env.getenv());
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().code == Code::InvalidEnv);
    }
    test::FakeEnv none;
    CHECK(parse_env(none.getenv()).error().code == Code::InvalidEnv);
}

TEST_CASE("CNI_CONTAINERID: empty is code 3, bad characters code 4")
{
    auto env = test::attachment_env("ADD", "");
    CHECK(parse_env(env.getenv()).error().code == Code::UnknownContainer);
    env.vars.erase("CNI_CONTAINERID");
    CHECK(parse_env(env.getenv()).error().code == Code::UnknownContainer);
    for (const char* bad : { "../etc", "-leading", "a/b", "a b", "ü", "_x", "a;b" }) {
        auto e = test::attachment_env("ADD", bad);
        auto parsed = parse_env(e.getenv());
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().code == Code::InvalidEnv);
    }
    for (const char* good : { "a", "0abc", "abc-DEF_1.2", "cnitool-1234567890abcdef" }) {
        auto e = test::attachment_env("ADD", good);
        CHECK(parse_env(e.getenv()).ok());
    }
}

TEST_CASE("CNI_IFNAME rules")
{
    for (const char* bad : { "", ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "0123456789abcdef" }) {
        auto env = test::attachment_env("ADD");
        env.vars["CNI_IFNAME"] = bad;
        auto parsed = parse_env(env.getenv());
        REQUIRE_FALSE(parsed.ok());
        CHECK(parsed.error().code == Code::InvalidEnv);
    }
    auto env = test::attachment_env("ADD");
    env.vars["CNI_IFNAME"] = "0123456789abcde"; // exactly 15
    CHECK(parse_env(env.getenv()).ok());
}

TEST_CASE("CNI_NETNS is required for ADD and CHECK, optional for DEL")
{
    for (const char* cmd : { "ADD", "CHECK" }) {
        auto env = test::attachment_env(cmd);
        env.vars.erase("CNI_NETNS");
        CHECK(parse_env(env.getenv()).error().code == Code::InvalidEnv);
    }
    auto env = test::attachment_env("DEL");
    env.vars.erase("CNI_NETNS");
    CHECK(parse_env(env.getenv()).ok());
}

TEST_CASE("STATUS and GC need no attachment variables")
{
    for (const char* cmd : { "STATUS", "GC" }) {
        test::FakeEnv env { { { "CNI_COMMAND", cmd } } };
        CHECK(parse_env(env.getenv()).ok());
    }
}

TEST_CASE("CNI_ARGS parsing and unknown keys")
{
    auto args = parse_cni_args("IP=10.0.0.5;K8S_POD_NAME=web;K8S_POD_NAMESPACE=default");
    REQUIRE(args.ok());
    CHECK(args->get("IP") == "10.0.0.5");
    CHECK(args->get("K8S_POD_NAME") == "web");
    CHECK_FALSE(args->get("MAC"));
    CHECK(args->check_known({ "IP" }).ok()); // K8S_* always pass

    auto unknown = parse_cni_args("FOO=bar;IP=1.2.3.4");
    REQUIRE(unknown.ok());
    auto rejected = unknown->check_known({ "IP" });
    REQUIRE_FALSE(rejected.ok());
    CHECK(rejected.error().code == Code::InvalidEnv);
    CHECK(rejected.error().msg.find("FOO") != std::string::npos);

    for (const char* ignore : { "IgnoreUnknown=1;FOO=bar", "FOO=bar;IgnoreUnknown=true", "IgnoreUnknown=TRUE;FOO=x" }) {
        auto a = parse_cni_args(ignore);
        REQUIRE(a.ok());
        CHECK(a->ignore_unknown);
        CHECK(a->check_known({}).ok());
    }
    auto zero = parse_cni_args("IgnoreUnknown=0;FOO=bar");
    REQUIRE(zero.ok());
    CHECK_FALSE(zero->check_known({}).ok());

    CHECK(parse_cni_args("").ok());
    CHECK(parse_cni_args(";;IP=1.2.3.4;").ok());
    CHECK(parse_cni_args("novalue").error().code == Code::InvalidEnv);
    CHECK(parse_cni_args("=x").error().code == Code::InvalidEnv);
    CHECK(parse_cni_args("IgnoreUnknown=maybe").error().code == Code::InvalidEnv);
    auto eq = parse_cni_args("K=a=b");
    REQUIRE(eq.ok());
    CHECK(eq->get("K") == "a=b");
}

TEST_CASE("network names follow the spec's regex")
{
    CHECK(valid_network_name("net-1_a.b"));
    CHECK_FALSE(valid_network_name(""));
    CHECK_FALSE(valid_network_name("../x"));
    CHECK_FALSE(valid_network_name("a/b"));
    CHECK_FALSE(valid_network_name(".hidden"));
}
