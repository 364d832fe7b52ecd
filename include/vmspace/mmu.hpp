// The emulated MMU's view of one user access: what the hardware would do on the calling CPU
// before a load or store, without the load or store.
//
// Readers and writers (io.hpp) use exactly this translation for every page they copy; it is
// public so that a teaching kernel can show what its MMU sees, and so benchmarks and tests can
// measure and probe the TLB without a copy around it.
#pragma once

#include <atomic>
#include <cstdint>

#include <vmspace/addr.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// Translates user address `va` for `access` on the calling CPU, as its MMU would: first the
// CPU's software TLB, then, on a miss, a lock-free walk of the active space's page table that
// requires a present leaf with USER and the permission `access` needs — R for Read, R and W for
// Write, X for Execute (an instruction fetch; X alone suffices, as on RISC-V) — sets ACCESSED
// (and DIRTY for writes) in the PTE atomically, and fills the TLB. A TLB entry remembers which
// of R, W and X the PTE granted when it was filled (W only once DIRTY is set), so a hit never
// grants more than a walk would: an entry filled by a read serves a fetch only if the PTE had X.
//
// Returns the physical address of the byte at `va`. It stays valid — the frame is not reused —
// only while `guard`'s read section lasts: a concurrent unmap may remove the mapping at any
// moment, and only the grace period after its TLB flush keeps the frame alive.
//
// Errors (the page-fault handler is never called; that is the copy engine's job):
//   PageFault     no usable translation (not mapped, or mapped without the needed permission,
//                 e.g. Execute on a page without X);
//   AccessDenied  `va` is at or above kMaxUserspaceVaddr, the thread is not bound to a CPU, no
//                 user space is active on the CPU, or the page is device memory (nothing backs
//                 it in this emulation).
// Locking: none; safe against concurrent cursors on the same space.
Result<Paddr> mmu_translate(const DisabledPreemptGuard& guard, Vaddr va,
                            PageFaultAccess access) noexcept;

// The calling CPU's TLB invalidation counter, for clients that cache translations in front of
// the TLB (an instruction interpreter keeps the host pointer of its current code page). Every
// invalidation of this CPU's TLB — one page, a range, everything, the activation of another
// space, whichever thread dispatches it — increments the counter (sequentially consistent)
// before it removes any entry.
//
// The rule for such a cache: read the counter (acquire) before calling mmu_translate, and
// reuse the translation only while (a) the counter still reads that value, checked before
// every use, and (b) the same read section lasts. (a) makes a shootdown take effect no later
// than it would for the TLB itself: a hit racing with an invalidation is an access in flight.
// (b) keeps the frame alive: an unmapped frame is freed only after the flush and a grace
// period, so a translation must never be carried from one read section into the next.
//
// Returns nullptr when the thread is not bound to a CPU. The counter lives as long as the
// machine (the whole process), so the pointer may be kept.
const std::atomic<std::uint64_t>* mmu_tlb_invalidations(const DisabledPreemptGuard& guard) noexcept;

}  // namespace vmspace
