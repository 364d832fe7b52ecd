// PageTableConfig: what a page table manages and how it stores items (OSTD
// `ostd/src/mm/page_table/mod.rs`, trait `PageTableConfig`; docs/page_table.md).
//
// A config fixes the PTE format, the slice of the top-level node the table may use (which
// defines its virtual-address range), whether top-level entries may ever be removed, and the
// owned "item" type a leaf PTE holds. Items are converted to and from their raw form (physical
// address, level, property) when they enter and leave a PTE; the raw form is all a PTE stores.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ostream>

#include <vmspace/addr.hpp>
#include <vmspace/error.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/pte.hpp>

namespace vmspace {

// The raw form of a mapped item: what one leaf PTE records.
struct RawItem {
  // Physical base of the mapped page.
  Paddr paddr = 0;
  // Level of the leaf (its size is page_size(level)).
  PagingLevel level = 1;
  // The property as the PTE holds it, including the AVAIL1 tracking marker.
  PageProperty prop{};
  friend constexpr bool operator==(const RawItem&, const RawItem&) = default;
};

// Requirements on a config type C:
//   using Pte = <a PteFormat>;
//   static constexpr std::size_t kTopLevelIndexStart, kTopLevelIndexEnd;  // [start, end) of root
//   static constexpr bool kTopLevelCanUnmap;      // false: root entries are never removed
//   static constexpr PagingLevel kHighestTranslationLevel;  // largest leaf level allowed
//   using Item = ...;      // owned, nothrow-movable; owns what its PTE references
//   using ItemRef = ...;   // borrowed view, valid while the PTE stays
//   static RawItem item_raw_info(const Item&) noexcept;   // what item_into_raw would return
//   static RawItem item_into_raw(Item&&) noexcept;        // gives up ownership to the PTE
//   static Item item_from_raw(const RawItem&) noexcept;   // takes ownership back; must accept
//       split pieces (a level-L item becomes 512 level-(L-1) items at contiguous addresses) and
//       changed properties, and must preserve AVAIL1
//   static ItemRef item_ref_from_raw(const RawItem&) noexcept;
template <class C>
concept PageTableConfig = PteFormat<typename C::Pte> &&
    std::is_nothrow_move_constructible_v<typename C::Item> &&
    requires(const typename C::Item& item, typename C::Item&& owned, const RawItem& raw) {
  { C::kTopLevelIndexStart } -> std::convertible_to<std::size_t>;
  { C::kTopLevelIndexEnd } -> std::convertible_to<std::size_t>;
  { C::kTopLevelCanUnmap } -> std::convertible_to<bool>;
  { C::kHighestTranslationLevel } -> std::convertible_to<PagingLevel>;
  { C::item_raw_info(item) }
  noexcept->std::same_as<RawItem>;
  { C::item_into_raw(std::move(owned)) }
  noexcept->std::same_as<RawItem>;
  { C::item_from_raw(raw) }
  noexcept->std::same_as<typename C::Item>;
  { C::item_ref_from_raw(raw) }
  noexcept->std::same_as<typename C::ItemRef>;
} &&(C::kTopLevelIndexStart < C::kTopLevelIndexEnd) &&
    (C::kTopLevelIndexEnd <= kNrEntries<typename C::Pte::Consts>)&&(C::kHighestTranslationLevel >=
                                                                    1) &&
    (C::kHighestTranslationLevel <= C::Pte::Consts::kNrLevels);

template <PageTableConfig C>
// The paging constants of config C (those of its PTE format).
using ConstsOf = typename C::Pte::Consts;

template <PageTableConfig C>
// Number of levels of config C's tables (the root's level).
inline constexpr PagingLevel kNrLevelsOf = ConstsOf<C>::kNrLevels;

// Why a page-table operation failed. The page-table layer reports these; VmSpace folds most of
// them into Error::AccessDenied as OSTD does (keeping this cause available for diagnostics).
enum class PageTableError : std::uint8_t {
  InvalidVaddrRange,  // empty, reversed, or outside the config's range (cursor creation)
  UnalignedVaddr,     // range ends not base-page aligned (cursor creation)
  InvalidVaddr,       // the cursor's address is outside its locked range (query, jump, map)
  UnalignedLen,       // a length or address argument is not base-page aligned
  LenOutOfRange,      // va + len goes beyond the cursor's locked range
  AlreadyMapped,      // map over a mapped page or a page-table node
  InvalidItem,        // item level not allowed here, misaligned, or property not encodable
  NoMemory,           // allocating a page-table node failed
  WouldBlock,         // try_ creation (or a nested creation) found a node held by another cursor
  WouldDeadlock,      // the calling thread itself holds a node the new cursor needs
  TooManyTables,      // the thread holds cursors on too many page tables at once (16)
};

// Prints to_string(e).
std::ostream& operator<<(std::ostream& os, PageTableError e);
// The enumerator's name, e.g. "AlreadyMapped".
const char* to_string(PageTableError e) noexcept;

// The error a VmSpace-level caller sees for a page-table error.
constexpr Error to_vm_error(PageTableError e) noexcept {
  switch (e) {
    case PageTableError::NoMemory:
      return Error::NoMemory;
    case PageTableError::WouldBlock:
      return Error::WouldBlock;
    case PageTableError::WouldDeadlock:
      return Error::WouldDeadlock;
    case PageTableError::TooManyTables:
      return Error::NotEnoughResources;
    case PageTableError::AlreadyMapped:
      return Error::AlreadyMapped;
    case PageTableError::UnalignedLen:
    case PageTableError::LenOutOfRange:
    case PageTableError::InvalidItem:
      return Error::InvalidArgs;
    case PageTableError::InvalidVaddrRange:
    case PageTableError::UnalignedVaddr:
    case PageTableError::InvalidVaddr:
      return Error::AccessDenied;
  }
  return Error::AccessDenied;
}

// Sign-extends `va` for formats whose high bits must copy the top address bit.
template <PagingConsts K>
constexpr Vaddr sign_extend(Vaddr va) noexcept {
  if constexpr (K::kVaSignExt) {
    const Vaddr sign = Vaddr{1} << (K::kAddressWidth - 1);
    if (va & sign) return va | ~((sign << 1) - 1);
  }
  return va;
}

// Whether `va` is canonical for the format: every bit from kAddressWidth - 1 up equals the
// sign bit (sign-extended formats), or every bit from kAddressWidth up is zero. An MMU faults
// on other addresses instead of translating their low bits.
template <PagingConsts K>
constexpr bool is_canonical_vaddr(Vaddr va) noexcept {
  if constexpr (K::kAddressWidth >= 64) {
    return true;
  } else if constexpr (K::kVaSignExt) {
    const Vaddr high = va >> (K::kAddressWidth - 1);
    return high == 0 || high == (~Vaddr{0} >> (K::kAddressWidth - 1));
  } else {
    return (va >> K::kAddressWidth) == 0;
  }
}

// The inclusive virtual-address range [first, last] a config manages.
template <PageTableConfig C>
struct VaddrBounds {
  // First managed address (sign-extended where the format requires).
  Vaddr first;
  // Last managed address (inclusive, so a range can end at 2^64).
  Vaddr last;
};
template <PageTableConfig C>
// The bounds of config C: the addresses its root entries [kTopLevelIndexStart, kTopLevelIndexEnd)
// cover.
constexpr VaddrBounds<C> vaddr_bounds() noexcept {
  using K = ConstsOf<C>;
  constexpr unsigned shift = 12u + 9u * (K::kNrLevels - 1u);
  const Vaddr first = sign_extend<K>(Vaddr{C::kTopLevelIndexStart} << shift);
  const Vaddr last = sign_extend<K>((Vaddr{C::kTopLevelIndexEnd} << shift) - 1);
  return {first, last};
}

// Cursor-range validation, in vostd's order: InvalidVaddrRange (empty, reversed, outside the
// bounds; never computes end - 1 on an empty range), then UnalignedVaddr.
template <PageTableConfig C>
constexpr std::optional<PageTableError> check_cursor_range(VaRange va) noexcept {
  constexpr auto b = vaddr_bounds<C>();
  if (!(va.start < va.end) || va.start < b.first || va.end - 1 > b.last) {
    return PageTableError::InvalidVaddrRange;
  }
  if (!is_aligned(va.start, kPageSize) || !is_aligned(va.end, kPageSize)) {
    return PageTableError::UnalignedVaddr;
  }
  return std::nullopt;
}

}  // namespace vmspace
