#include "bench_support.hpp"

#include <pthread.h>

#include <algorithm>

#include <vmspace/boot.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/segment.hpp>

namespace vmspace::bench {

void fail(std::string_view what) {
  std::fprintf(stderr, "vmspace-bench: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

UserPageTable new_user_table() {
  return take_ok(create_user_page_table(kernel_page_table()), "create_user_page_table");
}

BenchThread::BenchThread(benchmark::State& state) {
  // Host core: the (thread_index mod n)-th of the n cores this thread may run on.
  if (pthread_getaffinity_np(pthread_self(), sizeof(saved_affinity_), &saved_affinity_) == 0) {
    const int allowed = CPU_COUNT(&saved_affinity_);
    int wanted = allowed > 0 ? state.thread_index() % allowed : 0;
    for (int core = 0; core < CPU_SETSIZE && allowed > 0; ++core) {
      if (!CPU_ISSET(core, &saved_affinity_) || wanted-- != 0) continue;
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(core, &one);
      restore_affinity_ = pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0;
      break;
    }
  }
  auto cpu = CpuId::try_from(static_cast<std::uint32_t>(state.thread_index()));
  if (!cpu) {
    state.SkipWithError("not enough emulated CPUs for this thread count (VMSPACE_CPUS)");
    return;
  }
  auto binding = CpuBinding::bind(*cpu);
  if (!binding) {
    state.SkipWithError("could not bind the benchmark thread to its emulated CPU");
    return;
  }
  binding_.emplace(std::move(*binding));
}

BenchThread::~BenchThread() {
  binding_.reset();
  if (restore_affinity_)
    pthread_setaffinity_np(pthread_self(), sizeof(saved_affinity_), &saved_affinity_);
}

void BatchTimer::report() {
  state_.SetItemsProcessed(state_.iterations() * static_cast<std::int64_t>(items_per_batch_));
  if (batch_seconds_.empty()) return;
  auto mid = batch_seconds_.begin() + static_cast<std::ptrdiff_t>(batch_seconds_.size() / 2);
  std::nth_element(batch_seconds_.begin(), mid, batch_seconds_.end());
  state_.counters["ns_per_item"] =
      benchmark::Counter(*mid * 1e9 / static_cast<double>(items_per_batch_));
}

const std::vector<UFrame>& frame_pool() {
  static const std::vector<UFrame>* pool = [] {
    auto* frames = new std::vector<UFrame>();
    frames->reserve(kBatchPages);
    for (std::size_t i = 0; i < kBatchPages; ++i) {
      frames->emplace_back(take_ok(FrameAllocOptions().alloc_frame(), "frame pool allocation"));
    }
    return frames;
  }();
  return *pool;
}

std::uint64_t walk_pages() {
  // Leaf tables take 8 bytes per page; keep them within a quarter of physical memory.
  static const std::uint64_t pages = [] {
    std::uint64_t n = std::uint64_t{1} << 20;
    while (n > kBatchPages && n * 8 > max_paddr() / 4) n /= 2;
    return n;
  }();
  return pages;
}

WalkTables& walk_tables() {
  static WalkTables* tables = [] {
    auto* t = new WalkTables{new_user_table(), {}};
    const auto& pool = frame_pool();
    const std::uint64_t n = walk_pages();
    auto guard = disable_preempt();
    auto cursor = take_ok(t->vmspace.cursor_mut(guard, {kWalkBase, kWalkBase + n * kPageSize}),
                          "walk table cursor");
    for (std::uint64_t i = 0; i < n; ++i) {
      const UFrame& frame = pool[i % pool.size()];
      check(cursor.map(UserItem::tracked(frame, kUserRw)).has_value(), "walk table map");
      check(t->xv6.mappages(kWalkBase + i * kPageSize, kPageSize, frame.paddr(),
                            Xv6PageTable::kRead | Xv6PageTable::kWrite | Xv6PageTable::kUser) == 0,
            "xv6 walk table map");
    }
    return t;
  }();
  return *tables;
}

void prepare_machine() {
  ensure_booted();
  // The RCU reclaimer thread starts on the first retire and inherits the creating thread's
  // CPU mask: start it now, before BenchThread pins anything.
  { RcuDrop<int> first(0); }
  rcu_barrier();

  // Take every free frame (zeroed: the memset is the touch), then give them all back.
  std::vector<Segment<NoMeta>> chunks;
  std::vector<Frame<NoMeta>> frames;
  for (;;) {
    auto seg = FrameAllocOptions().alloc_segment(kBatchPages);
    if (!seg) break;
    chunks.push_back(std::move(*seg));
  }
  for (;;) {
    auto frame = FrameAllocOptions().alloc_frame();
    if (!frame) break;
    frames.push_back(std::move(*frame));
  }
  chunks.clear();
  frames.clear();

  // Build the shared tables now rather than inside the first benchmark that needs them.
  (void)frame_pool();
  (void)walk_tables();
}

}  // namespace vmspace::bench
