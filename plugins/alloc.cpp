// operator new and delete for the exec'd plugins (not the shim, not the tests): a plugin lives
// for one CNI call and makes about a thousand small allocations (the JSON of the conf and the
// records, the strings of the model), which glibc's malloc and free spend ~180 k of an ADD's
// ~900 k instructions on. Here a small block is cut from one arena and goes back to the free list
// of its 16-byte size class: no header, no coalescing, no trimming. What the
// arena does not serve (a block over 1 KiB, an aligned new, the arena full or not mappable, any
// allocation once a second thread exists) is malloc's, as before.

#include "alloc.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <sys/mman.h>

extern "C" {
extern char __libc_single_threaded; // glibc ≥ 2.32: cleared for good when a second thread starts
}

namespace {

constexpr size_t granule = 16;                  // every block 16-aligned, as malloc's
constexpr size_t max_small = 1024;              // larger: malloc
constexpr size_t classes = max_small / granule; // class c holds blocks of (c + 1) * 16 bytes
constexpr size_t arena_size = size_t(1) << 20;  // reserved, not committed: pages are touched on use

struct FreeBlock {
    FreeBlock* next;
};

// The blocks of all classes are cut one after the other from one region, so an ADD touches as
// few pages as with malloc (a page per class cost more in page faults than the instructions it
// saved); the class of each block is kept in a byte per granule beside it.
struct Arena {
    char* base = nullptr; // nullptr: not mapped yet; (char*)-1: mapping failed, malloc only
    char* bump = nullptr;
    FreeBlock* free[classes] {};
    uint8_t block_class[arena_size / granule] {};
};

Arena arena;

bool arena_ready()
{
    if (arena.base == nullptr) {
        void* p = ::mmap(nullptr, arena_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        arena.base = p == MAP_FAILED ? reinterpret_cast<char*>(-1) : static_cast<char*>(p);
        // Not populated ahead: MADV_POPULATE_WRITE of the 8 pages an ADD uses took 18 µs, what
        // their 8 faults take.
        if (p != MAP_FAILED)
            arena.bump = arena.base;
    }
    return arena.base != reinterpret_cast<char*>(-1);
}

bool in_arena(const void* p)
{
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(arena.base);
    return arena.base != nullptr && arena.base != reinterpret_cast<char*>(-1) && a - b < arena_size;
}

void* small_alloc(size_t size)
{
    size_t c = size == 0 ? 0 : (size - 1) / granule;
    if (FreeBlock* block = arena.free[c]) {
        arena.free[c] = block->next;
        return block;
    }
    size_t block_size = (c + 1) * granule;
    if (static_cast<size_t>(arena.base + arena_size - arena.bump) < block_size)
        return nullptr;
    char* block = arena.bump;
    arena.bump += block_size;
    arena.block_class[(block - arena.base) / granule] = static_cast<uint8_t>(c);
    return block;
}

void* allocate(size_t size)
{
    if (size <= max_small && __libc_single_threaded && arena_ready())
        if (void* p = small_alloc(size))
            return p;
    return std::malloc(size ? size : 1);
}

void release(void* p)
{
    if (!p)
        return;
    if (!in_arena(p)) {
        std::free(p);
        return;
    }
    // Once a second thread exists the lists are no longer touched: a block freed then stays
    // unused until the process exits, which is soon.
    if (!__libc_single_threaded)
        return;
    size_t c = arena.block_class[(static_cast<char*>(p) - arena.base) / granule];
    auto* block = static_cast<FreeBlock*>(p);
    block->next = arena.free[c];
    arena.free[c] = block;
}

void* allocate_or_throw(size_t size)
{
    for (;;) {
        if (void* p = allocate(size))
            return p;
        std::new_handler handler = std::get_new_handler();
        if (!handler)
            throw std::bad_alloc();
        handler();
    }
}

} // namespace

bool cnm::plugin_alloc::in_arena(const void* p) { return ::in_arena(p); }

void* operator new(size_t size) { return allocate_or_throw(size); }
void* operator new[](size_t size) { return allocate_or_throw(size); }
void* operator new(size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void* operator new[](size_t size, const std::nothrow_t&) noexcept { return allocate(size); }
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, size_t) noexcept { release(p); }
void operator delete[](void* p, size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
// The aligned forms (none of ours asks for one) stay libstdc++'s: aligned_alloc and free, never
// a pointer into the arena.
