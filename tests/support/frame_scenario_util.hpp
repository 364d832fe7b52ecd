// Frames, segments and unique frames: the scenarios of OSTD `ostd/src/mm/frame/test.rs`,
// `ostd/src/mm/frame/allocator.rs` and OSDK's `osdk/deps/frame-allocator/src/test.rs`, plus
// UniqueFrame and on_drop behaviour.
//
// Shared by the frame_*_test.cpp files of these scenarios (one executable, unit_frame).
#pragma once

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
inline CpuBinding bind_bsp() {
  auto binding = CpuBinding::bind(CpuId::bsp());
  REQUIRE(binding.has_value());
  return std::move(*binding);
}

inline std::uint64_t slot_ref_count(Paddr pa) {
  return meta_slot(pa)->ref_count_ref().load(boost::memory_order_relaxed);
}

// What PageWitness::on_drop saw last.
struct WitnessRecord {
  int calls = 0;
  std::uint32_t tag = 0;         // the metadata value at the time of the drop
  std::size_t remain = 0;        // bytes the reader offered
  std::uint64_t first_word = 0;  // page bytes [0, 8)
  std::uint64_t last_word = 0;   // page bytes [4088, 4096)
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
inline Paddr take_unused_frame() {
  auto pa = global_frame_allocator().alloc(FrameLayout{});
  REQUIRE(pa.has_value());
  REQUIRE(slot_ref_count(*pa) == kRefCountUnused);
  return *pa;
}

inline std::vector<std::byte> bytes_of(std::size_t n, std::uint8_t value) {
  return std::vector<std::byte>(n, std::byte{value});
}

}  // namespace

// What may be converted to what, at compile time.
static_assert(std::is_convertible_v<Frame<MockFrameMeta>&&, DynFrame>);
static_assert(std::is_convertible_v<Frame<MockUFrameMeta>&&, UFrame>);
static_assert(std::is_convertible_v<UFrame&&, DynFrame>);
static_assert(!std::is_constructible_v<UFrame, Frame<MockFrameMeta>&&>,
              "typed frames are not UFrames");
static_assert(!std::is_convertible_v<DynFrame&&, UFrame>, "narrowing needs try_from");
static_assert(!std::is_convertible_v<DynFrame&&, Frame<MockFrameMeta>>, "narrowing needs try_from");
static_assert(std::is_convertible_v<Segment<NoMeta>&&, USegment>);
static_assert(std::is_convertible_v<USegment&&, DynSegment>);
static_assert(!std::is_constructible_v<USegment, Segment<MockFrameMeta>&&>);
static_assert(!std::is_copy_constructible_v<UniqueFrame<NoMeta>>);
