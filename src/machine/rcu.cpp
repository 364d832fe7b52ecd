// Epoch-based reclamation (EBR) behind disable_preempt() and RcuDrop.
//
// A global epoch E only grows. A thread entering its outermost read section publishes the
// epoch it saw (seq_cst store, which also orders its later pointer loads after the publish);
// leaving, it publishes 0. E may advance from e to e+1 only when every thread inside a section
// has published e. A callback retired while E == e runs once E >= e + 2: any reader that could
// still see the object began before the retire, so it published at most e and has blocked the
// second advance until it left its section.
//
// Each registered thread queues its retired callbacks in its own record, under a lock that
// only reclaimers ever contend for: a single shared queue made every retire take one global
// mutex, and two threads unmapping in disjoint parts of a page table spent most of their time
// waiting for each other in the kernel (the 2-thread map+unmap benchmark ran slower than one
// thread). Threads without a record (exiting ones) and the queues of exited threads go to a
// shared orphan queue.
//
// Callbacks run (a) on a retiring thread when its own backlog is large (its own callbacks
// only, so frees stay mostly on the allocating thread), (b) on a background reclaimer thread
// that polls while there is a backlog, and (c) in rcu_synchronize / rcu_barrier. Never inside
// a read section and never under an RCU lock.
//
// All state lives in a leaked singleton so that it outlives static destructors and detached
// threads at process exit.
#include <vmspace/assert.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/rcu.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "machine/cpu_local.hpp"
#include "base/sanitizers.hpp"
#include "base/single_writer.hpp"

namespace vmspace {

namespace {

namespace bi = boost::intrusive;

struct Callback {
  std::uint64_t epoch;
  void* object;
  void (*deleter)(void*);
};

struct ThreadRecord {
  // 0 outside read sections, else the epoch published at entry.
  std::atomic<std::uint64_t> local_epoch{0};
  bi::list_member_hook<bi::link_mode<bi::safe_link>> hook;
  // Callbacks this thread retired, oldest first. Only the owner pushes (reading the epoch
  // under the lock), so epochs are non-decreasing and the due ones form a prefix.
  SpinLock queue_lock;
  std::deque<Callback> queue VMS_GUARDED_BY(queue_lock);
  // Callbacks this thread retired so far; written only by the owner.
  std::atomic<std::uint64_t> retired{0};
};
using Registry =
    bi::list<ThreadRecord,
             bi::member_hook<ThreadRecord, decltype(ThreadRecord::hook), &ThreadRecord::hook>>;

// Which queues run_due drains.
enum class ReclaimScope : std::uint8_t { Own, All };

// Reclaim inline on the retiring thread once this many callbacks wait.
constexpr std::size_t kInlineReclaimThreshold = 256;
constexpr auto kReclaimerPeriod = std::chrono::milliseconds(1);

class Rcu {
 public:
  std::atomic<std::uint64_t> epoch{1};
  std::atomic<std::uint64_t> grace_periods{0};
  std::atomic<std::uint64_t> reclaimed{0};

  void register_thread(ThreadRecord& r) {
    LockGuard<Mutex> g(registry_lock_);
    registry_.push_back(r);
  }
  // The record's pending callbacks move to the orphan queue (they keep their epochs; the
  // orphan queue is kept sorted, so its due callbacks stay a prefix).
  void unregister_thread(ThreadRecord& r) {
    LockGuard<Mutex> g(registry_lock_);
    registry_.erase(registry_.iterator_to(r));
    LockGuard<Mutex> c(central_lock_);
    retired_gone_ += r.retired.load(std::memory_order_relaxed);
    LockGuard<SpinLock> q(r.queue_lock);
    if (r.queue.empty()) return;
    const auto mid = static_cast<std::ptrdiff_t>(orphans_.size());
    orphans_.insert(orphans_.end(), r.queue.begin(), r.queue.end());
    std::inplace_merge(orphans_.begin(), orphans_.begin() + mid, orphans_.end(),
                       [](const Callback& a, const Callback& b) { return a.epoch < b.epoch; });
    r.queue.clear();
  }

  // Advances the epoch if every reader has seen the current one. Returns the epoch after.
  std::uint64_t try_advance() {
    LockGuard<Mutex> g(registry_lock_);
    // Pairs with the reader-side barrier: either we see a reader's published epoch, or the
    // reader sees every unlink that happened before this scan. (ThreadSanitizer does not model
    // fences and gcc refuses them under -fsanitize=thread; the seq_cst operations around keep
    // x86 ordering there.)
#ifndef VMS_TSAN
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    std::uint64_t e = epoch.load(std::memory_order_seq_cst);
    for (ThreadRecord& r : registry_) {
      std::uint64_t l = r.local_epoch.load(std::memory_order_seq_cst);
      if (l != 0 && l != e) return e;
    }
    if (epoch.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst)) {
      grace_periods.fetch_add(1, std::memory_order_relaxed);
      return e + 1;
    }
    return e;
  }

  // `self` is the caller's record, or nullptr once the thread's record is gone.
  void retire(ThreadRecord* self, void* object, void (*deleter)(void*)) {
    std::size_t backlog;
    if (self != nullptr) {
      LockGuard<SpinLock> g(self->queue_lock);
      self->queue.push_back(Callback{epoch.load(std::memory_order_seq_cst), object, deleter});
      backlog = self->queue.size();
      internal::single_writer_add(self->retired, 1);
    } else {
      LockGuard<Mutex> g(central_lock_);
      // Read under the lock so that the orphan queue's epochs stay non-decreasing.
      orphans_.push_back(Callback{epoch.load(std::memory_order_seq_cst), object, deleter});
      backlog = orphans_.size();
      ++retired_gone_;
    }
    ensure_reclaimer();
    if (backlog >= kInlineReclaimThreshold && !in_atomic_mode()) {
      try_advance();
      run_due(self != nullptr ? ReclaimScope::Own : ReclaimScope::All, self);
    } else if (backlog == 1) {
      // Only a queue that was empty wakes the reclaimer: while any queue holds callbacks it
      // polls every kReclaimerPeriod anyway, and a notify per retire would cost a futex
      // wake-up and a context switch each time. The flag is set under wake_lock_ after the
      // push, and the reclaimer clears it under that lock before it scans, so either its scan
      // sees this callback or its next wait sees the flag.
      {
        std::lock_guard<std::mutex> g(wake_lock_);
        wake_requested_ = true;
      }
      wake_.notify_one();
    }
  }

  // Runs every callback in the scope whose grace period has passed and returns how many are
  // still queued in the queues it scanned. Holds reclaim_lock_
  // throughout, so fork() never copies a half-run batch (see fork_prepare); a callback may
  // retire objects and reclaim inline, so only the outermost call on a thread takes it (a
  // recursive mutex would do, but glibc refuses to unlock one in a forked child, whose thread
  // id differs from the locker's).
  std::size_t run_due(ReclaimScope scope, ThreadRecord* self = nullptr) {
    std::unique_lock<std::mutex> reclaiming(reclaim_lock_, std::defer_lock);
    if (t_reclaim_depth == 0) reclaiming.lock();
    ++t_reclaim_depth;
    struct Leave {
      ~Leave() { --t_reclaim_depth; }
    } leave;
    std::size_t remaining = 0;
    std::vector<Callback> due;
    const std::uint64_t oldest = scope == ReclaimScope::All ? take_all_due(due, remaining)
                                                            : take_own_due(self, due, remaining);
    if (due.empty()) return remaining;
    for (const Callback& c : due) c.deleter(c.object);
    reclaimed.fetch_add(due.size(), std::memory_order_relaxed);
    {
      LockGuard<Mutex> c(central_lock_);
      running_.erase(running_.find(oldest));
    }
    return remaining;
  }

  // Moves the due callbacks of every queue into `due` and records the batch in running_.
  // central_lock_ is held from the first queue to the running_ entry, so has_pending_up_to
  // (which takes it too) never sees a callback in neither place. Returns the batch's oldest
  // epoch.
  std::uint64_t take_all_due(std::vector<Callback>& due, std::size_t& remaining) {
    LockGuard<Mutex> g(registry_lock_);
    LockGuard<Mutex> c(central_lock_);
    const std::uint64_t e = epoch.load(std::memory_order_seq_cst);
    for (ThreadRecord& r : registry_) {
      LockGuard<SpinLock> q(r.queue_lock);
      take_due(r.queue, e, due, remaining);
    }
    take_due(orphans_, e, due, remaining);
    return record_running(due);
  }
  // The same for the caller's own queue (if it has a record).
  std::uint64_t take_own_due(ThreadRecord* self, std::vector<Callback>& due,
                             std::size_t& remaining) {
    if (self == nullptr) return 0;
    LockGuard<Mutex> c(central_lock_);
    LockGuard<SpinLock> q(self->queue_lock);
    take_due(self->queue, epoch.load(std::memory_order_seq_cst), due, remaining);
    return record_running(due);
  }
  static void take_due(std::deque<Callback>& q, std::uint64_t e, std::vector<Callback>& due,
                       std::size_t& remaining) {
    while (!q.empty() && q.front().epoch + 2 <= e) {
      due.push_back(q.front());
      q.pop_front();
    }
    remaining += q.size();
  }
  std::uint64_t record_running(const std::vector<Callback>& due) VMS_REQUIRES(central_lock_) {
    if (due.empty()) return 0;
    const std::uint64_t oldest =
        std::min_element(due.begin(), due.end(), [](const Callback& a, const Callback& b) {
          return a.epoch < b.epoch;
        })->epoch;
    running_.insert(oldest);
    return oldest;
  }

  // True if a callback retired at or before epoch `e` is queued or still running.
  bool has_pending_up_to(std::uint64_t e) {
    LockGuard<Mutex> g(registry_lock_);
    LockGuard<Mutex> c(central_lock_);
    if (!running_.empty() && *running_.begin() <= e) return true;
    if (!orphans_.empty() && orphans_.front().epoch <= e) return true;
    for (ThreadRecord& r : registry_) {
      LockGuard<SpinLock> q(r.queue_lock);
      if (!r.queue.empty() && r.queue.front().epoch <= e) return true;
    }
    return false;
  }

  std::uint64_t retired() {
    LockGuard<Mutex> g(registry_lock_);
    std::uint64_t n = 0;
    for (ThreadRecord& r : registry_) n += r.retired.load(std::memory_order_relaxed);
    LockGuard<Mutex> c(central_lock_);
    return n + retired_gone_;
  }

  // fork() copies memory but only the calling thread. Around it we hold every RCU lock (so
  // none is copied held by a thread the child lacks) and reclaim_lock_ (so no batch is copied
  // half-run, which would make rcu_barrier in the child wait forever). Lock order: reclaim,
  // registry, central, the records' queue locks; wake and start nest nothing.
  void fork_prepare() VMS_NO_THREAD_SAFETY_ANALYSIS {
    reclaim_lock_.lock();
    registry_lock_.lock();
    central_lock_.lock();
    for (ThreadRecord& r : registry_) r.queue_lock.lock();
    wake_lock_.lock();
    start_lock_.lock();
  }
  void fork_release() VMS_NO_THREAD_SAFETY_ANALYSIS {
    start_lock_.unlock();
    wake_lock_.unlock();
    for (ThreadRecord& r : registry_) r.queue_lock.unlock();
    central_lock_.unlock();
    registry_lock_.unlock();
    reclaim_lock_.unlock();
  }
  // In the child, after fork_release: only the forking thread exists. The other threads'
  // records stay registered (their queued callbacks still run) but can never be in a read
  // section again, and the reclaimer thread is gone, so the next retire starts a new one.
  void fork_child(const ThreadRecord* self) {
    {
      LockGuard<Mutex> g(registry_lock_);
      for (ThreadRecord& r : registry_) {
        if (&r != self) r.local_epoch.store(0, std::memory_order_relaxed);
      }
    }
    std::lock_guard<std::mutex> g(start_lock_);
    reclaimer_started_.store(false, std::memory_order_release);
  }

 private:
  void ensure_reclaimer() {
    if (reclaimer_started_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> g(start_lock_);
    if (reclaimer_started_.load(std::memory_order_relaxed)) return;
    std::thread([this] { reclaimer_loop(); }).detach();
    reclaimer_started_.store(true, std::memory_order_release);
  }

  void reclaimer_loop() {
    std::unique_lock<std::mutex> lk(wake_lock_);
    std::size_t remaining = 0;
    for (;;) {
      if (!wake_requested_) {
        // With a backlog, poll so that grace periods keep advancing; without one, the
        // long timeout is only a safety net.
        wake_.wait_for(lk, remaining != 0 ? kReclaimerPeriod : std::chrono::milliseconds(100));
      }
      wake_requested_ = false;
      lk.unlock();
      try_advance();
      remaining = run_due(ReclaimScope::All);
      lk.lock();
    }
  }

  Mutex registry_lock_;
  Registry registry_ VMS_GUARDED_BY(registry_lock_);
  // Guards the orphan queue, the running batches and the exited threads' retire count.
  Mutex central_lock_;
  std::deque<Callback> orphans_ VMS_GUARDED_BY(central_lock_);
  // The oldest epoch of each batch that run_due took off the queues and is still running.
  std::multiset<std::uint64_t> running_ VMS_GUARDED_BY(central_lock_);
  std::uint64_t retired_gone_ VMS_GUARDED_BY(central_lock_) = 0;
  std::mutex reclaim_lock_;
  static thread_local unsigned t_reclaim_depth;  // run_due nesting on this thread
  std::mutex start_lock_;                        // serialises starting the reclaimer thread
  std::atomic<bool> reclaimer_started_{false};
  std::mutex wake_lock_;
  bool wake_requested_ = false;  // guarded by wake_lock_
  std::condition_variable wake_;
};

thread_local constinit unsigned Rcu::t_reclaim_depth = 0;

Rcu& rcu() {
  static Rcu* instance = new Rcu();  // leaked on purpose: see the file comment
  return *instance;
}

// Read-section nesting depth of this thread; trivial so the fast path is one TLS access.
thread_local unsigned t_nesting = 0;

// The record, registered on first use. The owner has a destructor, so each access to it goes
// through a TLS init check; the hot path reads this plain pointer instead.
thread_local constinit ThreadRecord* t_record = nullptr;
// Set once the record is destroyed (thread exit): later retires on this thread (from other
// thread-local destructors) go to the orphan queue instead of touching the dead record.
thread_local constinit bool t_record_gone = false;

struct ThreadRecordOwner {
  ThreadRecord record;
  ThreadRecordOwner() { rcu().register_thread(record); }
  ~ThreadRecordOwner() {
    // A thread that exits inside a read section would block grace periods forever.
    if (record.local_epoch.load(std::memory_order_relaxed) != 0) {
      internal::panic_at(__FILE__, __LINE__, "thread exited inside an RCU read section");
    }
    rcu().unregister_thread(record);
    t_record = nullptr;
    t_record_gone = true;
  }
};

[[gnu::noinline]] ThreadRecord& register_my_record() {
  thread_local ThreadRecordOwner owner;
  t_record = &owner.record;
  return owner.record;
}

ThreadRecord& my_record() {
  ThreadRecord* r = t_record;
  return r != nullptr ? *r : register_my_record();
}

}  // namespace

DisabledPreemptGuard::DisabledPreemptGuard() : cpu_(internal::bound_cpu()) {
  if (t_nesting++ == 0) {
    ThreadRecord& r = my_record();
    // seq_cst store: the full fence orders this publish before every later pointer load.
    // The publish must be ordered before this section's later loads (store-load order). An
    // RMW is a full barrier on x86; the C++ model asks for a seq_cst fence pairing with the one
    // in try_advance, which other architectures get explicitly.
    r.local_epoch.exchange(rcu().epoch.load(std::memory_order_seq_cst), std::memory_order_seq_cst);
#if !defined(__x86_64__) && !defined(__i386__) && !defined(VMS_TSAN)
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  }
}

DisabledPreemptGuard::~DisabledPreemptGuard() {
  VMS_DEBUG_ASSERT(t_nesting > 0, "unbalanced DisabledPreemptGuard");
  if (--t_nesting == 0) my_record().local_epoch.store(0, std::memory_order_release);
}

bool in_atomic_mode() noexcept { return t_nesting != 0; }

void rcu_retire(void* object, void (*deleter)(void*)) {
  ThreadRecord* self = t_record;
  if (self == nullptr && !t_record_gone) self = &register_my_record();
  rcu().retire(self, object, deleter);
}

void rcu_synchronize() {
  VMS_ASSERT(!in_atomic_mode(), "rcu_synchronize inside a read section would wait for itself");
  Rcu& r = rcu();
  const std::uint64_t target = r.epoch.load(std::memory_order_seq_cst) + 2;
  while (r.try_advance() < target) std::this_thread::yield();
}

void rcu_barrier() {
  VMS_ASSERT(!in_atomic_mode(), "rcu_barrier inside a read section would wait for itself");
  Rcu& r = rcu();
  const std::uint64_t e = r.epoch.load(std::memory_order_seq_cst);
  for (;;) {
    r.run_due(ReclaimScope::All);
    if (!r.has_pending_up_to(e)) return;
    r.try_advance();
    std::this_thread::yield();
  }
}

RcuStats rcu_stats() noexcept {
  Rcu& r = rcu();
  return RcuStats{r.grace_periods.load(std::memory_order_relaxed), r.retired(),
                  r.reclaimed.load(std::memory_order_relaxed)};
}

namespace internal {

void rcu_fork_prepare() { rcu().fork_prepare(); }
void rcu_fork_release() { rcu().fork_release(); }
void rcu_fork_child() { rcu().fork_child(t_record); }

}  // namespace internal

}  // namespace vmspace
