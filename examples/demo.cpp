// vmspace-demo: a guided tour of the library, printing what happens at each step.
//
//  1. Boot the emulated machine.
//  2. Frames: allocate frames and a segment, write and read them, print allocator statistics.
//  3. Two emulated CPUs run two address spaces (one host thread per CPU):
//     - both spaces map one shared frame; CPU 0 writes through space A, CPU 1 reads through B;
//     - CPU 0 copies a message out of A into a kernel buffer; CPU 1 copies it into B;
//     - space A grows a heap on demand through the page-fault handler;
//     - unmapping shoots down both CPUs' TLBs and frees frames only after the flush.
//  4. Tear down and check that every frame came back.
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <vmspace/boot.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

using namespace vmspace;

namespace {

constexpr Vaddr kSharedVa = 0x0040'0000;
constexpr Vaddr kMessageVa = 0x0050'0000;
constexpr Vaddr kHeapStart = 0x1000'0000;
constexpr std::size_t kHeapBytes = 64 * 1024;
const PageProperty kRw = PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);

[[noreturn]] void die(const char* what, Error e) {
  std::fprintf(stderr, "demo: %s failed: %s\n", what, std::string(to_string(e)).c_str());
  std::exit(1);
}

template <class T>
T must(Result<T> r, const char* what) {
  if (!r) die(what, r.error());
  return std::move(r).value();
}
void must(Result<void> r, const char* what) {
  if (!r) die(what, r.error());
}

std::uint64_t frames_in_use() {
  return builtin_frame_allocator().stats().total_frames -
         global_frame_allocator().free_bytes() / kPageSize;
}

void map_frame(const VmSpace& space, Vaddr va, UFrame frame) {
  auto guard = disable_preempt();
  auto cursor = must(space.cursor_mut(guard, {va, va + kPageSize}), "cursor_mut");
  must(cursor.map(std::move(frame), kRw), "map");
}

// Prints every mapping of `space` in [0, end).
void print_mappings(const char* name, const VmSpace& space, Vaddr end) {
  auto guard = disable_preempt();
  auto cursor = must(space.cursor(guard, {0, end}), "cursor");
  std::size_t count = 0;
  std::printf("  %s mappings:", name);
  for (;;) {
    auto next = must(cursor.find_next(end - cursor.virt_addr()), "find_next");
    if (!next) break;
    auto [range, item] = must(cursor.query(), "query");
    if (count < 6) std::printf(" [%#lx..%#lx)->%#lx", range.start, range.end, item->paddr);
    ++count;
    if (range.end >= end) break;
    must(cursor.jump(range.end), "jump");
  }
  std::printf("%s (%zu pages)\n", count > 6 ? " ..." : "", count);
}

void step_frames() {
  std::printf("\n== Frames\n");
  auto frame = must(FrameAllocOptions().alloc_frame(), "alloc_frame");
  must(frame.write_val<std::uint64_t>(8, 0xfeedface), "write_val");
  std::printf("  frame at %#lx: refcount %lu, value at +8 = %#lx\n", frame.paddr(),
              frame.reference_count(), must(frame.read_val<std::uint64_t>(8), "read_val"));
  auto segment = must(FrameAllocOptions().alloc_segment(16), "alloc_segment");
  const char text[] = "hello from a 16-frame segment";
  must(segment.write_bytes(3 * kPageSize, std::as_bytes(std::span(text))), "write_bytes");
  char back[sizeof text] = {};
  must(segment.read_bytes(3 * kPageSize, std::as_writable_bytes(std::span(back))), "read_bytes");
  std::printf("  segment [%#lx, %#lx): read back \"%s\"\n", segment.paddr(), segment.end_paddr(),
              back);
  auto stats = builtin_frame_allocator().stats();
  std::printf("  allocator: %lu frames total, %lu free (%lu in per-CPU caches)\n",
              stats.total_frames, stats.free_frames, stats.cached_frames);
  std::printf("  free blocks by order:");
  for (unsigned o = 0; o <= BuddyFrameAllocator::kMaxOrder; ++o) {
    if (stats.free_blocks[o] != 0) std::printf(" %u:%lu", o, stats.free_blocks[o]);
  }
  std::printf("\n");
}

void step_spaces() {
  std::printf("\n== Two CPUs, two address spaces\n");
  auto a = must(VmSpace::create(), "VmSpace::create");
  auto b = must(VmSpace::create(), "VmSpace::create");

  // One frame shared by both spaces at the same address.
  auto shared = must(FrameAllocOptions().alloc_frame(), "alloc_frame");
  map_frame(*a, kSharedVa, UFrame(shared));
  map_frame(*b, kSharedVa, UFrame(shared));
  map_frame(*a, kMessageVa, UFrame(must(FrameAllocOptions().alloc_frame(), "alloc_frame")));
  map_frame(*b, kMessageVa, UFrame(must(FrameAllocOptions().alloc_frame(), "alloc_frame")));
  std::printf("  shared frame %#lx mapped in A and B: refcount %lu (1 handle + 2 PTEs)\n",
              shared.paddr(), shared.reference_count());

  // The heap of A grows on demand.
  std::atomic<unsigned> heap_faults{0};
  inject_user_page_fault_handler([&](const PageFaultInfo& info) -> Result<void> {
    if (info.address < kHeapStart || info.address >= kHeapStart + kHeapBytes)
      return err(Error::PageFault);
    auto frame = FrameAllocOptions().alloc_frame();
    if (!frame) return err(frame.error());
    const Vaddr page = align_down(info.address, kPageSize);
    auto guard = disable_preempt();
    auto cursor = info.space->cursor_mut(guard, {page, page + kPageSize});
    if (!cursor) return err(cursor.error());
    auto r = cursor->map(UFrame(std::move(*frame)), kRw);
    if (!r && r.error() != Error::AlreadyMapped) return r;  // a racing fault mapped it first
    heap_faults.fetch_add(1);
    return {};
  });

  std::vector<std::byte> kernel_buffer(64);
  std::atomic<int> phase{0};
  std::thread cpu0([&] {
    auto binding = must(CpuBinding::bind(CpuId::bsp()), "bind cpu0");
    must(a->activate(), "activate A");
    // Write through the shared frame and a message into A's private page.
    auto w = must(a->writer(kSharedVa, 8), "writer");
    must(w.write_val<std::uint64_t>(0xa11ce), "write shared");
    const char msg[] = "copied from space A to space B";
    VmReader<Infallible> src(std::as_bytes(std::span(msg)));
    auto wm = must(a->writer(kMessageVa, sizeof msg), "writer");
    if (!wm.write_fallible(src)) std::exit(1);
    // Kernel copy out of A.
    auto rm = must(a->reader(kMessageVa, sizeof msg), "reader");
    VmWriter<Infallible> dst{std::span<std::byte>(kernel_buffer)};
    auto copied = rm.read_fallible(dst);
    std::printf("  cpu0: wrote 0xa11ce through A, copied %zu bytes of A's message to the kernel\n",
                *copied);
    // Demand-fault a 64 KiB heap in A.
    auto heap = must(a->writer(kHeapStart, kHeapBytes), "writer");
    auto filled = heap.fill_zeros(kHeapBytes);
    std::printf("  cpu0: zeroed a %zu KiB heap in A: %s, %u page faults served\n",
                kHeapBytes / 1024, filled ? "ok" : "FAILED", heap_faults.load());
    // A store alone does not wake a thread already asleep in wait(): without the notify, cpu1
    // slept forever in most runs (regression_demo_lost_phase_wakeup).
    phase.store(1);
    phase.notify_all();
    phase.wait(1);
    (void)VmSpace::deactivate_current();
  });
  std::thread cpu1([&] {
    auto binding = must(CpuBinding::bind(CpuId::from_raw_unchecked(1)), "bind cpu1");
    must(b->activate(), "activate B");
    phase.wait(0);
    auto r = must(b->reader(kSharedVa, 8), "reader");
    std::printf("  cpu1: read %#lx through B's mapping of the shared frame\n",
                must(r.read_val<std::uint64_t>(), "read shared"));
    VmReader<Infallible> src{std::span<const std::byte>(kernel_buffer)};
    auto wb = must(b->writer(kMessageVa, kernel_buffer.size()), "writer");
    (void)wb.write_fallible(src);
    char back[64] = {};
    auto rb = must(b->reader(kMessageVa, sizeof back), "reader");
    VmWriter<Infallible> out{std::as_writable_bytes(std::span(back))};
    (void)rb.read_fallible(out);
    std::printf("  cpu1: B now holds \"%s\"\n", back);

    // Unmap the shared page from B while CPU 1 caches it: B's CPUs are flushed.
    const auto before = tlb_dispatch_stats();
    {
      auto guard = disable_preempt();
      auto cursor = must(b->cursor_mut(guard, {kSharedVa, kSharedVa + kPageSize}), "cursor_mut");
      auto n = must(cursor.unmap(kPageSize), "unmap");
      std::printf("  cpu1: unmapped %zu frame from B; ", n);
    }
    const auto after = tlb_dispatch_stats();
    auto r2 = must(b->reader(kSharedVa, 8), "reader");
    std::printf("%lu shootdown(s), %lu CPU flush(es); reading it again: %s\n",
                after.dispatches - before.dispatches, after.cpu_flushes - before.cpu_flushes,
                r2.read_val<std::uint64_t>() ? "still mapped?!" : "PageFault");
    phase.store(2);
    phase.notify_all();
    (void)VmSpace::deactivate_current();
  });
  cpu0.join();
  cpu1.join();
  inject_user_page_fault_handler({});

  print_mappings("A", *a, kHeapStart + kHeapBytes);
  print_mappings("B", *b, kHeapStart + kHeapBytes);
  for (std::uint32_t i = 0; i < 2; ++i) {
    auto s = tlb_stats(CpuId::from_raw_unchecked(i));
    std::printf("  cpu%u TLB: %lu hits, %lu misses, %lu page flushes, %lu full flushes\n", i,
                s.hits, s.misses, s.single_flushes, s.full_flushes);
  }
  auto f = fault_stats();
  std::printf("  faults: %lu served by the handler, %lu unresolved, %lu refused\n", f.handled,
              f.unresolved, f.refused);
  std::printf("  frames in use with both spaces alive: %lu\n", frames_in_use());
}

}  // namespace

int main() {
  BootConfig config;
  config.phys_mem_bytes = std::uint64_t{256} << 20;
  config.num_cpus = 2;
  must(boot(config), "boot");
  set_tlb_check_mode(TlbCheckMode::Count);
  std::printf("vmspace demo: booted %lu MiB of emulated physical memory, %u CPUs\n",
              config.phys_mem_bytes >> 20, num_cpus());
  const std::uint64_t baseline = frames_in_use();
  std::printf("  frames in use after boot (kernel page table): %lu\n", baseline);
  step_frames();
  step_spaces();
  rcu_barrier();
  const std::uint64_t end = frames_in_use();
  std::printf(
      "\n== Teardown\n  frames in use: %lu (boot: %lu) -> %s; stale TLB hits detected: %lu\n", end,
      baseline, end == baseline ? "every frame came back" : "LEAK", tlb_stale_hits());
  return end == baseline && tlb_stale_hits() == 0 ? 0 : 1;
}
