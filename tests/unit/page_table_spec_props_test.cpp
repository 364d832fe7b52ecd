// Page-table edge cases (pt_spec_util.hpp): property round trips, failures in the middle of a
// split (docs/spec_cases.md cases 55-56) and OSTD issue #3731.
#include "pt_spec_util.hpp"

TEST_SUITE("unit") {
  // ---- case 55: property round trips ----

  TEST_CASE_TEMPLATE("every_encodable_property_round_trips_at_every_level", P,
                     VMS_ALL_PTE_FORMATS) {
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
    const PageProperty r_kernel =
        PageProperty::new_with(PageFlags::R, CachePolicy::Writeback, PrivilegedPageFlags::None);
    REQUIRE(map_one(*pt, k4K, RawItem{k4K * 9, 1, rwx_user}).has_value());
    REQUIRE(map_one(*pt, 2 * k4K, RawItem{k4K * 10, 1, r_kernel}).has_value());
    CHECK(pt->page_walk(k4K)->second == rwx_user);
    CHECK(pt->page_walk(2 * k4K)->second == r_kernel);
  }

  // ---- case 56: failures in the middle of a split ----

  TEST_CASE_TEMPLATE("failed_split_allocation_leaves_the_huge_mapping_intact", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("failed_second_split_leaves_every_translation_intact", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("failed_allocation_during_cursor_creation_leaves_no_lock_held", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("issue_3731_cursor_over_exactly_one_huge_entry_maps_the_huge_item", P,
                     VMS_ALL_PTE_FORMATS) {
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
}
