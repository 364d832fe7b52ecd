// Frames (frame_scenario_util.hpp): segments and the untyped I/O of frames and segments.
#include "frame_scenario_util.hpp"

TEST_SUITE("unit") {
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
    CHECK(
        FrameAllocOptions().alloc_segment_with(0, [](Paddr) { return MockFrameMeta{}; }).error() ==
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
    auto segment =
        FrameAllocOptions().alloc_segment_with(total, [](Paddr) { return MockFrameMeta{42}; });
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
    for (std::size_t offset : {std::size_t{0}, 2 * kPageSize, 3 * kPageSize, kPageSize - 1,
                               kPageSize + 1, SIZE_MAX - (kPageSize - 1)}) {
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
        {huge, huge},        // OSTD's case
        {0, 4 * kPageSize},  // past the end
        {3 * kPageSize, 4 * kPageSize},
        {2 * kPageSize, kPageSize},  // reversed
        {1, kPageSize},              // misaligned
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
    auto segment =
        FrameAllocOptions().alloc_segment_with(1, [](Paddr) { return MockFrameMeta{42}; });
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
}
