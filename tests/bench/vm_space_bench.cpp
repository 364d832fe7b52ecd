// VmSpace rows: fallible reader/writer copies next to memcpy of the same sizes, the software
// MMU's translation (TLB hit, TLB miss), and unmap with its TLB shootdown. See main.cpp for
// what every group measures.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include <vmspace/mmu.hpp>
#include <vmspace/vm_space.hpp>

#include "bench_support.hpp"

namespace vmspace::bench {
namespace {

// The copy rows read and write [kCopyBase, kCopyBase + kCopyMaxBytes), 4 KiB pages of their own
// frames (a copy walks per 4 KiB page whatever the mapping size).
constexpr Vaddr kCopyBase = Vaddr{128} << 30;
constexpr std::size_t kCopyMaxBytes = std::size_t{64} << 20;
// BM_UnmapDispatch512 maps and unmaps one leaf table's worth of pages here.
constexpr Vaddr kUnmapBase = Vaddr{130} << 30;

// One space for every row of this file, built on first use and never destroyed: the copy
// range, and walk_pages() pages at kWalkBase mapped exactly as walk_tables() maps them (so the
// TLB-miss row translates the same pseudo-random addresses as the xv6 walk baseline).
// Host buffers are page-aligned like the user pages, so every copy and its memcpy baseline
// have the same source/destination alignment (an offset of a few bytes changes memcpy's speed
// through 4K aliasing of loads and stores).
struct PageAlignedFree {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};
using HostBuffer = std::unique_ptr<std::byte[], PageAlignedFree>;
HostBuffer host_buffer(std::byte fill) {
  HostBuffer b(static_cast<std::byte*>(std::aligned_alloc(kPageSize, kCopyMaxBytes)));
  check(b != nullptr, "host buffer");
  std::memset(b.get(), static_cast<int>(fill), kCopyMaxBytes);
  return b;
}

struct BenchSpace {
  std::shared_ptr<VmSpace> space;
  HostBuffer host_src;  // kCopyMaxBytes on each side of memcpy
  HostBuffer host_dst;
};

BenchSpace& bench_space() {
  static BenchSpace* s = [] {
    auto* b = new BenchSpace{take_ok(VmSpace::create(), "VmSpace::create"),
                             host_buffer(std::byte{0x5a}), host_buffer(std::byte{0})};
    auto guard = disable_preempt();
    {
      auto c = take_ok(b->space->cursor_mut(guard, {kCopyBase, kCopyBase + kCopyMaxBytes}),
                       "copy cursor");
      for (std::size_t off = 0; off < kCopyMaxBytes; off += kPageSize) {
        auto frame = take_ok(FrameAllocOptions().alloc_frame(), "copy frame");
        check(c.map(UFrame(std::move(frame)), kUserRw).has_value(), "copy map");
      }
    }
    const auto& pool = frame_pool();
    const std::uint64_t n = walk_pages();
    auto c =
        take_ok(b->space->cursor_mut(guard, {kWalkBase, kWalkBase + n * kPageSize}), "walk cursor");
    for (std::uint64_t i = 0; i < n; ++i)
      check(c.map(UFrame(pool[i % pool.size()]), kUserRw).has_value(), "walk map");
    return b;
  }();
  return *s;
}

// Activates the bench space on the calling (bound) CPU for one benchmark run, and takes the CPU
// back to the kernel table afterwards so no other row runs with a user space active.
class ActiveSpace {
 public:
  explicit ActiveSpace(VmSpace& space) { check(space.activate().has_value(), "activate"); }
  ~ActiveSpace() { check(VmSpace::deactivate_current().has_value(), "deactivate"); }
  ActiveSpace(const ActiveSpace&) = delete;
  ActiveSpace& operator=(const ActiveSpace&) = delete;
};

// Copies per batch: about 256 KiB per batch, at least one copy, at most 1024.
std::size_t copies_per_batch(std::size_t bytes) {
  const std::size_t n = (std::size_t{256} << 10) / bytes;
  return n < 1 ? 1 : n > 1024 ? 1024 : n;
}

enum class Direction : std::uint8_t { UserToHost, HostToUser };

// One fallible copy of `bytes` between the start of the copy range and a host buffer, through
// VmSpace::reader (into a VmWriter<Infallible>) or VmSpace::writer (from a VmReader<Infallible>),
// including creating the reader/writer (a range check). The TLB is warm after the first batch
// for sizes up to 1 MiB (256 entries); 64 MiB copies miss on every page.
void copy_rows(benchmark::State& state, Direction dir) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto bytes = static_cast<std::size_t>(state.range(0));
  BenchSpace& b = bench_space();
  ActiveSpace active(*b.space);
  const std::size_t n = copies_per_batch(bytes);
  BatchTimer timer(state, n);
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < n; ++i) {
        if (dir == Direction::UserToHost) {
          auto reader = take_ok(b.space->reader(kCopyBase, bytes), "reader");
          VmWriter<Infallible> to(std::span<std::byte>(b.host_dst.get(), bytes));
          check(reader.read_fallible(to).has_value(), "read_fallible");
        } else {
          auto writer = take_ok(b.space->writer(kCopyBase, bytes), "writer");
          VmReader<Infallible> from(std::span<const std::byte>(b.host_src.get(), bytes));
          check(writer.write_fallible(from).has_value(), "write_fallible");
        }
      }
    });
  }
  timer.report();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * bytes));
}
void BM_ReaderCopy(benchmark::State& state) { copy_rows(state, Direction::UserToHost); }
void BM_WriterCopy(benchmark::State& state) { copy_rows(state, Direction::HostToUser); }

// The baseline: memcpy of the same sizes between two host buffers, batched the same way.
void BM_Baseline_Memcpy(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  const auto bytes = static_cast<std::size_t>(state.range(0));
  BenchSpace& b = bench_space();
  const std::size_t n = copies_per_batch(bytes);
  BatchTimer timer(state, n);
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t i = 0; i < n; ++i) {
        std::memcpy(b.host_dst.get(), b.host_src.get(), bytes);
        benchmark::ClobberMemory();
      }
    });
  }
  timer.report();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * bytes));
}

#define VMS_COPY_SIZES \
  ->ArgName("bytes")->Arg(64)->Arg(4096)->Arg(128 << 10)->Arg(64 << 20)->UseManualTime()
BENCHMARK(BM_ReaderCopy) VMS_COPY_SIZES;
BENCHMARK(BM_WriterCopy) VMS_COPY_SIZES;
BENCHMARK(BM_Baseline_Memcpy) VMS_COPY_SIZES;
#undef VMS_COPY_SIZES

// mmu_translate for reads inside one held guard. Hit: 64 consecutive pages of the copy range,
// cycled (one per TLB set, all cached after the first round). Miss: the pseudo-random sequence
// of the xv6 walk baseline over the walk_pages() pages (a 256-entry TLB over 1M pages: almost
// every lookup misses, walks the table and fills the TLB). The tlb_hit_rate counter shows how
// close each row came to its name.
void translate_rows(benchmark::State& state, bool hits) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  BenchSpace& b = bench_space();
  ActiveSpace active(*b.space);
  const CpuId cpu = *current_cpu();
  BatchTimer timer(state, kFastOpsPerBatch);
  RandomPages random(kWalkBase, walk_pages());
  std::uint64_t i = 0;
  auto guard = disable_preempt();
  const TlbStats before = tlb_stats(cpu);
  for (auto _ : state) {
    timer.time([&] {
      for (std::size_t k = 0; k < kFastOpsPerBatch; ++k, ++i) {
        const Vaddr va = hits ? kCopyBase + (i % 64) * kPageSize : random.next();
        auto pa = mmu_translate(guard, va, PageFaultAccess::Read);
        if (!pa) [[unlikely]]
          fail("mmu_translate");
        benchmark::DoNotOptimize(*pa);
      }
    });
  }
  const TlbStats after = tlb_stats(cpu);
  timer.report();
  const double lookups =
      static_cast<double>((after.hits - before.hits) + (after.misses - before.misses));
  state.counters["tlb_hit_rate"] =
      lookups > 0 ? static_cast<double>(after.hits - before.hits) / lookups : 0;
}
void BM_TranslateTlbHit(benchmark::State& state) { translate_rows(state, true); }
void BM_TranslateTlbMiss(benchmark::State& state) { translate_rows(state, false); }
BENCHMARK(BM_TranslateTlbHit)->UseManualTime();
BENCHMARK(BM_TranslateTlbMiss)->UseManualTime();

// VmSpace::CursorMut::unmap of 512 mapped 4 KiB pages with the space active on two CPUs (the
// bench thread's and one more): cursor creation, the unmap, the flush dispatch to both CPUs and
// the drop, timed; per page. Untimed per batch: mapping 512 freshly allocated frames, touching
// every page on this CPU (so its TLB holds the translations the flush must remove), and an
// rcu_barrier so the frames are back in the allocator before the next batch.
void BM_UnmapDispatch512(benchmark::State& state) {
  BenchThread thread(state);
  if (!thread.ok()) return;
  if (num_cpus() < 2) {
    state.SkipWithError("needs two emulated CPUs");
    return;
  }
  BenchSpace& b = bench_space();
  const CpuId self = *current_cpu();
  const CpuId other = CpuId::try_from((self.as_u32() + 1) % num_cpus()).value();
  // Activate on the other CPU from a short-lived thread bound there; the CPU keeps the space
  // active after the thread unbinds, as a descheduled process keeps its CR3.
  std::thread([&] {
    auto binding = CpuBinding::bind(other);
    check(binding.has_value(), "bind the second CPU");
    check(b.space->activate().has_value(), "activate on the second CPU");
  }).join();
  ActiveSpace active(*b.space);
  const VaRange range{kUnmapBase, kUnmapBase + kBatchBytes};
  BatchTimer timer(state, kBatchPages);
  for (auto _ : state) {
    {
      auto guard = disable_preempt();
      auto c = take_ok(b.space->cursor_mut(guard, range), "map cursor");
      for (std::size_t i = 0; i < kBatchPages; ++i) {
        check(c.map(UFrame(take_ok(FrameAllocOptions().zeroed(false).alloc_frame(), "frame")),
                    kUserRw)
                  .has_value(),
              "map");
      }
    }
    auto reader = take_ok(b.space->reader(kUnmapBase, kBatchBytes), "reader");
    for (std::size_t i = 0; i < kBatchPages; ++i) {
      check(reader.read_val<std::uint8_t>().has_value(), "touch");
      check(reader.skip(kPageSize - 1).has_value(), "skip");
    }
    timer.time([&] {
      auto guard = disable_preempt();
      auto c = take_ok(b.space->cursor_mut(guard, range), "unmap cursor");
      check(take_ok(c.unmap(kBatchBytes), "unmap") == kBatchPages, "unmap count");
    });
    rcu_barrier();
  }
  timer.report();
  std::thread([&] {
    auto binding = CpuBinding::bind(other);
    check(binding.has_value() && VmSpace::deactivate_current().has_value(),
          "deactivate the second CPU");
  }).join();
}
BENCHMARK(BM_UnmapDispatch512)->UseManualTime();

}  // namespace
}  // namespace vmspace::bench
