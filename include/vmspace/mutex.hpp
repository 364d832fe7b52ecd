// Lock types with clang thread-safety annotations (libcamera's MutexLocker pattern).
#pragma once

#include <atomic>
#include <mutex>

#include <vmspace/thread_annotations.hpp>

namespace vmspace {

// A std::mutex the thread-safety analysis understands.
class VMS_CAPABILITY("mutex") Mutex {
 public:
  // Blocks until the mutex is free, then takes it.
  void lock() VMS_ACQUIRE() { m_.lock(); }
  // Releases the mutex. Precondition: the calling thread holds it.
  void unlock() VMS_RELEASE() { m_.unlock(); }
  // Takes the mutex if it is free; true on success. Never blocks.
  bool try_lock() VMS_TRY_ACQUIRE(true) { return m_.try_lock(); }
  // The underlying std::mutex, for std::condition_variable (invisible to the analysis).
  std::mutex& native() noexcept { return m_; }

 private:
  std::mutex m_;
};

// A test-and-test-and-set spin lock for very short critical sections that are almost never
// contended (per-CPU caches). Yields to the OS after a short spin so that more threads than
// cores cannot livelock.
class VMS_CAPABILITY("spinlock") SpinLock {
 public:
  // Spins, then yields, until the lock is free, then takes it.
  void lock() VMS_ACQUIRE();
  // Releases the lock. Precondition: the calling thread holds it.
  void unlock() VMS_RELEASE() { locked_.store(false, std::memory_order_release); }
  // Takes the lock if it is free; true on success. Never spins.
  bool try_lock() VMS_TRY_ACQUIRE(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }

 private:
  std::atomic<bool> locked_{false};
};

// RAII holder for Mutex or SpinLock.
template <class L>
class VMS_SCOPED_CAPABILITY LockGuard {
 public:
  // Takes `l` until the guard is destroyed.
  explicit LockGuard(L& l) VMS_ACQUIRE(l) : l_(l) { l_.lock(); }
  ~LockGuard() VMS_RELEASE() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  L& l_;
};

}  // namespace vmspace
