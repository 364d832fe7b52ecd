// Frames, segments and unique frames: the scenarios of OSTD `ostd/src/mm/frame/test.rs`,
// `ostd/src/mm/frame/allocator.rs` and OSDK's `osdk/deps/frame-allocator/src/test.rs`, plus
// UniqueFrame and on_drop behaviour.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/unique_frame.hpp>

#include "frame_test_util.hpp"

using namespace vmspace;
using vmspace::test::FreeBytesUnchanged;
using vmspace::test::MockFrameMeta;
using vmspace::test::MockUFrameMeta;

namespace {

// Binds the test thread to CPU 0 so that frees and allocations go through one per-CPU cache
// and are reused LIFO (what OSTD's "drop then re-allocate gives the same paddr" tests assume).
CpuBinding bind_bsp() {
  auto binding = CpuBinding::bind(CpuId::bsp());
  REQUIRE(binding.has_value());
  return std::move(*binding);
}

std::uint64_t slot_ref_count(Paddr pa) {
  return meta_slot(pa)->ref_count_ref().load(boost::memory_order_relaxed);
}

// What PageWitness::on_drop saw last.
struct WitnessRecord {
  int calls = 0;
  std::uint32_t tag = 0;          // the metadata value at the time of the drop
  std::size_t remain = 0;         // bytes the reader offered
  std::uint64_t first_word = 0;   // page bytes [0, 8)
  std::uint64_t last_word = 0;    // page bytes [4088, 4096)
};

// Untyped metadata whose on_drop records what it sees of the page.
struct PageWitness {
  static constexpr bool kIsUntyped = true;
  static inline WitnessRecord seen;

  std::uint32_t tag = 0;

  void on_drop(VmReader<Infallible>& reader) {
    ++seen.calls;
    seen.tag = tag;
    seen.remain = reader.remain();
    seen.first_word = reader.read_val<std::uint64_t>().value_or(0);
    (void)reader.skip(reader.remain() - sizeof(std::uint64_t));
    seen.last_word = reader.read_val<std::uint64_t>().value_or(0);
  }
};

// Typed metadata with an on_drop that counts.
struct TypedDropCounter {
  static constexpr const char* kTypeName = "TypedDropCounter";
  static inline int drops = 0;
  std::uint64_t payload = 0;
  void on_drop(VmReader<Infallible>&) { ++drops; }
};

// An unused frame that the test owns (taken from the allocator, not yet in use).
Paddr take_unused_frame() {
  auto pa = global_frame_allocator().alloc(FrameLayout{});
  REQUIRE(pa.has_value());
  REQUIRE(slot_ref_count(*pa) == kRefCountUnused);
  return *pa;
}

std::vector<std::byte> bytes_of(std::size_t n, std::uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

}  // namespace

// What may be converted to what, at compile time.
static_assert(std::is_convertible_v<Frame<MockFrameMeta>&&, DynFrame>);
static_assert(std::is_convertible_v<Frame<MockUFrameMeta>&&, UFrame>);
static_assert(std::is_convertible_v<UFrame&&, DynFrame>);
static_assert(!std::is_constructible_v<UFrame, Frame<MockFrameMeta>&&>, "typed frames are not UFrames");
static_assert(!std::is_convertible_v<DynFrame&&, UFrame>, "narrowing needs try_from");
static_assert(!std::is_convertible_v<DynFrame&&, Frame<MockFrameMeta>>, "narrowing needs try_from");
static_assert(std::is_convertible_v<Segment<NoMeta>&&, USegment>);
static_assert(std::is_convertible_v<USegment&&, DynSegment>);
static_assert(!std::is_constructible_v<USegment, Segment<MockFrameMeta>&&>);
static_assert(!std::is_copy_constructible_v<UniqueFrame<NoMeta>>);

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
    CHECK(frame2.is_empty());  // NOLINT(bugprone-use-after-move): documented state
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

  // ---- segments ----

  TEST_CASE("segment_creation") {
    FreeBytesUnchanged no_leak;
    const std::size_t nframes = 512;
    auto segment = FrameAllocOptions().alloc_segment(nframes);
    REQUIRE(segment.has_value());
    CHECK(segment->size() == nframes * kPageSize);
    CHECK(segment->end_paddr() - segment->paddr() == nframes * kPageSize);
    CHECK(segment->nframes() == nframes);
    CHECK(segment->paddr_range() == PaRange{segment->paddr(), segment->end_paddr()});
    for (FrameRef<NoMeta> f : *segment) CHECK(f->reference_count() == 1);
  }

  TEST_CASE("max_segment_creation") {
    // OSTD panics on the size overflow; we return Overflow and allocate nothing.
    FreeBytesUnchanged no_leak;
    CHECK(FrameAllocOptions().alloc_segment(SIZE_MAX).error() == Error::Overflow);
    CHECK(FrameAllocOptions().alloc_segment(SIZE_MAX / kPageSize + 1).error() == Error::Overflow);
    // Representable but larger than any block: NoMemory.
    CHECK(FrameAllocOptions().alloc_segment(SIZE_MAX / kPageSize).error() == Error::NoMemory);
  }

  TEST_CASE("empty_segment_creation") {
    FreeBytesUnchanged no_leak;
    auto result = FrameAllocOptions().alloc_segment(0);
    REQUIRE_FALSE(result.has_value());
    CHECK(result.error() == Error::InvalidArgs);
    CHECK(FrameAllocOptions().alloc_segment_with(0, [](Paddr) { return MockFrameMeta{}; }).error() ==
          Error::InvalidArgs);
  }

  TEST_CASE("zeroed_segment_creation") {
    FreeBytesUnchanged no_leak;
    auto cpu = bind_bsp();
    // Dirty a frame and free it, so the next allocation on this CPU gets it back.
    Paddr dirty_pa = 0;
    {
      auto dirty = FrameAllocOptions().alloc_segment(1);
      REQUIRE(dirty.has_value());
      const auto ones = bytes_of(kPageSize, 0xff);
      REQUIRE(dirty->write_bytes(0, ones).has_value());
      dirty_pa = dirty->paddr();
    }
    {
      // Without zeroing the stale bytes are visible (so the check below means something).
      auto stale = FrameAllocOptions().zeroed(false).alloc_segment(1);
      REQUIRE(stale.has_value());
      REQUIRE(stale->paddr() == dirty_pa);
      CHECK(stale->read_val<std::uint64_t>(0).value() == ~std::uint64_t{0});
    }
    auto segment = FrameAllocOptions().zeroed(true).alloc_segment(1);
    REQUIRE(segment.has_value());
    REQUIRE(segment->paddr() == dirty_pa);
    std::vector<std::byte> buffer(kPageSize, std::byte{0x5a});
    VmWriter<Infallible> writer{std::span<std::byte>(buffer)};
    auto reader = segment->reader();
    CHECK(reader.read(writer) == kPageSize);
    CHECK(std::all_of(buffer.begin(), buffer.end(), [](std::byte b) { return b == std::byte{0}; }));
  }

  TEST_CASE("segment_split") {
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(2);
    REQUIRE(segment.has_value());
    const Paddr pa = segment->paddr();
    auto halves = std::move(*segment).split(kPageSize);
    REQUIRE(halves.has_value());
    auto& [first, second] = *halves;
    CHECK(first.size() == kPageSize);
    CHECK(second.size() == kPageSize);
    CHECK(first.paddr() == pa);
    CHECK(second.paddr() == pa + kPageSize);
    CHECK(segment->empty());  // consumed
    // Splitting moves the references: every frame still has exactly one.
    CHECK(first.frame_at(0)->reference_count() == 1);
    CHECK(second.frame_at(0)->reference_count() == 1);
  }

  TEST_CASE("segment_slice") {
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(3);
    REQUIRE(segment.has_value());
    auto slice = segment->slice(kPageSize, 2 * kPageSize);
    REQUIRE(slice.has_value());
    CHECK(slice->size() == kPageSize);
    CHECK(slice->paddr() == segment->paddr() + kPageSize);
    CHECK(segment->size() == 3 * kPageSize);  // the source is not consumed

    auto empty = segment->slice(3 * kPageSize, 3 * kPageSize);  // empty at the end: allowed
    REQUIRE(empty.has_value());
    CHECK(empty->empty());
    auto whole = segment->slice(0, 3 * kPageSize);
    REQUIRE(whole.has_value());
    CHECK(whole->paddr_range() == segment->paddr_range());
  }

  TEST_CASE("segment_iteration") {
    FreeBytesUnchanged no_leak;
    const std::size_t total = 2;
    auto segment = FrameAllocOptions().alloc_segment_with(total, [](Paddr) { return MockFrameMeta{42}; });
    REQUIRE(segment.has_value());

    SUBCASE("borrowed") {
      std::size_t count = 0;
      Paddr expected = segment->paddr();
      for (FrameRef<MockFrameMeta> frame : *segment) {
        CHECK(frame->meta().value == 42);
        CHECK(frame.paddr() == expected);
        CHECK(frame->reference_count() == 1);  // borrowing adds nothing
        expected += kPageSize;
        ++count;
      }
      CHECK(count == total);
      CHECK(segment->nframes() == total);  // still owned by the segment
    }
    SUBCASE("consuming") {
      std::size_t count = 0;
      const Paddr start = segment->paddr();
      std::vector<Frame<MockFrameMeta>> taken;
      while (auto frame = segment->next()) {
        CHECK(frame->meta().value == 42);
        CHECK(frame->paddr() == start + count * kPageSize);
        CHECK(frame->reference_count() == 1);  // the segment's reference moved into the frame
        taken.push_back(std::move(*frame));
        ++count;
        CHECK(segment->nframes() == total - count);
      }
      CHECK(count == total);
      CHECK(segment->empty());
      CHECK_FALSE(segment->next().has_value());
    }
  }

  TEST_CASE("invalid_segment_split") {
    // OSTD panics; we return InvalidArgs and leave the segment intact.
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(2);
    REQUIRE(segment.has_value());
    const PaRange range = segment->paddr_range();
    for (std::size_t offset : {std::size_t{0}, 2 * kPageSize, 3 * kPageSize, kPageSize - 1, kPageSize + 1,
                               SIZE_MAX - (kPageSize - 1)}) {
      CAPTURE(offset);
      auto r = std::move(*segment).split(offset);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error() == Error::InvalidArgs);
      CHECK(segment->paddr_range() == range);
    }
    for (FrameRef<NoMeta> f : *segment) CHECK(f->reference_count() == 1);
  }

  TEST_CASE("segment_slice_out_of_bounds") {
    // OSTD panics; we return InvalidArgs and leave the segment intact.
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(3);
    REQUIRE(segment.has_value());
    const PaRange range = segment->paddr_range();
    const std::size_t huge = SIZE_MAX - (kPageSize - 1);
    const std::pair<std::size_t, std::size_t> bad[] = {
        {huge, huge},                       // OSTD's case
        {0, 4 * kPageSize},                 // past the end
        {3 * kPageSize, 4 * kPageSize},
        {2 * kPageSize, kPageSize},         // reversed
        {1, kPageSize},                     // misaligned
        {0, kPageSize + 1},
    };
    for (const auto& range : bad) {
      CAPTURE(range.first);
      CAPTURE(range.second);
      auto r = segment->slice(range.first, range.second);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error() == Error::InvalidArgs);
    }
    CHECK(segment->paddr_range() == range);
    for (FrameRef<NoMeta> f : *segment) CHECK(f->reference_count() == 1);
  }

  TEST_CASE("segment_to_usegment") {
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(1);
    REQUIRE(segment.has_value());
    Segment<NoMeta> copy = *segment;
    DynSegment dyn_segment = std::move(copy);
    auto usegment = USegment::try_from(dyn_segment);
    REQUIRE(usegment.has_value());
    CHECK(dyn_segment.empty());
    CHECK(usegment->size() == kPageSize);
    CHECK(usegment->paddr() == segment->paddr());
    CHECK(usegment->frame_at(0)->reference_count() == 2);  // the original and the copy
  }

  TEST_CASE("segment_to_segment") {
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment_with(1, [](Paddr) { return MockFrameMeta{42}; });
    REQUIRE(segment.has_value());
    DynSegment dyn_segment = std::move(*segment);

    // Wrong narrowing fails and keeps the segment.
    CHECK_FALSE(USegment::try_from(dyn_segment).has_value());
    CHECK_FALSE(Segment<MockUFrameMeta>::try_from(dyn_segment).has_value());
    REQUIRE(dyn_segment.size() == kPageSize);

    auto typed = Segment<MockFrameMeta>::try_from(dyn_segment);
    REQUIRE(typed.has_value());
    CHECK(typed->size() == kPageSize);
    std::size_t n = 0;
    while (auto frame = typed->next()) {
      CHECK(frame->meta().value == 42);
      ++n;
    }
    CHECK(n == 1);
  }

  TEST_CASE("frame_to_segment") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42});
    REQUIRE(frame.has_value());
    const Paddr pa = frame->paddr();
    Segment<MockFrameMeta> segment(std::move(*frame));
    CHECK(segment.size() == kPageSize);
    CHECK(segment.paddr() == pa);
    for (FrameRef<MockFrameMeta> f : segment) {
      CHECK(f->meta().value == 42);
      CHECK(f->reference_count() == 1);  // the frame's reference moved into the segment
    }
  }

  TEST_CASE("segment_drop") {
    FreeBytesUnchanged no_leak;
    auto cpu = bind_bsp();
    Paddr paddr_before = 0;
    {
      auto segment = FrameAllocOptions().alloc_segment(1);
      REQUIRE(segment.has_value());
      paddr_before = segment->paddr();
    }
    auto new_segment = FrameAllocOptions().alloc_segment(1);
    REQUIRE(new_segment.has_value());
    CHECK(new_segment->paddr() == paddr_before);
  }

  TEST_CASE("segment_drop_releases_every_frame") {
    FreeBytesUnchanged no_leak;
    PageWitness::seen = {};
    const std::uint64_t before = global_frame_allocator().free_bytes();
    {
      auto segment = FrameAllocOptions().alloc_segment_with(
          5, [](Paddr pa) { return PageWitness{static_cast<std::uint32_t>(pa >> kPageShift)}; });
      REQUIRE(segment.has_value());
      CHECK(global_frame_allocator().free_bytes() == before - 5 * kPageSize);
    }
    CHECK(PageWitness::seen.calls == 5);
  }

  // ---- untyped I/O ----

  TEST_CASE("untyped_frame_reader_writer") {
    FreeBytesUnchanged no_leak;
    auto frame = FrameAllocOptions().alloc_frame_with(NoMeta{});
    REQUIRE(frame.has_value());
    auto reader = frame->reader();
    CHECK(reader.remain() == kPageSize);
    auto writer = frame->writer();
    CHECK(writer.avail() == kPageSize);

    const auto data = bytes_of(128, 0xAA);
    VmReader<Infallible> source{std::span<const std::byte>(data)};
    CHECK(writer.write(source) == 128);
    std::vector<std::byte> buffer(128);
    VmWriter<Infallible> sink{std::span<std::byte>(buffer)};
    CHECK(reader.read(sink) == 128);
    CHECK(buffer == data);
    // The bytes after the written range are still the allocation's zeros.
    CHECK(frame->read_val<std::uint8_t>(128).value() == 0);
  }

  TEST_CASE("untyped_segment_reader_writer") {
    FreeBytesUnchanged no_leak;
    auto segment = FrameAllocOptions().alloc_segment(2);
    REQUIRE(segment.has_value());
    auto reader = segment->reader();
    CHECK(reader.remain() == 2 * kPageSize);
    auto writer = segment->writer();
    CHECK(writer.avail() == 2 * kPageSize);

    const auto data = bytes_of(256, 0xBB);
    VmReader<Infallible> source{std::span<const std::byte>(data)};
    CHECK(writer.write(source) == 256);
    std::vector<std::byte> buffer(256);
    VmWriter<Infallible> sink{std::span<std::byte>(buffer)};
    CHECK(reader.read(sink) == 256);
    CHECK(buffer == data);

    // Bytes written across the frame boundary land in both frames.
    REQUIRE(segment->write_val<std::uint64_t>(kPageSize - 4, 0x0102030405060708).has_value());
    CHECK(segment->read_val<std::uint64_t>(kPageSize - 4).value() == 0x0102030405060708);
    CHECK(segment->read_val<std::uint64_t>(2 * kPageSize - 7).error() == Error::InvalidArgs);
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
    CHECK(uframe.is_empty());  // NOLINT(bugprone-use-after-move): documented state
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
        {kPageSize, kPageSize},          {2 * kPageSize, kPageSize},      {3 * kPageSize, kPageSize},
        {4 * kPageSize, kPageSize},      {2 * kPageSize, 2 * kPageSize},  {4 * kPageSize, 4 * kPageSize},
        {8 * kPageSize, 8 * kPageSize},  {16 * kPageSize, 16 * kPageSize},
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
    CHECK(UniqueFrame<MockFrameMeta>::from_unused(pa, MockFrameMeta{}).error() == GetFrameError::Unique);
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
