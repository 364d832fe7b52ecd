// Internal: Worker, one stress thread. It binds an emulated CPU, picks random actions from the
// profile's mix (cursor sessions, copies, activations, the user's custom operation), parks at
// checkpoints and serves the page faults its copies take; its Recorder runs and records them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>

#include <vmspace/cpu.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/stress.hpp>

#include "recorder.hpp"

namespace vmspace::stress::internal {

class Engine;

// Whether a random argument should be one the library must refuse.
enum class ArgValidity : std::uint8_t { Valid, Invalid };

class Worker {
 public:
  Worker(Engine& engine, unsigned index, std::uint64_t seed);

  void thread_main();
  // The worker running on this thread, if any (the engine's page-fault handler needs it).
  static Worker* current() noexcept;
  // Serves a page fault of this worker's copy: the user's FaultHook, or demand paging.
  Result<void> handle_fault(const PageFaultInfo& info);

  Recorder& recorder() noexcept { return recorder_; }
  const Recorder& recorder() const noexcept { return recorder_; }
  const WorkerStatus& status() const noexcept { return status_; }

  Engine& engine;
  const unsigned index;
  std::mt19937_64 rng;
  std::optional<CpuBinding> binding;

 private:
  void do_action();
  void session(CursorKind kind);
  void session_op(StressCursor& c, CursorKind kind);
  void maybe_nested(StressCursor& c);
  void copy_action(CopyDirection direction);
  Result<void> default_fault(StressContext& ctx, const PageFaultInfo& info);

  // Random helpers.
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : rng() % n; }
  bool chance(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p; }
  std::size_t pick_space();
  Region pick_region();
  VaRange pick_range(const Region& r);
  VaRange bad_range();
  Vaddr random_page(VaRange r) {
    return r.start + below((r.end - r.start) / kPageSize) * kPageSize;
  }
  std::uint64_t random_len(Vaddr from, VaRange r);
  PageProperty random_prop(ArgValidity validity);
  ProtectChange random_change(ArgValidity validity);

  WorkerStatus status_;
  Recorder recorder_;
};

}  // namespace vmspace::stress::internal
