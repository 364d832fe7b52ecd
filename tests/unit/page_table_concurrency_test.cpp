// Concurrent page-table use (suite `threaded`, run under ThreadSanitizer): parallel cursors in
// disjoint sub-trees, progress of serialised cursors on one leaf table, atomicity of
// overlapping cursors (two-phase locking, OSTD's serializability guarantee), lock-free walks
// racing with mapping, splitting and detaching (RCU keeps detached nodes alive), and many more
// threads than cores sleeping on one node lock.
//
// Detached nodes are real frames that go back to the allocator after a grace period and are
// reused at once (the allocator is LIFO). A walk that reads a node freed too early therefore
// sees another generation's entries or zeroes: the address checks below catch that, and
// ThreadSanitizer reports the non-atomic zeroing of the reused frame racing with the walk.
// (ASan cannot see emulated physical memory: it is one mmap, not heap blocks.)
//
// No sleeps synchronise anything; waits are bounded (thread_helpers.hpp). Loops stop after a
// number of iterations or at a deadline, whichever comes first, and assert only that enough
// work happened, never how fast.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <optional>
#include <semaphore>
#include <thread>
#include <vector>

#include <vmspace/page_table.hpp>

#include "pt_check.hpp"
#include "result_check.hpp"
#include "test_pt_config.hpp"
#include "thread_helpers.hpp"

using namespace vmspace;
using namespace vmspace::test;
using namespace std::chrono_literals;

namespace {

using C = HugeTestPtConfig<X86_64Pte>;

PageTable<C> new_pt() {
  auto pt = PageTable<C>::empty();
  REQUIRE(pt.has_value());
  return std::move(*pt);
}

using Clock = std::chrono::steady_clock;

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("cursors_in_disjoint_sub_trees_are_held_at_the_same_time") {
    auto pt = new_pt();
    std::latch a_holds(1);
    std::atomic<bool> b_holds{false};
    std::atomic<bool> a_saw_b{false};
    Async a([&] {
      auto g = disable_preempt();
      auto c = pt.cursor_mut(g, {0, k4K});
      if (!c) return;
      (void)c->map(RawItem{0xa000, 1, rw_wb()});
      a_holds.count_down();
      // Keep holding until B holds its cursor too: if cursors in disjoint sub-trees were
      // serialised, B could never get there and this would time out.
      a_saw_b.store(wait_until([&] { return b_holds.load(); }));
    });
    a_holds.wait();
    {
      auto g = disable_preempt();
      // Another leaf table (created under the shared level-2 node) and another 1 GiB region.
      auto c1 = pt.cursor_mut(g, {k2M, k2M + k4K});
      REQUIRE(c1.has_value());
      auto c2 = pt.cursor_mut(g, {3 * k1G, 3 * k1G + k4K});
      REQUIRE(c2.has_value());
      REQUIRE(c1->map(RawItem{0xb000, 1, rw_wb()}).has_value());
      b_holds.store(true);
      REQUIRE(a.wait());
    }
    CHECK(a_saw_b.load());
    CHECK(pt.page_walk(0)->first == 0xa000);
    CHECK(pt.page_walk(k2M)->first == 0xb000);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("disjoint_ranges_in_one_leaf_table_both_make_progress") {
    // Both ranges lock the same leaf table, so the cursors serialise; neither may starve.
    auto pt = new_pt();
    constexpr std::uint64_t kWanted = 300;
    std::atomic<bool> stop{false};
    std::array<std::atomic<std::uint64_t>, 2> done{};
    Failures failures;
    auto worker = [&](std::size_t t) {
      const Vaddr va = (t == 0 ? 1 : 3) * k4K;
      for (std::uint64_t n = 1; !stop.load(std::memory_order_relaxed); ++n) {
        auto g = disable_preempt();
        auto c = pt.cursor_mut(g, {va, va + k4K});
        if (!c) return failures.add("cursor: ", to_string(c.error()));
        const Paddr pa = (n << 20) | (t << 12);
        if (!c->map(RawItem{pa, 1, rw_wb()})) return failures.add("map failed");
        if (!c->jump(va)) return failures.add("jump failed");
        auto q = c->query();
        if (!q || !q->item || q->item->paddr != pa)
          return failures.add("query did not see the map");
        auto f = c->take_next(k4K);
        if (!f || !as_mapped<C>(*f)) return failures.add("take_next did not take it");
        done[t].fetch_add(1, std::memory_order_relaxed);
      }
    };
    {
      Async t0([&] { worker(0); });
      Async t1([&] { worker(1); });
      CHECK(wait_until([&] { return done[0].load() >= kWanted && done[1].load() >= kWanted; }));
      stop.store(true);
      CHECK(t0.wait());
      CHECK(t1.wait());
    }
    INFO(failures.first());
    CHECK(failures.count() == 0);
    CHECK(done[0].load() >= kWanted);
    CHECK(done[1].load() >= kWanted);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("overlapping_cursors_see_each_others_batches_whole") {
    // Writer 1 locks [0, 4 MiB) (rooted at the level-2 node) and on every round detaches
    // everything in it, which takes the whole leaf table of [0, 2 MiB) away (stray), then maps
    // a fresh batch. Writer 2 locks only [16 KiB, 48 KiB) (rooted at that leaf table) and
    // replaces the batch there; it regularly waits on a leaf table writer 1 is detaching and
    // must retry from the root. A reader takes read-only cursors inside the overlap.
    // Inside its cursor, each thread must find the last batch (by tag) complete, and its own
    // batch complete after writing it.
    auto pt = new_pt();
    constexpr VaRange kOverlap{4 * k4K, 12 * k4K};
    constexpr std::uint64_t kPages = kOverlap.size() / k4K;
    constexpr std::uint64_t kRounds = 3000;
    constexpr std::uint64_t kMinRounds = 100;  // done whatever the deadline says
    const auto deadline = Clock::now() + 4s;
    std::atomic<std::uint64_t> last_tag{0};  // changed only inside a cursor over kOverlap
    std::atomic<int> inside{0};              // cursors over kOverlap alive right now (max 1)
    std::atomic<std::uint64_t> rounds[3] = {};
    Failures failures;
    auto pa_of = [](std::uint64_t tag, std::uint64_t page) { return (tag << 32) | (page << 12); };

    // Checks that [kOverlap] holds batch `tag` (or nothing if tag == 0), through `c`.
    auto holds_batch = [&](Cursor<C>& c, VaRange window, std::uint64_t tag) -> bool {
      for (Vaddr v = window.start; v < window.end; v += k4K) {
        if (!c.jump(v)) return false;
        auto q = c.query();
        if (!q) return false;
        const std::uint64_t page = (v - kOverlap.start) / k4K;
        if (tag == 0) {
          if (q->item) return false;
        } else if (!q->item || q->item->paddr != pa_of(tag, page) || q->item->level != 1) {
          return false;
        }
      }
      return true;
    };
    auto writer = [&](std::size_t t, VaRange range) {
      for (std::uint64_t n = 1; n <= kRounds && (n <= kMinRounds || Clock::now() < deadline); ++n) {
        std::this_thread::yield();  // not synchronisation: lets the others interleave more often
        auto g = disable_preempt();
        auto c = pt.cursor_mut(g, range);
        if (!c) return failures.add("writer ", t, ": cursor: ", to_string(c.error()));
        if (inside.fetch_add(1) != 0)
          return failures.add("writer ", t, ": two cursors over the overlap at once");
        const std::uint64_t before = last_tag.load(std::memory_order_relaxed);
        if (!holds_batch(*c, kOverlap, before))
          return failures.add("writer ", t, " found batch ", before, " torn");
        // Remove everything in the range (writer 1 detaches whole sub-trees).
        if (!c->jump(range.start)) return failures.add("jump");
        for (;;) {
          auto f = c->take_next(range.end - c->virt_addr());
          if (!f) return failures.add("take_next: ", to_string(f.error()));
          if (!f->has_value()) break;
        }
        const std::uint64_t tag = (n << 2) | t;
        if (!c->jump(kOverlap.start)) return failures.add("jump");
        for (std::uint64_t p = 0; p < kPages; ++p) {
          if (!c->map(RawItem{pa_of(tag, p), 1, rw_wb()})) return failures.add("map failed");
        }
        if (t == 1) {
          // Something outside the overlap too, in another leaf table.
          if (!c->jump(k2M) || !c->map(RawItem{pa_of(tag, 0), 1, rw_wb()}))
            return failures.add("map 2M");
        }
        if (!holds_batch(*c, kOverlap, tag))
          return failures.add("writer ", t, " lost its own batch");
        // The batch is in the table itself (not in a detached node the cursor still sees).
        for (std::uint64_t p = 0; p < kPages; ++p) {
          auto w = pt.page_walk(kOverlap.start + p * k4K);
          if (!w || w->first != pa_of(tag, p))
            return failures.add("writer ", t, ": batch not in the table");
        }
        last_tag.store(tag, std::memory_order_relaxed);
        rounds[t].fetch_add(1, std::memory_order_relaxed);
        inside.fetch_sub(1);
      }
    };
    auto reader = [&] {
      const VaRange window{kOverlap.start + 2 * k4K, kOverlap.end - 2 * k4K};
      while ((rounds[0].load() < kMinRounds || Clock::now() < deadline) &&
             (rounds[1].load() < kRounds || rounds[2].load() < kRounds)) {
        auto g = disable_preempt();
        auto c = pt.cursor(g, window);
        if (!c) return failures.add("reader: cursor: ", to_string(c.error()));
        if (inside.fetch_add(1) != 0)
          return failures.add("reader: two cursors over the overlap at once");
        const std::uint64_t tag = last_tag.load(std::memory_order_relaxed);
        if (!holds_batch(*c, window, tag)) return failures.add("reader found batch ", tag, " torn");
        rounds[0].fetch_add(1, std::memory_order_relaxed);
        inside.fetch_sub(1);
      }
    };
    {
      Async w1([&] { writer(1, {0, 2 * k2M}); });
      Async w2([&] { writer(2, kOverlap); });
      Async r([&] { reader(); });
      CHECK(w1.wait());
      CHECK(w2.wait());
      CHECK(r.wait());
    }
    INFO(failures.first());
    CHECK(failures.count() == 0);
    MESSAGE("rounds: writer 1 ", rounds[1].load(), ", writer 2 ", rounds[2].load(), ", reader ",
            rounds[0].load());
    CHECK(rounds[1].load() >= kMinRounds);
    CHECK(rounds[2].load() >= kMinRounds);
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE_TEMPLATE("page_walk_during_map_split_and_detach_sees_only_mapped_addresses", P,
                     X86_64Pte, RiscvSv39Pte) {
    // The writer rebuilds [0, 1 GiB) in generations. Generation g maps va -> va + g * 2^32
    // (4 KiB pages at [0, 64 KiB), a 2 MiB page at H = 2 MiB, and alternately a 2 MiB page
    // or 4 KiB pages at 4 MiB), publishing g before mapping. Then, in a "stable" phase, it
    // splits H by unmapping one piece other than the first, and protects another piece. The
    // next generation starts by detaching the whole level-2 node of [0, 1 GiB).
    //
    // Readers walk without locks and check: every translation is va + g' * 2^32 with
    // 1 <= g' <= the latest published generation, with one of the two properties used; and a
    // walk of H done entirely inside the stable phase of generation g finds it mapped to
    // generation g (a torn split or an early-freed node would show up there).
    using Cfg = HugeTestPtConfig<P>;
    auto table = PageTable<Cfg>::empty();
    REQUIRE(table.has_value());
    const PageTable<Cfg>& pt = *table;
    constexpr Vaddr kH = k2M;
    constexpr std::uint64_t kGenerations = 2000;
    constexpr std::uint64_t kMinGenerations = 50;  // done whatever the deadline says
    const auto deadline = Clock::now() + 3s;
    const PageProperty ro = PageProperty::new_user(PageFlags::R, CachePolicy::Writeback);
    std::atomic<std::uint64_t> max_gen{0};
    std::atomic<std::uint64_t> phase{0};  // 2g: generation g is stable; odd: rebuilding
    std::atomic<bool> writer_done{false};
    std::atomic<std::uint64_t> generations{0}, walks{0}, mapped_walks{0}, stable_checks{0};
    Failures failures;
    auto pa_of = [](Vaddr va, std::uint64_t g) { return va + (g << 32); };

    auto writer = [&] {
      for (std::uint64_t g = 1;
           g <= kGenerations && (g <= kMinGenerations || Clock::now() < deadline); ++g) {
        phase.store(2 * g - 1);
        {
          auto guard = disable_preempt();
          auto c = pt.cursor_mut(guard, {0, k1G});
          if (!c) return failures.add("cursor: ", to_string(c.error()));
          for (;;) {
            auto f = c->take_next(k1G - c->virt_addr());
            if (!f) return failures.add("take_next: ", to_string(f.error()));
            if (!f->has_value()) break;
          }
          max_gen.store(g);
          auto map = [&](Vaddr va, PagingLevel level) {
            return c->jump(va).has_value() &&
                   c->map(RawItem{pa_of(va, g), level, rw_wb()}).has_value();
          };
          bool ok = map(kH, 2);
          for (Vaddr v = 0; v < 16 * k4K; v += k4K) ok = ok && map(v, 1);
          if (g % 2 == 0) {
            ok = ok && map(2 * k2M, 2);
          } else {
            for (Vaddr v = 2 * k2M; v < 2 * k2M + 16 * k4K; v += k4K) ok = ok && map(v, 1);
          }
          if (!ok) return failures.add("map failed in generation ", g);
        }
        phase.store(2 * g);
        if (g == 1 && !wait_until([&] { return stable_checks.load() > 0; })) {
          // Make sure the stable-phase check runs at least once, however the threads are
          // scheduled.
          return failures.add("no reader walked H during a stable phase");
        }
        {
          auto guard = disable_preempt();
          auto c = pt.cursor_mut(guard, {kH, kH + k2M});
          if (!c) return failures.add("cursor: ", to_string(c.error()));
          const std::uint64_t k = 1 + g % 511;
          const std::uint64_t j = 1 + (g * 7) % 511;
          if (!c->jump(kH + k * k4K)) return failures.add("jump");
          auto f = c->take_next(k4K);
          if (!f || !as_mapped<Cfg>(*f)) return failures.add("split by take_next failed");
          if (!c->jump(kH + j * k4K)) return failures.add("jump");
          if (!c->protect_next(k4K, [](PageProperty& p) { p.flags = PageFlags::R; })) {
            return failures.add("protect_next failed");
          }
        }
        generations.fetch_add(1);
      }
    };
    auto reader = [&](std::uint64_t seed) {
      std::vector<Vaddr> probes{
          kH,       kH + k4K, kH + 37 * k4K + 5, kH + k2M - 8,        0,       5 * k4K + 123,
          15 * k4K, 2 * k2M,  2 * k2M + 9 * k4K, 2 * k2M + k2M - k4K, 3 * k2M, k1G - k4K};
      std::uint64_t x = seed;
      while (!writer_done.load()) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const Vaddr va = (x >> 33) % 3 == 0 ? kH : probes[(x >> 40) % probes.size()];
        const std::uint64_t p1 = phase.load();
        const auto w = pt.page_walk(va);
        const std::uint64_t p2 = phase.load();
        const std::uint64_t newest = max_gen.load();
        walks.fetch_add(1, std::memory_order_relaxed);
        if (w) {
          mapped_walks.fetch_add(1, std::memory_order_relaxed);
          const std::uint64_t delta = w->first - va;
          const std::uint64_t g = delta >> 32;
          if ((delta & 0xffff'ffffULL) != 0 || g == 0 || g > newest) {
            return failures.add("walk of 0x", va, " gave 0x", w->first, " (newest generation ",
                                newest, ")");
          }
          if (!(w->second == rw_wb()) && !(w->second == ro))
            return failures.add("walk of 0x", va, ": bad property");
        }
        if (va == kH && p1 == p2 && p1 != 0 && p1 % 2 == 0) {
          stable_checks.fetch_add(1, std::memory_order_relaxed);
          if (!w || w->first != pa_of(kH, p1 / 2)) {
            return failures.add("stable generation ", p1 / 2, ": H walked to ", w ? w->first : 0);
          }
        }
      }
    };
    {
      Async r1([&] { reader(1); });
      Async r2([&] { reader(2); });
      Async wr([&] {
        writer();
        writer_done.store(true);
      });
      CHECK(wr.wait());
      CHECK(r1.wait());
      CHECK(r2.wait());
    }
    INFO(failures.first());
    CHECK(failures.count() == 0);
    CHECK(generations.load() >= kMinGenerations);
    CHECK(mapped_walks.load() > 0);
    CHECK(stable_checks.load() > 0);
    MESSAGE("generations ", generations.load(), ", walks ", walks.load(), ", stable checks ",
            stable_checks.load());
    VMS_CHECK_PT_INVARIANTS(pt);
  }

  TEST_CASE("many_more_threads_than_cores_contending_on_one_node_lock_all_finish") {
    auto pt = new_pt();
    const std::size_t nthreads = std::max<std::size_t>(16, 4 * std::thread::hardware_concurrency());
    constexpr std::uint64_t kIterations = 40;
    std::atomic<std::uint64_t> done{0};
    Failures failures;
    std::latch start(1);
    auto guard = disable_preempt();
    // Hold the leaf table of [0, 2 MiB) that every worker needs.
    std::optional<CursorMut<C>> holder(pt.cursor_mut(guard, {0, k4K}).value());
    const Paddr leaf = node_at(pt, 0, 1);
    REQUIRE(leaf != 0);
    std::vector<std::unique_ptr<Async>> workers;
    for (std::size_t t = 0; t < nthreads; ++t) {
      workers.push_back(std::make_unique<Async>([&, t] {
        start.wait();
        const Vaddr va = (t + 1) * k4K;
        for (std::uint64_t n = 1; n <= kIterations; ++n) {
          auto g = disable_preempt();
          auto c = pt.cursor_mut(g, {va, va + k4K});
          if (!c) return failures.add("cursor: ", to_string(c.error()));
          if (!c->map(RawItem{(n << 24) | va, 1, rw_wb()})) return failures.add("map");
          if (!c->jump(va)) return failures.add("jump");
          auto f = c->take_next(k4K);
          if (!f || !as_mapped<C>(*f) || as_mapped<C>(*f)->item->paddr != ((n << 24) | va)) {
            return failures.add("take_next did not return the mapping");
          }
          done.fetch_add(1);
        }
      }));
    }
    start.count_down();
    // Some worker gives up spinning and sleeps on the lock word.
    CHECK(wait_until([&] { return (lock_word<C>(leaf) & 1) != 0; }));
    CHECK(done.load() == 0);
    holder.reset();
    for (auto& w : workers) CHECK(w->wait());
    workers.clear();
    INFO(failures.first());
    CHECK(failures.count() == 0);
    CHECK(done.load() == nthreads * kIterations);
    CHECK(census(pt).total_leaves() == 0);
    VMS_CHECK_PT_INVARIANTS(pt);
  }
}
