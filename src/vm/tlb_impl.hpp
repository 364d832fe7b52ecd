// Internal: one CPU's software TLB.
//
// A 64-set, 4-way cache of 4 KiB translations of the CPU's active user space. Lookups and fills
// are done by the thread bound to the CPU; invalidations come from any thread (a TLB shootdown
// runs on the dispatching thread). Entries are atomics so that an invalidation racing with a
// lookup is a defined, harmless race: the lookup may still use the old translation, exactly like
// an instruction already in flight on a real CPU — which is why copies translate inside an RCU
// read section and unmapped frames are freed only after a grace period.
//
// Fill/invalidate race: a fill computed from a page-table walk that started before an
// invalidation must not survive it. Every invalidation first bumps `flush_seq_`; a fill reads
// the sequence before walking and re-reads it after publishing the entry, and withdraws the
// entry if the sequence moved. With sequentially consistent accesses either the invalidation
// sees the published entry, or the filler sees the bumped sequence.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <type_traits>

#include <vmspace/addr.hpp>
#include <vmspace/meta.hpp>
#include <vmspace/tlb.hpp>

#include "base/single_writer.hpp"

namespace vmspace::internal {

// The checking mode (set_tlb_check_mode); read on every TLB hit.
extern std::atomic<TlbCheckMode> g_tlb_check_mode;

class Tlb {
 public:
  // Bits of an entry's data word besides the page address.
  static constexpr std::uint64_t kReadable = 1u << 0;
  static constexpr std::uint64_t kWritable = 1u << 1;    // W in the PTE and DIRTY already set
  static constexpr std::uint64_t kTracked = 1u << 2;     // the frame's generation is meaningful
  static constexpr std::uint64_t kExecutable = 1u << 3;  // X in the PTE
  static constexpr std::uint64_t kAddrMask = ~std::uint64_t{0xfff};

  // The physical page for `va` if an entry grants `need` (kReadable, kWritable or kExecutable),
  // or nullopt on a miss (including a write to an entry filled for reading, or a fetch through
  // an entry whose PTE had no X). Owner only. Inline: it is the hot path of every user access
  // (target ~2 ns).
  std::optional<Paddr> lookup(Vaddr va, std::uint64_t need) noexcept {
    const std::uint64_t key = key_of(va);
    const std::size_t base = set_of(va) * kTlbWays;
    for (std::size_t w = 0; w < kTlbWays; ++w) {
      Entry& e = entries_[base + w];
      if (e.tag.load(std::memory_order_acquire) != key) continue;
      const std::uint64_t data = e.data.load(std::memory_order_relaxed);
      if ((data & need) == 0) break;  // needs a walk (permission, or DIRTY for a write)
      const Paddr pa = data & kAddrMask;
      if ((data & kTracked) != 0 && check_mode() != TlbCheckMode::Off) [[unlikely]] {
        check_generation(e, va, pa);
      }
      single_writer_add(hits_, 1);  // owner only
      return pa;
    }
    single_writer_add(misses_, 1);
    return std::nullopt;
  }

  // Snapshot to pass to fill(); take it before walking the page table. Owner only.
  std::uint64_t begin_fill() const noexcept { return flush_seq_.load(std::memory_order_seq_cst); }
  // Caches va -> pa_page. Owner only.
  void fill(Vaddr va, Paddr pa_page, std::uint64_t flags, std::uint32_t generation,
            std::uint64_t snapshot) noexcept;

  // Incremented by every invalidation before it removes anything (see the file comment).
  const std::atomic<std::uint64_t>& flush_sequence() const noexcept { return flush_seq_; }

  // Any thread.
  void flush_page(Vaddr va) noexcept;
  void flush_all() noexcept;

  TlbStats stats() const noexcept;
  // True if some valid entry translates `va` (tests and checks; any thread).
  bool contains(Vaddr va) const noexcept;
  // Visits every valid entry as f(page va, page pa) or f(page va, page pa, flag bits). For
  // invariant checks at quiescent points.
  template <class F>
  void for_each_entry(F&& f) const {
    for (const Entry& e : entries_) {
      const std::uint64_t tag = e.tag.load(std::memory_order_acquire);
      if (tag == 0) continue;
      const std::uint64_t data = e.data.load(std::memory_order_relaxed);
      const auto va = static_cast<Vaddr>((tag >> 1) << kPageShift);
      if constexpr (std::is_invocable_v<F&, Vaddr, Paddr, std::uint64_t>) {
        f(va, data & kAddrMask, data & ~kAddrMask);
      } else {
        f(va, data & kAddrMask);
      }
    }
  }

 private:
  struct Entry {
    std::atomic<std::uint64_t> tag{0};   // (vpn << 1) | 1, or 0 when invalid
    std::atomic<std::uint64_t> data{0};  // page paddr | flags
    std::atomic<std::uint32_t> generation{0};
  };
  static std::uint64_t key_of(Vaddr va) noexcept { return ((va >> kPageShift) << 1) | 1; }
  static std::size_t set_of(Vaddr va) noexcept { return (va >> kPageShift) & (kTlbSets - 1); }
  static TlbCheckMode check_mode() noexcept {
    return g_tlb_check_mode.load(std::memory_order_relaxed);
  }
  void check_generation(const Entry& e, Vaddr va, Paddr pa) noexcept;
  void report_stale_hit(Vaddr va, Paddr pa, std::uint32_t filled, std::uint32_t now) noexcept;

  std::array<Entry, kTlbEntries> entries_{};
  std::array<std::uint8_t, kTlbSets> next_victim_{};  // owner only
  std::atomic<std::uint64_t> flush_seq_{0};
  std::atomic<std::uint64_t> hits_{0};    // owner writes, anyone reads
  std::atomic<std::uint64_t> misses_{0};  // owner writes, anyone reads
  std::atomic<std::uint64_t> single_flushes_{0};
  std::atomic<std::uint64_t> full_flushes_{0};
  std::atomic<std::uint64_t> stale_hits_{0};
};

}  // namespace vmspace::internal
