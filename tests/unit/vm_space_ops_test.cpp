// The kernel extensions of VmSpace::CursorMut (vm_space.hpp, "Kernel extensions"): range
// protect with its flush, fork sharing (copy-on-write and shared) and ACCESSED/DIRTY harvest.
#include <doctest/doctest.h>

#include <cstdint>
#include <memory>

#include <vmspace/mmu.hpp>
#include <vmspace/vm_space.hpp>

#include "result_check.hpp"
#include "vm_test_util.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

constexpr Vaddr kBase = 0x40'0000;
using ForkMapping = VmSpace::CursorMut::ForkMapping;

Result<Paddr> translate(Vaddr va, PageFaultAccess access) {
  auto g = disable_preempt();
  return mmu_translate(g, va, access);
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("protect_range_write_protects_and_flushes_cached_translations") {
    CpuCleanup cleanup;
    auto space = new_space();
    for (int i = 0; i < 3; ++i) map_page(*space, kBase + i * kPageSize);
    {
      ActiveOn on(space, cpu(0));
      // Cache a writable translation first: without the flush the write would still succeed.
      REQUIRE(translate(kBase + kPageSize, PageFaultAccess::Write).has_value());
      {
        auto g = disable_preempt();
        auto c = space->cursor_mut(g, {kBase, kBase + 3 * kPageSize});
        REQUIRE(c.has_value());
        auto n = c->protect(3 * kPageSize, [](PageFlags& f, CachePolicy&) { f &= ~PageFlags::W; });
        REQUIRE(n.has_value());
        CHECK(*n == 3);
        CHECK(c->virt_addr() == kBase + 3 * kPageSize);
      }
      CHECK(error_of(translate(kBase + kPageSize, PageFaultAccess::Write)) == Error::PageFault);
      CHECK(translate(kBase + kPageSize, PageFaultAccess::Read).has_value());
    }
    CHECK(pte_prop(*space, kBase)->flags == PageFlags::R);
  }

  TEST_CASE("protect_range_rejects_bad_lengths") {
    auto space = new_space();
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {kBase, kBase + kPageSize});
    REQUIRE(c.has_value());
    auto noop = [](PageFlags&, CachePolicy&) {};
    CHECK(error_of(c->protect(100, noop)) == Error::InvalidArgs);
    CHECK(error_of(c->protect(2 * kPageSize, noop)) == Error::InvalidArgs);
  }

  TEST_CASE("fork_into_copy_on_write_shares_frames_read_only_in_both_spaces") {
    CpuCleanup cleanup;
    auto parent = new_space();
    auto child = new_space();
    const Paddr pa0 = map_page(*parent, kBase);
    const Paddr pa2 = map_page(*parent, kBase + 2 * kPageSize, kUserRo);
    {
      ActiveOn on(parent, cpu(0));
      REQUIRE(translate(kBase, PageFaultAccess::Write).has_value());  // cached writable
      auto g = disable_preempt();
      auto pc = parent->cursor_mut(g, {kBase, kBase + 4 * kPageSize});
      auto cc = child->cursor_mut(g, {kBase, kBase + 4 * kPageSize});
      REQUIRE(pc.has_value());
      REQUIRE(cc.has_value());
      auto n = pc->fork_into(*cc, 4 * kPageSize, ForkMapping::CopyOnWrite);
      REQUIRE(n.has_value());
      CHECK(*n == 2);
    }
    {
      ActiveOn on(parent, cpu(0));
      // The parent's cached writable translation is gone.
      CHECK(error_of(translate(kBase, PageFaultAccess::Write)) == Error::PageFault);
    }
    // The parent keeps the ACCESSED/DIRTY its own write set; the child starts clean.
    CHECK((pte_prop(*parent, kBase)->flags & ~(PageFlags::ACCESSED | PageFlags::DIRTY)) ==
          PageFlags::R);
    CHECK(pte_prop(*child, kBase)->flags == PageFlags::R);
    CHECK(child->page_table().page_walk(kBase)->first == pa0);
    CHECK(child->page_table().page_walk(kBase + 2 * kPageSize)->first == pa2);
    CHECK_FALSE(pte_prop(*child, kBase + kPageSize).has_value());
    // Two page tables reference each frame now.
    auto g = disable_preempt();
    auto c = parent->cursor(g, {kBase, kBase + kPageSize});
    auto q = c->query();
    REQUIRE(q.has_value());
    REQUIRE(q->second.has_value());
    CHECK((*q->second->frame)->reference_count() == 2);
  }

  TEST_CASE("fork_into_shared_keeps_write_permission") {
    auto parent = new_space();
    auto child = new_space();
    const Paddr pa = map_page(*parent, kBase);
    {
      auto g = disable_preempt();
      auto pc = parent->cursor_mut(g, {kBase, kBase + kPageSize});
      auto cc = child->cursor_mut(g, {kBase, kBase + kPageSize});
      REQUIRE(pc->fork_into(*cc, kPageSize, ForkMapping::Shared).has_value());
    }
    CHECK(pte_prop(*parent, kBase)->flags == PageFlags::RW);
    CHECK(pte_prop(*child, kBase)->flags == PageFlags::RW);
    CHECK(child->page_table().page_walk(kBase)->first == pa);
  }

  TEST_CASE("fork_into_refuses_a_child_that_already_has_a_mapping") {
    auto parent = new_space();
    auto child = new_space();
    map_page(*parent, kBase);
    map_page(*child, kBase);
    auto g = disable_preempt();
    auto pc = parent->cursor_mut(g, {kBase, kBase + kPageSize});
    auto cc = child->cursor_mut(g, {kBase, kBase + kPageSize});
    CHECK(error_of(pc->fork_into(*cc, kPageSize, ForkMapping::CopyOnWrite)) ==
          Error::AlreadyMapped);
  }

  TEST_CASE("fork_into_splits_a_huge_mapping_into_base_pages") {
    auto parent = new_space();
    auto child = new_space();
    const Vaddr huge = 0x4000'0000;
    {
      auto g = disable_preempt();
      auto c = parent->cursor_mut(g, {huge, huge + k2M});
      REQUIRE(c->map_segment(new_huge_segment(), kUserRw).has_value());
    }
    auto g = disable_preempt();
    auto pc = parent->cursor_mut(g, {huge, huge + k2M});
    auto cc = child->cursor_mut(g, {huge, huge + k2M});
    auto n = pc->fork_into(*cc, k2M, ForkMapping::CopyOnWrite);
    REQUIRE(n.has_value());
    CHECK(*n == 512);
    CHECK(child->page_table().page_walk(huge + 5 * kPageSize)->first ==
          parent->page_table().page_walk(huge + 5 * kPageSize)->first);
  }

  TEST_CASE("take_accessed_dirty_reports_and_clears_the_bits") {
    CpuCleanup cleanup;
    auto space = new_space();
    map_page(*space, kBase);
    map_page(*space, kBase + kPageSize);
    auto harvest = [&](Vaddr va) {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + kPageSize});
      REQUIRE(c.has_value());
      auto r = c->take_accessed_dirty_next(kPageSize);
      REQUIRE(r.has_value());
      REQUIRE(r->has_value());
      return **r;
    };
    {
      ActiveOn on(space, cpu(0));
      REQUIRE(translate(kBase, PageFaultAccess::Write).has_value());
      REQUIRE(translate(kBase + kPageSize, PageFaultAccess::Read).has_value());
      auto a = harvest(kBase);
      CHECK(a.accessed);
      CHECK(a.dirty);
      CHECK(a.range.start == kBase);
      auto b = harvest(kBase + kPageSize);
      CHECK(b.accessed);
      CHECK_FALSE(b.dirty);
      // Cleared, and flushed: the next write through the same CPU sets them again.
      auto a2 = harvest(kBase);
      CHECK_FALSE(a2.accessed);
      CHECK_FALSE(a2.dirty);
      REQUIRE(translate(kBase, PageFaultAccess::Write).has_value());
      auto a3 = harvest(kBase);
      CHECK(a3.accessed);
      CHECK(a3.dirty);
    }
    auto g = disable_preempt();
    auto c = space->cursor_mut(g, {kBase + 2 * kPageSize, kBase + 3 * kPageSize});
    auto none = c->take_accessed_dirty_next(kPageSize);
    REQUIRE(none.has_value());
    CHECK_FALSE(none->has_value());
  }
}
