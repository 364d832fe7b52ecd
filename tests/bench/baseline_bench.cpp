// Baseline rows, measured in the same binary and run as the vmspace rows they are paired
// with: the xv6-style page table (xv6_page_table.hpp) and Linux's own memory calls. See
// main.cpp for the pairing and the fairness rules.
#include <sys/mman.h>

#include <cstring>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

constexpr Xv6PageTable::Pte kXvUserRw =
    Xv6PageTable::kRead | Xv6PageTable::kWrite | Xv6PageTable::kUser;

// System calls per batch in the Linux rows (each takes microseconds).
constexpr std::size_t kSyscallsPerBatch = 16;

// xv6 mappages() one page at a time over 512 dense pages, the same physical addresses as
// BM_CursorMap4K. Timed: the 512 calls, including the allocation (aligned_alloc) and zeroing
// of the leaf table the first call creates. Not timed: unmapping and freeing the leaf table.
void BM_Baseline_XvMap4K(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kBatchPages);
  Xv6PageTable pt;
  const auto& pool = frame_pool();
  auto run_batch = [&](bool timed) {
    auto map_all = [&] {
      for (std::size_t i = 0; i < kBatchPages; ++i) {
        check(pt.mappages(kBatchBase + i * kPageSize, kPageSize, pool[i].paddr(), kXvUserRw) == 0,
              "xv6 mappages");
      }
    };
    if (timed) {
      timer.time(map_all);
    } else {
      map_all();
    }
    pt.unmap(kBatchBase, kBatchPages);
    pt.free_leaf_table(kBatchBase);
  };
  run_batch(false);  // warm-up: creates the upper-level nodes
  for (auto _ : state) run_batch(true);
  timer.report();
}
BENCHMARK(BM_Baseline_XvMap4K)->UseManualTime();

// xv6 uvmunmap() (do_free = 0) one page at a time over 512 dense mapped pages. The PTE is
// cleared; there is no frame to free, no reference count and no deferred reclamation.
void BM_Baseline_XvUnmap4K(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kBatchPages);
  Xv6PageTable pt;
  const auto& pool = frame_pool();
  auto map_all = [&] {
    check(pt.mappages(kBatchBase, kBatchBytes, pool[0].paddr(), kXvUserRw) == 0, "xv6 mappages");
  };
  auto unmap_all = [&] {
    for (std::size_t i = 0; i < kBatchPages; ++i) pt.unmap(kBatchBase + i * kPageSize, 1);
  };
  map_all();  // warm-up
  unmap_all();
  for (auto _ : state) {
    map_all();
    timer.time(unmap_all);
  }
  timer.report();
}
BENCHMARK(BM_Baseline_XvUnmap4K)->UseManualTime();

// xv6 translate() for the same pseudo-random pages, in the same order, as the vmspace
// query/walk rows: 512 pages of one leaf table (hot) or all walk_pages() pages.
void xv_walk_random(benchmark::State& state, std::uint64_t pages) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kFastOpsPerBatch);
  const Xv6PageTable& pt = walk_tables().xv6;
  RandomPages random(kWalkBase, pages);
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < kFastOpsPerBatch; ++i) {
        auto t = pt.translate(random.next());
        benchmark::DoNotOptimize(t);
      }
    });
  }
  timer.report();
}
void BM_Baseline_XvWalkHot(benchmark::State& state) { xv_walk_random(state, kBatchPages); }
void BM_Baseline_XvWalkRandom(benchmark::State& state) { xv_walk_random(state, walk_pages()); }
BENCHMARK(BM_Baseline_XvWalkHot)->UseManualTime();
BENCHMARK(BM_Baseline_XvWalkRandom)->UseManualTime();

// Linux: mmap one anonymous 4 KiB page with MAP_POPULATE (allocates, zeroes and maps a page)
// and munmap it. Includes two system calls, VMA creation/removal and a TLB flush.
void BM_Baseline_LinuxMmapPopulate(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kSyscallsPerBatch);
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < kSyscallsPerBatch; ++i) {
        void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        check(p != MAP_FAILED, "mmap");
        check(munmap(p, kPageSize) == 0, "munmap");
      }
    });
  }
  timer.report();
}
BENCHMARK(BM_Baseline_LinuxMmapPopulate)->UseManualTime();

// Linux: mprotect toggling PROT_WRITE on `pages` pages of a populated 512-page anonymous
// region (transparent huge pages disabled on it, so these are 4 KiB PTEs): pages = 1 is the
// middle page (VMA split, then merge on the way back), pages = 512 the whole region in one
// call. Pairs with BM_CursorProtect4K.
void BM_Baseline_LinuxMprotect(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto pages = static_cast<std::size_t>(state.range(0));
  void* region =
      mmap(nullptr, kBatchBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  check(region != MAP_FAILED, "mmap");
  madvise(region, kBatchBytes, MADV_NOHUGEPAGE);
  std::memset(region, 1, kBatchBytes);  // populate
  auto* start = static_cast<std::byte*>(region) + (pages == 1 ? kBatchBytes / 2 : 0);
  const std::size_t calls_per_batch = pages == 1 ? kSyscallsPerBatch : 1;
  BatchTimer timer(state, calls_per_batch * pages);
  bool writable = true;
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < calls_per_batch; ++i) {
        writable = !writable;
        check(
            mprotect(start, pages * kPageSize, writable ? PROT_READ | PROT_WRITE : PROT_READ) == 0,
            "mprotect");
      }
    });
  }
  munmap(region, kBatchBytes);
  timer.report();
}
BENCHMARK(BM_Baseline_LinuxMprotect)->ArgName("pages")->Arg(1)->Arg(512)->UseManualTime();

}  // namespace
}  // namespace vmspace::bench
