// The hand-written RCU (epoch-based reclamation): atomic-mode guards as read sections,
// deferred destruction with RcuDrop / rcu_retire, rcu_synchronize, rcu_barrier and the
// background reclaimer (rcu.hpp; OSTD `ostd/src/sync/rcu/`, `RcuDrop` and `RcuMonitor`).
//
// Timing: tests that show something does NOT happen while a reader is inside its section
// watch for a bounded window (kWindow) in which the background reclaimer tries to advance
// the epoch hundreds of times; correct code passes whatever the window. Waits for something
// that must happen are bounded by generous timeouts so that a bug fails instead of hanging.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>

#include "death_test.hpp"
#include "thread_helpers.hpp"
#include "skip.hpp"

using namespace vmspace;
using namespace std::chrono_literals;

namespace {

constexpr auto kWindow = 200ms;  // how long we watch for something that must not happen
using vmspace::test::Async;
using vmspace::test::wait_until;

// True if `pred` stays false for the whole window.
template <class Pred>
bool stays_false(Pred pred, std::chrono::milliseconds window = kWindow) {
  return !wait_until(pred, window);
}

// A thread that enters a read section (nested `depth` guards deep, then drops all but the
// outermost), reports that it is inside, and stays inside until released.
class SectionHolder {
 public:
  explicit SectionHolder(int depth = 1) {
    thread_ = std::thread([this, depth] {
      auto outer = disable_preempt();
      for (int i = 1; i < depth; ++i) {
        auto inner = disable_preempt();
      }
      entered_.store(true, std::memory_order_release);
      wait_until([this] { return release_.load(std::memory_order_acquire); }, 60s);
    });
  }
  SectionHolder(const SectionHolder&) = delete;
  SectionHolder& operator=(const SectionHolder&) = delete;
  ~SectionHolder() {
    release();
    thread_.join();
  }
  bool wait_entered() {
    return wait_until([this] { return entered_.load(std::memory_order_acquire); });
  }
  void release() { release_.store(true, std::memory_order_release); }

 private:
  std::atomic<bool> entered_{false};
  std::atomic<bool> release_{false};
  std::thread thread_;
};

// Counts its destruction, unless moved from.
struct Tracked {
  std::atomic<int>* destroyed;
  int value;
  Tracked(std::atomic<int>* d, int v) : destroyed(d), value(v) {}
  Tracked(Tracked&& o) noexcept : destroyed(std::exchange(o.destroyed, nullptr)), value(o.value) {}
  Tracked& operator=(Tracked&&) = delete;
  ~Tracked() {
    if (destroyed != nullptr) destroyed->fetch_add(1, std::memory_order_relaxed);
  }
};

// A node that readers find through an atomic pointer. Its deleter poisons it before freeing it,
// so a reader that sees a reclaimed node notices even without ASan.
constexpr std::uint64_t kAlive = 0xA11CEA11CEA11CEAull;
constexpr std::uint64_t kPoison = 0xDEADDEADDEADDEADull;
struct Node {
  std::uint64_t canary;
  std::uint64_t serial;
  std::array<std::uint64_t, 6> payload;
};

struct Flag {
  std::atomic<int> hits{0};
};
void bump_flag(void* p) { static_cast<Flag*>(p)->hits.fetch_add(1, std::memory_order_relaxed); }

// Retires `flag` from its destructor. Constructed on a thread before that thread's first RCU
// use, it is destroyed after the thread's RCU record (thread-locals die in reverse order).
struct RetireAtThreadExit {
  Flag* flag = nullptr;
  ~RetireAtThreadExit() {
    if (flag != nullptr) rcu_retire(flag, bump_flag);
  }
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("nested_guards_stay_in_atomic_mode_until_the_outermost_ends") {
    CHECK_FALSE(in_atomic_mode());
    {
      auto outer = disable_preempt();
      CHECK(in_atomic_mode());
      {
        auto inner = disable_preempt();
        CHECK(in_atomic_mode());
        {
          auto innermost = disable_preempt();
          CHECK(in_atomic_mode());
        }
        CHECK(in_atomic_mode());
      }
      CHECK(in_atomic_mode());
    }
    CHECK_FALSE(in_atomic_mode());
  }

  TEST_CASE("atomic_mode_is_per_thread") {
    auto guard = disable_preempt();
    std::atomic<bool> other_in_atomic{true};
    std::thread([&] { other_in_atomic.store(in_atomic_mode()); }).join();
    CHECK_FALSE(other_in_atomic.load());
    CHECK(in_atomic_mode());
  }

  TEST_CASE("rcu_drop_destroys_after_a_grace_period_not_before") {
    std::atomic<int> destroyed{0};
    SectionHolder reader;
    REQUIRE(reader.wait_entered());
    {
      RcuDrop<Tracked> drop(Tracked(&destroyed, 1));
      CHECK(drop->value == 1);
    }
    // The reader started before the drop: the object outlives its section.
    CHECK(stays_false([&] { return destroyed.load() != 0; }));
    reader.release();
    rcu_barrier();
    CHECK(destroyed.load() == 1);
  }

  TEST_CASE("inner_guard_ending_does_not_end_the_read_section") {
    std::atomic<int> destroyed{0};
    SectionHolder reader(/*depth=*/3);
    REQUIRE(reader.wait_entered());
    { RcuDrop<Tracked> drop(Tracked(&destroyed, 1)); }
    CHECK(stays_false([&] { return destroyed.load() != 0; }));
    reader.release();
    rcu_barrier();
    CHECK(destroyed.load() == 1);
  }

  TEST_CASE("retire_inside_own_read_section_waits_for_that_section") {
    Flag flag;
    {
      auto guard = disable_preempt();
      rcu_retire(&flag, bump_flag);
      CHECK(stays_false([&] { return flag.hits.load() != 0; }));
    }
    rcu_barrier();
    CHECK(flag.hits.load() == 1);
  }

  TEST_CASE("large_backlog_is_not_reclaimed_while_an_older_reader_is_inside") {
    // More than the inline-reclaim threshold, so retiring itself tries to reclaim.
    constexpr int kObjects = 1000;
    std::vector<Flag> flags(kObjects);
    SectionHolder reader;
    REQUIRE(reader.wait_entered());
    for (Flag& f : flags) rcu_retire(&f, bump_flag);
    auto any_ran = [&] {
      for (const Flag& f : flags) {
        if (f.hits.load() != 0) return true;
      }
      return false;
    };
    CHECK_FALSE(any_ran());
    CHECK(stays_false(any_ran, 50ms));
    reader.release();
    rcu_barrier();
    int total = 0;
    for (const Flag& f : flags) total += f.hits.load();
    CHECK(total == kObjects);
  }

  TEST_CASE("rcu_synchronize_waits_for_a_reader_that_started_before_it") {
    SectionHolder reader;
    REQUIRE(reader.wait_entered());
    Async sync([] { rcu_synchronize(); });
    CHECK(stays_false([&] { return sync.done(); }));
    reader.release();
    CHECK(sync.wait());
  }

  TEST_CASE("rcu_synchronize_returns_without_readers_and_advances_two_epochs") {
    const auto before = rcu_stats().grace_periods;
    Async sync([] { rcu_synchronize(); });
    CHECK(sync.wait());
    CHECK(rcu_stats().grace_periods >= before + 2);
  }

  TEST_CASE("idle_registered_threads_do_not_delay_grace_periods") {
    // A live thread that has taken guards before but is outside any section now.
    std::atomic<bool> registered{false};
    std::atomic<bool> finish{false};
    std::thread idle([&] {
      { auto guard = disable_preempt(); }
      registered.store(true);
      wait_until([&] { return finish.load(); }, 60s);
    });
    REQUIRE(wait_until([&] { return registered.load(); }));
    Async sync([] { rcu_synchronize(); });
    CHECK(sync.wait());
    Async barrier([] { rcu_barrier(); });
    CHECK(barrier.wait());
    finish.store(true);
    idle.join();
  }

  TEST_CASE("readers_never_observe_reclaimed_memory") {
    static std::atomic<int> freed{0};
    freed.store(0);
    auto make_node = [](std::uint64_t serial) {
      auto* n = new Node{kAlive, serial, {}};
      for (std::size_t i = 0; i < n->payload.size(); ++i) n->payload[i] = serial ^ i;
      return n;
    };
    auto poison_and_free = [](void* p) {
      auto* n = static_cast<Node*>(p);
      n->canary = kPoison;
      n->payload.fill(kPoison);
      delete n;
      freed.fetch_add(1, std::memory_order_relaxed);
    };

    std::atomic<Node*> head{make_node(0)};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0};
    std::atomic<std::uint64_t> reads{0};
    std::atomic<int> readers_started{0};
    constexpr int kReaders = 3;
    constexpr int kSwaps = 20000;

    std::vector<std::thread> readers;
    for (int r = 0; r < kReaders; ++r) {
      readers.emplace_back([&] {
        std::uint64_t local_reads = 0;
        std::uint64_t local_bad = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          auto guard = disable_preempt();
          Node* n = head.load(std::memory_order_acquire);
          for (int pass = 0; pass < 2; ++pass) {
            if (n->canary != kAlive) ++local_bad;
            for (std::size_t i = 0; i < n->payload.size(); ++i) {
              if (n->payload[i] != (n->serial ^ i)) ++local_bad;
            }
            // Now and then stay inside the section a little longer, so that an early free
            // would land between the two passes.
            if (pass == 0 && (local_reads & 15) == 0) std::this_thread::yield();
          }
          if (++local_reads == 1) readers_started.fetch_add(1);
        }
        reads.fetch_add(local_reads);
        bad.fetch_add(local_bad);
      });
    }
    // The writer starts once every reader is reading: on a loaded machine the 20000 swaps
    // took less time (~20 ms) than the readers needed to be scheduled, so none overlapped it.
    bool all_readers_started = false;
    std::thread writer([&] {
      all_readers_started = wait_until([&] { return readers_started.load() == kReaders; }, 30s);
      for (int i = 1; i <= kSwaps; ++i) {
        Node* old =
            head.exchange(make_node(static_cast<std::uint64_t>(i)), std::memory_order_acq_rel);
        rcu_retire(old, poison_and_free);
        if (i % 4096 == 0) rcu_synchronize();
      }
    });
    writer.join();
    stop.store(true);
    for (auto& t : readers) t.join();
    CHECK(all_readers_started);
    rcu_retire(head.exchange(nullptr), poison_and_free);
    rcu_barrier();

    CHECK(bad.load() == 0);
    CHECK(reads.load() > 0);
    CHECK(freed.load() == kSwaps + 1);
  }

  TEST_CASE("background_reclaimer_runs_callbacks_without_a_barrier") {
    Flag flag;
    const auto before = rcu_stats();
    rcu_retire(&flag, bump_flag);
    CHECK(rcu_stats().retired >= before.retired + 1);
    // Nobody calls rcu_synchronize or rcu_barrier: only the reclaimer can run it.
    CHECK(wait_until([&] { return flag.hits.load() == 1; }));
    CHECK(rcu_stats().reclaimed >= before.reclaimed + 1);
    CHECK(rcu_stats().grace_periods >= before.grace_periods + 2);
  }

  TEST_CASE("short_lived_threads_do_not_block_grace_periods") {
    constexpr int kWaves = 25;
    constexpr int kThreadsPerWave = 8;
    std::atomic<int> destroyed{0};
    for (int wave = 0; wave < kWaves; ++wave) {
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreadsPerWave; ++t) {
        threads.emplace_back([&destroyed, t] {
          for (int i = 0; i < 3; ++i) {
            auto outer = disable_preempt();
            auto inner = disable_preempt();
          }
          // Some threads retire on their way out.
          if (t % 2 == 0) {
            RcuDrop<Tracked> drop(Tracked(&destroyed, t));
          }
        });
      }
      for (auto& t : threads) t.join();
    }
    // Every one of those threads has exited; none may hold up a grace period.
    Async sync([] { rcu_synchronize(); });
    CHECK(sync.wait());
    Async barrier([] { rcu_barrier(); });
    CHECK(barrier.wait());
    CHECK(destroyed.load() == kWaves * kThreadsPerWave / 2);
  }

  TEST_CASE("threads_exiting_while_others_read_do_not_block_grace_periods") {
    // Threads come and go while a long-running reader keeps taking short sections.
    std::atomic<bool> stop{false};
    std::thread steady_reader([&] {
      while (!stop.load()) {
        auto guard = disable_preempt();
      }
    });
    for (int i = 0; i < 100; ++i) {
      std::thread([] { auto guard = disable_preempt(); }).join();
    }
    Async sync([] { rcu_synchronize(); });
    CHECK(sync.wait());
    stop.store(true);
    steady_reader.join();
  }

  TEST_CASE("rcu_drop_moved_from_drops_nothing") {
    std::atomic<int> destroyed{0};
    const auto before = rcu_stats().retired;
    {
      RcuDrop<Tracked> a(Tracked(&destroyed, 7));
      RcuDrop<Tracked> b(std::move(a));
      CHECK_FALSE(a.has_value());  // NOLINT(bugprone-use-after-move)
      REQUIRE(b.has_value());
      CHECK(b->value == 7);
      CHECK((*b).value == 7);
      {
        RcuDrop<Tracked> c(std::move(b));
        CHECK_FALSE(b.has_value());  // NOLINT(bugprone-use-after-move)
      }
      // Only `c` handed its value to RCU.
      CHECK(rcu_stats().retired == before + 1);
    }
    CHECK(rcu_stats().retired == before + 1);
    rcu_barrier();
    CHECK(destroyed.load() == 1);
  }

  TEST_CASE("rcu_drop_move_assignment_retires_the_old_value") {
    std::atomic<int> destroyed_old{0};
    std::atomic<int> destroyed_new{0};
    const auto before = rcu_stats().retired;
    {
      RcuDrop<Tracked> target(Tracked(&destroyed_old, 1));
      RcuDrop<Tracked> source(Tracked(&destroyed_new, 2));
      target = std::move(source);
      CHECK(rcu_stats().retired == before + 1);
      CHECK_FALSE(source.has_value());  // NOLINT(bugprone-use-after-move)
      CHECK(target->value == 2);
      // Self-move keeps the value and retires nothing.
      auto& alias = target;
      target = std::move(alias);
      CHECK(target.has_value());
      CHECK(rcu_stats().retired == before + 1);
    }
    CHECK(rcu_stats().retired == before + 2);
    rcu_barrier();
    CHECK(destroyed_old.load() == 1);
    CHECK(destroyed_new.load() == 1);
  }

  // Regression: RcuDrop's move assignment assigned the std::optional it holds, so it did not
  // compile for a T without move assignment, although the class only requires a nothrow move
  // constructor (e.g. a type with a const member).
  TEST_CASE("rcu_drop_move_assignment_needs_no_assignment_operator") {
    struct ConstMember {
      const int id;
      std::atomic<int>* destroyed;
      ConstMember(int i, std::atomic<int>* d) : id(i), destroyed(d) {}
      ConstMember(ConstMember&& o) noexcept
          : id(o.id), destroyed(std::exchange(o.destroyed, nullptr)) {}
      ~ConstMember() {
        if (destroyed != nullptr) destroyed->fetch_add(1);
      }
    };
    static_assert(!std::is_move_assignable_v<ConstMember>);
    std::atomic<int> destroyed{0};
    {
      RcuDrop<ConstMember> target(ConstMember(1, &destroyed));
      RcuDrop<ConstMember> source(ConstMember(2, &destroyed));
      target = std::move(source);
      CHECK(target->id == 2);
      CHECK_FALSE(source.has_value());  // NOLINT(bugprone-use-after-move)
      RcuDrop<ConstMember> empty(std::move(source));
      target = std::move(empty);  // assigning an empty RcuDrop retires the old value
      CHECK_FALSE(target.has_value());
    }
    rcu_barrier();
    CHECK(destroyed.load() == 2);
  }

  TEST_CASE("rcu_drop_take_unchecked_cancels_the_deferred_destruction") {
    std::atomic<int> destroyed{0};
    const auto before = rcu_stats().retired;
    {
      RcuDrop<Tracked> drop(Tracked(&destroyed, 3));
      Tracked taken = std::move(drop).take_unchecked();
      CHECK_FALSE(drop.has_value());  // NOLINT(bugprone-use-after-move)
      CHECK(taken.value == 3);
      CHECK(destroyed.load() == 0);
    }
    // `taken` died at the end of the scope, immediately; nothing went through RCU.
    CHECK(destroyed.load() == 1);
    CHECK(rcu_stats().retired == before);
  }

  TEST_CASE("rcu_barrier_runs_every_earlier_callback") {
    constexpr int kObjects = 50;
    std::vector<Flag> flags(kObjects);
    for (Flag& f : flags) rcu_retire(&f, bump_flag);
    rcu_barrier();
    int total = 0;
    for (const Flag& f : flags) total += f.hits.load();
    CHECK(total == kObjects);
  }

  // Regression: rcu_barrier returned as soon as the queue was empty, even while the background
  // reclaimer had taken an earlier callback off the queue and was still running it.
  TEST_CASE("rcu_barrier_waits_for_callbacks_running_on_the_reclaimer") {
    struct Blocking {
      std::atomic<bool> started{false};
      std::atomic<bool> release{false};
      std::atomic<bool> finished{false};
      std::atomic<std::thread::id> runner{};
    };
    Blocking state;
    rcu_retire(&state, [](void* p) {
      auto* s = static_cast<Blocking*>(p);
      s->runner.store(std::this_thread::get_id());
      s->started.store(true);
      wait_until([s] { return s->release.load(); }, 30s);
      s->finished.store(true);
    });
    // Only the background reclaimer can pick the callback up: this thread does not reclaim.
    REQUIRE(wait_until([&] { return state.started.load(); }));
    CHECK(state.runner.load() != std::this_thread::get_id());

    std::atomic<bool> finished_when_barrier_returned{false};
    Async barrier([&] {
      rcu_barrier();
      finished_when_barrier_returned.store(state.finished.load());
    });
    CHECK(stays_false([&] { return barrier.done(); }));
    state.release.store(true);
    REQUIRE(barrier.wait());
    CHECK(finished_when_barrier_returned.load());
  }

  TEST_CASE("callbacks_of_an_exited_thread_still_wait_for_old_readers_and_then_run") {
    // Each thread queues its callbacks in its own record; a thread that exits hands its
    // queue over, which must neither drop the callbacks nor run them early.
    constexpr int kObjects = 300;  // past the inline-reclaim threshold
    std::vector<Flag> flags(kObjects);
    SectionHolder reader;
    REQUIRE(reader.wait_entered());
    std::thread([&] {
      for (Flag& f : flags) rcu_retire(&f, bump_flag);
    }).join();
    auto hits = [&] {
      int total = 0;
      for (const Flag& f : flags) total += f.hits.load();
      return total;
    };
    CHECK(stays_false([&] { return hits() != 0; }));
    reader.release();
    rcu_barrier();
    CHECK(hits() == kObjects);
  }

  TEST_CASE("retire_from_a_thread_local_destructor_after_the_thread_left_rcu") {
    Flag flag;
    const auto before = rcu_stats().retired;
    std::thread([&] {
      thread_local RetireAtThreadExit at_exit;  // constructed before the RCU record
      at_exit.flag = &flag;
      { auto guard = disable_preempt(); }  // registers the record
    }).join();
    CHECK(rcu_stats().retired >= before + 1);
    rcu_barrier();
    CHECK(flag.hits.load() == 1);
  }

  TEST_CASE("rcu_synchronize_in_atomic_mode_aborts" *
            vmspace::test::skip_death_test("rcu_synchronize_in_atomic_mode_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto guard = disable_preempt();
          rcu_synchronize();
        },
        "rcu_synchronize inside a read section"));
  }

  TEST_CASE("rcu_barrier_in_atomic_mode_aborts" *
            vmspace::test::skip_death_test("rcu_barrier_in_atomic_mode_aborts")) {
    CHECK(vmspace::test::dies_with(
        [] {
          auto outer = disable_preempt();
          auto inner = disable_preempt();
          rcu_barrier();
        },
        "rcu_barrier inside a read section"));
  }
}

// fork() copies only the calling thread. Before the fork handlers, a child forked while the
// background reclaimer ran a batch (or held an RCU or allocator lock) inherited that state
// with no thread to finish it: its rcu_barrier waited forever for the half-run batch, or its
// frame allocation spun on a copied spinlock (seen as a 20 s death-test timeout under ASan).
TEST_SUITE("unit") {
  TEST_CASE("regression_fork_while_the_reclaimer_runs_a_batch") {
    ensure_booted();  // the fork handlers are installed at boot
    std::atomic<bool> stop{false};
    // Slow callbacks keep the reclaimer inside a batch most of the time.
    Async retirer([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 16; ++i) {
          rcu_retire(new int(i), [](void* p) {
            std::this_thread::sleep_for(100us);
            delete static_cast<int*>(p);
          });
        }
        std::this_thread::sleep_for(1ms);
      }
    });
    for (int round = 0; round < 16; ++round) {
      std::this_thread::sleep_for(3ms);
      const pid_t pid = fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        alarm(60);  // a hang fails the round instead of the whole test binary (generous: loaded
                    // hosts)
        rcu_barrier();
        auto frame = FrameAllocOptions().alloc_frame();
        _exit(frame.has_value() ? 0 : 3);
      }
      int status = 0;
      REQUIRE(waitpid(pid, &status, 0) == pid);
      CAPTURE(round);
      CHECK(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == 0);
    }
    stop.store(true, std::memory_order_relaxed);
    CHECK(retirer.wait());
    rcu_barrier();
  }
}
