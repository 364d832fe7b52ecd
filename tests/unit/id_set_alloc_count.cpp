// The global operator new/delete replacement of unit_id_set (declared in id_set_util.hpp):
// counts the calling thread's heap allocations.
// The malloc/free calls sit in out-of-line helpers: once gcc inlines the replaced operators
// into their callers it sees `new[]` paired with free() and warns (-Wmismatched-new-delete),
// although both halves are this file's.
#include <cstddef>
#include <cstdlib>
#include <new>

#include "id_set_util.hpp"

thread_local std::size_t tl_allocation_count = 0;

namespace {
#ifndef VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT
[[gnu::noinline]] void* counted_allocate(std::size_t size) {
  ++tl_allocation_count;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void counted_release(void* p) noexcept { std::free(p); }
#endif
}  // namespace

#ifndef VMS_TEST_NO_OPERATOR_NEW_REPLACEMENT
void* operator new(std::size_t size) { return counted_allocate(size); }
void* operator new[](std::size_t size) { return counted_allocate(size); }
void operator delete(void* p) noexcept { counted_release(p); }
void operator delete[](void* p) noexcept { counted_release(p); }
void operator delete(void* p, std::size_t) noexcept { counted_release(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_release(p); }
#endif
