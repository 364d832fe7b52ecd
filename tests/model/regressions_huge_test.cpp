// Regressions (model_regressions_util.hpp): huge-page splits, overlaps and duplicates
// (docs/spec_cases.md cases 42-47 and 49).
#include "model_regressions_util.hpp"

TEST_SUITE("model") {
  // ---- huge-page splits (items 42-45) ----

  TEST_CASE("regression_d3_42_43_partial_unmap_splits_a_huge_page") {
    ActiveSpace s;
    const Vaddr v = 4 * kSz2M;
    USegment huge = alloc_huge();
    const Paddr p = huge.paddr();
    USegment keep = huge;  // one more share per frame, so counts show which frames are mapped
    map_huge(*s.space, v, std::move(huge));
    AbstractModel model(check::model_config<UserPtConfig>());
    REQUIRE(model.map(Mapping{v, 2, p, kRw}));
    // Item 42 (ours: map never splits, it refuses an overlap): a 4 KiB map inside fails.
    {
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, {v + 0x5000, v + 0x6000}).value();
      UFrame f = alloc_frame();
      CHECK(error_of(c.map(std::move(f), kRw)) == Error::AlreadyMapped);
      CHECK_FALSE(f.is_empty());  // given back
    }
    CHECK(diff_text(model, s->page_table()).empty());
    // Unmapping one page inside: 511 pieces stay, with proportional physical addresses.
    const std::uint64_t before = read_byte(*s.space, v + 0x5000);  // fills the TLB
    CHECK(before == 0);
    CHECK(unmap(*s.space, v + 0x5000, 0x1000).value() == 1);
    REQUIRE(model.unmap(v + 0x5000, v + 0x5fff).size() == 1);
    CHECK(model.size() == 511);
    CHECK(diff_text(model, s->page_table()).empty());
    auto r = s->reader(v + 0x5000, 1).value();
    std::vector<std::byte> b(1);
    VmWriter<Infallible> w{std::span<std::byte>(b)};
    CHECK(error_of(r.read_fallible(w)).has_value());  // the TLB entry was flushed
    rcu_barrier();
    CHECK(rc_of(p + 0x5000) == 1);
    CHECK(rc_of(p + 0x4000) == 2);
    CHECK(rc_of(p + 0x6000) == 2);
    // Item 43: two pages inside; then a range crossing the end of the huge page.
    CHECK(unmap(*s.space, v + 0x1000, 0x2000).value() == 2);
    REQUIRE(model.unmap(v + 0x1000, v + 0x2fff).size() == 2);
    UFrame next = alloc_frame();
    const Paddr next_pa = next.paddr();
    map_frame(*s.space, v + kSz2M, std::move(next));
    REQUIRE(model.map(Mapping{v + kSz2M, 1, next_pa, kRw}));
    CHECK(unmap(*s.space, v + kSz2M - 0x1000, 0x2000).value() == 2);
    REQUIRE(model.unmap(v + kSz2M - 0x1000, v + kSz2M + 0xfff).size() == 2);
    CHECK(diff_text(model, s->page_table()).empty());
    CHECK(invariants({s.space.get()}).empty());
    CHECK(rc_of(p + 0x1000) == 1);
    CHECK(rc_of(p + 0x3000) == 2);
    CHECK(rc_of(p + kSz2M - kPageSize) == 1);
  }

  TEST_CASE("regression_d3_44_protect_changes_one_piece_or_the_whole_page") {
    ActiveSpace s;
    const Vaddr v = 8 * kSz2M;
    USegment a = alloc_huge(), b = alloc_huge();
    const Paddr pa = a.paddr(), pb = b.paddr();
    map_huge(*s.space, v, std::move(a));
    map_huge(*s.space, v + kSz2M, std::move(b));
    AbstractModel model(check::model_config<UserPtConfig>());
    REQUIRE(model.map(Mapping{v, 2, pa, kRw}));
    REQUIRE(model.map(Mapping{v + kSz2M, 2, pb, kRw}));
    auto read_only = [](PageFlags& f, CachePolicy&) { f = PageFlags::R; };
    auto model_op = [](PageProperty& p) { p.flags = PageFlags::R; };
    {
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, {v, v + 2 * kSz2M}).value();
      REQUIRE(c.jump(v + 0x3000).has_value());
      auto r = c.protect_next(kPageSize, read_only);  // target size 4 KiB
      REQUIRE(r.has_value());
      CHECK(*r == std::optional<VaRange>(VaRange{v + 0x3000, v + 0x4000}));
      REQUIRE(model.protect_next(v + 0x3000, v + 0x3fff, model_op).has_value());
      REQUIRE(c.jump(v + kSz2M).has_value());
      r = c.protect_next(kSz2M, read_only);  // target size 2 MiB: the whole page
      REQUIRE(r.has_value());
      CHECK(*r == std::optional<VaRange>(VaRange{v + kSz2M, v + 2 * kSz2M}));
      REQUIRE(model.protect_next(v + kSz2M, v + 2 * kSz2M - 1, model_op).has_value());
      c.flusher().issue_tlb_flush(TlbFlushOp::for_all());
      c.flusher().dispatch_tlb_flush();
    }
    CHECK(model.size() == 512 + 1);
    CHECK(diff_text(model, s->page_table()).empty());
    CHECK(invariants({s.space.get()}).empty());
    CHECK(unmap(*s.space, v, 2 * kSz2M).value() == 1024);
  }

  TEST_CASE_TEMPLATE("regression_d3_45_huge_map_replaces_only_an_empty_sub_tree", P, ALL_FORMATS) {
    // vostd's map_spec replaces whatever starts in the huge page's range; we replace an empty
    // page-table node (OSTD panics there) but refuse to drop mappings (AlreadyMapped).
    boot_for_models();
    using C = RawPtConfig<P>;
    auto pt = new_table<C>();
    AbstractModel model(check::model_config<C>());
    const Vaddr v = kSz2M;
    {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, VaRange{v, v + kSz2M}).value();
      for (int i = 0; i < 3; ++i) REQUIRE(c.map(RawItem{0x10000 + kSz4K * i, 1, kRw}).has_value());
      REQUIRE(c.jump(v + kSz4K).has_value());
      auto f = c.take_next(kSz4K);  // two pages stay
      REQUIRE(f.has_value());
      REQUIRE(c.jump(v).has_value());
      CHECK(error_of(c.map(RawItem{0x200000, 2, kRw})) == PageTableError::AlreadyMapped);
      REQUIRE(model.map(Mapping{v, 1, 0x10000, kRw}));
      REQUIRE(model.map(Mapping{v + 2 * kSz4K, 1, 0x12000, kRw}));
      CHECK(diff_text(model, pt).empty());
      // Empty the level-1 node page by page (it stays: OSTD keeps empty nodes; an unmap of the
      // whole 2 MiB would detach it instead), then map over it.
      for (Vaddr page : {v, v + 2 * kSz4K}) {
        REQUIRE(c.jump(page).has_value());
        auto t = c.take_next(kSz4K);
        REQUIRE(t.has_value());
        REQUIRE(t->has_value());
        CHECK(std::holds_alternative<MappedFrag<C>>(**t));
      }
      REQUIRE(c.jump(v).has_value());
      auto q = c.query();
      REQUIRE(q.has_value());
      CHECK(q->level == 1);  // the node is still there
      CHECK(c.map(RawItem{0x200000, 2, kRw}).has_value());
    }
    AbstractModel after(check::model_config<C>());
    REQUIRE(after.map(Mapping{v, 2, 0x200000, kRw}));
    CHECK(diff_text(after, pt).empty());
    rcu_barrier();
    check::CheckReport report;
    check::RawRefs refs;
    check::check_page_table(pt, report, &refs);
    check::check_page_table(kernel_page_table(), report, &refs);
    check::check_refcount_law(refs, report);
    CHECK_MESSAGE(report.ok(), report.to_string());
  }

  // ---- overlap and duplicates (items 46, 47, 49) ----

  TEST_CASE_TEMPLATE("regression_d3_46_overlapping_maps_are_refused_and_change_nothing", P,
                     ALL_FORMATS) {
    boot_for_models();
    using C = RawPtConfig<P>;
    auto pt = new_table<C>();
    AbstractModel model(check::model_config<C>());
    const Vaddr v = 3 * kSz2M + 0x5000;
    const Vaddr v2m = 6 * kSz2M;
    auto g = disable_preempt();
    auto c = pt.cursor_mut(g, VaRange{0, 16 * kSz2M}).value();
    REQUIRE(c.jump(v).has_value());
    REQUIRE(c.map(RawItem{0x7000, 1, kRw}).has_value());
    REQUIRE(model.map(Mapping{v, 1, 0x7000, kRw}));
    REQUIRE(c.jump(align_down(v, kSz2M)).has_value());
    CHECK(error_of(c.map(RawItem{0, 2, kRw})) == PageTableError::AlreadyMapped);  // a table there
    REQUIRE(c.jump(v2m).has_value());
    REQUIRE(c.map(RawItem{kSz2M, 2, kRw}).has_value());
    REQUIRE(model.map(Mapping{v2m, 2, kSz2M, kRw}));
    REQUIRE(c.jump(v2m + 0x1000).has_value());
    CHECK(error_of(c.map(RawItem{0x9000, 1, kRw})) == PageTableError::AlreadyMapped);  // huge above
    REQUIRE(c.jump(v).has_value());
    CHECK(error_of(c.map(RawItem{0x7000, 1, kRw})) ==
          PageTableError::AlreadyMapped);  // identical twice
    CHECK(c.virt_addr() == v);
    CHECK(diff_text(model, pt).empty());
  }

  TEST_CASE("regression_d3_47_49_one_frame_at_two_addresses_and_in_two_spaces") {
    // verified-pt refuses PA overlap (its map_pre), OSTD allows it: we allow it and count one
    // reference per PTE; the checker reports the overlap as a warning.
    ActiveSpace s;
    UFrame f = alloc_frame();
    const Paddr pa = f.paddr();
    map_frame(*s.space, 0x10000, f);
    map_frame(*s.space, 0x20000, f);
    auto other = VmSpace::create().value();
    map_frame(*other, 0x10000, f);    // the same frame at the same address in a second space
    CHECK(f.reference_count() == 4);  // 1 handle + 3 PTEs
    {
      check::CheckReport report;
      check::check_user_table(s->page_table(), report);
      CHECK(report.ok());
      bool warned = false;
      for (const auto& w : report.warnings()) warned = warned || w.rule == "pa_overlap";
      CHECK(warned);
    }
    CHECK(invariants({s.space.get(), other.get()}).empty());
    // Written through one address, read through the others.
    {
      auto w = s->writer(0x20123, 4).value();
      REQUIRE(w.write_val<std::uint32_t>(0xdeadbeef).has_value());
    }
    CHECK(s->reader(0x10123, 4).value().read_val<std::uint32_t>().value() == 0xdeadbeef);
    CHECK(unmap(*s.space, 0x10000, kPageSize).value() == 1);
    rcu_barrier();
    CHECK(f.reference_count() == 3);  // unmapping one address does not free the frame
    CHECK(s->reader(0x20123, 4).value().read_val<std::uint32_t>().value() == 0xdeadbeef);
    other.reset();
    rcu_barrier();
    CHECK(f.reference_count() == 2);
    CHECK(rc_of(pa) == 2);
  }
}
