// OSTD's page-table scenarios (pt_scenario_util.hpp): test_utils, create_page_table,
// range_checks, page_properties and arch_pte_impls.
#include "pt_scenario_util.hpp"

TEST_SUITE("unit") {
  // ---- test_utils ----

  TEST_CASE("test_subset_iter") {
    CHECK(subsets(0b1011) == std::vector<std::uint8_t>{0b1011, 0b1010, 0b1001, 0b1000, 0b0011,
                                                       0b0010, 0b0001, 0b0000});
  }

  // ---- create_page_table ----

  TEST_CASE("create_user_page_table") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const vmspace::internal::NodeView<KernelPtConfig> kroot{kernel->root_paddr()};
    {
      auto user = create_user_page_table(*kernel);
      REQUIRE(user.has_value());
      const vmspace::internal::NodeView<UserPtConfig> uroot{user->root_paddr()};
      for (std::size_t i = 256; i < 512; ++i) {
        const PteScalar k = KF::decode(kroot.load_acquire(i), 4);
        const PteScalar u = KF::decode(uroot.load_acquire(i), 4);
        REQUIRE(k.is_page_table());
        REQUIRE(u.is_page_table());
        CHECK(vmspace::internal::NodeView<KernelPtConfig>{k.paddr}.meta().level == 3);
        CHECK(u.paddr == k.paddr);
      }
      for (std::size_t i = 0; i < 256; ++i) CHECK(uroot.load_acquire(i) == 0);
      // Borrowed entries are neither counted nor referenced.
      CHECK(uroot.meta().nr_children == 0);
      VMS_CHECK_PT_INVARIANTS(*user);
    }
    // Dropping the user table leaves the shared nodes alone.
    for (std::size_t i = 256; i < 512; ++i) {
      const Paddr shared = KF::paddr(kroot.load_acquire(i), 4);
      CHECK(meta_slot(shared)->ref_count_ref().load() == 1);
    }
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }

  TEST_CASE("new_kernel_page_table") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const vmspace::internal::NodeView<KernelPtConfig> root{kernel->root_paddr()};
    for (std::size_t i = 0; i < 512; ++i) {
      const PteScalar s = KF::decode(root.load_acquire(i), 4);
      if (i < 256) {
        CHECK(s.is_absent());
      } else {
        REQUIRE(s.is_page_table());
        CHECK(vmspace::internal::NodeView<KernelPtConfig>{s.paddr}.meta().level == 3);
        CHECK(vmspace::internal::NodeView<KernelPtConfig>{s.paddr}.meta().nr_children == 0);
      }
    }
    CHECK(root.meta().nr_children == 256);
    const auto c = census(*kernel);
    CHECK(c.violations.empty());
    CHECK(c.nodes == 257);
  }

  // ---- range_checks ----

  TEST_CASE("range_check") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    CHECK(pt->cursor_mut(guard, {0, k4K}).has_value());
    CHECK(error_of(pt->cursor_mut(guard, {0, k4K + 1})) == PageTableError::UnalignedVaddr);
    CHECK(error_of(pt->cursor_mut(guard, {0, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {k4K, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(
        error_of(pt->cursor_mut(guard, {kLinearMappingBaseVaddr, kLinearMappingBaseVaddr + k4K})) ==
        PageTableError::InvalidVaddrRange);
  }

  TEST_CASE("boundary_conditions") {
    auto pt = PageTable<UserPtConfig>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    CHECK(error_of(pt->cursor_mut(guard, {0, 0})) == PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {0xffff'8000'0000'0000, 0xffff'8000'0001'0000})) ==
          PageTableError::InvalidVaddrRange);
    CHECK(error_of(pt->cursor_mut(guard, {1, k4K + 1})) == PageTableError::UnalignedVaddr);
    // None of the refused requests created a node.
    CHECK(census(*pt).nodes == 1);
  }

  TEST_CASE("start_boundary_mapping") {
    auto pt = create_user_pt_mapped_at({0, k4K});
    REQUIRE(pt.has_value());
    CHECK(pt->page_walk(0).has_value());
    CHECK(pt->page_walk(k4K - 1).has_value());
    CHECK_FALSE(pt->page_walk(k4K).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("end_boundary_mapping") {
    auto pt = create_user_pt_mapped_at({kMaxUserspaceVaddr - k4K, kMaxUserspaceVaddr});
    REQUIRE(pt.has_value());
    CHECK(pt->page_walk(kMaxUserspaceVaddr - k4K).has_value());
    CHECK(pt->page_walk(kMaxUserspaceVaddr - 1).has_value());
    CHECK_FALSE(pt->page_walk(kMaxUserspaceVaddr - k4K - 1).has_value());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE("overflow_boundary_mapping") {
    // OSTD: should_panic "failed to create the cursor". Here cursor creation fails.
    const VaRange range{kMaxUserspaceVaddr - k4K / 2, kMaxUserspaceVaddr + k4K / 2};
    CHECK(error_of(create_user_pt_mapped_at(range)) == PageTableError::UnalignedVaddr);
  }

  // ---- page_properties ----

  TEST_CASE("map_preserves_page_property") {
    for (const PageProperty& prop : all_page_properties()) {
      CAPTURE(prop);
      auto pt = PageTable<UserPtConfig>::empty();
      REQUIRE(pt.has_value());
      {
        auto guard = disable_preempt();
        auto c = pt->cursor_mut(guard, {k4K, 2 * k4K});
        REQUIRE(c.has_value());
        REQUIRE(c->map(UserItem::tracked(alloc_uframe(), prop)).has_value());
      }
      auto walked = pt->page_walk(k4K + 100);
      REQUIRE(walked.has_value());
      // A tracked user item never carries AVAIL1, whatever the caller passed.
      PageProperty expected = prop;
      expected.priv_flags &= ~PrivilegedPageFlags::AVAIL1;
      CHECK(walked->second == expected);
    }
  }

  // ---- arch_pte_impls, through a page table ----

  TEST_CASE_TEMPLATE("zeroed_pte_is_absent_pte", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    auto guard = disable_preempt();
    // Creating the cursor allocates one node per level down to the leaf table.
    auto c = pt->cursor(guard, {k4K, 2 * k4K});
    REQUIRE(c.has_value());
    for (PagingLevel level = kNrLevelsOf<C>; level >= 1; --level) {
      const Paddr node = node_at(*pt, k4K, level);
      REQUIRE(node != 0);
      const vmspace::internal::NodeView<C> view{node};
      for (std::size_t i = 0; i < 512; ++i) {
        const std::uint64_t raw = view.load_acquire(i);
        if (level > 1 && i == pte_index<ConstsOf<C>>(k4K, level)) continue;  // the path
        CHECK(raw == 0);
        for (PagingLevel l = 1; l <= kNrLevelsOf<C>; ++l) CHECK(P::decode(raw, l).is_absent());
      }
    }
    auto q = c->query();
    REQUIRE(q.has_value());
    CHECK_FALSE(q->item.has_value());
  }

  TEST_CASE_TEMPLATE("cast_frame_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const Paddr pa = 0xff'c000'0000;  // OSTD's address, aligned for every level up to 1 GiB
    for (PagingLevel level = 1; level <= C::kHighestTranslationLevel; ++level) {
      const Vaddr va = psize<C>(level) * 3;
      for (const PageProperty& prop : all_page_properties()) {
        if (!has(prop.flags, PageFlags::R) || !P::can_encode(prop)) continue;
        CAPTURE(level);
        CAPTURE(prop);
        const RawItem item{pa, level, prop};
        auto guard = disable_preempt();
        auto c = pt->cursor_mut(guard, {va, va + psize<C>(level)});
        REQUIRE(c.has_value());
        REQUIRE(c->map(RawItem(item)).has_value());
        // The word in the node is exactly the format's encoding of the item.
        const Paddr node = node_at(*pt, va, level);
        REQUIRE(node != 0);
        const std::uint64_t raw =
            vmspace::internal::NodeView<C>{node}.load_acquire(pte_index<ConstsOf<C>>(va, level));
        CHECK(raw == P::encode(PteScalar::mapped(pa, prop), level));
        CHECK(P::decode(raw, level) == PteScalar::mapped(pa, prop));
        REQUIRE(c->jump(va).has_value());
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(*q->item == item);
        auto f = c->take_next(psize<C>(level));
        REQUIRE(f.has_value());
        const auto* m = as_mapped<C>(*f);
        REQUIRE(m != nullptr);
        CHECK(*m->item == item);
      }
    }
  }

  TEST_CASE_TEMPLATE("cast_pt_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{0x5000, 1, rw_wb()}).has_value());
    // Every intermediate entry on the path is PageTable(child, None) and the child's level
    // is one less.
    for (PagingLevel level = kNrLevelsOf<C>; level >= 2; --level) {
      const Paddr node = node_at(*pt, k4K, level);
      const Paddr child = node_at(*pt, k4K, static_cast<PagingLevel>(level - 1));
      REQUIRE(node != 0);
      REQUIRE(child != 0);
      const std::uint64_t raw =
          vmspace::internal::NodeView<C>{node}.load_acquire(pte_index<ConstsOf<C>>(k4K, level));
      CHECK(P::decode(raw, level) == PteScalar::page_table(child, PageTableFlags::None));
      CHECK(raw == P::encode(PteScalar::page_table(child, PageTableFlags::None), level));
      CHECK(vmspace::internal::NodeView<C>{child}.meta().level == level - 1);
    }
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("cast_absent_pte_preserves_repr", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k2M, RawItem{k2M * 9, 2, rw_wb()}).has_value());
    REQUIRE(map_one(*pt, k4K, RawItem{0x5000, 1, rw_wb()}).has_value());
    CHECK(take_all(*pt, {k4K, 2 * k4K}).size() == 1);
    CHECK(take_all(*pt, {k2M, 2 * k2M}).size() == 1);
    // Removed leaves leave all-zero words, which decode as Absent at every level.
    const Paddr leaf_table = node_at(*pt, k4K, 1);
    const Paddr level2 = node_at(*pt, k2M, 2);
    REQUIRE(leaf_table != 0);
    REQUIRE(level2 != 0);
    const std::uint64_t w1 = vmspace::internal::NodeView<C>{leaf_table}.load_acquire(1);
    const std::uint64_t w2 = vmspace::internal::NodeView<C>{level2}.load_acquire(1);
    CHECK(w1 == 0);
    CHECK(w2 == 0);
    CHECK(P::encode(PteScalar::absent(), 1) == 0);
    for (PagingLevel l = 1; l <= kNrLevelsOf<C>; ++l) {
      CHECK(P::decode(w1, l).is_absent());
      CHECK(P::decode(w2, l).is_absent());
    }
    VMS_CHECK_PT_INVARIANTS(*pt);
  }
}
