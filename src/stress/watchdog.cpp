// Watchdog: the stall detector behind the engine's deadlock report.
#include "watchdog.hpp"

#include <chrono>
#include <utility>

namespace vmspace::stress::internal {

Watchdog::Watchdog(double limit_seconds, Probe probe, OnStall on_stall)
    : limit_seconds_(limit_seconds),
      probe_(std::move(probe)),
      on_stall_(std::move(on_stall)),
      thread_([this] { thread_main(); }) {}

Watchdog::~Watchdog() {
  {
    LockGuard<Mutex> lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watchdog::thread_main() {
  Progress last = probe_();
  auto last_change = std::chrono::steady_clock::now();
  LockGuard<Mutex> lk(m_);
  while (!stop_) {
    cv_.wait_for(m_, std::chrono::milliseconds(100));
    if (stop_) break;
    const Progress now = probe_();
    const auto t = std::chrono::steady_clock::now();
    if (now.tickets != last.tickets || now.checkpoints != last.checkpoints || now.checking) {
      last = now;
      last_change = t;
      continue;
    }
    const double stalled = std::chrono::duration<double>(t - last_change).count();
    if (stalled >= limit_seconds_) on_stall_(stalled);
  }
}

}  // namespace vmspace::stress::internal
