// Helpers shared by the VmSpace, TLB and fallible-I/O tests: spaces active on a CPU, mapping
// and unmapping through cursors, scoped fault handlers and TLB check modes, a demand pager, and
// the "every cached translation agrees with the page table" check.
//
// The machine has 4 CPUs. A test thread may bind to one CPU at a time; per-CPU state (the TLB
// and the active space) stays with the CPU when the thread unbinds, so one thread can set up
// multi-CPU TLB scenarios deterministically by rebinding. Tests leave every CPU with no active
// space (CpuCleanup), so spaces of one test never outlive it through a CPU.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <vmspace/fault.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/meta.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/vm_space.hpp>

#include "result_check.hpp"

namespace vmspace::test {

inline constexpr PageProperty kUserRw =
    PageProperty::new_user(PageFlags::RW, CachePolicy::Writeback);
inline constexpr PageProperty kUserRo =
    PageProperty::new_user(PageFlags::R, CachePolicy::Writeback);
inline constexpr PageProperty kUserNone =
    PageProperty::new_user(PageFlags::None, CachePolicy::Writeback);
inline constexpr std::size_t k2M = std::size_t{2} << 20;

inline CpuId cpu(std::uint32_t i) { return CpuId::try_from(i).value(); }

inline std::shared_ptr<VmSpace> new_space() {
  auto s = VmSpace::create();
  REQUIRE(s.has_value());
  return std::move(*s);
}

// The byte every test page holds at user address `va` unless a test wrote something else.
inline std::uint8_t pattern_byte(Vaddr va) noexcept {
  return static_cast<std::uint8_t>((va >> kPageShift) * 31u + (va & 0xfffu) * 7u + 1u);
}

// A fresh frame; filled with pattern_byte of [va, va + 4 KiB) if `va` is given, else zeroed.
inline UFrame new_frame(std::optional<Vaddr> pattern_for = std::nullopt) {
  auto f = FrameAllocOptions().alloc_frame();
  REQUIRE(f.has_value());
  if (pattern_for) {
    std::byte* p = paddr_to_vaddr(f->paddr());
    for (std::size_t i = 0; i < kPageSize; ++i) p[i] = std::byte{pattern_byte(*pattern_for + i)};
  }
  return UFrame(std::move(*f));
}

// A 2 MiB-aligned 512-frame untyped segment (zeroed).
inline USegment new_huge_segment() {
  auto pa = global_frame_allocator().alloc(FrameLayout{k2M, k2M});
  REQUIRE(pa.has_value());
  std::memset(paddr_to_vaddr(*pa), 0, k2M);
  auto seg = Segment<NoMeta>::from_unused(PaRange{*pa, *pa + k2M}, [](Paddr) { return NoMeta{}; });
  REQUIRE(seg.has_value());
  return USegment(std::move(*seg));
}

// Maps `frame` at `va` through a cursor over that page. REQUIREs success; returns the paddr.
inline Paddr map_frame_at(const VmSpace& space, Vaddr va, UFrame frame,
                          PageProperty prop = kUserRw) {
  const Paddr pa = frame.paddr();
  auto g = disable_preempt();
  auto c = space.cursor_mut(g, {va, va + kPageSize});
  REQUIRE(c.has_value());
  auto r = c->map(std::move(frame), prop);
  REQUIRE_MESSAGE(r.has_value(), "map at " << va << " failed: " << error_of(r));
  return pa;
}

// Maps a fresh frame holding the test pattern at `va`. Returns its paddr.
inline Paddr map_page(const VmSpace& space, Vaddr va, PageProperty prop = kUserRw) {
  return map_frame_at(space, va, new_frame(va), prop);
}

// Unmaps [va, va + len) through a cursor over exactly that range; returns the frame count.
inline std::size_t unmap_range(const VmSpace& space, Vaddr va, std::size_t len) {
  auto g = disable_preempt();
  auto c = space.cursor_mut(g, {va, va + len});
  REQUIRE(c.has_value());
  auto n = c->unmap(len);
  REQUIRE(n.has_value());
  return *n;
}

// The property of the leaf mapping `va`, or nullopt.
inline std::optional<PageProperty> pte_prop(const VmSpace& space, Vaddr va) {
  auto w = space.page_table().page_walk(va);
  if (!w) return std::nullopt;
  return w->second;
}

// Binds the calling thread to a CPU and activates a space there. The destructor deactivates
// the CPU and unbinds. Declare it before any DisabledPreemptGuard of the same scope.
class ActiveOn {
 public:
  ActiveOn(const std::shared_ptr<VmSpace>& space, CpuId on) {
    auto b = CpuBinding::bind(on);
    REQUIRE(b.has_value());
    binding_.emplace(std::move(*b));
    REQUIRE(space->activate().has_value());
  }
  ActiveOn(const ActiveOn&) = delete;
  ActiveOn& operator=(const ActiveOn&) = delete;
  ~ActiveOn() { CHECK(VmSpace::deactivate_current().has_value()); }

 private:
  std::optional<CpuBinding> binding_;
};

// Binds the calling thread to `on` for the scope without changing what is active there.
class BoundTo {
 public:
  explicit BoundTo(CpuId on) {
    auto b = CpuBinding::bind(on);
    REQUIRE(b.has_value());
    binding_.emplace(std::move(*b));
  }

 private:
  std::optional<CpuBinding> binding_;
};

// Activates `space` on `on` and leaves it active after unbinding (per-CPU state persists).
inline void activate_on(const std::shared_ptr<VmSpace>& space, CpuId on) {
  BoundTo b(on);
  REQUIRE(space->activate().has_value());
}

// On destruction, deactivates every CPU (binding to each in turn) so no space outlives the test
// through a CPU. Declare it first in a test that leaves spaces active on CPUs; the calling
// thread must be unbound when it runs.
class CpuCleanup {
 public:
  CpuCleanup() = default;
  CpuCleanup(const CpuCleanup&) = delete;
  CpuCleanup& operator=(const CpuCleanup&) = delete;
  ~CpuCleanup() {
    for (std::uint32_t i = 0; i < num_cpus(); ++i) {
      auto b = CpuBinding::bind(cpu(i));
      if (b) (void)VmSpace::deactivate_current();
    }
  }
};

// Installs a page-fault handler for the scope and restores the previous one after.
class FaultHandlerScope {
 public:
  explicit FaultHandlerScope(UserPageFaultHandler h)
      : prev_(inject_user_page_fault_handler(std::move(h))) {}
  FaultHandlerScope(const FaultHandlerScope&) = delete;
  FaultHandlerScope& operator=(const FaultHandlerScope&) = delete;
  ~FaultHandlerScope() { inject_user_page_fault_handler(std::move(prev_)); }

 private:
  UserPageFaultHandler prev_;
};

// Sets the TLB checking mode for the scope.
class TlbCheckScope {
 public:
  explicit TlbCheckScope(TlbCheckMode m) : prev_(tlb_check_mode()) { set_tlb_check_mode(m); }
  TlbCheckScope(const TlbCheckScope&) = delete;
  TlbCheckScope& operator=(const TlbCheckScope&) = delete;
  ~TlbCheckScope() { set_tlb_check_mode(prev_); }

 private:
  TlbCheckMode prev_;
};

// A tiny VMA table and the page-fault handler a kernel would install over it: a fault inside a
// region whose property permits the access maps a fresh frame (test pattern, or zeroes) and
// succeeds; a fault outside every region, or one the region's property forbids, is refused. A
// concurrent fault that already mapped the page is fine (AlreadyMapped counts as resolved), so
// racing faults never map a page twice.
class DemandPager {
 public:
  enum class Fill : std::uint8_t { Pattern, Zero };
  struct Region {
    VaRange range;
    PageProperty prop;
    Fill fill;
  };

  void add(VaRange range, PageProperty prop, Fill fill = Fill::Pattern) {
    std::lock_guard<std::mutex> g(lock_);
    regions_.push_back(Region{range, prop, fill});
  }
  std::optional<Region> region_of(Vaddr va) const {
    std::lock_guard<std::mutex> g(lock_);
    for (const Region& r : regions_) {
      if (r.range.contains(va)) return r;
    }
    return std::nullopt;
  }
  // Maps every page of every region now (the "pre-mapped" flavour of a test).
  void populate(const VmSpace& space) const {
    std::vector<Region> regions;
    {
      std::lock_guard<std::mutex> g(lock_);
      regions = regions_;
    }
    for (const Region& r : regions) {
      for (Vaddr va = r.range.start; va < r.range.end; va += kPageSize) {
        map_frame_at(space, va,
                     new_frame(r.fill == Fill::Pattern ? std::optional<Vaddr>(va) : std::nullopt),
                     r.prop);
      }
    }
  }

  Result<void> handle(const PageFaultInfo& info) {
    calls.fetch_add(1, std::memory_order_relaxed);
    const Vaddr page = align_down(info.address, kPageSize);
    auto region = region_of(page);
    if (!region) return err(Error::PageFault);
    const PageFlags need = info.access == PageFaultAccess::Write ? PageFlags::W : PageFlags::R;
    if (!has(region->prop.flags, need)) return err(Error::PageFault);
    auto f = FrameAllocOptions().alloc_frame();
    if (!f) return err(Error::NoMemory);
    if (region->fill == Fill::Pattern) {
      std::byte* p = paddr_to_vaddr(f->paddr());
      for (std::size_t i = 0; i < kPageSize; ++i) p[i] = std::byte{pattern_byte(page + i)};
    }
    auto g = disable_preempt();
    auto c = info.space->cursor_mut(g, {page, page + kPageSize});
    if (!c) return err(c.error());
    auto r = c->map(UFrame(std::move(*f)), region->prop);
    if (!r) {
      if (r.error() != Error::AlreadyMapped) return err(r.error());
      already_mapped.fetch_add(1, std::memory_order_relaxed);
      return {};
    }
    maps.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  // A handler bound to this pager (which must outlive the handler's installation).
  UserPageFaultHandler handler() {
    return [this](const PageFaultInfo& info) { return handle(info); };
  }

  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> maps{0};
  std::atomic<std::uint64_t> already_mapped{0};

 private:
  mutable std::mutex lock_;
  std::vector<Region> regions_;
};

// Checks docs/spec_cases.md invariant 19 at a quiescent point: every valid TLB entry of `on`
// translates to the page the active table maps there, with no more permission than the PTE grants.
// Returns one line per violation (empty: consistent).
inline std::vector<std::string> tlb_disagreements(CpuId on, const VmSpace& active) {
  std::vector<std::string> bad;
  for (const TlbEntryInfo& e : tlb_entries(on)) {
    auto w = active.page_table().page_walk(e.va);
    auto describe = [&](const char* what) {
      std::ostringstream os;
      os << "cpu" << on.as_u32() << " va 0x" << std::hex << e.va << " -> pa 0x" << e.pa << ": "
         << what;
      bad.push_back(os.str());
    };
    if (!w) {
      describe("cached but not mapped");
      continue;
    }
    if (align_down(w->first, kPageSize) != e.pa) describe("cached frame differs from the PTE's");
    // An entry may come from a read or (PageFaultAccess::Execute) a fetch of an execute-only page.
    if (!(has(w->second.flags, PageFlags::R) || has(w->second.flags, PageFlags::X)) ||
        !has(w->second.priv_flags, PrivilegedPageFlags::USER)) {
      describe("cached but the PTE forbids user reads and fetches");
    }
    if (e.executable && !has(w->second.flags, PageFlags::X))
      describe("cached executable but the PTE has no X");
    if (e.writable && !has(w->second.flags, PageFlags::W))
      describe("cached writable but the PTE is read-only");
    if (e.writable && !has(w->second.flags, PageFlags::DIRTY))
      describe("cached writable but the PTE is clean");
  }
  return bad;
}

// True if `on`'s TLB holds an entry for the page of `va`.
inline bool tlb_caches(CpuId on, Vaddr va) {
  for (const TlbEntryInfo& e : tlb_entries(on)) {
    if (e.va == align_down(va, kPageSize)) return true;
  }
  return false;
}

// Reads `len` user bytes at `va` on the calling CPU into a vector (REQUIREs success).
inline std::vector<std::byte> read_user(const VmSpace& space, Vaddr va, std::size_t len) {
  std::vector<std::byte> out(len);
  auto r = space.reader(va, len);
  REQUIRE(r.has_value());
  VmWriter<Infallible> w{std::span<std::byte>(out)};
  auto n = r->read_fallible(w);
  REQUIRE_MESSAGE(n.has_value(), "read of " << len << " bytes at " << va << " faulted");
  return out;
}

// The user u64 at `va` on the calling CPU, or the error.
inline Result<std::uint64_t> read_u64(const VmSpace& space, Vaddr va) {
  auto r = space.reader(va, 8);
  if (!r) return err(r.error());
  return r->read_val<std::uint64_t>();
}
inline Result<void> write_u64(const VmSpace& space, Vaddr va, std::uint64_t v) {
  auto w = space.writer(va, 8);
  if (!w) return err(w.error());
  return w->write_val(v);
}

}  // namespace vmspace::test
