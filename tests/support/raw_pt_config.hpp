// RawPtConfig: a page-table configuration whose items are raw untracked (physical address,
// level, property) triples, for the model tests and the fuzzer (OSTD's `TestPtConfig` in
// ostd/src/mm/page_table/test.rs). Free of any test framework, so the libFuzzer target can use
// it too.
//
// Items own nothing, so any physical address below the format's limit can be mapped and the
// raw property (AVAIL1 included) is stored as given; the page-table nodes are still real frames.
//   Pte        the PTE format
//   Highest    the largest leaf level, at most the format's kMaxLeafLevel (3 gives 1 GiB pages;
//              RISC-V Sv48 allows 4, 512 GiB leaves at the root)
//   CanUnmap   kTopLevelCanUnmap (false gives kernel-style semantics on the lower half)
// The top-level index range is 0..256, as in OSTD's test config.
#pragma once

#include <cstddef>
#include <string_view>

#include <vmspace/page_table.hpp>
#include <vmspace/pte/aarch64.hpp>
#include <vmspace/pte/riscv.hpp>
#include <vmspace/pte/x86_64.hpp>

namespace vmspace::test {

template <PteFormat P, PagingLevel Highest = P::Consts::kHighestTranslationLevel,
          bool CanUnmap = true>
struct RawPtConfig {
  static_assert(Highest >= 1 && Highest <= P::kMaxLeafLevel,
                "the format cannot encode leaves at that level");

  using Pte = P;
  static constexpr std::size_t kTopLevelIndexStart = 0;
  static constexpr std::size_t kTopLevelIndexEnd = 256;
  static constexpr bool kTopLevelCanUnmap = CanUnmap;
  static constexpr PagingLevel kHighestTranslationLevel = Highest;
  using Item = RawItem;
  using ItemRef = RawItem;

  static RawItem item_raw_info(const Item& item) noexcept { return item; }
  static RawItem item_into_raw(Item&& item) noexcept { return item; }
  static Item item_from_raw(const RawItem& raw) noexcept { return raw; }
  static ItemRef item_ref_from_raw(const RawItem& raw) noexcept { return raw; }
};

}  // namespace vmspace::test
