// The exec'd plugins' operator new and delete (plugins/alloc.cpp), linked into this binary alone:
// small blocks from one arena, 16-aligned, without a header, reused per size class; large blocks,
// an exhausted arena and a process with a second thread fall back to malloc.

#include "alloc.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

using cnm::plugin_alloc::in_arena;

namespace {

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

} // namespace

// One case, in this order: after the thread at its end no block comes from the arena again.
TEST_CASE("plugin operator new: arena blocks, reuse by class, malloc beyond")
{
    // Every size up to 1 KiB: in the arena, 16-aligned, writable over its whole size, and no two
    // live blocks overlap.
    std::vector<std::pair<char*, size_t>> live;
    for (size_t size = 0; size <= 1024; size += 7) {
        char* p = static_cast<char*>(::operator new(size));
        CHECK(in_arena(p));
        CHECK(addr(p) % 16 == 0);
        std::memset(p, 0xab, size);
        live.push_back({ p, size });
    }
    std::vector<std::pair<uintptr_t, uintptr_t>> spans;
    for (auto& [p, size] : live)
        spans.push_back({ addr(p), addr(p) + (size ? size : 1) });
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
        CHECK(spans[i - 1].second <= spans[i].first);
    for (auto& [p, size] : live)
        ::operator delete(p, size);

    // No header: fresh blocks of one class lie back to back (malloc puts 16 bytes between them).
    // The loop above left two blocks of this class (196 and 203 bytes) on its free list.
    std::vector<char*> same;
    for (int i = 0; i < 4; ++i)
        same.push_back(static_cast<char*>(::operator new(200))); // the class of 208-byte blocks
    CHECK(addr(same[3]) == addr(same[2]) + 208);
    char* b = same[1];
    char* c = same[2];

    // A freed block is the next one of its class, by either delete; another class does not take it.
    ::operator delete(b);
    CHECK(::operator new(20) != b);
    CHECK(::operator new(193) == b);
    ::operator delete(c, 200);
    CHECK(::operator new(208) == c);
    delete[] new char[300]; // new[]/delete[] go the same way
    char* d = new char[300];
    CHECK(in_arena(d));
    delete[] d;

    // Over 1 KiB: malloc's, and freed by free.
    void* big = ::operator new(1025);
    CHECK_FALSE(in_arena(big));
    ::operator delete(big);

    // nothrow new: the same blocks.
    void* n = ::operator new(64, std::nothrow);
    CHECK(in_arena(n));
    ::operator delete(n);

    // Used up: the arena (1 MiB) hands out what it has, then malloc serves, without an error.
    std::set<void*> blocks;
    void* p = nullptr;
    for (size_t i = 0; i < (size_t(1) << 20) / 1024 + 1; ++i) {
        p = ::operator new(1024);
        if (!in_arena(p))
            break;
        blocks.insert(p);
    }
    CHECK_FALSE(in_arena(p));
    CHECK(blocks.size() <= (size_t(1) << 20) / 1024);
    ::operator delete(p);

    // A second thread: from then on every block is malloc's, and an arena block freed by either
    // thread is not handed out again (the free lists are no longer touched).
    void* before = ::operator new(32);
    CHECK(in_arena(before));
    void* from_thread = nullptr;
    std::thread([&] {
        from_thread = ::operator new(32);
        ::operator delete(before);
    }).join();
    CHECK_FALSE(in_arena(from_thread));
    void* after = ::operator new(32);
    CHECK_FALSE(in_arena(after));
    CHECK(after != before);
    ::operator delete(from_thread);
    ::operator delete(after);
}
