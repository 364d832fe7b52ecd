// Engine: one run of the stress engine. run() wires the workers, the barrier, the checker thread
// and the watchdog together; checkpoint() checks the machine while every worker is parked; the
// deadlock report describes what every worker holds when the watchdog fires.
#include "engine.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <utility>

#include <vmspace/boot.hpp>
#include <vmspace/check/interpret.hpp>
#include <vmspace/check/invariants.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/rcu.hpp>

#include "regions.hpp"
#include "watchdog.hpp"

namespace vmspace::stress {

namespace internal {

Engine::Engine(const StressOptions& o, OpMix m) : options(o), mix(m) {
  leaf = Region{"leaf", kLeafRegion};
  overlap_region = Region{"overlap", kOverlapRegion};
  span = Region{"span", kSpanRegion};
  regions = stress_regions(o.threads);
}

Engine::~Engine() = default;

std::int64_t Engine::now_ns() const noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              t0_)
      .count();
}

void Engine::online_finding(std::string what) {
  std::fprintf(stderr, "vmspace-stress: violation (online mutual-exclusion check): %s\n",
               what.c_str());
  {
    LockGuard<Mutex> lk(online_m_);
    online_.push_back(std::move(what));
  }
  urgent_.store(true, std::memory_order_relaxed);
}

// ---- run ----

StressReport Engine::run() {
  StressReport report = StressReport::configured(options);
  {
    LockGuard<Mutex> lk(report_m_);
    live_report_ = &report;
  }
  report.setup_error = prepare_machine();
  if (!report.setup_error.empty()) return report;
  const Baseline before = take_baseline();
  report.setup_error = create_spaces();
  if (!report.setup_error.empty()) {
    set_tlb_check_mode(before.tlb_mode);
    return report;
  }
  checker_.emplace(spaces.size(), options.threads, options.minimize_seconds);
  auto prev_handler = inject_user_page_fault_handler([](const PageFaultInfo& info) -> Result<void> {
    Worker* w = Worker::current();
    if (w == nullptr) return err(Error::PageFault);
    return w->handle_fault(info);
  });

  t0_ = std::chrono::steady_clock::now();
  std::vector<std::thread> threads = start_workers(report);
  const bool started = report.setup_error.empty();
  std::optional<Watchdog> watchdog;
  if (started) {
    watchdog.emplace(
        options.watchdog_seconds,
        [this] {
          return Watchdog::Progress{ticket_.load(std::memory_order_relaxed),
                                    checkpoints_.load(std::memory_order_relaxed),
                                    checking_.load(std::memory_order_acquire)};
        },
        [this](double stalled) { report_deadlock(stalled); });
    coordinate(report);
  }
  for (auto& t : threads) t.join();
  checker_->stop();
  watchdog.reset();
  {
    LockGuard<Mutex> lk(report_m_);
    live_report_ = nullptr;
  }

  fill_counts(report);
  report.ops_per_second =
      report.seconds > 0 ? static_cast<double>(report.total_ops) / report.seconds : 0;
  inject_user_page_fault_handler(std::move(prev_handler));
  finish(report, before, started);
  return report;
}

std::string Engine::prepare_machine() {
  if (options.threads == 0 || options.threads > 255) return "threads must be 1..255";
  if (options.spaces == 0 || options.spaces > 64) return "spaces must be 1..64";
  if (options.ops == 0 && !(options.seconds > 0))
    return "give a positive duration or an operation count";
  if (in_atomic_mode()) return "run() called in atomic mode";
#ifdef VMSPACE_MUTATIONS
  vmspace::internal::set_mutation(options.mutation);
#else
  if (options.mutation != vmspace::internal::Mutation::None) {
    return "this build has no mutation switches (configure with -Dmutations=true)";
  }
#endif
  if (!is_booted()) {
    BootConfig cfg;
    cfg.phys_mem_bytes = options.phys_mem_bytes;
    cfg.num_cpus = options.threads + 1;
    if (auto b = boot(cfg); !b)
      return std::string("boot failed: ") + std::string(vmspace::to_string(b.error()));
  }
  if (num_cpus() < options.threads) {
    return "the machine has " + std::to_string(num_cpus()) + " CPUs; " +
           std::to_string(options.threads) + " workers need one each";
  }
  return {};
}

Engine::Baseline Engine::take_baseline() {
  rcu_barrier();
  Baseline b;
  b.free_bytes = global_frame_allocator().free_bytes();
  b.tlb_mode = tlb_check_mode();
  set_tlb_check_mode(TlbCheckMode::Count);
  stale_base_ = tlb_stale_hits();
  kept_base_ = tlb_dispatch_stats().frames_kept;
  b.tlb_dispatches = tlb_dispatch_stats().dispatches;
  b.faults = fault_stats();
  return b;
}

std::string Engine::create_spaces() {
  for (unsigned i = 0; i < options.spaces; ++i) {
    auto s = VmSpace::create();
    if (!s) {
      spaces.clear();
      return "VmSpace::create failed";
    }
    spaces.push_back(std::move(*s));
  }
  return {};
}

std::vector<std::thread> Engine::start_workers(StressReport& report) {
  std::seed_seq seq{options.seed, options.seed >> 32};
  std::vector<std::uint32_t> seeds(options.threads * 2);
  seq.generate(seeds.begin(), seeds.end());
  for (unsigned i = 0; i < options.threads; ++i) {
    workers_.push_back(
        std::make_unique<Worker>(*this, i, (std::uint64_t{seeds[2 * i]} << 32) | seeds[2 * i + 1]));
  }
  std::vector<std::thread> threads;
  for (auto& w : workers_) threads.emplace_back([&w] { w->thread_main(); });
  if (const std::size_t no_cpu = barrier_.start(workers_.size()); no_cpu != 0) {
    report.setup_error =
        std::to_string(no_cpu) + " worker(s) found no free emulated CPU (another thread holds it)";
  }
  return threads;
}

void Engine::coordinate(StressReport& report) {
  const auto t_start = std::chrono::steady_clock::now();
  const auto deadline =
      t_start + std::chrono::microseconds(static_cast<std::int64_t>(options.seconds * 1e6));
  auto last_checkpoint = t_start;
  std::uint64_t ops_at_last_checkpoint = 0;
  for (;;) {
    CheckpointKind kind = wait_for_checkpoint(deadline, last_checkpoint, ops_at_last_checkpoint);
    barrier_.pause_all(workers_.size());
    report.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    checkpoint(report, kind);
    if (report.violations_total > 0 && options.stop_on_violation && kind != CheckpointKind::Final) {
      // Collect what the checker finds in this last segment too.
      kind = CheckpointKind::Final;
      checkpoint(report, kind);
    }
    last_checkpoint = std::chrono::steady_clock::now();
    ops_at_last_checkpoint = total_ops();
    barrier_.release_all(kind == CheckpointKind::Final ? AfterRelease::Stop
                                                       : AfterRelease::Continue);
    if (kind == CheckpointKind::Final) return;
  }
}

CheckpointKind Engine::wait_for_checkpoint(std::chrono::steady_clock::time_point deadline,
                                           std::chrono::steady_clock::time_point last_checkpoint,
                                           std::uint64_t ops_at_last_checkpoint) {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    const auto now = std::chrono::steady_clock::now();
    const std::uint64_t ops = total_ops();
    if (options.ops != 0 ? ops >= options.ops : now >= deadline) return CheckpointKind::Final;
    if (urgent_.exchange(false, std::memory_order_relaxed) ||
        ops - ops_at_last_checkpoint >= options.checkpoint_ops ||
        std::chrono::duration<double, std::milli>(now - last_checkpoint).count() >=
            options.checkpoint_ms) {
      return CheckpointKind::Intermediate;
    }
  }
}

void Engine::finish(StressReport& report, const Baseline& before, bool started) {
  // Teardown and the leak check.
  spaces.clear();
  workers_.clear();
  rcu_barrier();
  report.tlb_stale_hits = tlb_stale_hits() - stale_base_;
  report.tlb_dispatches = tlb_dispatch_stats().dispatches - before.tlb_dispatches;
  const FaultStats faults_after = fault_stats();
  report.faults_handled = faults_after.handled - before.faults.handled;
  report.faults_refused = (faults_after.unresolved - before.faults.unresolved) +
                          (faults_after.refused - before.faults.refused);
  set_tlb_check_mode(before.tlb_mode);
  const std::uint64_t free_after = global_frame_allocator().free_bytes();
  report.leaked_bytes =
      static_cast<std::int64_t>(before.free_bytes) - static_cast<std::int64_t>(free_after);
  if (started && report.leaked_bytes != 0) {
    ++report.violations_total;
    report.violations.push_back(
        StressViolation{"leak", std::to_string(report.leaked_bytes) +
                                    " bytes of physical memory are not free after every space "
                                    "was dropped and rcu_barrier()"});
  }
#ifdef VMSPACE_MUTATIONS
  vmspace::internal::set_mutation(vmspace::internal::Mutation::None);
#endif
}

// ---- checkpoint ----

void Engine::checkpoint(StressReport& report, CheckpointKind kind) {
  checking_.store(true, std::memory_order_release);
  const auto started = std::chrono::steady_clock::now();
  rcu_barrier();  // every deferred free has run: the refcount law and frame slots are exact
  std::vector<Finding> findings;
  take_online_findings(findings);
  check_invariants(findings);
  check_tlb_counters(findings);
  CheckerThread::Progress progress = checker_->submit(
      take_segment(), kind == CheckpointKind::Final ? AwaitReplay::Yes : AwaitReplay::No);
  for (Finding& f : progress.findings) findings.push_back(std::move(f));
  report.records_replayed = progress.records_replayed;
  report.copies_checked = progress.copies_checked;

  add_findings(findings, report);
  report.check_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  report.checkpoints = checkpoints_.fetch_add(1, std::memory_order_relaxed) + 1;
  checking_.store(false, std::memory_order_release);
}

void Engine::take_online_findings(std::vector<Finding>& findings) {
  LockGuard<Mutex> lk(online_m_);
  for (std::string& f : online_) findings.push_back(Finding{"exclusion", std::move(f), {}});
  online_.clear();
}

void Engine::check_invariants(std::vector<Finding>& findings) const {
  // They need the quiescent state itself.
  check::CheckReport inv;
  check::RawRefs refs;
  for (const auto& s : spaces) check::check_user_table(s->page_table(), inv, &refs);
  check::check_page_table(kernel_page_table(), inv, &refs);
  check::check_frame_slots(inv);
  check::check_refcount_law(refs, inv);
  check::check_tlb_coherence(inv);
  for (const check::Violation& v : inv.violations()) {
    findings.push_back(Finding{"invariant", v.rule + ": " + v.detail, {}});
  }
}

void Engine::check_tlb_counters(std::vector<Finding>& findings) {
  // No TLB hit on a freed frame.
  const std::uint64_t stale = tlb_stale_hits() - stale_base_;
  if (stale > stale_reported_) {
    findings.push_back(
        Finding{"tlb",
                std::to_string(stale - stale_reported_) +
                    " TLB hit(s) used a frame that was freed after the entry was filled "
                    "(see the vmspace log for addresses)",
                {}});
    stale_reported_ = stale;
  }
  // Every unmap that removed frames handed them to the TLB dispatcher (they must stay alive
  // until the flush: tlb.hpp).
  std::uint64_t unmaps = 0;
  for (const auto& w : workers_) unmaps += w->recorder().unmaps_with_frames;
  const std::uint64_t kept = tlb_dispatch_stats().frames_kept - kept_base_;
  if (kept < unmaps) {
    findings.push_back(Finding{"tlb",
                               std::to_string(unmaps) +
                                   " unmaps removed frames but TLB dispatches kept only " +
                                   std::to_string(kept) +
                                   " frames alive until their flush: frames were released before "
                                   "the shootdown",
                               {}});
  }
  kept_base_ += kept;
  for (const auto& w : workers_) w->recorder().unmaps_with_frames = 0;
}

Checker::Job Engine::take_segment() {
  // The tables as they are now, and every thread's records merged in ticket order (each
  // thread's are in ticket order already).
  Checker::Job job;
  for (const auto& s : spaces) job.actual.push_back(check::interpret(s->page_table()));
  std::size_t total = 0;
  for (const auto& w : workers_) total += w->recorder().records.size();
  job.records.reserve(total);
  {
    using Head = std::pair<std::uint64_t, std::size_t>;  // (ticket, worker)
    std::vector<std::size_t> pos(workers_.size(), 0);
    std::vector<Head> heap;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      if (!workers_[i]->recorder().records.empty())
        heap.emplace_back(workers_[i]->recorder().records[0].ticket, i);
    }
    auto cmp = [](const Head& a, const Head& b) { return a.first > b.first; };
    std::make_heap(heap.begin(), heap.end(), cmp);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), cmp);
      const std::size_t i = heap.back().second;
      heap.pop_back();
      const auto& recs = workers_[i]->recorder().records;
      job.records.push_back(recs[pos[i]++]);
      if (pos[i] < recs.size()) {
        heap.emplace_back(recs[pos[i]].ticket, i);
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    }
  }
  for (auto& w : workers_) {
    Recorder& rec = w->recorder();
    rec.records.clear();
    job.copies.insert(job.copies.end(), rec.copies.begin(), rec.copies.end());
    rec.copies.clear();
    job.runs.push_back(std::move(rec.runs));
    rec.runs.clear();
    job.new_writes.push_back(std::move(rec.writes));
    rec.write_base += job.new_writes.back().size();
    rec.writes.clear();
  }
  return job;
}

void Engine::add_findings(std::vector<Finding>& findings, StressReport& report) {
  LockGuard<Mutex> lk(report_m_);
  for (Finding& f : findings) {
    ++report.violations_total;
    if (!report.history && f.history) report.history = std::move(f.history);
    if (report.violations.size() < options.max_violations) {
      report.violations.push_back(StressViolation{std::move(f.kind), std::move(f.description)});
    }
  }
  findings.clear();
}

std::uint64_t Engine::total_ops() const noexcept {
  std::uint64_t n = 0;
  for (const auto& w : workers_) n += w->recorder().ops();
  return n;
}

void Engine::fill_counts(StressReport& report) const {
  report.counts = {};
  for (const auto& w : workers_) {
    const auto& counts = w->recorder().counts;
    for (std::size_t k = 0; k < kOpKinds; ++k) {
      for (std::size_t o = 0; o < kOutcomes; ++o)
        report.counts[k][o] += counts[k][o].load(std::memory_order_relaxed);
    }
  }
  report.total_ops = 0;
  for (std::size_t k = 0; k < kOpKinds; ++k) {
    if (k == static_cast<std::size_t>(OpKind::Fault)) continue;
    for (std::uint64_t v : report.counts[k]) report.total_ops += v;
  }
}

// ---- deadlock report ----

void Engine::report_deadlock(double stalled) {
  StressReport report = StressReport::configured(options);
  {
    LockGuard<Mutex> lk(report_m_);
    if (live_report_ != nullptr) {
      // Copy what the coordinator knows (it is blocked waiting for the workers, not writing).
      report.violations = live_report_->violations;
      report.violations_total = live_report_->violations_total;
    }
  }
  {
    LockGuard<Mutex> lk(online_m_);
    for (const std::string& f : online_) {
      ++report.violations_total;
      report.violations.push_back(StressViolation{"exclusion", f});
    }
  }
  report.checkpoints = checkpoints_.load(std::memory_order_relaxed);
  fill_counts(report);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  report.ops_per_second =
      report.seconds > 0 ? static_cast<double>(report.total_ops) / report.seconds : 0;
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  os << "no operation completed for " << stalled
     << " s; what every worker holds or waits for:" << describe_workers();
  ++report.violations_total;
  report.violations.push_back(StressViolation{"deadlock", os.str()});
  if (options.on_deadlock) {
    options.on_deadlock(report);
  } else {
    std::fputs(report.to_text().c_str(), stderr);
    std::fputc('\n', stderr);
  }
  std::fflush(nullptr);
  std::_Exit(3);
}

std::string Engine::describe_workers() const {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(1);
  const std::int64_t now = now_ns();
  static constexpr const char* kStates[] = {
      "starting", "running", "copying", "in the page-fault handler", "parked", "exited"};
  for (const auto& w : workers_) {
    const WorkerStatus& st = w->status();
    os << "\n    t" << w->index << " (cpu " << st.cpu_id.load(std::memory_order_relaxed)
       << "): " << kStates[static_cast<std::size_t>(st.state.load(std::memory_order_relaxed))]
       << " for " << static_cast<double>(now - st.since_ns.load(std::memory_order_relaxed)) / 1e9
       << " s";
    for (const CursorSlot& s : w->recorder().slots) {
      const auto status = s.status.load(std::memory_order_acquire);
      if (status == CursorSlot::kFree) continue;
      const std::uint16_t sp = s.space.load(std::memory_order_relaxed);
      const VaRange r{s.start.load(std::memory_order_relaxed),
                      s.end.load(std::memory_order_relaxed)};
      os << "; " << (status == CursorSlot::kHeld ? "holds " : "waits for ")
         << (s.mut.load(std::memory_order_relaxed) ? "cursor_mut" : "cursor") << " ["
         << hex(r.start) << ", " << hex(r.end) << ") of space " << sp << " since "
         << static_cast<double>(now - s.since_ns.load(std::memory_order_relaxed)) / 1e9 << " s";
      if (status != CursorSlot::kWaiting) continue;
      std::string holders;
      for (const auto& o : workers_) {
        for (const CursorSlot& h : o->recorder().slots) {
          if (h.status.load(std::memory_order_acquire) != CursorSlot::kHeld) continue;
          if (h.space.load(std::memory_order_relaxed) != sp) continue;
          const VaRange hr{h.start.load(std::memory_order_relaxed),
                           h.end.load(std::memory_order_relaxed)};
          if (hr.start >= r.end || r.start >= hr.end) continue;
          holders += (holders.empty() ? "" : ", ") + ("t" + std::to_string(o->index));
        }
      }
      os << (holders.empty()
                 ? " (no worker holds an overlapping cursor: a page-table node was left locked)"
                 : " (overlapping cursors held by " + holders + ")");
    }
  }
  return os.str();
}

}  // namespace internal

StressReport run(const StressOptions& options) {
  internal::Engine engine(options, options.mix.value_or(default_mix(options.profile)));
  return engine.run();
}

}  // namespace vmspace::stress
