// CheckerThread: hands segments of records from the coordinator to the Checker on its own thread.
#include "checker_thread.hpp"

#include <utility>

namespace vmspace::stress::internal {

CheckerThread::CheckerThread(std::size_t spaces, unsigned threads, double minimize_seconds)
    : minimize_seconds_(minimize_seconds),
      checker_(spaces, threads),
      thread_([this] { thread_main(); }) {}

CheckerThread::~CheckerThread() { stop(); }

void CheckerThread::stop() {
  {
    LockGuard<Mutex> lk(m_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CheckerThread::thread_main() {
  // Locked by hand rather than with a LockGuard: the lock is dropped around each replay.
  m_.lock();
  for (;;) {
    while (!job_ && !stop_) cv_.wait(m_);
    if (!job_) break;
    Checker::Job job = std::move(*job_);
    job_.reset();
    busy_ = true;
    m_.unlock();
    std::vector<Finding> found;
    const std::size_t records = checker_.run_job(job, minimize_seconds_, found);
    const std::size_t copies = job.copies.size();
    m_.lock();
    records_ += records;
    copies_ += copies;
    for (Finding& f : found) findings_.push_back(std::move(f));
    busy_ = false;
    cv_.notify_all();
  }
  m_.unlock();
}

void CheckerThread::wait_idle() {
  while (job_ || busy_) cv_.wait(m_);
}

CheckerThread::Progress CheckerThread::submit(Checker::Job job, AwaitReplay await) {
  Progress out;
  LockGuard<Mutex> lk(m_);
  // One segment in flight at most: if the checker is still busy, the coordinator (and with it
  // the parked workers) waits here.
  wait_idle();
  job_.emplace(std::move(job));
  cv_.notify_all();
  if (await == AwaitReplay::Yes) wait_idle();
  out.findings = std::move(findings_);
  findings_.clear();
  out.records_replayed = records_;
  out.copies_checked = copies_;
  return out;
}

}  // namespace vmspace::stress::internal
