// Infallible VmReader / VmWriter and the VmIo operations of untyped frames and segments (OSTD
// `ostd/src/mm/io/mod.rs`; scenarios of `ostd/src/mm/test.rs`, module io). Fallible readers and
// writers come with VmSpace and are tested there.
//
// Departures from OSTD checked here: skipping beyond the end and misaligned once-accesses
// return InvalidArgs instead of panicking, and nothing moves on error.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <thread>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/io.hpp>

#include "result_check.hpp"

using namespace vmspace;
using vmspace::test::error_of;

namespace {

static_assert(std::endian::native == std::endian::little,
              "the byte-layout expectations below assume a little-endian host");

constexpr std::size_t kMax = std::numeric_limits<std::size_t>::max();

// A Pod with 4 bytes of padding between its fields (OSTD's TestPodStruct).
struct PaddedPod {
  std::uint32_t a;
  std::uint64_t b;
};
static_assert(sizeof(PaddedPod) == 16 && offsetof(PaddedPod, b) == 8);
static_assert(Pod<PaddedPod>);

template <std::size_t N>
using Bytes = std::array<std::uint8_t, N>;

template <std::size_t N>
VmReader<Infallible> reader_of(const Bytes<N>& bytes) {
  return VmReader<Infallible>(std::as_bytes(std::span(bytes)));
}

template <std::size_t N>
VmWriter<Infallible> writer_of(Bytes<N>& bytes) {
  return VmWriter<Infallible>(std::as_writable_bytes(std::span(bytes)));
}

template <class T>
std::span<const std::byte> bytes_of(const T& v) {
  return std::as_bytes(std::span<const T, 1>(&v, 1));
}

Segment<NoMeta> alloc_segment(std::size_t nframes) {
  auto seg = FrameAllocOptions().alloc_segment(nframes);
  REQUIRE(seg.has_value());
  return std::move(seg).value();
}

Frame<NoMeta> alloc_frame() {
  auto frame = FrameAllocOptions().alloc_frame();
  REQUIRE(frame.has_value());
  return std::move(frame).value();
}

}  // namespace

TEST_SUITE("unit") {
  // ---------------------------------------------------------------------------------------
  // Readers and writers over host buffers.

  TEST_CASE("read_write_u32_infallible") {
    Bytes<8> buffer{};
    auto writer = writer_of(buffer);
    const std::uint32_t val1 = 0xDEADBEEF;
    const std::uint32_t val2 = 0xFEEDC0DE;
    REQUIRE(writer.write_val(val1).has_value());
    REQUIRE(writer.write_val(val2).has_value());
    CHECK(writer.avail() == 0);
    CHECK_FALSE(writer.has_avail());
    CHECK(buffer == Bytes<8>{0xEF, 0xBE, 0xAD, 0xDE, 0xDE, 0xC0, 0xED, 0xFE});

    auto reader = reader_of(buffer);
    auto read1 = reader.read_val<std::uint32_t>();
    auto read2 = reader.read_val<std::uint32_t>();
    REQUIRE(read1.has_value());
    REQUIRE(read2.has_value());
    CHECK(*read1 == val1);
    CHECK(*read2 == val2);
    CHECK(reader.remain() == 0);
    CHECK_FALSE(reader.has_remain());
  }

  TEST_CASE("read_write_slice_infallible") {
    const Bytes<5> data{1, 2, 3, 4, 5};
    Bytes<5> buffer{};
    auto writer = writer_of(buffer);
    auto source = reader_of(data);
    CHECK(writer.write(source) == 5);
    CHECK(buffer == data);
    CHECK_FALSE(source.has_remain());
    CHECK_FALSE(writer.has_avail());

    auto reader = reader_of(buffer);
    Bytes<5> read_back{};
    auto sink = writer_of(read_back);
    CHECK(reader.read(sink) == 5);
    CHECK(read_back == data);
  }

  TEST_CASE("copy_moves_the_shorter_length_and_advances_both") {
    const Bytes<5> data{1, 2, 3, 4, 5};
    Bytes<3> small{};
    Bytes<10> large{};
    auto reader = reader_of(data);
    auto small_writer = writer_of(small);
    CHECK(reader.read(small_writer) == 3);
    CHECK(small == Bytes<3>{1, 2, 3});
    CHECK(reader.remain() == 2);
    CHECK(small_writer.avail() == 0);

    auto large_writer = writer_of(large);
    CHECK(large_writer.write(reader) == 2);
    CHECK(large_writer.avail() == 8);
    CHECK(large == Bytes<10>{4, 5, 0, 0, 0, 0, 0, 0, 0, 0});
    // Nothing left: further copies move nothing.
    CHECK(reader.read(large_writer) == 0);
    CHECK(large_writer.avail() == 8);
  }

  TEST_CASE("read_write_struct_infallible") {
    Bytes<sizeof(PaddedPod)> buffer{};
    buffer.fill(0x5A);  // the padding keeps whatever was there
    auto writer = writer_of(buffer);
    const PaddedPod value{0x12345678, 0xABCDEF0123456789};
    REQUIRE(writer.write_val(value).has_value());
    CHECK(writer.avail() == 0);
    // Field layout: `a` at offset 0, `b` at offset 8.
    std::uint32_t a_bytes;
    std::uint64_t b_bytes;
    std::memcpy(&a_bytes, buffer.data(), 4);
    std::memcpy(&b_bytes, buffer.data() + 8, 8);
    CHECK(a_bytes == value.a);
    CHECK(b_bytes == value.b);

    auto reader = reader_of(buffer);
    auto read = reader.read_val<PaddedPod>();
    REQUIRE(read.has_value());
    CHECK(read->a == value.a);
    CHECK(read->b == value.b);
    CHECK(reader.remain() == 0);
  }

  TEST_CASE("read_beyond_buffer_infallible_fails_and_does_not_move") {
    const Bytes<3> data{1, 2, 3};
    auto reader = reader_of(data);
    const std::byte* before = reader.cursor();
    CHECK(error_of(reader.read_val<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(reader.cursor() == before);
    CHECK(reader.remain() == 3);
    // The bytes are still there to read with a type that fits.
    auto two = reader.read_val<std::uint16_t>();
    REQUIRE(two.has_value());
    CHECK(*two == 0x0201);
    CHECK(error_of(reader.read_val<std::uint16_t>()) == Error::InvalidArgs);
    CHECK(reader.remain() == 1);
  }

  TEST_CASE("write_beyond_buffer_infallible_fails_and_writes_nothing") {
    Bytes<3> buffer{7, 7, 7};
    auto writer = writer_of(buffer);
    const std::byte* before = writer.cursor();
    CHECK(error_of(writer.write_val(std::uint32_t{0xDEADBEEF})) == Error::InvalidArgs);
    CHECK(writer.cursor() == before);
    CHECK(writer.avail() == 3);
    CHECK(buffer == Bytes<3>{7, 7, 7});
  }

  TEST_CASE("invalid_read_write_infallible") {
    Bytes<3> buffer{};
    auto writer = writer_of(buffer);
    CHECK(error_of(writer.write_val(std::uint32_t{0xDEADBEEF})) == Error::InvalidArgs);
    auto reader = reader_of(buffer);
    CHECK(error_of(reader.read_val<std::uint32_t>()) == Error::InvalidArgs);
  }

  TEST_CASE("typed_access_succeeds_exactly_when_the_value_fits") {
    Bytes<16> buffer{};
    for (std::size_t len = 0; len <= 16; ++len) {
      CAPTURE(len);
      auto span = std::as_writable_bytes(std::span(buffer)).first(len);
      VmWriter<Infallible> writer(span);
      VmReader<Infallible> reader(std::as_bytes(span));
      const bool fits = len >= sizeof(std::uint64_t);
      CHECK(writer.write_val(std::uint64_t{1}).has_value() == fits);
      CHECK(reader.read_val<std::uint64_t>().has_value() == fits);
      CHECK(writer.avail() == (fits ? len - 8 : len));
      CHECK(reader.remain() == (fits ? len - 8 : len));
    }
  }

  TEST_CASE("empty_reader_and_writer_hold_nothing") {
    VmReader<Infallible> reader;
    VmWriter<Infallible> writer;
    CHECK(reader.remain() == 0);
    CHECK(writer.avail() == 0);
    CHECK(error_of(reader.read_val<std::uint8_t>()) == Error::InvalidArgs);
    CHECK(error_of(writer.write_val(std::uint8_t{1})) == Error::InvalidArgs);
    CHECK(reader.read(writer) == 0);
    CHECK(writer.fill_zeros(10) == 0);
    CHECK(reader.skip(0).has_value());
    CHECK(error_of(writer.skip(1)) == Error::InvalidArgs);
  }

  TEST_CASE("fill_infallible") {
    Bytes<8> buffer;
    buffer.fill(0x7F);
    auto writer = writer_of(buffer);
    CHECK(writer.fill_zeros(10) == 8);
    CHECK(writer.avail() == 0);
    CHECK(buffer == Bytes<8>{});
  }

  TEST_CASE("fill_zeros_fills_only_the_requested_prefix") {
    Bytes<8> buffer;
    buffer.fill(0x7F);
    auto writer = writer_of(buffer);
    CHECK(writer.fill_zeros(0) == 0);
    CHECK(writer.avail() == 8);
    CHECK(writer.fill_zeros(3) == 3);
    CHECK(writer.avail() == 5);
    CHECK(buffer == Bytes<8>{0, 0, 0, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F});
  }

  TEST_CASE("skip_read_infallible") {
    const Bytes<5> data{10, 20, 30, 40, 50};
    auto reader = reader_of(data);
    REQUIRE(reader.skip(2).has_value());
    CHECK(reader.remain() == 3);
    Bytes<3> out{};
    auto writer = writer_of(out);
    CHECK(reader.read(writer) == 3);
    CHECK(out == Bytes<3>{30, 40, 50});
  }

  TEST_CASE("skip_write_infallible") {
    Bytes<5> buffer{};
    auto writer = writer_of(buffer);
    REQUIRE(writer.skip(2).has_value());
    const Bytes<3> data{100, 101, 102};
    auto reader = reader_of(data);
    CHECK(writer.write(reader) == 3);
    CHECK(buffer == Bytes<5>{0, 0, 100, 101, 102});
  }

  TEST_CASE("skip_beyond_the_end_fails_and_nothing_moves") {
    const Bytes<5> data{1, 2, 3, 4, 5};
    auto reader = reader_of(data);
    REQUIRE(reader.skip(1).has_value());
    const std::byte* reader_at = reader.cursor();
    CHECK(error_of(reader.skip(5)) == Error::InvalidArgs);
    CHECK(error_of(reader.skip(kMax)) == Error::InvalidArgs);
    CHECK(reader.cursor() == reader_at);
    CHECK(reader.remain() == 4);
    // Skipping exactly to the end is allowed.
    CHECK(reader.skip(4).has_value());
    CHECK(reader.remain() == 0);

    Bytes<5> buffer{};
    auto writer = writer_of(buffer);
    REQUIRE(writer.skip(3).has_value());
    std::byte* writer_at = writer.cursor();
    CHECK(error_of(writer.skip(3)) == Error::InvalidArgs);
    CHECK(error_of(writer.skip(kMax)) == Error::InvalidArgs);
    CHECK(writer.cursor() == writer_at);
    CHECK(writer.avail() == 2);
    CHECK(writer.skip(2).has_value());
    CHECK(writer.avail() == 0);
  }

  TEST_CASE("limit_read_infallible") {
    const Bytes<5> data{1, 2, 3, 4, 5};
    auto reader = reader_of(data);
    reader.limit(3);
    CHECK(reader.remain() == 3);
    Bytes<3> out{};
    auto writer = writer_of(out);
    CHECK(reader.read(writer) == 3);
    CHECK(out == Bytes<3>{1, 2, 3});
    Bytes<1> extra{};
    auto extra_writer = writer_of(extra);
    CHECK(reader.read(extra_writer) == 0);
    CHECK(extra == Bytes<1>{0});
  }

  TEST_CASE("limit_write_infallible") {
    Bytes<5> buffer{};
    auto writer = writer_of(buffer);
    writer.limit(3);
    CHECK(writer.avail() == 3);
    const Bytes<4> data{10, 20, 30, 40};
    std::size_t failures = 0;
    for (std::uint8_t v : data) {
      if (!writer.write_val(v)) ++failures;
    }
    CHECK(failures == 1);
    CHECK(buffer == Bytes<5>{10, 20, 30, 0, 0});
  }

  TEST_CASE("limit_only_shrinks") {
    const Bytes<5> data{};
    auto reader = reader_of(data);
    REQUIRE(reader.skip(3).has_value());
    reader.limit(100);
    CHECK(reader.remain() == 2);
    reader.limit(1).limit(5);
    CHECK(reader.remain() == 1);
    reader.limit(0);
    CHECK_FALSE(reader.has_remain());

    Bytes<5> buffer{};
    auto writer = writer_of(buffer);
    writer.limit(kMax);
    CHECK(writer.avail() == 5);
    writer.limit(2).limit(4);
    CHECK(writer.avail() == 2);
  }

  TEST_CASE("read_write_once_infallible") {
    alignas(8) Bytes<8> buffer{};
    auto writer = writer_of(buffer);
    const std::uint64_t val = 0x1122334455667788;
    REQUIRE(writer.write_once(val).has_value());
    CHECK(writer.avail() == 0);
    auto reader = reader_of(buffer);
    auto read = reader.read_once<std::uint64_t>();
    REQUIRE(read.has_value());
    CHECK(*read == val);
    CHECK(reader.remain() == 0);
  }

  TEST_CASE("once_access_round_trips_every_width_and_sign") {
    alignas(8) Bytes<16> buffer{};
    auto writer = writer_of(buffer);
    REQUIRE(writer.write_once(std::uint8_t{0xA1}).has_value());
    REQUIRE(writer.write_once(std::int8_t{-2}).has_value());
    REQUIRE(writer.write_once(std::uint16_t{0xB2C3}).has_value());
    REQUIRE(writer.write_once(std::int32_t{-5}).has_value());
    REQUIRE(writer.write_once(std::int64_t{-0x123456789}).has_value());
    CHECK(writer.avail() == 0);
    CHECK(buffer[0] == 0xA1);
    CHECK(buffer[1] == 0xFE);
    CHECK(buffer[2] == 0xC3);
    CHECK(buffer[3] == 0xB2);
    CHECK(buffer[4] == 0xFB);
    CHECK(buffer[7] == 0xFF);

    auto reader = reader_of(buffer);
    CHECK(reader.read_once<std::uint8_t>().value() == 0xA1);
    CHECK(reader.read_once<std::int8_t>().value() == -2);
    CHECK(reader.read_once<std::uint16_t>().value() == 0xB2C3);
    CHECK(reader.read_once<std::int32_t>().value() == -5);
    CHECK(reader.read_once<std::int64_t>().value() == -0x123456789);
  }

  TEST_CASE("misaligned_once_access_fails_and_nothing_moves") {
    alignas(8) Bytes<16> buffer{};
    auto reader = reader_of(buffer);
    REQUIRE(reader.skip(1).has_value());
    const std::byte* reader_at = reader.cursor();
    CHECK(error_of(reader.read_once<std::uint16_t>()) == Error::InvalidArgs);
    CHECK(error_of(reader.read_once<std::uint32_t>()) == Error::InvalidArgs);
    CHECK(error_of(reader.read_once<std::uint64_t>()) == Error::InvalidArgs);
    CHECK(reader.cursor() == reader_at);
    // A byte is always aligned.
    CHECK(reader.read_once<std::uint8_t>().has_value());
    // At offset 4: aligned for u32 but not for u64.
    REQUIRE(reader.skip(2).has_value());
    CHECK(error_of(reader.read_once<std::uint64_t>()) == Error::InvalidArgs);
    CHECK(reader.read_once<std::uint32_t>().has_value());

    auto writer = writer_of(buffer);
    REQUIRE(writer.skip(2).has_value());
    std::byte* writer_at = writer.cursor();
    CHECK(error_of(writer.write_once(std::uint32_t{0xFFFFFFFF})) == Error::InvalidArgs);
    CHECK(error_of(writer.write_once(std::uint64_t{~0ull})) == Error::InvalidArgs);
    CHECK(writer.cursor() == writer_at);
    CHECK(buffer == Bytes<16>{});
    CHECK(writer.write_once(std::uint16_t{0xFFFF}).has_value());
    CHECK(buffer[2] == 0xFF);
    CHECK(buffer[3] == 0xFF);
  }

  TEST_CASE("short_once_access_fails") {
    alignas(8) Bytes<8> buffer{};
    auto reader = reader_of(buffer);
    reader.limit(4);
    CHECK(error_of(reader.read_once<std::uint64_t>()) == Error::InvalidArgs);
    CHECK(reader.remain() == 4);
    auto writer = writer_of(buffer);
    writer.limit(7);
    CHECK(error_of(writer.write_once(std::uint64_t{1})) == Error::InvalidArgs);
    CHECK(writer.avail() == 7);
    CHECK(buffer == Bytes<8>{});
  }

  TEST_CASE("write_val_infallible") {
    Bytes<12> buffer{};
    auto writer = writer_of(buffer);
    for (std::uint32_t v : {1u, 2u, 3u}) REQUIRE(writer.write_val(v).has_value());
    CHECK(buffer == Bytes<12>{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0});
  }

  TEST_CASE("clone_exclusive_writes_without_advancing_the_original") {
    Bytes<8> buffer{};
    auto writer = writer_of(buffer);
    REQUIRE(writer.write_val(std::uint8_t{1}).has_value());
    {
      auto clone = writer.clone_exclusive();
      CHECK(clone.cursor() == writer.cursor());
      CHECK(clone.avail() == 7);
      REQUIRE(clone.write_val(std::uint16_t{0xBBAA}).has_value());
      CHECK(clone.avail() == 5);
      clone.limit(1);
      CHECK(clone.fill_zeros(10) == 1);
    }
    CHECK(buffer == Bytes<8>{1, 0xAA, 0xBB, 0, 0, 0, 0, 0});
    // The original neither advanced nor shrank: its next write lands where the clone's did.
    CHECK(writer.avail() == 7);
    REQUIRE(writer.write_val(std::uint8_t{0xCC}).has_value());
    CHECK(buffer == Bytes<8>{1, 0xCC, 0xBB, 0, 0, 0, 0, 0});
  }

  // ---------------------------------------------------------------------------------------
  // VmIo on untyped frames and segments.

  TEST_CASE("fill_zeros_segment") {
    auto segment = alloc_segment(1);
    const Bytes<5> values{1, 2, 3, 4, 5};
    REQUIRE(segment.write_slice(0, std::span<const std::uint8_t>(values)).has_value());
    REQUIRE(segment.fill_zeros(1, 3).has_value());
    Bytes<5> buffer{};
    REQUIRE(segment.read_bytes(0, std::as_writable_bytes(std::span(buffer))).has_value());
    CHECK(buffer == Bytes<5>{1, 0, 0, 0, 5});

    auto beyond = segment.fill_zeros(8192, 3);
    REQUIRE_FALSE(beyond.has_value());
    CHECK(beyond.error().error == Error::InvalidArgs);
    CHECK(beyond.error().filled == 0);
  }

  TEST_CASE("fill_zeros_segment_reports_a_partial_fill") {
    auto segment = alloc_segment(1);
    const std::uint32_t ones = 0xFFFFFFFF;
    REQUIRE(segment.write_val(4092, ones).has_value());

    auto partial = segment.fill_zeros(4094, 10);
    REQUIRE_FALSE(partial.has_value());
    CHECK(partial.error().error == Error::InvalidArgs);
    CHECK(partial.error().filled == 2);
    // The two bytes inside the segment are zeroed; the two before them are untouched.
    CHECK(segment.read_val<std::uint32_t>(4092).value() == 0x0000FFFF);
  }

  TEST_CASE("fill_zeros_segment_bounds") {
    auto segment = alloc_segment(2);
    REQUIRE(segment.write_val(8188, std::uint32_t{0xFFFFFFFF}).has_value());
    // Exact fit up to the end, and an empty fill at the end.
    CHECK(segment.fill_zeros(8190, 2).has_value());
    CHECK(segment.fill_zeros(8192, 0).has_value());
    CHECK(segment.read_val<std::uint32_t>(8188).value() == 0x0000FFFF);

    auto past_end = segment.fill_zeros(8193, 0);
    REQUIRE_FALSE(past_end.has_value());
    CHECK(past_end.error().error == Error::InvalidArgs);
    CHECK(past_end.error().filled == 0);

    auto huge_offset = segment.fill_zeros(kMax, 1);
    REQUIRE_FALSE(huge_offset.has_value());
    CHECK(huge_offset.error().error == Error::InvalidArgs);
    CHECK(huge_offset.error().filled == 0);

    // offset + len wraps: Overflow, and nothing is written.
    auto wraps = segment.fill_zeros(8188, kMax - 2);
    REQUIRE_FALSE(wraps.has_value());
    CHECK(wraps.error().error == Error::Overflow);
    CHECK(wraps.error().filled == 0);
    CHECK(segment.read_val<std::uint32_t>(8188).value() == 0x0000FFFF);
  }

  TEST_CASE("write_slice_segment") {
    auto segment = alloc_segment(1);
    const Bytes<5> data{1, 2, 3, 4, 5};
    REQUIRE(segment.write_slice(0, std::span<const std::uint8_t>(data)).has_value());
    Bytes<12> buffer;
    buffer.fill(0xEE);
    REQUIRE(segment.read_bytes(0, std::as_writable_bytes(std::span(buffer))).has_value());
    // The segment was allocated zeroed: the bytes after the slice read back as zero.
    CHECK(buffer == Bytes<12>{1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0});

    const std::array<std::uint32_t, 2> words{0x04030201, 0x08070605};
    REQUIRE(segment.write_slice(100, std::span<const std::uint32_t>(words)).has_value());
    Bytes<8> word_bytes{};
    REQUIRE(segment.read_bytes(100, std::as_writable_bytes(std::span(word_bytes))).has_value());
    CHECK(word_bytes == Bytes<8>{1, 2, 3, 4, 5, 6, 7, 8});
  }

  TEST_CASE("write_slice_segment_across_a_frame_boundary") {
    auto segment = alloc_segment(2);
    const Bytes<6> data{1, 2, 3, 4, 5, 6};
    REQUIRE(segment.write_slice(4093, std::span<const std::uint8_t>(data)).has_value());
    // The second frame sees the tail of the slice at its start.
    auto second = segment.frame_at(1);
    CHECK(second->read_val<std::uint8_t>(0).value() == 4);
    CHECK(second->read_val<std::uint8_t>(2).value() == 6);
    Bytes<6> back{};
    REQUIRE(segment.read_bytes(4093, std::as_writable_bytes(std::span(back))).has_value());
    CHECK(back == data);
  }

  TEST_CASE("read_val_segment") {
    auto segment = alloc_segment(1);
    const std::array<std::uint32_t, 3> values{1, 2, 3};
    REQUIRE(segment.write_slice(0, std::span<const std::uint32_t>(values)).has_value());
    CHECK(segment.read_val<std::uint32_t>(0).value() == 1);
    CHECK(segment.read_val<std::uint32_t>(4).value() == 2);
    CHECK(segment.read_val<std::uint32_t>(8).value() == 3);
    // Unaligned: bytes 2..5 are {0, 0, 2, 0}.
    CHECK(segment.read_val<std::uint32_t>(2).value() == 0x00020000);
    // The last value that fits, and one byte further.
    CHECK(segment.read_val<std::uint32_t>(4092).has_value());
    CHECK(error_of(segment.read_val<std::uint32_t>(4093)) == Error::InvalidArgs);
    CHECK(error_of(segment.read_val<std::uint8_t>(4096)) == Error::InvalidArgs);

    const PaddedPod pod{7, 0x1122334455667788};
    REQUIRE(segment.write_val(200, pod).has_value());
    auto back = segment.read_val<PaddedPod>(200);
    REQUIRE(back.has_value());
    CHECK(back->a == 7);
    CHECK(back->b == 0x1122334455667788);
  }

  TEST_CASE("read_slice_segment") {
    auto segment = alloc_segment(1);
    const std::array<std::uint32_t, 3> values{0xA, 0xB, 0xC};
    REQUIRE(segment.write_slice(16, std::span<const std::uint32_t>(values)).has_value());
    std::array<std::uint32_t, 3> back{};
    REQUIRE(segment.read_slice(16, std::span<std::uint32_t>(back)).has_value());
    CHECK(back == values);
    Bytes<4> first{};
    REQUIRE(segment.read_slice(16, std::span<std::uint8_t>(first)).has_value());
    CHECK(first == Bytes<4>{0xA, 0, 0, 0});

    // Over the end: an error, and the output is untouched (no short reads).
    std::array<std::uint32_t, 3> untouched{9, 9, 9};
    CHECK(error_of(segment.read_slice(4088, std::span<std::uint32_t>(untouched))) ==
          Error::InvalidArgs);
    CHECK(untouched == std::array<std::uint32_t, 3>{9, 9, 9});
  }

  TEST_CASE("vmio_offsets_are_overflow_safe") {
    auto segment = alloc_segment(1);
    Bytes<4> out;
    out.fill(0x11);
    auto out_bytes = std::as_writable_bytes(std::span(out));
    const Bytes<4> in{1, 2, 3, 4};
    auto in_bytes = std::as_bytes(std::span(in));

    // offset + len wraps around.
    CHECK(error_of(segment.read_bytes(kMax, out_bytes)) == Error::Overflow);
    CHECK(error_of(segment.read_bytes(kMax - 2, out_bytes)) == Error::Overflow);
    CHECK(error_of(segment.write_bytes(kMax, in_bytes)) == Error::Overflow);
    CHECK(error_of(segment.write_bytes(kMax - 1, in_bytes)) == Error::Overflow);
    CHECK(error_of(segment.read_val<std::uint32_t>(kMax)) == Error::Overflow);
    CHECK(error_of(segment.write_val(kMax, std::uint32_t{1})) == Error::Overflow);
    CHECK(error_of(segment.read_slice(kMax, std::span<std::uint8_t>(out))) == Error::Overflow);
    CHECK(error_of(segment.write_slice(kMax, std::span<const std::uint8_t>(in))) ==
          Error::Overflow);

    // No wrap, but beyond the end.
    CHECK(error_of(segment.read_bytes(kMax, out_bytes.first(0))) == Error::InvalidArgs);
    CHECK(error_of(segment.read_bytes(4097, out_bytes.first(0))) == Error::InvalidArgs);
    CHECK(error_of(segment.read_bytes(4093, out_bytes)) == Error::InvalidArgs);
    CHECK(error_of(segment.write_bytes(4093, in_bytes)) == Error::InvalidArgs);
    CHECK(error_of(segment.write_bytes(4097, in_bytes.first(0))) == Error::InvalidArgs);
    // Exactly at the end.
    CHECK(segment.read_bytes(4096, out_bytes.first(0)).has_value());
    CHECK(segment.write_bytes(4092, in_bytes).has_value());

    // Nothing was read into `out` by the failed calls.
    CHECK(out == Bytes<4>{0x11, 0x11, 0x11, 0x11});
    // Nothing was written by the failed calls: only the last successful write is there.
    std::size_t written_words = 0;
    for (std::size_t off = 0; off < 4092; off += 4) {
      if (segment.read_val<std::uint32_t>(off).value() != 0) ++written_words;
    }
    CHECK(written_words == 0);
    CHECK(segment.read_val<std::uint32_t>(4092).value() == 0x04030201);
  }

  TEST_CASE("vmio_once_access_checks_range_and_alignment") {
    auto frame = alloc_frame();
    REQUIRE(frame.write_once(8, std::uint64_t{0x0102030405060708}).has_value());
    CHECK(frame.read_once<std::uint64_t>(8).value() == 0x0102030405060708);
    CHECK(frame.read_once<std::uint32_t>(12).value() == 0x01020304);
    CHECK(frame.read_val<std::uint64_t>(8).value() == 0x0102030405060708);

    // The last aligned word fits; beyond the end is InvalidArgs (OSTD panics in skip).
    CHECK(frame.write_once(4088, std::uint64_t{5}).has_value());
    CHECK(frame.read_once<std::uint64_t>(4088).value() == 5);
    CHECK(error_of(frame.read_once<std::uint8_t>(4096)) == Error::InvalidArgs);
    CHECK(error_of(frame.read_once<std::uint8_t>(4097)) == Error::InvalidArgs);
    CHECK(error_of(frame.read_once<std::uint64_t>(kMax)) == Error::InvalidArgs);
    CHECK(error_of(frame.write_once(kMax, std::uint8_t{1})) == Error::InvalidArgs);
    CHECK(error_of(frame.write_once(4096, std::uint8_t{1})) == Error::InvalidArgs);

    // Misaligned for the width: InvalidArgs, nothing written.
    CHECK(error_of(frame.read_once<std::uint32_t>(2)) == Error::InvalidArgs);
    CHECK(error_of(frame.write_once(2, std::uint32_t{0xFFFFFFFF})) == Error::InvalidArgs);
    CHECK(error_of(frame.write_once(4092, std::uint64_t{~0ull})) == Error::InvalidArgs);
    CHECK(frame.read_val<std::uint32_t>(0).value() == 0);
    CHECK(frame.read_val<std::uint32_t>(4).value() == 0);
    CHECK(frame.read_val<std::uint32_t>(4092).value() == 0);
  }

  TEST_CASE("frame_reader_and_writer_cover_exactly_one_page") {
    auto frame = alloc_frame();
    auto reader = frame.reader();
    auto writer = frame.writer();
    CHECK(reader.remain() == kPageSize);
    CHECK(writer.avail() == kPageSize);
    CHECK(reader.cursor() == paddr_to_vaddr(frame.paddr()));
    CHECK(writer.cursor() == paddr_to_vaddr(frame.paddr()));

    // Fill the page through the writer, one word at a time, until it is full.
    std::size_t words = 0;
    while (writer.write_val(static_cast<std::uint32_t>(words)).has_value()) ++words;
    CHECK(words == kPageSize / 4);
    CHECK(writer.avail() == 0);
    CHECK(writer.fill_zeros(1) == 0);

    // Read it back through VmIo and through the reader.
    CHECK(frame.read_val<std::uint32_t>(0).value() == 0);
    CHECK(frame.read_val<std::uint32_t>(4092).value() == kPageSize / 4 - 1);
    std::size_t mismatches = 0;
    for (std::uint32_t i = 0; i < kPageSize / 4; ++i) {
      if (reader.read_val<std::uint32_t>().value() != i) ++mismatches;
    }
    CHECK(mismatches == 0);
    CHECK(reader.remain() == 0);
    CHECK(error_of(reader.read_val<std::uint8_t>()) == Error::InvalidArgs);
  }

  TEST_CASE("segment_reader_and_writer_cover_every_frame") {
    auto segment = alloc_segment(3);
    CHECK(segment.reader().remain() == 3 * kPageSize);
    CHECK(segment.writer().avail() == 3 * kPageSize);
    CHECK(segment.reader().cursor() == paddr_to_vaddr(segment.paddr()));
    auto writer = segment.writer();
    REQUIRE(writer.skip(2 * kPageSize + 8).has_value());
    REQUIRE(writer.write_val(std::uint64_t{0xC0FFEE}).has_value());
    // The write is visible through the handle of the third frame.
    CHECK(segment.frame_at(2)->read_val<std::uint64_t>(8).value() == 0xC0FFEE);
  }

  TEST_CASE("frame_and_its_segment_see_the_same_bytes") {
    auto segment = alloc_segment(2);
    REQUIRE(segment.write_val(kPageSize + 16, std::uint64_t{0xABCDEF}).has_value());
    Frame<NoMeta> second = segment.frame_at(1).to_owned();
    CHECK(second.read_val<std::uint64_t>(16).value() == 0xABCDEF);
    // An erased untyped handle keeps VmIo.
    UFrame erased = second;
    REQUIRE(erased.write_val(24, std::uint16_t{0x7777}).has_value());
    CHECK(segment.read_val<std::uint16_t>(kPageSize + 24).value() == 0x7777);
  }

  // ---------------------------------------------------------------------------------------
  // Concurrent access (suite `threaded`): racy copies are defined, once-accesses do not tear.

  TEST_CASE("concurrent_copies_on_one_frame_are_not_data_races") {
    auto frame = alloc_frame();
    constexpr int kRounds = 300;
    std::atomic<bool> done{false};
    std::atomic<bool> fill_failed{false};
    std::thread writer_thread([&] {
      std::array<std::byte, 1024> pattern;
      pattern.fill(std::byte{0xAB});
      for (int i = 0; i < kRounds; ++i) {
        auto writer = frame.writer();
        for (int chunk = 0; chunk < 4; ++chunk) {
          VmReader<Infallible> src{std::span<const std::byte>(pattern)};
          writer.write(src);
        }
        if (!frame.fill_zeros(0, kPageSize)) fill_failed.store(true);
      }
      done.store(true, std::memory_order_release);
    });
    std::size_t bad_bytes = 0;
    std::size_t reads = 0;
    std::array<std::uint8_t, kPageSize> snapshot{};
    std::size_t failed_reads = 0;
    while (!done.load(std::memory_order_acquire) || reads == 0) {
      if (!frame.read_bytes(0, std::as_writable_bytes(std::span(snapshot)))) ++failed_reads;
      ++reads;
      for (std::uint8_t b : snapshot) {
        if (b != 0 && b != 0xAB) ++bad_bytes;
      }
    }
    writer_thread.join();
    CHECK_FALSE(fill_failed.load());
    CHECK(failed_reads == 0);
    CHECK(bad_bytes == 0);
  }

  TEST_CASE("concurrent_once_accesses_do_not_tear") {
    auto frame = alloc_frame();
    constexpr int kWrites = 20000;
    constexpr std::uint64_t kA = 0;
    constexpr std::uint64_t kB = ~0ull;
    std::atomic<bool> done{false};
    std::thread writer_thread([&] {
      for (int i = 0; i < kWrites; ++i) {
        (void)frame.write_once(64, (i & 1) != 0 ? kB : kA);
      }
      done.store(true, std::memory_order_release);
    });
    std::size_t torn = 0;
    std::size_t reads = 0;
    while (!done.load(std::memory_order_acquire) || reads == 0) {
      std::uint64_t v = frame.read_once<std::uint64_t>(64).value();
      ++reads;
      if (v != kA && v != kB) ++torn;
    }
    writer_thread.join();
    CHECK(torn == 0);
    CHECK(frame.read_once<std::uint64_t>(64).value() == kB);
  }
}

// Found by the stress engine under AddressSanitizer: racy copies tore 8-byte words (ASan's
// memmove copies bytes), so a reader racing a writer saw words half old, half new. A writer
// copies whole buffers of one repeated word, alternating two patterns, into a shared buffer
// while a reader copies the shared buffer out: every word read must be one of the patterns.
TEST_SUITE("unit") {
  TEST_CASE("regression_racy_copy_tears_aligned_words") {
    constexpr std::size_t kWords = 512;
    constexpr std::uint64_t kPatterns[2] = {0x0101010101010101ULL, 0xfefefefefefefefeULL};
    alignas(64) static std::array<std::uint64_t, kWords> shared;
    std::array<std::array<std::uint64_t, kWords>, 2> sources;
    for (std::size_t p = 0; p < 2; ++p) sources[p].fill(kPatterns[p]);
    shared = sources[0];
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      for (std::size_t round = 0; !stop.load(std::memory_order_relaxed); ++round) {
        VmReader<Infallible> src{std::as_bytes(std::span(sources[round % 2]))};
        VmWriter<Infallible> dst{std::as_writable_bytes(std::span(shared))};
        (void)dst.write(src);
      }
    });
    std::size_t torn = 0;
    std::size_t changes = 0;
    std::uint64_t last = kPatterns[0];
    std::array<std::uint64_t, kWords> out{};
    for (int round = 0; round < 4000; ++round) {
      VmReader<Infallible> src{std::as_bytes(std::span(shared))};
      VmWriter<Infallible> dst{std::as_writable_bytes(std::span(out))};
      (void)src.read(dst);
      for (std::uint64_t w : out) {
        if (w != kPatterns[0] && w != kPatterns[1]) ++torn;
      }
      if (out[0] != last) ++changes;
      last = out[0];
    }
    stop.store(true, std::memory_order_relaxed);
    writer.join();
    CHECK(torn == 0);
    // The copies did race (otherwise the test proves nothing); on one core they may not often.
    MESSAGE("reader saw the first word change " << changes << " times");
  }
}
