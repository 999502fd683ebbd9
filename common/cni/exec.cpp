#include "cni/exec.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cnm::cni {

namespace {

Result<std::string> find_plugin(const std::string& type, const std::string& path)
{
    if (type.empty() || type.find('/') != std::string::npos || type == "." || type == "..")
        return make_error(Code::InvalidConfig, "invalid plugin type \"" + type + "\"");
    std::string_view rest = path;
    while (!rest.empty()) {
        auto colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        rest = colon == std::string_view::npos ? std::string_view {} : rest.substr(colon + 1);
        if (dir.empty())
            continue;
        std::string candidate = dir + "/" + type;
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
    }
    return make_error(Code::InvalidConfig, "failed to find plugin \"" + type + "\" in path [" + path + "]");
}

} // namespace

Result<std::string> exec_plugin(const std::string& type, Command command, const Env& env, const std::string& conf)
{
    if (env.path.empty())
        return make_error(Code::InvalidEnv, "CNI_PATH is required to run the IPAM plugin \"" + type + "\"");
    std::string binary = TRY(find_plugin(type, env.path));
    // The child sees our environment with CNI_COMMAND set for this call.
    std::vector<std::string> vars;
    for (char** e = environ; *e; ++e)
        if (std::strncmp(*e, "CNI_COMMAND=", 12) != 0)
            vars.emplace_back(*e);
    vars.push_back("CNI_COMMAND=" + std::string(command_name(command)));
    std::vector<char*> envp;
    for (auto& v : vars)
        envp.push_back(v.data());
    envp.push_back(nullptr);

    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0)
        return make_error(Code::Io, "cannot create a pipe", std::strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    char* argv[] = { binary.data(), nullptr };
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    if (rc != 0) {
        ::close(in[1]);
        ::close(out[0]);
        return make_error(Code::Io, "cannot run " + binary, std::strerror(rc));
    }
    const char* p = conf.data();
    size_t left = conf.size();
    while (left > 0) {
        ssize_t n = ::write(in[1], p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; // the child stopped reading; its exit status tells
        p += n;
        left -= static_cast<size_t>(n);
    }
    ::close(in[1]);
    std::string output;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(out[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        output.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) { }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return output;
    // Pass the delegate's own error object through.
    Json err = Json::parse(output, nullptr, false);
    if (err.is_object() && err.contains("code") && err["code"].is_number_integer()) {
        return make_error(static_cast<Code>(err["code"].get<int>()), type + ": " + err.value("msg", std::string()),
            err.contains("details") && err["details"].is_string() ? err["details"].get<std::string>() : "");
    }
    return make_error(Code::Internal, type + " failed (" + (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "killed") + ")", output);
}

Result<CniResult> exec_add(const std::string& type, const Env& env, const std::string& conf)
{
    std::string output = TRY(exec_plugin(type, Command::Add, env, conf));
    Json doc = TRY(parse_json(output, Code::Decode, "the result of " + type));
    auto result = result_from_json(doc);
    if (!result)
        return make_error(Code::Decode, "cannot read the result of " + type, result.error().msg);
    return result;
}

} // namespace cnm::cni
