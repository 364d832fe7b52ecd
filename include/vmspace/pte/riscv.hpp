// RISC-V Sv48 and Sv39 page-table entries (RISC-V privileged specification, "Sv39"/"Sv48",
// with the Svpbmt extension). Both formats share one implementation; they differ only in their
// PagingConsts.
//
// Hardware layout of a valid entry (V = 1):
//
//   bit  0  V     valid
//   bit  1  R     \ R = W = X = 0: pointer to the next level. Otherwise a leaf.
//   bit  2  W      | W without R (XWR = 010, 110) is reserved (Zicfiss reuses 010 for shadow
//   bit  3  X     /  stacks), so hardware must never see it.
//   bit  4  U     PrivilegedPageFlags::USER (reserved in pointers: written 0)
//   bit  5  G     PrivilegedPageFlags::GLOBAL (written 0 in pointers)
//   bit  6  A     ACCESSED (kAccessedBit). Without Svadu a leaf with A = 0 faults on access;
//                 the library's software MMU sets it instead.
//   bit  7  D     DIRTY (kDirtyBit)
//   bit  8  RSW0  AVAIL1: PrivilegedPageFlags::AVAIL1 on leaves, PageTableFlags::AVAIL1 on pointers
//   bit  9  RSW1  AVAIL2: PageFlags::AVAIL2 on leaves, PageTableFlags::AVAIL2 on pointers
//   bits 10..53   PPN (physical address bits 12..55)
//   bits 54..60   reserved, written 0 in valid entries
//   bits 61..62   PBMT (Svpbmt; assumed present, unlike OSTD, issue #3920):
//                   0 PMA = Writeback, 1 NC = WriteCombining, 2 IO = Uncacheable, 3 reserved
//   bit 63  N     Svnapot, written 0
//
// R-less leaves. On x86 (and so in OSTD) a mapping without R is hardware-not-present. We keep
// that rule on every format: hardware access requires R. A leaf whose flags lack R is written
// with V = 0, so the hardware treats it as invalid whatever W/X say (this also keeps the
// reserved W-without-R combinations and execute-only pages away from the MMU), and with the
// software-leaf marker kSwLeaf (bit 60) set so the library still decodes it as Mapped. All other
// fields keep the positions of a valid leaf, so the exact property (W, X, A, D, U, G, RSW,
// PBMT) and address survive. An entry with V = 0 and kSwLeaf clear is Absent whatever its other
// bits, so the all-zero entry is Absent.
//
// Decoding of words encode never writes (decode is total):
//   - V = 1, R = W = X = 0 at level 1 (hardware: page fault) decodes as a Mapped leaf without
//     R/W/X, as in OSTD; re-encoding it gives the V = 0 form.
//   - V = 1 with W or X but not R (reserved or execute-only) decodes as Mapped with those flags.
//   - PBMT = 3 (reserved) decodes as Uncacheable, the strongest policy.
//   - A leaf's address is aligned down to its level (hardware faults on a misaligned superpage).
//
// What cannot be encoded (`can_encode` is false):
//   - CachePolicy::Writethrough and WriteProtected: Svpbmt has no such memory types.
//   - PrivilegedPageFlags::SHARED: a TDX attribute with no RISC-V counterpart (OSTD defines it on
//     x86 only); there is no spare bit a valid leaf could carry it in.
//   - properties with undefined flag bits.
// Everything else, including every R-less combination, round-trips. Physical addresses must be
// below 2^56 (kPaddrLimit). Leaves are accepted at every level (Sv39 gigapages at level 3,
// Sv48 terapages at level 4), although Sv39's Consts keeps OSTD's kHighestTranslationLevel = 2.
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

namespace internal {

template <PagingConsts C>
struct RiscvPteImpl {
  using Consts = C;

  // The largest level at which the hardware (and this encoder) accepts a leaf.
  static constexpr PagingLevel kMaxLeafLevel = C::kNrLevels;

  static constexpr std::uint64_t kValid = internal::bit(0);
  static constexpr std::uint64_t kRead = internal::bit(1);
  static constexpr std::uint64_t kWrite = internal::bit(2);
  static constexpr std::uint64_t kExec = internal::bit(3);
  static constexpr std::uint64_t kUser = internal::bit(4);
  static constexpr std::uint64_t kGlobal = internal::bit(5);
  static constexpr std::uint64_t kAccessed = internal::bit(6);
  static constexpr std::uint64_t kDirty = internal::bit(7);
  static constexpr std::uint64_t kRsw0 = internal::bit(8);     // AVAIL1
  static constexpr std::uint64_t kRsw1 = internal::bit(9);     // AVAIL2
  static constexpr std::uint64_t kSwLeaf = internal::bit(60);  // only ever with V = 0
  static constexpr std::uint64_t kPbmtNc = internal::bit(61);
  static constexpr std::uint64_t kPbmtIo = internal::bit(62);
  static constexpr std::uint64_t kPbmtMask = kPbmtNc | kPbmtIo;
  static constexpr std::uint64_t kRwxMask = kRead | kWrite | kExec;

  static constexpr unsigned kPpnShift = 10;
  static constexpr std::uint64_t kPpnMask = ((std::uint64_t{1} << 44) - 1) << kPpnShift;
  static constexpr Paddr kPaddrLimit = Paddr{1} << 56;

  static constexpr std::uint64_t kAccessedBit = kAccessed;
  static constexpr std::uint64_t kDirtyBit = kDirty;

  static constexpr bool can_encode(const PageProperty& prop) noexcept {
    if (!internal::is_well_formed(prop)) return false;
    if (has(prop.priv_flags, PrivilegedPageFlags::SHARED)) return false;
    return prop.cache == CachePolicy::Writeback || prop.cache == CachePolicy::WriteCombining ||
           prop.cache == CachePolicy::Uncacheable;
  }

  // Preconditions (checked in debug builds): see PteFormat in pte.hpp; in addition a leaf's
  // level is at most kMaxLeafLevel and every physical address is below kPaddrLimit.
  static constexpr std::uint64_t encode(const PteScalar& s, PagingLevel level) noexcept {
    switch (s.kind) {
      case PteScalar::Kind::Absent:
        return 0;
      case PteScalar::Kind::PageTable: {
        VMS_DEBUG_ASSERT(level > 1 && level <= C::kNrLevels, "page table at level {}", level);
        VMS_DEBUG_ASSERT(s.paddr < kPaddrLimit && is_aligned(s.paddr, 4096),
                         "bad child paddr {:#x}", s.paddr);
        // R = W = X = 0 marks a pointer; U, A and D are reserved in pointers and stay 0.
        return ppn_field(s.paddr) | kValid |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL1), kRsw0) |
               internal::bits_if(has(s.pt_flags, PageTableFlags::AVAIL2), kRsw1);
      }
      case PteScalar::Kind::Mapped: {
        VMS_DEBUG_ASSERT(level >= 1 && level <= kMaxLeafLevel, "leaf at level {}", level);
        VMS_DEBUG_ASSERT(s.paddr < kPaddrLimit &&
                             is_aligned(s.paddr, std::uint64_t{1} << internal::level_shift(level)),
                         "bad leaf paddr {:#x}", s.paddr);
        VMS_DEBUG_ASSERT(can_encode(s.prop), "unencodable page property");
        const PageFlags f = s.prop.flags;
        const PrivilegedPageFlags p = s.prop.priv_flags;
        const std::uint64_t fields =
            ppn_field(s.paddr) | internal::bits_if(has(f, PageFlags::R), kRead) |
            internal::bits_if(has(f, PageFlags::W), kWrite) |
            internal::bits_if(has(f, PageFlags::X), kExec) |
            internal::bits_if(has(f, PageFlags::ACCESSED), kAccessed) |
            internal::bits_if(has(f, PageFlags::DIRTY), kDirty) |
            internal::bits_if(has(f, PageFlags::AVAIL2), kRsw1) |
            internal::bits_if(has(p, PrivilegedPageFlags::USER), kUser) |
            internal::bits_if(has(p, PrivilegedPageFlags::GLOBAL), kGlobal) |
            internal::bits_if(has(p, PrivilegedPageFlags::AVAIL1), kRsw0) | pbmt_bits(s.prop.cache);
        // Hardware access requires R: R-less leaves are invalid to the MMU (see the header).
        return fields | (has(f, PageFlags::R) ? kValid : kSwLeaf);
      }
    }
    return 0;
  }

  static constexpr PteScalar decode(std::uint64_t raw, PagingLevel level) noexcept {
    if ((raw & kValid) == 0) {
      if ((raw & kSwLeaf) == 0) return PteScalar::absent();
      return PteScalar::mapped(leaf_paddr(raw, level), leaf_prop(raw));
    }
    if ((raw & kRwxMask) == 0 && level > 1) {
      const PageTableFlags flags =
          (((raw & kRsw0) != 0) ? PageTableFlags::AVAIL1 : PageTableFlags::None) |
          (((raw & kRsw1) != 0) ? PageTableFlags::AVAIL2 : PageTableFlags::None);
      return PteScalar::page_table(ppn_paddr(raw), flags);
    }
    return PteScalar::mapped(leaf_paddr(raw, level), leaf_prop(raw));
  }

  static constexpr bool is_present(std::uint64_t raw, PagingLevel /*level*/) noexcept {
    return (raw & (kValid | kSwLeaf)) != 0;
  }
  static constexpr bool is_leaf(std::uint64_t raw, PagingLevel level) noexcept {
    if ((raw & kValid) == 0) return (raw & kSwLeaf) != 0;
    return (raw & kRwxMask) != 0 || level == 1;
  }
  static constexpr Paddr paddr(std::uint64_t raw, PagingLevel level) noexcept {
    return is_leaf(raw, level) ? leaf_paddr(raw, level) : ppn_paddr(raw);
  }

 private:
  static constexpr std::uint64_t ppn_field(Paddr pa) noexcept {
    return ((pa >> 12) << kPpnShift) & kPpnMask;
  }
  static constexpr Paddr ppn_paddr(std::uint64_t raw) noexcept {
    return ((raw & kPpnMask) >> kPpnShift) << 12;
  }
  static constexpr Paddr leaf_paddr(std::uint64_t raw, PagingLevel level) noexcept {
    return ppn_paddr(raw) & internal::leaf_addr_mask(level, 56);
  }

  static constexpr std::uint64_t pbmt_bits(CachePolicy cache) noexcept {
    switch (cache) {
      case CachePolicy::Writeback:
        return 0;
      case CachePolicy::WriteCombining:
        return kPbmtNc;
      case CachePolicy::Uncacheable:
        return kPbmtIo;
      case CachePolicy::Writethrough:
      case CachePolicy::WriteProtected:
        break;  // refused by can_encode
    }
    return 0;
  }

  static constexpr PageProperty leaf_prop(std::uint64_t raw) noexcept {
    auto flag = [raw](std::uint64_t mask, auto f) { return internal::flag_if_set(raw, mask, f); };
    const PageFlags flags = flag(kRead, PageFlags::R) | flag(kWrite, PageFlags::W) |
                            flag(kExec, PageFlags::X) | flag(kAccessed, PageFlags::ACCESSED) |
                            flag(kDirty, PageFlags::DIRTY) | flag(kRsw1, PageFlags::AVAIL2);
    const PrivilegedPageFlags priv_flags = flag(kUser, PrivilegedPageFlags::USER) |
                                           flag(kGlobal, PrivilegedPageFlags::GLOBAL) |
                                           flag(kRsw0, PrivilegedPageFlags::AVAIL1);
    CachePolicy cache = CachePolicy::Uncacheable;  // IO and the reserved value 3
    switch (raw & kPbmtMask) {
      case 0:
        cache = CachePolicy::Writeback;
        break;
      case kPbmtNc:
        cache = CachePolicy::WriteCombining;
        break;
      default:
        break;
    }
    return PageProperty{flags, cache, priv_flags};
  }
};

struct Sv48Consts {
  static constexpr std::size_t kBasePageSize = 4096;
  static constexpr PagingLevel kNrLevels = 4;
  static constexpr unsigned kAddressWidth = 48;
  static constexpr bool kVaSignExt = true;
  static constexpr PagingLevel kHighestTranslationLevel = 4;
  static constexpr std::size_t kPteSize = 8;
};

struct Sv39Consts {
  static constexpr std::size_t kBasePageSize = 4096;
  static constexpr PagingLevel kNrLevels = 3;
  static constexpr unsigned kAddressWidth = 39;
  static constexpr bool kVaSignExt = true;
  static constexpr PagingLevel kHighestTranslationLevel = 2;
  static constexpr std::size_t kPteSize = 8;
};

}  // namespace internal

// Sv48: 4 levels, 48-bit virtual addresses, leaves at every level (OSTD's RISC-V default).
struct RiscvSv48Pte : internal::RiscvPteImpl<internal::Sv48Consts> {
  // Short name of the format, for messages.
  static constexpr std::string_view kName = "riscv-sv48";
};

// Sv39: 3 levels, 39-bit virtual addresses, leaves up to 2 MiB as in OSTD's riscv_sv39_mode.
struct RiscvSv39Pte : internal::RiscvPteImpl<internal::Sv39Consts> {
  // Short name of the format, for messages.
  static constexpr std::string_view kName = "riscv-sv39";
};

static_assert(PteFormat<RiscvSv48Pte>);
static_assert(PteFormat<RiscvSv39Pte>);

}  // namespace vmspace
