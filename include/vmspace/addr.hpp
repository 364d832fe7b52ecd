// Address types, address-space layout constants and overflow-safe address arithmetic.
//
// Layout constants are OSTD's x86-64 values (`ostd/src/mm/mod.rs`, `ostd/src/mm/kspace/mod.rs`,
// `ostd/src/arch/x86/mm/mod.rs`): the emulated machine
// is a 4-level, 48-bit x86-64 by default. Other PTE formats carry their own PagingConsts
// (pte.hpp); these constants describe the VmSpace layer, which always uses x86-64.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>

namespace vmspace {

using Paddr = std::uint64_t;       // Physical address: an offset into emulated physical memory.
using Vaddr = std::uint64_t;       // Virtual address in an emulated address space.
using PagingLevel = std::uint8_t;  // 1 = leaf page table, NR_LEVELS = root.

// The base page size: every frame, and every mapping of level 1.
inline constexpr std::size_t kPageSize = 4096;
// log2(kPageSize): an address shifted right by it is a page number.
inline constexpr unsigned kPageShift = 12;

// Exclusive end of user space. The top user page is deliberately unusable, as in OSTD (an
// x86 erratum workaround): `0x8000_0000_0000 - 4096`.
inline constexpr Vaddr kMaxUserspaceVaddr = 0x0000'7fff'ffff'f000ULL;
// The emulated kernel half (sign-extended upper half of the 48-bit space).
inline constexpr Vaddr kKernelBaseVaddr = 0xffff'8000'0000'0000ULL;
inline constexpr Vaddr kKernelEndVaddr = 0xffff'ffff'ffff'0000ULL;  // exclusive
// All of physical memory is mapped here in the kernel page table (RW, global, largest pages).
inline constexpr Vaddr kLinearMappingBaseVaddr = 0xffff'8000'0000'0000ULL;
inline constexpr Vaddr kLinearMappingEndVaddr = 0xffff'c000'0000'0000ULL;  // 64 TiB window

// A half-open range [start, end). Ranges with start >= end are empty; the library rejects
// them where OSTD does (cursor creation) and never computes `end - 1` on them.
template <class T>
struct Range {
  // First element.
  T start{};
  // One past the last element.
  T end{};

  // True when the range holds nothing (start >= end).
  constexpr bool empty() const noexcept { return start >= end; }
  // The number of elements; 0 for an empty range (never wraps).
  constexpr T size() const noexcept { return empty() ? T{0} : end - start; }
  // True when `x` lies in [start, end).
  constexpr bool contains(T x) const noexcept { return start <= x && x < end; }
  // True when the two ranges share at least one element (touching ranges do not overlap).
  constexpr bool overlaps(const Range& o) const noexcept {
    return !empty() && !o.empty() && start < o.end && o.start < end;
  }
  // True when every element of `o` lies in this range (an empty `o` is always contained).
  constexpr bool contains_range(const Range& o) const noexcept {
    return o.empty() || (start <= o.start && o.end <= end);
  }
  friend constexpr bool operator==(const Range&, const Range&) = default;
};

// A range of virtual addresses.
using VaRange = Range<Vaddr>;
// A range of physical addresses.
using PaRange = Range<Paddr>;

// Prints `0x<start>..0x<end>` in hexadecimal (for logs and test failures).
template <class T>
std::ostream& operator<<(std::ostream& os, const Range<T>& r) {
  auto flags = os.flags();
  os << std::hex << "0x" << r.start << "..0x" << r.end;
  os.flags(flags);
  return os;
}

// True when `x` is a multiple of `align`. Precondition: `align` is a power of two.
constexpr bool is_aligned(std::uint64_t x, std::uint64_t align) noexcept {
  return (x & (align - 1)) == 0;
}
// `x` rounded down to a multiple of `align`. Precondition: `align` is a power of two.
constexpr std::uint64_t align_down(std::uint64_t x, std::uint64_t align) noexcept {
  return x & ~(align - 1);
}
// Returns nullopt when rounding up would wrap past 2^64.
constexpr std::optional<std::uint64_t> checked_align_up(std::uint64_t x,
                                                        std::uint64_t align) noexcept {
  const std::uint64_t down = align_down(x, align);
  if (down == x) return x;
  if (down > UINT64_MAX - align) return std::nullopt;
  return down + align;
}
// a + b, or nullopt if the sum would wrap past 2^64.
constexpr std::optional<std::uint64_t> checked_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}
// a * b, or nullopt if the product would wrap past 2^64.
constexpr std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The range [start, start + len), or nullopt if it would wrap.
constexpr std::optional<VaRange> checked_range(Vaddr start, std::uint64_t len) noexcept {
  auto end = checked_add(start, len);
  if (!end) return std::nullopt;
  return VaRange{start, *end};
}

}  // namespace vmspace
