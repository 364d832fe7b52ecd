// A process's memory (see vm.hpp).
#include "vm.hpp"

#include <cerrno>
#include <cstring>

#include <vmspace/frame_allocator.hpp>
#include <vmspace/rcu.hpp>

namespace teachos {

using vmspace::CachePolicy;
using vmspace::disable_preempt;
using vmspace::LockGuard;
using vmspace::Mutex;
using vmspace::PageFlags;
using vmspace::PageProperty;

namespace {

std::uint64_t page_down(std::uint64_t a) { return a & ~(kPage - 1); }
std::uint64_t page_up(std::uint64_t a) { return (a + kPage - 1) & ~(kPage - 1); }
PageProperty user_prop(unsigned prot) {
  return PageProperty::new_user(flags_for(prot), CachePolicy::Writeback);
}

bool allows(unsigned prot, Access a) {
  switch (a) {
    case Access::Read:
      return (prot & (kProtRead | kProtWrite | kProtExec)) != 0;
    case Access::Write:
      return (prot & kProtWrite) != 0;
    case Access::Execute:
      return (prot & kProtExec) != 0;
  }
  return false;
}

std::optional<vmspace::UFrame> alloc_frame(vmspace::FrameAllocOptions opts = {}) {
  auto f = opts.alloc_frame();
  if (!f) return std::nullopt;
  return vmspace::UFrame(std::move(*f));
}

}  // namespace

const char* access_name(Access a) {
  switch (a) {
    case Access::Read:
      return "load";
    case Access::Write:
      return "store";
    case Access::Execute:
      return "instruction fetch";
  }
  return "?";
}

PageFlags flags_for(unsigned prot) {
  PageFlags f = PageFlags::None;
  if (prot & (kProtRead | kProtWrite | kProtExec)) f |= PageFlags::R;
  if (prot & kProtWrite) f |= PageFlags::W;
  if (prot & kProtExec) f |= PageFlags::X;
  return f;
}

std::shared_ptr<Vm> Vm::create() {
  auto space = vmspace::VmSpace::create();
  if (!space) return nullptr;
  return std::shared_ptr<Vm>(new Vm(std::move(*space)));
}

Region* Vm::find_locked(std::uint64_t va) {
  auto it = regions_.upper_bound(va);
  if (it == regions_.begin()) return nullptr;
  --it;
  return va < it->second.end ? &it->second : nullptr;
}

FaultOutcome Vm::fault(std::uint64_t va, Access access) {
  FaultOutcome out = fault_once(va, access);
  for (int retry = 0; retry < 3 && out.kind == FaultOutcome::Kind::OutOfMemory; ++retry) {
    // Frames unmapped a moment ago (a killed process, a copy-on-write break) are freed only
    // after an RCU grace period. Wait for those frees before declaring memory exhausted.
    vmspace::rcu_barrier();
    out = fault_once(va, access);
  }
  return out;
}

FaultOutcome Vm::fault_once(std::uint64_t va, Access access) {
  using K = FaultOutcome::Kind;
  LockGuard<Mutex> g(lock_);
  const std::uint64_t page = page_down(va);
  const Region* r = find_locked(va);
  if (r == nullptr) {
    const bool in_guard = va >= kStackTop - kStackMax - kStackGuard && va < kStackTop - kStackMax;
    return {K::Fatal, in_guard ? "stack overflow (guard gap below the stack)" : "not mapped"};
  }
  if (!allows(r->prot, access)) {
    if (r->prot == 0) return {K::Fatal, "PROT_NONE memory"};
    return {K::Fatal, access == Access::Write     ? "write to read-only memory"
                      : access == Access::Execute ? "execute of non-executable memory"
                                                  : "read of unreadable memory"};
  }
  const Region region = *r;
  auto guard = disable_preempt();
  auto c = space_->cursor_mut(guard, {page, page + kPage});
  if (!c) return {K::OutOfMemory, "no memory for the page table"};
  auto q = c->query();
  if (!q) return {K::OutOfMemory, "page-table query failed"};
  if (!q->second) {
    // Lazy allocation: the first touch of a page gets a zeroed frame.
    auto frame = alloc_frame();
    if (!frame) return {K::OutOfMemory, "out of physical memory"};
    if (!c->map(std::move(*frame), user_prop(region.prot)))
      return {K::OutOfMemory, "out of memory mapping a page"};
    if (region.kind == Region::Kind::Stack && page < stack_low_) {
      stack_low_ = page;
      stats_.stack_growth.fetch_add(1, std::memory_order_relaxed);
    } else {
      stats_.demand_zero.fetch_add(1, std::memory_order_relaxed);
    }
    return {};
  }
  const vmspace::VmQueriedItem& item = *q->second;
  if (access != Access::Write || vmspace::has(item.prop.flags, PageFlags::W)) {
    return {};  // another thread of this process resolved it first; the access just retries
  }
  // Copy-on-write: the region is writable but the page is not, because fork shares it.
  if ((*item.frame)->reference_count() == 1) {
    // Nobody else maps this frame any more: the last sharer takes it back as it is.
    if (!c->protect(kPage, [](PageFlags& f, CachePolicy&) { f |= PageFlags::W; })) {
      return {K::OutOfMemory, "protect failed"};
    }
    stats_.cow_reuse.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  auto copy = alloc_frame(vmspace::FrameAllocOptions().zeroed(false));
  if (!copy) return {K::OutOfMemory, "out of physical memory (copy-on-write)"};
  std::memcpy(vmspace::paddr_to_vaddr(copy->paddr()), vmspace::paddr_to_vaddr(item.paddr), kPage);
  // Replace the shared mapping with the private copy. unmap() flushes every CPU that may cache
  // the read-only translation and drops our reference to the shared frame after a grace period.
  if (!c->unmap(kPage) || !c->jump(page)) return {K::OutOfMemory, "unmap failed"};
  if (!c->map(std::move(*copy), user_prop(region.prot)))
    return {K::OutOfMemory, "out of memory mapping a page"};
  stats_.cow_copy.fetch_add(1, std::memory_order_relaxed);
  return {};
}

int Vm::load(const ElfImage& image, std::span<const std::byte> file, const InitialStack& stack) {
  LockGuard<Mutex> g(lock_);
  auto guard = disable_preempt();
  for (const ElfSegment& s : image.segments) {
    Region r{page_down(s.vaddr), page_up(s.vaddr + s.memsz), s.prot, false, Region::Kind::Image};
    regions_[r.start] = r;
    // Pages holding file bytes are filled now; pages of pure bss are left to fault in as zero.
    const std::uint64_t file_end = s.vaddr + s.filesz;
    auto c = space_->cursor_mut(guard, {r.start, r.end});
    if (!c) return -ENOMEM;
    for (std::uint64_t page = r.start; page < page_up(file_end); page += kPage) {
      auto frame = alloc_frame();
      if (!frame) return -ENOMEM;
      const std::uint64_t from = std::max(page, s.vaddr), to = std::min(page + kPage, file_end);
      std::memcpy(vmspace::paddr_to_vaddr(frame->paddr()) + (from - page),
                  file.data() + s.offset + (from - s.vaddr), to - from);
      if (!c->jump(page) || !c->map(std::move(*frame), user_prop(s.prot))) return -ENOMEM;
    }
  }
  brk_start_ = brk_ = page_up(image.highest);
  regions_[brk_start_] =
      Region{brk_start_, brk_start_, kProtRead | kProtWrite, false, Region::Kind::Heap};
  Region st{kStackTop - kStackMax, kStackTop, kProtRead | kProtWrite, false, Region::Kind::Stack};
  regions_[st.start] = st;
  // The initial stack (arguments and auxv) is written into fresh frames before the process
  // ever runs; the pages below it come on demand.
  const std::uint64_t sp_page = page_down(stack.sp);
  auto c = space_->cursor_mut(guard, {sp_page, kStackTop});
  if (!c) return -ENOMEM;
  for (std::uint64_t page = sp_page; page < kStackTop; page += kPage) {
    auto frame = alloc_frame();
    if (!frame) return -ENOMEM;
    const std::uint64_t from = std::max(page, stack.sp);
    std::memcpy(vmspace::paddr_to_vaddr(frame->paddr()) + (from - page),
                stack.bytes.data() + (from - stack.sp), page + kPage - from);
    if (!c->map(std::move(*frame), user_prop(kProtRead | kProtWrite))) return -ENOMEM;
  }
  stack_low_ = sp_page;
  return 0;
}

std::shared_ptr<Vm> Vm::fork() {
  auto child = Vm::create();
  if (!child) return nullptr;
  LockGuard<Mutex> g(lock_);
  LockGuard<Mutex> cg(child->lock_);
  child->regions_ = regions_;
  child->brk_start_ = brk_start_;
  child->brk_ = brk_;
  child->stack_low_ = stack_low_;
  auto guard = disable_preempt();
  for (const auto& [start, r] : regions_) {
    if (r.start == r.end) continue;
    // The parent's cursor first, then the child's: the child is new, nobody else can hold it.
    auto pc = space_->cursor_mut(guard, {r.start, r.end});
    auto cc = child->space_->cursor_mut(guard, {r.start, r.end});
    if (!pc || !cc) return nullptr;
    using M = vmspace::VmSpace::CursorMut::ForkMapping;
    if (!pc->fork_into(*cc, r.end - r.start, r.shared ? M::Shared : M::CopyOnWrite)) return nullptr;
  }
  return child;
}

void Vm::split_at_locked(std::uint64_t va) {
  Region* r = find_locked(va);
  if (r == nullptr || r->start == va) return;
  Region upper = *r;
  upper.start = va;
  r->end = va;
  regions_[va] = upper;
}

void Vm::unmap_locked(std::uint64_t start, std::uint64_t end) {
  split_at_locked(start);
  split_at_locked(end);
  for (auto it = regions_.lower_bound(start); it != regions_.end() && it->first < end;) {
    if (it->second.kind == Region::Kind::Heap && it->second.start == brk_start_) {
      ++it;  // the (possibly empty) heap keeps its anchor; brk shrinks it instead
      continue;
    }
    it = regions_.erase(it);
  }
  auto guard = disable_preempt();
  auto c = space_->cursor_mut(guard, {start, end});
  if (c) (void)c->unmap(end - start);
}

bool Vm::is_free_locked(std::uint64_t start, std::uint64_t end) const {
  auto it = regions_.lower_bound(start);
  if (it != regions_.end() && it->first < end && it->second.end > it->second.start) return false;
  if (it != regions_.begin()) {
    --it;
    if (it->second.end > start) return false;
  }
  return true;
}

std::uint64_t Vm::find_gap_locked(std::uint64_t len) const {
  // Top-down below the stack's reserved area, first fit (Linux's default layout).
  std::uint64_t top = kMmapTop;
  for (auto it = regions_.lower_bound(kMmapTop); it != regions_.begin();) {
    --it;
    const Region& r = it->second;
    if (r.end <= top && top - r.end >= len) return top - len;
    top = std::min(top, r.start);
  }
  return top >= len + kPage ? top - len : 0;
}

int Vm::populate_locked(const Region& r) {
  auto guard = disable_preempt();
  auto c = space_->cursor_mut(guard, {r.start, r.end});
  if (!c) return -ENOMEM;
  for (std::uint64_t page = r.start; page < r.end; page += kPage) {
    auto frame = alloc_frame();
    if (!frame || !c->map(std::move(*frame), user_prop(r.prot))) return -ENOMEM;
  }
  return 0;
}

std::int64_t Vm::brk(std::uint64_t new_brk) {
  LockGuard<Mutex> g(lock_);
  if (new_brk < brk_start_ || new_brk >= kMmapTop) return static_cast<std::int64_t>(brk_);
  const std::uint64_t old_end = page_up(brk_), new_end = page_up(new_brk);
  if (new_end > old_end && !is_free_locked(old_end, new_end))
    return static_cast<std::int64_t>(brk_);
  if (new_end < old_end) {
    auto guard = disable_preempt();
    auto c = space_->cursor_mut(guard, {new_end, old_end});
    if (c) (void)c->unmap(old_end - new_end);
  }
  regions_[brk_start_].end = new_end;  // growing is free: the pages come on first touch
  brk_ = new_brk;
  return static_cast<std::int64_t>(brk_);
}

std::int64_t Vm::mmap(std::uint64_t addr, std::uint64_t len, unsigned prot, unsigned flags,
                      std::int64_t fd) {
  if (!(flags & kMapAnonymous)) return -EBADF;  // no files in teachos: only anonymous memory
  (void)fd;
  const unsigned type = flags & (kMapShared | kMapPrivate);
  if (len == 0 || (type != kMapShared && type != kMapPrivate)) return -EINVAL;
  if (len > kMmapTop) return -ENOMEM;
  len = page_up(len);
  LockGuard<Mutex> g(lock_);
  if (flags & kMapFixed) {
    if (addr % kPage != 0 || addr == 0 || addr >= kUserTop || len > kUserTop - addr) return -EINVAL;
    unmap_locked(addr, addr + len);
  } else {
    addr = find_gap_locked(len);
    if (addr == 0) return -ENOMEM;
  }
  Region r{addr, addr + len, prot & 7, type == kMapShared, Region::Kind::Mmap};
  regions_[addr] = r;
  // Shared memory is filled now, so that frames are the same in every process that forks
  // from here on (a lazily filled shared page would be private to whoever touched it first).
  if (r.shared && prot != 0) {
    if (int e = populate_locked(r); e != 0) {
      unmap_locked(r.start, r.end);
      return e;
    }
  }
  return static_cast<std::int64_t>(addr);
}

std::int64_t Vm::munmap(std::uint64_t addr, std::uint64_t len) {
  if (addr % kPage != 0 || len == 0 || addr >= kUserTop || len > kUserTop - addr) return -EINVAL;
  LockGuard<Mutex> g(lock_);
  unmap_locked(addr, addr + page_up(len));
  return 0;
}

std::int64_t Vm::mprotect(std::uint64_t addr, std::uint64_t len, unsigned prot) {
  if (addr % kPage != 0 || addr >= kUserTop || len > kUserTop - addr) return -EINVAL;
  if (len == 0) return 0;
  const std::uint64_t end = addr + page_up(len);
  LockGuard<Mutex> g(lock_);
  for (std::uint64_t a = addr; a < end;) {  // every page must be in some region (else ENOMEM)
    const Region* r = find_locked(a);
    if (r == nullptr) return -ENOMEM;
    a = r->end;
  }
  split_at_locked(addr);
  split_at_locked(end);
  for (auto it = regions_.lower_bound(addr); it != regions_.end() && it->first < end; ++it)
    it->second.prot = prot & 7;
  // Permissions only shrink in the page table: a page that gains W keeps its read-only PTE and
  // takes one write fault, which decides between copy-on-write and reuse like any other.
  const PageFlags target = flags_for(prot);
  auto guard = disable_preempt();
  auto c = space_->cursor_mut(guard, {addr, end});
  if (!c) return -ENOMEM;
  auto r = c->protect(end - addr, [target](PageFlags& f, CachePolicy&) {
    const PageFlags kept = f & (PageFlags::ACCESSED | PageFlags::DIRTY | PageFlags::AVAIL2);
    const PageFlags w = vmspace::has(f, PageFlags::W) ? PageFlags::W : PageFlags::None;
    f = kept | (target & ~PageFlags::W) | (target & w);
  });
  return r ? 0 : -ENOMEM;
}

std::uint64_t Vm::frames_mapped() const {
  LockGuard<Mutex> g(lock_);
  std::uint64_t n = 0;
  auto guard = disable_preempt();
  for (const auto& [start, r] : regions_) {
    if (r.start == r.end) continue;
    auto c = space_->cursor(guard, {r.start, r.end});
    if (!c) continue;
    while (c->virt_addr() < r.end) {
      auto next = c->find_next(r.end - c->virt_addr());
      if (!next || !*next) break;
      ++n;
      if (**next + kPage >= r.end) break;
      (void)c->jump(**next + kPage);
    }
  }
  return n;
}

}  // namespace teachos
