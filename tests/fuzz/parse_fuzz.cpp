// libFuzzer target for everything a plugin parses from its caller: the conf on stdin (with its
// ipam section and prevResult), CNI_ARGS, and results in every version. The first byte picks the
// parser; the rest is the input. Any crash, leak, UB or uncaught exception is a finding.

#include "cni/conf.hpp"
#include "cni/env.hpp"
#include "cni/skel.hpp"
#include "cni/types.hpp"
#include "cni/version.hpp"
#include "cni/ipam_conf.hpp"
#include "../unit/gc_list_oracle.hpp"
#include "util/utf8.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace cnm;

namespace {

void exercise_result(const cni::CniResult& result)
{
    for (auto v : cni::supported_versions) {
        auto j = cni::result_to_json(result, v);
        if (j)
            (void)cni::result_from_json(*j);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0)
        return 0;
    std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 4) {
    case 0: { // the conf, as stdin
        auto conf = cni::parse_conf(input);
        if (!conf)
            break;
        auto args = cni::parse_cni_args("IgnoreUnknown=1");
        if (auto ipam = ipam::parse_ipam_conf(*conf, *args); ipam)
            (void)ipam::range_set_str(ipam->range_sets.empty() ? ipam::RangeSet {} : ipam->range_sets[0]);
        if (conf->prev_result)
            exercise_result(*conf->prev_result);
        // Differential: the conf read from the text is the whole document, its GC list the one
        // the document holds (or the same fault). A difference aborts: a finding.
        Json doc = Json::parse(input, nullptr, false);
        auto fixed = json_replace_invalid_utf8(input);
        if (fixed)
            doc = Json::parse(*fixed, nullptr, false);
        if (doc.is_discarded() || conf->raw != test::without_gc_lists(doc))
            std::abort();
        auto got = cni::valid_attachments(*conf);
        auto want = test::list_from_document(doc);
        if (got.ok() != want.ok())
            std::abort();
        if (want.ok() && (*got ? **got : cni::no_attachments) != *want)
            std::abort();
        if (!want.ok() && got.error().msg != want.error().msg)
            std::abort();
        break;
    }
    case 1: { // CNI_ARGS
        auto args = cni::parse_cni_args(input);
        if (args) {
            (void)args->check_known({ "IP", "MAC" });
            (void)args->get("IP");
        }
        break;
    }
    case 2: { // a result of any version (prevResult)
        auto doc = parse_json(input, Code::Decode, "result");
        if (doc)
            if (auto result = cni::result_from_json(*doc))
                exercise_result(*result);
        break;
    }
    case 3: { // the whole dispatcher, VERSION and the env checks, with no handler side effects
        std::string text(input);
        auto split = text.find('\n');
        std::string env_args = split == std::string::npos ? text : text.substr(0, split);
        std::string body = split == std::string::npos ? "" : text.substr(split + 1);
        cni::Plugin plugin;
        plugin.name = "fuzz";
        plugin.add = [](const cni::Context& ctx) -> Result<cni::CniResult> {
            auto ipam = TRY(ipam::parse_ipam_conf(ctx.conf, ctx.env.args));
            cni::CniResult r;
            for (auto& set : ipam.range_sets)
                r.ips.push_back({ IpNet { set[0].start, set[0].subnet.prefix }, set[0].gateway, std::nullopt });
            r.routes = ipam.routes;
            return r;
        };
        for (const char* command : { "ADD", "VERSION", "CHECK" }) {
            auto getenv = [&](const char* name) -> const char* {
                std::string_view n(name);
                if (n == "CNI_COMMAND")
                    return command;
                if (n == "CNI_ARGS")
                    return env_args.c_str();
                if (n == "CNI_CONTAINERID")
                    return "fuzz";
                if (n == "CNI_NETNS")
                    return "/run/netns/fuzz";
                if (n == "CNI_IFNAME")
                    return "eth0";
                return nullptr;
            };
            (void)cni::dispatch(plugin, getenv, body);
        }
        break;
    }
    }
    return 0;
}
