// How a cursor locks its range and unlocks it again (OSTD
// `ostd/src/mm/page_table/cursor/locking.rs`, `lock_range`, `try_traverse_and_lock_subtree_root`,
// `dfs_acquire_lock` and `dfs_release_lock`). Included by page_table/cursor.hpp: these are the
// definitions of Cursor's locking members.
//
// Locking protocol. Creating a cursor over [start, end):
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
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <vmspace/addr.hpp>
#include <vmspace/internal/node_lock.hpp>
#include <vmspace/internal/node_view.hpp>
#include <vmspace/internal/mutation.hpp>
#include <vmspace/page_table/cursor.hpp>
#include <vmspace/page_table_config.hpp>
#include <vmspace/result.hpp>

namespace vmspace::pt {

template <PageTableConfig C>
PageTableError Cursor<C>::lock_error(internal::LockResult r) noexcept {
  return r == internal::LockResult::WouldDeadlock ? PageTableError::WouldDeadlock
                                                  : PageTableError::WouldBlock;
}

template <PageTableConfig C>
Result<bool, PageTableError> Cursor<C>::lock_attached(Node node, internal::LockWait wait) noexcept {
  if (auto r = node.lock(wait); r != internal::LockResult::Acquired) return err(lock_error(r));
  if (node.meta().stray && !internal::mutated(internal::Mutation::SkipStrayCheck)) {
    node.unlock();
    return false;
  }
  return true;
}

template <PageTableConfig C>
Result<void, PageTableError> Cursor<C>::lock_range(internal::LockWait wait) noexcept {
  for (;;) {
    auto root = traverse_and_lock_subtree_root(wait);
    if (!root) return err(root.error());
    if (!*root) continue;  // the node went stray: retry from the root
    if (internal::mutated(internal::Mutation::SkipPhase2Locks)) {
      level_ = guard_level_;
      return {};
    }
    auto r = acquire_children(Node{path_[guard_level_ - 1]}, guard_level_, locked_range_, wait);
    if (!r) {
      Node{path_[guard_level_ - 1]}.unlock();
      return r;
    }
    level_ = guard_level_;
    return {};
  }
}

template <PageTableConfig C>
Result<bool, PageTableError> Cursor<C>::traverse_and_lock_subtree_root(
    internal::LockWait wait) noexcept {
  Paddr cur = pt_->root_paddr();
  bool held = false;  // whether we hold cur's lock (a node we just created)
  PagingLevel level = kRootLevel;
  for (; level >= 1; --level) {
    const std::size_t s = pte_index<Consts>(locked_range_.start, level);
    const std::size_t e = pte_index<Consts>(locked_range_.end - 1, level);
    if (level == 1 || s != e) break;
    // The range lies in one entry. If it is exactly that entry, this node is the root, so a
    // huge item can be mapped there (the fix for OSTD issue #3731).
    if (locked_range_.start == align_down(locked_range_.start, size_at(level)) &&
        locked_range_.end - locked_range_.start == size_at(level)) {
      break;
    }
    const Node node{cur};
    std::uint64_t raw = node.load_acquire(s);
    if (F::is_present(raw, level) && F::is_leaf(raw, level)) break;
    if (!F::is_present(raw, level)) {
      if (!held) {
        if (auto r = lock_attached(node, wait); !r || !*r) return r;
        held = true;
      }
      raw = node.load_locked(s);
      if (F::is_present(raw, level) && F::is_leaf(raw, level)) {
        break;  // keep holding it: it becomes the root
      }
      if (!F::is_present(raw, level)) {
        auto child = internal::publish_new_child(node, level, s, internal::NewNode::LockedByMe);
        node.unlock();
        if (!child) return err(child.error());
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
  // A node held here is one this thread created or checked after locking it: not stray.
  if (!held) {
    if (auto r = lock_attached(Node{cur}, wait); !r || !*r) return r;
  }
  guard_level_ = level;
  path_[level - 1] = cur;
  return true;
}

template <PageTableConfig C>
Result<void, PageTableError> Cursor<C>::acquire_children(Node node, PagingLevel level,
                                                         VaRange range,
                                                         internal::LockWait wait) noexcept {
  if (level == 1) return {};
  const std::size_t s = pte_index<Consts>(range.start, level);
  const std::size_t e = pte_index<Consts>(range.end - 1, level);
  for (std::size_t i = s; i <= e; ++i) {
    const std::uint64_t raw = node.load_locked(i);
    if (!internal::is_pt_entry<C>(raw, level)) continue;
    const Node child{F::paddr(raw, level)};
    auto failed = [&](Result<void, PageTableError> r) {
      release_children_before(node, level, range, i);
      return r;
    };
    if (auto r = child.lock(wait); r != internal::LockResult::Acquired)
      return failed(err(lock_error(r)));
    auto r =
        acquire_children(child, static_cast<PagingLevel>(level - 1), clip(range, level, i), wait);
    if (!r) {
      child.unlock();
      return failed(r);
    }
  }
  return {};
}

template <PageTableConfig C>
VaRange Cursor<C>::clip(VaRange range, PagingLevel level, std::size_t i) noexcept {
  const std::uint64_t size = size_at(level);
  const Vaddr start =
      align_down(range.start, size) + (i - pte_index<Consts>(range.start, level)) * size;
  const Vaddr end = internal::saturating_add(start, size);
  return VaRange{std::max(start, range.start), std::min(end, range.end)};
}

template <PageTableConfig C>
void Cursor<C>::release_children_before(Node node, PagingLevel level, VaRange range,
                                        std::size_t i) noexcept {
  const std::size_t s = pte_index<Consts>(range.start, level);
  for (std::size_t j = i; j-- > s;) {
    const std::uint64_t raw = node.load_locked(j);
    if (internal::is_pt_entry<C>(raw, level)) {
      release_subtree(F::paddr(raw, level), static_cast<PagingLevel>(level - 1),
                      clip(range, level, j));
    }
  }
}

template <PageTableConfig C>
void Cursor<C>::release_subtree(Paddr pa, PagingLevel level, VaRange range) noexcept {
  const Node node{pa};
  if (internal::mutated(internal::Mutation::SkipPhase2Locks)) {
    // Only the sub-tree root was locked (and nodes this cursor created: those stay locked,
    // which is part of the damage the mutation does).
    if (internal::node_locked_by_me(node.meta().lock)) node.unlock();
    return;
  }
  if (internal::mutated(internal::Mutation::UnlockWrongOrder)) {
    node.unlock();  // parent first, then walk a tree others may already be changing
    if (level > 1) {
      const std::size_t s = pte_index<Consts>(range.start, level);
      const std::size_t e = pte_index<Consts>(range.end - 1, level);
      for (std::size_t j = s; j <= e; ++j) {
        const std::uint64_t raw = node.load_acquire(j);
        if (!internal::is_pt_entry<C>(raw, level)) continue;
        // Whatever node is there now gets unlocked — possibly one another cursor created and
        // holds (debug builds abort on that in node_unlock; release builds corrupt silently).
        release_subtree(F::paddr(raw, level), static_cast<PagingLevel>(level - 1),
                        clip(range, level, j));
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

template <PageTableConfig C>
void Cursor<C>::release() noexcept {
  if (pt_ == nullptr) return;
  release_subtree(path_[guard_level_ - 1], guard_level_, locked_range_);
  internal::note_cursor_released(pt_->root_paddr());
  pt_ = nullptr;
}

}  // namespace vmspace::pt
