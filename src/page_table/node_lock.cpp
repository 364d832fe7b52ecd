// The page-table node lock (a futex-backed word owned by a thread token) and the per-thread
// count of cursors held per table that keeps nested cursor creation from blocking.
#include <vmspace/assert.hpp>
#include <vmspace/internal/node_lock.hpp>

#include <array>
#include <atomic>

#include <boost/atomic/atomic_ref.hpp>

#include "base/cpu_relax.hpp"

namespace vmspace::internal {

namespace {

constexpr std::uint32_t kWaiters = 1;
constexpr unsigned kSpinsBeforeSleep = 64;

std::atomic<std::uint32_t> g_next_token{1};

struct HeldCursors {
  // Few threads hold cursors on more than a couple of tables at once; a tiny array suffices.
  static constexpr std::size_t kSlots = kMaxTablesWithCursors;
  std::array<Paddr, kSlots> root{};
  std::array<std::uint32_t, kSlots> count{};
  // Slots [used, kSlots) have never been used (count 0), so scans stop at `used`.
  std::size_t used = 0;
};
thread_local HeldCursors t_held;

// This thread's HeldCursors. In a shared library every access to a thread_local is a
// __tls_get_addr call, and GCC 12 recomputes the address at each use rather than keeping it in
// a register: reading t_held directly in the scans below made one call per slot. Resolving it
// in a separate function makes it one call per scan.
[[gnu::noinline]] HeldCursors& held_cursors() noexcept { return t_held; }

}  // namespace

std::uint32_t thread_token() noexcept {
  thread_local const std::uint32_t token = [] {
    std::uint32_t t = g_next_token.fetch_add(1, std::memory_order_relaxed);
    VMS_ASSERT(t < (1u << 31), "page-table lock owner tokens exhausted");
    return t;
  }();
  return token;
}

LockResult node_lock(std::uint32_t& word, LockWait wait) noexcept {
  boost::atomic_ref<std::uint32_t> w(word);
  const std::uint32_t mine = locked_by_me();
  std::uint32_t cur = 0;
  if (w.compare_exchange_strong(cur, mine, boost::memory_order_acquire,
                                boost::memory_order_relaxed)) {
    return LockResult::Acquired;
  }
  if ((cur & ~kWaiters) == mine) return LockResult::WouldDeadlock;
  if (wait == LockWait::Try) return LockResult::WouldBlock;
  unsigned spins = 0;
  for (;;) {
    if (cur == 0) {
      // Keep the waiters bit when taking over a contended lock: another sleeper may remain.
      if (w.compare_exchange_weak(cur, mine, boost::memory_order_acquire,
                                  boost::memory_order_relaxed)) {
        return LockResult::Acquired;
      }
      continue;
    }
    if (spins < kSpinsBeforeSleep) {
      ++spins;
      cpu_relax();
      cur = w.load(boost::memory_order_relaxed);
      continue;
    }
    if ((cur & kWaiters) == 0) {
      if (!w.compare_exchange_weak(cur, cur | kWaiters, boost::memory_order_relaxed,
                                   boost::memory_order_relaxed)) {
        continue;
      }
      cur |= kWaiters;
    }
    w.wait(cur, boost::memory_order_relaxed);
    cur = w.load(boost::memory_order_relaxed);
    // After a wake-up, take the lock with the waiters bit set: we cannot know whether other
    // sleepers remain, and a spurious notify is cheap.
    while (cur == 0) {
      if (w.compare_exchange_weak(cur, mine | kWaiters, boost::memory_order_acquire,
                                  boost::memory_order_relaxed)) {
        return LockResult::Acquired;
      }
    }
    spins = 0;
  }
}

void node_unlock(std::uint32_t& word) noexcept {
  boost::atomic_ref<std::uint32_t> w(word);
  const std::uint32_t prev = w.exchange(0, boost::memory_order_release);
  VMS_DEBUG_ASSERT((prev & ~kWaiters) == locked_by_me(),
                   "unlocking a page-table node held by another thread (word {:#x})", prev);
  if (prev & kWaiters) w.notify_all();
}

bool node_locked_by_me(std::uint32_t& word) noexcept {
  boost::atomic_ref<std::uint32_t> w(word);
  return (w.load(boost::memory_order_relaxed) & ~kWaiters) == locked_by_me();
}

std::uint32_t cursors_held(Paddr root) noexcept {
  const HeldCursors& held = held_cursors();
  for (std::size_t i = 0; i < held.used; ++i) {
    if (held.count[i] != 0 && held.root[i] == root) return held.count[i];
  }
  return 0;
}

bool note_cursor_acquired(Paddr root) noexcept {
  HeldCursors& held = held_cursors();
  std::size_t free_slot = held.used;
  for (std::size_t i = 0; i < held.used; ++i) {
    if (held.count[i] != 0 && held.root[i] == root) {
      ++held.count[i];
      return true;
    }
    if (held.count[i] == 0 && free_slot == held.used) free_slot = i;
  }
  if (free_slot == HeldCursors::kSlots) return false;
  if (free_slot == held.used) ++held.used;
  held.root[free_slot] = root;
  held.count[free_slot] = 1;
  return true;
}

void note_cursor_released(Paddr root) noexcept {
  HeldCursors& held = held_cursors();
  for (std::size_t i = 0; i < held.used; ++i) {
    if (held.count[i] != 0 && held.root[i] == root) {
      --held.count[i];
      return;
    }
  }
  VMS_PANIC("releasing a cursor this thread does not hold (root {:#x})", root);
}

}  // namespace vmspace::internal
