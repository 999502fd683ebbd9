#pragma once
// Test helpers: a temp directory removed on destruction (even when an assertion fails), and a
// fake environment for the CNI dispatcher.

#include "cni/env.hpp"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

namespace cnm::test {

class TempDir {
public:
    TempDir() : TempDir("/tmp") { }
    /// Under `base` (e.g. /dev/shm, for a tmpfs).
    explicit TempDir(const std::string& base)
    {
        std::string tmpl = base + "/cnm-unit-XXXXXX";
        m_path = ::mkdtemp(tmpl.data());
    }
    ~TempDir() { std::filesystem::remove_all(m_path); }
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

struct FakeEnv {
    std::map<std::string, std::string> vars;
    cni::Getenv getenv() const
    {
        return [this](const char* name) -> const char* {
            auto it = vars.find(name);
            return it == vars.end() ? nullptr : it->second.c_str();
        };
    }
};

inline FakeEnv attachment_env(const std::string& command, const std::string& id = "ctr1")
{
    return FakeEnv { { { "CNI_COMMAND", command }, { "CNI_CONTAINERID", id }, { "CNI_NETNS", "/var/run/netns/x" },
        { "CNI_IFNAME", "eth0" }, { "CNI_PATH", "/opt/cni/bin" } } };
}

/// GC spares attachments that became ready less than CNM_GC_GRACE_MS ago (the runtime may have
/// computed its list while their ADD was in flight); GC tests run with none.
struct NoGcGrace {
    std::string old;
    bool had = false;
    NoGcGrace()
    {
        if (const char* v = std::getenv("CNM_GC_GRACE_MS"))
            old = v, had = true;
        ::setenv("CNM_GC_GRACE_MS", "0", 1);
    }
    ~NoGcGrace()
    {
        if (had)
            ::setenv("CNM_GC_GRACE_MS", old.c_str(), 1);
        else
            ::unsetenv("CNM_GC_GRACE_MS");
    }
};

} // namespace cnm::test
