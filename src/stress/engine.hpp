// Internal: Engine, one run of the stress engine. It holds what the workers share (spaces,
// regions, the ticket counter, online findings) and coordinates the run: it wires the workers,
// the WorkerBarrier, the CheckerThread and the Watchdog together and checks the machine at every
// quiescent point (checkpoint).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <vmspace/fault.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/stress.hpp>
#include <vmspace/thread_annotations.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "checker.hpp"
#include "checker_thread.hpp"
#include "worker.hpp"
#include "worker_barrier.hpp"

namespace vmspace::stress::internal {

// The last checkpoint of a run waits for the checker to replay its segment; the others hand the
// segment over and let the workers go on.
enum class CheckpointKind : std::uint8_t { Intermediate, Final };

class Engine {
 public:
  Engine(const StressOptions& options, OpMix mix);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  StressReport run();

  // ---- shared with the workers ----
  std::uint64_t next_ticket() noexcept {
    return ticket_.fetch_add(1, std::memory_order_seq_cst) + 1;
  }
  std::uint64_t next_cursor_id() noexcept {
    return cursor_ids_.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  // Nanoseconds since the run started.
  std::int64_t now_ns() const noexcept;
  WorkerBarrier& barrier() noexcept { return barrier_; }
  // Records a violation seen while running (collected at the next checkpoint, which it asks
  // for at once, or by the deadlock report).
  void online_finding(std::string what) VMS_EXCLUDES(online_m_);
  const std::vector<std::unique_ptr<Worker>>& workers() const noexcept { return workers_; }

  const StressOptions& options;
  const OpMix mix;
  std::vector<std::shared_ptr<VmSpace>> spaces;
  std::vector<Region> regions;  // "leaf", "overlap", "span", then one slot per thread
  Region leaf, overlap_region, span;

 private:
  // What run() measures before the workers start, to report differences and restore.
  struct Baseline {
    std::uint64_t free_bytes = 0;
    TlbCheckMode tlb_mode{};
    std::uint64_t tlb_dispatches = 0;
    FaultStats faults{};
  };

  // ---- run(), in order ----
  // Checks the options, arms the mutation and boots the machine if needed; returns the setup
  // error, empty if the run can go ahead.
  std::string prepare_machine();
  Baseline take_baseline();
  std::string create_spaces();
  // Creates the workers and their threads and starts them; sets report.setup_error if one of
  // them found no free CPU (the run then stops at once).
  std::vector<std::thread> start_workers(StressReport& report);
  // Runs the checkpoints until the end of the run (time, operations, or a violation).
  void coordinate(StressReport& report);
  CheckpointKind wait_for_checkpoint(std::chrono::steady_clock::time_point deadline,
                                     std::chrono::steady_clock::time_point last_checkpoint,
                                     std::uint64_t ops_at_last_checkpoint);
  // Drops the spaces and workers and reports statistics and leaks against `before`.
  void finish(StressReport& report, const Baseline& before, bool started);

  // ---- a checkpoint, with every worker parked ----
  void checkpoint(StressReport& report, CheckpointKind kind) VMS_EXCLUDES(online_m_, report_m_);
  void take_online_findings(std::vector<Finding>& findings) VMS_EXCLUDES(online_m_);
  void check_invariants(std::vector<Finding>& findings) const;
  void check_tlb_counters(std::vector<Finding>& findings);
  // Moves the workers' records of this segment into a job for the checker.
  Checker::Job take_segment();
  void add_findings(std::vector<Finding>& findings, StressReport& report) VMS_EXCLUDES(report_m_);

  // The watchdog's stall handler: prints (or hands to options.on_deadlock) what every worker
  // holds or waits for, and ends the process.
  [[noreturn]] void report_deadlock(double stalled_seconds) VMS_EXCLUDES(online_m_, report_m_);
  std::string describe_workers() const;

  void fill_counts(StressReport& report) const;
  std::uint64_t total_ops() const noexcept;

  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::uint64_t> cursor_ids_{0};
  std::atomic<bool> checking_{false};
  std::atomic<bool> urgent_{false};  // a violation was seen: check as soon as possible
  std::atomic<std::uint64_t> checkpoints_{0};
  std::chrono::steady_clock::time_point t0_;

  Mutex online_m_;
  std::vector<std::string> online_ VMS_GUARDED_BY(online_m_);
  // The coordinator's report, which the deadlock report copies the violations of.
  Mutex report_m_;
  StressReport* live_report_ VMS_GUARDED_BY(report_m_) = nullptr;

  WorkerBarrier barrier_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::optional<CheckerThread> checker_;

  // TLB counters at the start and what was reported (coordinator only).
  std::uint64_t stale_base_ = 0;
  std::uint64_t stale_reported_ = 0;
  std::uint64_t kept_base_ = 0;
};

}  // namespace vmspace::stress::internal
