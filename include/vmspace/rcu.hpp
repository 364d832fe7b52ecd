// Atomic mode and RCU: read-side sections and deferred destruction.
//
// disable_preempt() returns the RAII atomic-mode guard that cursor creation takes, as in OSTD.
// While any such guard is alive on a thread, that thread is inside an RCU read-side section:
// an object retired with RcuDrop (or rcu_retire) after the section began is not destroyed
// until the section ends. Guards nest; the section ends when the outermost guard dies. A guard
// also pins the thread's CPU: the thread's CpuBinding may not end while a guard lives.
//
// Implementation: hand-written epoch-based reclamation over C++ atomics, not liburcu: liburcu 0.13
// hides its memory ordering from ThreadSanitizer (a reader/reclaimer program drew false data-race
// reports), and the stress runs must be TSan-clean. Threads register lazily on their first read
// section and deregister when they exit, so reclamation keeps making progress as threads come and
// go; a thread outside a read section never delays a grace period.
//
// Rules:
// - A read section must be short-lived relative to the program (it may block, e.g. on a
//   page-table node lock, but every blocked second delays reclamation by a second).
// - Never wait for a grace period inside a read section (rcu_synchronize and rcu_barrier
//   abort if called in atomic mode: they would wait for themselves).
#pragma once

#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include <vmspace/cpu.hpp>

namespace vmspace {

// RAII atomic-mode guard: an RCU read-side section that also pins the current CPU.
// Not copyable or movable: it lives in one scope on one thread.
class [[nodiscard]] DisabledPreemptGuard {
 public:
  DisabledPreemptGuard();
  ~DisabledPreemptGuard();
  DisabledPreemptGuard(const DisabledPreemptGuard&) = delete;
  DisabledPreemptGuard& operator=(const DisabledPreemptGuard&) = delete;

  // The CPU pinned by this guard, or nullopt when the thread is unbound (kernel context).
  std::optional<CpuId> current_cpu() const noexcept { return cpu_; }

 private:
  std::optional<CpuId> cpu_;
};

// Enters atomic mode. Usage: `auto guard = disable_preempt();` (guaranteed copy elision).
inline DisabledPreemptGuard disable_preempt() { return DisabledPreemptGuard(); }

// True while the calling thread holds at least one DisabledPreemptGuard.
bool in_atomic_mode() noexcept;

// Schedules `deleter(object)` to run after every read section that was active at the time of
// this call has ended. May run the callback (and other due callbacks) on the calling thread,
// now or later, or on another thread; never inside a read section that could observe
// `object`. Thread-safe. The callback must not block on a grace period.
void rcu_retire(void* object, void (*deleter)(void*));

// Blocks until a full grace period has elapsed (every read section active at the call has
// ended). Aborts if called in atomic mode.
void rcu_synchronize();

// Blocks until every callback retired before this call has run. Aborts in atomic mode.
void rcu_barrier();

// Counters for tests and the demo. Values are approximate under concurrency.
struct RcuStats {
  std::uint64_t grace_periods = 0;  // epoch advances so far
  std::uint64_t retired = 0;        // callbacks registered so far
  std::uint64_t reclaimed = 0;      // callbacks run so far
};
// A snapshot of the counters above.
RcuStats rcu_stats() noexcept;

// Owns a T whose destructor is deferred until a grace period has passed (OSTD's RcuDrop).
//
// Destroying an RcuDrop hands the value to rcu_retire; moving from it leaves an empty RcuDrop
// whose destruction does nothing. Use it for anything a lock-free reader may still be looking
// at: detached page-table nodes, frames removed from a page table.
template <class T>
requires std::is_nothrow_move_constructible_v<T>
class RcuDrop {
 public:
  // Takes `value`; it will be destroyed a grace period after this RcuDrop is.
  explicit RcuDrop(T value) : value_(std::move(value)) {}
  // Takes over `o`'s value; `o` becomes empty.
  RcuDrop(RcuDrop&& o) noexcept : value_(std::move(o.value_)) { o.value_.reset(); }
  // Retires the current value (if any), then takes over `o`'s; `o` becomes empty.
  RcuDrop& operator=(RcuDrop&& o) noexcept {
    if (this != &o) {
      retire();
      // value_ is empty now: construct in place, so T needs no move assignment (the class
      // only requires a nothrow move constructor).
      if (o.value_) value_.emplace(std::move(*o.value_));
      o.value_.reset();
    }
    return *this;
  }
  RcuDrop(const RcuDrop&) = delete;
  RcuDrop& operator=(const RcuDrop&) = delete;
  ~RcuDrop() { retire(); }

  // False after a move or take_unchecked().
  bool has_value() const noexcept { return value_.has_value(); }
  // The value. Precondition: has_value().
  T& operator*() noexcept { return *value_; }
  // The value. Precondition: has_value().
  const T& operator*() const noexcept { return *value_; }
  // Member access to the value. Precondition: has_value().
  T* operator->() noexcept { return &*value_; }
  // Member access to the value. Precondition: has_value().
  const T* operator->() const noexcept { return &*value_; }

  // Takes the value back out, cancelling the deferred destruction. Only for callers that can
  // prove no reader can observe the value any more (e.g. it was never published).
  T take_unchecked() && {
    T v = std::move(*value_);
    value_.reset();
    return v;
  }

 private:
  void retire() noexcept {
    if (!value_) return;
    auto* boxed = new T(std::move(*value_));
    value_.reset();
    rcu_retire(boxed, [](void* p) { delete static_cast<T*>(p); });
  }

  std::optional<T> value_;
};

}  // namespace vmspace
