// Multi-level page tables over emulated physical memory, with range-locked cursors (OSTD
// `ostd/src/mm/page_table/mod.rs`; docs/page_table.md). This is the header users include; the
// parts live in page_table/:
//   node.hpp        node frames and their metadata
//   frag.hpp        what take_next removes (a mapped item or a detached sub-tree)
//   cursor.hpp      the read-only cursor (navigation, search)
//   locking.hpp     how a cursor locks its range; the locking protocol and its guarantees
//   cursor_mut.hpp  the mutating cursor (map, take_next, protect_next, protect)
// and the internals (node lock, raw node access) in internal/.
//
// Errors are returned, never panics: every argument error leaves the table unchanged. A
// NoMemory failure while allocating intermediate nodes may leave empty nodes behind; they change
// no translation (OSTD also keeps empty nodes until a covering unmap removes them).
#pragma once

#include <optional>
#include <utility>

#include <vmspace/addr.hpp>
#include <vmspace/internal/node_lock.hpp>
#include <vmspace/internal/node_view.hpp>
#include <vmspace/page_table/cursor.hpp>
#include <vmspace/page_table/cursor_mut.hpp>
#include <vmspace/page_table/frag.hpp>
#include <vmspace/page_table/node.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

// A page table of configuration C. Owns its root node (and through it the whole tree).
// Thread-safe: any number of threads may create cursors and walk concurrently.
template <PageTableConfig C>
class PageTable {
 public:
  // The owned item type leaves hold (C::Item).
  using Item = typename C::Item;
  // The paging constants of the table's PTE format.
  using Consts = ConstsOf<C>;

  // A table with an empty root. Errors: NoMemory.
  static Result<PageTable, PageTableError> empty() noexcept {
    auto root = internal::alloc_node<C>(Consts::kNrLevels, internal::NewNode::Unlocked);
    if (!root) return err(root.error());
    return PageTable(PageTableNode<C>::from_raw(*root));
  }

  // Moves ownership of the tree; the moved-from table owns nothing and may only be destroyed or
  // assigned to.
  PageTable(PageTable&&) noexcept = default;
  // Move assignment: drops the target's tree first, under the destructor's precondition.
  PageTable& operator=(PageTable&&) noexcept = default;
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;
  // Dropping the table drops its tree immediately. Precondition: no cursor is alive and no
  // CPU can still walk it (VmSpace guarantees both).
  ~PageTable() = default;

  // Physical address of the root node (what a CPU translating through this table loads).
  Paddr root_paddr() const noexcept { return root_.paddr(); }
  // The root node handle, for walks and invariant checks; changing the tree goes through cursors
  // only.
  const PageTableNode<C>& root_node() const noexcept { return root_; }

  // A read-only cursor over `va`, blocking while an overlapping cursor lives.
  // Errors: InvalidVaddrRange, UnalignedVaddr; NoMemory (creating intermediate nodes);
  // WouldDeadlock / WouldBlock (see "Deadlock freedom" in page_table/locking.hpp); TooManyTables.
  // The guard must outlive the cursor.
  Result<Cursor<C>, PageTableError> cursor(const DisabledPreemptGuard& guard, VaRange va) const {
    return Cursor<C>::create(*this, guard, va, internal::LockWait::Block);
  }
  // As cursor(), but fails with WouldBlock instead of waiting.
  Result<Cursor<C>, PageTableError> try_cursor(const DisabledPreemptGuard& guard,
                                               VaRange va) const {
    return Cursor<C>::create(*this, guard, va, internal::LockWait::Try);
  }
  // A cursor that may map, unmap and protect in `va`; same locking, blocking, errors and guard rule
  // as cursor().
  Result<CursorMut<C>, PageTableError> cursor_mut(const DisabledPreemptGuard& guard,
                                                  VaRange va) const {
    auto c = Cursor<C>::create(*this, guard, va, internal::LockWait::Block);
    if (!c) return err(c.error());
    return CursorMut<C>(std::move(*c));
  }
  // As cursor_mut(), but fails with WouldBlock instead of waiting.
  Result<CursorMut<C>, PageTableError> try_cursor_mut(const DisabledPreemptGuard& guard,
                                                      VaRange va) const {
    auto c = Cursor<C>::create(*this, guard, va, internal::LockWait::Try);
    if (!c) return err(c.error());
    return CursorMut<C>(std::move(*c));
  }

  // Software walk of `va` without locks, as an MMU would: the physical address of `va` and the
  // leaf's property, or nullopt if unmapped or not canonical for the format (an MMU faults
  // there; the table indices ignore the high bits, so walking would alias a lower address).
  // Safe against concurrent cursors (it runs in its own RCU read section). The result may be
  // stale by the time it returns.
  std::optional<std::pair<Paddr, PageProperty>> page_walk(Vaddr va) const noexcept {
    auto guard = disable_preempt();
    return page_walk_in(guard, va);
  }
  // The same inside the caller's read section.
  std::optional<std::pair<Paddr, PageProperty>> page_walk_in(const DisabledPreemptGuard&,
                                                             Vaddr va) const noexcept {
    using F = typename C::Pte;
    if (!is_canonical_vaddr<Consts>(va)) return std::nullopt;
    Paddr node = root_.paddr();
    for (PagingLevel level = Consts::kNrLevels; level >= 1; --level) {
      const std::uint64_t raw =
          internal::NodeView<C>{node}.load_acquire(pte_index<Consts>(va, level));
      if (!F::is_present(raw, level)) return std::nullopt;
      if (F::is_leaf(raw, level)) {
        const PteScalar s = F::decode(raw, level);
        return std::pair{s.paddr + (va & (page_size<Consts>(level) - 1)), s.prop};
      }
      node = F::paddr(raw, level);
    }
    return std::nullopt;
  }

  // Adopts an existing root (used by kernel/user table construction). The reference is consumed.
  explicit PageTable(PageTableNode<C> root) noexcept : root_(std::move(root)) {}

 private:
  PageTableNode<C> root_;
};

}  // namespace vmspace
