// The stress engine's coordination objects on their own (suite `stress`): the worker barrier
// starts, parks, releases and stops workers; the watchdog reports a stall and only a stall.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "watchdog.hpp"
#include "worker_barrier.hpp"

using namespace vmspace::stress::internal;

namespace {

// A worker's loop reduced to the barrier protocol: counts its rounds between parks.
void barrier_worker(WorkerBarrier& b, std::atomic<unsigned>& rounds) {
  b.arrive(WorkerStart::Bound);
  while (!b.stop_requested()) {
    if (b.pause_requested()) {
      b.park();
      continue;
    }
    rounds.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::yield();
  }
  b.exited();
}

}  // namespace

TEST_CASE("worker barrier: start, park every worker, release, stop") {
  WorkerBarrier b;
  std::atomic<unsigned> rounds{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { barrier_worker(b, rounds); });
  CHECK(b.start(3) == 0);
  CHECK_FALSE(b.stop_requested());

  b.pause_all(3);
  // Every worker is parked: nobody runs a round until the release.
  const unsigned parked_at = rounds.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(rounds.load() == parked_at);

  b.release_all(AfterRelease::Continue);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (rounds.load() == parked_at && std::chrono::steady_clock::now() < until)
    std::this_thread::yield();
  CHECK(rounds.load() > parked_at);

  b.pause_all(3);
  b.release_all(AfterRelease::Stop);
  for (auto& t : threads) t.join();
  CHECK(b.stop_requested());
}

TEST_CASE("worker barrier: a worker without a CPU stops the run before it starts") {
  WorkerBarrier b;
  std::atomic<unsigned> rounds{0};
  std::thread bound([&] { barrier_worker(b, rounds); });
  std::thread no_cpu([&] {
    b.arrive(WorkerStart::NoFreeCpu);
    b.exited();
  });
  CHECK(b.start(2) == 1);
  CHECK(b.stop_requested());
  bound.join();
  no_cpu.join();
  CHECK(rounds.load() == 0);
  // Exited workers count as parked: a pause does not wait for them.
  b.pause_all(2);
}

TEST_CASE("watchdog: a stalled run is reported, a progressing one is not") {
  std::atomic<std::uint64_t> tickets{0};
  std::atomic<int> stalls{0};
  std::atomic<double> stalled_for{0};
  {
    Watchdog wd(
        1.0,
        [&] {
          return Watchdog::Progress{tickets.load(), 0, false};
        },
        [&](double s) {
          stalled_for.store(s);
          stalls.fetch_add(1);
        });
    // Progress every 20 ms for 1.5 s (longer than the limit): never a stall.
    for (int i = 0; i < 75; ++i) {
      tickets.fetch_add(1);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(stalls.load() == 0);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (stalls.load() == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  CHECK(stalls.load() >= 1);
  CHECK(stalled_for.load() >= 1.0);
}

TEST_CASE("watchdog: a checkpoint under way is progress") {
  std::atomic<int> stalls{0};
  {
    Watchdog wd(
        0.1,
        [] {
          return Watchdog::Progress{0, 0, true};
        },
        [&](double) { stalls.fetch_add(1); });
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
  }
  CHECK(stalls.load() == 0);
}
