// Internal: not API; may change without notice.
//
// Raw access to one page-table node (its metadata and entry words) and node allocation: the
// layer below the cursors (OSTD `ostd/src/mm/page_table/node/mod.rs`, `PageTableGuard`, and
// `node/entry.rs`, `Entry`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/addr.hpp>
#include <vmspace/frame.hpp>
#include <vmspace/frame_allocator.hpp>
#include <vmspace/internal/node_lock.hpp>
#include <vmspace/page_table/node.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/result.hpp>

namespace vmspace {

namespace internal {

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

// How a new node starts out: locked by the calling thread (a cursor creating nodes inside the
// range it locks: the node must be locked before the PTE that publishes it is written), or
// unlocked (a root, or a node filled in before its table is reachable).
enum class NewNode : std::uint8_t { Unlocked, LockedByMe };

// Allocates a zeroed node at `level` and leaks its reference to the caller (who publishes it in
// a PTE or keeps it as a root). Errors: NoMemory.
template <PageTableConfig C>
Result<Paddr, PageTableError> alloc_node(PagingLevel level, NewNode state) noexcept {
  PageTablePageMeta<C> meta;
  meta.lock = state == NewNode::LockedByMe ? locked_by_me() : 0;
  meta.level = level;
  auto f = FrameAllocOptions().alloc_frame_with(meta);
  if (!f) return err(PageTableError::NoMemory);
  return std::move(*f).into_raw();
}

// Creates an empty node one level below `parent_level` and publishes it in the absent entry
// `idx` of `parent`, which counts it as a child (OSTD `ostd/src/mm/page_table/node/entry.rs`,
// `Entry::alloc_if_none`). The PTE is written last, with release order, so a lock-free walker
// that sees it sees an initialised (and, for LockedByMe, locked) node. Preconditions: the
// caller holds `parent`'s lock or nothing else can reach `parent` yet; the entry is absent.
// Returns the new node. Errors: NoMemory (nothing changed).
template <PageTableConfig C>
Result<Paddr, PageTableError> publish_new_child(NodeView<C> parent, PagingLevel parent_level,
                                                std::size_t idx, NewNode state) noexcept {
  using F = typename C::Pte;
  auto child = alloc_node<C>(static_cast<PagingLevel>(parent_level - 1), state);
  if (!child) return err(child.error());
  parent.store(idx, F::encode(PteScalar::page_table(*child, PageTableFlags::None), parent_level));
  ++parent.meta().nr_children;
  return *child;
}

// Rewrites leaf entry `idx` of a node the caller has locked from `seen` (the value the caller
// read) to `desired`, keeping the ACCESSED/DIRTY bits a software MMU sets in between: under
// the node lock the MMU is the only other writer of a leaf, and it only ever adds those bits
// (OSTD `ostd/src/mm/page_table/node/entry.rs`, `Entry::protect`).
template <PageTableConfig C>
void rewrite_leaf_keeping_accessed_dirty(NodeView<C> node, std::size_t idx, std::uint64_t seen,
                                         std::uint64_t desired) noexcept {
  using F = typename C::Pte;
  while (!node.entry(idx).compare_exchange_weak(seen, desired, boost::memory_order_release,
                                                boost::memory_order_relaxed)) {
    desired |= seen & (F::kAccessedBit | F::kDirtyBit);
  }
}

constexpr std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

}  // namespace internal

}  // namespace vmspace
