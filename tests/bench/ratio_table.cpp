#include "ratio_table.hpp"

#include <algorithm>
#include <cmath>
#include <thread>

namespace vmspace::bench {

namespace {

std::string key_of(const std::string& name, std::int64_t threads, const std::string& counter) {
  return name + "@" + std::to_string(threads) + "#" + counter;
}

// The pseudo-counter under which CollectingReporter records CPU time per iteration.
const char* const kCpuNsPerIteration = "cpu_ns_per_iteration";

// How a row is judged.
enum class Check {
  RatioAtMost,     // vmspace ns / baseline ns <= target
  SpeedupAtLeast,  // baseline ns / vmspace ns >= target
  NsAtMost,        // vmspace ns <= target (the baseline, if any, is context)
  ScalingAtLeast,  // throughput with 2 threads / with 1 thread >= target
  Info,            // no target: shown for context
};

struct TargetRow {
  const char* metric;
  Check check;
  double target;
  const char* row;             // the vmspace row
  const char* baseline;        // the baseline row (nullptr: none; scaling rows use `row`)
  const char* baseline_label;  // how the baseline column names it
};

// The targets of docs/performance.md, each paired with its rows of this program.
const TargetRow kRows[] = {
    {"map 4K, held cursor / xv6 map", Check::RatioAtMost, 1.5, "BM_CursorMap4K",
     "BM_Baseline_XvMap4K", "xv6 map"},
    {"map 4K vs Linux mmap(POPULATE)+munmap", Check::SpeedupAtLeast, 50, "BM_CursorMap4K",
     "BM_Baseline_LinuxMmapPopulate", "Linux"},
    {"unmap 4K, 512 batch, frame freed", Check::NsAtMost, 50, "BM_CursorUnmap4K",
     "BM_Baseline_XvUnmap4K", "xv6 unmap"},
    {"  same, items retired to RCU as one batch", Check::Info, 0, "BM_CursorUnmap4K/BatchedRetire",
     "BM_Baseline_XvUnmap4K", "xv6 unmap"},
    {"protect one page", Check::NsAtMost, 60, "BM_CursorProtect4K/pages:1",
     "BM_Baseline_LinuxMprotect/pages:1", "mprotect"},
    {"protect, per page of 512 (protect(len))", Check::NsAtMost, 5, "BM_CursorProtect4K/pages:512",
     "BM_Baseline_LinuxMprotect/pages:512", "mprotect"},
    {"  same, protect_next loop", Check::Info, 0, "BM_CursorProtectNextLoop/pages:512",
     "BM_Baseline_LinuxMprotect/pages:512", "mprotect"},
    {"query, held cursor, hot leaf / xv6 walk", Check::RatioAtMost, 1.25, "BM_CursorQuery/HotLeaf",
     "BM_Baseline_XvWalkHot", "xv6 walk"},
    {"query, held cursor, random / xv6 walk", Check::RatioAtMost, 1.25, "BM_CursorQuery/Random",
     "BM_Baseline_XvWalkRandom", "xv6 walk"},
    {"page walk, random (MMU miss) / xv6 walk", Check::RatioAtMost, 1.25, "BM_PageWalkRandom",
     "BM_Baseline_XvWalkRandom", "xv6 walk"},
    {"  same, own guard per walk", Check::Info, 0, "BM_PageWalkRandomWithGuard",
     "BM_Baseline_XvWalkRandom", "xv6 walk"},
    {"MMU translate, TLB hit", Check::NsAtMost, 2, "BM_TranslateTlbHit", nullptr, ""},
    {"MMU translate, TLB miss / xv6 walk", Check::RatioAtMost, 1.25, "BM_TranslateTlbMiss",
     "BM_Baseline_XvWalkRandom", "xv6 walk"},
    {"reader copy 64 B", Check::NsAtMost, 15, "BM_ReaderCopy/bytes:64",
     "BM_Baseline_Memcpy/bytes:64", "memcpy"},
    {"writer copy 64 B", Check::NsAtMost, 15, "BM_WriterCopy/bytes:64",
     "BM_Baseline_Memcpy/bytes:64", "memcpy"},
    {"reader copy 4 KiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_ReaderCopy/bytes:4096",
     "BM_Baseline_Memcpy/bytes:4096", "memcpy"},
    {"writer copy 4 KiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_WriterCopy/bytes:4096",
     "BM_Baseline_Memcpy/bytes:4096", "memcpy"},
    {"reader copy 128 KiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_ReaderCopy/bytes:131072",
     "BM_Baseline_Memcpy/bytes:131072", "memcpy"},
    {"writer copy 128 KiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_WriterCopy/bytes:131072",
     "BM_Baseline_Memcpy/bytes:131072", "memcpy"},
    {"reader copy 64 MiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_ReaderCopy/bytes:67108864",
     "BM_Baseline_Memcpy/bytes:67108864", "memcpy"},
    {"writer copy 64 MiB / memcpy", Check::RatioAtMost, 1 / 0.9, "BM_WriterCopy/bytes:67108864",
     "BM_Baseline_Memcpy/bytes:67108864", "memcpy"},
    {"unmap 512 + dispatch to 2 CPUs, per page", Check::NsAtMost, 50, "BM_UnmapDispatch512",
     nullptr, ""},
    {"cursor create + drop, 4K", Check::NsAtMost, 40, "BM_CursorCreateDrop", nullptr, ""},
    {"  same, own guard per cursor", Check::Info, 0, "BM_CursorCreateDropWithGuard", nullptr, ""},
    {"frame alloc + free, per-CPU cache hit", Check::NsAtMost, 30, "BM_FrameAllocFree", nullptr,
     ""},
    {"  same, zeroed (4 KiB memset)", Check::Info, 0, "BM_FrameAllocFreeZeroed", nullptr, ""},
    {"2T/1T disjoint: map+unmap", Check::ScalingAtLeast, 1.8, "BM_Parallel_MapUnmap4K/Disjoint",
     nullptr, ""},
    {"2T/1T disjoint: protect", Check::ScalingAtLeast, 1.8, "BM_Parallel_Protect4K/Disjoint",
     nullptr, ""},
    {"2T/1T disjoint: query", Check::ScalingAtLeast, 1.8, "BM_Parallel_Query/Disjoint", nullptr,
     ""},
    {"2T/1T one leaf table: map+unmap", Check::ScalingAtLeast, 1.0,
     "BM_Parallel_MapUnmap4K/SameLeaf", nullptr, ""},
    {"2T/1T one leaf table: protect", Check::ScalingAtLeast, 1.0, "BM_Parallel_Protect4K/SameLeaf",
     nullptr, ""},
    {"2T/1T one leaf table: query", Check::ScalingAtLeast, 1.0, "BM_Parallel_Query/SameLeaf",
     nullptr, ""},
};

const char* const kNotes[] = {
    "ns: ns_per_item, the median batch time per item (batches another process preempted are",
    "  outliers the median ignores), median of the repetitions. Ratios use this run only.",
    "map: frames pre-allocated (no frame allocation or zeroing); vmspace and xv6 both allocate and",
    "  zero one leaf table per 512 pages. Linux mmap(MAP_POPULATE) allocates and zeroes the page.",
    "unmap: includes each frame's free (refcount to 0, back to the allocator) and the RCU grace",
    "  period (rcu_barrier once per 512-page batch); the xv6 unmap only clears PTEs. "
    "BatchedRetire:",
    "  one rcu_retire per 512 items instead of one per fragment (what a TLB flusher would do).",
    "protect: one page = guard reused, cursor create + protect_next + drop; 512 = one cursor over",
    "  2 MiB. No TLB flush at this layer. Linux mprotect includes the syscall, VMA split/merge",
    "  and the TLB flush.",
    "query/walk: same pseudo-random pages in the same order as the xv6 walk (512 pages of one leaf",
    "  table, or all pages of the 1M-page table mapped over the frame pool). xv6 nodes are",
    "  aligned_alloc'd host memory; vmspace nodes are frames of the memfd-backed emulated memory.",
    "copies: reader/writer creation + one fallible copy between the mapped range and a host buffer",
    "  (TLB warm up to 1 MiB; 64 MiB misses on every page); memcpy between two host buffers.",
    "  <= 1.11x memcpy time is >= 90% of its throughput.",
    "translate: mmu_translate in one held guard; hit = 64 cached pages cycled, miss = the xv6",
    "  walk's random sequence over the 1M-page table (see the tlb_hit_rate counter).",
    "unmap+dispatch: VmSpace::CursorMut::unmap of 512 pages whose translations CPU 0 cached,",
    "  space active on 2 CPUs; frames go to RCU (barrier untimed).",
    "2T/1T: items_per_second over wall time of complete operations (guard + cursor over one",
    "  page + op + drop); threads pinned to host cores, each bound to its own emulated CPU.",
    "  Needs two otherwise idle cores: other load lowers the 2-thread number first.",
};

std::string format_ns(double ns) {
  char buf[32];
  if (ns >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f ns", ns);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f ns", ns);
  }
  return buf;
}

std::string format_rate(double per_second, int threads) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.2f M/s %dT", per_second / 1e6, threads);
  return buf;
}

std::string format_x(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, x >= 10 ? "%.0fx" : "%.2fx", x);
  return buf;
}

}  // namespace

CollectingReporter::CollectingReporter(std::unique_ptr<benchmark::BenchmarkReporter> display)
    : display_(std::move(display)) {}

bool CollectingReporter::ReportContext(const Context& context) {
  return display_->ReportContext(context);
}

void CollectingReporter::ReportRuns(const std::vector<Run>& runs) {
  for (const Run& run : runs) {
    if (run.error_occurred) continue;
    std::string name = run.run_name.function_name;
    if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
    auto record = [&](const std::string& counter, double value) {
      Samples& s = results_[key_of(name, run.threads, counter)];
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") s.median = value;
      } else {
        s.repetitions.push_back(value);
      }
    };
    for (const auto& [counter, value] : run.counters) record(counter, value.value);
    // Thread CPU time per iteration (all threads' CPU time / all threads' iterations).
    record(kCpuNsPerIteration,
           run.GetAdjustedCPUTime() / benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9);
  }
  display_->ReportRuns(runs);
}

void CollectingReporter::Finalize() { display_->Finalize(); }

std::optional<double> CollectingReporter::median(const std::string& name, int threads,
                                                 const std::string& counter) const {
  auto it = results_.find(key_of(name, threads, counter));
  if (it == results_.end()) return std::nullopt;
  if (it->second.median) return it->second.median;
  std::vector<double> v = it->second.repetitions;
  if (v.empty()) return std::nullopt;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void print_ratio_table(const CollectingReporter& results, std::FILE* out) {
  // ns per item of a single-thread row: the median batch (BatchTimer), or else 1 / the rate.
  auto ns_of = [&](const char* row) -> std::optional<double> {
    if (row == nullptr) return std::nullopt;
    if (auto ns = results.median(row, 1, "ns_per_item")) return ns;
    auto ips = results.median(row, 1, "items_per_second");
    if (!ips || *ips <= 0) return std::nullopt;
    return 1e9 / *ips;
  };

  std::fprintf(
      out, "\nRatio table (vmspace rows against baselines and targets of docs/performance.md)\n");
  // Other processes distort every number on a 2-vCPU machine: say how busy it was.
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    double one = 0;
    double five = 0;
    if (std::fscanf(f, "%lf %lf", &one, &five) == 2) {
      const unsigned cpus = std::max(1u, std::thread::hardware_concurrency());
      std::fprintf(
          out, "host load average %.2f (1 min) %.2f (5 min) on %u CPUs%s\n", one, five, cpus,
          one > 0.5 * cpus + 1 ? ": busy machine, expect inflated times and low 2T/1T ratios" : "");
    }
    std::fclose(f);
  }
  std::fprintf(out, "%-42s %-16s %-24s %-14s %-18s %s\n", "metric", "vmspace", "baseline", "ratio",
               "target", "result");
  std::fprintf(out, "%s\n", std::string(124, '-').c_str());
  int pass = 0;
  int miss = 0;
  int not_run = 0;
  for (const TargetRow& r : kRows) {
    std::string subject;
    std::string baseline;
    std::string ratio;
    std::string target;
    std::optional<bool> ok;
    bool ran = true;
    if (r.check == Check::ScalingAtLeast) {
      auto two = results.median(r.row, 2, "items_per_second");
      auto one = results.median(r.row, 1, "items_per_second");
      ran = two && one && *one > 0;
      if (ran) {
        subject = format_rate(*two, 2);
        baseline = format_rate(*one, 1);
        ratio = format_x(*two / *one);
        ok = *two / *one >= r.target;
      }
      target = ">= " + format_x(r.target);
    } else {
      auto vm = ns_of(r.row);
      auto base = ns_of(r.baseline);
      ran = vm.has_value() &&
            (base.has_value() || r.check == Check::NsAtMost || r.check == Check::Info);
      if (vm) subject = format_ns(*vm);
      if (base) baseline = std::string(r.baseline_label) + " " + format_ns(*base);
      if (ran) {
        switch (r.check) {
          case Check::RatioAtMost:
            ratio = format_x(*vm / *base);
            target = "<= " + format_x(r.target);
            ok = *vm / *base <= r.target;
            break;
          case Check::SpeedupAtLeast:
            ratio = format_x(*base / *vm) + " faster";
            target = ">= " + format_x(r.target) + " faster";
            ok = *base / *vm >= r.target;
            break;
          case Check::NsAtMost:
            if (base) ratio = format_x(*vm / *base);
            target = "<= " + format_ns(r.target);
            ok = *vm <= r.target;
            break;
          case Check::Info:
            if (base) ratio = format_x(*vm / *base);
            target = "-";
            break;
          case Check::ScalingAtLeast:
            break;
        }
      }
    }
    if (!ran) {
      ++not_run;
      continue;
    }
    if (ok) ++(*ok ? pass : miss);
    const char* verdict = !ok ? "info" : *ok ? "PASS" : "MISS";
    std::fprintf(out, "%-42s %-16s %-24s %-14s %-18s %s\n", r.metric, subject.c_str(),
                 baseline.c_str(), ratio.c_str(), target.c_str(), verdict);
  }
  std::fprintf(out, "%s\n", std::string(124, '-').c_str());
  std::fprintf(out, "%d PASS, %d MISS", pass, miss);
  if (not_run > 0) std::fprintf(out, "; %d rows not shown (not run or filtered out)", not_run);
  std::fprintf(out, "\n");

  // Scaling rows depend on getting two idle cores; thread CPU time per operation does not.
  // Twice the 1-thread CPU time over the 2-thread one is the scaling the rows would show if
  // each thread had a core to itself (an upper bound: time spent asleep on a lock is not CPU).
  bool header = false;
  for (const TargetRow& r : kRows) {
    if (r.check != Check::ScalingAtLeast) continue;
    auto one = results.median(r.row, 1, kCpuNsPerIteration);
    auto two = results.median(r.row, 2, kCpuNsPerIteration);
    if (!one || !two || *two <= 0) continue;
    if (!header) {
      std::fprintf(out, "CPU time per operation (diagnostic for the 2T/1T rows)\n");
      header = true;
    }
    std::fprintf(out, "  %-40s 1T %s  2T %s  -> %s if each thread had a core\n", r.metric,
                 format_ns(*one).c_str(), format_ns(*two).c_str(),
                 format_x(2 * *one / *two).c_str());
  }
  for (const char* note : kNotes) std::fprintf(out, "  %s\n", note);
}

}  // namespace vmspace::bench
