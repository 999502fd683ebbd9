// cnm-shim: Docker's remote network + IPAM driver over cnm's model, and the admin commands.
//
//   cnm-shim serve [--socket PATH] [--state-dir DIR] [--etcd URL[,URL…] --prefix P --node NAME --underlay IF|ADDR]
//     (with a cluster — a cluster file or --etcd — the agent runs beside the API, in this process)
//   cnm-shim agent [--etcd URL[,URL…]] [--prefix P] [--node NAME] [--underlay IF|ADDR] [--state-dir DIR] [--release]
//   cnm-shim cluster networks|hosts|blocks|tunnels [--json] | cluster dot | cluster release NODE
//   cnm-shim list [--json] | inspect NETWORK [ENDPOINT] | gc [--dry-run] [--json] | dot

#include "admin.hpp"
#include "agent.hpp"
#include "etcd/client.hpp"
#include "kernel/kernel.hpp"
#include "server.hpp"
#include "store/file_store.hpp"

#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <pthread.h>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <thread>

namespace {

std::string default_state()
{
    const char* env = std::getenv(cnm::state_dir_env);
    return env && *env ? env : cnm::default_state_dir;
}

// The cluster: the host's cluster file, with what the command line gives over it.
cnm::Result<cnm::ClusterConfig> cluster_config(const std::string& etcd, const std::string& prefix, const std::string& node, const std::string& underlay = "")
{
    auto loaded = cnm::load_cluster_config(cnm::Json::object());
    cnm::ClusterConfig c;
    if (loaded)
        c = *loaded;
    else if (etcd.empty())
        return loaded.error();
    if (!etcd.empty())
        c.etcd = cnm::etcd::split_endpoints(etcd);
    if (!prefix.empty())
        c.prefix = prefix;
    if (!node.empty())
        c.node = node;
    if (!underlay.empty())
        c.underlay = underlay;
    if (c.node.empty() || !cnm::valid_node_name(c.node))
        return cnm::make_error(cnm::Code::InvalidConfig, "no usable node name (--node, the cluster file's \"node\", $CNM_NODE)");
    if (c.etcd.empty())
        return cnm::make_error(cnm::Code::InvalidConfig, "no etcd endpoint (--etcd or the cluster file's \"etcd\")");
    return c;
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
    std::string etcd_list, prefix, node, underlay;
    serve->add_option("--etcd", etcd_list, "etcd endpoints: run the cluster agent beside the API (also when the cluster file exists)");
    serve->add_option("--prefix", prefix, "the agent's key prefix (default /cnm, or the cluster file's)");
    serve->add_option("--node", node, "the agent's node name (else the cluster file's, $CNM_NODE, the hostname)");
    serve->add_option("--underlay", underlay, "the agent's underlay: interface or address (else the cluster file's, the default route's)");
    int serve_resync = 10;
    serve->add_option("--resync", serve_resync, "the agent's seconds between full reconciliations")->capture_default_str()->check(CLI::Range(1, 3600));

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

    cnm::shim::AgentOptions agent_options;
    auto* agent = app.add_subcommand("agent", "the per-host agent of cluster (vxlan) networks: VTEP lease, block watch, route reconciliation");
    agent->add_option("--etcd", etcd_list, "etcd endpoints, comma-separated (else the cluster file's)");
    agent->add_option("--prefix", prefix, "key prefix (default /cnm, or the cluster file's)");
    agent->add_option("--node", node, "this host's node name (else the cluster file's, $CNM_NODE, the hostname)");
    agent->add_option("--state-dir", state_dir, "state directory shared with the CNI plugins");
    agent->add_option("--underlay", underlay, "this host's underlay: interface or address (else the cluster file's, the default route's)");
    agent->add_flag("--release", agent_options.release, "on SIGTERM, release this node's blocks");
    int resync = 10;
    agent->add_option("--resync", resync, "seconds between full reconciliations")->capture_default_str()->check(CLI::Range(1, 3600));

    auto* cluster = app.add_subcommand("cluster", "the cluster's networks, hosts, blocks and this host's tunnels; release a host's blocks");
    cluster->require_subcommand(1);
    cluster->add_option("--etcd", etcd_list, "etcd endpoints");
    cluster->add_option("--prefix", prefix, "key prefix");
    cluster->add_option("--node", node, "this host's node name");
    cluster->add_option("--state-dir", state_dir, "state directory");
    auto* c_networks = cluster->add_subcommand("networks", "cluster networks: VNI, subnets, block size, port, MTU, blocks (all, this host's)");
    auto* c_hosts = cluster->add_subcommand("hosts", "hosts, their VTEP and whether their lease is alive");
    auto* c_blocks = cluster->add_subcommand("blocks", "blocks, their host, used/free where this host knows");
    auto* c_tunnels = cluster->add_subcommand("tunnels", "the remote blocks programmed on this host");
    auto* c_dot = cluster->add_subcommand("dot", "print hosts, blocks and this host's tunnels as Graphviz DOT");
    std::string release_node;
    auto* c_release = cluster->add_subcommand("release", "release every block a host holds");
    c_release->add_option("node", release_node, "node name")->required();
    for (auto* sub : { c_networks, c_hosts, c_blocks, c_tunnels })
        sub->add_flag("--json", json, "print JSON");

    CLI11_PARSE(app, argc, argv);

    if (agent->parsed()) {
        auto config = cluster_config(etcd_list, prefix, node, underlay);
        if (!config)
            return fail(config.error());
        agent_options.cluster = *config;
        agent_options.state_dir = state_dir;
        agent_options.resync = std::chrono::seconds(resync);
        return cnm::shim::run_agent_until_signal(agent_options);
    }
    if (cluster->parsed()) {
        auto config = cluster_config(etcd_list, prefix, node);
        if (!config)
            return fail(config.error());
        if (c_release->parsed()) {
            auto n = cnm::shim::cluster_release(*config, release_node);
            if (!n)
                return fail(n.error());
            std::cout << "released " << *n << " block(s) of " << release_node << "\n";
            return 0;
        }
        if (c_dot->parsed()) {
            auto hosts = cnm::shim::cluster_hosts(*config, state_dir);
            if (!hosts)
                return fail(hosts.error());
            auto blocks = cnm::shim::cluster_blocks(*config, state_dir);
            if (!blocks)
                return fail(blocks.error());
            // Without a state directory or netlink here, the cluster is still drawn.
            auto tunnels = cnm::shim::cluster_tunnels(*config, state_dir);
            if (!tunnels)
                std::fprintf(stderr, "cnm-shim: no tunnels drawn: %s\n", tunnels.error().msg.c_str());
            std::cout << cnm::shim::cluster_dot(*hosts, *blocks, tunnels ? *tunnels : cnm::Json::array(), config->node);
            return 0;
        }
        auto rows = c_networks->parsed() ? cnm::shim::cluster_networks(*config, state_dir)
            : c_hosts->parsed()          ? cnm::shim::cluster_hosts(*config, state_dir)
            : c_blocks->parsed()      ? cnm::shim::cluster_blocks(*config, state_dir)
                                      : cnm::shim::cluster_tunnels(*config, state_dir);
        if (!rows)
            return fail(rows.error());
        std::cout << (json ? rows->dump(2) + "\n" : cnm::shim::cluster_table(*rows));
        return 0;
    }

    if (serve->parsed()) {
        serve_options.state_dir = state_dir;
        // Before the agent starts: a second shim on this state directory changes nothing.
        auto claim = cnm::shim::claim_state_dir(state_dir);
        if (!claim)
            return fail(claim.error());
        // A host with a cluster (its cluster file, or --etcd) runs the agent beside the API, in
        // this process; a cluster file that is there but unusable is an error, not "no cluster".
        const char* file_env = std::getenv(cnm::cluster_file_env);
        std::string file = file_env && *file_env ? file_env : cnm::default_cluster_file;
        std::error_code ec;
        bool clustered = !etcd_list.empty() || std::filesystem::exists(file, ec);
        std::stop_source agent_stop;
        std::jthread agent_thread;
        if (clustered) {
            auto config = cluster_config(etcd_list, prefix, node, underlay);
            if (!config)
                return fail(config.error());
            cnm::shim::AgentOptions o;
            o.cluster = *config;
            o.state_dir = state_dir;
            o.resync = std::chrono::seconds(serve_resync);
            // SIGTERM/SIGINT are for serve's waiting thread: blocked before the agent's thread
            // starts (it inherits the mask), or the signal could land there and kill the process
            // with the socket left behind.
            sigset_t signals;
            sigemptyset(&signals);
            sigaddset(&signals, SIGTERM);
            sigaddset(&signals, SIGINT);
            pthread_sigmask(SIG_BLOCK, &signals, nullptr);
            std::fprintf(stderr, "cnm-shim: running the cluster agent for node %s beside the API\n", o.cluster.node.c_str());
            agent_thread = std::jthread([o, token = agent_stop.get_token()] {
                if (cnm::shim::run_agent(o, token) != 0)
                    std::fprintf(stderr, "cnm-shim: the cluster agent stopped; the API goes on\n");
            });
        }
        int rc = cnm::shim::serve(serve_options);
        agent_stop.request_stop();
        return rc;
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
