#include "cnm/model.hpp"

#include <charconv>
#include <cstdlib>
#include <ctime>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

#include "util/boot_id.hpp"
#include "util/text.hpp"

#include <chrono>

namespace cnm {

namespace {

Error bad(const char* what, const std::string& why)
{
    return make_error(Code::StateCorrupt, std::string("malformed ") + what + " record", why);
}

template<typename T>
Result<T> field(const Json& doc, const char* key, const char* what)
{
    auto it = doc.find(key);
    if (it == doc.end())
        return T {};
    try {
        return it->get<T>();
    } catch (const std::exception& e) {
        return bad(what, std::string(key) + ": " + e.what());
    }
}

} // namespace

std::string_view frontend_name(Frontend f)
{
    return f == Frontend::Docker ? "docker" : "cni";
}

std::optional<Frontend> parse_frontend(std::string_view s)
{
    if (s == "cni")
        return Frontend::Cni;
    if (s == "docker")
        return Frontend::Docker;
    return std::nullopt;
}

std::string now_rfc3339()
{
    // Calendar arithmetic, not gmtime_r(): glibc's first gmtime_r in a process runs tzset, which
    // reads /etc/localtime — seven syscalls on every exec, for a stamp that is UTC anyway.
    using namespace std::chrono;
    auto secs = floor<seconds>(system_clock::now());
    auto days = floor<std::chrono::days>(secs);
    year_month_day date { days };
    hh_mm_ss time { secs - days };
    std::string out;
    out.reserve(20);
    append_dec(out, static_cast<unsigned>(static_cast<int>(date.year())), 4);
    out += '-';
    append_dec(out, static_cast<unsigned>(date.month()), 2);
    out += '-';
    append_dec(out, static_cast<unsigned>(date.day()), 2);
    out += 'T';
    append_dec(out, static_cast<unsigned long long>(time.hours().count()), 2);
    out += ':';
    append_dec(out, static_cast<unsigned long long>(time.minutes().count()), 2);
    out += ':';
    append_dec(out, static_cast<unsigned long long>(time.seconds().count()), 2);
    out += 'Z';
    return out;
}

Json NetworkRecord::to_json() const
{
    return Members()
        .add("name", name)
        .add("driver", driver)
        .add("frontend", frontend_name(frontend))
        .add("addressSpace", address_space)
        .add("subnets", subnets)
        .add("options", options)
        .add("dockerIDs", docker_ids)
        .add("created", created)
        .add("schema", record_schema)
        .done();
}

Result<NetworkRecord> NetworkRecord::from_json(const Json& doc)
{
    NetworkRecord r;
    r.name = TRY(field<std::string>(doc, "name", "network"));
    r.driver = TRY(field<std::string>(doc, "driver", "network"));
    auto fe = parse_frontend(TRY(field<std::string>(doc, "frontend", "network")));
    if (!fe)
        return bad("network", "unknown frontend");
    r.frontend = *fe;
    r.address_space = TRY(field<std::string>(doc, "addressSpace", "network"));
    r.subnets = TRY(field<std::vector<std::string>>(doc, "subnets", "network"));
    r.options = doc.value("options", Json::object());
    r.docker_ids = TRY(field<std::vector<std::string>>(doc, "dockerIDs", "network"));
    r.created = TRY(field<std::string>(doc, "created", "network"));
    if (r.name.empty() || r.address_space.empty())
        return bad("network", "name and addressSpace are required");
    return r;
}

Json EndpointRecord::to_json() const
{
    Json addrs = Json::array();
    for (auto& a : addresses) {
        Members m;
        m.add("address", a.address.str()).add("pool", a.pool);
        if (a.gateway)
            m.add("gateway", a.gateway->str());
        addrs.push_back(m.done());
    }
    return Members()
        .add("network", network)
        .add("containerID", container_id)
        .add("ifname", ifname)
        .add("sandbox", sandbox)
        .add("netns", netns)
        .add("frontend", frontend_name(frontend))
        .add("phase", phase == Phase::Ready ? "ready" : "creating")
        .add("addresses", std::move(addrs))
        .add("mac", mac)
        .add("created", created)
        .add("readyAtMs", ready_at_ms)
        .add("bootId", boot_id)
        .add("mountNs", mount_ns)
        .add("schema", record_schema)
        .add("driver", driver_state)
        .done();
}

Result<EndpointRecord> EndpointRecord::from_json(const Json& doc)
{
    EndpointRecord r;
    r.network = TRY(field<std::string>(doc, "network", "endpoint"));
    r.container_id = TRY(field<std::string>(doc, "containerID", "endpoint"));
    r.ifname = TRY(field<std::string>(doc, "ifname", "endpoint"));
    r.sandbox = TRY(field<std::string>(doc, "sandbox", "endpoint"));
    r.netns = TRY(field<std::string>(doc, "netns", "endpoint"));
    auto fe = parse_frontend(TRY(field<std::string>(doc, "frontend", "endpoint")));
    if (!fe)
        return bad("endpoint", "unknown frontend");
    r.frontend = *fe;
    auto phase = TRY(field<std::string>(doc, "phase", "endpoint"));
    if (phase != "ready" && phase != "creating")
        return bad("endpoint", "unknown phase \"" + phase + "\"");
    r.phase = phase == "ready" ? Phase::Ready : Phase::Creating;
    if (auto it = doc.find("readyAtMs"); it != doc.end() && it->is_number_integer()) // absent in records before it
        r.ready_at_ms = it->get<int64_t>();
    if (auto it = doc.find("bootId"); it != doc.end() && it->is_string())
        r.boot_id = it->get<std::string>();
    if (auto it = doc.find("mountNs"); it != doc.end() && it->is_number_unsigned())
        r.mount_ns = it->get<uint64_t>();
    auto addrs = doc.value("addresses", Json::array());
    if (!addrs.is_array())
        return bad("endpoint", "addresses must be a list");
    for (auto& a : addrs) {
        if (!a.is_object())
            return bad("endpoint", "each address must be an object");
        EndpointAddress ea;
        auto net = IpNet::parse(TRY(field<std::string>(a, "address", "endpoint")));
        if (!net)
            return bad("endpoint", "bad address");
        ea.address = *net;
        ea.pool = TRY(field<std::string>(a, "pool", "endpoint"));
        if (a.contains("gateway")) {
            auto gw = IpAddr::parse(TRY(field<std::string>(a, "gateway", "endpoint")));
            if (!gw)
                return bad("endpoint", "bad gateway");
            ea.gateway = *gw;
        }
        r.addresses.push_back(ea);
    }
    r.mac = TRY(field<std::string>(doc, "mac", "endpoint"));
    r.created = TRY(field<std::string>(doc, "created", "endpoint"));
    r.driver_state = doc.value("driver", Json::object());
    if (!r.driver_state.is_object())
        return bad("endpoint", "driver must be an object");
    if (r.network.empty() || r.container_id.empty())
        return bad("endpoint", "network and containerID are required");
    return r;
}

const std::string& current_boot()
{
    static std::string cached;
    static bool read = false;
    // CNM_BOOT_ID is read on every call (tests fake a new boot within one process).
    if (const char* env = std::getenv(boot_id_env); env && *env) {
        static std::string from_env;
        from_env = env;
        return from_env;
    }
    if (!read) {
        auto id = boot_id();
        cached = id ? id.release_value() : "";
        read = true;
    }
    return cached;
}

uint64_t current_mount_ns()
{
    // The link's text, "mnt:[<inode>]", is what stat() would report as the inode, without the
    // nsfs lookup that following the link costs (3.6 against 6.5 µs here); stat() if it is not.
    static uint64_t cached = [] {
        char text[64];
        ssize_t n = ::readlink("/proc/self/ns/mnt", text, sizeof text - 1);
        if (n > 6 && std::string_view(text, 5) == "mnt:[" && text[n - 1] == ']') {
            uint64_t inode = 0;
            auto [end, ec] = std::from_chars(text + 5, text + n - 1, inode);
            if (ec == std::errc() && end == text + n - 1 && inode != 0)
                return inode;
        }
        struct stat st {};
        return ::stat("/proc/self/ns/mnt", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : uint64_t(0);
    }();
    return cached;
}

int64_t now_ms()
{
    timespec ts {};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

} // namespace cnm
