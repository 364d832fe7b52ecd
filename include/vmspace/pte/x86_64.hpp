// The x86-64 4-level page-table entry, bit-exact with OSTD's encoding
// (`ostd/src/arch/x86/mm/mod.rs`, `PageTableEntry`).
//
// Layout of one 64-bit entry:
//
//   bit  0  P     PRESENT. Leaf: set iff the property has R. Page table: always set.
//   bit  1  RW    WRITABLE. Leaf: set iff W. Page table: always set.
//   bit  2  US    USER. Leaf: PrivilegedPageFlags::USER. Page table: always set.
//   bit  3  PWT   \ cache policy, through a PAT whose entries 4-7 mirror 0-3:
//   bit  4  PCD   /   Writeback = 00, Writethrough = PWT, WriteCombining = PCD, Uncacheable = both
//   bit  5  A     ACCESSED (kAccessedBit)
//   bit  6  D     DIRTY (kDirtyBit)
//   bit  7  PS    Set on every leaf: the "valid leaf" marker. At level 1 this is the PAT bit,
//                 which is why the PAT is programmed with 4-7 mirroring 0-3; at levels 2-3 it is
//                 the page-size bit (the huge-page PAT bit 12 stays 0, selecting 0-3).
//   bit  8  G     GLOBAL
//   bits 12..50   physical address (the field is 12..51; see SHARED)
//   bit 51        SHARED (TDX). OSTD's cvm_guest build narrows the address masks to bit 50 for
//                 the same reason: bit 51 cannot be both an address bit and the shared bit.
//   bit 52        AVAIL1: PrivilegedPageFlags::AVAIL1 on leaves, PageTableFlags::AVAIL1 on
//                 page-table entries (ignored by hardware).
//   bit 53        AVAIL2: PageFlags::AVAIL2 on leaves, PageTableFlags::AVAIL2 on page-table
//                 entries (ignored by hardware).
//   bit 63  XD    NO_EXECUTE, set iff the property lacks X.
//
// Classification (exactly OSTD's): present ⟺ P ∨ PS; leaf ⟺ PS; otherwise a present entry is a
// page table whose child address is bits 12..50 (even at level 1, where the hardware would see a
// 4 KiB page with PAT = 0; encode never writes that). Because PS alone keeps a leaf present, a
// mapping whose flags lack R is *hardware-not-present* (P = 0, every access faults) but still a
// Mapped entry to the library, with its whole property preserved.
//
// What cannot be encoded (`can_encode` is false, the library refuses the mapping where OSTD
// panics): CachePolicy::WriteProtected (no PAT slot is programmed with WP), and properties with
// undefined flag bits. Physical addresses must be below 2^51 (kPaddrLimit).
//
// Leaves are accepted at levels 1-3 (4 KiB, 2 MiB, 1 GiB; 1 GiB pages need PDPE1GB). Consts
// keeps OSTD's kHighestTranslationLevel = 2; a configuration with huge-page level 3 (OSTD's
// VeryHugePagingConsts test) may reuse this format. PS at level 4 is reserved by hardware; decode
// still follows "leaf ⟺ PS" there (the address aligned to 512 GiB), so it stays total, but
// encode never produces such an entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/pte.hpp>
#include <vmspace/pte/detail.hpp>

namespace vmspace {

// The x86-64 PteFormat (layout and classification rules above). All members are pure functions of
// their arguments.
struct X86_64Pte {
  // Paging constants of 4-level x86-64 paging, as in OSTD's PagingConsts for x86.
  struct Consts {
    // Smallest page: 4 KiB.
    static constexpr std::size_t kBasePageSize = 4096;
    // Levels of the tree (4 = root, 1 = leaf tables).
    static constexpr PagingLevel kNrLevels = 4;
    // Bits of a virtual address that translation uses.
    static constexpr unsigned kAddressWidth = 48;
    // Virtual addresses are canonical: bits above kAddressWidth copy bit 47.
    static constexpr bool kVaSignExt = true;
    // Highest level at which the library places leaves by default (2 MiB pages; see the file
    // comment for 1 GiB).
    static constexpr PagingLevel kHighestTranslationLevel = 2;
    // Bytes per entry.
    static constexpr std::size_t kPteSize = 8;
  };

  // Short name of the format, for messages.
  static constexpr std::string_view kName = "x86-64";
  // The largest level at which the hardware (and this encoder) accepts a leaf.
  static constexpr PagingLevel kMaxLeafLevel = 3;

  // P: the hardware may use the entry.
  static constexpr std::uint64_t kPresent = internal::bit(0);
  // RW: writes allowed.
  static constexpr std::uint64_t kWritable = internal::bit(1);
  // US: user-mode accesses allowed.
  static constexpr std::uint64_t kUser = internal::bit(2);
  static constexpr std::uint64_t kWriteThrough = internal::bit(3);  // PWT
  static constexpr std::uint64_t kNoCache = internal::bit(4);       // PCD
  // A: set on any access.
  static constexpr std::uint64_t kAccessed = internal::bit(5);
  // D: set on a write (leaves only).
  static constexpr std::uint64_t kDirty = internal::bit(6);
  static constexpr std::uint64_t kHuge = internal::bit(7);  // PS; PAT at level 1
  // G: the translation survives address-space switches.
  static constexpr std::uint64_t kGlobal = internal::bit(8);
  // TDX shared bit (PrivilegedPageFlags::SHARED); the top bit of the address field.
  static constexpr std::uint64_t kShared = internal::bit(51);
  static constexpr std::uint64_t kAvail1 = internal::bit(52);  // OSTD's HIGH_IGN1
  static constexpr std::uint64_t kAvail2 = internal::bit(53);  // OSTD's HIGH_IGN2
  // XD: instruction fetches fault.
  static constexpr std::uint64_t kNoExecute = internal::bit(63);

  // What the software MMU sets on access (PteFormat).
  static constexpr std::uint64_t kAccessedBit = kAccessed;
  // What the software MMU sets on a write (PteFormat).
  static constexpr std::uint64_t kDirtyBit = kDirty;

  // OSTD's address-field masks per level (bits 12/21/30 .. 51).
  static constexpr std::uint64_t kPhysAddrMaskLvl1 = 0xf'ffff'ffff'f000ULL;
  // Address field of a 2 MiB leaf (bits 21..51).
  static constexpr std::uint64_t kPhysAddrMaskLvl2 = 0xf'ffff'ffe0'0000ULL;
  // Address field of a 1 GiB leaf (bits 30..51).
  static constexpr std::uint64_t kPhysAddrMaskLvl3 = 0xf'ffff'c000'0000ULL;

  // Exclusive upper bound of encodable physical addresses: bit 51 is the SHARED bit.
  static constexpr Paddr kPaddrLimit = Paddr{1} << 51;
  // Child-node address of a page-table entry: bits 12..50.
  static constexpr std::uint64_t kChildPaddrMask = kPhysAddrMaskLvl1 & ~kShared;

  // Bits of a leaf's physical address at `level` (the level's address field without SHARED).
  static constexpr std::uint64_t leaf_paddr_mask(PagingLevel level) noexcept {
    return internal::leaf_addr_mask(level, 51);
  }

  // Whether `prop` has an encoding: it has no undefined flag bits and its cache policy is not
  // WriteProtected (no PAT slot holds WP).
  static constexpr bool can_encode(const PageProperty& prop) noexcept {
    return internal::is_well_formed(prop) && prop.cache != CachePolicy::WriteProtected;
  }

  // Preconditions (checked in debug builds): see PteFormat in pte.hpp; in addition a leaf's
  // level is at most kMaxLeafLevel and every physical address is below kPaddrLimit.
  static constexpr std::uint64_t encode(const PteScalar& s, PagingLevel level) noexcept {
    switch (s.kind) {
      case PteScalar::Kind::Absent:
        return 0;
      case PteScalar::Kind::PageTable: {
        VMS_DEBUG_ASSERT(level > 1 && level <= Consts::kNrLevels, "page table at level {}", level);
        VMS_DEBUG_ASSERT((s.paddr & ~kChildPaddrMask) == 0, "bad child paddr {:#x}", s.paddr);
        return (s.paddr & kChildPaddrMask) | kPresent | kWritable | kUser |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL1), kAvail1) |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL2), kAvail2);
      }
      case PteScalar::Kind::Mapped: {
        VMS_DEBUG_ASSERT(level >= 1 && level <= kMaxLeafLevel, "leaf at level {}", level);
        VMS_DEBUG_ASSERT((s.paddr & ~leaf_paddr_mask(level)) == 0, "bad leaf paddr {:#x}", s.paddr);
        VMS_DEBUG_ASSERT(can_encode(s.prop), "unencodable page property");
        const PageFlags f = s.prop.flags;
        const PrivilegedPageFlags p = s.prop.priv_flags;
        return (s.paddr & leaf_paddr_mask(level)) | kHuge |
               internal::bits_if(has(f, PageFlags::R), kPresent) |
               internal::bits_if(has(f, PageFlags::W), kWritable) |
               internal::bits_if(!has(f, PageFlags::X), kNoExecute) |
               internal::bits_if(has(f, PageFlags::ACCESSED), kAccessed) |
               internal::bits_if(has(f, PageFlags::DIRTY), kDirty) |
               internal::bits_if(has(f, PageFlags::AVAIL2), kAvail2) |
               internal::bits_if(has(p, PrivilegedPageFlags::USER), kUser) |
               internal::bits_if(has(p, PrivilegedPageFlags::GLOBAL), kGlobal) |
               internal::bits_if(has(p, PrivilegedPageFlags::AVAIL1), kAvail1) |
               internal::bits_if(has(p, PrivilegedPageFlags::SHARED), kShared) |
               cache_bits(s.prop.cache);
      }
    }
    return 0;
  }

  // Total: every raw word decodes. Bits the encoding does not use (bit 12 of a huge leaf,
  // protection keys, A/D of page-table entries, ...) are ignored.
  static constexpr PteScalar decode(std::uint64_t raw, PagingLevel level) noexcept {
    if ((raw & kHuge) != 0) return PteScalar::mapped(raw & leaf_paddr_mask(level), leaf_prop(raw));
    if ((raw & kPresent) != 0) {
      const PageTableFlags flags =
          (((raw & kAvail1) != 0) ? PageTableFlags::AVAIL1 : PageTableFlags::None) |
          (((raw & kAvail2) != 0) ? PageTableFlags::AVAIL2 : PageTableFlags::None);
      return PteScalar::page_table(raw & kChildPaddrMask, flags);
    }
    return PteScalar::absent();
  }

  // P or PS is set (a leaf without R is present to the library); the level does not matter.
  static constexpr bool is_present(std::uint64_t raw, PagingLevel /*level*/) noexcept {
    return (raw & (kPresent | kHuge)) != 0;
  }
  // PS is set, at any level.
  static constexpr bool is_leaf(std::uint64_t raw, PagingLevel /*level*/) noexcept {
    return (raw & kHuge) != 0;
  }
  // The leaf's page base or the child node's address; meaningless for an absent entry.
  static constexpr Paddr paddr(std::uint64_t raw, PagingLevel level) noexcept {
    return raw & (((raw & kHuge) != 0) ? leaf_paddr_mask(level) : kChildPaddrMask);
  }

 private:
  static constexpr std::uint64_t cache_bits(CachePolicy cache) noexcept {
    switch (cache) {
      case CachePolicy::Writeback:
        return 0;
      case CachePolicy::Writethrough:
        return kWriteThrough;
      case CachePolicy::WriteCombining:
        return kNoCache;
      case CachePolicy::Uncacheable:
        return kNoCache | kWriteThrough;
      case CachePolicy::WriteProtected:
        break;  // refused by can_encode
    }
    return 0;
  }

  static constexpr PageProperty leaf_prop(std::uint64_t raw) noexcept {
    auto flag = [raw](std::uint64_t mask, auto f) { return internal::flag_if_set(raw, mask, f); };
    const PageFlags flags = flag(kPresent, PageFlags::R) | flag(kWritable, PageFlags::W) |
                            ((raw & kNoExecute) == 0 ? PageFlags::X : PageFlags::None) |
                            flag(kAccessed, PageFlags::ACCESSED) | flag(kDirty, PageFlags::DIRTY) |
                            flag(kAvail2, PageFlags::AVAIL2);
    const PrivilegedPageFlags priv_flags =
        flag(kUser, PrivilegedPageFlags::USER) | flag(kGlobal, PrivilegedPageFlags::GLOBAL) |
        flag(kAvail1, PrivilegedPageFlags::AVAIL1) | flag(kShared, PrivilegedPageFlags::SHARED);
    CachePolicy cache = CachePolicy::Writeback;
    switch (raw & (kNoCache | kWriteThrough)) {
      case 0:
        cache = CachePolicy::Writeback;
        break;
      case kWriteThrough:
        cache = CachePolicy::Writethrough;
        break;
      case kNoCache:
        cache = CachePolicy::WriteCombining;
        break;
      default:
        cache = CachePolicy::Uncacheable;
        break;
    }
    return PageProperty{flags, cache, priv_flags};
  }
};

static_assert(PteFormat<X86_64Pte>);
// The computed leaf masks are OSTD's masks without the SHARED bit.
static_assert(X86_64Pte::leaf_paddr_mask(1) ==
              (X86_64Pte::kPhysAddrMaskLvl1 & ~X86_64Pte::kShared));
static_assert(X86_64Pte::leaf_paddr_mask(2) ==
              (X86_64Pte::kPhysAddrMaskLvl2 & ~X86_64Pte::kShared));
static_assert(X86_64Pte::leaf_paddr_mask(3) ==
              (X86_64Pte::kPhysAddrMaskLvl3 & ~X86_64Pte::kShared));

}  // namespace vmspace
