// Kernel extensions of VmSpace::CursorMut (declared in vm_space.hpp, "Kernel extensions"):
// range protect, fork sharing and ACCESSED/DIRTY harvesting, each with its TLB flush.
//
// They are built from the cursor's own page-table operations (protect, protect_next, query,
// jump) so the locking story is the cursor's: everything happens under the locks the cursor
// already holds, and the flush is dispatched before returning, as OSTD's callers of
// `CursorMut::protect_next` do by hand (ostd/src/mm/vm_space.rs, `protect_next` + `flusher()`).
#include <vmspace/vm_space.hpp>

namespace vmspace {

namespace {

Error fold_ext(PageTableError e) noexcept { return to_vm_error(e); }

bool window_ok(Vaddr at, VaRange range, std::size_t len) noexcept {
  return is_aligned(len, kPageSize) && at <= range.end && len <= range.end - at;
}

// The flush for [start, end): one page, a range, or everything for big windows.
TlbFlushOp flush_op_for(Vaddr start, Vaddr end) noexcept {
  if (end - start == kPageSize) return TlbFlushOp::for_single(start);
  if ((end - start) / kPageSize >= TlbFlushOp::kFlushAllThreshold) return TlbFlushOp::for_all();
  return *TlbFlushOp::for_range({start, end});
}

}  // namespace

Result<std::size_t> VmSpace::CursorMut::protect(
    std::size_t len, const std::function<void(PageFlags&, CachePolicy&)>& op) {
  if (!window_ok(virt_addr(), range(), len)) return err(Error::InvalidArgs);
  const Vaddr start = virt_addr();
  auto r = inner_.protect(len, [&](PageProperty& p) {
    const PrivilegedPageFlags priv = p.priv_flags;
    op(p.flags, p.cache);
    p.priv_flags = priv;
  });
  // Whatever changed (all of it, or a prefix on error) must not stay cached with the old
  // permissions: flush the whole window either way.
  if (len != 0) {
    flusher_.issue_tlb_flush(flush_op_for(start, start + len));
    flusher_.dispatch_tlb_flush();
  }
  if (!r) return err(fold_ext(r.error()));
  return *r;
}

Result<std::size_t> VmSpace::CursorMut::fork_into(CursorMut& child, std::size_t len,
                                                  ForkMapping mapping) {
  if (!window_ok(virt_addr(), range(), len)) return err(Error::InvalidArgs);
  if (child.virt_addr() != virt_addr() && !child.jump(virt_addr())) return err(Error::InvalidArgs);
  if (!window_ok(child.virt_addr(), child.range(), len)) return err(Error::InvalidArgs);
  const Vaddr end = virt_addr() + len;
  std::size_t shared = 0;
  bool protected_any = false;
  Result<std::size_t> result = std::size_t{0};
  auto strip = [mapping](PageProperty& p) {
    if (mapping == ForkMapping::CopyOnWrite) p.flags &= ~PageFlags::W;
  };
  while (virt_addr() < end) {
    auto found = inner_.find_next(end - virt_addr());
    if (!found) {
      result = err(fold_ext(found.error()));
      break;
    }
    if (!*found) break;
    const Vaddr va = **found;
    // One page at a time: protect_next splits a huge leaf that sticks out of the 4 KiB window,
    // so every page shared below is a base page with its own PTE in both spaces.
    auto prot = inner_.protect_next(kPageSize, strip);
    if (!prot) {
      result = err(fold_ext(prot.error()));
      break;
    }
    (void)inner_.jump(va);
    auto q = inner_.query();
    if (!q || !q->item) {
      result = err(q ? Error::InvalidArgs : fold_ext(q.error()));
      break;
    }
    const UserItemRef item = *q->item;
    (void)inner_.jump(va + kPageSize <= range().end ? va + kPageSize : va);
    if (mapping == ForkMapping::CopyOnWrite) protected_any = true;
    PageProperty p = item.prop;
    p.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
    if (auto j = child.jump(va); !j) {
      result = err(j.error());
      break;
    }
    Result<void> m = err(Error::InvalidArgs);  // untracked memory not recorded as I/O memory
                                               // cannot be re-mapped without its owner
    if (item.tracked) {
      m = child.map(item.frame().to_owned(), p);
    } else if (auto io = space_->find_iomem_by_paddr(item.paddr)) {
      m = child.map_iomem(io->first, p, kPageSize, align_down(io->second, kPageSize));
    }
    if (!m) {
      result = err(m.error());
      break;
    }
    ++shared;
    if (va + kPageSize >= end) break;
  }
  if (protected_any) {
    flusher_.issue_tlb_flush(TlbFlushOp::for_all());
    flusher_.dispatch_tlb_flush();
  }
  if (!result) return result;
  if (virt_addr() < end) (void)inner_.jump(end < range().end ? end : virt_addr());
  return shared;
}

Result<std::optional<VmSpace::CursorMut::AccessedDirty>>
VmSpace::CursorMut::take_accessed_dirty_next(std::size_t len) {
  if (!window_ok(virt_addr(), range(), len)) return err(Error::InvalidArgs);
  bool accessed = false, dirty = false;
  auto r = inner_.protect_next(len, [&](PageProperty& p) {
    accessed = has(p.flags, PageFlags::ACCESSED);
    dirty = has(p.flags, PageFlags::DIRTY);
    p.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
  });
  if (!r) return err(fold_ext(r.error()));
  if (!*r) return std::optional<AccessedDirty>();
  // A CPU caching the translation would not set the bits again: drop it everywhere.
  flusher_.issue_tlb_flush(flush_op_for((*r)->start, (*r)->end));
  flusher_.dispatch_tlb_flush();
  return std::optional<AccessedDirty>(AccessedDirty{**r, accessed, dirty});
}

}  // namespace vmspace
