// VmSpace: a user address space (OSTD `ostd/src/mm/vm_space.rs`: `VmSpace`, `Cursor`,
// `CursorMut`; activation and TLB coherence as in `VmSpace::activate` and `mm/tlb.rs`).
//
// A VmSpace owns a user page table that shares the kernel half with the kernel page table, the
// set of CPUs it is active on, and the I/O memory ever mapped into it. Cursors lock sub-trees of
// its table (page_table.hpp describes the protocol and its guarantees); a CursorMut carries a
// TlbFlusher targeting the space's CPUs. Fallible readers and writers copy user memory of the
// space active on the calling CPU through its software TLB and page table.
//
// Ownership: a VmSpace is shared (std::shared_ptr). A CPU that activates it holds a reference
// until another space (or none) is activated there. Cursors, readers and writers borrow it: the
// caller keeps the space alive while they exist (as OSTD's lifetimes require).
//
// Errors: page-table errors surface as AccessDenied where OSTD does (cursor creation, query of
// an exhausted cursor), and the finer cause is kept in last_page_table_error(). Where OSTD
// panics on misuse we return: InvalidArgs (unaligned or out-of-range lengths, bad items),
// AlreadyMapped (mapping over a mapping), NoMemory, WouldBlock / WouldDeadlock (nested cursors).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include <vmspace/cpu.hpp>
#include <vmspace/fault.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/io.hpp>
#include <vmspace/io_mem.hpp>
#include <vmspace/mutex.hpp>
#include <vmspace/page_table.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/segment.hpp>
#include <vmspace/tlb.hpp>
#include <vmspace/user_pt_config.hpp>

namespace vmspace {

// What a cursor finds at its address (OSTD's VmQueriedItem).
struct VmQueriedItem {
  // Tracked RAM (a frame) or untracked device memory (an IoMem).
  enum class Kind : std::uint8_t { MappedRam, MappedIoMem };
  // Which of the two is mapped.
  Kind kind;
  // MappedRam: the first frame of the mapping (borrowed; valid while the cursor lives).
  std::optional<FrameRef<AnyUFrameMeta>> frame;
  // The mapping's physical base (MappedRam: frame->paddr(); MappedIoMem: the device address).
  Paddr paddr;
  PagingLevel level;  // 1 for 4 KiB mappings, 2 for 2 MiB ones
  PageProperty prop;  // as mapped (USER set; AVAIL1 never shown)

  // The mapping's property (OSTD's accessor name).
  const PageProperty& property() const noexcept { return prop; }
};

// The finer cause of the last page-table error a VmSpace call on this thread folded into an
// Error, or nullopt if none since the thread started. Thread-local.
std::optional<PageTableError> last_page_table_error() noexcept;

// The root physical address the calling CPU translates through: its active space's root, or the
// kernel table's root when none is active (also for unbound threads).
Paddr current_page_table_paddr() noexcept;

// A user address space (OSTD `ostd/src/mm/vm_space.rs`, `VmSpace`): a user page table that shares
// the kernel half, the set of CPUs it is active on, and the I/O memory mapped into it. Always held
// by shared_ptr (create()). All members are thread-safe; mappings change only through cursors,
// which lock the ranges they cover.
class VmSpace : public std::enable_shared_from_this<VmSpace> {
 public:
  class Cursor;
  class CursorMut;

  // A new, empty address space. No physical memory is mapped. Errors: NoMemory.
  static Result<std::shared_ptr<VmSpace>> create();

  VmSpace(const VmSpace&) = delete;
  VmSpace& operator=(const VmSpace&) = delete;
  // Releases every user mapping and page-table node at once (no CPU can have the space active:
  // active CPUs hold references). The shared kernel half is untouched.
  ~VmSpace();

  // A read-only cursor over `range`, blocking while an overlapping cursor lives.
  // Errors: AccessDenied for a bad range (empty, reversed, unaligned, outside user space;
  // detail in last_page_table_error()); NoMemory; WouldDeadlock if this thread holds a cursor
  // whose locks it would need; WouldBlock if this thread holds another cursor of this space and
  // the new one would have to wait (see page_table.hpp, "Deadlock freedom").
  Result<Cursor> cursor(const DisabledPreemptGuard& guard, VaRange range) const;
  // As cursor(), but WouldBlock instead of waiting for another thread's cursor.
  Result<Cursor> try_cursor(const DisabledPreemptGuard& guard, VaRange range) const;
  // A cursor that may change mappings in `range`; same locking, blocking and errors as cursor().
  Result<CursorMut> cursor_mut(const DisabledPreemptGuard& guard, VaRange range) const;
  // As cursor_mut(), but WouldBlock instead of waiting for another thread's cursor.
  Result<CursorMut> try_cursor_mut(const DisabledPreemptGuard& guard, VaRange range) const;

  // Makes this the calling CPU's user address space: adds the CPU to the space's CPU set,
  // removes it from the previously active space's set, switches the CPU's root and flushes its
  // TLB (no ASIDs, as in OSTD). No-op if already active here.
  // Errors: AccessDenied if the calling thread is not bound to a CPU.
  Result<void> activate();
  // Switches the calling CPU back to the kernel table only, releasing its active space (an
  // extension: OSTD never deactivates, but a process that wants its spaces freed must be able
  // to). Errors: AccessDenied if the thread is unbound.
  static Result<void> deactivate_current();

  // Readers/writers over user addresses [vaddr, vaddr + len) of this space.
  // Errors: AccessDenied if the range wraps or ends above kMaxUserspaceVaddr, or if this space
  // is not active on the calling CPU (or the thread is unbound). Mapping presence is not
  // checked: faults surface when copying. Decided edge cases: len == 0 gives an empty reader
  // (no access is ever made); vaddr == 0 is an ordinary user address (page 0 is mappable; a
  // kernel that wants NULL checks never maps it). The vostd success condition excludes both,
  // but the spec is one-directional there and OSTD's code accepts them too.
  Result<VmReader<Fallible>> reader(Vaddr vaddr, std::size_t len) const;
  // The writing counterpart of reader(), with the same checks and errors.
  Result<VmWriter<Fallible>> writer(Vaddr vaddr, std::size_t len) const;
  // Both over the same range (e.g. for atomic_compare_exchange), with one check.
  Result<std::pair<VmReader<Fallible>, VmWriter<Fallible>>> reader_writer(Vaddr vaddr,
                                                                          std::size_t len) const;

  // The user page table (for walks, checks and tests; mutate it only through cursors).
  const PageTable<UserPtConfig>& page_table() const noexcept { return pt_; }
  // Physical address of the user page table's root (what activate() loads into the CPU).
  Paddr root_paddr() const noexcept { return pt_.root_paddr(); }
  // The CPUs this space is active on (a superset of the CPUs that may cache its translations).
  CpuSet active_cpus() const { return cpus_.load(std::memory_order_acquire); }
  // The live set behind active_cpus(), the target set of this space's TLB flushers.
  const AtomicCpuSet& cpu_set() const noexcept { return cpus_; }

  // The IoMem mapped into this space containing `paddr`, and the offset of `paddr` in it.
  // Guaranteed while the page is mapped; IoMems stay recorded until the space drops.
  std::optional<std::pair<IoMem, std::size_t>> find_iomem_by_paddr(Paddr paddr) const;

 private:
  explicit VmSpace(PageTable<UserPtConfig> pt) noexcept : pt_(std::move(pt)) {}
  Result<Cursor> make_cursor(const DisabledPreemptGuard& guard, VaRange range,
                             internal::LockWait wait) const;
  void record_iomem(const IoMem& io) const;
  bool active_here() const noexcept;

  PageTable<UserPtConfig> pt_;
  // Mutable: activation and TLB dispatch update it through const references, as in OSTD.
  mutable AtomicCpuSet cpus_;
  mutable Mutex iomem_lock_;
  mutable std::vector<IoMem> iomems_ VMS_GUARDED_BY(iomem_lock_);
};

// A read-only cursor over a VmSpace (OSTD's vm_space::Cursor). Same thread and lifetime rules as
// the page-table cursor it wraps.
class VmSpace::Cursor {
 public:
  // The entry covering virt_addr() (its whole, size-aligned range) and what is mapped there.
  // Errors: AccessDenied if virt_addr() >= the range end (detail: InvalidVaddr).
  Result<std::pair<VaRange, std::optional<VmQueriedItem>>> query();
  // The next mapped address in [virt_addr(), virt_addr() + len) (see Cursor<C>::find_next).
  // Errors: InvalidArgs if len is not 4 KiB-aligned or goes past the range end.
  Result<std::optional<Vaddr>> find_next(std::size_t len);
  // Errors: InvalidArgs if va is unaligned; AccessDenied if va is outside [start, end).
  Result<void> jump(Vaddr va);
  // The cursor's current address.
  Vaddr virt_addr() const noexcept { return inner_.virt_addr(); }
  // The range the cursor was created over (and keeps locked).
  VaRange range() const noexcept { return inner_.locked_range(); }

 protected:
  friend class VmSpace;
  explicit Cursor(vmspace::Cursor<UserPtConfig> inner) noexcept : inner_(std::move(inner)) {}

  // A page-table CursorMut even in a read-only cursor: it locks exactly as a page-table Cursor
  // does, and one type lets VmSpace::CursorMut extend this class. Cursor itself only reads.
  vmspace::CursorMut<UserPtConfig> inner_;
};

// A cursor that changes mappings (OSTD's vm_space::CursorMut): a Cursor (query, find_next,
// jump, virt_addr, range) that also maps, unmaps and protects. Moving it into a plain Cursor
// keeps the locks and drops the flusher, with the flusher's usual rule: dispatch first.
class VmSpace::CursorMut : public VmSpace::Cursor {
 public:
  // Maps `frame` at virt_addr() with `prop`'s flags and cache policy (privileged bits are the
  // library's: USER is set, the rest cleared) and advances 4 KiB. The frame's reference moves
  // into the page table; on error the frame stays with the caller and nothing changes.
  // Errors: AccessDenied if virt_addr() >= range end; AlreadyMapped; InvalidArgs if the
  // property cannot be encoded (WriteProtected on x86); NoMemory.
  Result<void> map(UFrame&& frame, PageProperty prop);
  // Beyond OSTD: maps a 4 KiB or 2 MiB untyped segment as one mapping (2 MiB: one huge leaf;
  // virt_addr() and the segment must be 2 MiB-aligned). Later partial unmaps/protects split it.
  // Errors as map(), plus InvalidArgs for any other size or a misalignment.
  Result<void> map_segment(USegment&& segment, PageProperty prop);
  // Maps [io.paddr() + offset, io.paddr() + min(offset + len, io.size())) at virt_addr() as
  // untracked 4 KiB pages and records `io` in the space. Nothing happens if offset >= size.
  // Errors: InvalidArgs if len or offset is unaligned or the pages go past the range end;
  // AlreadyMapped if any target page is mapped (checked first: nothing changes); NoMemory (the
  // pages mapped before the failure stay mapped, and `io` is already recorded, so its claim
  // lasts as long as the space).
  Result<void> map_iomem(const IoMem& io, PageProperty prop, std::size_t len, std::size_t offset);

  // Removes every mapping in [virt_addr(), virt_addr() + len), advances by len and dispatches the
  // TLB flush. Returns the number of tracked frames unmapped (huge mappings count their 512
  // frames, also inside detached sub-trees; detached sub-trees count as OSTD's num_frames, which
  // includes their I/O pages). Frames are released only after every
  // CPU that had the space active has flushed and a grace period has passed. Unmapping nothing is
  // fine (returns 0).
  // Errors: InvalidArgs if len is unaligned or goes past the range end (nothing changes);
  // NoMemory while splitting a huge page (mappings before it are already unmapped and flushed).
  Result<std::size_t> unmap(std::size_t len);

  // Changes the flags and cache policy of the next mapping starting in [virt_addr(),
  // virt_addr() + len) (splitting a huge page that sticks out), returns its range and moves past
  // it; nullopt if nothing is mapped there. `op(flags, cache)` cannot touch privileged bits.
  // No TLB flush is done: issue one through flusher() and dispatch it before relying on the
  // reduced permissions (OSTD semantics).
  // Errors: InvalidArgs (unaligned / out-of-range len, unencodable result); NoMemory.
  Result<std::optional<VaRange>> protect_next(
      std::size_t len, const std::function<void(PageFlags&, CachePolicy&)>& op);

  // The cursor's flusher; its targets are the space's CPUs, read at dispatch.
  TlbFlusher& flusher() noexcept { return flusher_; }

  // ---- Kernel extensions (implemented in src/vm/vm_space_ops.cpp) ----
  // Operations a process kernel needs on whole ranges (mprotect, fork, page replacement), each
  // with its TLB flush issued and dispatched, so the caller cannot forget it.

  // Applies `op` to every mapping in [virt_addr(), virt_addr() + len) (huge pages sticking out
  // of either end are split), then flushes the changed range on every CPU the space is active
  // on; when it returns, no CPU can use the old permissions. Moves to the window's end and
  // returns the number of leaf entries visited. `op` must be a pure function of its inputs (it
  // runs once per distinct property, not once per page) and cannot touch privileged bits.
  // Errors: InvalidArgs if len is unaligned or goes past the range end, or if op's result
  // cannot be encoded; NoMemory while splitting. On error the entries before the failing one
  // are changed, and their flush is dispatched all the same.
  Result<std::size_t> protect(std::size_t len,
                              const std::function<void(PageFlags&, CachePolicy&)>& op);

  // How fork_into maps a parent page into the child.
  enum class ForkMapping : std::uint8_t {
    CopyOnWrite,  // both map the frame without W (parent PTEs are write-protected): a write
                  // faults, and the kernel copies the frame or, as its last sharer, reuses it
    Shared,       // both map the frame with the parent's permissions (MAP_SHARED memory)
  };
  // Maps every page in [virt_addr(), virt_addr() + len) of this cursor's space into `child` at
  // the same address, sharing the frames (one more reference each; nothing is copied), and, for
  // CopyOnWrite, write-protects the parent's writable pages with one TLB flush at the end.
  // The child gets the parent's flags without W (CopyOnWrite) and without ACCESSED/DIRTY. Huge
  // mappings are split into 4 KiB pages in the parent first; I/O memory is mapped as I/O memory.
  // Both cursors move to the window's end. Returns the number of pages shared.
  // Preconditions: `child` is a cursor of another space whose range covers the window; the
  // caller orders the two cursors (e.g. the child is new, so no other thread waits on it).
  // Errors: InvalidArgs (len unaligned or out of either range); AlreadyMapped if the child has
  // a mapping there; NoMemory. On error the pages before the failing one are shared (drop the
  // child) and the parent stays correct: a write-protected page nobody shares faults once and
  // is reused. The parent's flush is dispatched in every case.
  Result<std::size_t> fork_into(CursorMut& child, std::size_t len, ForkMapping mapping);

  // For page replacement: the next mapping in [virt_addr(), virt_addr() + len), its range and
  // whether the MMU set ACCESSED and DIRTY on it since they were last cleared; clears both bits
  // and flushes that page from every CPU (so the next access or write sets them again), then
  // moves past it. nullopt when nothing is mapped there (the cursor sits at the window end).
  // Errors: InvalidArgs if len is unaligned or goes past the range end.
  struct AccessedDirty {
    // The whole range of the mapping (its size-aligned extent).
    VaRange range;
    // The MMU set ACCESSED since it was last cleared.
    bool accessed;
    // The MMU set DIRTY since it was last cleared.
    bool dirty;
  };
  // The page-replacement operation described above AccessedDirty: reports and clears the next
  // mapping's ACCESSED and DIRTY bits, flushes that page on every CPU the space is active on, and
  // moves past it; nullopt (cursor at the window end) when nothing is mapped there. Errors:
  // InvalidArgs if len is unaligned or goes past the range end.
  Result<std::optional<AccessedDirty>> take_accessed_dirty_next(std::size_t len);
  // ---- end of kernel extensions ----

 private:
  friend class VmSpace;
  CursorMut(Cursor&& cursor, const VmSpace& space) noexcept
      : Cursor(std::move(cursor)), flusher_(space.cpus_), space_(&space) {}
  // Maps `item` at virt_addr(). Takes the item only on success; on error it is left with the
  // caller unchanged, so map() and map_segment() can hand the memory back.
  Result<void> map_item(UserItem& item);

  TlbFlusher flusher_;
  const VmSpace* space_;
};

}  // namespace vmspace
