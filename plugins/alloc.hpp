#pragma once
// The exec'd plugins' operator new and delete (plugins/alloc.cpp); this is for its tests.

namespace cnm::plugin_alloc {

/// Whether `p` is a block of the plugins' arena (false for malloc's, and before the first new).
bool in_arena(const void* p);

} // namespace cnm::plugin_alloc
