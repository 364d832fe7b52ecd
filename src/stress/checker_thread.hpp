// Internal: CheckerThread, which replays each segment of records on the model (Checker) while
// the workers already run the next segment. One segment is in flight at most.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include <vmspace/mutex.hpp>
#include <vmspace/thread_annotations.hpp>

#include "checker.hpp"

namespace vmspace::stress::internal {

// Whether submit() returns as soon as the checker has taken the segment, or only once it has
// been replayed (the last segment of a run, whose findings must be in the report).
enum class AwaitReplay : std::uint8_t { No, Yes };

class CheckerThread {
 public:
  // Starts the thread. `minimize_seconds` bounds each shortest-history search.
  CheckerThread(std::size_t spaces, unsigned threads, double minimize_seconds);
  ~CheckerThread();
  CheckerThread(const CheckerThread&) = delete;
  CheckerThread& operator=(const CheckerThread&) = delete;

  struct Progress {
    std::vector<Finding> findings;       // found since the previous submit()
    std::uint64_t records_replayed = 0;  // totals since the start
    std::uint64_t copies_checked = 0;
  };
  // Waits until the previous segment is replayed, hands `job` over and returns what the checker
  // has found so far.
  Progress submit(Checker::Job job, AwaitReplay await) VMS_EXCLUDES(m_);
  // Ends and joins the thread (a segment handed over is replayed first). Idempotent.
  void stop() VMS_EXCLUDES(m_);

 private:
  void thread_main() VMS_EXCLUDES(m_);
  void wait_idle() VMS_REQUIRES(m_);

  const double minimize_seconds_;
  Checker checker_;  // used by the thread alone

  Mutex m_;
  std::condition_variable_any cv_;
  std::optional<Checker::Job> job_ VMS_GUARDED_BY(m_);
  bool busy_ VMS_GUARDED_BY(m_) = false;
  bool stop_ VMS_GUARDED_BY(m_) = false;
  std::vector<Finding> findings_ VMS_GUARDED_BY(m_);
  std::uint64_t records_ VMS_GUARDED_BY(m_) = 0;
  std::uint64_t copies_ VMS_GUARDED_BY(m_) = 0;

  std::thread thread_;  // last: it starts once everything above is constructed
};

}  // namespace vmspace::stress::internal
