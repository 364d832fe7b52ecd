// A GlobalFrameAllocator decorator that makes allocations fail on demand, for NoMemory paths.
//
// Constructing it installs it in front of the current allocator; destroying it reinstalls the
// previous one. Frees are always forwarded, so frames allocated before, during or after its
// life go back to the allocator that owns them. set_global_frame_allocator is not synchronised:
// create and destroy it while no other thread allocates or frees frames.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <optional>

#include <vmspace/frame_allocator.hpp>

namespace vmspace::test {

class FailingFrameAllocator final : public GlobalFrameAllocator {
 public:
  static constexpr std::uint64_t kUnlimited = std::numeric_limits<std::uint64_t>::max();

  FailingFrameAllocator() : inner_(set_global_frame_allocator(this)) {}
  ~FailingFrameAllocator() override { set_global_frame_allocator(inner_); }
  FailingFrameAllocator(const FailingFrameAllocator&) = delete;
  FailingFrameAllocator& operator=(const FailingFrameAllocator&) = delete;

  // Lets `n` more allocations succeed, then fails every later one.
  void fail_after(std::uint64_t n) noexcept { budget_.store(n, std::memory_order_relaxed); }
  void fail_always() noexcept { fail_after(0); }
  void fail_never() noexcept { fail_after(kUnlimited); }
  // Allocations refused so far.
  std::uint64_t failures() const noexcept { return failures_.load(std::memory_order_relaxed); }
  // Allocations forwarded so far.
  std::uint64_t successes() const noexcept { return successes_.load(std::memory_order_relaxed); }

  std::optional<Paddr> alloc(FrameLayout layout) noexcept override {
    std::uint64_t b = budget_.load(std::memory_order_relaxed);
    for (;;) {
      if (b == 0) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        return std::nullopt;
      }
      if (b == kUnlimited || budget_.compare_exchange_weak(b, b - 1, std::memory_order_relaxed))
        break;
    }
    successes_.fetch_add(1, std::memory_order_relaxed);
    return inner_->alloc(layout);
  }
  void dealloc(Paddr addr, std::size_t size) noexcept override { inner_->dealloc(addr, size); }
  void add_free_memory(Paddr addr, std::size_t size) noexcept override {
    inner_->add_free_memory(addr, size);
  }
  std::uint64_t free_bytes() const noexcept override { return inner_->free_bytes(); }

 private:
  GlobalFrameAllocator* inner_;
  std::atomic<std::uint64_t> budget_{kUnlimited};
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> successes_{0};
};

}  // namespace vmspace::test
