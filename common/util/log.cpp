#include "util/log.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace cnm::log {

namespace {

constexpr size_t max_line = 4096;

struct State {
    bool attempted = false;
    int fd = -1;
    Level level = Level::Info;
    std::string context;
    std::string pid;
};

State& state()
{
    static State s;
    return s;
}

Result<Level> parse_level(std::string_view text, Code code, const std::string& where)
{
    if (text == "error")
        return Level::Error;
    if (text == "info")
        return Level::Info;
    if (text == "debug")
        return Level::Debug;
    return make_error(code, "invalid " + where + " \"" + std::string(text) + "\"", "it must be \"error\", \"info\" or \"debug\"");
}

Result<int> open_log(const std::string& path)
{
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        std::string why = err == ELOOP ? "it is a symbolic link" : err == ENXIO ? "it is a FIFO or socket with no reader" : std::strerror(err);
        return make_error(Code::Io, "cannot open the plugin log " + path, why);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return make_error(Code::Io, "cannot open the plugin log " + path, "it is not a regular file");
    }
    return fd;
}

void append_escaped(std::string& out, std::string_view text)
{
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
}

} // namespace

Result<void> open_from(const Json& conf, const std::function<const char*(const char*)>& getenv)
{
    State& s = state();
    if (s.attempted)
        return {};
    s.attempted = true;

    std::optional<std::string> path;
    const char* env_file = getenv("CNM_LOG_FILE");
    if (env_file && *env_file) {
        path = env_file;
        if (path->front() != '/')
            return make_error(Code::InvalidEnv, "CNM_LOG_FILE must be an absolute path", *path);
    } else if (conf.is_object()) {
        path = TRY(json_string(conf, "logFile", ""));
        if (path && path->empty())
            path.reset();
        if (path && path->front() != '/')
            return make_error(Code::InvalidConfig, "invalid logFile \"" + *path + "\"", "it must be an absolute path");
    }
    Level level = Level::Info;
    const char* env_level = getenv("CNM_LOG_LEVEL");
    if (env_level && *env_level) {
        level = TRY(parse_level(env_level, Code::InvalidEnv, "CNM_LOG_LEVEL"));
    } else if (conf.is_object()) {
        if (auto text = TRY(json_string(conf, "logLevel", "")))
            level = TRY(parse_level(*text, Code::InvalidConfig, "logLevel"));
    }
    if (!path)
        return {};
    s.fd = TRY(open_log(*path));
    s.level = level;
    s.pid = std::to_string(::getpid());
    return {};
}

bool enabled(Level level)
{
    const State& s = state();
    return s.fd >= 0 && static_cast<int>(level) <= static_cast<int>(s.level);
}

void line(Level level, std::string_view text)
{
    if (!enabled(level))
        return;
    const State& s = state();
    timespec now {};
    ::clock_gettime(CLOCK_REALTIME, &now);
    tm utc {};
    ::gmtime_r(&now.tv_sec, &utc);
    char stamp[96]; // room for any int the compiler can imagine in each field
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
        utc.tm_hour, utc.tm_min, utc.tm_sec, now.tv_nsec / 1'000'000);
    std::string out = stamp;
    out += ' ';
    auto space = s.context.find(' ');
    if (space == std::string::npos) {
        out += s.context.empty() ? "cnm" : s.context;
        out += "[" + s.pid + "]";
    } else {
        out += s.context.substr(0, space) + "[" + s.pid + "]" + s.context.substr(space);
    }
    out += ' ';
    append_escaped(out, text);
    if (out.size() > max_line - 1)
        out.resize(max_line - 1);
    out += '\n';
    // One write: O_APPEND makes it land whole at the end even with other plugins writing. A short
    // or failed write is not retried (a second write could land between another process's lines).
    (void)!::write(s.fd, out.data(), out.size());
}

void detail(std::string_view text)
{
    line(Level::Error, text);
}

void set_context(std::string_view context)
{
    state().context = std::string(context);
}

void close()
{
    State& s = state();
    if (s.fd >= 0)
        ::close(s.fd);
    s = State {};
}

} // namespace cnm::log
