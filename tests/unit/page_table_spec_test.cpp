// Page-table edge cases from the verified specifications (docs/spec_cases.md, cases 38-47 and
// 50-56, with the structural invariants 1-4 run after the interesting steps),
// OSTD issue #3731, cursor navigation edge cases, sub-tree detachment, and reference counting
// with the user configuration.
//
// Our semantics differ from the specs in documented places (page_table.hpp): errors instead
// of panics, and map never replaces anything (AlreadyMapped where vostd's map_spec splits and
// replaces). Each test states the behaviour it pins down.
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

UFrame alloc_uframe() {
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  return UFrame(std::move(*f));
}

// A 2 MiB-aligned untyped segment of 512 frames (mappable as one huge user page).
USegment alloc_huge_segment() {
  auto pa = global_frame_allocator().alloc(FrameLayout{k2M, k2M});
  REQUIRE(pa.has_value());
  auto seg = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + k2M}, [](Paddr) { return NoMeta{}; });
  REQUIRE(seg.has_value());
  return USegment(std::move(*seg));
}

// Maps `item` at `va` through a cursor over exactly the item's range.
Result<void, PageTableError> map_one_user(const PageTable<UserPtConfig>& pt, Vaddr va, UserItem item) {
  const std::uint64_t size = std::uint64_t{4096} << (9u * (item.level() - 1u));
  auto guard = disable_preempt();
  auto cursor = pt.cursor_mut(guard, VaRange{va, va + size});
  if (!cursor) return err(cursor.error());
  return cursor->map(std::move(item));
}

std::uint64_t rc_of(Paddr pa) { return meta_slot(pa)->ref_count_ref().load(); }

PageTable<UserPtConfig> new_user_pt() {
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

TEST_SUITE("unit") {
  // ---- case 38: cursor ranges ----

  TEST_CASE("cursor_rejects_empty_reversed_and_end_zero_ranges") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    for (VaRange r : {VaRange{0, 0}, VaRange{0x1000, 0}, VaRange{0x1000, 0x1000}, VaRange{0x2000, 0x1000},
                      VaRange{0xffff'ffff'ffff'f000, 0}, VaRange{0x7fff'ffff'f000, 0}}) {
      CAPTURE(r);
      CHECK(error_of(pt->cursor(guard, r)) == PageTableError::InvalidVaddrRange);
      CHECK(error_of(pt->cursor_mut(guard, r)) == PageTableError::InvalidVaddrRange);
      CHECK(error_of(pt->try_cursor_mut(guard, r)) == PageTableError::InvalidVaddrRange);
    }
    // Nothing was allocated on the way.
    CHECK(census(*pt).nodes == 1);
  }

  TEST_CASE("range_errors_report_an_invalid_range_before_misalignment") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    CHECK(error_of(pt->cursor(guard, {0x1001, 0x1000})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor(guard, {0x1001, k2_48 + 1})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor(guard, {0x1001, 0x2000})) == PageTableError::UnalignedVaddr);
    CHECK(error_of(pt->cursor(guard, {0x1000, 0x2001})) == PageTableError::UnalignedVaddr);
    CHECK(census(*pt).nodes == 1);
  }

  TEST_CASE("user_cursor_covers_exactly_the_lower_half") {
    auto pt = new_user_pt();
    auto guard = disable_preempt();
    {
      auto c = pt.cursor(guard, {0, k2_47});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 4);
    }
    CHECK(pt.cursor(guard, {k2_47 - k4K, k2_47}).has_value());
    CHECK(error_of(pt.cursor(guard, {0, k2_47 + k4K})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt.cursor(guard, {k2_47, k2_47 + k4K})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt.cursor(guard, {k2_48, k2_48 + k4K})) == PageTableError::InvalidVaddrRange);
    // Kernel addresses in a user table.
    CHECK(error_of(pt.cursor(guard, {kLinearMappingBaseVaddr, kLinearMappingBaseVaddr + k4K})) ==
          PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt.cursor(guard, {k2_47 - k4K, kLinearMappingBaseVaddr + k4K})) ==
          PageTableError::InvalidVaddrRange);
  }

  TEST_CASE("kernel_cursor_covers_exactly_the_upper_half") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    auto guard = disable_preempt();
    CHECK(kernel->cursor(guard, {kKernelBaseVaddr, kKernelBaseVaddr + k4K}).has_value());
    CHECK(kernel->cursor(guard, {0 - k4K * 2, 0 - k4K}).has_value());
    CHECK(error_of(kernel->cursor(guard, {0, k4K})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(kernel->cursor(guard, {kKernelBaseVaddr - k4K, kKernelBaseVaddr + k4K})) ==
          PageTableError::InvalidVaddrRange);
    // The last page cannot be named: its end would be 0.
    CHECK(error_of(kernel->cursor(guard, {0 - k4K, 0})) == PageTableError::InvalidVaddrRange);
  }

  TEST_CASE_TEMPLATE("test_config_range_is_the_lower_half_of_the_root", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr end = test_range_end<C>();
    auto guard = disable_preempt();
    CHECK(pt->cursor(guard, {0, end}).has_value());
    CHECK(pt->cursor(guard, {end - k4K, end}).has_value());
    CHECK(error_of(pt->cursor(guard, {0, end + k4K})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor(guard, {end, end + k4K})) == PageTableError::InvalidVaddrRange);
  }

  // ---- case 39 and jump edge cases ----

  TEST_CASE_TEMPLATE("jump_accepts_exactly_the_locked_range", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{2 * k4K, 4 * k4K};
    auto guard = disable_preempt();
    auto c = pt->cursor(guard, range);
    REQUIRE(c.has_value());
    REQUIRE(c->jump(3 * k4K).has_value());
    CHECK(c->virt_addr() == 3 * k4K);
    CHECK(error_of(c->jump(range.end)) == PageTableError::InvalidVaddr);
    CHECK(error_of(c->jump(range.start - k4K)) == PageTableError::InvalidVaddr);
    CHECK(error_of(c->jump(0 - k4K)) == PageTableError::InvalidVaddr);
    CHECK(error_of(c->jump(range.start + 1)) == PageTableError::UnalignedLen);
    CHECK(error_of(c->jump(range.end + 1)) == PageTableError::UnalignedLen);
    CHECK(c->virt_addr() == 3 * k4K);  // errors do not move the cursor
    REQUIRE(c->jump(range.start).has_value());
    CHECK(c->virt_addr() == range.start);
  }

  TEST_CASE_TEMPLATE("jump_back_into_a_split_huge_page_and_out_of_the_leaf_table", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 5, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, 3 * k2M, RawItem{k4K * 77, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {0, 4 * k2M});
    REQUIRE(c.has_value());
    // Split the huge page by removing one piece; the cursor descends into the new leaf table.
    REQUIRE(c->jump(k2M + 3 * k4K).has_value());
    auto f = c->take_next(k4K);
    REQUIRE(f.has_value());
    REQUIRE(as_mapped<C>(*f) != nullptr);
    // Jump across nodes, then back into the split page.
    REQUIRE(c->jump(3 * k2M).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(q->item->paddr == k4K * 77);
    REQUIRE(c->jump(k2M + 4 * k4K).has_value());
    q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(*q->item == RawItem{k2M * 5 + 4 * k4K, 1, rw_wb()});
    REQUIRE(c->jump(k2M + 3 * k4K).has_value());
    CHECK_FALSE(c->query()->item.has_value());
    REQUIRE(c->jump(0).has_value());
    q = c->query();
    CHECK(q->range == VaRange{0, k2M});
    CHECK_FALSE(q->item.has_value());
  }

  // ---- case 40 and 50: lengths ----

  TEST_CASE_TEMPLATE("lengths_are_checked_before_anything_changes", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{2 * k4K, 6 * k4K};
    REQUIRE(map_one(*pt, 3 * k4K, RawItem{k4K * 50, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    auto make_r = [](PageProperty& p) { p.flags = PageFlags::R; };
    const std::uint64_t wrapping = 0 - k4K;  // va + len wraps past 2^64
    for (std::uint64_t len : {std::uint64_t{4095}, std::uint64_t{1}, k4K + 1}) {
      CAPTURE(len);
      CHECK(error_of(c->find_next(len)) == PageTableError::UnalignedLen);
      CHECK(error_of(c->take_next(len)) == PageTableError::UnalignedLen);
      CHECK(error_of(c->protect_next(len, make_r)) == PageTableError::UnalignedLen);
    }
    for (std::uint64_t len : {range.size() + k4K, wrapping, std::uint64_t{0} - range.start}) {
      CAPTURE(len);
      CHECK(error_of(c->find_next(len)) == PageTableError::LenOutOfRange);
      CHECK(error_of(c->take_next(len)) == PageTableError::LenOutOfRange);
      CHECK(error_of(c->protect_next(len, make_r)) == PageTableError::LenOutOfRange);
    }
    CHECK(c->virt_addr() == range.start);
    CHECK(pt->page_walk(3 * k4K)->second == rw_wb());
    // va + len == range end is fine.
    auto found = c->find_next(range.size());
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(3 * k4K));
    REQUIRE(c->jump(5 * k4K).has_value());
    CHECK(error_of(c->find_next(2 * k4K)) == PageTableError::LenOutOfRange);
    CHECK(c->find_next(k4K).has_value());
    CHECK(c->virt_addr() == range.end);
  }

  TEST_CASE_TEMPLATE("zero_length_operations_change_nothing", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, 2 * k4K, RawItem{k4K * 50, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {2 * k4K, 4 * k4K});
    REQUIRE(c.has_value());
    auto found = c->find_next(0);
    REQUIRE(found.has_value());
    CHECK_FALSE(found->has_value());
    auto taken = c->take_next(0);
    REQUIRE(taken.has_value());
    CHECK_FALSE(taken->has_value());
    auto prot = c->protect_next(0, [](PageProperty& p) { p.flags = PageFlags::R; });
    REQUIRE(prot.has_value());
    CHECK_FALSE(prot->has_value());
    CHECK(c->virt_addr() == 2 * k4K);
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(*q->item == RawItem{k4K * 50, 1, rw_wb()});
  }

  // ---- case 41: map arguments ----

  TEST_CASE_TEMPLATE("map_refuses_items_that_do_not_fit_and_changes_nothing", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0, 2 * k2M - k4K};
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    REQUIRE(c->guard_level() == 2);
    const std::size_t nodes = census(*pt).nodes;
    PageProperty undefined_flag = rw_wb();
    undefined_flag.flags = static_cast<PageFlags>(0x20 | 0x03);  // a bit PageFlags does not define

    REQUIRE(c->jump(k2M).has_value());
    CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) == PageTableError::InvalidItem);  // beyond the end
    REQUIRE(c->jump(k4K).has_value());
    CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) == PageTableError::InvalidItem);  // va misaligned
    REQUIRE(c->jump(0).has_value());
    CHECK(error_of(c->map(RawItem{k4K, 2, rw_wb()})) == PageTableError::InvalidItem);  // pa misaligned
    CHECK(error_of(c->map(RawItem{0, 3, rw_wb()})) == PageTableError::InvalidItem);    // above the guard
    CHECK(error_of(c->map(RawItem{0, 4, rw_wb()})) == PageTableError::InvalidItem);    // above Highest
    CHECK(error_of(c->map(RawItem{0, 0, rw_wb()})) == PageTableError::InvalidItem);    // no such level
    CHECK(error_of(c->map(RawItem{0, 1, undefined_flag})) == PageTableError::InvalidItem);
    CHECK(error_of(c->map(RawItem{P::kPaddrLimit, 1, rw_wb()})) == PageTableError::InvalidItem);
    CHECK(error_of(c->map(RawItem{P::kPaddrLimit - k4K, 2, rw_wb()})) == PageTableError::InvalidItem);
    CHECK(c->virt_addr() == 0);
    // Nothing was mapped and no node was created by the refused requests.
    const auto after = census(*pt);
    CHECK(after.nodes == nodes);
    CHECK(after.total_leaves() == 0);
    // The last page of the range takes a 4 KiB item; then the cursor is at the end.
    REQUIRE(c->jump(range.end - k4K).has_value());
    REQUIRE(c->map(RawItem{k4K, 1, rw_wb()}).has_value());
    CHECK(c->virt_addr() == range.end);
    CHECK(error_of(c->map(RawItem{2 * k4K, 1, rw_wb()})) == PageTableError::InvalidVaddr);
    // The highest encodable physical address is accepted.
    REQUIRE(c->jump(0).has_value());
    REQUIRE(c->map(RawItem{P::kPaddrLimit - k2M, 2, rw_wb()}).has_value());
    CHECK(pt->page_walk(k2M - 1)->first == P::kPaddrLimit - 1);
  }

  TEST_CASE("user_config_refuses_items_above_2m") {
    auto pt = new_user_pt();
    auto guard = disable_preempt();
    auto c = pt.cursor_mut(guard, {k1G, 2 * k1G});
    REQUIRE(c.has_value());
    REQUIRE(c->guard_level() == 3);
    UserItem huge = UserItem::untracked(k1G * 3, 3, rw_wb());
    CHECK(error_of(c->map(std::move(huge))) == PageTableError::InvalidItem);
    CHECK_FALSE(pt.page_walk(k1G).has_value());
  }

  TEST_CASE("top_level_leaves_need_a_config_that_can_unmap_the_top_level") {
    const RawItem item{k512G * 3, 4, rw_wb()};
    {
      using C = TestPtConfig<RiscvSv48Pte, 4, /*CanUnmap=*/false>;
      auto pt = PageTable<C>::empty();
      REQUIRE(pt.has_value());
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {0, k512G});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 4);
      CHECK(error_of(c->map(RawItem(item))) == PageTableError::InvalidItem);
      CHECK(census(*pt).total_leaves() == 0);
    }
    {
      // Sv48 allows 512 GiB leaves; a config that may unmap its top level maps one.
      using C = TestPtConfig<RiscvSv48Pte, 4, /*CanUnmap=*/true>;
      auto pt = PageTable<C>::empty();
      REQUIRE(pt.has_value());
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {0, k512G});
      REQUIRE(c.has_value());
      REQUIRE(c->map(RawItem(item)).has_value());
      CHECK(pt->page_walk(0x1234)->first == k512G * 3 + 0x1234);
      REQUIRE(c->jump(0).has_value());
      auto f = c->take_next(k512G);
      REQUIRE(f.has_value());
      const auto* m = as_mapped<C>(*f);
      REQUIRE(m != nullptr);
      CHECK(m->level == 4);
      CHECK(*m->item == item);
    }
  }

  // ---- cases 42-46: huge pages ----

  TEST_CASE_TEMPLATE("map_4k_inside_a_2m_mapping_is_already_mapped", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = k2M;
    const Paddr p = k2M * 7;
    REQUIRE(map_one(*pt, v, RawItem{p, 2, rw_wb()}).has_value());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {v + 0x5000, v + 0x6000});
      REQUIRE(c.has_value());
      CHECK(error_of(c->map(RawItem{k4K * 3, 1, rw_wb()})) == PageTableError::AlreadyMapped);
      CHECK(c->virt_addr() == v + 0x5000);
    }
    check_huge_intact(*pt, v, p, rw_wb());
    const auto q = query_at(*pt, v + 0x5000);
    CHECK(q.level == 2);
    CHECK(q.range == VaRange{v, v + k2M});
    const auto c = census(*pt);
    CHECK(c.violations.empty());
    CHECK(c.leaves[2] == 1);
    CHECK(c.leaves[1] == 0);
  }

  TEST_CASE_TEMPLATE("unmapping_inside_a_2m_mapping_splits_it_with_proportional_addresses", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = 3 * k2M;
    const Paddr p = k2M * 11;
    REQUIRE(map_one(*pt, v, RawItem{p, 2, rw_wb()}).has_value());
    const auto frags = take_all(*pt, {v + 0x1000, v + 0x3000});
    REQUIRE(frags.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      const auto* m = std::get_if<MappedFrag<C>>(&frags[i]);
      REQUIRE(m != nullptr);
      CHECK(m->va == v + 0x1000 * (i + 1));
      CHECK(*m->item == RawItem{p + 0x1000 * (i + 1), 1, rw_wb()});
    }
    for (std::uint64_t off = 0; off < k2M; off += k4K) {
      auto w = pt->page_walk(v + off);
      if (off == 0x1000 || off == 0x2000) {
        CHECK_FALSE(w.has_value());
      } else {
        REQUIRE(w.has_value());
        CHECK(w->first == p + off);
        CHECK(w->second == rw_wb());
      }
    }
    CHECK(query_at(*pt, v).level == 1);
    const auto c = census(*pt);
    CHECK(c.violations.empty());
    CHECK(c.leaves[1] == 510);
    CHECK(c.leaves[2] == 0);
  }

  TEST_CASE_TEMPLATE("unmapping_across_the_end_of_a_2m_mapping", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = 4 * k2M;
    const Paddr p = k2M * 3;
    REQUIRE(map_one(*pt, v, RawItem{p, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, v + k2M, RawItem{k4K * 9, 1, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, v + k2M + k4K, RawItem{k4K * 10, 1, rw_wb()}).has_value());
    const auto frags = take_all(*pt, {v + k2M - k4K, v + k2M + k4K});
    REQUIRE(frags.size() == 2);
    const auto* a = std::get_if<MappedFrag<C>>(&frags[0]);
    const auto* b = std::get_if<MappedFrag<C>>(&frags[1]);
    REQUIRE(a != nullptr);
    REQUIRE(b != nullptr);
    CHECK(*a->item == RawItem{p + k2M - k4K, 1, rw_wb()});
    CHECK(b->va == v + k2M);
    CHECK(*b->item == RawItem{k4K * 9, 1, rw_wb()});
    CHECK(pt->page_walk(v + k2M - 2 * k4K)->first == p + k2M - 2 * k4K);
    CHECK(pt->page_walk(v + k2M + k4K)->first == k4K * 10);
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("protecting_one_4k_piece_of_a_2m_mapping_changes_exactly_that_piece", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = k2M;
    const Paddr p = k2M * 9;
    REQUIRE(map_one(*pt, v, RawItem{p, 2, rw_wb()}).has_value());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {v, v + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->jump(v + 0x1000).has_value());
      auto r = c->protect_next(k4K, [](PageProperty& prop) { prop.flags = PageFlags::R; });
      REQUIRE(r.has_value());
      CHECK(*r == std::optional(VaRange{v + 0x1000, v + 0x2000}));
      CHECK(c->virt_addr() == v + 0x2000);
    }
    const PageProperty ro = PageProperty::new_user(PageFlags::R, CachePolicy::Writeback);
    for (std::uint64_t off = 0; off < k2M; off += k4K) {
      auto w = pt->page_walk(v + off);
      REQUIRE(w.has_value());
      CHECK(w->first == p + off);
      CHECK(w->second == (off == 0x1000 ? ro : rw_wb()));
    }
    const auto c = census(*pt);
    CHECK(c.violations.empty());
    CHECK(c.leaves[1] == 512);
    CHECK(c.leaves[2] == 0);
  }

  TEST_CASE_TEMPLATE("protecting_a_whole_huge_mapping_keeps_it_huge", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 9, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, k1G, RawItem{k1G * 2, 3, rw_wb()}).has_value());
    protect_range(*pt, {0, 2 * k1G}, [](PageProperty& prop) { prop.flags = PageFlags::RX; });
    const PageProperty rx = PageProperty::new_user(PageFlags::RX, CachePolicy::Writeback);
    CHECK(query_at(*pt, k2M + k4K).level == 2);
    CHECK(query_at(*pt, k1G + k2M).level == 3);
    CHECK(pt->page_walk(k2M + k4K)->second == rx);
    CHECK(pt->page_walk(k1G + 5 * k2M)->second == rx);
    const auto c = census(*pt);
    CHECK(c.violations.empty());
    CHECK(c.leaves[3] == 1);
    CHECK(c.leaves[2] == 1);
    CHECK(c.leaves[1] == 0);
  }

  TEST_CASE_TEMPLATE("protect_next_starting_inside_a_1g_page_splits_down_to_4k", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Paddr p = k1G * 4;
    REQUIRE(map_one(*pt, k1G, RawItem{p, 3, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {k1G, 2 * k1G});
    REQUIRE(c.has_value());
    const Vaddr va = k1G + 5 * k2M + 7 * k4K;
    REQUIRE(c->jump(va).has_value());
    // find_next inside a huge page reports the current address (it never splits).
    auto found = c->find_next(k4K);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(va));
    CHECK(c->query()->level == 3);
    auto r = c->protect_next(k4K, [](PageProperty& prop) { prop.flags = PageFlags::R; });
    REQUIRE(r.has_value());
    CHECK(*r == std::optional(VaRange{va, va + k4K}));
    REQUIRE(c->jump(va).has_value());
    CHECK(c->query()->level == 1);
    REQUIRE(c->jump(k1G).has_value());
    CHECK(c->query()->level == 2);
    CHECK(pt->page_walk(va)->second.flags == PageFlags::R);
    CHECK(pt->page_walk(va + k4K)->second == rw_wb());
    CHECK(pt->page_walk(va - k4K)->first == p + (va - k4K - k1G));
  }

  TEST_CASE_TEMPLATE("map_2m_over_a_range_holding_4k_mappings_is_already_mapped", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = 2 * k2M;
    REQUIRE(map_one(*pt, v + 0x3000, RawItem{k4K * 3, 1, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, v + 0x8000, RawItem{k4K * 8, 1, rw_wb()}).has_value());
    CHECK(error_of(map_one(*pt, v, RawItem{k2M * 5, 2, rw_wb()})) == PageTableError::AlreadyMapped);
    CHECK(pt->page_walk(v + 0x3000)->first == k4K * 3);
    CHECK(pt->page_walk(v + 0x8000)->first == k4K * 8);
    CHECK_FALSE(pt->page_walk(v).has_value());
    // One mapping left in the leaf table still refuses the huge map ...
    CHECK(take_all(*pt, {v + 0x3000, v + 0x4000}).size() == 1);
    CHECK(error_of(map_one(*pt, v, RawItem{k2M * 5, 2, rw_wb()})) == PageTableError::AlreadyMapped);
    CHECK(pt->page_walk(v + 0x8000)->first == k4K * 8);
    // ... but once the leaf table is empty it holds nothing a caller could lose, so the huge
    // map replaces it (the node goes to RCU reclamation like any detached sub-tree).
    CHECK(take_all(*pt, {v + 0x8000, v + 0x9000}).size() == 1);
    REQUIRE(map_one(*pt, v, RawItem{k2M * 5, 2, rw_wb()}).has_value());
    check_huge_intact(*pt, v, k2M * 5, rw_wb());
    VMS_CHECK_PT_INVARIANTS(*pt);
    // Unmapping the huge page gives back exactly one mapped item, no stray table.
    {
      const auto frags = take_all(*pt, {v, v + k2M});
      REQUIRE(frags.size() == 1);
      CHECK(std::get_if<StrayPageTableFrag<C>>(&frags[0]) == nullptr);
    }
    CHECK_FALSE(pt->page_walk(v).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("identical_double_map_is_already_mapped", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    for (PagingLevel level = 1; level <= 3; ++level) {
      CAPTURE(level);
      const Vaddr v = psize<C>(level) * 5;
      const RawItem item{psize<C>(level) * 2, level, rw_wb()};
      REQUIRE(map_one(*pt, v, item).has_value());
      CHECK(error_of(map_one(*pt, v, item)) == PageTableError::AlreadyMapped);
      CHECK(query_at(*pt, v).item == std::optional(item));
    }
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("same_frame_at_two_vas_counts_one_reference_per_pte") {
    auto pt = new_user_pt();
    UFrame frame = alloc_uframe();
    const Paddr pa = frame.paddr();
    CHECK(map_one_user(pt, 0x10000, UserItem::tracked(frame, rw_wb())).has_value());
    CHECK(map_one_user(pt, 0x20000, UserItem::tracked(frame, rw_wb())).has_value());
    CHECK(rc_of(pa) == 1 + 2);  // handles + PTEs
    CHECK(pt.page_walk(0x10008)->first == pa + 8);
    CHECK(pt.page_walk(0x20008)->first == pa + 8);
    CHECK(take_all(pt, {0x10000, 0x11000}).size() == 1);
    rcu_barrier();
    CHECK(rc_of(pa) == 1 + 1);
    CHECK(pt.page_walk(0x20000)->first == pa);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  // ---- case 51: no aliasing above the address width ----

  TEST_CASE("addresses_beyond_the_user_half_are_never_aliased") {
    auto pt = new_user_pt();
    auto guard0 = disable_preempt();
    CHECK(error_of(pt.cursor_mut(guard0, {k2_48, k2_48 + k4K})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt.cursor_mut(guard0, {k2_47, k2_47 + k4K})) == PageTableError::InvalidVaddrRange);
    UFrame frame = alloc_uframe();
    const Paddr pa = frame.paddr();
    REQUIRE(map_one_user(pt, 0, UserItem::tracked(frame, rw_wb())).has_value());
    CHECK(pt.page_walk(0x123)->first == pa + 0x123);
    // Non-canonical addresses whose low 48 bits name the mapping (or, through the shared
    // kernel half, the linear mapping) translate to nothing, as on a real MMU.
    CHECK_FALSE(pt.page_walk(k2_48).has_value());
    CHECK_FALSE(pt.page_walk(k2_48 + 0x123).has_value());
    CHECK_FALSE(pt.page_walk(0xffff'0000'0000'0000).has_value());
    CHECK_FALSE(pt.page_walk(0x0fff'0000'0000'0000).has_value());
    CHECK(pt.page_walk(kLinearMappingBaseVaddr + pa).has_value());
    CHECK_FALSE(pt.page_walk(k2_47 + pa).has_value());
    CHECK_FALSE(pt.page_walk(0x7fff'8000'0000'0000 + pa).has_value());
  }

  TEST_CASE_TEMPLATE("regression_page_walk_aliased_non_canonical_addresses", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, 0, RawItem{k4K * 3, 1, rw_wb()}).has_value());
    const unsigned width = ConstsOf<C>::kAddressWidth;
    CHECK(pt->page_walk(8)->first == k4K * 3 + 8);
    CHECK_FALSE(pt->page_walk(Vaddr{1} << width).has_value());
    CHECK_FALSE(pt->page_walk((Vaddr{1} << width) + 8).has_value());
    CHECK_FALSE(pt->page_walk(Vaddr{1} << 63).has_value());
    // The lowest address of the upper half (sign bit set) is canonical, just unmapped here.
    CHECK_FALSE(pt->page_walk(0 - (Vaddr{1} << (width - 1))).has_value());
  }

  // ---- case 52: whole huge pages, stray sub-trees ----

  TEST_CASE_TEMPLATE("unmapping_a_huge_page_from_its_start_removes_it_whole", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 3, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, 2 * k1G, RawItem{k1G, 3, rw_wb()}).has_value());
    const std::size_t nodes = census(*pt).nodes;
    {
      const auto frags = take_all(*pt, {k2M, 2 * k2M});
      REQUIRE(frags.size() == 1);
      const auto* m = std::get_if<MappedFrag<C>>(&frags[0]);
      REQUIRE(m != nullptr);
      CHECK(m->level == 2);
      CHECK(*m->item == RawItem{k2M * 3, 2, rw_wb()});
    }
    {
      const auto frags = take_all(*pt, {2 * k1G, 3 * k1G});
      REQUIRE(frags.size() == 1);
      const auto* m = std::get_if<MappedFrag<C>>(&frags[0]);
      REQUIRE(m != nullptr);
      CHECK(m->level == 3);
      CHECK(m->va == 2 * k1G);
    }
    CHECK_FALSE(pt->page_walk(k2M).has_value());
    CHECK_FALSE(pt->page_walk(2 * k1G + k2M).has_value());
    // Nothing was split: no node was added.
    const auto after = census(*pt);
    CHECK(after.violations.empty());
    CHECK(after.nodes == nodes);
    CHECK(after.total_leaves() == 0);
  }

  TEST_CASE_TEMPLATE("num_frames_counts_the_leaves_of_detached_leaf_tables", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr base = k1G;
    for (std::uint64_t i = 0; i < 3; ++i) REQUIRE(map_one(*pt, base + i * k4K, RawItem{k4K * i, 1, rw_wb()}).has_value());
    for (std::uint64_t i = 0; i < 2; ++i) {
      REQUIRE(map_one(*pt, base + k2M + i * k4K, RawItem{k4K * i, 1, rw_wb()}).has_value());
    }
    REQUIRE(map_one(*pt, base + 4 * k2M, RawItem{0, 2, rw_wb()}).has_value());
    const auto frags = take_all(*pt, {base, base + k1G});
    REQUIRE(frags.size() == 1);
    const auto* s = std::get_if<StrayPageTableFrag<C>>(&frags[0]);
    REQUIRE(s != nullptr);
    CHECK(s->va == base);
    CHECK(s->len == k1G);
    // Base pages mapped by the sub-tree: 5 level-1 leaves plus the 512 pages of the 2 MiB leaf.
    // OSTD counts only level-1 entries (it would say 5); we count huge leaves too so that
    // VmSpace::CursorMut::unmap reports the same number whether a huge page was removed alone or
    // inside a detached sub-tree (regression unmap_counts_huge_frames_in_detached_subtree).
    CHECK(s->num_frames == 5 + 512);
    CHECK_FALSE(pt->page_walk(base).has_value());
    CHECK_FALSE(pt->page_walk(base + 4 * k2M).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("empty_sub_trees_stay_until_a_covering_unmap_detaches_them") {
    rcu_barrier();
    auto pt = PageTable<HugeTestPtConfig<X86_64Pte>>::empty();
    REQUIRE(pt.has_value());
    const std::uint64_t start = global_frame_allocator().free_bytes();
    REQUIRE(map_one(*pt, k4K, RawItem{k4K, 1, rw_wb()}).has_value());
    CHECK(take_all(*pt, {k4K, 2 * k4K}).size() == 1);
    // The emptied nodes remain (OSTD semantics; verified-pt would prune them).
    CHECK(census(*pt).nodes == 4);
    {
      const auto frags = take_all(*pt, {0, k512G});
      REQUIRE(frags.size() == 1);
      const auto* s = std::get_if<StrayPageTableFrag<HugeTestPtConfig<X86_64Pte>>>(&frags[0]);
      REQUIRE(s != nullptr);
      CHECK(s->num_frames == 0);
      CHECK(s->len == k512G);
    }
    CHECK(census(*pt).nodes == 1);
    rcu_barrier();
    CHECK(global_frame_allocator().free_bytes() == start);
  }

  // ---- case 53 ----

  TEST_CASE_TEMPLATE("page_walk_of_unaligned_addresses_adds_the_offset", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{k4K * 5, 1, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 5, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, k1G, RawItem{k1G * 5, 3, rw_wb()}).has_value());
    CHECK(pt->page_walk(k4K + 3)->first == k4K * 5 + 3);
    CHECK(pt->page_walk(k4K + 4095)->first == k4K * 5 + 4095);
    CHECK(pt->page_walk(k2M + 0x12345)->first == k2M * 5 + 0x12345);
    CHECK(pt->page_walk(k1G + 0x1234567)->first == k1G * 5 + 0x1234567);
    CHECK_FALSE(pt->page_walk(k4K - 1).has_value());
  }

  // ---- case 54 ----

  TEST_CASE("map_refuses_segments_of_unmappable_sizes_and_keeps_them") {
    auto pt = new_user_pt();
    auto seg = FrameAllocOptions().alloc_segment(4);  // 16 KiB: no such page size
    REQUIRE(seg.has_value());
    const Paddr pa = seg->paddr();
    UserItem item = UserItem::tracked(USegment(std::move(*seg)), rw_wb());
    {
      auto guard = disable_preempt();
      auto c = pt.cursor_mut(guard, {0, k2M});
      REQUIRE(c.has_value());
      CHECK(error_of(c->map(std::move(item))) == PageTableError::InvalidItem);
      CHECK(c->virt_addr() == 0);
    }
    // The caller still owns the segment's references.
    for (std::uint64_t i = 0; i < 4; ++i) CHECK(rc_of(pa + i * k4K) == 1);
    CHECK(item.is_tracked());
    CHECK(item.segment().paddr() == pa);
    CHECK_FALSE(pt.page_walk(0).has_value());

    // 2 MiB large but not 2 MiB-aligned.
    auto block = global_frame_allocator().alloc(FrameLayout{2 * k2M, k2M});
    REQUIRE(block.has_value());
    auto whole = Segment<NoMeta>::from_unused(PaRange{*block, *block + 2 * k2M}, [](Paddr) { return NoMeta{}; });
    REQUIRE(whole.has_value());
    auto shifted = whole->slice(k4K, k4K + k2M);
    REQUIRE(shifted.has_value());
    whole = Segment<NoMeta>();  // frees the frames outside the slice
    CHECK(error_of(map_one_user(pt, k2M, UserItem::tracked(USegment(std::move(*shifted)), rw_wb()))) ==
          PageTableError::InvalidItem);
    CHECK(census(pt).total_leaves() == 0);
  }

  // ---- case 55: property round trips ----

  TEST_CASE_TEMPLATE("every_encodable_property_round_trips_at_every_level", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    std::size_t refused = 0;
    for (PagingLevel level = 1; level <= 3; ++level) {
      const Vaddr va = psize<C>(level) * 3;
      const Paddr pa = psize<C>(level) * 6;
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {va, va + psize<C>(level)});
      REQUIRE(c.has_value());
      for (const PageProperty& prop : all_page_properties_all_caches()) {
        CAPTURE(level);
        CAPTURE(prop);
        REQUIRE(c->jump(va).has_value());
        auto m = c->map(RawItem{pa, level, prop});
        if (!P::can_encode(prop)) {
          ++refused;
          CHECK(error_of(m) == PageTableError::InvalidItem);
          CHECK_FALSE(pt->page_walk(va).has_value());
          continue;
        }
        REQUIRE(m.has_value());
        CHECK(pt->page_walk(va + 8) == std::optional(std::pair{pa + 8, prop}));
        REQUIRE(c->jump(va).has_value());
        auto f = c->take_next(psize<C>(level));
        REQUIRE(f.has_value());
        const auto* frag = as_mapped<C>(*f);
        REQUIRE(frag != nullptr);
        CHECK(*frag->item == RawItem{pa, level, prop});
      }
    }
    // Every format refuses something (at least the cache policies or flags it lacks).
    CHECK(refused > 0);
  }

  TEST_CASE("aarch64_execute_and_user_bits_round_trip_through_a_table") {
    using C = HugeTestPtConfig<Aarch64Pte>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const PageProperty rwx_user = PageProperty::new_user(PageFlags::RWX, CachePolicy::Writeback);
    const PageProperty r_kernel = PageProperty::new_with(PageFlags::R, CachePolicy::Writeback, PrivilegedPageFlags::None);
    REQUIRE(map_one(*pt, k4K, RawItem{k4K * 9, 1, rwx_user}).has_value());
    REQUIRE(map_one(*pt, 2 * k4K, RawItem{k4K * 10, 1, r_kernel}).has_value());
    CHECK(pt->page_walk(k4K)->second == rwx_user);
    CHECK(pt->page_walk(2 * k4K)->second == r_kernel);
  }

  // ---- case 56: failures in the middle of a split ----

  TEST_CASE_TEMPLATE("failed_split_allocation_leaves_the_huge_mapping_intact", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr v = 5 * k2M;
    const Paddr p = k2M * 13;
    REQUIRE(map_one(*pt, v, RawItem{p, 2, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {v, v + k2M});
    REQUIRE(c.has_value());
    {
      FailingFrameAllocator failing;
      failing.fail_always();
      REQUIRE(c->jump(v + k4K).has_value());
      CHECK(error_of(c->protect_next(k4K, [](PageProperty& prop) { prop.flags = PageFlags::R; })) ==
            PageTableError::NoMemory);
      CHECK(c->virt_addr() == v + k4K);
      CHECK(error_of(c->take_next(k4K)) == PageTableError::NoMemory);
      CHECK(c->virt_addr() == v + k4K);
      CHECK(failing.failures() == 2);
      check_huge_intact(*pt, v, p, rw_wb());
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK(q->level == 2);
    }
    // With memory the same operations work from the same cursor.
    auto r = c->protect_next(k4K, [](PageProperty& prop) { prop.flags = PageFlags::R; });
    REQUIRE(r.has_value());
    CHECK(*r == std::optional(VaRange{v + k4K, v + 2 * k4K}));
    CHECK(pt->page_walk(v + k4K)->second.flags == PageFlags::R);
    CHECK(pt->page_walk(v)->second == rw_wb());
  }

  TEST_CASE_TEMPLATE("failed_second_split_leaves_every_translation_intact", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Paddr p = k1G * 7;
    REQUIRE(map_one(*pt, k1G, RawItem{p, 3, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {k1G, 2 * k1G});
    REQUIRE(c.has_value());
    const Vaddr va = k1G + 3 * k2M + 5 * k4K;
    {
      FailingFrameAllocator failing;
      failing.fail_after(1);  // 1 GiB -> 2 MiB succeeds, 2 MiB -> 4 KiB fails
      REQUIRE(c->jump(va).has_value());
      CHECK(error_of(c->take_next(k4K)) == PageTableError::NoMemory);
      CHECK(failing.successes() == 1);
    }
    for (Vaddr probe : {k1G, va - k4K, va, va + k4K, k1G + 3 * k2M, 2 * k1G - k4K}) {
      CAPTURE(probe);
      auto w = pt->page_walk(probe);
      REQUIRE(w.has_value());
      CHECK(w->first == p + (probe - k1G));
      CHECK(w->second == rw_wb());
    }
    // The first split happened: the 1 GiB page is now 512 pages of 2 MiB.
    REQUIRE(c->jump(va).has_value());
    CHECK(c->query()->level == 2);
  }

  TEST_CASE_TEMPLATE("failed_node_allocation_in_map_maps_nothing", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, {0, k1G});  // rooted at the level-3 node
    REQUIRE(c.has_value());
    {
      FailingFrameAllocator failing;
      failing.fail_after(1);  // the level-2 node is created, the leaf table is not
      CHECK(error_of(c->map(RawItem{k4K * 3, 1, rw_wb()})) == PageTableError::NoMemory);
      CHECK(c->virt_addr() == 0);
      CHECK_FALSE(pt->page_walk(0).has_value());
    }
    REQUIRE(c->map(RawItem{k4K * 3, 1, rw_wb()}).has_value());
    CHECK(pt->page_walk(0)->first == k4K * 3);
  }

  TEST_CASE_TEMPLATE("failed_allocation_during_cursor_creation_leaves_no_lock_held", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    const VaRange range{5 * k1G + 7 * k4K, 5 * k1G + 8 * k4K};
    // Creation needs one new node per level below the root; fail each allocation in turn.
    for (std::uint64_t budget = 0; budget + 1 < kNrLevelsOf<C>; ++budget) {
      CAPTURE(budget);
      auto pt = PageTable<C>::empty();
      REQUIRE(pt.has_value());
      {
        FailingFrameAllocator failing;
        failing.fail_after(budget);
        auto guard = disable_preempt();
        CHECK(error_of(pt->cursor_mut(guard, range)) == PageTableError::NoMemory);
        CHECK(failing.successes() == budget);
      }
      // The nodes made before the failure stay (empty), and none is left locked ...
      const auto c = census(*pt);
      CHECK(c.violations.empty());
      CHECK(c.nodes == 1 + budget);
      // ... which try_cursor_mut also shows: a leaked lock of ours would be WouldDeadlock.
      auto guard = disable_preempt();
      auto cursor = pt->try_cursor_mut(guard, range);
      REQUIRE(cursor.has_value());
      CHECK(cursor->guard_level() == 1);
    }
  }

  // ---- OSTD issue #3731 ----

  TEST_CASE_TEMPLATE("issue_3731_cursor_over_exactly_one_huge_entry_maps_the_huge_item", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    {
      auto c = pt->cursor_mut(guard, {k2M, 2 * k2M});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      REQUIRE(c->map(RawItem{k2M * 8, 2, rw_wb()}).has_value());
      CHECK(c->virt_addr() == 2 * k2M);
    }
    {
      auto c = pt->cursor_mut(guard, {k1G, 2 * k1G});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 3);
      REQUIRE(c->map(RawItem{k1G * 8, 3, rw_wb()}).has_value());
    }
    CHECK(pt->page_walk(k2M + 0x1234)->first == k2M * 8 + 0x1234);
    CHECK(pt->page_walk(k1G + 0x123456)->first == k1G * 8 + 0x123456);
    {
      // The same exact ranges take them back whole.
      auto c = pt->cursor_mut(guard, {k2M, 2 * k2M});
      REQUIRE(c.has_value());
      auto f = c->take_next(k2M);
      REQUIRE(f.has_value());
      REQUIRE(as_mapped<C>(*f) != nullptr);
      CHECK(as_mapped<C>(*f)->level == 2);
    }
  }

  TEST_CASE("issue_3731_user_cursor_over_exactly_2m_maps_a_huge_segment") {
    auto pt = new_user_pt();
    USegment seg = alloc_huge_segment();
    const Paddr pa = seg.paddr();
    {
      auto guard = disable_preempt();
      auto c = pt.cursor_mut(guard, {k2M, 2 * k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map(UserItem::tracked(seg, rw_wb())).has_value());
      REQUIRE(c->jump(k2M).has_value());
      auto q = c->query();
      REQUIRE(q.has_value());
      REQUIRE(q->item.has_value());
      CHECK(q->item->tracked);
      CHECK(q->item->level == 2);
      CHECK(q->item->paddr == pa);
      CHECK(q->range == VaRange{k2M, 2 * k2M});
    }
    CHECK(pt.page_walk(k2M + 0x5123)->first == pa + 0x5123);
    for (std::uint64_t i = 0; i < 512; ++i) CHECK(rc_of(pa + i * k4K) == 2);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  // ---- query ranges after cursor creation (OSTD's vmspace_creation) ----

  TEST_CASE("query_reports_the_absent_entry_at_the_level_the_cursor_reached") {
    struct Case {
      VaRange range;
      PagingLevel guard;
      VaRange queried;
    };
    // Creation walks (creating nodes) down to the deepest node covering the range in two or
    // more entries, or exactly one entry (#3731); an absent entry there is reported whole.
    for (const Case& k : {Case{{0, k4K}, 1, {0, k4K}}, Case{{0, 2 * k4K}, 1, {0, k4K}},
                          Case{{0, k2M}, 2, {0, k2M}}, Case{{0, 2 * k2M}, 2, {0, k2M}},
                          Case{{0, k1G}, 3, {0, k1G}}, Case{{0, k512G}, 4, {0, k512G}},
                          Case{{0, k2_47}, 4, {0, k512G}}}) {
      CAPTURE(k.range);
      auto pt = new_user_pt();
      auto guard = disable_preempt();
      auto c = pt.cursor(guard, k.range);
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == k.guard);
      auto q = c->query();
      REQUIRE(q.has_value());
      CHECK(q->range == k.queried);
      CHECK(q->level == k.guard);
      CHECK_FALSE(q->item.has_value());
    }
  }

  // ---- find_next and empty nodes ----

  TEST_CASE_TEMPLATE("find_next_skips_empty_nodes", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    // Leave empty nodes behind at several levels.
    for (Vaddr v : {Vaddr{0}, k2M * 3, k1G + k4K * 5, 2 * k1G + k2M}) {
      REQUIRE(map_one(*pt, v, RawItem{k4K, 1, rw_wb()}).has_value());
      CHECK(take_all(*pt, {v, v + k4K}).size() == 1);
    }
    const Vaddr end = test_range_end<C>();
    auto guard = disable_preempt();
    {
      auto c = pt->cursor(guard, {0, end});
      REQUIRE(c.has_value());
      auto found = c->find_next(end);
      REQUIRE(found.has_value());
      CHECK_FALSE(found->has_value());
      CHECK(c->virt_addr() == end);
    }
    const Vaddr target = 3 * k1G + 2 * k4K;
    REQUIRE(map_one(*pt, target, RawItem{k4K * 42, 1, rw_wb()}).has_value());
    auto c = pt->cursor(guard, {0, end});
    REQUIRE(c.has_value());
    auto found = c->find_next(end);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(target));
    CHECK(c->virt_addr() == target);
    CHECK(c->query()->item->paddr == k4K * 42);
  }

  // ---- take_next detaching sub-trees ----

  TEST_CASE("take_next_detaches_a_covered_sub_tree_marks_it_stray_and_frees_after_a_grace_period") {
    auto pt = new_user_pt();
    std::vector<UFrame> frames;
    for (std::uint64_t i = 0; i < 4; ++i) {
      frames.push_back(alloc_uframe());
      const Vaddr va = (i < 2 ? k4K * (i + 1) : k2M + k4K * i);
      REQUIRE(map_one_user(pt, va, UserItem::tracked(frames.back(), rw_wb())).has_value());
    }
    for (const UFrame& f : frames) CHECK(f.reference_count() == 2);
    std::vector<Paddr> stray_nodes;
    {
      auto guard = disable_preempt();
      {
        auto c = pt.cursor_mut(guard, {0, k1G});
        REQUIRE(c.has_value());
        auto f = c->take_next(k1G);
        REQUIRE(f.has_value());
        const auto* s = as_stray<UserPtConfig>(*f);
        REQUIRE(s != nullptr);
        CHECK(s->va == 0);
        CHECK(s->len == k1G);
        CHECK(s->num_frames == 4);
        // The detached root and every node below it are marked stray and unlocked.
        const Paddr root = s->node->paddr();
        stray_nodes.push_back(root);
        const detail::NodeView<UserPtConfig> l2{root};
        CHECK(l2.meta().level == 2);
        for (std::size_t i = 0; i < 512; ++i) {
          const std::uint64_t raw = l2.load_acquire(i);
          if (detail::is_pt_entry<UserPtConfig>(raw, 2)) stray_nodes.push_back(UserPtConfig::Pte::paddr(raw, 2));
        }
        CHECK(stray_nodes.size() == 3);
        for (Paddr n : stray_nodes) {
          CHECK(detail::NodeView<UserPtConfig>{n}.meta().stray);
          CHECK(lock_word<UserPtConfig>(n) == 0);
        }
        CHECK(c->virt_addr() == k1G);
        CHECK_FALSE(pt.page_walk(k4K).has_value());
        // The fragment dies here, inside our read section.
      }
      // Still inside the section: nothing may have been freed.
      for (const UFrame& f : frames) CHECK(f.reference_count() == 2);
      for (Paddr n : stray_nodes) CHECK(rc_of(n) == 1);
    }
    rcu_barrier();
    for (const UFrame& f : frames) CHECK(f.reference_count() == 1);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("kernel_tables_never_detach_top_level_nodes") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr k = kKernelBaseVaddr;
    const auto prop = PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    const Paddr shared = node_at(*kernel, k, 3);
    REQUIRE(shared != 0);
    auto map_k = [&](Vaddr va, Paddr pa, PagingLevel level) {
      auto guard = disable_preempt();
      auto c = kernel->cursor_mut(guard, {va, va + psize<KernelPtConfig>(level)});
      REQUIRE(c.has_value());
      REQUIRE(c->map(KernelItem::untracked(pa, level, prop)).has_value());
    };
    map_k(k + k4K, k4K * 3, 1);
    map_k(k + k1G + k2M, k2M * 3, 2);
    map_k(k + k512G + k4K, k4K * 4, 1);
    {
      auto guard = disable_preempt();
      auto c = kernel->cursor_mut(guard, {k, k + 2 * k512G});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 4);
      std::vector<std::pair<Vaddr, std::uint64_t>> strays;
      for (;;) {
        auto f = c->take_next(k + 2 * k512G - c->virt_addr());
        REQUIRE(f.has_value());
        if (!f->has_value()) break;
        const auto* s = as_stray<KernelPtConfig>(*f);
        REQUIRE(s != nullptr);
        strays.emplace_back(s->va, s->len);
      }
      // Level-2 nodes go; the shared level-3 nodes under the root stay.
      CHECK(strays == std::vector<std::pair<Vaddr, std::uint64_t>>{
                          {k, k1G}, {k + k1G, k1G}, {k + k512G, k1G}});
    }
    CHECK(node_at(*kernel, k, 3) == shared);
    CHECK_FALSE(kernel->page_walk(k + k4K).has_value());
    const auto c = census(*kernel);
    CHECK(c.violations.empty());
    CHECK(c.nodes == 257);
  }

  TEST_CASE("kernel_style_test_config_keeps_its_top_level_nodes") {
    using C = TestPtConfig<X86_64Pte, 3, /*CanUnmap=*/false>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{k4K, 1, rw_wb()}).has_value());
    const Paddr level3 = node_at(*pt, 0, 3);
    const auto frags = take_all(*pt, {0, k512G});
    REQUIRE(frags.size() == 1);
    const auto* s = std::get_if<StrayPageTableFrag<C>>(&frags[0]);
    REQUIRE(s != nullptr);
    CHECK(s->len == k1G);
    CHECK(node_at(*pt, 0, 3) == level3);
  }

  // ---- reference counts with the user configuration ----

  TEST_CASE("mapping_moves_the_handle_reference_into_the_pte_and_take_next_returns_it") {
    auto pt = new_user_pt();
    UFrame frame = alloc_uframe();
    const Paddr pa = frame.paddr();
    CHECK(frame.reference_count() == 1);
    REQUIRE(map_one_user(pt, 0x40000, UserItem::tracked(UFrame(frame), rw_wb())).has_value());
    CHECK(frame.reference_count() == 2);  // our handle + the PTE's
    {
      auto guard = disable_preempt();
      std::optional<PageTableFrag<UserPtConfig>> frag;
      {
        auto c = pt.cursor_mut(guard, {0x40000, 0x41000});
        REQUIRE(c.has_value());
        auto f = c->take_next(k4K);
        REQUIRE(f.has_value());
        REQUIRE(f->has_value());
        frag = std::move(*f);
      }
      CHECK(frame.reference_count() == 2);  // the PTE's reference is in the fragment now
      const auto* m = as_mapped<UserPtConfig>(frag);
      REQUIRE(m != nullptr);
      CHECK(m->item->is_tracked());
      CHECK(m->item->paddr() == pa);
      CHECK(m->item->segment().nframes() == 1);
      CHECK(m->item->prop() == rw_wb());
      frag.reset();
      CHECK(frame.reference_count() == 2);  // deferred past our read section
    }
    rcu_barrier();
    CHECK(frame.reference_count() == 1);
  }

  TEST_CASE("a_split_huge_tracked_mapping_holds_one_reference_per_frame") {
    auto pt = new_user_pt();
    USegment seg = alloc_huge_segment();
    const Paddr pa = seg.paddr();
    REQUIRE(map_one_user(pt, 4 * k2M, UserItem::tracked(seg, rw_wb())).has_value());
    for (std::uint64_t i = 0; i < 512; ++i) CHECK(rc_of(pa + i * k4K) == 2);
    CHECK(take_all(pt, {4 * k2M + 7 * k4K, 4 * k2M + 9 * k4K}).size() == 2);
    rcu_barrier();
    for (std::uint64_t i = 0; i < 512; ++i) {
      CAPTURE(i);
      CHECK(rc_of(pa + i * k4K) == (i == 7 || i == 8 ? 1u : 2u));
    }
    CHECK(pt.page_walk(4 * k2M + 6 * k4K)->first == pa + 6 * k4K);
    VMS_CHECK_PT_INVARIANTS(pt);
    // Dropping the table drops every piece at once.
    pt = new_user_pt();
    for (std::uint64_t i = 0; i < 512; ++i) CHECK(rc_of(pa + i * k4K) == 1);
  }

  TEST_CASE("dropping_a_table_frees_all_its_frames_and_nodes") {
    kernel_page_table();  // boot and build the shared half first
    rcu_barrier();
    const std::uint64_t start = global_frame_allocator().free_bytes();
    {
      auto pt = new_user_pt();
      for (std::uint64_t i = 0; i < 64; ++i) {
        REQUIRE(map_one_user(pt, k1G * (i % 4) + k4K * i, UserItem::tracked(alloc_uframe(), rw_wb())).has_value());
      }
      REQUIRE(map_one_user(pt, 8 * k2M, UserItem::tracked(alloc_huge_segment(), rw_wb())).has_value());
      REQUIRE(map_one_user(pt, k512G * 3, UserItem::untracked(k4K * 5, 1, rw_wb())).has_value());
      // Split the huge page and detach a sub-tree; the fragments go through RCU.
      CHECK(take_all(pt, {8 * k2M + k4K, 8 * k2M + 2 * k4K}).size() == 1);
      CHECK(take_all(pt, {k1G, 2 * k1G}).size() == 1);
      CHECK(global_frame_allocator().free_bytes() < start);
      VMS_CHECK_PT_INVARIANTS(pt);
    }
    rcu_barrier();
    CHECK(global_frame_allocator().free_bytes() == start);
  }

  // ---- protect_next arguments ----

  TEST_CASE("protect_next_refuses_an_unencodable_property_before_splitting") {
    using C = HugeTestPtConfig<X86_64Pte>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 3, 2, rw_wb()}).has_value());
    const std::size_t nodes = census(*pt).nodes;
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {k2M, 2 * k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->jump(k2M + k4K).has_value());
      // x86 leaf entries cannot encode write-protected memory.
      CHECK(error_of(c->protect_next(k4K, [](PageProperty& p) { p.cache = CachePolicy::WriteProtected; })) ==
            PageTableError::InvalidItem);
      CHECK(c->virt_addr() == k2M + k4K);
    }
    const auto after = census(*pt);
    CHECK(after.nodes == nodes);  // not split
    CHECK(after.leaves[2] == 1);
    check_huge_intact(*pt, k2M, k2M * 3, rw_wb());
  }

  TEST_CASE("protect_next_cannot_change_what_avail1_marks") {
    auto pt = new_user_pt();
    UFrame frame = alloc_uframe();
    REQUIRE(map_one_user(pt, 0x10000, UserItem::tracked(frame, rw_wb())).has_value());
    REQUIRE(map_one_user(pt, 0x11000, UserItem::untracked(k4K * 9, 1, rw_wb())).has_value());
    // AVAIL1 marks untracked items in user tables: setting it on a tracked mapping, or
    // clearing it on an untracked one, would make the table drop references it does not own.
    protect_range(pt, {0x10000, 0x12000}, [](PageProperty& p) {
      p.priv_flags ^= PrivilegedPageFlags::AVAIL1;
      p.flags = PageFlags::R;
    });
    auto guard = disable_preempt();
    {
      auto c = pt.cursor(guard, {0x10000, 0x12000});
      REQUIRE(c.has_value());
      auto q = c->query();
      REQUIRE(q->item.has_value());
      CHECK(q->item->tracked);
      CHECK(q->item->prop == PageProperty::new_user(PageFlags::R, CachePolicy::Writeback));
      REQUIRE(c->jump(0x11000).has_value());
      q = c->query();
      REQUIRE(q->item.has_value());
      CHECK_FALSE(q->item->tracked);
      CHECK(q->item->paddr == k4K * 9);
    }
    CHECK(frame.reference_count() == 2);
  }

  // ---- the kernel configuration ----

  TEST_CASE("kernel_tracked_items_keep_their_frame_and_hide_avail1") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    auto f = FrameAllocOptions().alloc_frame();
    REQUIRE(f.has_value());
    DynFrame frame(std::move(*f));
    const Vaddr va = kKernelBaseVaddr + 0x7000;
    const auto prop = PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    auto guard = disable_preempt();
    {
      auto c = kernel->cursor_mut(guard, {va, va + k4K});
      REQUIRE(c.has_value());
      REQUIRE(c->map(KernelItem::tracked(frame, prop)).has_value());
      CHECK(frame.reference_count() == 2);
      REQUIRE(c->jump(va).has_value());
      auto q = c->query();
      REQUIRE(q->item.has_value());
      CHECK(q->item->tracked);
      CHECK(q->item->prop == prop);  // AVAIL1 (the tracked marker) is not part of the property
      auto r = c->protect_next(k4K, [](PageProperty& p) { p.flags = PageFlags::R; });
      REQUIRE(r.has_value());
      REQUIRE(c->jump(va).has_value());
      CHECK(c->query()->item->tracked);
      auto taken = c->take_next(k4K);
      REQUIRE(taken.has_value());
      const auto* m = as_mapped<KernelPtConfig>(*taken);
      REQUIRE(m != nullptr);
      CHECK(m->item->is_tracked());
      CHECK(m->item->frame() == frame);
      CHECK_FALSE(has(m->item->prop().priv_flags, PrivilegedPageFlags::AVAIL1));
    }
    CHECK(frame.reference_count() == 2);
  }

  TEST_CASE("kernel_tracked_frame_is_released_after_unmap_and_a_grace_period") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    auto f = FrameAllocOptions().alloc_frame();
    REQUIRE(f.has_value());
    DynFrame frame(std::move(*f));
    const Vaddr va = kKernelBaseVaddr + 0x9000;
    {
      auto guard = disable_preempt();
      auto c = kernel->cursor_mut(guard, {va, va + k4K});
      REQUIRE(c.has_value());
      REQUIRE(c->map(KernelItem::tracked(frame, rw_wb())).has_value());
    }
    CHECK(frame.reference_count() == 2);
    CHECK(take_all(*kernel, {va, va + k4K}).size() == 1);
    rcu_barrier();
    CHECK(frame.reference_count() == 1);
  }

  TEST_CASE("new_kernel_and_user_tables_out_of_memory_free_what_they_made") {
    kernel_page_table();
    rcu_barrier();
    const std::uint64_t start = global_frame_allocator().free_bytes();
    for (std::uint64_t budget : {0u, 1u, 2u, 100u, 256u}) {
      CAPTURE(budget);
      FailingFrameAllocator failing;
      failing.fail_after(budget);
      CHECK(error_of(new_kernel_page_table()) == PageTableError::NoMemory);
    }
    {
      FailingFrameAllocator failing;
      failing.fail_always();
      CHECK(error_of(create_user_page_table(kernel_page_table())) == PageTableError::NoMemory);
    }
    CHECK(global_frame_allocator().free_bytes() == start);
  }

  TEST_CASE("map_untracked_largest_uses_the_largest_aligned_pages") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr va = kKernelBaseVaddr + k1G - k2M - 2 * k4K;
    const Paddr pa = 7 * k1G - k2M - 2 * k4K;  // same offset modulo 2 MiB as va
    const std::uint64_t len = 2 * k4K + 2 * k2M + k4K;
    {
      auto guard = disable_preempt();
      auto c = kernel->cursor_mut(guard, {va, va + len});
      REQUIRE(c.has_value());
      REQUIRE(map_untracked_largest(*c, pa, len, rw_wb()).has_value());
      CHECK(c->virt_addr() == va + len);
    }
    struct Expect {
      Vaddr at;
      PagingLevel level;
    };
    for (const Expect& e : {Expect{va, 1}, Expect{va + k4K, 1}, Expect{va + 2 * k4K, 2},
                            Expect{va + 2 * k4K + k2M, 2}, Expect{va + 2 * k4K + 2 * k2M, 1}}) {
      CAPTURE(e.at);
      const auto q = query_at(*kernel, e.at);
      REQUIRE(q.item.has_value());
      CHECK(q.item->level == e.level);
      CHECK(q.item->paddr == pa + (e.at - va));
      CHECK_FALSE(q.item->tracked);
    }
    CHECK_FALSE(kernel->page_walk(va + len).has_value());
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }

  TEST_CASE("taking_a_huge_tracked_mapping_whole_releases_all_its_frames") {
    auto pt = new_user_pt();
    USegment seg = alloc_huge_segment();
    const Paddr pa = seg.paddr();
    REQUIRE(map_one_user(pt, 6 * k2M, UserItem::tracked(seg, rw_wb())).has_value());
    {
      const auto frags = take_all(pt, {6 * k2M, 7 * k2M});
      REQUIRE(frags.size() == 1);
      const auto* m = std::get_if<MappedFrag<UserPtConfig>>(&frags[0]);
      REQUIRE(m != nullptr);
      CHECK(m->level == 2);
      CHECK(m->item->segment().nframes() == 512);
      CHECK(m->item->paddr() == pa);
    }
    rcu_barrier();
    for (std::uint64_t i = 0; i < 512; ++i) CHECK(rc_of(pa + i * k4K) == 1);
    // And a huge mapping still in place when the table drops.
    REQUIRE(map_one_user(pt, 6 * k2M, UserItem::tracked(seg, rw_wb())).has_value());
    CHECK(rc_of(pa) == 2);
    pt = new_user_pt();
    for (std::uint64_t i = 0; i < 512; ++i) CHECK(rc_of(pa + i * k4K) == 1);
  }

  TEST_CASE_TEMPLATE("issue_3731_exact_2m_range_inside_a_1g_page_takes_a_2m_piece", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k1G, RawItem{k1G * 6, 3, rw_wb()}).has_value());
    const VaRange piece{k1G + 3 * k2M, k1G + 4 * k2M};
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, piece);
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 3);  // the 1 GiB leaf above the range roots the cursor
      CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) == PageTableError::AlreadyMapped);
      auto f = c->take_next(k2M);
      REQUIRE(f.has_value());
      const auto* m = as_mapped<C>(*f);
      REQUIRE(m != nullptr);
      CHECK(m->level == 2);
      CHECK(*m->item == RawItem{k1G * 6 + 3 * k2M, 2, rw_wb()});
      REQUIRE(c->jump(piece.start).has_value());
      REQUIRE(c->map(RawItem{k2M * 5, 2, rw_wb()}).has_value());
    }
    CHECK(pt->page_walk(piece.start + 8)->first == k2M * 5 + 8);
    CHECK(pt->page_walk(piece.start - k4K)->first == k1G * 6 + 3 * k2M - k4K);
    CHECK(pt->page_walk(piece.end)->first == k1G * 6 + 4 * k2M);
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("regression_take_next_fragments_need_no_parenthesised_aggregate_init") {
    // take_next built its fragments with in_place construction of aggregates, which needs
    // C++20 parenthesised aggregate initialisation; clang 14 lacks it, so no translation unit
    // using take_next compiled with clang. This instantiates it for the three kinds of config.
    auto user = new_user_pt();
    REQUIRE(map_one_user(user, k4K, UserItem::untracked(k4K * 3, 1, rw_wb())).has_value());
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    auto test = PageTable<TestPtConfig<Aarch64Pte>>::empty();
    REQUIRE(test.has_value());
    REQUIRE(map_one(*test, k4K, RawItem{k4K * 3, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    {
      auto c = user.cursor_mut(guard, {0, k1G});
      REQUIRE(c.has_value());
      auto f = c->take_next(k1G);
      REQUIRE(f.has_value());
      REQUIRE(as_stray<UserPtConfig>(*f) != nullptr);
      CHECK(as_stray<UserPtConfig>(*f)->num_frames == 1);
    }
    {
      auto c = kernel->cursor_mut(guard, {kKernelBaseVaddr, kKernelBaseVaddr + k4K});
      REQUIRE(c.has_value());
      auto f = c->take_next(k4K);
      REQUIRE(f.has_value());
      CHECK_FALSE(f->has_value());
    }
    {
      auto c = test->cursor_mut(guard, {k4K, 2 * k4K});
      REQUIRE(c.has_value());
      auto f = c->take_next(k4K);
      REQUIRE(f.has_value());
      REQUIRE(as_mapped<TestPtConfig<Aarch64Pte>>(*f) != nullptr);
      CHECK(*as_mapped<TestPtConfig<Aarch64Pte>>(*f)->item == RawItem{k4K * 3, 1, rw_wb()});
    }
  }
}
