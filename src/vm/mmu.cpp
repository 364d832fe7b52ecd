// The software MMU behind fallible readers and writers: translation through the calling CPU's
// TLB and active page table, the page-by-page copy engine, and user page-fault handling.
//
// A translation is valid only inside the RCU read section it was made in: a concurrent unmap may
// invalidate it at any moment (TLB shootdown runs on the unmapping thread), but the frame it
// points to is freed only after a grace period. The copy engine therefore translates and copies
// inside read sections, and leaves the section to run the fault handler.
#include <vmspace/fault.hpp>
#include <vmspace/internal/copy.hpp>
#include <vmspace/log.hpp>
#include <vmspace/meta.hpp>
#include <vmspace/mmu.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/vm_space.hpp>

#include <atomic>
#include <memory>

#include "machine/machine.hpp"
#include "machine/cpu_local.hpp"

namespace vmspace {

namespace {

using Pte = UserPtConfig::Pte;
using Consts = Pte::Consts;

Mutex g_handler_lock;
std::shared_ptr<const UserPageFaultHandler> g_handler VMS_GUARDED_BY(g_handler_lock);
std::atomic<std::uint64_t> g_faults_handled{0};
std::atomic<std::uint64_t> g_faults_unresolved{0};
std::atomic<std::uint64_t> g_faults_refused{0};

// Stay at most this many bytes in one read section during a long copy, so grace periods
// (and with them frame reuse) are not held up by a 64 MiB copy.
constexpr std::size_t kBytesPerSection = 256 * 1024;

enum class Translate : std::uint8_t { Ok, Fault, Refused };

struct Translation {
  Translate status;
  Paddr pa;  // of the byte at the translated address
};

// The TLB entry bit an access needs.
std::uint64_t tlb_need(PageFaultAccess access) noexcept {
  switch (access) {
    case PageFaultAccess::Read:
      return internal::Tlb::kReadable;
    case PageFaultAccess::Write:
      return internal::Tlb::kWritable;
    case PageFaultAccess::Execute:
      return internal::Tlb::kExecutable;
  }
  return internal::Tlb::kReadable;
}

// Walks the table rooted at `root` for `va` like an MMU: the leaf must be present with USER and
// R (reads), R and W (writes) or X (instruction fetch). Sets ACCESSED (and DIRTY for writes)
// with a CAS so a concurrent cursor write is never overwritten; retries the walk if the entry
// changed underneath.
// Its own loop, not internal::descend (internal/pt_walk.hpp), which the checks share: this is
// the miss path of every user access, it CASes the leaf it finds and restarts from the root
// when it loses; descend() could serve (the CAS going to the entry it returns), but that has
// not been measured on this path, and the walk must not get slower.
Translation walk_and_fill(internal::PerCpu& cpu, Paddr root, Vaddr va,
                          PageFaultAccess access) noexcept {
  const bool write = access == PageFaultAccess::Write;
  const std::uint64_t snapshot = cpu.tlb.begin_fill();
restart:
  Paddr node = root;
  for (PagingLevel level = Consts::kNrLevels; level >= 1; --level) {
    boost::atomic_ref<std::uint64_t> entry(
        reinterpret_cast<std::uint64_t*>(paddr_to_vaddr(node))[pte_index<Consts>(va, level)]);
    std::uint64_t raw = entry.load(boost::memory_order_acquire);
    if (!Pte::is_present(raw, level)) return {Translate::Fault, 0};
    if (!Pte::is_leaf(raw, level)) {
      node = Pte::paddr(raw, level);
      continue;
    }
    const PteScalar s = Pte::decode(raw, level);
    const PageProperty& p = s.prop;
    const bool permitted =
        access == PageFaultAccess::Execute
            ? has(p.flags, PageFlags::X)
            : has(p.flags, PageFlags::R) && (!write || has(p.flags, PageFlags::W));
    if (!permitted || !has(p.priv_flags, PrivilegedPageFlags::USER)) return {Translate::Fault, 0};
    const std::uint64_t wanted = raw | Pte::kAccessedBit | (write ? Pte::kDirtyBit : 0);
    if (wanted != raw && !entry.compare_exchange_strong(raw, wanted, boost::memory_order_acq_rel,
                                                        boost::memory_order_acquire)) {
      goto restart;
    }
    const std::uint64_t size = page_size<Consts>(level);
    const Paddr pa_page = s.paddr + (va & (size - 1) & ~std::uint64_t{kPageSize - 1});
    // Device memory (above RAM) has nothing behind it in this emulation.
    if (pa_page >= max_paddr()) return {Translate::Refused, 0};
    const bool tracked = !has(p.priv_flags, PrivilegedPageFlags::AVAIL1);
    const bool dirty = write || (wanted & Pte::kDirtyBit) != 0;
    // The entry grants what the PTE grants (a later hit must not exceed a walk's answer).
    std::uint64_t flags = 0;
    if (has(p.flags, PageFlags::R)) flags |= internal::Tlb::kReadable;
    if (has(p.flags, PageFlags::R) && has(p.flags, PageFlags::W) && dirty)
      flags |= internal::Tlb::kWritable;
    if (has(p.flags, PageFlags::X)) flags |= internal::Tlb::kExecutable;
    if (tracked) flags |= internal::Tlb::kTracked;
    cpu.tlb.fill(va, pa_page, flags, tracked ? frame_generation(pa_page) : 0, snapshot);
    return {Translate::Ok, pa_page + (va & (kPageSize - 1))};
  }
  return {Translate::Fault, 0};
}

// The calling CPU's state if it can make user accesses (bound, with a user space active), else
// nullptr. Looked up once per read section: the binding and the active space are the calling
// thread's own and cannot change while it is inside one.
internal::PerCpu* user_cpu() noexcept {
  const auto cpu_id = internal::bound_cpu();
  if (!cpu_id) return nullptr;
  internal::PerCpu& cpu = internal::machine().cpus[cpu_id->as_u32()];
  return cpu.active ? &cpu : nullptr;
}

// Translates a user address on `cpu` (from user_cpu(); nullptr refuses). Precondition: inside a
// read section.
Translation translate(internal::PerCpu* cpu, Vaddr va, PageFaultAccess access) noexcept {
  if (va >= kMaxUserspaceVaddr || cpu == nullptr) [[unlikely]]
    return {Translate::Refused, 0};
  if (auto pa = cpu->tlb.lookup(va, tlb_need(access))) [[likely]] {
    return {Translate::Ok, *pa + (va & (kPageSize - 1))};
  }
  return walk_and_fill(*cpu, cpu->current_root.load(std::memory_order_relaxed), va, access);
}

// Resolves a fault at `va` through the handler. True if the access should be retried.
// Precondition: outside any read section (the handler may block and take cursors).
bool handle_fault(Vaddr va, bool write, Translate status) noexcept {
  const auto cpu_id = internal::bound_cpu();
  if (status == Translate::Refused || !cpu_id) {
    g_faults_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::shared_ptr<const UserPageFaultHandler> handler;
  {
    LockGuard<Mutex> g(g_handler_lock);
    handler = g_handler;
  }
  std::shared_ptr<VmSpace> space = internal::machine().cpus[cpu_id->as_u32()].active;
  if (!handler || !*handler || !space) {
    g_faults_refused.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  PageFaultInfo info{std::move(space), va, write ? PageFaultAccess::Write : PageFaultAccess::Read,
                     *cpu_id};
  if ((*handler)(info)) {
    g_faults_handled.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  g_faults_unresolved.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// Where a chunk of one endpoint lives on the host, and how many bytes stay on that page.
struct Resolved {
  Translate status;
  std::byte* host;
  std::size_t span;
};

Resolved resolve(internal::PerCpu* cpu, internal::Endpoint e, std::size_t offset,
                 bool write) noexcept {
  const std::uint64_t addr = e.addr + offset;
  if (e.kind == internal::AddressKind::Kernel)
    return {Translate::Ok, reinterpret_cast<std::byte*>(addr), SIZE_MAX};
  Translation t = translate(cpu, addr, write ? PageFaultAccess::Write : PageFaultAccess::Read);
  if (t.status != Translate::Ok) return {t.status, nullptr, 0};
  return {Translate::Ok, paddr_to_vaddr(t.pa), kPageSize - (addr & (kPageSize - 1))};
}

// The shared loop of copy_fallible / zero_fallible (src.addr ignored when zeroing).
internal::CopyOutcome run_copy(internal::Endpoint dst, const internal::Endpoint* src,
                               std::size_t n) noexcept {
  std::size_t copied = 0;
  unsigned retries = 0;
  Vaddr last_fault = ~Vaddr{0};
  while (copied < n) {
    Vaddr fault_va = 0;
    bool fault_write = false;
    Translate fault_status = Translate::Ok;
    {
      auto guard = disable_preempt();
      internal::PerCpu* const cpu = user_cpu();
      const std::size_t section_end = copied + kBytesPerSection < n ? copied + kBytesPerSection : n;
      while (copied < section_end) {
        Resolved s{Translate::Ok, nullptr, SIZE_MAX};
        if (src != nullptr) {
          s = resolve(cpu, *src, copied, false);
          if (s.status != Translate::Ok) {
            fault_va = src->addr + copied;
            fault_status = s.status;
            break;
          }
        }
        Resolved d = resolve(cpu, dst, copied, true);
        if (d.status != Translate::Ok) {
          fault_va = dst.addr + copied;
          fault_write = true;
          fault_status = d.status;
          break;
        }
        std::size_t len = n - copied;
        if (s.span < len) len = s.span;
        if (d.span < len) len = d.span;
        if (src != nullptr) {
          internal::racy_copy(d.host, s.host, len);
        } else {
          internal::racy_zero(d.host, len);
        }
        copied += len;
      }
    }
    if (fault_status == Translate::Ok) continue;
    retries = fault_va == last_fault ? retries + 1 : 0;
    last_fault = fault_va;
    if (retries >= kMaxFaultRetries) {
      logger().warn("page fault at {:#x} still unresolved after {} handler successes; giving up",
                    fault_va, retries);
      g_faults_unresolved.fetch_add(1, std::memory_order_relaxed);
      return {copied, true};
    }
    if (!handle_fault(fault_va, fault_write, fault_status)) return {copied, true};
  }
  return {copied, false};
}

// Runs `op(host pointer)` on the u32 at `at` (translated for writing if `write`), resolving
// faults through the handler. Errors: PageFault.
template <class Op>
Result<std::uint32_t> atomic_at(internal::Endpoint at, bool write, Op&& op) noexcept {
  unsigned retries = 0;
  for (;;) {
    Translate status;
    {
      auto guard = disable_preempt();
      Resolved r = resolve(user_cpu(), at, 0, write);
      if (r.status == Translate::Ok) return op(reinterpret_cast<std::uint32_t*>(r.host));
      status = r.status;
    }
    if (++retries > kMaxFaultRetries) {
      // As in run_copy: giving up after the handler's empty successes is an unresolved fault.
      logger().warn("page fault at {:#x} still unresolved after {} handler successes; giving up",
                    at.addr, kMaxFaultRetries);
      g_faults_unresolved.fetch_add(1, std::memory_order_relaxed);
      return err(Error::PageFault);
    }
    if (!handle_fault(at.addr, write, status)) return err(Error::PageFault);
  }
}

}  // namespace

UserPageFaultHandler inject_user_page_fault_handler(UserPageFaultHandler handler) {
  std::shared_ptr<const UserPageFaultHandler> next;
  if (handler) next = std::make_shared<const UserPageFaultHandler>(std::move(handler));
  std::shared_ptr<const UserPageFaultHandler> prev;
  {
    LockGuard<Mutex> g(g_handler_lock);
    prev = std::exchange(g_handler, std::move(next));
  }
  return prev ? *prev : UserPageFaultHandler();
}

Result<Paddr> mmu_translate(const DisabledPreemptGuard&, Vaddr va,
                            PageFaultAccess access) noexcept {
  const Translation t = translate(user_cpu(), va, access);
  switch (t.status) {
    case Translate::Ok:
      return t.pa;
    case Translate::Fault:
      return err(Error::PageFault);
    case Translate::Refused:
      break;
  }
  return err(Error::AccessDenied);
}

const std::atomic<std::uint64_t>* mmu_tlb_invalidations(
    const DisabledPreemptGuard& guard) noexcept {
  const auto cpu = guard.current_cpu();
  if (!cpu) return nullptr;
  return &internal::machine().cpus[cpu->as_u32()].tlb.flush_sequence();
}

FaultStats fault_stats() noexcept {
  return FaultStats{g_faults_handled.load(std::memory_order_relaxed),
                    g_faults_unresolved.load(std::memory_order_relaxed),
                    g_faults_refused.load(std::memory_order_relaxed)};
}

namespace internal {

CopyOutcome copy_fallible(Endpoint dst, Endpoint src, std::size_t n) noexcept {
  return run_copy(dst, &src, n);
}

CopyOutcome zero_fallible(Endpoint dst, std::size_t n) noexcept {
  return run_copy(dst, nullptr, n);
}

Result<std::uint32_t> atomic_load_u32(Endpoint at) noexcept {
  return atomic_at(at, false, [](std::uint32_t* p) -> Result<std::uint32_t> {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
  });
}

Result<std::uint32_t> atomic_cmpxchg_u32(Endpoint at, std::uint32_t expected,
                                         std::uint32_t desired) noexcept {
  return atomic_at(at, true, [&](std::uint32_t* p) -> Result<std::uint32_t> {
    std::uint32_t prev = expected;
    __atomic_compare_exchange_n(p, &prev, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return prev;
  });
}

}  // namespace internal

}  // namespace vmspace
