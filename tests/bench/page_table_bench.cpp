// Single-thread page-table rows: map, unmap, protect, query, lock-free walk, cursor
// creation. See main.cpp for what every group measures and how it is paired with a baseline.
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

const VaRange kBatchRange{kBatchBase, kBatchBase + kBatchBytes};

void toggle_write(PageProperty& prop) noexcept { prop.flags ^= PageFlags::W; }

// Map 4 KiB frames through one held CursorMut, 512 pages (one leaf table) per batch.
// Timed: the 512 map() calls, including the allocation and zeroing of the leaf table that the
// first map of each batch creates (1 node per 512 pages, as in the xv6 row). Not timed:
// cursor creation, building the items (the frames are pre-allocated pool frames; an item
// holds one extra reference), and detaching the leaf table afterwards.
void BM_CursorMap4K(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kBatchPages);
  UserPageTable pt = new_user_table();
  const auto& pool = frame_pool();
  std::vector<UserItem> items;
  items.reserve(kBatchPages);

  auto run_batch = [&](bool timed) {
    items.clear();
    for (const UFrame& frame : pool) items.push_back(UserItem::tracked(frame, kUserRw));
    {
      auto guard = disable_preempt();
      auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "map cursor");
      auto map_all = [&] {
        for (UserItem& item : items) check(cursor.map(std::move(item)).has_value(), "map");
      };
      if (timed) {
        timer.time(map_all);
      } else {
        map_all();
      }
    }
    // Detach the whole leaf table (a fresh cursor starts at its guard level, where the
    // 2 MiB entry is one unmappable piece); its drop after the grace period releases the
    // 512 frame references.
    {
      auto guard = disable_preempt();
      auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "unmap cursor");
      auto frag = take_ok(cursor.take_next(kBatchBytes), "detach leaf table");
      check(frag.has_value() && std::holds_alternative<StrayPageTableFrag<UserPtConfig>>(*frag),
            "the batch did not come back as one leaf table");
    }
    rcu_barrier();
  };

  run_batch(false);  // warm-up: creates the upper-level nodes
  for (auto _ : state) run_batch(true);
  timer.report();
}
BENCHMARK(BM_CursorMap4K)->UseManualTime();

// Unmap 4 KiB pages with take_next, per page, amortized over a 512-page batch. Each page maps
// a frame whose only reference is its PTE, so unmapping frees the frame.
// Timed: cursor creation, 512 x take_next(4 KiB) with the returned fragment dropped at once
// (RcuDrop hands the item to RCU), cursor drop, and rcu_barrier(), which waits for the grace
// period and runs the 512 deferred drops: each frame's reference count reaches zero and the
// frame goes back to the allocator. So the row includes freeing the frames (and the wait for
// RCU, which makes it an upper bound). Not timed: allocating and mapping the 512 frames.
//
// BM_CursorUnmap4K/BatchedRetire (information): the same, except that the 512 items are handed
// to RCU as one batch — moved out of their fragments into a vector that is itself retired — as
// a TLB flusher that collects the frames of one flush would do. Moving an item out with
// take_unchecked() is safe here because it stays owned by an RcuDrop retired after every
// take_next, so it outlives every read section that could still see its PTE.
void unmap_4k(benchmark::State& state, bool batched_retire) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kBatchPages);
  UserPageTable pt = new_user_table();

  auto map_fresh_frames = [&] {
    auto guard = disable_preempt();
    auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "map cursor");
    for (std::size_t i = 0; i < kBatchPages; ++i) {
      UFrame frame = take_ok(FrameAllocOptions().zeroed(false).alloc_frame(), "frame allocation");
      check(cursor.map(UserItem::tracked(std::move(frame), kUserRw)).has_value(), "map");
    }
  };
  auto unmap_all = [&] {
    {
      auto guard = disable_preempt();
      auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "unmap cursor");
      for (std::size_t i = 0; i < kBatchPages; ++i) {
        auto frag = cursor.take_next(kPageSize);
        check(frag.has_value() && frag->has_value(), "take_next");
      }
    }
    rcu_barrier();
  };
  std::vector<UserItem> batch;
  auto unmap_all_batched = [&] {
    {
      auto guard = disable_preempt();
      auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "unmap cursor");
      for (std::size_t i = 0; i < kBatchPages; ++i) {
        auto frag = take_ok(cursor.take_next(kPageSize), "take_next");
        check(frag.has_value(), "take_next found nothing");
        batch.push_back(std::move(std::get<MappedFrag<UserPtConfig>>(*frag).item).take_unchecked());
      }
      RcuDrop<std::vector<UserItem>> retired(std::move(batch));
    }
    rcu_barrier();
  };

  map_fresh_frames();  // warm-up
  unmap_all();
  for (auto _ : state) {
    map_fresh_frames();
    if (batched_retire) {
      batch = std::vector<UserItem>();  // the retired batch took the previous buffer
      batch.reserve(kBatchPages);
      timer.time(unmap_all_batched);
    } else {
      timer.time(unmap_all);
    }
  }
  timer.report();
}
void BM_CursorUnmap4K(benchmark::State& state) { unmap_4k(state, false); }
void BM_CursorUnmap4K_BatchedRetire(benchmark::State& state) { unmap_4k(state, true); }
BENCHMARK(BM_CursorUnmap4K)->UseManualTime();
BENCHMARK(BM_CursorUnmap4K_BatchedRetire)->Name("BM_CursorUnmap4K/BatchedRetire")->UseManualTime();

// How a protect row changes its pages.
enum class ProtectMethod : std::uint8_t {
  Range,     // CursorMut::protect(len, op): one call over the whole range
  NextLoop,  // protect_next until the range is done: one call per mapping
};

// Change the property (toggle W, so every PTE is rewritten) of `pages` mapped pages through one
// cursor created for exactly those pages: pages = 1 is "protect one page" (cursor creation +
// protect_next + drop, 256 times per batch), pages = 512 is a 2 MiB range (one cursor per batch,
// its cost spread over 512 pages) changed with protect(len) or, for comparison, a protect_next
// loop. The disable_preempt() guard is taken once outside the loop. No TLB flush (there is no
// TLB at this layer).
void protect_rows(benchmark::State& state, ProtectMethod method) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto pages = static_cast<std::uint64_t>(state.range(0));
  const std::size_t cursors_per_batch = pages == 1 ? kOpsPerBatch : 1;
  BatchTimer timer(state, cursors_per_batch * pages);
  UserPageTable pt = new_user_table();
  const auto& pool = frame_pool();
  {
    auto guard = disable_preempt();
    auto cursor = take_ok(pt.cursor_mut(guard, kBatchRange), "map cursor");
    for (const UFrame& frame : pool)
      check(cursor.map(UserItem::tracked(frame, kUserRw)).has_value(), "map");
  }
  // One page in the middle of the leaf table, or all of it.
  const Vaddr start = pages == 1 ? kBatchBase + kBatchBytes / 2 : kBatchBase;
  const VaRange range{start, start + pages * kPageSize};

  auto guard = disable_preempt();
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < cursors_per_batch; ++i) {
        auto cursor = take_ok(pt.cursor_mut(guard, range), "protect cursor");
        if (method == ProtectMethod::Range) {
          check(take_ok(cursor.protect(range.end - range.start, toggle_write), "protect") == pages,
                "protect count");
          continue;
        }
        while (cursor.virt_addr() < range.end) {
          auto changed = cursor.protect_next(range.end - cursor.virt_addr(), toggle_write);
          check(changed.has_value() && changed->has_value(), "protect_next");
        }
      }
    });
  }
  timer.report();
}
void BM_CursorProtect4K(benchmark::State& state) {
  protect_rows(state, state.range(0) == 1 ? ProtectMethod::NextLoop : ProtectMethod::Range);
}
void BM_CursorProtectNextLoop(benchmark::State& state) {
  protect_rows(state, ProtectMethod::NextLoop);
}
BENCHMARK(BM_CursorProtect4K)->ArgName("pages")->Arg(1)->Arg(512)->UseManualTime();
BENCHMARK(BM_CursorProtectNextLoop)->ArgName("pages")->Arg(512)->UseManualTime();

// Query through a held cursor: jump(va) + query() for pseudo-random mapped pages, either the
// 512 pages of one leaf table (hot, every node in L1/L2) or all walk_pages() pages (1M: leaf
// tables spill out of the caches). Baselines: xv6 translate() over the same pages in the
// same order (BM_Baseline_XvWalkHot / BM_Baseline_XvWalkRandom).
void query_random(benchmark::State& state, std::uint64_t pages) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kFastOpsPerBatch);
  UserPageTable& pt = walk_tables().vmspace;
  RandomPages random(kWalkBase, pages);
  auto guard = disable_preempt();
  auto cursor =
      take_ok(pt.cursor(guard, {kWalkBase, kWalkBase + pages * kPageSize}), "query cursor");
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < kFastOpsPerBatch; ++i) {
        check(cursor.jump(random.next()).has_value(), "jump");
        auto q = cursor.query();
        benchmark::DoNotOptimize(q);
      }
    });
  }
  timer.report();
}
void BM_CursorQuery_HotLeaf(benchmark::State& state) { query_random(state, kBatchPages); }
void BM_CursorQuery_Random(benchmark::State& state) { query_random(state, walk_pages()); }
BENCHMARK(BM_CursorQuery_HotLeaf)->Name("BM_CursorQuery/HotLeaf")->UseManualTime();
BENCHMARK(BM_CursorQuery_Random)->Name("BM_CursorQuery/Random")->UseManualTime();

// The lock-free software walk (what a software MMU does on a TLB miss), random over the
// walk_pages() mapped pages. BM_PageWalkRandom walks inside one held read section
// (page_walk_in), as a copy loop that translates page after page would;
// BM_PageWalkRandomWithGuard calls page_walk(), which enters and leaves its own read
// section per call (information).
void walk_random(benchmark::State& state, bool own_guard) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kFastOpsPerBatch);
  const UserPageTable& pt = walk_tables().vmspace;
  RandomPages random(kWalkBase, walk_pages());
  auto guard = disable_preempt();
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < kFastOpsPerBatch; ++i) {
        auto t = own_guard ? pt.page_walk(random.next()) : pt.page_walk_in(guard, random.next());
        benchmark::DoNotOptimize(t);
      }
    });
  }
  timer.report();
}
void BM_PageWalkRandom(benchmark::State& state) { walk_random(state, false); }
void BM_PageWalkRandomWithGuard(benchmark::State& state) { walk_random(state, true); }
BENCHMARK(BM_PageWalkRandom)->UseManualTime();
BENCHMARK(BM_PageWalkRandomWithGuard)->UseManualTime();

// Create and drop a CursorMut over one mapped 4 KiB page (lock-free descent, lock the leaf
// table, unlock). BM_CursorCreateDrop passes a guard taken once outside the loop (the API
// lets a caller reuse its guard); BM_CursorCreateDropWithGuard also takes and releases the
// disable_preempt() guard every time (information: the cost of entering a read section).
void create_drop(benchmark::State& state, bool own_guard) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BatchTimer timer(state, kOpsPerBatch);
  UserPageTable pt = new_user_table();
  const VaRange page{kBatchBase, kBatchBase + kPageSize};
  {
    auto guard = disable_preempt();
    auto cursor = take_ok(pt.cursor_mut(guard, page), "map cursor");
    check(cursor.map(UserItem::tracked(frame_pool()[0], kUserRw)).has_value(), "map");
  }
  if (own_guard) {
    for (auto _ : state) {
      timer.time([&] {
        for (std::size_t i = 0; i < kOpsPerBatch; ++i) {
          auto guard = disable_preempt();
          auto cursor = pt.cursor_mut(guard, page);
          benchmark::DoNotOptimize(cursor);
        }
      });
    }
  } else {
    auto guard = disable_preempt();
    for (auto _ : state) {
      timer.time([&] {
        for (std::size_t i = 0; i < kOpsPerBatch; ++i) {
          auto cursor = pt.cursor_mut(guard, page);
          benchmark::DoNotOptimize(cursor);
        }
      });
    }
  }
  timer.report();
}
void BM_CursorCreateDrop(benchmark::State& state) { create_drop(state, false); }
void BM_CursorCreateDropWithGuard(benchmark::State& state) { create_drop(state, true); }
BENCHMARK(BM_CursorCreateDrop)->UseManualTime();
BENCHMARK(BM_CursorCreateDropWithGuard)->UseManualTime();

}  // namespace
}  // namespace vmspace::bench
