// Page-table edge cases (pt_spec_util.hpp): cursor ranges, jumps, lengths and map arguments
// (docs/spec_cases.md cases 38-41 and 50).
#include "pt_spec_util.hpp"

TEST_SUITE("unit") {
  // ---- case 38: cursor ranges ----

  TEST_CASE("cursor_rejects_empty_reversed_and_end_zero_ranges") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    for (VaRange r :
         {VaRange{0, 0}, VaRange{0x1000, 0}, VaRange{0x1000, 0x1000}, VaRange{0x2000, 0x1000},
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

  TEST_CASE_TEMPLATE("jump_back_into_a_split_huge_page_and_out_of_the_leaf_table", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("map_refuses_items_that_do_not_fit_and_changes_nothing", P,
                     VMS_ALL_PTE_FORMATS) {
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
    CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) ==
          PageTableError::InvalidItem);  // beyond the end
    REQUIRE(c->jump(k4K).has_value());
    CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) ==
          PageTableError::InvalidItem);  // va misaligned
    REQUIRE(c->jump(0).has_value());
    CHECK(error_of(c->map(RawItem{k4K, 2, rw_wb()})) ==
          PageTableError::InvalidItem);  // pa misaligned
    CHECK(error_of(c->map(RawItem{0, 3, rw_wb()})) ==
          PageTableError::InvalidItem);  // above the guard
    CHECK(error_of(c->map(RawItem{0, 4, rw_wb()})) ==
          PageTableError::InvalidItem);  // above Highest
    CHECK(error_of(c->map(RawItem{0, 0, rw_wb()})) ==
          PageTableError::InvalidItem);  // no such level
    CHECK(error_of(c->map(RawItem{0, 1, undefined_flag})) == PageTableError::InvalidItem);
    CHECK(error_of(c->map(RawItem{P::kPaddrLimit, 1, rw_wb()})) == PageTableError::InvalidItem);
    CHECK(error_of(c->map(RawItem{P::kPaddrLimit - k4K, 2, rw_wb()})) ==
          PageTableError::InvalidItem);
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
}
