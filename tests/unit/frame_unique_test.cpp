// Frames (frame_scenario_util.hpp): unique frames.
#include "frame_scenario_util.hpp"

TEST_SUITE("unit") {
  // ---- unique frames ----

  TEST_CASE("unique_frame_from_unused_is_sole_owner") {
    FreeBytesUnchanged no_leak;
    const Paddr pa = take_unused_frame();
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{3});
    REQUIRE(unique.has_value());
    CHECK(unique->paddr() == pa);
    CHECK(unique->size() == kPageSize);
    CHECK(unique->level() == 1);
    CHECK(unique->reference_count() == kRefCountUnique);
    CHECK(unique->meta().value == 3);
    // Nobody else can get at it.
    CHECK(DynFrame::from_in_use(pa).error() == GetFrameError::Unique);
    CHECK(Frame<MockFrameMeta>::from_unused(pa, MockFrameMeta{}).error() == GetFrameError::Unique);
    CHECK(UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{}).error() ==
          GetFrameError::Unique);
    // Dropping it gives the frame to the global allocator (checked by no_leak).
  }

  TEST_CASE("unique_frame_meta_mut_changes_the_metadata") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockUFrameMeta{1});
    REQUIRE(frame.has_value());
    auto unique = UniqueFrame<MockUFrameMeta>::try_from(*frame);
    REQUIRE(unique.has_value());
    unique->meta_mut().value = 77;
    CHECK(unique->meta().value == 77);
    CHECK(unique->dyn_meta().downcast<MockUFrameMeta>()->value == 77);
    // Untyped unique frames do I/O too.
    REQUIRE(unique->write_val<std::uint32_t>(16, 0xfeedu).has_value());
    CHECK(unique->read_val<std::uint32_t>(16).value() == 0xfeedu);
    Frame<MockUFrameMeta> shared = std::move(*unique).into_frame();
    CHECK(shared.meta().value == 77);
    CHECK(shared.read_val<std::uint32_t>(16).value() == 0xfeedu);
  }

  TEST_CASE("unique_frame_repurpose_runs_the_old_on_drop") {
    FreeBytesUnchanged no_leak;
    TypedDropCounter::drops = 0;
    PageWitness::seen = {};
    const Paddr pa = take_unused_frame();
    auto unique = UniqueFrame<PageWitness>::from_unused(pa, PageWitness{11});
    REQUIRE(unique.has_value());
    REQUIRE(unique->write_val<std::uint64_t>(0, 0xabcdef).has_value());

    UniqueFrame<TypedDropCounter> repurposed = std::move(*unique).repurpose(TypedDropCounter{5});
    CHECK(PageWitness::seen.calls == 1);  // the old metadata's on_drop ran, once
    CHECK(PageWitness::seen.tag == 11);
    CHECK(PageWitness::seen.first_word == 0xabcdef);
    CHECK(repurposed.paddr() == pa);
    CHECK(repurposed.reference_count() == kRefCountUnique);  // never left sole ownership
    CHECK(repurposed.meta().payload == 5);
    CHECK(std::string(repurposed.dyn_meta().type_name()) == "TypedDropCounter");
    CHECK(repurposed.dyn_meta().is<TypedDropCounter>());
    CHECK(TypedDropCounter::drops == 0);
    { UniqueFrame<TypedDropCounter> gone = std::move(repurposed); }
    CHECK(TypedDropCounter::drops == 1);
    CHECK(PageWitness::seen.calls == 1);
  }

  TEST_CASE("unique_frame_reset_as_unused_keeps_the_frame_out_of_the_allocator") {
    FreeBytesUnchanged no_leak;
    PageWitness::seen = {};
    const Paddr pa = take_unused_frame();
    const std::uint64_t free_before = global_frame_allocator().free_bytes();
    auto unique = UniqueFrame<PageWitness>::from_unused(pa, PageWitness{4});
    REQUIRE(unique.has_value());
    std::move(*unique).reset_as_unused();
    CHECK(PageWitness::seen.calls == 1);  // the metadata was dropped properly
    CHECK(slot_ref_count(pa) == kRefCountUnused);
    CHECK(meta_slot(pa)->in_list_ref().load() == 0);
    CHECK(global_frame_allocator().free_bytes() == free_before);  // not given back
    // The frame is unused and still ours: it can be taken into use again.
    auto again = Frame<NoMeta>::from_unused(pa, NoMeta{});
    REQUIRE(again.has_value());
    CHECK(again->reference_count() == 1);
    // Dropping this Frame hands the frame to the allocator, which balances take_unused_frame.
  }

  TEST_CASE("reset_as_unused_starts_a_new_generation") {
    // Regression: reset_as_unused made a frame unused without bumping its generation counter
    // (and left its vtable pointer behind), unlike the last drop of a Frame.
    FreeBytesUnchanged no_leak;
    const Paddr pa = take_unused_frame();
    const std::uint32_t generation = frame_generation(pa);
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{});
    REQUIRE(unique.has_value());
    CHECK(frame_generation(pa) == generation);
    std::move(*unique).reset_as_unused();
    CHECK(frame_generation(pa) == generation + 1);
    CHECK(meta_slot(pa)->vtable == nullptr);
    global_frame_allocator().dealloc(pa, kPageSize);
  }

  TEST_CASE("unique_frame_try_from_needs_count_one") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{8});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    {
      Frame<MockFrameMeta> clone = *frame;
      CHECK_FALSE(UniqueFrame<MockFrameMeta>::try_from(*frame).has_value());
      REQUIRE_FALSE(frame->is_empty());  // left intact
      CHECK(frame->paddr() == pa);
      CHECK(frame->reference_count() == 2);
      CHECK(frame->meta().value == 8);
    }
    {
      // A reference held by a raw owner (as a PTE would) counts too.
      inc_frame_ref_count(pa);
      CHECK_FALSE(UniqueFrame<MockFrameMeta>::try_from(*frame).has_value());
      CHECK(frame->reference_count() == 2);
      Frame<MockFrameMeta> raw_owner = Frame<MockFrameMeta>::from_raw(pa);  // dropped at the brace
    }
    CHECK(frame->reference_count() == 1);
    auto unique = UniqueFrame<MockFrameMeta>::try_from(*frame);
    REQUIRE(unique.has_value());
    CHECK(frame->is_empty());
    CHECK(unique->reference_count() == kRefCountUnique);
    CHECK(unique->meta().value == 8);
    // An empty Frame converts to nothing.
    CHECK_FALSE(UniqueFrame<MockFrameMeta>::try_from(*frame).has_value());

    Frame<MockFrameMeta> back = std::move(*unique).into_frame();
    CHECK(back.paddr() == pa);
    CHECK(back.reference_count() == 1);
    CHECK(back.meta().value == 8);
    auto again = DynFrame::from_in_use(pa);  // shared again: handles can be made
    CHECK(again.has_value());
  }

  TEST_CASE("unique_frame_into_raw_from_raw_round_trip") {
    FreeBytesUnchanged no_leak;
    const Paddr pa = take_unused_frame();
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{21});
    REQUIRE(unique.has_value());
    const Paddr raw = std::move(*unique).into_raw();
    CHECK(raw == pa);
    CHECK(slot_ref_count(pa) == kRefCountUnique);
    auto restored = UniqueFrame<MockFrameMeta>::from_raw(raw);
    CHECK(restored.meta().value == 21);
    UniqueFrame<MockFrameMeta> moved = std::move(restored);
    CHECK(moved.paddr() == pa);
  }

  TEST_CASE("unique_frame_drop_runs_on_drop_and_frees") {
    FreeBytesUnchanged no_leak;
    PageWitness::seen = {};
    const Paddr pa = take_unused_frame();
    const std::uint32_t generation = frame_generation(pa);
    {
      auto unique = UniqueFrame<PageWitness>::from_unused(pa, PageWitness{13});
      REQUIRE(unique.has_value());
      REQUIRE(unique->write_val<std::uint64_t>(kPageSize - 8, 0x5151).has_value());
    }
    CHECK(PageWitness::seen.calls == 1);
    CHECK(PageWitness::seen.tag == 13);
    CHECK(PageWitness::seen.last_word == 0x5151);
    CHECK(frame_generation(pa) == generation + 1);
  }
}
