// Multi-level page tables over emulated physical memory, with range-locked cursors
// (OSTD `page_table/`, reference/ostd-mm.md §2.5–2.10 and §3.1–3.7).
//
// Nodes are real frames whose metadata is PageTablePageMeta<C>; their 512 entries are raw
// 64-bit PTE words in the frame, read and written atomically (writes release, lock-free reads
// acquire, reads under the node lock relaxed). A node's PTE owns one reference to each child
// node and owns the mapped item (C::Item) of each leaf.
//
// Locking protocol (§3.2–3.4). Creating a cursor over [start, end):
//   Phase 1 — inside the caller's RCU read section, walk down lock-free to the deepest node
//   whose span covers the range (stopping where the range spans two or more entries, covers one
//   entry exactly, or meets a huge leaf), creating missing nodes on the way under their parent's
//   lock (a new node is locked before the PTE that publishes it is written). Lock that node; if
//   it has been detached meanwhile ("stray"), unlock and start again from the root.
//   Phase 2 — lock every existing child node inside the range in DFS pre-order.
// Dropping the cursor unlocks in the reverse order. Nodes a cursor creates are born locked and
// nodes it detaches are marked stray and unlocked on the spot.
//
// Guarantee: if two cursors' ranges overlap, all operations of one happen before any of the
// other's (two-phase locking); cursors whose locked sub-trees are disjoint run in parallel.
// Read-only cursors take the same exclusive locks (as in OSTD).
//
// Deadlock freedom: every thread acquires node locks in DFS pre-order, so cursor creation
// cannot deadlock — with one exception that OSTD leaves to the caller: a thread that holds a
// cursor and asks for a second one in the same table acquires locks out of order. Such a
// request never blocks here: it fails with WouldDeadlock if it needs a node the thread holds
// itself and with WouldBlock if another thread holds it. (Holding cursors in two different
// tables is like holding two mutexes: order them yourself.)
//
// Errors are returned, never panics: every argument error leaves the table unchanged. A
// NoMemory failure while allocating intermediate nodes may leave empty nodes behind; they change
// no translation (OSTD also keeps empty nodes until a covering unmap removes them).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <variant>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/detail/node_lock.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/mutation.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

template <PageTableConfig C>
class PageTable;
template <PageTableConfig C>
class Cursor;
template <PageTableConfig C>
class CursorMut;

// Metadata of a page-table node frame.
template <PageTableConfig C>
struct PageTablePageMeta {
  static constexpr const char* kTypeName = "PageTablePageMeta";

  // The node lock word (detail/node_lock.hpp). Accessed only atomically.
  alignas(4) std::uint32_t lock = 0;
  // Number of non-absent entries. Changed and read only under the node lock (or by the
  // node's last owner in on_drop).
  std::uint16_t nr_children = 0;
  // 1 = leaf table. Immutable.
  PagingLevel level = 0;
  // Set (under the lock) when the node is detached from its parent; a thread that acquires a
  // stray node must retry from the root.
  bool stray = false;

  // The last reference is gone (the table was dropped, or an RCU grace period passed after the
  // node was detached): drop every child node and mapped item. A root drops only its own
  // slice of the top level (a user root's kernel half is borrowed, not owned).
  void on_drop(VmReader<Infallible>& page) noexcept;
};

template <PageTableConfig C>
using PageTableNode = Frame<PageTablePageMeta<C>>;

// A piece removed from a page table by CursorMut::take_next. The caller must keep it until
// every CPU that may cache a translation through it has flushed its TLB; dropping it then
// destroys it after an RCU grace period.
template <PageTableConfig C>
struct MappedFrag {
  Vaddr va;                        // start of the removed mapping
  PagingLevel level;               // its level (size = page_size(level))
  RcuDrop<typename C::Item> item;  // the item, with the property it had when removed
};
template <PageTableConfig C>
struct StrayPageTableFrag {
  Vaddr va;                          // start of the range the sub-tree covered
  std::uint64_t len;                 // size of that range
  std::size_t num_frames;            // base pages its leaves mapped: OSTD's count of non-absent
                                     // level-1 entries, plus 512^(L-1) per level-L huge leaf
  RcuDrop<PageTableNode<C>> node;    // the detached sub-tree's root
};
template <PageTableConfig C>
using PageTableFrag = std::variant<MappedFrag<C>, StrayPageTableFrag<C>>;

namespace detail {

// Non-owning access to one node: its metadata and its entry words.
template <PageTableConfig C>
struct NodeView {
  Paddr pa;

  PageTablePageMeta<C>& meta() const noexcept {
    return *std::launder(static_cast<PageTablePageMeta<C>*>(meta_slot(pa)->meta_ptr()));
  }
  std::uint64_t& word(std::size_t i) const noexcept {
    return reinterpret_cast<std::uint64_t*>(paddr_to_vaddr(pa))[i];
  }
  boost::atomic_ref<std::uint64_t> entry(std::size_t i) const noexcept {
    return boost::atomic_ref<std::uint64_t>(word(i));
  }
  std::uint64_t load_acquire(std::size_t i) const noexcept {
    return entry(i).load(boost::memory_order_acquire);
  }
  std::uint64_t load_locked(std::size_t i) const noexcept {
    return entry(i).load(boost::memory_order_relaxed);
  }
  void store(std::size_t i, std::uint64_t v) const noexcept {
    entry(i).store(v, boost::memory_order_release);
  }
  LockResult lock(LockWait wait) const noexcept { return node_lock(meta().lock, wait); }
  void unlock() const noexcept { node_unlock(meta().lock); }
};

template <PageTableConfig C>
constexpr bool is_pt_entry(std::uint64_t raw, PagingLevel level) noexcept {
  using F = typename C::Pte;
  return level > 1 && F::is_present(raw, level) && !F::is_leaf(raw, level);
}

// Allocates a zeroed node at `level`, locked by the calling thread, and leaks its reference to
// the caller (who publishes it in a PTE or keeps it as a root).
template <PageTableConfig C>
Result<Paddr, PageTableError> alloc_node(PagingLevel level, bool locked) noexcept {
  PageTablePageMeta<C> meta;
  meta.lock = locked ? locked_by_me() : 0;
  meta.level = level;
  auto f = FrameAllocOptions().alloc_frame_with(meta);
  if (!f) return err(PageTableError::NoMemory);
  return std::move(*f).into_raw();
}

constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

}  // namespace detail

// A page table of configuration C. Owns its root node (and through it the whole tree).
// Thread-safe: any number of threads may create cursors and walk concurrently.
template <PageTableConfig C>
class PageTable {
 public:
  using Item = typename C::Item;
  using Consts = ConstsOf<C>;

  // A table with an empty root. Errors: NoMemory.
  static Result<PageTable, PageTableError> empty() noexcept {
    auto root = detail::alloc_node<C>(Consts::kNrLevels, /*locked=*/false);
    if (!root) return err(root.error());
    return PageTable(PageTableNode<C>::from_raw(*root));
  }

  PageTable(PageTable&&) noexcept = default;
  PageTable& operator=(PageTable&&) noexcept = default;
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;
  // Dropping the table drops its tree immediately. Precondition: no cursor is alive and no
  // CPU can still walk it (VmSpace guarantees both).
  ~PageTable() = default;

  Paddr root_paddr() const noexcept { return root_.paddr(); }
  const PageTableNode<C>& root_node() const noexcept { return root_; }

  // A read-only cursor over `va`, blocking while an overlapping cursor lives.
  // Errors: InvalidVaddrRange, UnalignedVaddr; NoMemory (creating intermediate nodes);
  // WouldDeadlock / WouldBlock (see "Deadlock freedom" above); TooManyTables.
  // The guard must outlive the cursor.
  Result<Cursor<C>, PageTableError> cursor(const DisabledPreemptGuard& guard, VaRange va) const {
    return Cursor<C>::create(*this, guard, va, detail::LockWait::Block);
  }
  // As cursor(), but fails with WouldBlock instead of waiting.
  Result<Cursor<C>, PageTableError> try_cursor(const DisabledPreemptGuard& guard, VaRange va) const {
    return Cursor<C>::create(*this, guard, va, detail::LockWait::Try);
  }
  Result<CursorMut<C>, PageTableError> cursor_mut(const DisabledPreemptGuard& guard, VaRange va) const {
    auto c = Cursor<C>::create(*this, guard, va, detail::LockWait::Block);
    if (!c) return err(c.error());
    return CursorMut<C>(std::move(*c));
  }
  Result<CursorMut<C>, PageTableError> try_cursor_mut(const DisabledPreemptGuard& guard,
                                                      VaRange va) const {
    auto c = Cursor<C>::create(*this, guard, va, detail::LockWait::Try);
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
      const std::uint64_t raw = detail::NodeView<C>{node}.load_acquire(pte_index<Consts>(va, level));
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

// A read-only cursor: exclusively locks the sub-tree covering its range (see the file
// comment). Not thread-safe; it must be used and destroyed on the thread that created it, and
// the DisabledPreemptGuard passed at creation must outlive it. Moved-from cursors are inert.
template <PageTableConfig C>
class Cursor {
 public:
  using Item = typename C::Item;
  using ItemRef = typename C::ItemRef;
  using Consts = ConstsOf<C>;

  struct Queried {
    VaRange range;                 // the whole entry covering virt_addr() (aligned to its size)
    std::optional<ItemRef> item;   // nullopt: nothing mapped there
    PagingLevel level = 1;         // the entry's level
  };

  Cursor(Cursor&& o) noexcept { take(o); }
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
  VaRange locked_range() const noexcept { return barrier_; }
  // The level of the locked sub-tree root.
  PagingLevel guard_level() const noexcept { return guard_level_; }

  // The entry covering virt_addr(): its range and item (no move).
  // Errors: InvalidVaddr if virt_addr() >= range end.
  Result<Queried, PageTableError> query() noexcept {
    using F = typename C::Pte;
    if (va_ >= barrier_.end) return err(PageTableError::InvalidVaddr);
    for (;;) {
      const std::uint64_t raw = cur_node().load_locked(cur_idx());
      if (detail::is_pt_entry<C>(raw, level_)) {
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
    if (!barrier_.contains(va)) return err(PageTableError::InvalidVaddr);
    va_ = va;
    reposition();
    return {};
  }

 protected:
  friend class PageTable<C>;
  friend class CursorMut<C>;
  using F = typename C::Pte;
  using Node = detail::NodeView<C>;
  static constexpr PagingLevel kNr = Consts::kNrLevels;

  enum class Find : std::uint8_t {
    Mapped,      // find_next, protect_next: stop at any mapped leaf touching the window
    Unmappable,  // take_next: stop at a fully covered sub-tree or leaf, split huge leaves
  };

  Cursor() = default;

  static Result<Cursor, PageTableError> create(const PageTable<C>& pt, const DisabledPreemptGuard&,
                                               VaRange va, detail::LockWait wait) noexcept {
    if (auto e = check_cursor_range<C>(va)) return err(*e);
    const Paddr root = pt.root_paddr();
    // A thread that already holds a cursor here must not wait (see "Deadlock freedom").
    if (detail::cursors_held(root) != 0) wait = detail::LockWait::Try;
    Cursor c;
    c.pt_ = &pt;
    c.barrier_ = va;
    c.va_ = va.start;
    auto locked = c.lock_range(wait);
    if (!locked) {
      c.pt_ = nullptr;
      return err(locked.error());
    }
    if (!detail::note_cursor_acquired(root)) {
      c.release_subtree(c.path_[c.guard_level_ - 1], c.guard_level_, c.barrier_);
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
    return VaRange{start, detail::saturating_add(start, size_at(level_))};
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
    if (va_ > barrier_.end || len > barrier_.end - va_) return PageTableError::LenOutOfRange;
    return std::nullopt;
  }

  // Shared search (OSTD's find_next_impl). Precondition: check_len(len) passed. On success
  // with a value, the cursor sits at the found entry (level_ = its level) and the value is
  // virt_addr(). Without a value, the cursor sits at the window end.
  Result<std::optional<Vaddr>, PageTableError> find_next_impl(std::uint64_t len, Find mode) noexcept {
    const Vaddr end = va_ + len;
    while (va_ < end) {
      const VaRange entry = entry_range();
      const bool fits = va_ == entry.start && entry.end <= end && entry.end > entry.start;
      const Node node = cur_node();
      const std::size_t idx = cur_idx();
      const std::uint64_t raw = node.load_locked(idx);
      if (detail::is_pt_entry<C>(raw, level_)) {
        if (mode == Find::Unmappable && fits && (C::kTopLevelCanUnmap || level_ != kNr)) {
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
      if (fits || mode == Find::Mapped) return std::optional<Vaddr>(va_);
      if (auto e = split_huge(node, idx)) return err(*e);
    }
    va_ = end;
    reposition();
    return std::optional<Vaddr>();
  }

  // Replaces the huge leaf at (node, idx) on the current level by a node of 512 leaves one
  // level down with the same property, and descends into it. The pieces own what the huge
  // item owned (C::item_from_raw accepts split pieces). Errors: NoMemory (nothing changed).
  std::optional<PageTableError> split_huge(Node node, std::size_t idx) noexcept {
    const PagingLevel child_level = static_cast<PagingLevel>(level_ - 1);
    auto child = detail::alloc_node<C>(child_level, /*locked=*/true);
    if (!child) return child.error();
    const Node c{*child};
    std::uint64_t old = node.load_locked(idx);
    for (;;) {
      const PteScalar s = F::decode(old, level_);
      for (std::size_t i = 0; i < kNrEntries<Consts>; ++i) {
        c.entry(i).store(F::encode(PteScalar::mapped(s.paddr + i * size_at(child_level), s.prop),
                                   child_level),
                         boost::memory_order_relaxed);
      }
      // A concurrent software MMU may set ACCESSED/DIRTY in the huge leaf; retry so the pieces
      // inherit them.
      const std::uint64_t table = F::encode(PteScalar::page_table(*child, PageTableFlags::None), level_);
      if (node.entry(idx).compare_exchange_strong(old, table, boost::memory_order_release,
                                                  boost::memory_order_relaxed)) {
        break;
      }
    }
    c.meta().nr_children = static_cast<std::uint16_t>(kNrEntries<Consts>);
    push(*child);
    return std::nullopt;
  }

  // ---- locking (file comment) ----

  static Result<void, PageTableError> lock_error(detail::LockResult r) noexcept {
    return err(r == detail::LockResult::WouldDeadlock ? PageTableError::WouldDeadlock
                                                      : PageTableError::WouldBlock);
  }

  // Phase 1 + phase 2. Sets path_[guard-1], guard_level_ and level_.
  Result<void, PageTableError> lock_range(detail::LockWait wait) noexcept {
    for (;;) {
      auto root = traverse_and_lock_subtree_root(wait);
      if (!root) return err(root.error());
      if (!*root) continue;  // the node went stray: retry from the root
      if (testing::mutated(testing::Mutation::SkipPhase2Locks)) {
        level_ = guard_level_;
        return {};
      }
      auto r = acquire_children(Node{path_[guard_level_ - 1]}, guard_level_, barrier_, wait);
      if (!r) {
        Node{path_[guard_level_ - 1]}.unlock();
        return r;
      }
      level_ = guard_level_;
      return {};
    }
  }

  // Returns true with the sub-tree root locked, false to retry (it went stray), or an error.
  Result<bool, PageTableError> traverse_and_lock_subtree_root(detail::LockWait wait) noexcept {
    Paddr cur = pt_->root_paddr();
    bool held = false;  // whether we hold cur's lock (a node we just created)
    PagingLevel level = kNr;
    for (; level >= 1; --level) {
      const std::size_t s = pte_index<Consts>(barrier_.start, level);
      const std::size_t e = pte_index<Consts>(barrier_.end - 1, level);
      if (level == 1 || s != e) break;
      // The range lies in one entry. If it is exactly that entry, this node is the root, so a
      // huge item can be mapped there (the fix for OSTD issue #3731).
      if (barrier_.start == align_down(barrier_.start, size_at(level)) &&
          barrier_.end - barrier_.start == size_at(level)) {
        break;
      }
      const Node node{cur};
      std::uint64_t raw = node.load_acquire(s);
      if (F::is_present(raw, level) && F::is_leaf(raw, level)) break;
      if (!F::is_present(raw, level)) {
        if (!held) {
          if (auto r = node.lock(wait); r != detail::LockResult::Acquired) return err(lock_error(r).error());
          if (node.meta().stray && !testing::mutated(testing::Mutation::SkipStrayCheck)) {
            node.unlock();
            return false;
          }
          held = true;
        }
        raw = node.load_locked(s);
        if (F::is_present(raw, level) && F::is_leaf(raw, level)) {
          break;  // keep holding it: it becomes the root
        }
        if (!F::is_present(raw, level)) {
          auto child = detail::alloc_node<C>(static_cast<PagingLevel>(level - 1), /*locked=*/true);
          if (!child) {
            node.unlock();
            return err(child.error());
          }
          node.store(s, F::encode(PteScalar::page_table(*child, PageTableFlags::None), level));
          ++node.meta().nr_children;
          node.unlock();
          cur = *child;
          held = true;  // born locked by us
          continue;
        }
      }
      // A page-table entry (seen lock-free or under our lock).
      if (held) {
        node.unlock();
        held = false;
      }
      cur = F::paddr(raw, level);
    }
    const Node root{cur};
    if (!held) {
      if (auto r = root.lock(wait); r != detail::LockResult::Acquired) return err(lock_error(r).error());
    }
    if (root.meta().stray && !testing::mutated(testing::Mutation::SkipStrayCheck)) {
      root.unlock();
      return false;
    }
    guard_level_ = level;
    path_[level - 1] = cur;
    return true;
  }

  // Phase 2: locks every child node of `node` inside `range`, depth first. On failure nothing
  // below `node` stays locked (node itself stays locked).
  Result<void, PageTableError> acquire_children(Node node, PagingLevel level, VaRange range,
                                                detail::LockWait wait) noexcept {
    if (level == 1) return {};
    const std::size_t s = pte_index<Consts>(range.start, level);
    const std::size_t e = pte_index<Consts>(range.end - 1, level);
    for (std::size_t i = s; i <= e; ++i) {
      const std::uint64_t raw = node.load_locked(i);
      if (!detail::is_pt_entry<C>(raw, level)) continue;
      const Node child{F::paddr(raw, level)};
      auto failed = [&](Result<void, PageTableError> r) {
        release_children_before(node, level, range, i);
        return r;
      };
      if (auto r = child.lock(wait); r != detail::LockResult::Acquired) return failed(lock_error(r));
      auto r = acquire_children(child, static_cast<PagingLevel>(level - 1), clip(range, level, i), wait);
      if (!r) {
        child.unlock();
        return failed(r);
      }
    }
    return {};
  }

  // The part of `range` inside entry `i` of the node at `level` that holds range.start.
  static VaRange clip(VaRange range, PagingLevel level, std::size_t i) noexcept {
    const std::uint64_t size = size_at(level);
    const Vaddr start = align_down(range.start, size) + (i - pte_index<Consts>(range.start, level)) * size;
    const Vaddr end = detail::saturating_add(start, size);
    return VaRange{std::max(start, range.start), std::min(end, range.end)};
  }

  // Unlocks the sub-trees of children s..i-1 (reverse order) of a node whose children in
  // `range` were locked up to index i (exclusive).
  void release_children_before(Node node, PagingLevel level, VaRange range, std::size_t i) noexcept {
    const std::size_t s = pte_index<Consts>(range.start, level);
    for (std::size_t j = i; j-- > s;) {
      const std::uint64_t raw = node.load_locked(j);
      if (detail::is_pt_entry<C>(raw, level)) {
        release_subtree(F::paddr(raw, level), static_cast<PagingLevel>(level - 1), clip(range, level, j));
      }
    }
  }

  // Unlocks every node of the sub-tree rooted at `node` inside `range`, children before
  // parents, higher indices first: the exact reverse of acquisition.
  void release_subtree(Paddr pa, PagingLevel level, VaRange range) noexcept {
    const Node node{pa};
    if (testing::mutated(testing::Mutation::SkipPhase2Locks)) {
      // Only the sub-tree root was locked (and nodes this cursor created: those stay locked,
      // which is part of the damage the mutation does).
      if (detail::node_locked_by_me(node.meta().lock)) node.unlock();
      return;
    }
    if (testing::mutated(testing::Mutation::UnlockWrongOrder)) {
      node.unlock();  // parent first, then walk a tree others may already be changing
      if (level > 1) {
        const std::size_t s = pte_index<Consts>(range.start, level);
        const std::size_t e = pte_index<Consts>(range.end - 1, level);
        for (std::size_t j = s; j <= e; ++j) {
          const std::uint64_t raw = node.load_acquire(j);
          if (!detail::is_pt_entry<C>(raw, level)) continue;
          // Whatever node is there now gets unlocked — possibly one another cursor created and
          // holds (debug builds abort on that in node_unlock; release builds corrupt silently).
          release_subtree(F::paddr(raw, level), static_cast<PagingLevel>(level - 1), clip(range, level, j));
        }
      }
      return;
    }
    if (level > 1) {
      const std::size_t e = pte_index<Consts>(range.end - 1, level);
      release_children_before(node, level, range, e + 1);
    }
    node.unlock();
  }

  void release() noexcept {
    if (pt_ == nullptr) return;
    release_subtree(path_[guard_level_ - 1], guard_level_, barrier_);
    detail::note_cursor_released(pt_->root_paddr());
    pt_ = nullptr;
  }

  void take(Cursor& o) noexcept {
    pt_ = std::exchange(o.pt_, nullptr);
    path_ = o.path_;
    node_base_ = o.node_base_;
    level_ = o.level_;
    guard_level_ = o.guard_level_;
    va_ = o.va_;
    barrier_ = o.barrier_;
  }

  const PageTable<C>* pt_ = nullptr;
  std::array<Paddr, 4> path_{};       // path_[l-1]: the node at level l on the way to va_
  std::array<Vaddr, 4> node_base_{};  // first address covered by path_[l-1] (below the guard)
  PagingLevel level_ = 0;
  PagingLevel guard_level_ = 0;
  Vaddr va_ = 0;
  VaRange barrier_{};
};

// A cursor that may change the mappings in its range. Same locking and thread rules as Cursor.
template <PageTableConfig C>
class CursorMut : public Cursor<C> {
  using Base = Cursor<C>;
  using typename Base::F;
  using typename Base::Find;
  using typename Base::Node;
  using Base::kNr;

 public:
  using Item = typename C::Item;
  using Consts = ConstsOf<C>;

  explicit CursorMut(Base&& c) noexcept : Base(std::move(c)) {}

  // Maps `item` at virt_addr() and advances past it. The item is consumed only on success.
  // Intermediate nodes are created as needed. No TLB flush is needed (the slot was absent).
  // Errors (nothing changes, the item stays with the caller):
  //   InvalidVaddr   virt_addr() >= range end
  //   InvalidItem    item level above kHighestTranslationLevel or the cursor's guard level, a
  //                  top-level item in a table whose top level cannot be unmapped, virt_addr()
  //                  or the item's paddr not aligned to the item size, item beyond the range
  //                  end, or a property the PTE format cannot encode
  //   AlreadyMapped  the item's range overlaps a mapping (a leaf in the slot, a huge leaf
  //                  above it, or a page-table node below it that still maps something; a
  //                  node that maps nothing is replaced, unlike OSTD, which panics)
  //   NoMemory       creating an intermediate node failed (empty nodes may remain)
  Result<void, PageTableError> map(Item&& item) noexcept {
    const RawItem raw = C::item_raw_info(item);
    const PagingLevel level = raw.level;
    if (this->va_ >= this->barrier_.end) return err(PageTableError::InvalidVaddr);
    // The level is the caller's: check it before deriving a size from it (a shift by
    // 9 * (level - 1) bits is undefined for level 0 or a level past the format's).
    if (level < 1 || level > C::kHighestTranslationLevel || level > this->guard_level_ ||
        (!C::kTopLevelCanUnmap && level == kNr)) {
      return err(PageTableError::InvalidItem);
    }
    const std::uint64_t size = Base::size_at(level);
    if (!is_aligned(this->va_, size) || !is_aligned(raw.paddr, size) || size > this->barrier_.end - this->va_ ||
        !F::can_encode(raw.prop)) {
      return err(PageTableError::InvalidItem);
    }
    if constexpr (requires { F::kPaddrLimit; }) {
      if (raw.paddr > F::kPaddrLimit - size) return err(PageTableError::InvalidItem);
    }
    while (this->level_ < level) ++this->level_;
    while (this->level_ > level) {
      const Node node = this->cur_node();
      const std::size_t idx = this->cur_idx();
      const std::uint64_t e = node.load_locked(idx);
      if (detail::is_pt_entry<C>(e, this->level_)) {
        this->push(F::paddr(e, this->level_));
      } else if (!F::is_present(e, this->level_)) {
        auto child = detail::alloc_node<C>(static_cast<PagingLevel>(this->level_ - 1), /*locked=*/true);
        if (!child) return err(child.error());
        node.store(idx, F::encode(PteScalar::page_table(*child, PageTableFlags::None), this->level_));
        ++node.meta().nr_children;
        this->push(*child);
      } else {
        return err(PageTableError::AlreadyMapped);
      }
    }
    const Node node = this->cur_node();
    const std::size_t idx = this->cur_idx();
    const std::uint64_t old = node.load_locked(idx);
    std::optional<Paddr> empty_subtree;
    if (F::is_present(old, level)) {
      // A page-table node that maps nothing (left behind by earlier unmaps) is no mapping: the
      // huge item replaces it, as the verified map_spec says. OSTD panics here.
      if (!detail::is_pt_entry<C>(old, level) ||
          !subtree_is_empty(F::paddr(old, level), static_cast<PagingLevel>(level - 1))) {
        return err(PageTableError::AlreadyMapped);
      }
      empty_subtree = F::paddr(old, level);
    }
    const RawItem owned = C::item_into_raw(std::move(item));
    node.store(idx, F::encode(PteScalar::mapped(owned.paddr, owned.prop), level));
    if (empty_subtree) {
      // Lock-free walkers may still be inside it: retire it through RCU. It holds no leaf, so
      // no TLB can cache a translation through it.
      mark_stray_and_unlock(*empty_subtree, static_cast<PagingLevel>(level - 1));
      RcuDrop<PageTableNode<C>> retired(PageTableNode<C>::from_raw(*empty_subtree));
    } else {
      ++node.meta().nr_children;
    }
    check_after_op(node, level, idx, PteScalar::mapped(owned.paddr, owned.prop));
    this->move_past_entry();
    return {};
  }

  // Removes the next mapped item or whole page-table sub-tree starting in
  // [virt_addr(), virt_addr() + len) and moves past it. A huge leaf only partly inside the
  // window is split first (the outside pieces stay mapped). Fully covered sub-trees are
  // detached whole (except top-level entries of a table whose top level cannot be unmapped).
  // Returns nullopt when nothing is left in the window (the cursor is then at its end).
  // The caller must keep the fragment alive until TLBs are coherent.
  // Errors: UnalignedLen, LenOutOfRange (nothing changes); NoMemory while splitting (no mapping
  // changes in this call and the cursor stays where it was; a huge page may be left split).
  Result<std::optional<PageTableFrag<C>>, PageTableError> take_next(std::uint64_t len) noexcept {
    if (auto e = this->check_len(len)) return err(*e);
    const Vaddr start = this->va_;
    auto found = this->find_next_impl(len, Find::Unmappable);
    if (!found) {
      this->va_ = start;  // an error leaves the cursor where it was
      this->reposition();
      return err(found.error());
    }
    if (!*found) return std::optional<PageTableFrag<C>>();
    const Node node = this->cur_node();
    const std::size_t idx = this->cur_idx();
    const PagingLevel level = this->level_;
    const Vaddr va = this->va_;
    const std::uint64_t old = node.entry(idx).exchange(0, boost::memory_order_release);
    --node.meta().nr_children;
    check_after_op(node, level, idx, PteScalar::absent());
    this->move_past_entry();
    if (detail::is_pt_entry<C>(old, level)) {
      const Paddr child = F::paddr(old, level);
      const std::size_t n = mark_stray_and_unlock(child, static_cast<PagingLevel>(level - 1));
      // The fragments are aggregates: build them with braces (clang 14 has no parenthesized
      // aggregate initialization for in_place_type construction).
      return std::optional<PageTableFrag<C>>(
          std::in_place, std::in_place_type<StrayPageTableFrag<C>>,
          StrayPageTableFrag<C>{va, Base::size_at(level), n,
                                RcuDrop<PageTableNode<C>>(PageTableNode<C>::from_raw(child))});
    }
    const PteScalar s = F::decode(old, level);
    return std::optional<PageTableFrag<C>>(
        std::in_place, std::in_place_type<MappedFrag<C>>,
        MappedFrag<C>{va, level, RcuDrop<Item>(C::item_from_raw(RawItem{s.paddr, level, s.prop}))});
  }

  // Applies `op` to the property of the next mapped leaf starting in [virt_addr(),
  // virt_addr() + len), splitting a huge leaf that is only partly inside, and moves past it.
  // Returns the changed entry's range, or nullopt if nothing is mapped there. `op` is
  // `void(PageProperty&)`; AVAIL1 (the config's tracked marker) cannot be changed through it.
  // The PTE is rewritten only if the property changed. No TLB flush is done.
  // Errors: UnalignedLen, LenOutOfRange; InvalidItem if op's result cannot be encoded;
  // NoMemory while splitting. Nothing changes on error, the cursor position included.
  template <class Op>
    requires std::is_invocable_v<Op&, PageProperty&>
  Result<std::optional<VaRange>, PageTableError> protect_next(std::uint64_t len, Op&& op) noexcept {
    if (auto e = this->check_len(len)) return err(*e);
    const Vaddr start = this->va_;
    const Vaddr end = start + len;
    auto found = this->find_next_impl(len, Find::Mapped);
    if (!found) return err(found.error());
    if (!*found) return std::optional<VaRange>();
    auto fail = [&](PageTableError e) {
      this->va_ = start;  // an error leaves the cursor where it was
      this->reposition();
      return err(e);
    };
    // Compute the new property before splitting anything, so a refused property changes nothing.
    PageProperty old_prop = F::decode(this->cur_node().load_locked(this->cur_idx()), this->level_).prop;
    PageProperty new_prop = old_prop;
    op(new_prop);
    new_prop.priv_flags = (new_prop.priv_flags & ~PrivilegedPageFlags::AVAIL1) |
                          (old_prop.priv_flags & PrivilegedPageFlags::AVAIL1);
    if (!F::can_encode(new_prop)) return fail(PageTableError::InvalidItem);
    // Descend through huge leaves that stick out of the window.
    for (;;) {
      const VaRange entry = this->entry_range();
      if (this->va_ == entry.start && entry.end <= end && entry.end > entry.start) break;
      if (auto e = this->split_huge(this->cur_node(), this->cur_idx())) return fail(*e);
    }
    const Node node = this->cur_node();
    const std::size_t idx = this->cur_idx();
    const VaRange range = this->entry_range();
    std::uint64_t cur = node.load_locked(idx);
    if (F::decode(cur, this->level_).prop != new_prop) {
      std::uint64_t desired = F::encode(PteScalar::mapped(F::paddr(cur, this->level_), new_prop), this->level_);
      // Keep ACCESSED/DIRTY bits a software MMU sets between our read and our write.
      while (!node.entry(idx).compare_exchange_weak(cur, desired, boost::memory_order_release,
                                                    boost::memory_order_relaxed)) {
        desired |= cur & (F::kAccessedBit | F::kDirtyBit);
      }
    }
    check_after_op(node, this->level_, idx, std::nullopt);
    this->move_past_entry();
    return std::optional<VaRange>(range);
  }

  // Applies `op` to every mapping in [virt_addr(), virt_addr() + len) — the same result as
  // calling protect_next(len) until it returns nullopt (huge leaves sticking out of either end
  // are split) — and moves to the window's end. Returns the number of leaf entries visited.
  // Built for ranges (mprotect): `op` must be a pure function of the property, because it is
  // called once per distinct property rather than once per page.
  // Errors: as protect_next. On InvalidItem or NoMemory the entries before the failing one have
  // been changed and the cursor sits at the failing entry.
  template <class Op>
    requires std::is_invocable_v<Op&, PageProperty&>
  Result<std::size_t, PageTableError> protect(std::uint64_t len, Op&& op) noexcept {
    if (auto e = this->check_len(len)) return err(*e);
    const Vaddr end = this->va_ + len;
    std::size_t visited = 0;
    // Memo: raw property bits of a leaf (everything but the address) -> its new bits.
    PagingLevel memo_level = 0;
    std::uint64_t addr_mask = 0, memo_old = 0, memo_new = 0;
    bool memo_valid = false;
    auto transform = [&](std::uint64_t raw, PagingLevel level) -> std::optional<std::uint64_t> {
      if (level != memo_level) {
        addr_mask = addr_field_mask(level);
        memo_level = level;
        memo_valid = false;
      }
      const std::uint64_t bits = raw & ~addr_mask;
      if (memo_valid && memo_old == bits) return (raw & addr_mask) | memo_new;
      const PteScalar s = F::decode(raw, level);
      PageProperty prop = s.prop;
      op(prop);
      prop.priv_flags = (prop.priv_flags & ~PrivilegedPageFlags::AVAIL1) |
                        (s.prop.priv_flags & PrivilegedPageFlags::AVAIL1);
      if (!F::can_encode(prop)) return std::nullopt;
      const std::uint64_t encoded = F::encode(PteScalar::mapped(s.paddr, prop), level);
      memo_valid = true;
      memo_old = bits;
      memo_new = encoded & ~addr_mask;
      return encoded;
    };
    while (this->va_ < end) {
      const Vaddr start = this->va_;
      auto found = this->find_next_impl(end - start, Find::Mapped);
      if (!found) return err(found.error());
      if (!*found) break;
      // The first leaf: validate its new property before splitting, then split what sticks out.
      if (!transform(this->cur_node().load_locked(this->cur_idx()), this->level_)) {
        return err(PageTableError::InvalidItem);
      }
      for (;;) {
        const VaRange entry = this->entry_range();
        if (this->va_ == entry.start && entry.end <= end && entry.end > entry.start) break;
        if (auto e = this->split_huge(this->cur_node(), this->cur_idx())) return err(*e);
      }
      // Then every following leaf of this node that lies inside the window, in one sweep.
      const Node node = this->cur_node();
      const PagingLevel level = this->level_;
      const std::uint64_t size = Base::size_at(level);
      for (std::size_t idx = this->cur_idx(); idx < kNrEntries<Consts>; ++idx) {
        std::uint64_t cur = node.load_locked(idx);
        if (!F::is_present(cur, level) || detail::is_pt_entry<C>(cur, level)) break;
        const VaRange entry = this->entry_range();
        if (entry.end > end || entry.end <= entry.start) break;
        auto desired = transform(cur, level);
        if (!desired) return err(PageTableError::InvalidItem);
        if (*desired != cur) {
          // Keep ACCESSED/DIRTY bits a software MMU sets between our read and our write.
          while (!node.entry(idx).compare_exchange_weak(cur, *desired, boost::memory_order_release,
                                                        boost::memory_order_relaxed)) {
            desired = transform(cur, level);
            if (!desired) return err(PageTableError::InvalidItem);
          }
        }
        check_after_op(node, level, idx, std::nullopt);
        ++visited;
        this->va_ = entry.end;
        if (this->va_ >= end || idx + 1 == kNrEntries<Consts> || size == 0) break;
      }
      this->reposition();
    }
    if (this->va_ < end) {
      this->va_ = end;
      this->reposition();
    }
    return visited;
  }

 private:
  // The bits of a leaf at `level` that hold its physical address (every other bit is property).
  // Formats place the address differently (RISC-V shifts it), so it is derived from encode.
  static std::uint64_t addr_field_mask(PagingLevel level) noexcept {
    const PageProperty p0 = PageProperty::new_with(PageFlags::R, CachePolicy::Writeback, PrivilegedPageFlags::None);
    const Paddr all = F::paddr(~std::uint64_t{0}, level) & ~(Base::size_at(level) - 1);
    return F::encode(PteScalar::mapped(all, p0), level) ^ F::encode(PteScalar::mapped(0, p0), level);
  }

  // With -Dcheck_after_ops: the cheap local invariants after every mutating operation — the
  // touched node's child count equals its present entries (verified-specs §D.1 item 4), and
  // the written entry decodes to what was meant (item 10). Aborts with a message on violation.
  void check_after_op([[maybe_unused]] Node node, [[maybe_unused]] PagingLevel level,
                      [[maybe_unused]] std::size_t idx,
                      [[maybe_unused]] std::optional<PteScalar> written) const noexcept {
#ifdef VMSPACE_CHECK_AFTER_OPS
    const bool root = level == kNr;
    const std::size_t first = root ? C::kTopLevelIndexStart : 0;
    const std::size_t last = root ? C::kTopLevelIndexEnd : kNrEntries<Consts>;
    std::size_t present = 0;
    for (std::size_t i = first; i < last; ++i) present += F::is_present(node.load_locked(i), level) ? 1 : 0;
    VMS_ASSERT(present == node.meta().nr_children, "node {:#x}: nr_children {} but {} present entries",
               node.pa, node.meta().nr_children, present);
    if (written) {
      PteScalar now = F::decode(node.load_locked(idx), level);
      PteScalar want = *written;
      if (now.is_mapped() && want.is_mapped()) {
        // The software MMU may already have set ACCESSED/DIRTY.
        now.prop.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
        want.prop.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
      }
      VMS_ASSERT(now == want, "node {:#x} entry {} does not decode to what was written", node.pa, idx);
    }
#endif
  }

  // True if the sub-tree rooted at `pa` (locked by this cursor) maps no page.
  static bool subtree_is_empty(Paddr pa, PagingLevel level) noexcept {
    const Node node{pa};
    if (node.meta().nr_children == 0) return true;
    if (level == 1) return false;
    for (std::size_t i = 0; i < kNrEntries<Consts>; ++i) {
      const std::uint64_t raw = node.load_locked(i);
      if (!F::is_present(raw, level)) continue;
      if (!detail::is_pt_entry<C>(raw, level)) return false;
      if (!subtree_is_empty(F::paddr(raw, level), static_cast<PagingLevel>(level - 1))) return false;
    }
    return true;
  }

  // Marks a detached sub-tree stray and unlocks it, children first. Returns the number of base
  // pages its leaves map (a huge leaf counts every base page it covers).
  static std::size_t mark_stray_and_unlock(Paddr pa, PagingLevel level) noexcept {
    const Node node{pa};
    node.meta().stray = true;
    std::size_t n = 0;
    if (level == 1) {
      n = node.meta().nr_children;
    } else {
      for (std::size_t i = kNrEntries<Consts>; i-- > 0;) {
        const std::uint64_t raw = node.load_locked(i);
        if (detail::is_pt_entry<C>(raw, level)) {
          n += mark_stray_and_unlock(F::paddr(raw, level), static_cast<PagingLevel>(level - 1));
        } else if (F::is_present(raw, level)) {
          n += static_cast<std::size_t>(Base::size_at(level) / kPageSize);
        }
      }
    }
    node.unlock();
    return n;
  }
};

template <PageTableConfig C>
void PageTablePageMeta<C>::on_drop(VmReader<Infallible>& page) noexcept {
  using F = typename C::Pte;
  using Consts = ConstsOf<C>;
  if (nr_children == 0) return;
  const std::size_t first = level == Consts::kNrLevels ? C::kTopLevelIndexStart : 0;
  const std::size_t last = level == Consts::kNrLevels ? C::kTopLevelIndexEnd : kNrEntries<Consts>;
  auto* words = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(page.cursor()));
  for (std::size_t i = first; i < last; ++i) {
    const std::uint64_t raw = boost::atomic_ref<std::uint64_t>(words[i]).load(boost::memory_order_relaxed);
    if (!F::is_present(raw, level)) continue;
    if (F::is_leaf(raw, level)) {
      const PteScalar s = F::decode(raw, level);
      (void)C::item_from_raw(RawItem{s.paddr, level, s.prop});  // dropped here
    } else {
      (void)PageTableNode<C>::from_raw(F::paddr(raw, level));  // recursive drop
    }
  }
}

}  // namespace vmspace
