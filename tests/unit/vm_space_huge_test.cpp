// VmSpace (vm_space_test_util.hpp): 2 MiB user mappings and their splits.
#include "vm_space_test_util.hpp"

TEST_SUITE("unit") {
  // ---- 2 MiB user mappings (beyond OSTD) ----

  TEST_CASE("map_segment_maps_one_huge_leaf") {
    auto space = new_space();
    USegment seg = new_huge_segment();
    const Paddr pa = seg.paddr();
    const Vaddr va = 0x4000'0000;  // 1 GiB: 2 MiB-aligned
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map_segment(USegment(seg), kUserRw).has_value());
      CHECK(c->virt_addr() == va + k2M);
    }
    auto q = query_at(*space, va + 0x5000);
    CHECK(q.first == VaRange{va, va + k2M});
    REQUIRE(q.second.has_value());
    CHECK(q.second->level == 2);
    CHECK(q.second->paddr == pa);
    CHECK(q.second->frame->paddr() == pa);
    CHECK(space->page_table().page_walk(va + 0x12345)->first == pa + 0x12345);
    CHECK(seg.frame_at(0)->reference_count() == 2);
    CHECK(seg.frame_at(511)->reference_count() == 2);
    // Copies go through the huge leaf.
    {
      ActiveOn active(space, cpu(0));
      REQUIRE(write_u64(*space, va + k2M - 8, 0x0123'4567'89ab'cdefULL).has_value());
      CHECK(read_u64(*space, va + k2M - 8).value() == 0x0123'4567'89ab'cdefULL);
      std::uint64_t raw = 0;
      std::memcpy(&raw, paddr_to_vaddr(pa + k2M - 8), 8);
      CHECK(raw == 0x0123'4567'89ab'cdefULL);
      auto p = pte_prop(*space, va);
      REQUIRE(p.has_value());
      CHECK(has(p->flags, PageFlags::ACCESSED));
      CHECK(has(p->flags, PageFlags::DIRTY));
    }
    CHECK(unmap_range(*space, va, k2M) == 512);
    rcu_barrier();
    CHECK(seg.frame_at(0)->reference_count() == 1);
    CHECK(seg.frame_at(511)->reference_count() == 1);
  }

  TEST_CASE("partial_unmap_splits_a_huge_mapping") {
    auto space = new_space();
    USegment seg = new_huge_segment();
    const Paddr pa = seg.paddr();
    const Vaddr va = 0x60'0000;
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map_segment(USegment(seg), kUserRw).has_value());
    }
    CHECK(unmap_range(*space, va + 0x1000, 0x2000) == 2);
    const auto& pt = space->page_table();
    CHECK(pt.page_walk(va)->first == pa);
    CHECK_FALSE(pt.page_walk(va + 0x1000).has_value());
    CHECK_FALSE(pt.page_walk(va + 0x2000).has_value());
    CHECK(pt.page_walk(va + 0x3000)->first == pa + 0x3000);
    CHECK(pt.page_walk(va + k2M - 1)->first == pa + k2M - 1);
    CHECK(pte_prop(*space, va + 0x3000) == kUserRw);
    auto q = query_at(*space, va);
    REQUIRE(q.second.has_value());
    CHECK(q.second->level == 1);
    CHECK(q.first == VaRange{va, va + 0x1000});
    // A range crossing the end of the former huge page: one mapped page inside.
    CHECK(unmap_range(*space, va + k2M - 0x1000, 0x2000) == 1);
    CHECK_FALSE(pt.page_walk(va + k2M - 0x1000).has_value());
    CHECK(pt.page_walk(va + k2M - 0x2000)->first == pa + k2M - 0x2000);
    rcu_barrier();
    CHECK(seg.frame_at(0)->reference_count() == 2);
    CHECK(seg.frame_at(1)->reference_count() == 1);
    CHECK(seg.frame_at(2)->reference_count() == 1);
    CHECK(seg.frame_at(3)->reference_count() == 2);
    CHECK(seg.frame_at(510)->reference_count() == 2);
    CHECK(seg.frame_at(511)->reference_count() == 1);
    // The 509 remaining pieces each own their frame.
    CHECK(unmap_range(*space, va, k2M) == 509);
    rcu_barrier();
    for (std::size_t i = 0; i < 512; ++i) REQUIRE(seg.frame_at(i)->reference_count() == 1);
  }

  TEST_CASE("protect_next_splits_a_huge_mapping_only_where_asked") {
    auto space = new_space();
    USegment seg = new_huge_segment();
    const Vaddr va = 0xa0'0000;
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map_segment(std::move(seg), kUserRw).has_value());
      // Whole huge page: one range, still one leaf.
      REQUIRE(c->jump(va).has_value());
      auto all = c->protect_next(k2M, [](PageFlags& f, CachePolicy&) { f = PageFlags::RWX; });
      REQUIRE(all.has_value());
      REQUIRE(all->has_value());
      CHECK(**all == VaRange{va, va + k2M});
    }
    CHECK(query_at(*space, va).second->level == 2);
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va + 0x5000, va + 0x6000});
      REQUIRE(c.has_value());
      auto one = c->protect_next(0x1000, [](PageFlags& f, CachePolicy&) { f = PageFlags::R; });
      REQUIRE(one.has_value());
      REQUIRE(one->has_value());
      CHECK(**one == VaRange{va + 0x5000, va + 0x6000});
    }
    CHECK(pte_prop(*space, va + 0x5000)->flags == PageFlags::R);
    CHECK(pte_prop(*space, va + 0x4000)->flags == PageFlags::RWX);
    CHECK(pte_prop(*space, va + 0x6000)->flags == PageFlags::RWX);
    auto q = query_at(*space, va + 0x4000);
    CHECK(q.second->level == 1);
    CHECK(q.first == VaRange{va + 0x4000, va + 0x5000});
  }

  TEST_CASE("map_segment_errors_give_the_segment_back") {
    auto space = new_space();
    const Vaddr va = 0xe0'0000;
    {
      // 2 MiB-aligned, but only 4 KiB left before the cursor's end.
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1'0000'0000, 0x1'0000'1000});
      REQUIRE(c.has_value());
      USegment huge = new_huge_segment();
      CHECK(error_of(c->map_segment(std::move(huge), kUserRw)) == Error::InvalidArgs);
      CHECK(last_page_table_error() == PageTableError::InvalidItem);
      CHECK(huge.size() == k2M);
    }
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {va, va + 2 * k2M});
    REQUIRE(c.has_value());
    USegment huge = new_huge_segment();
    const Paddr huge_pa = huge.paddr();
    // Not 2 MiB-aligned in virtual memory.
    REQUIRE(c->jump(va + 0x1000).has_value());
    CHECK(error_of(c->map_segment(std::move(huge), kUserRw)) == Error::InvalidArgs);
    CHECK(last_page_table_error() == PageTableError::InvalidItem);
    CHECK(huge.paddr() == huge_pa);
    CHECK(huge.size() == k2M);
    // Sizes other than 4 KiB and 2 MiB.
    auto three = FrameAllocOptions().alloc_segment(3);
    REQUIRE(three.has_value());
    USegment three_u(std::move(*three));
    REQUIRE(c->jump(va).has_value());
    CHECK(error_of(c->map_segment(std::move(three_u), kUserRw)) == Error::InvalidArgs);
    CHECK(three_u.nframes() == 3);
    // 512 frames that are not 2 MiB-aligned physically.
    auto pa = global_frame_allocator().alloc(FrameLayout{2 * k2M, k2M});
    REQUIRE(pa.has_value());
    auto big =
        Segment<NoMeta>::from_unused(PaRange{*pa, *pa + 2 * k2M}, [](Paddr) { return NoMeta{}; });
    REQUIRE(big.has_value());
    auto shifted = big->slice(0x1000, 0x1000 + k2M);
    REQUIRE(shifted.has_value());
    USegment shifted_u(std::move(*shifted));
    CHECK(error_of(c->map_segment(std::move(shifted_u), kUserRw)) == Error::InvalidArgs);
    CHECK(shifted_u.paddr() == *pa + 0x1000);
    // Write-protected caching cannot be encoded.
    CHECK(
        error_of(c->map_segment(
            std::move(huge), PageProperty::new_user(PageFlags::RW, CachePolicy::WriteProtected))) ==
        Error::InvalidArgs);
    CHECK(huge.size() == k2M);
    CHECK(c->virt_addr() == va);
    CHECK_FALSE(pte_prop(*space, va).has_value());
    // A one-frame segment maps as a 4 KiB page; the huge one then no longer fits at va.
    auto one = FrameAllocOptions().alloc_segment(1);
    REQUIRE(one.has_value());
    REQUIRE(c->map_segment(USegment(std::move(*one)), kUserRw).has_value());
    REQUIRE(c->jump(va).has_value());
    CHECK(error_of(c->map_segment(std::move(huge), kUserRw)) == Error::AlreadyMapped);
    CHECK(huge.size() == k2M);
    // And a 4 KiB page inside a huge mapping is refused too.
    REQUIRE(c->jump(va + k2M).has_value());
    REQUIRE(c->map_segment(std::move(huge), kUserRw).has_value());
    REQUIRE(c->jump(va + k2M + 0x3000).has_value());
    UFrame f = new_frame();
    CHECK(error_of(c->map(std::move(f), kUserRw)) == Error::AlreadyMapped);
    CHECK_FALSE(f.is_empty());
  }

  TEST_CASE("unmap_counts_huge_frames_in_detached_subtree") {
    // Regression: unmap() counts a huge mapping as its 512 frames when it removes the leaf
    // itself, but counted it as 0 when the leaf went away inside a detached page-table
    // sub-tree (only level-1 entries were counted), so the result depended on the range.
    auto space = new_space();
    const Vaddr gib = 0x4000'0000;
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {gib, gib + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map_segment(new_huge_segment(), kUserRw).has_value());
    }
    map_page(*space, gib + k2M);
    map_page(*space, gib + k2M + 0x1000);
    // [1 GiB, 2 GiB) is one whole root entry: its sub-tree is detached at once.
    CHECK(unmap_range(*space, gib, gib) == 514);
    CHECK_FALSE(pte_prop(*space, gib).has_value());
  }
}
