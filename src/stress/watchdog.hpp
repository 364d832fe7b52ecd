// Internal: Watchdog, a thread that samples the run's progress every 100 ms and calls a stall
// handler once nothing has progressed for a given time (the engine reports a deadlock there).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <thread>

#include <vmspace/mutex.hpp>
#include <vmspace/thread_annotations.hpp>

namespace vmspace::stress::internal {

class Watchdog {
 public:
  // What counts as progress: a new ticket (an operation completed), a new checkpoint, or a
  // checkpoint under way (workers park during it, so tickets stand still legitimately).
  struct Progress {
    std::uint64_t tickets = 0;
    std::uint64_t checkpoints = 0;
    bool checking = false;
  };
  using Probe = std::function<Progress()>;
  // Called on the watchdog thread with how long nothing progressed; the engine's handler ends
  // the process (the stuck workers cannot be joined).
  using OnStall = std::function<void(double stalled_seconds)>;

  // Starts the thread.
  Watchdog(double limit_seconds, Probe probe, OnStall on_stall);
  // Stops and joins the thread.
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void thread_main() VMS_EXCLUDES(m_);

  const double limit_seconds_;
  const Probe probe_;
  const OnStall on_stall_;
  Mutex m_;
  std::condition_variable_any cv_;
  bool stop_ VMS_GUARDED_BY(m_) = false;
  std::thread thread_;  // last: it starts once everything above is constructed
};

}  // namespace vmspace::stress::internal
