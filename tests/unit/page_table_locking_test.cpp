// Range locking between cursors (OSTD `ostd/src/mm/page_table/cursor/locking.rs`, `lock_range`
// and `unlock_range`; docs/page_table.md; the vmspace test `overlapping_cursors` of
// `ostd/src/mm/test.rs`): blocking between threads, try_ variants, and the nested-cursor errors
// that replace OSTD's self-deadlock (WouldDeadlock for a node the calling thread holds,
// WouldBlock for a node another thread holds while the caller already holds a cursor).
//
// Every error must leave no lock held; the tests show it by creating the cursor afterwards and
// by the structural census (no reachable node locked). Waits are bounded; "B is blocked" is
// observed through the waiter bit B sets in the node's lock word before it sleeps.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <latch>
#include <optional>
#include <semaphore>
#include <vector>

#include <vmspace/page_table.hpp>

#include "pt_check.hpp"
#include "result_check.hpp"
#include "test_pt_config.hpp"
#include "thread_helpers.hpp"

using namespace vmspace;
using namespace vmspace::test;

namespace {

using C = HugeTestPtConfig<X86_64Pte>;

PageTable<C> new_pt() {
  auto pt = PageTable<C>::empty();
  REQUIRE(pt.has_value());
  return std::move(*pt);
}

RawItem item_at(Paddr pa) { return RawItem{pa, 1, rw_wb()}; }

Result<void, PageTableError> map_one(const PageTable<C>& pt, Vaddr va, RawItem item) {
  return vmspace::test::map_one(pt, va, item);
}

// The paddr mapped at `va` as seen through `cursor` (nullopt if absent).
std::optional<Paddr> paddr_via(Cursor<C>& cursor, Vaddr va) {
  if (!cursor.jump(va)) return std::nullopt;
  auto q = cursor.query();
  if (!q || !q->item) return std::nullopt;
  return q->item->paddr;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("overlapping_cursors") {
    // OSTD's test: the second range is not page-aligned, so it fails before any locking.
    auto pt = new_pt();
    run_bounded("overlapping_cursors", [&] {
      auto guard = disable_preempt();
      auto first = pt.cursor_mut(guard, {0x5000, 0x6000});
      REQUIRE(first.has_value());
      CHECK(error_of(pt.cursor_mut(guard, {0x5800, 0x6800})) == PageTableError::UnalignedVaddr);
      // Aligned, OSTD would spin for ever; we report the self-deadlock.
      CHECK(error_of(pt.cursor_mut(guard, {0x5000, 0x7000})) == PageTableError::WouldDeadlock);
    });
  }

  TEST_CASE("overlapping_cursor_on_another_thread_waits_until_the_holder_drops") {
    struct Case {
      const char* name;
      VaRange b_range;  // overlaps A's [0x5000, 0x7000), whose root is the leaf table
    };
    for (const Case& k : {Case{"blocks_on_the_root_in_phase_1", {0x4000, 0x8000}},
                          Case{"blocks_below_its_root_in_phase_2", {0, k2M}},
                          Case{"blocks_two_levels_below_its_root", {0, k1G}}}) {
      CAPTURE(k.name);
      auto pt = new_pt();
      auto guard = disable_preempt();
      std::optional<CursorMut<C>> a(pt.cursor_mut(guard, {0x5000, 0x7000}).value());
      REQUIRE(a->map(item_at(0xa000)).has_value());
      const Paddr leaf = node_at(pt, 0x5000, 1);
      REQUIRE(leaf != 0);

      std::atomic<bool> b_acquired{false};
      std::optional<Paddr> b_first, b_second;
      Async b([&] {
        auto g = disable_preempt();
        auto c = pt.cursor_mut(g, k.b_range);
        b_acquired.store(true);
        if (!c) return;
        b_first = paddr_via(*c, 0x5000);
        b_second = paddr_via(*c, 0x6000);
        (void)c->jump(0x7000);
        (void)c->map(item_at(0xc000));
      });
      // B sleeps on the leaf table's lock (it sets the waiter bit first).
      CHECK(wait_until([&] { return (lock_word<C>(leaf) & 1) != 0; }));
      CHECK_FALSE(b_acquired.load());
      // A keeps working while B waits, and B must see all of it.
      REQUIRE(a->map(item_at(0xb000)).has_value());
      a.reset();
      REQUIRE(b.wait());
      CHECK(b_acquired.load());
      CHECK(b_first == std::optional<Paddr>(0xa000));
      CHECK(b_second == std::optional<Paddr>(0xb000));
      CHECK(pt.page_walk(0x7000)->first == 0xc000);
      VMS_CHECK_PT_INVARIANTS(pt);
    }
  }

  TEST_CASE("a_cursor_waiting_on_a_node_that_gets_detached_retries_from_the_root") {
    auto pt = new_pt();
    constexpr VaRange kB{4 * k4K, 12 * k4K};
    for (Vaddr v = kB.start; v < kB.end; v += k4K)
      REQUIRE(map_one(pt, v, item_at(v + 0x100000)).has_value());
    const Paddr old_leaf = node_at(pt, kB.start, 1);
    const Paddr level2 = node_at(pt, kB.start, 2);
    auto guard = disable_preempt();
    std::optional<CursorMut<C>> a(
        pt.cursor_mut(guard, {0, 2 * k2M}).value());  // holds level2 and old_leaf
    std::atomic<bool> b_acquired{false};
    std::vector<std::optional<Paddr>> b_saw;
    Async b([&] {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, kB);  // rooted at old_leaf: waits on it
      b_acquired.store(true);
      if (!c) return;
      for (Vaddr v = kB.start; v < kB.end; v += k4K) b_saw.push_back(paddr_via(*c, v));
      (void)c->jump(kB.start);
      (void)c->take_next(k4K);
      (void)c->jump(kB.start);
      (void)c->map(item_at(0xb000));
    });
    CHECK(wait_until([&] { return (lock_word<C>(old_leaf) & 1) != 0; }));
    // Detach the leaf table B waits on. B gets it, sees it stray, and must start again from
    // the root: the slot is empty now, so B waits on the level-2 node A holds.
    {
      REQUIRE(a->jump(0).has_value());
      auto f = a->take_next(k2M);
      REQUIRE(f.has_value());
      REQUIRE(as_stray<C>(*f) != nullptr);
      CHECK(wait_until([&] { return (lock_word<C>(level2) & 1) != 0; }));
      CHECK_FALSE(b_acquired.load());
    }
    // A maps a new batch into a new leaf table; B must see it, not the detached one.
    REQUIRE(a->jump(kB.start).has_value());
    for (Vaddr v = kB.start; v < kB.end; v += k4K)
      REQUIRE(a->map(item_at(v + 0x200000)).has_value());
    a.reset();
    REQUIRE(b.wait());
    REQUIRE(b_saw.size() == kB.size() / k4K);
    for (std::size_t i = 0; i < b_saw.size(); ++i) {
      CAPTURE(i);
      CHECK(b_saw[i] == std::optional<Paddr>(kB.start + i * k4K + 0x200000));
    }
    CHECK(pt.page_walk(kB.start)->first == 0xb000);
    CHECK(node_at(pt, kB.start, 1) != old_leaf);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("a_cursor_waiting_to_create_a_node_under_a_detached_node_retries_from_the_root") {
    // B's range lies under an absent entry of the level-2 node, so B must lock that node to
    // create a leaf table; A holds it and detaches it.
    auto pt = new_pt();
    constexpr VaRange kB{k2M + 4 * k4K, k2M + 12 * k4K};
    REQUIRE(map_one(pt, 0, item_at(0xa000)).has_value());
    const Paddr old_level2 = node_at(pt, 0, 2);
    const Paddr level3 = node_at(pt, 0, 3);
    auto guard = disable_preempt();
    std::optional<CursorMut<C>> a(
        pt.cursor_mut(guard, {0, k1G}).value());  // holds level3, old_level2
    std::atomic<bool> b_acquired{false};
    std::optional<Paddr> b_saw;
    Async b([&] {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, kB);
      b_acquired.store(true);
      if (!c) return;
      b_saw = paddr_via(*c, kB.start);
      (void)c->jump(kB.start + k4K);
      (void)c->map(item_at(0xb000));
    });
    CHECK(wait_until([&] { return (lock_word<C>(old_level2) & 1) != 0; }));
    {
      auto f = a->take_next(k1G);
      REQUIRE(f.has_value());
      REQUIRE(as_stray<C>(*f) != nullptr);
      CHECK(as_stray<C>(*f)->len == k1G);
      // B found the node stray and went back to the root; now it waits on the level-3 node.
      CHECK(wait_until([&] { return (lock_word<C>(level3) & 1) != 0; }));
      CHECK_FALSE(b_acquired.load());
    }
    REQUIRE(a->jump(kB.start).has_value());
    REQUIRE(a->map(item_at(0xc000)).has_value());
    a.reset();
    REQUIRE(b.wait());
    CHECK(b_saw == std::optional<Paddr>(0xc000));
    CHECK(pt.page_walk(kB.start + k4K)->first == 0xb000);
    CHECK(node_at(pt, 0, 2) != old_level2);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("try_cursor_returns_would_block_while_another_thread_holds_the_range") {
    auto pt = new_pt();
    std::latch held(1);
    std::binary_semaphore release(0);
    Async b([&] {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, {0x5000, 0x6000});
      if (c) (void)c->map(item_at(0xa000));
      held.count_down();
      (void)release.try_acquire_for(kTimeout);
    });
    ReleaseOnExit release_b(release);
    held.wait();
    const Paddr leaf = node_at(pt, 0x5000, 1);
    const Paddr level2 = node_at(pt, 0x5000, 2);
    {
      auto guard = disable_preempt();
      CHECK(error_of(pt.try_cursor_mut(guard, {0x5000, 0x6000})) == PageTableError::WouldBlock);
      CHECK(error_of(pt.try_cursor(guard, {0x4000, 0x8000})) == PageTableError::WouldBlock);
      // Fails in phase 2, after locking the level-2 node: that lock must be released.
      CHECK(error_of(pt.try_cursor_mut(guard, {0, k2M})) == PageTableError::WouldBlock);
      CHECK(lock_word<C>(level2) == 0);
      CHECK(error_of(pt.try_cursor_mut(guard, {0, k1G})) == PageTableError::WouldBlock);
      CHECK(lock_word<C>(node_at(pt, 0, 3)) == 0);
      CHECK(lock_word<C>(level2) == 0);
      // Disjoint ranges in other sub-trees are free.
      auto other = pt.try_cursor_mut(guard, {k2M, k2M + k4K});
      REQUIRE(other.has_value());
      REQUIRE(other->map(item_at(0xd000)).has_value());
    }
    CHECK(lock_word<C>(leaf) != 0);
    release_b.now();
    REQUIRE(b.wait());
    auto guard = disable_preempt();
    auto c = pt.try_cursor_mut(guard, {0, k1G});
    REQUIRE(c.has_value());
    CHECK(paddr_via(*c, 0x5000) == std::optional<Paddr>(0xa000));
  }

  TEST_CASE("same_thread_overlapping_cursor_gets_would_deadlock_and_holds_nothing") {
    run_bounded("same-thread overlapping cursors", [] {
      auto pt = new_pt();
      auto guard = disable_preempt();
      std::optional<CursorMut<C>> a(pt.cursor_mut(guard, {0x5000, 0x6000}).value());
      REQUIRE(a->map(item_at(0xa000)).has_value());
      const Paddr leaf = node_at(pt, 0x5000, 1);
      const Paddr level2 = node_at(pt, 0x5000, 2);
      const Paddr level3 = node_at(pt, 0x5000, 3);
      const std::uint32_t held = lock_word<C>(leaf);
      CHECK(held != 0);
      const std::array<VaRange, 5> overlapping{VaRange{0x5000, 0x6000}, VaRange{0x4000, 0x8000},
                                               VaRange{0, k2M}, VaRange{0, k1G},
                                               VaRange{0, Vaddr{1} << 47}};
      for (VaRange r : overlapping) {
        CAPTURE(r);
        CHECK(error_of(pt.cursor_mut(guard, r)) == PageTableError::WouldDeadlock);
        CHECK(error_of(pt.cursor(guard, r)) == PageTableError::WouldDeadlock);
        CHECK(error_of(pt.try_cursor_mut(guard, r)) == PageTableError::WouldDeadlock);
        // Only A's lock is held.
        CHECK(lock_word<C>(leaf) == held);
        CHECK(lock_word<C>(level2) == 0);
        CHECK(lock_word<C>(level3) == 0);
        CHECK(lock_word<C>(pt.root_paddr()) == 0);
      }
      // Disjoint, in the same leaf table: that table is ours, so this is a deadlock too.
      CHECK(error_of(pt.cursor_mut(guard, {0x9000, 0xa000})) == PageTableError::WouldDeadlock);
      // A still works.
      REQUIRE(a->jump(0x5000).has_value());
      CHECK(a->query()->item->paddr == 0xa000);
      a.reset();
      VMS_CHECK_PT_INVARIANTS(pt);
      for (VaRange r : overlapping) {
        CAPTURE(r);
        auto c = pt.cursor_mut(guard, r);
        REQUIRE(c.has_value());
      }
    });
  }

  TEST_CASE("same_thread_disjoint_cursor_in_another_sub_tree_succeeds") {
    auto pt = new_pt();
    auto guard = disable_preempt();
    std::optional<CursorMut<C>> a(pt.cursor_mut(guard, {0, k4K}).value());
    // Another leaf table under the same level-2 node (created on the way, under that node's
    // lock), another 1 GiB region, and a read-only cursor elsewhere.
    auto b = pt.cursor_mut(guard, {k2M + k4K, k2M + 2 * k4K});
    REQUIRE(b.has_value());
    std::optional<CursorMut<C>> c(pt.cursor_mut(guard, {k1G, k1G + k2M}).value());
    auto d = pt.cursor(guard, {5 * k1G, 5 * k1G + k4K});
    REQUIRE(d.has_value());
    REQUIRE(a->map(item_at(0xa000)).has_value());
    REQUIRE(b->map(item_at(0xb000)).has_value());
    REQUIRE(c->map(item_at(0xc000)).has_value());
    // Replacing b: the new cursor is made while the old one is still held.
    b = pt.cursor_mut(guard, {3 * k2M, 3 * k2M + k4K});
    REQUIRE(b.has_value());
    // Dropping out of creation order is fine.
    a.reset();
    c.reset();
    b = pt.cursor_mut(guard, {k4K, 2 * k4K});  // a's table is free again
    REQUIRE(b.has_value());
    CHECK(paddr_via(*b, k4K) == std::nullopt);
    b = pt.cursor_mut(guard, {k1G, k1G + k4K});
    REQUIRE(b.has_value());
    CHECK(paddr_via(*b, k1G) == std::optional<Paddr>(0xc000));
  }

  TEST_CASE("same_thread_cursor_into_a_sub_tree_another_thread_holds_gets_would_block") {
    auto pt = new_pt();
    std::latch held(1);
    std::binary_semaphore release(0);
    std::atomic<bool> released{false};
    Async b([&] {
      auto g = disable_preempt();
      {
        auto c = pt.cursor_mut(g, {k1G, k1G + 2 * k4K});
        held.count_down();
        (void)release.try_acquire_for(kTimeout);
        released.store(true);
      }
    });
    ReleaseOnExit release_b(release);
    held.wait();
    auto guard = disable_preempt();
    auto a = pt.cursor_mut(guard, {0, k4K});
    REQUIRE(a.has_value());
    // Disjoint from B's range but in the leaf table B holds. Waiting here while holding A
    // could deadlock, so the request fails at once (if it waited, B would release only
    // after the timeout, and the result would not be WouldBlock).
    CHECK(error_of(pt.cursor_mut(guard, {k1G + 4 * k4K, k1G + 5 * k4K})) ==
          PageTableError::WouldBlock);
    CHECK(error_of(pt.cursor(guard, {k1G, k1G + k2M})) == PageTableError::WouldBlock);
    CHECK_FALSE(released.load());
    release_b.now();
    REQUIRE(b.wait());
    auto c = pt.cursor_mut(guard, {k1G + 4 * k4K, k1G + 5 * k4K});
    REQUIRE(c.has_value());
    REQUIRE(c->map(item_at(0xe000)).has_value());
  }

  TEST_CASE("holding_cursors_on_too_many_tables_is_refused") {
    std::vector<PageTable<C>> tables;
    for (std::size_t i = 0; i <= vmspace::internal::kMaxTablesWithCursors; ++i)
      tables.push_back(new_pt());
    auto guard = disable_preempt();
    std::vector<CursorMut<C>> held;
    for (std::size_t i = 0; i < vmspace::internal::kMaxTablesWithCursors; ++i) {
      auto c = tables[i].cursor_mut(guard, {0, k4K});
      REQUIRE(c.has_value());
      held.push_back(std::move(*c));
    }
    PageTable<C>& extra = tables.back();
    CHECK(error_of(extra.cursor_mut(guard, {0, k4K})) == PageTableError::TooManyTables);
    VMS_CHECK_PT_INVARIANTS(extra);
    // More cursors on a table already held are fine.
    CHECK(tables[0].cursor_mut(guard, {k2M, k2M + k4K}).has_value());
    held.erase(held.begin() + 3);
    auto c = extra.cursor_mut(guard, {0, k4K});
    REQUIRE(c.has_value());
  }
}
