// Emulated CPUs: CpuId, num_cpus, current_cpu and CpuBinding (cpu.hpp; OSTD `ostd/src/cpu/id.rs`,
// `CpuId` and `PinCurrentCpu::current_cpu`). This executable boots its own machine with 3 CPUs, so
// that nothing here passes by accident of the 4-CPU default.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <vmspace/boot.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/rcu.hpp>

#include "death_test.hpp"
#include "result_check.hpp"
#include "skip.hpp"

using namespace vmspace;
using namespace std::chrono_literals;
using vmspace::test::error_of;

namespace {

constexpr std::uint32_t kCpus = 3;

#ifdef NDEBUG
constexpr bool kNdebug = true;
#else
constexpr bool kNdebug = false;
#endif

BootConfig test_config() {
  BootConfig config;
  config.phys_mem_bytes = std::uint64_t{64} << 20;
  config.num_cpus = kCpus;
  return config;
}

// Boots the 3-CPU machine (booting again with the same config is a no-op).
void boot_test_machine() { REQUIRE(boot(test_config()).has_value()); }

CpuId cpu(std::uint32_t raw) { return CpuId::try_from(raw).value(); }

// Polls `pred` until it holds or the timeout passes; returns whether it held.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(100us);
  }
  return true;
}

// A thread that binds with `bind_fn`, publishes the outcome, and keeps its binding until
// released.
class BoundThread {
 public:
  template <class BindFn>
  explicit BoundThread(BindFn bind_fn) {
    thread_ = std::thread([this, bind_fn] {
      Result<CpuBinding> binding = bind_fn();
      if (binding) {
        cpu_.store(static_cast<int>(binding->cpu().as_u32()));
        seen_current_.store(current_cpu() == binding->cpu());
      } else {
        error_.store(static_cast<int>(binding.error()));
      }
      ready_.store(true);
      wait_until([this] { return release_.load(); }, 60s);
    });
    ready_ok_ = wait_until([this] { return ready_.load(); });
  }
  BoundThread(const BoundThread&) = delete;
  BoundThread& operator=(const BoundThread&) = delete;
  ~BoundThread() {
    release_.store(true);
    thread_.join();
  }

  // Whether the thread reported its bind outcome in time.
  bool ready() const { return ready_ok_; }
  // The CPU it bound, or nullopt if binding failed.
  std::optional<std::uint32_t> bound_cpu() const {
    int c = cpu_.load();
    if (c < 0) return std::nullopt;
    return static_cast<std::uint32_t>(c);
  }
  std::optional<Error> error() const {
    int e = error_.load();
    if (e < 0) return std::nullopt;
    return static_cast<Error>(e);
  }
  // Whether current_cpu() on that thread reported the bound CPU.
  bool saw_itself_bound() const { return seen_current_.load(); }

 private:
  std::atomic<int> cpu_{-1};
  std::atomic<int> error_{-1};
  std::atomic<bool> seen_current_{false};
  std::atomic<bool> ready_{false};
  std::atomic<bool> release_{false};
  bool ready_ok_ = false;
  std::thread thread_;
};

// What another thread sees when it tries to bind `c` right now (and immediately releases).
std::optional<Error> bind_error_elsewhere(CpuId c) {
  std::optional<Error> result;
  std::thread([&] {
    auto b = CpuBinding::bind(c);
    result = error_of(b);
  }).join();
  return result;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("num_cpus_matches_the_boot_config") {
    boot_test_machine();
    CHECK(num_cpus() == kCpus);
    CHECK(boot_config().num_cpus == kCpus);
    CHECK(CpuId::cardinality() == kCpus);
    // A second boot with another CPU count is refused and changes nothing.
    BootConfig other = test_config();
    other.num_cpus = kCpus + 1;
    CHECK(error_of(boot(other)) == Error::InvalidArgs);
    CHECK(num_cpus() == kCpus);
  }

  TEST_CASE("cpu_id_try_from_checks_bounds") {
    boot_test_machine();
    for (std::uint32_t i = 0; i < kCpus; ++i) {
      auto id = CpuId::try_from(i);
      REQUIRE(id.has_value());
      CHECK(id->as_u32() == i);
      CHECK(id->as_index() == i);
    }
    CHECK(error_of(CpuId::try_from(kCpus)) == Error::InvalidArgs);
    CHECK(error_of(CpuId::try_from(kCpus + 1)) == Error::InvalidArgs);
    CHECK(error_of(CpuId::try_from(std::numeric_limits<std::uint32_t>::max())) ==
          Error::InvalidArgs);
    CHECK(CpuId::bsp().as_u32() == 0);
    CHECK(CpuId::try_from(0).value() == CpuId::bsp());
    CHECK(cpu(0) < cpu(2));
  }

  // Regression: from_raw_unchecked documented a debug-build bound check that it did not make,
  // so an out-of-range id went unnoticed until it indexed per-CPU state.
  TEST_CASE("cpu_id_from_raw_unchecked_asserts_the_bound_in_debug_builds" *
            vmspace::test::skip_if(
                kNdebug || !vmspace::test::death_tests_unavailable().empty(),
                "cpu_id_from_raw_unchecked_asserts_the_bound_in_debug_builds",
                kNdebug ? std::string("release build: debug assertions are compiled out")
                        : vmspace::test::death_tests_unavailable())) {
    boot_test_machine();
    CHECK(CpuId::from_raw_unchecked(kCpus - 1).as_u32() == kCpus - 1);
    CHECK(vmspace::test::dies_with([] { (void)CpuId::from_raw_unchecked(kCpus); },
                                   "CpuId 3 out of range (3 CPUs)"));
  }

  TEST_CASE("current_cpu_is_per_thread") {
    boot_test_machine();
    CHECK_FALSE(current_cpu().has_value());
    {
      auto binding = CpuBinding::bind(cpu(1));
      REQUIRE(binding.has_value());
      CHECK(binding->cpu() == cpu(1));
      CHECK(current_cpu() == cpu(1));

      std::optional<CpuId> seen_unbound = cpu(0);
      std::thread([&] { seen_unbound = current_cpu(); }).join();
      CHECK_FALSE(seen_unbound.has_value());

      BoundThread other([] { return CpuBinding::bind(CpuId::try_from(2).value()); });
      REQUIRE(other.ready());
      CHECK(other.bound_cpu() == 2u);
      CHECK(other.saw_itself_bound());
      CHECK(current_cpu() == cpu(1));
    }
    CHECK_FALSE(current_cpu().has_value());
  }

  TEST_CASE("binding_a_cpu_held_by_another_thread_is_busy") {
    boot_test_machine();
    {
      BoundThread holder([] { return CpuBinding::bind(CpuId::bsp()); });
      REQUIRE(holder.ready());
      REQUIRE(holder.bound_cpu() == 0u);

      auto refused = CpuBinding::bind(cpu(0));
      CHECK(error_of(refused) == Error::Busy);
      // Nothing changed for the caller, which can still bind a free CPU.
      CHECK_FALSE(current_cpu().has_value());
      auto other = CpuBinding::bind(cpu(1));
      CHECK(other.has_value());
    }
    // The holder is gone: CPU 0 is free again.
    auto again = CpuBinding::bind(cpu(0));
    CHECK(again.has_value());
  }

  TEST_CASE("binding_while_bound_is_invalid") {
    boot_test_machine();
    auto binding = CpuBinding::bind(cpu(0));
    REQUIRE(binding.has_value());
    CHECK(error_of(CpuBinding::bind(cpu(0))) == Error::InvalidArgs);
    CHECK(error_of(CpuBinding::bind(cpu(1))) == Error::InvalidArgs);
    CHECK(error_of(CpuBinding::bind_any()) == Error::InvalidArgs);
    // The existing binding is intact, and the refused CPUs were not taken.
    CHECK(current_cpu() == cpu(0));
    CHECK(bind_error_elsewhere(cpu(0)) == Error::Busy);
    CHECK(bind_error_elsewhere(cpu(1)) == std::nullopt);
  }

  // Regression: a guard taken while unbound recorded no CPU, yet binding afterwards pinned the
  // new binding to that guard's section; binding in atomic mode is now refused.
  TEST_CASE("binding_in_atomic_mode_is_refused") {
    boot_test_machine();
    {
      auto guard = disable_preempt();
      CHECK(error_of(CpuBinding::bind(cpu(0))) == Error::InvalidArgs);
      CHECK(error_of(CpuBinding::bind_any()) == Error::InvalidArgs);
      CHECK_FALSE(current_cpu().has_value());
    }
    CHECK(bind_error_elsewhere(cpu(0)) == std::nullopt);
    auto binding = CpuBinding::bind(cpu(0));
    CHECK(binding.has_value());
  }

  TEST_CASE("bind_any_picks_the_lowest_free_cpu") {
    boot_test_machine();
    BoundThread one([] { return CpuBinding::bind(CpuId::try_from(1).value()); });
    REQUIRE(one.bound_cpu() == 1u);
    {
      auto mine = CpuBinding::bind_any();
      REQUIRE(mine.has_value());
      CHECK(mine->cpu() == cpu(0));
      CHECK(current_cpu() == cpu(0));

      BoundThread next([] { return CpuBinding::bind_any(); });
      REQUIRE(next.ready());
      CHECK(next.bound_cpu() == 2u);

      BoundThread none([] { return CpuBinding::bind_any(); });
      REQUIRE(none.ready());
      CHECK(none.bound_cpu() == std::nullopt);
      CHECK(none.error() == Error::Busy);
    }
    // CPU 0 was released; it is the lowest free one again.
    BoundThread after([] { return CpuBinding::bind_any(); });
    REQUIRE(after.ready());
    CHECK(after.bound_cpu() == 0u);
  }

  TEST_CASE("bind_any_from_several_threads_takes_every_cpu_then_busy") {
    boot_test_machine();
    std::atomic<bool> go{false};
    std::atomic<int> waiting{0};
    auto racing_bind_any = [&] {
      waiting.fetch_add(1);
      wait_until([&] { return go.load(); });
      return CpuBinding::bind_any();
    };
    // BoundThread's constructor waits for the bind outcome, so launch the racers from helper
    // threads and release them together.
    std::vector<std::thread> launchers;
    std::vector<std::unique_ptr<BoundThread>> racers(kCpus);
    for (std::uint32_t i = 0; i < kCpus; ++i) {
      launchers.emplace_back([&racers, &racing_bind_any, i] {
        racers[i] = std::make_unique<BoundThread>(racing_bind_any);
      });
    }
    REQUIRE(wait_until([&] { return waiting.load() == static_cast<int>(kCpus); }));
    go.store(true);
    for (auto& l : launchers) l.join();

    std::vector<std::uint32_t> taken;
    for (auto& r : racers) {
      REQUIRE(r->ready());
      auto c = r->bound_cpu();
      REQUIRE(c.has_value());
      CHECK(r->saw_itself_bound());
      taken.push_back(*c);
    }
    std::sort(taken.begin(), taken.end());
    CHECK(taken == std::vector<std::uint32_t>{0, 1, 2});

    // Every CPU is taken now.
    BoundThread late([] { return CpuBinding::bind_any(); });
    REQUIRE(late.ready());
    CHECK(late.error() == Error::Busy);
    CHECK(error_of(CpuBinding::bind_any()) == Error::Busy);
    for (std::uint32_t i = 0; i < kCpus; ++i) {
      CHECK(error_of(CpuBinding::bind(cpu(i))) == Error::Busy);
    }
    CHECK_FALSE(current_cpu().has_value());
  }

  TEST_CASE("moved_binding_unbinds_once") {
    boot_test_machine();
    std::optional<CpuBinding> moved_from;
    moved_from.emplace(CpuBinding::bind(cpu(0)).value());
    {
      CpuBinding owner(std::move(*moved_from));
      CHECK(owner.cpu() == cpu(0));
      CHECK(current_cpu() == cpu(0));
      CHECK(bind_error_elsewhere(cpu(0)) == Error::Busy);
    }
    // `owner` released CPU 0. Let another thread take it, then destroy the moved-from binding:
    // it must not release CPU 0 a second time (which would free the other thread's CPU).
    CHECK_FALSE(current_cpu().has_value());
    BoundThread holder([] { return CpuBinding::bind(CpuId::bsp()); });
    REQUIRE(holder.bound_cpu() == 0u);
    moved_from.reset();
    CHECK(bind_error_elsewhere(cpu(0)) == Error::Busy);
    CHECK_FALSE(current_cpu().has_value());
  }

  TEST_CASE("move_assigned_binding_keeps_one_owner") {
    boot_test_machine();
    auto first = CpuBinding::bind(cpu(2));
    REQUIRE(first.has_value());
    std::optional<CpuBinding> a;
    a.emplace(std::move(*first));
    {
      CpuBinding b(std::move(*a));
      *a = std::move(b);  // back into the moved-from binding
    }
    // `b` (moved-from) died; `a` still holds CPU 2.
    CHECK(current_cpu() == cpu(2));
    CHECK(bind_error_elsewhere(cpu(2)) == Error::Busy);
    // Self-move-assignment keeps the binding.
    CpuBinding& alias = *a;
    *a = std::move(alias);
    CHECK(current_cpu() == cpu(2));
    CHECK(bind_error_elsewhere(cpu(2)) == Error::Busy);
    a.reset();
    CHECK_FALSE(current_cpu().has_value());
    CHECK(bind_error_elsewhere(cpu(2)) == std::nullopt);
  }

  TEST_CASE("rebinding_after_release_works") {
    boot_test_machine();
    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      {
        auto b = CpuBinding::bind(cpu(0));
        REQUIRE(b.has_value());
        CHECK(current_cpu() == cpu(0));
      }
      CHECK_FALSE(current_cpu().has_value());
      {
        auto b = CpuBinding::bind(cpu(1));
        REQUIRE(b.has_value());
        CHECK(current_cpu() == cpu(1));
      }
    }
    // Another thread can take a CPU this thread used before.
    CHECK(bind_error_elsewhere(cpu(0)) == std::nullopt);
  }

  TEST_CASE("guard_reports_the_pinned_cpu") {
    boot_test_machine();
    {
      auto guard = disable_preempt();
      CHECK_FALSE(guard.current_cpu().has_value());
    }
    auto binding = CpuBinding::bind(cpu(2));
    REQUIRE(binding.has_value());
    auto outer = disable_preempt();
    CHECK(outer.current_cpu() == cpu(2));
    {
      auto inner = disable_preempt();
      CHECK(inner.current_cpu() == cpu(2));
    }
    CHECK(outer.current_cpu() == cpu(2));
  }

  TEST_CASE("releasing_a_binding_in_atomic_mode_aborts" *
            vmspace::test::skip_death_test("releasing_a_binding_in_atomic_mode_aborts")) {
    boot_test_machine();
    CHECK(vmspace::test::dies_with(
        [] {
          std::optional<CpuBinding> binding;
          binding.emplace(CpuBinding::bind(CpuId::bsp()).value());
          auto guard = disable_preempt();
          binding.reset();
        },
        "binding released inside atomic mode"));
  }

  TEST_CASE("releasing_a_binding_on_another_thread_aborts" *
            vmspace::test::skip_death_test("releasing_a_binding_on_another_thread_aborts")) {
    boot_test_machine();
    CHECK(vmspace::test::dies_with(
        [] {
          auto binding = CpuBinding::bind(CpuId::bsp()).value();
          std::thread([b = std::move(binding)]() mutable {
            CpuBinding dying(std::move(b));
          }).join();
        },
        "binding released on a thread that is not bound to it"));
  }

  TEST_CASE("racing_binders_hold_a_cpu_one_at_a_time") {
    boot_test_machine();
    constexpr int kThreads = 6;
    constexpr int kAttempts = 2000;
    const CpuId contested = cpu(1);
    std::atomic<bool> go{false};
    std::atomic<int> holders{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> wins{0};
    std::atomic<int> busy{0};
    std::atomic<int> unexpected{0};
    int owner = -1;  // plain: only the thread bound to `contested` touches it

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        wait_until([&] { return go.load(); });
        for (int i = 0; i < kAttempts; ++i) {
          auto b = CpuBinding::bind(contested);
          if (!b) {
            if (b.error() == Error::Busy) {
              busy.fetch_add(1, std::memory_order_relaxed);
            } else {
              unexpected.fetch_add(1, std::memory_order_relaxed);
            }
            continue;
          }
          if (holders.fetch_add(1) != 0) overlaps.fetch_add(1);
          owner = t;
          if (current_cpu() != contested) unexpected.fetch_add(1);
          std::this_thread::yield();
          if (owner != t) overlaps.fetch_add(1);
          holders.fetch_sub(1);
          wins.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    go.store(true);
    for (auto& th : threads) th.join();
    CHECK(overlaps.load() == 0);
    CHECK(unexpected.load() == 0);
    CHECK(wins.load() > 0);
    CHECK(wins.load() + busy.load() == kThreads * kAttempts);
    CHECK(bind_error_elsewhere(contested) == std::nullopt);
  }
}
