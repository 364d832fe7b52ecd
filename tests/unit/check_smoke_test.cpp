#include <doctest/doctest.h>

#include <string>

#include <vmspace/check/invariants.hpp>
#include <vmspace/check/model.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/vm_space.hpp>

using namespace vmspace;
using namespace vmspace::check;

TEST_SUITE("unit") {
  TEST_CASE("smoke_model_matches_user_table") {
    auto space = VmSpace::create().value();
    AbstractModel model(model_config<UserPtConfig>());
    const auto prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    auto pa = global_frame_allocator().alloc(FrameLayout{2u << 20, 2u << 20});
    REQUIRE(pa.has_value());
    auto huge = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + (2u << 20)}, [](Paddr) {
                  return NoMeta{};
                }).value();
    {
      auto g = disable_preempt();
      auto c = space->page_table().cursor_mut(g, {0, 8u << 20}).value();
      ModelCursor mc(model, {0, 8u << 20});
      CHECK(mc.guard_level() == c.guard_level());
      for (Vaddr va = 0; va < 0x4000; va += kPageSize) {
        auto f = FrameAllocOptions().alloc_frame().value();
        const Paddr fpa = f.paddr();
        REQUIRE(c.map(UserItem::tracked(UFrame(std::move(f)), prop)).has_value());
        REQUIRE(mc.map(fpa, 1, prop).has_value());
      }
      REQUIRE(c.jump(2u << 20).has_value());
      REQUIRE(mc.jump(2u << 20).has_value());
      REQUIRE(c.map(UserItem::tracked(USegment(huge), prop)).has_value());
      REQUIRE(mc.map(*pa, 2, prop).has_value());
      REQUIRE(c.jump((2u << 20) + 0x3000).has_value());
      REQUIRE(mc.jump((2u << 20) + 0x3000).has_value());
      auto op = [](PageProperty& p) { p.flags = PageFlags::R; };
      auto r1 = c.protect_next(0x1000, op);
      auto r2 = mc.protect_next(0x1000, op);
      REQUIRE(r1.has_value());
      REQUIRE(r2.has_value());
      CHECK(*r1 == *r2);
      CHECK(c.virt_addr() == mc.virt_addr());
    }
    CHECK(model.diff(interpret(space->page_table())).empty());
    rcu_barrier();
    CheckReport report;
    RawRefs refs;
    check_user_table(space->page_table(), report, &refs);
    check_page_table(kernel_page_table(), report, &refs);
    check_frame_slots(report);
    check_refcount_law(refs, report);
    CHECK_MESSAGE(report.ok(), report.to_string());
    CHECK(refs[*pa + 0x3000] == 1);
  }

  TEST_CASE("smoke_checker_detects_corrupted_nr_children") {
    auto space = VmSpace::create().value();
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1000, 0x2000}).value();
      REQUIRE(c.map(UFrame(FrameAllocOptions().alloc_frame().value()),
                    PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback))
                  .has_value());
    }
    auto walk = space->page_table().page_walk(0x1000);
    REQUIRE(walk.has_value());
    // Find the level-1 node and corrupt its child count.
    using Pte = UserPtConfig::Pte;
    Paddr node = space->root_paddr();
    for (PagingLevel l = 4; l > 1; --l) {
      node = Pte::paddr(vmspace::internal::NodeView<UserPtConfig>{node}.load_acquire(
                            pte_index<Pte::Consts>(0x1000, l)),
                        l);
    }
    auto& meta = vmspace::internal::NodeView<UserPtConfig>{node}.meta();
    ++meta.nr_children;
    CheckReport report;
    check_user_table(space->page_table(), report);
    CHECK_FALSE(report.ok());
    CHECK(report.violations().front().rule == "nr_children");
    --meta.nr_children;
  }
}

#include "death_test.hpp"
#include "skip.hpp"

namespace {
#ifdef VMSPACE_CHECK_AFTER_OPS
constexpr bool kCheckAfterOps = true;
#else
constexpr bool kCheckAfterOps = false;
#endif
}  // namespace

TEST_SUITE("unit") {
  // Only meaningful in builds configured with -Dcheck_after_ops=true (the CI ledger build).
  TEST_CASE("check_after_ops_aborts_on_a_corrupted_child_count" *
            vmspace::test::skip_if(
                !kCheckAfterOps || !vmspace::test::death_tests_unavailable().empty(),
                "check_after_ops_aborts_on_a_corrupted_child_count",
                !kCheckAfterOps
                    ? std::string("needs a build configured with -Dcheck_after_ops=true")
                    : vmspace::test::death_tests_unavailable())) {
    auto space = VmSpace::create().value();
    const auto prop = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
    {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {0x1000, 0x3000}).value();
      REQUIRE(c.map(UFrame(FrameAllocOptions().alloc_frame().value()), prop).has_value());
    }
    using Pte = UserPtConfig::Pte;
    Paddr node = space->root_paddr();
    for (PagingLevel l = 4; l > 1; --l) {
      node = Pte::paddr(vmspace::internal::NodeView<UserPtConfig>{node}.load_acquire(
                            pte_index<Pte::Consts>(0x1000, l)),
                        l);
    }
    CHECK(vmspace::test::dies_with(
        [&] {
          ++vmspace::internal::NodeView<UserPtConfig>{node}.meta().nr_children;
          auto g = disable_preempt();
          auto c = space->cursor_mut(g, {0x2000, 0x3000}).value();
          (void)c.map(UFrame(FrameAllocOptions().alloc_frame().value()), prop);
        },
        "nr_children"));
  }
}
