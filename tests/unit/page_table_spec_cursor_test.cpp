// Page-table edge cases (pt_spec_util.hpp): cursor navigation after creation, find_next over
// empty nodes, take_next detaching sub-trees, reference counts with the user configuration
// and protect_next arguments.
#include "pt_spec_util.hpp"

TEST_SUITE("unit") {
  // ---- query ranges after cursor creation (OSTD's vmspace_creation) ----

  TEST_CASE("query_reports_the_absent_entry_at_the_level_the_cursor_reached") {
    struct Case {
      VaRange range;
      PagingLevel guard;
      VaRange queried;
    };
    // Creation walks (creating nodes) down to the deepest node covering the range in two or
    // more entries, or exactly one entry (#3731); an absent entry there is reported whole.
    for (const Case& k :
         {Case{{0, k4K}, 1, {0, k4K}}, Case{{0, 2 * k4K}, 1, {0, k4K}}, Case{{0, k2M}, 2, {0, k2M}},
          Case{{0, 2 * k2M}, 2, {0, k2M}}, Case{{0, k1G}, 3, {0, k1G}},
          Case{{0, k512G}, 4, {0, k512G}}, Case{{0, k2_47}, 4, {0, k512G}}}) {
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
        const vmspace::internal::NodeView<UserPtConfig> l2{root};
        CHECK(l2.meta().level == 2);
        for (std::size_t i = 0; i < 512; ++i) {
          const std::uint64_t raw = l2.load_acquire(i);
          if (vmspace::internal::is_pt_entry<UserPtConfig>(raw, 2))
            stray_nodes.push_back(UserPtConfig::Pte::paddr(raw, 2));
        }
        CHECK(stray_nodes.size() == 3);
        for (Paddr n : stray_nodes) {
          CHECK(vmspace::internal::NodeView<UserPtConfig>{n}.meta().stray);
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
    const auto prop =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
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
        REQUIRE(
            map_one_user(pt, k1G * (i % 4) + k4K * i, UserItem::tracked(alloc_uframe(), rw_wb()))
                .has_value());
      }
      REQUIRE(
          map_one_user(pt, 8 * k2M, UserItem::tracked(alloc_huge_segment(), rw_wb())).has_value());
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
      CHECK(error_of(c->protect_next(k4K, [](PageProperty& p) {
              p.cache = CachePolicy::WriteProtected;
            })) == PageTableError::InvalidItem);
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
}
