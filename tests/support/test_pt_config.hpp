// TestPtConfig: the raw-item page-table configuration of raw_pt_config.hpp (OSTD's
// `TestPtConfig` in ostd/src/mm/page_table/test.rs), plus the helpers OSTD's page-table tests
// use (largest_pages, map_untracked, protect_range) and small cursor utilities. The template
// runs the same scenario over every PTE format (x86-64, RISC-V Sv48 and Sv39, AArch64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include <doctest/doctest.h>

#include <vmspace/page_table.hpp>
#include <vmspace/pte/aarch64.hpp>
#include <vmspace/pte/riscv.hpp>
#include <vmspace/pte/x86_64.hpp>

#include "raw_pt_config.hpp"
#include "result_check.hpp"

namespace vmspace::test {

// The same configuration as the model tests and the fuzzer use (raw_pt_config.hpp).
template <PteFormat P, PagingLevel Highest = P::Consts::kHighestTranslationLevel,
          bool CanUnmap = true>
using TestPtConfig = RawPtConfig<P, Highest, CanUnmap>;

// The four formats, for TEST_CASE_TEMPLATE.
#define VMS_ALL_PTE_FORMATS \
  ::vmspace::X86_64Pte, ::vmspace::RiscvSv48Pte, ::vmspace::RiscvSv39Pte, ::vmspace::Aarch64Pte

// Every format accepts 1 GiB leaves; Sv39 has them at its root level.
template <PteFormat P>
using HugeTestPtConfig = TestPtConfig<P, 3>;

template <PageTableConfig C>
constexpr std::uint64_t psize(PagingLevel level) noexcept {
  return page_size<ConstsOf<C>>(level);
}

inline constexpr std::uint64_t k4K = 4096;
inline constexpr std::uint64_t k2M = std::uint64_t{2} << 20;
inline constexpr std::uint64_t k1G = std::uint64_t{1} << 30;

inline PageProperty rw_wb() {
  return PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
}

// OSTD's largest_pages: splits [va, va + len) mapped to [pa, pa + len) into the largest aligned
// pages allowed by C (greedy from the start). Preconditions: all three 4 KiB-aligned.
template <PageTableConfig C>
std::vector<std::pair<Paddr, PagingLevel>> largest_pages(Vaddr va, Paddr pa, std::uint64_t len) {
  std::vector<std::pair<Paddr, PagingLevel>> out;
  std::uint64_t done = 0;
  while (done < len) {
    PagingLevel level = C::kHighestTranslationLevel;
    while (level > 1 && (!is_aligned(va + done, psize<C>(level)) ||
                         !is_aligned(pa + done, psize<C>(level)) || psize<C>(level) > len - done)) {
      --level;
    }
    out.emplace_back(pa + done, level);
    done += psize<C>(level);
  }
  return out;
}

// OSTD's map_untracked: maps [va, va + pa.size()) to `pa` with the largest pages.
template <PageTableConfig C>
requires std::is_same_v<typename C::Item, RawItem>
void map_untracked(const PageTable<C>& pt, Vaddr va, PaRange pa, PageProperty prop) {
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, VaRange{va, va + pa.size()});
  REQUIRE(cursor.has_value());
  for (auto [paddr, level] : largest_pages<C>(va, pa.start, pa.size())) {
    auto r = cursor->map(RawItem{paddr, level, prop});
    REQUIRE_MESSAGE(r.has_value(), "map failed: ", error_of(r));
  }
}

// OSTD's protect_range: protect_next until nothing is left, checking each range stays inside.
template <PageTableConfig C, class Op>
void protect_range(const PageTable<C>& pt, VaRange range, Op op) {
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, range);
  REQUIRE(cursor.has_value());
  for (;;) {
    auto r = cursor->protect_next(range.end - cursor->virt_addr(), op);
    REQUIRE(r.has_value());
    if (!r->has_value()) break;
    CHECK((*r)->start >= range.start);
    CHECK((*r)->end <= range.end);
  }
}

// Maps one raw item at `va` through a fresh cursor over exactly the item's range.
template <PageTableConfig C>
requires std::is_same_v<typename C::Item, RawItem> Result<void, PageTableError> map_one(
    const PageTable<C>& pt, Vaddr va, RawItem item) {
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, VaRange{va, va + psize<C>(item.level)});
  if (!cursor) return err(cursor.error());
  return cursor->map(std::move(item));
}

// What a query at `va` returns, through a read cursor over [va, va + 4 KiB).
template <PageTableConfig C>
typename Cursor<C>::Queried query_at(const PageTable<C>& pt, Vaddr va) {
  auto guard = disable_preempt();
  auto cursor = pt.cursor(guard, VaRange{va, va + k4K});
  REQUIRE(cursor.has_value());
  auto q = cursor->query();
  REQUIRE(q.has_value());
  return *q;
}

// The fragment variants, for checks.
template <PageTableConfig C>
const MappedFrag<C>* as_mapped(const std::optional<PageTableFrag<C>>& f) {
  return f ? std::get_if<MappedFrag<C>>(&*f) : nullptr;
}
template <PageTableConfig C>
const StrayPageTableFrag<C>* as_stray(const std::optional<PageTableFrag<C>>& f) {
  return f ? std::get_if<StrayPageTableFrag<C>>(&*f) : nullptr;
}

// Removes everything in `range` (take_next until nothing is left) and returns the fragments.
template <PageTableConfig C>
std::vector<PageTableFrag<C>> take_all(const PageTable<C>& pt, VaRange range) {
  std::vector<PageTableFrag<C>> out;
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, range);
  REQUIRE(cursor.has_value());
  for (;;) {
    auto f = cursor->take_next(range.end - cursor->virt_addr());
    REQUIRE(f.has_value());
    if (!f->has_value()) break;
    out.push_back(std::move(**f));
  }
  return out;
}

}  // namespace vmspace::test

namespace doctest {

template <>
struct StringMaker<vmspace::RawItem> {
  static String convert(const vmspace::RawItem& r) {
    return String("RawItem{pa=") + toString(r.paddr) + ", level=" + toString(int(r.level)) +
           ", prop=" + toString(r.prop) + "}";
  }
};

}  // namespace doctest

TYPE_TO_STRING_AS("x86-64", vmspace::X86_64Pte);
TYPE_TO_STRING_AS("riscv-sv48", vmspace::RiscvSv48Pte);
TYPE_TO_STRING_AS("riscv-sv39", vmspace::RiscvSv39Pte);
TYPE_TO_STRING_AS("aarch64", vmspace::Aarch64Pte);
