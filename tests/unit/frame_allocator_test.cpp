// The built-in buddy frame allocator and the GlobalFrameAllocator hook: split and merge,
// exact non-power-of-two sizes, alignment, exhaustion, the ACE region-tiling regressions
// (docs/spec_cases.md cases 57-59 and 63-64), double and overlapping frees.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/unique_frame.hpp>

#include "death_test.hpp"
#include "frame_test_util.hpp"
#include "skip.hpp"

using namespace vmspace;
using vmspace::test::FreeBytesUnchanged;

namespace {

using Stats = BuddyFrameAllocator::Stats;
constexpr std::size_t k2M = std::size_t{2} << 20;
constexpr std::size_t k16K = 16 << 10;

// A snapshot of the built-in allocator with every per-CPU cache emptied into the buddy lists.
Stats drained_stats(BuddyFrameAllocator& a = builtin_frame_allocator()) {
  a.drain_caches();
  return a.stats();
}

bool same_blocks(const Stats& a, const Stats& b) {
  return a.free_frames == b.free_frames && a.free_blocks == b.free_blocks;
}

// Free buddy blocks per order as a short vector of (order, count), for messages and checks.
std::vector<std::pair<unsigned, std::uint64_t>> nonzero_orders(const Stats& s) {
  std::vector<std::pair<unsigned, std::uint64_t>> out;
  for (unsigned o = 0; o < s.free_blocks.size(); ++o) {
    if (s.free_blocks[o] != 0) out.emplace_back(o, s.free_blocks[o]);
  }
  return out;
}
using Orders = std::vector<std::pair<unsigned, std::uint64_t>>;

// A physically contiguous area taken raw from the global allocator: its frames are UNUSED and
// belong to the test (e.g. to feed a private allocator). Given back on destruction.
class OwnedArea {
 public:
  OwnedArea(std::size_t size, std::size_t align) : size_(size) {
    auto pa = global_frame_allocator().alloc(FrameLayout{size, align});
    REQUIRE(pa.has_value());
    base_ = *pa;
  }
  OwnedArea(const OwnedArea&) = delete;
  OwnedArea& operator=(const OwnedArea&) = delete;
  ~OwnedArea() { global_frame_allocator().dealloc(base_, size_); }
  Paddr base() const noexcept { return base_; }

 private:
  Paddr base_;
  std::size_t size_;
};

// Takes every free byte out of `a`, largest blocks first, and checks that every block lies
// inside `region` and that no two blocks overlap. Returns the number of bytes taken.
std::uint64_t reclaim_all(BuddyFrameAllocator& a, PaRange region) {
  std::vector<PaRange> blocks;
  for (int order = static_cast<int>(BuddyFrameAllocator::kMaxOrder); order >= 0; --order) {
    const std::size_t bytes = kPageSize << order;
    while (auto pa = a.alloc(FrameLayout{bytes, bytes}))
      blocks.push_back(PaRange{*pa, *pa + bytes});
  }
  std::sort(blocks.begin(), blocks.end(), [](PaRange x, PaRange y) { return x.start < y.start; });
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    CAPTURE(blocks[i]);
    CHECK(region.contains_range(blocks[i]));  // no block extends past the region
    if (i > 0) CHECK(blocks[i - 1].end <= blocks[i].start);
    total += blocks[i].size();
  }
  CHECK(a.free_bytes() == 0);
  return total;
}

// Forwards to the allocator it replaced and refuses the Nth allocation (1-based) and, if
// `fail_after`, every later one too.
class FailingAllocator final : public GlobalFrameAllocator {
 public:
  FailingAllocator(std::uint64_t nth, bool fail_after) : nth_(nth), fail_after_(fail_after) {}

  std::optional<Paddr> alloc(FrameLayout layout) noexcept override {
    const std::uint64_t n = ++calls_;
    if (n == nth_ || (fail_after_ && n > nth_)) return std::nullopt;
    return next_->alloc(layout);
  }
  void dealloc(Paddr addr, std::size_t size) noexcept override { next_->dealloc(addr, size); }
  void add_free_memory(Paddr addr, std::size_t size) noexcept override {
    next_->add_free_memory(addr, size);
  }
  std::uint64_t free_bytes() const noexcept override { return next_->free_bytes(); }

  void set_next(GlobalFrameAllocator* next) noexcept { next_ = next; }
  std::uint64_t calls() const noexcept { return calls_.load(); }

 private:
  GlobalFrameAllocator* next_ = nullptr;
  std::uint64_t nth_;
  bool fail_after_;
  std::atomic<std::uint64_t> calls_{0};
};

// Installs an allocator decorator for the scope, then reinstalls the previous allocator.
class ScopedAllocator {
 public:
  explicit ScopedAllocator(FailingAllocator& a) {
    // The decorator must know its target before it can serve anyone.
    a.set_next(&global_frame_allocator());
    previous_ = set_global_frame_allocator(&a);
  }
  ScopedAllocator(const ScopedAllocator&) = delete;
  ScopedAllocator& operator=(const ScopedAllocator&) = delete;
  ~ScopedAllocator() { set_global_frame_allocator(previous_); }

 private:
  GlobalFrameAllocator* previous_ = nullptr;
};

}  // namespace

TEST_SUITE("unit") {
  // ---- split and merge ----

  TEST_CASE("one_frame_split_and_free_restores_the_block_counts") {
    FreeBytesUnchanged no_leak;
    const Stats before = drained_stats();
    auto pa = global_frame_allocator().alloc(FrameLayout{});
    REQUIRE(pa.has_value());
    const Stats during = drained_stats();
    CHECK(during.free_frames == before.free_frames - 1);
    global_frame_allocator().dealloc(*pa, kPageSize);
    const Stats after = drained_stats();
    CHECK(after.cached_frames == 0);
    CHECK(after.free_frames == before.free_frames);
    CHECK(after.free_blocks == before.free_blocks);
  }

  TEST_CASE("one_frame_from_a_fresh_2m_block_splits_into_one_block_per_order") {
    // docs/spec_cases.md case 63, with our power-of-two orders instead of ACE's 4K/16K/2M.
    FreeBytesUnchanged no_leak;
    OwnedArea area(4 * k2M, 4 * k2M);
    const Paddr s = area.base();
    BuddyFrameAllocator local(num_cpus());
    local.add_free_memory(s, k2M);
    CHECK(nonzero_orders(drained_stats(local)) == Orders{{9, 1}});

    auto pa = local.alloc(FrameLayout{});
    REQUIRE(pa.has_value());
    CHECK(*pa >= s);
    CHECK(*pa < s + k2M);
    CHECK(nonzero_orders(drained_stats(local)) ==
          Orders{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 1}});

    local.dealloc(*pa, kPageSize);
    CHECK(nonzero_orders(drained_stats(local)) == Orders{{9, 1}});  // merged all the way back

    // Asking for more than any free block: nothing, and nothing changes.
    CHECK_FALSE(local.alloc(FrameLayout{2 * k2M, kPageSize}).has_value());
    CHECK(nonzero_orders(drained_stats(local)) == Orders{{9, 1}});
    CHECK(reclaim_all(local, PaRange{s, s + k2M}) == k2M);
  }

  // ---- sizes and alignment ----

  TEST_CASE("non_power_of_two_segments_are_exact_and_fully_returned") {
    FreeBytesUnchanged no_leak;
    const Stats before = drained_stats();
    for (std::size_t n : {3, 5, 7, 511, 513}) {
      CAPTURE(n);
      const std::uint64_t free_before = global_frame_allocator().free_bytes();
      {
        auto seg = FrameAllocOptions().zeroed(false).alloc_segment(n);
        REQUIRE(seg.has_value());
        CHECK(seg->nframes() == n);
        CHECK(global_frame_allocator().free_bytes() == free_before - n * kPageSize);
        // The frames just past the segment are free again (the tail went back), not in use.
        CHECK_FALSE(DynFrame::from_in_use(seg->end_paddr()).has_value());
      }
      CHECK(global_frame_allocator().free_bytes() == free_before);
    }
    const Stats after = drained_stats();
    CHECK(same_blocks(after, before));
  }

  TEST_CASE("allocations_honour_their_alignment") {
    FreeBytesUnchanged no_leak;
    for (unsigned align_order = 0; align_order <= 10; ++align_order) {
      const std::size_t align = kPageSize << align_order;
      for (std::size_t pages : {std::size_t{1}, std::size_t{3}, std::size_t{1} << align_order}) {
        CAPTURE(align);
        CAPTURE(pages);
        auto pa = global_frame_allocator().alloc(FrameLayout{pages * kPageSize, align});
        REQUIRE(pa.has_value());
        CHECK(*pa % align == 0);
        CHECK(*pa != 0);
        CHECK(*pa + pages * kPageSize <= max_paddr());
        for (std::size_t i = 0; i < pages; ++i) {
          CHECK(meta_slot(*pa + i * kPageSize)->ref_count_ref().load() == kRefCountUnused);
        }
        global_frame_allocator().dealloc(*pa, pages * kPageSize);
      }
    }
  }

  TEST_CASE("alloc_rejects_invalid_layouts") {
    FreeBytesUnchanged no_leak;
    auto& a = builtin_frame_allocator();
    CHECK_FALSE(a.alloc(FrameLayout{0, kPageSize}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{100, kPageSize}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{kPageSize + 1, kPageSize}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{kPageSize, 512}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{kPageSize, 3 * kPageSize}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{kPageSize, 0}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{kPageSize, std::size_t{1} << 63}).has_value());
    CHECK_FALSE(a.alloc(FrameLayout{~std::size_t{0} & ~(kPageSize - 1), kPageSize}).has_value());
    const std::size_t too_big = kPageSize << (BuddyFrameAllocator::kMaxOrder + 1);
    CHECK_FALSE(a.alloc(FrameLayout{too_big, kPageSize}).has_value());
  }

  TEST_CASE("stats_add_up") {
    FreeBytesUnchanged no_leak;
    auto held = FrameAllocOptions().alloc_frame();  // leaves something in a cache
    REQUIRE(held.has_value());
    const Stats s = builtin_frame_allocator().stats();
    std::uint64_t in_blocks = 0;
    for (unsigned o = 0; o < s.free_blocks.size(); ++o) in_blocks += s.free_blocks[o] << o;
    CHECK(in_blocks + s.cached_frames == s.free_frames);
    CHECK(s.free_frames * kPageSize == builtin_frame_allocator().free_bytes());
    CHECK(s.total_frames == max_paddr() / kPageSize - 1);  // everything but frame 0
  }

  // ---- exhaustion ----

  TEST_CASE("a_failing_allocation_gives_NoMemory_and_leaks_nothing") {
    FreeBytesUnchanged no_leak;
    FailingAllocator failing(/*nth=*/1, /*fail_after=*/false);
    const std::uint64_t free_before = global_frame_allocator().free_bytes();
    {
      ScopedAllocator scope(failing);
      auto frame = FrameAllocOptions().alloc_frame();
      REQUIRE_FALSE(frame.has_value());
      CHECK(frame.error() == Error::NoMemory);
      CHECK(global_frame_allocator().free_bytes() == free_before);
      auto next = FrameAllocOptions().alloc_frame();  // the second call succeeds
      CHECK(next.has_value());
    }
    CHECK(failing.calls() == 2);
    CHECK(&global_frame_allocator() == &builtin_frame_allocator());  // restored
  }

  TEST_CASE("the_nth_allocation_fails_with_NoMemory_for_every_kind") {
    FreeBytesUnchanged no_leak;
    FailingAllocator failing(/*nth=*/3, /*fail_after=*/true);
    ScopedAllocator scope(failing);
    const std::uint64_t free_before = global_frame_allocator().free_bytes();
    auto a = FrameAllocOptions().alloc_frame();
    auto b = FrameAllocOptions().alloc_segment(4);
    REQUIRE(a.has_value());
    REQUIRE(b.has_value());
    const std::uint64_t free_mid = global_frame_allocator().free_bytes();
    CHECK(free_mid == free_before - 5 * kPageSize);
    CHECK(FrameAllocOptions().alloc_frame().error() == Error::NoMemory);
    CHECK(FrameAllocOptions().alloc_segment(3).error() == Error::NoMemory);
    CHECK(FrameAllocOptions().alloc_frame_with(vmspace::test::MockFrameMeta{1}).error() ==
          Error::NoMemory);
    CHECK(FrameAllocOptions()
              .alloc_segment_with(2, [](Paddr) { return vmspace::test::MockFrameMeta{}; })
              .error() == Error::NoMemory);
    CHECK(global_frame_allocator().free_bytes() == free_mid);
    // Frames allocated before the failures are freed through the decorator as usual.
  }

  TEST_CASE("an_allocator_handing_out_a_used_frame_aborts" *
            vmspace::test::skip_death_test("an_allocator_handing_out_a_used_frame_aborts")) {
    struct Liar final : GlobalFrameAllocator {
      Paddr in_use = 0;
      std::optional<Paddr> alloc(FrameLayout) noexcept override { return in_use; }
      void dealloc(Paddr, std::size_t) noexcept override {}
      void add_free_memory(Paddr, std::size_t) noexcept override {}
      std::uint64_t free_bytes() const noexcept override { return 0; }
    };
    CHECK(vmspace::test::dies_with(
        [] {
          static Liar liar;
          static auto live = FrameAllocOptions().alloc_frame();
          liar.in_use = live->paddr();
          set_global_frame_allocator(&liar);
          (void)FrameAllocOptions().zeroed(false).alloc_frame();
        },
        "handed out a frame that is not unused"));
  }

  TEST_CASE("exhausting_physical_memory_gives_NoMemory_and_everything_comes_back") {
    FreeBytesUnchanged no_leak;
    const Stats before = drained_stats();
    std::vector<Segment<NoMeta>> held;
    std::uint64_t frames = 0;
    for (int order = static_cast<int>(BuddyFrameAllocator::kMaxOrder); order >= 0; --order) {
      for (;;) {
        auto seg = FrameAllocOptions().zeroed(false).alloc_segment(std::size_t{1} << order);
        if (!seg) {
          CHECK(seg.error() == Error::NoMemory);
          break;
        }
        frames += seg->nframes();
        held.push_back(std::move(*seg));
      }
    }
    CHECK(frames == before.free_frames);
    CHECK(global_frame_allocator().free_bytes() == 0);
    CHECK(FrameAllocOptions().alloc_frame().error() == Error::NoMemory);
    CHECK(FrameAllocOptions().alloc_segment(1).error() == Error::NoMemory);
    // Nothing overlaps and frame 0 was never handed out.
    std::sort(held.begin(), held.end(),
              [](const auto& x, const auto& y) { return x.paddr() < y.paddr(); });
    for (std::size_t i = 0; i < held.size(); ++i) {
      CHECK(held[i].paddr() != 0);
      if (i > 0) CHECK(held[i - 1].end_paddr() <= held[i].paddr());
    }
    held.clear();
    CHECK(same_blocks(drained_stats(), before));
  }

  // ---- tiling regions (ACE regressions, docs/spec_cases.md cases 57-59) ----

  TEST_CASE("region_ending_16k_past_a_2m_boundary_is_fully_usable") {
    // ACE bug 2: the size-decrease loop stopped one size too early and wasted the 16 KiB tail.
    FreeBytesUnchanged no_leak;
    OwnedArea area(8 * k2M, 8 * k2M);
    const Paddr s = area.base() + k2M;  // 2 MiB-aligned, not 4 MiB-aligned
    struct Case {
      std::size_t tail;
      Orders expected;
    };
    const Case cases[] = {
        {k16K, {{2, 1}, {9, 1}}},
        {kPageSize, {{0, 1}, {9, 1}}},
        {k16K + kPageSize, {{0, 1}, {2, 1}, {9, 1}}},  // ACE's 2M + 20K
        {k2M - kPageSize,
         {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 1}, {9, 1}}},
    };
    for (const Case& c : cases) {
      CAPTURE(c.tail);
      BuddyFrameAllocator local(num_cpus());
      const PaRange region{s, s + k2M + c.tail};
      local.add_free_memory(region.start, region.size());
      const Stats st = drained_stats(local);
      CHECK(nonzero_orders(st) == c.expected);
      CHECK(st.free_frames == region.size() / kPageSize);
      CHECK(st.total_frames == region.size() / kPageSize);
      CHECK(reclaim_all(local, region) == region.size());
    }
  }

  TEST_CASE("no_block_extends_past_the_region_end") {
    // ACE bug 1: the fit check used the end of memory instead of the region end, so a 2 MiB
    // token could start at the region and run past it.
    FreeBytesUnchanged no_leak;
    OwnedArea area(4 * k2M, 4 * k2M);
    const Paddr s = area.base();
    BuddyFrameAllocator local(num_cpus());
    local.add_free_memory(s, k16K);  // 16 KiB, with (owned, unused) memory right after it
    CHECK(nonzero_orders(drained_stats(local)) == Orders{{2, 1}});
    // The rest of the 2 MiB comes later and merges with the first region into one block.
    local.add_free_memory(s + k16K, k2M - k16K);
    CHECK(nonzero_orders(drained_stats(local)) == Orders{{9, 1}});
    CHECK(reclaim_all(local, PaRange{s, s + k2M}) == k2M);
  }

  TEST_CASE("greedy_tiling_of_an_unaligned_start") {
    // docs/spec_cases.md case 59, adapted: [S + 4K, S + 4M) with S 4 MiB-aligned tiles as one
    // block of each order 0..8 up to S + 2M, then one 2 MiB block.
    FreeBytesUnchanged no_leak;
    OwnedArea area(4 * k2M, 4 * k2M);
    const Paddr s = area.base();
    BuddyFrameAllocator local(num_cpus());
    const PaRange region{s + kPageSize, s + 2 * k2M};
    local.add_free_memory(region.start, region.size());
    const Stats st = drained_stats(local);
    CHECK(nonzero_orders(st) ==
          Orders{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}, {5, 1}, {6, 1}, {7, 1}, {8, 1}, {9, 1}});
    CHECK(reclaim_all(local, region) == region.size());
  }

  TEST_CASE("private_allocator_does_not_merge_with_blocks_of_another_allocator") {
    // Regression: free-block heads were tagged only with "buddy" and the order, so a second
    // BuddyFrameAllocator merged its block with a free buddy block of the global allocator
    // (stealing it and corrupting both allocators' lists).
    FreeBytesUnchanged no_leak;
    auto q = global_frame_allocator().alloc(FrameLayout{2 * k2M, 2 * k2M});
    REQUIRE(q.has_value());
    // Give the upper half back: the global allocator now has a free 2 MiB block there, the
    // buddy of [q, q + 2M).
    global_frame_allocator().dealloc(*q + k2M, k2M);
    const Stats global_before = drained_stats();

    {
      BuddyFrameAllocator local(num_cpus());
      local.add_free_memory(*q, k2M);
      const Stats st = drained_stats(local);
      CHECK(st.free_frames == k2M / kPageSize);
      CHECK(nonzero_orders(st) == Orders{{9, 1}});
      CHECK(same_blocks(drained_stats(), global_before));
      CHECK(reclaim_all(local, PaRange{*q, *q + k2M}) == k2M);
    }
    global_frame_allocator().dealloc(*q, k2M);

    // The other way round: the global allocator frees a block whose buddy is free in a
    // private allocator.
    auto r = global_frame_allocator().alloc(FrameLayout{2 * k2M, 2 * k2M});
    REQUIRE(r.has_value());
    {
      BuddyFrameAllocator local(num_cpus());
      local.add_free_memory(*r, k2M);
      const Stats global_mid = drained_stats();
      global_frame_allocator().dealloc(*r + k2M, k2M);
      const Stats global_after = drained_stats();
      CHECK(global_after.free_frames == global_mid.free_frames + k2M / kPageSize);
      CHECK(nonzero_orders(drained_stats(local)) == Orders{{9, 1}});
      CHECK(reclaim_all(local, PaRange{*r, *r + k2M}) == k2M);
    }
    global_frame_allocator().dealloc(*r, k2M);
  }

  TEST_CASE("regression_large_alloc_drains_per_cpu_caches") {
    // Found by the VmSpace model test (tests/model/vm_model_test.cpp): after many test cases a
    // 2 MiB allocation failed although most of memory was free. Freed single frames wait in the
    // per-CPU caches, which keeps their blocks from merging; allocations of cached orders drain
    // the caches when the buddy lists run dry, but larger ones (above kMaxCachedOrder) gave up.
    FreeBytesUnchanged no_leak;
    OwnedArea area(k2M, k2M);
    BuddyFrameAllocator local(num_cpus());
    local.add_free_memory(area.base(), k2M);
    std::vector<Paddr> frames;
    while (auto pa = local.alloc(FrameLayout{kPageSize, kPageSize})) frames.push_back(*pa);
    REQUIRE(frames.size() == k2M / kPageSize);
    for (Paddr pa : frames) local.dealloc(pa, kPageSize);
    REQUIRE(local.free_bytes() == k2M);
    REQUIRE(local.stats().cached_frames != 0);  // the situation of the bug
    auto huge = local.alloc(FrameLayout{k2M, k2M});
    REQUIRE(huge.has_value());
    CHECK(*huge == area.base());
    CHECK(local.free_bytes() == 0);
    local.dealloc(*huge, k2M);
    CHECK(reclaim_all(local, PaRange{area.base(), area.base() + k2M}) == k2M);
  }

  TEST_CASE("regression_destroying_an_allocator_with_free_memory_releases_its_blocks") {
    // The destructor left every free block's head slot UNIQUE and tagged free, so returning the
    // lent memory to the global allocator afterwards aborted as a double free, and the memory
    // could never be handed to another allocator.
    FreeBytesUnchanged no_leak;
    OwnedArea area(k2M, k2M);
    const PaRange region{area.base(), area.base() + k2M};
    for (int round = 0; round < 2; ++round) {
      CAPTURE(round);
      BuddyFrameAllocator local(num_cpus());
      local.add_free_memory(region.start, region.size());
      // Leave free memory in both places the allocator keeps it: single frames in a per-CPU
      // cache and split blocks in the buddy lists.
      std::vector<Paddr> frames;
      for (int i = 0; i < 40; ++i) {
        auto pa = local.alloc(FrameLayout{});
        REQUIRE(pa.has_value());
        frames.push_back(*pa);
      }
      auto block = local.alloc(FrameLayout{k16K, k16K});
      REQUIRE(block.has_value());
      for (Paddr pa : frames) local.dealloc(pa, kPageSize);
      local.dealloc(*block, k16K);
      REQUIRE(local.free_bytes() == k2M);
      REQUIRE(local.stats().cached_frames != 0);
    }
    // Both instances are gone; the area's memory is plain unused memory again.
    for (Paddr pa = region.start; pa < region.end; pa += kPageSize) {
      CAPTURE(pa);
      REQUIRE(meta_slot(pa)->ref_count_ref().load() == kRefCountUnused);
      REQUIRE(meta_slot(pa)->in_list_ref().load() == 0);
    }
  }  // ~OwnedArea frees the whole area into the global allocator

  // ---- misuse ----

  TEST_CASE("double_free_of_a_cached_frame_aborts" *
            vmspace::test::skip_death_test("double_free_of_a_cached_frame_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto pa = global_frame_allocator().alloc(FrameLayout{});
          if (!pa) return;
          global_frame_allocator().dealloc(*pa, kPageSize);
          global_frame_allocator().dealloc(*pa, kPageSize);
        },
        "already free"));
  }

  TEST_CASE("double_free_of_a_merged_frame_aborts" *
            vmspace::test::skip_death_test("double_free_of_a_merged_frame_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          // The second frame of an 8 KiB-aligned pair is never the head of a merged block.
          auto pa = global_frame_allocator().alloc(FrameLayout{2 * kPageSize, 2 * kPageSize});
          if (!pa) return;
          global_frame_allocator().dealloc(*pa, 2 * kPageSize);
          builtin_frame_allocator().drain_caches();  // merged into a bigger free block
          global_frame_allocator().dealloc(*pa + kPageSize, kPageSize);
        },
        "inside the free block"));
  }

  TEST_CASE("freeing_a_range_inside_a_free_block_aborts" *
            vmspace::test::skip_death_test("freeing_a_range_inside_a_free_block_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto pa = global_frame_allocator().alloc(FrameLayout{8 * kPageSize, 8 * kPageSize});
          if (!pa) return;
          global_frame_allocator().dealloc(*pa, 8 * kPageSize);
          builtin_frame_allocator().drain_caches();
          global_frame_allocator().dealloc(*pa + 2 * kPageSize, 2 * kPageSize);
        },
        "inside the free block"));
  }

  TEST_CASE("freeing_a_range_that_overlaps_free_memory_aborts" *
            vmspace::test::skip_death_test("freeing_a_range_that_overlaps_free_memory_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto pa = global_frame_allocator().alloc(FrameLayout{2 * kPageSize, 2 * kPageSize});
          if (!pa) return;
          global_frame_allocator().dealloc(*pa + kPageSize, kPageSize);  // half of it
          global_frame_allocator().dealloc(*pa, 2 * kPageSize);          // both halves
        },
        "already free"));
  }

  TEST_CASE("freeing_a_frame_in_use_aborts" *
            vmspace::test::skip_death_test("freeing_a_frame_in_use_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          static auto frame = FrameAllocOptions().alloc_frame();
          if (!frame) return;
          global_frame_allocator().dealloc(frame->paddr(), kPageSize);
        },
        "still in use"));
  }

  TEST_CASE("dealloc_of_an_invalid_range_aborts" *
            vmspace::test::skip_death_test("dealloc_of_an_invalid_range_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] { global_frame_allocator().dealloc(kPageSize + 1, kPageSize); }, "invalid range"));
    CHECK(vmspace::test::dies_with(
        [] { global_frame_allocator().dealloc(max_paddr() - kPageSize, 2 * kPageSize); },
        "invalid range"));
    CHECK(vmspace::test::dies_with([] { global_frame_allocator().dealloc(kPageSize, 0); },
                                   "invalid range"));
  }
}
