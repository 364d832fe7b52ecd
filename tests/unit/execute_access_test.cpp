// PageFaultAccess::Execute: instruction fetch through the emulated MMU needs X (and USER); the
// software TLB remembers X per entry, so a translation cached by a read or a write never lets
// a fetch skip the permission check; removing X takes effect for fetches once the flush is
// dispatched; and the TLB invalidation counter (mmu_tlb_invalidations) moves with every flush.
#include <doctest/doctest.h>

#include <cstdint>

#include <vmspace/mmu.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "result_check.hpp"
#include "vm_test_util.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

constexpr PageProperty kUserRx = PageProperty::new_user(PageFlags::RX, CachePolicy::Writeback);
constexpr PageProperty kUserX = PageProperty::new_user(PageFlags::X, CachePolicy::Writeback);
constexpr PageProperty kUserRwx = PageProperty::new_user(PageFlags::RWX, CachePolicy::Writeback);

Result<Paddr> fetch(Vaddr va) {
  auto g = disable_preempt();
  return mmu_translate(g, va, PageFaultAccess::Execute);
}

Result<Paddr> read(Vaddr va) {
  auto g = disable_preempt();
  return mmu_translate(g, va, PageFaultAccess::Read);
}

// Removes X from the page at `va`; dispatches the flush only if `dispatch`.
enum class Dispatch : std::uint8_t { Now, Never };
void remove_x(const VmSpace& space, Vaddr va, Dispatch dispatch) {
  auto g = disable_preempt();
  auto c = space.cursor_mut(g, {va, va + kPageSize});
  REQUIRE(c.has_value());
  auto r = c->protect_next(kPageSize, [](PageFlags& f, CachePolicy&) { f = f & ~PageFlags::X; });
  REQUIRE(r.has_value());
  REQUIRE(r->has_value());
  c->flusher().issue_tlb_flush(TlbFlushOp::for_single(va));
  if (dispatch == Dispatch::Now) c->flusher().dispatch_tlb_flush();
}

bool cached_executable(CpuId on, Vaddr va) {
  for (const TlbEntryInfo& e : tlb_entries(on)) {
    if (e.va == va) return e.executable;
  }
  return false;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("execute_fetch_from_an_rx_page_translates_and_sets_accessed") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x60000;
    const Paddr pa = map_page(*space, va, kUserRx);
    CHECK(fetch(va + 0x10).value() == pa + 0x10);
    CHECK(has(pte_prop(*space, va)->flags, PageFlags::ACCESSED));
    CHECK_FALSE(has(pte_prop(*space, va)->flags, PageFlags::DIRTY));
    CHECK(cached_executable(cpu(0), va));
    // The second fetch hits the entry the first one filled.
    const TlbStats before = tlb_stats(cpu(0));
    CHECK(fetch(va + 0x20).value() == pa + 0x20);
    CHECK(tlb_stats(cpu(0)).hits == before.hits + 1);
  }

  TEST_CASE("execute_fetch_from_an_rw_page_is_a_page_fault") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x61000;
    map_page(*space, va, kUserRw);
    CHECK(error_of(fetch(va)) == Error::PageFault);
    CHECK(error_of(fetch(0x62000)) == Error::PageFault);  // not mapped at all
    CHECK(error_of(fetch(kMaxUserspaceVaddr)) == Error::AccessDenied);
  }

  TEST_CASE("execute_only_page_serves_fetches_but_not_reads") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x63000;
    const Paddr pa = map_page(*space, va, kUserX);
    CHECK(fetch(va).value() == pa);
    // The entry the fetch filled must not serve a read: the PTE has no R.
    CHECK(error_of(read(va)) == Error::PageFault);
    CHECK(tlb_disagreements(cpu(0), *space).empty());
  }

  TEST_CASE("execute_tlb_entry_filled_by_a_read_does_not_grant_execute") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x64000;
    map_page(*space, va, kUserRw);
    REQUIRE(read(va).has_value());
    {
      auto g = disable_preempt();
      REQUIRE(mmu_translate(g, va, PageFaultAccess::Write).has_value());  // a writable entry, too
    }
    CHECK_FALSE(cached_executable(cpu(0), va));
    const TlbStats before = tlb_stats(cpu(0));
    CHECK(error_of(fetch(va)) == Error::PageFault);
    // The cached entry was not taken as a hit: the fetch walked and found no X.
    CHECK(tlb_stats(cpu(0)).hits == before.hits);
    CHECK(tlb_stats(cpu(0)).misses == before.misses + 1);
  }

  TEST_CASE("execute_after_a_read_of_an_rwx_page_hits_the_same_entry") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x65000;
    const Paddr pa = map_page(*space, va, kUserRwx);
    REQUIRE(read(va).has_value());
    const TlbStats before = tlb_stats(cpu(0));
    CHECK(fetch(va + 4).value() == pa + 4);
    CHECK(tlb_stats(cpu(0)).hits == before.hits + 1);
  }

  TEST_CASE("execute_after_protect_removes_x_faults_once_the_flush_is_dispatched") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x66000;
    const Paddr pa = map_page(*space, va, kUserRx);
    REQUIRE(fetch(va).value() == pa);
    // Without the dispatch the CPU may keep using its cached translation (OSTD semantics: the
    // caller must flush before relying on reduced permissions), exactly like hardware.
    remove_x(*space, va, Dispatch::Never);
    CHECK(fetch(va).value() == pa);
    // Now restore X, cache it again, remove it with a dispatched flush: the fetch faults, and
    // reading the page still works.
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + kPageSize});
      REQUIRE(c.has_value());
      REQUIRE(c->protect_next(kPageSize, [](PageFlags& f, CachePolicy&) {
                 f = f | PageFlags::X;
               }).has_value());
    }
    REQUIRE(fetch(va).value() == pa);
    remove_x(*space, va, Dispatch::Now);
    CHECK(error_of(fetch(va)) == Error::PageFault);
    CHECK(read(va).value() == pa);
  }

  TEST_CASE("execute_tlb_invalidation_counter_moves_with_every_flush_of_the_cpu") {
    {
      auto g = disable_preempt();  // unbound: no CPU, no counter
      CHECK(mmu_tlb_invalidations(g) == nullptr);
    }
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x67000;
    map_page(*space, va, kUserRx);
    const std::atomic<std::uint64_t>* counter = nullptr;
    {
      auto g = disable_preempt();
      counter = mmu_tlb_invalidations(g);
    }
    REQUIRE(counter != nullptr);
    const std::uint64_t before = counter->load();
    REQUIRE(fetch(va).has_value());
    CHECK(counter->load() == before);  // translating is not an invalidation
    remove_x(*space, va, Dispatch::Now);
    CHECK(counter->load() > before);
  }
}
