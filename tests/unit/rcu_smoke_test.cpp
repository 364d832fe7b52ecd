// RCU smoke test (moved here from the former frame smoke test; the RCU area owns real tests).
#include <doctest/doctest.h>

#include <atomic>

#include <vmspace/rcu.hpp>

using namespace vmspace;

TEST_SUITE("unit") {
  TEST_CASE("smoke_rcu_retire_runs") {
    static std::atomic<int> ran{0};
    {
      auto g = disable_preempt();
      rcu_retire(nullptr, [](void*) { ran.fetch_add(1); });
    }
    rcu_barrier();
    CHECK(ran.load() == 1);
  }
}
