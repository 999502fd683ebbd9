// cnm-shim: Docker's remote network + IPAM driver over cnm's model, and the admin commands.
//
//   cnm-shim serve [--socket PATH] [--state-dir DIR]
//   cnm-shim list [--json] | inspect NETWORK [ENDPOINT] | gc [--dry-run] [--json] | dot

#include "admin.hpp"
#include "kernel/kernel.hpp"
#include "server.hpp"
#include "store/file_store.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>

namespace {

std::string default_state()
{
    const char* env = std::getenv(cnm::state_dir_env);
    return env && *env ? env : cnm::default_state_dir;
}

int fail(const cnm::Error& e)
{
    std::fprintf(stderr, "cnm-shim: %s%s%s\n", e.msg.c_str(), e.details.empty() ? "" : ": ", e.details.c_str());
    return 1;
}

} // namespace

int run(int argc, char** argv);

int main(int argc, char** argv)
{
    // Nothing a state file or a request holds may end in std::terminate: report and exit 1.
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "cnm-shim: internal error: %s\n", e.what());
        return 1;
    }
}

int run(int argc, char** argv)
{
    CLI::App app { "cnm-shim: Docker's remote network and IPAM driver over cnm's networks, and admin commands on its state" };
    app.require_subcommand(1);
    std::string state_dir = default_state();
    app.add_option("--state-dir", state_dir, "state directory shared with the CNI plugins ($CNM_STATE_DIR, else /var/lib/cni/cnm)");

    cnm::shim::ServeOptions serve_options;
    auto* serve = app.add_subcommand("serve", "serve Docker's NetworkDriver and IpamDriver API on a Unix socket");
    serve->add_option("--socket", serve_options.socket, "socket path (Docker finds /run/docker/plugins/cnm.sock as driver \"cnm\")")
        ->capture_default_str();
    serve->add_option("--state-dir", state_dir, "state directory shared with the CNI plugins");
    serve->add_option("--max-body", serve_options.max_body, "largest request body in bytes")->capture_default_str();

    bool json = false;
    auto* list = app.add_subcommand("list", "list networks and their endpoints (CNI and Docker)");
    list->add_flag("--json", json, "print JSON");
    list->add_option("--state-dir", state_dir, "state directory");

    std::string network, endpoint;
    auto* inspect = app.add_subcommand("inspect", "print one network, or one of its endpoints, as JSON");
    inspect->add_option("network", network, "network name")->required();
    inspect->add_option("endpoint", endpoint, "endpoint id (a prefix will do)");
    inspect->add_option("--state-dir", state_dir, "state directory");

    bool dry_run = false;
    auto* gc = app.add_subcommand("gc", "remove endpoints whose sandbox no longer exists");
    gc->add_flag("--dry-run", dry_run, "only say what would be removed");
    gc->add_flag("--json", json, "print JSON");
    int64_t lease_grace = 600;
    gc->add_option("--lease-grace", lease_grace, "seconds a Docker lease nothing refers to is kept (default 600)");
    gc->add_option("--state-dir", state_dir, "state directory");

    std::string call_socket = cnm::shim::default_socket, call_method, call_body;
    auto* call = app.add_subcommand("call", "send one plugin API call to a running shim, as Docker would, and print the reply");
    call->add_option("--socket", call_socket, "the shim's socket")->capture_default_str();
    call->add_option("method", call_method, "e.g. NetworkDriver.GetCapabilities")->required();
    call->add_option("body", call_body, "JSON request body (\"-\": read stdin; none: empty, as Docker sends)");

    auto* dot = app.add_subcommand("dot", "print the topology as Graphviz DOT (networks -> endpoints -> sandboxes)");
    dot->add_option("--state-dir", state_dir, "state directory");

    CLI11_PARSE(app, argc, argv);

    if (serve->parsed()) {
        serve_options.state_dir = state_dir;
        return cnm::shim::serve(serve_options);
    }
    if (call->parsed()) {
        if (call_body == "-")
            call_body.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
        auto reply = cnm::shim::call(call_socket, call_method, call_body);
        if (!reply)
            return fail(reply.error());
        std::cout << reply->body.dump() << "\n";
        return reply->status == 200 ? 0 : 1;
    }
    auto store = cnm::FileStore::open(state_dir);
    if (!store)
        return fail(store.error());
    if (list->parsed() || dot->parsed()) {
        auto listing = cnm::shim::list_state(**store);
        if (!listing)
            return fail(listing.error());
        if (dot->parsed())
            std::cout << cnm::shim::dot(*listing);
        else if (json)
            std::cout << listing->dump(2) << "\n";
        else
            std::cout << cnm::shim::list_table(*listing);
        return 0;
    }
    if (inspect->parsed()) {
        auto doc = cnm::shim::inspect(**store, network, endpoint);
        if (!doc)
            return fail(doc.error());
        std::cout << doc->dump(2) << "\n";
        return 0;
    }
    if (gc->parsed()) {
        // --dry-run too looks links up (it changes nothing): it must say what gc would do.
        std::unique_ptr<cnm::Kernel> kernel;
        auto opened = cnm::netlink_kernel();
        if (!opened)
            return fail(opened.error());
        kernel = opened.release_value();
        auto done = cnm::shim::gc(**store, kernel.get(), dry_run, lease_grace);
        if (!done)
            return fail(done.error());
        if (json) {
            std::cout << done->dump(2) << "\n";
        } else {
            for (auto& r : (*done)["removed"])
                std::cout << (dry_run ? "would remove " : "removed ") << r["frontend"].get<std::string>() << " endpoint "
                          << r["endpoint"].get<std::string>() << "/" << r["ifname"].get<std::string>() << " of network "
                          << r["network"].get<std::string>() << " (sandbox " << r["netns"].get<std::string>() << " is gone)\n";
            for (auto& l : (*done)["dockerLeases"])
                std::cout << (dry_run ? "would free " : "freed ") << "Docker lease " << l["address"].get<std::string>() << " of pool "
                          << l["pool"].get<std::string>() << " (no endpoint or gateway refers to it; " << l["ageSeconds"].get<int64_t>() << " s old)\n";
            for (auto& r : (*done)["left"])
                std::cout << "left " << r["endpoint"].get<std::string>() << "/" << r["ifname"].get<std::string>() << " of network "
                          << r["network"].get<std::string>() << ": " << r["why"].get<std::string>() << "\n";
            if ((*done)["removed"].empty() && (*done)["left"].empty() && (*done)["dockerLeases"].empty())
                std::cout << "nothing to remove\n";
        }
        return 0;
    }
    return 0;
}
