// The racy host copies of the copy engine (racy_copy, racy_zero, load_once, store_once;
// declared in internal/copy.hpp): copy primitives for memory other threads may be writing at
// the same time.
//
// Emulated physical memory is shared by every emulated CPU, and the kernel semantics we model
// allow racy copies of untyped memory (OSTD uses volatile copies). In C++ a plain memcpy racing
// with a write is a data race; it is harmless on the hardware we run on, but ThreadSanitizer
// reports it, so TSan builds copy with relaxed atomic accesses (the same machine behaviour with
// defined semantics).
//
// Mutually aligned 8-byte words are never torn (the racy_copy contract in internal/copy.hpp),
// so those are never left to memmove or memset: glibc moves blocks of a few KiB with
// `rep movsb` / `rep stosb`, whose iterations are bytes. When such an instruction is
// interrupted (an interrupt, a preempted vCPU, a debug trap), the word it was moving stays half
// written until it resumes. A racing reader on a CI machine saw such a word: two low bytes new,
// six old (the stress engine's copy check; unit test
// regression_interrupted_racy_copy_exposes_half_written_words reproduces it with a data
// breakpoint). Words go through copy_words() / zero_words() instead. Unaligned heads and tails
// and overlapping ranges, which carry no such guarantee, still use memmove (bytes under TSan).
#include <vmspace/internal/copy.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/sanitizers.hpp"

#if defined(__x86_64__) && !defined(VMS_TSAN) && !defined(VMS_ASAN)
#define VMS_COPY_STRING_OPS 1
#endif

namespace vmspace::internal {

namespace {

template <class T>
T relaxed_load(const void* p) {
  return __atomic_load_n(static_cast<const T*>(p), __ATOMIC_RELAXED);
}
template <class T>
void relaxed_store(void* p, T v) {
  __atomic_store_n(static_cast<T*>(p), v, __ATOMIC_RELAXED);
}

void move_bytes(unsigned char* d, const unsigned char* s, std::size_t n) noexcept {
#ifdef VMS_TSAN
  if (d > s && d < s + n) {
    while (n > 0) {
      --n;
      relaxed_store<unsigned char>(d + n, relaxed_load<unsigned char>(s + n));
    }
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    relaxed_store<unsigned char>(d + i, relaxed_load<unsigned char>(s + i));
#else
  if (n != 0) std::memmove(d, s, n);
#endif
}

void zero_bytes(unsigned char* d, std::size_t n) noexcept {
#ifdef VMS_TSAN
  for (std::size_t i = 0; i < n; ++i) relaxed_store<unsigned char>(d + i, 0);
#else
  if (n != 0) std::memset(d, 0, n);
#endif
}

#ifdef VMS_COPY_STRING_OPS
// Below a few cache lines the string instructions' start-up cost dominates.
constexpr std::size_t kStringOpMinWords = 32;
#endif

// Copies `words` 8-byte words; `d` and `s` are 8-byte aligned and the ranges do not overlap.
// On x86-64 this is `rep movsq`: each iteration moves one aligned word with single 8-byte
// accesses (atomic: Intel SDM vol. 3A, "Guaranteed Atomic Operations"; AMD APM vol. 2, "Access
// Atomicity"), so an interrupted instruction stops between words. Against memmove (A/B in
// README, "Performance"): the same at 64 B and 4 KiB reads, 17% slower on 64 MiB reads. Short
// runs and sanitizer builds use the word loop, which sanitizers instrument: relaxed atomics
// under TSan, checked accesses under ASan.
void copy_words(unsigned char* d, const unsigned char* s, std::size_t words) noexcept {
#ifdef VMS_COPY_STRING_OPS
  if (words >= kStringOpMinWords) {
    asm volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(words) : : "memory");
    return;
  }
#endif
  for (std::size_t i = 0; i < words; ++i) {
    relaxed_store<std::uint64_t>(d + 8 * i, relaxed_load<std::uint64_t>(s + 8 * i));
  }
}

// Zeroes `words` aligned 8-byte words the same way (`rep stosq`).
void zero_words(unsigned char* d, std::size_t words) noexcept {
#ifdef VMS_COPY_STRING_OPS
  if (words >= kStringOpMinWords) {
    asm volatile("rep stosq" : "+D"(d), "+c"(words) : "a"(std::uint64_t{0}) : "memory");
    return;
  }
#endif
  for (std::size_t i = 0; i < words; ++i) relaxed_store<std::uint64_t>(d + 8 * i, 0);
}

std::uintptr_t misalignment(const void* p) noexcept {
  return reinterpret_cast<std::uintptr_t>(p) & 7;
}

}  // namespace

void racy_copy(void* dst, const void* src, std::size_t n) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  const bool overlap = d < s + n && s < d + n;
  if (overlap || misalignment(d) != misalignment(s)) {
    move_bytes(d, s, n);
    return;
  }
  const std::size_t head = std::min<std::size_t>((8 - misalignment(d)) & 7, n);
  move_bytes(d, s, head);
  d += head;
  s += head;
  n -= head;
  copy_words(d, s, n / 8);
  move_bytes(d + (n & ~std::size_t{7}), s + (n & ~std::size_t{7}), n & 7);
}

void racy_zero(void* dst, std::size_t n) noexcept {
  auto* d = static_cast<unsigned char*>(dst);
  const std::size_t head = std::min<std::size_t>((8 - misalignment(d)) & 7, n);
  zero_bytes(d, head);
  d += head;
  n -= head;
  zero_words(d, n / 8);
  zero_bytes(d + (n & ~std::size_t{7}), n & 7);
}

std::uint64_t load_once(const void* p, std::size_t size) noexcept {
  switch (size) {
    case 1:
      return __atomic_load_n(static_cast<const std::uint8_t*>(p), __ATOMIC_RELAXED);
    case 2:
      return __atomic_load_n(static_cast<const std::uint16_t*>(p), __ATOMIC_RELAXED);
    case 4:
      return __atomic_load_n(static_cast<const std::uint32_t*>(p), __ATOMIC_RELAXED);
    default:
      return __atomic_load_n(static_cast<const std::uint64_t*>(p), __ATOMIC_RELAXED);
  }
}

void store_once(void* p, std::uint64_t v, std::size_t size) noexcept {
  switch (size) {
    case 1:
      __atomic_store_n(static_cast<std::uint8_t*>(p), static_cast<std::uint8_t>(v),
                       __ATOMIC_RELAXED);
      break;
    case 2:
      __atomic_store_n(static_cast<std::uint16_t*>(p), static_cast<std::uint16_t>(v),
                       __ATOMIC_RELAXED);
      break;
    case 4:
      __atomic_store_n(static_cast<std::uint32_t*>(p), static_cast<std::uint32_t>(v),
                       __ATOMIC_RELAXED);
      break;
    default:
      __atomic_store_n(static_cast<std::uint64_t*>(p), v, __ATOMIC_RELAXED);
      break;
  }
}

}  // namespace vmspace::internal
