// Internal: WorkerBarrier, where workers wait for the start signal and park at quiescent points
// (checkpoints) until the coordinator releases them, or tells them to stop.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>

#include <vmspace/mutex.hpp>
#include <vmspace/thread_annotations.hpp>

namespace vmspace::stress::internal {

// How a worker's start went: it bound an emulated CPU, or found none free.
enum class WorkerStart : std::uint8_t { Bound, NoFreeCpu };
// What released workers do next.
enum class AfterRelease : std::uint8_t { Continue, Stop };

class WorkerBarrier {
 public:
  // ---- worker side ----
  // Reports how the start went and blocks until the coordinator starts (or stops) the run.
  void arrive(WorkerStart start) VMS_EXCLUDES(m_);
  // Counts this worker as parked and blocks until the next release_all().
  void park() VMS_EXCLUDES(m_);
  // Counts this worker as gone for good (pause_all() no longer waits for it).
  void exited() VMS_EXCLUDES(m_);
  // Polled between actions: a parked checkpoint or the end of the run is wanted.
  bool pause_requested() const noexcept { return pause_.load(std::memory_order_acquire); }
  bool stop_requested() const noexcept { return stop_.load(std::memory_order_acquire); }

  // ---- coordinator side ----
  // Waits until all `workers` have arrived, then lets them run; if any found no free CPU, the
  // run stops instead. Returns how many found no free CPU.
  std::size_t start(std::size_t workers) VMS_EXCLUDES(m_);
  // Asks every worker to park and waits until each of the `workers` has parked or exited.
  void pause_all(std::size_t workers) VMS_EXCLUDES(m_);
  // Lets the parked workers go on, or end their threads.
  void release_all(AfterRelease next) VMS_EXCLUDES(m_);

 private:
  std::atomic<bool> pause_{false};
  std::atomic<bool> stop_{false};

  Mutex m_;
  // condition_variable_any waits on the annotated Mutex itself, so the analysis sees every
  // access to the counters below under m_.
  std::condition_variable_any coordinator_cv_;
  std::condition_variable_any workers_cv_;
  unsigned parked_ VMS_GUARDED_BY(m_) = 0;
  unsigned exited_ VMS_GUARDED_BY(m_) = 0;
  unsigned bound_ VMS_GUARDED_BY(m_) = 0;
  unsigned no_cpu_ VMS_GUARDED_BY(m_) = 0;
  std::uint64_t generation_ VMS_GUARDED_BY(m_) = 0;  // bumped by every release_all()
  bool started_ VMS_GUARDED_BY(m_) = false;
};

}  // namespace vmspace::stress::internal
