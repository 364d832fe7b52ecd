// TLB coherence: flush operations, the flusher that batches them, and the per-CPU software
// TLBs' statistics and checking mode (OSTD `ostd/src/mm/tlb.rs`: `TlbFlusher`, `TlbFlushOp`).
//
// Every emulated CPU has a software TLB caching translations of its active VmSpace (filled by
// the software MMU on a miss, see vm_space.hpp). A TlbFlusher collects flush operations and the
// frames (unmapped pages, detached page-table nodes) that must outlive every cached
// translation, then dispatches: it invalidates the TLB of every CPU in the target set (the
// "IPI" runs on the dispatching thread, so dispatch is synchronous) and hands the kept frames to
// RCU. A kept frame is therefore freed only after (a) every CPU in the space's CPU set at
// dispatch time has invalidated the stale entries and (b) a grace period has passed, so no copy
// that translated through a stale entry can still be running.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <vmspace/addr.hpp>
#include <vmspace/cpu.hpp>
#include <vmspace/segment.hpp>

namespace vmspace {

// One flush request: all non-global entries, one page, or a small page range. Ranges of 32
// pages or more become "all", as in OSTD. The encoding is OSTD's 8-byte one.
class TlbFlushOp {
 public:
  static constexpr std::size_t kFlushAllThreshold = 32;  // pages

  // Every non-global entry of the TLB.
  static constexpr TlbFlushOp for_all() noexcept { return TlbFlushOp(kAll); }
  // One page; `va` is rounded down to its page.
  static constexpr TlbFlushOp for_single(Vaddr va) noexcept {
    return TlbFlushOp(align_down(va, kPageSize) | 1);
  }
  // [range.start, range.end). Errors: InvalidArgs if either end is unaligned or the range is
  // empty (OSTD panics).
  static Result<TlbFlushOp> for_range(VaRange range) noexcept;

  // Whether this flushes every non-global entry.
  bool is_all() const noexcept { return raw_ == kAll; }
  // First page flushed (meaningless for is_all()).
  Vaddr start() const noexcept { return raw_ & ~kNpagesMask; }
  // Pages covered (meaningless for is_all()).
  std::size_t num_pages() const noexcept { return static_cast<std::size_t>(raw_ & kNpagesMask); }

  friend constexpr bool operator==(TlbFlushOp, TlbFlushOp) = default;

 private:
  static constexpr std::uint64_t kAll = ~std::uint64_t{0};
  static constexpr std::uint64_t kNpagesMask = 63;  // (1 << bit_width(32)) - 1
  constexpr explicit TlbFlushOp(std::uint64_t raw) noexcept : raw_(raw) {}
  std::uint64_t raw_;
};

// Collects flushes and frames to keep, then makes every target CPU's TLB coherent.
//
// The target set is a reference to a VmSpace's AtomicCpuSet and is read at dispatch time.
// Not thread-safe: one flusher belongs to one cursor on one thread. Destroying a flusher with
// undispatched operations drops them (no flush), and its kept frames are released after a
// grace period only — as in OSTD; callers that unmapped something must dispatch first.
class TlbFlusher {
 public:
  // A flusher with nothing queued that will flush the CPUs in `targets` (read at each dispatch).
  // `targets` must outlive the flusher.
  explicit TlbFlusher(const AtomicCpuSet& targets) noexcept : targets_(&targets) {}
  // Moves the queued operations and kept frames into the new flusher; the moved-from flusher
  // may only be destroyed or assigned to.
  TlbFlusher(TlbFlusher&&) noexcept = default;
  // Move assignment; whatever the target had queued is dropped as by the destructor.
  TlbFlusher& operator=(TlbFlusher&&) noexcept = default;
  TlbFlusher(const TlbFlusher&) = delete;
  TlbFlusher& operator=(const TlbFlusher&) = delete;
  ~TlbFlusher();

  // Queues `op`. Nothing is invalidated yet.
  void issue_tlb_flush(TlbFlushOp op);
  // Queues `op` and keeps `keep` (an unmapped page, huge page or detached page-table node)
  // alive until the flush is dispatched and a grace period has passed.
  void issue_tlb_flush_with(TlbFlushOp op, DynSegment keep);
  // Invalidates the queued operations on every CPU in the target set (read now, with release
  // semantics so that a CPU activating the space concurrently is either flushed or does not
  // yet cache anything) and hands the kept frames to RCU. No-op when nothing is queued.
  void dispatch_tlb_flush();
  // Waits until the dispatched flushes completed on every target. Dispatch is already
  // synchronous here (the invalidation runs on the dispatching thread), so this returns at
  // once; it exists so kernels written against OSTD's asynchronous API keep their shape.
  void sync_tlb_flush() noexcept {}

  // Whether anything (an operation or a kept frame) is waiting for dispatch_tlb_flush.
  bool has_pending() const noexcept { return flush_all_ || !ops_.empty() || !kept_.empty(); }

 private:
  void push(TlbFlushOp op);

  const AtomicCpuSet* targets_;
  std::vector<TlbFlushOp> ops_;
  std::size_t pages_ = 0;
  bool flush_all_ = false;
  std::vector<DynSegment> kept_;
};

// Per-CPU TLB counters (approximate under concurrency).
struct TlbStats {
  // Lookups served from the TLB.
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;            // lookups that walked the page table
  std::uint64_t single_flushes = 0;    // pages invalidated by single/range operations
  std::uint64_t full_flushes = 0;      // whole-TLB invalidations (flush-all, activation)
  std::uint64_t stale_frame_hits = 0;  // checking mode: hits whose frame was freed since fill
};
// The counters of `cpu`. Boots the machine with defaults if it is not booted; `cpu` must be one of
// its CPUs.
TlbStats tlb_stats(CpuId cpu);

// Global TLB-shootdown counters.
struct TlbDispatchStats {
  std::uint64_t dispatches = 0;   // dispatch_tlb_flush calls that had work
  std::uint64_t cpu_flushes = 0;  // per-target-CPU invalidations performed
  std::uint64_t frames_kept = 0;  // frames handed to RCU after a flush
};
// The shootdown counters since start-up (each read on its own, relaxed; they only grow).
TlbDispatchStats tlb_dispatch_stats() noexcept;

// Checking mode: every TLB hit also checks that the frame it translates to has not been freed
// since the entry was filled (per-frame incarnation counters). A violation is logged at error
// level and counted in TlbStats::stale_frame_hits; with kAbort the process aborts instead.
// Off by default; the environment variable VMSPACE_TLB_CHECK=1 (or =abort) turns it on.
enum class TlbCheckMode : std::uint8_t { Off, Count, Abort };
// Switches the checking mode for all CPUs; takes effect for lookups that start afterwards.
// Thread-safe.
void set_tlb_check_mode(TlbCheckMode mode) noexcept;
// The current checking mode.
TlbCheckMode tlb_check_mode() noexcept;
// Total stale hits detected on all CPUs.
std::uint64_t tlb_stale_hits() noexcept;

// One valid entry of a CPU's software TLB: a translation the CPU may use without walking.
struct TlbEntryInfo {
  Vaddr va;       // page address
  Paddr pa;       // physical page it translates to
  bool writable;  // cached for writing (the PTE had W, and DIRTY was set, when it was filled)
  bool executable = false;  // serves instruction fetches (the PTE had X when it was filled)
};
// A read-only snapshot of `cpu`'s valid entries, for invariant checks and tests (every cached
// translation must agree with the page table of the space active on `cpu` once flushes are
// dispatched: check::check_tlb_coherence). Exact only while no thread uses or
// flushes that CPU's TLB; under concurrency each entry was valid at some moment during the
// call. Never changes the TLB or its statistics.
std::vector<TlbEntryInfo> tlb_entries(CpuId cpu);

// The number of distinct entries a CPU's TLB can hold.
inline constexpr std::size_t kTlbSets = 64;
// Associativity: entries per set (a set is chosen by the page number).
inline constexpr std::size_t kTlbWays = 4;
// Total capacity: kTlbSets * kTlbWays.
inline constexpr std::size_t kTlbEntries = kTlbSets * kTlbWays;

}  // namespace vmspace
