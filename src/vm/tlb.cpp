// TLB coherence (tlb.hpp): TlbFlushOp, the TlbFlusher's issue and dispatch (the "IPI" that
// invalidates every target CPU's software TLB, then hands the kept frames to RCU), the per-CPU
// TLBs' fills, invalidations and checking mode (tlb_impl.hpp), and their statistics.
#include <vmspace/log.hpp>
#include <vmspace/meta.hpp>
#include <vmspace/internal/mutation.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/tlb.hpp>

#include <cstdlib>
#include <memory>
#include <string_view>

#include "machine/machine.hpp"
#include "vm/tlb_impl.hpp"

namespace vmspace {

namespace {

TlbCheckMode initial_check_mode() {
  const char* env = std::getenv("VMSPACE_TLB_CHECK");
  if (env == nullptr) return TlbCheckMode::Off;
  std::string_view v(env);
  if (v == "abort") return TlbCheckMode::Abort;
  if (v == "1" || v == "count" || v == "on") return TlbCheckMode::Count;
  return TlbCheckMode::Off;
}

std::atomic<std::uint64_t> g_dispatches{0};
std::atomic<std::uint64_t> g_cpu_flushes{0};
std::atomic<std::uint64_t> g_frames_kept{0};

// Invalidates `ops` (or everything) in one CPU's TLB.
void apply_ops(internal::Tlb& tlb, bool all, const std::vector<TlbFlushOp>& ops) noexcept {
  if (all) {
    tlb.flush_all();
    return;
  }
  for (const TlbFlushOp& op : ops) {
    for (std::size_t i = 0; i < op.num_pages(); ++i) tlb.flush_page(op.start() + i * kPageSize);
  }
}

}  // namespace

// ---- the per-CPU TLB ----

namespace internal {

std::atomic<TlbCheckMode> g_tlb_check_mode{initial_check_mode()};

void Tlb::check_generation(const Entry& e, Vaddr va, Paddr pa) noexcept {
  const std::uint32_t filled = e.generation.load(std::memory_order_relaxed);
  const std::uint32_t now = frame_generation(pa);
  if (filled != now) report_stale_hit(va, pa, filled, now);
}

void Tlb::fill(Vaddr va, Paddr pa_page, std::uint64_t flags, std::uint32_t generation,
               std::uint64_t snapshot) noexcept {
  const std::uint64_t key = key_of(va);
  const std::size_t set = set_of(va);
  const std::size_t base = set * kTlbWays;
  // Reuse the way already holding this page (a read entry upgraded by a write), else an invalid
  // way, else round-robin.
  std::size_t way = kTlbWays;
  for (std::size_t w = 0; w < kTlbWays && way == kTlbWays; ++w) {
    if (entries_[base + w].tag.load(std::memory_order_relaxed) == key) way = w;
  }
  for (std::size_t w = 0; w < kTlbWays && way == kTlbWays; ++w) {
    if (entries_[base + w].tag.load(std::memory_order_relaxed) == 0) way = w;
  }
  if (way == kTlbWays) {
    way = next_victim_[set];
    next_victim_[set] = static_cast<std::uint8_t>((way + 1) % kTlbWays);
  }
  Entry& e = entries_[base + way];
  // Only the owner translates through entries; other threads invalidate them or snapshot them
  // for checks. Retire the old tag before the data changes (the release store of the data keeps
  // that order) so a snapshot never pairs the old page with the new frame.
  e.tag.store(0, std::memory_order_relaxed);
  e.data.store(pa_page | flags, std::memory_order_release);
  e.generation.store(generation, std::memory_order_relaxed);
  e.tag.store(key, std::memory_order_seq_cst);
  if (flush_seq_.load(std::memory_order_seq_cst) != snapshot) {
    // An invalidation ran while we walked: our translation may already be stale.
    std::uint64_t expected = key;
    e.tag.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }
}

void Tlb::flush_page(Vaddr va) noexcept {
  flush_seq_.fetch_add(1, std::memory_order_seq_cst);
  const std::uint64_t key = key_of(va);
  const std::size_t base = set_of(va) * kTlbWays;
  for (std::size_t w = 0; w < kTlbWays; ++w) {
    std::uint64_t expected = key;
    entries_[base + w].tag.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }
  single_flushes_.fetch_add(1, std::memory_order_relaxed);
}

void Tlb::flush_all() noexcept {
  flush_seq_.fetch_add(1, std::memory_order_seq_cst);
  for (Entry& e : entries_) e.tag.store(0, std::memory_order_seq_cst);
  full_flushes_.fetch_add(1, std::memory_order_relaxed);
}

bool Tlb::contains(Vaddr va) const noexcept {
  const std::uint64_t key = key_of(va);
  const std::size_t base = set_of(va) * kTlbWays;
  for (std::size_t w = 0; w < kTlbWays; ++w) {
    if (entries_[base + w].tag.load(std::memory_order_acquire) == key) return true;
  }
  return false;
}

TlbStats Tlb::stats() const noexcept {
  return TlbStats{hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed),
                  single_flushes_.load(std::memory_order_relaxed),
                  full_flushes_.load(std::memory_order_relaxed),
                  stale_hits_.load(std::memory_order_relaxed)};
}

void Tlb::report_stale_hit(Vaddr va, Paddr pa, std::uint32_t filled, std::uint32_t now) noexcept {
  stale_hits_.fetch_add(1, std::memory_order_relaxed);
  if (internal::g_tlb_check_mode.load(std::memory_order_relaxed) == TlbCheckMode::Abort) {
    VMS_PANIC(
        "TLB hit for va {:#x} uses frame {:#x} freed since the entry was filled "
        "(generation {} -> {})",
        va, pa, filled, now);
  }
  logger().error(
      "TLB hit for va {:#x} uses frame {:#x} freed since the entry was filled "
      "(generation {} -> {})",
      va, pa, filled, now);
}

}  // namespace internal

// ---- flush operations and the flusher ----

Result<TlbFlushOp> TlbFlushOp::for_range(VaRange range) noexcept {
  if (!is_aligned(range.start, kPageSize) || !is_aligned(range.end, kPageSize) || range.empty()) {
    return err(Error::InvalidArgs);
  }
  const std::uint64_t pages = (range.end - range.start) / kPageSize;
  if (pages >= kFlushAllThreshold) return for_all();
  return TlbFlushOp(range.start | pages);
}

TlbFlusher::~TlbFlusher() {
  // Undispatched operations are dropped (OSTD); kept frames still wait for a grace period.
  if (!kept_.empty()) {
    auto* batch = new std::vector<DynSegment>(std::move(kept_));
    rcu_retire(batch, [](void* p) { delete static_cast<std::vector<DynSegment>*>(p); });
  }
}

void TlbFlusher::push(TlbFlushOp op) {
  if (flush_all_) return;
  if (op.is_all() || pages_ + op.num_pages() >= TlbFlushOp::kFlushAllThreshold) {
    flush_all_ = true;
    ops_.clear();
    pages_ = 0;
    return;
  }
  ops_.push_back(op);
  pages_ += op.num_pages();
}

void TlbFlusher::issue_tlb_flush(TlbFlushOp op) { push(op); }

void TlbFlusher::issue_tlb_flush_with(TlbFlushOp op, DynSegment keep) {
  push(op);
  if (internal::mutated(internal::Mutation::ReleaseFrameBeforeDispatch)) {
    RcuDrop<DynSegment> early(std::move(keep));  // freed after a grace period, flush or not
    return;
  }
  kept_.push_back(std::move(keep));
}

void TlbFlusher::dispatch_tlb_flush() {
  if (!has_pending()) return;
  // fetch_or(0, release): pairs with activate()'s add(cpu, acquire) — a CPU that activates the
  // space after this load has not cached anything we removed.
  const CpuSet cpus = targets_->load(std::memory_order_release);
  internal::Machine& m = internal::machine();
  std::uint64_t flushed = 0;
  for (CpuId cpu : cpus) {
    apply_ops(m.cpus[cpu.as_u32()].tlb, flush_all_, ops_);
    ++flushed;
  }
  g_dispatches.fetch_add(1, std::memory_order_relaxed);
  g_cpu_flushes.fetch_add(flushed, std::memory_order_relaxed);
  if (!kept_.empty()) {
    std::uint64_t frames = 0;
    for (const DynSegment& s : kept_) frames += s.nframes();
    g_frames_kept.fetch_add(frames, std::memory_order_relaxed);
    auto* batch = new std::vector<DynSegment>(std::move(kept_));
    kept_.clear();
    rcu_retire(batch, [](void* p) { delete static_cast<std::vector<DynSegment>*>(p); });
  }
  ops_.clear();
  pages_ = 0;
  flush_all_ = false;
}

// ---- statistics and checking mode ----

TlbStats tlb_stats(CpuId cpu) {
  ensure_booted();
  return internal::machine().cpus[cpu.as_u32()].tlb.stats();
}

std::vector<TlbEntryInfo> tlb_entries(CpuId cpu) {
  ensure_booted();
  std::vector<TlbEntryInfo> out;
  internal::machine().cpus[cpu.as_u32()].tlb.for_each_entry(
      [&](Vaddr va, Paddr pa, std::uint64_t flags) {
        out.push_back(TlbEntryInfo{va, pa, (flags & internal::Tlb::kWritable) != 0,
                                   (flags & internal::Tlb::kExecutable) != 0});
      });
  return out;
}

TlbDispatchStats tlb_dispatch_stats() noexcept {
  return TlbDispatchStats{g_dispatches.load(std::memory_order_relaxed),
                          g_cpu_flushes.load(std::memory_order_relaxed),
                          g_frames_kept.load(std::memory_order_relaxed)};
}

void set_tlb_check_mode(TlbCheckMode mode) noexcept {
  internal::g_tlb_check_mode.store(mode, std::memory_order_relaxed);
}
TlbCheckMode tlb_check_mode() noexcept {
  return internal::g_tlb_check_mode.load(std::memory_order_relaxed);
}

std::uint64_t tlb_stale_hits() noexcept {
  if (!is_booted()) return 0;
  std::uint64_t n = 0;
  internal::Machine& m = internal::machine();
  for (std::uint32_t i = 0; i < m.config.num_cpus; ++i) n += m.cpus[i].tlb.stats().stale_frame_hits;
  return n;
}

}  // namespace vmspace
