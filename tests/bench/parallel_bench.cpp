// 1- and 2-thread throughput rows. Every operation is complete: take a disable_preempt()
// guard, create a cursor over one 4 KiB page, operate, drop the cursor and the guard. Each
// thread binds its own emulated CPU (and host core) and works on its own pages, in one of
// two layouts:
//   Disjoint  each thread's pages lie under its own root entry (own level-3, level-2 and leaf
//             nodes): the threads share only the root, which cursors pass lock-free.
//   SameLeaf  both threads' pages interleave inside one leaf table (pages 2k and 2k+1): every
//             cursor locks that same leaf node, so operations serialize on its lock.
// items_per_second sums both threads; the ratio table compares threads:2 with threads:1.
#include <vmspace/frame_allocator.hpp>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

enum class Layout { Disjoint, SameLeaf };

constexpr std::size_t kPagesPerThread = 256;

// Page k of benchmark thread t.
Vaddr thread_page(Layout layout, int thread, std::size_t k) {
  const Vaddr base = layout == Layout::Disjoint
                         ? kParallelBase + static_cast<std::uint64_t>(thread) * kParallelStride
                         : kParallelBase + 8 * kParallelStride;
  return base + (2 * k + static_cast<std::uint64_t>(thread)) * kPageSize;
}

// One table shared by all parallel rows (each row leaves its pages unmapped when it ends).
UserPageTable& parallel_table() {
  static UserPageTable* pt = new UserPageTable(new_user_table());
  return *pt;
}

VaRange page_range(Vaddr va) { return VaRange{va, va + kPageSize}; }

void map_page(UserPageTable& pt, Vaddr va, const UFrame& frame) {
  auto guard = disable_preempt();
  auto cursor = take_ok(pt.cursor_mut(guard, page_range(va)), "map cursor");
  check(cursor.map(UserItem::tracked(frame, kUserRw)).has_value(), "map");
}

// Returns the fragment so that the caller drops it after the read section has ended, as a
// VmSpace would after its TLB flush.
PageTableFrag<UserPtConfig> unmap_page(UserPageTable& pt, Vaddr va) {
  auto guard = disable_preempt();
  auto cursor = take_ok(pt.cursor_mut(guard, page_range(va)), "unmap cursor");
  auto frag = take_ok(cursor.take_next(kPageSize), "take_next");
  check(frag.has_value(), "take_next found nothing");
  return std::move(*frag);
}

void toggle_write(PageProperty& prop) noexcept { prop.flags ^= PageFlags::W; }

// Map a page, then unmap it; one item = one map + one unmap. The frame is a per-thread frame
// (each mapping adds a reference; the unmapped fragment drops it through RCU), so no frame is
// allocated or freed in the loop.
void BM_Parallel_MapUnmap4K(benchmark::State& state, Layout layout) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  UserPageTable& pt = parallel_table();
  const UFrame frame = take_ok(FrameAllocOptions().alloc_frame(), "frame allocation");
  std::size_t k = 0;
  for (auto _ : state) {
    const Vaddr va = thread_page(layout, state.thread_index(), k);
    k = (k + 1) % kPagesPerThread;
    map_page(pt, va, frame);
    auto frag = unmap_page(pt, va);
    benchmark::DoNotOptimize(frag);
  }
  state.SetItemsProcessed(state.iterations());
}

// Toggle W on one of the thread's mapped pages per item.
void BM_Parallel_Protect4K(benchmark::State& state, Layout layout) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  UserPageTable& pt = parallel_table();
  const UFrame frame = take_ok(FrameAllocOptions().alloc_frame(), "frame allocation");
  const int t = state.thread_index();
  for (std::size_t i = 0; i < kPagesPerThread; ++i) map_page(pt, thread_page(layout, t, i), frame);
  std::size_t k = 0;
  for (auto _ : state) {
    const Vaddr va = thread_page(layout, t, k);
    k = (k + 1) % kPagesPerThread;
    auto guard = disable_preempt();
    auto cursor = take_ok(pt.cursor_mut(guard, page_range(va)), "protect cursor");
    auto changed = cursor.protect_next(kPageSize, toggle_write);
    check(changed.has_value() && changed->has_value(), "protect_next");
  }
  for (std::size_t i = 0; i < kPagesPerThread; ++i) (void)unmap_page(pt, thread_page(layout, t, i));
  state.SetItemsProcessed(state.iterations());
}

// Query one of the thread's mapped pages per item (read-only cursor).
void BM_Parallel_Query(benchmark::State& state, Layout layout) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  UserPageTable& pt = parallel_table();
  const UFrame frame = take_ok(FrameAllocOptions().alloc_frame(), "frame allocation");
  const int t = state.thread_index();
  for (std::size_t i = 0; i < kPagesPerThread; ++i) map_page(pt, thread_page(layout, t, i), frame);
  std::size_t k = 0;
  for (auto _ : state) {
    const Vaddr va = thread_page(layout, t, k);
    k = (k + 1) % kPagesPerThread;
    auto guard = disable_preempt();
    auto cursor = take_ok(pt.cursor(guard, page_range(va)), "query cursor");
    auto q = cursor.query();
    benchmark::DoNotOptimize(q);
  }
  for (std::size_t i = 0; i < kPagesPerThread; ++i) (void)unmap_page(pt, thread_page(layout, t, i));
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK_CAPTURE(BM_Parallel_MapUnmap4K, Disjoint, Layout::Disjoint)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Parallel_Protect4K, Disjoint, Layout::Disjoint)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Parallel_Query, Disjoint, Layout::Disjoint)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Parallel_MapUnmap4K, SameLeaf, Layout::SameLeaf)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Parallel_Protect4K, SameLeaf, Layout::SameLeaf)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Parallel_Query, SameLeaf, Layout::SameLeaf)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

}  // namespace
}  // namespace vmspace::bench
