// Copy primitives for memory other threads may be writing at the same time.
//
// Emulated physical memory is shared by every emulated CPU, and the kernel semantics we model
// allow racy copies of untyped memory (OSTD uses volatile copies). In C++ a plain memcpy racing
// with a write is a data race; it is harmless on the hardware we run on, but ThreadSanitizer
// reports it. In TSan builds we therefore copy with relaxed atomic accesses, which gives the
// same machine behaviour with defined semantics; other builds use memmove. Both copy
// overlapping ranges as memmove does (a reader and a writer over untyped memory may overlap).
#include <vmspace/io.hpp>

#include <boost/atomic/atomic_ref.hpp>

#include <cstring>

#include "sanitizers.hpp"

namespace vmspace::detail {

#ifdef VMS_TSAN
namespace {
template <class T>
T relaxed_load(const void* p) {
  return __atomic_load_n(static_cast<const T*>(p), __ATOMIC_RELAXED);
}
template <class T>
void relaxed_store(void* p, T v) {
  __atomic_store_n(static_cast<T*>(p), v, __ATOMIC_RELAXED);
}
}  // namespace

void racy_copy(void* dst, const void* src, std::size_t n) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (d > s && d < s + n) {
    // Overlapping, destination above: copy backwards, like memmove.
    while (n > 0) {
      --n;
      relaxed_store<unsigned char>(d + n, relaxed_load<unsigned char>(s + n));
    }
    return;
  }
  // Word copies when both sides share alignment; bytes otherwise.
  if ((reinterpret_cast<std::uintptr_t>(d) & 7) == (reinterpret_cast<std::uintptr_t>(s) & 7)) {
    while (n > 0 && (reinterpret_cast<std::uintptr_t>(d) & 7) != 0) {
      relaxed_store<unsigned char>(d++, relaxed_load<unsigned char>(s++));
      --n;
    }
    while (n >= 8) {
      relaxed_store<std::uint64_t>(d, relaxed_load<std::uint64_t>(s));
      d += 8;
      s += 8;
      n -= 8;
    }
  }
  while (n > 0) {
    relaxed_store<unsigned char>(d++, relaxed_load<unsigned char>(s++));
    --n;
  }
}

void racy_zero(void* dst, std::size_t n) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  while (n > 0 && (reinterpret_cast<std::uintptr_t>(d) & 7) != 0) {
    relaxed_store<unsigned char>(d++, 0);
    --n;
  }
  while (n >= 8) {
    relaxed_store<std::uint64_t>(d, 0);
    d += 8;
    n -= 8;
  }
  while (n > 0) {
    relaxed_store<unsigned char>(d++, 0);
    --n;
  }
}
#else
void racy_copy(void* dst, const void* src, std::size_t n) noexcept {
  // memmove: readers and writers over untyped memory may overlap (io.hpp), and memcpy on
  // overlapping ranges is undefined behaviour.
  if (n != 0) std::memmove(dst, src, n);
}
void racy_zero(void* dst, std::size_t n) noexcept {
  if (n != 0) std::memset(dst, 0, n);
}
#endif

std::uint64_t load_once(const void* p, std::size_t size) noexcept {
  switch (size) {
    case 1: return __atomic_load_n(static_cast<const std::uint8_t*>(p), __ATOMIC_RELAXED);
    case 2: return __atomic_load_n(static_cast<const std::uint16_t*>(p), __ATOMIC_RELAXED);
    case 4: return __atomic_load_n(static_cast<const std::uint32_t*>(p), __ATOMIC_RELAXED);
    default: return __atomic_load_n(static_cast<const std::uint64_t*>(p), __ATOMIC_RELAXED);
  }
}

void store_once(void* p, std::uint64_t v, std::size_t size) noexcept {
  switch (size) {
    case 1: __atomic_store_n(static_cast<std::uint8_t*>(p), static_cast<std::uint8_t>(v), __ATOMIC_RELAXED); break;
    case 2: __atomic_store_n(static_cast<std::uint16_t*>(p), static_cast<std::uint16_t>(v), __ATOMIC_RELAXED); break;
    case 4: __atomic_store_n(static_cast<std::uint32_t*>(p), static_cast<std::uint32_t>(v), __ATOMIC_RELAXED); break;
    default: __atomic_store_n(static_cast<std::uint64_t*>(p), v, __ATOMIC_RELAXED); break;
  }
}

}  // namespace vmspace::detail
