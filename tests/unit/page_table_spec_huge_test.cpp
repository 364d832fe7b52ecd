// Page-table edge cases (pt_spec_util.hpp): huge pages, address aliasing, stray sub-trees,
// unaligned walks and unsupported sizes (docs/spec_cases.md cases 42-46 and 51-54).
#include "pt_spec_util.hpp"

TEST_SUITE("unit") {
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

  TEST_CASE_TEMPLATE("unmapping_inside_a_2m_mapping_splits_it_with_proportional_addresses", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("protecting_one_4k_piece_of_a_2m_mapping_changes_exactly_that_piece", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("protect_next_starting_inside_a_1g_page_splits_down_to_4k", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("map_2m_over_a_range_holding_4k_mappings_is_already_mapped", P,
                     VMS_ALL_PTE_FORMATS) {
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
    CHECK(error_of(pt.cursor_mut(guard0, {k2_48, k2_48 + k4K})) ==
          PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt.cursor_mut(guard0, {k2_47, k2_47 + k4K})) ==
          PageTableError::InvalidVaddrRange);
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

  TEST_CASE_TEMPLATE("regression_page_walk_aliased_non_canonical_addresses", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("unmapping_a_huge_page_from_its_start_removes_it_whole", P,
                     VMS_ALL_PTE_FORMATS) {
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

  TEST_CASE_TEMPLATE("num_frames_counts_the_leaves_of_detached_leaf_tables", P,
                     VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Vaddr base = k1G;
    for (std::uint64_t i = 0; i < 3; ++i)
      REQUIRE(map_one(*pt, base + i * k4K, RawItem{k4K * i, 1, rw_wb()}).has_value());
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
    auto whole = Segment<NoMeta>::from_unused(PaRange{*block, *block + 2 * k2M},
                                              [](Paddr) { return NoMeta{}; });
    REQUIRE(whole.has_value());
    auto shifted = whole->slice(k4K, k4K + k2M);
    REQUIRE(shifted.has_value());
    whole = Segment<NoMeta>();  // frees the frames outside the slice
    CHECK(error_of(
              map_one_user(pt, k2M, UserItem::tracked(USegment(std::move(*shifted)), rw_wb()))) ==
          PageTableError::InvalidItem);
    CHECK(census(pt).total_leaves() == 0);
  }
}
