// Per-CPU software TLBs and TLB shootdown: stale entries until dispatch, frames kept alive until
// every caching CPU has flushed and a grace period has passed, CPU sets and activation, flush
// operation encoding, the checking mode (and proof that it fires), and docs/spec_cases.md
// invariant 19 (after every dispatch every cached translation agrees with the page table) and
// case 70.
//
// One test thread sets up multi-CPU scenarios by binding to CPUs in turn: the TLB and the
// active space stay with the CPU.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include <vmspace/check/invariants.hpp>
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/mmu.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "death_test.hpp"
#include "result_check.hpp"
#include "vm_test_util.hpp"
#include "skip.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

std::uint64_t slot_ref_count(Paddr pa) { return meta_slot(pa)->ref_count_ref().load(); }

// No handle or PTE references the frame: it is unused, or the head of a free block in the
// allocator (which marks those UNIQUE).
bool is_free(Paddr pa) { return slot_ref_count(pa) >= kRefCountUnique; }

// Removes the mapping at `va` through the raw page-table cursor, with no TLB flush, and returns
// the fragment's frames (the caller decides when they may go).
USegment take_without_flush(const VmSpace& space, Vaddr va) {
  auto g = disable_preempt();
  auto c = space.page_table().cursor_mut(g, {va, va + kPageSize});
  REQUIRE(c.has_value());
  auto frag = c->take_next(kPageSize);
  REQUIRE(frag.has_value());
  REQUIRE(frag->has_value());
  auto* m = std::get_if<MappedFrag<UserPtConfig>>(&**frag);
  REQUIRE(m != nullptr);
  return std::move(m->item).take_unchecked().take_segment();
}

// Reads the u64 at `va` on `on` (binding the calling thread there for the read).
Result<std::uint64_t> read_u64_on(const VmSpace& space, CpuId on, Vaddr va) {
  BoundTo bound(on);
  return read_u64(space, va);
}

std::uint64_t first_u64_of_pattern(Vaddr va) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v |= std::uint64_t{pattern_byte(va + i)} << (8 * i);
  return v;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("stale_entry_is_visible_until_the_flush_is_dispatched") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x8000;
    map_page(*space, va);
    REQUIRE(write_u64(*space, va, 1).has_value());  // caches a writable entry
    CHECK(tlb_disagreements(cpu(0), *space).empty());
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + kPageSize});
      REQUIRE(c.has_value());
      REQUIRE(c->protect_next(kPageSize, [](PageFlags& f, CachePolicy&) {
                 f = PageFlags::R;
               }).has_value());
      // Not dispatched: the cached translation is stale, and still works (as on hardware).
      CHECK_FALSE(tlb_disagreements(cpu(0), *space).empty());
      REQUIRE(write_u64(*space, va, 2).has_value());
      c->flusher().issue_tlb_flush(TlbFlushOp::for_single(va));
      CHECK(c->flusher().has_pending());
      CHECK(tlb_caches(cpu(0), va));
      c->flusher().dispatch_tlb_flush();
      CHECK_FALSE(c->flusher().has_pending());
      CHECK_FALSE(tlb_caches(cpu(0), va));
      CHECK(tlb_disagreements(cpu(0), *space).empty());
      CHECK(error_of(write_u64(*space, va, 3)) == Error::PageFault);
    }
    CHECK(read_u64(*space, va).value() == 2);
    CHECK(tlb_disagreements(cpu(0), *space).empty());  // refilled read-only
  }

  TEST_CASE("unmapped_frame_is_not_reused_until_the_flush_reaches_the_caching_cpu") {
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    auto space = new_space();
    activate_on(space, cpu(0));
    activate_on(space, cpu(1));
    const Vaddr va = 0x5000;
    const Paddr pa = map_page(*space, va);
    REQUIRE(read_u64_on(*space, cpu(1), va).has_value());
    REQUIRE(tlb_caches(cpu(1), va));
    const std::uint32_t gen = frame_generation(pa);
    const auto stale = tlb_stale_hits();

    TlbFlusher flusher(space->cpu_set());
    flusher.issue_tlb_flush_with(TlbFlushOp::for_single(va),
                                 DynSegment(take_without_flush(*space, va)));
    CHECK_FALSE(space->page_table().page_walk(va).has_value());
    // Before dispatch: CPU 1 still translates through its TLB to the kept frame, which no grace
    // period can free.
    rcu_barrier();
    CHECK(slot_ref_count(pa) == 1);  // the flusher's
    CHECK(frame_generation(pa) == gen);
    CHECK(read_u64_on(*space, cpu(1), va).value() == first_u64_of_pattern(va));
    CHECK(tlb_stale_hits() == stale);  // stale translation, live frame: allowed
    {
      auto g = disable_preempt();
      flusher.dispatch_tlb_flush();
      CHECK_FALSE(tlb_caches(cpu(1), va));
      CHECK_FALSE(tlb_caches(cpu(0), va));
      CHECK(frame_generation(pa) == gen);  // our read section holds the grace period
    }
    rcu_barrier();
    CHECK(frame_generation(pa) != gen);
    CHECK(is_free(pa));
    CHECK(error_of(read_u64_on(*space, cpu(1), va)) == Error::PageFault);
    CHECK(error_of(read_u64_on(*space, cpu(0), va)) == Error::PageFault);
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("dispatch_flushes_every_cpu_the_space_is_active_on") {
    CpuCleanup cleanup;
    auto space = new_space();
    auto other = new_space();
    const Vaddr va = 0x5000;
    map_page(*space, va);
    map_page(*other, va);
    activate_on(space, cpu(1));
    activate_on(space, cpu(2));
    activate_on(other, cpu(3));
    REQUIRE(read_u64_on(*space, cpu(1), va).has_value());
    REQUIRE(read_u64_on(*space, cpu(2), va).has_value());
    REQUIRE(read_u64_on(*other, cpu(3), va).has_value());
    std::array<TlbStats, 4> before{};
    for (std::uint32_t i = 0; i < 4; ++i) before[i] = tlb_stats(cpu(i));
    const auto dispatch_before = tlb_dispatch_stats();
    CHECK(unmap_range(*space, va, kPageSize) == 1);
    const auto dispatch_after = tlb_dispatch_stats();
    CHECK(dispatch_after.dispatches == dispatch_before.dispatches + 1);
    CHECK(dispatch_after.cpu_flushes == dispatch_before.cpu_flushes + 2);
    CHECK(dispatch_after.frames_kept == dispatch_before.frames_kept + 1);
    CHECK(tlb_stats(cpu(1)).single_flushes == before[1].single_flushes + 1);
    CHECK(tlb_stats(cpu(2)).single_flushes == before[2].single_flushes + 1);
    CHECK(tlb_stats(cpu(3)).single_flushes == before[3].single_flushes);
    CHECK(tlb_stats(cpu(0)).single_flushes == before[0].single_flushes);
    CHECK_FALSE(tlb_caches(cpu(1), va));
    CHECK_FALSE(tlb_caches(cpu(2), va));
    CHECK(tlb_caches(cpu(3), va));  // another space's translation of the same address
    CHECK(error_of(read_u64_on(*space, cpu(1), va)) == Error::PageFault);
    CHECK(error_of(read_u64_on(*space, cpu(2), va)) == Error::PageFault);
    CHECK(read_u64_on(*other, cpu(3), va).value() == first_u64_of_pattern(va));
  }

  TEST_CASE("activation_moves_a_cpu_between_spaces") {
    auto a = new_space();
    auto b = new_space();
    const Vaddr va = 0x7000;
    map_page(*a, va);
    UFrame bframe = new_frame();
    std::memset(paddr_to_vaddr(bframe.paddr()), 0xbb, kPageSize);
    const Paddr bpa = map_frame_at(*b, va, bframe);
    BoundTo bound(cpu(0));
    REQUIRE(a->activate().has_value());
    CHECK(read_u64(*a, va).value() == first_u64_of_pattern(va));
    REQUIRE(tlb_caches(cpu(0), va));
    const auto full = tlb_stats(cpu(0)).full_flushes;
    REQUIRE(b->activate().has_value());
    CHECK(tlb_stats(cpu(0)).full_flushes == full + 1);
    CHECK(tlb_entries(cpu(0)).empty());  // a's translations are gone
    CHECK_FALSE(a->active_cpus().contains(cpu(0)));
    CHECK(b->active_cpus().contains(cpu(0)));
    CHECK(current_page_table_paddr() == b->root_paddr());
    CHECK(error_of(a->reader(va, 8)) == Error::AccessDenied);
    CHECK(read_u64(*b, va).value() == 0xbbbb'bbbb'bbbb'bbbbULL);
    auto entries = tlb_entries(cpu(0));
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].va == va);
    CHECK(entries[0].pa == bpa);
    // a's shootdowns no longer target this CPU: b's entry survives them.
    const auto flushes = tlb_dispatch_stats().cpu_flushes;
    CHECK(unmap_range(*a, va, kPageSize) == 1);
    CHECK(tlb_dispatch_stats().cpu_flushes == flushes);
    CHECK(tlb_caches(cpu(0), va));
    CHECK(tlb_disagreements(cpu(0), *b).empty());
    REQUIRE(VmSpace::deactivate_current().has_value());
    CHECK(current_page_table_paddr() == kernel_page_table().root_paddr());
    CHECK(tlb_entries(cpu(0)).empty());
    CHECK(b->active_cpus().is_empty());
  }

  TEST_CASE("flush_op_encoding") {
    CHECK(TlbFlushOp::kFlushAllThreshold == 32);
    CHECK(TlbFlushOp::for_all().is_all());
    const TlbFlushOp single = TlbFlushOp::for_single(0x1234);
    CHECK_FALSE(single.is_all());
    CHECK(single.start() == 0x1000);  // rounded down to its page
    CHECK(single.num_pages() == 1);
    CHECK(single == TlbFlushOp::for_single(0x1000));
    auto two = TlbFlushOp::for_range({0x1000, 0x3000});
    REQUIRE(two.has_value());
    CHECK(two->start() == 0x1000);
    CHECK(two->num_pages() == 2);
    CHECK(*TlbFlushOp::for_range({0x1000, 0x2000}) == TlbFlushOp::for_single(0x1000));
    auto below = TlbFlushOp::for_range({0x10'0000, 0x10'0000 + 31 * kPageSize});
    REQUIRE(below.has_value());
    CHECK_FALSE(below->is_all());
    CHECK(below->num_pages() == 31);
    CHECK(below->start() == 0x10'0000);
    auto at = TlbFlushOp::for_range({0x10'0000, 0x10'0000 + 32 * kPageSize});
    REQUIRE(at.has_value());
    CHECK(at->is_all());
    CHECK(*at == TlbFlushOp::for_all());
    CHECK(TlbFlushOp::for_range({0, kMaxUserspaceVaddr})->is_all());
    // The top user page still encodes.
    auto top = TlbFlushOp::for_range({kMaxUserspaceVaddr - kPageSize, kMaxUserspaceVaddr});
    REQUIRE(top.has_value());
    CHECK(top->start() == kMaxUserspaceVaddr - kPageSize);
    // Invalid ranges (OSTD panics).
    CHECK(error_of(TlbFlushOp::for_range({0x1001, 0x3000})) == Error::InvalidArgs);
    CHECK(error_of(TlbFlushOp::for_range({0x1000, 0x3001})) == Error::InvalidArgs);
    CHECK(error_of(TlbFlushOp::for_range({0x1000, 0x1000})) == Error::InvalidArgs);
    CHECK(error_of(TlbFlushOp::for_range({0x3000, 0x1000})) == Error::InvalidArgs);
  }

  TEST_CASE("flusher_switches_to_flush_all_at_32_pages") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr base = 0x100'0000;
    const Vaddr unrelated = 0x900'0000 + 40 * kPageSize;
    for (std::size_t i = 0; i < 40; ++i) map_page(*space, base + i * kPageSize);
    map_page(*space, unrelated);
    auto touch_all = [&] {
      for (std::size_t i = 0; i < 40; ++i)
        REQUIRE(read_u64(*space, base + i * kPageSize).has_value());
      REQUIRE(read_u64(*space, unrelated).has_value());
    };
    touch_all();
    {
      TlbFlusher f(space->cpu_set());
      for (std::size_t i = 0; i < 31; ++i)
        f.issue_tlb_flush(TlbFlushOp::for_single(base + i * kPageSize));
      const auto before = tlb_stats(cpu(0));
      f.dispatch_tlb_flush();
      const auto after = tlb_stats(cpu(0));
      CHECK(after.single_flushes == before.single_flushes + 31);
      CHECK(after.full_flushes == before.full_flushes);
      CHECK_FALSE(tlb_caches(cpu(0), base));
      CHECK_FALSE(tlb_caches(cpu(0), base + 30 * kPageSize));
      CHECK(tlb_caches(cpu(0), base + 31 * kPageSize));
      CHECK(tlb_caches(cpu(0), unrelated));
    }
    touch_all();
    {
      TlbFlusher f(space->cpu_set());
      for (std::size_t i = 0; i < 32; ++i)
        f.issue_tlb_flush(TlbFlushOp::for_single(base + i * kPageSize));
      const auto before = tlb_stats(cpu(0));
      f.dispatch_tlb_flush();
      const auto after = tlb_stats(cpu(0));
      CHECK(after.full_flushes == before.full_flushes + 1);
      CHECK(after.single_flushes == before.single_flushes);
      CHECK(tlb_entries(cpu(0)).empty());
    }
    touch_all();
    {
      // Ranges add up too: 20 + 12 pages.
      TlbFlusher f(space->cpu_set());
      f.issue_tlb_flush(*TlbFlushOp::for_range({base, base + 20 * kPageSize}));
      f.issue_tlb_flush(*TlbFlushOp::for_range({base + 20 * kPageSize, base + 32 * kPageSize}));
      f.dispatch_tlb_flush();
      CHECK(tlb_entries(cpu(0)).empty());
    }
    {
      // Nothing queued: dispatch is a no-op.
      TlbFlusher f(space->cpu_set());
      CHECK_FALSE(f.has_pending());
      const auto before = tlb_dispatch_stats();
      f.dispatch_tlb_flush();
      CHECK(tlb_dispatch_stats().dispatches == before.dispatches);
    }
  }

  TEST_CASE("range_flush_removes_every_overlapping_entry_and_all_clears_the_tlb") {
    // docs/spec_cases.md case 70: a Range flush must remove every entry in the range, not only the
    // one at its start; All must clear everything.
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr base = 0x20'0000;
    auto page = [&](std::size_t i) { return base + i * kPageSize; };
    for (std::size_t i = 0; i < 8; ++i) map_page(*space, page(i));
    for (std::size_t i = 0; i < 8; ++i) REQUIRE(read_u64(*space, page(i)).has_value());
    {
      TlbFlusher f(space->cpu_set());
      f.issue_tlb_flush(*TlbFlushOp::for_range({page(2), page(6)}));
      f.dispatch_tlb_flush();
    }
    for (std::size_t i = 0; i < 8; ++i) {
      CAPTURE(i);
      CHECK(tlb_caches(cpu(0), page(i)) == (i < 2 || i >= 6));
    }
    {
      TlbFlusher f(space->cpu_set());
      f.issue_tlb_flush(TlbFlushOp::for_all());
      f.dispatch_tlb_flush();
    }
    CHECK(tlb_entries(cpu(0)).empty());
    // docs/spec_cases.md invariant 20: after unmap(v) no entry for v remains.
    for (std::size_t i = 0; i < 8; ++i) REQUIRE(read_u64(*space, page(i)).has_value());
    CHECK(unmap_range(*space, page(3), kPageSize) == 1);
    CHECK_FALSE(tlb_caches(cpu(0), page(3)));
    CHECK(tlb_caches(cpu(0), page(4)));
    // Unmapping a whole huge mapping flushes every page of it.
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x4000'0000, 0x4000'0000 + k2M});
      REQUIRE(c->map_segment(new_huge_segment(), kUserRw).has_value());
    }
    for (Vaddr va : {0x4000'0000ULL, 0x4000'0000ULL + 0x1f'f000})
      REQUIRE(read_u64(*space, va).has_value());
    CHECK(unmap_range(*space, 0x4000'0000, k2M) == 512);
    CHECK_FALSE(tlb_caches(cpu(0), 0x4000'0000));
    CHECK_FALSE(tlb_caches(cpu(0), 0x4000'0000 + 0x1f'f000));
    CHECK(tlb_disagreements(cpu(0), *space).empty());
  }

  TEST_CASE("unmap_frees_frames_only_after_a_grace_period_following_its_dispatch") {
    // A copy on another CPU may have translated through the old entry just before the
    // shootdown and still be copying: unmap's frames (data pages and detached page-table
    // sub-trees alike) must outlive every read section that was running at dispatch.
    CpuCleanup cleanup;
    auto space = new_space();
    activate_on(space, cpu(1));
    const Vaddr va = 0x5000;
    const Vaddr region = 0x4000'0000;  // a 2 MiB range whose level-1 table gets detached whole
    const Paddr pa = map_page(*space, va);
    const Paddr in_subtree = map_page(*space, region + 0x3000);
    REQUIRE(read_u64_on(*space, cpu(1), va).has_value());
    const std::uint32_t gen = frame_generation(pa);
    const std::uint32_t sub_gen = frame_generation(in_subtree);
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + kPageSize});
      REQUIRE(c->unmap(kPageSize).value() == 1);
      auto c2 = space->cursor_mut(g, {region, region + k2M});
      REQUIRE(c2->unmap(k2M).value() == 1);
      CHECK_FALSE(tlb_caches(cpu(1), va));  // dispatched
      CHECK(frame_generation(pa) == gen);   // but not freed under a running read section
      CHECK(frame_generation(in_subtree) == sub_gen);
      CHECK(slot_ref_count(pa) == 1);
    }
    rcu_barrier();
    CHECK(frame_generation(pa) != gen);
    CHECK(frame_generation(in_subtree) != sub_gen);
    CHECK(is_free(pa));
  }

  TEST_CASE("flusher_keeps_frames_alive_until_dispatch_and_a_grace_period") {
    auto space = new_space();
    const auto frames_kept = tlb_dispatch_stats().frames_kept;
    UFrame frame = new_frame();
    const Paddr pa = frame.paddr();
    const std::uint32_t gen = frame_generation(pa);
    TlbFlusher f(space->cpu_set());
    f.issue_tlb_flush_with(TlbFlushOp::for_single(0x1000), DynSegment(USegment(std::move(frame))));
    CHECK(slot_ref_count(pa) == 1);
    rcu_barrier();
    CHECK(slot_ref_count(pa) == 1);  // queued, not dispatched: no grace period frees it
    {
      auto g = disable_preempt();
      f.dispatch_tlb_flush();
      CHECK(tlb_dispatch_stats().frames_kept == frames_kept + 1);
      CHECK(frame_generation(pa) == gen);  // handed to RCU; our read section holds it
    }
    rcu_barrier();
    CHECK(frame_generation(pa) != gen);
    CHECK(is_free(pa));
  }

  TEST_CASE("dropping_an_undispatched_flusher_frees_its_frames_without_flushing") {
    // OSTD semantics, kept: a flusher destroyed with queued operations drops them and releases
    // its frames after a grace period only. A CPU may then still cache a translation to a freed
    // frame; the checking mode shows it. (CursorMut::unmap always dispatches.)
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    TlbCheckScope check(TlbCheckMode::Count);
    const Vaddr va = 0x5000;
    const Paddr pa = map_page(*space, va);
    REQUIRE(read_u64(*space, va).has_value());
    const std::uint32_t gen = frame_generation(pa);
    {
      auto g = disable_preempt();
      {
        TlbFlusher f(space->cpu_set());
        f.issue_tlb_flush_with(TlbFlushOp::for_single(va),
                               DynSegment(take_without_flush(*space, va)));
      }
      CHECK(frame_generation(pa) == gen);
    }
    rcu_barrier();
    CHECK(frame_generation(pa) != gen);
    CHECK(tlb_caches(cpu(0), va));
    const auto stale = tlb_stale_hits();
    (void)read_u64(*space, va);
    CHECK(tlb_stale_hits() == stale + 1);
  }

  TEST_CASE("checking_mode_detects_a_stale_frame_hit") {
    // The keep-alive is skipped on purpose: the mapping is removed through the raw page-table
    // cursor and its frame freed after a grace period with no TLB flush at all.
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    TlbCheckScope check(TlbCheckMode::Count);
    const Vaddr va = 0x6000;
    const Paddr pa = map_page(*space, va);
    REQUIRE(write_u64(*space, va + 8, 0).has_value());  // caches a writable entry
    REQUIRE(tlb_caches(cpu(0), va));
    const std::uint32_t gen = frame_generation(pa);
    (void)take_without_flush(*space, va);  // dropped here: freed without any flush
    rcu_barrier();
    REQUIRE(frame_generation(pa) != gen);
    REQUIRE(tlb_caches(cpu(0), va));
    const auto stale = tlb_stale_hits();
    const auto cpu_stale = tlb_stats(cpu(0)).stale_frame_hits;
    (void)read_u64(*space, va);
    CHECK(tlb_stale_hits() == stale + 1);
    CHECK(tlb_stats(cpu(0)).stale_frame_hits == cpu_stale + 1);
    // Writes through a stale writable entry are caught too.
    REQUIRE(write_u64(*space, va + 8, 1).has_value());
    CHECK(tlb_stale_hits() >= stale + 2);
    // With the check off the same hit goes unnoticed.
    set_tlb_check_mode(TlbCheckMode::Off);
    const auto off = tlb_stale_hits();
    (void)read_u64(*space, va);
    CHECK(tlb_stale_hits() == off);
  }

  TEST_CASE("checking_mode_abort_kills_the_process_on_a_stale_frame_hit" *
            vmspace::test::skip_death_test(
                "checking_mode_abort_kills_the_process_on_a_stale_frame_hit")) {
    CHECK(dies_with(
        [] {
          set_tlb_check_mode(TlbCheckMode::Abort);
          auto space = VmSpace::create();
          if (!space) std::_Exit(3);
          auto binding = CpuBinding::bind(cpu(0));
          if (!binding || !(*space)->activate()) std::_Exit(4);
          auto f = FrameAllocOptions().alloc_frame();
          if (!f) std::_Exit(5);
          {
            auto g = disable_preempt();
            auto c = (*space)->cursor_mut(g, {0x6000, 0x7000});
            if (!c || !c->map(UFrame(std::move(*f)), kUserRw)) std::_Exit(6);
          }
          if (!read_u64(**space, 0x6000)) std::_Exit(7);
          {
            auto g = disable_preempt();
            auto c = (*space)->page_table().cursor_mut(g, {0x6000, 0x7000});
            if (!c) std::_Exit(8);
            auto frag = c->take_next(kPageSize);  // dropped at once: no keep-alive, no flush
          }
          rcu_barrier();
          (void)read_u64(**space, 0x6000);
          std::_Exit(0);  // not reached when the detector works
        },
        "freed since the entry was filled"));
  }

  TEST_CASE("normal_unmap_never_trips_the_detector") {
    // Negative control: the same pattern through CursorMut::unmap (keep-alive + dispatch),
    // with two caching CPUs and immediate frame reuse, never reports a stale hit.
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    auto space = new_space();
    activate_on(space, cpu(0));
    activate_on(space, cpu(1));
    const auto stale = tlb_stale_hits();
    const Vaddr va = 0x6000;
    for (int round = 0; round < 50; ++round) {
      UFrame frame = new_frame();
      std::memset(paddr_to_vaddr(frame.paddr()), round, kPageSize);
      map_frame_at(*space, va, std::move(frame));
      const std::uint64_t want = 0x0101'0101'0101'0101ULL * static_cast<std::uint8_t>(round);
      REQUIRE(read_u64_on(*space, cpu(0), va).value() == want);
      REQUIRE(read_u64_on(*space, cpu(1), va).value() == want);
      {
        BoundTo bound(cpu(1));
        REQUIRE(write_u64(*space, va + 8, want).has_value());
      }
      CHECK(unmap_range(*space, va, kPageSize) == 1);
      REQUIRE(error_of(read_u64_on(*space, cpu(0), va)) == Error::PageFault);
      REQUIRE(error_of(read_u64_on(*space, cpu(1), va)) == Error::PageFault);
      rcu_barrier();  // the frame is free now and likely reused next round
    }
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("every_cached_translation_agrees_with_the_page_table_after_dispatch") {
    // docs/spec_cases.md invariant 19 over a deterministic random mix of maps, unmaps, protects
    // (always flushed and dispatched), accesses and activations on four CPUs and two spaces.
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    const auto stale = tlb_stale_hits();
    std::array<std::shared_ptr<VmSpace>, 2> spaces = {new_space(), new_space()};
    std::array<int, 4> active = {-1, -1, -1, -1};  // index into spaces, or -1
    const Vaddr base = 0x30'0000;
    constexpr std::size_t kPages = 24;
    std::uint64_t state = 0x9e37'79b9'7f4a'7c15ULL;
    auto next = [&](std::uint64_t n) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      return (state >> 33) % n;
    };
    std::size_t accesses_ok = 0;
    for (int step = 0; step < 600; ++step) {
      const auto c = static_cast<std::uint32_t>(next(4));
      const int s = static_cast<int>(next(2));
      const Vaddr va = base + next(kPages) * kPageSize;
      VmSpace& space = *spaces[static_cast<std::size_t>(s)];
      switch (next(6)) {
        case 0: {  // activate (or deactivate) on c
          BoundTo bound(cpu(c));
          if (next(4) == 0) {
            REQUIRE(VmSpace::deactivate_current().has_value());
            active[c] = -1;
          } else {
            REQUIRE(spaces[static_cast<std::size_t>(s)]->activate().has_value());
            active[c] = s;
          }
          break;
        }
        case 1: {  // map if absent
          if (!space.page_table().page_walk(va))
            map_page(space, va, next(2) == 0 ? kUserRo : kUserRw);
          break;
        }
        case 2: {  // unmap
          (void)unmap_range(space, va, kPageSize);
          break;
        }
        case 3: {  // protect, then flush and dispatch
          auto g = disable_preempt();
          auto cur = space.cursor_mut(g, {va, va + kPageSize});
          REQUIRE(cur.has_value());
          const PageFlags to = next(2) == 0 ? PageFlags::R : PageFlags::RW;
          auto r = cur->protect_next(kPageSize, [to](PageFlags& f, CachePolicy&) { f = to; });
          REQUIRE(r.has_value());
          if (*r) cur->flusher().issue_tlb_flush(TlbFlushOp::for_single(va));
          cur->flusher().dispatch_tlb_flush();
          break;
        }
        default: {  // access on c through whatever is active there
          if (active[c] < 0) break;
          BoundTo bound(cpu(c));
          const VmSpace& here = *spaces[static_cast<std::size_t>(active[c])];
          auto r =
              next(2) == 0 ? read_u64(here, va).has_value() : write_u64(here, va, step).has_value();
          if (r) ++accesses_ok;
          break;
        }
      }
      // The library's own checker (check/invariants.hpp) agrees, and the tables stay sound.
      check::CheckReport report;
      check::check_tlb_coherence(report);
      for (const auto& sp : spaces) check::check_user_table(sp->page_table(), report);
      REQUIRE_MESSAGE(report.ok(), report.to_string());
      for (std::uint32_t i = 0; i < 4; ++i) {
        CAPTURE(step);
        if (active[i] < 0) {
          REQUIRE(tlb_entries(cpu(i)).empty());
        } else {
          const auto bad = tlb_disagreements(cpu(i), *spaces[static_cast<std::size_t>(active[i])]);
          REQUIRE_MESSAGE(bad.empty(), (bad.empty() ? std::string() : bad.front()));
        }
      }
    }
    CHECK(accesses_ok > 50);  // the mix really exercised the TLBs
    for (auto& sp : spaces) sp.reset();
    CHECK(tlb_stale_hits() == stale);
  }
}

// mmu_translate: the translation readers and writers use, without the copy.
TEST_SUITE("unit") {
  TEST_CASE("mmu_translate_walks_once_then_hits_the_tlb_and_sets_accessed_and_dirty") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr va = 0x40000;
    const Paddr pa = map_page(*space, va);
    const TlbStats before = tlb_stats(cpu(0));
    {
      auto g = disable_preempt();
      CHECK(mmu_translate(g, va + 0x123, PageFaultAccess::Read).value() == pa + 0x123);
      CHECK(mmu_translate(g, va + 0x456, PageFaultAccess::Read).value() == pa + 0x456);
    }
    const TlbStats after_reads = tlb_stats(cpu(0));
    CHECK(after_reads.misses == before.misses + 1);
    CHECK(after_reads.hits == before.hits + 1);
    const auto raw_accessed = [&] {
      auto w = space->page_table().page_walk(va);
      REQUIRE(w.has_value());
      return w->second;
    };
    // A read sets ACCESSED but not DIRTY; the read-only cached entry cannot serve a write,
    // which walks again and sets DIRTY.
    CHECK(has(raw_accessed().flags, PageFlags::ACCESSED));
    CHECK_FALSE(has(raw_accessed().flags, PageFlags::DIRTY));
    {
      auto g = disable_preempt();
      CHECK(mmu_translate(g, va, PageFaultAccess::Write).value() == pa);
    }
    CHECK(tlb_stats(cpu(0)).misses == after_reads.misses + 1);
    CHECK(has(raw_accessed().flags, PageFlags::DIRTY));
  }

  TEST_CASE("mmu_translate_reports_faults_without_calling_the_handler") {
    auto space = new_space();
    ActiveOn active(space, cpu(0));
    const Vaddr ro = 0x50000;
    map_page(*space, ro, kUserRo);
    const Vaddr none = 0x51000;
    map_page(*space, none, kUserNone);
    unsigned handler_calls = 0;
    auto prev = inject_user_page_fault_handler([&](const PageFaultInfo&) -> Result<void> {
      ++handler_calls;
      return {};
    });
    {
      auto g = disable_preempt();
      CHECK(mmu_translate(g, ro, PageFaultAccess::Read).has_value());
      CHECK(error_of(mmu_translate(g, ro, PageFaultAccess::Write)) == Error::PageFault);
      CHECK(error_of(mmu_translate(g, none, PageFaultAccess::Read)) == Error::PageFault);
      CHECK(error_of(mmu_translate(g, 0x52000, PageFaultAccess::Read)) == Error::PageFault);
      CHECK(error_of(mmu_translate(g, kMaxUserspaceVaddr, PageFaultAccess::Read)) ==
            Error::AccessDenied);
      CHECK(error_of(mmu_translate(g, ~Vaddr{0}, PageFaultAccess::Read)) == Error::AccessDenied);
    }
    CHECK(handler_calls == 0);
    inject_user_page_fault_handler(std::move(prev));
  }

  TEST_CASE("mmu_translate_needs_an_active_space") {
    {
      auto g = disable_preempt();  // unbound thread
      CHECK(error_of(mmu_translate(g, 0x1000, PageFaultAccess::Read)) == Error::AccessDenied);
    }
    BoundTo bound(cpu(1));
    REQUIRE(VmSpace::deactivate_current().has_value());
    auto g = disable_preempt();
    CHECK(error_of(mmu_translate(g, 0x1000, PageFaultAccess::Read)) == Error::AccessDenied);
  }
}
