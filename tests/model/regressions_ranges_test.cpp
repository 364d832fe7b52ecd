// Regressions (model_regressions_util.hpp): boundary addresses and ranges, zero lengths and
// wrap-around (docs/spec_cases.md cases 37-41 and 50-52).
#include "model_regressions_util.hpp"

TEST_SUITE("model") {
  // ---- boundary addresses and ranges (items 37-41) ----

  TEST_CASE("regression_d3_37_reader_writer_range_bounds") {
    ActiveSpace s;
    const Vaddr top = kMaxUserspaceVaddr;                // 0x7FFF_FFFF_F000
    CHECK(s->reader(0x1000, top - 0x1000).has_value());  // ends exactly at MAX_USERSPACE_VADDR
    CHECK(s->writer(0x1000, top - 0x1000).has_value());
    CHECK(error_of(s->reader(0x1000, top - 0x1000 + 1)) == Error::AccessDenied);
    CHECK(error_of(s->writer(0x1000, top - 0x1000 + 1)) == Error::AccessDenied);
    CHECK(error_of(s->reader(UINT64_MAX - 10, 20)) == Error::AccessDenied);  // wraps
    CHECK(error_of(s->writer(UINT64_MAX - 10, 20)) == Error::AccessDenied);
    CHECK(error_of(s->reader_writer(UINT64_MAX - 10, 20)) == Error::AccessDenied);
    // Our decided contract (vm_space.hpp): page 0 is an ordinary address; length 0 is empty.
    CHECK(s->reader(0, kPageSize).has_value());
    auto empty = s->reader(0x1000, 0);
    REQUIRE(empty.has_value());
    CHECK(empty->remain() == 0);
    std::vector<std::byte> buf(16);
    VmWriter<Infallible> out{std::span<std::byte>(buf)};
    auto n = empty->read_fallible(out);
    REQUIRE(n.has_value());
    CHECK(*n == 0);
    // Not the current page table.
    auto other = VmSpace::create().value();
    CHECK(error_of(other->reader(0x1000, 8)) == Error::AccessDenied);
    CHECK(error_of(other->writer(0x1000, 8)) == Error::AccessDenied);
  }

  TEST_CASE_TEMPLATE("regression_ostd_1285_and_3580_cursor_ranges_never_underflow", P,
                     ALL_FORMATS) {
    // OSTD #1285: va.end == 0 underflowed `end - 1`; #3580 / vostd #603: `2..0` and other
    // reversed ranges did the same in is_valid_range. Every bad range is an error, in vostd's
    // order (InvalidVaddrRange before UnalignedVaddr).
    boot_for_models();
    using C = RawPtConfig<P>;
    auto pt = new_table<C>();
    const Vaddr end = vaddr_bounds<C>().last + 1;  // 2^47, or 2^38 for Sv39
    auto g = disable_preempt();
    auto open = [&](Vaddr s, Vaddr e) { return error_of(pt.cursor(g, VaRange{s, e})); };
    CHECK(open(0, 0) == PageTableError::InvalidVaddrRange);
    CHECK(open(0x1000, 0) == PageTableError::InvalidVaddrRange);
    CHECK(open(2, 0) == PageTableError::InvalidVaddrRange);
    CHECK(open(0x1000, 0x1000) == PageTableError::InvalidVaddrRange);
    CHECK(open(0x1001, 0x1000) == PageTableError::InvalidVaddrRange);
    CHECK(open(0x1001, 0x2000) == PageTableError::UnalignedVaddr);
    CHECK(open(0x1000, 0x2001) == PageTableError::UnalignedVaddr);
    CHECK(open(0, end) == std::nullopt);
    CHECK(open(0, end + kPageSize) == PageTableError::InvalidVaddrRange);
    CHECK(open(end - kPageSize, end) == std::nullopt);
    CHECK(open(end, end + kPageSize) == PageTableError::InvalidVaddrRange);
    CHECK(open(0xffff'8000'0000'0000ULL, 0xffff'8000'0000'1000ULL) ==
          PageTableError::InvalidVaddrRange);
    CHECK(open(UINT64_MAX - 0xfff, 0) == PageTableError::InvalidVaddrRange);
  }

  TEST_CASE("regression_ostd_1285_vm_space_folds_range_errors_into_access_denied") {
    boot_for_models();
    auto space = VmSpace::create().value();
    auto g = disable_preempt();
    for (VaRange r : {VaRange{0, 0}, VaRange{0x1000, 0}, VaRange{2, 0}, VaRange{0x1001, 0x2000},
                      VaRange{0, (Vaddr{1} << 47) + kPageSize},
                      VaRange{0xffff'8000'0000'0000ULL, 0xffff'8000'0001'0000ULL}}) {
      CAPTURE(r);
      CHECK(error_of(space->cursor(g, r)) == Error::AccessDenied);
      CHECK(error_of(space->cursor_mut(g, r)) == Error::AccessDenied);
    }
    CHECK(space->cursor(g, VaRange{(Vaddr{1} << 47) - kPageSize, Vaddr{1} << 47}).has_value());
  }

  TEST_CASE("regression_d3_39_jump_bounds") {
    boot_for_models();
    using C = RawPtConfig<X86_64Pte>;
    auto pt = new_table<C>();
    auto g = disable_preempt();
    auto c = pt.cursor(g, VaRange{0x10000, 0x20000}).value();
    CHECK(error_of(c.jump(0x20000)) == PageTableError::InvalidVaddr);  // the range end
    CHECK(error_of(c.jump(0xf000)) == PageTableError::InvalidVaddr);
    CHECK(error_of(c.jump(0x10800)) == PageTableError::UnalignedLen);  // OSTD panics
    CHECK(c.virt_addr() == 0x10000);
    CHECK(c.jump(0x1f000).has_value());
    CHECK(c.virt_addr() == 0x1f000);
    CHECK(c.jump(0x10000).has_value());  // the range start
    CHECK(c.virt_addr() == 0x10000);
  }

  TEST_CASE("regression_ostd_3159_len_overflow_is_refused") {
    // vostd assumes va + len <= usize::MAX for unmap (asterinas #3159); we refuse it.
    boot_for_models();
    using C = RawPtConfig<X86_64Pte>;
    auto pt = new_table<C>();
    AbstractModel model(check::model_config<C>());
    const std::uint64_t huge_len = 0 - std::uint64_t{kPageSize};  // 2^64 - 4 KiB
    {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, VaRange{0x2000, 0x10000}).value();
      REQUIRE(c.jump(0x3000).has_value());
      REQUIRE(c.map(RawItem{0x5000, 1, kRw}).has_value());
      REQUIRE(model.map(Mapping{0x3000, 1, 0x5000, kRw}));
      REQUIRE(c.jump(0x2000).has_value());
      CHECK(error_of(c.find_next(huge_len)) == PageTableError::LenOutOfRange);
      CHECK(error_of(c.take_next(huge_len)) == PageTableError::LenOutOfRange);
      CHECK(error_of(c.protect_next(huge_len, [](PageProperty& p) { p.flags = PageFlags::R; })) ==
            PageTableError::LenOutOfRange);
      CHECK(error_of(c.find_next(0xe000 + kPageSize)) ==
            PageTableError::LenOutOfRange);  // end + 4 KiB
      CHECK(error_of(c.find_next(kPageSize - 1)) == PageTableError::UnalignedLen);
      CHECK(c.virt_addr() == 0x2000);
      CHECK(diff_text(model, pt).empty());
      auto found = c.find_next(0xe000);  // va + len == range end
      REQUIRE(found.has_value());
      CHECK(*found == std::optional<Vaddr>(0x3000));
    }
    ActiveSpace s;
    map_frame(*s.space, 0x3000, alloc_frame());
    {
      auto g = disable_preempt();
      auto c = s->cursor_mut(g, VaRange{0x2000, 0x10000}).value();
      CHECK(error_of(c.unmap(huge_len)) == Error::InvalidArgs);
      CHECK(last_page_table_error() == PageTableError::LenOutOfRange);
      CHECK(error_of(c.find_next(huge_len)) == Error::InvalidArgs);
    }
    CHECK(s->page_table().page_walk(0x3000).has_value());
    CHECK(unmap(*s.space, 0x3000, kPageSize).value() == 1);
  }

  TEST_CASE("regression_d3_41_map_argument_checks") {
    boot_for_models();
    using C = RawPtConfig<X86_64Pte>;  // leaves up to 2 MiB, like OSTD's x86-64
    auto pt = new_table<C>();
    auto g = disable_preempt();
    {
      auto c = pt.cursor_mut(g, VaRange{kSz2M, 3 * kSz2M + 0x1000}).value();
      REQUIRE(c.jump(3 * kSz2M).has_value());  // 2 MiB-aligned, one page before the end
      CHECK(error_of(c.map(RawItem{0, 2, kRw})) ==
            PageTableError::InvalidItem);                 // would end past the range
      CHECK(c.map(RawItem{0x1000, 1, kRw}).has_value());  // the last page
      CHECK(error_of(c.map(RawItem{0x2000, 1, kRw})) ==
            PageTableError::InvalidVaddr);  // at the end
      REQUIRE(c.jump(kSz2M + 0x1000).has_value());
      CHECK(error_of(c.map(RawItem{0, 2, kRw})) == PageTableError::InvalidItem);  // misaligned va
      REQUIRE(c.jump(kSz2M).has_value());
      CHECK(error_of(c.map(RawItem{0x1000, 2, kRw})) ==
            PageTableError::InvalidItem);                                         // misaligned pa
      CHECK(error_of(c.map(RawItem{0, 3, kRw})) == PageTableError::InvalidItem);  // 1 GiB on x86
      CHECK(error_of(c.map(RawItem{0, 0, kRw})) == PageTableError::InvalidItem);  // no level 0
      CHECK(error_of(c.map(RawItem{0, 9, kRw})) == PageTableError::InvalidItem);
      CHECK(c.virt_addr() == kSz2M);
    }
    {
      // An item above the cursor's guard level: a cursor over one 4 KiB page locks a level-1
      // node, so a 2 MiB item cannot go there even at an aligned address.
      auto c = pt.cursor_mut(g, VaRange{4 * kSz2M, 4 * kSz2M + kPageSize}).value();
      CHECK(c.guard_level() == 1);
      CHECK(error_of(c.map(RawItem{0, 2, kRw})) == PageTableError::InvalidItem);
    }
    // A top level that cannot be unmapped takes no top-level item (kernel tables).
    using Pinned = RawPtConfig<RiscvSv48Pte, 4, false>;
    using Free = RawPtConfig<RiscvSv48Pte, 4, true>;
    auto pinned = new_table<Pinned>();
    auto free = new_table<Free>();
    auto cp = pinned.cursor_mut(g, VaRange{0, kSz512G}).value();
    CHECK(error_of(cp.map(RawItem{0, 4, kRw})) == PageTableError::InvalidItem);
    auto cf = free.cursor_mut(g, VaRange{0, kSz512G}).value();
    CHECK(cf.map(RawItem{0, 4, kRw}).has_value());
  }

  TEST_CASE_TEMPLATE("regression_map_level_out_of_range_shifts_no_size", P, ALL_FORMATS) {
    // Found by vmspace-fuzz: CursorMut::map derived the item's size (4 KiB << 9 * (level - 1))
    // before checking the level, a shift by 2^32 - 9 bits for level 0 (undefined behaviour that
    // UBSan reports; the ASan+UBSan CI job halts on it). Every out-of-range level must be
    // refused with InvalidItem, nothing changed, the cursor in place.
    boot_for_models();
    using C = RawPtConfig<P, P::kMaxLeafLevel>;
    auto pt = new_table<C>();
    auto g = disable_preempt();
    auto c = pt.cursor_mut(g, VaRange{0, kSz1G}).value();  // inside every format's lower half
    for (unsigned level : {0u, P::Consts::kNrLevels + 1u, 8u, 64u, 255u}) {
      CAPTURE(level);
      CHECK(error_of(c.map(RawItem{0, static_cast<PagingLevel>(level), kRw})) ==
            PageTableError::InvalidItem);
      CHECK(c.virt_addr() == 0);
    }
    CHECK(check::interpret(pt).empty());
  }

  // ---- zero length and wraparound (items 50-52) ----

  TEST_CASE("regression_d3_50_zero_lengths_change_nothing") {
    ActiveSpace s;
    map_frame(*s.space, 0x3000, alloc_frame());
    auto g = disable_preempt();
    auto c = s->cursor_mut(g, VaRange{0x3000, 0x5000}).value();
    auto u = c.unmap(0);
    REQUIRE(u.has_value());
    CHECK(*u == 0);
    CHECK(c.virt_addr() == 0x3000);
    auto f = c.find_next(0);
    REQUIRE(f.has_value());
    CHECK_FALSE(f->has_value());
    CHECK(c.virt_addr() == 0x3000);
    auto p = c.protect_next(0, [](PageFlags& fl, CachePolicy&) { fl = PageFlags::None; });
    REQUIRE(p.has_value());
    CHECK_FALSE(p->has_value());
    CHECK(c.virt_addr() == 0x3000);
    CHECK(s->page_table().page_walk(0x3000)->second == kRw);
  }

  TEST_CASE_TEMPLATE("regression_verified_pt_va_aliasing", P, ALL_FORMATS) {
    // verified-pt's index computation drops the address bits above the table (proof hole
    // lemma_vaddr_range_from_path): map(2^48) maps VA 0, and after map(0), query(2^48) answers.
    // Cursors refuse such ranges; the software walk must not alias them either.
    boot_for_models();
    using C = RawPtConfig<P>;
    using K = ConstsOf<C>;
    auto pt = new_table<C>();
    const Vaddr alias = Vaddr{1} << (12 + 9 * K::kNrLevels);  // 2^48, or 2^39 for Sv39
    {
      auto g = disable_preempt();
      CHECK(error_of(pt.cursor_mut(g, VaRange{alias, alias + kPageSize})) ==
            PageTableError::InvalidVaddrRange);
      auto c = pt.cursor_mut(g, VaRange{0, kPageSize}).value();
      REQUIRE(c.map(RawItem{0x5000, 1, kRw}).has_value());
    }
    CHECK(pt.page_walk(0x123).has_value());
    CHECK_FALSE(pt.page_walk(alias).has_value());
    CHECK_FALSE(pt.page_walk(alias + 0x123).has_value());
    CHECK_FALSE(pt.page_walk(Vaddr{1} << 63).has_value());
    CHECK_FALSE(pt.page_walk(0xffff'0000'0000'0000ULL).has_value());
  }

  TEST_CASE("regression_d3_52_covering_unmap_frees_empty_tables") {
    // verified-pt prunes empty tables on unmap; OSTD (and we) keep them until an unmap covers
    // their whole range, which detaches them: the table is back to its root alone.
    boot_for_models();
    using C = RawPtConfig<X86_64Pte>;
    auto pt = new_table<C>();
    CHECK(count_nodes(pt) == 1);
    auto g = disable_preempt();
    {
      auto c = pt.cursor_mut(g, VaRange{0x1000, 0x2000}).value();
      REQUIRE(c.map(RawItem{0x5000, 1, kRw}).has_value());
    }
    CHECK(count_nodes(pt) == 4);
    {
      auto c = pt.cursor_mut(g, VaRange{0x1000, 0x2000}).value();
      auto f = c.take_next(kPageSize);
      REQUIRE(f.has_value());
      REQUIRE(f->has_value());
    }
    CHECK(count_nodes(pt) == 4);  // the empty nodes stay
    {
      auto c = pt.cursor_mut(g, VaRange{0, kSz512G}).value();
      auto f = c.take_next(kSz512G);
      REQUIRE(f.has_value());
      REQUIRE(f->has_value());
      const auto* stray = std::get_if<StrayPageTableFrag<C>>(&**f);
      REQUIRE(stray != nullptr);
      CHECK(stray->num_frames == 0);
      CHECK(stray->len == kSz512G);
    }
    CHECK(count_nodes(pt) == 1);
  }
}
