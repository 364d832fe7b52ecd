// vmspace-growth-bench: how the cost of page-table work grows with the size of the work.
//
// vmspace-bench measures each operation at one size. A page table that is fast at 10^3 pages
// and slow at 10^7 has a scaling bug (a list that grows, a lock held longer, metadata that no
// longer fits a cache in a way the baseline's does not), so this program measures the same
// operations at 10^3, 10^5 and 10^7 mapped pages against the xv6-style table of
// xv6_page_table.hpp at the same sizes, and prints the ratios side by side.
//
// It is its own program because it boots a machine of 41 GiB of emulated physical memory
// (MAP_NORESERVE: frames are never zeroed or touched, so they cost no host memory; only their
// metadata slots and the page-table nodes do), which vmspace-bench's warm-up, touching every
// free frame, could not afford.
//
// Rows (ns per page or per operation, median of the repetitions):
//   BM_Growth_Map/pages:N      map N pages, a CursorMut per 2 MiB batch (frames allocated
//                              unzeroed before each batch, outside the timed region)
//   BM_Growth_Query/pages:N    N queries at pseudo-random mapped pages through one held cursor
//   BM_Growth_Unmap/pages:N    unmap the N pages (take_next per page, a cursor per 2 MiB
//                              batch), then rcu_barrier(): the frames go back to the allocator
//   BM_Growth_Xv{Map,Walk,Unmap}/pages:N   the same work on the xv6 table
//   BM_Growth_Teardown/mappings:1000000    drop a VmSpace holding 10^6 mappings, per mapping
//   BM_Growth_Stress/<profile>/threads:T   the stress engine's checked operations per second
// Counters of the Map row: rss_ratio = growth of the resident set while mapping divided by
// (page-table nodes x 4 KiB + metadata of the frames mapped and the nodes, 64 B each). Boot
// already writes every metadata slot (each starts UNUSED, src/machine/boot.cpp), so in practice
// the growth is the page-table nodes alone and the ratio stays well below 1.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/stress.hpp>
#include <vmspace/vm_space.hpp>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

using Clock = std::chrono::steady_clock;

inline constexpr std::uint64_t kGrowthPhysBytes = std::uint64_t{41} << 30;
inline constexpr std::uint32_t kGrowthCpus = 10;  // 8 stress workers + the checker + main
inline constexpr Vaddr kGrowthBase = Vaddr{1} << 40;
inline constexpr Xv6PageTable::Pte kXvUserRw =
    Xv6PageTable::kRead | Xv6PageTable::kWrite | Xv6PageTable::kUser;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Resident set size of this process in bytes (VmRSS of /proc/self/status).
std::uint64_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

std::uint64_t free_frames() { return global_frame_allocator().free_bytes() / kPageSize; }

// The vmspace side of one size: a user table holding `pages` pages at kGrowthBase.
class VmspaceTable {
 public:
  explicit VmspaceTable(std::uint64_t pages) : pages_(pages), pt_(new_user_table()) {}

  // Maps every page; returns the seconds spent inside map() calls.
  double map_all() {
    double timed = 0;
    std::vector<UserItem> items;
    items.reserve(kBatchPages);
    for (std::uint64_t first = 0; first < pages_; first += kBatchPages) {
      const std::uint64_t n = std::min<std::uint64_t>(kBatchPages, pages_ - first);
      items.clear();
      for (std::uint64_t i = 0; i < n; ++i) {
        UFrame frame(take_ok(FrameAllocOptions().zeroed(false).alloc_frame(), "alloc frame"));
        items.push_back(UserItem::tracked(frame, kUserRw));  // the PTE keeps the only reference
      }
      const Vaddr va = kGrowthBase + first * kPageSize;
      const auto t0 = Clock::now();
      {
        auto guard = disable_preempt();
        auto cursor = take_ok(pt_.cursor_mut(guard, {va, va + n * kPageSize}), "map cursor");
        for (UserItem& item : items) check(cursor.map(std::move(item)).has_value(), "map");
      }
      timed += seconds_since(t0);
    }
    return timed;
  }

  // `pages_` queries at pseudo-random mapped pages through one held cursor.
  double query_random() {
    const std::uint64_t span = std::bit_ceil(pages_);
    RandomPages random(kGrowthBase, span);
    const Vaddr end = kGrowthBase + pages_ * kPageSize;
    auto guard = disable_preempt();
    auto cursor = take_ok(pt_.cursor(guard, {kGrowthBase, end}), "query cursor");
    std::uint64_t done = 0;
    const auto t0 = Clock::now();
    while (done < pages_) {
      const Vaddr va = random.next();
      if (va >= end) continue;  // the LCG covers the power of two above `pages`
      check(cursor.jump(va).has_value(), "jump");
      auto q = cursor.query();
      benchmark::DoNotOptimize(q);
      ++done;
    }
    return seconds_since(t0);
  }

  // Unmaps every page and waits until the frames are back in the allocator.
  double unmap_all() {
    const auto t0 = Clock::now();
    for (std::uint64_t first = 0; first < pages_; first += kBatchPages) {
      const std::uint64_t n = std::min<std::uint64_t>(kBatchPages, pages_ - first);
      const Vaddr va = kGrowthBase + first * kPageSize;
      auto guard = disable_preempt();
      auto cursor = take_ok(pt_.cursor_mut(guard, {va, va + n * kPageSize}), "unmap cursor");
      for (std::uint64_t i = 0; i < n; ++i) {
        auto frag = take_ok(cursor.take_next(kPageSize), "take_next");
        benchmark::DoNotOptimize(frag);
      }
    }
    rcu_barrier();
    return seconds_since(t0);
  }

 private:
  std::uint64_t pages_;
  UserPageTable pt_;
};

// The xv6 side: the same number of pages, mapped to the paddrs of frames allocated once (the
// xv6 table does not own frames, so it maps one pool of frames repeatedly).
class Xv6Table {
 public:
  explicit Xv6Table(std::uint64_t pages) : pages_(pages) {}

  double map_all() {
    const auto& pool = frame_pool();
    const auto t0 = Clock::now();
    for (std::uint64_t i = 0; i < pages_; ++i) {
      const std::uint64_t pa = pool[i % pool.size()].paddr();
      check(xv6_.mappages(kGrowthBase + i * kPageSize, kPageSize, pa, kXvUserRw) == 0, "xv6 map");
    }
    return seconds_since(t0);
  }

  double walk_random() {
    const std::uint64_t span = std::bit_ceil(pages_);
    RandomPages random(kGrowthBase, span);
    const Vaddr end = kGrowthBase + pages_ * kPageSize;
    std::uint64_t done = 0;
    const auto t0 = Clock::now();
    while (done < pages_) {
      const Vaddr va = random.next();
      if (va >= end) continue;
      auto t = xv6_.translate(va);
      benchmark::DoNotOptimize(t);
      ++done;
    }
    return seconds_since(t0);
  }

  double unmap_all() {
    const auto t0 = Clock::now();
    xv6_.unmap(kGrowthBase, pages_);
    return seconds_since(t0);
  }

 private:
  std::uint64_t pages_;
  Xv6PageTable xv6_;
};

void report_per_page(benchmark::State& state, double seconds, std::uint64_t pages) {
  state.SetIterationTime(seconds);
  state.counters["ns_per_item"] = seconds * 1e9 / static_cast<double>(pages);
}

enum class Op { Map, Query, Unmap };

// One repetition builds the table from scratch, so every row of one size sees the same
// table shape; only the operation named by `op` is reported.
void BM_Growth(benchmark::State& state, Op op) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto pages = static_cast<std::uint64_t>(state.range(0));
  for (auto _ : state) {
    const std::uint64_t rss0 = resident_bytes();
    const std::uint64_t free0 = free_frames();
    VmspaceTable table(pages);
    const double map_s = table.map_all();
    if (op == Op::Map) {
      const std::uint64_t nodes = free0 - free_frames() - pages;
      const double expected = static_cast<double>(nodes * kPageSize + (pages + nodes) * 64);
      const double grown = static_cast<double>(resident_bytes() - std::min(resident_bytes(), rss0));
      state.counters["rss_ratio"] = grown / expected;
      state.counters["rss_growth_mib"] = grown / (1 << 20);
      state.counters["pt_mib"] = static_cast<double>(nodes * kPageSize) / (1 << 20);
      state.counters["meta_mib"] = static_cast<double>((pages + nodes) * 64) / (1 << 20);
    }
    const double query_s = table.query_random();
    const double unmap_s = table.unmap_all();
    report_per_page(state, op == Op::Map ? map_s : op == Op::Query ? query_s : unmap_s, pages);
  }
}

void BM_GrowthXv(benchmark::State& state, Op op) {
  const auto pages = static_cast<std::uint64_t>(state.range(0));
  for (auto _ : state) {
    Xv6Table table(pages);
    const double map_s = table.map_all();
    const double walk_s = table.walk_random();
    const double unmap_s = table.unmap_all();
    report_per_page(state, op == Op::Map ? map_s : op == Op::Query ? walk_s : unmap_s, pages);
  }
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgName("pages")->Arg(1'000)->Arg(100'000)->Arg(10'000'000)->Iterations(1)->UseManualTime();
}
BENCHMARK_CAPTURE(BM_Growth, map, Op::Map)->Name("BM_Growth_Map")->Apply(sizes);
BENCHMARK_CAPTURE(BM_GrowthXv, map, Op::Map)->Name("BM_Growth_XvMap")->Apply(sizes);
BENCHMARK_CAPTURE(BM_Growth, query, Op::Query)->Name("BM_Growth_Query")->Apply(sizes);
BENCHMARK_CAPTURE(BM_GrowthXv, walk, Op::Query)->Name("BM_Growth_XvWalk")->Apply(sizes);
BENCHMARK_CAPTURE(BM_Growth, unmap, Op::Unmap)->Name("BM_Growth_Unmap")->Apply(sizes);
BENCHMARK_CAPTURE(BM_GrowthXv, unmap, Op::Unmap)->Name("BM_Growth_XvUnmap")->Apply(sizes);

// Dropping a VmSpace with 10^6 4 KiB mappings: the destructor releases every PTE's frame
// reference and every node; rcu_barrier() waits until the frames are really free.
void BM_Growth_Teardown(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto mappings = static_cast<std::uint64_t>(state.range(0));
  const PageProperty prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
  for (auto _ : state) {
    std::shared_ptr<VmSpace> space = take_ok(VmSpace::create(), "VmSpace::create");
    for (std::uint64_t first = 0; first < mappings; first += kBatchPages) {
      const std::uint64_t n = std::min<std::uint64_t>(kBatchPages, mappings - first);
      const Vaddr va = kGrowthBase + first * kPageSize;
      auto guard = disable_preempt();
      auto cursor = take_ok(space->cursor_mut(guard, {va, va + n * kPageSize}), "cursor_mut");
      for (std::uint64_t i = 0; i < n; ++i) {
        UFrame frame(take_ok(FrameAllocOptions().zeroed(false).alloc_frame(), "alloc frame"));
        check(cursor.map(std::move(frame), prop).has_value(), "map");
      }
    }
    const std::uint64_t free_before = free_frames();
    const auto t0 = Clock::now();
    space.reset();
    rcu_barrier();
    report_per_page(state, seconds_since(t0), mappings);
    check(free_frames() >= free_before + mappings, "teardown did not free every frame");
  }
}
BENCHMARK(BM_Growth_Teardown)->ArgName("mappings")->Arg(1'000'000)->Iterations(1)->UseManualTime();

// The stress engine at 1, 2, 4 and 8 worker threads per profile: checked operations per
// second (cursor operations, copies and activations, serializability and invariants checked
// at every checkpoint, as in a real stress run). More workers than host cores is allowed:
// node locks sleep.
void BM_Growth_Stress(benchmark::State& state, stress::Profile profile) {
  for (auto _ : state) {
    stress::StressOptions o;
    o.profile = profile;
    o.threads = static_cast<unsigned>(state.range(0));
    o.seconds = 2.0;
    o.seed = 1;
    const stress::StressReport r = stress::run(o);
    check(r.passed(), "stress run failed: " + r.verdict());
    state.SetIterationTime(r.seconds);
    state.counters["ops_per_second"] = r.ops_per_second;
  }
}
void threads(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(1)->Arg(2)->Arg(4)->Arg(8)->Iterations(1)->UseManualTime();
}
BENCHMARK_CAPTURE(BM_Growth_Stress, disjoint, stress::Profile::Disjoint)
    ->Name("BM_Growth_Stress/disjoint")
    ->Apply(threads);
BENCHMARK_CAPTURE(BM_Growth_Stress, leaf, stress::Profile::LeafContended)
    ->Name("BM_Growth_Stress/leaf-contended")
    ->Apply(threads);
BENCHMARK_CAPTURE(BM_Growth_Stress, overlapping, stress::Profile::Overlapping)
    ->Name("BM_Growth_Stress/overlapping")
    ->Apply(threads);
BENCHMARK_CAPTURE(BM_Growth_Stress, mixed, stress::Profile::Mixed)
    ->Name("BM_Growth_Stress/mixed")
    ->Apply(threads);

// Collects the medians of ns_per_item per row, to print the ratio table after the run.
class GrowthReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type == Run::RT_Aggregate && run.aggregate_name != "median") continue;
      for (const auto& [name, counter] : run.counters) {
        values_[run.run_name.str()][name].push_back(counter.value);
      }
    }
  }

  std::optional<double> median(const std::string& row, const std::string& counter) const {
    auto r = values_.find(row);
    if (r == values_.end()) return std::nullopt;
    auto c = r->second.find(counter);
    if (c == r->second.end() || c->second.empty()) return std::nullopt;
    std::vector<double> v = c->second;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }

  void print_table(std::FILE* out) const {
    std::fprintf(out, "\nGrowth: ns per page, vmspace / xv6 at the same size (median)\n");
    std::fprintf(out, "%-8s %-10s %12s %12s %8s\n", "op", "pages", "vmspace", "xv6", "ratio");
    const std::pair<const char*, const char*> ops[] = {
        {"Map", "XvMap"}, {"Query", "XvWalk"}, {"Unmap", "XvUnmap"}};
    for (const auto& [vm, xv] : ops) {
      for (const char* pages : {"1000", "100000", "10000000"}) {
        const std::string suffix = std::string("/pages:") + pages + "/iterations:1/manual_time";
        auto a = median(std::string("BM_Growth_") + vm + suffix, "ns_per_item");
        auto b = median(std::string("BM_Growth_") + xv + suffix, "ns_per_item");
        if (!a || !b) continue;
        std::fprintf(out, "%-8s %-10s %12.1f %12.1f %7.2fx\n", vm, pages, *a, *b, *a / *b);
      }
    }
    for (const char* pages : {"1000", "100000", "10000000"}) {
      const std::string row =
          std::string("BM_Growth_Map/pages:") + pages + "/iterations:1/manual_time";
      auto rss = median(row, "rss_ratio");
      auto grown = median(row, "rss_growth_mib");
      auto pt = median(row, "pt_mib");
      auto meta = median(row, "meta_mib");
      if (!rss || !grown || !pt || !meta) continue;
      std::fprintf(
          out,
          "mapping %s pages: resident set grew %.1f MiB = %.2fx of page tables (%.1f MiB) + "
          "their frames' metadata (%.1f MiB)\n",
          pages, *grown, *rss, *pt, *meta);
    }
  }

 private:
  std::map<std::string, std::map<std::string, std::vector<double>>> values_;
};

}  // namespace
}  // namespace vmspace::bench

int main(int argc, char** argv) {
  using namespace vmspace;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  BootConfig config;
  config.phys_mem_bytes = bench::kGrowthPhysBytes;
  config.num_cpus = bench::kGrowthCpus;
  if (auto booted = boot(config); !booted) {
    const std::string_view why = to_string(booted.error());
    std::fprintf(stderr,
                 "vmspace-growth-bench: SKIP: cannot boot %" PRIu64
                 " GiB of emulated memory: %.*s\n",
                 bench::kGrowthPhysBytes >> 30, static_cast<int>(why.size()), why.data());
    return 0;
  }
  bench::GrowthReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_table(stdout);
  benchmark::Shutdown();
  return 0;
}
