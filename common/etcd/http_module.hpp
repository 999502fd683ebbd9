#pragma once
// The HTTP transport as a loadable module, for the vxlan plugin (see http_module.cpp): where the
// module is, the checks it must pass before it is loaded, and loading it.

#include "etcd/transport.hpp"
#include "util/result.hpp"

#include <memory>
#include <string>
#include <sys/types.h>

namespace cnm::etcd {

/// The module's directory: the running executable's (the target of /proc/self/exe), so the
/// module is found beside build/plugins/vxlan in the build tree and beside the installed plugin
/// in the CNI bin dir, wherever --destdir or a copy put the two. Never taken from the environment.
Result<std::string> http_module_dir();

/// Opens `dir`/`name` for loading if it is trusted as much as the program itself: the directory
/// and the file owned by root or `owner` (the executable's owner) and writable by neither group
/// nor others, and the file a regular one reached without a symlink (O_NOFOLLOW; O_NONBLOCK, so
/// a FIFO cannot make it wait). Returns the open fd (O_CLOEXEC; the caller closes it), or an
/// error that names the path and the reason. What is loaded is that fd (/proc/self/fd/N), so a
/// rename between the checks and the load changes nothing.
Result<int> open_trusted_module(const std::string& dir, const std::string& name, uid_t owner);

/// open_trusted_module, then dlopen, then the module's table checked against
/// http_module_expected(), then a transport from it. The module stays loaded.
Result<std::unique_ptr<Transport>> load_http_module(const std::string& dir, const std::string& name, uid_t owner);

} // namespace cnm::etcd
