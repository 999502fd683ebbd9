// A Docker network and IPAM driver that does nothing, for tests/bench/docker.sh: `docker network
// create` and `rm` through it time what dockerd's remote-driver path costs (its plugin client, one
// HTTP request per call over the unix socket) with no driver work behind it — the floor of any
// remote driver's create and rm, measured beside the shim and the built-in bridge driver.
//   noop-driver SOCKET   serves until SIGTERM; answers every call at once: pools as asked, the
//                        gateway .1 of the pool's first /24, everything else {}.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

// "a.b.c.d/n" -> "a.b.c.1/n" (the bench's subnets are /24s).
std::string first_host(const std::string& pool)
{
    auto dot = pool.rfind('.', pool.find('/'));
    auto slash = pool.find('/');
    if (dot == std::string::npos || slash == std::string::npos)
        return "";
    return pool.substr(0, dot + 1) + "1" + pool.substr(slash);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: noop-driver SOCKET\n");
        return 2;
    }
    std::string socket = argv[1];
    ::unlink(socket.c_str());
    // SIGTERM and SIGINT are taken by a thread of ours (sigwait), which stops the server.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    httplib::Server server;
    std::thread([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        // stop() before listen_after_bind() has started would be lost: wait for it.
        while (!server.is_running())
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        server.stop();
    }).detach();
    server.set_address_family(AF_UNIX);
    server.Post(".*", [](const httplib::Request& req, httplib::Response& res) {
        using Json = nlohmann::json;
        Json body = Json::parse(req.body, nullptr, false);
        Json out = Json::object();
        if (req.path == "/Plugin.Activate") {
            out = { { "Implements", { "NetworkDriver", "IpamDriver" } } };
        } else if (req.path == "/NetworkDriver.GetCapabilities") {
            out = { { "Scope", "local" }, { "ConnectivityScope", "local" } };
        } else if (req.path == "/IpamDriver.GetCapabilities") {
            out = { { "RequiresMACAddress", false } };
        } else if (req.path == "/IpamDriver.GetDefaultAddressSpaces") {
            out = { { "LocalDefaultAddressSpace", "noop" }, { "GlobalDefaultAddressSpace", "noop-global" } };
        } else if (req.path == "/IpamDriver.RequestPool") {
            std::string pool = body.is_object() ? body.value("Pool", "") : "";
            out = { { "PoolID", "noop/" + pool }, { "Pool", pool }, { "Data", Json::object() } };
        } else if (req.path == "/IpamDriver.RequestAddress") {
            std::string id = body.is_object() ? body.value("PoolID", "") : "";
            std::string wanted = body.is_object() ? body.value("Address", "") : "";
            std::string pool = id.find('/') == std::string::npos ? "" : id.substr(id.find('/') + 1);
            std::string prefix = pool.find('/') == std::string::npos ? "" : pool.substr(pool.find('/'));
            out = { { "Address", wanted.empty() ? first_host(pool) : wanted + prefix }, { "Data", Json::object() } };
        }
        res.set_content(out.dump(), "application/vnd.docker.plugins.v1+json");
    });
    if (!server.bind_to_port(socket, 80)) {
        std::perror(("noop-driver: cannot listen on " + socket).c_str());
        return 1;
    }
    server.listen_after_bind();
    ::unlink(socket.c_str());
    return 0;
}
