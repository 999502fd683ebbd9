#pragma once
// Crash-safety fault injection. When the environment variable CNM_FAULT names a point, the
// process kills itself with SIGKILL there, as a crash or an OOM kill would. Tests use it to show
// that a later DEL or GC cleans up whatever state that point leaves behind.

namespace cnm {

/// Dies with SIGKILL if CNM_FAULT equals `point`; otherwise does nothing.
void fault_point(const char* point);

} // namespace cnm
