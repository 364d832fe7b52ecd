// WorkerBarrier: the start signal and the parking of workers at quiescent points.
#include "worker_barrier.hpp"

namespace vmspace::stress::internal {

void WorkerBarrier::arrive(WorkerStart start) {
  LockGuard<Mutex> lk(m_);
  if (start == WorkerStart::Bound) {
    ++bound_;
  } else {
    ++no_cpu_;
  }
  coordinator_cv_.notify_all();
  while (!started_ && !stop_.load(std::memory_order_relaxed)) workers_cv_.wait(m_);
}

void WorkerBarrier::exited() {
  LockGuard<Mutex> lk(m_);
  ++exited_;
  coordinator_cv_.notify_all();
}

void WorkerBarrier::park() {
  LockGuard<Mutex> lk(m_);
  ++parked_;
  coordinator_cv_.notify_all();
  const std::uint64_t generation = generation_;
  while (generation_ == generation) workers_cv_.wait(m_);
}

std::size_t WorkerBarrier::start(std::size_t workers) {
  LockGuard<Mutex> lk(m_);
  while (bound_ + no_cpu_ != workers) coordinator_cv_.wait(m_);
  if (no_cpu_ != 0) stop_.store(true, std::memory_order_release);
  started_ = true;
  workers_cv_.notify_all();
  return no_cpu_;
}

void WorkerBarrier::pause_all(std::size_t workers) {
  pause_.store(true, std::memory_order_release);
  LockGuard<Mutex> lk(m_);
  while (parked_ + exited_ < workers) coordinator_cv_.wait(m_);
}

void WorkerBarrier::release_all(AfterRelease next) {
  LockGuard<Mutex> lk(m_);
  parked_ = 0;
  if (next == AfterRelease::Stop) stop_.store(true, std::memory_order_release);
  pause_.store(false, std::memory_order_release);
  ++generation_;
  workers_cv_.notify_all();
}

}  // namespace vmspace::stress::internal
