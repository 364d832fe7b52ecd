// The hardware PTE formats: round trips over every property (OSTD's cast_*_preserves_repr
// scenarios), totality of decode over arbitrary words, agreement of the fast accessors with
// decode, a model of what the MMU would do with each encoded entry, and hand-written golden
// words for the bit layouts.
#include <doctest/doctest.h>

#include <array>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <vmspace/pte.hpp>
#include <vmspace/pte/aarch64.hpp>
#include <vmspace/pte/riscv.hpp>
#include <vmspace/pte/x86_64.hpp>

#include "page_properties.hpp"

using vmspace::Aarch64Pte;
using vmspace::CachePolicy;
using vmspace::Paddr;
using vmspace::PageFlags;
using vmspace::PageProperty;
using vmspace::PageTableFlags;
using vmspace::PagingLevel;
using vmspace::PrivilegedPageFlags;
using vmspace::PteScalar;
using vmspace::RiscvSv39Pte;
using vmspace::RiscvSv48Pte;
using vmspace::X86_64Pte;

TYPE_TO_STRING(X86_64Pte);
TYPE_TO_STRING(RiscvSv48Pte);
TYPE_TO_STRING(RiscvSv39Pte);
TYPE_TO_STRING(Aarch64Pte);

#define ALL_PTE_FORMATS X86_64Pte, RiscvSv48Pte, RiscvSv39Pte, Aarch64Pte

namespace {

template <class F>
constexpr bool kIsX86 = std::is_same_v<F, X86_64Pte>;
template <class F>
constexpr bool kIsRiscv = std::is_same_v<F, RiscvSv48Pte> || std::is_same_v<F, RiscvSv39Pte>;
template <class F>
constexpr bool kIsAarch64 = std::is_same_v<F, Aarch64Pte>;

template <class F>
std::uint64_t page_size(PagingLevel level) {
  return vmspace::page_size<typename F::Consts>(level);
}

constexpr std::uint64_t bit(unsigned n) { return std::uint64_t{1} << n; }

// The documented set of properties each format refuses (besides undefined flag bits).
template <class F>
bool documented_encodable(const PageProperty& p) {
  const bool shared = has(p.priv_flags, PrivilegedPageFlags::SHARED);
  if constexpr (kIsX86<F>) {
    return p.cache != CachePolicy::WriteProtected;
  } else if constexpr (kIsRiscv<F>) {
    return !shared && (p.cache == CachePolicy::Writeback || p.cache == CachePolicy::Uncacheable ||
                       p.cache == CachePolicy::WriteCombining);
  } else {
    static_assert(kIsAarch64<F>);
    return !shared;
  }
}

// Properties every format must accept: R set, OSTD's two cache policies, and no SHARED unless
// the format is x86 (OSTD defines SHARED for x86 TDX only).
template <class F>
bool required_encodable(const PageProperty& p) {
  return has(p.flags, PageFlags::R) &&
         (p.cache == CachePolicy::Writeback || p.cache == CachePolicy::Uncacheable) &&
         (kIsX86<F> || !has(p.priv_flags, PrivilegedPageFlags::SHARED));
}

// Physical addresses to map at `level`: zero, one page, OSTD's 0xff_c000_0000, alternating
// bit patterns and the largest encodable address, each aligned down to the level.
template <class F>
std::vector<Paddr> leaf_paddrs(PagingLevel level) {
  const std::uint64_t size = page_size<F>(level);
  const std::uint64_t limit_mask = F::kPaddrLimit - 1;
  std::vector<Paddr> out;
  const std::array<std::uint64_t, 6> candidates = {0,
                                                   size,
                                                   0xff'c000'0000,
                                                   0x5555'5555'5555'5555 & limit_mask,
                                                   0x2aaa'aaaa'aaaa'aaaa & limit_mask,
                                                   limit_mask};
  for (std::uint64_t pa : candidates) {
    const Paddr aligned = vmspace::align_down(pa, size);
    bool dup = false;
    for (Paddr seen : out) dup = dup || seen == aligned;
    if (!dup) out.push_back(aligned);
  }
  return out;
}

// Deterministic generator (splitmix64) for the raw-word sweeps.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e37'79b9'7f4a'7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11ebULL;
    return z ^ (z >> 31);
  }
};

// A mix of dense and sparse words, so every classification of every format shows up.
std::uint64_t random_word(SplitMix64& rng) {
  const std::uint64_t r = rng.next();
  switch (rng.next() % 4) {
    case 0:
      return r;
    case 1:
      return r & rng.next();
    case 2:
      return r & rng.next() & rng.next();
    default:
      return r & ~std::uint64_t{1};
  }
}

// What the MMU does with a leaf entry, modelled from the architecture manuals independently of
// the formats' decoders.
struct HwLeafView {
  bool accessible = false;  // a translation exists for some access
  bool writable = false;
  bool executable = false;  // by the privilege level that owns the page
  bool user = false;
};

template <class F>
HwLeafView hw_leaf_view(std::uint64_t raw, PagingLevel level) {
  HwLeafView v;
  if constexpr (kIsX86<F>) {
    // Any entry with P set translates (at level 1 bit 7 only selects the PAT half).
    v.accessible = (raw & bit(0)) != 0;
    v.writable = (raw & bit(1)) != 0;
    v.user = (raw & bit(2)) != 0;
    v.executable = (raw & bit(63)) == 0;
  } else if constexpr (kIsRiscv<F>) {
    const bool valid = (raw & bit(0)) != 0;
    const bool r = (raw & bit(1)) != 0, w = (raw & bit(2)) != 0, x = (raw & bit(3)) != 0;
    const bool reserved_bits = (raw & 0x1fc0'0000'0000'0000ULL) != 0;  // bits 54..60
    const bool pointer = !r && !w && !x;
    v.accessible = valid && !pointer && !(w && !r) && !reserved_bits;
    v.writable = w;
    v.executable = x;
    v.user = (raw & bit(4)) != 0;
  } else {
    const std::uint64_t type = raw & 0b11;
    v.accessible = (type == 0b11 && level == 1) || (type == 0b01 && (level == 2 || level == 3));
    v.writable = (raw & bit(7)) == 0;
    v.user = (raw & bit(6)) != 0;
    // EL0 executes unless UXN; EL1 executes unless PXN.
    v.executable = v.user ? (raw & bit(54)) == 0 : (raw & bit(53)) == 0;
  }
  return v;
}

// is_present / is_leaf / paddr must agree with decode on `raw` at `level`.
template <class F>
void check_accessors_agree(std::uint64_t raw, PagingLevel level) {
  const PteScalar s = F::decode(raw, level);
  CAPTURE(raw);
  CAPTURE(level);
  REQUIRE(F::is_present(raw, level) == !s.is_absent());
  REQUIRE(F::is_leaf(raw, level) == s.is_mapped());
  if (!s.is_absent()) REQUIRE(F::paddr(raw, level) == s.paddr);
}

// The formats are constexpr: the page-table layer may build entries at compile time.
constexpr PageProperty kUserRw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
static_assert(X86_64Pte::encode(PteScalar::mapped(0x1234'5000, kUserRw), 1) ==
              0x8000'0000'1234'5087ULL);
static_assert(X86_64Pte::decode(0x8000'0000'1234'5087ULL, 1) ==
              PteScalar::mapped(0x1234'5000, kUserRw));
static_assert(RiscvSv39Pte::decode(RiscvSv39Pte::encode(PteScalar::mapped(0x1000, kUserRw), 1),
                                   1) == PteScalar::mapped(0x1000, kUserRw));
static_assert(Aarch64Pte::encode(PteScalar::mapped(0x4000'1000, kUserRw), 1) ==
              0x0060'0000'4000'1b53ULL);

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE_TEMPLATE("zeroed_pte_is_absent_pte", F, ALL_PTE_FORMATS) {
    static_assert(vmspace::PteFormat<F>);
    for (PagingLevel level = 1; level <= F::Consts::kNrLevels; ++level) {
      CAPTURE(level);
      CHECK(F::decode(0, level) == PteScalar::absent());
      CHECK(F::decode(0, level).is_absent());
      CHECK_FALSE(F::is_present(0, level));
      CHECK_FALSE(F::is_leaf(0, level));
    }
  }

  TEST_CASE_TEMPLATE("cast_absent_pte_preserves_repr", F, ALL_PTE_FORMATS) {
    for (PagingLevel level = 1; level <= F::Consts::kNrLevels; ++level) {
      CAPTURE(level);
      const std::uint64_t raw = F::encode(PteScalar::absent(), level);
      CHECK(raw == 0);
      CHECK(F::decode(raw, level) == PteScalar::absent());
    }
  }

  TEST_CASE_TEMPLATE("can_encode_refuses_exactly_the_documented_properties", F, ALL_PTE_FORMATS) {
    std::size_t refused = 0;
    for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
      CAPTURE(prop);
      CHECK(F::can_encode(prop) == documented_encodable<F>(prop));
      if (required_encodable<F>(prop)) CHECK(F::can_encode(prop));
      refused += F::can_encode(prop) ? 0 : 1;
    }
    // 64 flag sets × 16 privileged sets × 5 policies = 5120 properties.
    if constexpr (kIsX86<F>) CHECK(refused == 1024);              // WriteProtected
    if constexpr (kIsRiscv<F>) CHECK(refused == 5120 - 512 * 3);  // SHARED, WT, WP
    if constexpr (kIsAarch64<F>) CHECK(refused == 2560);          // SHARED

    // Undefined bits never round-trip, so no format accepts them.
    const PageProperty rw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    REQUIRE(F::can_encode(rw));
    PageProperty bad_flags = rw;
    bad_flags.flags = bad_flags.flags | static_cast<PageFlags>(0x20);
    CHECK_FALSE(F::can_encode(bad_flags));
    PageProperty bad_priv = rw;
    bad_priv.priv_flags = bad_priv.priv_flags | static_cast<PrivilegedPageFlags>(0x04);
    CHECK_FALSE(F::can_encode(bad_priv));
    PageProperty bad_cache = rw;
    bad_cache.cache = static_cast<CachePolicy>(7);
    CHECK_FALSE(F::can_encode(bad_cache));
    PageProperty complement = rw;
    complement.flags = ~PageFlags::W;
    CHECK_FALSE(F::can_encode(complement));
  }

  TEST_CASE_TEMPLATE("cast_frame_pte_preserves_repr", F, ALL_PTE_FORMATS) {
    // Every level up to the hardware's largest leaf: this covers 1..=HIGHEST and, for x86 and
    // Sv39, the 1 GiB level a configuration with a higher HIGHEST could use.
    static_assert(F::kMaxLeafLevel >= F::Consts::kHighestTranslationLevel);
    std::size_t round_trips = 0;
    for (PagingLevel level = 1; level <= F::kMaxLeafLevel; ++level) {
      for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
        if (!F::can_encode(prop)) continue;
        for (Paddr pa : leaf_paddrs<F>(level)) {
          const PteScalar want = PteScalar::mapped(pa, prop);
          const std::uint64_t raw = F::encode(want, level);
          CAPTURE(level);
          CAPTURE(want);
          CAPTURE(raw);
          REQUIRE(raw != 0);
          REQUIRE(F::decode(raw, level) == want);
          check_accessors_agree<F>(raw, level);
          ++round_trips;
        }
      }
    }
    CHECK(round_trips > 0);
  }

  TEST_CASE_TEMPLATE("cast_frame_pte_preserves_repr_at_ostd_address", F, ALL_PTE_FORMATS) {
    // OSTD's exact scenario: all_page_properties() with R, at 0xff_c000_0000, every level up to
    // HIGHEST (0xff_c000_0000 is 1 GiB-aligned; Sv48's level 4 needs 512 GiB alignment).
    for (PagingLevel level = 1; level <= F::Consts::kHighestTranslationLevel; ++level) {
      const Paddr pa = vmspace::align_down(0xff'c000'0000ULL, page_size<F>(level));
      for (const PageProperty& prop : vmspace::test::all_page_properties()) {
        if (!required_encodable<F>(prop)) continue;
        CAPTURE(level);
        CAPTURE(prop);
        const PteScalar want = PteScalar::mapped(pa, prop);
        REQUIRE(F::decode(F::encode(want, level), level) == want);
      }
    }
  }

  TEST_CASE_TEMPLATE("cast_pt_pte_preserves_repr", F, ALL_PTE_FORMATS) {
    const std::vector<Paddr> paddrs = {0x1000, 0xff'c000'0000ULL,
                                       vmspace::align_down(F::kPaddrLimit - 1, 4096),
                                       0x5555'5555'5000ULL & (F::kPaddrLimit - 1)};
    for (PagingLevel level = 2; level <= F::Consts::kNrLevels; ++level) {
      for (PageTableFlags flags : vmspace::test::all_page_table_flags()) {
        for (Paddr pa : paddrs) {
          const PteScalar want = PteScalar::page_table(pa, flags);
          const std::uint64_t raw = F::encode(want, level);
          CAPTURE(level);
          CAPTURE(want);
          CAPTURE(raw);
          REQUIRE(F::decode(raw, level) == want);
          CHECK(F::is_present(raw, level));
          CHECK_FALSE(F::is_leaf(raw, level));
          CHECK(F::paddr(raw, level) == pa);
        }
      }
    }
  }

  TEST_CASE_TEMPLATE("hardware_grants_access_iff_leaf_has_r", F, ALL_PTE_FORMATS) {
    // The shared rule of every format: a leaf without R is invalid to the MMU (but Mapped to the
    // library); a leaf with R translates with exactly the property's W, X and USER.
    for (PagingLevel level = 1; level <= F::kMaxLeafLevel; ++level) {
      for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
        if (!F::can_encode(prop)) continue;
        const Paddr pa = page_size<F>(level) * 3;
        const std::uint64_t raw = F::encode(PteScalar::mapped(pa, prop), level);
        CAPTURE(level);
        CAPTURE(prop);
        CAPTURE(raw);
        const HwLeafView hw = hw_leaf_view<F>(raw, level);
        REQUIRE(hw.accessible == has(prop.flags, PageFlags::R));
        if (!hw.accessible) continue;
        CHECK(hw.writable == has(prop.flags, PageFlags::W));
        CHECK(hw.executable == has(prop.flags, PageFlags::X));
        CHECK(hw.user == has(prop.priv_flags, PrivilegedPageFlags::USER));
      }
    }
  }

  TEST_CASE_TEMPLATE("accessed_and_dirty_bits_set_the_matching_flags", F, ALL_PTE_FORMATS) {
    static_assert(std::popcount(std::uint64_t{F::kAccessedBit}) == 1);
    static_assert(std::popcount(std::uint64_t{F::kDirtyBit}) == 1);
    static_assert(F::kAccessedBit != F::kDirtyBit);
    for (PagingLevel level = 1; level <= F::Consts::kHighestTranslationLevel; ++level) {
      for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
        if (!F::can_encode(prop)) continue;
        const std::uint64_t raw = F::encode(PteScalar::mapped(0, prop), level);
        CAPTURE(level);
        CAPTURE(prop);
        PageProperty accessed = prop;
        accessed.flags |= PageFlags::ACCESSED;
        PageProperty dirty = prop;
        dirty.flags |= PageFlags::DIRTY;
        REQUIRE(F::decode(raw | F::kAccessedBit, level) == PteScalar::mapped(0, accessed));
        REQUIRE(F::decode(raw | F::kDirtyBit, level) == PteScalar::mapped(0, dirty));
        // The masks are exactly the bits encode uses for the two flags.
        REQUIRE(((raw & F::kAccessedBit) != 0) == has(prop.flags, PageFlags::ACCESSED));
        REQUIRE(((raw & F::kDirtyBit) != 0) == has(prop.flags, PageFlags::DIRTY));
      }
    }
  }

  TEST_CASE_TEMPLATE("decode_is_total_and_consistent_on_random_words", F, ALL_PTE_FORMATS) {
    SplitMix64 rng{0x5eed'0000'0000'0000ULL ^ F::kName.size()};
    for (PagingLevel level = 1; level <= F::Consts::kNrLevels; ++level) {
      std::array<std::size_t, 3> kinds{};
      for (int i = 0; i < 4000; ++i) {
        const std::uint64_t raw = random_word(rng);
        CAPTURE(raw);
        CAPTURE(level);
        check_accessors_agree<F>(raw, level);
        const PteScalar s = F::decode(raw, level);
        ++kinds[static_cast<std::size_t>(s.kind)];
        switch (s.kind) {
          case PteScalar::Kind::Absent:
            break;
          case PteScalar::Kind::PageTable:
            REQUIRE(vmspace::is_aligned(s.paddr, 4096));
            REQUIRE(s.paddr < F::kPaddrLimit);
            if (level > 1) REQUIRE(F::decode(F::encode(s, level), level) == s);
            break;
          case PteScalar::Kind::Mapped:
            // Whatever decode reports is a property the format can write back.
            REQUIRE(F::can_encode(s.prop));
            REQUIRE(vmspace::is_aligned(s.paddr, page_size<F>(level)));
            REQUIRE(s.paddr < F::kPaddrLimit);
            if (level <= F::kMaxLeafLevel) REQUIRE(F::decode(F::encode(s, level), level) == s);
            break;
        }
      }
      CAPTURE(level);
      CHECK(kinds[static_cast<std::size_t>(PteScalar::Kind::Absent)] > 0);
      if (level <= F::kMaxLeafLevel)
        CHECK(kinds[static_cast<std::size_t>(PteScalar::Kind::Mapped)] > 0);
      if (level > 1) CHECK(kinds[static_cast<std::size_t>(PteScalar::Kind::PageTable)] > 0);
    }
  }

  TEST_CASE("x86_64_golden_words") {
    using P = X86_64Pte;
    const auto user_rw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    // P | RW | US | PS(PAT) | XD, address 0x1234_5000.
    CHECK(P::encode(PteScalar::mapped(0x1234'5000, user_rw), 1) == 0x8000'0000'1234'5087ULL);

    // A 2 MiB read-only global kernel page: P | PS | G | XD.
    const auto kernel_r =
        PageProperty::new_with(PageFlags::R, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    CHECK(P::encode(PteScalar::mapped(0x4020'0000, kernel_r), 2) == 0x8000'0000'4020'0181ULL);

    // A 1 GiB RWX uncacheable page with A and D: P | RW | PWT | PCD | A | D | PS.
    const auto kernel_rwx_ad =
        PageProperty::new_with(PageFlags::RWX | PageFlags::ACCESSED | PageFlags::DIRTY,
                               CachePolicy::Uncacheable, PrivilegedPageFlags::None);
    CHECK(P::encode(PteScalar::mapped(0xff'c000'0000ULL, kernel_rwx_ad), 3) ==
          0x0000'00ff'c000'00fbULL);

    // Write-combining = PCD only; SHARED = 51, AVAIL1 = 52, AVAIL2 = 53; X clears XD.
    const auto wc_all_soft = PageProperty::new_with(
        PageFlags::RX | PageFlags::AVAIL2, CachePolicy::WriteCombining,
        PrivilegedPageFlags::USER | PrivilegedPageFlags::AVAIL1 | PrivilegedPageFlags::SHARED);
    CHECK(P::encode(PteScalar::mapped(0x2000, wc_all_soft), 1) == 0x0038'0000'0000'2095ULL);

    // Write-through = PWT only.
    const auto wt =
        PageProperty::new_with(PageFlags::R, CachePolicy::Writethrough, PrivilegedPageFlags::None);
    CHECK(P::encode(PteScalar::mapped(0x3000, wt), 1) == 0x8000'0000'0000'3089ULL);

    // An R-less leaf keeps only PS (and XD): hardware-not-present, library-present.
    const auto none =
        PageProperty::new_with(PageFlags::None, CachePolicy::Writeback, PrivilegedPageFlags::None);
    const std::uint64_t hidden = P::encode(PteScalar::mapped(0x5000, none), 1);
    CHECK(hidden == 0x8000'0000'0000'5080ULL);
    CHECK(P::decode(hidden, 1) == PteScalar::mapped(0x5000, none));

    // Page-table entries: P | RW | US, plus bits 52/53 for AVAIL1/AVAIL2.
    CHECK(P::encode(PteScalar::page_table(0x7f000, PageTableFlags::None), 4) == 0x7f007ULL);
    CHECK(P::encode(PteScalar::page_table(0x7f000, PageTableFlags::AVAIL1 | PageTableFlags::AVAIL2),
                    2) == 0x0030'0000'0007'f007ULL);

    // Decoding hand-written words.
    CHECK(P::decode(0x8000'0000'1234'5087ULL, 1) == PteScalar::mapped(0x1234'5000, user_rw));
    CHECK(P::decode(0x0000'0000'0009'9023ULL, 3) ==  // P|RW|A, no PS: page table
          PteScalar::page_table(0x99000, PageTableFlags::None));
    // Bit 12 of a 2 MiB leaf is its PAT bit, not address.
    CHECK(P::decode(0x8000'0000'4020'1181ULL, 2) == PteScalar::mapped(0x4020'0000, kernel_r));
  }

  TEST_CASE("x86_64_classification_is_ostds") {
    // docs/spec_cases.md invariant 10: leaf ⟺ bit 7 at every level, present ⟺ bit 0 ∨ bit 7, and
    // the address is the level's OSTD mask (without the SHARED bit).
    using P = X86_64Pte;
    SplitMix64 rng{42};
    for (int i = 0; i < 4000; ++i) {
      const std::uint64_t raw = random_word(rng);
      for (PagingLevel level = 1; level <= 4; ++level) {
        CAPTURE(raw);
        CAPTURE(level);
        const PteScalar s = P::decode(raw, level);
        REQUIRE(s.is_mapped() == ((raw & bit(7)) != 0));
        REQUIRE(!s.is_absent() == ((raw & (bit(0) | bit(7))) != 0));
        if (s.is_page_table()) REQUIRE(s.paddr == (raw & 0x7'ffff'ffff'f000ULL));
        if (s.is_mapped() && level <= 3) {
          const std::uint64_t ostd_mask[] = {P::kPhysAddrMaskLvl1, P::kPhysAddrMaskLvl2,
                                             P::kPhysAddrMaskLvl3};
          REQUIRE(s.paddr == (raw & ostd_mask[level - 1] & ~bit(51)));
          REQUIRE(has(s.prop.priv_flags, PrivilegedPageFlags::SHARED) == ((raw & bit(51)) != 0));
        }
      }
    }
    // The largest address below the SHARED bit survives next to SHARED.
    const auto shared =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::SHARED);
    const Paddr top = 0x7'ffff'ffff'f000ULL;
    CHECK(P::encode(PteScalar::mapped(top, shared), 1) ==
          (top | bit(51) | bit(7) | bit(1) | bit(0) | bit(63)));
    CHECK(P::decode(P::encode(PteScalar::mapped(top, shared), 1), 1) ==
          PteScalar::mapped(top, shared));
  }

  TEST_CASE("x86_64_cache_policy_bits") {
    using P = X86_64Pte;
    auto cache_bits = [](CachePolicy c) {
      const auto prop = PageProperty::new_with(PageFlags::R, c, PrivilegedPageFlags::None);
      return P::encode(PteScalar::mapped(0, prop), 1) & (bit(3) | bit(4));
    };
    CHECK(cache_bits(CachePolicy::Writeback) == 0);
    CHECK(cache_bits(CachePolicy::Writethrough) == bit(3));
    CHECK(cache_bits(CachePolicy::WriteCombining) == bit(4));
    CHECK(cache_bits(CachePolicy::Uncacheable) == (bit(3) | bit(4)));
    CHECK_FALSE(P::can_encode(PageProperty::new_with(PageFlags::RW, CachePolicy::WriteProtected,
                                                     PrivilegedPageFlags::None)));
  }

  TEST_CASE_TEMPLATE("riscv_rless_leaf_is_invalid_to_hardware_and_decodes_mapped", F, RiscvSv48Pte,
                     RiscvSv39Pte) {
    for (PagingLevel level = 1; level <= F::kMaxLeafLevel; ++level) {
      for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
        if (!F::can_encode(prop)) continue;
        const Paddr pa = page_size<F>(level);
        const std::uint64_t raw = F::encode(PteScalar::mapped(pa, prop), level);
        CAPTURE(level);
        CAPTURE(prop);
        CAPTURE(raw);
        if (has(prop.flags, PageFlags::R)) {
          REQUIRE((raw & bit(0)) != 0);   // V
          REQUIRE((raw & bit(60)) == 0);  // reserved bits stay clear on valid entries
        } else {
          REQUIRE((raw & bit(0)) == 0);  // V = 0: the MMU ignores everything else
          REQUIRE((raw & F::kSwLeaf) != 0);
          REQUIRE(F::decode(raw, level) == PteScalar::mapped(pa, prop));
        }
        // The reserved W-without-R combinations never reach the MMU as valid entries.
        const bool w = (raw & bit(2)) != 0, r = (raw & bit(1)) != 0;
        if (w && !r) REQUIRE((raw & bit(0)) == 0);
      }
    }
  }

  TEST_CASE_TEMPLATE("riscv_pointer_entries_have_no_rwx", F, RiscvSv48Pte, RiscvSv39Pte) {
    for (PagingLevel level = 2; level <= F::Consts::kNrLevels; ++level) {
      for (PageTableFlags flags : vmspace::test::all_page_table_flags()) {
        const std::uint64_t raw = F::encode(PteScalar::page_table(0x8765'4000, flags), level);
        CAPTURE(raw);
        CHECK((raw & bit(0)) != 0);                            // V
        CHECK((raw & (bit(1) | bit(2) | bit(3))) == 0);        // R = W = X = 0
        CHECK((raw & (bit(4) | bit(6) | bit(7))) == 0);        // U, A, D reserved
        CHECK(((raw >> 10) & ((1ULL << 44) - 1)) == 0x87654);  // PPN
        CHECK(((raw & bit(8)) != 0) == has(flags, PageTableFlags::AVAIL1));
        CHECK(((raw & bit(9)) != 0) == has(flags, PageTableFlags::AVAIL2));
      }
    }
    // A V=1, RWX=0 word at level 1 is not a pointer (there is no level 0): it decodes as a leaf
    // without permissions, as in OSTD.
    CHECK(F::decode(0x0000'0000'0000'0401ULL, 1) ==
          PteScalar::mapped(0x1000, PageProperty{PageFlags::None, CachePolicy::Writeback,
                                                 PrivilegedPageFlags::None}));
  }

  TEST_CASE_TEMPLATE("riscv_golden_words_and_pbmt", F, RiscvSv48Pte, RiscvSv39Pte) {
    // V | R | W | U | A | D, PPN 0x80200, PBMT = 0.
    const auto user_rw_ad = PageProperty::new_user(
        PageFlags::RW | PageFlags::ACCESSED | PageFlags::DIRTY, CachePolicy::Writeback);
    CHECK(F::encode(PteScalar::mapped(0x8020'0000, user_rw_ad), 1) == ((0x80200ULL << 10) | 0xd7));
    // 2 MiB global RX kernel page, uncacheable (PBMT = IO, bit 62), AVAIL1 in RSW bit 8.
    const auto kernel_rx_io =
        PageProperty::new_with(PageFlags::RX, CachePolicy::Uncacheable,
                               PrivilegedPageFlags::GLOBAL | PrivilegedPageFlags::AVAIL1);
    CHECK(F::encode(PteScalar::mapped(0x4020'0000, kernel_rx_io), 2) ==
          (bit(62) | (0x40200ULL << 10) | bit(8) | bit(5) | bit(3) | bit(1) | bit(0)));
    // Write-combining is PBMT = NC (bit 61); AVAIL2 is RSW bit 9.
    const auto wc = PageProperty::new_with(PageFlags::R | PageFlags::AVAIL2,
                                           CachePolicy::WriteCombining, PrivilegedPageFlags::None);
    CHECK(F::encode(PteScalar::mapped(0x1000, wc), 1) ==
          (bit(61) | (0x1ULL << 10) | bit(9) | bit(1) | bit(0)));
    // The reserved PBMT value 3 decodes as the strongest policy.
    CHECK(F::decode(bit(62) | bit(61) | (0x1ULL << 10) | bit(1) | bit(0), 1).prop.cache ==
          CachePolicy::Uncacheable);
    // Execute-only and W-only words written by someone else still decode (R-less leaves).
    CHECK(F::decode((0x2ULL << 10) | bit(3) | bit(0), 1).prop.flags == PageFlags::X);
    CHECK(F::decode((0x2ULL << 10) | bit(2) | bit(0), 1).prop.flags == PageFlags::W);
    // A V = 0 word without the marker is absent whatever else it holds.
    CHECK(F::decode(0xffff'ffff'ffff'fffeULL & ~F::kSwLeaf, 1).is_absent());
  }

  TEST_CASE("riscv_sv39_and_sv48_constants") {
    using S48 = RiscvSv48Pte::Consts;
    using S39 = RiscvSv39Pte::Consts;
    static_assert(vmspace::PagingConsts<S48> && vmspace::PagingConsts<S39>);
    CHECK(S48::kNrLevels == 4);
    CHECK(S48::kAddressWidth == 48);
    CHECK(S48::kVaSignExt);
    CHECK(S48::kHighestTranslationLevel == 4);
    CHECK(S39::kNrLevels == 3);
    CHECK(S39::kAddressWidth == 39);
    CHECK(S39::kVaSignExt);
    CHECK(S39::kHighestTranslationLevel == 2);
    CHECK(RiscvSv48Pte::kName != RiscvSv39Pte::kName);
    CHECK(RiscvSv48Pte::kMaxLeafLevel == 4);
    CHECK(RiscvSv39Pte::kMaxLeafLevel == 3);
    // The root of an Sv39 table covers 39 bits: VA bits 30..38 index it.
    CHECK(vmspace::pte_index<S39>(0x3f'ffff'ffffULL, 3) == 255);
    CHECK(vmspace::pte_index<S39>(0xffff'ffc0'0000'0000ULL, 3) == 256);
    CHECK(vmspace::page_size<S39>(3) == (1ULL << 30));
    CHECK(vmspace::page_size<S48>(4) == (1ULL << 39));
  }

  TEST_CASE("aarch64_x_and_user_round_trip") {
    // docs/spec_cases.md case 55: verified-pt's aarch64 encoding forgets X and USER.
    using P = Aarch64Pte;
    for (bool user : {false, true}) {
      for (bool x : {false, true}) {
        for (bool w : {false, true}) {
          PageFlags flags = PageFlags::R;
          if (x) flags |= PageFlags::X;
          if (w) flags |= PageFlags::W;
          const auto prop =
              PageProperty::new_with(flags, CachePolicy::Writeback,
                                     user ? PrivilegedPageFlags::USER : PrivilegedPageFlags::None);
          const std::uint64_t raw = P::encode(PteScalar::mapped(0x4000'0000, prop), 1);
          CAPTURE(prop);
          CAPTURE(raw);
          CHECK(P::decode(raw, 1) == PteScalar::mapped(0x4000'0000, prop));
          CHECK(((raw & P::kApUser) != 0) == user);
          CHECK(((raw & P::kApReadOnly) != 0) == !w);
          // EL0 may execute only executable user pages; EL1 only executable kernel pages.
          CHECK(((raw & P::kUxn) == 0) == (x && user));
          CHECK(((raw & P::kPxn) == 0) == (x && !user));
        }
      }
    }
  }

  TEST_CASE("aarch64_descriptor_types_per_level") {
    using P = Aarch64Pte;
    const auto rw =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::None);
    CHECK((P::encode(PteScalar::mapped(0x1000, rw), 1) & 0b11) == 0b11);       // page
    CHECK((P::encode(PteScalar::mapped(0x20'0000, rw), 2) & 0b11) == 0b01);    // 2 MiB block
    CHECK((P::encode(PteScalar::mapped(0x4000'0000, rw), 3) & 0b11) == 0b01);  // 1 GiB block
    for (PagingLevel level = 2; level <= 4; ++level) {
      const std::uint64_t raw =
          P::encode(PteScalar::page_table(0x5000, PageTableFlags::None), level);
      CHECK(raw == (0x5000 | 0b11));  // table, no APTable/XNTable restrictions
    }
    // The same page-descriptor word is a table one level up.
    const std::uint64_t page = P::encode(PteScalar::mapped(0x1000, rw), 1);
    CHECK(P::decode(page, 2).is_page_table());
    // 0b01 is reserved at ARM level 3 (our 1) and, with DS = 0, at ARM level 0 (our 4).
    const std::uint64_t block = P::encode(PteScalar::mapped(0x4000'0000, rw), 3);
    CHECK(P::decode(block, 1).is_absent());
    CHECK(P::decode(block, 4).is_absent());
    CHECK(P::decode(block, 2).is_mapped());
  }

  TEST_CASE("aarch64_no_leaf_above_highest_translation_level") {
    using P = Aarch64Pte;
    static_assert(P::Consts::kHighestTranslationLevel == 3);
    static_assert(P::kMaxLeafLevel == P::Consts::kHighestTranslationLevel);
    static_assert(P::Consts::kHighestTranslationLevel < P::Consts::kNrLevels);
    // No word at all decodes as a 512 GiB leaf: not blocks, not R-less leaves, not noise.
    for (const PageProperty& prop : vmspace::test::all_page_properties_all_caches()) {
      if (!P::can_encode(prop)) continue;
      for (PagingLevel level = 1; level <= 3; ++level) {
        const std::uint64_t raw = P::encode(PteScalar::mapped(0, prop), level);
        CAPTURE(prop);
        CAPTURE(raw);
        REQUIRE_FALSE(P::decode(raw, 4).is_mapped());
        REQUIRE_FALSE(P::is_leaf(raw, 4));
      }
    }
    SplitMix64 rng{7};
    for (int i = 0; i < 20000; ++i) {
      const std::uint64_t raw = random_word(rng);
      CAPTURE(raw);
      REQUIRE_FALSE(P::decode(raw, 4).is_mapped());
    }
  }

  TEST_CASE("aarch64_mair_layout_and_attr_index") {
    using P = Aarch64Pte;
    CHECK(P::kMairEl1 == 0x0000'00ff'bbaa'4400ULL);
    const std::array<std::pair<CachePolicy, std::uint64_t>, 5> expected = {{
        {CachePolicy::Uncacheable, 0},
        {CachePolicy::WriteCombining, 1},
        {CachePolicy::WriteProtected, 2},
        {CachePolicy::Writethrough, 3},
        {CachePolicy::Writeback, 4},
    }};
    for (const auto& entry : expected) {
      const CachePolicy cache = entry.first;
      const std::uint64_t index = entry.second;
      const auto prop = PageProperty::new_with(PageFlags::R, cache, PrivilegedPageFlags::None);
      const std::uint64_t raw = P::encode(PteScalar::mapped(0x1000, prop), 1);
      CAPTURE(cache);
      CHECK(((raw >> 2) & 0b111) == index);
      CHECK(((raw >> 8) & 0b11) == 0b11);  // inner shareable
      CHECK(P::decode(raw, 1).prop.cache == cache);
    }
    // Device-nGnRnE / Normal-NC / WT-no-write-allocate / WT / WB attribute bytes.
    CHECK(P::kMairAttrs[0] == 0x00);
    CHECK(P::kMairAttrs[1] == 0x44);
    CHECK(P::kMairAttrs[2] == 0xaa);
    CHECK(P::kMairAttrs[3] == 0xbb);
    CHECK(P::kMairAttrs[4] == 0xff);
    // Indices we never write decode as what MAIR holds there (Device-nGnRnE).
    for (std::uint64_t index = 5; index < 8; ++index) {
      CHECK(P::kMairAttrs[index] == 0x00);
      const std::uint64_t raw = 0x1000 | (index << 2) | 0b11;
      CHECK(P::decode(raw, 1).prop.cache == CachePolicy::Uncacheable);
    }
  }

  TEST_CASE("aarch64_golden_words") {
    using P = Aarch64Pte;
    // A user RW page, WB (AttrIndx 4), not global: page | AttrIndx | AP[1] | SH | nG | PXN | UXN.
    const auto user_rw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    CHECK(P::encode(PteScalar::mapped(0x4000'1000, user_rw), 1) == 0x0060'0000'4000'1b53ULL);
    // A global kernel RX 2 MiB block, accessed: block | AttrIndx 4 | AP[2] | SH | AF | UXN.
    const auto kernel_rx = PageProperty::new_with(
        PageFlags::RX | PageFlags::ACCESSED, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    CHECK(P::encode(PteScalar::mapped(0x4020'0000, kernel_rx), 2) == 0x0040'0000'4020'0791ULL);
    // Dirty / AVAIL1 / AVAIL2 in software bits 55 / 56 / 57.
    const auto soft = PageProperty::new_with(
        PageFlags::R | PageFlags::DIRTY | PageFlags::AVAIL2, CachePolicy::Uncacheable,
        PrivilegedPageFlags::AVAIL1 | PrivilegedPageFlags::GLOBAL);
    CHECK(P::encode(PteScalar::mapped(0x2000, soft), 1) ==
          (bit(57) | bit(56) | bit(55) | bit(54) | bit(53) | 0x2000 | 0x300 | bit(7) | 0b11));
    // An R-less leaf: invalid descriptor (bits[1:0] = 00) plus the software-leaf marker.
    const auto none =
        PageProperty::new_with(PageFlags::W, CachePolicy::Writeback, PrivilegedPageFlags::USER);
    const std::uint64_t hidden = P::encode(PteScalar::mapped(0x4000'0000, none), 3);
    CHECK((hidden & 0b11) == 0);
    CHECK((hidden & P::kSwLeaf) != 0);
    CHECK(P::decode(hidden, 3) == PteScalar::mapped(0x4000'0000, none));
    CHECK(P::decode(hidden, 4).is_absent());
    // Table descriptor with AVAIL1|AVAIL2.
    CHECK(P::encode(PteScalar::page_table(0x9000, PageTableFlags::AVAIL1 | PageTableFlags::AVAIL2),
                    3) == (bit(57) | bit(56) | 0x9000 | 0b11));
  }

  TEST_CASE("page_size_and_pte_index_helpers") {
    using C = X86_64Pte::Consts;
    CHECK(vmspace::kNrEntries<C> == 512);
    CHECK(vmspace::page_size<C>(1) == 0x1000);
    CHECK(vmspace::page_size<C>(2) == 0x20'0000);
    CHECK(vmspace::page_size<C>(3) == 0x4000'0000);
    CHECK(vmspace::page_size<C>(4) == 0x80'0000'0000ULL);
    CHECK(vmspace::pte_index<C>(0xffff'8000'0000'0000ULL, 4) == 256);
    CHECK(vmspace::pte_index<C>(0x0000'7fff'ffff'f000ULL, 4) == 255);
    CHECK(vmspace::pte_index<C>(0x0000'7fff'ffff'f000ULL, 1) == 511);
    CHECK(vmspace::pte_index<C>(0x0000'0000'0020'1000ULL, 2) == 1);
    CHECK(vmspace::pte_index<C>(0x0000'0000'0020'1000ULL, 1) == 1);
    CHECK(vmspace::pte_index<C>(0x0000'0000'4000'0000ULL, 3) == 1);
    CHECK(vmspace::pte_index<Aarch64Pte::Consts>(0xffff'ffff'ffff'f000ULL, 4) == 511);
    static_assert(X86_64Pte::Consts::kHighestTranslationLevel == 2);
    static_assert(X86_64Pte::Consts::kNrLevels == 4 && X86_64Pte::Consts::kAddressWidth == 48);
  }
}
