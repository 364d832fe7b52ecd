// Page-table edge cases from the verified specifications (docs/spec_cases.md, cases 38-47 and
// 50-56, with the structural invariants 1-4 run after the interesting steps),
// OSTD issue #3731, cursor navigation edge cases, sub-tree detachment, and reference counting
// with the user configuration.
//
// Our semantics differ from the specs in documented places (page_table.hpp): errors instead
// of panics, and map never replaces anything (AlreadyMapped where vostd's map_spec splits and
// replaces). Each test states the behaviour it pins down.
//
// Shared by the page_table_spec_*_test.cpp files (one executable, unit_page_table_spec).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/user_pt_config.hpp>

#include "failing_allocator.hpp"
#include "page_properties.hpp"
#include "pt_check.hpp"
#include "result_check.hpp"
#include "test_pt_config.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

constexpr Vaddr k2_47 = Vaddr{1} << 47;
constexpr Vaddr k2_48 = Vaddr{1} << 48;
constexpr std::uint64_t k512G = std::uint64_t{1} << 39;

inline UFrame alloc_uframe() {
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  return UFrame(std::move(*f));
}

// A 2 MiB-aligned untyped segment of 512 frames (mappable as one huge user page).
inline USegment alloc_huge_segment() {
  auto pa = global_frame_allocator().alloc(FrameLayout{k2M, k2M});
  REQUIRE(pa.has_value());
  auto seg = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + k2M}, [](Paddr) { return NoMeta{}; });
  REQUIRE(seg.has_value());
  return USegment(std::move(*seg));
}

// Maps `item` at `va` through a cursor over exactly the item's range.
inline Result<void, PageTableError> map_one_user(const PageTable<UserPtConfig>& pt, Vaddr va,
                                                 UserItem item) {
  const std::uint64_t size = std::uint64_t{4096} << (9u * (item.level() - 1u));
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, VaRange{va, va + size});
  if (!cursor) return err(cursor.error());
  return cursor->map(std::move(item));
}

inline std::uint64_t rc_of(Paddr pa) { return meta_slot(pa)->ref_count_ref().load(); }

inline PageTable<UserPtConfig> new_user_pt() {
  auto pt = create_user_page_table(kernel_page_table());
  REQUIRE(pt.has_value());
  return std::move(*pt);
}

// The first VA beyond a test config's range (root entries 0..256).
template <PageTableConfig C>
constexpr Vaddr test_range_end() {
  return Vaddr{256} << (12 + 9 * (kNrLevelsOf<C> - 1));
}

template <PageTableConfig C>
void check_huge_intact(const PageTable<C>& pt, Vaddr v, Paddr p, PageProperty prop) {
  for (std::uint64_t off = 0; off < k2M; off += k4K) {
    auto w = pt.page_walk(v + off);
    REQUIRE(w.has_value());
    CHECK(w->first == p + off);
    CHECK(w->second == prop);
  }
}

}  // namespace
