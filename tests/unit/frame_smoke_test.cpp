#include <doctest/doctest.h>

#include <atomic>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/unique_frame.hpp>

using namespace vmspace;

namespace {
struct MockMeta {
  int value;
};
}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("smoke_frame_alloc_clone_drop_reuse") {
    auto cpu = CpuBinding::bind(CpuId::bsp());
    REQUIRE(cpu.has_value());
    Paddr pa;
    {
      auto f = FrameAllocOptions().alloc_frame_with(MockMeta{42});
      REQUIRE(f.has_value());
      CHECK(f->meta().value == 42);
      CHECK(f->reference_count() == 1);
      Frame<MockMeta> g = *f;
      CHECK(f->reference_count() == 2);
      pa = f->paddr();
    }
    auto again = FrameAllocOptions().alloc_frame();
    REQUIRE(again.has_value());
    CHECK(again->paddr() == pa);
    auto seg = FrameAllocOptions().alloc_segment(512);
    REQUIRE(seg.has_value());
    CHECK(seg->size() == 2u << 20);
    CHECK(FrameAllocOptions().alloc_segment(0).error() == Error::InvalidArgs);
    CHECK(FrameAllocOptions().alloc_segment(SIZE_MAX).error() == Error::Overflow);
    auto u = UniqueFrame<MockMeta>::from_unused(0, MockMeta{1});
    CHECK(u.error() == GetFrameError::InUse);
  }

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
