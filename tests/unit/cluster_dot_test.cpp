// `cnm-shim cluster dot`: the rendering of the cluster's rows (as `cluster hosts|blocks|tunnels
// --json` print them) as Graphviz DOT — hosts, blocks with an edge host → block, this host's
// tunnels — with hostile names (quotes, backslashes, newlines, DOT syntax) kept as distinct,
// harmless nodes. The output is parsed by Graphviz's own `dot` (scripts/deps.sh installs it):
// -Tsvg must accept it and -Tjson must see exactly the nodes and edges drawn.

#include "admin.hpp"
#include "helpers.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <set>
#include <sstream>
#include <unistd.h>

using namespace cnm;

namespace {

Json parse(const std::string& s)
{
    return Json::parse(s);
}

size_t count(const std::string& s, const std::string& what)
{
    size_t n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1))
        ++n;
    return n;
}

std::string read(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

const char* dot_bin = "/usr/bin/dot";

} // namespace

TEST_CASE("cluster dot: hosts, blocks and tunnels from JSON rows, hostile names escaped, valid for Graphviz")
{
    const std::string evil = "ev\"il\\";  // ev"il\   .
    const std::string evil2 = "ev\"il";   // ev"il    (must stay another node)
    const std::string inject = "x\n\"]; \"pwn\" [color=red]; \"y";
    Json hosts = Json::array({
        { { "node", "node-a" }, { "vtep", "10.213.196.1" }, { "mac", "02:0a:d5:c4:01:00" }, { "lease", "alive" }, { "blocks", 1 } },
        { { "node", "node-b" }, { "vtep", "10.213.196.2" }, { "mac", "" }, { "lease", "expired" }, { "blocks", 2 } },
        { { "node", evil }, { "vtep", "10.213.196.3" }, { "lease", "alive" } },
        { { "node", evil2 }, { "vtep", "10.213.196.4" }, { "lease", "alive" } },
        { { "node", inject }, { "vtep", "10.213.196.5" }, { "lease", "alive" } },
        { { "vtep", "no node: skipped" } },
        42,
    });
    Json blocks = Json::array({
        { { "network", "net" }, { "block", "10.213.198.0/26" }, { "node", "node-a" }, { "vtep", "10.213.196.1" }, { "used", 2 }, { "free", 59 } },
        { { "network", "net" }, { "block", "10.213.198.64/26" }, { "node", "node-b" }, { "vtep", "10.213.196.2" }, { "used", nullptr }, { "free", nullptr } },
        { { "network", "net" }, { "block", "fd00:213:198::40/122" }, { "node", "node-b" }, { "vtep", "10.213.196.2" }, { "used", nullptr } },
        { { "network", "n\\\"" }, { "block", "10.213.198.128/26" }, { "node", evil }, { "vtep", "10.213.196.3" } },
        // A holder with no host record (its lease is gone, the key too): drawn from the block.
        { { "network", "net" }, { "block", "10.213.198.192/26" }, { "node", "ghost" }, { "vtep", "10.213.196.6" } },
    });
    Json tunnels = Json::array({
        { { "network", "net" }, { "device", "cnmvx1" }, { "block", "10.213.198.64/26" }, { "via", "10.213.198.65" }, { "vtep", "10.213.196.2" } },
        { { "network", "net" }, { "device", "cnmvx1" }, { "block", "fd00:213:198::40/122" }, { "via", "fd00:213:198::41" }, { "vtep", "10.213.196.2" } },
        { { "network", "n\\\"" }, { "device", "cnmvx2" }, { "block", "10.213.198.128/26" }, { "vtep", "10.213.196.3" } },
        // A route whose VTEP no host or block names any more.
        { { "network", "net" }, { "device", "cnmvx1" }, { "block", "10.213.199.0/26" }, { "vtep", "10.213.196.99" } },
        // Without a VTEP (its neighbour is missing): not a tunnel.
        { { "network", "net" }, { "device", "cnmvx1" }, { "block", "10.213.199.64/26" }, { "vtep", "" } },
    });
    std::string out = shim::cluster_dot(hosts, blocks, tunnels, "node-a");
    INFO(out);

    CHECK(out.rfind("digraph cnm_cluster {\n", 0) == 0);
    CHECK(out.size() >= 2);
    CHECK(out.substr(out.size() - 2) == "}\n");
    CHECK(count(out, " -> ") == 5 + 3);           // host → block, and three tunnels
    CHECK(count(out, "[shape=box") == 5 + 1 + 1); // the hosts, ghost, the unknown VTEP
    CHECK(count(out, "[shape=ellipse") == 5);
    // Escaped, never dropped: two hostile names stay two nodes.
    CHECK(out.find("\"host:ev\\\"il\\\\\" [") != std::string::npos);
    CHECK(out.find("\"host:ev\\\"il\" [") != std::string::npos);
    CHECK(out.find("\"pwn\" [color=red]") == std::string::npos);
    // One line per statement: a newline in a name is written as an escape, not a line break.
    CHECK(count(out, "\n") == 4 + 7 + 5 + 5 + 3);
    // The tunnel to node-b carries both of its blocks; node-b's lease is drawn expired.
    CHECK(out.find("\"host:node-a\" -> \"host:node-b\" [style=bold, color=blue, label=\"tunnel net to 10.213.196.2\\n10.213.198.64/26\\nfd00:213:198::40/122\"]")
        != std::string::npos);
    CHECK(out.find("\"host:node-b\" [shape=box, label=\"node-b\\nvtep 10.213.196.2\\nlease expired\", style=dashed") != std::string::npos);
    CHECK(out.find("\"host:node-a\" [shape=box, label=\"node-a\\nvtep 10.213.196.1\\nlease alive\", penwidth=2]") != std::string::npos);
    CHECK(out.find("used 2, free 59") != std::string::npos);
    CHECK(out.find("\"host:node-a\" -> \"vtep:10.213.196.99\"") != std::string::npos);

    // Nothing at all is still a graph.
    CHECK(shim::cluster_dot(Json::array(), Json::array(), Json::array(), "node-a") == "digraph cnm_cluster {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n}\n");
    CHECK(shim::cluster_dot(Json::object(), "x", nullptr, "") == shim::cluster_dot(Json::array(), Json::array(), Json::array(), ""));

    if (::access(dot_bin, X_OK) != 0) {
        FAIL_CHECK("no ", dot_bin, ": install graphviz (scripts/deps.sh) to validate the DOT");
        return;
    }
    test::TempDir dir;
    std::ofstream(dir.path() + "/g.dot") << out;
    std::string cmd = std::string(dot_bin) + " -Tsvg " + dir.path() + "/g.dot -o " + dir.path() + "/g.svg 2>" + dir.path() + "/err";
    CHECK_MESSAGE(std::system(cmd.c_str()) == 0, read(dir.path() + "/err"));
    CHECK(read(dir.path() + "/err").empty());
    CHECK(read(dir.path() + "/g.svg").find("<svg") != std::string::npos);
    cmd = std::string(dot_bin) + " -Tjson " + dir.path() + "/g.dot -o " + dir.path() + "/g.json 2>" + dir.path() + "/err";
    REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, read(dir.path() + "/err"));
    Json graph = parse(read(dir.path() + "/g.json"));
    std::set<std::string> names;
    for (auto& o : graph.value("objects", Json::array()))
        names.insert(o.value("name", ""));
    CHECK(names.size() == 7 + 5);
    CHECK(graph.value("edges", Json::array()).size() == 8);
    // Graphviz reads "\\" in an ID as two characters: the names are the escaped ones, distinct.
    CHECK(names.count("host:ev\"il\\\\"));
    CHECK(names.count("host:ev\"il"));
    CHECK(names.count("host:ghost"));
    CHECK_FALSE(names.count("pwn"));
}
