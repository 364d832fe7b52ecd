// Regressions (model_regressions_util.hpp): sizes, encodings and allocation failures; kernel items,
// TLB ordering and views (docs/spec_cases.md cases 54-56 and 69-71).
#include "model_regressions_util.hpp"

TEST_SUITE("model") {
  // ---- sizes, encodings and allocation failures (items 54-56) ----

  TEST_CASE("regression_d3_54_unsupported_sizes_are_refused") {
    // No 512 GiB leaf on AArch64 (TCR.DS = 0) or x86; 16 KiB / 32 MiB / 64 GiB have no level.
    ActiveSpace s;
    auto g = disable_preempt();
    auto a = new_table<RawPtConfig<Aarch64Pte, 3>>();
    auto ca = a.cursor_mut(g, VaRange{0, kSz512G}).value();
    CHECK(error_of(ca.map(RawItem{0, 4, kRw})) == PageTableError::InvalidItem);
    auto x = new_table<RawPtConfig<X86_64Pte, 3>>();
    auto cx = x.cursor_mut(g, VaRange{0, kSz512G}).value();
    CHECK(error_of(cx.map(RawItem{0, 4, kRw})) == PageTableError::InvalidItem);
    // A user segment of a size that is no page size.
    auto seg = FrameAllocOptions().alloc_segment(4).value();
    USegment useg(std::move(seg));
    auto c = s->cursor_mut(g, VaRange{0, kSz2M}).value();
    CHECK(error_of(c.map_segment(std::move(useg), kRw)) == Error::InvalidArgs);
    CHECK(useg.nframes() == 4);
  }

  TEST_CASE("regression_verified_pt_aarch64_attribute_round_trip") {
    // verified-pt's AArch64 PTE loses X and USER (to_mem_attr forces executable = false,
    // user_accessible = true) and panics on attribute indices other than 1 and 15. Ours keeps
    // every property through map and query, and decodes every index.
    boot_for_models();
    using C = RawPtConfig<Aarch64Pte, 3>;
    auto pt = new_table<C>();
    AbstractModel model(check::model_config<C>());
    const PageProperty props[] = {
        PageProperty::new_user(PageFlags::RWX, CachePolicy::Writeback),
        PageProperty::new_with(PageFlags::RWX, CachePolicy::Writeback, PrivilegedPageFlags::None),
        PageProperty::new_user(PageFlags::RX, CachePolicy::Writethrough),
        PageProperty::new_with(PageFlags::R, CachePolicy::Uncacheable, PrivilegedPageFlags::GLOBAL),
        PageProperty::new_user(PageFlags::RW, CachePolicy::WriteCombining),
        PageProperty::new_user(PageFlags::W, CachePolicy::WriteProtected),
    };
    auto g = disable_preempt();
    auto c = pt.cursor_mut(g, VaRange{0, 2 * kSz1G}).value();
    Vaddr va = 0;
    for (const PageProperty& p : props) {
      REQUIRE(c.jump(va).has_value());
      REQUIRE(c.map(RawItem{0x100000 + va, 1, p}).has_value());
      REQUIRE(c.jump(va).has_value());
      auto q = c.query();
      REQUIRE(q.has_value());
      REQUIRE(q->item.has_value());
      CHECK(q->item->prop == p);
      REQUIRE(model.map(Mapping{va, 1, 0x100000 + va, p}));
      va += kPageSize;
    }
    REQUIRE(c.jump(kSz1G).has_value());
    REQUIRE(c.map(RawItem{kSz1G, 3, props[0]}).has_value());  // a 1 GiB block keeps it too
    REQUIRE(model.map(Mapping{kSz1G, 3, kSz1G, props[0]}));
    CHECK(diff_text(model, pt).empty());
    for (std::uint64_t index = 0; index < 8; ++index) {
      const std::uint64_t raw =
          0x40000000 | (index << 2) | Aarch64Pte::kAf | 0b01;  // a level-2 block
      const PteScalar s = Aarch64Pte::decode(raw, 2);
      CHECK(s.is_mapped());
    }
  }

  TEST_CASE("regression_d3_56_protect_split_failure_keeps_the_mapping") {
    // verified-pt's protect is unmap + map: a failure between them loses the mapping. Our
    // protect_next splits first; if the split cannot allocate, nothing changes.
    ActiveSpace s;
    const Vaddr v = 10 * kSz2M;
    USegment huge = alloc_huge();
    const Paddr p = huge.paddr();
    map_huge(*s.space, v, std::move(huge));
    AbstractModel model(check::model_config<UserPtConfig>());
    REQUIRE(model.map(Mapping{v, 2, p, kRw}));
    auto g = disable_preempt();
    auto c = s->cursor_mut(g, {v, v + kSz2M}).value();
    REQUIRE(c.jump(v + 0x1000).has_value());
    auto read_only = [](PageFlags& f, CachePolicy&) { f = PageFlags::R; };
    {
      NoMemoryAllocator fail;
      CHECK(error_of(c.protect_next(kPageSize, read_only)) == Error::NoMemory);
      CHECK(error_of(c.unmap(kPageSize)) == Error::NoMemory);
    }
    CHECK(c.virt_addr() == v + 0x1000);
    CHECK(diff_text(model, s->page_table()).empty());
    auto r = c.protect_next(kPageSize, read_only);
    REQUIRE(r.has_value());
    CHECK(*r == std::optional<VaRange>(VaRange{v + 0x1000, v + 0x2000}));
  }

  TEST_CASE_TEMPLATE("regression_unencodable_property_is_refused_and_changes_nothing", P,
                     ALL_FORMATS) {
    // x86 cannot encode WriteProtected, RISC-V neither it nor Writethrough, AArch64 and RISC-V
    // not SHARED: map and protect_next refuse with InvalidItem and change nothing (OSTD panics).
    boot_for_models();
    using C = RawPtConfig<P>;
    auto pt = new_table<C>();
    AbstractModel model(check::model_config<C>());
    std::vector<PageProperty> bad;
    for (CachePolicy cache : {CachePolicy::WriteProtected, CachePolicy::Writethrough}) {
      const PageProperty p = PageProperty::new_user(PageFlags::RW, cache);
      if (!P::can_encode(p)) bad.push_back(p);
    }
    const PageProperty shared =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::SHARED);
    if (!P::can_encode(shared)) bad.push_back(shared);
    REQUIRE_FALSE(bad.empty());
    auto g = disable_preempt();
    auto c = pt.cursor_mut(g, VaRange{0, kSz2M}).value();
    for (const PageProperty& p : bad) {
      CHECK(error_of(c.map(RawItem{0x1000, 1, p})) == PageTableError::InvalidItem);
    }
    CHECK(c.virt_addr() == 0);
    REQUIRE(c.map(RawItem{0x1000, 1, kRw}).has_value());
    REQUIRE(model.map(Mapping{0, 1, 0x1000, kRw}));
    REQUIRE(c.jump(0).has_value());
    for (const PageProperty& p : bad) {
      CHECK(error_of(c.protect_next(kPageSize, [&](PageProperty& q) { q = p; })) ==
            PageTableError::InvalidItem);
      CHECK(c.virt_addr() == 0);
    }
    CHECK(diff_text(model, pt).empty());
  }

  // ---- kernel items, TLB ordering, views (items 69-71) ----

  TEST_CASE("regression_vostd_625_kernel_items_keep_their_kind") {
    // vostd #625: KernelPtConfig::item_from_raw must recognise a tracked item by AVAIL1 and
    // strip AVAIL1 from its property; an untracked item never carries it.
    boot_for_models();
    auto kpt = new_kernel_page_table().value();
    const Vaddr va = kKernelBaseVaddr + kSz1G;  // outside the (private table's empty) linear map
    DynFrame frame(FrameAllocOptions().alloc_frame().value());
    const Paddr fpa = frame.paddr();
    const PageProperty prop =
        PageProperty::new_with(PageFlags::RW, CachePolicy::Writeback, PrivilegedPageFlags::GLOBAL);
    const PageProperty with_avail1{prop.flags, prop.cache,
                                   prop.priv_flags | PrivilegedPageFlags::AVAIL1};
    // Conversions.
    const RawItem raw = KernelPtConfig::item_raw_info(KernelItem::tracked(frame, with_avail1));
    CHECK(raw.prop == with_avail1);
    const RawItem raw_u =
        KernelPtConfig::item_raw_info(KernelItem::untracked(kSz2M, 2, with_avail1));
    CHECK(raw_u.prop == prop);
    CHECK_FALSE(KernelPtConfig::item_from_raw(raw_u).is_tracked());
    {
      auto g = disable_preempt();
      auto c = kpt.cursor_mut(g, VaRange{va, va + 2 * kSz2M}).value();
      REQUIRE(c.map(KernelItem::tracked(frame, prop)).has_value());
      REQUIRE(c.jump(va + kSz2M).has_value());
      REQUIRE(c.map(KernelItem::untracked(kSz2M, 2, with_avail1)).has_value());
      REQUIRE(c.jump(va).has_value());
      auto q = c.query();
      REQUIRE(q.has_value());
      REQUIRE(q->item.has_value());
      CHECK(q->item->tracked);
      CHECK(q->item->prop == prop);
      REQUIRE(c.jump(va + kSz2M).has_value());
      q = c.query();
      REQUIRE(q->item.has_value());
      CHECK_FALSE(q->item->tracked);
      CHECK(q->item->prop == prop);
    }
    auto mappings = check::interpret(kpt);
    REQUIRE(mappings.size() == 2);
    CHECK(mappings[0].prop == with_avail1);  // the PTE marks the tracked frame
    CHECK(mappings[1].prop == prop);
    CHECK(frame.reference_count() == 2);
    {
      auto g = disable_preempt();
      auto c = kpt.cursor_mut(g, VaRange{va, va + 2 * kSz2M}).value();
      auto f = c.take_next(kPageSize);
      REQUIRE(f.has_value());
      REQUIRE(f->has_value());
      auto& m = std::get<MappedFrag<KernelPtConfig>>(**f);
      REQUIRE(m.item->is_tracked());
      CHECK(m.item->frame().paddr() == fpa);
      CHECK(m.item->prop() == prop);
    }
    rcu_barrier();
    CHECK(frame.reference_count() == 1);
  }

  TEST_CASE("regression_d3_70_tlb_ordering_and_range_flushes") {
    ActiveSpace s;
    set_tlb_check_mode(TlbCheckMode::Count);
    const std::uint64_t stale_before = tlb_stale_hits();
    const Vaddr v = 0x40000;
    for (int i = 0; i < 4; ++i) map_frame(*s.space, v + kPageSize * i, alloc_frame());
    for (int i = 0; i < 4; ++i) (void)read_byte(*s.space, v + kPageSize * i);  // fill the TLB
    auto misses_for = [&](std::initializer_list<int> pages) {
      const std::uint64_t m0 = tlb_misses();
      for (int i : pages) (void)read_byte(*s.space, v + kPageSize * i);
      return tlb_misses() - m0;
    };
    CHECK(misses_for({0, 1, 2, 3}) == 0);
    {
      // A range flush removes every entry overlapping the range (vostd's model: only r.start).
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, VaRange{v, v + 4 * kPageSize}).value();
      c.flusher().issue_tlb_flush(
          TlbFlushOp::for_range(VaRange{v + kPageSize, v + 3 * kPageSize}).value());
      c.flusher().dispatch_tlb_flush();
    }
    CHECK(misses_for({0, 3}) == 0);
    CHECK(misses_for({1, 2}) == 2);
    {
      // All clears everything (vostd's model: no change).
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, VaRange{v, v + 4 * kPageSize}).value();
      c.flusher().issue_tlb_flush(TlbFlushOp::for_all());
      c.flusher().dispatch_tlb_flush();
    }
    CHECK(misses_for({0, 1, 2, 3}) == 4);
    // After an unmap (which dispatches), the stale entry is gone and the frame is not reused
    // through it.
    CHECK(unmap(*s.space, v, kPageSize).value() == 1);
    auto r = s->reader(v, 1).value();
    std::vector<std::byte> b(1);
    VmWriter<Infallible> w{std::span<std::byte>(b)};
    CHECK(error_of(r.read_fallible(w)).has_value());
    CHECK(tlb_stale_hits() == stale_before);
    CHECK(invariants({s.space.get()}).empty());
  }

  TEST_CASE("regression_d3_71_mapping_at_the_view_end_survives") {
    // vostd's take_view(v, l) loses a TLB mapping that starts exactly at v + l. A flush of
    // [v, v + l) must leave the entry of the page at v + l alone, and a copy over [v, v + l)
    // must not touch it.
    ActiveSpace s;
    const Vaddr v = 0x80000;
    map_frame(*s.space, v, alloc_frame());
    map_frame(*s.space, v + kPageSize, alloc_frame());
    (void)read_byte(*s.space, v);
    (void)read_byte(*s.space, v + kPageSize);
    {
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, VaRange{v, v + kPageSize}).value();
      c.flusher().issue_tlb_flush(TlbFlushOp::for_range(VaRange{v, v + kPageSize}).value());
      c.flusher().dispatch_tlb_flush();
    }
    const std::uint64_t m0 = tlb_misses();
    (void)read_byte(*s.space, v + kPageSize);
    CHECK(tlb_misses() == m0);  // still cached
    {
      auto w = s->writer(v, kPageSize).value();
      std::vector<std::byte> ones(kPageSize, std::byte{1});
      VmReader<Infallible> src{std::span<const std::byte>(ones)};
      REQUIRE(src.read_fallible(w).has_value());
    }
    CHECK(read_byte(*s.space, v + kPageSize) == 0);
    CHECK(read_byte(*s.space, v + kPageSize - 1) == 1);
    CHECK(invariants({s.space.get()}).empty());
  }
}
