// VmSpace under real concurrency (suite `threaded`; must be clean under TSan and ASan):
// copies racing with unmap/remap, concurrent demand faults, activation ping-pong racing with
// unmaps, a long copy that must not hold grace periods up, and blocking overlapping cursors.
//
// Every test runs with the TLB checking mode counting, and asserts that no CPU ever used a
// cached translation to a frame that had been freed. Threads synchronise through atomics and
// joins only; nothing sleeps.
#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <vmspace/fault.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/vm_space.hpp>

#include "frame_test_util.hpp"
#include "result_check.hpp"
#include "vm_test_util.hpp"

using namespace vmspace;
using namespace vmspace::test;
using namespace std::chrono_literals;

namespace {

// Spins until `flag` is set (yielding: threads may outnumber cores).
void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load(std::memory_order_acquire)) std::this_thread::yield();
}

// A frame whose every u64 word is `word`.
UFrame frame_of_words(std::uint64_t word) {
  UFrame f = new_frame();
  auto* words = reinterpret_cast<std::uint64_t*>(paddr_to_vaddr(f.paddr()));
  for (std::size_t i = 0; i < kPageSize / 8; ++i) words[i] = word;
  return f;
}

// Maps `frame` at `va` from any thread (REQUIREs cannot be used off the main thread).
bool try_map(const VmSpace& space, Vaddr va, UFrame frame, PageProperty prop = kUserRw) {
  auto g = disable_preempt();
  auto c = space.cursor_mut(g, {va, va + kPageSize});
  return c && c->map(std::move(frame), prop).has_value();
}

bool try_unmap(const VmSpace& space, Vaddr va, std::size_t len) {
  auto g = disable_preempt();
  auto c = space.cursor_mut(g, {va, va + len});
  return c && c->unmap(len).has_value();
}

// Words the remapper writes: a tag, the generation and the page index.
constexpr std::uint64_t kRemapTag = 0xc0de'0000'0000'0000ULL;
constexpr std::uint64_t kCopierTag = 0xc0bb'0000'0000'0000ULL;
constexpr std::uint64_t kTagMask = 0xffff'0000'0000'0000ULL;
std::uint64_t remap_word(std::uint64_t gen, std::uint64_t page) {
  return kRemapTag | (gen << 16) | page;
}

}  // namespace

TEST_SUITE("unit") {
  TEST_CASE("copiers_see_old_or_new_data_or_a_fault_while_pages_are_remapped") {
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    const auto stale = tlb_stale_hits();
    auto space = new_space();
    const Vaddr base = 0x40'0000;
    constexpr std::size_t kPages = 8;
    constexpr std::uint64_t kGenerations = 150;
    std::atomic<std::uint64_t> published_gen{1};
    for (std::size_t p = 0; p < kPages; ++p)
      map_frame_at(*space, base + p * kPageSize, frame_of_words(remap_word(1, p)));

    std::atomic<bool> stop{false};
    std::atomic<int> ready{0};
    std::atomic<int> failures{0};
    std::atomic<std::uint64_t> good_reads{0}, faulted_reads{0}, good_writes{0};
    auto copier = [&](std::uint32_t k) {
      auto b = CpuBinding::bind(cpu(k));
      if (!b || !space->activate()) {
        failures.fetch_add(1);
        ready.fetch_add(1);
        return;
      }
      ready.fetch_add(1);
      std::vector<std::uint64_t> buf(kPageSize / 8);
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_acquire)) {
        for (std::size_t p = 0; p < kPages; ++p) {
          const Vaddr va = base + p * kPageSize;
          auto r = space->reader(va, kPageSize);
          auto w = space->writer(va + 8 * (k + 1), 8);
          if (!r || !w) {
            failures.fetch_add(1);
            continue;
          }
          VmWriter<Infallible> out{std::as_writable_bytes(std::span(buf))};
          auto res = r->read_fallible(out);
          const std::size_t copied = res ? *res : res.error().copied;
          if (!res && res.error().error != Error::PageFault) failures.fetch_add(1);
          const std::uint64_t max_gen = published_gen.load(std::memory_order_acquire);
          for (std::size_t i = 0; i < copied / 8; ++i) {
            const std::uint64_t v = buf[i];
            const bool remapper = (v & kTagMask) == kRemapTag && (v & 0xffff) == p &&
                                  ((v >> 16) & 0xffff'ffff) >= 1 &&
                                  ((v >> 16) & 0xffff'ffff) <= max_gen;
            const bool a_copier = (v & kTagMask) == kCopierTag;
            if (!remapper && !a_copier) failures.fetch_add(1);
          }
          (res ? good_reads : faulted_reads).fetch_add(1, std::memory_order_relaxed);
          if (w->write_val<std::uint64_t>(kCopierTag | (std::uint64_t{k} << 32) |
                                          (n++ & 0xffff'ffff))) {
            good_writes.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
      (void)VmSpace::deactivate_current();
    };
    std::thread c0(copier, 0u), c1(copier, 1u);
    while (ready.load() < 2) std::this_thread::yield();
    // The remapper (kernel context): unmap every page, then map fresh frames of the next
    // generation, one page or the whole range at a time.
    // On a loaded machine the generations can all pass before a copier is scheduled once, so
    // the remapper goes on (bounded) until both kinds of copy have succeeded at least once.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    auto copiers_ran = [&] { return good_reads.load() > 0 && good_writes.load() > 0; };
    bool remap_ok = true;
    for (std::uint64_t gen = 2;
         gen <= kGenerations || (!copiers_ran() && std::chrono::steady_clock::now() < deadline);
         ++gen) {
      published_gen.store(gen, std::memory_order_release);
      if (gen % 2 == 0) {
        remap_ok = remap_ok && try_unmap(*space, base, kPages * kPageSize);
        for (std::size_t p = 0; p < kPages; ++p) {
          remap_ok =
              remap_ok && try_map(*space, base + p * kPageSize, frame_of_words(remap_word(gen, p)));
        }
      } else {
        for (std::size_t p = 0; p < kPages; ++p) {
          const Vaddr va = base + p * kPageSize;
          remap_ok = remap_ok && try_unmap(*space, va, kPageSize) &&
                     try_map(*space, va, frame_of_words(remap_word(gen, p)));
        }
      }
    }
    stop.store(true, std::memory_order_release);
    c0.join();
    c1.join();
    CHECK(remap_ok);
    CHECK(failures.load() == 0);
    CHECK(good_reads.load() > 0);
    CHECK(good_writes.load() > 0);
    MESSAGE("reads ok " << good_reads.load() << ", faulted " << faulted_reads.load());
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("concurrent_demand_faults_never_map_a_page_twice") {
    // Four CPUs fault on the same pages at once. To make every page a real collision, the
    // handler holds each fault until all four threads have faulted on that page; then one map
    // wins and three see AlreadyMapped, which the handler treats as resolved. A second phase
    // runs free (threads in different orders) over another region.
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    rcu_barrier();
    FreeBytesUnchanged leak_check;
    const auto stale = tlb_stale_hits();
    {
      auto space = new_space();
      DemandPager pager;
      constexpr std::size_t kPages = 32;
      constexpr std::uint32_t kThreads = 4;
      const Vaddr lockstep = 0x80'0000;
      const Vaddr free_running = 0xc0'0000;
      pager.add({lockstep, lockstep + kPages * kPageSize}, kUserRw, DemandPager::Fill::Zero);
      pager.add({free_running, free_running + kPages * kPageSize}, kUserRw,
                DemandPager::Fill::Zero);
      std::array<std::atomic<std::uint32_t>, kPages> arrivals{};
      std::atomic<int> failures{0};
      FaultHandlerScope handler([&](const PageFaultInfo& info) -> Result<void> {
        if (VaRange{lockstep, lockstep + kPages * kPageSize}.contains(info.address)) {
          auto& n = arrivals[(info.address - lockstep) / kPageSize];
          n.fetch_add(1);
          while (n.load() < kThreads && failures.load() == 0) std::this_thread::yield();
        }
        return pager.handle(info);
      });
      std::atomic<std::uint32_t> arrived{0};
      auto word = [](std::uint32_t k, std::size_t p) { return (std::uint64_t{k} << 32) | p; };
      auto worker = [&](std::uint32_t k) {
        auto b = CpuBinding::bind(cpu(k));
        if (!b || !space->activate()) {
          failures.fetch_add(1);
          return;
        }
        arrived.fetch_add(1);
        while (arrived.load() < kThreads && failures.load() == 0) std::this_thread::yield();
        for (std::size_t p = 0; p < kPages; ++p) {
          if (!write_u64(*space, lockstep + p * kPageSize + 8 * k, word(k, p)))
            failures.fetch_add(1);
        }
        for (std::size_t i = 0; i < kPages; ++i) {
          const std::size_t p = k % 2 == 0 ? i : kPages - 1 - i;
          if (!write_u64(*space, free_running + p * kPageSize + 8 * k, word(k, p)))
            failures.fetch_add(1);
        }
        for (std::size_t p = 0; p < kPages; ++p) {
          for (Vaddr region : {lockstep, free_running}) {
            auto v = read_u64(*space, region + p * kPageSize + 8 * k);
            if (!v || *v != word(k, p)) failures.fetch_add(1);
          }
        }
        (void)VmSpace::deactivate_current();
      };
      std::vector<std::thread> threads;
      for (std::uint32_t k = 0; k < kThreads; ++k) threads.emplace_back(worker, k);
      for (auto& t : threads) t.join();
      CHECK(failures.load() == 0);
      CHECK(pager.maps.load() == 2 * kPages);  // one frame per page, whoever won
      CHECK(pager.already_mapped.load() >=
            (kThreads - 1) * kPages);  // every lockstep page collided
      MESSAGE("faults " << pager.calls.load() << ", lost races " << pager.already_mapped.load());
      // No write was lost to a second mapping: every page holds every thread's word.
      for (Vaddr region : {lockstep, free_running}) {
        for (std::size_t p = 0; p < kPages; ++p) {
          auto w = space->page_table().page_walk(region + p * kPageSize);
          REQUIRE(w.has_value());
          const auto* words = reinterpret_cast<const std::uint64_t*>(paddr_to_vaddr(w->first));
          for (std::uint32_t k = 0; k < kThreads; ++k) CHECK(words[k] == word(k, p));
        }
      }
    }
    rcu_barrier();
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("activation_ping_pong_while_another_thread_unmaps") {
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    const auto stale = tlb_stale_hits();
    auto a = new_space();
    auto b = new_space();
    const Vaddr base = 0x10'0000;
    constexpr std::size_t kPages = 4;
    constexpr std::uint64_t kTagA = 0xaaaa'0000'0000'0000ULL;
    constexpr std::uint64_t kTagB = 0xbbbb'0000'0000'0000ULL;
    for (std::size_t p = 0; p < kPages; ++p) {
      map_frame_at(*a, base + p * kPageSize, frame_of_words(kTagA | p));
      map_frame_at(*b, base + p * kPageSize, frame_of_words(kTagB | p));
    }
    std::atomic<bool> stop{false};
    std::atomic<int> ready{0};
    std::atomic<int> failures{0};
    std::atomic<std::uint64_t> reads{0};
    auto pinger = [&](std::uint32_t k) {
      auto bind = CpuBinding::bind(cpu(k));
      if (!bind) {
        failures.fetch_add(1);
        ready.fetch_add(1);
        return;
      }
      ready.fetch_add(1);
      std::size_t i = k;
      while (!stop.load(std::memory_order_acquire)) {
        // The same address in both spaces, so a translation surviving a switch would be used.
        const std::size_t p = i++ % kPages;
        for (int which = 0; which < 2; ++which) {
          const bool first_a = (k == 0) == (which == 0);  // CPU 0 goes A, B; CPU 1 goes B, A
          const auto& space = first_a ? a : b;
          const std::uint64_t tag = first_a ? kTagA : kTagB;
          if (!space->activate()) failures.fetch_add(1);
          auto v = read_u64(*space, base + p * kPageSize);
          if (v) {
            // Never the other space's data: its translations were flushed at the switch.
            if ((*v & kTagMask) != tag || (*v & 0xffff) != p) failures.fetch_add(1);
            reads.fetch_add(1, std::memory_order_relaxed);
          } else if (v.error() != Error::PageFault) {
            failures.fetch_add(1);
          }
        }
      }
      (void)VmSpace::deactivate_current();
    };
    std::thread p0(pinger, 0u), p1(pinger, 1u);
    while (ready.load() < 2) std::this_thread::yield();
    // As above: more rounds (bounded) until a pinger has read at least once.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    bool remap_ok = true;
    for (int round = 0;
         round < 300 || (reads.load() == 0 && std::chrono::steady_clock::now() < deadline);
         ++round) {
      const std::size_t p = static_cast<std::size_t>(round) % kPages;
      const Vaddr va = base + p * kPageSize;
      remap_ok =
          remap_ok && try_unmap(*a, va, kPageSize) && try_map(*a, va, frame_of_words(kTagA | p));
      remap_ok =
          remap_ok && try_unmap(*b, va, kPageSize) && try_map(*b, va, frame_of_words(kTagB | p));
    }
    stop.store(true, std::memory_order_release);
    p0.join();
    p1.join();
    CHECK(remap_ok);
    CHECK(failures.load() == 0);
    CHECK(reads.load() > 0);
    CHECK(a->active_cpus().is_empty());
    CHECK(b->active_cpus().is_empty());
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("long_copy_makes_progress_while_another_thread_unmaps_elsewhere") {
    // A 64 MiB copy must not hold one read section from start to end: another thread's unmaps
    // need grace periods to free their frames. The unmapper proves it by completing two full
    // unmap + rcu_barrier rounds while one and the same copy is in progress (with a single read
    // section per copy, at most one round could end per copy).
    CpuCleanup cleanup;
    TlbCheckScope check(TlbCheckMode::Count);
    const auto stale = tlb_stale_hits();
    auto space = new_space();
    const Vaddr base = 0x1'0000'0000;
    constexpr std::size_t kLen = std::size_t{64} << 20;
    for (Vaddr va = base; va < base + kLen; va += k2M) {
      USegment seg = new_huge_segment();
      auto* words = reinterpret_cast<std::uint64_t*>(paddr_to_vaddr(seg.paddr()));
      for (std::size_t i = 0; i < k2M / 8; ++i)
        words[i] = va + 8 * i;  // each word holds its address
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, {va, va + k2M});
      REQUIRE(c.has_value());
      REQUIRE(c->map_segment(std::move(seg), kUserRw).has_value());
    }
    activate_on(space, cpu(0));
    activate_on(space, cpu(1));

    constexpr int kMaxCopies = 20;
    std::atomic<std::uint64_t> copy_seq{0};  // odd while a copy runs
    std::atomic<bool> unmapper_done{false};
    std::atomic<bool> copier_started{false};
    std::atomic<int> failures{0};
    std::atomic<int> copies{0};
    std::thread copier([&] {
      auto bind = CpuBinding::bind(cpu(0));
      if (!bind) {
        failures.fetch_add(1);
        copier_started.store(true);
        return;
      }
      std::vector<std::uint64_t> buf(kLen / 8);
      copier_started.store(true, std::memory_order_release);
      for (int i = 0; i < kMaxCopies && !unmapper_done.load(std::memory_order_acquire); ++i) {
        auto r = space->reader(base, kLen);
        if (!r) {
          failures.fetch_add(1);
          break;
        }
        VmWriter<Infallible> out{std::as_writable_bytes(std::span(buf))};
        copy_seq.fetch_add(1, std::memory_order_seq_cst);
        auto n = r->read_fallible(out);
        copy_seq.fetch_add(1, std::memory_order_seq_cst);
        copies.fetch_add(1);
        if (!n || *n != kLen) failures.fetch_add(1);
        for (std::size_t w = 0; w < buf.size(); w += 4099) {
          if (buf[w] != base + 8 * w) failures.fetch_add(1);
        }
        if (buf.back() != base + kLen - 8) failures.fetch_add(1);
      }
    });
    wait_for(copier_started);
    bool unmap_ok = true;
    bool proven = false;
    {
      BoundTo bound(cpu(1));
      const Vaddr elsewhere = 0x10'0000;
      std::uint64_t prev_inside = 0;  // the copy the previous round ran inside, or 0 (even)
      while (!proven && unmap_ok && copies.load() < kMaxCopies && failures.load() == 0) {
        const std::uint64_t seq = copy_seq.load(std::memory_order_seq_cst);
        unmap_ok = try_map(*space, elsewhere, new_frame(elsewhere)) &&
                   read_u64(*space, elsewhere).has_value() &&
                   try_unmap(*space, elsewhere, kPageSize);
        rcu_barrier();  // the unmapped frame is freed: a grace period ended
        const std::uint64_t after = copy_seq.load(std::memory_order_seq_cst);
        const bool inside = after % 2 == 1 && after == seq;
        if (inside && prev_inside == seq) proven = true;  // two rounds inside one copy
        prev_inside = inside ? seq : 0;
      }
      unmapper_done.store(true, std::memory_order_release);
    }
    copier.join();
    CHECK(unmap_ok);
    CHECK(failures.load() == 0);
    CHECK(copies.load() >= 1);
    CHECK(proven);
    MESSAGE("copies " << copies.load());
    CHECK(tlb_stale_hits() == stale);
  }

  TEST_CASE("aligned_overlapping_cursor_blocks_until_the_holder_releases") {
    // OSTD's overlapping_cursors only checks alignment; this is the real overlap. The waiter
    // must observe everything the holder did before releasing (two-phase locking).
    auto space = new_space();
    const VaRange range{0x5000, 0x6000};
    std::atomic<bool> holding{false};
    std::atomic<bool> waiter_started{false};
    std::optional<Error> try_error;
    std::optional<Paddr> seen;
    Paddr mapped = 0;
    std::thread holder([&] {
      auto g = disable_preempt();
      auto c = space->cursor_mut(g, range);
      if (!c) return;
      holding.store(true, std::memory_order_release);
      wait_for(waiter_started);
      // The waiter is (about to be) blocked: change the mapping several times.
      for (int i = 0; i < 20; ++i) {
        UFrame f = new_frame();
        mapped = f.paddr();
        (void)c->jump(range.start);
        if (!c->map(std::move(f), kUserRw)) return;
        if (i + 1 < 20) {
          (void)c->jump(range.start);
          if (!c->unmap(kPageSize)) return;
        }
      }
    });
    wait_for(holding);
    {
      auto g = disable_preempt();
      try_error = error_of(space->try_cursor(g, range));
    }
    std::thread waiter([&] {
      auto g = disable_preempt();
      waiter_started.store(true, std::memory_order_release);
      auto c = space->cursor(g, range);
      if (!c) return;
      auto q = c->query();
      if (q && q->second) seen = q->second->paddr;
    });
    holder.join();
    waiter.join();
    CHECK(try_error == Error::WouldBlock);
    REQUIRE(seen.has_value());
    CHECK(*seen == mapped);
  }
}
