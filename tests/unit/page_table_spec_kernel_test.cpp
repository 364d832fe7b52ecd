// Page-table edge cases (pt_spec_util.hpp): the kernel configuration.
#include "pt_spec_util.hpp"

TEST_SUITE("unit") {
  // ---- the kernel configuration ----

  TEST_CASE("kernel_tracked_items_keep_their_frame_and_hide_avail1") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    auto f = FrameAllocOptions().alloc_frame();
    REQUIRE(f.has_value());
    DynFrame frame(std::move(*f));
    const Vaddr va = kKernelBaseVaddr + 0x7000;
    const auto prop =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
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

  TEST_CASE_TEMPLATE("issue_3731_exact_2m_range_inside_a_1g_page_takes_a_2m_piece", P,
                     VMS_ALL_PTE_FORMATS) {
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
