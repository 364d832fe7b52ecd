// The emulated MMU's view of one user access: what the hardware would do on the calling CPU
// before a load or store, without the load or store.
//
// Readers and writers (io.hpp) use exactly this translation for every page they copy; it is
// public so that a teaching kernel can show what its MMU sees, and so benchmarks and tests can
// measure and probe the TLB without a copy around it.
#pragma once

#include <vmspace/addr.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// Translates user address `va` for `access` on the calling CPU, as its MMU would: first the
// CPU's software TLB, then, on a miss, a lock-free walk of the active space's page table that
// requires a present leaf with R and USER (and W for writes), sets ACCESSED (and DIRTY for
// writes) in the PTE atomically, and fills the TLB.
//
// Returns the physical address of the byte at `va`. It stays valid — the frame is not reused —
// only while `guard`'s read section lasts: a concurrent unmap may remove the mapping at any
// moment, and only the grace period after its TLB flush keeps the frame alive.
//
// Errors (the page-fault handler is never called; that is the copy engine's job):
//   PageFault     no usable translation (not mapped, or mapped without the needed permission);
//   AccessDenied  `va` is at or above kMaxUserspaceVaddr, the thread is not bound to a CPU, no
//                 user space is active on the CPU, or the page is device memory (nothing backs
//                 it in this emulation).
// Locking: none; safe against concurrent cursors on the same space.
Result<Paddr> mmu_translate(const DisabledPreemptGuard& guard, Vaddr va, PageFaultAccess access) noexcept;

}  // namespace vmspace
