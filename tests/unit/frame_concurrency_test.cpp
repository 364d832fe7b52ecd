// Frames and the frame allocator under concurrency (suites `unit` and `threaded`; run under
// ThreadSanitizer by the TSan job). Worker threads never use doctest assertions: they count
// what went wrong and the main thread checks the counts.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/frame_list.hpp>
#include <vmspace/unique_frame.hpp>

#include "frame_test_util.hpp"

using namespace vmspace;
using vmspace::test::MockFrameMeta;
using vmspace::test::MockUFrameMeta;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int kScale = 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kScale = 1;
#else
constexpr int kScale = 4;
#endif
#else
constexpr int kScale = 4;
#endif

// Starts `n` threads running fn(index) and joins them.
template <class Fn>
void run_threads(unsigned n, Fn fn) {
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned i = 0; i < n; ++i) threads.emplace_back(fn, i);
  for (auto& t : threads) t.join();
}

// The word written at a few offsets of every frame a worker owns; unique per (owner, frame).
std::uint64_t pattern(unsigned owner, std::uint64_t serial, std::size_t frame_index) {
  return (std::uint64_t{owner + 1} << 56) | (serial << 12) | frame_index;
}
constexpr std::size_t kPatternOffsets[] = {0, 2048, kPageSize - 8};

// Metadata with a plain (non-atomic) field that only a sole owner may write.
struct Counter {
  std::uint64_t value = 0;
};

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("concurrent_clones_and_drops_of_one_frame_return_the_count_to_one") {
    vmspace::test::FreeBytesUnchanged no_leak;
    const auto frame = FrameAllocOptions().alloc_frame_with(MockFrameMeta{42}).value();
    const unsigned nthreads = 8;
    const int rounds = 2000 * kScale;
    std::atomic<int> bad_meta{0};
    std::atomic<int> bad_count{0};
    run_threads(nthreads, [&](unsigned) {
      std::vector<Frame<MockFrameMeta>> held;
      for (int i = 0; i < rounds; ++i) {
        held.push_back(frame);  // the shared handle is only read
        if (held.back().meta().value != 42) bad_meta.fetch_add(1);
        if (auto dyn = DynFrame::from_in_use(frame.paddr()); !dyn || dyn->reference_count() < 2) {
          bad_count.fetch_add(1);
        }
        if (held.size() == 4) held.clear();
      }
    });
    CHECK(bad_meta.load() == 0);
    CHECK(bad_count.load() == 0);
    CHECK(frame.reference_count() == 1);
  }

  TEST_CASE("concurrent_allocation_never_hands_out_a_frame_twice") {
    // Bound threads (one per CPU, so the per-CPU caches are used), unbound threads (the shared
    // cache) and a thread that drains the caches all at once. Every owned frame carries its
    // owner's pattern, checked before it is freed: a frame handed out twice, or freed memory
    // handed out while in use, shows up as a foreign pattern.
    vmspace::test::FreeBytesUnchanged no_leak;
    const std::uint64_t free_start = global_frame_allocator().free_bytes();
    const unsigned nbound = std::min(num_cpus(), 4u);
    const unsigned nunbound = 2;
    const int ops = 1500 * kScale;
    std::atomic<int> corrupted{0};
    std::atomic<int> not_zeroed{0};
    std::atomic<int> bind_failures{0};
    std::atomic<int> alloc_failures{0};
    std::atomic<bool> stop_drainer{false};

    std::thread drainer([&] {
      while (!stop_drainer.load()) {
        builtin_frame_allocator().drain_caches();
        (void)builtin_frame_allocator().stats();
        std::this_thread::yield();
      }
    });

    run_threads(nbound + nunbound, [&](unsigned id) {
      std::optional<CpuBinding> binding;
      if (id < nbound) {
        auto b = CpuBinding::bind(CpuId::from_raw_unchecked(id));
        if (!b) {
          bind_failures.fetch_add(1);
          return;
        }
        binding.emplace(std::move(*b));
      }
      std::minstd_rand rng(id * 7919 + 1);
      struct Owned {
        Segment<NoMeta> seg;
        std::uint64_t serial;
      };
      std::vector<Owned> owned;
      auto verify_and_drop = [&](std::size_t i) {
        Owned& o = owned[i];
        for (std::size_t f = 0; f < o.seg.nframes(); ++f) {
          for (std::size_t off : kPatternOffsets) {
            auto v = o.seg.read_val<std::uint64_t>(f * kPageSize + off);
            if (!v || *v != pattern(id, o.serial, f)) corrupted.fetch_add(1);
          }
        }
        owned[i] = std::move(owned.back());
        owned.pop_back();
      };
      for (int op = 0; op < ops; ++op) {
        if (owned.size() >= 16 || (!owned.empty() && rng() % 3 == 0)) {
          verify_and_drop(rng() % owned.size());
          continue;
        }
        const std::size_t nframes = (rng() % 4 == 0) ? 1 + rng() % 8 : 1;
        const bool zeroed = rng() % 2 == 0;
        auto seg = FrameAllocOptions().zeroed(zeroed).alloc_segment(nframes);
        if (!seg) {
          alloc_failures.fetch_add(1);
          continue;
        }
        const std::uint64_t serial = static_cast<std::uint64_t>(op);
        for (std::size_t f = 0; f < nframes; ++f) {
          for (std::size_t off : kPatternOffsets) {
            if (zeroed && seg->read_val<std::uint64_t>(f * kPageSize + off).value_or(1) != 0) {
              not_zeroed.fetch_add(1);
            }
            (void)seg->write_val<std::uint64_t>(f * kPageSize + off, pattern(id, serial, f));
          }
        }
        owned.push_back(Owned{std::move(*seg), serial});
      }
      while (!owned.empty()) verify_and_drop(owned.size() - 1);
    });
    stop_drainer.store(true);
    drainer.join();

    CHECK(bind_failures.load() == 0);
    CHECK(alloc_failures.load() == 0);
    CHECK(corrupted.load() == 0);
    CHECK(not_zeroed.load() == 0);
    CHECK(global_frame_allocator().free_bytes() == free_start);
  }

  TEST_CASE("unique_try_from_races_with_from_in_use") {
    // One owner repeatedly turns its frame into a UniqueFrame (possible only while nobody else
    // holds a reference), writes the metadata without atomics and shares it again; readers keep
    // taking references with from_in_use. The owner must never get sole ownership while a
    // reader holds a reference (ThreadSanitizer would also flag the plain accesses).
    vmspace::test::FreeBytesUnchanged no_leak;
    std::optional<Frame<Counter>> handle(FrameAllocOptions().alloc_frame_with(Counter{}).value());
    const Paddr pa = handle->paddr();
    const int rounds = 1000 * kScale;
    std::atomic<bool> stop{false};
    std::atomic<int> torn_reads{0};
    std::atomic<int> unexpected_errors{0};
    std::atomic<std::uint64_t> reader_holds{0};
    std::uint64_t unique_wins = 0;

    std::vector<std::thread> readers;
    for (unsigned r = 0; r < 2; ++r) {
      readers.emplace_back([&, r] {
        std::minstd_rand rng(r + 5);
        while (!stop.load(std::memory_order_relaxed)) {
          auto dyn = DynFrame::from_in_use(pa);
          if (!dyn) {
            if (dyn.error() != GetFrameError::Unique) unexpected_errors.fetch_add(1);
            continue;
          }
          auto typed = Frame<Counter>::try_from(*dyn);
          if (!typed) {
            unexpected_errors.fetch_add(1);
            continue;
          }
          const std::uint64_t first = typed->meta().value;
          std::this_thread::yield();
          if (typed->meta().value != first) torn_reads.fetch_add(1);
          reader_holds.fetch_add(1, std::memory_order_relaxed);
          typed.reset();
          // Leave the owner windows in which nobody holds a reference.
          std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20));
        }
      });
    }
    // Run until both sides have had plenty of turns (the race must really happen).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while ((unique_wins < static_cast<std::uint64_t>(rounds) ||
            reader_holds.load(std::memory_order_relaxed) < static_cast<std::uint64_t>(rounds)) &&
           std::chrono::steady_clock::now() < deadline) {
      auto unique = UniqueFrame<Counter>::try_from(*handle);
      if (!unique) {
        std::this_thread::yield();
        continue;
      }
      ++unique_wins;
      unique->meta_mut().value += 1;
      handle.emplace(std::move(*unique).into_frame());
      // Enough wins: let the readers catch up instead of spinning.
      if (unique_wins >= static_cast<std::uint64_t>(rounds)) {
        std::this_thread::sleep_for(std::chrono::microseconds(10));
      }
    }
    stop.store(true);
    for (auto& t : readers) t.join();

    CHECK(unique_wins >= static_cast<std::uint64_t>(rounds));
    CHECK(reader_holds.load() >= static_cast<std::uint64_t>(rounds));
    CHECK(torn_reads.load() == 0);
    CHECK(unexpected_errors.load() == 0);
    CHECK(handle->reference_count() == 1);
    CHECK(handle->meta().value == unique_wins);
    MESSAGE("unique wins: " << unique_wins << ", reader holds: " << reader_holds.load());
  }

  TEST_CASE("lists_on_different_threads_and_contains_from_anywhere") {
    // Each thread owns one list; every thread also asks its own list about the other lists'
    // members (lookups read other slots' in_list words concurrently with their updates).
    vmspace::test::FreeBytesUnchanged no_leak;
    const unsigned nthreads = 4;
    const int rounds = 500 * kScale;
    std::vector<std::atomic<Paddr>> published(nthreads);
    for (auto& p : published) p.store(0);
    std::atomic<int> wrong_answers{0};
    run_threads(nthreads, [&](unsigned id) {
      LinkedList<MockUFrameMeta> list;
      std::minstd_rand rng(id + 11);
      for (int i = 0; i < rounds; ++i) {
        if (list.size() < 8 && rng() % 2 == 0) {
          auto f = FrameAllocOptions().alloc_frame_with(Link<MockUFrameMeta>(MockUFrameMeta{id}));
          if (!f) continue;
          const Paddr pa = f->paddr();
          auto u = UniqueFrame<Link<MockUFrameMeta>>::try_from(*f);
          if (!u) continue;
          list.push_back(std::move(*u));
          published[id].store(pa);
          if (!list.contains(pa)) wrong_answers.fetch_add(1);
        } else if (auto popped = list.pop_front()) {
          if ((*popped->meta()).value != id) wrong_answers.fetch_add(1);
          if (list.contains(popped->paddr())) wrong_answers.fetch_add(1);
        }
        for (unsigned other = 0; other < nthreads; ++other) {
          if (other == id) continue;
          const Paddr pa = published[other].load();
          // The frame may since have been freed and even reused by us; if our list claims it,
          // it must really be one of ours (which makes reading its metadata safe).
          if (pa == 0) continue;
          if (auto cursor = list.cursor_mut_at(pa); cursor && cursor->current_meta()->value != id) {
            wrong_answers.fetch_add(1);
          }
        }
      }
    });
    CHECK(wrong_answers.load() == 0);
  }
}
