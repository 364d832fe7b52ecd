// vmspace-bench: Google Benchmark rows for vmspace's page-table layer and frame allocator,
// the baselines they are judged against, and a ratio table with the targets of
// docs/performance.md. Run it with `scripts/dev.sh bench [benchmark flags]` (release
// build); `--benchmark_filter=REGEX` selects rows as usual.
//
// What each group measures. Single-thread rows time batches of operations (BatchTimer) and
// report, per item, items_per_second (Google Benchmark's mean over all batches) and
// ns_per_item (the median batch divided by its size, which the ratio table uses because it
// ignores batches that another process preempted). Parallel rows report items_per_second
// over wall time, summed over the threads.
//
//   page_table_bench.cpp — one thread, bound to emulated CPU 0 and pinned to host core 0.
//     BM_CursorMap4K          map() through one held CursorMut, 512 dense pages per batch;
//                             frames pre-allocated; includes the leaf table's allocation and
//                             zeroing (one per 512 pages).
//     BM_CursorUnmap4K        take_next(4 KiB) per page in a 512-page batch, including the
//                             cursor, freeing every frame (its PTE held the only reference)
//                             and the RCU grace period (rcu_barrier per batch).
//                             .../BatchedRetire: the items go to RCU as one batch (info).
//     BM_CursorProtect4K      toggling W on 1 page (cursor + protect_next per page) or on a
//                             512-page range (one cursor, protect(len));
//                             BM_CursorProtectNextLoop: the range with a protect_next loop.
//     BM_CursorQuery          jump + query on a held cursor, random pages of one leaf table
//                             (HotLeaf) or of the 1M-page table (Random).
//     BM_PageWalkRandom       lock-free page_walk_in, random over 1M mapped pages (software
//                             MMU on a TLB miss); ...WithGuard takes its own guard per walk.
//     BM_CursorCreateDrop     create + drop a CursorMut over one mapped page.
//   vm_space_bench.cpp — one thread on CPU 0 with a VmSpace active (BM_UnmapDispatch512: also
//     active on CPU 1).
//     BM_ReaderCopy/<bytes>   VmSpace::reader + read_fallible into a host buffer, 64 B to
//     BM_WriterCopy/<bytes>   64 MiB (writer: from a host buffer), 4 KiB user pages.
//     BM_Baseline_Memcpy/<bytes>  memcpy between two page-aligned host buffers.
//     BM_TranslateTlbHit/Miss mmu_translate: 64 cached pages cycled / the xv6 walk's random
//                             sequence over 1M pages (a miss walks and fills the TLB).
//     BM_UnmapDispatch512     VmSpace::CursorMut::unmap of 512 pages cached in CPU 0's TLB,
//                             with the flush dispatched to both CPUs; frames go to RCU.
//   frame_bench.cpp
//     BM_FrameAllocFree       alloc_frame + drop, a per-CPU cache hit, without zeroing
//                             (...Zeroed: with the default 4 KiB zeroing).
//   parallel_bench.cpp — 1 and 2 threads, each on its own emulated CPU and host core, on
//     disjoint sub-trees (Disjoint) or on interleaved pages of one leaf table (SameLeaf):
//     complete per-page map+unmap, protect and query operations.
//   baseline_bench.cpp — the baselines, in this binary:
//     BM_Baseline_XvMap4K / XvUnmap4K / XvWalkHot / XvWalkRandom: an xv6-style lock-free
//       4-level page table (xv6_page_table.hpp) doing the same work on the same addresses
//       (same physical addresses, same pseudo-random order) as the vmspace row it pairs with.
//     BM_Baseline_LinuxMmapPopulate: mmap(MAP_POPULATE) + munmap of one page.
//     BM_Baseline_LinuxMprotect: mprotect of 1 page (VMA split/merge) or of 512 pages.
//
// Fairness (docs/performance.md): one binary, built -O2 in the release build, for every
// row; threads pinned; every free frame of emulated physical memory and its metadata are
// touched before the first benchmark (prepare_machine); only the batch itself is timed and
// both sides of a comparison have the same untimed steps and batch sizes; the xv6 code is
// header-inline like vmspace's page-table templates; each row's comment states whether it
// allocates or zeroes frames; medians of 5 repetitions by default. Ratios are taken only
// between rows of the same run: absolute times drift on this VM.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_support.hpp"
#include "ratio_table.hpp"

namespace {

bool has_flag(const std::vector<char*>& args, std::string_view flag) {
  for (const char* a : args) {
    const std::string_view s(a);
    if (s == flag ||
        (s.size() > flag.size() && s.substr(0, flag.size()) == flag && s[flag.size()] == '=')) {
      return true;
    }
  }
  return false;
}

// The value of --flag=value, or `fallback`.
std::string flag_value(const std::vector<char*>& args, std::string_view flag,
                       std::string fallback) {
  for (const char* a : args) {
    const std::string_view s(a);
    if (s.size() > flag.size() && s.substr(0, flag.size()) == flag && s[flag.size()] == '=') {
      return std::string(s.substr(flag.size() + 1));
    }
  }
  return fallback;
}

// The display reporter the user asked for with --benchmark_format / --benchmark_color.
std::unique_ptr<benchmark::BenchmarkReporter> make_display_reporter(const std::string& format,
                                                                    const std::string& color) {
  if (format == "json") return std::make_unique<benchmark::JSONReporter>();
  const bool use_color = color == "true" || color == "yes" || color == "1" ||
                         ((color == "auto" || color.empty()) && isatty(STDOUT_FILENO) != 0);
  return std::make_unique<benchmark::ConsoleReporter>(
      use_color ? benchmark::ConsoleReporter::OO_ColorTabular
                : benchmark::ConsoleReporter::OO_Tabular);
}

}  // namespace

int main(int argc, char** argv) {
  // Defaults for a fair run, unless the user chose otherwise: medians of 5 repetitions.
  std::vector<char*> args(argv, argv + argc);
  static char kRepetitions[] = "--benchmark_repetitions=5";
  static char kAggregatesOnly[] = "--benchmark_report_aggregates_only=true";
  if (!has_flag(args, "--benchmark_repetitions")) args.push_back(kRepetitions);
  if (!has_flag(args, "--benchmark_report_aggregates_only") &&
      !has_flag(args, "--benchmark_display_aggregates_only")) {
    args.push_back(kAggregatesOnly);
  }
  const std::string format = flag_value(args, "--benchmark_format", "console");
  if (format != "console" && format != "json") {
    // Google Benchmark's CSV reporter is deprecated.
    std::fprintf(stderr, "vmspace-bench: --benchmark_format must be console or json\n");
    return 1;
  }
  const std::string color = flag_value(args, "--benchmark_color", "auto");
  const bool list_only = has_flag(args, "--benchmark_list_tests") &&
                         flag_value(args, "--benchmark_list_tests", "true") != "false";
  args.push_back(nullptr);
  int nargs = static_cast<int>(args.size()) - 1;
  benchmark::Initialize(&nargs, args.data());
  if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return 1;

  if (list_only) {
    benchmark::RunSpecifiedBenchmarks();
    return 0;
  }
  vmspace::bench::prepare_machine();
  vmspace::bench::CollectingReporter reporter(make_display_reporter(format, color));
  benchmark::RunSpecifiedBenchmarks(&reporter);
  // Keep machine-readable output on stdout parseable.
  vmspace::bench::print_ratio_table(reporter, format == "console" ? stdout : stderr);
  benchmark::Shutdown();
  return 0;
}
