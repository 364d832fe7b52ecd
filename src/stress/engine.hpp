// Internal: the engine's shared state and its workers.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/thread_annotations.hpp>
#include <vmspace/stress.hpp>
#include <vmspace/vm_space.hpp>

#include "checker.hpp"
#include "record.hpp"

namespace vmspace::stress::detail {

class Engine;

// What other threads can see of a cursor a worker holds or waits for: the watchdog prints it,
// and every cursor creation scans the other workers' held slots (the online mutual-exclusion
// check). `seq` is odd while the owner rewrites the range fields (a seqlock).
struct CursorSlot {
  enum : std::uint8_t { kFree = 0, kWaiting = 1, kHeld = 2 };
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::uint8_t> status{kFree};
  std::atomic<std::uint8_t> mut{0};
  std::atomic<std::uint16_t> space{0};
  std::atomic<std::uint64_t> start{0};
  std::atomic<std::uint64_t> end{0};
  std::atomic<std::int64_t> since_ns{0};
};

enum class WorkerState : std::uint8_t { Starting, Running, Copying, Faulting, Parked, Exited };

class Worker {
 public:
  static constexpr std::size_t kSlots = 4;

  Worker(Engine& engine, unsigned index, std::uint64_t seed);

  void thread_main();

  // ---- the recording API behind StressContext / StressCursor ----
  Result<void> with_cursor(std::size_t space, VaRange range, CursorKind kind, LockMode mode,
                           const std::function<void(StressCursor&)>& body);
  Result<StressContext::CopyResult> copy(bool write, Vaddr va, std::size_t len);
  Result<void> activate(std::optional<std::size_t> space);
  Result<void> handle_fault(const PageFaultInfo& info);

  // StressCursor operations.
  Result<std::pair<VaRange, std::optional<VmQueriedItem>>> cursor_query(StressCursor& c);
  Result<std::optional<Vaddr>> cursor_find_next(StressCursor& c, std::size_t len);
  Result<void> cursor_jump(StressCursor& c, Vaddr va);
  Result<void> cursor_map(StressCursor& c, bool huge, PageProperty prop);
  Result<std::size_t> cursor_unmap(StressCursor& c, std::size_t len);
  Result<std::optional<VaRange>> cursor_protect(StressCursor& c, std::size_t len, const ProtectChange& change);

  void count(OpKind k, std::optional<Error> e) noexcept;
  std::uint64_t ops() const noexcept { return ops_.load(std::memory_order_relaxed); }

  Engine& engine;
  const unsigned index;
  std::mt19937_64 rng;
  std::optional<CpuBinding> binding;
  std::optional<std::size_t> active;

  // Recorded since the last checkpoint (read by the coordinator only while the worker is parked).
  std::vector<Record> records;
  std::vector<CopyRecord> copies;
  std::vector<ReadRun> runs;
  // The writes since the last checkpoint; write_base is the sequence number of writes[0].
  std::vector<WriteInfo> writes;
  std::uint64_t write_base = 0;
  // Unmaps that returned a non-zero frame count (each handed frames to the TLB dispatcher).
  std::uint64_t unmaps_with_frames = 0;

  std::array<std::array<std::atomic<std::uint64_t>, kOutcomes>, kOpKinds> counts{};
  std::array<CursorSlot, kSlots> slots{};
  std::atomic<WorkerState> state{WorkerState::Starting};
  std::atomic<int> cpu_id{-1};
  std::atomic<std::int64_t> state_since_ns{0};

 private:
  struct Held {
    std::size_t space;
    VaRange range;
  };

  void set_state(WorkerState s) noexcept;
  void do_action();
  void session(bool mut);
  void session_op(StressCursor& c, bool mut);
  void maybe_nested(StressCursor& c);
  void copy_action(bool write);
  Result<void> default_fault(StressContext& ctx, const PageFaultInfo& info);

  // Random helpers.
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng() % n; }
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  std::size_t pick_space() { return static_cast<std::size_t>(below(engine_spaces())); }
  std::size_t engine_spaces() const noexcept;
  Region pick_region();
  VaRange pick_range(const Region& r);
  VaRange bad_range();
  Vaddr random_page(VaRange r) { return r.start + below((r.end - r.start) / kPageSize) * kPageSize; }
  std::uint64_t random_len(Vaddr from, VaRange r);
  PageProperty random_prop(bool invalid);
  ProtectChange random_change(bool invalid);

  void push(Record& r);
  void check_exclusion(std::size_t space, VaRange range, std::uint64_t cursor);

  std::atomic<std::uint64_t> ops_{0};
  std::vector<Held> held_;
  // A zeroed frame / 2 MiB segment whose map failed: the next map uses it instead of
  // allocating and zeroing again (it was never visible to anyone, so it is still zero).
  std::optional<UFrame> spare_frame_;
  std::optional<USegment> spare_huge_;
  std::vector<std::uint64_t> buf_;
};

class Engine {
 public:
  Engine(const StressOptions& options, OpMix mix);
  ~Engine();
  StressReport run();

  std::uint64_t next_ticket() noexcept { return ticket_.fetch_add(1, std::memory_order_seq_cst) + 1; }
  std::uint64_t next_cursor_id() noexcept { return cursor_ids_.fetch_add(1, std::memory_order_relaxed) + 1; }
  std::int64_t now_ns() const noexcept;
  bool pause_requested() const noexcept { return pause_.load(std::memory_order_acquire); }
  bool stop_requested() const noexcept { return stop_.load(std::memory_order_acquire); }
  void park(Worker& w);
  void worker_ready(bool ok);
  void worker_exited();
  // Asks the coordinator for a checkpoint as soon as possible (a violation was seen).
  void request_checkpoint() noexcept { urgent_.store(true, std::memory_order_relaxed); }
  // Records a violation seen while running (collected at the next checkpoint, or by the
  // watchdog's deadlock report).
  void online_finding(std::string what);
  const std::vector<std::unique_ptr<Worker>>& workers() const noexcept { return workers_; }

  const StressOptions& options;
  const OpMix mix;
  std::vector<std::shared_ptr<VmSpace>> spaces;
  std::vector<Region> regions;  // "leaf", "overlap", "span", then one slot per thread
  Region leaf, overlap_region, span;

 private:
  void checkpoint(StressReport& report, bool final);
  void checker_main();
  void wait_checker_idle(std::unique_lock<std::mutex>& lk);
  void add_findings(std::vector<Finding>& findings, StressReport& report);
  void watchdog_main();
  [[noreturn]] void deadlock(double stalled_seconds);
  void fill_counts(StressReport& report) const;
  std::uint64_t total_ops() const noexcept;
  void pause_all();
  void release_all(bool stop);

  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::uint64_t> cursor_ids_{0};
  std::atomic<bool> pause_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> checking_{false};
  std::atomic<bool> urgent_{false};
  std::atomic<std::uint64_t> checkpoints_{0};
  // Guards the report's violations against the watchdog's deadlock report.
  std::mutex report_m_;
  Mutex online_m_;  // annotated: clang's thread-safety analysis checks online_'s users
  std::vector<std::string> online_ VMS_GUARDED_BY(online_m_);

  std::mutex m_;
  std::condition_variable cv_coord_;
  std::condition_variable cv_workers_;
  unsigned parked_ = 0;
  unsigned exited_ = 0;
  unsigned ready_ = 0;
  unsigned ready_failed_ = 0;
  std::uint64_t generation_ = 0;
  bool go_ = false;

  std::mutex wd_m_;
  std::condition_variable wd_cv_;
  bool wd_stop_ = false;

  std::vector<std::unique_ptr<Worker>> workers_;

  // The checker thread replays each segment while the workers run the next one.
  std::unique_ptr<Checker> checker_;
  std::thread checker_thread_;
  std::mutex ck_m_;
  std::condition_variable ck_cv_;
  std::optional<Checker::Job> ck_job_;
  bool ck_busy_ = false;
  bool ck_stop_ = false;
  std::vector<Finding> ck_findings_;
  std::uint64_t ck_records_ = 0;
  std::uint64_t ck_copies_ = 0;
  std::chrono::steady_clock::time_point t0_;
  std::uint64_t stale_base_ = 0;
  std::uint64_t stale_reported_ = 0;
  std::uint64_t kept_base_ = 0;
  StressReport* live_report_ = nullptr;
};

}  // namespace vmspace::stress::detail
