// Frame allocator rows. See main.cpp for what every group measures.
#include <vmspace/frame_allocator.hpp>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

// Allocate one 4 KiB frame and drop it, on a thread bound to CPU 0: the frame comes from and
// returns to CPU 0's per-CPU cache every time (a LIFO cache hit, never the buddy lists).
// BM_FrameAllocFree does not zero the frame (FrameAllocOptions().zeroed(false)); the target
// row. BM_FrameAllocFreeZeroed uses the default options, which add a 4 KiB memset
// (information).
void alloc_free(benchmark::State& state, bool zeroed) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kOpsPerBatch);
  const FrameAllocOptions options = FrameAllocOptions().zeroed(zeroed);
  // Warm the cache so the first iteration is a hit too.
  check(options.alloc_frame().has_value(), "frame allocation");
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < kOpsPerBatch; ++i) {
        auto frame = options.alloc_frame();
        benchmark::DoNotOptimize(frame);
      }
    });
  }
  timer.report();
}
void BM_FrameAllocFree(benchmark::State& state) { alloc_free(state, false); }
void BM_FrameAllocFreeZeroed(benchmark::State& state) { alloc_free(state, true); }
BENCHMARK(BM_FrameAllocFree)->UseManualTime();
BENCHMARK(BM_FrameAllocFreeZeroed)->UseManualTime();

}  // namespace
}  // namespace vmspace::bench
