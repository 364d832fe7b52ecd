// Page-table nodes: the metadata of a frame that holds one node, and what happens when the
// last reference to a node goes (OSTD `ostd/src/mm/page_table/node/mod.rs`, `PageTablePageMeta`
// and its `on_drop`).
//
// Nodes are real frames whose metadata is PageTablePageMeta<C>; their 512 entries are raw
// 64-bit PTE words in the frame, read and written atomically (writes release, lock-free reads
// acquire, reads under the node lock relaxed). A node's PTE owns one reference to each child
// node and owns the mapped item (C::Item) of each leaf.
#pragma once

#include <cstddef>
#include <cstdint>

#include <boost/atomic/atomic_ref.hpp>

#include <vmspace/frame.hpp>
#include <vmspace/page_table_config.hpp>

namespace vmspace {

// Metadata of a page-table node frame.
template <PageTableConfig C>
struct PageTablePageMeta {
  // Name of this metadata type, for messages.
  static constexpr const char* kTypeName = "PageTablePageMeta";

  // The node lock word (internal/node_lock.hpp). Accessed only atomically.
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
// A handle to one page-table node: a frame whose metadata is PageTablePageMeta. Holding it keeps
// the node frame alive, not its place in a table.
using PageTableNode = Frame<PageTablePageMeta<C>>;

template <PageTableConfig C>
void PageTablePageMeta<C>::on_drop(VmReader<Infallible>& page) noexcept {
  using F = typename C::Pte;
  using Consts = ConstsOf<C>;
  if (nr_children == 0) return;
  const std::size_t first = level == Consts::kNrLevels ? C::kTopLevelIndexStart : 0;
  const std::size_t last = level == Consts::kNrLevels ? C::kTopLevelIndexEnd : kNrEntries<Consts>;
  auto* words = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(page.cursor()));
  for (std::size_t i = first; i < last; ++i) {
    const std::uint64_t raw =
        boost::atomic_ref<std::uint64_t>(words[i]).load(boost::memory_order_relaxed);
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
