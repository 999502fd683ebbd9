#include "cni/skel.hpp"

#include "cni/version.hpp"
#include "util/log.hpp"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace cnm::cni {

namespace {

Result<std::string> read_all(int fd)
{
    std::string out;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return make_error(Code::Io, "error reading from stdin", std::strerror(errno));
        }
        if (n == 0)
            break;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > (16u << 20))
            return make_error(Code::Io, "error reading from stdin: more than 16 MiB");
    }
    return out;
}

// Best-effort version for labelling an error before the conf is fully validated.
std::string guess_version(std::string_view stdin_text)
{
    if (!json_depth_ok(stdin_text))
        return std::string(latest_version);
    Json doc = Json::parse(stdin_text, nullptr, false);
    if (doc.is_object()) {
        auto it = doc.find("cniVersion");
        if (it != doc.end() && it->is_string() && is_supported(it->get<std::string>()))
            return it->get<std::string>();
    }
    return std::string(latest_version);
}

// The log names a bad value: the verb fails, as for any conf error. The file cannot be opened:
// stderr says so and the verb goes on (a broken log must not break networking).
Result<void> open_log(const Json& conf, const Getenv& getenv)
{
    auto opened = log::open_from(conf, getenv);
    if (opened || opened.error().code != Code::Io)
        return opened;
    std::string note = "cnm: " + opened.error().msg + ": " + opened.error().details + "\n";
    (void)!::write(STDERR_FILENO, note.data(), note.size());
    return {};
}

/// "<plugin> <VERB> <container> <ifname>" from the raw variables (they may be what failed).
std::string log_context(const Plugin& plugin, const Getenv& getenv)
{
    std::string out = plugin.name;
    for (const char* name : { "CNI_COMMAND", "CNI_CONTAINERID", "CNI_IFNAME" }) {
        const char* value = getenv(name);
        std::string_view v = value && *value ? value : "-";
        out += ' ';
        for (char c : v.substr(0, 128))
            out += c > ' ' && c < 0x7f ? c : '?';
    }
    return out;
}

void log_outcome(const Result<std::string>& printed, std::chrono::steady_clock::time_point start)
{
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    if (printed) {
        log::line(log::Level::Info, "ok " + std::to_string(ms) + "ms");
        return;
    }
    const Error& e = printed.error();
    log::line(log::Level::Error, "error " + std::to_string(static_cast<int>(e.code)) + " " + std::to_string(ms) + "ms: " + e.msg
            + (e.details.empty() ? "" : ": " + e.details));
}

Result<std::string> run(const Plugin& plugin, const Getenv& getenv, std::string_view stdin_text, bool& log_opened)
{
    Env env = TRY(parse_env(getenv));
    if (env.command == Command::Version) {
        Json out = { { "cniVersion", guess_version(stdin_text) }, { "supportedVersions", supported_versions } };
        return out.dump() + "\n";
    }
    // Not TRY() inside the braces: an early return from a statement expression in the middle of an
    // aggregate initialisation skips the destructors of the members already built.
    NetConf conf = TRY(parse_conf(stdin_text));
    log_opened = true;
    TRY(open_log(conf.raw, getenv));
    Context ctx { std::move(env), std::move(conf) };
    const auto& version = ctx.conf.cni_version;
    Command command = ctx.env.command;
    if (command == Command::Check && !at_least(version, "0.4.0"))
        return make_error(Code::IncompatibleVersion, "config version does not allow CHECK",
            "CHECK needs cniVersion 0.4.0 or later; the config is \"" + version + "\"");
    if ((command == Command::Status || command == Command::Gc) && !at_least(version, "1.1.0"))
        return make_error(Code::IncompatibleVersion,
            "config version does not allow " + std::string(command_name(command)),
            std::string(command_name(command)) + " needs cniVersion 1.1.0 or later; the config is \"" + version + "\"");
    if (ctx.conf.name.empty())
        return make_error(Code::InvalidConfig, "invalid config: \"name\" is required");
    TRY(ctx.env.args.check_known(plugin.known_args));

    auto call = [&](const std::function<Result<void>(const Context&)>& handler) -> Result<std::string> {
        if (handler)
            TRY(handler(ctx));
        return std::string();
    };
    switch (command) {
    case Command::Add: {
        CniResult result = TRY(plugin.add(ctx));
        Json out = TRY(result_to_json(result, version));
        return out.dump(4) + "\n";
    }
    case Command::Del:
        return call(plugin.del);
    case Command::Check:
        return call(plugin.check);
    case Command::Status:
        return call(plugin.status);
    case Command::Gc:
        return call(plugin.gc);
    case Command::Version:
        break;
    }
    return std::string();
}

} // namespace

std::string error_json(const Error& error, std::string_view version)
{
    Json out = { { "cniVersion", std::string(version) }, { "code", static_cast<int>(error.code) }, { "msg", error.msg } };
    if (!error.details.empty())
        out["details"] = error.details;
    return out.dump(4, ' ', false, Json::error_handler_t::replace) + "\n";
}

Outcome dispatch(const Plugin& plugin, const Getenv& getenv, std::string_view stdin_text)
{
    // Handlers report errors as values; an exception reaching here is a bug, but it still becomes a
    // CNI error object rather than an abort with nothing on stdout.
    auto start = std::chrono::steady_clock::now();
    log::set_context(log_context(plugin, getenv));
    Result<std::string> printed = make_error(Code::Internal, "internal error");
    try {
        bool log_opened = false;
        printed = run(plugin, getenv, stdin_text, log_opened);
        // VERSION, or a failure before the conf was read: the log is the one the variables or a
        // conf that is at least JSON names.
        if (!log_opened) {
            Json doc = json_depth_ok(stdin_text) ? Json::parse(stdin_text, nullptr, false) : Json();
            (void)open_log(doc.is_object() ? doc : Json::object(), getenv);
        }
    } catch (const std::exception& e) {
        printed = make_error(Code::Internal, "internal error", e.what());
    }
    log_outcome(printed, start);
    log::close(); // each dispatch() its own, for the tests that run many in one process
    if (printed)
        return { 0, printed.release_value() };
    return { 1, error_json(printed.error(), guess_version(stdin_text)) };
}

int plugin_main(const Plugin& plugin, int argc, char** argv)
{
    if (argc > 1 && (std::strcmp(argv[1], "--version") == 0 || std::strcmp(argv[1], "-v") == 0)) {
        // write(2), not std::cout: <iostream>'s static initializer sets up every locale facet at
        // start-up, on every exec, for this one rarely used line.
        std::string text = "CNI " + std::string(plugin.name) + " plugin (cnm)\nCNI protocol versions supported: " + supported_list() + "\n";
        return ::write(STDOUT_FILENO, text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 1;
    }
    std::string input;
    const char* command = std::getenv("CNI_COMMAND");
    bool version_only = command && std::strcmp(command, "VERSION") == 0;
    if (!version_only || !::isatty(STDIN_FILENO)) {
        auto read = read_all(STDIN_FILENO);
        if (!read) {
            std::string text = error_json(read.error(), latest_version);
            (void)!::write(STDOUT_FILENO, text.data(), text.size());
            return 1;
        }
        input = read.release_value();
    }
    Outcome outcome = dispatch(plugin, [](const char* name) { return std::getenv(name); }, input);
    const char* p = outcome.stdout_text.data();
    size_t left = outcome.stdout_text.size();
    while (left > 0) {
        ssize_t n = ::write(STDOUT_FILENO, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        p += n;
        left -= static_cast<size_t>(n);
    }
    return outcome.exit_code;
}

} // namespace cnm::cni
