// cni-bench: times CNI plugin executables the way a runtime runs them (fork/exec, CNI_* env, conf
// on stdin, result on stdout), ours against the reference plugins, interleaved in one run so that
// a noisy machine slows both alike. Reports medians, p90 and the ratio, and peak RSS per exec.
//
//   cni-bench ipam   [--reps N] [--ours DIR] [--ref DIR] [--work DIR]
//       our ipam vs host-local: ADD and DEL, then ADD at 0 / 1000 / 5000 / 20000 existing leases.

#include "cni/conf.hpp"
#include "ipam/ipam.hpp"
#include "netlink/route.hpp"
#include "netlink/socket.hpp"
#include "netns/netns.hpp"
#include "store/file_store.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <fcntl.h>
#include <net/if.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace cnm;
namespace fs = std::filesystem;

namespace {

struct Run {
    double ms = 0;
    long rss_kb = 0;
    int status = 0;
    std::string out;
};

// Peak RSS: ru_maxrss after an exec still reports the memory of the process that called exec
// (with posix_spawn, the benchmark itself), so RSS runs go through a tiny static launcher
// (exec_shim.c) that forks from its own small image and reports the plugin's peak. Timing runs
// exec the plugin directly.
std::string g_shim;
std::string g_rss_file;
std::string g_work;
std::vector<std::string> g_netns; // scratch namespaces still present, removed at exit whatever happens

void add_netns(const std::string& name)
{
    if (std::system(("ip netns add " + name).c_str()) != 0)
        std::exit(1);
    g_netns.push_back(name);
}

void del_netns(const std::string& name)
{
    (void)std::system(("ip netns del " + name).c_str());
    g_netns.erase(std::remove(g_netns.begin(), g_netns.end(), name), g_netns.end());
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

Run exec_plugin(const std::string& path, const std::vector<std::string>& env, const std::string& input, bool via_shim = false)
{
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0)
        std::abort();
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
    if (via_shim)
        argv.push_back(const_cast<char*>(g_shim.c_str()));
    argv.push_back(const_cast<char*>(path.c_str()));
    argv.push_back(nullptr);
    if (g_sync_fd >= 0)
        ::syncfs(g_sync_fd);
    auto start = std::chrono::steady_clock::now();
    pid_t pid = 0;
    if (int err = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data()); err != 0) {
        std::cerr << "cannot run " << argv[0] << ": " << std::strerror(err) << "\n";
        std::exit(1);
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    (void)!::write(in[1], input.data(), input.size());
    ::close(in[1]);
    Run run;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out[0], buf, sizeof buf)) > 0)
        run.out.append(buf, static_cast<size_t>(n));
    ::close(out[0]);
    struct rusage usage {};
    ::wait4(pid, &run.status, 0, &usage);
    run.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (via_shim) {
        std::ifstream in(g_rss_file);
        in >> run.rss_kb;
    }
    return run;
}

struct Stats {
    std::vector<double> ms;
    long rss_kb = 0; // from the runs made through the shim only
    void add(const Run& r) { ms.push_back(r.ms); }
    void add_rss(const Run& r) { rss_kb = std::max(rss_kb, r.rss_kb); }
    double pct(double p) const
    {
        auto v = ms;
        std::sort(v.begin(), v.end());
        return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
    }
    double median() const { return pct(0.5); }
};

std::vector<std::string> cni_env(const std::string& command, const std::string& id, const std::string& path)
{
    return { "CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=/run/netns/bench", "CNI_IFNAME=eth0",
        "CNI_PATH=" + path, "PATH=/usr/bin:/bin" };
}

std::string ipam_conf(const std::string& type, const std::string& data_dir)
{
    return R"({"cniVersion":"1.0.0","name":"bench","type":"bridge","ipam":{"type":")" + type + R"(","dataDir":")" + data_dir
        + R"(","ranges":[[{"subnet":"10.213.0.0/16"}]]}})";
}

void check_ok(const Run& r, const std::string& what)
{
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        std::cerr << what << " failed: " << r.out << "\n";
        std::exit(1);
    }
}

void print_row(const std::string& what, const Stats& ours, const Stats& ref)
{
    std::printf("%-34s ours %7.2f ms (p90 %6.2f)   ref %7.2f ms (p90 %6.2f)   ref/ours %5.1fx\n", what.c_str(),
        ours.median(), ours.pct(0.9), ref.median(), ref.pct(0.9), ref.median() / ours.median());
}

// The durability the store's rule (temp, fsync, rename, fsync dir) asks of one ADD, and nothing
// else, in-process: a lease and an endpoint record — they live in different directories (the
// pool's, shared between networks, and the network's) — each written to a temp file and renamed
// into place, then the files' and the directories' fsyncs, in the order our FileStore::sync uses
// (the cheapest order found; fsyncs from parallel threads and sync_file_range first were both
// slower here).
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
    auto start = std::chrono::steady_clock::now();
    for (int k = 0; k < 2; ++k) {
        fd[k] = ::openat(dfd[k], ".tmp", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        std::string doc(sizes[k], ' ');
        if (fd[k] < 0 || ::write(fd[k], doc.data(), doc.size()) != static_cast<ssize_t>(doc.size())
            || ::renameat(dfd[k], ".tmp", dfd[k], name.c_str()) < 0)
            std::abort();
    }
    for (int f : { fd[0], fd[1], dfd[0], dfd[1] })
        if (::fsync(f) < 0)
            std::abort();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    for (int k = 0; k < 2; ++k) {
        ::unlinkat(dfd[k], name.c_str(), 0);
        ::close(fd[k]);
        ::close(dfd[k]);
    }
    return ms;
}

// The least an ADD can take here, from floors measured in the same rounds as the plugins, and what
// that leaves of the ratio target.
void print_floor(const std::string& exec_what, const Stats& exec, const Stats* kernel, const Stats& durable, const Stats& ref_add,
    const Stats& ours_add, double target)
{
    double sum = exec.median() + (kernel ? kernel->median() : 0) + durable.median();
    std::printf("floors, same rounds: exec of %s %.2f ms", exec_what.c_str(), exec.median());
    if (kernel)
        std::printf(" + kernel work %.2f ms", kernel->median());
    std::printf(" + durability of one ADD (lease + endpoint record, 4 fsyncs) %.2f ms = %.2f ms\n", durable.median(), sum);
    std::printf("best ADD ratio any plugin with that durability can reach here: %.2f / %.2f = %.1fx (ours %.1fx, target %.0fx)\n",
        ref_add.median(), sum, ref_add.median() / sum, ref_add.median() / ours_add.median(), target);
}

// What every exec pays before any work: /bin/true, and VERSION of each plugin (start-up alone).
struct StartUp {
    Stats floor, ours, ref;
};

StartUp measure_start_up(const std::string& ours, const std::string& ref, int reps)
{
    StartUp s;
    for (int i = 0; i < reps; ++i) {
        s.floor.add(exec_plugin("/bin/true", {}, ""));
        s.ours.add(exec_plugin(ours, { "CNI_COMMAND=VERSION" }, ""));
        s.ref.add(exec_plugin(ref, { "CNI_COMMAND=VERSION" }, ""));
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
    std::ofstream(dir + "/bench/last_reserved_ip.0") << (to ? last.str() : "");
}

// Seeds ours through the library's own ADD, so the records are exactly what the plugin writes.
void seed_ours(const std::string& dir, size_t from, size_t to)
{
    auto conf = cni::parse_conf(ipam_conf("ipam", dir));
    auto args = cni::parse_cni_args("");
    auto ic = ipam::parse_ipam_conf(*conf, *args);
    auto store = FileStore::open(dir);
    Registry registry(**store);
    for (size_t i = from; i < to; ++i) {
        ipam::Request req { "bench", "bridge", Frontend::Cni, "seed-" + std::to_string(i), "eth0", "/run/netns/seed", Json::object() };
        auto added = ipam::add(registry, *ic, req);
        if (!added || !(*store)->sync()) { // one verb, one durability barrier, as in the plugin
            std::cerr << "seeding failed: " << (added ? "sync" : added.error().msg) << "\n";
            std::exit(1);
        }
    }
}

int bench_ipam(int reps, const std::string& ours_dir, const std::string& ref_dir, const std::string& work)
{
    std::string ours = ours_dir + "/ipam", ref = ref_dir + "/host-local";
    std::string ours_state = work + "/ours", ref_state = work + "/host-local";
    fresh_work_dir(work);
    std::string ours_conf = ipam_conf("ipam", ours_state), ref_conf = ipam_conf("host-local", ref_state);
    std::string path = ours_dir + ":" + ref_dir;

    StartUp start_up = measure_start_up(ours, ref, reps);
    std::printf("exec floor (/bin/true): %.2f ms\n", start_up.floor.median());
    print_row("VERSION (start-up cost)", start_up.ours, start_up.ref);
    std::printf("\n");

    // One verb for every id, alternating which plugin goes first.
    auto interleaved = [&](const char* command, int first, Stats& o_stats, Stats& r_stats, const std::function<void()>& each_round) {
        for (int i = 0; i < reps; ++i) {
            if (each_round)
                each_round();
            std::string id = "bench-" + std::to_string(i);
            bool ours_first = i % 2 == first;
            for (int k = 0; k < 2; ++k) {
                bool o = (k == 0) == ours_first;
                Run r = exec_plugin(o ? ours : ref, cni_env(command, id, path), o ? ours_conf : ref_conf);
                check_ok(r, std::string(o ? "our " : "host-local ") + command);
                (o ? o_stats : r_stats).add(r);
            }
        }
    };
    Stats add_ours, add_ref, del_ours, del_ref, static_exec, durable;
    // A static no-op (the RSS launcher, run without arguments): the least any static plugin's exec costs.
    interleaved("ADD", 0, add_ours, add_ref, [&] {
        static_exec.add(exec_plugin(g_shim, {}, ""));
        durable.ms.push_back(durable_add_floor(work));
    });
    interleaved("DEL", 1, del_ours, del_ref, nullptr);
    for (int i = 0; i < 5; ++i)
        for (bool o : { true, false }) {
            std::string id = "rss-" + std::to_string(i);
            Run r = exec_plugin(o ? ours : ref, cni_env("ADD", id, path), o ? ours_conf : ref_conf, true);
            check_ok(r, "RSS ADD");
            (o ? add_ours : add_ref).add_rss(r);
            check_ok(exec_plugin(o ? ours : ref, cni_env("DEL", id, path), o ? ours_conf : ref_conf), "RSS DEL");
        }
    std::printf("ipam vs host-local, %d interleaved runs each (empty /16)\n", reps);
    print_row("ADD", add_ours, add_ref);
    print_row("DEL", del_ours, del_ref);
    std::printf("peak RSS of ADD: ours %ld KiB, host-local %ld KiB (ours/ref %.2f)\n", add_ours.rss_kb, add_ref.rss_kb,
        static_cast<double>(add_ours.rss_kb) / static_cast<double>(add_ref.rss_kb));
    print_floor("a static no-op", static_exec, nullptr, durable, add_ref, add_ours, 4);
    std::printf("\n");

    std::printf("ADD with existing leases in the /16 (ADD then DEL, %d runs each)\n", reps);
    fs::remove_all(ours_state);
    fs::remove_all(ref_state);
    // The control: ours on an empty pool, timed in the same rounds as ours on the seeded one, so
    // "at N / at 0" compares runs minutes apart on a drifting machine no more.
    std::string empty_state = work + "/ours-empty", empty_conf = ipam_conf("ipam", empty_state);
    size_t seeded = 0;
    // 200 is the fill of the reference measurement in reference/cni.md (host-local ~25 ms there).
    for (size_t count : { size_t(0), size_t(200), size_t(1000), size_t(5000), size_t(20000) }) {
        seed_ours(ours_state, seeded, count);
        seed_host_local(ref_state, seeded, count);
        seeded = count;
        ::sync(); // the seeds' writeback must not land on the first timed runs
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
        std::printf("%-34s ours at %zu / ours at 0 in the same rounds = %.2f\n", "", count, a_ours.median() / a_empty.median());
    }
    return 0;
}

// bridge or macvlan: ours with in-process ipam against the reference plugin with host-local, one
// fresh netns per attachment (made before the timed ADD, removed after the DEL). Run it inside a
// throwaway "host" netns (run.sh does) so the bridges and the macvlan master never touch the
// machine's own interfaces.
int bench_link_plugin(const std::string& kind, int reps, const std::string& ours_dir, const std::string& ref_dir, const std::string& work)
{
    std::string ours = ours_dir + "/" + kind, ref = ref_dir + "/" + kind;
    fresh_work_dir(work);
    if (kind == "macvlan" && std::system("ip link add cnmbenchmv0 type veth peer name cnmbenchmv1 && ip link set cnmbenchmv0 up") != 0)
        std::exit(1);
    auto conf = [&](bool o) {
        std::string head = R"({"cniVersion":"1.0.0","name":"bench)" + kind + "-" + (o ? "ours" : "ref") + R"(","type":")" + kind + "\",";
        std::string keys = kind == "bridge" ? std::string(R"("bridge":")") + (o ? "cnmbench0" : "refbench0") + R"(","isGateway":true,)"
                                            : std::string(R"("master":"cnmbenchmv0","mode":"bridge",)");
        return head + keys + R"("ipam":{"type":")" + (o ? "ipam" : "host-local") + R"(","dataDir":")" + work + (o ? "/ours" : "/ref")
            + R"(","ranges":[[{"subnet":"10.213.)" + (o ? "200" : "201") + R"(.0/24"}]]}})";
    };
    std::string path = ours_dir + ":" + ref_dir;
    // The floors under any plugin's time: an exec, and the kernel's own work — the link made
    // into a fresh netns (a veth for bridge, a macvlan on the bench's master for macvlan),
    // configured as an ADD must, and deleted again, in-process through our netlink layer.
    StartUp start_up = measure_start_up(ours, ref, reps);
    Stats kernel_add, kernel_del;
    auto host = netlink::Socket::open();
    if (!host) {
        std::cerr << "netlink: " << host.error().msg << "\n";
        std::exit(1);
    }
    int master = kind == "macvlan" ? static_cast<int>(::if_nametoindex("cnmbenchmv0")) : 0;
    for (int i = 0; i < reps; ++i) {
        std::string ns = "cnm-bench-k-" + std::to_string(::getpid());
        add_netns(ns);
        auto target = Netns::open("/run/netns/" + ns);
        if (!target) {
            std::cerr << "kernel floor: " << target.error().msg << "\n";
            std::exit(1);
        }
        // The macvlan lives in the target netns only, so it is deleted through a socket there.
        std::unique_ptr<netlink::Socket> inside;
        if (auto guard = NetnsGuard::enter(*target)) {
            if (auto opened = netlink::Socket::open())
                inside = opened.release_value();
        }
        if (!inside) {
            std::cerr << "kernel floor: no netlink socket in " << ns << "\n";
            std::exit(1);
        }
        auto t0 = std::chrono::steady_clock::now();
        auto made = kind == "macvlan"
            ? netlink::create_macvlan(**host, { "cnmbk1", master, target->fd(), 4 /* MACVLAN_MODE_BRIDGE */, std::nullopt, std::nullopt })
            : netlink::create_veth(**host, { "cnmbk0", "cnmbk1", target->fd(), std::nullopt, std::nullopt });
        // What the kernel must do for the container's interface after that, whoever asks: rename
        // it to the runtime's name, bring it up, give it its address (the host end of a veth up).
        auto configured = [&]() -> Result<void> {
            TRY(std::move(made));
            auto link = TRY(netlink::get_link(*inside, "cnmbk1"));
            if (!link)
                return make_error(Code::Kernel, "the new link is missing");
            netlink::LinkChange rename, up;
            rename.name = "eth0";
            up.up = true;
            TRY(netlink::set_link(*inside, link->index, rename));
            TRY(netlink::set_link(*inside, link->index, up));
            TRY(netlink::add_address(*inside, link->index, *IpNet::parse("10.213.202.2/24")));
            if (kind != "macvlan") {
                auto peer = TRY(netlink::get_link(**host, "cnmbk0"));
                if (!peer)
                    return make_error(Code::Kernel, "the host end is missing");
                TRY(netlink::set_link(**host, peer->index, up));
            }
            return {};
        }();
        auto t1 = std::chrono::steady_clock::now();
        auto gone = configured ? netlink::delete_link(*inside, "eth0") : Result<void>(configured.error());
        auto t2 = std::chrono::steady_clock::now();
        inside.reset();
        del_netns(ns);
        if (!gone) {
            std::cerr << "kernel floor: " << gone.error().msg << " " << gone.error().details << "\n";
            std::exit(1);
        }
        kernel_add.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        kernel_del.ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    Stats true_exec, durable;
    Stats add_ours, add_ref, del_ours, del_ref;
    for (int i = -2; i < reps + 5; ++i) { // two warm-up rounds create the bridges; the last 5 measure RSS
        bool rss_round = i >= reps;
        bool ours_first = i % 2 == 0;
        for (int k = 0; k < 2; ++k) {
            bool o = (k == 0) == ours_first;
            std::string ns = "cnm-bench-" + std::to_string(::getpid()) + "-" + std::to_string(k);
            add_netns(ns);
            std::string id = "b" + std::to_string(i + 2);
            auto env = cni_env("ADD", id, path);
            env[2] = "CNI_NETNS=/run/netns/" + ns;
            Run add = exec_plugin(o ? ours : ref, env, conf(o), rss_round);
            check_ok(add, (o ? "our " : "reference ") + kind + " ADD");
            env[0] = "CNI_COMMAND=DEL";
            Run del = exec_plugin(o ? ours : ref, env, conf(o));
            check_ok(del, (o ? "our " : "reference ") + kind + " DEL");
            if (rss_round) {
                (o ? add_ours : add_ref).add_rss(add);
            } else if (i >= 0) {
                (o ? add_ours : add_ref).add(add);
                (o ? del_ours : del_ref).add(del);
            }
            if (k == 0 && i >= 0 && !rss_round) {
                true_exec.add(exec_plugin("/bin/true", {}, ""));
                durable.ms.push_back(durable_add_floor(work));
            }
            del_netns(ns);
        }
    }
    std::printf("floors: exec of /bin/true %.2f ms; in-process %s create + rename, up, address %.2f ms, delete %.2f ms (kernel only)\n", start_up.floor.median(),
        kind == "macvlan" ? "macvlan" : "veth", kernel_add.median(), kernel_del.median());
    print_row("VERSION (start-up cost)", start_up.ours, start_up.ref);
    std::printf("%s + ipam vs reference %s + host-local, %d interleaved runs, fresh netns each\n", kind.c_str(), kind.c_str(), reps);
    print_row("ADD", add_ours, add_ref);
    print_row("DEL", del_ours, del_ref);
    std::printf("peak RSS (ADD): ours %ld KiB, reference %ld KiB (ours/ref %.2f)\n", add_ours.rss_kb, add_ref.rss_kb,
        static_cast<double>(add_ours.rss_kb) / static_cast<double>(add_ref.rss_kb));
    // /bin/true, dynamic: the link plugins link libmnl, and Debian ships it without a static archive.
    print_floor("/bin/true (dynamic, as libmnl is)", true_exec, &kernel_add, durable, add_ref, add_ours, 8);
    std::printf("best DEL ratio: %.2f / (%.2f + %.2f) = %.1fx (exec + kernel delete; ours %.1fx)\n", del_ref.median(), true_exec.median(),
        kernel_del.median(), del_ref.median() / (true_exec.median() + kernel_del.median()), del_ref.median() / del_ours.median());
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    CLI::App app { "cni-bench: our CNI plugins against the reference ones, interleaved" };
    app.require_subcommand(1);
    int reps = 41;
    std::string ours = "build/plugins", ref = "/usr/lib/cni", work = "/tmp/cnm-bench";
    auto* ipam_cmd = app.add_subcommand("ipam", "our ipam vs host-local");
    auto* bridge_cmd = app.add_subcommand("bridge", "our bridge + ipam vs the reference bridge + host-local (run inside a throwaway netns)");
    auto* macvlan_cmd = app.add_subcommand("macvlan", "our macvlan + ipam vs the reference macvlan + host-local (run inside a throwaway netns)");
    for (auto* cmd : { ipam_cmd, bridge_cmd, macvlan_cmd }) {
        cmd->add_option("--reps", reps, "runs per measurement");
        cmd->add_option("--ours", ours, "directory of our plugins");
        cmd->add_option("--ref", ref, "directory of the reference plugins");
        cmd->add_option("--work", work, "scratch directory (removed)");
    }
    CLI11_PARSE(app, argc, argv);
    ours = fs::absolute(ours);
    g_shim = (fs::path(argv[0]).parent_path() / "exec-shim").string();
    g_rss_file = "/tmp/cnm-bench-rss-" + std::to_string(::getpid());
    g_work = work;
    // At exit, also an early one after a failed check: the scratch namespaces, the RSS file and the
    // scratch tree go.
    std::atexit([] {
        for (auto names = g_netns; auto& name : names)
            del_netns(name);
        std::error_code ignored;
        fs::remove(g_rss_file, ignored);
        fs::remove_all(g_work, ignored);
    });
    int rc = 0;
    if (ipam_cmd->parsed())
        rc = bench_ipam(reps, ours, ref, work);
    if (bridge_cmd->parsed())
        rc = bench_link_plugin("bridge", reps, ours, ref, work);
    if (macvlan_cmd->parsed())
        rc = bench_link_plugin("macvlan", reps, ours, ref, work);
    return rc;
}
