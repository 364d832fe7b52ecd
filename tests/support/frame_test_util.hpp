// Helpers shared by the frame-layer tests: mock metadata types and a leak check.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>

#include <vmspace/frame_allocator.hpp>

namespace vmspace::test {

// Typed metadata (frames carrying it are not untyped: no VmIo, no UFrame).
struct MockFrameMeta {
  static constexpr const char* kTypeName = "MockFrameMeta";
  std::uint32_t value = 0;
};

// Untyped metadata (frames carrying it may become UFrames and be read and written).
struct MockUFrameMeta {
  static constexpr bool kIsUntyped = true;
  static constexpr const char* kTypeName = "MockUFrameMeta";
  std::uint32_t value = 0;
};

// Checks on destruction that the installed frame allocator holds as many free bytes as when
// it was constructed: whatever the test allocated has been given back. Single-threaded tests
// only (free_bytes() is exact only while nobody allocates).
class FreeBytesUnchanged {
 public:
  FreeBytesUnchanged() : start_(global_frame_allocator().free_bytes()) {}
  FreeBytesUnchanged(const FreeBytesUnchanged&) = delete;
  FreeBytesUnchanged& operator=(const FreeBytesUnchanged&) = delete;
  ~FreeBytesUnchanged() {
    CHECK_MESSAGE(global_frame_allocator().free_bytes() == start_, "frames leaked");
  }

  std::uint64_t start() const noexcept { return start_; }

 private:
  std::uint64_t start_;
};

}  // namespace vmspace::test
