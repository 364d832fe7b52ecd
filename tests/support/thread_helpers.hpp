// Helpers for multi-threaded tests: bounded waits, a thread that cannot hang the test binary,
// and a failure collector for checks made off the main thread.
//
// Rules these helpers support: never use sleeps as synchronisation (wait for an observable
// condition instead), and bound every wait so a bug fails the test instead of hanging it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

namespace vmspace::test {

// Upper bound for something that must happen.
inline constexpr std::chrono::milliseconds kTimeout{20000};

// Polls `pred` (yielding in between) until it holds or `timeout` passes; returns whether it held.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout = kTimeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::yield();
  }
  return true;
}

// Runs `fn` on its own thread. The destructor waits (bounded) for it; if it still has not
// finished, the thread is detached (a bug made it hang; the test has already failed on wait()).
// doctest assertions are thread-safe; a failing REQUIRE ends `fn` (its exception is caught here).
class Async {
 public:
  explicit Async(std::function<void()> fn) : state_(std::make_shared<State>()) {
    thread_ = std::thread([state = state_, fn = std::move(fn)] {
      try {
        fn();
      } catch (...) {
        // A failed doctest REQUIRE throws after recording the failure; stop this body only.
      }
      state->done.store(true, std::memory_order_release);
    });
  }
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;
  ~Async() {
    // Normally done already; after a failed check give the body time to finish, since it
    // may still use the test's objects.
    if (wait()) {
      thread_.join();
    } else {
      thread_.detach();
    }
  }
  bool done() const { return state_->done.load(std::memory_order_acquire); }
  bool wait(std::chrono::milliseconds timeout = kTimeout) const {
    return wait_until([this] { return done(); }, timeout);
  }

 private:
  struct State {
    std::atomic<bool> done{false};
  };
  std::shared_ptr<State> state_;
  std::thread thread_;
};

// Releases a semaphore when the scope ends, so a helper thread waiting on it finishes even when
// a failed REQUIRE leaves the test early. Declare it after the Async it releases; now() releases
// early (still once).
class ReleaseOnExit {
 public:
  explicit ReleaseOnExit(std::binary_semaphore& s) noexcept : s_(s) {}
  ReleaseOnExit(const ReleaseOnExit&) = delete;
  ReleaseOnExit& operator=(const ReleaseOnExit&) = delete;
  ~ReleaseOnExit() { now(); }
  // Releases now (once).
  void now() noexcept {
    if (!done_) {
      done_ = true;
      s_.release();
    }
  }

 private:
  std::binary_semaphore& s_;
  bool done_ = false;
};

// Runs a test body that must not block (e.g. a thread asking for a cursor it cannot get) on
// its own thread and waits for it. If it has not finished after `timeout`, the body is stuck
// for ever and still uses the test's objects, so the process aborts with a message.
template <class Fn>
void run_bounded(const char* what, Fn fn, std::chrono::milliseconds timeout = kTimeout) {
  Async body(std::move(fn));
  if (!body.wait(timeout)) {
    std::fprintf(stderr, "FATAL: %s did not finish within %lld ms (blocked?)\n", what,
                 static_cast<long long>(timeout.count()));
    std::abort();
  }
}

// Collects failures seen by worker threads; the main thread checks count() and first().
class Failures {
 public:
  template <class... A>
  void add(const A&... parts) {
    if (count_.fetch_add(1, std::memory_order_relaxed) != 0) return;
    std::ostringstream os;
    os << std::hex;
    (os << ... << parts);
    std::lock_guard<std::mutex> g(m_);
    first_ = os.str();
  }
  std::size_t count() const { return count_.load(std::memory_order_relaxed); }
  std::string first() const {
    std::lock_guard<std::mutex> g(m_);
    return first_;
  }

 private:
  std::atomic<std::size_t> count_{0};
  mutable std::mutex m_;
  std::string first_;
};

}  // namespace vmspace::test
