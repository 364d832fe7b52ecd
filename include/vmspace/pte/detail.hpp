// Helpers shared by the hardware PTE formats (pte/x86_64.hpp, pte/riscv.hpp, pte/aarch64.hpp).
// Not a stable interface: only the formats should include this header.
#pragma once

#include <algorithm>
#include <cstdint>

#include <vmspace/addr.hpp>
#include <vmspace/page_prop.hpp>

namespace vmspace::internal {

constexpr std::uint64_t bit(unsigned n) noexcept { return std::uint64_t{1} << n; }

// `bits` when `cond` holds, else 0.
constexpr std::uint64_t bits_if(bool cond, std::uint64_t bits) noexcept { return cond ? bits : 0; }

// Decodes one PTE bit into a flag: `f` when a bit of `mask` is set in `raw`, else none.
template <class Flags>
constexpr Flags flag_if_set(std::uint64_t raw, std::uint64_t mask, Flags f) noexcept {
  return (raw & mask) != 0 ? f : Flags::None;
}

// Every defined bit of each flag type. A property carrying a bit outside these sets (for
// example from `~PageFlags::W`) cannot round-trip, so every format's `can_encode` refuses it.
inline constexpr PageFlags kKnownPageFlags = PageFlags::R | PageFlags::W | PageFlags::X |
                                             PageFlags::ACCESSED | PageFlags::DIRTY |
                                             PageFlags::AVAIL2;
inline constexpr PrivilegedPageFlags kKnownPrivFlags =
    PrivilegedPageFlags::USER | PrivilegedPageFlags::GLOBAL | PrivilegedPageFlags::AVAIL1 |
    PrivilegedPageFlags::SHARED;
inline constexpr PageTableFlags kKnownPtFlags = PageTableFlags::AVAIL1 | PageTableFlags::AVAIL2;

// True when the property uses only defined flag bits and a defined cache policy.
constexpr bool is_well_formed(const PageProperty& p) noexcept {
  const bool flags_ok = (p.flags & ~kKnownPageFlags) == PageFlags::None;
  const bool priv_ok = (p.priv_flags & ~kKnownPrivFlags) == PrivilegedPageFlags::None;
  bool cache_ok = false;
  switch (p.cache) {
    case CachePolicy::Uncacheable:
    case CachePolicy::WriteCombining:
    case CachePolicy::WriteProtected:
    case CachePolicy::Writethrough:
    case CachePolicy::Writeback:
      cache_ok = true;
      break;
  }
  return flags_ok && priv_ok && cache_ok;
}

// log2 of the bytes one entry at `level` maps (12, 21, 30, 39). Out-of-range levels are
// clamped to 1..4 so that the formats' decoders stay free of undefined shifts even when a
// caller breaks the "level of the holding node" precondition.
constexpr unsigned level_shift(PagingLevel level) noexcept {
  const unsigned l = std::clamp<unsigned>(level, 1u, 4u);
  return 12u + 9u * (l - 1u);
}

// Mask that keeps the bits of a physical address aligned to a page at `level` and below
// 2^addr_bits.
constexpr std::uint64_t leaf_addr_mask(PagingLevel level, unsigned addr_bits) noexcept {
  return (bit(addr_bits) - 1u) & ~(bit(level_shift(level)) - 1u);
}

}  // namespace vmspace::internal
