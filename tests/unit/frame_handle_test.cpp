// Frames (frame_scenario_util.hpp): Frame handles, borrowed and raw handles, and the allocator
// scenarios.
#include "frame_scenario_util.hpp"

TEST_SUITE("unit") {
  // ---- frames ----

  TEST_CASE("frame_allocation") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42});
    REQUIRE(frame.has_value());
    CHECK(frame->meta().value == 42);
    CHECK(frame->reference_count() == 1);
    CHECK(frame->size() == kPageSize);
    CHECK(frame->map_level() == 1);
    CHECK(is_aligned(frame->paddr(), kPageSize));
    CHECK(frame->paddr() != 0);
    CHECK(frame->paddr() < max_paddr());
    CHECK(std::string(frame->dyn_meta().type_name()) == "MockFrameMeta");
    CHECK(frame->dyn_meta().is<MockFrameMeta>());
    CHECK(frame->dyn_meta().downcast<MockFrameMeta>() == &frame->meta());
    CHECK(frame->dyn_meta().downcast<MockUFrameMeta>() == nullptr);
  }

  TEST_CASE("frame_clone") {
    FreeBytesUnchanged no_leak;
    auto frame1 = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42});
    REQUIRE(frame1.has_value());
    Frame<MockFrameMeta> frame2 = *frame1;
    CHECK(frame1->paddr() == frame2.paddr());
    CHECK(*frame1 == frame2);
    CHECK(frame1->meta().value == frame2.meta().value);
    CHECK(&frame1->meta() == &frame2.meta());
    CHECK(frame1->reference_count() == 2);
    CHECK(frame2.reference_count() == 2);
    {
      Frame<MockFrameMeta> frame3 = frame2;
      CHECK(frame3.reference_count() == 3);
    }
    CHECK(frame2.reference_count() == 2);
    Frame<MockFrameMeta> moved = std::move(frame2);
    CHECK(frame2.is_empty());             // NOLINT(bugprone-use-after-move): documented state
    CHECK(moved.reference_count() == 2);  // a move adds no reference
  }

  TEST_CASE("frame_drop") {
    FreeBytesUnchanged no_leak;
    auto cpu = bind_bsp();
    Paddr paddr_before = 0;
    {
      auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42});
      REQUIRE(frame.has_value());
      CHECK(frame->reference_count() == 1);
      paddr_before = frame->paddr();
    }
    CHECK(slot_ref_count(paddr_before) != 1);  // no longer in use
    auto new_frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{43});
    REQUIRE(new_frame.has_value());
    CHECK(new_frame->paddr() == paddr_before);
    CHECK(new_frame->reference_count() == 1);
    CHECK(new_frame->meta().value == 43);
  }

  TEST_CASE("frame_drop_runs_on_drop_with_the_page_contents") {
    FreeBytesUnchanged no_leak;
    PageWitness::seen = {};
    {
      auto frame = FrameAllocOptions().alloc_frame_with(PageWitness{7});
      REQUIRE(frame.has_value());
      REQUIRE(frame->write_val<std::uint64_t>(0, 0x1122334455667788).has_value());
      REQUIRE(frame->write_val<std::uint64_t>(kPageSize - 8, 0x99aabbccddeeff00).has_value());
      Frame<PageWitness> clone = *frame;
      (void)clone;
    }
    CHECK(PageWitness::seen.calls == 1);  // once, when the last handle went
    CHECK(PageWitness::seen.tag == 7);
    CHECK(PageWitness::seen.remain == kPageSize);
    CHECK(PageWitness::seen.first_word == 0x1122334455667788);
    CHECK(PageWitness::seen.last_word == 0x99aabbccddeeff00);
  }

  TEST_CASE("frame_last_drop_starts_a_new_generation") {
    FreeBytesUnchanged no_leak;
    std::optional<Frame<NoMeta>> frame(FrameAllocOptions().alloc_frame().value());
    const Paddr pa = frame->paddr();
    const std::uint32_t generation = frame_generation(pa);
    std::optional<Frame<NoMeta>> clone(*frame);
    frame.reset();  // one handle left: still in use
    CHECK(frame_generation(pa) == generation);
    clone.emplace(Frame<NoMeta>::from_raw(std::move(*clone).into_raw()));  // no drop either
    CHECK(frame_generation(pa) == generation);
    clone.reset();
    CHECK(frame_generation(pa) == generation + 1);
  }

  TEST_CASE("frame_to_uframe") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockUFrameMeta{42});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    UFrame uframe = std::move(*frame);
    CHECK(uframe.size() == kPageSize);
    CHECK(uframe.paddr() == pa);
    CHECK(uframe.reference_count() == 1);
    CHECK(uframe.dyn_meta().is_untyped());
    CHECK(uframe.dyn_meta().downcast<MockUFrameMeta>()->value == 42);
  }

  TEST_CASE("frame_conversions") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    DynFrame dyn_frame = std::move(*frame);
    CHECK_FALSE(dyn_frame.dyn_meta().is_untyped());
    CHECK(dyn_frame.reference_count() == 1);

    // Failed narrowing leaves the source as it was.
    CHECK_FALSE(Frame<MockUFrameMeta>::try_from(dyn_frame).has_value());
    CHECK_FALSE(UFrame::try_from(dyn_frame).has_value());
    CHECK_FALSE(Frame<NoMeta>::try_from(dyn_frame).has_value());
    REQUIRE_FALSE(dyn_frame.is_empty());
    CHECK(dyn_frame.paddr() == pa);
    CHECK(dyn_frame.reference_count() == 1);

    auto typed = Frame<MockFrameMeta>::try_from(dyn_frame);
    REQUIRE(typed.has_value());
    CHECK(dyn_frame.is_empty());
    CHECK(typed->meta().value == 42);
    CHECK(typed->paddr() == pa);
    CHECK(typed->reference_count() == 1);

    // Copying conversions add a reference.
    DynFrame dyn_copy = *typed;
    CHECK(typed->reference_count() == 2);
  }

  TEST_CASE("frame_conversions_of_untyped_frames") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockUFrameMeta{9});
    REQUIRE(frame.has_value());
    UFrame uframe = std::move(*frame);
    DynFrame dyn = std::move(uframe);
    CHECK(dyn.dyn_meta().is_untyped());

    auto back_to_u = UFrame::try_from(dyn);
    REQUIRE(back_to_u.has_value());
    CHECK(dyn.is_empty());
    // A UFrame of other untyped metadata does not narrow to NoMeta; the source stays.
    CHECK_FALSE(Frame<NoMeta>::try_from(*back_to_u).has_value());
    REQUIRE_FALSE(back_to_u->is_empty());
    auto typed = Frame<MockUFrameMeta>::try_from(*back_to_u);
    REQUIRE(typed.has_value());
    CHECK(typed->meta().value == 9);
    CHECK(typed->reference_count() == 1);

    // An empty handle converts to nothing.
    CHECK_FALSE(Frame<MockUFrameMeta>::try_from(dyn).has_value());
  }

  TEST_CASE("frame_from_in_use_adds_a_reference_to_a_live_frame") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{5});
    REQUIRE(frame.has_value());
    auto again = DynFrame::from_in_use(frame->paddr());
    REQUIRE(again.has_value());
    CHECK(frame->reference_count() == 2);
    auto typed = Frame<MockFrameMeta>::try_from(*again);
    REQUIRE(typed.has_value());
    CHECK(typed->meta().value == 5);
    CHECK(*typed == *frame);
  }

  // ---- borrowed and raw handles ----

  TEST_CASE("frame_ref_preserves_refcnt") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockUFrameMeta{42});
    REQUIRE(frame.has_value());
    CHECK(frame->reference_count() == 1);
    {
      FrameRef<MockUFrameMeta> frame_ref = frame->borrow();
      CHECK(frame_ref->meta().value == 42);
      CHECK(frame_ref->reference_count() == 1);
      CHECK(frame->reference_count() == 1);
      FrameRef<MockUFrameMeta> copy = frame_ref;
      CHECK(copy == frame_ref);
      CHECK(frame->reference_count() == 1);
      Frame<MockUFrameMeta> owned = copy.to_owned();
      CHECK(frame->reference_count() == 2);
    }
    CHECK(frame->reference_count() == 1);
  }

  TEST_CASE("frame_ref_equality_compiles_and_compares_frames") {
    // Regression: FrameRef's operator== read Frame's private slot_ and did not compile once
    // instantiated.
    FreeBytesUnchanged no_leak;
    auto a = FrameAllocOptions().alloc_frame();
    auto b = FrameAllocOptions().alloc_frame();
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    CHECK(a->borrow() == a->borrow());
    CHECK(a->borrow() == FrameRef<NoMeta>::borrow_paddr(a->paddr()));
    CHECK_FALSE(a->borrow() == b->borrow());
  }

  TEST_CASE("frame_impls_non_null_ptr") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockUFrameMeta{42});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    UFrame uframe = std::move(*frame);

    const Paddr raw = std::move(uframe).into_raw();
    CHECK(raw == pa);
    CHECK(uframe.is_empty());        // NOLINT(bugprone-use-after-move): documented state
    CHECK(slot_ref_count(pa) == 1);  // the reference was leaked, not dropped

    {
      FrameRef<MockUFrameMeta> frame_ref = FrameRef<MockUFrameMeta>::borrow_paddr(raw);
      CHECK(frame_ref.paddr() == pa);
      CHECK(frame_ref->meta().value == 42);
      CHECK(slot_ref_count(pa) == 1);
    }
    Frame<MockUFrameMeta> from_raw = Frame<MockUFrameMeta>::from_raw(raw);
    CHECK(from_raw.paddr() == pa);
    CHECK(from_raw.meta().value == 42);
    CHECK(from_raw.reference_count() == 1);
  }

  // ---- allocator scenarios ----

  TEST_CASE("test_alloc_dealloc") {
    FreeBytesUnchanged no_leak;
    std::vector<Frame<NoMeta>> remember;
    for (int round = 0; round < 10; ++round) {
      for (int i = 0; i < 10; ++i) {
        auto frame = FrameAllocOptions().alloc_frame();
        REQUIRE(frame.has_value());
        if (i % 3 == 0) remember.push_back(std::move(*frame));
      }
      {
        auto segment = FrameAllocOptions().zeroed(false).alloc_segment(10);
        REQUIRE(segment.has_value());
        CHECK(segment->nframes() == 10);
      }
      remember.pop_back();
    }
    CHECK(remember.size() == 30);
    // Every kept frame is distinct and alive.
    std::vector<Paddr> pas;
    for (auto& f : remember) {
      CHECK(f.reference_count() == 1);
      pas.push_back(f.paddr());
    }
    std::sort(pas.begin(), pas.end());
    CHECK(std::adjacent_find(pas.begin(), pas.end()) == pas.end());
  }

  TEST_CASE("frame_allocator_alloc_layout_match") {
    FreeBytesUnchanged no_leak;
    const FrameLayout layouts[] = {
        {kPageSize, kPageSize},         {2 * kPageSize, kPageSize},
        {3 * kPageSize, kPageSize},     {4 * kPageSize, kPageSize},
        {2 * kPageSize, 2 * kPageSize}, {4 * kPageSize, 4 * kPageSize},
        {8 * kPageSize, 8 * kPageSize}, {16 * kPageSize, 16 * kPageSize},
    };
    for (const FrameLayout& layout : layouts) {
      CAPTURE(layout.size);
      CAPTURE(layout.align);
      auto allocated = global_frame_allocator().alloc(layout);
      REQUIRE(allocated.has_value());
      CHECK(*allocated % layout.align == 0);
      for (std::size_t offset = 0; offset < layout.size; offset += kPageSize) {
        CAPTURE(offset);
        CHECK(slot_ref_count(*allocated + offset) == kRefCountUnused);
        CHECK(meta_slot(*allocated + offset)->in_list_ref().load() == 0);
        auto frame = UniqueFrame<NoMeta>::from_unused(*allocated + offset, NoMeta{});
        REQUIRE(frame.has_value());
        std::move(*frame).reset_as_unused();
      }
      global_frame_allocator().dealloc(*allocated, layout.size);
    }
  }
}
