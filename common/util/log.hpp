#pragma once
// The plugin log: a file a person names to see what the plugins did, one line per verb (time,
// plugin, verb, container, ifname, outcome, duration) and a line for each detail of a failure
// (a step undone, say). Never stdout, which is the CNI result.
//
// Named by $CNM_LOG_FILE, else the conf's top-level "logFile"; the level by $CNM_LOG_LEVEL, else
// "logLevel": "error" (failed verbs and details only), "info" (the default: every verb) or
// "debug". With neither set nothing here makes a system call. The file is opened O_NOFOLLOW (a
// symlink planted at the path is refused, not followed) and O_NONBLOCK (a FIFO there cannot hang
// the plugin), then kept only if fstat says it is a regular file; created 0600, O_APPEND, and
// every line is one write(2), so the lines of plugins running in parallel do not interleave.
//
// The state is per process (a plugin is one process per verb); close() resets it for tests.

#include "util/json.hpp"
#include "util/result.hpp"

#include <functional>
#include <string>
#include <string_view>

namespace cnm::log {

enum class Level { Error = 0, Info = 1, Debug = 2 };

/// Opens the log the environment or the conf names (the first call only; later calls until
/// close() do nothing). A logFile/logLevel of the wrong type or value is code 7 (code 4 for the
/// variables); a path that is not absolute too. A file that cannot be opened safely is code 5,
/// and the log stays closed.
Result<void> open_from(const Json& conf, const std::function<const char*(const char*)>& getenv);

/// Whether a line at `level` would be written (false when no log is open): test before building one.
bool enabled(Level level);

/// Writes "<UTC time> <context> <text>\n" in one write(2), if a log is open at `level` or above.
/// Newlines and other control characters in `text` are escaped; a line is cut at 4 KiB.
void line(Level level, std::string_view text);

/// A detail of the verb's outcome (a step undone, a cleanup that failed): written at every level.
void detail(std::string_view text);

/// What each line starts with after the time, e.g. "bridge[1234] ADD ctr1 eth0" (the pid is added here).
void set_context(std::string_view context);

/// Closes the log and forgets everything open_from() and set_context() set.
void close();

} // namespace cnm::log
