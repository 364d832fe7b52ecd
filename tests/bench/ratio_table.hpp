// The ratio table printed after the Google Benchmark run: each vmspace row next to its
// baseline from the same run and the target from docs/performance.md, PASS or MISS.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmspace::bench {

// Records every result and forwards it unchanged to the display reporter (console, JSON or
// CSV, as --benchmark_format asks).
class CollectingReporter final : public benchmark::BenchmarkReporter {
 public:
  explicit CollectingReporter(std::unique_ptr<benchmark::BenchmarkReporter> display);

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

  // The median of counter `counter` (e.g. "items_per_second", "ns_per_item") of row `name` —
  // the benchmark name with its arguments but without time type or thread count, e.g.
  // "BM_CursorProtect4K/pages:1" — run with `threads` threads: the "median" aggregate when
  // repetitions produced one, else the median of the reported repetitions. nullopt if the row
  // did not run (filtered out or failed) or has no such counter.
  std::optional<double> median(const std::string& name, int threads,
                               const std::string& counter) const;

 private:
  struct Samples {
    std::optional<double> median;
    std::vector<double> repetitions;
  };

  std::unique_ptr<benchmark::BenchmarkReporter> display_;
  std::map<std::string, Samples> results_;
};

// Prints the table for the rows in `results` to `out`.
void print_ratio_table(const CollectingReporter& results, std::FILE* out);

}  // namespace vmspace::bench
