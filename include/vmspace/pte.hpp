// The page-table-entry abstraction: paging constants, the arch-neutral PTE value and the
// PteFormat concept every hardware format implements (OSTD `ostd/src/mm/mod.rs`, trait
// `PagingConstsTrait`, and `ostd/src/mm/page_table/mod.rs`, trait `PageTableEntryTrait`).
//
// A format is a stateless type with static functions. The page table stores raw 64-bit words
// and only ever interprets them through its format, so the same page-table code runs over
// x86-64, RISC-V Sv39/Sv48 and AArch64 entries (pte/x86_64.hpp, pte/riscv.hpp,
// pte/aarch64.hpp).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string_view>

#include <vmspace/addr.hpp>
#include <vmspace/page_prop.hpp>

namespace vmspace {

// Paging constants of one hardware format (OSTD's PagingConstsTrait).
//   kBasePageSize          size of a level-1 page (4096 for every format here)
//   kNrLevels              number of levels; the root is at level kNrLevels
//   kAddressWidth          significant virtual-address bits
//   kVaSignExt             whether bits above kAddressWidth-1 must copy the sign bit
//   kHighestTranslationLevel  the largest level at which a leaf (huge page) may sit
//   kPteSize               bytes per entry (8)
template <class C>
concept PagingConsts = requires {
  { C::kBasePageSize } -> std::convertible_to<std::size_t>;
  { C::kNrLevels } -> std::convertible_to<PagingLevel>;
  { C::kAddressWidth } -> std::convertible_to<unsigned>;
  { C::kVaSignExt } -> std::convertible_to<bool>;
  { C::kHighestTranslationLevel } -> std::convertible_to<PagingLevel>;
  { C::kPteSize } -> std::convertible_to<std::size_t>;
}
&&(C::kBasePageSize == 4096) && (C::kPteSize == 8) && (C::kNrLevels >= 2) && (C::kNrLevels <= 4) &&
    (C::kHighestTranslationLevel >= 1) && (C::kHighestTranslationLevel <= C::kNrLevels);

// Entries per page-table node.
template <PagingConsts C>
inline constexpr std::size_t kNrEntries = C::kBasePageSize / C::kPteSize;

// Bytes mapped by one entry at `level` (4 KiB, 2 MiB, 1 GiB, 512 GiB for 4 KiB pages).
template <PagingConsts C>
constexpr std::uint64_t page_size(PagingLevel level) noexcept {
  return std::uint64_t{C::kBasePageSize} << (9u * (level - 1u));
}

// Index of `va` in a node at `level`.
template <PagingConsts C>
constexpr std::size_t pte_index(Vaddr va, PagingLevel level) noexcept {
  return static_cast<std::size_t>((va >> (12u + 9u * (level - 1u))) & (kNrEntries<C> - 1));
}

// The arch-neutral value of one PTE. An all-zero raw entry is always Absent.
struct PteScalar {
  // What the entry holds: nothing, a child node, or a leaf mapping.
  enum class Kind : std::uint8_t { Absent, PageTable, Mapped };

  // Which of the fields below are meaningful.
  Kind kind = Kind::Absent;
  Paddr paddr = 0;                                 // PageTable: child node; Mapped: page base
  PageTableFlags pt_flags = PageTableFlags::None;  // PageTable only
  PageProperty prop{};                             // Mapped only

  // The empty entry.
  static constexpr PteScalar absent() noexcept { return {}; }
  // An entry pointing at the child node at `pa` (4 KiB-aligned).
  static constexpr PteScalar page_table(Paddr pa, PageTableFlags flags) noexcept {
    return PteScalar{Kind::PageTable, pa, flags, {}};
  }
  // A leaf mapping the page at `pa` (aligned to the page size of the level it is written at) with
  // `prop`.
  static constexpr PteScalar mapped(Paddr pa, PageProperty prop) noexcept {
    return PteScalar{Kind::Mapped, pa, PageTableFlags::None, prop};
  }
  // kind == Absent.
  constexpr bool is_absent() const noexcept { return kind == Kind::Absent; }
  // kind == PageTable.
  constexpr bool is_page_table() const noexcept { return kind == Kind::PageTable; }
  // kind == Mapped.
  constexpr bool is_mapped() const noexcept { return kind == Kind::Mapped; }

  friend constexpr bool operator==(const PteScalar& a, const PteScalar& b) noexcept {
    if (a.kind != b.kind) return false;
    switch (a.kind) {
      case Kind::Absent:
        return true;
      case Kind::PageTable:
        return a.paddr == b.paddr && a.pt_flags == b.pt_flags;
      case Kind::Mapped:
        return a.paddr == b.paddr && a.prop == b.prop;
    }
    return false;
  }
};

// Prints the entry for messages and test failures, e.g. the kind, address and property.
std::ostream& operator<<(std::ostream& os, const PteScalar& s);

// A hardware PTE format. All functions are pure and total over their documented domain;
// they never touch memory. `level` is the level of the node that holds the entry.
//
//   Consts                      the format's PagingConsts
//   kName                       a short name for messages ("x86-64", "riscv-sv48", ...)
//   encode(s, level)            raw word for `s`. Preconditions: for Mapped, `s.paddr` is
//                               aligned to page_size(level), level <= kHighestTranslationLevel
//                               and can_encode(s.prop) holds; for PageTable, level > 1 and the
//                               paddr is 4 KiB-aligned. encode(absent()) == 0.
//   decode(raw, level)          inverse of encode: decode(encode(s, l), l) == s for every s
//                               satisfying encode's preconditions; decode(0, l) is Absent.
//   is_present(raw, level)      decode(raw, level).kind != Absent, without building a scalar
//   is_leaf(raw, level)         decode(raw, level).kind == Mapped
//   paddr(raw, level)           decode(raw, level).paddr for present entries
//   can_encode(prop)            whether the property is representable (else map is refused)
//   kAccessedBit, kDirtyBit     raw masks the software MMU ORs into a leaf entry on access /
//                               write; decode reports them as PageFlags::ACCESSED / DIRTY.
template <class F>
concept PteFormat = requires(std::uint64_t raw, PagingLevel level, const PteScalar& s,
                             const PageProperty& prop) {
  typename F::Consts;
  requires PagingConsts<typename F::Consts>;
  { F::kName } -> std::convertible_to<std::string_view>;
  { F::encode(s, level) }
  noexcept->std::same_as<std::uint64_t>;
  { F::decode(raw, level) }
  noexcept->std::same_as<PteScalar>;
  { F::is_present(raw, level) }
  noexcept->std::same_as<bool>;
  { F::is_leaf(raw, level) }
  noexcept->std::same_as<bool>;
  { F::paddr(raw, level) }
  noexcept->std::same_as<Paddr>;
  { F::can_encode(prop) }
  noexcept->std::same_as<bool>;
  { F::kAccessedBit } -> std::convertible_to<std::uint64_t>;
  { F::kDirtyBit } -> std::convertible_to<std::uint64_t>;
};

}  // namespace vmspace
