// AArch64 VMSAv8-64 stage-1 descriptors, 4 KiB granule, 48-bit addresses (TCR_EL1.DS = 0).
//
// Levels: our level L is ARM lookup level 4 - L (our root, level 4, is ARM level 0).
//
//   descriptor   bits[1:0]   allowed at our levels      ARM levels
//   table        0b11        4, 3, 2                    0, 1, 2
//   block        0b01        3 (1 GiB), 2 (2 MiB)       1, 2
//   page         0b11        1 (4 KiB)                  3
//   invalid      0bx0        any
//
// With DS = 0 there is no level-0 block, so kHighestTranslationLevel is 3 and a 512 GiB leaf
// cannot exist: encode's precondition forbids leaves above level 3, and decode never reports a
// leaf above level 3 (0b01 at our levels 4 and 1 is reserved and decodes as Absent, exactly as
// the MMU treats it), so the page-table layer may rely on Consts::kHighestTranslationLevel.
//
// Leaf (block/page) fields:
//   bits 4:2   AttrIndx, an index into MAIR_EL1 as programmed by kMairEl1 (below)
//   bit  5     NS, written 0
//   bit  6     AP[1]: EL0 access           ⟺ PrivilegedPageFlags::USER
//   bit  7     AP[2]: read-only            ⟺ not PageFlags::W
//   bits 9:8   SH, written inner-shareable (0b11); Device memory ignores it. Not decoded.
//   bit 10     AF                          ⟺ ACCESSED (kAccessedBit). Without FEAT_HAFDBS an
//                                            access to a leaf with AF = 0 faults; the library's
//                                            software MMU sets it instead.
//   bit 11     nG                          ⟺ not GLOBAL
//   bits 47:12 output address (47:21 for 2 MiB blocks, 47:30 for 1 GiB blocks)
//   bit 53     PXN  \ X and USER both survive the round trip (verified-pt's encoding loses them):
//   bit 54     UXN  /   user page with X: UXN = 0, PXN = 1 (the kernel never executes user
//                       pages); kernel page with X: PXN = 0, UXN = 1; without X both are 1.
//                       Decode: X = USER ? !UXN : !PXN.
//   bit 55     DIRTY (kDirtyBit), a software bit as in Linux without DBM. Hardware dirty-bit
//              management (DBM, bit 51) clears AP[2] rather than setting a bit, which the
//              software MMU's fetch_or cannot express, so DBM is written 0.
//   bit 56     AVAIL1 (PrivilegedPageFlags::AVAIL1)
//   bit 57     AVAIL2 (PageFlags::AVAIL2)
//   bit 58     kSwLeaf, the software-leaf marker; only set on invalid descriptors (below).
// Bits 55-58 are reserved for software use in leaf descriptors.
//
// Table descriptor: bits 47:12 the next-level table; APTable/XNTable/PXNTable/NSTable = 0 (no
// restriction); PageTableFlags::AVAIL1/AVAIL2 in the ignored bits 56/57.
//
// MAIR_EL1 layout (kMairEl1 = 0x0000'00ff'bbaa'4400): AttrIndx follows CachePolicy's order, so
// every policy round-trips.
//   0  0x00  Device-nGnRnE                                          Uncacheable
//   1  0x44  Normal, inner/outer Non-cacheable                      WriteCombining (as Linux)
//   2  0xaa  Normal, inner/outer Write-Through, read-allocate only  WriteProtected (nearest type:
//            reads are cached, writes go to memory and never allocate)
//   3  0xbb  Normal, inner/outer Write-Through, read/write-allocate Writethrough
//   4  0xff  Normal, inner/outer Write-Back, read/write-allocate    Writeback
//   5-7 0x00 Device-nGnRnE, never written; decoded as Uncacheable (what the MMU would use)
//
// R-less leaves. Stage 1 has no "no read" permission, so, as on every format here (hardware
// access requires R), a leaf whose flags lack R is written as an *invalid* descriptor
// (bits[1:0] = 00, so the MMU faults on any access) with kSwLeaf set and every other field in
// its leaf position. The library decodes it as Mapped with the exact property. At our level 4
// the marker is ignored (no leaves there).
//
// What cannot be encoded (`can_encode` is false): PrivilegedPageFlags::SHARED (a TDX attribute;
// OSTD defines it on x86 only and AArch64 has no counterpart), and properties with undefined
// flag bits. Physical addresses must be below 2^48 (kPaddrLimit).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/page_prop.hpp>
#include <vmspace/pte.hpp>
#include <vmspace/pte/detail.hpp>

namespace vmspace {

// The AArch64 (4 KiB granule, 48-bit) PteFormat (layout and classification rules above). All
// members are pure functions of their arguments.
struct Aarch64Pte {
  // Paging constants of 4-level AArch64 paging with a 4 KiB granule.
  struct Consts {
    // Smallest page: 4 KiB.
    static constexpr std::size_t kBasePageSize = 4096;
    // Levels of the tree (4 = root, 1 = leaf tables).
    static constexpr PagingLevel kNrLevels = 4;
    // Bits of a virtual address that translation uses.
    static constexpr unsigned kAddressWidth = 48;
    // Virtual addresses are canonical: bits above kAddressWidth copy bit 47.
    static constexpr bool kVaSignExt = true;
    // Highest level at which the library places leaves by default (1 GiB blocks).
    static constexpr PagingLevel kHighestTranslationLevel = 3;
    // Bytes per entry.
    static constexpr std::size_t kPteSize = 8;
  };

  // Short name of the format, for messages.
  static constexpr std::string_view kName = "aarch64";
  // The largest level at which the hardware (and this encoder) accepts a leaf.
  static constexpr PagingLevel kMaxLeafLevel = 3;

  // Descriptor bit 0: the MMU may use the entry.
  static constexpr std::uint64_t kValid = internal::bit(0);
  // Descriptor type field (bits 0..1).
  static constexpr std::uint64_t kDescTypeMask = 0b11;
  static constexpr std::uint64_t kDescTable = 0b11;  // levels 4..2
  static constexpr std::uint64_t kDescBlock = 0b01;  // levels 3..2
  static constexpr std::uint64_t kDescPage = 0b11;   // level 1
  // Position of AttrIndx, the MAIR slot index (bits 2..4).
  static constexpr unsigned kAttrIndxShift = 2;
  // The AttrIndx field.
  static constexpr std::uint64_t kAttrIndxMask = std::uint64_t{0b111} << kAttrIndxShift;
  static constexpr std::uint64_t kApUser = internal::bit(6);      // AP[1]
  static constexpr std::uint64_t kApReadOnly = internal::bit(7);  // AP[2]
  // Shareability field SH (bits 8..9).
  static constexpr std::uint64_t kShMask = std::uint64_t{0b11} << 8;
  // SH = inner shareable, written on every leaf.
  static constexpr std::uint64_t kShInner = std::uint64_t{0b11} << 8;
  // AF: access flag, set on any access.
  static constexpr std::uint64_t kAf = internal::bit(10);
  // nG: the translation is per address space (clear for GLOBAL).
  static constexpr std::uint64_t kNotGlobal = internal::bit(11);
  // PXN: privileged instruction fetches fault.
  static constexpr std::uint64_t kPxn = internal::bit(53);
  // UXN: user instruction fetches fault.
  static constexpr std::uint64_t kUxn = internal::bit(54);
  // Software dirty bit (PageFlags::DIRTY).
  static constexpr std::uint64_t kSwDirty = internal::bit(55);
  // Software bit: AVAIL1 (PrivilegedPageFlags on leaves, PageTableFlags on tables).
  static constexpr std::uint64_t kSwAvail1 = internal::bit(56);
  // Software bit: AVAIL2 (PageFlags on leaves, PageTableFlags on tables).
  static constexpr std::uint64_t kSwAvail2 = internal::bit(57);
  static constexpr std::uint64_t kSwLeaf = internal::bit(58);  // only on invalid descriptors

  // What the software MMU sets on access (PteFormat).
  static constexpr std::uint64_t kAccessedBit = kAf;
  // What the software MMU sets on a write (PteFormat).
  static constexpr std::uint64_t kDirtyBit = kSwDirty;

  // Exclusive upper bound of encodable physical addresses (48-bit output addresses).
  static constexpr Paddr kPaddrLimit = Paddr{1} << 48;
  // Child-node address of a table descriptor: bits 12..47.
  static constexpr std::uint64_t kTableAddrMask = 0x0000'ffff'ffff'f000ULL;

  // MAIR_EL1 value the emulated machine is "programmed" with; see the header comment.
  static constexpr std::array<std::uint8_t, 8> kMairAttrs = {0x00, 0x44, 0xaa, 0xbb,
                                                             0xff, 0x00, 0x00, 0x00};
  // kMairAttrs packed into the 64-bit register value (slot i in bits 8i..8i+7).
  static constexpr std::uint64_t kMairEl1 = 0x0000'00ff'bbaa'4400ULL;

  // The MAIR slot that encodes `cache` (every policy has one).
  static constexpr std::uint64_t attr_index(CachePolicy cache) noexcept {
    switch (cache) {
      case CachePolicy::Uncacheable:
        return 0;
      case CachePolicy::WriteCombining:
        return 1;
      case CachePolicy::WriteProtected:
        return 2;
      case CachePolicy::Writethrough:
        return 3;
      case CachePolicy::Writeback:
        return 4;
    }
    return 0;
  }
  // The policy of MAIR slot `index`: the inverse of attr_index; the unused Device slots 5-7 read as
  // Uncacheable.
  static constexpr CachePolicy cache_of_index(std::uint64_t index) noexcept {
    switch (index) {
      case 1:
        return CachePolicy::WriteCombining;
      case 2:
        return CachePolicy::WriteProtected;
      case 3:
        return CachePolicy::Writethrough;
      case 4:
        return CachePolicy::Writeback;
      default:
        return CachePolicy::Uncacheable;  // 0 and the Device-nGnRnE slots 5-7
    }
  }

  // Bits of a leaf's physical address at `level`.
  static constexpr std::uint64_t leaf_paddr_mask(PagingLevel level) noexcept {
    return internal::leaf_addr_mask(level, 48);
  }

  // Whether `prop` has an encoding: no undefined flag bits and no SHARED (AArch64 has no such bit).
  static constexpr bool can_encode(const PageProperty& prop) noexcept {
    return internal::is_well_formed(prop) && !has(prop.priv_flags, PrivilegedPageFlags::SHARED);
  }

  // Preconditions (checked in debug builds): see PteFormat in pte.hpp; in particular a leaf's
  // level is at most 3 (no level-0 blocks), and every physical address is below kPaddrLimit.
  static constexpr std::uint64_t encode(const PteScalar& s, PagingLevel level) noexcept {
    switch (s.kind) {
      case PteScalar::Kind::Absent:
        return 0;
      case PteScalar::Kind::PageTable: {
        VMS_DEBUG_ASSERT(level > 1 && level <= Consts::kNrLevels, "page table at level {}", level);
        VMS_DEBUG_ASSERT((s.paddr & ~kTableAddrMask) == 0, "bad table paddr {:#x}", s.paddr);
        return (s.paddr & kTableAddrMask) | kDescTable |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL1), kSwAvail1) |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL2), kSwAvail2);
      }
      case PteScalar::Kind::Mapped: {
        VMS_DEBUG_ASSERT(level >= 1 && level <= kMaxLeafLevel, "leaf at level {}", level);
        VMS_DEBUG_ASSERT((s.paddr & ~leaf_paddr_mask(level)) == 0, "bad leaf paddr {:#x}", s.paddr);
        VMS_DEBUG_ASSERT(can_encode(s.prop), "unencodable page property");
        const PageFlags f = s.prop.flags;
        const PrivilegedPageFlags p = s.prop.priv_flags;
        const bool user = has(p, PrivilegedPageFlags::USER);
        const bool exec = has(f, PageFlags::X);
        const std::uint64_t fields =
            (s.paddr & leaf_paddr_mask(level)) | (attr_index(s.prop.cache) << kAttrIndxShift) |
            kShInner | internal::bits_if(user, kApUser) |
            internal::bits_if(!has(f, PageFlags::W), kApReadOnly) |
            internal::bits_if(has(f, PageFlags::ACCESSED), kAf) |
            internal::bits_if(!has(p, PrivilegedPageFlags::GLOBAL), kNotGlobal) |
            internal::bits_if(!(exec && user), kUxn) | internal::bits_if(!(exec && !user), kPxn) |
            internal::bits_if(has(f, PageFlags::DIRTY), kSwDirty) |
            internal::bits_if(has(p, PrivilegedPageFlags::AVAIL1), kSwAvail1) |
            internal::bits_if(has(f, PageFlags::AVAIL2), kSwAvail2);
        if (!has(f, PageFlags::R)) return fields | kSwLeaf;  // invalid to the MMU
        return fields | (level == 1 ? kDescPage : kDescBlock);
      }
    }
    return 0;
  }

  // Total: every raw word decodes, at every level.
  static constexpr PteScalar decode(std::uint64_t raw, PagingLevel level) noexcept {
    switch (classify(raw, level)) {
      case PteScalar::Kind::Absent:
        return PteScalar::absent();
      case PteScalar::Kind::PageTable: {
        const PageTableFlags flags =
            (((raw & kSwAvail1) != 0) ? PageTableFlags::AVAIL1 : PageTableFlags::None) |
            (((raw & kSwAvail2) != 0) ? PageTableFlags::AVAIL2 : PageTableFlags::None);
        return PteScalar::page_table(raw & kTableAddrMask, flags);
      }
      case PteScalar::Kind::Mapped:
        return PteScalar::mapped(raw & leaf_paddr_mask(level), leaf_prop(raw));
    }
    return PteScalar::absent();
  }

  // A valid table or block/page descriptor, or an invalid descriptor with the software leaf marker
  // at a leaf level.
  static constexpr bool is_present(std::uint64_t raw, PagingLevel level) noexcept {
    if ((raw & kValid) == 0) return (raw & kSwLeaf) != 0 && level <= kMaxLeafLevel;
    return (raw & kDescTypeMask) == kDescTable || (level >= 2 && level <= kMaxLeafLevel);
  }
  // A block (levels 2..3), a page (level 1), or a marked invalid leaf.
  static constexpr bool is_leaf(std::uint64_t raw, PagingLevel level) noexcept {
    if ((raw & kValid) == 0) return (raw & kSwLeaf) != 0 && level <= kMaxLeafLevel;
    if ((raw & kDescTypeMask) == kDescPage) return level <= 1;
    return level >= 2 && level <= kMaxLeafLevel;  // a block
  }
  // The leaf's output address or the child table's address; meaningless for an absent entry.
  static constexpr Paddr paddr(std::uint64_t raw, PagingLevel level) noexcept {
    return raw & (is_leaf(raw, level) ? leaf_paddr_mask(level) : kTableAddrMask);
  }

 private:
  static constexpr PteScalar::Kind classify(std::uint64_t raw, PagingLevel level) noexcept {
    const bool leaf_level_ok = level >= 1 && level <= kMaxLeafLevel;
    if ((raw & kValid) == 0) {
      return ((raw & kSwLeaf) != 0 && leaf_level_ok) ? PteScalar::Kind::Mapped
                                                     : PteScalar::Kind::Absent;
    }
    if ((raw & kDescTypeMask) == 0b11) {
      return level <= 1 ? PteScalar::Kind::Mapped : PteScalar::Kind::PageTable;
    }
    // 0b01, a block: valid only at our levels 2 and 3; reserved (invalid) at 1 and 4.
    return (level >= 2 && leaf_level_ok) ? PteScalar::Kind::Mapped : PteScalar::Kind::Absent;
  }

  static constexpr PageProperty leaf_prop(std::uint64_t raw) noexcept {
    auto flag = [raw](std::uint64_t mask, auto f) { return internal::flag_if_set(raw, mask, f); };
    const bool user = (raw & kApUser) != 0;
    const bool exec = user ? (raw & kUxn) == 0 : (raw & kPxn) == 0;
    const PageFlags flags =
        flag(kValid, PageFlags::R) | ((raw & kApReadOnly) == 0 ? PageFlags::W : PageFlags::None) |
        (exec ? PageFlags::X : PageFlags::None) | flag(kAf, PageFlags::ACCESSED) |
        flag(kSwDirty, PageFlags::DIRTY) | flag(kSwAvail2, PageFlags::AVAIL2);
    const PrivilegedPageFlags priv_flags =
        (user ? PrivilegedPageFlags::USER : PrivilegedPageFlags::None) |
        ((raw & kNotGlobal) == 0 ? PrivilegedPageFlags::GLOBAL : PrivilegedPageFlags::None) |
        ((raw & kSwAvail1) != 0 ? PrivilegedPageFlags::AVAIL1 : PrivilegedPageFlags::None);
    return PageProperty{flags, cache_of_index((raw & kAttrIndxMask) >> kAttrIndxShift), priv_flags};
  }
};

static_assert(PteFormat<Aarch64Pte>);

// kMairEl1 is the packed form of kMairAttrs, and every CachePolicy has its own slot.
static_assert([] {
  std::uint64_t mair = 0;
  for (std::size_t i = 0; i < Aarch64Pte::kMairAttrs.size(); ++i) {
    mair |= std::uint64_t{Aarch64Pte::kMairAttrs[i]} << (8 * i);
  }
  return mair == Aarch64Pte::kMairEl1;
}());
static_assert([] {
  for (CachePolicy c :
       {CachePolicy::Uncacheable, CachePolicy::WriteCombining, CachePolicy::WriteProtected,
        CachePolicy::Writethrough, CachePolicy::Writeback}) {
    if (Aarch64Pte::cache_of_index(Aarch64Pte::attr_index(c)) != c) return false;
  }
  return true;
}());

}  // namespace vmspace
