// Shared helpers of vmspace-bench: thread placement, timing of batches, the frame pool, the
// address layout, the random VA sequence and the pre-built 1M-page walk tables.
#pragma once

#include <sched.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/user_pt_config.hpp>

#include "xv6_page_table.hpp"

namespace vmspace::bench {

using UserPageTable = PageTable<UserPtConfig>;

// Pages per batch in the batched rows: one full leaf table (2 MiB of VA).
inline constexpr std::size_t kBatchPages = 512;
inline constexpr std::uint64_t kBatchBytes = kBatchPages * kPageSize;

// Address layout (user half; every base is 2 MiB-aligned).
inline constexpr Vaddr kBatchBase = Vaddr{1} << 30;     // 1 GiB: batched single-thread rows
inline constexpr Vaddr kWalkBase = Vaddr{64} << 30;     // 64 GiB: the walk tables
inline constexpr Vaddr kParallelBase = Vaddr{1} << 40;  // 1 TiB: parallel rows
inline constexpr std::uint64_t kParallelStride = Vaddr{512} << 30;  // one root entry per thread

// The property every benchmark maps with.
inline constexpr PageProperty kUserRw =
    PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);

// Aborts the program with `what` when a setup step fails. Benchmarks never expect errors; a
// failure means the library or the benchmark is broken, and a number measured after it would
// be meaningless.
[[noreturn]] void fail(std::string_view what);

inline void check(bool ok, std::string_view what) {
  if (!ok) [[unlikely]]
    fail(what);
}
// The value of a Result that must succeed.
template <class T, class E>
inline T take_ok(Result<T, E>&& r, std::string_view what) {
  check(r.has_value(), what);
  return std::move(*r);
}

// A fresh user page table sharing the kernel half, as VmSpace creates one.
UserPageTable new_user_table();

// For one benchmark run: pins the calling thread to one host core (benchmark thread t gets
// the t-th core it may run on, modulo their number) and binds it to emulated CPU t, so the per-CPU
// frame cache of that CPU is used. Both are undone on destruction. If the machine has too few
// emulated CPUs the benchmark is skipped with an error (check ok()).
class BenchThread {
 public:
  explicit BenchThread(benchmark::State& state);
  ~BenchThread();
  BenchThread(const BenchThread&) = delete;
  BenchThread& operator=(const BenchThread&) = delete;

  bool ok() const noexcept { return binding_.has_value(); }

 private:
  cpu_set_t saved_affinity_{};
  bool restore_affinity_ = false;
  std::optional<CpuBinding> binding_;
};

// Times one benchmark run in batches (register the benchmark with UseManualTime()). Each
// time() call is one Google Benchmark iteration whose time is the batch's steady-clock
// duration, so untimed preparation between batches is excluded. report() publishes
//   items_per_second  Google Benchmark's rate: all items / all batch time (a mean), and
//   ns_per_item       the median batch time / items per batch.
// The ratio table uses ns_per_item: on a shared 2-vCPU machine a batch during which another
// process preempted this thread takes milliseconds instead of microseconds and dominates the
// mean, while the median ignores such batches. The two clock reads (~40 ns) fall inside each
// batch; batches are sized so that this is about 1% of the batch or less.
class BatchTimer {
 public:
  BatchTimer(benchmark::State& state, std::size_t items_per_batch) noexcept
      : state_(state), items_per_batch_(items_per_batch) {}

  template <class Work>
  void time(Work&& work) {
    using Clock = std::chrono::steady_clock;
    benchmark::ClobberMemory();
    const auto start = Clock::now();
    work();
    benchmark::ClobberMemory();
    const auto stop = Clock::now();
    const double seconds = std::chrono::duration<double>(stop - start).count();
    state_.SetIterationTime(seconds);
    batch_seconds_.push_back(seconds);
  }

  // Call once, after the benchmark loop.
  void report();

 private:
  benchmark::State& state_;
  std::size_t items_per_batch_;
  std::vector<double> batch_seconds_;
};

// Operations per batch for rows whose single operation takes nanoseconds.
inline constexpr std::size_t kFastOpsPerBatch = 1024;  // lookups (2-100 ns each)
inline constexpr std::size_t kOpsPerBatch = 256;       // cursor, frame and protect operations

// 512 frames allocated once (outside every timed region) and shared by the rows that map
// frames they do not free: a mapping adds a reference; the frames are never freed.
const std::vector<UFrame>& frame_pool();

// A reproducible pseudo-random sequence of page-aligned VAs in [base, base + pages * 4 KiB),
// `pages` a power of two. A 64-bit LCG, high bits: a few cycles per address, no memory
// traffic, and identical for a vmspace row and its xv6 baseline.
class RandomPages {
 public:
  RandomPages(Vaddr base, std::uint64_t pages) noexcept : base_(base), mask_(pages - 1) {}
  Vaddr next() noexcept {
    state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return base_ + (((state_ >> 24) & mask_) << kPageShift);
  }

 private:
  Vaddr base_;
  std::uint64_t mask_;
  std::uint64_t state_ = 0x9e3779b97f4a7c15ULL;
};

// The same mappings in a vmspace user table and in an xv6 table: walk_pages() pages at
// kWalkBase, page i mapped to frame_pool()[i % 512] (so many VAs share each frame: frames
// are real, and 1M distinct frames would exceed the default 1 GiB of physical memory).
// Built once, on first use, outside any timed region; never destroyed.
struct WalkTables {
  UserPageTable vmspace;
  Xv6PageTable xv6;
};
WalkTables& walk_tables();
// 2^20 pages (4 GiB of VA), or fewer when physical memory is too small for the leaf tables.
std::uint64_t walk_pages();

// Prepares the machine before any benchmark runs: boots it, starts the library's background
// threads while the main thread is still unpinned (so they are not pinned to core 0 by
// inheritance), and touches every free frame and its metadata slot once, so no timed region
// pays the host's first-touch fault (µs per page on this VM).
void prepare_machine();

}  // namespace vmspace::bench
