// OSTD's 33 page-table scenarios (ostd/src/mm/page_table/test.rs), ported to vmspace. Scenarios on
// OSTD's raw-item TestPtConfig run for every PTE format.
//
// Where OSTD expects a panic (`should_panic`) we return errors: each such port asserts the
// exact PageTableError and that nothing changed. OSTD's boot page table has no counterpart
// here (our tables never run before frame metadata exists), so the four boot_pt scenarios run
// on a kernel-config table made by new_kernel_page_table(), through cursors and page_walk.
// The four PTE-representation scenarios (zeroed/cast_*) are ported PTE-level, under the same
// names, in pte_test.cpp; here they run through a page table: the words the table writes into
// its nodes are checked to be exactly those representations.
//
// Shared by the page_table_*_test.cpp files of OSTD's scenarios (one executable, unit_page_table).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/user_pt_config.hpp>

#include "page_properties.hpp"
#include "pt_check.hpp"
#include "result_check.hpp"
#include "test_pt_config.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

// A user table with one fresh frame mapped RW/WB at range.start (OSTD's
// create_user_pt_mapped_at). Errors: those of cursor creation and map.
inline Result<PageTable<UserPtConfig>, PageTableError> create_user_pt_mapped_at(VaRange range) {
  auto pt = PageTable<UserPtConfig>::empty();
  REQUIRE(pt.has_value());
  auto frame = FrameAllocOptions().alloc_frame();
  REQUIRE(frame.has_value());
  auto guard = disable_preempt();
  {
    auto cursor = pt->cursor_mut(guard, range);
    if (!cursor) return err(cursor.error());
    auto r = cursor->map(UserItem::tracked(UFrame(std::move(*frame)), rw_wb()));
    if (!r) return err(r.error());
  }
  return std::move(*pt);
}

inline UFrame alloc_uframe() {
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  return UFrame(std::move(*f));
}

constexpr Vaddr kFirstMapAddr = k4K * 7;
constexpr Vaddr kSecondMapAddr = k4K * 512 * 512;

// OSTD's setup_page_table_with_two_frames.
struct TwoFrames {
  PageTable<UserPtConfig> pt;
  UFrame first;
  UFrame second;
};
inline TwoFrames setup_page_table_with_two_frames() {
  auto pt = PageTable<UserPtConfig>::empty();
  REQUIRE(pt.has_value());
  TwoFrames t{std::move(*pt), alloc_uframe(), alloc_uframe()};
  auto guard = disable_preempt();
  {
    auto c = t.pt.cursor_mut(guard, {kFirstMapAddr, kFirstMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->map(UserItem::tracked(t.first, rw_wb())).has_value());
  }
  {
    auto c = t.pt.cursor_mut(guard, {kSecondMapAddr, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->map(UserItem::tracked(t.second, rw_wb())).has_value());
  }
  return t;
}

using KF = KernelPtConfig::Pte;
constexpr Vaddr kKernelVa = kKernelBaseVaddr;

// The boot page table's map_base_page / protect_base_page, on a kernel-config table.
inline Result<void, PageTableError> map_kernel_base_page(const PageTable<KernelPtConfig>& pt,
                                                         Vaddr va, Paddr pa, PageProperty prop) {
  auto guard = disable_preempt();
  auto c = pt.cursor_mut(guard, {va, va + k4K});
  if (!c) return err(c.error());
  return c->map(KernelItem::untracked(pa, 1, prop));
}
template <class Op>
std::optional<VaRange> protect_kernel_base_page(const PageTable<KernelPtConfig>& pt, Vaddr va,
                                                Op op) {
  auto guard = disable_preempt();
  auto c = pt.cursor_mut(guard, {va, va + k4K});
  REQUIRE(c.has_value());
  auto r = c->protect_next(k4K, op);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace
