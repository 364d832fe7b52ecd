// OSTD's page-table scenarios (pt_scenario_util.hpp): overlapping_mappings and navigation.
#include "pt_scenario_util.hpp"

TEST_SUITE("unit") {
  // ---- overlapping_mappings ----

  TEST_CASE_TEMPLATE("overlapping_mappings", P, VMS_ALL_PTE_FORMATS) {
    // OSTD: should_panic "mapping over an already mapped page". Here: AlreadyMapped, and the
    // first mapping stays.
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const RawItem first{k4K * 100, 1, rw_wb()};
    REQUIRE(map_one(*pt, k4K, first).has_value());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {k4K, k4K * 3});
      REQUIRE(c.has_value());
      CHECK(error_of(c->map(RawItem{k4K * 200, 1, rw_wb()})) == PageTableError::AlreadyMapped);
      CHECK(c->virt_addr() == k4K);
      auto q = c->query();
      REQUIRE(q.has_value());
      REQUIRE(q->item.has_value());
      CHECK(*q->item == first);
    }
    auto walked = pt->page_walk(k4K + 10);
    REQUIRE(walked.has_value());
    CHECK(walked->first == k4K * 100 + 10);
    CHECK_FALSE(pt->page_walk(2 * k4K).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("unaligned_map", P, VMS_ALL_PTE_FORMATS) {
    // OSTD: should_panic "cursor virtual address not aligned for mapping" (a level-2 item at
    // 4 KiB). Here: InvalidItem, nothing mapped, the cursor still usable.
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    {
      auto c = pt->cursor_mut(guard, {k4K, k2M + k4K});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      CHECK(error_of(c->map(RawItem{0, 2, rw_wb()})) == PageTableError::InvalidItem);
      CHECK(c->virt_addr() == k4K);
      CHECK_FALSE(pt->page_walk(k4K).has_value());
      REQUIRE(c->map(RawItem{k4K * 100, 1, rw_wb()}).has_value());
    }
    CHECK(pt->page_walk(k4K)->first == k4K * 100);
    // OSTD's older variant: an unaligned cursor range never gets that far.
    CHECK(error_of(pt->cursor_mut(guard, {k4K + 512, 2 * k4K + 512})) ==
          PageTableError::UnalignedVaddr);
  }

  // ---- navigation ----

  TEST_CASE("jump") {
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    CHECK(c->virt_addr() == 0);
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());

    REQUIRE(c->jump(kFirstMapAddr).has_value());
    CHECK(c->virt_addr() == kFirstMapAddr);
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK(q->range == VaRange{kFirstMapAddr, kFirstMapAddr + k4K});
    REQUIRE(q->item.has_value());
    CHECK(q->item->tracked);
    CHECK(q->item->paddr == t.first.paddr());
    CHECK(q->item->level == 1);
    CHECK(q->item->prop == rw_wb());
  }

  TEST_CASE_TEMPLATE("jump_from_end_and_query_huge_middle", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0, 2 * k2M};  // locks at level 2
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    CHECK(c->guard_level() == 2);
    REQUIRE(c->jump(range.end - k2M).has_value());
    REQUIRE(c->map(RawItem{0, 2, rw_wb()}).has_value());
    // The cursor is at the end of its range.
    CHECK(c->virt_addr() == range.end);
    CHECK(error_of(c->query()) == PageTableError::InvalidVaddr);
    // Jump from the end.
    REQUIRE(c->jump(range.start).has_value());
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());
    // Query in the middle of the huge page.
    REQUIRE(c->jump(range.end - k2M / 2).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK(q->range == VaRange{range.end - k2M, range.end});
    REQUIRE(q->item.has_value());
    CHECK(*q->item == RawItem{0, 2, rw_wb()});
  }

  TEST_CASE_TEMPLATE("jump_from_guard_level_end", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k2M - k4K, k2M};
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    CHECK(c->guard_level() == 1);
    REQUIRE(c->map(RawItem{0, 1, rw_wb()}).has_value());
    CHECK(c->virt_addr() == range.end);
    REQUIRE(c->jump(range.start).has_value());
    CHECK(c->virt_addr() == range.start);
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(q->item->paddr == 0);
  }

  TEST_CASE("jump_near_address_space_end") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr start = 0 - k2M;  // [-2 MiB, -4 KiB): the very top of the address space
    const VaRange range{start, 0 - k4K};
    const auto prop =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    auto guard = disable_preempt();
    auto c = kernel->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    REQUIRE(c->map(KernelItem::untracked(0x7000, 1, prop)).has_value());
    CHECK(c->virt_addr() == start + k4K);
    REQUIRE(c->jump(0 - 0x100000).has_value());
    CHECK(c->virt_addr() == 0 - 0x100000);
    REQUIRE(c->jump(0 - 2 * k4K).has_value());
    CHECK(c->virt_addr() == 0 - 2 * k4K);
    REQUIRE(c->query().has_value());
    CHECK_FALSE(c->query()->item.has_value());
    CHECK(error_of(c->jump(0 - k4K)) == PageTableError::InvalidVaddr);
    REQUIRE(c->jump(start).has_value());
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->item.has_value());
    CHECK(q->item->paddr == 0x7000);
    CHECK(q->range == VaRange{start, start + k4K});
  }

  TEST_CASE("find_next") {
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    CHECK(c->virt_addr() == 0);
    auto found = c->find_next(kFirstMapAddr + k4K);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kFirstMapAddr));
    CHECK(c->virt_addr() == kFirstMapAddr);

    REQUIRE(c->jump(kFirstMapAddr + k4K).has_value());
    found = c->find_next(kSecondMapAddr - kFirstMapAddr);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kSecondMapAddr));
    CHECK(c->virt_addr() == kSecondMapAddr);
  }

  TEST_CASE_TEMPLATE("find_next_keeps_va_around_barrier", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    // A mapping outside the cursor's range, in the same level-2 node.
    REQUIRE(map_one(*pt, 2 * k2M, RawItem{k4K * 9, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor(guard, {k2M - k4K, k2M + k4K});
    REQUIRE(c.has_value());
    auto found = c->find_next(2 * k4K);
    REQUIRE(found.has_value());
    CHECK_FALSE(found->has_value());
    // Clamped to the range end, although the absent entry there spans up to 4 MiB.
    CHECK(c->virt_addr() == k2M + k4K);
  }

  TEST_CASE("find_next_rejects_overflowing_len") {
    // OSTD: should_panic "len exceeds remaining cursor range". Here: LenOutOfRange, and the
    // cursor does not move.
    auto t = setup_page_table_with_two_frames();
    auto guard = disable_preempt();
    auto c = t.pt.cursor_mut(guard, {0, kSecondMapAddr + k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->jump(kSecondMapAddr).has_value());
    CHECK(error_of(c->find_next(0 - kSecondMapAddr)) == PageTableError::LenOutOfRange);
    CHECK(c->virt_addr() == kSecondMapAddr);
    auto found = c->find_next(k4K);
    REQUIRE(found.has_value());
    CHECK(*found == std::optional<Vaddr>(kSecondMapAddr));
  }
}
