// The read-only page-table cursor: creation, navigation and the shared search of the mutating
// operations (OSTD `ostd/src/mm/page_table/cursor/mod.rs`, `Cursor`). How a cursor locks its
// range is in page_table/locking.hpp; the mutating cursor is in page_table/cursor_mut.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/internal/node_lock.hpp>
#include <vmspace/internal/node_view.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

template <PageTableConfig C>
class PageTable;

// The page-table cursors. They have a namespace of their own so that they are not confused with
// VmSpace::Cursor and VmSpace::CursorMut; vmspace::Cursor and vmspace::CursorMut name them too.
namespace pt {

template <PageTableConfig C>
class CursorMut;

// A read-only cursor: exclusively locks the sub-tree covering its range (see
// page_table/locking.hpp). Not thread-safe; it must be used and destroyed on the thread that
// created it, and the DisabledPreemptGuard passed at creation must outlive it. Moved-from cursors
// are inert.
template <PageTableConfig C>
class Cursor {
 public:
  // The owned item type leaves hold (C::Item).
  using Item = typename C::Item;
  // The borrowed item view query returns (C::ItemRef).
  using ItemRef = typename C::ItemRef;
  // The paging constants of the table's PTE format.
  using Consts = ConstsOf<C>;

  // What query() finds at the cursor's address.
  struct Queried {
    VaRange range;                // the whole entry covering virt_addr() (aligned to its size)
    std::optional<ItemRef> item;  // nullopt: nothing mapped there
    PagingLevel level = 1;        // the entry's level
  };

  // Takes over `o`'s locks and position; `o` becomes inert (holds nothing, only destruction and
  // assignment are allowed). Same-thread rule as for any cursor.
  Cursor(Cursor&& o) noexcept { take(o); }
  // Releases this cursor's locks, then takes over `o`'s; `o` becomes inert.
  Cursor& operator=(Cursor&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() { release(); }

  // The current address; may equal the range end after an operation consumed the range.
  Vaddr virt_addr() const noexcept { return va_; }
  // The range the cursor was created over; operations stay inside it.
  VaRange locked_range() const noexcept { return locked_range_; }
  // The level of the locked sub-tree root.
  PagingLevel guard_level() const noexcept { return guard_level_; }

  // The entry covering virt_addr(): its range and item (no move).
  // Errors: InvalidVaddr if virt_addr() >= range end.
  Result<Queried, PageTableError> query() noexcept {
    using F = typename C::Pte;
    if (va_ >= locked_range_.end) return err(PageTableError::InvalidVaddr);
    for (;;) {
      const std::uint64_t raw = cur_node().load_locked(cur_idx());
      if (internal::is_pt_entry<C>(raw, level_)) {
        push(F::paddr(raw, level_));
        continue;
      }
      Queried q{entry_range(), std::nullopt, level_};
      if (F::is_present(raw, level_)) {
        const PteScalar s = F::decode(raw, level_);
        q.item.emplace(C::item_ref_from_raw(RawItem{s.paddr, level_, s.prop}));
      }
      return q;
    }
  }

  // Moves to the next mapped leaf in [virt_addr(), virt_addr() + len) and returns its address
  // (which is virt_addr() itself if that lies inside a mapping, even mid-huge-page). Returns
  // nullopt if nothing is mapped there; the cursor then sits at virt_addr() + len.
  // Errors: UnalignedLen (len not a multiple of 4 KiB), LenOutOfRange (beyond the range end).
  Result<std::optional<Vaddr>, PageTableError> find_next(std::uint64_t len) noexcept {
    if (auto e = check_len(len)) return err(*e);
    auto r = find_next_impl(len, Find::Mapped);
    if (!r) return err(r.error());
    return *r;
  }

  // Moves to `va` anywhere inside the locked range.
  // Errors: UnalignedLen if va is not 4 KiB-aligned (OSTD panics); InvalidVaddr if
  // va is outside [range start, range end).
  Result<void, PageTableError> jump(Vaddr va) noexcept {
    if (!is_aligned(va, kPageSize)) return err(PageTableError::UnalignedLen);
    if (!locked_range_.contains(va)) return err(PageTableError::InvalidVaddr);
    va_ = va;
    reposition();
    return {};
  }

 protected:
  friend class PageTable<C>;
  friend class CursorMut<C>;
  using F = typename C::Pte;
  using Node = internal::NodeView<C>;
  static constexpr PagingLevel kRootLevel = Consts::kNrLevels;  // the level of the table's root

  enum class Find : std::uint8_t {
    Mapped,     // find_next, protect_next: stop at any mapped leaf touching the window
    Removable,  // take_next: stop at what can be removed whole — a sub-tree or leaf inside
                // the window — splitting huge leaves that stick out of it
  };

  Cursor() = default;

  static Result<Cursor, PageTableError> create(const PageTable<C>& pt, const DisabledPreemptGuard&,
                                               VaRange va, internal::LockWait wait) noexcept {
    if (auto e = check_cursor_range<C>(va)) return err(*e);
    const Paddr root = pt.root_paddr();
    // A thread that already holds a cursor here must not wait (see "Deadlock freedom" in
    // page_table/locking.hpp).
    if (internal::cursors_held(root) != 0) wait = internal::LockWait::Try;
    Cursor c;
    c.pt_ = &pt;
    c.locked_range_ = va;
    c.va_ = va.start;
    auto locked = c.lock_range(wait);
    if (!locked) {
      c.pt_ = nullptr;
      return err(locked.error());
    }
    if (!internal::note_cursor_acquired(root)) {
      c.release_subtree(c.path_[c.guard_level_ - 1], c.guard_level_, c.locked_range_);
      c.pt_ = nullptr;
      return err(PageTableError::TooManyTables);
    }
    return c;
  }

  // ---- navigation ----

  Node cur_node() const noexcept { return Node{path_[level_ - 1]}; }
  std::size_t cur_idx() const noexcept { return pte_index<Consts>(va_, level_); }
  static constexpr std::uint64_t size_at(PagingLevel level) noexcept {
    return page_size<Consts>(level);
  }
  VaRange entry_range() const noexcept {
    const Vaddr start = align_down(va_, size_at(level_));
    return VaRange{start, internal::saturating_add(start, size_at(level_))};
  }
  bool in_current_node() const noexcept {
    if (level_ == guard_level_) return true;
    const Vaddr base = node_base_[level_ - 1];
    return va_ >= base && va_ - base < size_at(level_ + 1);
  }
  void reposition() noexcept {
    while (level_ < guard_level_ && !in_current_node()) ++level_;
  }
  void push(Paddr child) noexcept {
    VMS_DEBUG_ASSERT(level_ > 1, "descending below level 1");
    node_base_[level_ - 2] = align_down(va_, size_at(level_));
    path_[level_ - 2] = child;
    --level_;
  }
  void move_past_entry() noexcept {
    va_ = entry_range().end;
    reposition();
  }
  std::optional<PageTableError> check_len(std::uint64_t len) const noexcept {
    if (!is_aligned(len, kPageSize)) return PageTableError::UnalignedLen;
    if (va_ > locked_range_.end || len > locked_range_.end - va_)
      return PageTableError::LenOutOfRange;
    return std::nullopt;
  }

  // Shared search (OSTD's find_next_impl). Precondition: check_len(len) passed. On success
  // with a value, the cursor sits at the found entry (level_ = its level) and the value is
  // virt_addr(). Without a value, the cursor sits at the window end.
  Result<std::optional<Vaddr>, PageTableError> find_next_impl(std::uint64_t len,
                                                              Find mode) noexcept {
    const Vaddr end = va_ + len;
    while (va_ < end) {
      const std::uint64_t raw = cur_node().load_locked(cur_idx());
      if (internal::is_pt_entry<C>(raw, level_)) {
        if (mode == Find::Removable && entry_fits(end) &&
            (C::kTopLevelCanUnmap || level_ != kRootLevel)) {
          return std::optional<Vaddr>(va_);
        }
        const Paddr child = F::paddr(raw, level_);
        if (Node{child}.meta().nr_children != 0) {
          push(child);
        } else {
          move_past_entry();
        }
        continue;
      }
      if (!F::is_present(raw, level_)) {
        move_past_entry();
        continue;
      }
      if (mode == Find::Removable) {
        if (auto e = split_until_fits(end)) return err(*e);
      }
      return std::optional<Vaddr>(va_);
    }
    va_ = end;
    reposition();
    return std::optional<Vaddr>();
  }

  // Whether the entry at va_ starts at va_ and ends inside [va_, end): the whole entry can be
  // changed or removed without touching anything outside the window.
  bool entry_fits(Vaddr end) const noexcept {
    const VaRange entry = entry_range();
    return va_ == entry.start && entry.end <= end && entry.end > entry.start;
  }

  // Splits the huge leaf at va_ (descending into the pieces) until the leaf there fits in
  // [va_, end). Precondition: a leaf is mapped at va_. Errors: NoMemory (the leaves split so far
  // stay split; no translation changed).
  std::optional<PageTableError> split_until_fits(Vaddr end) noexcept {
    while (!entry_fits(end)) {
      if (auto e = split_huge(cur_node(), cur_idx())) return e;
    }
    return std::nullopt;
  }

  // Replaces the huge leaf at (node, idx) on the current level by a node of 512 leaves one
  // level down with the same property, and descends into it. The pieces own what the huge
  // item owned (C::item_from_raw accepts split pieces). Errors: NoMemory (nothing changed).
  std::optional<PageTableError> split_huge(Node node, std::size_t idx) noexcept {
    const PagingLevel child_level = static_cast<PagingLevel>(level_ - 1);
    auto child = internal::alloc_node<C>(child_level, internal::NewNode::LockedByMe);
    if (!child) return child.error();
    const Node c{*child};
    std::uint64_t old = node.load_locked(idx);
    for (;;) {
      const PteScalar s = F::decode(old, level_);
      for (std::size_t i = 0; i < kNrEntries<Consts>; ++i) {
        c.entry(i).store(
            F::encode(PteScalar::mapped(s.paddr + i * size_at(child_level), s.prop), child_level),
            boost::memory_order_relaxed);
      }
      // A concurrent software MMU may set ACCESSED/DIRTY in the huge leaf; retry so the pieces
      // inherit them.
      const std::uint64_t table =
          F::encode(PteScalar::page_table(*child, PageTableFlags::None), level_);
      if (node.entry(idx).compare_exchange_strong(old, table, boost::memory_order_release,
                                                  boost::memory_order_relaxed)) {
        break;
      }
    }
    c.meta().nr_children = static_cast<std::uint16_t>(kNrEntries<Consts>);
    push(*child);
    return std::nullopt;
  }

  // ---- locking (page_table/locking.hpp) ----

  static PageTableError lock_error(internal::LockResult r) noexcept;

  // Locks `node` and checks that it is still in the table. Returns true with it locked, false
  // (and unlocked) if it was detached meanwhile ("stray": retry from the root), or the lock
  // error.
  Result<bool, PageTableError> lock_attached(Node node, internal::LockWait wait) noexcept;

  // Phase 1 + phase 2. Sets path_[guard-1], guard_level_ and level_.
  Result<void, PageTableError> lock_range(internal::LockWait wait) noexcept;

  // Returns true with the sub-tree root locked, false to retry (it went stray), or an error.
  Result<bool, PageTableError> traverse_and_lock_subtree_root(internal::LockWait wait) noexcept;

  // Phase 2: locks every child node of `node` inside `range`, depth first. On failure nothing
  // below `node` stays locked (node itself stays locked).
  Result<void, PageTableError> acquire_children(Node node, PagingLevel level, VaRange range,
                                                internal::LockWait wait) noexcept;

  // The part of `range` inside entry `i` of the node at `level` that holds range.start.
  static VaRange clip(VaRange range, PagingLevel level, std::size_t i) noexcept;

  // Unlocks the sub-trees of children s..i-1 (reverse order) of a node whose children in
  // `range` were locked up to index i (exclusive).
  void release_children_before(Node node, PagingLevel level, VaRange range, std::size_t i) noexcept;

  // Unlocks every node of the sub-tree rooted at `node` inside `range`, children before
  // parents, higher indices first: the exact reverse of acquisition.
  void release_subtree(Paddr pa, PagingLevel level, VaRange range) noexcept;

  void release() noexcept;

  void take(Cursor& o) noexcept {
    pt_ = std::exchange(o.pt_, nullptr);
    path_ = o.path_;
    node_base_ = o.node_base_;
    level_ = o.level_;
    guard_level_ = o.guard_level_;
    va_ = o.va_;
    locked_range_ = o.locked_range_;
  }

  const PageTable<C>* pt_ = nullptr;
  std::array<Paddr, 4> path_{};       // path_[l-1]: the node at level l on the way to va_
  std::array<Vaddr, 4> node_base_{};  // first address covered by path_[l-1] (below the guard)
  PagingLevel level_ = 0;
  PagingLevel guard_level_ = 0;
  Vaddr va_ = 0;
  VaRange locked_range_{};  // the range the cursor locked (OSTD's barrier_va); it never leaves it
};

}  // namespace pt

using pt::Cursor;

}  // namespace vmspace

#include <vmspace/page_table/locking.hpp>
