// The MetaSlot reference-count state machine (meta.hpp; docs/spec_cases.md cases 67-68 and
// invariants 11-12): error cases of from_in_use / from_unused, saturation at REF_COUNT_MAX,
// the counting law for frames and segments, the reserved frame 0, and legal slot states.
#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/frame_list.hpp>
#include <vmspace/unique_frame.hpp>

#include "death_test.hpp"
#include "frame_test_util.hpp"
#include "skip.hpp"

using namespace vmspace;
using vmspace::test::FreeBytesUnchanged;
using vmspace::test::MockFrameMeta;
using vmspace::test::MockUFrameMeta;

namespace {

using SlotBytes = std::array<std::byte, kMetaSlotSize>;

SlotBytes slot_bytes(Paddr pa) {
  SlotBytes out;
  std::memcpy(out.data(), meta_slot(pa), kMetaSlotSize);
  return out;
}

std::uint64_t count_of(Paddr pa) {
  return meta_slot(pa)->ref_count_ref().load(boost::memory_order_relaxed);
}

// An unused frame owned by the test (taken raw from the allocator).
Paddr take_unused_frame() {
  auto pa = global_frame_allocator().alloc(FrameLayout{});
  REQUIRE(pa.has_value());
  REQUIRE(count_of(*pa) == kRefCountUnused);
  return *pa;
}

// Checks the state of one slot against docs/spec_cases.md invariant 11. Returns an empty string
// when legal, else what is wrong.
std::string slot_state_problem(Paddr pa) {
  MetaSlot* s = meta_slot(pa);
  const std::uint64_t rc = s->ref_count_ref().load(boost::memory_order_acquire);
  const std::uint64_t in_list = s->in_list_ref().load(boost::memory_order_acquire);
  if (rc > kRefCountMax && rc < kRefCountUnique) return "count in the illegal band (MAX, UNIQUE)";
  if (rc == kRefCountMax) return "count saturated";
  if (rc == 0) return "busy at quiescence";
  if (rc == kRefCountUnused) {
    if (in_list != 0) return "unused frame with a nonzero in_list";
    return {};
  }
  if (s->vtable == nullptr) return "live frame without metadata";
  if (rc != kRefCountUnique && in_list != 0) return "shared frame on a list";
  return {};
}

}  // namespace

TEST_SUITE("unit") {
  // ---- from_in_use ----

  TEST_CASE("from_in_use_on_an_unused_frame_is_Unused") {
    FreeBytesUnchanged no_leak;
    const Paddr pa = take_unused_frame();
    const SlotBytes before = slot_bytes(pa);
    CHECK(DynFrame::from_in_use(pa).error() == GetFrameError::Unused);
    CHECK(slot_bytes(pa) == before);
    global_frame_allocator().dealloc(pa, kPageSize);
  }

  TEST_CASE("from_in_use_on_a_unique_frame_is_Unique") {
    FreeBytesUnchanged no_leak;
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(take_unused_frame(), MockFrameMeta{1});
    REQUIRE(unique.has_value());
    const SlotBytes before = slot_bytes(unique->paddr());
    CHECK(DynFrame::from_in_use(unique->paddr()).error() == GetFrameError::Unique);
    CHECK(slot_bytes(unique->paddr()) == before);
  }

  TEST_CASE("from_in_use_and_from_unused_on_a_busy_frame_are_Busy") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{2});
    REQUIRE(frame.has_value());
    const Paddr pa = std::move(*frame).into_raw();
    // Pretend the frame is being built or torn down.
    meta_slot(pa)->ref_count_ref().store(0);
    const SlotBytes before = slot_bytes(pa);
    CHECK(DynFrame::from_in_use(pa).error() == GetFrameError::Busy);
    CHECK(Frame<MockFrameMeta>::from_unused(pa, MockFrameMeta{}).error() == GetFrameError::Busy);
    CHECK(UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{}).error() ==
          GetFrameError::Busy);
    CHECK(slot_bytes(pa) == before);
    meta_slot(pa)->ref_count_ref().store(1);
    Frame<MockFrameMeta> restored = Frame<MockFrameMeta>::from_raw(pa);
    CHECK(restored.meta().value == 2);
  }

  TEST_CASE("from_in_use_rejects_bad_paddrs") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame();
    REQUIRE(frame.has_value());
    CHECK(DynFrame::from_in_use(frame->paddr() + 1).error() == GetFrameError::NotAligned);
    CHECK(DynFrame::from_in_use(frame->paddr() + 8).error() == GetFrameError::NotAligned);
    CHECK(DynFrame::from_in_use(max_paddr()).error() == GetFrameError::OutOfBound);
    CHECK(DynFrame::from_in_use(~Paddr{0} & ~Paddr{kPageSize - 1}).error() ==
          GetFrameError::OutOfBound);
    CHECK(DynFrame::from_in_use(~Paddr{0}).error() == GetFrameError::NotAligned);
    CHECK(frame->reference_count() == 1);
  }

  // ---- from_unused ----

  TEST_CASE("from_unused_on_an_in_use_frame_is_InUse_and_leaves_the_slot_byte_identical") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{77});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    const SlotBytes before = slot_bytes(pa);
    CHECK(Frame<MockFrameMeta>::from_unused(pa, MockFrameMeta{1}).error() == GetFrameError::InUse);
    CHECK(Frame<NoMeta>::from_unused(pa, NoMeta{}).error() == GetFrameError::InUse);
    CHECK(UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{1}).error() ==
          GetFrameError::InUse);
    CHECK(slot_bytes(pa) == before);
    CHECK(frame->meta().value == 77);
    CHECK(frame->reference_count() == 1);
  }

  TEST_CASE("from_unused_on_a_unique_frame_is_Unique_and_leaves_the_slot_byte_identical") {
    FreeBytesUnchanged no_leak;
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(take_unused_frame(), MockFrameMeta{5});
    REQUIRE(unique.has_value());
    const SlotBytes before = slot_bytes(unique->paddr());
    CHECK(Frame<MockFrameMeta>::from_unused(unique->paddr(), MockFrameMeta{}).error() ==
          GetFrameError::Unique);
    CHECK(slot_bytes(unique->paddr()) == before);
  }

  TEST_CASE("from_unused_rejects_misaligned_and_out_of_bound_paddrs") {
    FreeBytesUnchanged no_leak;
    const Paddr pa = take_unused_frame();
    const SlotBytes before = slot_bytes(pa);
    for (Paddr bad : {pa + 1, pa + kPageSize / 2, pa + kPageSize - 1}) {
      CAPTURE(bad);
      CHECK(Frame<NoMeta>::from_unused(bad, NoMeta{}).error() == GetFrameError::NotAligned);
      CHECK(UniqueFrame<NoMeta>::from_unused(bad, NoMeta{}).error() == GetFrameError::NotAligned);
    }
    CHECK(slot_bytes(pa) == before);
    for (Paddr bad : {max_paddr(), max_paddr() + kPageSize, ~Paddr{0} & ~Paddr{kPageSize - 1}}) {
      CAPTURE(bad);
      CHECK(Frame<NoMeta>::from_unused(bad, NoMeta{}).error() == GetFrameError::OutOfBound);
      CHECK(UniqueFrame<NoMeta>::from_unused(bad, NoMeta{}).error() == GetFrameError::OutOfBound);
    }
    // The last frame of memory is in bound (it is probably free, so it is not touched here).
    CHECK(get_slot(max_paddr() - kPageSize).has_value());
    global_frame_allocator().dealloc(pa, kPageSize);
  }

  TEST_CASE("segment_from_unused_rejects_bad_ranges") {
    FreeBytesUnchanged no_leak;
    auto meta = [](Paddr) { return NoMeta{}; };
    CHECK(Segment<NoMeta>::from_unused(PaRange{kPageSize, kPageSize}, meta).error() ==
          GetFrameError::EmptyRange);
    CHECK(Segment<NoMeta>::from_unused(PaRange{2 * kPageSize, kPageSize}, meta).error() ==
          GetFrameError::EmptyRange);
    CHECK(Segment<NoMeta>::from_unused(PaRange{kPageSize + 1, 2 * kPageSize}, meta).error() ==
          GetFrameError::NotAligned);
    CHECK(Segment<NoMeta>::from_unused(PaRange{kPageSize, 2 * kPageSize + 1}, meta).error() ==
          GetFrameError::NotAligned);
    const PaRange past_the_end{max_paddr() - kPageSize, max_paddr() + kPageSize};
    CHECK(Segment<NoMeta>::from_unused(past_the_end, meta).error() == GetFrameError::OutOfBound);
  }

  TEST_CASE("segment_from_unused_stops_at_the_first_in_use_frame_and_drops_what_it_took") {
    // As in OSTD: frames taken before the failure are dropped, which hands them to the global
    // allocator. The in-use frame and the frames after it are not touched.
    FreeBytesUnchanged no_leak;
    auto raw = global_frame_allocator().alloc(FrameLayout{3 * kPageSize, kPageSize});
    REQUIRE(raw.has_value());
    const Paddr pa = *raw;
    std::optional<Frame<MockFrameMeta>> middle(
        Frame<MockFrameMeta>::from_unused(pa + kPageSize, MockFrameMeta{9}).value());
    const SlotBytes middle_before = slot_bytes(pa + kPageSize);
    const SlotBytes last_before = slot_bytes(pa + 2 * kPageSize);
    const std::uint64_t free_before = global_frame_allocator().free_bytes();

    auto seg = Segment<MockFrameMeta>::from_unused(PaRange{pa, pa + 3 * kPageSize},
                                                   [](Paddr) { return MockFrameMeta{1}; });
    REQUIRE_FALSE(seg.has_value());
    CHECK(seg.error() == GetFrameError::InUse);
    CHECK(global_frame_allocator().free_bytes() == free_before + kPageSize);  // the first frame
    CHECK(slot_bytes(pa + kPageSize) == middle_before);
    CHECK(slot_bytes(pa + 2 * kPageSize) == last_before);
    CHECK(count_of(pa + 2 * kPageSize) == kRefCountUnused);

    middle.reset();  // drop the middle frame: it goes to the allocator
    global_frame_allocator().dealloc(pa + 2 * kPageSize, kPageSize);
  }

  // ---- saturation ----

  TEST_CASE("clone_at_max_minus_one_reaches_max") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{3});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    meta_slot(pa)->ref_count_ref().store(kRefCountMax - 1);
    {
      Frame<MockFrameMeta> clone = *frame;
      CHECK(clone.reference_count() == kRefCountMax);
      CHECK(frame->reference_count() == kRefCountMax);
      // Restore a count that matches the handles before they drop.
      meta_slot(pa)->ref_count_ref().store(2);
    }
    CHECK(frame->reference_count() == 1);

    meta_slot(pa)->ref_count_ref().store(kRefCountMax - 1);
    {
      auto from_in_use = DynFrame::from_in_use(pa);
      REQUIRE(from_in_use.has_value());
      CHECK(from_in_use->reference_count() == kRefCountMax);
      meta_slot(pa)->ref_count_ref().store(2);
    }
    CHECK(frame->reference_count() == 1);
  }

  TEST_CASE("clone_at_max_aborts" * vmspace::test::skip_death_test("clone_at_max_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto frame = FrameAllocOptions().alloc_frame();
          if (!frame) return;
          meta_slot(frame->paddr())->ref_count_ref().store(kRefCountMax);
          Frame<NoMeta> clone = *frame;  // must abort
          (void)clone;
        },
        "REF_COUNT_MAX"));
  }

  TEST_CASE("from_in_use_at_max_aborts" *
            vmspace::test::skip_death_test("from_in_use_at_max_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto frame = FrameAllocOptions().alloc_frame();
          if (!frame) return;
          meta_slot(frame->paddr())->ref_count_ref().store(kRefCountMax);
          (void)DynFrame::from_in_use(frame->paddr());  // must abort
        },
        "REF_COUNT_MAX"));
  }

  TEST_CASE("segment_clone_at_max_aborts" *
            vmspace::test::skip_death_test("segment_clone_at_max_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto seg = FrameAllocOptions().alloc_segment(3);
          if (!seg) return;
          meta_slot(seg->paddr() + 2 * kPageSize)->ref_count_ref().store(kRefCountMax);
          Segment<NoMeta> clone = *seg;  // must abort at the third frame
          (void)clone;
        },
        "REF_COUNT_MAX"));
  }

  // ---- the counting law: count = handles + segment shares (+ raw owners) ----

  TEST_CASE("segment_and_slice_counts_are_handles_plus_shares") {
    FreeBytesUnchanged no_leak;
    auto seg = FrameAllocOptions().alloc_segment(4);
    REQUIRE(seg.has_value());
    const Paddr pa = seg->paddr();
    auto counts = [&] {
      std::vector<std::uint64_t> out;
      for (std::size_t i = 0; i < 4; ++i) out.push_back(count_of(pa + i * kPageSize));
      return out;
    };
    using V = std::vector<std::uint64_t>;
    CHECK(counts() == V{1, 1, 1, 1});

    std::optional<Segment<NoMeta>> slice(seg->slice(kPageSize, 3 * kPageSize).value());
    CHECK(counts() == V{1, 2, 2, 1});
    std::optional<Segment<NoMeta>> copy(*seg);
    CHECK(counts() == V{2, 3, 3, 2});
    std::optional<Frame<NoMeta>> owned(seg->frame_at(3).to_owned());
    CHECK(counts() == V{2, 3, 3, 3});
    std::optional<DynFrame> dyn(DynFrame::from_in_use(pa).value());
    CHECK(counts() == V{3, 3, 3, 3});

    // Moves and consuming operations transfer references without changing counts.
    USegment moved = std::move(*copy);
    CHECK(counts() == V{3, 3, 3, 3});
    std::optional<std::pair<USegment, USegment>> halves(
        std::move(moved).split(2 * kPageSize).value());
    CHECK(counts() == V{3, 3, 3, 3});
    auto first = halves->first.next();
    REQUIRE(first.has_value());
    CHECK(counts() == V{3, 3, 3, 3});

    first.reset();
    halves.reset();
    CHECK(counts() == V{2, 2, 2, 2});
    slice.reset();
    CHECK(counts() == V{2, 1, 1, 2});
    owned.reset();
    dyn.reset();
    CHECK(counts() == V{1, 1, 1, 1});
  }

  TEST_CASE("a_frame_handle_keeps_a_frame_of_a_dropped_segment_alive") {
    FreeBytesUnchanged no_leak;
    std::optional<Frame<NoMeta>> survivor;
    Paddr pa = 0;
    {
      auto seg = FrameAllocOptions().alloc_segment(3);
      REQUIRE(seg.has_value());
      pa = seg->paddr();
      REQUIRE(seg->write_val<std::uint32_t>(kPageSize, 0xc0ffee).has_value());
      survivor.emplace(seg->frame_at(1).to_owned());
    }
    CHECK(survivor->reference_count() == 1);
    CHECK(survivor->read_val<std::uint32_t>(0).value() == 0xc0ffee);
    CHECK_FALSE(DynFrame::from_in_use(pa).has_value());  // the others were freed
    CHECK_FALSE(DynFrame::from_in_use(pa + 2 * kPageSize).has_value());
  }

  TEST_CASE("raw_references_count_like_handles") {
    FreeBytesUnchanged no_leak;
    std::optional<Frame<NoMeta>> frame(FrameAllocOptions().alloc_frame().value());
    const Paddr pa = frame->paddr();
    inc_frame_ref_count(pa);  // as a PTE would
    CHECK(frame->reference_count() == 2);
    frame.reset();  // the handle goes; the raw reference keeps the frame
    CHECK(count_of(pa) == 1);
    { Frame<NoMeta> adopt = Frame<NoMeta>::from_raw(pa); }
    CHECK(count_of(pa) != 1);
  }

  // ---- frame 0 ----

  TEST_CASE("frame_zero_is_reserved") {
    FreeBytesUnchanged no_leak;
    CHECK(Frame<NoMeta>::from_unused(0, NoMeta{}).error() == GetFrameError::InUse);
    CHECK(UniqueFrame<NoMeta>::from_unused(0, NoMeta{}).error() == GetFrameError::InUse);
    const std::uint64_t count = count_of(0);
    {
      auto zero = DynFrame::from_in_use(0);
      REQUIRE(zero.has_value());
      CHECK(std::string(zero->dyn_meta().type_name()) == "ReservedMemoryMeta");
      CHECK_FALSE(zero->dyn_meta().is_untyped());
      CHECK_FALSE(UFrame::try_from(*zero).has_value());
      CHECK(zero->reference_count() == count + 1);
    }
    CHECK(count_of(0) == count);
    // (frame_allocator_test's exhaustion test checks that no allocation ever contains it.)
  }

  TEST_CASE("dealloc_of_frame_zero_aborts" *
            vmspace::test::skip_death_test("dealloc_of_frame_zero_aborts")) {
    CHECK(vmspace::test::dies_with([] { global_frame_allocator().dealloc(0, kPageSize); },
                                   "invalid range"));
  }

  // ---- slot states (docs/spec_cases.md invariant 11) ----

  TEST_CASE("every_slot_is_in_a_legal_state") {
    FreeBytesUnchanged no_leak;
    // A mix of every kind of owner.
    auto shared = FrameAllocOptions().alloc_frame_with(MockFrameMeta{1});
    REQUIRE(shared.has_value());
    Frame<MockFrameMeta> shared2 = *shared;
    auto seg = FrameAllocOptions().alloc_segment(7);
    REQUIRE(seg.has_value());
    auto unique = UniqueFrame<MockFrameMeta>::from_unused(take_unused_frame(), MockFrameMeta{2});
    REQUIRE(unique.has_value());
    LinkedList<MockUFrameMeta> list;
    for (std::uint32_t i = 0; i < 3; ++i) {
      auto f = FrameAllocOptions().alloc_frame_with(Link<MockUFrameMeta>(MockUFrameMeta{i}));
      REQUIRE(f.has_value());
      auto u = UniqueFrame<Link<MockUFrameMeta>>::try_from(*f);
      REQUIRE(u.has_value());
      list.push_back(std::move(*u));
    }
    { auto dropped = FrameAllocOptions().alloc_segment(5); }

    std::size_t problems = 0;
    for (Paddr pa = 0; pa < max_paddr(); pa += kPageSize) {
      const std::string problem = slot_state_problem(pa);
      if (!problem.empty() && problems++ < 10) {
        CAPTURE(pa);
        FAIL_CHECK(problem);
      }
    }
    CHECK(problems == 0);
    // The list members carry the list's id; the shared frames do not.
    CHECK(meta_slot(shared->paddr())->in_list_ref().load() == 0);
    CHECK(meta_slot(seg->paddr())->in_list_ref().load() == 0);
    CHECK(meta_slot(unique->paddr())->in_list_ref().load() == 0);
  }
}
