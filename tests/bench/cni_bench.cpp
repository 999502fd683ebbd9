// cni-bench: times CNI plugin executables the way a runtime runs them (fork/exec, CNI_* env, conf
// on stdin, result on stdout), ours against the reference plugins (and, with --base, a second
// build of ours, e.g. the landed one), interleaved in the same rounds so that a noisy machine
// slows all alike. Reports medians, p90, the ratios, the floors measured in the same rounds, and
// peak RSS per exec.
//
//   cni-bench ipam     ipam vs host-local (and base): ADD and DEL on a pool with one resident
//                      lease, then ADD at 0 / 200 / 1000 / 5000 / 20000 existing leases
//   cni-bench bridge   bridge+ipam vs bridge+host-local (and base), on a network with one resident
//   cni-bench macvlan  endpoint; the ADD that creates the network and the DEL of its last
//                      endpoint apart
//   cni-bench fill     ADD/CHECK/STATUS/DEL on a network with N (1000) endpoints vs one, with the
//                      kernel floor at the same N; GC of the full network with a 10000-entry list
//   cni-bench nets     ADD with 500 networks (and bridges) on the host vs none
//   cni-bench gc       ipam GC with 10000 attachments, all in the valid list: µs per attachment
//   cni-bench parallel 64 ADDs at once on one network vs 64 one after the other
//
// Every namespace is made by the bench (prefix cnmbn-<tag>-) and removed at exit, also after a
// failed check or a signal. Addresses: 10.213.220.0/22 for anything on a link; the ipam-only
// benches keep 10.213.0.0/16 (records only, never on a link: 20000 leases need more than a /22).

#include "cni/conf.hpp"
#include "cni/ipam_conf.hpp"
#include "cnm/endpoint.hpp"
#include "cnm/state.hpp"
#include "netlink/route.hpp"
#include "netlink/socket.hpp"
#include "netns/netns.hpp"
#include "store/file_store.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cnm;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

struct Run {
    double ms = 0;
    double cpu_ms = 0; // the child's user + system time (rusage): less sensitive to a loaded machine than wall time
    double wait_ms = -1; // the child's time runnable but not running (schedstat's run_delay): preempted, or queued behind others; -1 unknown
    long rss_kb = 0;
    int status = 0;
    std::string out;
    bool ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
};

// Peak RSS: ru_maxrss after an exec still reports the memory of the process that called exec
// (with posix_spawn, the benchmark itself), so RSS runs go through a tiny static launcher
// (exec_shim.c) that forks from its own small image and reports the plugin's peak. Timing runs
// exec the plugin directly.
std::string g_shim;
std::string g_rss_file;
std::string g_work;
std::string g_tag;                 // netns names: cnmbn-<tag>-…
std::vector<std::string> g_netns;  // namespaces still present, removed at exit whatever happens
int g_origin_ns = -1;              // the bench's own netns
std::vector<std::string> g_wrap;   // a command the plugin runs under (strace), for the traced runs only
bool g_container_ipv6 = true;      // fill, nets --container-ipv6 off: containers' netns without IPv6

[[noreturn]] void die(const std::string& what)
{
    std::cerr << "cni-bench: " << what << "\n";
    std::exit(1);
}

std::string g_prefix = "cnmbn";      // the vxlan mode takes its prefix from its script (--prefix)
std::string ns_name(const std::string& what) { return g_prefix + "-" + g_tag + "-" + what; }

void add_netns(const std::string& name)
{
    if (std::system(("ip netns add " + name).c_str()) != 0)
        die("ip netns add " + name + " failed");
    g_netns.push_back(name);
}

// A container's netns. With --container-ipv6 off, IPv6 is off in it (`all` and `default`, before
// any interface arrives): its interfaces then send no DAD, MLD or router solicitation, which a
// bridge floods to every port, and drop the IPv6 floods they still get before the IPv6 stack
// (the bridge still copies each flooded frame to every port). That isolates what the containers'
// IPv6 costs an ADD on a bridge with many ports.
void add_container_netns(const std::string& name)
{
    add_netns(name);
    if (g_container_ipv6)
        return;
    auto target = Netns::open("/run/netns/" + name);
    if (!target)
        die("open netns " + name + ": " + target.error().text());
    auto guard = NetnsGuard::enter(*target); // back to the caller's netns at the end of this scope
    if (!guard)
        die("enter netns " + name + ": " + guard.error().text());
    for (const char* key : { "all", "default" })
        if (auto off = write_sysctl(std::string("net/ipv6/conf/") + key + "/disable_ipv6", "1"); !off)
            die("IPv6 off in " + name + ": " + off.error().text());
}

void del_netns(const std::string& name)
{
    (void)std::system(("ip netns del " + name + " 2>/dev/null").c_str());
    g_netns.erase(std::remove(g_netns.begin(), g_netns.end(), name), g_netns.end());
}

void shell(const std::string& cmd)
{
    if (std::system(cmd.c_str()) != 0)
        die("failed: " + cmd);
}

void enter_fd(int fd)
{
    if (::setns(fd, CLONE_NEWNET) < 0)
        die(std::string("setns: ") + std::strerror(errno));
}

// A "host": a netns of its own that plugins run in (the bench enters it before each exec), with a
// netlink socket there for the floors.
struct Host {
    std::string name;
    int fd = -1;
    std::unique_ptr<netlink::Socket> nl;
    void enter() const { enter_fd(fd); }
};

Host make_host(const std::string& what)
{
    Host h;
    h.name = ns_name(what);
    add_netns(h.name);
    h.fd = ::open(("/run/netns/" + h.name).c_str(), O_RDONLY | O_CLOEXEC);
    if (h.fd < 0)
        die("open netns " + h.name);
    shell("ip -n " + h.name + " link set lo up");
    h.enter();
    auto nl = netlink::Socket::open();
    if (!nl)
        die("netlink: " + nl.error().msg);
    h.nl = nl.release_value();
    enter_fd(g_origin_ns);
    return h;
}

// Each timed call starts with nothing dirty on the state file system (syncfs, untimed). host-local
// never flushes; without this its dirty lease files are written back during our next fsyncs, and
// the reference's cost is charged to us.
int g_sync_fd = -1;

// An empty work dir, and the fd exec_plugin syncs through.
void fresh_work_dir(const std::string& work)
{
    fs::remove_all(work);
    fs::create_directories(work);
    if (g_sync_fd >= 0)
        ::close(g_sync_fd);
    g_sync_fd = ::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

struct Spawned {
    pid_t pid = 0;
    int out = -1;
    Clock::time_point start;
};

Spawned spawn_plugin(const std::string& path, const std::vector<std::string>& env, const std::string& input, bool via_shim = false)
{
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0)
        die("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<std::string> vars = env;
    if (via_shim)
        vars.push_back("CNM_BENCH_RSS_FILE=" + g_rss_file);
    std::vector<char*> envp;
    for (auto& e : vars)
        envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& w : g_wrap)
        argv.push_back(const_cast<char*>(w.c_str()));
    if (via_shim)
        argv.push_back(const_cast<char*>(g_shim.c_str()));
    argv.push_back(const_cast<char*>(path.c_str()));
    argv.push_back(nullptr);
    Spawned s;
    s.start = Clock::now();
    if (int err = ::posix_spawn(&s.pid, argv[0], &actions, nullptr, argv.data(), envp.data()); err != 0)
        die(std::string("cannot run ") + argv[0] + ": " + std::strerror(err));
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    // Confs are small (the GC list's 10000 entries are ~600 KB: the child reads while we write).
    size_t done = 0;
    while (done < input.size()) {
        ssize_t n = ::write(in[1], input.data() + done, input.size() - done);
        if (n <= 0)
            break;
        done += static_cast<size_t>(n);
    }
    ::close(in[1]);
    s.out = out[0];
    return s;
}

// The second field of a schedstat file (run_delay, ns) in ms; -1 when it cannot be read.
double run_delay_ms(const std::string& file)
{
    char buf[128];
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    unsigned long long runtime = 0, delay = 0;
    return std::sscanf(buf, "%llu %llu", &runtime, &delay) == 2 ? static_cast<double>(delay) / 1e6 : -1;
}

Run finish(const Spawned& s, bool via_shim = false)
{
    Run run;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(s.out, buf, sizeof buf)) > 0)
        run.out.append(buf, static_cast<size_t>(n));
    ::close(s.out);
    // Exited but not reaped yet: the time is taken, and its schedstat is final and still readable.
    siginfo_t info {};
    bool exited = ::waitid(P_PID, static_cast<id_t>(s.pid), &info, WEXITED | WNOWAIT) == 0;
    run.ms = ms_since(s.start);
    if (exited)
        run.wait_ms = run_delay_ms("/proc/" + std::to_string(s.pid) + "/schedstat");
    struct rusage usage {};
    ::wait4(s.pid, &run.status, 0, &usage);
    if (!exited)
        run.ms = ms_since(s.start);
    run.cpu_ms = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e3
        + static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e3;
    if (via_shim) {
        std::ifstream in(g_rss_file);
        in >> run.rss_kb;
    }
    return run;
}

Run exec_plugin(const std::string& path, const std::vector<std::string>& env, const std::string& input, bool via_shim = false)
{
    if (g_sync_fd >= 0)
        ::syncfs(g_sync_fd);
    return finish(spawn_plugin(path, env, input, via_shim), via_shim);
}

struct Stats {
    std::vector<double> ms;
    std::vector<double> cpu; // the plugin's own CPU time, where measured
    std::vector<double> wait; // time runnable but not running, where measured (not lined up with ms)
    long rss_kb = 0; // from the runs made through the shim only
    void add(const Run& r)
    {
        ms.push_back(r.ms);
        cpu.push_back(r.cpu_ms);
        if (r.wait_ms >= 0)
            wait.push_back(r.wait_ms);
    }
    void add(double v) { ms.push_back(v); }
    void add_rss(const Run& r) { rss_kb = std::max(rss_kb, r.rss_kb); }
    double pct(double p) const
    {
        auto v = ms;
        std::sort(v.begin(), v.end());
        return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
    }
    double median() const { return pct(0.5); }
    static double median_of(std::vector<double> v)
    {
        std::sort(v.begin(), v.end());
        return v.empty() ? 0 : v[v.size() / 2];
    }
    double cpu_median() const { return median_of(cpu); }
    double wait_median() const { return median_of(wait); }
};

// The median over rounds of a[i] / b[i]: both timed in round i, so a drift of the machine's load
// between rounds cancels.
double paired(const std::vector<double>& a, const std::vector<double>& b)
{
    std::vector<double> r;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        if (b[i] > 0)
            r.push_back(a[i] / b[i]);
    std::sort(r.begin(), r.end());
    return r.empty() ? 0 : r[r.size() / 2];
}

std::vector<std::string> cni_env(const std::string& command, const std::string& id, const std::string& path,
    const std::string& netns = "/run/netns/bench", const std::string& ifname = "eth0")
{
    return { "CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netns, "CNI_IFNAME=" + ifname, "CNI_PATH=" + path,
        "PATH=/usr/bin:/bin" };
}

// The order of a round's items: a permutation drawn per round (fixed seeds, so runs repeat), not
// a rotation. Under a rotation each item always follows the same neighbour, and the one after the
// fsync probe or a veth delete paid for it in every round: with the same build as both "ours" and
// "base", the link bench put their DELs 0.81x apart (paired).
// Issue 14: where the kernel's own work grows with N (its floor at N over 1.2x the one at 1), the
// target is taken against the floor at the same N: what we add above it, at N against at 1, must
// stay flat. Nothing when the floor does not grow (the raw N/1 is the target then), or when ours
// is below its floor at either N (a DEL's kernel wait swings more than our whole work).
std::optional<double> own_work_ratio(double ours_n, double floor_n, double ours_1, double floor_1)
{
    if (floor_n <= 1.2 * floor_1 || ours_1 <= floor_1 || ours_n <= floor_n)
        return std::nullopt;
    return (ours_n - floor_n) / (ours_1 - floor_1);
}

// The same, paired: our own work in round i is ours[i] - exec_floor[i] - kernel[i], all timed in
// that round, so a drift of the machine's load between rounds cancels; the ratio of the medians
// of those at N and at 1 (not a median of per-round ratios, which a small difference at 1 blows
// up). Nothing where the vectors do not line up or a median is not above 0.
std::optional<double> own_work_paired(const Stats& ours_n, const Stats& ours_1, const Stats& exec_floor, const Stats& kernel_n,
    const Stats& kernel_1)
{
    size_t n = ours_n.ms.size();
    if (n == 0 || ours_1.ms.size() != n || exec_floor.ms.size() != n || kernel_n.ms.size() != n || kernel_1.ms.size() != n)
        return std::nullopt;
    std::vector<double> at_n, at_1;
    for (size_t i = 0; i < n; ++i) {
        at_n.push_back(ours_n.ms[i] - exec_floor.ms[i] - kernel_n.ms[i]);
        at_1.push_back(ours_1.ms[i] - exec_floor.ms[i] - kernel_1.ms[i]);
    }
    double mn = Stats::median_of(at_n), m1 = Stats::median_of(at_1);
    if (mn <= 0 || m1 <= 0)
        return std::nullopt;
    return mn / m1;
}

// Beside own_work_ratio: how long ours and its floor waited for a CPU (runnable, not running:
// preempted by kernel workers, or queued behind other processes). Kernel work an ADD sets off and
// leaves to its workers preempts an exec'd plugin that is still running, while the in-process
// floor has mostly returned by then; this shows how much of the difference that is.
void print_waiting(const char* indent, const std::string& at_n, const std::string& at_1, const Stats& ours_n, const Stats& ours_1,
    const Stats& exec_floor, const Stats& kernel_n, const Stats& kernel_1)
{
    for (const Stats* s : { &ours_n, &ours_1, &exec_floor, &kernel_n, &kernel_1 })
        if (s->wait.empty()) {
            std::printf("%swaiting for a CPU: not measured (no schedstat here)\n", indent);
            return;
        }
    std::printf("%swaiting for a CPU (medians): ours at %s %.2f ms, at %s %.2f ms; the floor's (exec + kernel) %.2f vs %.2f ms\n", indent,
        at_n.c_str(), ours_n.wait_median(), at_1.c_str(), ours_1.wait_median(), exec_floor.wait_median() + kernel_n.wait_median(),
        exec_floor.wait_median() + kernel_1.wait_median());
}

std::vector<size_t> round_order(size_t n, int round)
{
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::mt19937 rng(static_cast<unsigned>(round + 3) * 2654435761u);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
}

std::string ipam_conf(const std::string& type, const std::string& data_dir, const std::string& version = "1.0.0")
{
    return R"({"cniVersion":")" + version + R"(","name":"bench","type":"bridge","ipam":{"type":")" + type + R"(","dataDir":")"
        + data_dir + R"(","ranges":[[{"subnet":"10.213.0.0/16"}]]}})";
}

void check_ok(const Run& r, const std::string& what)
{
    if (!r.ok())
        die(what + " failed (status " + std::to_string(r.status) + "): " + r.out);
}

// A conf with one more top-level key (prevResult, the GC list).
std::string with_key(const std::string& conf, const std::string& key, const std::string& value)
{
    return conf.substr(0, conf.rfind('}')) + ",\"" + key + "\":" + value + "}";
}

std::string trim(std::string s)
{
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

void print_row(const std::string& what, const Stats& ours, const Stats& ref, const Stats* base = nullptr)
{
    std::printf("%-30s ours %7.2f ms (p90 %6.2f)", what.c_str(), ours.median(), ours.pct(0.9));
    if (base)
        std::printf("   base %7.2f ms (p90 %6.2f)", base->median(), base->pct(0.9));
    std::printf("   ref %7.2f ms (p90 %6.2f)   ref/ours %5.2fx", ref.median(), ref.pct(0.9), ref.median() / ours.median());
    if (base)
        std::printf("   base/ours %5.2fx (paired %5.2fx)", base->median() / ours.median(), paired(base->ms, ours.ms));
    std::printf("\n");
    if (!ours.cpu.empty() && ours.cpu_median() > 0) {
        std::printf("%-30s   cpu %7.2f ms", "", ours.cpu_median());
        if (base)
            std::printf("                   cpu %7.2f ms", base->cpu_median());
        std::printf("                  cpu %7.2f ms", ref.cpu_median());
        if (base)
            std::printf("   cpu base/ours %5.2fx (paired %5.2fx)", base->cpu_median() / ours.cpu_median(), paired(base->cpu, ours.cpu));
        std::printf("\n");
    }
}

// The durability the store's rule (temp, fsync, rename, fsync dir) asks of one ADD, and nothing
// else, in-process: a lease and an endpoint record — they live in different directories (the
// pool's, shared between networks, and the network's) — each written to a temp file and renamed
// into place, then the files' and the directories' fsyncs, in the order our FileStore::sync uses.
double durable_add_floor(const std::string& work)
{
    static int round = 0;
    std::string dirs[2] = { work + "/floor/pool/leases", work + "/floor/network/endpoints" };
    size_t sizes[2] = { 93, 365 }; // a lease and a ready endpoint record, as our ipam writes them
    int dfd[2], fd[2];
    std::string name = "doc-" + std::to_string(round++);
    for (int k = 0; k < 2; ++k) {
        fs::create_directories(dirs[k]);
        dfd[k] = ::open(dirs[k].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    ::syncfs(g_sync_fd);
    auto start = Clock::now();
    for (int k = 0; k < 2; ++k) {
        fd[k] = ::openat(dfd[k], ".tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        std::string doc(sizes[k], ' ');
        if (fd[k] < 0 || ::write(fd[k], doc.data(), doc.size()) != static_cast<ssize_t>(doc.size())
            || ::renameat(dfd[k], ".tmp", dfd[k], name.c_str()) < 0)
            die("durability floor");
    }
    for (int f : { fd[0], fd[1], dfd[0], dfd[1] })
        if (::fsync(f) < 0)
            die("fsync");
    double ms = ms_since(start);
    for (int k = 0; k < 2; ++k) {
        ::unlinkat(dfd[k], name.c_str(), 0);
        ::close(fd[k]);
        ::close(dfd[k]);
    }
    return ms;
}

// What every exec pays before any work: /bin/true, and VERSION of each plugin (start-up alone).
struct StartUp {
    Stats floor, ours, ref, base;
};

StartUp measure_start_up(const std::string& ours, const std::string& ref, const std::string& base, int reps)
{
    StartUp s;
    for (int i = 0; i < reps; ++i) {
        s.floor.add(exec_plugin("/bin/true", {}, ""));
        s.ours.add(exec_plugin(ours, { "CNI_COMMAND=VERSION" }, ""));
        s.ref.add(exec_plugin(ref, { "CNI_COMMAND=VERSION" }, ""));
        if (!base.empty())
            s.base.add(exec_plugin(base, { "CNI_COMMAND=VERSION" }, ""));
    }
    return s;
}

// Seeds host-local's directory directly: one file per address ("<id>\r\n<ifname>") — the layout
// host-local itself writes — so its O(n) scan sees `count` leases.
void seed_host_local(const std::string& dir, size_t from, size_t to)
{
    fs::create_directories(dir + "/bench");
    for (size_t i = from; i < to; ++i) {
        IpAddr a { 4, (u128(10) << 24 | u128(213) << 16) + 2 + i };
        std::ofstream(dir + "/bench/" + a.str()) << "seed-" << i << "\r\neth0";
    }
    IpAddr last { 4, (u128(10) << 24 | u128(213) << 16) + 1 + to };
    std::ofstream(dir + "/bench/" + "last_reserved_ip.0") << (to ? last.str() : "");
}

size_t open_fds()
{
    size_t n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

// Seeds ours through the library's own ADD (what the ipam plugin's ADD runs), so the records are
// exactly what the plugin writes; one sync per 500 ADDs instead of one per ADD.
void seed_ours(const std::string& dir, size_t from, size_t to, const std::string& version = "1.0.0")
{
    auto conf = cni::parse_conf(ipam_conf("ipam", dir, version));
    if (!conf)
        die("seed conf: " + conf.error().msg);
    auto args = cni::parse_cni_args("");
    auto ic = ipam::parse_ipam_conf(*conf, *args);
    if (!ic)
        die("seed ipam conf: " + ic.error().msg);
    auto state = State::open(*conf);
    if (!state)
        die("seed state: " + state.error().msg);
    PoolAddresses source(*ic);
    Endpoints endpoints(*state->registry, nullptr, nullptr);
    NetworkSpec network { conf->name, conf->type, Frontend::Cni, network_options(*conf) };
    for (size_t i = from; i < to; ++i) {
        std::string id = "seed-" + std::to_string(i);
        auto added = endpoints.add({ network, id, "eth0", "/run/netns/seed", Target::in_netns("/run/netns/seed", "eth0"), "" }, source);
        if (!added)
            die("seeding failed: " + added.error().msg + " " + added.error().details + " (open fds: " + std::to_string(open_fds()) + ")");
        // The store keeps each written file open until its sync (two per ADD): flush every 500.
        if ((i + 1 - from) % 500 == 0 && !state->store->sync())
            die("seeding: sync failed");
    }
    if (std::getenv("CNM_BENCH_FDS"))
        std::fprintf(stderr, "seeded %zu..%zu: %zu fds open in the bench\n", from, to, open_fds());
    if (!state->store->sync())
        die("seeding: sync failed");
    ::sync();
}

// ---- ipam ----------------------------------------------------------------------------------------

int bench_ipam(int reps, const std::string& ours_dir, const std::string& ref_dir, const std::string& base_dir, const std::string& work)
{
    bool with_base = !base_dir.empty();
    std::string ours = ours_dir + "/ipam", ref = ref_dir + "/host-local", base = with_base ? base_dir + "/ipam" : "";
    fresh_work_dir(work);
    struct Plug {
        std::string label, bin, conf;
        Stats add, del;
    };
    std::vector<Plug> plugs { { "ours", ours, ipam_conf("ipam", work + "/ours"), {}, {} },
        { "host-local", ref, ipam_conf("host-local", work + "/host-local"), {}, {} } };
    if (with_base)
        plugs.push_back({ "base", base, ipam_conf("ipam", work + "/base"), {}, {} });
    std::string path = ours_dir + ":" + ref_dir;

    StartUp start_up = measure_start_up(ours, ref, base, reps);
    std::printf("exec floor (/bin/true): %.2f ms\n", start_up.floor.median());
    print_row("VERSION (start-up cost)", start_up.ours, start_up.ref, with_base ? &start_up.base : nullptr);
    std::printf("\n");
    // One resident lease in each pool, so the timed ADD neither creates the network nor its DEL
    // removes it (the first ADD and the last DEL are reported apart).
    for (auto& p : plugs)
        check_ok(exec_plugin(p.bin, cni_env("ADD", "resident", path), p.conf), p.label + " resident ADD");

    Stats static_exec, durable, first_add_ours, last_del_ours;
    for (int i = 0; i < reps; ++i) {
        static_exec.add(exec_plugin(g_shim, {}, ""));
        durable.add(durable_add_floor(work));
        std::string id = "bench-" + std::to_string(i);
        auto add_order = round_order(plugs.size(), 2 * i), del_order = round_order(plugs.size(), 2 * i + 1);
        for (size_t k = 0; k < plugs.size(); ++k) {
            auto& p = plugs[add_order[k]];
            Run r = exec_plugin(p.bin, cni_env("ADD", id, path), p.conf);
            check_ok(r, p.label + " ADD");
            p.add.add(r);
        }
        for (size_t k = 0; k < plugs.size(); ++k) {
            auto& p = plugs[del_order[k]];
            Run r = exec_plugin(p.bin, cni_env("DEL", id, path), p.conf);
            check_ok(r, p.label + " DEL");
            p.del.add(r);
        }
        // Ours on a pool of its own with no resident: the ADD that creates the network, the DEL
        // that removes it.
        std::string lone = ipam_conf("ipam", work + "/ours-lone");
        Run a = exec_plugin(ours, cni_env("ADD", id, path), lone);
        check_ok(a, "our first ADD");
        first_add_ours.add(a);
        Run d = exec_plugin(ours, cni_env("DEL", id, path), lone);
        check_ok(d, "our last DEL");
        last_del_ours.add(d);
    }
    for (int i = 0; i < 5; ++i)
        for (auto& p : plugs) {
            std::string id = "rss-" + std::to_string(i);
            Run r = exec_plugin(p.bin, cni_env("ADD", id, path), p.conf, true);
            check_ok(r, "RSS ADD");
            p.add.add_rss(r);
            check_ok(exec_plugin(p.bin, cni_env("DEL", id, path), p.conf), "RSS DEL");
        }
    std::printf("ipam vs host-local%s, %d interleaved rounds (a /16 with one resident lease)\n", with_base ? " and base" : "", reps);
    const Stats* b_add = with_base ? &plugs[2].add : nullptr;
    const Stats* b_del = with_base ? &plugs[2].del : nullptr;
    print_row("ADD", plugs[0].add, plugs[1].add, b_add);
    print_row("DEL", plugs[0].del, plugs[1].del, b_del);
    std::printf("%-30s ours %7.2f ms;  DEL of its last endpoint %.2f ms\n", "ADD creating the network", first_add_ours.median(),
        last_del_ours.median());
    std::printf("peak RSS of ADD: ours %ld KiB, host-local %ld KiB (ours/ref %.2f)", plugs[0].add.rss_kb, plugs[1].add.rss_kb,
        static_cast<double>(plugs[0].add.rss_kb) / static_cast<double>(plugs[1].add.rss_kb));
    if (with_base)
        std::printf(", base %ld KiB", plugs[2].add.rss_kb);
    std::printf("\n");
    // The floor of an ipam ADD (issue 14): the exec of a static no-op. The 4-fsync probe is printed
    // beside it, as what a plugin that flushed its records would add.
    double floor = static_exec.median();
    std::printf("floor, same rounds: exec of a static no-op %.2f ms (cpu %.2f); ADD/floor: ours %.2f (cpu %.2f), ref %.2f%s; "
                "DEL/floor: ours %.2f, ref %.2f; (durability of one ADD, 4 fsyncs, %.2f ms: not part of it)\n\n",
        floor, static_exec.cpu_median(), plugs[0].add.median() / floor, plugs[0].add.cpu_median() / static_exec.cpu_median(),
        plugs[1].add.median() / floor, with_base ? (", base " + std::to_string(plugs[2].add.median() / floor).substr(0, 4)).c_str() : "",
        plugs[0].del.median() / floor, plugs[1].del.median() / floor, durable.median());

    std::printf("ADD with existing leases in the /16 (ADD then DEL, %d runs each)\n", reps);
    std::string ours_state = work + "/scale-ours", ref_state = work + "/scale-host-local";
    std::string ours_conf = ipam_conf("ipam", ours_state), ref_conf = ipam_conf("host-local", ref_state);
    // The control: ours on an empty pool, timed in the same rounds as ours on the seeded one.
    // Both hold one resident lease at least (the first count), so no timed ADD creates the network.
    std::string empty_conf = ipam_conf("ipam", work + "/scale-empty");
    seed_ours(work + "/scale-empty", 0, 1);
    size_t seeded = 0;
    for (size_t count : { size_t(1), size_t(200), size_t(1000), size_t(5000), size_t(20000) }) {
        auto t0 = Clock::now();
        seed_ours(ours_state, seeded, count);
        seed_host_local(ref_state, seeded, count);
        double seed_ms = ms_since(t0);
        seeded = count;
        ::sync();
        Stats a_ours, a_ref, a_empty;
        for (int i = 0; i < reps; ++i) {
            std::string id = "scale-" + std::to_string(count) + "-" + std::to_string(i);
            for (int k = 0; k < 3; ++k) {
                int which = (i + k) % 3; // 0 ours, 1 host-local, 2 ours on the empty pool; rotated
                const std::string& bin = which == 1 ? ref : ours;
                const std::string& conf = which == 0 ? ours_conf : which == 1 ? ref_conf : empty_conf;
                Run r = exec_plugin(bin, cni_env("ADD", id, path), conf);
                check_ok(r, which == 1 ? "host-local ADD" : "our ADD");
                (which == 0 ? a_ours : which == 1 ? a_ref : a_empty).add(r);
                check_ok(exec_plugin(bin, cni_env("DEL", id, path), conf), "DEL");
            }
        }
        print_row("ADD at " + std::to_string(count) + " leases", a_ours, a_ref);
        std::printf("%-30s ours at %zu / ours at 1 in the same rounds = %.2f (target <= 1.2; seeding took %.1f s)\n", "", count,
            a_ours.median() / a_empty.median(), seed_ms / 1000);
    }
    return 0;
}

// ---- the kernel floor --------------------------------------------------------------------------

// One ADD's kernel work in-process, in `host`, into a fresh netns: a netlink socket of its own in
// the host (every exec'd plugin opens one), the netns opened and a socket made in it (any plugin
// must enter the netns to address the link and route through it), the master looked up by name,
// the link created there under the runtime's name (a veth, one queue each way, whose host end
// becomes a port of the master, its own IPv6 off first, and goes up; or a macvlan on the master), up, its address, and a
// default route when `gw` is set — the requests our plugins make; then its delete. A bridge ADD (isGateway, as the bench's confs) also does what the
// reference bridge does on every ADD besides: it lists the bridge's addresses (is the gateway
// there?), reads ip_forward, and looks the bridge up again once the port is in (its MAC may have
// changed; the result reports it). The host end's lookup after the create is left out where the
// kernel echoes the new link (NLM_F_ECHO, 6.3+), as our plugins leave it out.
struct KernelFloor {
    Stats add, del; // wall in ms; .cpu: the bench's own CPU time (getrusage) over the same calls
    Stats check;    // with_check: the queries of the CHECK that follows the ADD (timed_cycle)
    Stats checks;   // of add: the host socket, and a bridge's address list, ip_forward, re-read
    int veths = 0, echoed = 0; // veths created, and how many the kernel echoed (no lookup after)
};

/// How the floor made its veths, for its label.
const char* veth_how(const KernelFloor& k)
{
    return k.echoed == k.veths ? "veth create (echoed)" : k.echoed == 0 ? "veth create and lookup" : "veth create (echoed or looked up)";
}

double self_cpu_ms()
{
    struct rusage u {};
    ::getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3
        + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

// with_check: between the ADD and the DEL, what a CHECK of that ADD asks the kernel, as our
// plugins ask it (and the CHECK follows the ADD in each round of timed_cycle): a socket of its own
// in the host and one in the container, the container's link by name and its addresses, the master
// by name and, for a bridge, the host end by name. Nothing the ADD's timing includes.
Result<void> kernel_check_once(Host& host, const std::string& kind, const std::string& master_name, int container_fd)
{
    auto own = TRY(netlink::Socket::open());
    std::unique_ptr<netlink::Socket> inside;
    {
        enter_fd(container_fd);
        auto opened = netlink::Socket::open();
        host.enter();
        inside = TRY(std::move(opened));
    }
    auto link = TRY(netlink::get_link(*inside, "eth0"));
    if (!link)
        return make_error(Code::Kernel, "CHECK floor: no eth0 in the container");
    TRY(netlink::list_addresses(*inside, link->index));
    if (!TRY(netlink::get_link(*own, master_name)))
        return make_error(Code::Kernel, "CHECK floor: no master");
    if (kind != "macvlan" && !TRY(netlink::get_link(*own, "cnmbk0")))
        return make_error(Code::Kernel, "CHECK floor: no host end");
    return {};
}

void kernel_floor_once(Host& host, const std::string& kind, const std::string& master_name, const std::string& address,
    std::optional<IpAddr> gw, KernelFloor& out, bool with_check = false)
{
    static int round = 0;
    std::string ns = ns_name("k" + std::to_string(round++));
    add_container_netns(ns);
    host.enter();
    double w0 = run_delay_ms("/proc/thread-self/schedstat");
    double c0 = self_cpu_ms();
    auto t0 = Clock::now();
    double checks_ms = 0;
    auto own = netlink::Socket::open();
    if (!own)
        die("kernel floor: no netlink socket in " + host.name);
    checks_ms += ms_since(t0);
    netlink::Socket& hs = **own;
    auto target = Netns::open("/run/netns/" + ns);
    if (!target)
        die("kernel floor: " + target.error().msg);
    std::unique_ptr<netlink::Socket> inside;
    if (auto guard = NetnsGuard::enter(*target)) {
        if (auto opened = netlink::Socket::open())
            inside = opened.release_value();
    }
    if (!inside)
        die("kernel floor: no netlink socket in " + ns);
    auto master_link = netlink::get_link(hs, master_name);
    if (!master_link || !*master_link)
        die("kernel floor: no link " + master_name + " in " + host.name);
    int master = (*master_link)->index;
    auto configured = [&]() -> Result<void> {
        if (kind == "macvlan")
            TRY(netlink::create_macvlan(hs, { "eth0", master, target->fd(), 4 /* MACVLAN_MODE_BRIDGE */, std::nullopt, std::nullopt }));
        else {
            auto c = Clock::now();
            TRY(netlink::list_addresses(hs, master));
            char forward[4] = {};
            int fd = ::open("/proc/sys/net/ipv4/ip_forward", O_RDONLY | O_CLOEXEC);
            bool read = fd >= 0 && ::read(fd, forward, sizeof forward - 1) > 0;
            if (fd >= 0)
                ::close(fd);
            if (!read)
                return make_error(Code::Kernel, "cannot read ip_forward");
            checks_ms += ms_since(c);
            // Under its final name and with one queue each way, as our plugins create it: no
            // rename in the container, no cut of the queues after registration.
            auto peer = TRY(netlink::create_veth(hs, { "cnmbk0", "eth0", target->fd(), std::nullopt, std::nullopt }));
            ++out.veths;
            if (peer)
                ++out.echoed;
            else
                peer = TRY(netlink::get_link(hs, "cnmbk0"));
            if (!peer)
                return make_error(Code::Kernel, "the host end is missing");
            // The port's own IPv6 off before it goes up, as our plugins do, and like them going on
            // without it (no key without IPv6).
            (void)write_sysctl("net/ipv6/conf/cnmbk0/disable_ipv6", "1");
            netlink::LinkChange port;
            port.master = master;
            port.up = true;
            TRY(netlink::set_link(hs, peer->index, port));
        }
        auto link = TRY(netlink::get_link(*inside, "eth0"));
        if (!link)
            return make_error(Code::Kernel, "the new link is missing");
        netlink::LinkChange up;
        up.up = true;
        TRY(netlink::set_link(*inside, link->index, up));
        TRY(netlink::add_address(*inside, link->index, *IpNet::parse(address)));
        if (gw)
            TRY(netlink::add_route(*inside, { *IpNet::parse("0.0.0.0/0"), gw, link->index, {}, {}, {}, {} }));
        if (kind == "macvlan") {
            // A macvlan announces its new MAC (arp_notify, and ndisc_notify where there is IPv6),
            // as the reference's and ours do: two keys written in the container, entered for them.
            enter_fd(target->fd());
            auto arp = write_sysctl("net/ipv4/conf/eth0/arp_notify", "1");
            (void)write_sysctl("net/ipv6/conf/eth0/ndisc_notify", "1");
            host.enter();
            TRY(std::move(arp));
        }
        if (kind != "macvlan") {
            auto c = Clock::now();
            TRY(netlink::get_link(hs, master));
            checks_ms += ms_since(c);
        }
        return {};
    }();
    double add_ms = ms_since(t0);
    double c1 = self_cpu_ms();
    double w1 = run_delay_ms("/proc/thread-self/schedstat");
    Result<void> checked;
    if (with_check && configured) {
        auto tc = Clock::now();
        checked = kernel_check_once(host, kind, master_name, target->fd());
        out.check.add(ms_since(tc));
        out.check.cpu.push_back(self_cpu_ms() - c1);
        c1 = self_cpu_ms();
    }
    auto t1 = Clock::now();
    auto gone = configured ? netlink::delete_link(*inside, "eth0") : Result<void>(configured.error());
    double del_ms = ms_since(t1);
    double c2 = self_cpu_ms();
    inside.reset();
    enter_fd(g_origin_ns);
    del_netns(ns);
    if (!configured)
        die("kernel floor: " + configured.error().msg + " " + configured.error().details);
    if (!gone)
        die("kernel floor: " + gone.error().msg + " " + gone.error().details);
    if (!checked)
        die("kernel floor: " + checked.error().msg + " " + checked.error().details);
    out.add.add(add_ms);
    out.add.cpu.push_back(c1 - c0);
    if (w0 >= 0 && w1 >= w0)
        out.add.wait.push_back(w1 - w0);
    out.checks.add(checks_ms);
    out.del.add(del_ms);
    out.del.cpu.push_back(c2 - c1);
}

int link_index(Host& host, const std::string& name)
{
    auto l = netlink::get_link(*host.nl, name);
    if (!l || !*l)
        die("no link " + name + " in " + host.name);
    return (*l)->index;
}

// ---- bridge / macvlan: ours vs base vs the reference -----------------------------------------------

std::string link_conf(const std::string& kind, const std::string& name, const std::string& link, const std::string& ipam_type,
    const std::string& data_dir, const std::string& subnet, bool route, const std::string& version = "1.0.0")
{
    std::string keys = kind == "bridge" ? R"("bridge":")" + link + R"(","isGateway":true,)" : R"("master":")" + link + R"(","mode":"bridge",)";
    std::string conf = R"({"cniVersion":")" + version + R"(","name":")" + name + R"(","type":")" + kind + "\"," + keys;
    if (ipam_type.empty())
        return conf + R"("dataDir":")" + data_dir + "\"}";
    return conf + R"("ipam":{"type":")" + ipam_type + R"(","dataDir":")" + data_dir + R"(","ranges":[[{"subnet":")" + subnet + "\"}]]"
        + (route ? R"(,"routes":[{"dst":"0.0.0.0/0"}])" : "") + "}}";
}

// One network of one plugin build, in one host.
struct Net {
    std::string label, bin, conf;
    Host* host = nullptr;
    std::string ifname = "eth0";
    Stats add, del, check, status;
};

// ADD into a fresh netns (made untimed), then optionally CHECK and STATUS, then DEL; `extra` is
// added to the environment of each call.
void timed_cycle(Net& n, const std::string& id, const std::string& path, bool timed, bool check_status, const std::string& status_conf = "",
    const std::vector<std::string>& extra = {})
{
    static int round = 0;
    std::string ns = ns_name("c" + std::to_string(round++));
    add_container_netns(ns);
    n.host->enter();
    auto env = cni_env("ADD", id, path, "/run/netns/" + ns, n.ifname);
    env.insert(env.end(), extra.begin(), extra.end());
    Run add = exec_plugin(n.bin, env, n.conf);
    check_ok(add, n.label + " ADD");
    if (check_status) {
        env[0] = "CNI_COMMAND=CHECK";
        Run check = exec_plugin(n.bin, env, with_key(n.conf, "prevResult", trim(add.out)));
        check_ok(check, n.label + " CHECK");
        if (timed)
            n.check.add(check);
        if (!status_conf.empty()) {
            env[0] = "CNI_COMMAND=STATUS";
            Run status = exec_plugin(n.bin, env, status_conf);
            check_ok(status, n.label + " STATUS");
            if (timed)
                n.status.add(status);
        }
    }
    env[0] = "CNI_COMMAND=DEL";
    Run del = exec_plugin(n.bin, env, n.conf);
    check_ok(del, n.label + " DEL");
    enter_fd(g_origin_ns);
    if (timed) {
        n.add.add(add);
        n.del.add(del);
    }
    del_netns(ns);
}

void resident_add(Net& n, const std::string& id, const std::string& netns, const std::string& ifname, const std::string& path)
{
    n.host->enter();
    Run r = exec_plugin(n.bin, cni_env("ADD", id, path, "/run/netns/" + netns, ifname), n.conf);
    enter_fd(g_origin_ns);
    check_ok(r, n.label + " ADD of " + id + "/" + ifname + " (setup)");
}

// With CNM_BENCH_TRACE=DIR: one more ADD, CHECK (of that ADD's result) and DEL of each network
// under strace, counted (-c) and timed (-T -tt): DIR/<what>-at-<tag>-{c,T}-{add,check,del}.txt.
/// The command a traced run goes under: strace, counting (mode "c") or timing ("T"), into `out`.
std::vector<std::string> strace_wrap(const std::string& mode, const std::string& out)
{
    std::vector<std::string> wrap = { "/usr/bin/strace", "-f", "-qq" };
    if (mode == "c")
        wrap.push_back("-c");
    else
        wrap.insert(wrap.end(), { "-T", "-tt" });
    wrap.insert(wrap.end(), { "-o", out });
    return wrap;
}

void trace_cycles(const std::string& what, const std::vector<std::pair<Net*, std::string>>& nets, const std::string& path)
{
    const char* dir = std::getenv("CNM_BENCH_TRACE");
    if (!dir || !*dir)
        return;
    fs::create_directories(dir);
    static int round = 0;
    for (auto& [n, tag] : nets)
        for (std::string mode : { "c", "T" }) {
            std::string prefix = std::string(dir) + "/" + what + "-at-" + tag + "-" + mode;
            g_wrap = strace_wrap(mode, prefix + "-add.txt");
            std::string ns = ns_name("tr" + std::to_string(round++));
            add_container_netns(ns);
            n->host->enter();
            auto env = cni_env("ADD", "trace-" + tag + mode, path, "/run/netns/" + ns, "eth0");
            Run add = exec_plugin(n->bin, env, n->conf);
            env[0] = "CNI_COMMAND=CHECK";
            g_wrap.back() = prefix + "-check.txt";
            Run check = add.ok() ? exec_plugin(n->bin, env, with_key(n->conf, "prevResult", trim(add.out))) : add;
            env[0] = "CNI_COMMAND=DEL";
            g_wrap.back() = prefix + "-del.txt";
            Run del = exec_plugin(n->bin, env, n->conf);
            g_wrap.clear();
            enter_fd(g_origin_ns);
            del_netns(ns);
            check_ok(add, "traced ADD");
            check_ok(check, "traced CHECK");
            check_ok(del, "traced DEL");
        }
    std::printf("strace of one ADD, CHECK and DEL each: %s/%s-at-*-{c,T}-{add,check,del}.txt\n", dir, what.c_str());
}

int bench_link_plugin(const std::string& kind, int reps, const std::string& ours_dir, const std::string& ref_dir, const std::string& base_dir,
    const std::string& work)
{
    bool with_base = !base_dir.empty();
    std::string ours = ours_dir + "/" + kind, ref = ref_dir + "/" + kind, base = with_base ? base_dir + "/" + kind : "";
    fresh_work_dir(work);
    Host host = make_host("host");
    if (kind == "macvlan")
        shell("ip -n " + host.name + " link add cnmbnmv0 type veth peer name cnmbnmv1 && ip -n " + host.name + " link set cnmbnmv0 up");
    shell("ip -n " + host.name + " link add cnmbnK0 type bridge && ip -n " + host.name + " addr add 10.213.223.1/24 dev cnmbnK0 && ip -n "
        + host.name + " link set cnmbnK0 up");
    std::string path = ours_dir + ":" + ref_dir;
    // Per build: a network with one resident endpoint (the timed one) and one without (its ADD
    // creates the network, its DEL removes the last endpoint). 10.213.220-222.0/24, split.
    struct Build {
        std::string label, bin, ipam, letter;
        int third;
    };
    std::vector<Build> builds { { "ours", ours, "ipam", "O", 220 }, { "ref", ref, "host-local", "R", 222 } };
    if (with_base)
        builds.push_back({ "base", base, "ipam", "B", 221 });
    std::vector<Net> resident, lone;
    for (auto& b : builds) {
        std::string sub = "10.213." + std::to_string(b.third) + ".";
        std::string link0 = kind == "bridge" ? "cnmbn" + b.letter + "0" : "cnmbnmv0";
        std::string link1 = kind == "bridge" ? "cnmbn" + b.letter + "1" : "cnmbnmv0";
        resident.push_back({ b.label, b.bin, link_conf(kind, "bn-" + b.label, link0, b.ipam, work + "/" + b.label, sub + "0/25", true), &host, "eth0", {}, {}, {}, {} });
        lone.push_back({ b.label, b.bin, link_conf(kind, "bn1-" + b.label, link1, b.ipam, work + "/" + b.label + "-lone", sub + "128/25", true), &host,
            "eth0", {}, {}, {}, {} });
        std::string ns = ns_name("res-" + b.label);
        add_netns(ns);
        resident_add(resident.back(), "resident", ns, "eth0", path);
        // The lone network's bridge exists before the timed rounds (the reference never removes
        // it; ours neither): one ADD/DEL, untimed.
        timed_cycle(lone.back(), "warm", path, false, false);
    }
    StartUp start_up = measure_start_up(ours, ref, base, reps);
    link_index(host, kind == "macvlan" ? "cnmbnmv0" : "cnmbnK0"); // the floor looks it up by name, timed
    KernelFloor kernel;
    Stats true_exec, mnl_exec, durable;
    // The exec floor: a no-op linked as the plugin is (libc and libmnl dynamically), beside /bin/true.
    std::string noop_mnl = (fs::path(g_shim).parent_path() / "noop-mnl").string();
    for (int i = -2; i < reps; ++i) { // two warm-up rounds
        bool timed = i >= 0;
        std::string id = "b" + std::to_string(i + 2);
        size_t n = resident.size() * 2 + 2;
        auto order = round_order(n, i);
        for (size_t k = 0; k < n; ++k) {
            size_t item = order[k];
            if (item < resident.size())
                timed_cycle(resident[item], id, path, timed, false);
            else if (item < 2 * resident.size())
                timed_cycle(lone[item - resident.size()], id, path, timed, false);
            else if (item == 2 * resident.size()) {
                host.enter();
                KernelFloor scratch;
                kernel_floor_once(host, kind, kind == "macvlan" ? "cnmbnmv0" : "cnmbnK0", "10.213.223.2/24", IpAddr::parse("10.213.223.1"), timed ? kernel : scratch);
                enter_fd(g_origin_ns);
            } else if (timed) {
                true_exec.add(exec_plugin("/bin/true", {}, ""));
                mnl_exec.add(exec_plugin(noop_mnl, {}, ""));
                durable.add(durable_add_floor(work));
            }
        }
    }
    // Peak RSS: five more ADDs of each through the shim.
    for (int i = 0; i < 5; ++i)
        for (auto& n : resident) {
            std::string ns = ns_name("rss");
            add_netns(ns);
            host.enter();
            auto env = cni_env("ADD", "rss" + std::to_string(i), path, "/run/netns/" + ns);
            Run r = exec_plugin(n.bin, env, n.conf, true);
            check_ok(r, n.label + " RSS ADD");
            n.add.add_rss(r);
            env[0] = "CNI_COMMAND=DEL";
            check_ok(exec_plugin(n.bin, env, n.conf), n.label + " RSS DEL");
            enter_fd(g_origin_ns);
            del_netns(ns);
        }
    const Net *b_res = with_base ? &resident[2] : nullptr, *b_lone = with_base ? &lone[2] : nullptr;
    std::printf("%s + ipam vs reference %s + host-local%s: %d interleaved rounds, fresh container netns each, default route in the ipam conf\n",
        kind.c_str(), kind.c_str(), with_base ? " vs base" : "", reps);
    print_row("VERSION (start-up cost)", start_up.ours, start_up.ref, with_base ? &start_up.base : nullptr);
    print_row("ADD (1 resident endpoint)", resident[0].add, resident[1].add, b_res ? &b_res->add : nullptr);
    print_row("DEL (1 resident endpoint)", resident[0].del, resident[1].del, b_res ? &b_res->del : nullptr);
    print_row("ADD creating the network", lone[0].add, lone[1].add, b_lone ? &b_lone->add : nullptr);
    print_row("DEL of the last endpoint", lone[0].del, lone[1].del, b_lone ? &b_lone->del : nullptr);
    std::printf("peak RSS (ADD): ours %ld KiB, reference %ld KiB (ours/ref %.2f)", resident[0].add.rss_kb, resident[1].add.rss_kb,
        static_cast<double>(resident[0].add.rss_kb) / static_cast<double>(resident[1].add.rss_kb));
    if (with_base)
        std::printf(", base %ld KiB", resident[2].add.rss_kb);
    std::printf("\n");
    double floor = mnl_exec.median() + kernel.add.median();
    double true_floor = true_exec.median() + kernel.add.median();
    double del_floor = mnl_exec.median() + kernel.del.median();
    std::string what = kind == "macvlan" ? "host socket, netns+socket, master lookup, macvlan create (under its final name), up, address, route, arp_notify+ndisc_notify"
                                         : std::string("host socket, netns+socket, bridge lookup and its addresses, ip_forward, ") + veth_how(kernel)
            + " (the container end under its final name, one queue each way), the port's IPv6 off, port+up, up, address, route, bridge re-read";
    std::printf("floor, same rounds: exec of a no-op linked like the plugin (libc + libmnl) %.2f ms (/bin/true %.2f) + in-process %s %.2f ms "
                "= %.2f ms (with /bin/true %.2f; + durability of one ADD, 4 fsyncs, %.2f ms = %.2f ms)\n",
        mnl_exec.median(), true_exec.median(), what.c_str(), kernel.add.median(), floor, true_floor, durable.median(), floor + durable.median());
    // Without the host socket and the bridge's checks: what the bench timed before them, less the
    // lookup after the create where the kernel echoes the new link.
    double bare = floor - kernel.checks.median();
    std::printf("ADD/floor: ours %.2f (%.2f over /bin/true's; %.2f over the floor without the host socket%s, %.2f ms), ref %.2f%s",
        resident[0].add.median() / floor, resident[0].add.median() / true_floor, resident[0].add.median() / bare,
        kind == "macvlan" ? "" : " and the bridge's checks", bare, resident[1].add.median() / floor, with_base ? "" : "\n");
    if (with_base)
        std::printf(", base %.2f\n", resident[2].add.median() / floor);
    std::printf("ADD CPU/floor CPU: ours %.2f (floor CPU %.2f ms: the no-op's %.2f + the in-process work's %.2f)\n",
        resident[0].add.cpu_median() / (mnl_exec.cpu_median() + kernel.add.cpu_median()), mnl_exec.cpu_median() + kernel.add.cpu_median(),
        mnl_exec.cpu_median(), kernel.add.cpu_median());
    std::printf("DEL floor (exec + kernel delete) %.2f ms; DEL/floor: ours %.2f, ref %.2f\n", del_floor, resident[0].del.median() / del_floor,
        resident[1].del.median() / del_floor);
    return 0;
}

// ---- fill: a network with N endpoints vs one -------------------------------------------------------

std::string valid_list(const std::vector<std::pair<std::string, std::string>>& list)
{
    std::string s = "[";
    for (auto& [id, ifname] : list)
        s += (s.size() > 1 ? "," : "") + std::string(R"({"containerID":")") + id + R"(","ifname":")" + ifname + "\"}";
    return s + "]";
}

int bench_fill(const std::string& kind, int reps, int endpoints, int per_netns, const std::string& ours_dir, const std::string& ref_dir,
    const std::string& work)
{
    std::string ours = ours_dir + "/" + kind, ref = ref_dir + "/" + kind, path = ours_dir + ":" + ref_dir;
    fresh_work_dir(work);
    auto t_setup = Clock::now();
    // Four hosts, one network each, all on 10.213.220.0/22: ours and the reference, full and with
    // one endpoint. The containers' netns are shared: ours uses eth<k>, the reference net<k>.
    Host h_full = make_host("of"), h_one = make_host("o1"), r_full = make_host("rf"), r_one = make_host("r1");
    std::string link = kind == "bridge" ? "cnmbnbr0" : "cnmbnmv0";
    for (Host* h : { &h_full, &h_one, &r_full, &r_one })
        if (kind == "macvlan")
            shell("ip -n " + h->name + " link add cnmbnmv0 type veth peer name cnmbnmv1 && ip -n " + h->name + " link set cnmbnmv0 up");
    // No default route: the interfaces of one container netns would clash on it.
    auto conf = [&](bool o, const std::string& tag, const std::string& version = "1.0.0") {
        return link_conf(kind, "fill", link, o ? "ipam" : "host-local", work + "/" + tag, "10.213.220.0/22", false, version);
    };
    Net of { "ours@N", ours, conf(true, "of"), &h_full, "eth0", {}, {}, {}, {} };
    Net o1 { "ours@1", ours, conf(true, "o1"), &h_one, "eth0", {}, {}, {}, {} };
    Net rf { "ref@N", ref, conf(false, "rf"), &r_full, "eth0", {}, {}, {}, {} };
    Net r1 { "ref@1", ref, conf(false, "r1"), &r_one, "eth0", {}, {}, {}, {} };
    int groups = (endpoints + per_netns - 1) / per_netns;
    auto t_ns = Clock::now();
    for (int g = 0; g < groups; ++g)
        add_container_netns(ns_name("f" + std::to_string(g)));
    add_container_netns(ns_name("fone"));
    double ns_ms = ms_since(t_ns);
    std::vector<std::pair<std::string, std::string>> attached;
    auto t_ours = Clock::now();
    for (int e = 0; e < endpoints; ++e) {
        std::string id = "fill-" + std::to_string(e / per_netns);
        std::string ifname = "eth" + std::to_string(e % per_netns);
        resident_add(of, id, ns_name("f" + std::to_string(e / per_netns)), ifname, path);
        attached.push_back({ id, ifname });
    }
    double ours_ms = ms_since(t_ours);
    auto t_ref = Clock::now();
    for (int e = 0; e < endpoints; ++e)
        resident_add(rf, "fill-" + std::to_string(e / per_netns), ns_name("f" + std::to_string(e / per_netns)), "net" + std::to_string(e % per_netns), path);
    double ref_ms = ms_since(t_ref);
    resident_add(o1, "fill-one", ns_name("fone"), "eth0", path);
    resident_add(r1, "fill-one", ns_name("fone"), "net0", path);
    // The timed ADD's container gets eth<per_netns>, past the residents' names in no netns of its
    // own (each timed ADD has a fresh netns), so its ifname is eth0 as usual.
    link_index(h_full, link);
    link_index(h_one, link);
    std::printf("setup: %d container netns in %.1f s; %d of our ADDs in %.1f s (%.2f ms each); %d reference ADDs in %.1f s\n", groups + 1,
        ns_ms / 1000, endpoints, ours_ms / 1000, ours_ms / endpoints, endpoints, ref_ms / 1000);

    std::string status_full = conf(true, "of", "1.1.0"), status_one = conf(true, "o1", "1.1.0");
    KernelFloor k_full, k_one;
    Stats true_exec;
    for (int i = -1; i < reps; ++i) {
        bool timed = i >= 0;
        std::string id = "t" + std::to_string(i + 1);
        auto order = round_order(7, i);
        for (size_t k = 0; k < 7; ++k) {
            switch (order[k]) {
            case 0: timed_cycle(of, id, path, timed, true, status_full); break;
            case 1: timed_cycle(o1, id, path, timed, true, status_one); break;
            case 2: timed_cycle(rf, id, path, timed, true); break;
            case 3: timed_cycle(r1, id, path, timed, true); break;
            case 4: {
                h_full.enter();
                KernelFloor scratch;
                kernel_floor_once(h_full, kind, link, "10.213.223.250/22", std::nullopt, timed ? k_full : scratch, true);
                enter_fd(g_origin_ns);
                break;
            }
            case 5: {
                h_one.enter();
                KernelFloor scratch;
                kernel_floor_once(h_one, kind, link, "10.213.223.250/22", std::nullopt, timed ? k_one : scratch, true);
                enter_fd(g_origin_ns);
                break;
            }
            case 6:
                if (timed)
                    true_exec.add(exec_plugin("/bin/true", {}, ""));
                break;
            }
        }
    }
    std::printf("%s with N=%d endpoints vs 1 (%d interfaces per container netns, eth0..eth%d; no default route%s), %d rounds, each in its own host netns\n",
        kind.c_str(), endpoints, per_netns, per_netns - 1, g_container_ipv6 ? "" : "; IPv6 off in every container netns", reps);
    double f_full = true_exec.median() + k_full.add.median(), f_one = true_exec.median() + k_one.add.median();
    std::printf("floors: exec of /bin/true %.2f ms (cpu %.2f); kernel ADD at N %.2f ms (cpu %.2f), at 1 %.2f ms (cpu %.2f); kernel DEL at N %.2f ms "
                "(cpu %.2f), at 1 %.2f ms (cpu %.2f)\n",
        true_exec.median(), true_exec.cpu_median(), k_full.add.median(), k_full.add.cpu_median(), k_one.add.median(), k_one.add.cpu_median(),
        k_full.del.median(), k_full.del.cpu_median(), k_one.del.median(), k_one.del.cpu_median());
    std::printf("        kernel CHECK (the CHECK's queries, in-process, after the ADD's work) at N %.2f ms (cpu %.2f), at 1 %.2f ms (cpu %.2f)\n",
        k_full.check.median(), k_full.check.cpu_median(), k_one.check.median(), k_one.check.cpu_median());
    auto row = [&](const char* verb, const Stats& a, const Stats& b, const Stats* ra, const Stats* rb, double fa, double fb,
                   const Stats* ka = nullptr, const Stats* kb = nullptr) {
        std::printf("%-7s ours at N %7.2f ms, at 1 %7.2f ms: N/1 %.2f (target <= 1.2)", verb, a.median(), b.median(), a.median() / b.median());
        if (fa > 0)
            std::printf("; over the floor at the same N: %.2f vs %.2f ms (ours/floor %.2f vs %.2f)", a.median() - fa, b.median() - fb,
                a.median() / fa, b.median() / fb);
        if (ra)
            std::printf("; ref at N %.2f, at 1 %.2f ms (N/1 %.2f)", ra->median(), rb->median(), ra->median() / rb->median());
        if (auto own = own_work_ratio(a.median(), fa, b.median(), fb)) {
            std::printf("\n        the kernel's own work grows with N; our own work (ours - floor at the same N) at N / at 1: %.2f (target <= 1.2)", *own);
            if (auto p = ka && kb ? own_work_paired(a, b, true_exec, *ka, *kb) : std::nullopt)
                std::printf("; paired (median of each round's own work, at N / at 1): %.2f", *p);
        }
        std::printf("\n        cpu: ours at N %.2f ms, at 1 %.2f ms (N/1 %.2f; paired wall N/1 %.2f)", a.cpu_median(), b.cpu_median(),
            a.cpu_median() / b.cpu_median(), paired(a.ms, b.ms));
        if (ra)
            std::printf("; ref at N %.2f, at 1 %.2f ms", ra->cpu_median(), rb->cpu_median());
        std::printf("\n");
    };
    row("ADD", of.add, o1.add, &rf.add, &r1.add, f_full, f_one, &k_full.add, &k_one.add);
    print_waiting("        ", "N", "1", of.add, o1.add, true_exec, k_full.add, k_one.add);
    row("DEL", of.del, o1.del, &rf.del, &r1.del, true_exec.median() + k_full.del.median(), true_exec.median() + k_one.del.median(), &k_full.del,
        &k_one.del);
    row("CHECK", of.check, o1.check, &rf.check, &r1.check, true_exec.median() + k_full.check.median(), true_exec.median() + k_one.check.median(),
        &k_full.check, &k_one.check);
    row("STATUS", of.status, o1.status, nullptr, nullptr, true_exec.median(), true_exec.median());

    trace_cycles(kind + "-fill", { { &of, "N" }, { &o1, "1" } }, path);

    // GC of the full network: the valid list names every resident attachment plus ghosts up to
    // 10000 entries (nothing is freed). The reference plugins speak no GC (CNI 1.0.0).
    auto list = attached;
    for (int g = 0; list.size() < 10000; ++g)
        list.push_back({ "ghost-" + std::to_string(g), "eth0" });
    std::string gc_conf = with_key(status_full, "cni.dev/valid-attachments", valid_list(list));
    Stats gc;
    // The rounds before deleted a netns each; the kernel cleans those up in its own workers, on
    // the same two cores. Timed at once, the GC shared them with that work (43, 60 and 59 us per
    // endpoint in three runs of one build, 42 for the same GC timed alone): give it a second.
    ::sleep(1);
    h_full.enter();
    for (int i = 0; i < std::max(5, reps / 3); ++i) {
        Run r = exec_plugin(ours, cni_env("GC", "", path, "", ""), gc_conf);
        check_ok(r, "our GC");
        gc.add(r);
    }
    // With CNM_BENCH_TRACE=DIR, one more GC under strace: DIR/<kind>-fill-gc-{c,T}.txt.
    if (const char* dir = std::getenv("CNM_BENCH_TRACE"); dir && *dir)
        for (std::string mode : { "c", "T" }) {
            g_wrap = strace_wrap(mode, std::string(dir) + "/" + kind + "-fill-gc-" + mode + ".txt");
            Run r = exec_plugin(ours, cni_env("GC", "", path, "", ""), gc_conf);
            g_wrap.clear();
            check_ok(r, "traced GC");
            if (mode == "T")
                std::printf("strace of one GC: %s/%s-fill-gc-{c,T}.txt\n", dir, kind.c_str());
        }
    enter_fd(g_origin_ns);
    std::printf("GC, %d endpoints, valid list of %zu: %.2f ms (cpu %.2f) = %.1f us per listed attachment, %.1f us per endpoint examined (target <= 50)\n",
        endpoints, list.size(), gc.median(), gc.cpu_median(), gc.median() * 1000 / static_cast<double>(list.size()), gc.median() * 1000 / endpoints);
    // Nothing may have gone: every resident still has its record.
    size_t records = 0;
    for (auto& e : fs::recursive_directory_iterator(work + "/of"))
        if (e.path().parent_path().filename() == "endpoints" && e.path().extension() == ".json")
            ++records;
    if (records != static_cast<size_t>(endpoints))
        die("GC with every attachment valid left " + std::to_string(records) + " endpoint records of " + std::to_string(endpoints));
    std::printf("whole mode (setup + rounds): %.1f s\n", ms_since(t_setup) / 1000);
    return 0;
}

// ---- nets: ADD with 500 networks on the host ------------------------------------------------------

int bench_nets(int reps, int networks, int per_netns, const std::string& ours_dir, const std::string& ref_dir, const std::string& work)
{
    std::string ours = ours_dir + "/bridge", ref = ref_dir + "/bridge", path = ours_dir + ":" + ref_dir;
    fresh_work_dir(work);
    auto t_setup = Clock::now();
    Host h_many = make_host("om"), h_none = make_host("o0"), r_many = make_host("rm"), r_none = make_host("r0");
    // The timed network: 10.213.220.0/24 with one resident, in each host. The other networks are
    // L2-only bridges (no IPAM: 500 subnets do not fit in this bench's /22), each with one resident
    // endpoint so its record and bridge exist, in the same state root as the timed network.
    auto timed_conf = [&](bool o, const std::string& tag) {
        return link_conf("bridge", "nets", "cnmbnt0", o ? "ipam" : "host-local", work + "/" + tag, "10.213.220.0/24", true);
    };
    Net om { "ours@500", ours, timed_conf(true, "om"), &h_many, "eth0", {}, {}, {}, {} };
    Net o0 { "ours@0", ours, timed_conf(true, "o0"), &h_none, "eth0", {}, {}, {}, {} };
    Net rm { "ref@500", ref, timed_conf(false, "rm"), &r_many, "eth0", {}, {}, {}, {} };
    Net r0 { "ref@0", ref, timed_conf(false, "r0"), &r_none, "eth0", {}, {}, {}, {} };
    int groups = (networks + per_netns - 1) / per_netns;
    for (int g = 0; g < groups; ++g)
        add_container_netns(ns_name("n" + std::to_string(g)));
    for (const char* t : { "om", "o0", "rm", "r0" })
        add_container_netns(ns_name("nres-" + std::string(t)));
    auto t_ours = Clock::now();
    for (int n = 0; n < networks; ++n) {
        std::string name = "l2-" + std::to_string(n), br = "cnmbnl" + std::to_string(n);
        Net l2o { name, ours, link_conf("bridge", name, br, "", work + "/om", "", false), &h_many, "", {}, {}, {}, {} };
        resident_add(l2o, "net-" + std::to_string(n / per_netns), ns_name("n" + std::to_string(n / per_netns)), "eth" + std::to_string(n % per_netns), path);
    }
    double ours_ms = ms_since(t_ours);
    auto t_ref = Clock::now();
    for (int n = 0; n < networks; ++n) {
        std::string name = "l2-" + std::to_string(n), br = "cnmbnl" + std::to_string(n);
        Net l2r { name, ref, link_conf("bridge", name, br, "", work + "/rm", "", false), &r_many, "", {}, {}, {}, {} };
        resident_add(l2r, "net-" + std::to_string(n / per_netns), ns_name("n" + std::to_string(n / per_netns)), "net" + std::to_string(n % per_netns), path);
    }
    double ref_ms = ms_since(t_ref);
    resident_add(om, "resident", ns_name("nres-om"), "eth0", path);
    resident_add(o0, "resident", ns_name("nres-o0"), "eth0", path);
    resident_add(rm, "resident", ns_name("nres-rm"), "eth0", path);
    resident_add(r0, "resident", ns_name("nres-r0"), "eth0", path);
    std::printf("setup: %d L2 networks of ours in %.1f s, %d of the reference in %.1f s\n", networks, ours_ms / 1000, networks, ref_ms / 1000);
    link_index(h_many, "cnmbnt0");
    link_index(h_none, "cnmbnt0");
    KernelFloor k_many, k_none;
    Stats true_exec;
    for (int i = -1; i < reps; ++i) {
        bool timed = i >= 0;
        std::string id = "t" + std::to_string(i + 1);
        auto order = round_order(7, i);
        for (size_t k = 0; k < 7; ++k) {
            switch (order[k]) {
            case 0: timed_cycle(om, id, path, timed, false); break;
            case 1: timed_cycle(o0, id, path, timed, false); break;
            case 2: timed_cycle(rm, id, path, timed, false); break;
            case 3: timed_cycle(r0, id, path, timed, false); break;
            case 4:
            case 5: {
                Host& h = order[k] == 4 ? h_many : h_none;
                h.enter();
                KernelFloor scratch;
                kernel_floor_once(h, "bridge", "cnmbnt0", "10.213.220.250/24", IpAddr::parse("10.213.220.1"),
                    !timed ? scratch : &h == &h_many ? k_many : k_none);
                enter_fd(g_origin_ns);
                break;
            }
            case 6:
                if (timed)
                    true_exec.add(exec_plugin("/bin/true", {}, ""));
                break;
            }
        }
    }
    std::printf("bridge ADD with %d other networks (and bridges) on the host vs none%s, %d rounds\n", networks,
        g_container_ipv6 ? "" : " (IPv6 off in every container netns)", reps);
    double f_many = true_exec.median() + k_many.add.median(), f_none = true_exec.median() + k_none.add.median();
    std::printf("floors: exec of /bin/true %.2f ms; kernel ADD with %d bridges %.2f ms, without %.2f ms\n", true_exec.median(), networks,
        k_many.add.median(), k_none.add.median());
    for (auto [verb, a, b, ra, rb, fa, fb] : { std::tuple { "ADD", &om.add, &o0.add, &rm.add, &r0.add, f_many, f_none },
             std::tuple { "DEL", &om.del, &o0.del, &rm.del, &r0.del, true_exec.median() + k_many.del.median(), true_exec.median() + k_none.del.median() } }) {
        std::printf("%-4s ours at %d %7.2f ms, at 0 %7.2f ms: %.2f (target <= 1.2); ours/floor %.2f vs %.2f; ref %.2f vs %.2f ms (%.2f)\n", verb,
            networks, a->median(), b->median(), a->median() / b->median(), a->median() / fa, b->median() / fb, ra->median(), rb->median(),
            ra->median() / rb->median());
        bool add = std::string_view(verb) == "ADD";
        if (auto own = own_work_ratio(a->median(), fa, b->median(), fb)) {
            auto p = own_work_paired(*a, *b, true_exec, add ? k_many.add : k_many.del, add ? k_none.add : k_none.del);
            std::printf("     the kernel's own work grows with the bridges; our own work (ours - floor with as many) at %d / at 0: %.2f (target <= 1.2)",
                networks, *own);
            if (p)
                std::printf("; paired (median of each round's own work, at N / at 1): %.2f", *p);
            std::printf("\n");
        }
        if (add)
            print_waiting("     ", std::to_string(networks), "0", *a, *b, true_exec, k_many.add, k_none.add);
    }
    std::printf("cpu: ADD ours at %d %.2f ms, at 0 %.2f ms; DEL %.2f vs %.2f ms; paired wall ADD %.2f\n", networks, om.add.cpu_median(),
        o0.add.cpu_median(), om.del.cpu_median(), o0.del.cpu_median(), paired(om.add.ms, o0.add.ms));
    trace_cycles("nets", { { &om, std::to_string(networks) }, { &o0, "0" } }, path);
    std::printf("whole mode (setup + rounds): %.1f s\n", ms_since(t_setup) / 1000);
    return 0;
}

// ---- vxlan: ADD on a host that holds a block vs bridge ADD; the first ADD on a fresh host ----------
//
// Run by tests/bench/vxlan.sh, which makes the underlay (a bridge in a netns of its own), starts
// etcd there and makes the hosts (netns with an underlay veth "u0"): --host is the host of the
// steady-state ADDs, --fresh the hosts of the first ADDs (one ADD each, the last one traced). The
// script removes those; the bench removes what it makes. Plugins run in their host by setns, vxlan
// and bridge alike, with the same environment (CNM_NODE for both). Addresses, inside the script's
// sub-range: 10.213.192.0/24 the steady vxlan network, 10.213.193.0/24 the fresh hosts' one,
// 10.213.194.0/25 our bridge, 10.213.194.128/25 the reference bridge, 10.213.195.0/25 the floor.

// A host netns made by the caller: opened, not owned.
Host open_host(const std::string& name)
{
    Host h;
    h.name = name;
    h.fd = ::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
    if (h.fd < 0)
        die("open netns " + name + ": " + std::strerror(errno));
    h.enter();
    auto nl = netlink::Socket::open();
    if (!nl)
        die("netlink: " + nl.error().msg);
    h.nl = nl.release_value();
    enter_fd(g_origin_ns);
    return h;
}

// connect() calls in an `strace -f -e trace=connect` log: all of them, and those to `port`.
std::pair<int, int> connects(const std::string& log, const std::string& port)
{
    std::ifstream in(log);
    if (!in)
        die("no strace log " + log);
    int all = 0, to_port = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find("connect(") != std::string::npos) {
            ++all;
            if (line.find("htons(" + port + ")") != std::string::npos)
                ++to_port;
        }
    return { all, to_port };
}

std::string vxlan_conf(const std::string& name, int vni, const std::string& subnet, int block, const std::string& data_dir,
    const std::string& etcd)
{
    return R"({"cniVersion":"1.0.0","name":")" + name + R"(","type":"vxlan","vni":)" + std::to_string(vni) + R"(,"subnet":")" + subnet
        + R"(","blockSize":)" + std::to_string(block) + R"(,"underlay":"u0","dataDir":")" + data_dir + R"(","cluster":{"etcd":[")" + etcd
        + R"("],"timeoutMs":2000}})";
}

int bench_vxlan(int reps, const std::string& ours_dir, const std::string& ref_dir, const std::string& work, const std::string& host_name,
    const std::vector<std::string>& fresh_names, const std::string& etcd)
{
    if (fresh_names.size() < 3)
        die("--fresh needs 3 hosts at least (a warm-up, one timed, one traced)");
    std::string path = ours_dir + ":" + ref_dir;
    std::string port = etcd.substr(etcd.rfind(':') + 1);
    port = port.substr(0, port.find('/'));
    fresh_work_dir(work);
    Host host = open_host(host_name);
    std::vector<Host> fresh;
    for (auto& f : fresh_names)
        fresh.push_back(open_host(f));
    shell("ip -n " + host.name + " link add hbvK0 type bridge && ip -n " + host.name + " addr add 10.213.195.1/25 dev hbvK0 && ip -n "
        + host.name + " link set hbvK0 up");
    std::vector<std::string> node_env { "CNM_NODE=bench-steady" };
    Net vx { "vxlan", ours_dir + "/vxlan", vxlan_conf("bv", 4190, "10.213.192.0/24", 26, work + "/vx", etcd), &host, "eth0", {}, {}, {}, {} };
    Net br { "bridge", ours_dir + "/bridge", link_conf("bridge", "bb-ours", "hbvO0", "ipam", work + "/br", "10.213.194.0/25", true), &host,
        "eth0", {}, {}, {}, {} };
    Net rb { "ref bridge", ref_dir + "/bridge", link_conf("bridge", "bb-ref", "hbvR0", "host-local", work + "/rb", "10.213.194.128/25", true),
        &host, "eth0", {}, {}, {}, {} };
    // One resident endpoint in each network: the vxlan one claims the host's block (untimed).
    for (Net* n : { &vx, &br, &rb }) {
        std::string ns = ns_name("res-" + std::to_string(n == &vx ? 0 : n == &br ? 1 : 2));
        add_netns(ns);
        n->host->enter();
        auto env = cni_env("ADD", "resident", path, "/run/netns/" + ns, "eth0");
        env.insert(env.end(), node_env.begin(), node_env.end());
        Run r = exec_plugin(n->bin, env, n->conf);
        enter_fd(g_origin_ns);
        check_ok(r, n->label + " resident ADD");
    }
    // The fresh hosts: one network, each host's first ADD claims one block (/28 blocks of a /24).
    auto fresh_conf = [&](size_t i) { return vxlan_conf("bvf", 4191, "10.213.193.0/24", 28, work + "/fresh-" + std::to_string(i), etcd); };
    auto fresh_add = [&](size_t i, Stats* out) {
        Net f { "vxlan first ADD", ours_dir + "/vxlan", fresh_conf(i), &fresh[i], "eth0", {}, {}, {}, {} };
        std::string ns = ns_name("fr" + std::to_string(i));
        add_netns(ns);
        fresh[i].enter();
        auto env = cni_env("ADD", "first", path, "/run/netns/" + ns, "eth0");
        env.push_back("CNM_NODE=bench-fresh-" + std::to_string(i));
        Run r = exec_plugin(f.bin, env, f.conf);
        enter_fd(g_origin_ns);
        check_ok(r, "first ADD on " + fresh[i].name);
        if (out)
            out->add(r);
    };
    fresh_add(0, nullptr); // the network's first ADD anywhere (writes its record in etcd): untimed
    size_t timed_fresh = fresh.size() - 2;
    link_index(host, "hbvK0");
    KernelFloor kernel;
    Stats true_exec, v_vx, v_br, first, noop_httplib;
    std::string noop = (fs::path(g_shim).parent_path() / "noop-httplib").string();
    for (int i = -2; i < reps; ++i) { // two warm-up rounds
        bool timed = i >= 0;
        std::string id = "b" + std::to_string(i + 2);
        const size_t n = 7;
        for (size_t k = 0; k < n; ++k) {
            switch ((k + static_cast<size_t>(i + 2)) % n) {
            case 0: timed_cycle(vx, id, path, timed, false, "", node_env); break;
            case 1: timed_cycle(br, id, path, timed, false, "", node_env); break;
            case 2: timed_cycle(rb, id, path, timed, false, "", node_env); break;
            case 3: {
                host.enter();
                KernelFloor scratch;
                kernel_floor_once(host, "bridge", "hbvK0", "10.213.195.2/25", IpAddr::parse("10.213.195.1"), timed ? kernel : scratch);
                enter_fd(g_origin_ns);
                break;
            }
            case 4:
                if (timed) {
                    true_exec.add(exec_plugin("/bin/true", {}, ""));
                    noop_httplib.add(exec_plugin(noop, {}, ""));
                }
                break;
            case 5:
                if (timed) {
                    v_vx.add(exec_plugin(vx.bin, { "CNI_COMMAND=VERSION" }, ""));
                    v_br.add(exec_plugin(br.bin, { "CNI_COMMAND=VERSION" }, ""));
                }
                break;
            case 6:
                if (timed && static_cast<size_t>(i) < timed_fresh)
                    fresh_add(static_cast<size_t>(i) + 1, &first);
                break;
            }
        }
    }
    // No etcd round trip in the steady state: one more ADD under strace, and, as the control that
    // the count can see one, the first ADD on the last fresh host. With CNM_BENCH_TRACE=DIR every
    // syscall is traced (-T -tt) and both logs are kept there.
    const char* keep = std::getenv("CNM_BENCH_TRACE");
    std::string dir = keep && *keep ? keep : work;
    fs::create_directories(dir);
    std::string log_steady = dir + "/vxlan-steady-add.txt", log_first = dir + "/vxlan-first-add.txt";
    g_wrap = { "/usr/bin/strace", "-f", "-qq", "-e", "trace=connect", "-o", log_steady };
    if (keep && *keep)
        g_wrap = { "/usr/bin/strace", "-f", "-qq", "-T", "-tt", "-o", log_steady };
    timed_cycle(vx, "traced", path, false, false, "", node_env);
    g_wrap.back() = log_first;
    fresh_add(fresh.size() - 1, nullptr);
    g_wrap.clear();
    auto [steady_all, steady_etcd] = connects(log_steady, port);
    auto [first_all, first_etcd] = connects(log_first, port);

    double floor = true_exec.median() + kernel.add.median(), del_floor = true_exec.median() + kernel.del.median();
    std::printf("vxlan ADD on a host that holds a block (1 resident endpoint) vs bridge ADD (1 resident), %d interleaved rounds, "
                "plugins run in the host netns by setns, fresh container netns each\n",
        reps);
    std::printf("VERSION (start-up): vxlan %.2f ms, bridge %.2f ms, /bin/true %.2f ms; a no-op linked as vxlan is (libcpp-httplib: libssl, "
                "libcrypto, libstdc++, zlib, brotli) %.2f ms (cpu %.2f, /bin/true's %.2f)\n",
        v_vx.median(), v_br.median(), true_exec.median(), noop_httplib.median(), noop_httplib.cpu_median(), true_exec.cpu_median());
    for (auto [what, s] : { std::pair { "vxlan ADD", &vx.add }, std::pair { "bridge ADD", &br.add }, std::pair { "ref bridge ADD", &rb.add },
             std::pair { "vxlan DEL", &vx.del }, std::pair { "bridge DEL", &br.del }, std::pair { "ref bridge DEL", &rb.del } })
        std::printf("%-16s %7.2f ms (p90 %6.2f, cpu %5.2f)\n", what, s->median(), s->pct(0.9), s->cpu_median());
    std::printf("vxlan ADD / bridge ADD: %.2f (paired %.2f; target <= 1.2); DEL %.2f (paired %.2f); ref bridge ADD / vxlan ADD %.2f\n",
        vx.add.median() / br.add.median(), paired(vx.add.ms, br.add.ms), vx.del.median() / br.del.median(), paired(vx.del.ms, br.del.ms),
        rb.add.median() / vx.add.median());
    // CPU time is steadier than wall time on a loaded machine: where vxlan's excess goes.
    std::printf("cpu: vxlan ADD / bridge ADD %.2f (paired %.2f); vxlan ADD - bridge ADD %.2f ms; start-up of libcpp-httplib and what it pulls in "
                "(the no-op linked with them - /bin/true) %.2f ms\n",
        vx.add.cpu_median() / br.add.cpu_median(), paired(vx.add.cpu, br.add.cpu), vx.add.cpu_median() - br.add.cpu_median(),
        noop_httplib.cpu_median() - true_exec.cpu_median());
    std::printf("floor, same rounds (the same for both: a steady-state vxlan ADD does a bridge ADD's kernel work): exec of /bin/true %.2f ms "
                "+ in-process host socket, netns+socket, bridge lookup and its addresses, ip_forward, %s (the container end under its "
                "final name, one queue each way), the port's IPv6 off, port+up, up, address, route, bridge re-read %.2f ms = %.2f ms\n",
        true_exec.median(), veth_how(kernel), kernel.add.median(), floor);
    std::printf("ADD/floor: vxlan %.2f, bridge %.2f, ref bridge %.2f; DEL floor %.2f ms, DEL/floor: vxlan %.2f, bridge %.2f\n",
        vx.add.median() / floor, br.add.median() / floor, rb.add.median() / floor, del_floor, vx.del.median() / del_floor,
        br.del.median() / del_floor);
    if (!first.ms.empty()) {
        auto sorted = first.ms;
        std::sort(sorted.begin(), sorted.end());
        std::printf("first ADD on a fresh host (claims a block in etcd, makes the bridge and the vxlan device): median %.2f ms over %zu hosts "
                    "(min %.2f, max %.2f; cpu %.2f ms)\n",
            first.median(), first.ms.size(), sorted.front(), sorted.back(), first.cpu_median());
    }
    std::printf("etcd round trips (strace -f -e trace=connect): steady-state ADD %d connect() to etcd's port %s (%d in all); "
                "first ADD on a host %d (%d in all)\n",
        steady_etcd, port.c_str(), steady_all, first_etcd, first_all);
    if (keep && *keep)
        std::printf("strace -f -T -tt of both ADDs: %s and %s\n", log_steady.c_str(), log_first.c_str());
    if (first_etcd == 0)
        die("the first ADD on a host made no connect() to etcd: the trace cannot see etcd round trips");
    if (steady_etcd != 0) {
        std::printf("FAIL: the steady-state ADD talked to etcd\n");
        return 1;
    }
    return 0;
}

// ---- gc: ipam GC with 10000 attachments -------------------------------------------------------------

int bench_gc(int reps, int count, const std::string& ours_dir, const std::string& work)
{
    std::string ours = ours_dir + "/ipam", path = ours_dir;
    fresh_work_dir(work);
    std::string state = work + "/gc", small = work + "/gc-small";
    auto t0 = Clock::now();
    seed_ours(state, 0, static_cast<size_t>(count), "1.1.0");
    seed_ours(small, 0, 100, "1.1.0");
    std::printf("setup: %d attachments seeded in %.1f s\n", count, ms_since(t0) / 1000);
    std::vector<std::pair<std::string, std::string>> list, list_small;
    for (int i = 0; i < count; ++i)
        list.push_back({ "seed-" + std::to_string(i), "eth0" });
    for (int i = 0; i < 100; ++i)
        list_small.push_back({ "seed-" + std::to_string(i), "eth0" });
    std::string conf = with_key(ipam_conf("ipam", state, "1.1.0"), "cni.dev/valid-attachments", valid_list(list));
    std::string conf_small = with_key(ipam_conf("ipam", small, "1.1.0"), "cni.dev/valid-attachments", valid_list(list_small));
    Stats gc, gc_small, true_exec;
    for (int i = 0; i < reps; ++i) {
        Run r = exec_plugin(ours, cni_env("GC", "", path, "", ""), conf);
        check_ok(r, "our GC");
        gc.add(r);
        Run s = exec_plugin(ours, cni_env("GC", "", path, "", ""), conf_small);
        check_ok(s, "our GC (100)");
        gc_small.add(s);
        true_exec.add(exec_plugin("/bin/true", {}, ""));
    }
    size_t leases = 0;
    for (auto& e : fs::recursive_directory_iterator(state))
        if (e.path().parent_path().filename() == "leases")
            ++leases;
    if (leases != static_cast<size_t>(count))
        die("GC with every attachment valid left " + std::to_string(leases) + " leases of " + std::to_string(count));
    double per = (gc.median() - gc_small.median()) * 1000 / (count - 100);
    std::printf("ipam GC, %d attachments all in the valid list (nothing freed; %zu leases still there), %d runs\n", count, leases, reps);
    std::printf("GC at %d: %.2f ms (p90 %.2f) = %.1f us per attachment examined (target <= 50); at 100: %.2f ms; exec floor %.2f ms\n", count,
        gc.median(), gc.pct(0.9), gc.median() * 1000 / count, gc_small.median(), true_exec.median());
    std::printf("marginal cost: (GC at %d - GC at 100) / %d = %.1f us per attachment\n", count, count - 100, per);
    return 0;
}

// ---- parallel: 64 ADDs at once vs one after the other ---------------------------------------------

// The address in an ADD result ("address":"10.213.220.5/24").
std::string address_of(const std::string& out)
{
    auto at = out.find("\"address\"");
    if (at == std::string::npos)
        return "";
    auto q1 = out.find('"', out.find(':', at) + 1), q2 = out.find('"', q1 + 1);
    return out.substr(q1 + 1, q2 - q1 - 1);
}

int bench_parallel(int reps, int width, const std::string& ours_dir, const std::string& ref_dir, const std::string& work)
{
    std::string path = ours_dir + ":" + ref_dir;
    fresh_work_dir(work);
    Host h_ours = make_host("po"), h_ref = make_host("pr");
    Net o { "ours", ours_dir + "/bridge", link_conf("bridge", "par", "cnmbnp0", "ipam", work + "/ours", "10.213.220.0/24", true), &h_ours, "eth0", {}, {}, {}, {} };
    Net r { "ref", ref_dir + "/bridge", link_conf("bridge", "par", "cnmbnp0", "host-local", work + "/ref", "10.213.221.0/24", true), &h_ref, "eth0", {}, {}, {}, {} };
    std::vector<std::string> ns;
    for (int i = 0; i < width; ++i) {
        ns.push_back(ns_name("p" + std::to_string(i)));
        add_netns(ns.back());
    }
    add_netns(ns_name("pres"));
    resident_add(o, "resident", ns_name("pres"), "eth0", path);
    resident_add(r, "resident", ns_name("pres"), "net0", path);
    auto batch = [&](Net& n, bool parallel, int round) -> double {
        n.host->enter();
        std::vector<Run> runs(static_cast<size_t>(width));
        auto env_of = [&](int i, const char* cmd) { return cni_env(cmd, "par-" + std::to_string(round) + "-" + std::to_string(i), path, "/run/netns/" + ns[static_cast<size_t>(i)]); };
        ::syncfs(g_sync_fd);
        auto t0 = Clock::now();
        if (parallel) {
            std::vector<Spawned> spawned;
            for (int i = 0; i < width; ++i)
                spawned.push_back(spawn_plugin(n.bin, env_of(i, "ADD"), n.conf));
            for (int i = 0; i < width; ++i)
                runs[static_cast<size_t>(i)] = finish(spawned[static_cast<size_t>(i)]);
        } else {
            for (int i = 0; i < width; ++i)
                runs[static_cast<size_t>(i)] = finish(spawn_plugin(n.bin, env_of(i, "ADD"), n.conf));
        }
        double ms = ms_since(t0);
        std::set<std::string> addresses;
        for (int i = 0; i < width; ++i) {
            check_ok(runs[static_cast<size_t>(i)], n.label + (parallel ? " parallel ADD " : " sequential ADD ") + std::to_string(i));
            addresses.insert(address_of(runs[static_cast<size_t>(i)].out));
        }
        if (addresses.size() != static_cast<size_t>(width) || addresses.count(""))
            die(n.label + ": " + std::to_string(width) + " ADDs got " + std::to_string(addresses.size()) + " distinct addresses");
        for (int i = 0; i < width; ++i)
            check_ok(exec_plugin(n.bin, env_of(i, "DEL"), n.conf), n.label + " DEL after the batch");
        enter_fd(g_origin_ns);
        return ms;
    };
    Stats o_seq, o_par, r_seq, r_par, t_seq, t_par;
    for (int i = -1; i < reps; ++i) {
        for (int k = 0; k < 4; ++k) {
            int which = (k + i + 1) % 4;
            double ms = batch(which < 2 ? o : r, which % 2 == 1, (i + 1) * 4 + k);
            if (i >= 0)
                (which == 0 ? o_seq : which == 1 ? o_par : which == 2 ? r_seq : r_par).add(ms);
        }
        // The exec floor's own scaling: /bin/true 64 at once vs one after the other.
        auto t0 = Clock::now();
        std::vector<Spawned> sp;
        for (int j = 0; j < width; ++j)
            sp.push_back(spawn_plugin("/bin/true", {}, ""));
        for (auto& s : sp)
            (void)finish(s);
        double par_ms = ms_since(t0);
        t0 = Clock::now();
        for (int j = 0; j < width; ++j)
            (void)finish(spawn_plugin("/bin/true", {}, ""));
        if (i >= 0) {
            t_par.add(par_ms);
            t_seq.add(ms_since(t0));
        }
    }
    std::printf("%d bridge ADDs on one network (one resident), all at once vs one after the other, %d rounds; all succeeded, all addresses distinct\n",
        width, reps);
    std::printf("ours: sequential %.1f ms, parallel %.1f ms: throughput ratio %.2fx (target >= 1.6)\n", o_seq.median(), o_par.median(),
        o_seq.median() / o_par.median());
    std::printf("ref:  sequential %.1f ms, parallel %.1f ms: throughput ratio %.2fx\n", r_seq.median(), r_par.median(), r_seq.median() / r_par.median());
    std::printf("floor: /bin/true sequential %.1f ms, parallel %.1f ms: %.2fx (%ld cores)\n", t_seq.median(), t_par.median(),
        t_seq.median() / t_par.median(), ::sysconf(_SC_NPROCESSORS_ONLN));
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app { "cni-bench: our CNI plugins against the reference ones, interleaved" };
    app.require_subcommand(1);
    int reps = 41, endpoints = 1000, per_netns = 10, networks = 500, attachments = 10000, width = 64;
    std::string ours = "build/plugins", ref = "/usr/lib/cni", base, work, kind = "bridge";
    g_tag = std::to_string(::getpid());
    auto* ipam_cmd = app.add_subcommand("ipam", "our ipam vs host-local");
    auto* bridge_cmd = app.add_subcommand("bridge", "our bridge + ipam vs the reference bridge + host-local");
    auto* macvlan_cmd = app.add_subcommand("macvlan", "our macvlan + ipam vs the reference macvlan + host-local");
    auto* fill_cmd = app.add_subcommand("fill", "ADD/DEL/CHECK/STATUS at N endpoints vs 1; GC with a 10000-entry list");
    auto* nets_cmd = app.add_subcommand("nets", "bridge ADD with 500 networks on the host vs none");
    auto* gc_cmd = app.add_subcommand("gc", "ipam GC with 10000 attachments, all valid");
    auto* par_cmd = app.add_subcommand("parallel", "64 ADDs at once vs 64 one after the other");
    for (auto* cmd : { ipam_cmd, bridge_cmd, macvlan_cmd, fill_cmd, nets_cmd, gc_cmd, par_cmd }) {
        cmd->add_option("--reps", reps, "runs per measurement");
        cmd->add_option("--ours", ours, "directory of our plugins");
        cmd->add_option("--ref", ref, "directory of the reference plugins");
        cmd->add_option("--work", work, "scratch directory (removed; default /tmp/cnm-bench-<tag>)");
        cmd->add_option("--tag", g_tag, "netns names are cnmbn-<tag>-… (default: the pid)");
    }
    for (auto* cmd : { ipam_cmd, bridge_cmd, macvlan_cmd })
        cmd->add_option("--base", base, "directory of a second build of our plugins (e.g. the landed one), measured in the same rounds");
    fill_cmd->add_option("--kind", kind, "bridge or macvlan");
    fill_cmd->add_option("--endpoints", endpoints, "endpoints on the full network");
    for (auto* cmd : { fill_cmd, nets_cmd })
        cmd->add_option("--per-netns", per_netns, "resident interfaces per container netns");
    nets_cmd->add_option("--networks", networks, "other networks on the host");
    std::string container_ipv6 = "on";
    for (auto* cmd : { fill_cmd, nets_cmd })
        cmd->add_option("--container-ipv6", container_ipv6, "off: IPv6 off in every container netns (isolates the cost of its floods)")
            ->check(CLI::IsMember({ "on", "off" }));
    gc_cmd->add_option("--attachments", attachments, "attachments in the store and the valid list");
    par_cmd->add_option("--width", width, "ADDs at once");
    std::string vx_host, vx_fresh, vx_etcd;
    auto* vxlan_cmd = app.add_subcommand("vxlan", "vxlan ADD on a host holding a block vs bridge ADD; first ADDs (run by tests/bench/vxlan.sh)");
    vxlan_cmd->add_option("--reps", reps, "runs per measurement");
    vxlan_cmd->add_option("--ours", ours, "directory of our plugins");
    vxlan_cmd->add_option("--ref", ref, "directory of the reference plugins");
    vxlan_cmd->add_option("--work", work, "scratch directory (removed; default /tmp/cnm-bench-<tag>)");
    vxlan_cmd->add_option("--tag", g_tag, "netns names are <prefix>-<tag>-… (default: the pid)");
    vxlan_cmd->add_option("--prefix", g_prefix, "netns name prefix (default cnmbn)");
    vxlan_cmd->add_option("--host", vx_host, "the host netns of the steady-state ADDs (with an underlay u0)")->required();
    vxlan_cmd->add_option("--fresh", vx_fresh, "comma-separated host netns for the first ADDs (3 at least)")->required();
    vxlan_cmd->add_option("--etcd", vx_etcd, "etcd client URL, reachable from the hosts")->required();
    CLI11_PARSE(app, argc, argv);
    g_container_ipv6 = container_ipv6 == "on";
    if (work.empty())
        work = "/tmp/cnm-bench-" + g_tag;
    ours = fs::absolute(ours);
    if (!base.empty())
        base = fs::absolute(base);
    g_shim = (fs::path(argv[0]).parent_path() / "exec-shim").string();
    g_rss_file = "/tmp/cnm-bench-rss-" + std::to_string(::getpid());
    g_work = work;
    g_origin_ns = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    // At exit, also an early one after a failed check or a signal: the namespaces (and with them
    // every link the bench or a plugin made), the RSS file and the scratch tree go.
    std::atexit([] {
        if (g_origin_ns >= 0)
            (void)::setns(g_origin_ns, CLONE_NEWNET);
        for (auto names = g_netns; auto& name : names)
            del_netns(name);
        std::error_code ignored;
        fs::remove(g_rss_file, ignored);
        fs::remove_all(g_work, ignored);
    });
    for (int sig : { SIGINT, SIGTERM, SIGHUP })
        std::signal(sig, [](int) { std::exit(130); });
    int rc = 0;
    if (ipam_cmd->parsed())
        rc = bench_ipam(reps, ours, ref, base, work);
    if (bridge_cmd->parsed())
        rc = bench_link_plugin("bridge", reps, ours, ref, base, work);
    if (macvlan_cmd->parsed())
        rc = bench_link_plugin("macvlan", reps, ours, ref, base, work);
    if (fill_cmd->parsed())
        rc = bench_fill(kind, reps, endpoints, per_netns, ours, ref, work);
    if (nets_cmd->parsed())
        rc = bench_nets(reps, networks, per_netns, ours, ref, work);
    if (gc_cmd->parsed())
        rc = bench_gc(reps, attachments, ours, work);
    if (par_cmd->parsed())
        rc = bench_parallel(reps, width, ours, ref, work);
    if (vxlan_cmd->parsed()) {
        std::vector<std::string> fresh;
        for (size_t at = 0; at <= vx_fresh.size();) {
            size_t comma = std::min(vx_fresh.find(',', at), vx_fresh.size());
            if (comma > at)
                fresh.push_back(vx_fresh.substr(at, comma - at));
            at = comma + 1;
        }
        rc = bench_vxlan(reps, ours, ref, work, vx_host, fresh, vx_etcd);
    }
    return rc;
}
