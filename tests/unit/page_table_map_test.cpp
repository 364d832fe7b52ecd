// OSTD's page-table scenarios (pt_scenario_util.hpp): unmap, mapping, protection_and_query and
// boot_pt.
#include "pt_scenario_util.hpp"

TEST_SUITE("unit") {
  // ---- unmap ----

  TEST_CASE_TEMPLATE("take_next_takes_something", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k4K, 2 * k4K};
    const RawItem item{k4K * 100, 1, rw_wb()};
    REQUIRE(map_one(*pt, range.start, item).has_value());
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    auto f = c->take_next(range.size());
    REQUIRE(f.has_value());
    const auto* m = as_mapped<C>(*f);
    REQUIRE(m != nullptr);
    CHECK(m->va == range.start);
    CHECK(m->level == 1);
    CHECK(*m->item == item);
    CHECK(c->virt_addr() == range.end);
    CHECK_FALSE(pt->page_walk(range.start).has_value());
  }

  TEST_CASE_TEMPLATE("take_large_takes_subtree", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    REQUIRE(map_one(*pt, k4K * 513, RawItem{k4K, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    SUBCASE("ostd_range_detaches_the_level_2_node") {
      // OSTD expects StrayPageTable{va = 2M, len = 2M, num_frames = 1} for the cursor
      // [0, 1G): its cursor (issue #3731) roots [0, 1G) one level too low, at the level-2
      // node. Ours roots it at the level-3 node, so the fully covered level-2 node itself is
      // the first thing to detach.
      auto c = pt->cursor_mut(guard, {0, k1G});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 3);
      auto f = c->take_next(k1G);
      REQUIRE(f.has_value());
      const auto* s = as_stray<C>(*f);
      REQUIRE(s != nullptr);
      CHECK(s->va == 0);
      CHECK(s->len == k1G);
      CHECK(s->num_frames == 1);
      CHECK(c->virt_addr() == k1G);
    }
    SUBCASE("range_rooted_at_level_2_detaches_the_leaf_table") {
      // OSTD's numbers, with a range that roots the cursor at the level-2 node.
      auto c = pt->cursor_mut(guard, {0, 3 * k2M});
      REQUIRE(c.has_value());
      CHECK(c->guard_level() == 2);
      auto f = c->take_next(3 * k2M);
      REQUIRE(f.has_value());
      const auto* s = as_stray<C>(*f);
      REQUIRE(s != nullptr);
      CHECK(s->va == k2M);
      CHECK(s->len == k2M);
      CHECK(s->num_frames == 1);
    }
    CHECK_FALSE(pt->page_walk(k4K * 513).has_value());
  }

  // ---- mapping ----

  TEST_CASE_TEMPLATE("mixed_granularity_map_unmap", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const std::uint64_t from_ppn_start = 13245, from_ppn_end = 512 * 512 + 23456;
    const std::uint64_t to_ppn_start = from_ppn_start - 11010;
    const VaRange va{k4K * from_ppn_start, k4K * from_ppn_end};
    const PaRange pa{k4K * to_ppn_start, k4K * to_ppn_start + va.size()};
    map_untracked<C>(*pt, va.start, pa, rw_wb());

    for (std::uint64_t i = 0; i < 100; ++i) {
      const std::uint64_t offset = i * (k4K + 1000);  // a stride larger than a page
      auto walked = pt->page_walk(va.start + offset);
      REQUIRE(walked.has_value());
      CHECK(walked->first == pa.start + offset);
    }

    const Vaddr unmap_va = k4K * 13456;
    {
      auto guard = disable_preempt();
      auto c = pt->cursor_mut(guard, {unmap_va, unmap_va + k4K});
      REQUIRE(c.has_value());
      CHECK(c->virt_addr() == unmap_va);
      auto f = c->take_next(k4K);
      REQUIRE(f.has_value());
      const auto* m = as_mapped<C>(*f);
      REQUIRE(m != nullptr);
      CHECK(m->va == unmap_va);
      CHECK(*m->item == RawItem{pa.start + k4K * (13456 - from_ppn_start), 1, rw_wb()});
    }
    CHECK_FALSE(pt->page_walk(unmap_va).has_value());
    CHECK_FALSE(pt->page_walk(unmap_va + k4K - 1).has_value());
    CHECK(pt->page_walk(unmap_va - k4K)->first == pa.start + (unmap_va - k4K - va.start));
    CHECK(pt->page_walk(unmap_va + k4K)->first == pa.start + (unmap_va + k4K - va.start));
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  TEST_CASE_TEMPLATE("mixed_granularity_protect_query", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const std::uint64_t two_mb_ppn = 512, one_gb_ppn = 512 * 512;
    const std::uint64_t from_ppn_start = one_gb_ppn - two_mb_ppn;
    const std::uint64_t from_ppn_end = 2 * one_gb_ppn + two_mb_ppn + 2;
    const VaRange from{k4K * from_ppn_start, k4K * from_ppn_end};
    const std::uint64_t shift = k2M;  // pa = va - 2 MiB: 2 MiB- but never 1 GiB-aligned
    auto pa_of = [&](Vaddr v) { return v - shift; };
    map_untracked<C>(*pt, from.start, PaRange{from.start - shift, from.end - shift}, rw_wb());

    // 2 MiB granularity (512 + 2 pages), then two 4 KiB pages.
    const std::uint64_t huge_count = 512 + 2;
    {
      auto guard = disable_preempt();
      auto c = pt->cursor(guard, from);
      REQUIRE(c.has_value());
      std::uint64_t i = 0;
      for (;; ++i) {
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(q->item->paddr == pa_of(q->range.start));
        CHECK(q->item->prop.flags == PageFlags::RW);
        CHECK(q->item->prop.cache == CachePolicy::Writeback);
        if (i < huge_count) {
          CHECK(q->item->level == 2);
          CHECK(q->range == VaRange{from.start + i * k2M, from.start + (i + 1) * k2M});
        } else {
          CHECK(q->item->level == 1);
          const Vaddr s = from.start + huge_count * k2M + (i - huge_count) * k4K;
          CHECK(q->range == VaRange{s, s + k4K});
        }
        if (q->range.end >= from.end) break;
        REQUIRE(c->jump(q->range.end).has_value());
      }
      CHECK(i + 1 == huge_count + 2);
    }

    const VaRange protect{k4K * (from_ppn_start + 18), k4K * (from_ppn_start + 20)};
    protect_range(*pt, protect, [](PageProperty& p) { p.flags &= ~PageFlags::W; });

    auto low = pt->page_walk(protect.start - k4K);
    REQUIRE(low.has_value());
    CHECK(low->first == pa_of(protect.start - k4K));
    CHECK(low->second == rw_wb());
    {
      auto guard = disable_preempt();
      auto c = pt->cursor(guard, protect);
      REQUIRE(c.has_value());
      for (Vaddr v = protect.start; v < protect.end; v += k4K) {
        REQUIRE(c->jump(v).has_value());
        auto q = c->query();
        REQUIRE(q.has_value());
        REQUIRE(q->item.has_value());
        CHECK(q->item->paddr == pa_of(v));
        CHECK(q->item->level == 1);
        CHECK(q->item->prop.flags == PageFlags::R);
        CHECK(q->item->prop.cache == CachePolicy::Writeback);
      }
    }
    auto high = pt->page_walk(protect.end);
    REQUIRE(high.has_value());
    CHECK(high->first == pa_of(protect.end));
    CHECK(high->second == rw_wb());
    VMS_CHECK_PT_INVARIANTS(*pt);
  }

  // ---- protection_and_query ----

  TEST_CASE_TEMPLATE("base_protect_query", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{k4K * 1, k4K * 1000};
    map_untracked<C>(*pt, range.start, PaRange{0, k4K * 999}, rw_wb());
    for (Vaddr v = range.start; v < range.end; v += k4K) {
      auto w = pt->page_walk(v);
      REQUIRE(w.has_value());
      CHECK(w->second.flags == PageFlags::RW);
      CHECK(w->second.cache == CachePolicy::Writeback);
    }
    protect_range(*pt, {k4K * 18, k4K * 20}, [](PageProperty& p) { p.flags &= ~PageFlags::W; });
    for (std::uint64_t i = 18; i < 20; ++i) {
      auto w = pt->page_walk(k4K * i);
      REQUIRE(w.has_value());
      CHECK(w->second.flags == PageFlags::R);
      CHECK(w->second.cache == CachePolicy::Writeback);
    }
    CHECK(pt->page_walk(k4K * 17)->second.flags == PageFlags::RW);
    CHECK(pt->page_walk(k4K * 20)->second.flags == PageFlags::RW);
  }

  TEST_CASE_TEMPLATE("protect_next_empty_entry", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0x1000, 0x2000};
    auto guard = disable_preempt();
    auto c = pt->cursor_mut(guard, range);
    REQUIRE(c.has_value());
    auto r = c->protect_next(range.size(), [](PageProperty& p) { p.flags = PageFlags::R; });
    REQUIRE(r.has_value());
    CHECK_FALSE(r->has_value());
    CHECK(c->virt_addr() == range.end);
  }

  TEST_CASE_TEMPLATE("protect_next_touches_empty_range", P, VMS_ALL_PTE_FORMATS) {
    using C = HugeTestPtConfig<P>;
    auto pt = PageTable<C>::empty();
    REQUIRE(pt.has_value());
    const VaRange range{0x1000, 0x3000};
    const VaRange sub{0x1000, 0x2000};
    REQUIRE(map_one(*pt, sub.start, RawItem{0x2000, 1, rw_wb()}).has_value());
    auto guard = disable_preempt();
    {
      auto c = pt->cursor_mut(guard, range);
      REQUIRE(c.has_value());
      auto r = c->protect_next(range.size(), [](PageProperty& p) { p.flags = PageFlags::R; });
      REQUIRE(r.has_value());
      CHECK(*r == std::optional<VaRange>(sub));
      CHECK(c->virt_addr() == sub.end);
      auto rest = c->protect_next(range.end - c->virt_addr(),
                                  [](PageProperty& p) { p.flags = PageFlags::R; });
      REQUIRE(rest.has_value());
      CHECK_FALSE(rest->has_value());
    }
    CHECK(pt->page_walk(0x1000)->second.flags == PageFlags::R);
  }

  // ---- boot_pt, on a kernel-config table ----

  TEST_CASE("map_base_page") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from = kKernelVa + 0x1000;
    REQUIRE(map_kernel_base_page(*kernel, from, 0x2000, rw_wb()).has_value());
    auto w = kernel->page_walk(from + 1);
    REQUIRE(w.has_value());
    CHECK(w->first == 0x2001);
    CHECK(w->second == rw_wb());
  }

  TEST_CASE("map_base_page_already_mapped") {
    // OSTD: should_panic "mapping an already mapped page in the boot page table".
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from = kKernelVa + 0x1000;
    REQUIRE(map_kernel_base_page(*kernel, from, 0x2000, rw_wb()).has_value());
    CHECK(error_of(map_kernel_base_page(*kernel, from, 0x3000, rw_wb())) ==
          PageTableError::AlreadyMapped);
    CHECK(kernel->page_walk(from)->first == 0x2000);
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }

  TEST_CASE("protect_base_page_unmapped") {
    // OSTD: should_panic "protecting an unmapped page in the boot page table". Here there is
    // nothing to protect: protect_next reports None and maps nothing.
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr va = kKernelVa + 0x2000;
    auto r = protect_kernel_base_page(*kernel, va, [](PageProperty& p) { p.flags = PageFlags::R; });
    CHECK(r == std::nullopt);
    CHECK_FALSE(kernel->page_walk(va).has_value());
  }

  TEST_CASE("map_protect") {
    auto kernel = new_kernel_page_table();
    REQUIRE(kernel.has_value());
    const Vaddr from1 = kKernelVa + 0x2000;
    const auto prop1 = rw_wb();
    REQUIRE(map_kernel_base_page(*kernel, from1, 0x2000, prop1).has_value());
    CHECK(kernel->page_walk(from1 + 1) == std::optional(std::pair{Paddr{0x2001}, prop1}));
    auto r1 =
        protect_kernel_base_page(*kernel, from1, [](PageProperty& p) { p.flags = PageFlags::RX; });
    CHECK(r1 == std::optional(VaRange{from1, from1 + k4K}));
    CHECK(kernel->page_walk(from1 + 1) ==
          std::optional(std::pair{Paddr{0x2001},
                                  PageProperty::new_user(PageFlags::RX, CachePolicy::Writeback)}));

    const Vaddr from2 = kKernelVa + 0x3000;
    const auto prop2 = PageProperty::new_user(PageFlags::RX, CachePolicy::Uncacheable);
    REQUIRE(map_kernel_base_page(*kernel, from2, 0x3000, prop2).has_value());
    CHECK(kernel->page_walk(from2 + 2) == std::optional(std::pair{Paddr{0x3002}, prop2}));
    auto r2 =
        protect_kernel_base_page(*kernel, from2, [](PageProperty& p) { p.flags = PageFlags::RW; });
    CHECK(r2 == std::optional(VaRange{from2, from2 + k4K}));
    // The cache policy is preserved.
    CHECK(kernel->page_walk(from2 + 2) ==
          std::optional(std::pair{
              Paddr{0x3002}, PageProperty::new_user(PageFlags::RW, CachePolicy::Uncacheable)}));
    VMS_CHECK_PT_INVARIANTS(*kernel);
  }
}
