// Epoch-based reclamation (EBR) behind disable_preempt() and RcuDrop.
//
// A global epoch E only grows. A thread entering its outermost read section publishes the
// epoch it saw (seq_cst store, which also orders its later pointer loads after the publish);
// leaving, it publishes 0. E may advance from e to e+1 only when every thread inside a section
// has published e. A callback retired while E == e runs once E >= e + 2: any reader that could
// still see the object began before the retire, so it published at most e and has blocked the
// second advance until it left its section.
//
// Callbacks run (a) on a retiring thread when the backlog is large, (b) on a background
// reclaimer thread that polls while there is a backlog, and (c) in rcu_synchronize /
// rcu_barrier. Never inside a read section and never under the registry lock.
//
// All state lives in a leaked singleton so that it outlives static destructors and detached
// threads at process exit.
#include <vmspace/assert.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/rcu.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <set>
#include <thread>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "sanitizers.hpp"

namespace vmspace {

namespace {

namespace bi = boost::intrusive;

struct ThreadRecord {
  // 0 outside read sections, else the epoch published at entry.
  std::atomic<std::uint64_t> local_epoch{0};
  bi::list_member_hook<bi::link_mode<bi::safe_link>> hook;
};
using Registry = bi::list<ThreadRecord, bi::member_hook<ThreadRecord, decltype(ThreadRecord::hook),
                                                        &ThreadRecord::hook>>;

struct Callback {
  std::uint64_t epoch;
  void* object;
  void (*deleter)(void*);
};

// Reclaim inline on the retiring thread once this many callbacks wait.
constexpr std::size_t kInlineReclaimThreshold = 256;
constexpr auto kReclaimerPeriod = std::chrono::milliseconds(1);

class Rcu {
 public:
  std::atomic<std::uint64_t> epoch{1};
  std::atomic<std::uint64_t> grace_periods{0};
  std::atomic<std::uint64_t> retired{0};
  std::atomic<std::uint64_t> reclaimed{0};
  std::atomic<std::size_t> pending{0};

  void register_thread(ThreadRecord& r) {
    LockGuard<Mutex> g(registry_lock_);
    registry_.push_back(r);
  }
  void unregister_thread(ThreadRecord& r) {
    LockGuard<Mutex> g(registry_lock_);
    registry_.erase(registry_.iterator_to(r));
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

  void retire(void* object, void (*deleter)(void*)) {
    std::size_t backlog;
    {
      LockGuard<Mutex> g(queue_lock_);
      // Read under the lock so that queue epochs are non-decreasing.
      queue_.push_back(Callback{epoch.load(std::memory_order_seq_cst), object, deleter});
      backlog = queue_.size();
    }
    retired.fetch_add(1, std::memory_order_relaxed);
    pending.store(backlog, std::memory_order_relaxed);
    ensure_reclaimer();
    if (backlog >= kInlineReclaimThreshold && !in_atomic_mode()) {
      try_advance();
      run_due();
    } else if (backlog == 1) {
      // Only the first callback of a backlog wakes the reclaimer: while the backlog is
      // non-empty it polls every kReclaimerPeriod anyway, and a notify per retire costs a
      // futex wake-up and a context switch each time. Taking wake_lock_ orders this notify
      // after the reclaimer's check of `pending` (made under that lock), so the wake-up
      // cannot be lost between the check and the wait.
      { std::lock_guard<std::mutex> g(wake_lock_); }
      wake_.notify_one();
    }
  }

  // Runs every callback whose grace period has passed. Returns how many ran.
  std::size_t run_due() {
    std::vector<Callback> due;
    {
      LockGuard<Mutex> g(queue_lock_);
      const std::uint64_t e = epoch.load(std::memory_order_seq_cst);
      while (!queue_.empty() && queue_.front().epoch + 2 <= e) {
        due.push_back(queue_.front());
        queue_.pop_front();
      }
      pending.store(queue_.size(), std::memory_order_relaxed);
      // Off the queue but not run yet: rcu_barrier must still wait for them.
      if (!due.empty()) running_.insert(due.front().epoch);
    }
    if (due.empty()) return 0;
    for (const Callback& c : due) c.deleter(c.object);
    reclaimed.fetch_add(due.size(), std::memory_order_relaxed);
    {
      LockGuard<Mutex> g(queue_lock_);
      running_.erase(running_.find(due.front().epoch));
    }
    return due.size();
  }

  // True if a callback retired at or before epoch `e` is queued or still running.
  bool has_pending_up_to(std::uint64_t e) {
    LockGuard<Mutex> g(queue_lock_);
    if (!queue_.empty() && queue_.front().epoch <= e) return true;
    return !running_.empty() && *running_.begin() <= e;
  }

 private:
  void ensure_reclaimer() {
    if (reclaimer_started_.load(std::memory_order_acquire)) return;
    std::call_once(reclaimer_once_, [this] {
      std::thread([this] { reclaimer_loop(); }).detach();
      reclaimer_started_.store(true, std::memory_order_release);
    });
  }

  void reclaimer_loop() {
    std::unique_lock<std::mutex> lk(wake_lock_);
    for (;;) {
      if (pending.load(std::memory_order_relaxed) == 0) {
        wake_.wait_for(lk, std::chrono::milliseconds(100));
      } else {
        wake_.wait_for(lk, kReclaimerPeriod);
      }
      lk.unlock();
      if (pending.load(std::memory_order_relaxed) != 0) {
        try_advance();
        run_due();
      }
      lk.lock();
    }
  }

  Mutex registry_lock_;
  Registry registry_ VMS_GUARDED_BY(registry_lock_);
  Mutex queue_lock_;
  std::deque<Callback> queue_ VMS_GUARDED_BY(queue_lock_);
  // The oldest epoch of each batch that run_due took off the queue and is still running
  // (queue epochs are non-decreasing, so a batch's first callback has its oldest epoch).
  std::multiset<std::uint64_t> running_ VMS_GUARDED_BY(queue_lock_);
  std::once_flag reclaimer_once_;
  std::atomic<bool> reclaimer_started_{false};
  std::mutex wake_lock_;
  std::condition_variable wake_;
};

Rcu& rcu() {
  static Rcu* instance = new Rcu();  // leaked on purpose: see the file comment
  return *instance;
}

// Read-section nesting depth of this thread; trivial so the fast path is one TLS access.
thread_local unsigned t_nesting = 0;

struct ThreadRecordOwner {
  ThreadRecord record;
  ThreadRecordOwner() { rcu().register_thread(record); }
  ~ThreadRecordOwner() {
    // A thread that exits inside a read section would block grace periods forever.
    if (record.local_epoch.load(std::memory_order_relaxed) != 0) {
      detail::panic_at(__FILE__, __LINE__, "thread exited inside an RCU read section");
    }
    rcu().unregister_thread(record);
  }
};

ThreadRecord& my_record() {
  thread_local ThreadRecordOwner owner;
  return owner.record;
}

}  // namespace

DisabledPreemptGuard::DisabledPreemptGuard() : cpu_(vmspace::current_cpu()) {
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

void rcu_retire(void* object, void (*deleter)(void*)) { rcu().retire(object, deleter); }

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
    r.run_due();
    if (!r.has_pending_up_to(e)) return;
    r.try_advance();
    std::this_thread::yield();
  }
}

RcuStats rcu_stats() noexcept {
  Rcu& r = rcu();
  return RcuStats{r.grace_periods.load(std::memory_order_relaxed),
                  r.retired.load(std::memory_order_relaxed),
                  r.reclaimed.load(std::memory_order_relaxed)};
}

}  // namespace vmspace
