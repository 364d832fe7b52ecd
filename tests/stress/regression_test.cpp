// Regression tests for library bugs the stress engine found (suite `stress`). Each is named
// after the bug and replays the shortest failing history the engine reported.
#include <doctest/doctest.h>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/vm_space.hpp>

#include "stress_support.hpp"

using namespace vmspace;
using vmspace::stress_test::ensure_machine;

namespace {

constexpr std::uint64_t k2M = 2u << 20;
constexpr std::uint64_t k1G = std::uint64_t{1} << 30;
const PageProperty kRw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);

USegment huge_segment() {
  auto pa = global_frame_allocator().alloc(FrameLayout{k2M, k2M});
  REQUIRE(pa.has_value());
  auto seg = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + k2M}, [](Paddr) { return NoMeta{}; });
  REQUIRE(seg.has_value());
  return USegment(std::move(*seg));
}

}  // namespace

TEST_SUITE("stress") {
  // Engine report (profile disjoint, seed 3):
  //   #3685  map 2 MiB segment @0xc0400000 -> Ok
  //   #17460 cursor [0xc0000000, 0x100000000) unmap(0x40000000) @0xc0000000 -> 18 frames
  //   => the model removed 19 mappings of 530 frames in all
  // A whole 1 GiB entry covered by the unmap is detached as one sub-tree, whose count
  // (mark_stray_and_unlock) included only level-1 entries: the 2 MiB leaf's 512 frames were
  // missing. Taken alone (the cursor positioned below the level-2 node) the same leaf counted 512,
  // so the result depended on the cursor's internal path.
  TEST_CASE("regression_unmap_counts_huge_frames_in_detached_subtree") {
    ensure_machine();
    auto space = VmSpace::create().value();
    const Vaddr g = 3 * k1G;
    {
      auto guard = disable_preempt();
      auto c = space->cursor_mut(guard, {g, g + 4 * k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->jump(g + 2 * k2M).has_value());
      REQUIRE(c->map_segment(huge_segment(), kRw).has_value());
      REQUIRE(c->jump(g + k2M).has_value());
      REQUIRE(c->map(UFrame(FrameAllocOptions().alloc_frame().value()), kRw).has_value());
    }
    SUBCASE("inside a detached 1 GiB sub-tree") {
      auto guard = disable_preempt();
      auto c = space->cursor_mut(guard, {g, g + k1G});
      REQUIRE(c.has_value());
      auto n = c->unmap(k1G);
      REQUIRE(n.has_value());
      CHECK(*n == 513);
    }
    SUBCASE("taken alone") {
      auto guard = disable_preempt();
      auto c = space->cursor_mut(guard, {g, g + 4 * k2M});
      REQUIRE(c.has_value());
      auto n = c->unmap(4 * k2M);
      REQUIRE(n.has_value());
      CHECK(*n == 513);
    }
  }
}
