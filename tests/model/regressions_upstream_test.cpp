// Regressions (model_regressions_util.hpp): the other known upstream bugs (OSTD and ACE issues).
#include "model_regressions_util.hpp"

TEST_SUITE("model") {
  // ---- the other known upstream bugs ----

  TEST_CASE_TEMPLATE("regression_ostd_3731_cursor_over_exactly_one_huge_entry", P, ALL_FORMATS) {
    // OSTD #3731: a cursor over exactly one huge entry ([2M, 4M)) locked one level too low, so
    // mapping the 2 MiB item there panicked. Same for 1 GiB.
    boot_for_models();
    using C = RawPtConfig<P, 3>;
    auto pt = new_table<C>();
    auto g = disable_preempt();
    {
      auto c = pt.cursor_mut(g, VaRange{kSz2M, 2 * kSz2M}).value();
      CHECK(c.guard_level() == 2);
      CHECK(c.map(RawItem{kSz2M, 2, kRw}).has_value());
    }
    {
      auto c = pt.cursor_mut(g, VaRange{kSz1G, 2 * kSz1G}).value();
      CHECK(c.guard_level() == 3);
      CHECK(c.map(RawItem{kSz1G, 3, kRw}).has_value());
    }
    AbstractModel model(check::model_config<C>());
    REQUIRE(model.map(Mapping{kSz2M, 2, kSz2M, kRw}));
    REQUIRE(model.map(Mapping{kSz1G, 3, kSz1G, kRw}));
    CHECK(diff_text(model, pt).empty());
  }

  TEST_CASE("regression_ostd_3731_vm_space_maps_a_2m_segment_through_an_exact_cursor") {
    ActiveSpace s;
    USegment huge = alloc_huge();
    const Paddr p = huge.paddr();
    map_huge(*s.space, kSz2M, std::move(huge));
    CHECK(s->page_table().page_walk(kSz2M + 0x1234)->first == p + 0x1234);
    CHECK(unmap(*s.space, kSz2M, kSz2M).value() == 512);
    CHECK(invariants({s.space.get()}).empty());
  }

  TEST_CASE("regression_ostd_3587_segment_slice_overflow") {
    // OSTD #3587: Segment::slice did not check its bounds and wrapped; a slice of a saturated
    // frame must not wrap its count either.
    boot_for_models();
    auto seg = FrameAllocOptions().alloc_segment(4).value();
    const std::size_t wrap = std::numeric_limits<std::size_t>::max() - (kPageSize - 1);
    CHECK(error_of(seg.slice(kPageSize, wrap)) == Error::InvalidArgs);
    CHECK(error_of(seg.slice(wrap, kPageSize)) == Error::InvalidArgs);
    CHECK(error_of(seg.slice(2 * kPageSize, wrap + 2 * kPageSize)) ==
          Error::InvalidArgs);  // end wraps to 4 KiB
    CHECK(error_of(seg.slice(0, 5 * kPageSize)) == Error::InvalidArgs);
    for (FrameRef<NoMeta> f : seg) CHECK(f->reference_count() == 1);
    if (!kUnderTsan) {
      CHECK(dies_with(
          [&] {
            meta_slot(seg.paddr() + kPageSize)->ref_count_ref().store(kRefCountMax);
            (void)seg.slice(0, 2 * kPageSize);
          },
          "REF_COUNT_MAX"));
    }
  }

  TEST_CASE("regression_ace_bug1_no_block_past_the_region_end") {
    // ACE bug 1 (docs/spec_cases.md case 57): the fit check used the end of confidential memory,
    // not the region end, so a 2 MiB token could start at a 16 KiB region and run past it.
    boot_for_models();
    auto area = global_frame_allocator().alloc(FrameLayout{2 * kSz2M, 2 * kSz2M});
    REQUIRE(area.has_value());
    {
      BuddyFrameAllocator local(num_cpus());
      local.add_free_memory(*area, 16 * 1024);  // owned, unused memory follows the region
      local.drain_caches();
      CHECK(local.free_bytes() == 16 * 1024);
      CHECK_FALSE(local.alloc(FrameLayout{kSz2M, kSz2M}).has_value());
      std::vector<Paddr> got;
      while (auto pa = local.alloc(FrameLayout{kPageSize, kPageSize})) got.push_back(*pa);
      CHECK(got.size() == 4);
      for (Paddr pa : got) CHECK(pa < *area + 16 * 1024);
    }
    global_frame_allocator().dealloc(*area, 2 * kSz2M);
  }

  TEST_CASE("regression_ace_bug2_tail_past_a_2m_block_is_usable") {
    // ACE bug 2 (docs/spec_cases.md case 58): the size-decrease loop stopped one size too early
    // and wasted the tail of a region S .. S + 2 MiB + 16 KiB (also + 4 KiB and + 20 KiB).
    boot_for_models();
    auto area = global_frame_allocator().alloc(FrameLayout{4 * kSz2M, 4 * kSz2M});
    REQUIRE(area.has_value());
    const Paddr s = *area + kSz2M;  // 2 MiB- but not 4 MiB-aligned
    for (std::size_t tail :
         {std::size_t{16 * 1024}, std::size_t{kPageSize}, std::size_t{20 * 1024}}) {
      CAPTURE(tail);
      BuddyFrameAllocator local(num_cpus());
      local.add_free_memory(s, kSz2M + tail);
      local.drain_caches();
      CHECK(local.free_bytes() == kSz2M + tail);
      auto big = local.alloc(FrameLayout{kSz2M, kSz2M});
      REQUIRE(big.has_value());
      CHECK(*big == s);
      std::size_t rest = 0;
      while (auto pa = local.alloc(FrameLayout{kPageSize, kPageSize})) {
        CHECK(*pa >= s + kSz2M);
        CHECK(*pa < s + kSz2M + tail);
        rest += kPageSize;
      }
      CHECK(rest == tail);
    }
    global_frame_allocator().dealloc(*area, 4 * kSz2M);
  }
}
