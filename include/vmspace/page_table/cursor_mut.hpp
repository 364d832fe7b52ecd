// The mutating page-table cursor: map, take_next (unmap), protect_next and protect (OSTD
// `ostd/src/mm/page_table/cursor/mod.rs`, `CursorMut`).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/assert.hpp>
#include <vmspace/internal/node_view.hpp>
#include <vmspace/page_table/cursor.hpp>
#include <vmspace/page_table/frag.hpp>
#include <vmspace/page_table/node.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/rcu.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

namespace pt {

// A cursor that may change the mappings in its range. Same locking and thread rules as Cursor.
template <PageTableConfig C>
class CursorMut : public Cursor<C> {
  using Base = Cursor<C>;
  using Base::kRootLevel;
  using typename Base::F;
  using typename Base::Find;
  using typename Base::Node;

 public:
  // The item type the configuration maps (what map takes and take_next returns).
  using Item = typename C::Item;
  // The paging constants of the configuration (levels, page sizes, entries per node).
  using Consts = ConstsOf<C>;

  // Turns a locked read-only cursor into a mutating one over the same locked range (used by
  // PageTable::cursor_mut; the lock moves with it).
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
    if (this->va_ >= this->locked_range_.end) return err(PageTableError::InvalidVaddr);
    // The level is the caller's: check it before deriving a size from it (a shift by
    // 9 * (level - 1) bits is undefined for level 0 or a level past the format's).
    if (level < 1 || level > C::kHighestTranslationLevel || level > this->guard_level_ ||
        (!C::kTopLevelCanUnmap && level == kRootLevel)) {
      return err(PageTableError::InvalidItem);
    }
    const std::uint64_t size = Base::size_at(level);
    if (!is_aligned(this->va_, size) || !is_aligned(raw.paddr, size) ||
        size > this->locked_range_.end - this->va_ || !F::can_encode(raw.prop)) {
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
      if (internal::is_pt_entry<C>(e, this->level_)) {
        this->push(F::paddr(e, this->level_));
      } else if (!F::is_present(e, this->level_)) {
        auto child =
            internal::publish_new_child(node, this->level_, idx, internal::NewNode::LockedByMe);
        if (!child) return err(child.error());
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
      if (!internal::is_pt_entry<C>(old, level) ||
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
    auto found = this->find_next_impl(len, Find::Removable);
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
    if (internal::is_pt_entry<C>(old, level)) {
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
  requires std::is_invocable_v<Op&, PageProperty&> Result<std::optional<VaRange>, PageTableError>
  protect_next(std::uint64_t len, Op&& op)
  noexcept {
    if (auto e = this->check_len(len)) return err(*e);
    const Vaddr start = this->va_;
    auto found = this->find_next_impl(len, Find::Mapped);
    if (!found) return err(found.error());
    if (!*found) return std::optional<VaRange>();
    // One leaf: decode, apply op and encode directly. protect's LeafRewrite memo pays off only
    // over runs of leaves, and through it this path was ~35% slower per call (A/B,
    // docs/performance.md).
    auto fail = [&](PageTableError e) {
      this->va_ = start;  // an error leaves the cursor where it was
      this->reposition();
      return err(e);
    };
    // Compute the new property before splitting anything, so a refused property changes nothing.
    const PageProperty old_prop =
        F::decode(this->cur_node().load_locked(this->cur_idx()), this->level_).prop;
    PageProperty new_prop = old_prop;
    op(new_prop);
    new_prop.priv_flags = (new_prop.priv_flags & ~PrivilegedPageFlags::AVAIL1) |
                          (old_prop.priv_flags & PrivilegedPageFlags::AVAIL1);
    if (!F::can_encode(new_prop)) return fail(PageTableError::InvalidItem);
    if (auto e = this->split_until_fits(start + len)) return fail(*e);
    const Node node = this->cur_node();
    const std::size_t idx = this->cur_idx();
    const VaRange range = this->entry_range();
    const std::uint64_t cur = node.load_locked(idx);
    if (new_prop != old_prop) {
      const std::uint64_t desired =
          F::encode(PteScalar::mapped(F::paddr(cur, this->level_), new_prop), this->level_);
      internal::rewrite_leaf_keeping_accessed_dirty(node, idx, cur, desired);
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
  requires std::is_invocable_v<Op&, PageProperty&> Result<std::size_t, PageTableError> protect(
      std::uint64_t len, Op&& op)
  noexcept {
    if (auto e = this->check_len(len)) return err(*e);
    const Vaddr end = this->va_ + len;
    std::size_t visited = 0;
    LeafRewrite<Op> rewrite(op);
    while (this->va_ < end) {
      auto found = this->find_next_impl(end - this->va_, Find::Mapped);
      if (!found) return err(found.error());
      if (!*found) break;
      auto n = protect_here(end, rewrite);
      if (!n) return err(n.error());
      visited += *n;
    }
    if (this->va_ < end) {
      this->va_ = end;
      this->reposition();
    }
    return visited;
  }

 private:
  // `op` applied to raw leaf words, AVAIL1 (the config's tracked marker) kept as it was. It
  // remembers the last property it changed, so a run of leaves with one property costs one call
  // of `op` and no decoding.
  template <class Op>
  class LeafRewrite {
   public:
    explicit LeafRewrite(Op& op) noexcept : op_(op) {}

    // The word leaf `raw` at `level` becomes, or nullopt if its new property cannot be encoded.
    std::optional<std::uint64_t> operator()(std::uint64_t raw, PagingLevel level) noexcept {
      if (level != level_) {
        addr_mask_ = kAddrFieldMasks[level];
        level_ = level;
        bits_known_ = false;
      }
      const std::uint64_t bits = raw & ~addr_mask_;
      if (bits_known_ && old_bits_ == bits) return (raw & addr_mask_) | new_bits_;
      const PteScalar s = F::decode(raw, level);
      if (!prop_known_ || s.prop != old_prop_) {
        PageProperty prop = s.prop;
        op_(prop);
        prop.priv_flags = (prop.priv_flags & ~PrivilegedPageFlags::AVAIL1) |
                          (s.prop.priv_flags & PrivilegedPageFlags::AVAIL1);
        old_prop_ = s.prop;
        new_prop_ = prop;
        prop_known_ = true;
      }
      if (!F::can_encode(new_prop_)) return std::nullopt;
      const std::uint64_t encoded = F::encode(PteScalar::mapped(s.paddr, new_prop_), level);
      bits_known_ = true;
      old_bits_ = bits;
      new_bits_ = encoded & ~addr_mask_;
      return encoded;
    }

   private:
    Op& op_;
    // The last property op_ changed (it survives a split, which changes the level).
    bool prop_known_ = false;
    PageProperty old_prop_{}, new_prop_{};
    // The same as raw property bits at level_ (everything but the address).
    PagingLevel level_ = 0;
    std::uint64_t addr_mask_ = 0;
    bool bits_known_ = false;
    std::uint64_t old_bits_ = 0, new_bits_ = 0;
  };

  // The machinery of protect. Precondition: find_next_impl(Find::Mapped) put the cursor at a
  // mapped leaf inside [virt_addr(), end). Checks that the leaf's new property can be encoded,
  // splits the leaf while it sticks out of the window, then rewrites it and the following
  // leaves of the same node inside the window (each only if its word changes) and moves past
  // them. Returns the number of leaves visited.
  // Errors: InvalidItem, NoMemory (splitting); the cursor then sits at the failing leaf, the
  // leaves before it changed.
  template <class Op>
  Result<std::size_t, PageTableError> protect_here(Vaddr end, LeafRewrite<Op>& rewrite) noexcept {
    // Compute the new property before splitting anything, so a refused property changes nothing.
    if (!rewrite(this->cur_node().load_locked(this->cur_idx()), this->level_)) {
      return err(PageTableError::InvalidItem);
    }
    if (auto e = this->split_until_fits(end)) return err(*e);
    const Node node = this->cur_node();
    const PagingLevel level = this->level_;
    std::size_t visited = 0;
    for (std::size_t idx = this->cur_idx(); idx < kNrEntries<Consts>; ++idx) {
      const std::uint64_t cur = node.load_locked(idx);
      if (!F::is_present(cur, level) || internal::is_pt_entry<C>(cur, level)) break;
      const VaRange entry = this->entry_range();
      if (entry.end > end || entry.end <= entry.start) break;
      const std::optional<std::uint64_t> desired = rewrite(cur, level);
      if (!desired) return err(PageTableError::InvalidItem);
      if (*desired != cur) internal::rewrite_leaf_keeping_accessed_dirty(node, idx, cur, *desired);
      check_after_op(node, level, idx, std::nullopt);
      ++visited;
      this->va_ = entry.end;
      if (this->va_ >= end) break;
    }
    this->reposition();
    return visited;
  }

  // The bits of a leaf at `level` that hold its physical address (every other bit is property).
  // Formats place the address differently (RISC-V shifts it), so it is derived from encode.
  static constexpr std::uint64_t addr_field_mask(PagingLevel level) noexcept {
    const PageProperty p0 =
        PageProperty::new_with(PageFlags::R, CachePolicy::Writeback, PrivilegedPageFlags::None);
    const Paddr all = F::paddr(~std::uint64_t{0}, level) & ~(Base::size_at(level) - 1);
    return F::encode(PteScalar::mapped(all, p0), level) ^
           F::encode(PteScalar::mapped(0, p0), level);
  }

  // addr_field_mask of every level that can hold a leaf, indexed by level. Computed at compile
  // time: computing it once per protect call (two encodes and a decode) made protecting one
  // page 15-40% slower in an A/B run (docs/performance.md).
  static constexpr auto kAddrFieldMasks = [] {
    std::array<std::uint64_t, F::kMaxLeafLevel + 1> masks{};
    for (PagingLevel level = 1; level <= F::kMaxLeafLevel; ++level)
      masks[level] = addr_field_mask(level);
    return masks;
  }();

  // With -Dcheck_after_ops: the cheap local invariants after every mutating operation — the
  // touched node's child count equals its present entries, and the written entry decodes to
  // what was meant (both part of vostd's well-formedness of a node). Aborts with a message on
  // violation.
  void check_after_op([[maybe_unused]] Node node, [[maybe_unused]] PagingLevel level,
                      [[maybe_unused]] std::size_t idx,
                      [[maybe_unused]] std::optional<PteScalar> written) const noexcept {
#ifdef VMSPACE_CHECK_AFTER_OPS
    const bool root = level == kRootLevel;
    const std::size_t first = root ? C::kTopLevelIndexStart : 0;
    const std::size_t last = root ? C::kTopLevelIndexEnd : kNrEntries<Consts>;
    std::size_t present = 0;
    for (std::size_t i = first; i < last; ++i)
      present += F::is_present(node.load_locked(i), level) ? 1 : 0;
    VMS_ASSERT(present == node.meta().nr_children,
               "node {:#x}: nr_children {} but {} present entries", node.pa,
               node.meta().nr_children, present);
    if (written) {
      PteScalar now = F::decode(node.load_locked(idx), level);
      PteScalar want = *written;
      if (now.is_mapped() && want.is_mapped()) {
        // The software MMU may already have set ACCESSED/DIRTY.
        now.prop.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
        want.prop.flags &= ~(PageFlags::ACCESSED | PageFlags::DIRTY);
      }
      VMS_ASSERT(now == want, "node {:#x} entry {} does not decode to what was written", node.pa,
                 idx);
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
      if (!internal::is_pt_entry<C>(raw, level)) return false;
      if (!subtree_is_empty(F::paddr(raw, level), static_cast<PagingLevel>(level - 1)))
        return false;
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
        if (internal::is_pt_entry<C>(raw, level)) {
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

}  // namespace pt

using pt::CursorMut;

}  // namespace vmspace
