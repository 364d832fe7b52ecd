#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/vm_space.hpp>

using namespace vmspace;

namespace {
const PageProperty kRw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);

void map_page(VmSpace& s, Vaddr va, PageProperty prop = kRw) {
  auto g = disable_preempt();
  auto c = s.cursor_mut(g, {va, va + kPageSize});
  REQUIRE(c.has_value());
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  REQUIRE(c->map(UFrame(std::move(*f)), prop).has_value());
}
}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("smoke_vm_space_copy_and_fault") {
    auto space = VmSpace::create();
    REQUIRE(space.has_value());
    auto cpu = CpuBinding::bind(CpuId::bsp());
    REQUIRE(cpu.has_value());
    CHECK((*space)->reader(0x4000, 0x1000).error() == Error::AccessDenied);
    REQUIRE((*space)->activate().has_value());
    map_page(**space, 0x4000);
    auto w = (*space)->writer(0x4000, 8);
    REQUIRE(w.has_value());
    CHECK(w->write_val<std::uint64_t>(0x1122334455667788ull).has_value());
    auto r = (*space)->reader(0x4000, 8);
    CHECK(r->read_val<std::uint64_t>().value() == 0x1122334455667788ull);
    // Unmapped page without a handler: PageFault with a partial count.
    std::vector<std::byte> buf(0x2000);
    auto r2 = (*space)->reader(0x4000, 0x2000);
    VmWriter<Infallible> out{std::span<std::byte>(buf)};
    auto res = r2->read_fallible(out);
    REQUIRE_FALSE(res.has_value());
    CHECK(res.error().error == Error::PageFault);
    CHECK(res.error().copied == 0x1000);
    // Demand paging through the handler.
    auto prev = inject_user_page_fault_handler([](const PageFaultInfo& info) -> Result<void> {
      map_page(*info.space, align_down(info.address, kPageSize));
      return {};
    });
    auto r3 = (*space)->reader(0x4000, 0x2000);
    VmWriter<Infallible> out3{std::span<std::byte>(buf)};
    auto res3 = r3->read_fallible(out3);
    REQUIRE(res3.has_value());
    CHECK(*res3 == 0x2000);
    inject_user_page_fault_handler(prev);
    REQUIRE(VmSpace::deactivate_current().has_value());
  }

  TEST_CASE("smoke_stale_tlb_entry_until_dispatch") {
    auto space = VmSpace::create();
    REQUIRE(space.has_value());
    auto cpu = CpuBinding::bind(CpuId::bsp());
    REQUIRE((*space)->activate().has_value());
    map_page(**space, 0x8000);
    auto w = (*space)->writer(0x8000, 4);
    REQUIRE(w->write_val<std::uint32_t>(1).has_value());  // TLB now caches a writable entry
    {
      auto g = disable_preempt();
      auto c = (*space)->cursor_mut(g, {0x8000, 0x9000});
      auto range = c->protect_next(0x1000, [](PageFlags& f, CachePolicy&) { f = PageFlags::R; });
      REQUIRE(range.has_value());
      REQUIRE(range->has_value());
      // Not dispatched yet: the stale writable entry still works (as on hardware).
      auto w2 = (*space)->writer(0x8000, 4);
      CHECK(w2->write_val<std::uint32_t>(2).has_value());
      c->flusher().issue_tlb_flush(TlbFlushOp::for_single(0x8000));
      c->flusher().dispatch_tlb_flush();
      auto w3 = (*space)->writer(0x8000, 4);
      CHECK(w3->write_val<std::uint32_t>(3).error() == Error::PageFault);
    }
    auto r = (*space)->reader(0x8000, 4);
    CHECK(r->read_val<std::uint32_t>().value() == 2);
    REQUIRE(VmSpace::deactivate_current().has_value());
  }

  TEST_CASE("smoke_unmap_frees_after_dispatch") {
    const auto start = global_frame_allocator().free_bytes();
    {
      auto space = VmSpace::create();
      auto cpu = CpuBinding::bind(CpuId::bsp());
      REQUIRE((*space)->activate().has_value());
      for (Vaddr va = 0x10000; va < 0x20000; va += kPageSize) map_page(**space, va);
      auto g = disable_preempt();
      auto c = (*space)->cursor_mut(g, {0x10000, 0x20000});
      auto n = c->unmap(0x10000);
      REQUIRE(n.has_value());
      CHECK(*n == 16);
    }
    {
      auto cpu = CpuBinding::bind(CpuId::bsp());
      REQUIRE(VmSpace::deactivate_current().has_value());
    }
    rcu_barrier();
    CHECK(global_frame_allocator().free_bytes() == start);
  }
}
