// VmSpace (vm_space.hpp): creation, activation on a CPU, readers and writers over its user
// memory, the IoMems mapped into it, and its cursors, which wrap the page-table cursors, fold
// their PageTableErrors into Errors (keeping the cause for last_page_table_error()) and turn
// unmapped pages and detached sub-trees into TLB flushes.
#include <vmspace/kernel_page_table.hpp>
#include <vmspace/log.hpp>
#include <vmspace/vm_space.hpp>

#include <algorithm>

#include "machine/machine.hpp"
#include "machine/cpu_local.hpp"

namespace vmspace {

namespace {

thread_local std::optional<PageTableError> t_last_pt_error;

// Records the finer cause and returns the Error a VmSpace caller sees.
Error fold(PageTableError e) noexcept {
  t_last_pt_error = e;
  return to_vm_error(e);
}

// Sanitises a client property for a user mapping: USER set, other privileged bits clear.
PageProperty user_prop(PageProperty p) noexcept { return PageProperty::new_user(p.flags, p.cache); }

std::optional<VmQueriedItem> to_queried(const std::optional<UserItemRef>& ref) {
  if (!ref) return std::nullopt;
  VmQueriedItem q{ref->tracked ? VmQueriedItem::Kind::MappedRam : VmQueriedItem::Kind::MappedIoMem,
                  std::nullopt, ref->paddr, ref->level, ref->prop};
  if (ref->tracked) q.frame.emplace(ref->frame());
  return q;
}

}  // namespace

std::optional<PageTableError> last_page_table_error() noexcept { return t_last_pt_error; }

Paddr current_page_table_paddr() noexcept {
  auto cpu = internal::bound_cpu();
  if (!cpu) return kernel_page_table().root_paddr();
  return internal::machine().cpus[cpu->as_u32()].current_root.load(std::memory_order_relaxed);
}

Result<std::shared_ptr<VmSpace>> VmSpace::create() {
  auto pt = create_user_page_table(kernel_page_table());
  if (!pt) return err(fold(pt.error()));
  return std::shared_ptr<VmSpace>(new VmSpace(std::move(*pt)));
}

VmSpace::~VmSpace() = default;

Result<VmSpace::Cursor> VmSpace::make_cursor(const DisabledPreemptGuard& guard, VaRange range,
                                             internal::LockWait wait) const {
  auto c =
      wait == internal::LockWait::Block ? pt_.cursor(guard, range) : pt_.try_cursor(guard, range);
  if (!c) return err(fold(c.error()));
  return Cursor(std::move(*c));
}

Result<VmSpace::Cursor> VmSpace::cursor(const DisabledPreemptGuard& guard, VaRange range) const {
  return make_cursor(guard, range, internal::LockWait::Block);
}

Result<VmSpace::Cursor> VmSpace::try_cursor(const DisabledPreemptGuard& guard,
                                            VaRange range) const {
  return make_cursor(guard, range, internal::LockWait::Try);
}

Result<VmSpace::CursorMut> VmSpace::cursor_mut(const DisabledPreemptGuard& guard,
                                               VaRange range) const {
  auto c = make_cursor(guard, range, internal::LockWait::Block);
  if (!c) return err(c.error());
  return CursorMut(std::move(*c), *this);
}

Result<VmSpace::CursorMut> VmSpace::try_cursor_mut(const DisabledPreemptGuard& guard,
                                                   VaRange range) const {
  auto c = make_cursor(guard, range, internal::LockWait::Try);
  if (!c) return err(c.error());
  return CursorMut(std::move(*c), *this);
}

Result<void> VmSpace::activate() {
  auto cpu = internal::bound_cpu();
  if (!cpu) return err(Error::AccessDenied);
  internal::PerCpu& pc = internal::machine().cpus[cpu->as_u32()];
  if (pc.active.get() == this) return {};
  std::shared_ptr<VmSpace> previous;
  {
    // Atomic mode from leaving the old space's CPU set until the TLB flush: a dispatcher that
    // no longer targets this CPU hands frames to RCU, and this read section keeps them alive
    // until the stale entries are gone (OSTD's `VmSpace::activate` relies on the same window).
    auto guard = disable_preempt();
    cpus_.add(*cpu, std::memory_order_acquire);
    previous = std::exchange(pc.active, shared_from_this());
    if (previous) previous->cpus_.remove(*cpu, std::memory_order_relaxed);
    pc.current_root.store(pt_.root_paddr(), std::memory_order_release);
    pc.tlb.flush_all();
  }
  return {};  // `previous` is released here, outside atomic mode
}

Result<void> VmSpace::deactivate_current() {
  auto cpu = internal::bound_cpu();
  if (!cpu) return err(Error::AccessDenied);
  internal::PerCpu& pc = internal::machine().cpus[cpu->as_u32()];
  std::shared_ptr<VmSpace> previous;
  {
    auto guard = disable_preempt();
    previous = std::move(pc.active);
    pc.active.reset();
    if (previous) previous->cpus_.remove(*cpu, std::memory_order_relaxed);
    pc.current_root.store(kernel_page_table().root_paddr(), std::memory_order_release);
    pc.tlb.flush_all();
  }
  return {};
}

bool VmSpace::active_here() const noexcept {
  auto cpu = internal::bound_cpu();
  if (!cpu) return false;
  return internal::machine().cpus[cpu->as_u32()].current_root.load(std::memory_order_relaxed) ==
         pt_.root_paddr();
}

Result<VmReader<Fallible>> VmSpace::reader(Vaddr vaddr, std::size_t len) const {
  if (!active_here()) return err(Error::AccessDenied);
  return VmReader<Fallible>::from_user_space(vaddr, len);
}

Result<VmWriter<Fallible>> VmSpace::writer(Vaddr vaddr, std::size_t len) const {
  if (!active_here()) return err(Error::AccessDenied);
  return VmWriter<Fallible>::from_user_space(vaddr, len);
}

Result<std::pair<VmReader<Fallible>, VmWriter<Fallible>>> VmSpace::reader_writer(
    Vaddr vaddr, std::size_t len) const {
  if (!active_here()) return err(Error::AccessDenied);
  auto r = VmReader<Fallible>::from_user_space(vaddr, len);
  if (!r) return err(r.error());
  auto w = VmWriter<Fallible>::from_user_space(vaddr, len);
  return std::pair<VmReader<Fallible>, VmWriter<Fallible>>(*r, *w);
}

void VmSpace::record_iomem(const IoMem& io) const {
  LockGuard<Mutex> g(iomem_lock_);
  for (const IoMem& m : iomems_) {
    if (m.paddr() == io.paddr() && m.size() == io.size()) return;
  }
  iomems_.push_back(io);
}

std::optional<std::pair<IoMem, std::size_t>> VmSpace::find_iomem_by_paddr(Paddr paddr) const {
  LockGuard<Mutex> g(iomem_lock_);
  for (const IoMem& m : iomems_) {
    if (m.paddr_range().contains(paddr)) return std::pair<IoMem, std::size_t>(m, paddr - m.paddr());
  }
  return std::nullopt;
}

// ---- cursors ----

Result<std::pair<VaRange, std::optional<VmQueriedItem>>> VmSpace::Cursor::query() {
  auto q = inner_.query();
  if (!q) return err(fold(q.error()));
  return std::pair<VaRange, std::optional<VmQueriedItem>>(q->range, to_queried(q->item));
}

Result<std::optional<Vaddr>> VmSpace::Cursor::find_next(std::size_t len) {
  auto r = inner_.find_next(len);
  if (!r) return err(fold(r.error()));
  return *r;
}

Result<void> VmSpace::Cursor::jump(Vaddr va) {
  auto r = inner_.jump(va);
  if (!r) return err(fold(r.error()));
  return {};
}

Result<void> VmSpace::CursorMut::map_item(UserItem& item) {
  auto r = inner_.map(std::move(item));
  if (!r) return err(fold(r.error()));
  return {};
}

Result<void> VmSpace::CursorMut::map(UFrame&& frame, PageProperty prop) {
  UserItem item = UserItem::tracked(std::move(frame), user_prop(prop));
  auto r = map_item(item);
  if (!r) frame = *std::move(item).take_segment().next();  // give the frame back
  return r;
}

Result<void> VmSpace::CursorMut::map_segment(USegment&& segment, PageProperty prop) {
  const PagingLevel level = level_of_size(segment.size());
  if (level != 1 && level != 2) return err(Error::InvalidArgs);
  UserItem item = UserItem::tracked(std::move(segment), user_prop(prop));
  auto r = map_item(item);
  if (!r) segment = std::move(item).take_segment();
  return r;
}

Result<void> VmSpace::CursorMut::map_iomem(const IoMem& io, PageProperty prop, std::size_t len,
                                           std::size_t offset) {
  if (!is_aligned(len, kPageSize) || !is_aligned(offset, kPageSize)) return err(Error::InvalidArgs);
  if (offset >= io.size()) return {};
  const std::size_t n = std::min(len, io.size() - offset);
  const Vaddr start = virt_addr();
  if (start >= range().end || n > range().end - start) return err(Error::InvalidArgs);
  // Refuse before changing anything if some target page is mapped.
  auto mapped = inner_.find_next(n);
  (void)inner_.jump(start);
  if (!mapped) return err(fold(mapped.error()));
  if (*mapped) {
    t_last_pt_error = PageTableError::AlreadyMapped;
    return err(Error::AlreadyMapped);
  }
  // Recorded first: a page mapped before a NoMemory stays mapped, and the space must keep its
  // IoMem (and claim) as long as it may be mapped.
  space_->record_iomem(io);
  const PageProperty p = user_prop(prop);
  for (std::size_t off = 0; off < n; off += kPageSize) {
    UserItem item = UserItem::untracked(io.paddr() + offset + off, 1, p);
    VMS_TRY_VOID(map_item(item));
  }
  return {};
}

Result<std::size_t> VmSpace::CursorMut::unmap(std::size_t len) {
  if (!is_aligned(len, kPageSize) || virt_addr() > range().end || len > range().end - virt_addr()) {
    t_last_pt_error =
        is_aligned(len, kPageSize) ? PageTableError::LenOutOfRange : PageTableError::UnalignedLen;
    return err(Error::InvalidArgs);
  }
  const Vaddr end = virt_addr() + len;
  std::size_t frames = 0;
  Result<std::size_t> result = std::size_t{0};
  while (virt_addr() < end) {
    auto frag = inner_.take_next(end - virt_addr());
    if (!frag) {
      result = err(fold(frag.error()));
      break;
    }
    if (!*frag) break;
    if (auto* m = std::get_if<MappedFrag<UserPtConfig>>(&**frag)) {
      UserItem item = std::move(m->item).take_unchecked();
      const std::uint64_t size = page_size<UserPtConfig::Pte::Consts>(m->level);
      auto op = m->level == 1 ? TlbFlushOp::for_single(m->va)
                              : *TlbFlushOp::for_range({m->va, m->va + size});
      if (item.is_tracked()) {
        USegment seg = std::move(item).take_segment();
        frames += seg.nframes();
        flusher_.issue_tlb_flush_with(op, DynSegment(std::move(seg)));
      } else {
        flusher_.issue_tlb_flush(op);
      }
    } else {
      auto& s = std::get<StrayPageTableFrag<UserPtConfig>>(**frag);
      frames += s.num_frames;
      auto op = *TlbFlushOp::for_range({s.va, s.va + s.len});
      flusher_.issue_tlb_flush_with(op, DynSegment(DynFrame(std::move(s.node).take_unchecked())));
    }
  }
  flusher_.dispatch_tlb_flush();
  if (!result) return result;
  return frames;
}

Result<std::optional<VaRange>> VmSpace::CursorMut::protect_next(
    std::size_t len, const std::function<void(PageFlags&, CachePolicy&)>& op) {
  auto r = inner_.protect_next(len, [&](PageProperty& p) {
    const PrivilegedPageFlags priv = p.priv_flags;
    op(p.flags, p.cache);
    p.priv_flags = priv;
  });
  if (!r) return err(fold(r.error()));
  return *r;
}

}  // namespace vmspace
